/**
 * `aztp audit export --store postgres://… --out FILE`, then `aztp audit verify FILE`: an export
 * of a log many writers share verifies as a file log does, and a tampered one does not.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { PgAuditLog } from "../src/store/postgres/audit-log.js";
import { migrate } from "../src/store/postgres/migrations.js";
import { createPool } from "../src/store/postgres/pool.js";
import { newTestKeys, testSigner } from "./helpers/audit-signer.js";
import { assertExit, aztpCli, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

const entry = (i: number): AuditEntryInput => ({
  side: "callee",
  caller: "spiffe://example.org/a",
  callerVerified: true,
  callee: "spiffe://example.org/b",
  tool: `tool-${i}`,
  argsDigest: `d${i}`,
  decision: "allow",
  outcome: "ok",
});

describe("aztp audit export", () => {
  it("exports a PostgreSQL log that `aztp audit verify` accepts, and refuses a tampered copy", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const conn = createPool(url);
    t.after(() => conn.pool.end());
    await migrate(conn);
    const writers = [
      new PgAuditLog(conn, { signer: testSigner(newTestKeys("spiffe://example.org/r1")), checkpointEvery: 10 }),
      new PgAuditLog(conn),
    ];
    await Promise.all(Array.from({ length: 60 }, (_, i) => (writers[i % 2] as PgAuditLog).append(entry(i))));
    await Promise.all(writers.map((w) => w.close()));
    const dir = tempDir(t, "export");
    const out = join(dir, "audit.jsonl");
    const exported = await aztpCli(undefined, ["audit", "export", "--store", url, "--out", out]);
    assertExit(exported, 0, "audit export");
    assert.equal(exported.json.entries, 60);
    assert.ok(!exported.stdout.includes("password"), "no secret in the answer");
    const ok = await aztpCli(dir, ["audit", "verify", out, "--no-signatures"]);
    assertExit(ok, 0, "audit verify");
    assert.equal(ok.json.ok, true);
    assert.equal(ok.json.entries, 60);
    assert.equal(ok.json.witness, "checked");

    const lines = readFileSync(out, "utf8").split("\n");
    const at = lines.findIndex((l, i) => i >= 30 && l.includes('"tool":"tool-'));
    const edited = (lines[at] as string).replace(/"tool":"tool-\d+"/, '"tool":"rm -rf"');
    assert.notEqual(edited, lines[at]);
    lines[at] = edited;
    writeFileSync(out, lines.join("\n"));
    const bad = await aztpCli(dir, ["audit", "verify", out, "--no-signatures"]);
    assertExit(bad, 1, "audit verify of a tampered export");
    assert.equal(bad.json.ok, false);
    assert.equal(bad.json.firstBad.reason, "hash-mismatch");
  });

  it("refuses a store that is not a PostgreSQL URL, and names an unreachable one without its password", async (t) => {
    const dir = tempDir(t, "export");
    const notPg = await aztpCli(dir, ["audit", "export", "--store", dir, "--out", join(dir, "x.jsonl")]);
    assert.notEqual(notPg.code, 0);
    assert.match(notPg.stderr, /postgres:\/\//);
    const down = await aztpCli(dir, [
      "audit",
      "export",
      "--store",
      "postgres://u:s3cret@127.0.0.1:1/db",
      "--out",
      join(dir, "x.jsonl"),
    ]);
    assert.notEqual(down.code, 0);
    assert.match(down.stdout, /ERR_AUTHORITY_STORE_FAILED/);
    assert.ok(!`${down.stdout}${down.stderr}`.includes("s3cret"), `the password is never printed: ${down.stderr}`);
  });
});
