/**
 * The policy's `Approval` block: parsed strictly (like every other member), and decided
 * conservatively: a matching Allow that asks for an approval asks for it whatever other Allow
 * also matches, in any order; an explicit Deny still wins.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import { approverAllowed, evaluatePolicies, parsePolicy, type PolicyDocument } from "../src/policy/index.js";

const OP = "https://login.example.com";
const APPROVAL = { Approvers: [`${OP}#*`], MaxAgeSeconds: 60, Reason: "large" };
const statement = (extra: Record<string, unknown>) => ({
  Version: "2012-10-17",
  Statement: [{ Effect: "Allow", Action: "tool:call", Resource: "transfer", ...extra }],
});

describe("policy Approval block", () => {
  it("parses a valid block, with the defaults left to the decision", () => {
    const doc = parsePolicy(statement({ Approval: { Approvers: "$person" } }));
    const d = evaluatePolicies([doc], { principal: "spiffe://td/a", action: "tool:call", resource: "transfer" });
    assert.equal(d.decision, "allow");
    assert.deepEqual(d.approval?.[0], {
      statement: 0,
      policy: 0,
      approvers: ["$person"],
      maxAgeSeconds: 300,
      reason: "policy statement 0 requires an approval",
    });
  });

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ["an unknown member", { Approval: { ...APPROVAL, Quorum: 2 } }, /Approval\.Quorum/],
    ["no Approvers", { Approval: { MaxAgeSeconds: 60 } }, /Approvers/],
    ["an approver that is no person", { Approval: { Approvers: ["alice"] } }, /Approvers\[0\]/],
    ["an approver with a bad issuer", { Approval: { Approvers: ["https://a b#x"] } }, /Approvers\[0\]/],
    ["MaxAgeSeconds out of range", { Approval: { ...APPROVAL, MaxAgeSeconds: 3601 } }, /MaxAgeSeconds/],
    ["MaxAgeSeconds not whole", { Approval: { ...APPROVAL, MaxAgeSeconds: 1.5 } }, /MaxAgeSeconds/],
    ["an empty Reason", { Approval: { ...APPROVAL, Reason: "" } }, /Reason/],
    ["a Deny with an Approval", { Effect: "Deny", Approval: APPROVAL }, /only for Allow/],
    ["another action", { Action: ["tool:call", "identity:connect"], Approval: APPROVAL }, /tool:call/],
    ["NotAction", { Action: undefined, NotAction: "x", Approval: APPROVAL }, /tool:call/],
    ["no object", { Approval: "alice" }, /must be an object/],
  ];
  for (const [name, extra, where] of bad) {
    it(`refuses ${name}`, () => {
      assert.throws(
        () => parsePolicy(statement(extra)),
        (e: unknown) => {
          assert.equal((e as { code?: string }).code, ErrorCodes.POLICY_INVALID);
          assert.match((e as Error).message, where);
          return true;
        },
      );
    });
  }

  const plain = { Sid: "plain", Effect: "Allow", Action: "tool:call", Resource: "*" };
  const gated = { Sid: "gated", Effect: "Allow", Action: "tool:call", Resource: "transfer", Approval: APPROVAL };
  const deny = { Sid: "no", Effect: "Deny", Action: "tool:call", Resource: "transfer", Principal: "spiffe://td/bad" };
  const decide = (statements: unknown[], principal = "spiffe://td/a", resource = "transfer") =>
    evaluatePolicies([parsePolicy({ Version: "2012-10-17", Statement: statements }) as PolicyDocument], {
      principal,
      action: "tool:call",
      resource,
    });

  it("asks for the approval whatever other Allow matches, in any order", () => {
    for (const order of [
      [plain, gated],
      [gated, plain],
    ]) {
      const d = decide(order);
      assert.equal(d.decision, "allow");
      assert.equal(d.statement, "gated");
      assert.deepEqual(
        d.approval?.map((r) => r.statement),
        ["gated"],
      );
    }
    // The twin: a call the gated statement does not match is allowed without an approval.
    const other = decide([plain, gated], "spiffe://td/a", "search");
    assert.equal(other.decision, "allow");
    assert.equal(other.approval, undefined);
  });

  it("lets an explicit Deny win over an Allow with an approval", () => {
    assert.equal(decide([gated, deny], "spiffe://td/bad").decision, "deny");
    assert.equal(decide([gated, deny], "spiffe://td/a").decision, "allow");
  });

  it("matches approvers by pattern, $person, and groups", () => {
    const d = decide([
      {
        ...gated,
        Approval: { Approvers: [`${OP}#lead-*`, "$person"], ApproverGroups: ["finance"] },
      },
    ]);
    const r = d.approval?.[0];
    assert.ok(r);
    assert.equal(approverAllowed(r, { id: `${OP}#lead-7`, groups: ["finance"] }), true);
    assert.equal(approverAllowed(r, { id: `${OP}#lead-7`, groups: ["support"] }), false);
    assert.equal(approverAllowed(r, { id: `${OP}#bob`, groups: ["finance"] }), false);
    assert.equal(approverAllowed(r, { id: `${OP}#bob`, groups: ["finance"] }, `${OP}#bob`), true);
    assert.equal(approverAllowed(r, { id: `https://evil.example#lead-7`, groups: ["finance"] }), false);
  });
});
