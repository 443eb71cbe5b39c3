/**
 * Sub-agents (`subAgent` in createSecureAgent's tools): an orchestrator's child, and its
 * grandchild, act under delegations their parents sign. What a user counts on: a tool server
 * records who really called (the grandchild) and on whose behalf (orchestrator, then child);
 * a child cannot step outside the scope it was given (ERR_DELEGATION_INVALID, its model is
 * told); revoking the orchestrator stops its sub-agents at their next call, even mid-run
 * (ERR_INVOCATION_REVOKED, nothing sent).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StructuredToolInterface } from "@langchain/core/tools";
import { AIMessage, fakeModel } from "langchain";
import type { AuditEntry } from "../src/audit/entry.js";
import { canonicalDigest } from "../src/invocation/canonical.js";
import {
  createSecureAgent,
  secureTool,
  subAgent,
  type SecuredTool,
  type SecureReactAgent,
} from "../src/langchain/index.js";
import {
  answerTo,
  assertReceipted,
  assertRefused,
  auditsOf,
  aztpIdOf,
  counted,
  forCall,
  oneFor,
  pollFor,
  seenByModel,
  shownTo,
  spiffeOf,
  textOf,
} from "./helpers/langchain-util.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import { fixture } from "./helpers/mcp-util.js";
import { docs, THE_TEAM } from "./helpers/langchain-docs.js";

const ask = (content: string) => ({ messages: [{ role: "user", content }] });

/** The tool an agent calls its sub-agent (or any tool) through. */
function toolOf(agent: SecureReactAgent, name: string): SecuredTool {
  const found = (agent as unknown as { options: { tools: StructuredToolInterface[] } }).options.tools.find(
    (t) => t.name === name,
  );
  assert.ok(found, `no tool ${name}`);
  return found as SecuredTool;
}

/** Flushes every guard of an agent tree: each agent's and each tool it serves. */
async function flushTree(agent: SecureReactAgent): Promise<void> {
  await agent.aztpGuard.flush();
  for (const t of (agent as unknown as { options: { tools: StructuredToolInterface[] } }).options.tools)
    await (t as Partial<SecuredTool>).aztpGuard?.flush();
  for (const child of Object.values(agent.subAgents)) await flushTree(child);
}

const delegationOf = (e: AuditEntry): string[] => [...(e.delegation ?? [])];

describe("sub-agents", () => {
  it("orchestrator -> child -> grandchild: every tool records the grandchild as caller, on behalf of [orchestrator, child]; each level's call is audited on both sides", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const ledger = counted<{ n: number }>("ledger", { n: { type: "number" } }, ({ n }) => `booked ${n}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [
        {
          Version: "2012-10-17",
          Statement: [
            {
              Sid: "grandchild",
              Effect: "Allow",
              Principal: spiffeOf("grandchild"),
              Action: "tool:call",
              Resource: "ledger",
            },
          ],
        },
      ],
    });
    const grandModel = fakeModel()
      .respondWithTools([
        { name: "search", args: { q: "deep" }, id: "g1" },
        { name: "ledger", args: { n: 1 }, id: "g2" },
      ])
      .respond(new AIMessage("grandchild done"));
    const childModel = fakeModel()
      .respondWithTools([{ name: "grandchild", args: { task: "dig deeper" }, id: "c1" }])
      .respond(new AIMessage("child done"));
    const orchModel = fakeModel()
      .respondWithTools([{ name: "child", args: { task: "dig" }, id: "o1" }])
      .respond(new AIMessage("orchestrator done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: orchModel,
      tools: [
        subAgent({
          name: "child",
          description: "delegates to its own sub-agent",
          model: childModel,
          tools: [
            subAgent({
              name: "grandchild",
              description: "searches and books",
              model: grandModel,
              tools: [...d.tools, securedLedger],
            }),
          ],
        }),
      ],
    });
    const child = orch.subAgents.child as SecureReactAgent;
    const grandchild = child.subAgents.grandchild as SecureReactAgent;
    assert.equal(child.identity.aztpId, aztpIdOf("child"));
    assert.equal(grandchild.identity.aztpId, aztpIdOf("grandchild"));

    const result = await orch.invoke(ask("go"));
    const grandSaw = seenByModel(grandModel);
    assert.deepEqual(
      d.runs.search,
      ["deep"],
      `the grandchild was told: ${JSON.stringify(grandSaw.get("g1")?.content)}`,
    );
    assert.deepEqual(
      ledger.runs,
      [{ n: 1 }],
      `the grandchild was told: ${JSON.stringify(grandSaw.get("g2")?.content)}`,
    );
    const o1 = answerTo(result, "o1");
    assert.equal(o1.content, "child done", "the orchestrator gets the child's final answer");
    assertReceipted(o1, aztpIdOf("child"));
    assert.equal(textOf(shownTo(childModel, "c1")), "grandchild done");
    assert.match(textOf(shownTo(grandModel, "g1")), /found deep/);
    assert.equal(seenByModel(grandModel).get("g2")?.content, "booked 1");
    assert.equal((result.messages.at(-1) as AIMessage).text, "orchestrator done");

    await Promise.all([flushTree(orch), d.flush(), securedLedger.aztpGuard.flush()]);
    const [orchLog, childLog, grandLog, serverLog, ledgerLog] = await auditsOf(
      home,
      "orch",
      "child",
      "grandchild",
      "docs-server",
      "ledger",
    );
    const chain = [spiffeOf("orch"), spiffeOf("child")];
    for (const [id, log, callee, tool] of [
      ["g1", serverLog, "docs-server", "search"],
      ["g2", ledgerLog, "ledger", "ledger"],
    ] as const) {
      const server = oneFor(log, id, `${callee}'s log`);
      const caller = oneFor(grandLog, id, "the grandchild's log");
      for (const e of [server, caller]) {
        assert.equal(e.caller, spiffeOf("grandchild"), `${id} ${e.side}: the grandchild called`);
        assert.equal(e.callerVerified, true);
        assert.equal(e.callee, spiffeOf(callee));
        assert.equal(e.tool, tool);
        assert.deepEqual(delegationOf(e), chain, `${id} ${e.side}: on behalf of the orchestrator, then the child`);
        assert.deepEqual([e.decision, e.outcome], ["allow", "ok"]);
      }
    }
    // One level up: the child called the grandchild (on behalf of the orchestrator), the orchestrator called the child.
    for (const [id, callerLog, calleeLog, caller, callee, delegation] of [
      ["c1", childLog, grandLog, "child", "grandchild", [spiffeOf("orch")]],
      ["o1", orchLog, childLog, "orch", "child", []],
    ] as const) {
      const c = forCall(callerLog, id).find((e) => e.side === "caller");
      const s = forCall(calleeLog, id).find((e) => e.side === "callee");
      assert.ok(c && s, `${id}: on both sides`);
      for (const e of [c, s]) {
        assert.equal(e.caller, spiffeOf(caller), `${id} ${e.side}: caller`);
        assert.equal(e.callee, spiffeOf(callee), `${id} ${e.side}: callee`);
        assert.deepEqual(delegationOf(e), delegation, `${id} ${e.side}: delegation`);
        assert.deepEqual([e.decision, e.outcome], ["allow", "ok"]);
      }
    }
    // One trace for the whole tree (DESIGN §14): each sub-agent's run continues the call that
    // reached it, and every call is a span of its own under the one it was made in.
    const all = [...orchLog, ...childLog, ...grandLog, ...serverLog, ...ledgerLog];
    assert.deepEqual(
      [...new Set(all.map((e) => e.traceId))].length,
      1,
      `one trace: ${JSON.stringify(all.map((e) => [e.side, e.toolCallId, e.traceId]))}`,
    );
    assert.equal(new Set(all.map((e) => e.spanId)).size, all.length, "a span per entry");
    const span = (log: readonly AuditEntry[], id: string, side: AuditEntry["side"]): AuditEntry => {
      const e = forCall(log, id).find((x) => x.side === side);
      assert.ok(e, `${id}: a ${side} entry`);
      return e;
    };
    for (const [what, child, parent] of [
      ["the orchestrator's call, under nothing", span(orchLog, "o1", "caller"), undefined],
      ["the child's side of it", span(childLog, "o1", "callee"), span(orchLog, "o1", "caller")],
      ["the child's run, inside it", span(childLog, "c1", "caller"), span(childLog, "o1", "callee")],
      ["the grandchild's side of that", span(grandLog, "c1", "callee"), span(childLog, "c1", "caller")],
      ["the grandchild's run, inside it", span(grandLog, "g1", "caller"), span(grandLog, "c1", "callee")],
      ["the MCP server's side of its call", span(serverLog, "g1", "callee"), span(grandLog, "g1", "caller")],
      ["the ledger's side of the other", span(ledgerLog, "g2", "callee"), span(grandLog, "g2", "caller")],
    ] as const)
      assert.equal(child.parentSpanId, parent?.spanId, what);
  });

  it("a child given an explicit scope is refused what lies outside it (ERR_DELEGATION_INVALID, never run, its model told), on an MCP server and on its own tool; inside it it is served", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const note = counted<{ text: string }>("note", { text: { type: "string" } }, ({ text }) => `noted ${text}`);
    const childModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "allowed" }, id: "c1" }])
      .respondWithTools([
        { name: "delete_doc", args: { id: "7" }, id: "c2" },
        { name: "note", args: { text: "outside" }, id: "c3" },
      ])
      .respond(new AIMessage("child done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "researcher", args: { task: "research" }, id: "o1" }])
        .respond(new AIMessage("done")),
      tools: [
        subAgent({
          name: "researcher",
          description: "researches",
          model: childModel,
          tools: [...d.tools, note.tool],
          scope: { tools: ["search"] },
        }),
      ],
    });
    const result = await orch.invoke(ask("go"));
    assert.equal(answerTo(result, "o1").content, "child done");
    assert.deepEqual(d.runs.search, ["allowed"]);
    assert.deepEqual(d.runs.delete_doc, [], "the out-of-scope MCP call never ran");
    assert.deepEqual(note.runs, [], "the out-of-scope local call never ran");
    const shown = seenByModel(childModel);
    assert.match(textOf(shownTo(childModel, "c1")), /found allowed/);
    for (const id of ["c2", "c3"]) {
      const m = shown.get(id);
      assert.ok(m, `${id}: the child's model was shown an answer`);
      assertRefused(m, "ERR_DELEGATION_INVALID");
    }

    await Promise.all([flushTree(orch), d.flush()]);
    const [childLog, serverLog, noteLog] = await auditsOf(home, "researcher", "docs-server", "researcher.tools.note");
    for (const [id, log] of [
      ["c2", serverLog],
      ["c3", noteLog],
    ] as const) {
      const callee = oneFor(log, id, "the callee's log");
      assert.deepEqual(
        [callee.caller, callee.decision, callee.reason],
        [spiffeOf("researcher"), "deny", "ERR_DELEGATION_INVALID"],
        id,
      );
      const caller = oneFor(
        childLog.filter((e) => e.side === "caller"),
        id,
        "the child's log",
      );
      assert.equal(caller.reason, "ERR_DELEGATION_INVALID", id);
      assert.deepEqual(delegationOf(caller), [spiffeOf("orch")], `${id}: the child said on whose behalf it called`);
    }
    const ok = oneFor(serverLog, "c1", "the server's log");
    assert.deepEqual([ok.caller, ok.decision, delegationOf(ok)], [spiffeOf("researcher"), "allow", [spiffeOf("orch")]]);
  });

  it("revoking the orchestrator stops its child at its next call (ERR_INVOCATION_REVOKED, nothing sent); before, the same call is served", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const childModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "before" }, id: "c1" }])
      .respond(new AIMessage("first done"))
      .respondWithTools([{ name: "search", args: { q: "after" }, id: "c2" }])
      .respond(new AIMessage("second done"));
    const orchModel = fakeModel()
      .respondWithTools([{ name: "child", args: { task: "search" }, id: "o1" }])
      .respond(new AIMessage("orchestrator done"))
      .respondWithTools([{ name: "child", args: { task: "search again" }, id: "o2" }])
      .respond(new AIMessage("orchestrator done again"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: orchModel,
      tools: [subAgent({ name: "child", description: "searches", model: childModel, tools: d.tools })],
    });
    const before = await orch.invoke(ask("go"));
    assert.equal(answerTo(before, "o1").content, "first done");
    assert.deepEqual(d.runs.search, ["before"]);

    const { revoked } = await aztp.revokeIdentity(orch.identity.aztpId, "compromised");
    assert.ok(revoked.includes(aztpIdOf("child")), `the revocation cascades to the child: ${revoked.join(", ")}`);
    const child = orch.subAgents.child as SecureReactAgent;
    const after = await child.invoke(ask("search again"));
    assert.deepEqual(d.runs.search, ["before"], "nothing ran after the revocation");
    assertRefused(answerTo(after, "c2"), "ERR_INVOCATION_REVOKED");
    assert.equal(
      seenByModel(childModel).get("c2")?.content,
      answerTo(after, "c2").content,
      "the child's model was told",
    );
    // The orchestrator itself is stopped too.
    const orchAfter = await orch.invoke(ask("go again"));
    assertRefused(answerTo(orchAfter, "o2"), "ERR_INVOCATION_REVOKED");
    assert.equal(
      childModel.callCount,
      4,
      "the orchestrator's refused call never started the child (two model calls per run of the child)",
    );

    await Promise.all([flushTree(orch), d.flush()]);
    const [orchLog, childLog, serverLog] = await auditsOf(home, "orch", "child", "docs-server");
    assert.equal(forCall(serverLog, "c2").length, 0, "nothing was sent for the revoked child's call");
    const refused = oneFor(childLog, "c2", "the child's log");
    assert.deepEqual([refused.side, refused.decision, refused.reason], ["caller", "deny", "ERR_INVOCATION_REVOKED"]);
    const orchRefused = oneFor(orchLog, "o2", "the orchestrator's log");
    assert.deepEqual([orchRefused.decision, orchRefused.reason], ["deny", "ERR_INVOCATION_REVOKED"]);
    assert.equal(forCall(childLog, "o2").length, 0, "the child's tool received nothing for it");
    assert.equal(oneFor(serverLog, "c1", "the server's log").decision, "allow");
  });

  it("revoked mid-run (by a tool of the child): the child's following call is refused (ERR_INVOCATION_REVOKED), the one before was served", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    let orchId = "";
    const revoker = counted<{ why: string }>("revoke_orchestrator", { why: { type: "string" } }, async ({ why }) => {
      await aztp.revokeIdentity(orchId, why);
      return "revoked";
    });
    const childModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "first" }, id: "c1" }])
      .respondWithTools([{ name: "revoke_orchestrator", args: { why: "compromised" }, id: "c2" }])
      .respondWithTools([{ name: "search", args: { q: "second" }, id: "c3" }])
      .respond(new AIMessage("child done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "child", args: { task: "go" }, id: "o1" }])
        .respond(new AIMessage("orchestrator done")),
      tools: [
        subAgent({ name: "child", description: "searches", model: childModel, tools: [...d.tools, revoker.tool] }),
      ],
    });
    orchId = orch.identity.aztpId;
    const result = await orch.invoke(ask("go"));
    assert.equal(revoker.runs.length, 1);
    assert.deepEqual(d.runs.search, ["first"], "the call after the revocation never ran");
    const shown = seenByModel(childModel);
    assert.match(textOf(shownTo(childModel, "c1")), /found first/);
    const c3 = shown.get("c3");
    assert.ok(c3);
    assertRefused(c3, "ERR_INVOCATION_REVOKED");
    // The revoking tool itself sits under the orchestrator (a tool the child serves): its
    // receipt, signed after the revocation, is not taken either.
    assertRefused(shownTo(childModel, "c2"), "ERR_CALLEE_REVOKED");
    // The child's answer comes from a revoked identity: the orchestrator does not take it.
    const o1 = answerTo(result, "o1");
    assertRefused(o1, "ERR_CALLEE_REVOKED");
    assert.doesNotMatch(textOf(o1), /child done/);

    await Promise.all([flushTree(orch), d.flush()]);
    const [childLog, serverLog] = await auditsOf(home, "child", "docs-server");
    assert.equal(oneFor(serverLog, "c1", "the server's log").decision, "allow");
    assert.equal(forCall(serverLog, "c3").length, 0, "nothing was sent after the revocation");
    const refused = oneFor(childLog, "c3", "the child's log");
    assert.deepEqual(
      [refused.decision, refused.reason, delegationOf(refused)],
      ["deny", "ERR_INVOCATION_REVOKED", [spiffeOf("orch")]],
    );
  });

  it("two sub-agents called in one step run at once, each recorded by the server as itself, on behalf of the orchestrator", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const child = (name: string) =>
      subAgent({
        name,
        description: `researcher ${name}`,
        model: fakeModel()
          .respondWithTools([{ name: "search", args: { q: `${name}-q` }, id: `${name}-1` }])
          .respond(new AIMessage(`${name} done`)),
        tools: d.tools,
      });
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([
          { name: "left", args: { task: "l" }, id: "o1" },
          { name: "right", args: { task: "r" }, id: "o2" },
        ])
        .respond(new AIMessage("done")),
      tools: [child("left"), child("right")],
    });
    const result = await orch.invoke(ask("go"));
    assert.equal(answerTo(result, "o1").content, "left done");
    assert.equal(answerTo(result, "o2").content, "right done");
    assert.deepEqual(d.runs.search.sort(), ["left-q", "right-q"]);
    await Promise.all([flushTree(orch), d.flush()]);
    const [serverLog] = await auditsOf(home, "docs-server");
    for (const name of ["left", "right"]) {
      const e = oneFor(serverLog, `${name}-1`, "the server's log");
      assert.deepEqual(
        [e.caller, e.callerVerified, delegationOf(e), e.argsDigest],
        [spiffeOf(name), true, [spiffeOf("orch")], canonicalDigest({ q: `${name}-q` })],
      );
    }
  });

  it("revoking the child stops the grandchild (ERR_INVOCATION_REVOKED) but not the orchestrator's own calls", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const grandModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "grand" }, id: "g1" }])
      .respond(new AIMessage("grandchild done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "search", args: { q: "orch" }, id: "o1" }])
        .respond(new AIMessage("done")),
      tools: [
        ...d.tools,
        subAgent({
          name: "child",
          description: "has a sub-agent",
          model: fakeModel(),
          tools: [subAgent({ name: "grandchild", description: "searches", model: grandModel, tools: d.tools })],
        }),
      ],
    });
    const { revoked } = await aztp.revokeIdentity(aztpIdOf("child"), "compromised");
    assert.ok(revoked.includes(aztpIdOf("grandchild")) && !revoked.includes(aztpIdOf("orch")), revoked.join(", "));
    const grandchild = (orch.subAgents.child as SecureReactAgent).subAgents.grandchild as SecureReactAgent;
    const g = await grandchild.invoke(ask("search"));
    assertRefused(answerTo(g, "g1"), "ERR_INVOCATION_REVOKED");
    const o = await orch.invoke(ask("search"));
    assert.match(textOf(answerTo(o, "o1")), /found orch/, "the orchestrator is not under the child");
    assert.deepEqual(d.runs.search, ["orch"]);
    await Promise.all([flushTree(orch), d.flush()]);
    const [grandLog, serverLog] = await auditsOf(home, "grandchild", "docs-server");
    assert.deepEqual(
      [oneFor(grandLog, "g1", "grandchild").reason, forCall(serverLog, "g1").length],
      ["ERR_INVOCATION_REVOKED", 0],
    );
    assert.equal(oneFor(serverLog, "o1", "server").caller, spiffeOf("orch"));
  });

  it("a sub-agent's tool admits its parent alone: another agent given it is refused (ERR_POLICY_DENIED) and the child never starts", async (t) => {
    const { home, aztp } = fixture(t);
    const childModel = fakeModel().respond(new AIMessage("child done")).respond(new AIMessage("child done again"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "helper", args: { task: "help" }, id: "o1" }])
        .respond(new AIMessage("done")),
      tools: [subAgent({ name: "helper", description: "helps", model: childModel, tools: [] })],
    });
    assert.equal(answerTo(await orch.invoke(ask("go")), "o1").content, "child done");
    const eve = await createSecureAgent({
      client: aztp,
      name: "eve",
      model: fakeModel()
        .respondWithTools([{ name: "helper", args: { task: "help me" }, id: "e1" }])
        .respond(new AIMessage("done")),
      tools: [toolOf(orch, "helper")],
    });
    assertRefused(answerTo(await eve.invoke(ask("go")), "e1"), "ERR_POLICY_DENIED");
    assert.equal(childModel.callCount, 1, "the child ran for its parent only");
    await Promise.all([flushTree(orch), eve.aztpGuard.flush()]);
    const [helperLog] = await auditsOf(home, "helper");
    const denied = oneFor(helperLog, "e1", "the sub-agent's log");
    assert.deepEqual(
      [denied.side, denied.caller, denied.decision, denied.reason],
      ["callee", spiffeOf("eve"), "deny", "ERR_POLICY_DENIED"],
    );
  });

  it("an orchestrator's run aborted while its child's MCP call is in flight: every call is on record once per side, with its outcome", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    const controller = new AbortController();
    const childModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "first" }, id: "c1" }])
      .respondWithTools([{ name: "slow", args: { q: "second" }, id: "c2" }])
      .respond(new AIMessage("never reached"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "child", args: { task: "go" }, id: "o1" }])
        .respond(new AIMessage("never reached")),
      tools: [subAgent({ name: "child", description: "searches", model: childModel, tools: d.tools })],
    });
    const run = orch.invoke(ask("go"), { signal: controller.signal });
    const started = Date.now();
    while (d.runs.slow.length === 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 10));
    controller.abort(new Error("user stopped"));
    await assert.rejects(run);
    assert.deepEqual([d.runs.search, d.runs.slow], [["first"], ["second"]]);
    const read = async () => {
      await Promise.all([flushTree(orch), d.flush()]);
      return auditsOf(home, "orch", "child", "docs-server");
    };
    const done = ([orchLog, childLog, serverLog]: AuditEntry[][]) =>
      forCall(orchLog ?? [], "o1").length >= 1 &&
      forCall(childLog ?? [], "c2").length >= 1 &&
      forCall(childLog ?? [], "o1").length >= 1 &&
      forCall(serverLog ?? [], "c2").length >= 1;
    await pollFor(read, done);
    await new Promise((r) => setTimeout(r, 200)); // and nothing more comes
    const [orchLog, childLog, serverLog] = await read();
    const rows = (entries: AuditEntry[], id: string) =>
      forCall(entries, id).map((e) => [e.side, e.decision, e.outcome, e.reason ?? null]);
    assert.deepEqual(rows(childLog, "c1"), [["caller", "allow", "ok", null]]);
    assert.deepEqual(rows(serverLog, "c1"), [["callee", "allow", "ok", null]]);
    assert.deepEqual(
      rows(childLog, "c2"),
      [["caller", "allow", "error", "cancelled"]],
      "the child's call in flight: once, cancelled",
    );
    assert.equal(forCall(serverLog, "c2").length, 1);
    assert.deepEqual(delegationOf(oneFor(serverLog, "c2", "server")), [spiffeOf("orch")]);
    // The orchestrator's call of the child ended when the child's run did: a failure, once per side.
    assert.deepEqual(
      forCall(childLog, "o1").map((e) => [e.side, e.outcome]),
      [["callee", "error"]],
    );
    assert.deepEqual(
      forCall(orchLog, "o1").map((e) => [e.side, e.outcome]),
      [["caller", "error"]],
    );
  });

  it("a grandchild's delegation signed seconds after its parent's is accepted: no link outlives the one above it", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp, [THE_TEAM]);
    // The child's link is signed at its first call (this one), the grandchild's over a second later.
    const wait = counted<{ ms: number }>("wait", { ms: { type: "number" } }, async ({ ms }) => {
      await new Promise((r) => setTimeout(r, ms));
      return "waited";
    });
    const grandModel = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "later" }, id: "g1" }])
      .respond(new AIMessage("grandchild done"));
    const childModel = fakeModel()
      .respondWithTools([{ name: "wait", args: { ms: 1_100 }, id: "c1" }])
      .respondWithTools([{ name: "grandchild", args: { task: "search" }, id: "c2" }])
      .respond(new AIMessage("child done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "child", args: { task: "go" }, id: "o1" }])
        .respond(new AIMessage("done")),
      tools: [
        subAgent({
          name: "child",
          description: "waits, then delegates",
          model: childModel,
          tools: [
            wait.tool,
            subAgent({ name: "grandchild", description: "searches", model: grandModel, tools: d.tools }),
          ],
        }),
      ],
    });
    const result = await orch.invoke(ask("go"));
    assert.equal(answerTo(result, "o1").content, "child done");
    assert.deepEqual(d.runs.search, ["later"], `the grandchild was told: ${textOf(shownTo(grandModel, "g1"))}`);
    await Promise.all([flushTree(orch), d.flush()]);
    const [serverLog] = await auditsOf(home, "docs-server");
    const e = oneFor(serverLog, "g1", "the server's log");
    assert.deepEqual(
      [e.caller, e.decision, delegationOf(e)],
      [spiffeOf("grandchild"), "allow", [spiffeOf("orch"), spiffeOf("child")]],
    );
  });

  it("a delegation TTL too short to outlive a call's token is refused at creation (ERR_ARGUMENT_INVALID); the shortest accepted one serves the child's calls", async (t) => {
    const { home, aztp } = fixture(t);
    const add = counted<{ a: number; b: number }>("add", { a: { type: "number" }, b: { type: "number" } }, ({ a, b }) =>
      String(a + b),
    );
    await rejectsWithCode(
      () =>
        subAgent({
          name: "kid",
          description: "adds",
          model: fakeModel(),
          tools: [add.tool],
          scope: { ttlSeconds: 10 },
        }),
      "ERR_ARGUMENT_INVALID",
      "ttlSeconds: 10",
    );
    const childModel = fakeModel()
      .respondWithTools([{ name: "add", args: { a: 1, b: 2 }, id: "c1" }])
      .respond(new AIMessage("child done"));
    const orch = await createSecureAgent({
      client: aztp,
      name: "orch",
      model: fakeModel()
        .respondWithTools([{ name: "kid", args: { task: "add" }, id: "o1" }])
        .respond(new AIMessage("done")),
      tools: [
        subAgent({ name: "kid", description: "adds", model: childModel, tools: [add.tool], scope: { ttlSeconds: 60 } }),
      ],
    });
    const result = await orch.invoke(ask("go"));
    assert.equal(answerTo(result, "o1").content, "child done");
    assert.equal(
      seenByModel(childModel).get("c1")?.content,
      "3",
      `the child was told: ${textOf(shownTo(childModel, "c1"))}`,
    );
    assert.deepEqual(add.runs, [{ a: 1, b: 2 }]);
    await flushTree(orch);
    const [kidTool] = await auditsOf(home, "kid.tools.add");
    assert.deepEqual(delegationOf(oneFor(kidTool, "c1", "the child's tool")), [spiffeOf("orch")]);
  });
});
