/**
 * People in the CLI: `aztp audit query --person` finds the calls made for a person (a subject at
 * any provider, or one provider's subject), the entries keep who and for whom through the chain,
 * and `aztp policy check --person` refuses what does not describe a person.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AuditLog, verifyAuditLog } from "../src/audit/index.js";
import { personMatches } from "../src/audit/query.js";
import { aztpCli, assertExit, CLI, runTs, tempDir } from "./helpers/authority-util.js";

const OP = "https://login.example.com";
const OTHER = "https://idp.other.example";

describe("aztp audit query --person", () => {
  it("finds a subject at any provider, or one provider's subject, and nobody else's calls", async (t) => {
    const dir = tempDir(t, "people-audit");
    const path = join(dir, "bank-tool.jsonl");
    const log = await AuditLog.open(path, { onWarning: () => undefined });
    const entry = (person: string | undefined, tool: string) =>
      log.append({
        side: "callee",
        caller: "spiffe://example.org/workload/production/node/orchestrator",
        callerVerified: true,
        callee: "spiffe://example.org/workload/production/node/bank-tool",
        tool,
        argsDigest: "x",
        decision: "allow",
        outcome: "ok",
        ...(person !== undefined
          ? { person, actors: ["spiffe://example.org/workload/production/node/orchestrator"] }
          : {}),
      });
    await entry(`${OP}#alice`, "transfer");
    await entry(`${OTHER}#alice`, "read_balance");
    await entry(`${OP}#bob`, "transfer");
    await entry(undefined, "read_balance");
    await entry(`${OP}#alice#2`, "read_balance"); // a subject with a "#" of its own
    await log.close();
    assert.equal((await verifyAuditLog(path)).ok, true, "the new fields are part of the chain");

    const query = async (person: string) => {
      const r = await aztpCli(undefined, ["audit", "query", path, "--person", person]);
      assertExit(r, 0, `query --person ${person}`);
      return (r.json as Array<{ person: string; tool: string; actors: string[] }>).map((e) => e.person);
    };
    assert.deepEqual(await query("alice"), [`${OP}#alice`, `${OTHER}#alice`]);
    assert.deepEqual(await query(`${OP}#alice`), [`${OP}#alice`]);
    assert.deepEqual(await query("bob"), [`${OP}#bob`]);
    assert.deepEqual(await query("alice#2"), [`${OP}#alice#2`]);
    assert.deepEqual(await query("mallory"), []);
    const text = await runTs(CLI, ["audit", "query", path, "--person", `${OP}#bob`]);
    assert.match(text.stdout, new RegExp(`for ${OP}#bob -> `), "the text output says for whom");
  });

  it("matches whole IDs and whole subjects only", () => {
    const table: Array<[string | undefined, string, boolean]> = [
      [`${OP}#alice`, "alice", true],
      [`${OP}#alice`, `${OP}#alice`, true],
      [`${OP}#alice`, "ali", false],
      [`${OP}#alice`, `${OTHER}#alice`, false],
      [`${OP}#alice`, "https://login.example.com", false],
      [undefined, "alice", false],
    ];
    for (const [person, wanted, expected] of table)
      assert.equal(personMatches(person, wanted), expected, `${person} vs ${wanted}`);
  });
});

describe("aztp policy check --person", () => {
  it("refuses what does not describe a person (exit 2)", async (t) => {
    const home = join(tempDir(t), "home");
    assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0, "init");
    assertExit(await aztpCli(home, ["issue", "bank-tool", "--out", join(home, "..", "svid")]), 0, "issue");
    const id = "aztp://example.org/workload/production/node/bank-tool";
    const base = ["policy", "check", id, "--action", "tool:call", "--resource", "transfer"];
    for (const bad of [
      ["--person", "alice"],
      ["--person", `${OP}#`],
      ["--person", `${OP}#alice`, "--person-claims", '{"roles":["x"]}'],
      ["--person-claims", '{"groups":["finance"]}'],
      ["--person", `${OP}#alice`, "--actor", "not an id"],
    ]) {
      const r = await aztpCli(home, [...base, ...bad]);
      assertExit(r, 2, bad.join(" "));
    }
    // A well-formed person is decided (no policy attached: the implicit deny, exit 1), not refused.
    const decided = await aztpCli(home, [...base, "--person", `${OP}#alice`, "--actor", id]);
    assertExit(decided, 1, "a well-formed person");
    assert.equal(decided.json.reason, "implicit_deny");
    // A call that policy lets run only with an approval says so (exit 0: allowed, given one).
    const policy = join(home, "..", "approval.json");
    writeFileSync(
      policy,
      JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "LargeTransfers",
            Effect: "Allow",
            Action: "tool:call",
            Resource: "transfer",
            Approval: { Approvers: ["$person"], Reason: "transfers above 1000" },
          },
        ],
      }),
    );
    assertExit(await aztpCli(home, ["policy", "attach", id, policy]), 0, "attach");
    const approval = await runTs(CLI, ["--home", home, ...base, "--person", `${OP}#alice`]);
    assertExit(approval, 0, "allowed with an approval");
    assert.match(
      approval.stdout,
      /^allow \(allow, statement LargeTransfers\), only with a person's approval: transfers above 1000$/m,
    );
  });
});
