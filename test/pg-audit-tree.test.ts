/**
 * The shared audit log on PostgreSQL keeps the RFC 6962 Merkle tree of its entries and signs it
 * in C2SP checkpoints: many writers cut checkpoints in turn (by count, by time), each note's root
 * is the tree of the lines it covers, every two checkpoints are consistent (no fork), and a
 * database from before the tree goes on: its old checkpoints verify as predating proofs and the
 * new ones continue it.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { checkpointBody, type Checkpoint } from "../src/audit/checkpoint.js";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { AuditLog } from "../src/audit/log.js";
import { leafHashOfText, treeRoot } from "../src/audit/merkle.js";
import { verifyAuditLog } from "../src/audit/verify.js";
import { PgAuditLog, type PgAuditLogOptions } from "../src/store/postgres/audit-log.js";
import { migrate, MIGRATIONS } from "../src/store/postgres/migrations.js";
import { createPool, type PgConnection } from "../src/store/postgres/pool.js";
import { newTestKeys, testSigner, testVerifier, type TestKeys } from "./helpers/audit-signer.js";
import { auditRows, checkTree } from "./helpers/audit-tree.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

function entry(i: number): AuditEntryInput {
  return {
    side: i % 2 === 0 ? "caller" : "callee",
    caller: `spiffe://example.org/agent-${i % 3}`,
    callerVerified: true,
    callee: "spiffe://example.org/tools",
    tool: `tool-${i}`,
    argsDigest: `digest-${i}`,
    decision: "allow",
    outcome: "ok",
    // Non-ASCII text: the leaf hashes the UTF-8 bytes of the line, in PostgreSQL as in JavaScript.
    reason: i % 5 === 0 ? `naïve ✓ ${i}` : undefined,
  };
}

async function connect(t: TestContext, url: string, migrations = MIGRATIONS): Promise<PgConnection> {
  const conn = createPool(url);
  t.after(() => conn.pool.end());
  await migrate(conn, migrations);
  return conn;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "aztp-pg-tree-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The test writers' keys by the signer a checkpoint names. */
function keyOf(keys: readonly TestKeys[]): (checkpoint: Checkpoint) => Buffer {
  return (cp) => (keys.find((k) => k.id === cp.signer) as TestKeys).publicKey.export({ type: "spki", format: "der" });
}

function waitFor(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + ms;
  return (async () => {
    while (!(await check())) {
      if (Date.now() > until) assert.fail(`${what} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
}

describe("PostgreSQL audit log: the Merkle tree and its signed checkpoints", () => {
  it("two writers append at once with a small N and T: checkpoints in order, each the tree of what it covers, all consistent; the export is proven", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const keys = [newTestKeys("spiffe://example.org/replica-a"), newTestKeys("spiffe://example.org/replica-b")];
    const options = (k: TestKeys): PgAuditLogOptions => ({
      signer: testSigner(k),
      checkpointEvery: 7,
      checkpointIntervalMs: 150,
    });
    const writers = await Promise.all(keys.map(async (k) => new PgAuditLog(await connect(t, url), options(k))));
    // Bursts with pauses, so both the count and the time trigger fire, from both writers.
    for (let round = 0; round < 6; round++) {
      await Promise.all(
        writers.flatMap((w, n) => Array.from({ length: 9 }, (_, i) => w.append(entry(round * 100 + n * 10 + i)))),
      );
      await new Promise((r) => setTimeout(r, round % 2 === 0 ? 20 : 250));
    }
    await Promise.all(writers.map((w) => w.close()));
    const conn = await connect(t, url);
    const { lines, leaves, checkpoints } = await auditRows(conn.pool);
    assert.equal(lines.length, 108);
    lines.forEach((l, i) =>
      assert.ok(leaves[i]?.equals(leafHashOfText(l)), `the stored leaf of entry ${i + 1} is its line's`),
    );
    checkTree(lines, checkpoints, keyOf(keys));
    assert.equal(checkpoints.at(-1)?.upTo, 108, "close() covered the rest");
    const signers = new Set(checkpoints.map((c) => c.signer));
    assert.equal(signers.size, 2, `both writers cut checkpoints: ${[...signers].join(", ")}`);

    const file = join(tempDir(t), "export.jsonl");
    const exported = await (writers[0] as PgAuditLog).exportJsonl(file);
    assert.equal(exported.checkpoints, checkpoints.length);
    const result = await verifyAuditLog(file, { verifier: testVerifier(...keys) });
    assert.equal(result.ok, true, JSON.stringify(result.firstBad));
    assert.equal(result.tree.state, "proven");
    assert.equal(result.tree.size, 108);
    assert.equal(result.tree.provenCheckpoints, checkpoints.length);
    assert.equal(result.tree.notesChecked, true);
    assert.equal(result.tree.root, treeRoot(lines.map((l) => leafHashOfText(l))).toString("base64"));
  });

  it("a writer appending alone (batches of many) cuts its checkpoints from the tree it holds: the tree of the stored lines", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const keys = newTestKeys("spiffe://example.org/alone");
    const log = new PgAuditLog(await connect(t, url), {
      signer: testSigner(keys),
      checkpointEvery: 25,
      checkpointIntervalMs: 0,
    });
    for (let round = 0; round < 12; round++)
      await Promise.all(Array.from({ length: 17 }, (_, i) => log.append(entry(round * 17 + i))));
    await log.close();
    const { lines, checkpoints } = await auditRows((await connect(t, url)).pool);
    assert.equal(lines.length, 204);
    assert.ok(checkpoints.length >= 5, `checkpoints by count: ${checkpoints.length}`);
    checkTree(lines, checkpoints, keyOf([keys]));
  });

  it("the time trigger: a checkpoint once the newest is older than T, with far fewer than N entries, by one writer of two", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const keys = [newTestKeys("spiffe://example.org/a"), newTestKeys("spiffe://example.org/b")];
    const writers = await Promise.all(
      keys.map(
        async (k) =>
          new PgAuditLog(await connect(t, url), {
            signer: testSigner(k),
            checkpointEvery: 1_000_000,
            checkpointIntervalMs: 200,
          }),
      ),
    );
    const conn = await connect(t, url);
    const covered = async (): Promise<number> =>
      Number((await conn.pool.query("SELECT coalesce(max(up_to), 0) AS n FROM aztp_audit_checkpoints")).rows[0].n);
    for (let i = 0; i < 5; i++) await (writers[i % 2] as PgAuditLog).append(entry(i));
    await waitFor("a checkpoint of the first 5 entries", 3000, async () => (await covered()) === 5);
    await (writers[1] as PgAuditLog).append(entry(5));
    await (writers[0] as PgAuditLog).append(entry(6));
    await waitFor("a second checkpoint by time", 3000, async () => (await covered()) === 7);
    // Nothing added: no further checkpoint however long it waits, and never two of one head.
    await new Promise((r) => setTimeout(r, 600));
    await Promise.all(writers.map((w) => w.close()));
    const { lines, checkpoints } = await auditRows(conn.pool);
    assert.equal(checkpoints.length, 2, JSON.stringify(checkpoints.map((c) => [c.seq, c.upTo, c.signer])));
    assert.deepEqual(
      checkpoints.map((c) => c.upTo),
      [5, 7],
    );
    checkTree(lines, checkpoints, keyOf(keys));
  });

  it("a database from before the tree: its checkpoints verify as predating proofs, and new checkpoints continue it", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const dir = tempDir(t);
    // The rows an older version wrote: schema 1 (no leaf column), checkpoints without note,
    // taken from a file log written by a signer without notes (the lines are the same bytes).
    const oldKeys = newTestKeys("spiffe://example.org/old-replica");
    const fileLog = await AuditLog.open(join(dir, "old.jsonl"), {
      signer: testSigner(oldKeys, { legacy: true }),
      checkpointEvery: 10,
      checkpointIntervalMs: 0,
    });
    for (let i = 0; i < 25; i++) await fileLog.append(entry(i));
    await fileLog.close();
    const old = await connect(
      t,
      url,
      MIGRATIONS.filter((m) => m.version === 1),
    );
    for (const line of readFileSync(join(dir, "old.jsonl"), "utf8").split("\n").filter(Boolean)) {
      const record = JSON.parse(line) as { type?: string; seq: number; upTo: number; hash: string; prev: string };
      if (record.type === "checkpoint")
        await old.pool.query("INSERT INTO aztp_audit_checkpoints (seq, up_to, record) VALUES ($1, $2, $3)", [
          record.seq,
          record.upTo,
          line,
        ]);
      else
        await old.pool.query("INSERT INTO aztp_audit (seq, entry, hash, prev) VALUES ($1, $2, $3, $4)", [
          record.seq,
          line,
          record.hash,
          record.prev,
        ]);
    }
    const before = join(dir, "before.jsonl");
    const oldLog = new PgAuditLog(await connect(t, url));
    await oldLog.exportJsonl(before);
    const predating = await verifyAuditLog(before, { verifier: testVerifier(oldKeys) });
    assert.equal(predating.ok, true, JSON.stringify(predating.firstBad));
    assert.equal(predating.tree.state, "predates-proofs");
    assert.equal(predating.tree.predatingCheckpoints, 3);

    // This version: the migration adds the leaf column (old rows keep NULL), and signs trees.
    const newKeys = newTestKeys("spiffe://example.org/new-replica");
    const writer = new PgAuditLog(await connect(t, url), {
      signer: testSigner(newKeys),
      checkpointEvery: 10,
      checkpointIntervalMs: 0,
    });
    for (let i = 25; i < 60; i++) await writer.append(entry(i));
    await writer.close();
    const conn = await connect(t, url);
    const { lines, leaves, checkpoints } = await auditRows(conn.pool);
    assert.equal(leaves.filter((l) => l === null).length, 25, "old rows are not rewritten");
    const firstNoted = checkpoints.findIndex((c) => c.note !== undefined);
    assert.equal(firstNoted, 3, "the three old checkpoints have no note; every later one has");
    assert.ok(checkpoints.slice(firstNoted).every((c) => c.note !== undefined));
    checkTree(lines, checkpoints, keyOf([oldKeys, newKeys]), firstNoted);

    const after = join(dir, "after.jsonl");
    await writer.exportJsonl(after);
    const proven = await verifyAuditLog(after, { verifier: testVerifier(oldKeys, newKeys) });
    assert.equal(proven.ok, true, JSON.stringify(proven.firstBad));
    assert.equal(proven.tree.state, "proven");
    assert.equal(proven.tree.predatingCheckpoints, 3);
    assert.equal(proven.tree.provenCheckpoints, checkpoints.length - 3);
    assert.equal(proven.tree.size, 60);
  });

  it("reads the published tree: the newest signed tree head, leaf hashes in pages, entry lines", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const keys = newTestKeys("spiffe://example.org/r");
    const log = new PgAuditLog(await connect(t, url), {
      signer: testSigner(keys),
      checkpointEvery: 1000,
      checkpointIntervalMs: 0,
    });
    assert.equal(await log.signedTreeHead(), null, "no checkpoint: nothing to publish");
    for (let i = 0; i < 12; i++) await log.append(entry(i));
    assert.equal(await log.signedTreeHead(), null);
    const cp = await log.checkpoint();
    assert.equal(cp?.upTo, 12);
    assert.equal(await log.checkpoint(), null, "nothing new: no second checkpoint of one head");
    await log.append(entry(12));
    const head = await log.signedTreeHead();
    assert.equal(head?.size, 12, "entries after the newest checkpoint are not in the signed tree");
    assert.equal(head?.note, cp?.note);
    assert.equal(await log.origin(), checkpointBody(cp as Checkpoint)?.origin);
    const lines = await log.entryLines(0, 12);
    assert.equal(lines.length, 12);
    const leaves = [...(await log.leafHashes(0, 12, 5)), ...(await log.leafHashes(5, 12))];
    assert.deepEqual(
      leaves.map((l) => l.toString("hex")),
      lines.map((l) => leafHashOfText(l).toString("hex")),
    );
    assert.ok(treeRoot(leaves).equals(checkpointBody(cp as Checkpoint)?.root as Buffer));
    await log.close();
  });
});
