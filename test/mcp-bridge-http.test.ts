/**
 * `aztp mcp bridge --listen http://127.0.0.1:PORT`: the bridge served over Streamable HTTP to
 * hosts that connect to a local URL (the MCP SDK's 1.x Client over StreamableHTTPClientTransport
 * here), one upstream connection per host session, on loopback only, with the Host and Origin
 * checks of serveMcpHttp.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, type CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { ErrorCodes } from "../src/errors.js";
import { bridgeArgs, bridgeAudit, bridgeRun, securedHttpServer, textOf } from "./helpers/mcp-bridge-util.js";
import { fixture, idOf, spawnNode, withTimeout } from "./helpers/mcp-util.js";

/** A bridge process listening on a free loopback port; resolves with its URL once it listens. */
async function listeningBridge(t: TestContext, home: string, name: string, extra: string[]) {
  const child = spawnNode(t, bridgeArgs(home, name, ["--listen", "http://127.0.0.1:0", ...extra]), {
    env: getDefaultEnvironment(),
  });
  const m = await child.waitFor(/listening on (http:\/\/\S+)/);
  return { url: new URL(m[1] as string), child };
}

/**
 * An SDK client connected to the bridge over Streamable HTTP. `noStandaloneStream`: it opens no
 * GET stream (the specification lets a client go without), as if the host's fetch got 405.
 */
async function httpHost(
  t: TestContext,
  url: URL,
  name: string,
  capabilities: Record<string, unknown> = {},
  noStandaloneStream = false,
) {
  const client = new Client({ name, version: "1.0.0" }, { capabilities });
  t.after(() => client.close().catch(() => undefined));
  const transport = new StreamableHTTPClientTransport(url, {
    ...(noStandaloneStream
      ? {
          fetch: (u: string | URL, init?: RequestInit) =>
            init?.method === "GET" ? Promise.resolve(new Response(null, { status: 405 })) : fetch(u, init),
        }
      : {}),
  });
  await withTimeout(client.connect(transport), 30_000, `${name}: connect`);
  return client;
}

/** A raw POST of an initialize with the headers given as they are (fetch would not let us set Host). */
function rawInitialize(url: URL, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8").on("data", (d: string) => (data += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("raw request timed out")));
    req.end(body);
  });
}

describe("aztp mcp bridge --listen http://127.0.0.1:PORT", () => {
  it("an SDK client over Streamable HTTP calls through it: signed as the bridge, audited on both sides; tools/list, progress and sampling pass", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const bridge = await listeningBridge(t, home, "desk", ["--url", server.url]);
    const client = await httpHost(t, bridge.url, "http-host", { sampling: {} });
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: "assistant",
      content: { type: "text", text: "over http" },
      model: "test-model",
    }));
    assert.ok((await client.listTools()).tools.some((x) => x.name === "echo"));
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "listened" } })), "listened");
    const progress: number[] = [];
    const counted = await client.callTool({ name: "count", arguments: { n: 2 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    assert.equal(textOf(counted), "counted to 2");
    assert.deepEqual(progress, [1, 2], "over HTTP, progress rides the call's own stream, before its result");
    assert.equal(
      textOf(await client.callTool({ name: "ask", arguments: { question: "?" } })),
      "the model said: over http",
      "the server's request reached the host on the call's stream, and its answer went back",
    );
    // A host with no standalone stream gets the server's request too: on its call's own stream.
    const streamless = await httpHost(t, bridge.url, "streamless-host", { sampling: {} }, true);
    streamless.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: "assistant",
      content: { type: "text", text: "on the call's stream" },
      model: "test-model",
    }));
    assert.equal(
      textOf(
        await withTimeout(streamless.callTool({ name: "ask", arguments: { question: "?" } }), 10_000, "streamless ask"),
      ),
      "the model said: on the call's stream",
    );
    const refused = (await client.callTool({ name: "secret", arguments: {} })) as CallToolResult;
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), new RegExp(`^${ErrorCodes.POLICY_DENIED}: `));
    const served = await server.audit(5);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.decision]),
      [
        ["echo", idOf("desk"), "allow"],
        ["count", idOf("desk"), "allow"],
        ["ask", idOf("desk"), "allow"],
        ["ask", idOf("desk"), "allow"],
        ["secret", idOf("desk"), "deny"],
      ],
    );
    const own = await bridgeAudit(home, "desk", 5);
    assert.deepEqual(
      own.map((e) => [e.tool, e.decision]),
      [
        ["echo", "allow"],
        ["count", "allow"],
        ["ask", "allow"],
        ["ask", "allow"],
        ["secret", "deny"],
      ],
    );
  });

  it("each host session gets its own upstream session, closed with it", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const bridge = await listeningBridge(t, home, "desk", ["--url", server.url]);
    const [a, b] = await Promise.all([httpHost(t, bridge.url, "host-a"), httpHost(t, bridge.url, "host-b")]);
    const [ra, rb] = await Promise.all([
      a.callTool({ name: "echo", arguments: { text: "a" } }),
      b.callTool({ name: "echo", arguments: { text: "b" } }),
    ]);
    assert.deepEqual([textOf(ra), textOf(rb)], ["a", "b"]);
    assert.equal(server.sessions(), 2, "one upstream session per host session (the start-up probe's is gone)");
    // A host that leaves with DELETE ends its upstream session too.
    await (a.transport as StreamableHTTPClientTransport).terminateSession();
    await a.close();
    const deadline = Date.now() + 5_000;
    while (server.sessions() !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.sessions(), 1);
    assert.equal(textOf(await b.callTool({ name: "echo", arguments: { text: "still" } })), "still");
  });

  it("refuses a listen address that is not loopback, at start, with its code; loopback names are taken", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    for (const listen of ["http://0.0.0.0:0", "http://192.0.2.10:0", "http://[::]:0", "http://localhost.:0"]) {
      const r = await bridgeRun(home, "desk", ["--url", server.url, "--listen", listen]);
      assert.equal(r.code, 1, `${listen}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`error \\[${ErrorCodes.MCP_BRIDGE_LISTEN_NOT_ALLOWED}\\]`), listen);
    }
    // The passing twin: a loopback spelling other than 127.0.0.1 listens.
    const bridge = await listeningBridge(t, home, "desk", ["--url", server.url, "--listen", "http://localhost:0"]);
    assert.equal(bridge.url.hostname, "localhost");
  });

  it("refuses a Host or an Origin that is not a loopback name (DNS rebinding), as the proxy does; the loopback ones pass", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const { url } = await listeningBridge(t, home, "desk", ["--url", server.url]);
    const host = `127.0.0.1:${url.port}`;
    const badHost = await rawInitialize(url, { host: `evil.example:${url.port}` });
    assert.equal(badHost.status, 403, badHost.body);
    assert.match(badHost.body, /Invalid Host/);
    const badOrigin = await rawInitialize(url, { host, origin: "http://evil.example" });
    assert.equal(badOrigin.status, 403, badOrigin.body);
    assert.match(badOrigin.body, /Invalid Origin/);
    const ok = await rawInitialize(url, { host, origin: `http://localhost:${url.port}` });
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /"protocolVersion"/);
  });

  it("stops on SIGTERM with exit 0, its sessions and their upstream sessions closed", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const bridge = await listeningBridge(t, home, "desk", ["--url", server.url]);
    const client = await httpHost(t, bridge.url, "host");
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "up" } })), "up");
    assert.equal(server.sessions(), 1);
    bridge.child.process.kill("SIGTERM");
    const exit = await withTimeout(bridge.child.exit, 15_000, "the bridge to stop");
    assert.deepEqual(exit, { code: 0, signal: null }, bridge.child.stderr());
    assert.match(bridge.child.stderr(), /aztp mcp bridge: SIGTERM, stopping/);
    assert.equal(server.sessions(), 0, "its upstream session was ended (DELETE)");
  });
});
