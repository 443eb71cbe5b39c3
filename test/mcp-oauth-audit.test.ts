/**
 * A tools/call the OAuth resource gate refuses (401 no credential or an invalid token, 403
 * insufficient scope, 503 an issuer it cannot reach) never reaches a session, yet it is a
 * refused call like any other (DESIGN §11: no input goes unaudited): the serving identity's
 * guard records it, with the refusal's code, the tool and the argument digest, how the caller
 * tried to authenticate and the token's jti (never the token), and the 401/403 leaves only once
 * that entry is written. A server with no guard to record with does not start. Real HTTP on
 * loopback, real SDK clients, real tokens; each refusal has a passing twin.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { decodeJwt } from "jose";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry, AuditEntryInput } from "../src/audit/entry.js";
import type { AuditWriter } from "../src/audit/writer.js";
import type { EmbeddedAuthority } from "../src/authority/authority.js";
import type { Aztp } from "../src/client/aztp.js";
import type { AgentIdentity } from "../src/client/identity.js";
import { ErrorCodes } from "../src/errors.js";
import { canonicalDigest } from "../src/invocation/canonical.js";
import {
  mcpResourceGate,
  secureMcpServer,
  serveMcpHttp,
  startMcpProxy,
  type McpHttpOptions,
  type McpHttpServer,
  type McpResourceGate,
} from "../src/mcp/index.js";
import { fixture, idOf, withTimeout } from "./helpers/mcp-util.js";

const SCOPE = "mcp:tools";

function toolServer(runs: { n: number }): McpServer {
  const server = new McpServer({ name: "gate-audit-tools", version: "1.0.0" });
  server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => {
    runs.n += 1;
    return { content: [{ type: "text", text }] };
  });
  return server;
}

const text = (r: unknown): string =>
  (r as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");

function post(url: URL, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(body),
  });
}

const call = (id: number, tool: string, args: Record<string, unknown>) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name: tool, arguments: args },
});

async function codeOf(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { error?: { data?: { code?: string } } };
  return body.error?.data?.code;
}

interface Served {
  c: Aztp;
  home: string;
  identity: AgentIdentity;
  url: URL;
  runs: { n: number };
  auditPath: string;
  log: AuditLog;
  authority: EmbeddedAuthority;
  /** The entries in the log now: no waiting, no flush (what is there when the answer arrived). */
  entries(): Promise<AuditEntry[]>;
  token(name: string, o?: Partial<Parameters<EmbeddedAuthority["mintAccessToken"]>[1]>): Promise<string>;
}

/** A secured server as a resource server, its sessions and its gate recording into one log. */
async function gatedServer(
  t: TestContext,
  options: Partial<McpHttpOptions> = {},
): Promise<Served & { http: McpHttpServer }> {
  const { home, aztp: c } = fixture(t);
  const { identity } = await c.secureConnect({}, "tools");
  const auditPath = join(home, "tools-audit.jsonl");
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const runs = { n: 0 };
  const http = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      const server = await secureMcpServer(toolServer(runs), { client: c, identity, audit: log });
      await server.connect(transport);
    },
    { client: c, authorizationServers: true, scopes: [SCOPE], guard: { identity, audit: log }, ...options },
  );
  t.after(async () => {
    await http.close();
    await log.close().catch(() => undefined);
  });
  const authority = (await c.authority()) as EmbeddedAuthority;
  return {
    c,
    home,
    identity,
    http,
    url: http.url,
    runs,
    auditPath,
    log,
    authority,
    entries: () => queryAuditLog(auditPath),
    async token(name, o = {}) {
      await c.secureConnect({}, name);
      return authority.mintAccessToken(idOf(name), { resource: http.url.href, scopes: [SCOPE], ...o });
    },
  };
}

/** No part of `token` (header, claims, signature) is anywhere in the log file. */
function assertNoToken(path: string, token: string, what: string): void {
  const log = readFileSync(path, "utf8");
  for (const part of token.split(".").filter((p) => p.length > 8))
    assert.ok(!log.includes(part), `${what}: no part of the access token is in the audit log`);
}

interface Refusal {
  name: string;
  status: 401 | 403;
  code: string;
  /** The Authorization header to send (undefined: none). */
  authorization: (s: Served) => Promise<string | undefined>;
  /** The caller the entry names, and whether it was verified; the jti it records, if any. */
  caller: (s: Served) => string;
  callerVerified: boolean;
  authMethod: "bearer" | undefined;
  jti: boolean;
}

const REFUSALS: Refusal[] = [
  {
    name: "no credential",
    status: 401,
    code: ErrorCodes.OAUTH_TOKEN_MISSING,
    authorization: async () => undefined,
    caller: () => "unknown",
    callerVerified: false,
    authMethod: undefined,
    jti: false,
  },
  {
    name: "an expired token",
    status: 401,
    code: ErrorCodes.OAUTH_TOKEN_EXPIRED,
    authorization: async (s) => `Bearer ${await s.token("agent", { now: new Date(Date.now() - 400_000) })}`,
    caller: () => idOf("agent"),
    callerVerified: false,
    authMethod: "bearer",
    jti: true,
  },
  {
    name: "a token for another resource (aud)",
    status: 401,
    code: ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
    authorization: async (s) => `Bearer ${await s.token("agent", { resource: "http://127.0.0.1:1/mcp" })}`,
    caller: () => idOf("agent"),
    callerVerified: false,
    authMethod: "bearer",
    jti: true,
  },
  {
    name: "a token lacking the scope",
    status: 403,
    code: ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING,
    authorization: async (s) => `Bearer ${await s.token("agent", { scopes: [] })}`,
    caller: () => idOf("agent"),
    // The token verified: only its scope was short, so its caller is known.
    callerVerified: true,
    authMethod: "bearer",
    jti: true,
  },
  {
    name: "a token that is no token",
    status: 401,
    code: ErrorCodes.OAUTH_TOKEN_MALFORMED,
    authorization: async () => "Bearer not a token at all",
    caller: () => "unknown",
    callerVerified: false,
    authMethod: "bearer",
    jti: false,
  },
];

/** The entry of a refused call, as the gate's guard must write it. */
function assertRefusalEntry(
  entry: AuditEntry | undefined,
  r: Refusal,
  s: Served,
  args: unknown,
  authorization?: string,
) {
  assert.ok(entry, `${r.name}: the refused call has an entry`);
  assert.equal(entry.side, "callee");
  assert.equal(entry.callee, s.identity.spiffeId);
  assert.equal(entry.tool, "echo");
  assert.equal(entry.argsDigest, canonicalDigest(args, "args"));
  assert.equal(entry.decision, "deny");
  assert.equal(entry.outcome, "denied");
  assert.equal(entry.reason, r.code);
  assert.equal(entry.caller, r.caller(s));
  assert.equal(entry.callerVerified, r.callerVerified);
  assert.equal(entry.authMethod, r.authMethod);
  const token = authorization?.replace(/^Bearer /, "");
  assert.equal(entry.accessTokenJti, r.jti ? decodeJwt(token as string).jti : undefined);
  assert.equal(entry.token, undefined, "never a token");
  assert.equal(entry.receipt, undefined, "an HTTP refusal carries no receipt");
}

describe("a tools/call refused at the resource gate is audited by the serving identity's guard", () => {
  for (const r of REFUSALS) {
    it(`${r.name}: ${r.status} ${r.code}, and a deny entry written before the answer`, async (t) => {
      const s = await gatedServer(t);
      const args = { text: `refused: ${r.name}` };
      const authorization = await r.authorization(s);
      const res = await post(s.url, call(7, "echo", args), authorization ? { authorization } : {});
      assert.equal(res.status, r.status);
      assert.equal(await codeOf(res), r.code);
      // Read at once, with no flush: the entry was in the log before the answer left.
      const entries = await s.entries();
      assert.equal(entries.length, 1);
      assertRefusalEntry(entries[0], r, s, args, authorization);
      if (authorization?.startsWith("Bearer ") && r.jti) assertNoToken(s.auditPath, authorization.slice(7), r.name);
      assert.equal(s.runs.n, 0, "the tool never ran");
    });
  }

  it("the passing twin: a valid token's call runs, and its entry is an allowed bearer call", async (t) => {
    const s = await gatedServer(t);
    const token = await s.token("agent");
    const res = await post(s.url, call(7, "echo", { text: "fine" }), { authorization: `Bearer ${token}` });
    assert.equal(res.status, 400, "no session: the gate let it through to the server, which wants one");
    await res.body?.cancel();
    assert.deepEqual(await s.entries(), [], "nothing refused at the gate, nothing recorded there");
    const client = new Client({ name: "host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(
      client.connect(
        new StreamableHTTPClientTransport(s.url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
      ),
      10_000,
      "connect",
    );
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "fine" } })), "fine");
    const [entry] = await s.entries();
    assert.equal(entry?.decision, "allow");
    assert.equal(entry?.authMethod, "bearer");
    assert.equal(entry?.callerVerified, true);
    assert.equal(entry?.accessTokenJti, decodeJwt(token).jti);
    assert.equal(s.runs.n, 1);
  });

  it("an unmodified SDK client without a token: initialize and tools/list are open, its call gets the 401 and is on record", async (t) => {
    const s = await gatedServer(t);
    const client = new Client({ name: "host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(client.connect(new StreamableHTTPClientTransport(s.url)), 10_000, "connect");
    assert.deepEqual(
      (await client.listTools()).tools.map((x) => x.name),
      ["echo"],
    );
    await assert.rejects(client.callTool({ name: "echo", arguments: { text: "hi" } }), /401|ERR_OAUTH_TOKEN_MISSING/);
    const entries = await s.entries();
    assert.deepEqual(
      entries.map((e) => [e.tool, e.decision, e.reason, e.caller]),
      [["echo", "deny", ErrorCodes.OAUTH_TOKEN_MISSING, "unknown"]],
      "only the call is recorded: initialize and tools/list are not tool calls",
    );
  });

  it("a batch: each tools/call in it is recorded, the other requests are not", async (t) => {
    const s = await gatedServer(t);
    const batch = [
      call(1, "echo", { text: "one" }),
      { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } },
      { jsonrpc: "2.0", id: 2, method: "resources/read", params: { uri: "file:///etc/passwd" } },
      call(3, "delete_everything", { really: true }),
    ];
    const res = await post(s.url, batch);
    assert.equal(res.status, 401);
    await res.body?.cancel();
    const entries = await s.entries();
    assert.deepEqual(
      entries.map((e) => [e.tool, e.argsDigest, e.decision, e.reason]),
      [
        ["echo", canonicalDigest({ text: "one" }, "args"), "deny", ErrorCodes.OAUTH_TOKEN_MISSING],
        ["delete_everything", canonicalDigest({ really: true }, "args"), "deny", ErrorCodes.OAUTH_TOKEN_MISSING],
      ],
    );
  });

  it("a refused request that is no tool call (resources/read) gets its 401 and no entry: the log records tool calls", async (t) => {
    const s = await gatedServer(t);
    const res = await post(s.url, { jsonrpc: "2.0", id: 2, method: "resources/read", params: { uri: "x:/y" } });
    assert.equal(res.status, 401);
    assert.equal(await codeOf(res), ErrorCodes.OAUTH_TOKEN_MISSING);
    assert.deepEqual(await s.entries(), []);
  });

  it("the 401 waits for the entry: an audit log slow to write holds the answer back", async (t) => {
    const { home, aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "tools");
    const inner = await AuditLog.open(join(home, "slow.jsonl"), { batchWindowMs: 0 });
    t.after(() => inner.close());
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let appended = 0;
    const slow: AuditWriter = {
      path: inner.path,
      get writable() {
        return inner.writable;
      },
      recover: () => inner.recover(),
      flush: () => inner.flush(),
      async append(entry: AuditEntryInput) {
        appended++;
        await held;
        return inner.append(entry);
      },
    };
    const http = await serveMcpHttp("http://127.0.0.1:0", async () => undefined, {
      client: c,
      authorizationServers: true,
      guard: { identity, audit: slow },
    });
    t.after(() => http.close());
    let answered = false;
    const res = post(http.url, call(1, "echo", { text: "wait" })).then((r) => {
      answered = true;
      return r;
    });
    const deadline = Date.now() + 5_000;
    while (appended === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    try {
      assert.equal(appended, 1, "the refusal is being recorded");
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(answered, false, "no answer before the entry is written");
    } finally {
      release();
    }
    assert.equal((await res).status, 401);
    assert.equal((await queryAuditLog(inner.path)).length, 1);
  });

  it("enforce mode, an audit log that cannot be written: 503 ERR_AUDIT_UNAVAILABLE, not the 401; a valid token's call is refused too and never runs", async (t) => {
    const s = await gatedServer(t);
    const token = await s.token("agent");
    const client = new Client({ name: "host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(
      client.connect(
        new StreamableHTTPClientTransport(s.url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
      ),
      10_000,
      "connect",
    );
    await s.log.close(); // a closed log: `writable` false, and recover() cannot bring it back
    const res = await post(s.url, call(7, "echo", { text: "unrecordable" }));
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("www-authenticate"), null, "not the client's fault: no challenge");
    assert.equal(await codeOf(res), ErrorCodes.AUDIT_UNAVAILABLE);
    const refused = await client.callTool({ name: "echo", arguments: { text: "unrecordable" } }).then(
      () => undefined,
      (e: unknown) => e as { data?: { code?: string } },
    );
    assert.equal(refused?.data?.code, ErrorCodes.AUDIT_UNAVAILABLE);
    assert.equal(s.runs.n, 0, "no tool ran unaudited");
    // The twin: audit mode answers the 401 (warning once that it goes on unaudited).
    const audited = await serveMcpHttp("http://127.0.0.1:0", async () => undefined, {
      client: s.c,
      authorizationServers: true,
      guard: { identity: s.identity, audit: s.log, mode: "audit" },
    });
    t.after(() => audited.close());
    const let401 = await post(audited.url, call(7, "echo", { text: "audit mode" }));
    assert.equal(let401.status, 401);
    assert.equal(await codeOf(let401), ErrorCodes.OAUTH_TOKEN_MISSING);
  });
});

describe("a resource server with no way to record its refusals does not start", () => {
  it("serveMcpHttp and mcpResourceGate with authorizationServers and no guard: ERR_MCP_RESOURCE_GUARD_MISSING", async (t) => {
    const { aztp: c } = fixture(t);
    await assert.rejects(
      serveMcpHttp("http://127.0.0.1:0", async () => undefined, { client: c, authorizationServers: true }),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.MCP_RESOURCE_GUARD_MISSING,
    );
    await assert.rejects(
      mcpResourceGate({ client: c, authorizationServers: true, resource: "http://127.0.0.1:1/mcp" } as never),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.MCP_RESOURCE_GUARD_MISSING,
    );
    // The twins: a guard (or an identity to serve as) given, or no bearer tokens at all.
    const { identity } = await c.secureConnect({}, "tools");
    const ok = await serveMcpHttp("http://127.0.0.1:0", async () => undefined, {
      client: c,
      authorizationServers: true,
      guard: { identity, audit: false },
    });
    await ok.close();
    const plain = await serveMcpHttp("http://127.0.0.1:0", async () => undefined);
    await plain.close();
    await mcpResourceGate({
      client: c,
      authorizationServers: true,
      resource: "http://127.0.0.1:1/mcp",
      guard: { identity, audit: false },
    });
  });
});

describe("the proxy as a resource server audits what its gate refuses, as the proxy", () => {
  it("startMcpProxy with authorizationServers: no credential, an expired token, a short scope are proxy entries; a valid token's call is allowed", async (t) => {
    const { home, aztp: c } = fixture(t);
    const runs = { n: 0 };
    const upstream = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
      await toolServer(runs).connect(transport);
    });
    t.after(() => upstream.close());
    const auditPath = join(home, "proxy-audit.jsonl");
    const audit = await AuditLog.open(auditPath, { batchWindowMs: 0 });
    const proxy = await startMcpProxy({
      client: c,
      name: "oauth-proxy",
      upstream: { url: upstream.url.href },
      listen: "http://127.0.0.1:0",
      audit,
      authorizationServers: true,
      scopes: [SCOPE],
    });
    t.after(async () => {
      await proxy.close();
      await audit.close();
    });
    const url = proxy.url as URL;
    const authority = (await c.authority()) as EmbeddedAuthority;
    await c.secureConnect({}, "agent");
    const mint = (o: Partial<Parameters<EmbeddedAuthority["mintAccessToken"]>[1]> = {}) =>
      authority.mintAccessToken(idOf("agent"), { resource: url.href, scopes: [SCOPE], ...o });
    const expired = mint({ now: new Date(Date.now() - 400_000) });
    const narrow = mint({ scopes: [] });
    for (const [authorization, status, code] of [
      [undefined, 401, ErrorCodes.OAUTH_TOKEN_MISSING],
      [`Bearer ${expired}`, 401, ErrorCodes.OAUTH_TOKEN_EXPIRED],
      [`Bearer ${narrow}`, 403, ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING],
    ] as const) {
      const res = await post(url, call(4, "echo", { text: code }), authorization ? { authorization } : {});
      assert.equal(res.status, status, code);
      assert.equal(await codeOf(res), code);
    }
    const good = mint();
    const client = new Client({ name: "host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(
      client.connect(
        new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${good}` } } }),
      ),
      10_000,
      "connect",
    );
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "through" } })), "through");
    await proxy.guard.flush();
    const entries = await queryAuditLog(auditPath);
    assert.deepEqual(
      entries.map((e) => [e.side, e.callee, e.tool, e.decision, e.reason, e.caller, e.authMethod, e.accessTokenJti]),
      [
        [
          "proxy",
          proxy.identity.spiffeId,
          "echo",
          "deny",
          ErrorCodes.OAUTH_TOKEN_MISSING,
          "unknown",
          undefined,
          undefined,
        ],
        [
          "proxy",
          proxy.identity.spiffeId,
          "echo",
          "deny",
          ErrorCodes.OAUTH_TOKEN_EXPIRED,
          idOf("agent"),
          "bearer",
          decodeJwt(expired).jti,
        ],
        [
          "proxy",
          proxy.identity.spiffeId,
          "echo",
          "deny",
          ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING,
          idOf("agent"),
          "bearer",
          decodeJwt(narrow).jti,
        ],
        ["proxy", proxy.identity.spiffeId, "echo", "allow", undefined, idOf("agent"), "bearer", decodeJwt(good).jti],
      ],
    );
    for (const token of [expired, narrow, good]) assertNoToken(auditPath, token, "proxy");
    assert.equal(runs.n, 1, "only the admitted call reached the upstream");
  });
});

describe("a stateless server behind mcpResourceGate audits what the gate refuses", () => {
  it("the gate's guard records a refused call before the Response is made; a valid token's call runs", async (t) => {
    const { home, aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "stateless-tools");
    const trust = await c.trust();
    const auditPath = join(home, "stateless-audit.jsonl");
    const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
    t.after(() => log.close());
    const runs = { n: 0 };
    const handler = createMcpHandler(async () => {
      const server = new McpServerV2({ name: "stateless-gate", version: "1.0.0" });
      server.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, async ({ text: v }) => {
        runs.n += 1;
        return { content: [{ type: "text" as const, text: v }] };
      });
      await secureMcpServer(server as unknown as McpServer, { identity, trust, audit: log });
      return server;
    });
    let gate: McpResourceGate | undefined;
    const http = createServer((req, res) => {
      void (async () => {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
        const body = Buffer.concat(chunks).toString("utf8");
        const request = new Request(`http://127.0.0.1${req.url ?? "/"}`, {
          method: req.method ?? "GET",
          headers,
          ...(body.length > 0 ? { body } : {}),
        });
        const gated = await (gate as McpResourceGate).handle(request);
        const response =
          gated instanceof Response
            ? gated
            : await handler.fetch(request, gated.authInfo ? { authInfo: gated.authInfo } : {});
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
    });
    const url = new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`);
    gate = await mcpResourceGate({
      client: c,
      authorizationServers: true,
      resource: url.href,
      scopes: [SCOPE],
      guard: { identity, audit: log },
    });
    const authority = (await c.authority()) as EmbeddedAuthority;
    await c.secureConnect({}, "agent");
    const wrongAud = authority.mintAccessToken(idOf("agent"), { resource: "http://127.0.0.1:1/mcp", scopes: [SCOPE] });
    const res = await post(url, call(9, "echo", { text: "stateless" }), { authorization: `Bearer ${wrongAud}` });
    assert.equal(res.status, 401);
    assert.equal(await codeOf(res), ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH);
    const [refused] = await queryAuditLog(auditPath);
    assert.equal(refused?.callee, identity.spiffeId);
    assert.equal(refused?.tool, "echo");
    assert.equal(refused?.decision, "deny");
    assert.equal(refused?.reason, ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH);
    assert.equal(refused?.authMethod, "bearer");
    assert.equal(refused?.callerVerified, false);
    assert.equal(refused?.accessTokenJti, decodeJwt(wrongAud).jti);
    assertNoToken(auditPath, wrongAud, "stateless");
    // The twin: a token for this resource.
    const good = authority.mintAccessToken(idOf("agent"), { resource: url.href, scopes: [SCOPE] });
    const client = new Client({ name: "host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(
      client.connect(
        new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${good}` } } }),
      ),
      10_000,
      "connect",
    );
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "stateless" } })), "stateless");
    await log.flush();
    const entries = await queryAuditLog(auditPath);
    assert.deepEqual(
      entries.map((e) => [e.decision, e.authMethod]),
      [
        ["deny", "bearer"],
        ["allow", "bearer"],
      ],
    );
    assert.equal(runs.n, 1);
  });
});

describe("the sessions behind a gate record as the gate does", () => {
  const INITIALIZE = {
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  };

  it("a session secured as another identity, or into another log, fails at connect (ERR_MCP_RESOURCE_GUARD_MISMATCH); the same identity and log serve", async (t) => {
    const { home, aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "tools");
    const { identity: other } = await c.secureConnect({}, "other-tools");
    const gateLog = await AuditLog.open(join(home, "gate.jsonl"), { batchWindowMs: 0 });
    const elsewhere = await AuditLog.open(join(home, "elsewhere.jsonl"), { batchWindowMs: 0 });
    t.after(async () => {
      await gateLog.close();
      await elsewhere.close();
    });
    const runs = { n: 0 };
    for (const [what, sessionIdentity, sessionLog, status] of [
      ["another log", identity, elsewhere, 500],
      ["another identity", other, gateLog, 500],
      ["the same identity and log", identity, gateLog, 200],
    ] as const) {
      const http = await serveMcpHttp(
        "http://127.0.0.1:0",
        async (transport) => {
          const server = await secureMcpServer(toolServer(runs), {
            client: c,
            identity: sessionIdentity,
            audit: sessionLog,
          });
          await server.connect(transport);
        },
        { client: c, authorizationServers: true, guard: { identity, audit: gateLog } },
      );
      try {
        const res = await post(http.url, INITIALIZE);
        assert.equal(res.status, status, what);
        const body = await res.text();
        if (status === 500) assert.match(body, new RegExp(ErrorCodes.MCP_RESOURCE_GUARD_MISMATCH), what);
      } finally {
        await http.close();
      }
    }
  });
});
