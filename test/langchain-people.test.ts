/**
 * People in the chain, at the LangChain level (DESIGN §13, issue 19 item 2): the person a run
 * acts for is given per run (`configurable.aztp.onBehalfOf`), exchanged once for an on-behalf-of
 * token bound to the agent's key, and carried by every call of that run to every callee, local
 * or MCP; a sub-agent extends it (person → orchestrator → researcher). People log in at a REAL
 * OpenID Provider on loopback (examples/local-openid-provider.ts, oidc-provider), driven
 * headlessly. What a user counts on: 32 runs for 4 people interleaved on one agent never mix; a
 * policy on the person's groups decides for the person, not the agent; a delegation lifted by
 * another agent, and a token from a provider nobody trusts, are refused, on record, and the
 * model is told.
 */
import assert from "node:assert/strict";
import type { TestContext } from "node:test";
import { describe, it } from "node:test";
import { AIMessage, HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { createAgent, fakeModel } from "langchain";
import { z } from "zod";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import type { AuditEntry } from "../src/audit/entry.js";
import type { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import { canonicalDigest } from "../src/invocation/canonical.js";
import {
  createSecureAgent,
  createSecureMiddleware,
  secureTool,
  subAgent,
  type SecureReactAgent,
} from "../src/langchain/index.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { parsePolicy } from "../src/policy/index.js";
import type { PolicyDocument } from "../src/policy/policy.js";
import { docs, THE_TEAM } from "./helpers/langchain-docs.js";
import {
  answerTo,
  assertReceipted,
  assertRefused,
  auditsOf,
  aztpIdOf,
  counted,
  oneFor,
  spiffeOf,
  textOf,
} from "./helpers/langchain-util.js";
import { fixture, linkInMemory } from "./helpers/mcp-util.js";

const PEOPLE = [
  { sub: "alice", email: "alice@example.com", email_verified: true, groups: ["finance"] },
  { sub: "bob", email: "bob@example.com", email_verified: true, groups: ["support"] },
  { sub: "carol", email: "carol@example.com", email_verified: true, groups: ["finance", "audit"] },
  { sub: "dave", email: "dave@example.com", email_verified: true, groups: ["ops"] },
];

/** A provider with the four accounts, trusted by the fixture's trust domain; closed when the test ends. */
async function provider(t: TestContext, aztp: Aztp, trusted = true): Promise<LocalOpenIdProvider> {
  const op = await startLocalOpenIdProvider({ accounts: PEOPLE });
  t.after(() => op.close());
  if (trusted) await (await aztp.authority()).addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
  return op;
}

/** Each account's ID token, signed in through the provider's real flow. */
async function logins(op: LocalOpenIdProvider, accounts: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const account of accounts) out[account] = (await op.login({ account })).idToken;
  return out;
}

const personOf = (op: LocalOpenIdProvider, sub: string): string => `${op.issuer}#${sub}`;

/** The user's message a run started from (each run's is distinct, so its model answers it alone). */
function askedIn(messages: BaseMessage[]): string {
  const human = messages.find((m) => HumanMessage.isInstance(m));
  return typeof human?.content === "string" ? human.content : "";
}

/**
 * A fake model for `runs` concurrent runs of two turns each: tool calls for the run's message,
 * then a final answer once tool answers came. The queue is consumed in whatever order the runs
 * reach the model; each answer is chosen from the messages it is shown, never from that order.
 */
function perRun(
  runs: number,
  calls: (asked: string) => Array<{ name: string; args: Record<string, unknown>; id: string }>,
) {
  const model = fakeModel();
  for (let i = 0; i < runs * 2; i++) {
    model.respond((messages) => {
      const asked = askedIn(messages);
      const answered = messages.some((m) => m.getType() === "tool");
      return answered
        ? new AIMessage(`done: ${asked}`)
        : new AIMessage({ content: "", tool_calls: calls(asked).map((c) => ({ ...c, type: "tool_call" as const })) });
    });
  }
  return model;
}

const allowOnly = (
  sid: string,
  principal: string | string[],
  resource: string,
  condition?: Record<string, Record<string, string>>,
): PolicyDocument => ({
  Version: "2012-10-17",
  Statement: [
    {
      Sid: sid,
      Effect: "Allow",
      Principal: principal,
      Action: "tool:call",
      Resource: resource,
      ...(condition !== undefined ? { Condition: condition } : {}),
    },
  ],
});

const ask = (
  content: string,
  onBehalfOf?: string,
): [{ messages: Array<{ role: "user"; content: string }> }, { configurable?: { aztp: { onBehalfOf: string } } }] => [
  { messages: [{ role: "user", content }] },
  onBehalfOf !== undefined ? { configurable: { aztp: { onBehalfOf } } } : {},
];

describe("people in the chain: LangChain", () => {
  it("32 runs for 4 people (and 4 for nobody) interleaved on one agent: every callee entry, local and MCP, names the run's person and the agent as the act chain; none mixed; one exchange per person", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const tokens = await logins(
      op,
      PEOPLE.map((p) => p.sub),
    );
    const d = await docs(t, aztp, [THE_TEAM]);
    const ledger = counted<{ run: string }>("ledger", { run: { type: "string" } }, ({ run }) => `booked ${run}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [allowOnly("the-support-agent", spiffeOf("support-agent"), "ledger")],
    });
    const runs = Array.from({ length: 36 }, (_, i) => ({
      id: `run-${i}`,
      person: i < 32 ? (PEOPLE[i % 4]?.sub as string) : undefined,
    }));
    const agent = await createSecureAgent({
      client: aztp,
      name: "support-agent",
      model: perRun(runs.length, (asked) => [
        { name: "ledger", args: { run: asked }, id: `${asked}-ledger` },
        { name: "search", args: { q: asked }, id: `${asked}-search` },
      ]),
      tools: [securedLedger, ...d.tools],
    });
    let exchanges = 0;
    const actFor = agent.identity.actFor.bind(agent.identity);
    agent.identity.actFor = (token, options) => {
      exchanges++;
      return actFor(token, options);
    };

    const results = await Promise.all(
      runs.map((r) => agent.invoke(...ask(r.id, r.person !== undefined ? tokens[r.person] : undefined))),
    );
    for (const [i, r] of runs.entries()) {
      assertReceipted(answerTo(results[i], `${r.id}-ledger`), securedLedger.aztpId);
      assert.equal(textOf(answerTo(results[i], `${r.id}-search`)), `found ${r.id}`);
    }
    assert.equal(exchanges, 4, "one exchange per person token, however many runs and calls");

    await Promise.all([agent.aztpGuard.flush(), securedLedger.aztpGuard.flush(), d.flush()]);
    const [agentLog, ledgerLog, serverLog] = await auditsOf(home, "support-agent", "ledger", "docs-server");
    for (const r of runs) {
      const person = r.person !== undefined ? personOf(op, r.person) : undefined;
      for (const [log, id, what] of [
        [ledgerLog, `${r.id}-ledger`, "the ledger (a local secured tool)"],
        [serverLog, `${r.id}-search`, "docs-server (an MCP server)"],
        [agentLog, `${r.id}-ledger`, "the agent, calling the ledger"],
        [agentLog, `${r.id}-search`, "the agent, calling docs-server"],
      ] as const) {
        const e = oneFor(log, id, what);
        assert.deepEqual([e.decision, e.outcome], ["allow", "ok"], `${id} at ${what}`);
        assert.equal(e.person, person, `${id} at ${what}: the run's person`);
        assert.deepEqual(e.actors, person !== undefined ? [spiffeOf("support-agent")] : undefined, `${id}: act chain`);
        assert.equal(e.personEmail, undefined, "no e-mail: the provider's configuration does not allow it");
      }
    }
  });

  it("a sub-agent extends its parent's delegation: person → orchestrator → researcher reaches the callee, whose policy on aztp:person.groups lets alice (finance) transfer and refuses bob", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const tokens = await logins(op, ["alice", "bob"]);
    const transfer = counted<{ to: string }>("transfer", { to: { type: "string" } }, ({ to }) => `sent to ${to}`);
    const securedTransfer = await secureTool(transfer.tool, {
      client: aztp,
      name: "payments",
      policy: [
        allowOnly("finance-only", spiffeOf("researcher"), "transfer", {
          "ForAnyValue:StringEquals": { "aztp:person.groups": "finance" },
        }),
      ],
    });
    const researcherModel = perRun(2, (asked) => [{ name: "transfer", args: { to: asked }, id: `${asked}-transfer` }]);
    const orch = await createSecureAgent({
      client: aztp,
      name: "orchestrator",
      model: perRun(2, (asked) => [{ name: "researcher", args: { task: asked }, id: `${asked}-research` }]),
      tools: [
        subAgent({
          name: "researcher",
          description: "pays",
          model: researcherModel,
          tools: [securedTransfer],
        }),
      ],
    });
    const [forAlice, forBob] = await Promise.all([
      orch.invoke(...ask("pay-alice", tokens.alice)),
      orch.invoke(...ask("pay-bob", tokens.bob)),
    ]);
    assert.deepEqual(transfer.runs, [{ to: "pay-alice" }], "only alice's transfer ran");
    assert.equal(textOf(answerTo(forAlice, "pay-alice-research")), "done: pay-alice");
    assert.equal(
      answerTo(forBob, "pay-bob-research").status,
      "success",
      "the orchestrator's call of its researcher ran",
    );
    const researcher = orch.subAgents.researcher as SecureReactAgent;
    const bobTransfer = [...researcherModel.calls]
      .flatMap((c) => c.messages)
      .find((m) => m.getType() === "tool" && (m as { tool_call_id?: string }).tool_call_id === "pay-bob-transfer");
    assert.ok(bobTransfer, "the researcher's model was told of bob's refusal");
    assertRefused(bobTransfer as never, ErrorCodes.POLICY_DENIED);

    await Promise.all([orch.aztpGuard.flush(), researcher.aztpGuard.flush(), securedTransfer.aztpGuard.flush()]);
    const [paymentsLog, researcherLog, orchLog] = await auditsOf(home, "payments", "researcher", "orchestrator");
    const chain = [spiffeOf("orchestrator"), spiffeOf("researcher")];
    for (const [who, decision] of [
      ["alice", "allow"],
      ["bob", "deny"],
    ] as const) {
      for (const [log, side] of [
        [paymentsLog, "callee"],
        [researcherLog, "caller"],
      ] as const) {
        const e = oneFor(
          log.filter((x) => x.side === side),
          `pay-${who}-transfer`,
          `${side}`,
        );
        assert.equal(e.caller, spiffeOf("researcher"));
        assert.equal(e.person, personOf(op, who), `${who}'s transfer (${side}): the person`);
        assert.deepEqual(e.actors, chain, `${who}'s transfer (${side}): person → orchestrator → researcher`);
        assert.deepEqual(e.delegation, [spiffeOf("orchestrator")]);
        assert.equal(e.decision, decision);
        if (decision === "deny") assert.equal(e.reason, ErrorCodes.POLICY_DENIED);
      }
      // One level up: the orchestrator called its researcher for the same person, act chain [orchestrator].
      for (const log of [orchLog, researcherLog]) {
        const e = oneFor(log, `pay-${who}-research`, "the call of the researcher");
        assert.equal(e.person, personOf(op, who));
        assert.deepEqual(e.actors, [spiffeOf("orchestrator")]);
      }
    }
  });

  it("a delegation lifted by another agent is refused by the callee (ERR_ON_BEHALF_OF_INVALID, bound to another key), on record, the tool never run; the agent it was made for uses it", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const { alice } = await logins(op, ["alice"]);
    const ledger = counted<{ run: string }>("ledger", { run: { type: "string" } }, ({ run }) => `booked ${run}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [allowOnly("both-agents", [spiffeOf("agent-a"), spiffeOf("agent-b")], "ledger")],
    });
    const make = (name: string) =>
      createSecureAgent({
        client: aztp,
        name,
        model: perRun(1, (asked) => [{ name: "ledger", args: { run: asked }, id: `${asked}-ledger` }]),
        tools: [securedLedger],
      });
    const [a, b] = await Promise.all([make("agent-a"), make("agent-b")]);
    const forA = (await a.identity.actFor(alice as string)).token;

    const stolen = await b.invoke(...ask("by-b", forA));
    const refused = answerTo(stolen, "by-b-ledger");
    assertRefused(refused, ErrorCodes.ON_BEHALF_OF_INVALID);
    assert.match(textOf(refused), /bound to another key/);
    const honest = await a.invoke(...ask("by-a", forA));
    assertReceipted(answerTo(honest, "by-a-ledger"), securedLedger.aztpId);
    assert.deepEqual(ledger.runs, [{ run: "by-a" }], "the ledger ran for the agent the delegation was made for only");

    await securedLedger.aztpGuard.flush();
    const [ledgerLog] = await auditsOf(home, "ledger");
    const e = oneFor(ledgerLog, "by-b-ledger", "the ledger");
    assert.deepEqual([e.caller, e.decision, e.reason], [spiffeOf("agent-b"), "deny", ErrorCodes.ON_BEHALF_OF_INVALID]);
    const ok = oneFor(ledgerLog, "by-a-ledger", "the ledger");
    assert.deepEqual([ok.decision, ok.person], ["allow", personOf(op, "alice")]);
  });

  it("a person's token from a provider the trust domain does not trust fails the run's first call (ERR_PERSON_ISSUER_UNTRUSTED): the model is told, the agent's log has it, nothing is sent", async (t) => {
    const { home, aztp } = fixture(t);
    const trusted = await provider(t, aztp);
    const stranger = await provider(t, aztp, false);
    const fromStranger = (await logins(stranger, ["alice"])).alice as string;
    const fromTrusted = (await logins(trusted, ["alice"])).alice as string;
    const ledger = counted<{ run: string }>("ledger", { run: { type: "string" } }, ({ run }) => `booked ${run}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [allowOnly("the-agent", spiffeOf("agent"), "ledger")],
    });
    const agent = await createSecureAgent({
      client: aztp,
      name: "agent",
      model: perRun(2, (asked) => [{ name: "ledger", args: { run: asked }, id: `${asked}-ledger` }]),
      tools: [securedLedger],
    });
    const bad = await agent.invoke(...ask("untrusted", fromStranger));
    const m = answerTo(bad, "untrusted-ledger");
    assertRefused(m, ErrorCodes.PERSON_ISSUER_UNTRUSTED);
    assert.equal((bad.messages.at(-1) as AIMessage).text, "done: untrusted", "the run goes on");
    const good = await agent.invoke(...ask("trusted", fromTrusted));
    assertReceipted(answerTo(good, "trusted-ledger"), securedLedger.aztpId);
    assert.deepEqual(ledger.runs, [{ run: "trusted" }]);

    await Promise.all([agent.aztpGuard.flush(), securedLedger.aztpGuard.flush()]);
    const [agentLog, ledgerLog] = await auditsOf(home, "agent", "ledger");
    const e = oneFor(agentLog, "untrusted-ledger", "the agent");
    assert.deepEqual([e.decision, e.outcome, e.reason], ["deny", "denied", ErrorCodes.PERSON_ISSUER_UNTRUSTED]);
    assert.equal(e.callee, securedLedger.aztpId);
    assert.equal(ledgerLog.filter((x: AuditEntry) => x.toolCallId === "untrusted-ledger").length, 0, "nothing sent");
    assert.equal(oneFor(ledgerLog, "trusted-ledger", "the ledger").person, personOf(trusted, "alice"));
  });

  it("the exchange is kept per person token and key: after the agent's key rotates, the next run exchanges again and its calls are admitted", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const { dave } = await logins(op, ["dave"]);
    const ledger = counted<{ run: string }>("ledger", { run: { type: "string" } }, ({ run }) => `booked ${run}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [allowOnly("the-agent", spiffeOf("agent"), "ledger")],
    });
    const agent = await createSecureAgent({
      client: aztp,
      name: "agent",
      model: perRun(3, (asked) => [{ name: "ledger", args: { run: asked }, id: `${asked}-ledger` }]),
      tools: [securedLedger],
    });
    let exchanges = 0;
    const actFor = agent.identity.actFor.bind(agent.identity);
    agent.identity.actFor = (token, options) => (exchanges++, actFor(token, options));
    for (const run of ["before-1", "before-2"]) await agent.invoke(...ask(run, dave));
    assert.equal(exchanges, 1);
    await agent.identity.rotate();
    const after = await agent.invoke(...ask("after", dave));
    assertReceipted(answerTo(after, "after-ledger"), securedLedger.aztpId);
    assert.equal(exchanges, 2, "bound to the new key: exchanged again");
    await securedLedger.aztpGuard.flush();
    const [ledgerLog] = await auditsOf(home, "ledger");
    for (const id of ["before-1", "before-2", "after"])
      assert.equal(oneFor(ledgerLog, `${id}-ledger`, "the ledger").person, personOf(op, "dave"));
  });

  it("a plain createAgent with the secure middleware takes the person per run the same way", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const { carol } = await logins(op, ["carol"]);
    const identity = (await aztp.secureConnect({}, "plain-agent")).identity;
    const ledger = counted<{ run: string }>("ledger", { run: { type: "string" } }, ({ run }) => `booked ${run}`);
    const securedLedger = await secureTool(ledger.tool, {
      client: aztp,
      name: "ledger",
      policy: [allowOnly("the-agent", spiffeOf("plain-agent"), "ledger")],
    });
    const secure = await createSecureMiddleware({ identity, client: aztp });
    const agent = createAgent({
      model: perRun(1, (asked) => [{ name: "ledger", args: { run: asked }, id: `${asked}-ledger` }]),
      tools: [securedLedger],
      middleware: [secure.middleware],
    });
    const result = await agent.invoke(...ask("plain", carol));
    assertReceipted(answerTo(result, "plain-ledger"), securedLedger.aztpId);
    await securedLedger.aztpGuard.flush();
    const [ledgerLog] = await auditsOf(home, "ledger");
    const e = oneFor(ledgerLog, "plain-ledger", "the ledger");
    assert.deepEqual([e.person, e.actors], [personOf(op, "carol"), [spiffeOf("plain-agent")]]);
  });
});

describe("people in the chain: a secured MCP client used directly", () => {
  it("a listing made in a person's scope shows what that person's calls may reach (filterToolsByPolicy)", async (t) => {
    const { aztp } = fixture(t);
    const op = await provider(t, aztp);
    const tokens = await logins(op, ["alice", "bob"]);
    const server = new McpServer({ name: "bank", version: "1.0.0" });
    for (const name of ["balance", "transfer"])
      server.registerTool(name, { inputSchema: { n: z.number() } }, async ({ n }) => ({
        content: [{ type: "text", text: `${name} ${n}` }],
      }));
    const financeTransfers = parsePolicy({
      Version: "2012-10-17",
      Statement: [
        { Effect: "Allow", Action: "tool:call", Resource: "balance" },
        {
          Effect: "Allow",
          Action: "tool:call",
          Resource: "transfer",
          Condition: { "ForAnyValue:StringEquals": { "aztp:person.groups": "finance" } },
        },
      ],
    });
    const secured = await secureMcpServer(server, {
      client: aztp,
      name: "bank",
      policy: [financeTransfers],
      filterToolsByPolicy: true,
      audit: false,
    });
    const client = await secureMcpClient(new Client({ name: "teller", version: "1.0.0" }), {
      client: aztp,
      name: "teller",
      audit: false,
    });
    await linkInMemory(t, secured, client);
    const names = async () => (await client.listTools()).tools.map((tool) => tool.name).sort();
    assert.deepEqual(await client.actingFor(tokens.alice as string, names), ["balance", "transfer"]);
    assert.deepEqual(await client.actingFor(tokens.bob as string, names), ["balance"]);
    assert.deepEqual(await names(), ["balance"], "a listing for nobody");
  });

  it("actingFor(token, fn) signs every call in fn for that person; concurrent scopes never mix; outside one, a call acts for nobody; a token nobody trusts rejects before fn runs", async (t) => {
    const { home, aztp } = fixture(t);
    const op = await provider(t, aztp);
    const tokens = await logins(op, ["alice", "bob"]);
    const server = new McpServer({ name: "bank", version: "1.0.0" });
    server.registerTool("balance", { inputSchema: { n: z.number() } }, async ({ n }) => ({
      content: [{ type: "text", text: `balance ${n}` }],
    }));
    const secured = await secureMcpServer(server, { client: aztp, name: "bank", policy: [THE_TEAM] });
    const client = await secureMcpClient(new Client({ name: "teller", version: "1.0.0" }), {
      client: aztp,
      name: "teller",
    });
    await linkInMemory(t, secured, client);
    const call = (n: number) => client.callTool({ name: "balance", arguments: { n } });
    const who = (n: number): string | undefined => (n < 8 ? (n % 2 === 0 ? "alice" : "bob") : undefined);
    await Promise.all(
      Array.from({ length: 12 }, (_, n) => {
        const person = who(n);
        return person !== undefined ? client.actingFor(tokens[person] as string, () => call(n)) : call(n);
      }),
    );
    // An on-behalf-of token already exchanged for this client is used as it is.
    const obo = (await client.identity.actFor(tokens.alice as string)).token;
    await client.actingFor(obo, () => call(100));
    const stranger = await provider(t, aztp, false);
    let ran = false;
    await assert.rejects(
      client.actingFor((await logins(stranger, ["alice"])).alice as string, () => ((ran = true), call(200))),
      { code: ErrorCodes.PERSON_ISSUER_UNTRUSTED },
    );
    assert.equal(ran, false);
    await assert.rejects(
      client.actingFor("", () => call(300)),
      { code: ErrorCodes.ARGUMENT_INVALID },
    );

    await Promise.all([secured.aztpGuard.flush(), client.aztpGuard.flush()]);
    const [bankLog, tellerLog] = await auditsOf(home, "bank", "teller");
    for (const log of [bankLog, tellerLog]) {
      const byDigest = new Map(log.map((e) => [e.argsDigest, e]));
      const byN = new Map(
        [...Array.from({ length: 12 }, (_, n) => n), 100, 200].map((n) => [
          n,
          byDigest.get(canonicalDigest({ n }, "args")),
        ]),
      );
      for (let n = 0; n < 12; n++) {
        const e = byN.get(n);
        assert.ok(e, `call ${n} on record`);
        const person = who(n);
        assert.equal(e.person, person !== undefined ? personOf(op, person) : undefined, `call ${n} (${e.side})`);
        assert.deepEqual(e.actors, person !== undefined ? [spiffeOf("teller")] : undefined);
      }
      assert.equal(byN.get(100)?.person, personOf(op, "alice"));
      assert.equal(byN.get(200), undefined);
    }
    assert.equal(aztpIdOf("teller"), client.identity.aztpId);
  });
});
