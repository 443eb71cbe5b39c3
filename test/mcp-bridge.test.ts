/**
 * `aztp mcp bridge` as a real process, driven by unmodified MCP clients as a host would drive
 * it (the MCP SDK's 1.x Client over stdio), in front of a secured Streamable HTTP server in
 * enforce mode: calls signed as the bridge, receipts verified, both audit logs written,
 * refusals as tool results the model reads, everything else passed through both ways.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { AuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { Unanswered } from "../src/guard/recorder.js";
import { createInvocation } from "../src/invocation/invocation.js";
import { serveMcpHttp } from "../src/mcp/index.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";
import {
  BRIDGE_SERVER,
  bridgeArgs,
  bridgeAudit,
  bridgeRun,
  escape,
  hostThroughBridge,
  securedHttpServer,
  textOf,
} from "./helpers/mcp-bridge-util.js";
import { BRIDGE_POLICY, bridgeToolServers, toolEvents } from "./helpers/mcp-bridge-server.js";
import { fixture, idOf, rejectsWithData, runCommand, spawnNode, tap, until, withTimeout } from "./helpers/mcp-util.js";

describe("aztp mcp bridge in front of a secured HTTP server", () => {
  it("a host's call goes through signed as the bridge: the result and receipt come back, both sides audit it", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client, stderr } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    const r = await client.callTool({ name: "echo", arguments: { text: "through the bridge" } });
    assert.equal(textOf(r), "through the bridge");
    assert.notEqual((r as CallToolResult).isError, true);
    assert.equal(
      typeof (r as CallToolResult)._meta?.["io.aztp/receipt"],
      "string",
      "the server's receipt reaches the host",
    );
    const served = await server.audit(1);
    assert.deepEqual(
      served.map((e) => [e.side, e.caller, e.callerVerified, e.tool, e.decision, e.outcome]),
      [["callee", idOf("desk"), true, "echo", "allow", "ok"]],
      "the server's entry names the bridge's identity as the verified caller",
    );
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.side, e.caller, e.callee, e.tool, e.decision, e.outcome, e.jti === served[0]?.jti]),
      [["caller", idOf("desk"), server.id, "echo", "allow", "ok", true]],
      "the bridge's own entry, for the same signed call",
    );
    assert.ok(own[0]?.receipt, "the bridge recorded the receipt it verified");
    assert.match(
      stderr(),
      new RegExp(`server ${server.id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} proven at first connect`),
    );
  });

  it("a call the server's policy refuses comes back as a tool result with isError, its text naming the code; audited on both sides", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    const refused = (await client.callTool({ name: "secret", arguments: {} })) as CallToolResult;
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), new RegExp(`^${ErrorCodes.POLICY_DENIED}: `));
    // Its passing twin, on the same connection: the bridge refuses nothing by itself.
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "allowed" } })), "allowed");
    const served = await server.audit(2);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.decision, e.reason]),
      [
        ["secret", idOf("desk"), "deny", ErrorCodes.POLICY_DENIED],
        ["echo", idOf("desk"), "allow", undefined],
      ],
    );
    const own = await bridgeAudit(home, "desk", 2);
    assert.deepEqual(
      own.map((e) => [e.tool, e.decision, e.reason]),
      [
        ["secret", "deny", ErrorCodes.POLICY_DENIED],
        ["echo", "allow", undefined],
      ],
    );
  });
});

describe("aztp mcp bridge refuses by itself what the server must not be sent", () => {
  it("a server revoked after connect gets no more calls: the bridge answers ERR_CALLEE_REVOKED as an isError result, audited, and the tool never runs", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "before" } })), "before");
    await c.revokeIdentity(server.id, "key-compromised");
    const refused = (await client.callTool({ name: "echo", arguments: { text: "after" } })) as CallToolResult;
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), new RegExp(`^${ErrorCodes.CALLEE_REVOKED}: the callee ${escape(server.id)}`));
    const own = await bridgeAudit(home, "desk", 2);
    assert.deepEqual(
      own.map((e) => [e.tool, e.decision, e.reason]),
      [
        ["echo", "allow", undefined],
        ["echo", "deny", ErrorCodes.CALLEE_REVOKED],
      ],
    );
    assert.deepEqual(
      (await server.audit(1)).map((e) => e.tool),
      ["echo"],
      "the refused call never reached the server",
    );
  });
});

describe("aztp mcp bridge passes everything else through, both ways", () => {
  it("tools/list, resources, resource templates, completions, prompts and ping reach the server and come back unchanged", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    const tools = (await client.listTools()).tools.map((x) => x.name).sort();
    assert.deepEqual(tools, ["ask", "confirm", "count", "echo", "meta", "roots", "secret", "slow"]);
    assert.deepEqual(
      (await client.listResources()).resources.map((r) => r.uri),
      ["test://readme"],
    );
    assert.deepEqual((await client.readResource({ uri: "test://readme" })).contents, [
      { uri: "test://readme", text: "read me" },
    ]);
    assert.deepEqual(
      (await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate),
      ["test://city/{name}"],
    );
    assert.equal(
      ((await client.readResource({ uri: "test://city/Lisbon" })).contents[0] as { text: string }).text,
      "city Lisbon",
    );
    const completed = await client.complete({
      ref: { type: "ref/resource", uri: "test://city/{name}" },
      argument: { name: "name", value: "L" },
    });
    assert.deepEqual(completed.completion.values, ["Lisbon", "London"]);
    assert.deepEqual(
      (await client.listPrompts()).prompts.map((p) => p.name),
      ["greet"],
    );
    const prompt = await client.getPrompt({ name: "greet", arguments: { who: "bridge" } });
    assert.deepEqual(prompt.messages, [{ role: "user", content: { type: "text", text: "hello bridge" } }]);
    assert.deepEqual(await client.ping(), {});
    assert.deepEqual(await server.audit(0), [], "none of these is a tool call: nothing audited");
  });

  it("the server's requests to the host (sampling, roots, elicitation) reach the host's handlers, and their answers go back", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url], {
      capabilities: { capabilities: { sampling: {}, roots: { listChanged: true }, elicitation: {} } },
    });
    const asked: string[] = [];
    client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
      asked.push((request.params.messages[0]?.content as { text: string }).text);
      return { role: "assistant", content: { type: "text", text: "forty-two" }, model: "test-model" };
    });
    client.setRequestHandler(ListRootsRequestSchema, async () => ({
      roots: [{ uri: "file:///work", name: "work" }],
    }));
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      assert.equal(request.params.message, "proceed?");
      return { action: "accept", content: { ok: true } };
    });
    assert.equal(
      textOf(await client.callTool({ name: "ask", arguments: { question: "the answer?" } })),
      "the model said: forty-two",
    );
    assert.deepEqual(asked, ["the answer?"]);
    assert.equal(textOf(await client.callTool({ name: "roots", arguments: {} })), "roots: file:///work");
    assert.equal(textOf(await client.callTool({ name: "confirm", arguments: {} })), 'the user: accept {"ok":true}');
    const served = await server.audit(3);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.outcome]),
      [
        ["ask", idOf("desk"), "ok"],
        ["roots", idOf("desk"), "ok"],
        ["confirm", idOf("desk"), "ok"],
      ],
    );
  });

  it("progress notifications reach the host in order, on the wire before the result", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const wire = tap();
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url], { wrap: wire.wrap });
    const r = await client.callTool({ name: "count", arguments: { n: 3 } }, undefined, { onprogress: () => undefined });
    assert.equal(textOf(r), "counted to 3");
    const call = wire.sent.find((m) => (m as { method?: string }).method === "tools/call") as {
      id: number;
      params: { _meta: { progressToken: number } };
    };
    // Read on the wire, not through onprogress: the 1.x SDK's Client drops a progress
    // notification that it reads in the same chunk as the result (it runs notification handlers a
    // microtask later, and forgets the call's progress handler at its result), which a host
    // slow to read its pipe does, bridge or no bridge.
    const after = wire.received.slice(
      wire.received.findIndex((m) => (m as { method?: string }).method === "notifications/progress"),
    );
    assert.deepEqual(
      after.map((m) =>
        "method" in m
          ? [
              m.method,
              (m.params as { progress: number }).progress,
              (m.params as { progressToken: number }).progressToken,
            ]
          : ["answer", m.id],
      ),
      [
        ["notifications/progress", 1, call.params._meta.progressToken],
        ["notifications/progress", 2, call.params._meta.progressToken],
        ["notifications/progress", 3, call.params._meta.progressToken],
        ["answer", call.id],
      ],
    );
  });

  it("a call the host cancels is cancelled at the server and audited as cancelled by the bridge", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client, stderr } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    const abort = new AbortController();
    const started = once(toolEvents, "slow");
    const call = client.callTool({ name: "slow", arguments: { ms: 30_000 } }, undefined, { signal: abort.signal });
    await withTimeout(started, 10_000, "the slow tool to start");
    abort.abort("the user changed their mind");
    await assert.rejects(call, /AbortError|aborted|changed their mind/i);
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.tool, e.outcome, e.reason]),
      [["slow", "error", Unanswered.CANCELLED]],
      `bridge stderr: ${stderr()}`,
    );
    const served = await server.audit(1);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.reason]),
      [["slow", idOf("desk"), Unanswered.CANCELLED]],
      "the server got the cancellation: its tool was stopped, and it audited the call as cancelled",
    );
  });
});

describe("aztp mcp bridge against a host that sends AZTP _meta of its own", () => {
  it("an invocation token the host puts in a call is not forwarded: the server verifies the bridge's own, and sees the bridge as caller", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    const mallory = (await c.secureConnect({}, "mallory")).identity;
    const smuggled = createInvocation(mallory, { audience: server.id, tool: "meta", args: {} });
    const r = await client.callTool({
      name: "meta",
      arguments: {},
      _meta: { "io.aztp/invocation": smuggled.token, "io.aztp/receipt": "forged", "example.com/kept": 1 },
    });
    // The server's handler also sees the call's trace context (its own span of it: trace-context.ts).
    assert.deepEqual(JSON.parse(textOf(r)), {
      keys: ["example.com/kept", "io.aztp/invocation", "traceparent"],
      iss: idOf("desk"),
    });
    const served = await server.audit(1);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.jti === smuggled.claims.jti]),
      [["meta", idOf("desk"), false]],
    );
  });
});

describe("aztp mcp bridge holds the server to its identity", () => {
  it("--expected-server naming another ID: refused at start, exit 1, stderr naming the code; the right ID serves", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const wrong = await bridgeRun(home, "desk", ["--url", server.url, "--expected-server", idOf("someone-else")]);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, new RegExp(`error \\[${ErrorCodes.PEER_NOT_AUTHORIZED}\\]`));
    assert.match(wrong.stderr, new RegExp(`proved ${escape(server.id)}, not ${escape(idOf("someone-else"))}`));
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", server.url, "--expected-server", server.id]);
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "pinned" } })), "pinned");
  });

  it("a --command server that proves another ID than --expected-server: the host's initialize gets the refusal, the bridge exits 1; the right ID serves", async (t) => {
    const { home } = fixture(t);
    const command = `"${process.execPath}" --import tsx "${BRIDGE_SERVER}" --home "${home}" --name tools --listen stdio`;
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: bridgeArgs(home, "desk", ["--command", command, "--expected-server", idOf("someone-else")]),
      cwd: ROOT,
      env: getDefaultEnvironment(),
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const client = new Client({ name: "test-host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    const refused = await rejectsWithData(client.connect(transport), ErrorCodes.PEER_NOT_AUTHORIZED, "initialize");
    assert.match(refused.message, new RegExp(`proved ${escape(idOf("tools"))}, not ${escape(idOf("someone-else"))}`));
    await until(() => stderr.includes("error ["), "the bridge to exit saying why", 10_000);
    assert.match(
      stderr,
      new RegExp(
        `error \\[${ErrorCodes.PEER_NOT_AUTHORIZED}\\]: the host's initialize was refused: server identity not proven`,
      ),
    );
    const right = await hostThroughBridge(t, home, "desk", ["--command", command, "--expected-server", idOf("tools")]);
    assert.equal(textOf(await right.client.callTool({ name: "echo", arguments: { text: "proven" } })), "proven");
  });

  it("--mode audit with a server that proves another ID than --expected-server: the call goes unsigned and is on record, audit-only with the proof's code, before the host has its answer", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { client } = await hostThroughBridge(t, home, "desk", [
      "--url",
      server.url,
      "--expected-server",
      idOf("someone-else"),
      "--mode",
      "audit",
    ]);
    const r = (await client.callTool({ name: "echo", arguments: { text: "unproven" } })) as CallToolResult;
    assert.equal(r.isError, true, "the server refuses the unsigned call");
    assert.match(textOf(r), new RegExp(ErrorCodes.INVOCATION_MISSING));
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.side, e.caller, e.callee, e.tool, e.decision, e.reason, e.outcome]),
      [["caller", idOf("desk"), "unknown", "echo", "audit-only", ErrorCodes.PEER_NOT_AUTHORIZED, "error"]],
    );
  });

  it("with no --expected-server, the first server is pinned, and another one at the same URL is refused later; the first serves again", async (t) => {
    const { home, aztp: c } = fixture(t);
    // One URL, two secured servers of different identities behind it, switched by the test.
    const logs: AuditLog[] = [];
    const factories: Array<ReturnType<typeof bridgeToolServers>> = [];
    for (const name of ["tools", "impostor"]) {
      const log = await AuditLog.open(join(home, `${name}.jsonl`), { batchWindowMs: 0 });
      logs.push(log);
      factories.push(bridgeToolServers(c, name, { audit: log, policy: [BRIDGE_POLICY] }));
    }
    let serving = 0;
    const http = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
      await (await (factories[serving] as ReturnType<typeof bridgeToolServers>).make()).connect(transport);
    });
    t.after(async () => {
      await http.close();
      for (const log of logs) await log.close();
    });
    const first = await hostThroughBridge(t, home, "desk", ["--url", http.url.href]);
    assert.equal(textOf(await first.client.callTool({ name: "echo", arguments: { text: "one" } })), "one");
    await first.client.close();
    const pins = JSON.parse(readFileSync(join(home, "bridge", "desk.json"), "utf8")) as {
      version: number;
      pins: Record<string, { server: string; learnedAt: string }>;
    };
    assert.equal(pins.version, 1);
    assert.deepEqual(Object.keys(pins.pins), [http.url.href]);
    assert.equal(pins.pins[http.url.href]?.server, idOf("tools"));

    serving = 1;
    const refused = await bridgeRun(home, "desk", ["--url", http.url.href]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`error \\[${ErrorCodes.PEER_NOT_AUTHORIZED}\\]`));
    assert.match(
      refused.stderr,
      new RegExp(`proved ${escape(idOf("impostor"))}, but ${escape(idOf("tools"))} is pinned`),
    );
    assert.match(refused.stderr, new RegExp(escape(join(home, "bridge", "desk.json"))));

    serving = 0;
    const again = await hostThroughBridge(t, home, "desk", ["--url", http.url.href]);
    assert.equal(textOf(await again.client.callTool({ name: "echo", arguments: { text: "two" } })), "two");
    assert.match(again.stderr(), /the server must prove .*tools, pinned for/);
  });
});

describe("aztp mcp bridge when the server cannot serve", () => {
  it("a server that cannot be reached at start: exit 1 at once, stderr naming it and the code", async (t) => {
    const { home } = fixture(t);
    // A port that was free a moment ago, closed now: connection refused.
    const http = await serveMcpHttp("http://127.0.0.1:0", async () => undefined);
    const url = http.url.href;
    await http.close();
    const r = await bridgeRun(home, "desk", ["--url", url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `error \\[${ErrorCodes.MCP_UPSTREAM_FAILED}\\]: the upstream MCP server at ${escape(url)} cannot be reached`,
      ),
    );
    assert.match(r.stderr, /ECONNREFUSED/);
  });

  it("a --command that cannot be started, or exits at start: exit 1, stderr saying how", async (t) => {
    const { home } = fixture(t);
    const [missing, exits] = await Promise.all([
      bridgeRun(home, "desk", ["--command", "/nonexistent/aztp-test-server"]),
      bridgeRun(home, "desk2", ["--command", `"${process.execPath}" -e "console.error('no config'); process.exit(3)"`]),
    ]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(
      missing.stderr,
      new RegExp(`${ErrorCodes.MCP_UPSTREAM_FAILED}.*cannot start the upstream /nonexistent/aztp-test-server: ENOENT`),
    );
    assert.equal(exits.code, 1, exits.stderr);
    assert.match(exits.stderr, new RegExp(`${ErrorCodes.MCP_UPSTREAM_FAILED}.*exited with code 3`));
    assert.match(exits.stderr, /no config/);
  });

  it("an HTTP server killed mid-call: the pending call is answered at once with an isError result, audited as unanswered", async (t) => {
    const { home } = fixture(t);
    const auditPath = join(home, "killed-server.jsonl");
    const server = spawnNode(
      t,
      ["--import", "tsx", BRIDGE_SERVER, "--home", home, "--name", "tools", "--audit", auditPath],
      {
        env: getDefaultEnvironment(),
      },
    );
    const url = (await server.waitFor(/LISTENING (\S+)/))[1] as string;
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", url]);
    const call = client.callTool({ name: "slow", arguments: { ms: 60_000 } });
    await server.waitFor(/SLOW STARTED/);
    const killedAt = Date.now();
    server.process.kill("SIGKILL");
    const r = (await withTimeout(call, 10_000, "the call in flight")) as CallToolResult;
    const took = Date.now() - killedAt;
    assert.equal(r.isError, true);
    // Two ends, by a race the server decides: its event stream for the call had begun (its
    // headers sent), and broke; or the server had the call but had sent nothing back yet, and
    // the POST itself failed. Either is answered at once and audited; the reason says which.
    const broke = `^${ErrorCodes.MCP_UPSTREAM_FAILED}: the server at ${escape(url)} closed the stream`;
    const failed = `^${ErrorCodes.MCP_UPSTREAM_FAILED}: the request to the server \\(${escape(url)}\\) failed`;
    assert.match(textOf(r), new RegExp(`${broke}|${failed}`));
    assert.ok(took < 3_000, `answered ${took} ms after the kill`);
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.tool, e.callee, e.outcome]),
      [["slow", idOf("tools"), "error"]],
    );
    assert.equal(
      own[0]?.reason,
      new RegExp(broke).test(textOf(r)) ? Unanswered.CONNECTION_CLOSED : Unanswered.SEND_FAILED,
    );
    // The next call finds nobody there: answered at once too, and audited.
    const next = (await withTimeout(
      client.callTool({ name: "echo", arguments: { text: "anyone?" } }),
      10_000,
      "next call",
    )) as CallToolResult;
    assert.equal(next.isError, true);
    assert.match(
      textOf(next),
      new RegExp(`^${ErrorCodes.MCP_UPSTREAM_FAILED}: the request to the server \\(${escape(url)}\\) failed`),
    );
    const after = await bridgeAudit(home, "desk", 2);
    assert.deepEqual(after.map((e) => [e.tool, e.outcome, e.reason])[1], ["echo", "error", Unanswered.SEND_FAILED]);
  });

  it("a spawned server killed mid-call: the pending call is answered at once, audited, and the bridge ends with exit 1 saying so", async (t) => {
    const { home } = fixture(t);
    const command = `"${process.execPath}" --import tsx "${BRIDGE_SERVER}" --home "${home}" --name tools --listen stdio`;
    const { client, stderr } = await hostThroughBridge(t, home, "desk", ["--command", command]);
    // The spawned server's pid, which it prints first, from the bridge's stderr (passed on).
    await until(() => /PID \d+/.test(stderr()), "the spawned server's pid", 10_000);
    const pid = Number(/PID (\d+)/.exec(stderr())?.[1]);
    const call = client.callTool({ name: "slow", arguments: { ms: 60_000 } });
    await until(() => stderr().includes("SLOW STARTED"), "the slow tool to start", 10_000);
    process.kill(pid, "SIGKILL");
    const r = (await withTimeout(call, 10_000, "the call in flight")) as CallToolResult;
    assert.equal(r.isError, true);
    assert.match(
      textOf(r),
      new RegExp(`^${ErrorCodes.MCP_UPSTREAM_FAILED}: the server \\(.*\\) closed the connection before answering`),
    );
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.tool, e.outcome, e.reason]),
      [["slow", "error", Unanswered.CONNECTION_CLOSED]],
    );
    await until(() => stderr().includes("error ["), "the bridge to exit saying why", 10_000);
    assert.match(
      stderr(),
      new RegExp(
        `error \\[${ErrorCodes.MCP_UPSTREAM_FAILED}\\]: the upstream MCP server \\(.*\\) was killed by SIGKILL while serving its host`,
      ),
    );
  });
});

describe("aztp mcp bridge --print-config", () => {
  const hosts = [
    { host: "claude", entry: (c: Record<string, unknown>) => (c.mcpServers as Record<string, unknown>)?.desk },
    { host: "vscode", entry: (c: Record<string, unknown>) => (c.servers as Record<string, unknown>)?.desk },
    { host: "cursor", entry: (c: Record<string, unknown>) => (c.mcpServers as Record<string, unknown>)?.desk },
  ];

  it("prints each host's snippet, whose command really starts this bridge from another folder (an SDK client calls through it)", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const elsewhere = tempDir(t, "host-cwd");
    await Promise.all(
      hosts.map(async ({ host, entry }) => {
        const printed = await runCommand(
          process.execPath,
          bridgeArgs(home, "desk", ["--url", server.url, "--print-config", host, "--audit-log", "rel/desk.jsonl"]),
          { env: getDefaultEnvironment(), timeoutMs: 30_000 },
        );
        assert.equal(printed.code, 0, printed.stderr);
        const config = JSON.parse(printed.stdout) as Record<string, unknown>;
        const e = entry(config) as { type?: string; command: string; args: string[] };
        assert.ok(e, `${host}: no entry named desk in ${printed.stdout}`);
        assert.deepEqual(Object.keys(config), [host === "vscode" ? "servers" : "mcpServers"]);
        assert.equal(e.type, host === "vscode" ? "stdio" : undefined);
        assert.equal(e.command, process.execPath);
        const tail = e.args.slice(e.args.indexOf("--home"));
        assert.deepEqual(tail, [
          "--home",
          home,
          "mcp",
          "bridge",
          "--name",
          "desk",
          "--url",
          server.url,
          "--audit-log",
          join(ROOT, "rel", "desk.jsonl"),
        ]);
        // The host starts it from a folder of its own, with an environment of its own.
        const transport = new StdioClientTransport({
          command: e.command,
          args: [...e.args.slice(0, -2), "--audit-log", join(elsewhere, `${host}.jsonl`)],
          cwd: elsewhere,
          env: getDefaultEnvironment(),
          stderr: "pipe",
        });
        const client = new Client({ name: `${host}-host`, version: "1.0.0" });
        t.after(() => client.close().catch(() => undefined));
        await withTimeout(client.connect(transport), 30_000, `${host}: connect`);
        const r = await client.callTool({ name: "echo", arguments: { text: `from ${host}` } });
        assert.equal(textOf(r), `from ${host}`);
        await client.close();
      }),
    );
    const served = await server.audit(3);
    assert.deepEqual(
      served.map((e) => [e.caller, e.tool]),
      [
        [idOf("desk"), "echo"],
        [idOf("desk"), "echo"],
        [idOf("desk"), "echo"],
      ],
    );
  });

  it("with --listen it is a usage error (a host given a URL needs no command)", async (t) => {
    const { home } = fixture(t);
    const r = await runCommand(
      process.execPath,
      bridgeArgs(home, "desk", [
        "--url",
        "http://127.0.0.1:1/mcp",
        "--print-config",
        "claude",
        "--listen",
        "http://127.0.0.1:0",
      ]),
      { env: getDefaultEnvironment(), timeoutMs: 30_000 },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--print-config writes a stdio host's configuration/);
  });
});
