/**
 * serveMcpHttp's sessions are bounded: a session nobody uses any more (a client that left
 * without DELETE) is closed after `sessionIdleMs`, one with a stream open is kept however long
 * it is quiet, and at `maxSessions` a new session takes the place of the one idle longest, or is
 * refused with 503 while every session is in use. Raw HTTP stands for a client that vanished;
 * the SDK's Client (which keeps its SSE GET stream open) for one still connected.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { ErrorCodes } from "../src/errors.js";
import { serveMcpHttp, type McpHttpOptions, type McpHttpServer } from "../src/mcp/http.js";
import { until, withTimeout } from "./helpers/mcp-util.js";

const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

async function serve(
  t: TestContext,
  options: McpHttpOptions,
): Promise<{ http: McpHttpServer; closedServers: () => number }> {
  let closed = 0;
  const http = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      const server = new McpServer({ name: "sessions", version: "1.0.0" });
      server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
        content: [{ type: "text", text }],
      }));
      server.server.onclose = () => void closed++;
      await server.connect(transport);
    },
    options,
  );
  t.after(() => http.close());
  return { http, closedServers: () => closed };
}

/** A POST whose answer is read to the end (so no response is left open on either side). */
async function postJson(url: URL, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  const r = await fetch(url, { method: "POST", headers: { ...HEADERS, ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  return new Response(r.status === 202 ? null : text, { status: r.status, headers: r.headers });
}

/** An initialize request over plain HTTP. */
function initialize(url: URL, name = "raw"): Promise<Response> {
  return postJson(url, {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name, version: "1" } },
  });
}

/** A client that initialises over plain HTTP and then goes quiet (opens no stream). */
async function rawSession(url: URL): Promise<{ id: string; post: (body: unknown) => Promise<Response> }> {
  const init = await initialize(url);
  assert.equal(init.status, 200, await init.clone().text());
  const id = init.headers.get("mcp-session-id");
  assert.ok(id, "the server gave a session id");
  const post = (body: unknown): Promise<Response> =>
    postJson(url, body, { "mcp-session-id": id, "mcp-protocol-version": "2025-06-18" });
  const initialized = await post({ jsonrpc: "2.0", method: "notifications/initialized" });
  assert.equal(initialized.status, 202);
  return { id, post };
}

const LIST = { jsonrpc: "2.0", id: 2, method: "tools/list" };

async function connected(t: TestContext, url: URL): Promise<Client> {
  const client = new Client({ name: "sdk", version: "1.0.0" });
  await withTimeout(client.connect(new StreamableHTTPClientTransport(url)), 10_000, "connect");
  t.after(() => client.close());
  // The SDK client opens its SSE GET stream right after initializing, without waiting for it.
  return client;
}

describe("serveMcpHttp sessions", () => {
  it("a session left without DELETE is closed after sessionIdleMs (its server too), and its id then gets 404", async (t) => {
    // 1 s: long enough that the raw client's next request comes before it, even under load.
    const { http, closedServers } = await serve(t, { sessionIdleMs: 1_000 });
    const raw = await rawSession(http.url);
    const started = Date.now(); // before the last activity, which the idle time counts from
    assert.equal((await raw.post(LIST)).status, 200, "in use, it works");
    assert.equal(http.sessions, 1);
    await until(() => http.sessions === 0, "the idle session to be closed");
    assert.ok(Date.now() - started >= 1_000, "not before it was idle for sessionIdleMs");
    assert.equal(closedServers(), 1, "the McpServer connected to it was closed");
    const after = await raw.post(LIST);
    assert.equal(after.status, 404, "the client is told to start a new session");
  });

  it("a connected client whose stream is open is kept however long it is quiet, and is closed once it leaves", async (t) => {
    // Idle time long enough for the client's stream to open first even on a loaded machine
    // (at 200 ms a CI run once closed the session before the stream came), and a quiet period
    // well beyond it.
    const { http } = await serve(t, { sessionIdleMs: 1_000 });
    const client = await connected(t, http.url);
    await until(() => http.sessions === 1 && http.idleSessions === 0, "the client's stream to open", 10_000);
    await new Promise((r) => setTimeout(r, 2_500));
    assert.equal(http.sessions, 1, "a quiet session with its stream open is not idle");
    const r = await client.callTool({ name: "echo", arguments: { text: "still here" } });
    assert.deepEqual(r.content, [{ type: "text", text: "still here" }]);
    await client.close(); // closes the stream without DELETE, as a client that goes away would
    await until(() => http.sessions === 0, "the session to be closed after its client left");
  });

  it("at maxSessions a new session replaces the one idle longest; with every session in use it is refused with 503", async (t) => {
    const { http } = await serve(t, { maxSessions: 2 });
    const older = await rawSession(http.url);
    await new Promise((r) => setTimeout(r, 20));
    const newer = await rawSession(http.url);
    assert.equal(http.sessions, 2);
    assert.equal(http.idleSessions, 2, "raw clients keep nothing open");

    const third = await rawSession(http.url);
    assert.equal(http.sessions, 2, "the limit holds");
    assert.equal((await older.post(LIST)).status, 404, "the session idle longest made room");
    assert.equal((await newer.post(LIST)).status, 200, "the other was kept");
    assert.equal((await third.post(LIST)).status, 200);

    // Two connected clients hold both places with their streams: nothing is idle.
    const { http: busy } = await serve(t, { maxSessions: 2 });
    await connected(t, busy.url);
    await connected(t, busy.url);
    await until(() => busy.sessions === 2 && busy.idleSessions === 0, "both sessions with their streams open", 10_000);
    const refused = await initialize(busy.url, "late");
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "5");
    assert.match(await refused.text(), /Too many sessions: all 2 are in use/);
    assert.equal(busy.sessions, 2);
  });

  it("concurrent initializes never overshoot maxSessions, and each gets a session or a 503", async (t) => {
    const { http } = await serve(t, { maxSessions: 3 });
    const statuses = await Promise.all(Array.from({ length: 12 }, () => initialize(http.url).then((r) => r.status)));
    assert.ok(
      statuses.every((s) => s === 200 || s === 503),
      `statuses: ${statuses.join(",")}`,
    );
    assert.ok(
      statuses.filter((s) => s === 200).length >= 3,
      `at least the first 3 get a session: ${statuses.join(",")}`,
    );
    // Sessions only ever leave to make room for a new one (or when idle for 30 min), so an
    // overshoot would still show here.
    assert.equal(http.sessions, 3);
  });

  it("refuses nonsense limits", async () => {
    for (const options of [
      { sessionIdleMs: 0 },
      { sessionIdleMs: -1 },
      { maxSessions: 0 },
      { maxSessions: 1.5 },
      { sessionIdleMs: Number.NaN },
    ]) {
      await assert.rejects(
        serveMcpHttp("http://127.0.0.1:0", async () => undefined, options),
        (e: { code?: string }) => e.code === ErrorCodes.ARGUMENT_INVALID,
        JSON.stringify(options),
      );
    }
  });
});
