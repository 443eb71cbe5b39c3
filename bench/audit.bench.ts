/**
 * Audit log throughput: durable appends with group commit (default batch window, 256 appends
 * in flight, checkpoints signed every 1000 entries, each with its C2SP note over the Merkle tree
 * the writer keeps) and streaming verification of the result (chain, tree, notes). Entries are
 * callee-side records of realistic size: SPIFFE IDs, digests, a token with an x5c chain and a
 * receipt.
 *
 * audit_inclusion_proof_us: one inclusion proof in the tree of a 1,000,000-entry log kept in
 * memory (what `aztp audit prove` and the tile server hold), averaged over 20,000 proofs of
 * random entries; audit_inclusion_proof_hashes is its size (O(log n)).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { performance } from "node:perf_hooks";
import {
  AuditLog,
  leafHashOfText,
  MerkleTree,
  verifyAuditLog,
  verifyInclusion,
  type AuditEntryInput,
  type CheckpointSigner,
} from "../src/audit/index.js";
import { round, type Figures } from "./harness.js";

const IN_FLIGHT = 256;
const APPEND_MS = 1500;

function signer(): CheckpointSigner {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const header = Buffer.from(JSON.stringify({ alg: "ES256", kid: "bench" })).toString("base64url");
  const spki = publicKey.export({ type: "spki", format: "der" });
  return {
    id: "spiffe://example.org/bench",
    signNote: (text) => ({ spki, signature: sign("sha256", text, { key: privateKey, dsaEncoding: "ieee-p1363" }) }),
    sign: (payload) =>
      `${header}..${sign("sha256", Buffer.from(`${header}.${payload.toString("base64url")}`), { key: privateKey, dsaEncoding: "ieee-p1363" }).toString("base64url")}`,
  };
}

function sampleEntry(i: number): AuditEntryInput {
  const b64 = (n: number) => randomBytes(n).toString("base64url");
  return {
    side: "callee",
    caller: `spiffe://example.org/workload/production/node/agent-${i % 7}`,
    callerVerified: true,
    callee: "spiffe://example.org/workload/production/node/tool-server",
    tool: `tool_${i % 5}`,
    argsDigest: b64(32),
    decision: "allow",
    outcome: "ok",
    resultDigest: b64(32),
    durationMs: 3.25,
    jti: b64(16),
    traceId: randomBytes(16).toString("hex"),
    token: `${b64(60)}.${b64(220)}.${b64(64)}`.padEnd(1400, "A"), // header with x5c, claims, signature
    receipt: `${b64(40)}.${b64(200)}.${b64(64)}`,
  };
}

export default async function auditBench(): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), "aztp-audit-bench-"));
  try {
    const path = join(dir, "audit.jsonl");
    const samples = Array.from({ length: 64 }, (_, i) => sampleEntry(i));
    const log = await AuditLog.open(path, { signer: signer(), checkpointEvery: 1000 });
    // Warm-up, then 256 workers each appending as soon as its previous append is durable.
    await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => log.append(samples[i % samples.length]!)));
    let appended = 0;
    const start = performance.now();
    const end = start + APPEND_MS;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, w) => {
        while (performance.now() < end) {
          await log.append(samples[(w + appended) % samples.length]!);
          appended++;
        }
      }),
    );
    const appendSeconds = (performance.now() - start) / 1000;
    await log.close();

    const verifyStart = performance.now();
    const result = await verifyAuditLog(path);
    const verifySeconds = (performance.now() - verifyStart) / 1000;
    if (!result.ok) throw new Error(`benchmark log does not verify: ${result.firstBad?.message}`);
    if (result.tree.state !== "proven") throw new Error("benchmark log has no signed Merkle tree");
    return {
      audit_append_per_s: round(appended / appendSeconds, 0),
      audit_verify_per_s: round(result.entries / verifySeconds, 0),
      ...inclusionProofs(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const PROOF_TREE = 1_000_000;
const PROOFS = 20_000;

function inclusionProofs(): Figures {
  const tree = new MerkleTree();
  for (let i = 0; i < PROOF_TREE; i++) tree.push(leafHashOfText(`{"seq":${i + 1},"tool":"bench"}`));
  const root = tree.root();
  const picks = Array.from({ length: PROOFS }, () => Math.floor(Math.random() * PROOF_TREE));
  let hashes = 0;
  const start = performance.now();
  for (const i of picks) hashes += tree.inclusionProof(i).length;
  const us = ((performance.now() - start) * 1000) / PROOFS;
  // The proofs are real: one checked against the root.
  const i = picks[0] as number;
  if (!verifyInclusion(leafHashOfText(`{"seq":${i + 1},"tool":"bench"}`), i, PROOF_TREE, tree.inclusionProof(i), root))
    throw new Error("benchmark inclusion proof does not verify");
  return { audit_inclusion_proof_us: round(us, 1), audit_inclusion_proof_hashes: round(hashes / PROOFS, 1) };
}
