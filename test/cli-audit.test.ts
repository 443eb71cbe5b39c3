/**
 * `aztp audit ...` as an auditor runs it: real processes on real logs (the demo's, and ones
 * written here), with --json, and the exit codes (0 ok, 1 a negative verdict or a failure,
 * 2 a usage error).
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import aztp from "aztp-client";
import { AuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { svidCheckpointSigner } from "../src/invocation/index.js";
import {
  aztpCli as aztpCliAt,
  assertExit,
  ROOT,
  runTs as runTsAt,
  tempDir,
  type CliResult,
  type RunOptions,
} from "./helpers/authority-util.js";

// Several CLIs run side by side here, each a tsx start-up: on a busy machine one can take well
// over the helpers' default 30 s, which is a kill, not a verdict.
const SLOW = { timeoutMs: 180_000 };
const aztpCli = (home: string | undefined, args: string[]) => aztpCliAt(home, args, SLOW);
const runTs = (script: string, args: string[] = [], options: RunOptions = {}) =>
  runTsAt(script, args, { ...SLOW, ...options });

interface EntryJson {
  seq: number;
  tool: string;
  reason?: string;
  caller: string;
  callerVerified: boolean;
  decision: string;
}

describe("aztp audit on the demo's log", () => {
  it("--caller … --decision deny finds every denied call of that caller, verified or claimed; --verified-only narrows it; stats keep them apart", async (t) => {
    const home = tempDir(t);
    const demo = await runTs(join(ROOT, "examples/demo.ts"), [], {
      env: { AZTP_HOME: home, AZTP_API_KEY: undefined, AZTP_TRUST_DOMAIN: undefined },
      timeoutMs: 300_000,
    });
    assert.equal(demo.code, 0, `${demo.stdout}\n${demo.stderr}`);
    const server = join(home, "audit", "docs-server.jsonl");
    const agent = "aztp://aztp.local/workload/production/node/orchestrator";
    const [denied, verifiedOnly, stats, human] = await Promise.all([
      aztpCli(home, ["audit", "query", server, "--caller", agent, "--decision", "deny"]),
      aztpCli(home, ["audit", "query", server, "--caller", agent, "--decision", "deny", "--verified-only"]),
      aztpCli(home, ["audit", "stats", server]),
      runTs(join(ROOT, "src/cli/main.ts"), [
        "--home",
        home,
        "audit",
        "query",
        server,
        "--caller",
        agent,
        "--decision",
        "deny",
      ]),
    ]);
    assertExit(denied, 0, "query");
    assert.deepEqual(
      (denied.json as EntryJson[]).map((e) => [e.tool, e.reason, e.callerVerified]),
      [
        ["delete_doc", "ERR_POLICY_DENIED", true],
        ["search_docs", "ERR_INVOCATION_ARGS_MISMATCH", false],
        ["search_docs", "ERR_INVOCATION_REPLAYED", false],
      ],
    );
    for (const e of denied.json as EntryJson[])
      assert.equal(e.caller, "spiffe://aztp.local/workload/production/node/orchestrator", "the ID, without a prefix");
    assertExit(verifiedOnly, 0, "query --verified-only");
    assert.deepEqual(
      (verifiedOnly.json as EntryJson[]).map((e) => e.tool),
      ["delete_doc"],
    );
    assertExit(stats, 0, "stats");
    assert.deepEqual(stats.json.callers, { verified: 4, claimed: 3 });
    const rows = (stats.json.calls as { caller: string; callerVerified: boolean; tool: string; total: number }[]).map(
      (c) => [c.tool, c.callerVerified, c.total],
    );
    // The orchestrator's and the researcher's calls (two searches: its own task, and alice's, for
    // her through the orchestrator); the refused tokens' callers only claimed.
    assert.deepEqual(rows.sort(), [
      ["delete_doc", false, 1],
      ["delete_doc", true, 1],
      ["search_docs", false, 2],
      ["search_docs", true, 1],
      ["search_docs", true, 2],
    ]);
    assertExit(human, 0, "query (for people)");
    assert.equal((human.stdout.match(/orchestrator \(claimed, not verified\)/g) ?? []).length, 2, human.stdout);
  });
});

/** A log signed by a writer of the authority in `home`, with its bundle exported as JSON and PEM. */
async function signedLog(
  t: TestContext,
): Promise<{ home: string; log: string; bundleJson: string; bundlePem: string; dir: string }> {
  const home = tempDir(t);
  const dir = tempDir(t, "audit");
  const client = aztp.initialize({ home });
  t.after(() => client.close());
  const writer = await client.secureConnect({}, "writer");
  const log = join(dir, "audit.jsonl");
  const audit = await AuditLog.open(log, {
    signer: svidCheckpointSigner(writer.identity),
    checkpointEvery: 3,
    onWarning: () => undefined,
  });
  for (const decision of ["allow", "deny", "allow", "allow"] as const) {
    await audit.append({
      side: "callee",
      caller: "spiffe://aztp.local/workload/production/node/caller",
      callerVerified: true,
      callee: writer.identity.spiffeId,
      tool: "search",
      argsDigest: "d",
      decision,
    });
  }
  await audit.close();
  const [json, pem] = await Promise.all([aztpCli(home, ["bundle"]), aztpCli(home, ["bundle", "--format", "pem"])]);
  assertExit(json, 0, "bundle");
  assertExit(pem, 0, "bundle --format pem");
  const bundleJson = join(dir, "bundle.json");
  const bundlePem = join(dir, "bundle.pem");
  writeFileSync(bundleJson, json.stdout);
  writeFileSync(bundlePem, pem.stdout);
  return { home, log, bundleJson, bundlePem, dir };
}

/** Another authority of the same trust domain: its bundle holds other keys. */
async function otherAuthority(t: TestContext, dir: string): Promise<{ home: string; bundle: string }> {
  const home = join(tempDir(t), "other");
  assertExit(await aztpCli(home, ["init", "--trust-domain", "aztp.local"]), 0, "init");
  const b = await aztpCli(home, ["bundle"]);
  assertExit(b, 0, "bundle");
  const bundle = join(dir, "other-bundle.json");
  writeFileSync(bundle, b.stdout);
  return { home, bundle };
}

function assertError(r: CliResult, exit: number, code: string, what: string): void {
  assertExit(r, exit, what);
  assert.equal(r.json?.error?.code, code, `${what}: ${r.stdout}${r.stderr}`);
}

describe("aztp audit verify needs a key", () => {
  it("checks checkpoint signatures against --bundle (SPIFFE JSON or PEM roots) or the authority in --home, and says which", async (t) => {
    const { home, log, bundleJson, bundlePem } = await signedLog(t);
    const empty = tempDir(t, "empty-home");
    const [byJson, byPem, byHome, human] = await Promise.all([
      aztpCli(empty, ["audit", "verify", log, "--bundle", bundleJson]),
      aztpCli(empty, ["audit", "verify", log, "--bundle", bundlePem]),
      aztpCli(home, ["audit", "verify", log]),
      runTs(join(ROOT, "src/cli/main.ts"), ["--home", empty, "audit", "verify", log, "--bundle", bundleJson]),
    ]);
    for (const [r, source] of [
      [byJson, `bundle ${bundleJson}`],
      [byPem, `bundle ${bundlePem}`],
      [byHome, `the authority in ${home}`],
    ] as const) {
      assertExit(r, 0, `verify against ${source}`);
      assert.deepEqual(
        [r.json.ok, r.json.signaturesChecked, r.json.signatures, r.json.trustSource, r.json.checkpoints],
        [true, true, "checked", source, 2],
      );
    }
    assertExit(human, 0, "verify (for people)");
    assert.ok(
      human.stdout.startsWith(
        `ok: 4 entries, 2 checkpoints, signatures checked, witness checked, Merkle tree of 4 entries signed (origin aztp.local/workload/production/node/writer/audit/audit); keys from bundle ${bundleJson}`,
      ),
      human.stdout,
    );
  });

  it("with neither --bundle nor an authority in --home it exits 2 and says what to pass; --no-signatures verifies the chain and says signatures were not checked", async (t) => {
    const { log } = await signedLog(t);
    const empty = tempDir(t, "empty-home");
    const [neither, skipped, skippedHuman, both] = await Promise.all([
      aztpCli(empty, ["audit", "verify", log]),
      aztpCli(empty, ["audit", "verify", log, "--no-signatures"]),
      runTs(join(ROOT, "src/cli/main.ts"), ["--home", empty, "audit", "verify", log, "--no-signatures"]),
      aztpCli(empty, ["audit", "verify", log, "--no-signatures", "--bundle", "b.json"]),
    ]);
    assertExit(neither, 2, "verify without a trust source");
    assert.notEqual(neither.json?.ok, true, "no verdict is printed");
    assert.match(neither.stderr, /--bundle FILE/);
    assert.match(neither.stderr, /--home DIR/);
    assert.match(neither.stderr, /--no-signatures/);
    assertExit(skipped, 0, "verify --no-signatures");
    assert.deepEqual(
      [skipped.json.ok, skipped.json.signaturesChecked, skipped.json.signatures, skipped.json.trustSource],
      [true, false, "skipped", null],
    );
    assertExit(skippedHuman, 0, "verify --no-signatures (for people)");
    assert.match(skippedHuman.stdout, /^ok: 4 entries, 2 checkpoints, signatures NOT checked \(--no-signatures\)/);
    assertExit(both, 2, "--bundle with --no-signatures");
  });

  it("a signature that does not verify is reported naming the bundle or the home it was checked against", async (t) => {
    const { log, dir } = await signedLog(t);
    const other = await otherAuthority(t, dir);
    const [byBundle, byHome] = await Promise.all([
      aztpCli(other.home, ["audit", "verify", log, "--bundle", other.bundle]),
      aztpCli(other.home, ["audit", "verify", log]),
    ]);
    for (const [r, source] of [
      [byBundle, `bundle ${other.bundle}`],
      [byHome, `the authority in ${other.home}`],
    ] as const) {
      assertExit(r, 1, `verify against ${source}`);
      assert.equal(r.json.ok, false);
      assert.equal(r.json.firstBad.reason, "checkpoint-signature");
      assert.ok(r.json.firstBad.message.includes(`(checked against ${source})`), r.json.firstBad.message);
    }
  });
});

describe("aztp audit exit codes", () => {
  it("a failure that is not a usage error exits 1 with its code; a bad option value exits 2", async (t) => {
    const dir = tempDir(t, "audit");
    const broken = join(dir, "broken.jsonl");
    writeFileSync(broken, "not json\n");
    const missing = join(dir, "missing.jsonl");
    const [verifyMissing, queryMissing, statsMissing, tailMissing, statsBroken, badCallee] = await Promise.all([
      aztpCli(dir, ["audit", "verify", missing, "--no-signatures"]),
      aztpCli(dir, ["audit", "query", missing]),
      aztpCli(dir, ["audit", "stats", missing]),
      aztpCli(dir, ["audit", "tail", missing]),
      aztpCli(dir, ["audit", "stats", broken]),
      aztpCli(dir, ["audit", "query", broken, "--callee", "not an id"]),
    ]);
    assertError(verifyMissing, 1, ErrorCodes.AUDIT_IO_FAILED, "verify of a missing log");
    assertError(queryMissing, 1, ErrorCodes.AUDIT_IO_FAILED, "query of a missing log");
    assertError(statsMissing, 1, ErrorCodes.AUDIT_IO_FAILED, "stats of a missing log");
    assertError(tailMissing, 1, ErrorCodes.AUDIT_IO_FAILED, "tail of a missing log");
    assertError(statsBroken, 1, ErrorCodes.AUDIT_CORRUPT, "stats of a broken log");
    assertExit(badCallee, 2, "--callee that is not an ID");
    assert.match(badCallee.stderr, /--callee must be a SPIFFE or AZTP ID/);
  });
});
