/**
 * The audit log on PostgreSQL: many writers (separate processes' pools) on one chain, an
 * export `verifyAuditLog` accepts (and a tampered one it refuses), entries built exactly as
 * the file log builds them, and failures refused rather than lost.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { AuditLog } from "../src/audit/log.js";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { verifyAuditLog } from "../src/audit/verify.js";
import { isAztpError } from "../src/errors.js";
import type { AuditWriterOptions } from "../src/audit/writer.js";
import { PgAuditLog } from "../src/store/postgres/audit-log.js";
import { migrate } from "../src/store/postgres/migrations.js";
import { createPool, type PgConnection } from "../src/store/postgres/pool.js";
import { newTestKeys, testSigner, testVerifier } from "./helpers/audit-signer.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

function sample(i: number, overrides: Partial<AuditEntryInput> = {}): AuditEntryInput {
  return {
    side: i % 3 === 0 ? "caller" : "callee",
    caller: `spiffe://example.org/workload/production/node/agent-${i % 2}`,
    callerVerified: i % 5 !== 0,
    callee: "spiffe://example.org/workload/production/node/tools",
    tool: i % 2 === 0 ? "search" : "fetch",
    argsDigest: `args-digest-${i}`,
    args: { query: `q${i}`, password: "hunter2" },
    delegation: ["spiffe://example.org/workload/production/node/parent"],
    decision: i % 4 === 3 ? "deny" : "allow",
    reason: i % 4 === 3 ? "ERR_POLICY_DENIED" : undefined,
    outcome: i % 4 === 3 ? "denied" : "ok",
    resultDigest: `result-digest-${i}`,
    durationMs: 1.5 + i,
    jti: `jti-${i}`,
    traceId: `trace-${i}`,
    token: `token.${i}.sig`,
    receipt: `receipt.${i}.sig`,
    ...overrides,
  };
}

/** A connection of its own (as another process would have) on a migrated database. */
async function connect(t: TestContext, url: string): Promise<PgConnection> {
  const conn = createPool(url);
  t.after(() => conn.pool.end());
  await migrate(conn);
  return conn;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), "aztp-pg-audit-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe("PostgreSQL audit log", () => {
  it("3 writers with their own pools append 300 entries each at once: 900 entries, one chain that verifies", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const keys = [1, 2, 3].map((n) => newTestKeys(`spiffe://example.org/replica-${n}`));
    const logs = await Promise.all(
      keys.map(async (k) => new PgAuditLog(await connect(t, url), { signer: testSigner(k), checkpointEvery: 100 })),
    );
    const acked = await Promise.all(
      logs.map(async (log, w) => {
        const seqs: number[] = [];
        // 30 appenders per writer, 10 entries each: batches of every writer interleave.
        await Promise.all(
          Array.from({ length: 30 }, async (_, a) => {
            for (let i = 0; i < 10; i++) seqs.push((await log.append(sample(w * 1000 + a * 10 + i))).seq);
          }),
        );
        return seqs;
      }),
    );
    const columns = createPool(url);
    t.after(() => columns.pool.end());
    const mismatched = await columns.pool.query(
      "SELECT count(*)::int AS n FROM aztp_audit WHERE entry::json->>'hash' <> hash OR entry::json->>'prev' <> prev OR (entry::json->>'seq')::bigint <> seq",
    );
    assert.equal(mismatched.rows[0].n, 0, "the seq, hash and prev columns are the entry's own");
    const all = acked.flat().sort((a, b) => a - b);
    assert.deepEqual(
      all,
      Array.from({ length: 900 }, (_, i) => i + 1),
      "every acknowledged entry has its own seq, 1..900",
    );
    await Promise.all(logs.map((l) => l.close()));
    const file = join(tempDir(t), "export.jsonl");
    const exported = await (logs[0] as PgAuditLog).exportJsonl(file);
    assert.equal(exported.entries, 900);
    assert.ok(
      exported.checkpoints >= 8,
      `a checkpoint once 100 entries are uncovered (batches overshoot), and one at close: ${exported.checkpoints}`,
    );
    const result = await verifyAuditLog(file, { verifier: testVerifier(...keys) });
    assert.equal(result.ok, true, JSON.stringify(result.firstBad));
    assert.equal(result.entries, 900);
    assert.equal(result.uncovered, 0, "close() checkpointed the rest");
    assert.equal(result.witness, "checked");
    const signers = new Set(
      readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.includes('"checkpoint"'))
        .map((l) => (JSON.parse(l) as { signer: string }).signer),
    );
    assert.ok(signers.size >= 2, `checkpoints by several writers: ${[...signers].join(", ")}`);
  });

  it("a writer whose known head went stale (another wrote in between) chains on the new head, never forks", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const [a, b] = [new PgAuditLog(await connect(t, url)), new PgAuditLog(await connect(t, url))];
    const order = [a, a, b, a, b, b, a, a, b, a];
    const seqs: number[] = [];
    for (const [i, w] of order.entries()) seqs.push((await w.append(sample(i))).seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: order.length }, (_, i) => i + 1),
    );
    const file = join(tempDir(t), "export.jsonl");
    await a.exportJsonl(file);
    const result = await verifyAuditLog(file);
    assert.equal(result.ok, true, JSON.stringify(result.firstBad));
    assert.equal(result.entries, order.length);
  });

  it("a tampered export fails verification, naming the entry", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const log = new PgAuditLog(await connect(t, url));
    for (let i = 0; i < 20; i++) await log.append(sample(i));
    const file = join(tempDir(t), "export.jsonl");
    await log.exportJsonl(file);
    assert.equal((await verifyAuditLog(file)).ok, true);
    const lines = readFileSync(file, "utf8").split("\n");
    lines[6] = (lines[6] as string)
      .replace('"decision":"allow"', '"decision":"deny"')
      .replace('"decision":"deny"', '"decision":"audit-only"');
    writeFileSync(file, lines.join("\n"));
    const bad = await verifyAuditLog(file);
    assert.equal(bad.ok, false);
    assert.equal(bad.firstBad?.seq, 7);
    assert.equal(bad.firstBad?.reason, "hash-mismatch");
  });

  it("entries are built byte for byte as the file log builds them (redaction, hostile text, omissions)", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const dir = tempDir(t);
    const options = { includeArgs: true, redactFields: ["password"] } satisfies AuditWriterOptions;
    const fileLog = await AuditLog.open(join(dir, "file.jsonl"), options);
    const pgLog = new PgAuditLog(await connect(t, url), options);
    const time = "2026-12-01T12:00:00.000Z";
    const inputs: AuditEntryInput[] = [
      sample(1, { time }),
      sample(2, {
        time,
        tool: "\ud800lone",
        caller: "x".repeat(5000),
        delegation: Array.from({ length: 70 }, (_, i) => `spiffe://d/${i}`),
      }),
      sample(3, {
        time,
        args: { deep: { password: "p", list: [1, 2, { password: "q" }] }, huge: "y".repeat(100_000) },
      }),
      {
        side: "callee",
        caller: "unknown",
        callerVerified: false,
        callee: "c",
        tool: "t",
        argsDigest: "unencodable",
        decision: "deny",
        time,
      },
    ];
    for (const input of inputs) {
      const [a, b] = await Promise.all([fileLog.append(input), pgLog.append(input)]);
      assert.deepEqual(b, a);
    }
    await fileLog.close();
    const out = join(dir, "pg.jsonl");
    await pgLog.exportJsonl(out);
    assert.equal(readFileSync(out, "utf8"), readFileSync(join(dir, "file.jsonl"), "utf8"));
  });

  it("query: entries after a seq, with a limit", async (t) => {
    if (skipWithoutPg(t)) return;
    const log = new PgAuditLog(await connect(t, (await pgDatabase(t)) as string));
    await Promise.all(Array.from({ length: 10 }, (_, i) => log.append(sample(i))));
    assert.deepEqual(
      (await log.query(3, 4)).map((e) => e.seq),
      [4, 5, 6, 7],
    );
    assert.deepEqual(
      (await log.query(8)).map((e) => e.seq),
      [9, 10],
    );
    assert.equal((await log.head()).seq, 10);
  });

  it("an unreachable database: appends reject (nothing acknowledged), writable turns false, recover() says false", async (t) => {
    const conn = createPool("postgres://postgres@127.0.0.1:1/nowhere", { connectionTimeoutMillis: 2000 });
    t.after(() => conn.pool.end());
    const log = new PgAuditLog(conn, { recoverIntervalMs: 0 });
    await assert.rejects(
      log.append(sample(1)),
      (e) => isAztpError(e) && e.code === "ERR_AUDIT_IO_FAILED" && /127\.0\.0\.1:1/.test(e.message),
    );
    assert.equal(log.writable, false);
    await assert.rejects(log.append(sample(2)), (e) => isAztpError(e) && e.code === "ERR_AUDIT_IO_FAILED");
    assert.equal(await log.recover(), false);
    await log.close();
    await assert.rejects(log.append(sample(3)), (e) => isAztpError(e) && e.code === "ERR_AUDIT_CLOSED");
  });
});
