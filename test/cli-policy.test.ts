/**
 * `aztp policy check` builds its request with the one builder (policy/request.ts), as the
 * verifier does for a direct call: `--context` adds keys to simulate (a source address the
 * CLI has not got, the application's own keys) and `--time` sets the decision time, but a key
 * the request builds from its facts (the caller, the callee, the tool, the time) cannot be
 * replaced, and trying is a usage error rather than silently ignored.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { aztpCli, assertExit, cliHomeWithPolicy, type CliResult } from "./helpers/authority-util.js";

const POLICY = {
  Version: "2012-10-17",
  Statement: [
    {
      Sid: "FromTheOffice",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "search",
      Condition: { IpAddress: { "aztp:sourceIp": "10.0.0.0/8" } },
    },
    {
      Sid: "BeforeTheCutoff",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "legacy",
      Condition: { DateLessThan: { "aztp:currentTime": "2020-01-01T00:00:00Z" } },
    },
    {
      Sid: "GoldTier",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "premium",
      Condition: { StringEquals: { "app:tier": "gold" } },
    },
  ],
};

describe("aztp policy check with the one request builder", () => {
  it("--context simulates aztp:sourceIp and the application's keys, --time the decision time; a key the request builds cannot be set (exit 2)", async (t) => {
    const { home, file } = await cliHomeWithPolicy(t, POLICY);
    assertExit(await aztpCli(home, ["policy", "attach", "srv", file]), 0, "attach");
    const check = (resource: string, ...more: string[]): Promise<CliResult> =>
      aztpCli(home, ["policy", "check", "srv", "--action", "tool:call", "--resource", resource, ...more]);
    const runs: Array<[string, ...string[]]> = [
      ["search"],
      ["search", "--context", '{"aztp:sourceIp":"10.1.2.3"}'],
      ["search", "--context", '{"aztp:sourceIp":"192.168.1.1"}'],
      ["legacy", "--time", "2019-06-01T00:00:00Z"],
      ["legacy"],
      ["premium", "--context", '{"app:tier":"gold"}'],
      ["premium", "--context", '{"app:tier":"silver"}'],
      ["search", "--context", '{"aztp:caller":"spiffe://example.org/someone-else"}'],
      ["legacy", "--context", '{"aztp:currentTime":"2019-06-01T00:00:00Z"}'],
    ];
    // A few at a time: each is a process start.
    const results = [];
    for (let i = 0; i < runs.length; i += 3)
      results.push(...(await Promise.all(runs.slice(i, i + 3).map((r) => check(...r)))));
    const [noAddress, office, home192, old, now, gold, silver, caller, currentTime] = results as [
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
    ];
    assertExit(noAddress, 1, "no source address: the key is absent, IpAddress does not match");
    assert.equal(noAddress.json.decision, "deny");
    assertExit(office, 0, "a simulated source address inside 10.0.0.0/8");
    assert.equal(office.json.statement, "FromTheOffice");
    assertExit(home192, 1, "a simulated source address outside 10.0.0.0/8");
    assertExit(old, 0, "--time before the cutoff");
    assert.equal(old.json.statement, "BeforeTheCutoff");
    assertExit(now, 1, "now is after the cutoff");
    assertExit(gold, 0, "an application key");
    assertExit(silver, 1, "an application key that does not match");
    for (const [r, key] of [
      [caller, "aztp:caller"],
      [currentTime, "aztp:currentTime"],
    ] as const) {
      assertExit(r, 2, `--context setting ${key}`);
      assert.match(r.json.error.message, new RegExp(`--context cannot set ${key}`));
    }
  });
});
