/**
 * Child process for the audit crash test: appends under load (64 appends in flight, signed
 * checkpoints every 100 entries) and prints the seq of every acknowledged entry on its own
 * line, until the parent kills it with SIGKILL. stdout to a pipe is synchronous on Linux, so a
 * printed seq was acknowledged before the parent could read it.
 *
 *   AUDIT_SIGNER_ID=... AUDIT_SIGNER_KEY=<PKCS#8 PEM> [AUDIT_DURABILITY=write|fsync] node --import tsx audit-crash-writer.ts <log>
 */
import { AuditLog } from "../../src/audit/index.js";
import { testKeysFromPem, testSigner } from "./audit-signer.js";

const path = process.argv[2];
const id = process.env.AUDIT_SIGNER_ID;
const pem = process.env.AUDIT_SIGNER_KEY;
if (path === undefined || id === undefined || pem === undefined) {
  process.stderr.write("usage: AUDIT_SIGNER_ID=.. AUDIT_SIGNER_KEY=.. audit-crash-writer.ts <log>\n");
  process.exit(2);
}

const durability = process.env.AUDIT_DURABILITY === "fsync" ? "fsync" : "write";
const log = await AuditLog.open(path, {
  signer: testSigner(testKeysFromPem(id, pem)),
  checkpointEvery: 100,
  durability,
});
process.stdout.write("ready\n");

async function worker(w: number): Promise<never> {
  for (let i = 0; ; i++) {
    const entry = await log.append({
      side: "callee",
      caller: `spiffe://example.org/agent-${w}`,
      callerVerified: true,
      callee: "spiffe://example.org/tool-server",
      tool: "search",
      argsDigest: `digest-${w}-${i}`,
      decision: i % 10 === 0 ? "deny" : "allow",
      outcome: i % 10 === 0 ? "denied" : "ok",
      token: "t".repeat(300 + ((w * 7 + i) % 200)), // varied line lengths
    });
    process.stdout.write(`${entry.seq}\n`);
  }
}

await Promise.all(Array.from({ length: 64 }, (_, w) => worker(w)));
