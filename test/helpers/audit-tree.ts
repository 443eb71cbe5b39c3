/**
 * Checks of a shared audit log's Merkle tree as its database holds it: the rows, and the
 * properties every set of checkpoints must have (numbered in order, each note's root the tree of
 * the lines it covers and signed by its writer's key, one origin, every pair consistent).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import type pg from "pg";
import { checkpointBody, type Checkpoint } from "../../src/audit/checkpoint.js";
import { leafHashOfText, MerkleTree, treeRoot, verifyConsistency } from "../../src/audit/merkle.js";
import { ecdsaVerifierKey, parseSignedNote, verifyNote } from "../../src/audit/signed-note.js";

/** What the database holds: every entry line in seq order, its stored leaf hash, and every checkpoint record. */
export async function auditRows(
  pool: pg.Pool,
): Promise<{ lines: string[]; leaves: Array<Buffer | null>; checkpoints: Checkpoint[] }> {
  const entries = await pool.query<{ seq: string; entry: string; leaf: Buffer | null }>(
    "SELECT seq, entry, leaf FROM aztp_audit ORDER BY seq",
  );
  const checkpoints = await pool.query<{ record: string }>("SELECT record FROM aztp_audit_checkpoints ORDER BY seq");
  return {
    lines: entries.rows.map((r) => r.entry),
    leaves: entries.rows.map((r) => r.leaf),
    checkpoints: checkpoints.rows.map((r) => JSON.parse(r.record) as Checkpoint),
  };
}

/**
 * The public key (DER SPKI) of the leaf certificate in a checkpoint's JWS `x5c`: the SVID that
 * signed it (the chain itself is checked by `aztp audit verify --bundle`).
 */
export function x5cKeyOf(checkpoint: Checkpoint): Buffer {
  const header = JSON.parse(Buffer.from(checkpoint.sig.split(".")[0] as string, "base64url").toString("utf8")) as {
    x5c?: string[];
  };
  const leaf = new X509Certificate(Buffer.from(header.x5c?.[0] ?? "", "base64"));
  return leaf.publicKey.export({ type: "spki", format: "der" });
}

/**
 * Checkpoints numbered 1, 2, ... in order; from index `from` on, each carries a note whose root
 * is the tree of the entry lines it covers (leaves hashed here, from the lines), under one
 * origin, signed by the key `keyOf` gives for it; and every pair of them is consistent, by a
 * proof from the whole tree.
 */
export function checkTree(
  lines: readonly string[],
  checkpoints: readonly Checkpoint[],
  keyOf: (checkpoint: Checkpoint) => Buffer,
  from = 0,
): void {
  const leaves = lines.map((l) => leafHashOfText(l));
  const tree = new MerkleTree();
  for (const leaf of leaves) tree.push(leaf);
  const noted = checkpoints.slice(from);
  assert.ok(noted.length >= 2, `at least two checkpoints with a tree to compare: ${noted.length}`);
  checkpoints.forEach((cp, i) => assert.equal(cp.seq, i + 1, "checkpoints numbered in order"));
  let origin: string | undefined;
  for (const cp of noted) {
    const body = checkpointBody(cp);
    assert.ok(body !== null, `checkpoint #${cp.seq} carries a note`);
    assert.equal(body.size, cp.upTo);
    assert.ok(
      body.root.equals(treeRoot(leaves.slice(0, cp.upTo))),
      `checkpoint #${cp.seq}: root of entries 1..${cp.upTo}`,
    );
    origin ??= body.origin;
    assert.equal(body.origin, origin, "one origin for the whole log");
    verifyNote(parseSignedNote(cp.note as string), [ecdsaVerifierKey(body.origin, keyOf(cp))]);
  }
  for (let a = 0; a < noted.length; a++) {
    for (let b = a + 1; b < noted.length; b++) {
      const older = checkpointBody(noted[a] as Checkpoint);
      const newer = checkpointBody(noted[b] as Checkpoint);
      assert.ok(older !== null && newer !== null);
      const proof = tree.consistencyProof(older.size, newer.size);
      assert.ok(
        verifyConsistency(older.size, newer.size, proof, older.root, newer.root),
        `checkpoints #${(noted[a] as Checkpoint).seq} and #${(noted[b] as Checkpoint).seq} are consistent`,
      );
    }
  }
}
