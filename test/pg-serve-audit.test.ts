/**
 * `aztp serve` signs its shared audit log with the service's identity: two replicas on one
 * database append at once and cut checkpoints in turn (every N entries, every T seconds), each the
 * C2SP checkpoint of the tree of what it covers and all consistent; `aztp audit export` carries
 * them, so `aztp audit verify --bundle` proves the honest export and catches a cut of its newest
 * entries, with or without the trailing checkpoint.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import pg from "pg";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend, type ServeAuditOptions } from "../src/serve/open.js";
import { startServe, type RunningServe } from "../src/serve/server.js";
import { openPostgresStores } from "../src/store/postgres/index.js";
import { auditRows, checkTree, x5cKeyOf } from "./helpers/audit-tree.js";
import { assertExit, aztpCli, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { serveRequest } from "./helpers/serve-util.js";

const TD = "pg-serve-audit.test";

interface Replica {
  running: RunningServe;
  logs: Array<Record<string, unknown>>;
}

async function replica(t: TestContext, url: string, kek: Buffer, audit: ServeAuditOptions): Promise<Replica> {
  const logs: Array<Record<string, unknown>> = [];
  const backend = await openServeBackend(url, { kek, createTrustDomain: TD, audit });
  const running = await startServe({
    backend,
    host: "127.0.0.1",
    port: 0,
    logger: jsonLogger("info", (line) => void logs.push(JSON.parse(line) as Record<string, unknown>)),
  });
  t.after(() => running.stop());
  return { running, logs };
}

function entry(i: number): AuditEntryInput {
  return {
    side: "callee",
    caller: `spiffe://${TD}/workload/production/node/agent-${i % 3}`,
    callerVerified: true,
    callee: `spiffe://${TD}/workload/production/node/tools`,
    tool: `tool-${i}`,
    argsDigest: `digest-${i}`,
    decision: "allow",
    outcome: "ok",
  };
}

async function post(r: RunningServe, key: string, entries: AuditEntryInput[]): Promise<void> {
  const answer = await serveRequest(r.url, "/v1/audit", { ca: r.bundlePem(), key, body: { entries } });
  assert.equal(answer.status, 200, answer.text);
}

async function pool(t: TestContext, url: string): Promise<pg.Pool> {
  const p = new pg.Pool({ connectionString: url });
  p.on("error", () => undefined); // the database is dropped when the test ends
  t.after(() => p.end());
  return p;
}

describe("aztp serve signs its shared audit log", () => {
  it("two replicas append at once: checkpoints by both, every N entries and every T seconds, in order, each the tree of what it covers, all consistent", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const audit = { checkpointEvery: 6, checkpointIntervalSeconds: 0.25 };
    const [a, b] = await Promise.all([replica(t, url, kek, audit), replica(t, url, kek, audit)]);
    const stores = await openPostgresStores(url, { kek });
    t.after(() => stores.close());
    const { key } = await stores.apiKeys.create({ name: "test" });

    for (const r of [a, b]) {
      const said = r.logs.find((l) => l.msg === "audit log signed");
      assert.ok(said !== undefined, `the start says the log is signed: ${JSON.stringify(r.logs.map((l) => l.msg))}`);
      assert.equal(said.signer, `spiffe://${TD}/aztp/serve`);
      assert.match(String(said.origin), new RegExp(`^${TD}/aztp/serve/audit/`));
      assert.equal(said.checkpointEvery, 6);
      assert.equal(said.checkpointIntervalSeconds, 0.25);
    }

    // Batches through both replicas at once, with pauses that let the time trigger fire.
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        [a, b].flatMap((r, n) =>
          Array.from({ length: 3 }, (_, i) =>
            post(
              r.running,
              key,
              Array.from({ length: 2 }, (_, j) => entry(round * 100 + n * 10 + i * 2 + j)),
            ),
          ),
        ),
      );
      await new Promise((r) => setTimeout(r, round % 2 === 0 ? 10 : 400));
    }
    const db = await pool(t, url);
    const byTime = await auditRows(db);
    await Promise.all([a.running.stop(), b.running.stop()]);
    const { lines, checkpoints } = await auditRows(db);
    assert.equal(lines.length, 60);
    checkTree(lines, checkpoints, x5cKeyOf);
    assert.ok(
      checkpoints.every((c) => c.signer === `spiffe://${TD}/aztp/serve`),
      "signed by the service's identity",
    );
    assert.equal(checkpoints.at(-1)?.upTo, 60, "the replicas' stop covered the rest");
    const keys = new Set(checkpoints.map((c) => x5cKeyOf(c).toString("base64")));
    assert.ok(keys.size >= 2, "each replica signs with its own SVID key");
    assert.ok(byTime.checkpoints.length >= 2, "checkpoints were cut while the replicas ran");
  });

  it("the time trigger: a few entries through two replicas, far fewer than N, are covered within about T, by one checkpoint", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const audit = { checkpointEvery: 1000, checkpointIntervalSeconds: 0.3 };
    const [a, b] = await Promise.all([replica(t, url, kek, audit), replica(t, url, kek, audit)]);
    const stores = await openPostgresStores(url, { kek });
    t.after(() => stores.close());
    const { key } = await stores.apiKeys.create({ name: "test" });
    const db = await pool(t, url);
    const covered = async (n: number): Promise<void> => {
      const until = Date.now() + 3000;
      for (;;) {
        const upTo = Number(
          (await db.query("SELECT coalesce(max(up_to), 0) AS n FROM aztp_audit_checkpoints")).rows[0].n,
        );
        if (upTo === n) return;
        assert.ok(Date.now() < until, `a checkpoint of ${n} entries by time within 3 s (covered: ${upTo})`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await Promise.all([post(a.running, key, [entry(1), entry(2)]), post(b.running, key, [entry(3)])]);
    await covered(3);
    await post(b.running, key, [entry(4)]);
    await covered(4);
    await new Promise((r) => setTimeout(r, 700)); // nothing added: nothing more to cut, by either
    const { lines, checkpoints } = await auditRows(db);
    assert.deepEqual(
      checkpoints.map((c) => c.upTo),
      [3, 4],
      "one checkpoint per time, never two of one head",
    );
    await Promise.all([a.running.stop(), b.running.stop()]);
    checkTree(lines, checkpoints, x5cKeyOf);
  });

  it("`aztp audit export` carries the checkpoints: the honest export is proven with the bundle, a cut of its newest entries is caught with or without the trailing checkpoint", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const a = await replica(t, url, kek, { checkpointEvery: 5, checkpointIntervalSeconds: 0 });
    const stores = await openPostgresStores(url, { kek });
    t.after(() => stores.close());
    const { key } = await stores.apiKeys.create({ name: "test" });
    for (let i = 0; i < 4; i++) await post(a.running, key, [entry(i * 3), entry(i * 3 + 1), entry(i * 3 + 2)]);
    const dir = tempDir(t, "export");
    const bundle = join(dir, "bundle.pem");
    writeFileSync(bundle, a.running.bundlePem());
    await a.running.stop(); // its last checkpoint covers every entry

    const out = join(dir, "audit.jsonl");
    const exported = await aztpCli(undefined, ["audit", "export", "--store", url, "--out", out]);
    assertExit(exported, 0, "audit export");
    assert.equal(exported.json.entries, 12);
    const honest = await aztpCli(dir, ["audit", "verify", out, "--bundle", bundle]);
    assertExit(honest, 0, "audit verify of the honest export");
    assert.equal(honest.json.ok, true);
    assert.equal(honest.json.signatures, "checked");
    assert.equal(honest.json.witness, "checked");
    assert.equal(honest.json.uncovered, 0);
    assert.equal(honest.json.tree.state, "proven");
    assert.equal(honest.json.tree.size, 12);
    assert.equal(honest.json.tree.notesChecked, true);

    const lines = readFileSync(out, "utf8").split("\n").filter(Boolean);
    assert.match(lines.at(-1) as string, /"type":"checkpoint"/, "the export ends with the trailing checkpoint");
    const entryAt = lines.map((l, i) => (l.includes('"type":"checkpoint"') ? -1 : i)).filter((i) => i >= 0);
    const lastTwo = entryAt.slice(-2);
    const cuts: Array<{ what: string; keep: string[]; reason: string }> = [
      {
        what: "the newest two entries and the trailing checkpoint",
        keep: lines.slice(0, lastTwo[0]),
        reason: "truncated",
      },
      {
        what: "the newest two entries, the trailing checkpoint kept",
        keep: [...lines.slice(0, lastTwo[0]), lines.at(-1) as string],
        reason: "checkpoint-head",
      },
      { what: "the trailing checkpoint alone", keep: lines.slice(0, -1), reason: "truncated" },
    ];
    for (const cut of cuts) {
      const copy = join(dir, `cut-${cuts.indexOf(cut)}.jsonl`);
      writeFileSync(copy, `${cut.keep.join("\n")}\n`);
      writeFileSync(`${copy}.witness`, readFileSync(`${out}.witness`));
      const bad = await aztpCli(dir, ["audit", "verify", copy, "--bundle", bundle]);
      assertExit(bad, 1, `audit verify of an export cut of ${cut.what}`);
      assert.equal(bad.json.ok, false);
      assert.equal(bad.json.firstBad.reason, cut.reason, `${cut.what}: ${JSON.stringify(bad.json.firstBad)}`);
    }
  });

  it("refuses a checkpoint count below 1 and a negative interval at start, as usage errors; accepts an interval of 0 (no time trigger)", async (t) => {
    const dir = tempDir(t, "flags");
    for (const args of [
      ["--audit-checkpoint-every", "0"],
      ["--audit-checkpoint-every", "1.5"],
      ["--audit-checkpoint-interval", "-1"],
      ["--audit-checkpoint-interval", "soon"],
    ]) {
      const r = await aztpCli(dir, ["serve", "--store", dir, "--listen", "127.0.0.1:0", ...args]);
      assertExit(r, 2, `aztp serve ${args.join(" ")}`);
      assert.match(r.stderr + r.stdout, new RegExp(args[0] as string));
    }
    // Past the options, the start fails on what the folder lacks (no authority), not on the flag.
    const zero = await aztpCli(dir, [
      "serve",
      "--store",
      dir,
      "--listen",
      "127.0.0.1:0",
      "--audit-checkpoint-interval",
      "0",
    ]);
    assertExit(zero, 1, "aztp serve --audit-checkpoint-interval 0");
    assert.match(zero.stdout + zero.stderr, /ERR_AUTHORITY_NOT_INITIALIZED/);
  });
});
