/**
 * pg_audit_append_per_s: durable audit appends to PostgreSQL through PgAuditLog, batched by
 * group commit (each batch one transaction under the chain's advisory lock, acknowledged after
 * COMMIT), with many appenders at once as a busy `aztp serve` replica has them.
 *
 *   AZTP_BENCH_PG_URL=postgres://postgres@127.0.0.1:5441/postgres tsx bench/pg-audit.ts
 *
 * It runs on a database of its own (created and dropped on that server), so it never touches
 * real data. The server's own durability settings apply: with fsync=off (a throwaway CI
 * server) the figure is higher than on a real one; the output says which it measured.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import pg from "pg";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { PgAuditLog } from "../src/store/postgres/audit-log.js";
import { migrate } from "../src/store/postgres/migrations.js";
import { createPool } from "../src/store/postgres/pool.js";

export interface PgAuditBenchOptions {
  readonly entries?: number;
  readonly appenders?: number;
}

function entry(i: number): AuditEntryInput {
  return {
    side: "callee",
    caller: "spiffe://bench.example/workload/production/node/agent",
    callerVerified: true,
    callee: "spiffe://bench.example/workload/production/node/tools",
    tool: "search",
    argsDigest: `sha256-${i.toString(16).padStart(12, "0")}`,
    decision: "allow",
    outcome: "ok",
    durationMs: 1.25,
    jti: `jti-${i}`,
  };
}

export async function benchPgAudit(
  url: string,
  options: PgAuditBenchOptions = {},
): Promise<{ pg_audit_append_per_s: number }> {
  const entries = options.entries ?? 20_000;
  const appenders = options.appenders ?? 64;
  const db = `aztp_bench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  const target = new URL(url);
  target.pathname = `/${db}`;
  const conn = createPool(target.toString());
  try {
    await migrate(conn);
    const fsync = (
      await conn.pool.query<{ fsync: string; synchronous_commit: string }>(
        "SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit",
      )
    ).rows[0];
    const log = new PgAuditLog(conn);
    // Warm-up: connections, plans, JIT.
    await Promise.all(Array.from({ length: 500 }, (_, i) => log.append(entry(i))));
    let next = 0;
    const cpu = process.cpuUsage();
    const start = performance.now();
    await Promise.all(
      Array.from({ length: appenders }, async () => {
        while (next < entries) await log.append(entry(next++));
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    const used = process.cpuUsage(cpu);
    const nodeCpu = (used.user + used.system) / 1e6;
    await log.close();
    const perS = Math.round(entries / seconds);
    process.stderr.write(
      `pg_audit_append_per_s: ${perS} (${entries} durable appends, ${appenders} appenders, ${seconds.toFixed(2)} s, of which this process used ${nodeCpu.toFixed(2)} s of CPU; server fsync=${fsync?.fsync}, synchronous_commit=${fsync?.synchronous_commit})\n`,
    );
    return { pg_audit_append_per_s: perS };
  } finally {
    await conn.pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const url = process.env.AZTP_BENCH_PG_URL ?? process.env.AZTP_TEST_PG_URL;
  if (url === undefined || url === "") {
    process.stderr.write("set AZTP_BENCH_PG_URL (or AZTP_TEST_PG_URL) to a PostgreSQL server to bench against\n");
    process.exit(2);
  }
  const result = await benchPgAudit(url);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
