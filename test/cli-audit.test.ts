/**
 * `aztp audit ...` as an auditor runs it: real processes on real logs (the demo's, and ones
 * written here), with --json, and the exit codes (0 ok, 1 a negative verdict or a failure,
 * 2 a usage error).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { aztpCli, assertExit, ROOT, runTs, tempDir } from "./helpers/authority-util.js";

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
    const demo = await runTs(join(ROOT, "examples/demo.ts"), [], { env: { AZTP_HOME: home, AZTP_API_KEY: undefined, AZTP_TRUST_DOMAIN: undefined }, timeoutMs: 90_000 });
    assert.equal(demo.code, 0, `${demo.stdout}\n${demo.stderr}`);
    const server = join(home, "audit", "search-server.jsonl");
    const agent = "aztp://aztp.local/workload/production/node/research-agent";
    const [denied, verifiedOnly, stats, human] = await Promise.all([
      aztpCli(home, ["audit", "query", server, "--caller", agent, "--decision", "deny"]),
      aztpCli(home, ["audit", "query", server, "--caller", agent, "--decision", "deny", "--verified-only"]),
      aztpCli(home, ["audit", "stats", server]),
      runTs(join(ROOT, "src/cli/main.ts"), ["--home", home, "audit", "query", server, "--caller", agent, "--decision", "deny"]),
    ]);
    assertExit(denied, 0, "query");
    assert.deepEqual(
      (denied.json as EntryJson[]).map((e) => [e.tool, e.reason, e.callerVerified]),
      [
        ["delete_index", "ERR_POLICY_DENIED", true],
        ["web_search", "ERR_INVOCATION_ARGS_MISMATCH", false],
        ["web_search", "ERR_INVOCATION_REPLAYED", false],
      ],
    );
    for (const e of denied.json as EntryJson[]) assert.equal(e.caller, "spiffe://aztp.local/workload/production/node/research-agent", "the ID, without a prefix");
    assertExit(verifiedOnly, 0, "query --verified-only");
    assert.deepEqual((verifiedOnly.json as EntryJson[]).map((e) => e.tool), ["delete_index"]);
    assertExit(stats, 0, "stats");
    assert.deepEqual(stats.json.callers, { verified: 2, claimed: 2 });
    const rows = (stats.json.calls as { caller: string; callerVerified: boolean; tool: string; total: number }[]).map((c) => [c.tool, c.callerVerified, c.total]);
    assert.deepEqual(rows.sort(), [
      ["delete_index", true, 1],
      ["web_search", false, 2],
      ["web_search", true, 1],
    ]);
    assertExit(human, 0, "query (for people)");
    assert.equal((human.stdout.match(/research-agent \(claimed, not verified\)/g) ?? []).length, 2, human.stdout);
  });
});
