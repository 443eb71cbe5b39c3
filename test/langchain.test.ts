/**
 * LangChain.js agents end to end with scripted models (fakeModel): createSecureAgent and the
 * secure middleware alone, local tools (served under `<agent>.tools.<tool>`, or secureTool with
 * an identity and a policy of their own), refusals (policy, revoked callee, unsigned calls,
 * tampered arguments, replayed tokens, altered answers and receipts, unknown tools, bad
 * arguments), 32 calls in one step and a run aborted halfway.
 *
 * Each test checks what ran (the tool bodies count their runs), what the model was shown (the
 * ToolMessages of the run, and the ones the fake model was handed), and what each side's audit
 * log holds (`<home>/audit/<name>.jsonl`, read after the guards are flushed).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ToolMessage } from "@langchain/core/messages";
import type { StructuredToolInterface } from "@langchain/core/tools";
import { AIMessage, createAgent, createMiddleware, fakeModel, tool } from "langchain";
import type { AuditEntry } from "../src/audit/entry.js";
import type { Aztp } from "../src/client/aztp.js";
import { actAs, actingCaller } from "../src/guard/acting-caller.js";
import { canonicalDigest } from "../src/invocation/canonical.js";
import { verifyReceipt } from "../src/invocation/index.js";
import { createSecureAgent, createSecureMiddleware, receiptOf, secureTool, type SecuredTool, type SecureReactAgent } from "../src/langchain/index.js";
import type { PolicyDocument } from "../src/policy/policy.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import {
  adder,
  answerTo,
  assertReceipted,
  assertRefused,
  auditOf,
  aztpIdOf,
  counted,
  forCall,
  oneFor,
  pollFor,
  seenByModel,
  spiffeOf,
  textOf,
  toolMessages,
} from "./helpers/langchain-util.js";
import { fixture } from "./helpers/mcp-util.js";

const ask = (content: string) => ({ messages: [{ role: "user", content }] });

/** Only `principal` may call `tool`. */
const only = (principal: string, toolName: string): PolicyDocument[] => [
  { Version: "2012-10-17", Statement: [{ Sid: "only-one", Effect: "Allow", Principal: spiffeOf(principal), Action: "tool:call", Resource: toolName }] },
];

/** The tool an agent serves under `<agent>.tools.<name>` (for its guard's flush). */
function servedTool(agent: SecureReactAgent, name: string): SecuredTool {
  const tools = (agent as unknown as { options: { tools: StructuredToolInterface[] } }).options.tools;
  const found = tools.find((t) => t.name === name);
  assert.ok(found, `the agent serves no tool ${name}`);
  return found as SecuredTool;
}

/**
 * The caller's entry and the callee's entry of one call, checked to agree on who called whom
 * with what. `decision` is the callee's; the caller's is checked when it accepted the answer
 * (a refusal the callee signed a receipt for is recorded by the caller with the callee's
 * outcome and code, and its own decision on the answer: see the report on issue 9).
 */
function assertBothSides(callerLog: readonly AuditEntry[], calleeLog: readonly AuditEntry[], toolCallId: string, expected: { caller: string; callee: string; tool: string; args: unknown; decision?: AuditEntry["decision"]; outcome?: AuditEntry["outcome"] }): { caller: AuditEntry; callee: AuditEntry } {
  const c = oneFor(callerLog, toolCallId, "caller's log");
  const s = oneFor(calleeLog, toolCallId, "callee's log");
  assert.equal(c.side, "caller");
  assert.equal(s.side, "callee");
  for (const e of [c, s]) {
    assert.equal(e.caller, spiffeOf(expected.caller), `${e.side}: caller`);
    assert.equal(e.callerVerified, true, `${e.side}: callerVerified`);
    assert.equal(e.callee, spiffeOf(expected.callee), `${e.side}: callee`);
    assert.equal(e.tool, expected.tool, `${e.side}: tool`);
    assert.equal(e.argsDigest, canonicalDigest(expected.args), `${e.side}: argsDigest`);
    if (e.side === "callee" || (expected.decision ?? "allow") === "allow") assert.equal(e.decision, expected.decision ?? "allow", `${e.side}: decision (${e.reason ?? ""})`);
    assert.equal(e.outcome, expected.outcome ?? "ok", `${e.side}: outcome`);
  }
  assert.equal(c.jti, s.jti, "the same token on both sides");
  return { caller: c, callee: s };
}

describe("createSecureAgent", () => {
  it("issues the agent's identity at creation, and signs, verifies, receipts and audits a local tool's call on both sides", async (t) => {
    const { home, aztp: client } = fixture(t);
    const add = adder();
    const model = fakeModel().respondWithTools([{ name: "add", args: { a: 2, b: 3 }, id: "call_1" }]).respond(new AIMessage("done"));
    const agent = await createSecureAgent({ client, name: "calc", model, tools: [add.tool] });
    assert.equal(agent.identity.aztpId, aztpIdOf("calc"));
    assert.equal(agent.identity.spiffeId, spiffeOf("calc"));

    const result = await agent.invoke(ask("2+3"));
    assert.deepEqual(add.runs, [{ a: 2, b: 3 }], "the tool ran once, with the model's arguments");
    const m = answerTo(result, "call_1");
    assert.equal(m.content, "5");
    assert.equal(m.status, "success");
    const entry = assertReceipted(m, aztpIdOf("calc.tools.add"));
    assert.equal(seenByModel(model).get("call_1")?.content, "5", "the model was shown the tool's answer");
    assert.equal((result.messages.at(-1) as AIMessage).text, "done");

    await agent.aztpGuard.flush();
    await servedTool(agent, "add").aztpGuard.flush();
    const [callerLog, calleeLog] = [await auditOf(home, "calc"), await auditOf(home, "calc.tools.add")];
    const both = assertBothSides(callerLog, calleeLog, "call_1", { caller: "calc", callee: "calc.tools.add", tool: "add", args: { a: 2, b: 3 } });
    assert.equal(both.callee.receipt, entry.receipt, "the receipt the callee logged is the one the agent got");
    assert.equal(both.caller.receipt, entry.receipt, "the receipt the agent logged is the one it got");
    assert.equal(callerLog.length, 1);
    assert.equal(calleeLog.length, 1);
    // The receipt covers what the model was shown, for the token the agent sent.
    const verified = verifyReceipt(entry.receipt, { invocationToken: both.caller.token as string, result: m.content, callee: spiffeOf("calc.tools.add"), caller: spiffeOf("calc"), trust: await client.trust(), isError: false });
    assert.equal(verified.claims.status, "ok");
  });

  it("a secureTool with a policy: a caller it does not admit is refused (ERR_POLICY_DENIED, the tool never runs, the run goes on); the one it admits is served", async (t) => {
    const { home, aztp: client } = fixture(t);
    const vault = counted<{ key: string }>("vault", { key: { type: "string" } }, ({ key }) => `secret of ${key}`);
    const secured = await secureTool(vault.tool, { client, name: "vault", policy: only("alice", "vault") });
    const add = adder();
    const malloryModel = fakeModel()
      .respondWithTools([{ name: "vault", args: { key: "k1" }, id: "m1" }])
      .respondWithTools([{ name: "add", args: { a: 1, b: 1 }, id: "m2" }])
      .respond(new AIMessage("mallory done"));
    const mallory = await createSecureAgent({ client, name: "mallory", model: malloryModel, tools: [secured, add.tool] });
    const alice = await createSecureAgent({ client, name: "alice", model: fakeModel().respondWithTools([{ name: "vault", args: { key: "k1" }, id: "a1" }]).respond(new AIMessage("alice done")), tools: [secured] });

    const denied = await mallory.invoke(ask("open it"));
    assert.equal(vault.runs.length, 0, "the refused call never reached the tool");
    const refusal = answerTo(denied, "m1");
    assertRefused(refusal, "ERR_POLICY_DENIED");
    assertReceipted(refusal, aztpIdOf("vault"), "denied");
    assert.equal(seenByModel(malloryModel).get("m1")?.content, refusal.content, "the model was told the refusal");
    assert.deepEqual(add.runs, [{ a: 1, b: 1 }], "the run went on to the next call");
    assert.equal((denied.messages.at(-1) as AIMessage).text, "mallory done");

    const allowed = await alice.invoke(ask("open it"));
    assert.deepEqual(vault.runs, [{ key: "k1" }]);
    assert.equal(answerTo(allowed, "a1").content, "secret of k1");
    assertReceipted(answerTo(allowed, "a1"), aztpIdOf("vault"));

    await Promise.all([mallory.aztpGuard.flush(), alice.aztpGuard.flush(), secured.aztpGuard.flush()]);
    const vaultLog = await auditOf(home, "vault");
    const d = assertBothSides(await auditOf(home, "mallory"), vaultLog, "m1", { caller: "mallory", callee: "vault", tool: "vault", args: { key: "k1" }, decision: "deny", outcome: "denied" });
    assert.equal(d.callee.reason, "ERR_POLICY_DENIED");
    assert.equal(d.caller.reason, "ERR_POLICY_DENIED");
    assert.equal(d.caller.receipt, receiptOf(refusal)?.receipt, "the agent logged the refusal's receipt");
    assertBothSides(await auditOf(home, "alice"), vaultLog, "a1", { caller: "alice", callee: "vault", tool: "vault", args: { key: "k1" } });
  });

  it("a revoked tool identity gets no call (ERR_CALLEE_REVOKED, the tool never runs); before the revocation the same call is served", async (t) => {
    const { home, aztp: client } = fixture(t);
    const ledger = counted<{ n: number }>("ledger", { n: { type: "number" } }, ({ n }) => `booked ${n}`);
    const secured = await secureTool(ledger.tool, { client, name: "ledger", policy: only("clerk", "ledger") });
    const model = fakeModel()
      .respondWithTools([{ name: "ledger", args: { n: 1 }, id: "r1" }])
      .respond(new AIMessage("first done"))
      .respondWithTools([{ name: "ledger", args: { n: 2 }, id: "r2" }])
      .respond(new AIMessage("second done"));
    const clerk = await createSecureAgent({ client, name: "clerk", model, tools: [secured] });

    const before = await clerk.invoke(ask("book 1"));
    assert.equal(answerTo(before, "r1").content, "booked 1");
    await client.revokeIdentity(secured.aztpId, "compromised");
    const after = await clerk.invoke(ask("book 2"));
    assert.deepEqual(ledger.runs, [{ n: 1 }], "nothing ran after the revocation");
    assertRefused(answerTo(after, "r2"), "ERR_CALLEE_REVOKED");
    assert.equal((after.messages.at(-1) as AIMessage).text, "second done", "the run went on");

    await Promise.all([clerk.aztpGuard.flush(), secured.aztpGuard.flush()]);
    const [callerLog, calleeLog] = [await auditOf(home, "clerk"), await auditOf(home, "ledger")];
    assertBothSides(callerLog, calleeLog, "r1", { caller: "clerk", callee: "ledger", tool: "ledger", args: { n: 1 } });
    const refused = oneFor(callerLog, "r2", "caller's log");
    assert.equal(refused.decision, "deny");
    assert.equal(refused.reason, "ERR_CALLEE_REVOKED");
    assert.equal(forCall(calleeLog, "r2").length, 0, "nothing was sent to the revoked tool");
  });

  it("client.secureConnect refuses an agent made by createAgent (ERR_AGENT_UNSECURED); an identity for a plain object is issued", async (t) => {
    const { aztp: client } = fixture(t);
    const add = adder();
    const plain = createAgent({ model: fakeModel().respond(new AIMessage("hi")), tools: [add.tool] });
    await rejectsWithCode(() => client.secureConnect(plain, "x"), "ERR_AGENT_UNSECURED", "secureConnect(createAgent(...))");
    const secured = await client.secureConnect({}, "x");
    assert.equal(secured.identity.aztpId, aztpIdOf("x"));
  });

  it("the middleware alone with createAgent signs every call as its identity; without a client a tool with no identity is refused (ERR_TOOL_UNSECURED, never run)", async (t) => {
    const { home, aztp: client } = fixture(t);
    const { identity } = await client.secureConnect({}, "solo");
    const secure = await createSecureMiddleware({ identity, client });
    const add = adder();
    const agent = createAgent({ model: fakeModel().respondWithTools([{ name: "add", args: { a: 4, b: 5 }, id: "s1" }]).respond(new AIMessage("done")), tools: [add.tool], middleware: [secure.middleware] });
    const result = await agent.invoke(ask("4+5"));
    assert.deepEqual(add.runs, [{ a: 4, b: 5 }]);
    assert.equal(answerTo(result, "s1").content, "9");
    assertReceipted(answerTo(result, "s1"), aztpIdOf("solo.tools.add"));
    await secure.guard.flush();
    await (await secure.serve(add.tool)).aztpGuard.flush();
    assertBothSides(await auditOf(home, "solo"), await auditOf(home, "solo.tools.add"), "s1", { caller: "solo", callee: "solo.tools.add", tool: "add", args: { a: 4, b: 5 } });

    const bare = await createSecureMiddleware({ identity, trust: await client.trust() });
    const other = adder();
    const agent2 = createAgent({ model: fakeModel().respondWithTools([{ name: "add", args: { a: 1, b: 2 }, id: "s2" }]).respond(new AIMessage("done")), tools: [other.tool], middleware: [bare.middleware] });
    const refused = await agent2.invoke(ask("1+2"));
    assert.equal(other.runs.length, 0);
    assertRefused(answerTo(refused, "s2"), "ERR_TOOL_UNSECURED");
    await bare.guard.flush();
    const entry = oneFor(await auditOf(home, "solo"), "s2", "caller's log");
    assert.equal(entry.decision, "deny");
    assert.equal(entry.reason, "ERR_TOOL_UNSECURED");
  });
});

describe("secureTool shared by several agents", () => {
  it("records each agent as itself, calls running at once", async (t) => {
    const { home, aztp: client } = fixture(t);
    const kb = counted<{ q: string }>("kb", { q: { type: "string" } }, async ({ q }) => {
      await new Promise((r) => setTimeout(r, 20));
      return `answer to ${q}`;
    });
    const shared = await secureTool(kb.tool, { client, name: "kb", policy: [{ Version: "2012-10-17", Statement: [{ Sid: "team", Effect: "Allow", Principal: [spiffeOf("alice"), spiffeOf("bob")], Action: "tool:call", Resource: "kb" }] }] });
    const agents = await Promise.all(
      ["alice", "bob"].map((name) => createSecureAgent({ client, name, model: fakeModel().respondWithTools([{ name: "kb", args: { q: `${name}?` }, id: `${name}-1` }]).respond(new AIMessage(`${name} done`)), tools: [shared] })),
    );
    const results = await Promise.all(agents.map((a) => a.invoke(ask("go"))));
    assert.equal(kb.runs.length, 2);
    assert.equal(answerTo(results[0], "alice-1").content, "answer to alice?");
    assert.equal(answerTo(results[1], "bob-1").content, "answer to bob?");
    await Promise.all([...agents.map((a) => a.aztpGuard.flush()), shared.aztpGuard.flush()]);
    const kbLog = await auditOf(home, "kb");
    assert.equal(kbLog.length, 2);
    for (const name of ["alice", "bob"]) {
      const own = await auditOf(home, name);
      assert.equal(own.length, 1, `${name}'s log holds its own call only`);
      assertBothSides(own, kbLog, `${name}-1`, { caller: name, callee: "kb", tool: "kb", args: { q: `${name}?` } });
    }
  });

  it("an unsigned call (invoked directly, or by an agent without the middleware) is refused in enforce mode (ERR_INVOCATION_MISSING, never run) and recorded as unverified", async (t) => {
    const { home, aztp: client } = fixture(t);
    const kb = counted<{ q: string }>("kb", { q: { type: "string" } }, ({ q }) => `answer to ${q}`);
    const shared = await secureTool(kb.tool, { client, name: "kb", policy: only("alice", "kb") });
    await rejectsWithCode(() => shared.invoke({ q: "direct" }), "ERR_INVOCATION_MISSING", "tool.invoke(args)");
    const plainModel = fakeModel().respondWithTools([{ name: "kb", args: { q: "plain" }, id: "p1" }]).respond(new AIMessage("plain done"));
    const plain = createAgent({ model: plainModel, tools: [shared] });
    const result = await plain.invoke(ask("go"));
    assert.equal(kb.runs.length, 0, "no unsigned call ran");
    assertRefused(answerTo(result, "p1"), "ERR_INVOCATION_MISSING");
    assert.equal(seenByModel(plainModel).get("p1")?.status, "error");
    // The passing twin: the same tool called by a secured agent.
    const alice = await createSecureAgent({ client, name: "alice", model: fakeModel().respondWithTools([{ name: "kb", args: { q: "signed" }, id: "a1" }]).respond(new AIMessage("done")), tools: [shared] });
    assert.equal(answerTo(await alice.invoke(ask("go")), "a1").content, "answer to signed");
    assert.deepEqual(kb.runs, [{ q: "signed" }]);

    await Promise.all([alice.aztpGuard.flush(), shared.aztpGuard.flush()]);
    const kbLog = await auditOf(home, "kb");
    assert.equal(kbLog.length, 3, "the direct call, the plain agent's and alice's");
    const unsigned = kbLog.filter((e) => !e.callerVerified);
    assert.equal(unsigned.length, 2);
    for (const e of unsigned) {
      assert.equal(e.decision, "deny");
      assert.equal(e.reason, "ERR_INVOCATION_MISSING");
      assert.equal(e.outcome, "denied");
    }
    assertBothSides(await auditOf(home, "alice"), kbLog, "a1", { caller: "alice", callee: "kb", tool: "kb", args: { q: "signed" } });
  });

  it("in audit mode an unsigned call runs and is recorded as audit-only", async (t) => {
    const { home, aztp: client } = fixture(t);
    const kb = counted<{ q: string }>("kb", { q: { type: "string" } }, ({ q }) => `answer to ${q}`);
    const shared = await secureTool(kb.tool, { client, name: "kb-audit", mode: "audit", policy: only("alice", "kb") });
    const plain = createAgent({ model: fakeModel().respondWithTools([{ name: "kb", args: { q: "plain" }, id: "p1" }]).respond(new AIMessage("done")), tools: [shared] });
    const result = await plain.invoke(ask("go"));
    assert.deepEqual(kb.runs, [{ q: "plain" }]);
    const m = answerTo(result, "p1");
    assert.equal(m.content, "answer to plain");
    assert.equal(m.status, "success");
    await shared.aztpGuard.flush();
    const log = await auditOf(home, "kb-audit");
    assert.equal(log.length, 1);
    const e = log[0] as AuditEntry;
    assert.equal(e.decision, "audit-only");
    assert.equal(e.reason, "ERR_INVOCATION_MISSING");
    assert.equal(e.callerVerified, false);
    assert.equal(e.outcome, "ok");
  });
});
