/**
 * Policy on identities through the client API (attachPolicy, getPolicy, getPolicyValue,
 * isActionAllowed, checkIdentityPolicyPermissions, policy-aware verifyIdentityConnection), and
 * the `aztp policy` and `aztp audit` commands as a user scripts them.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import aztp from "aztp-client";
import { AuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { svidCheckpointSigner } from "../src/invocation/index.js";
import { aztpCli, assertExit, cliHomeWithPolicy, rejectsWithCode, tempDir } from "./helpers/authority-util.js";

const POLICY = {
  Version: "2025-01-01",
  Statement: [
    { Sid: "ReadAnything", Effect: "Allow", Principal: "*", Action: ["read:*", "identity:connect"], Resource: "*" },
    { Sid: "NoDeletes", Effect: "Deny", Principal: "*", Action: "delete:*", Resource: "*" },
    {
      Sid: "WritesByParentOnly",
      Effect: "Allow",
      Principal: "*",
      Action: "write:docs",
      Resource: "*",
      Condition: { StringLike: { "aztp:callerParent": "spiffe://*/workload/production/node/boss" } },
    },
  ],
};

describe("policy through the client API", () => {
  it("attachPolicy / getPolicy / getPolicyValue / isActionAllowed / checkIdentityPolicyPermissions", async (t) => {
    const client = aztp.initialize({ home: tempDir(t) });
    t.after(() => client.close());
    const boss = await client.secureConnect({}, "boss");
    const worker = await client.secureConnect({}, "worker", { parentIdentity: boss.identity.aztpId });
    const loner = await client.secureConnect({}, "loner");

    const entry = await client.attachPolicy(worker.identity.aztpId, POLICY, "worker-policy");
    assert.match(entry.code, /^policy:[0-9a-f]{12}$/);
    // The same document with its keys in another order is the same policy (same code).
    const reordered = JSON.parse(JSON.stringify({ Statement: POLICY.Statement, Version: POLICY.Version }));
    assert.equal((await client.attachPolicy(worker.identity.aztpId, reordered)).code, entry.code);

    const policies = await client.getPolicy(worker.identity.aztpId);
    assert.equal(policies.data.length, 1, "re-attaching the same document replaces it");
    assert.equal(policies.data[0]?.code, entry.code);
    assert.equal(typeof policies.data[0]?.policyName, "string");
    assert.deepEqual(policies.data[0]?.policyStatement, POLICY);

    const deny = client.getPolicyValue(policies, "Sid", "NoDeletes");
    assert.equal(deny?.Effect, "Deny");
    assert.equal(client.getPolicyValue(policies.data, "Sid", "nope"), null);
    assert.equal(client.isActionAllowed(deny!, "delete:docs"), false, "a Deny statement allows nothing");
    assert.equal(
      client.isActionAllowed(client.getPolicyValue(policies, "Sid", "ReadAnything")!, "read:docs"),
      true,
      "wildcard",
    );

    const check = await client.checkIdentityPolicyPermissions(worker.identity.aztpId, {
      actions: ["read:docs", "delete:docs", "write:docs"],
    });
    assert.equal(check.actions["read:docs"]?.decision, "allow");
    assert.equal(check.actions["delete:docs"]?.reason, "explicit_deny");
    assert.equal(check.actions["write:docs"]?.decision, "allow", "its parent is boss: the condition holds");
    assert.equal(check.allowed, false, "not every action is allowed");
    const other = await client.checkIdentityPolicyPermissions(worker.identity.aztpId, {
      actions: ["read:docs"],
      policyCode: "policy:000000000000",
    });
    assert.equal(other.actions["read:docs"]?.reason, "implicit_deny", "an unknown policy code grants nothing");

    // The same policy on an identity without that parent: the condition fails.
    await client.attachPolicy(loner.identity.aztpId, POLICY);
    const lonely = await client.checkIdentityPolicyPermissions(loner.identity.aztpId, { actions: ["write:docs"] });
    assert.equal(lonely.actions["write:docs"]?.decision, "deny");

    await rejectsWithCode(
      () =>
        client.attachPolicy(worker.identity.aztpId, { Version: "1", Statement: [{ Effect: "Maybe", Action: "x" }] }),
      ErrorCodes.POLICY_INVALID,
    );
    await rejectsWithCode(
      () => client.checkIdentityPolicyPermissions(worker.identity.aztpId, { actions: [] }),
      ErrorCodes.ARGUMENT_INVALID,
    );
  });

  it("verifyIdentityConnection consults the target's policies", async (t) => {
    const client = aztp.initialize({ home: tempDir(t) });
    t.after(() => client.close());
    const a = await client.secureConnect({}, "a");
    const b = await client.secureConnect({}, "b", { linkTo: [a.identity.aztpId] });
    assert.equal(await client.verifyIdentityConnection(a, b), true, "linked, no policy: links decide");

    const denyA = {
      Version: "1",
      Statement: [
        { Sid: "NotA", Effect: "Deny", Principal: a.identity.aztpId, Action: "identity:connect", Resource: "*" },
        { Effect: "Allow", Principal: "*", Action: "identity:connect", Resource: "*" },
      ],
    };
    const { code } = await client.attachPolicy(b.identity.aztpId, denyA);
    assert.equal(await client.verifyIdentityConnection(a, b), false, "b's policy denies a");
    assert.equal(await client.verifyIdentityConnection(b, a), true, "a has no policy: b may connect to a");
    assert.equal(await client.verifyIdentityConnection(a, b, code), false);
    assert.equal(
      await client.verifyIdentityConnection(b, a, code),
      false,
      "a policy code that names no policy of the target",
    );
  });
});

describe("aztp policy and aztp audit", () => {
  it("policy attach | get | check, with exit 1 on a denial", async (t) => {
    const { home, file } = await cliHomeWithPolicy(t, POLICY);
    const attached = await aztpCli(home, ["policy", "attach", "srv", file, "--name", "p1"]);
    assertExit(attached, 0, "attach");
    assert.match(attached.json.code, /^policy:[0-9a-f]{12}$/);
    const got = await aztpCli(home, ["policy", "get", "srv"]);
    assertExit(got, 0, "get");
    assert.equal(got.json.data[0].policyName, "p1");
    const [allowed, denied, bad] = await Promise.all([
      aztpCli(home, ["policy", "check", "srv", "--action", "read:docs"]),
      aztpCli(home, ["policy", "check", "srv", "--action", "delete:docs"]),
      aztpCli(home, ["policy", "check", "srv", "--action", "read:docs", "--context", "[1]"]),
    ]);
    assertExit(allowed, 0, "allowed");
    assert.equal(allowed.json.statement, "ReadAnything");
    assertExit(denied, 1, "denied");
    assert.equal(denied.json.reason, "explicit_deny");
    assertExit(bad, 2, "--context must be an object");
    writeFileSync(file, "{ not json");
    const broken = await aztpCli(home, ["policy", "attach", "srv", file]);
    assertExit(broken, 1, "attach of a broken document");
    assert.equal(broken.json.error.code, ErrorCodes.POLICY_INVALID);
  });

  it("audit verify names the first bad entry (exit 1); query, tail and stats read the log", async (t) => {
    const home = tempDir(t);
    const client = aztp.initialize({ home });
    t.after(() => client.close());
    const writer = await client.secureConnect({}, "writer");
    const path = join(tempDir(t, "audit"), "audit.jsonl");
    const log = await AuditLog.open(path, { signer: svidCheckpointSigner(writer.identity), checkpointEvery: 3 });
    const caller = "spiffe://aztp.local/workload/production/node/caller";
    for (const [tool, decision] of [
      ["search", "allow"],
      ["delete", "deny"],
      ["search", "allow"],
      ["search", "allow"],
    ] as const) {
      await log.append({
        side: "callee",
        caller,
        callerVerified: true,
        callee: writer.identity.spiffeId,
        tool,
        argsDigest: "d",
        decision,
        outcome: decision === "allow" ? "ok" : "denied",
      });
    }
    await log.close();

    const ok = await aztpCli(home, ["audit", "verify", path]);
    assertExit(ok, 0, "verify");
    assert.equal(ok.json.ok, true);
    assert.equal(ok.json.signaturesChecked, true, "checkpoints checked against the home's bundle");
    const [query, tail, stats] = await Promise.all([
      aztpCli(home, ["audit", "query", path, "--decision", "deny", "--caller", caller.replace("spiffe://", "aztp://")]),
      aztpCli(home, ["audit", "tail", path, "-n", "2"]),
      aztpCli(home, ["audit", "stats", path]),
    ]);
    assertExit(query, 0, "query");
    assert.deepEqual(
      query.json.map((e: { tool: string }) => e.tool),
      ["delete"],
    );
    assert.deepEqual(
      tail.json.map((e: { seq: number }) => e.seq),
      [3, 4],
    );
    assert.equal(stats.json.entries, 4);
    assert.equal(stats.json.decisions.deny, 1);

    // Edit one field of the second entry: verify names it.
    const lines = readFileSync(path, "utf8").split("\n");
    lines[1] = (lines[1] as string).replace('"tool":"delete"', '"tool":"search"');
    writeFileSync(path, lines.join("\n"));
    const bad = await aztpCli(home, ["audit", "verify", path]);
    assertExit(bad, 1, "verify of an edited log");
    assert.equal(bad.json.ok, false);
    assert.equal(bad.json.firstBad.seq, 2);
    assert.equal(bad.json.firstBad.reason, "hash-mismatch");
  });
});
