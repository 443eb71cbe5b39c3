/**
 * PostgreSQL for tests: AZTP_TEST_PG_URL names a server (.ci/run starts a throwaway one);
 * each `pgDatabase(t)` is a fresh database on it, dropped when the test ends. Without the
 * variable, PostgreSQL tests skip, saying why, and the file says once which ones it skipped.
 */
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import pg from "pg";

export const PG_URL: string | undefined =
  process.env.AZTP_TEST_PG_URL === "" ? undefined : process.env.AZTP_TEST_PG_URL;
export const NO_PG = "no PostgreSQL: set AZTP_TEST_PG_URL (.ci/run does)";

const skipped: string[] = [];
let summaryRegistered = false;

/** Skips `t` (returning true) when there is no PostgreSQL to test against. */
export function skipWithoutPg(t: TestContext): boolean {
  if (PG_URL !== undefined) return false;
  t.skip(NO_PG);
  skipped.push(t.fullName);
  if (!summaryRegistered) {
    summaryRegistered = true;
    // At exit, once the file's every test has run (or skipped): one line naming them all.
    process.once("exit", () => {
      process.stderr.write(
        `skipped ${skipped.length} PostgreSQL test(s) (${NO_PG}):\n${skipped.map((n) => `  ${n}`).join("\n")}\n`,
      );
    });
  }
  return true;
}

/** The URL of `base` with another database name. */
export function withDatabase(base: string, database: string): string {
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * A fresh, empty database for this test (dropped after it), or undefined without
 * AZTP_TEST_PG_URL (call skipWithoutPg first).
 */
export async function pgDatabase(t: TestContext): Promise<string | undefined> {
  if (PG_URL === undefined) return undefined;
  const name = `aztp_t_${randomBytes(6).toString("hex")}`;
  await admin(async (c) => {
    await c.query(`CREATE DATABASE ${name}`);
  });
  t.after(() =>
    admin(async (c) => {
      // FORCE: a test that failed may have left connections open.
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }),
  );
  return withDatabase(PG_URL, name);
}

async function admin(fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  client.on("error", () => undefined);
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
