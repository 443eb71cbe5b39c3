/**
 * The MCP binding on MCP 2026-07-28, with the SDK's real 2.x packages (@modelcontextprotocol/server
 * and /client): no initialize, no sessions. The 2.x server is served statelessly by
 * createMcpHandler (a fresh McpServer per HTTP request, each secured with secureMcpServer) and,
 * connection-oriented, by serveStdio over an in-memory pipe with serverHooks guarding the entry's
 * transport. The 2.x Client, pinned to 2026-07-28, is secured with clientHooks (and with
 * secureMcpClient); the 1.x SDK's secured Client talks to the same 2.x server through its
 * stateless 2025 fallback. Signed calls succeed with receipts the caller verified; unsigned,
 * tampered and replayed calls are refused with their code and never reach a handler; nothing is
 * kept between calls (a recorded HTTP request replays alone, without any handshake).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import {
  Client as ClientV2,
  InMemoryTransport,
  ProtocolError,
  StreamableHTTPClientTransport as HttpClientTransportV2,
  type Transport as TransportV2,
} from "@modelcontextprotocol/client";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport as HttpClientTransportV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { McpServer as McpServerV1 } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Transport as TransportV1 } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Aztp } from "aztp-client";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { ErrorCodes } from "../src/errors.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { signInvocation, verifyReceipt } from "../src/invocation/index.js";
import type { Trust } from "../src/invocation/trust.js";
import {
  clientHooks,
  InterceptingTransport,
  secureMcpClient,
  secureMcpServer,
  serverHooks,
  ServerBinding,
  type SecureMcpClientOptions,
  type SecureMcpServerOptions,
} from "../src/mcp/index.js";
import { INVOCATION_META_KEY, RECEIPT_META_KEY, resultForDigest } from "../src/mcp/meta.js";
import { fixture, onWire, rejectsWithData, tap, withTimeout } from "./helpers/mcp-util.js";

const MODERN = "2026-07-28";

// Our binding is typed against the 1.x SDK's Transport; the 2.x Transport has the same members
// (plus optional ones InterceptingTransport forwards), but its message types come from another
// copy of the schemas, so the two meet through these casts.
const v1 = (t: TransportV2): TransportV1 => t as unknown as TransportV1;
const v2 = (t: TransportV1): TransportV2 => t as unknown as TransportV2;

/**
 * secureMcpServer is typed for the 1.x SDK's McpServer; at run time it needs only the server's
 * low-level `server.connect`, which it patches and which 2.x's McpServer.connect calls.
 */
async function secureV2(server: McpServerV2, options: SecureMcpServerOptions): Promise<CalleeGuard> {
  const secured = await secureMcpServer(server as unknown as McpServerV1, options);
  return secured.aztpGuard;
}

/** secureMcpClient, typed for the 1.x Client, on a 2.x Client: it too only patches `connect`. */
async function secureV2Client(
  client: ClientV2,
  options: Omit<SecureMcpClientOptions, "client"> & { client: Aztp },
): Promise<ClientV2> {
  await secureMcpClient(client as unknown as ClientV1, options);
  return client;
}

/** A 2.x Client pinned to 2026-07-28 (server/discover, then a per-request envelope; no initialize). */
function modernClient(t: TestContext, name = "agent"): ClientV2 {
  const client = new ClientV2({ name, version: "1.0.0" }, { versionNegotiation: { mode: { pin: MODERN } } });
  t.after(() => client.close().catch(() => undefined));
  return client;
}

/** The one text item echo and slow answer with. */
interface Answer {
  tool: string;
  value: unknown;
  runs: number;
  aborted?: boolean;
}
const answerOf = (r: unknown): Answer =>
  JSON.parse((r as { content: Array<{ text: string }> }).content[0]!.text) as Answer;
const receiptOf = (r: unknown): unknown => (r as { _meta?: Record<string, unknown> })._meta?.[RECEIPT_META_KEY];

/** A fresh 2.x McpServer with `echo` and `slow` (which stops early when its request is cancelled). */
function toolServer(state: { runs: number; log: string[] }): McpServerV2 {
  const server = new McpServerV2({ name: "aztp-2x-tools", version: "1.0.0" });
  const answer = (tool: string, value: unknown, extra: Partial<Answer> = {}) => {
    state.runs += 1;
    return { content: [{ type: "text" as const, text: JSON.stringify({ tool, value, runs: state.runs, ...extra }) }] };
  };
  server.registerTool(
    "echo",
    { description: "echoes text", inputSchema: z.object({ text: z.string() }) },
    async ({ text }) => answer("echo", text),
  );
  server.registerTool(
    "slow",
    { description: "waits ms, or until cancelled", inputSchema: z.object({ ms: z.number() }) },
    async ({ ms }, ctx) => {
      const started = Date.now();
      const signal = ctx.mcpReq.signal;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
      });
      state.log.push(`slow ran ${Date.now() - started} ms, aborted=${signal.aborted}`);
      return answer("slow", ms, { aborted: signal.aborted });
    },
  );
  return server;
}

/** One HTTP request as it reached the loopback listener. */
interface Seen {
  method: string;
  headers: Record<string, string>;
  body: string;
  /** The JSON-RPC method, when the body is one request or notification. */
  rpc: string | undefined;
  responseSession: string | null;
}

interface StatelessServer {
  url: URL;
  serverId: string;
  trust: Trust;
  /** Tool handler runs, across every instance. */
  runs(): number;
  /** McpServer instances the factory built (createMcpHandler asks for one per request). */
  instances(): number;
  requests: Seen[];
  log: string[];
  audit(atLeast: number): Promise<AuditEntry[]>;
}

/**
 * A 2.x server served statelessly on loopback: createMcpHandler builds a fresh McpServer for
 * every HTTP request (2026-07-28 per-request, and its 2025 stateless fallback for 1.x clients),
 * each secured with secureMcpServer under one identity. A node:http listener adapts the
 * web-standard handler, passing a client's disconnect on as the Request's abort signal.
 */
async function statelessServer(t: TestContext, c: Aztp, home: string): Promise<StatelessServer> {
  const { identity } = await c.secureConnect({}, "tools");
  const trust = await c.trust();
  const auditPath = join(home, "server-audit.jsonl");
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const state = { runs: 0, log: [] as string[] };
  const guards: CalleeGuard[] = [];
  let instances = 0;
  const handler = createMcpHandler(async () => {
    instances += 1;
    const server = toolServer(state);
    guards.push(await secureV2(server, { identity, trust, audit: log }));
    return server;
  });
  const requests: Seen[] = [];
  const http = createServer((req, res) => {
    void (async () => {
      const abort = new AbortController();
      res.on("close", () => {
        if (!res.writableFinished) abort.abort();
      });
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks).toString("utf8");
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      let rpc: string | undefined;
      try {
        rpc = (JSON.parse(body) as { method?: string }).method;
      } catch {
        rpc = undefined;
      }
      const seen: Seen = { method: req.method ?? "", headers, body, rpc, responseSession: null };
      requests.push(seen);
      const response = await handler.fetch(
        new Request(`http://127.0.0.1${req.url ?? "/"}`, {
          method: req.method ?? "GET",
          headers,
          signal: abort.signal,
          ...(body.length > 0 ? { body } : {}),
        }),
      );
      seen.responseSession = response.headers.get("mcp-session-id");
      res.writeHead(response.status, Object.fromEntries(response.headers));
      if (response.body)
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
      res.end();
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  t.after(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
    await handler.close();
    for (const g of guards) await g.flush();
    await log.close();
  });
  return {
    url: new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`),
    serverId: identity.spiffeId,
    trust,
    runs: () => state.runs,
    instances: () => instances,
    requests,
    log: state.log,
    async audit(atLeast) {
      for (const g of guards) await g.flush();
      const deadline = Date.now() + 5_000;
      for (;;) {
        const entries = await queryAuditLog(auditPath);
        if (entries.length >= atLeast || Date.now() > deadline) return entries;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/** Rejects with the JSON-RPC error of an AZTP refusal (2.x ProtocolError, -32001, data.code `code`). */
async function refusedWith(p: Promise<unknown>, code: string, what: string): Promise<ProtocolError> {
  const caught = await rejectsWithData(p, code, what, ProtocolError);
  assert.equal(caught.code, -32001, `${what}: ${caught.message}`);
  return caught;
}

/** A secured 2.x client: clientHooks with a CallerGuard, the server's ID given (there is no initialize to prove it at). */
async function hookedClient(
  t: TestContext,
  c: Aztp,
  s: { serverId: string; trust: Trust },
  transport: TransportV2,
  options: { name?: string; wrap?: (inner: TransportV1) => TransportV1; audit?: AuditLog } = {},
) {
  const { identity } = await c.secureConnect({}, options.name ?? "agent");
  const guard = new CallerGuard({ identity, trust: s.trust, ...(options.audit ? { audit: options.audit } : {}) });
  const client = modernClient(t, options.name);
  const below = options.wrap ? options.wrap(v1(transport)) : v1(transport);
  await client.connect(
    v2(
      new InterceptingTransport(
        below,
        clientHooks(guard, new ServerBinding(s.serverId), { trust: s.trust, serverId: s.serverId }),
      ),
    ),
  );
  return { client, identity, guard };
}

describe("MCP 2026-07-28 with the SDK's 2.x packages (stateless)", () => {
  it("a 2.x Client with clientHooks: every call is signed, travels on its own HTTP request to a fresh server instance, and returns a receipt the client verified", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await statelessServer(t, c, home);
    const wire = tap();
    const { client, identity } = await hookedClient(t, c, s, new HttpClientTransportV2(s.url), { wrap: wire.wrap });

    const one = await client.callTool({ name: "echo", arguments: { text: "one" } });
    assert.deepEqual(answerOf(one), { tool: "echo", value: "one", runs: 1 });
    assert.equal(typeof receiptOf(one), "string", "the receipt reaches the caller in result._meta");
    const many = await withTimeout(
      Promise.all(Array.from({ length: 8 }, (_, i) => client.callTool({ name: "echo", arguments: { text: `m${i}` } }))),
      10_000,
      "8 calls in flight",
    );
    many.forEach((r, i) => assert.equal(answerOf(r).value, `m${i}`));
    assert.equal(new Set(many.map(receiptOf)).size, 8);
    assert.equal(s.runs(), 9);

    // The protocol the 2.x packages spoke: no initialize, no session, every request its own instance.
    assert.deepEqual([...new Set(s.requests.map((r) => r.rpc))].sort(), ["server/discover", "tools/call"]);
    assert.ok(s.requests.every((r) => r.method === "POST" && r.headers["mcp-protocol-version"] === MODERN));
    assert.ok(
      s.requests.every((r) => r.headers["mcp-session-id"] === undefined && r.responseSession === null),
      "no session anywhere",
    );
    assert.equal(s.instances(), s.requests.length, "a fresh McpServer served each request");

    // Each receipt checks out on its own against the token that went on the wire.
    const calls = wire.sent.filter((m) => (m as { method?: string }).method === "tools/call") as unknown as Array<{
      id: unknown;
      params: { name: string; _meta: Record<string, unknown> };
    }>;
    assert.equal(calls.length, 9);
    for (const call of calls) {
      const token = call.params._meta[INVOCATION_META_KEY];
      assert.ok(typeof token === "string" && token.split(".").length === 3, "the call carried a token");
      const response = wire.received.find((m) => (m as { id?: unknown }).id === call.id) as {
        result: Record<string, unknown>;
      };
      const receipt = (response.result._meta as Record<string, unknown>)[RECEIPT_META_KEY];
      const v = verifyReceipt(receipt, {
        invocationToken: token,
        result: resultForDigest(response.result),
        callee: s.serverId,
        caller: identity.spiffeId,
        trust: s.trust,
      });
      assert.equal(v.claims.status, "ok");
      assert.equal(v.claims.tool, "echo");
    }
  });

  it("unsigned, tampered and replayed calls are refused with their code and never reach a handler; a recorded request replays alone, with no handshake", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await statelessServer(t, c, home);
    const { identity: caller } = await c.secureConnect({}, "raw-caller");
    const sign = (tool: string, args: unknown, audience = s.serverId): string =>
      signInvocation(caller, { audience, tool, args });
    // An unmodified 2.x Client that puts tokens in params._meta itself.
    const raw = modernClient(t, "raw");
    await raw.connect(new HttpClientTransportV2(s.url));
    const call = (name: string, args: Record<string, unknown>, token?: string) =>
      raw.callTool({
        name,
        arguments: args,
        ...(token !== undefined ? { _meta: { [INVOCATION_META_KEY]: token } } : {}),
      });

    const token = sign("echo", { text: "a" });
    const ok = await call("echo", { text: "a" }, token);
    assert.equal(answerOf(ok).runs, 1);
    assert.equal(typeof receiptOf(ok), "string");

    await refusedWith(call("echo", { text: "x" }), ErrorCodes.INVOCATION_MISSING, "unsigned");
    const args = await refusedWith(
      call("echo", { text: "b" }, sign("echo", { text: "a" })),
      ErrorCodes.INVOCATION_ARGS_MISMATCH,
      "other arguments",
    );
    assert.equal(
      typeof (args.data as Record<string, unknown>)[RECEIPT_META_KEY],
      "string",
      "a refused signed call gets a 'denied' receipt",
    );
    await refusedWith(
      call("slow", { ms: 1 }, sign("echo", { ms: 1 })),
      ErrorCodes.INVOCATION_TOOL_MISMATCH,
      "other tool",
    );
    await refusedWith(
      call(
        "echo",
        { text: "c" },
        sign("echo", { text: "c" }, "spiffe://aztp.local/workload/production/node/another-server"),
      ),
      ErrorCodes.INVOCATION_AUDIENCE_MISMATCH,
      "other server",
    );
    await refusedWith(call("echo", { text: "d" }, "not.a.token"), ErrorCodes.INVOCATION_MALFORMED, "garbage");
    // The same token again, from another client: another discover, other requests, other instances.
    const other = modernClient(t, "raw-2");
    await other.connect(new HttpClientTransportV2(s.url));
    await refusedWith(
      other.callTool({ name: "echo", arguments: { text: "a" }, _meta: { [INVOCATION_META_KEY]: token } }),
      ErrorCodes.INVOCATION_REPLAYED,
      "replay from another client",
    );

    // Tampered on the wire below a secured client (arguments changed after signing).
    const mitm = onWire({
      outgoing(m) {
        const req = m as { method?: string; params?: { arguments?: Record<string, unknown> } };
        if (req.method !== "tools/call" || !req.params) return m;
        return { ...m, params: { ...req.params, arguments: { text: "tampered" } } } as JSONRPCMessage;
      },
    });
    const { client: victim } = await hookedClient(t, c, s, new HttpClientTransportV2(s.url), {
      name: "victim",
      wrap: mitm,
    });
    await refusedWith(
      victim.callTool({ name: "echo", arguments: { text: "meant" } }),
      ErrorCodes.INVOCATION_ARGS_MISMATCH,
      "tampered in transit",
    );
    assert.equal(s.runs(), 1, "no refused call reached a handler");

    // Statelessness: a tools/call request recorded off the wire is a whole call on its own. Sent
    // with a fresh token and nothing before it (no discover, no client), it is served; sent again
    // byte for byte, it is a replay.
    const recorded = s.requests.find((r) => r.rpc === "tools/call" && r.body.includes(token));
    assert.ok(recorded, "the first call was recorded");
    const fresh = sign("echo", { text: "a" });
    const body = recorded.body.replace(token, fresh);
    type Answered = { result?: Record<string, unknown>; error?: { code: number; data?: { code?: string } } };
    const post = async (): Promise<{ status: number; message: Answered }> => {
      const headers = {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "echo",
      };
      const res = await fetch(s.url, { method: "POST", headers, body });
      return { status: res.status, message: (await res.json()) as Answered };
    };
    const first = await post();
    assert.equal(first.status, 200);
    assert.equal(JSON.parse((first.message.result!.content as Array<{ text: string }>)[0]!.text).runs, 2);
    const receipt = (first.message.result!._meta as Record<string, unknown>)[RECEIPT_META_KEY];
    verifyReceipt(receipt, {
      invocationToken: fresh,
      result: resultForDigest(first.message.result),
      callee: s.serverId,
      caller: caller.spiffeId,
      trust: s.trust,
    });
    const again = await post();
    assert.equal(again.message.error?.code, -32001);
    assert.equal(again.message.error?.data?.code, ErrorCodes.INVOCATION_REPLAYED);
    assert.equal(s.runs(), 2);

    const entries = await s.audit(10);
    assert.deepEqual(
      entries.map((e) => [e.tool, e.decision, e.reason ?? null]),
      [
        ["echo", "allow", null],
        ["echo", "deny", ErrorCodes.INVOCATION_MISSING],
        ["echo", "deny", ErrorCodes.INVOCATION_ARGS_MISMATCH],
        ["slow", "deny", ErrorCodes.INVOCATION_TOOL_MISMATCH],
        ["echo", "deny", ErrorCodes.INVOCATION_AUDIENCE_MISMATCH],
        ["echo", "deny", ErrorCodes.INVOCATION_MALFORMED],
        ["echo", "deny", ErrorCodes.INVOCATION_REPLAYED],
        ["echo", "deny", ErrorCodes.INVOCATION_ARGS_MISMATCH],
        ["echo", "allow", null],
        ["echo", "deny", ErrorCodes.INVOCATION_REPLAYED],
      ],
    );
  });

  it("the 2.x client fails closed on a missing or foreign receipt, learns the server's ID from a proof in server/discover, and without one signs nothing and sends nothing", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await statelessServer(t, c, home);
    let stolen: unknown;
    const receipts = onWire({
      incoming(m) {
        const res = m as { result?: { _meta?: Record<string, unknown> } };
        const meta = res.result?._meta;
        if (!meta || !(RECEIPT_META_KEY in meta)) return m;
        const { [RECEIPT_META_KEY]: receipt, ...rest } = meta;
        if (stolen === undefined) {
          stolen = receipt; // the first call's receipt, kept for the second
          return { ...m, result: { ...res.result, _meta: rest } } as JSONRPCMessage;
        }
        return { ...m, result: { ...res.result, _meta: { ...rest, [RECEIPT_META_KEY]: stolen } } } as JSONRPCMessage;
      },
    });
    const { client } = await hookedClient(t, c, s, new HttpClientTransportV2(s.url), { wrap: receipts });
    await refusedWith(
      client.callTool({ name: "echo", arguments: { text: "1" } }),
      ErrorCodes.RECEIPT_MISSING,
      "receipt stripped",
    );
    await refusedWith(
      client.callTool({ name: "echo", arguments: { text: "2" } }),
      ErrorCodes.RECEIPT_MISMATCH,
      "another call's receipt",
    );

    // secureMcpClient on a 2.x Client without serverId: it challenges the server in
    // server/discover (2026-07-28 has no initialize) and pins the ID the server proved.
    const learning = await secureV2Client(modernClient(t, "learning"), { client: c, name: "learning" });
    await learning.connect(new HttpClientTransportV2(s.url));
    assert.equal(answerOf(await learning.callTool({ name: "echo", arguments: { text: "d" } })).value, "d");
    // A server whose discover reply carries no proof: without serverId there is nothing to
    // address a token to, so the client refuses to connect and no call ever leaves it.
    const noProof = onWire({
      incoming(m) {
        const res = m as { result?: { _meta?: Record<string, unknown> } };
        if (!res.result?._meta || !("io.aztp/identity" in res.result._meta)) return m;
        const { ["io.aztp/identity"]: _proof, ...rest } = res.result._meta;
        return { ...m, result: { ...res.result, _meta: rest } } as JSONRPCMessage;
      },
    });
    const blindClient = await secureV2Client(modernClient(t, "blind"), { client: c, name: "blind" });
    const before = s.requests.length;
    const connecting = blindClient.connect(v2(noProof(v1(new HttpClientTransportV2(s.url)))));
    // The 2.x client reports any failed server/discover as a failed version negotiation (our
    // refusal, ERR_PROOF_INVALID, is what made it fail: with the proof intact, the same kind of
    // client connected above).
    await assert.rejects(withTimeout(connecting, 10_000, "blind connect"), /server\/discover/);
    assert.ok(
      s.requests.slice(before).every((r) => r.rpc !== "tools/call"),
      "no call left the client",
    );
    // With a wrong serverId, the server's proof names someone else: the client will not connect.
    const wrong = await secureV2Client(modernClient(t, "wrong"), {
      client: c,
      name: "wrong",
      serverId: "spiffe://aztp.local/workload/production/node/someone-else",
    });
    await assert.rejects(
      withTimeout(wrong.connect(new HttpClientTransportV2(s.url)), 10_000, "wrong connect"),
      /server\/discover/,
    );
    // And with the right one, secureMcpClient works on the 2.x Client as clientHooks do.
    const right = await secureV2Client(modernClient(t, "right"), { client: c, name: "right", serverId: s.serverId });
    await right.connect(new HttpClientTransportV2(s.url));
    const r = await right.callTool({ name: "echo", arguments: { text: "z" } });
    assert.equal(answerOf(r).value, "z");
    assert.equal(s.runs(), 4, "the two calls with bad receipts ran, then the learning client's and the last");
  });

  it("cancelling a signed call aborts its HTTP request, so the stateless server stops the handler (InterceptingTransport forwards hasPerRequestStream)", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await statelessServer(t, c, home);
    const clientAuditPath = join(home, "client-audit.jsonl");
    const clientAudit = await AuditLog.open(clientAuditPath, { batchWindowMs: 0 });
    t.after(() => clientAudit.close());
    const { client, guard } = await hookedClient(t, c, s, new HttpClientTransportV2(s.url), { audit: clientAudit });
    const started = Date.now();
    await assert.rejects(client.callTool({ name: "slow", arguments: { ms: 3_000 } }, { timeout: 150 }), /timed out/i);
    const deadline = Date.now() + 2_500;
    while (s.log.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(s.log.length, 1, "the handler ended");
    assert.match(s.log[0]!, /aborted=true/);
    assert.ok(Date.now() - started < 2_000, `the handler stopped early: ${s.log[0]}`);
    // 2026-07-28 cancels by closing the request's stream: no notifications/cancelled went out
    // (a stateless server would get it on a new request, at a new instance that knows nothing).
    assert.ok(!s.requests.some((r) => r.rpc === "notifications/cancelled"));
    // Still, both sides have the call on record as one that got no answer.
    await guard.flush();
    assert.deepEqual(
      (await queryAuditLog(clientAuditPath)).map((e) => [e.tool, e.outcome, e.reason]),
      [["slow", "error", "cancelled"]],
    );
    // The server instance learns it as its request's stream closing under the call.
    const serverEntries = await s.audit(1);
    assert.deepEqual(
      serverEntries.map((e) => [e.tool, e.decision, e.outcome, e.reason]),
      [["slow", "allow", "error", "connection-closed"]],
    );
  });

  it("connection-oriented 2026-07-28 (serveStdio over an in-memory pipe): serverHooks with one CalleeGuard at the entry's transport guard every connection", async (t) => {
    const { aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "tools");
    const trust = await c.trust();
    const guard = new CalleeGuard({ identity, trust });
    const state = { runs: 0, log: [] as string[] };
    const serve = (): TransportV2 => {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      const handle = serveStdio(() => toolServer(state), {
        transport: v2(new InterceptingTransport(v1(serverSide), serverHooks(guard, identity))),
      });
      t.after(() => handle.close());
      return clientSide;
    };
    const s = { serverId: identity.spiffeId, trust };
    const wire = tap();
    const { client } = await hookedClient(t, c, s, serve(), { wrap: wire.wrap });
    const r = await client.callTool({ name: "echo", arguments: { text: "piped" } });
    assert.equal(answerOf(r).value, "piped");
    assert.equal(typeof receiptOf(r), "string");
    assert.ok(!wire.sent.some((m) => (m as { method?: string }).method === "initialize"), "no initialize");
    const token = (
      wire.sent.find((m) => (m as { method?: string }).method === "tools/call") as {
        params: { _meta: Record<string, string> };
      }
    ).params._meta[INVOCATION_META_KEY]!;

    // A plain 2.x client on another connection: unsigned is refused, the first call's token replayed is refused.
    const plain = modernClient(t, "plain");
    await plain.connect(serve());
    await refusedWith(
      plain.callTool({ name: "echo", arguments: { text: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned",
    );
    await refusedWith(
      plain.callTool({ name: "echo", arguments: { text: "piped" }, _meta: { [INVOCATION_META_KEY]: token } }),
      ErrorCodes.INVOCATION_REPLAYED,
      "replay on another connection",
    );
    assert.equal(state.runs, 1);
  });

  it("the 1.x SDK's secured Client against the same 2.x server (its stateless 2025 fallback): proof at initialize from a throwaway instance, then signed calls on fresh ones", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await statelessServer(t, c, home);
    const proven = await secureMcpClient(new ClientV1({ name: "v1-agent", version: "1.0.0" }), {
      client: c,
      name: "v1-agent",
    });
    t.after(() => proven.close().catch(() => undefined));
    await proven.connect(new HttpClientTransportV1(s.url));
    assert.equal(proven.aztpServer.serverId?.toString(), s.serverId, "the server proved its identity at initialize");
    const r = await proven.callTool({ name: "echo", arguments: { text: "v1" } });
    assert.equal(answerOf(r).value, "v1");
    assert.equal(typeof receiptOf(r), "string");

    const told = await secureMcpClient(new ClientV1({ name: "v1-told", version: "1.0.0" }), {
      client: c,
      name: "v1-told",
      serverId: s.serverId,
    });
    t.after(() => told.close().catch(() => undefined));
    await told.connect(new HttpClientTransportV1(s.url));
    assert.equal(answerOf(await told.callTool({ name: "echo", arguments: { text: "told" } })).value, "told");

    const plain = new ClientV1({ name: "v1-plain", version: "1.0.0" });
    t.after(() => plain.close().catch(() => undefined));
    await plain.connect(new HttpClientTransportV1(s.url));
    await rejectsWithData(
      plain.callTool({ name: "echo", arguments: { text: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned 1.x call",
    );

    assert.equal(s.runs(), 2);
    assert.ok(
      s.requests.some((r) => r.rpc === "initialize"),
      "the 1.x client spoke 2025 (initialize)",
    );
    assert.ok(
      s.requests.every((r) => r.responseSession === null),
      "served without sessions",
    );
    assert.equal(s.instances(), s.requests.filter((r) => r.method === "POST").length, "a fresh instance per POST");
  });
});
