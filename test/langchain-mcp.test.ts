/**
 * MCP tools in LangChain.js agents: an in-memory McpServer secured with secureMcpServer, its
 * tools loaded through this package's `loadMcpTools` over a client made with secureMcpClient,
 * and `SecureMultiServerMCPClient` over a real stdio server process. What a user counts on:
 * the server records the AGENT as caller (not the MCP client that carried the call), with the
 * agent's tool-call id, so one call is found in both logs; agents sharing one MCP client each
 * sign as themselves; the receipt reaches the agent, never the model.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ToolMessage } from "@langchain/core/messages";
import { AIMessage, createMiddleware, fakeModel } from "langchain";
import type { AuditEntry } from "../src/audit/entry.js";
import { canonicalDigest } from "../src/invocation/canonical.js";
import { createSecureAgent, isMcpTool, mcpServerOf, receiptOf } from "../src/langchain/index.js";
import { loadMcpTools, SecureMultiServerMCPClient } from "../src/langchain/mcp.js";
import type { PolicyDocument } from "../src/policy/policy.js";
import { assertExit, aztpCli, rejectsWithCode, ROOT } from "./helpers/authority-util.js";
import {
  answerTo,
  assertReceipted,
  assertRefused,
  auditOf,
  aztpIdOf,
  forCall,
  logOf,
  oneFor,
  pollFor,
  shownTo,
  spiffeOf,
  textOf,
} from "./helpers/langchain-util.js";
import { fixture, linkInMemory, STDIO_SERVER } from "./helpers/mcp-util.js";
import { docs } from "./helpers/langchain-docs.js";

const ask = (content: string) => ({ messages: [{ role: "user", content }] });

const receiptOfEntry = (m: ToolMessage): string | undefined => receiptOf(m)?.receipt;

const agentAndServer = (
  agentLog: readonly AuditEntry[],
  serverLog: readonly AuditEntry[],
  toolCallId: string,
): { agent: AuditEntry; server: AuditEntry } => ({
  agent: oneFor(agentLog, toolCallId, "the agent's log"),
  server: oneFor(serverLog, toolCallId, "the server's log"),
});

describe("MCP tools from loadMcpTools", () => {
  it("an agent's call is signed by the agent: the server records the agent as caller, under the agent's tool-call id; the receipt reaches the agent, not the model; `aztp audit query --tool-call-id` finds it in both logs", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    assert.deepEqual(tools.map((x) => x.name).sort(), ["delete_doc", "fails", "search", "slow"]);
    assert.ok(tools.every(isMcpTool));
    assert.equal(mcpServerOf(tools[0]), spiffeOf("docs-server"), "the tools know the server their client proved");
    const model = fakeModel()
      .respondWithTools([{ name: "search", args: { q: "spiffe" }, id: "a1" }])
      .respond(new AIMessage("done"));
    const agent = await createSecureAgent({ client: aztp, name: "alice", model, tools });
    const result = await agent.invoke(ask("find spiffe"));
    assert.deepEqual(d.runs.search, ["spiffe"]);

    const m = answerTo(result, "a1");
    assert.equal(m.status, "success");
    assert.match(textOf(m), /found spiffe/);
    const entry = assertReceipted(m, aztpIdOf("docs-server"));
    assert.ok(!textOf(m).includes("aztp"), `no AZTP metadata in what the model reads: ${textOf(m)}`);
    assert.equal(textOf(shownTo(model, "a1")), textOf(m), "the model was shown the server's answer");

    await Promise.all([agent.aztpGuard.flush(), d.flush()]);
    const [agentLog, serverLog, clientLog] = [
      await auditOf(home, "alice"),
      await auditOf(home, "docs-server"),
      await auditOf(home, "mcp-client"),
    ];
    const both = agentAndServer(agentLog, serverLog, "a1");
    for (const e of [both.agent, both.server]) {
      assert.equal(e.caller, spiffeOf("alice"), `${e.side}: the caller is the agent`);
      assert.equal(e.callerVerified, true);
      assert.equal(e.callee, spiffeOf("docs-server"));
      assert.equal(e.tool, "search");
      assert.equal(e.argsDigest, canonicalDigest({ q: "spiffe" }));
      assert.equal(e.decision, "allow");
      assert.equal(e.outcome, "ok");
      assert.equal(e.receipt, entry.receipt, `${e.side}: the receipt the agent holds`);
    }
    assert.equal(both.agent.jti, both.server.jti);
    assert.equal(
      clientLog.filter((e) => e.tool === "search").length,
      0,
      "the MCP client that carried the call did not sign it",
    );

    const cli = await aztpCli(home, [
      "audit",
      "query",
      logOf(home, "alice"),
      logOf(home, "docs-server"),
      "--tool-call-id",
      "a1",
    ]);
    assertExit(cli, 0, "aztp audit query --tool-call-id");
    const found = cli.json as Array<AuditEntry & { file: string }>;
    assert.deepEqual(
      found.map((e) => [e.file, e.side, e.caller, e.toolCallId]),
      [
        [logOf(home, "alice"), "caller", spiffeOf("alice"), "a1"],
        [logOf(home, "docs-server"), "callee", spiffeOf("alice"), "a1"],
      ],
    );
  });

  it("two agents sharing one secured MCP client (and its tools) each sign as themselves, at once: the server's policy sees each agent", async (t) => {
    const { home, aztp } = fixture(t);
    const policy: PolicyDocument[] = [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "both-search",
            Effect: "Allow",
            Principal: [spiffeOf("alice"), spiffeOf("bob")],
            Action: "tool:call",
            Resource: "search",
          },
          {
            Sid: "alice-deletes",
            Effect: "Allow",
            Principal: spiffeOf("alice"),
            Action: "tool:call",
            Resource: "delete_doc",
          },
        ],
      },
    ];
    const d = await docs(t, aztp, policy);
    const tools = await loadMcpTools("docs", d.client);
    const models = {
      alice: fakeModel()
        .respondWithTools([
          { name: "search", args: { q: "alice-q" }, id: "alice-1" },
          { name: "delete_doc", args: { id: "7" }, id: "alice-2" },
        ])
        .respond(new AIMessage("done")),
      bob: fakeModel()
        .respondWithTools([
          { name: "search", args: { q: "bob-q" }, id: "bob-1" },
          { name: "delete_doc", args: { id: "8" }, id: "bob-2" },
        ])
        .respond(new AIMessage("done")),
    };
    const [alice, bob] = await Promise.all([
      createSecureAgent({ client: aztp, name: "alice", model: models.alice, tools }),
      createSecureAgent({ client: aztp, name: "bob", model: models.bob, tools }),
    ]);
    const [ra, rb] = await Promise.all([alice.invoke(ask("go")), bob.invoke(ask("go"))]);
    assert.deepEqual(d.runs.search.sort(), ["alice-q", "bob-q"]);
    assert.deepEqual(d.runs.delete_doc, ["7"], "bob's delete never ran");
    assert.match(textOf(answerTo(ra, "alice-2")), /deleted 7/);
    assertRefused(answerTo(rb, "bob-2"), "ERR_POLICY_DENIED");
    assert.equal(
      textOf(shownTo(models.bob, "bob-2")),
      textOf(answerTo(rb, "bob-2")),
      "bob's model was told the refusal",
    );

    await Promise.all([alice.aztpGuard.flush(), bob.aztpGuard.flush(), d.flush()]);
    const serverLog = await auditOf(home, "docs-server");
    assert.equal(serverLog.filter((e) => e.tool !== "tools/list").length, 4);
    for (const name of ["alice", "bob"]) {
      const own = await auditOf(home, name);
      assert.equal(own.length, 2, `${name}'s log holds its own calls only`);
      for (const id of [`${name}-1`, `${name}-2`]) {
        const both = agentAndServer(own, serverLog, id);
        assert.equal(both.server.caller, spiffeOf(name), `${id}: the server saw ${name}`);
        assert.equal(both.server.callerVerified, true);
        assert.equal(both.agent.caller, spiffeOf(name));
      }
    }
    const denied = oneFor(serverLog, "bob-2", "server");
    assert.deepEqual([denied.decision, denied.reason], ["deny", "ERR_POLICY_DENIED"]);
    assert.equal(oneFor(await auditOf(home, "bob"), "bob-2", "bob").reason, "ERR_POLICY_DENIED");
    assert.equal(
      (await auditOf(home, "mcp-client")).filter((e) => e.tool !== "tools/list").length,
      0,
      "the shared client signed none of the agents' calls",
    );
  });

  it("32 calls in one step from each of two agents sharing one client: each reaches the server signed by its own agent, under its own tool-call id, none mixed up", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    const n = 32;
    const calls = (name: string) =>
      Array.from({ length: n }, (_, i) => ({ name: "search", args: { q: `${name}-${i}` }, id: `${name}-${i}` }));
    const agents = await Promise.all(
      ["p", "q"].map((name) =>
        createSecureAgent({
          client: aztp,
          name,
          model: fakeModel().respondWithTools(calls(name)).respond(new AIMessage("done")),
          tools,
        }),
      ),
    );
    const results = await Promise.all(agents.map((a) => a.invoke(ask("go"))));
    assert.equal(d.runs.search.length, 2 * n);
    await Promise.all([...agents.map((a) => a.aztpGuard.flush()), d.flush()]);
    const serverLog = await auditOf(home, "docs-server");
    for (const [i, name] of ["p", "q"].entries()) {
      const own = await auditOf(home, name);
      assert.equal(own.length, n, `${name}: one entry per call`);
      const receipts = new Set<string>();
      for (const { id, args } of calls(name)) {
        const m = answerTo(results[i], id);
        assert.match(textOf(m), new RegExp(`found ${id}\\b`), `${id}: its own answer`);
        receipts.add(assertReceipted(m, aztpIdOf("docs-server")).receipt as string);
        const both = agentAndServer(own, serverLog, id);
        for (const e of [both.agent, both.server]) {
          assert.equal(e.caller, spiffeOf(name), `${id} ${e.side}: signed by its own agent`);
          assert.equal(e.argsDigest, canonicalDigest(args), `${id} ${e.side}: its own arguments`);
          assert.equal(e.receipt, receiptOfEntry(m), `${id} ${e.side}: its own receipt`);
        }
      }
      assert.equal(receipts.size, n);
    }
  });

  it("an MCP answer changed by a middleware inside the secure one is refused (ERR_RECEIPT_MISMATCH, recorded); the model never sees it; one re-made unchanged passes", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    const remake = (m: ToolMessage, content: ToolMessage["content"]) =>
      new ToolMessage({
        content,
        tool_call_id: m.tool_call_id,
        ...(m.name !== undefined ? { name: m.name } : {}),
        ...(m.status !== undefined ? { status: m.status } : {}),
        artifact: m.artifact,
      });
    const inner = createMiddleware({
      name: "inner",
      wrapToolCall: async (request, handler) => {
        const m = (await handler(request)) as ToolMessage;
        if (request.toolCall.id === "x1") return remake(m, "altered: nothing found");
        if (request.toolCall.id === "x2") return remake(m, m.content); // a copy, unchanged
        return m;
      },
    });
    const model = fakeModel()
      .respondWithTools([
        { name: "search", args: { q: "one" }, id: "x1" },
        { name: "search", args: { q: "two" }, id: "x2" },
        { name: "search", args: { q: "three" }, id: "x3" },
      ])
      .respond(new AIMessage("done"));
    const agent = await createSecureAgent({ client: aztp, name: "alice", model, tools, middleware: [inner] });
    const result = await agent.invoke(ask("go"));
    assert.equal(d.runs.search.length, 3, "the server answered each call: the answer was changed after");
    const x1 = answerTo(result, "x1");
    assertRefused(x1, "ERR_RECEIPT_MISMATCH");
    assert.doesNotMatch(textOf(x1), /altered/);
    assert.equal(textOf(shownTo(model, "x1")), textOf(x1), "the model was shown the refusal");
    assert.match(textOf(answerTo(result, "x2")), /found two/);
    assertReceipted(answerTo(result, "x2"), aztpIdOf("docs-server"));
    assert.match(textOf(answerTo(result, "x3")), /found three/);

    await Promise.all([agent.aztpGuard.flush(), d.flush()]);
    const own = await auditOf(home, "alice");
    // The client checked the server's receipt (allow), then the middleware refused what came back.
    assert.deepEqual(
      forCall(own, "x1").map((e) => [e.decision, e.outcome, e.reason ?? null]),
      [
        ["allow", "ok", null],
        ["deny", "denied", "ERR_RECEIPT_MISMATCH"],
      ],
    );
    for (const id of ["x2", "x3"])
      assert.deepEqual(
        forCall(own, id).map((e) => [e.decision, e.outcome]),
        [["allow", "ok"]],
        id,
      );

    // An agent in audit mode takes it, as it takes any answer a check failed for.
    const watcher = await createSecureAgent({
      client: aztp,
      name: "watcher",
      mode: "audit",
      model: fakeModel()
        .respondWithTools([{ name: "search", args: { q: "one" }, id: "x1" }])
        .respond(new AIMessage("done")),
      tools,
      middleware: [inner],
    });
    assert.equal(textOf(answerTo(await watcher.invoke(ask("go")), "x1")), "altered: nothing found");
  });

  it("arguments changed by a middleware inside the secure one are refused before the MCP call is sent (ERR_INVOCATION_ARGS_MISMATCH, recorded once); untouched ones run", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    const tamper = createMiddleware({
      name: "tamper",
      wrapToolCall: async (request, handler) =>
        request.toolCall.id === "t1"
          ? handler({ ...request, toolCall: { ...request.toolCall, args: { q: "EVIL" } } })
          : handler(request),
    });
    const model = fakeModel()
      .respondWithTools([
        { name: "search", args: { q: "good" }, id: "t1" },
        { name: "search", args: { q: "fine" }, id: "t2" },
      ])
      .respond(new AIMessage("done"));
    const agent = await createSecureAgent({ client: aztp, name: "alice", model, tools, middleware: [tamper] });
    const result = await agent.invoke(ask("go"));
    assert.deepEqual(d.runs.search, ["fine"], "the changed call never reached the server; the untouched one ran");
    assertRefused(answerTo(result, "t1"), "ERR_INVOCATION_ARGS_MISMATCH");
    assert.equal(textOf(shownTo(model, "t1")), textOf(answerTo(result, "t1")), "the model was told");
    assert.match(textOf(answerTo(result, "t2")), /found fine/);
    await Promise.all([agent.aztpGuard.flush(), d.flush()]);
    const own = await auditOf(home, "alice");
    assert.deepEqual(
      forCall(own, "t1").map((e) => [e.decision, e.reason ?? null]),
      [["deny", "ERR_INVOCATION_ARGS_MISMATCH"]],
      "recorded once, as refused",
    );
    assert.equal(forCall(await auditOf(home, "docs-server"), "t1").length, 0, "the server saw nothing of it");
  });

  it("an in-process MCP server whose tool calls another server signs that call as itself, not as the agent whose call reached it in memory", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp); // docs-server, reached through the secured client mcp-client
    const front = await secureMcpServer(new McpServer({ name: "front", version: "1.0.0" }), {
      client: aztp,
      name: "front-server",
    });
    front.registerTool(
      "lookup",
      { description: "looks up in the docs", inputSchema: { q: z.string() } },
      async ({ q }) => {
        const found = (await d.client.callTool({ name: "search", arguments: { q } })) as {
          content: Array<{ text: string }>;
        };
        return { content: [{ type: "text", text: `front: ${found.content[0]?.text}` }] };
      },
    );
    const frontClient = await secureMcpClient(new Client({ name: "front-client", version: "1.0.0" }), {
      client: aztp,
      name: "front-client",
    });
    await linkInMemory(t, front, frontClient);
    const model = fakeModel()
      .respondWithTools([{ name: "lookup", args: { q: "spiffe" }, id: "f1" }])
      .respond(new AIMessage("done"));
    const agent = await createSecureAgent({
      client: aztp,
      name: "alice",
      model,
      tools: await loadMcpTools("front", frontClient),
    });
    const result = await agent.invoke(ask("go"));
    assert.match(textOf(answerTo(result, "f1")), /front: found spiffe/);
    await Promise.all([agent.aztpGuard.flush(), d.flush(), front.aztpGuard.flush()]);
    const [onFront] = await auditOf(home, "front-server");
    assert.equal(onFront?.caller, spiffeOf("alice"), "the front server was called by the agent");
    const [onDocs] = await auditOf(home, "docs-server");
    assert.deepEqual(
      [onDocs?.caller, onDocs?.callerVerified, onDocs?.decision],
      [spiffeOf("mcp-client"), true, "allow"],
      "the docs server was called by the front server's client, in its own name",
    );
  });

  it("a run aborted while an MCP call is in flight: the call is recorded once on each side, as cancelled", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    const controller = new AbortController();
    const model = fakeModel()
      .respondWithTools([
        { name: "search", args: { q: "fast" }, id: "f1" },
        { name: "slow", args: { q: "late" }, id: "s1" },
      ])
      .respond(new AIMessage("never reached"));
    const agent = await createSecureAgent({ client: aztp, name: "hasty", model, tools });
    const run = agent.invoke(ask("go"), { signal: controller.signal });
    // Aborted once the slow call is at the server (a fixed delay raced it on a loaded machine).
    await pollFor(
      async () => d.runs.slow.length,
      (n) => n > 0,
      10_000,
    );
    controller.abort(new Error("user stopped"));
    await assert.rejects(run);
    assert.deepEqual(d.runs.slow, ["late"], "the slow call reached the server");
    const read = async () => {
      await Promise.all([agent.aztpGuard.flush(), d.flush()]);
      return { own: await auditOf(home, "hasty"), server: await auditOf(home, "docs-server") };
    };
    // Then wait a little more for an entry that should not come (a second record of the call).
    const logs = await pollFor(read, (l) => forCall(l.own, "s1").length >= 1 && forCall(l.server, "s1").length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    const after = await read();
    assert.deepEqual(
      forCall(after.own, "s1").map((e) => [e.side, e.decision, e.outcome, e.reason ?? null]),
      [["caller", "allow", "error", "cancelled"]],
      "the agent's side: once, cancelled",
    );
    assert.equal(forCall(after.server, "s1").length, 1, "the server's side: once");
    assert.equal(oneFor(after.server, "s1", "server").caller, spiffeOf("hasty"));
    assert.deepEqual(
      forCall(logs.own, "f1").map((e) => [e.decision, e.outcome]),
      [["allow", "ok"]],
    );
  });

  it("an error result comes back receipted (ERR_TOOL_FAILED on both sides); arguments the tool's schema refuses never leave (ERR_TOOL_FAILED, recorded once, against the server)", async (t) => {
    const { home, aztp } = fixture(t);
    const d = await docs(t, aztp);
    const tools = await loadMcpTools("docs", d.client);
    const model = fakeModel()
      .respondWithTools([
        { name: "fails", args: { id: "7" }, id: "f1" },
        { name: "search", args: { q: 42 }, id: "bad" },
        { name: "search", args: { q: "fine" }, id: "ok" },
      ])
      .respond(new AIMessage("done"));
    const agent = await createSecureAgent({ client: aztp, name: "alice", model, tools });
    const result = await agent.invoke(ask("go"));
    assert.deepEqual([d.runs.fails, d.runs.search], [["7"], ["fine"]], "the malformed call never reached the server");
    const f1 = answerTo(result, "f1");
    assertRefused(f1, "ERR_TOOL_FAILED");
    assert.match(textOf(f1), /no doc 7/, "the model is told the server's error");
    assertReceipted(f1, aztpIdOf("docs-server"), "error");
    const bad = answerTo(result, "bad");
    assertRefused(bad, "ERR_TOOL_FAILED");
    assert.match(textOf(bad), /did not match expected schema/);
    assert.match(textOf(answerTo(result, "ok")), /found fine/);

    await Promise.all([agent.aztpGuard.flush(), d.flush()]);
    const [own, serverLog] = [await auditOf(home, "alice"), await auditOf(home, "docs-server")];
    const failed = agentAndServer(own, serverLog, "f1");
    for (const e of [failed.agent, failed.server])
      assert.deepEqual([e.decision, e.outcome, e.reason], ["allow", "error", "ERR_TOOL_FAILED"], `f1 ${e.side}`);
    assert.equal(failed.agent.receipt, receiptOf(f1)?.receipt);
    const refused = oneFor(own, "bad", "the agent's log");
    assert.deepEqual(
      [refused.decision, refused.reason, refused.callee, refused.argsDigest],
      ["deny", "ERR_TOOL_FAILED", spiffeOf("docs-server"), canonicalDigest({ q: 42 })],
    );
    assert.equal(forCall(serverLog, "bad").length, 0);
  });

  it("loadMcpTools refuses a client not made by secureMcpClient (its calls would go out unsigned); a secured one is taken", async (t) => {
    const { aztp } = fixture(t);
    const d = await docs(t, aztp);
    await rejectsWithCode(
      () => loadMcpTools("docs", new Client({ name: "plain", version: "1.0.0" })),
      "ERR_ARGUMENT_INVALID",
      "loadMcpTools(plain client)",
    );
    assert.equal((await loadMcpTools("docs", d.client)).length, 4);
  });
});

describe("SecureMultiServerMCPClient", () => {
  it("over a stdio server process, with MultiServerMCPClient's configuration: the agent's calls are signed by the agent, and the server's policy judges that agent", async (t) => {
    const { home, aztp } = fixture(t);
    const policy: PolicyDocument = {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "the-agent-only",
          Effect: "Allow",
          Principal: spiffeOf("stdio-agent"),
          Action: "tool:call",
          Resource: "*",
        },
      ],
    };
    const config = {
      mcpServers: {
        tools: {
          transport: "stdio" as const,
          command: process.execPath,
          args: [
            "--import",
            "tsx",
            STDIO_SERVER,
            "--home",
            home,
            "--name",
            "stdio-server",
            "--policy",
            JSON.stringify(policy),
          ],
          env: getDefaultEnvironment(),
          cwd: ROOT,
          stderr: "pipe" as const,
        },
      },
    };
    const multi = await SecureMultiServerMCPClient.create(config, {
      client: aztp,
      name: "multi",
      expectedServers: { tools: aztpIdOf("stdio-server") },
    });
    t.after(() => multi.close());
    const tools = await multi.getTools();
    assert.deepEqual(tools.map((x) => x.name).sort(), ["echo", "late"]);
    assert.deepEqual(
      (await multi.getTools()).map((x) => x.name).sort(),
      ["echo", "late"],
      "getTools() again (its tools are cached) works too",
    );
    assert.ok(tools.every(isMcpTool), "each tool is marked for the agent's middleware");
    const [echo, late] = ["echo", "late"];
    const model = fakeModel()
      .respondWithTools([
        { name: echo, args: { text: "hi" }, id: "e1" },
        { name: late, args: { n: 21 }, id: "l1" },
      ])
      .respond(new AIMessage("done"))
      .respondWithTools([{ name: echo, args: { text: "again" }, id: "e2" }])
      .respond(new AIMessage("done again"));
    const agent = await createSecureAgent({ client: aztp, name: "stdio-agent", model, tools });
    const result = await agent.invoke(ask("go"));
    assert.match(textOf(answerTo(result, "e1")), /"value":"hi"/);
    assert.match(textOf(answerTo(result, "l1")), /"value":42/);
    for (const id of ["e1", "l1"]) assertReceipted(answerTo(result, id), aztpIdOf("stdio-server"));
    // Each answer says how many handler runs the server process had made: one each, no more.
    const runs = ["e1", "l1"].map((id) => Number(/"runs":(\d+)/.exec(textOf(answerTo(result, id)))?.[1]));
    assert.deepEqual(runs.sort(), [1, 2]);
    // Another agent on the same client and tools is judged as itself: the policy does not admit it.
    const intruder = await createSecureAgent({
      client: aztp,
      name: "intruder",
      model: fakeModel()
        .respondWithTools([{ name: echo, args: { text: "let me in" }, id: "i1" }])
        .respond(new AIMessage("done")),
      tools,
    });
    const refused = await intruder.invoke(ask("go"));
    assertRefused(answerTo(refused, "i1"), "ERR_POLICY_DENIED");
    assert.doesNotMatch(textOf(answerTo(refused, "i1")), /let me in"/, "the tool did not answer");
    const again = await agent.invoke(ask("again"));
    assert.match(textOf(answerTo(again, "e2")), /"runs":3\b/, "the intruder's call never ran a handler");

    await agent.aztpGuard.flush();
    const agentLog = await auditOf(home, "stdio-agent");
    // The server is another process: its entries are written before it answers, read as they land.
    const serverLog = await pollFor(
      () => auditOf(home, "stdio-server"),
      (l) => l.filter((e) => e.toolCallId !== undefined).length >= 4,
      10_000,
    );
    const denied = oneFor(serverLog, "i1", "the server's log");
    assert.deepEqual(
      [denied.caller, denied.callerVerified, denied.decision, denied.reason],
      [spiffeOf("intruder"), true, "deny", "ERR_POLICY_DENIED"],
    );
    for (const [id, tool, args] of [
      ["e1", "echo", { text: "hi" }],
      ["l1", "late", { n: 21 }],
    ] as const) {
      const both = agentAndServer(agentLog, serverLog, id);
      for (const e of [both.agent, both.server]) {
        assert.equal(e.caller, spiffeOf("stdio-agent"), `${id} ${e.side}: the caller is the agent, not the MCP client`);
        assert.equal(e.callerVerified, true);
        assert.equal(e.callee, spiffeOf("stdio-server"));
        assert.equal(e.tool, tool);
        assert.equal(e.argsDigest, canonicalDigest(args));
        assert.equal(e.decision, "allow");
        assert.equal(e.outcome, "ok");
      }
    }
    assert.equal(
      forCall(await auditOf(home, "multi"), "e1").length,
      0,
      "the multi-server client did not sign the agent's calls",
    );
  });

  it("a server that is not the one expected for its name is refused at connection (ERR_PEER_NOT_AUTHORIZED): no tools are handed out", async (t) => {
    const { home, aztp } = fixture(t);
    const config = {
      mcpServers: {
        tools: {
          transport: "stdio" as const,
          command: process.execPath,
          args: ["--import", "tsx", STDIO_SERVER, "--home", home, "--name", "stdio-server"],
          env: getDefaultEnvironment(),
          cwd: ROOT,
          stderr: "pipe" as const,
        },
      },
    };
    const multi = await SecureMultiServerMCPClient.create(config, {
      client: aztp,
      name: "multi",
      expectedServers: { tools: aztpIdOf("another-server") },
    });
    t.after(() => multi.close());
    await assert.rejects(multi.getTools(), /ERR_PEER_NOT_AUTHORIZED/);
  });
});
