// The main demo (`npm start`): a LangChain agent end to end, on the embedded authority in
// AZTP_HOME (else ./.aztp), offline with scripted models, in a few seconds. With OPENAI_API_KEY
// set, the agents think with a real model instead (OPENAI_MODEL, else gpt-4o-mini).
//
//  1. identities: the authority, an MCP tool server with a policy, an orchestrator agent with
//     a local tool and a sub-agent
//  2. signed calls that succeed: a local tool, and MCP tools through @langchain/mcp-adapters
//  3. calls refused before the tool runs: by the server's policy, by the sub-agent's delegation
//  4. someone on the wire: a call whose arguments are changed, a call sent again
//  5. a person in the chain: alice logs in at a local OpenID Provider; the orchestrator and its
//     sub-agent act for her, a payments server's policy decides on her groups, and a large
//     transfer waits for her approval of that exact call
//  6. the orchestrator revoked: its sub-agent's next call is refused
//  7. the audit trail of every log (who called what, on whose behalf, for whom), every log verified
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { Command, MemorySaver } from "@langchain/langgraph";
import { AIMessage, createMiddleware, fakeModel, tool, ToolMessage, type BaseMessage } from "langchain";
import { z } from "zod";
import aztp from "aztp-client";
import { AuditLog, queryAuditLog, verifyAuditLog, type AuditEntry } from "aztp-client/audit";
import { svidCheckpointSigner, svidCheckpointVerifier } from "aztp-client/invocation";
import {
  APPROVAL_INTERRUPT,
  createSecureAgent,
  receiptOf,
  servedToolName,
  subAgent,
  type ApprovalInterrupt,
  type SecureAgentParams,
} from "aztp-client/langchain";
import { loadMcpTools } from "aztp-client/langchain/mcp";
import { InterceptingTransport, secureMcpClient, secureMcpServer } from "aztp-client/mcp";
import type { PolicyDocument } from "aztp-client/policy";
import { startLocalOpenIdProvider } from "./local-openid-provider.js";

const home = resolve(process.env.AZTP_HOME ?? ".aztp");
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY, home });
const startedAt = new Date();
const short = (id: string): string => id.slice(id.lastIndexOf("/") + 1);
// A person is <issuer>#<subject>: the subject, for the table.
const personName = (person: string): string => person.slice(person.indexOf("#") + 1);
// Who a call was made on behalf of: the agents that delegated to the caller, then the person.
const onBehalfOf = (e: AuditEntry): string =>
  [...(e.delegation ?? []).map(short), ...(e.person ? [`${personName(e.person)} (person)`] : [])].join(" → ") || "-";
const says = (text: string): void => console.log(`   ↳ ${text}\n`);

// A previous run in this home revoked its orchestrator (step 5): restore it, and what the
// revocation cascaded to, so the demo runs again.
for (const name of ["orchestrator", servedToolName("orchestrator", "take_note"), "researcher"]) {
  const record = await client.getIdentity(name).catch(() => undefined);
  if (record?.status === "revoked") await client.reissueIdentity(record.aztpId);
}

// ---------------------------------------------------------------------------------------------
// The models: scripted (offline), or a real one.
type Model = SecureAgentParams["model"];
const real = process.env.OPENAI_API_KEY !== undefined && process.env.OPENAI_API_KEY !== "";
async function realModel(): Promise<Model> {
  // An optional peer dependency: loaded only when a real model is asked for.
  const { ChatOpenAI } = await import("@langchain/openai");
  return new ChatOpenAI({ model: process.env.OPENAI_MODEL ?? "gpt-4o-mini", temperature: 0 });
}
// Tool-call ids unique to this run, so `aztp audit query --tool-call-id` finds this run's call alone.
const run = randomBytes(3).toString("hex");
const call = (name: string, args: Record<string, unknown>, id: string) => ({ name, args, id: `${id}_${run}` });
const orchestratorModel: Model = real
  ? await realModel()
  : fakeModel()
      .respondWithTools([
        call("take_note", { text: "demo started" }, "call_note_1"),
        call("search_docs", { query: "SPIFFE" }, "call_search_1"),
      ])
      .respond(new AIMessage("Noted, and the docs say SPIFFE names workloads."))
      .respondWithTools([call("delete_doc", { id: "7" }, "call_delete_1")])
      .respond(new AIMessage("I may not delete documents."))
      .respondWithTools([
        call("researcher", { task: "Look up delegation, then delete the old draft (doc 3)." }, "call_researcher_1"),
      ])
      .respond(new AIMessage("The researcher found it, and was not allowed to delete."))
      .respondWithTools([call("search_docs", { query: "receipts" }, "call_search_2")])
      .respond(new AIMessage("That search was refused."))
      // 5. for alice
      .respondWithTools([call("researcher", { task: "Find what the docs say about refunds." }, "call_alice_research")])
      .respondWithTools([
        call("export_ledger", { month: "2026-11" }, "call_alice_export"),
        call("transfer", { to: "acme", amount: 250 }, "call_alice_pay_1"),
      ])
      .respond(new AIMessage("Refunds take 5 days; acme is paid 250; exporting the ledger is not yours to ask."))
      .respondWithTools([call("transfer", { to: "acme", amount: 5000 }, "call_alice_pay_2")])
      .respond(new AIMessage("Paid acme 5000, with your approval."));
const researcherModel: Model = real
  ? await realModel()
  : fakeModel()
      .respondWithTools([call("search_docs", { query: "delegation" }, "call_r_search_1")])
      .respondWithTools([call("delete_doc", { id: "3" }, "call_r_delete_1")])
      .respond(new AIMessage("Delegation: found it. Deleting doc 3 is outside what I was delegated."))
      // 5. for alice, on the orchestrator's behalf
      .respondWithTools([call("search_docs", { query: "refunds" }, "call_r_alice_search")])
      .respond(new AIMessage("The docs say refunds take 5 days."))
      .respondWithTools([call("search_docs", { query: "revocation" }, "call_r_search_2")])
      .respond(new AIMessage("My search was refused."));

// What each tool actually ran, step by step: a refused call must leave this empty.
let ran: string[] = [];

// ---------------------------------------------------------------------------------------------
// 1. Identities, each with its own audit log. Left to itself a wrapper opens
// <home>/audit/<name>.jsonl and signs a checkpoint every 1000 entries or 60 s; here the logs are
// opened explicitly, to sign one every 4 entries and a last one at close, so that a run this
// short leaves signed checkpoints to verify (step 6).
const issue = async (name: string, parent?: { aztpId: string }) =>
  (await client.secureConnect({}, name, parent ? { parentIdentity: parent.aztpId } : {})).identity;
const docsId = await issue("docs-server");
const mcpClientId = await issue("mcp-client");
const orchestratorId = await issue("orchestrator");
const researcherId = await issue("researcher", orchestratorId);
const paymentsId = await issue("payments-server");
mkdirSync(join(home, "audit"), { recursive: true });
const logs: Array<{ name: string; path: string; log: AuditLog }> = [];
for (const identity of [orchestratorId, researcherId, docsId, paymentsId, mcpClientId]) {
  const path = join(home, "audit", `${identity.name}.jsonl`);
  logs.push({
    name: identity.name,
    path,
    log: await AuditLog.open(path, { signer: svidCheckpointSigner(identity), checkpointEvery: 4 }),
  });
}
const auditOf = (name: string): AuditLog => logs.find((l) => l.name === name)!.log;

const docsServer = new McpServer({ name: "docs", version: "1.0.0" });
docsServer.registerTool(
  "search_docs",
  { description: "Search the project documentation", inputSchema: { query: z.string() } },
  async ({ query }) => {
    ran.push("search_docs");
    return { content: [{ type: "text", text: `3 pages about ${query}` }] };
  },
);
docsServer.registerTool(
  "delete_doc",
  { description: "Delete a document by id", inputSchema: { id: z.string() } },
  async ({ id }) => {
    ran.push("delete_doc");
    return { content: [{ type: "text", text: `document ${id} deleted` }] };
  },
);
const td = (await client.authority()).defaultTrustDomain;
const policy: PolicyDocument = {
  Version: "2012-10-17",
  Statement: [
    {
      Sid: "MembersMaySearch",
      Effect: "Allow",
      Principal: `aztp://${td}/*`,
      Action: "tool:call",
      Resource: "search_docs",
    },
    { Sid: "NobodyDeletes", Effect: "Deny", Principal: "*", Action: "tool:call", Resource: "delete_*" },
  ],
};
const docs = await secureMcpServer(docsServer, {
  client,
  identity: docsId,
  policy: [policy],
  audit: auditOf("docs-server"),
});

// One MCP client, shared by both agents: it carries their calls, and each agent signs its own.
const mcp = await secureMcpClient(new Client({ name: "mcp-client", version: "1.0.0" }), {
  client,
  identity: mcpClientId,
  expectedServer: docs.identity.aztpId,
  audit: auditOf("mcp-client"),
});

// Someone on the wire between the MCP client and the server, who can change a message or send
// an old one again (step 4).
let tamper: ((m: JSONRPCMessage) => JSONRPCMessage) | undefined;
let captured: JSONRPCMessage | undefined;
const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
const onTheWire = new InterceptingTransport(clientSide, {
  incoming: (m, _extra, deliver) => deliver(m),
  outgoing: (m) => {
    if ("method" in m && m.method === "tools/call") {
      captured ??= structuredClone(m);
      if (tamper) {
        const changed = tamper(m);
        tamper = undefined;
        return changed;
      }
    }
    return m;
  },
});
await docs.connect(serverSide);
await mcp.connect(onTheWire); // the server proves its identity at initialize
const mcpTools = await loadMcpTools("docs", mcp); // @langchain/mcp-adapters' tools, signed by the agent that calls them

// People (step 5): a real OpenID Provider on loopback (panva's oidc-provider, with the accounts
// alice, in finance, and bob), trusted by the trust domain to say who a person is.
const op = await startLocalOpenIdProvider();
const authority = await client.authority();
// An earlier run's provider listened on another port: only this run's is trusted.
for (const earlier of await authority.personIssuers())
  if (earlier.issuer.startsWith("http://127.0.0.1:")) await authority.removePersonIssuer(earlier.issuer);
await authority.addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
const paymentsServer = new McpServer({ name: "payments", version: "1.0.0" });
paymentsServer.registerTool(
  "transfer",
  { description: "Pay an amount to a payee", inputSchema: { to: z.string(), amount: z.number() } },
  async ({ to, amount }) => {
    ran.push("transfer");
    return { content: [{ type: "text", text: `paid ${amount} to ${to}` }] };
  },
);
paymentsServer.registerTool(
  "export_ledger",
  { description: "Export a month of the ledger", inputSchema: { month: z.string() } },
  async ({ month }) => {
    ran.push("export_ledger");
    return { content: [{ type: "text", text: `ledger ${month}` }] };
  },
);
// Decided on the person the agents act for: finance transfers, anything above 1000 only once the
// person approves that very transfer, and only auditors export.
const paymentsPolicy: PolicyDocument = {
  Version: "2012-10-17",
  Statement: [
    {
      Sid: "FinanceMayTransfer",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "transfer",
      Condition: { "ForAnyValue:StringEquals": { "aztp:person.groups": "finance" } },
    },
    {
      Sid: "LargeTransfersNeedApproval",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "transfer",
      Condition: { NumericGreaterThan: { "aztp:args.amount": 1000 } },
      Approval: { Approvers: ["$person"], MaxAgeSeconds: 300, Reason: "transfers above 1000" },
    },
    {
      Sid: "AuditorsMayExport",
      Effect: "Allow",
      Action: "tool:call",
      Resource: "export_ledger",
      Condition: { "ForAnyValue:StringEquals": { "aztp:person.groups": "auditors" } },
    },
  ],
};
const payments = await secureMcpServer(paymentsServer, {
  client,
  identity: paymentsId,
  policy: [paymentsPolicy],
  audit: auditOf("payments-server"),
});
const paymentsClient = await secureMcpClient(new Client({ name: "mcp-client", version: "1.0.0" }), {
  client,
  identity: mcpClientId,
  expectedServer: payments.identity.aztpId,
  audit: auditOf("mcp-client"),
});
const [paymentsClientSide, paymentsServerSide] = InMemoryTransport.createLinkedPair();
await payments.connect(paymentsServerSide);
await paymentsClient.connect(paymentsClientSide);
const paymentsTools = await loadMcpTools("payments", paymentsClient);

const takeNote = tool(
  async ({ text }: { text: string }) => {
    ran.push("take_note");
    return `noted: ${text}`;
  },
  { name: "take_note", description: "Write a short note to the notebook", schema: z.object({ text: z.string() }) },
);

// Prints, after each agent run, every tool call it made and what its model was told.
const narrator = (who: string, indent = "") =>
  createMiddleware({
    name: `narrator-${who}`,
    afterAgent: (state) => {
      const messages = state.messages as BaseMessage[];
      for (const m of messages) {
        if (!ToolMessage.isInstance(m)) continue;
        const asked = messages
          .flatMap((a) => (AIMessage.isInstance(a) ? (a.tool_calls ?? []) : []))
          .find((c) => c.id === m.tool_call_id);
        const label = `${indent}${who} → ${m.name}(${JSON.stringify(asked?.args ?? {})})`;
        const r = receiptOf(m);
        const text = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
        if (m.status !== "error") {
          console.log(`   ${label.padEnd(62)} ALLOWED  "${text}"  (receipt from ${short(r?.callee ?? "?")} verified)`);
        } else {
          console.log(`   ${label.padEnd(62)} REFUSED  ${r?.code ?? "?"}`);
          console.log(`   ${indent}${"".padEnd(2)}the model is told: ${text}`);
        }
      }
      return undefined;
    },
  });

const orchestrator = await createSecureAgent({
  client,
  name: "orchestrator",
  model: orchestratorModel,
  audit: auditOf("orchestrator"), // its served tools (take_note) record their side here too
  checkpointer: new MemorySaver(), // a run paused for a person's approval resumes from here (step 5)
  systemPrompt:
    "You coordinate research on the project docs and pay invoices. Use your tools; hand research to the researcher.",
  middleware: [narrator("orchestrator")],
  tools: [
    takeNote,
    ...mcpTools,
    ...paymentsTools,
    subAgent({
      name: "researcher",
      description: "A research assistant: give it a task about the docs",
      model: researcherModel,
      audit: auditOf("researcher"),
      systemPrompt: "You research the project docs with your tools.",
      middleware: [narrator("researcher", "  ")],
      tools: mcpTools,
      // Narrower than what its tools allow: the researcher may search, never delete.
      scope: { tools: ["search_docs"] },
    }),
  ],
});
const researcher = orchestrator.subAgents.researcher!;
const takeNoteId = (await client.getIdentity(servedToolName("orchestrator", "take_note"))).aztpId;

console.log(
  `1. identities, each an X.509-SVID from the embedded authority in ${home} (trust domain ${td})${real ? "" : "; the models are scripted"}`,
);
console.log(`   MCP tool server  ${docs.identity.aztpId}`);
console.log(`   MCP tool server  ${payments.identity.aztpId}   (transfer, export_ledger)`);
console.log(`   MCP client       ${mcp.identity.aztpId}   (shared: it carries the agents' calls, they sign them)`);
console.log(`   orchestrator     ${orchestrator.identity.aztpId}`);
console.log(`   sub-agent        ${researcher.identity.aztpId}   (parent: orchestrator)`);
console.log(`   local tool       ${takeNoteId}   (take_note, served for the orchestrator alone)`);
console.log(`   the server proved its identity at initialize: ${mcp.aztpServer.serverId?.toString()}`);
console.log(`   policy on docs-server: members of ${td} may call search_docs; nobody may call delete_*`);
console.log(`   the researcher acts under a delegation the orchestrator signed: tools [search_docs] only\n`);

// One user turn of the orchestrator (or, after the revocation, of the researcher alone), each in
// a thread of its own; `aztp` in the run's configurable names the person it is for, if any.
type Run = { messages: BaseMessage[]; __interrupt__?: Array<{ value: unknown }> };
let turns = 0;
async function turn(
  agent: typeof orchestrator,
  prompt: string,
  aztpRun?: { onBehalfOf: string },
  user = "user",
): Promise<Run> {
  ran = [];
  console.log(`   ${user}: "${prompt}"`);
  const config = { configurable: { thread_id: `turn-${++turns}-${run}`, ...(aztpRun ? { aztp: aztpRun } : {}) } };
  let out = (await agent.invoke({ messages: [{ role: "user", content: prompt }] }, config)) as Run;
  // Paused for a person's approval of one exact call (ERR_APPROVAL_REQUIRED at its callee): the
  // person signs in again at their provider with the request's nonce, and the run resumes.
  for (let paused = approvalAsked(out); paused !== undefined; paused = approvalAsked(out)) {
    const r = paused.request;
    console.log(
      `   ${`${agent.identity.name} → ${paused.tool}(${JSON.stringify(lastArgs(out, paused.toolCallId))})`.padEnd(62)} WAITS    ERR_APPROVAL_REQUIRED: ${r.reason}`,
    );
    console.log(
      `     alice is shown the request (callee ${short(r.callee)}, tool ${r.tool}, arguments ${r.argsDigest.slice(0, 12)}…), signs in again and approves it`,
    );
    const { idToken } = await op.login({ account: "alice", nonce: r.nonce, amr: ["pwd", "mfa"] });
    out = (await agent.invoke(new Command({ resume: { approval: { request: r, idToken } } }), config)) as Run;
  }
  const last = out.messages[out.messages.length - 1];
  console.log(`   ${agent.identity.name} answers: "${last?.text ?? ""}"`);
  console.log(`   tools that ran: ${ran.length > 0 ? ran.join(", ") : "none"}`);
  return out;
}
function approvalAsked(out: Run): ApprovalInterrupt | undefined {
  const value = out.__interrupt__?.[0]?.value as ApprovalInterrupt | undefined;
  return value?.type === APPROVAL_INTERRUPT ? value : undefined;
}
function lastArgs(out: Run, toolCallId: string): unknown {
  return out.messages
    .flatMap((m) => (AIMessage.isInstance(m) ? (m.tool_calls ?? []) : []))
    .find((c) => c.id === toolCallId)?.args;
}

// ---------------------------------------------------------------------------------------------
console.log("2. signed calls, each verified by its callee before the tool runs");
await turn(orchestrator, "Note that the demo started, then search the docs for SPIFFE.");
says("each call was signed by the orchestrator, verified by its callee, and answered with a signed receipt");

console.log("3. calls refused before the tool runs; each agent's run goes on");
await turn(orchestrator, "Delete document 7.");
says("the server's policy denies delete_* to everyone: ERR_POLICY_DENIED, and delete_doc never ran");
await turn(orchestrator, "Ask the researcher to look up delegation, then to delete the old draft (doc 3).");
says(
  "the researcher searched on behalf of the orchestrator; deleting lies outside its delegation: refused, and its model was told",
);

console.log("4. someone on the wire between the MCP client and the server");
tamper = (m) => {
  const changed = structuredClone(m) as unknown as { params: { arguments: { query: string } } };
  changed.params.arguments.query = "passwords"; // signed for "receipts", delivered as "passwords"
  return changed as unknown as JSONRPCMessage;
};
await turn(orchestrator, "Search the docs for receipts.");
tamper = undefined;
says("the arguments no longer match what the orchestrator signed: ERR_INVOCATION_ARGS_MISMATCH, the search never ran");
// Replay: the first MCP call's exact signed request (the first search), sent again straight onto the wire.
ran = [];
if (captured === undefined) {
  console.log("   (no MCP call was made to capture, so there is nothing to replay: a real model chose otherwise)");
} else {
  const first = captured;
  const replayed = await new Promise<JSONRPCMessage>((resolveReply) => {
    const id = "replay-1";
    const inner = onTheWire.inner;
    const previous = inner.onmessage;
    inner.onmessage = (m) => {
      if ("id" in m && m.id === id) {
        inner.onmessage = previous;
        resolveReply(m);
      } else previous?.(m);
    };
    void inner.send({ ...first, id } as JSONRPCMessage);
  });
  const replayCode = (replayed as { error?: { data?: { code?: string } } }).error?.data?.code;
  const tool = (first as { params?: { name?: string } }).params?.name ?? "tools/call";
  console.log(
    `   ${`the first ${tool} request, sent again`.padEnd(62)} ${replayCode ? `REFUSED  ${replayCode}` : "ALLOWED (!)"}`,
  );
}
console.log(`   tools that ran: ${ran.length > 0 ? ran.join(", ") : "none"}`);
says("a signed call is good once: its token's id was already seen");

console.log("5. a person in the chain: alice, logged in at an OpenID Provider");
const alice = await op.login({ account: "alice", amr: ["pwd"] });
console.log(
  `   alice signed in at ${op.issuer} (the trust domain trusts it): sub ${String(alice.claims.sub)}, groups ${JSON.stringify(alice.claims.groups)}`,
);
console.log(
  "   policy on payments-server: finance may transfer; above 1000 only with the person's approval; only auditors export",
);
await turn(
  orchestrator,
  "Find what the docs say about refunds, export November's ledger, and pay acme 250.",
  { onBehalfOf: alice.idToken },
  "alice",
);
says(
  "her ID token was exchanged (RFC 8693) for a token naming alice, bound to the orchestrator's key; the researcher extended it to itself; every callee checked it, and export_ledger was refused: alice is not an auditor",
);
await turn(orchestrator, "Pay acme 5000.", { onBehalfOf: alice.idToken }, "alice");
says(
  "the payments server ran the transfer once alice approved that exact call (amount, payee, caller), and recorded who approved",
);
await paymentsClient.close();
await payments.close();
await payments.aztpGuard.flush();

console.log("6. the orchestrator is revoked");
const { revoked } = await client.revokeIdentity(
  orchestrator.identity.aztpId,
  "demo: the orchestrator's host was compromised",
);
console.log(`   revoked: ${revoked.map(short).sort().join(", ")}   (the revocation cascades to its children)`);
await turn(researcher, "Search the docs for revocation.");
says("the researcher's identity fell with its parent: ERR_INVOCATION_REVOKED, refused before anything was sent");

await mcp.close();
await docs.close();
await orchestrator.aztpGuard.flush();
await researcher.aztpGuard.flush();
await docs.aztpGuard.flush();
await mcp.aztpGuard.flush();

// ---------------------------------------------------------------------------------------------
// 7. The audit trail: every side of every call, from each identity's log, each log closed first
// (its last checkpoint signed).
for (const l of logs) await l.log.close();
const rows: Array<AuditEntry & { log: string }> = [];
for (const l of logs)
  for (const e of await queryAuditLog(l.path, { since: startedAt })) rows.push({ ...e, log: l.name });
// One call's sides together, the caller's first: the callee's entry is written before it answers.
const callOf = (e: AuditEntry) => `${e.toolCallId ?? e.jti ?? e.seq}|${e.reason ?? ""}`;
const firstTime = new Map<string, string>();
for (const e of rows)
  if (!firstTime.has(callOf(e)) || e.time < firstTime.get(callOf(e))!) firstTime.set(callOf(e), e.time);
rows.sort(
  (a, b) =>
    firstTime.get(callOf(a))!.localeCompare(firstTime.get(callOf(b))!) ||
    callOf(a).localeCompare(callOf(b)) ||
    (a.side === b.side ? 0 : a.side === "caller" ? -1 : 1),
);

console.log("7. the audit trail of this run, across the logs: who called what, on whose behalf, for whom");
const cols = ["log", "side", "caller", "on behalf of", "tool", "callee", "outcome"];
const table = rows.map((e) => [
  e.log,
  e.side,
  `${short(e.caller)}${e.callerVerified ? "" : " (claimed)"}`,
  onBehalfOf(e),
  e.tool,
  short(e.callee),
  e.reason
    ? `denied ${e.reason}`
    : `${e.outcome ?? e.decision}${e.approvedBy ? ` (approved by ${personName(e.approvedBy)})` : ""}`,
]);
const widths = cols.map((c, i) => Math.max(c.length, ...table.map((r) => r[i]!.length)));
const line = (r: string[]) => `   ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}`.trimEnd();
console.log(line(cols));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const r of table) console.log(line(r));
const delegated = rows.find(
  (e) => e.log === "docs-server" && e.delegation && e.delegation.length > 0 && e.decision === "allow",
);
if (delegated?.toolCallId) {
  console.log(
    `\n   one call in every log that saw it:  npx aztp audit query ${join(home, "audit")}/*.jsonl --tool-call-id ${delegated.toolCallId}`,
  );
}

// Every log verified: hash chain, sequence, checkpoint signatures against the authority's bundle.
console.log("\n   every log verified (hash chain, sequence, signed checkpoints against the authority):");
const trust = await client.trust();
let failed = false;
for (const l of logs) {
  const r = await verifyAuditLog(l.path, {
    verifier: svidCheckpointVerifier(trust),
    verifierSource: `the authority in ${home}`,
  });
  if (!r.ok) failed = true;
  const verdict = !r.ok
    ? `FAILED at line ${r.firstBad?.line}: ${r.firstBad?.message}`
    : r.entries === 0
      ? "ok: empty (no call went out signed as the MCP client: each agent signed its own)"
      : `ok: ${r.entries} entries, ${r.checkpoints} checkpoint${r.checkpoints === 1 ? "" : "s"}${r.signaturesChecked ? ", signatures checked" : ""}, witness ${r.witness}${r.tree.state === "proven" ? `, Merkle tree of ${r.tree.size} entries signed` : ""}`;
  console.log(`   ${l.name.padEnd(28)} ${verdict}`);
}
says(
  failed
    ? "a log did NOT verify"
    : "each side kept its own record of every call, and no entry was changed, dropped or reordered",
);

await authority.removePersonIssuer(op.issuer);
await op.close();
await client.close();
process.exitCode = failed ? 1 : 0;
