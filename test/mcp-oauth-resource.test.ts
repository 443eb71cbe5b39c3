/**
 * A secured MCP server over Streamable HTTP as an OAuth 2.1 resource server (the MCP
 * authorization spec, 2025-06-18 onward): its Protected Resource Metadata and challenges as the
 * MCP SDK's own client reads them, bearer access tokens (this trust domain's, from the bundle;
 * an external issuer's, through RFC 8414 discovery and its JWKS) admitted as the caller's
 * authentication, with policy on `aztp:authMethod`, a receipt and an audit entry that records
 * the token's jti but never the token. Real SDK clients, real tokens, real HTTP on loopback.
 * Every refusal has a passing twin, and a refused call never reaches its tool.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { exportJWK, generateKeyPair, SignJWT, decodeJwt } from "jose";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  discoverOAuthProtectedResourceMetadata,
  extractWWWAuthenticateParams,
  selectResourceURL,
} from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import type { EmbeddedAuthority } from "../src/authority/authority.js";
import type { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import type { CalleeGuard } from "../src/guard/callee.js";
import { tokenHash } from "../src/invocation/canonical.js";
import { createMcpHandler, McpServer as McpServerV2 } from "@modelcontextprotocol/server";
import {
  mcpResourceGate,
  protectedResourceMetadataUrl,
  secureMcpClient,
  secureMcpServer,
  serveMcpHttp,
  startMcpProxy,
  type McpHttpOptions,
  type McpHttpServer,
  type McpResourceGate,
} from "../src/mcp/index.js";
import { RECEIPT_META_KEY } from "../src/mcp/meta.js";
import type { PolicyDocument } from "../src/policy/policy.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";
import { CLI, fixture, idOf, rejectsWithData, securedClient, spawnNode, withTimeout } from "./helpers/mcp-util.js";

const SCOPE = "mcp:tools";

/** Tools that count their runs: echo, and delete_file (what a policy may keep from bearer callers). */
function toolServer(runs: { n: number }): McpServer {
  const server = new McpServer({ name: "oauth-tools", version: "1.0.0" });
  const answer = (text: string): CallToolResult => {
    runs.n += 1;
    return { content: [{ type: "text", text }] };
  };
  server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => answer(text));
  server.registerTool("delete_file", { inputSchema: { path: z.string() } }, async ({ path }) =>
    answer(`deleted ${path}`),
  );
  return server;
}

interface BearerServer {
  c: Aztp;
  home: string;
  http: McpHttpServer;
  url: URL;
  authority: EmbeddedAuthority;
  runs: { n: number };
  auditPath: string;
  audit(atLeast: number): Promise<AuditEntry[]>;
  /** An access token of this authority for `name`'s identity, for this server unless told otherwise. */
  token(name: string, o?: Partial<Parameters<EmbeddedAuthority["mintAccessToken"]>[1]>): Promise<string>;
}

async function bearerServer(
  t: TestContext,
  options: Partial<McpHttpOptions> & { policy?: PolicyDocument[]; filter?: boolean } = {},
): Promise<BearerServer> {
  const { home, aztp: c } = fixture(t);
  const { identity } = await c.secureConnect({}, "tools");
  const auditPath = join(home, "server-audit.jsonl");
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const runs = { n: 0 };
  const guards: CalleeGuard[] = [];
  const { policy, filter, ...httpOptions } = options;
  const http = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      const server = await secureMcpServer(toolServer(runs), {
        client: c,
        identity,
        audit: log,
        ...(policy ? { policy } : {}),
        ...(filter ? { filterToolsByPolicy: true } : {}),
      });
      guards.push(server.aztpGuard);
      await server.connect(transport);
    },
    { client: c, authorizationServers: true, scopes: [SCOPE], guard: { identity, audit: log }, ...httpOptions },
  );
  t.after(async () => {
    await http.close();
    for (const g of guards) await g.flush();
    await log.close();
  });
  const authority = (await c.authority()) as EmbeddedAuthority;
  const bs: BearerServer = {
    c,
    home,
    http,
    url: http.url,
    authority,
    runs,
    auditPath,
    async audit(atLeast) {
      const deadline = Date.now() + 5_000;
      for (;;) {
        for (const g of guards) await g.flush();
        const entries = await queryAuditLog(auditPath);
        if (entries.length >= atLeast || Date.now() > deadline) return entries;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async token(name, o = {}) {
      await c.secureConnect({}, name);
      return authority.mintAccessToken(idOf(name), { resource: http.url.href, scopes: [SCOPE], ...o });
    },
  };
  return bs;
}

/** An unmodified SDK Client sending `Authorization: Bearer <token>` on every request. */
async function bearerClient(t: TestContext, url: URL, token: string | undefined): Promise<Client> {
  const client = new Client({ name: "oauth-host", version: "1.0.0" });
  t.after(() => client.close().catch(() => undefined));
  const transport = new StreamableHTTPClientTransport(url, {
    ...(token !== undefined ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : {}),
  });
  await withTimeout(client.connect(transport), 10_000, "connect");
  return client;
}

const text = (r: unknown): string =>
  (r as CallToolResult).content.map((c) => (c.type === "text" ? c.text : "")).join("");

/** A raw JSON-RPC POST, as a host's first request would be. */
function post(url: URL, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(body),
  });
}

const INITIALIZE = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};
const CALL = { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "echo", arguments: { text: "hi" } } };

async function codeOf(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { error?: { data?: { code?: string } } };
  return body.error?.data?.code;
}

describe("a secured MCP server as an OAuth 2.1 resource server", () => {
  it("serves RFC 9728 metadata at the path-inserted and the root well-known URLs, as the SDK's discovery reads it", async (t) => {
    const s = await bearerServer(t);
    const expected = {
      resource: s.url.href,
      authorization_servers: [s.authority.oauthIssuer],
      scopes_supported: [SCOPE],
      bearer_methods_supported: ["header"],
    };
    // The SDK builds the path-inserted URL itself (RFC 9728 §3.1) and checks `resource`.
    const prm = await discoverOAuthProtectedResourceMetadata(s.url);
    assert.deepEqual(prm, expected);
    assert.equal(
      (await selectResourceURL(s.url, {} as never, prm))?.href,
      s.url.href,
      "the SDK accepts the resource for this server URL",
    );
    for (const path of ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]) {
      const res = await fetch(new URL(path, s.url));
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.deepEqual(await res.json(), expected, path);
    }
    // Not a metadata path: the MCP endpoint's 404s stay.
    assert.equal((await fetch(new URL("/.well-known/oauth-protected-resource/other", s.url))).status, 404);
  });

  it("refuses options it cannot serve: the authority's own issuer without the client, resource options without authorizationServers", async (t) => {
    const { aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "tools");
    for (const options of [
      { authorizationServers: true, guard: { identity, audit: false } },
      { resource: "http://127.0.0.1:1/mcp" },
      { openMethods: [] },
    ] as const)
      await assert.rejects(
        serveMcpHttp("http://127.0.0.1:0", async () => undefined, options),
        (e: unknown) => (e as { code?: string }).code === ErrorCodes.ARGUMENT_INVALID,
        JSON.stringify(options),
      );
  });

  it("a request with no credential gets 401 and the challenge the SDK parses; an open method does not", async (t) => {
    const s = await bearerServer(t);
    const res = await post(s.url, CALL);
    assert.equal(res.status, 401);
    const header = res.headers.get("www-authenticate") ?? "";
    assert.match(header, /^Bearer /);
    assert.doesNotMatch(header, /error=/, "RFC 6750 §3.1: no error code when the request had no credential");
    const params = extractWWWAuthenticateParams(res);
    assert.equal(params.resourceMetadataUrl?.href, new URL("/.well-known/oauth-protected-resource/mcp", s.url).href);
    assert.equal(params.scope, SCOPE);
    assert.equal(params.error, undefined);
    assert.equal(await codeOf(res), ErrorCodes.OAUTH_TOKEN_MISSING);
    // The twin: initialize is open by default (what an enforcing server always answered).
    const init = await post(s.url, INITIALIZE);
    assert.equal(init.status, 200);
    assert.ok(init.headers.get("mcp-session-id"));
    await init.body?.cancel();
    // An unmodified client connects, lists tools, and its call gets the 401.
    const plain = await bearerClient(t, s.url, undefined);
    assert.deepEqual((await plain.listTools()).tools.map((x) => x.name).sort(), ["delete_file", "echo"]);
    await assert.rejects(plain.callTool({ name: "echo", arguments: { text: "hi" } }), /401|ERR_OAUTH_TOKEN_MISSING/);
    assert.equal(s.runs.n, 0);
  });

  it("with openMethods: [] every request without a credential gets the 401, initialize included; a signing client still gets in", async (t) => {
    const s = await bearerServer(t, { openMethods: [] });
    const init = await post(s.url, INITIALIZE);
    assert.equal(init.status, 401);
    assert.equal(extractWWWAuthenticateParams(init).scope, SCOPE);
    await init.body?.cancel();
    // The twin: the same initialize carrying the AZTP challenge, and a signing client end to end.
    const { client } = await securedClient(t, s.c, s.home, "agent");
    await withTimeout(client.connect(new StreamableHTTPClientTransport(s.url)), 10_000, "connect");
    assert.deepEqual((await client.listTools()).tools.map((x) => x.name).sort(), ["delete_file", "echo"]);
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "signed" } })), "signed");
    const [entry] = await s.audit(1);
    assert.equal(entry?.authMethod, "signed");
    assert.equal(entry?.accessTokenJti, undefined);
  });

  it("an SDK Client with Authorization: Bearer calls a tool in enforce mode: receipt bound to the token, audit entry with its jti and never the token", async (t) => {
    const s = await bearerServer(t);
    const token = await s.token("host-agent");
    const client = await bearerClient(t, s.url, token);
    const result = await client.callTool({ name: "echo", arguments: { text: "via bearer" } });
    assert.equal(text(result), "via bearer");
    assert.equal(s.runs.n, 1);
    const receipt = (result._meta as Record<string, unknown> | undefined)?.[RECEIPT_META_KEY];
    assert.equal(typeof receipt, "string", "a bearer call is receipted too");
    const claims = decodeJwt(receipt as string);
    assert.equal(claims.aud, idOf("host-agent"));
    assert.equal(claims.ath, tokenHash(token), "the receipt names the access token by its hash");
    assert.equal(claims.ith, undefined);
    assert.equal(claims.status, "ok");
    const [entry] = await s.audit(1);
    assert.equal(entry?.caller, idOf("host-agent"));
    assert.equal(entry?.callerVerified, true);
    assert.equal(entry?.authMethod, "bearer");
    assert.equal(entry?.accessTokenJti, decodeJwt(token).jti);
    assert.equal(entry?.decision, "allow");
    assert.equal(entry?.outcome, "ok");
    assert.equal(entry?.receipt, receipt);
    assert.equal(entry?.token, undefined);
    const log = readFileSync(s.auditPath, "utf8");
    for (const part of token.split("."))
      assert.ok(!log.includes(part), "no part of the access token is in the audit log");
  });

  it("a token lacking a required scope gets 403 insufficient_scope naming it; the tool does not run", async (t) => {
    const s = await bearerServer(t);
    const res = await post(s.url, INITIALIZE, { authorization: `Bearer ${await s.token("narrow", { scopes: [] })}` });
    assert.equal(res.status, 403);
    const params = extractWWWAuthenticateParams(res);
    assert.equal(params.error, "insufficient_scope");
    assert.equal(params.scope, SCOPE);
    assert.equal(params.resourceMetadataUrl?.href, new URL("/.well-known/oauth-protected-resource/mcp", s.url).href);
    assert.equal(await codeOf(res), ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING);
    // The twin: the scope granted.
    const client = await bearerClient(t, s.url, await s.token("narrow", { scopes: [SCOPE, "other"] }));
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "ok" } })), "ok");
  });

  describe("attacks on the bearer token: 401 invalid_token with the code, the tool never runs", () => {
    const attacks: Array<{ name: string; code: string; token: (s: BearerServer) => Promise<string> }> = [
      {
        name: "a token for another resource (aud, RFC 8707)",
        code: ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
        token: (s) => s.token("agent", { resource: "http://127.0.0.1:1/mcp" }),
      },
      {
        name: "an expired token",
        code: ErrorCodes.OAUTH_TOKEN_EXPIRED,
        token: (s) => s.token("agent", { now: new Date(Date.now() - 400_000) }),
      },
      {
        name: "a token of another issuer",
        code: ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED,
        token: (s) => s.token("agent", { issuer: "https://evil.example.test" }),
      },
      {
        name: "alg none",
        code: ErrorCodes.OAUTH_TOKEN_ALG_NOT_ALLOWED,
        token: async (s) => {
          const [, payload] = (await s.token("agent")).split(".");
          return `${Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url")}.${payload}.`;
        },
      },
      {
        name: "a JWT-SVID presented as a bearer token",
        code: ErrorCodes.OAUTH_TOKEN_TYP_INVALID,
        token: async (s) => {
          await s.c.secureConnect({}, "agent");
          return s.authority.mintJwtSvid(idOf("agent"), s.url.href);
        },
      },
      {
        name: "a token with its scope widened after signing",
        code: ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID,
        token: async (s) => {
          const [h, p, sig] = (await s.token("agent", { scopes: [] })).split(".");
          const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
          claims.scope = SCOPE;
          return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
        },
      },
    ];
    for (const a of attacks) {
      it(a.name, async (t) => {
        const s = await bearerServer(t);
        for (const body of [INITIALIZE, CALL]) {
          const res = await post(s.url, body, { authorization: `Bearer ${await a.token(s)}` });
          assert.equal(res.status, 401, `${a.name}: ${body.method}`);
          const params = extractWWWAuthenticateParams(res);
          assert.equal(params.error, "invalid_token");
          assert.ok(params.resourceMetadataUrl);
          assert.equal(await codeOf(res), a.code);
        }
        assert.equal(s.runs.n, 0);
        // The twin: a good token of the same subject calls the tool.
        const client = await bearerClient(t, s.url, await s.token("agent"));
        assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "twin" } })), "twin");
        assert.equal(s.runs.n, 1);
      });
    }
  });

  it("a revoked subject's live token is refused once the revocation is known (ERR_OAUTH_TOKEN_REVOKED)", async (t) => {
    const s = await bearerServer(t);
    const token = await s.token("soon-revoked");
    const client = await bearerClient(t, s.url, token);
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "before" } })), "before");
    await s.authority.revoke(idOf("soon-revoked"), "test");
    const err = await client.callTool({ name: "echo", arguments: { text: "after" } }).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: unknown },
    );
    assert.equal(err?.code, 401, "the SDK's StreamableHTTPError carries the status");
    assert.match(String(err?.message), new RegExp(ErrorCodes.OAUTH_TOKEN_REVOKED));
    assert.equal(s.runs.n, 1, "the call after the revocation never ran");
  });

  it("a signing client with no token keeps working against the bearer-accepting server", async (t) => {
    const s = await bearerServer(t);
    const { client } = await securedClient(t, s.c, s.home, "signer");
    await withTimeout(client.connect(new StreamableHTTPClientTransport(s.url)), 10_000, "connect");
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "signed" } })), "signed");
    const [entry] = await s.audit(1);
    assert.equal(entry?.caller, idOf("signer"));
    assert.equal(entry?.authMethod, "signed");
    assert.ok(entry?.jti);
  });

  it("a call both signed and carrying a bearer token must name one caller (ERR_OAUTH_TOKEN_SUBJECT_MISMATCH)", async (t) => {
    const s = await bearerServer(t);
    const other = await s.token("someone-else");
    const { client } = await securedClient(t, s.c, s.home, "signer");
    const transport = new StreamableHTTPClientTransport(s.url, {
      requestInit: { headers: { Authorization: `Bearer ${other}` } },
    });
    await withTimeout(client.connect(transport), 10_000, "connect");
    await rejectsWithData(
      client.callTool({ name: "echo", arguments: { text: "two callers" } }),
      ErrorCodes.OAUTH_TOKEN_SUBJECT_MISMATCH,
    );
    // A signed tools/list carrying the other's token is refused the same way.
    await rejectsWithData(client.listTools(), ErrorCodes.OAUTH_TOKEN_SUBJECT_MISMATCH, "tools/list");
    assert.equal(s.runs.n, 0);
    const [refused] = await s.audit(1);
    assert.equal(refused?.decision, "deny");
    assert.equal(refused?.reason, ErrorCodes.OAUTH_TOKEN_SUBJECT_MISMATCH);
    assert.equal(refused?.caller, idOf("signer"));
    assert.equal(refused?.accessTokenJti, decodeJwt(other).jti);
    // The twin: the signer's own token beside its signature.
    const own = await s.token("signer");
    const both = await secureMcpClient(new Client({ name: "signer-too", version: "1.0.0" }), {
      client: s.c,
      name: "signer",
      audit: false,
    });
    t.after(() => both.close().catch(() => undefined));
    await withTimeout(
      both.connect(
        new StreamableHTTPClientTransport(s.url, { requestInit: { headers: { Authorization: `Bearer ${own}` } } }),
      ),
      10_000,
      "connect",
    );
    assert.equal(text(await both.callTool({ name: "echo", arguments: { text: "one caller" } })), "one caller");
    const entries = await s.audit(2);
    const ok = entries.find((e) => e.outcome === "ok");
    assert.equal(ok?.authMethod, "signed", "signed and bearer: the signature is the stronger proof");
    assert.equal(ok?.accessTokenJti, decodeJwt(own).jti);
  });

  it("policy can demand a signed call: a bearer call to delete_* is refused, a signed one allowed", async (t) => {
    const policy: PolicyDocument[] = [
      {
        Version: "2012-10-17",
        Statement: [
          { Effect: "Allow", Action: "tool:call", Resource: "*" },
          {
            Effect: "Deny",
            Action: "tool:call",
            Resource: "delete_*",
            Condition: { StringEquals: { "aztp:authMethod": "bearer" } },
          },
        ],
      },
    ];
    const s = await bearerServer(t, { policy, filter: true });
    const bearer = await bearerClient(t, s.url, await s.token("agent"));
    await rejectsWithData(
      bearer.callTool({ name: "delete_file", arguments: { path: "/tmp/x" } }),
      ErrorCodes.POLICY_DENIED,
      "bearer delete_file",
    );
    assert.equal(s.runs.n, 0, "the refused delete never ran");
    assert.equal(text(await bearer.callTool({ name: "echo", arguments: { text: "fine" } })), "fine");
    assert.deepEqual(
      (await bearer.listTools()).tools.map((x) => x.name),
      ["echo"],
      "a bearer caller is not shown the tool it may not call",
    );
    const { client: signer } = await securedClient(t, s.c, s.home, "agent");
    await withTimeout(signer.connect(new StreamableHTTPClientTransport(s.url)), 10_000, "connect");
    assert.equal(text(await signer.callTool({ name: "delete_file", arguments: { path: "/tmp/x" } })), "deleted /tmp/x");
    assert.deepEqual((await signer.listTools()).tools.map((x) => x.name).sort(), ["delete_file", "echo"]);
    const entries = await s.audit(3);
    const denied = entries.find((e) => e.decision === "deny");
    assert.equal(denied?.authMethod, "bearer");
    assert.equal(denied?.reason, ErrorCodes.POLICY_DENIED);
    assert.equal(typeof denied?.receipt, "string", "a refused bearer call is receipted too");
  });
});

/** A loopback authorization server of another organisation: RFC 8414 metadata and a JWKS. */
async function externalIssuer(t: TestContext) {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "ext-1", use: "sig", alg: "ES256" };
  let issuer = "";
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/.well-known/oauth-authorization-server")
      return res
        .writeHead(200, { "content-type": "application/json" })
        .end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token` }));
    if (path === "/jwks")
      return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [jwk] }));
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sign = (claims: Record<string, unknown>, key = privateKey, kid = "ext-1") =>
    new SignJWT({ client_id: "ext-client", scope: SCOPE, jti: crypto.randomUUID(), ...claims })
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid })
      .setIssuer(issuer)
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(key);
  return { issuer: () => issuer, sign };
}

describe("tokens of an external issuer (RFC 8414 discovery and its JWKS)", () => {
  it("a person's token is admitted as `<iss>#<sub>`; a spiffe:// subject it writes names no workload; a foreign key is refused", async (t) => {
    const ext = await externalIssuer(t);
    const s = await bearerServer(t, { authorizationServers: [ext.issuer()] });
    const alice = await ext.sign({ sub: "alice", aud: s.url.href });
    const client = await bearerClient(t, s.url, alice);
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "from alice" } })), "from alice");
    // An issuer that is not this trust domain's cannot mint a workload's identity.
    const posing = await ext.sign({ sub: idOf("tools"), aud: s.url.href });
    const poser = await bearerClient(t, s.url, posing);
    assert.equal(text(await poser.callTool({ name: "echo", arguments: { text: "posing" } })), "posing");
    const entries = await s.audit(2);
    assert.deepEqual(
      entries.map((e) => [e.caller, e.authMethod]),
      [
        [`${ext.issuer()}#alice`, "bearer"],
        [`${ext.issuer()}#${idOf("tools")}`, "bearer"],
      ],
    );
    // Attacks: signed with a key the issuer's JWKS does not hold; the audience of another resource.
    const { privateKey: stranger } = await generateKeyPair("ES256");
    for (const [token, code] of [
      [await ext.sign({ sub: "alice", aud: s.url.href }, stranger), ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID],
      [await ext.sign({ sub: "alice", aud: s.url.href }, stranger, "ext-2"), ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN],
      [
        await ext.sign({ sub: "alice", aud: "https://other.example.test/mcp" }),
        ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
      ],
    ] as const) {
      const res = await post(s.url, CALL, { authorization: `Bearer ${token}` });
      assert.equal(res.status, 401);
      assert.equal(await codeOf(res), code);
    }
    assert.equal(s.runs.n, 2);
    // This trust domain's own tokens are not accepted when its issuer is not listed.
    const own = await post(s.url, CALL, { authorization: `Bearer ${await s.token("agent")}` });
    assert.equal(own.status, 401);
    assert.equal(await codeOf(own), ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED);
  });

  it("policy names the external caller as `<iss>#<sub>`", async (t) => {
    const ext = await externalIssuer(t);
    const policyFor = (issuer: string): PolicyDocument[] => [
      {
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Action: "tool:call", Resource: "*", Principal: `${issuer}#alice` }],
      },
    ];
    const s = await bearerServer(t, { authorizationServers: [ext.issuer()], policy: policyFor(ext.issuer()) });
    const alice = await bearerClient(t, s.url, await ext.sign({ sub: "alice", aud: s.url.href }));
    assert.equal(text(await alice.callTool({ name: "echo", arguments: { text: "alice" } })), "alice");
    const bob = await bearerClient(t, s.url, await ext.sign({ sub: "bob", aud: s.url.href }));
    await rejectsWithData(bob.callTool({ name: "echo", arguments: { text: "bob" } }), ErrorCodes.POLICY_DENIED);
    assert.equal(s.runs.n, 1);
  });
});

describe("a stateless server (SDK 2.x createMcpHandler) behind mcpResourceGate", () => {
  it("tools/list is filtered on each request's own authentication (its bearer token, or its signature), with no session to remember it", async (t) => {
    const { home, aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "stateless-tools");
    const trust = await c.trust();
    const runs = { n: 0 };
    let instances = 0;
    const policy: PolicyDocument[] = [
      {
        Version: "2012-10-17",
        Statement: [
          { Effect: "Allow", Action: "tool:call", Resource: "*" },
          {
            Effect: "Deny",
            Action: "tool:call",
            Resource: "delete_*",
            Condition: { StringEquals: { "aztp:authMethod": "bearer" } },
          },
        ],
      },
    ];
    const handler = createMcpHandler(async () => {
      instances += 1;
      const server = new McpServerV2({ name: "stateless-oauth", version: "1.0.0" });
      server.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, async ({ text: v }) => {
        runs.n += 1;
        return { content: [{ type: "text" as const, text: v }] };
      });
      server.registerTool("delete_file", { inputSchema: z.object({ path: z.string() }) }, async ({ path }) => {
        runs.n += 1;
        return { content: [{ type: "text" as const, text: `deleted ${path}` }] };
      });
      await secureMcpServer(server as unknown as McpServer, {
        identity,
        trust,
        policy,
        audit: false,
        filterToolsByPolicy: true,
      });
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
      guard: { identity, audit: false },
    });

    assert.deepEqual((await discoverOAuthProtectedResourceMetadata(url)).resource, url.href);
    const authority = (await c.authority()) as EmbeddedAuthority;
    await c.secureConnect({}, "agent");
    const token = authority.mintAccessToken(idOf("agent"), { resource: url.href, scopes: [SCOPE] });
    const bearer = await bearerClient(t, url, token);
    assert.deepEqual(
      (await bearer.listTools()).tools.map((x) => x.name),
      ["echo"],
      "by the bearer token",
    );
    assert.equal(text(await bearer.callTool({ name: "echo", arguments: { text: "stateless" } })), "stateless");
    await rejectsWithData(
      bearer.callTool({ name: "delete_file", arguments: { path: "/x" } }),
      ErrorCodes.POLICY_DENIED,
      "bearer delete_file",
    );
    const signer = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
      client: c,
      name: "agent",
      audit: false,
    });
    t.after(() => signer.close().catch(() => undefined));
    await signer.connect(new StreamableHTTPClientTransport(url));
    assert.deepEqual(
      (await signer.listTools()).tools.map((x) => x.name).sort(),
      ["delete_file", "echo"],
      "by the signature",
    );
    // The same client's next bearer list is filtered again: nothing was remembered in between.
    assert.deepEqual(
      (await bearer.listTools()).tools.map((x) => x.name),
      ["echo"],
    );
    assert.equal(runs.n, 1);
    assert.ok(instances >= 6, "a fresh server instance per request");
    // No credential where one is needed: the gate's 401, before any instance is made.
    const before = instances;
    const res = await post(url, CALL);
    assert.equal(res.status, 401);
    assert.equal(extractWWWAuthenticateParams(res).resourceMetadataUrl?.href, protectedResourceMetadataUrl(url));
    assert.equal(instances, before);
  });
});

/** An unsecured upstream over HTTP whose echo reports the Authorization header it was sent (none, it must be). */
async function recordingUpstream(t: TestContext) {
  const seen: Array<string | undefined> = [];
  const runs = { n: 0 };
  const upstream = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
    const server = new McpServer({ name: "upstream", version: "1.0.0" });
    server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text: v }, extra) => {
      runs.n += 1;
      seen.push(extra.requestInfo?.headers?.authorization as string | undefined);
      return { content: [{ type: "text", text: v }] };
    });
    await server.connect(transport);
  });
  t.after(() => upstream.close());
  return { url: upstream.url, seen, runs };
}

describe("the proxy as an OAuth 2.1 resource server", () => {
  it("startMcpProxy with authorizationServers: bearer calls reach the upstream without the token, signed calls too; 401 and metadata as a server's", async (t) => {
    const { home, aztp: c } = fixture(t);
    const up = await recordingUpstream(t);
    const auditPath = join(home, "proxy-audit.jsonl");
    const audit = await AuditLog.open(auditPath, { batchWindowMs: 0 });
    const proxy = await startMcpProxy({
      client: c,
      name: "oauth-proxy",
      upstream: { url: up.url.href },
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
    assert.equal(proxy.protectedResource?.resource, url.href);
    assert.deepEqual((await discoverOAuthProtectedResourceMetadata(url)).authorization_servers, [
      (await c.authority()).oauthIssuer,
    ]);
    const res = await post(url, CALL);
    assert.equal(res.status, 401);
    assert.equal(await codeOf(res), ErrorCodes.OAUTH_TOKEN_MISSING);

    const authority = (await c.authority()) as EmbeddedAuthority;
    await c.secureConnect({}, "host-agent");
    const token = authority.mintAccessToken(idOf("host-agent"), { resource: url.href, scopes: [SCOPE] });
    const bearer = await bearerClient(t, url, token);
    assert.equal(text(await bearer.callTool({ name: "echo", arguments: { text: "through" } })), "through");
    const bad = await post(url, CALL, { authorization: `Bearer ${token.slice(0, -4)}AAAA` });
    assert.equal(bad.status, 401);
    assert.equal(await codeOf(bad), ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID);

    const { client: signer } = await securedClient(t, c, home, "signer");
    await withTimeout(signer.connect(new StreamableHTTPClientTransport(url)), 10_000, "connect");
    assert.equal(text(await signer.callTool({ name: "echo", arguments: { text: "signed" } })), "signed");

    assert.deepEqual(up.seen, [undefined, undefined], "the upstream never sees an access token");
    await proxy.guard.flush();
    const entries = await queryAuditLog(auditPath);
    assert.deepEqual(
      entries.map((e) => [e.side, e.caller, e.authMethod, e.accessTokenJti !== undefined, e.decision]),
      [
        // The gate's refusals are the proxy's too (test/mcp-oauth-audit.test.ts).
        ["proxy", "unknown", undefined, false, "deny"],
        ["proxy", idOf("host-agent"), "bearer", true, "allow"],
        ["proxy", idOf("host-agent"), "bearer", true, "deny"],
        ["proxy", idOf("signer"), "signed", false, "allow"],
      ],
    );
    assert.ok(!readFileSync(auditPath, "utf8").includes(token.split(".")[2] as string));
  });

  it("bearer options on a proxy listening on stdio are refused (ERR_ARGUMENT_INVALID)", async (t) => {
    const { aztp: c } = fixture(t);
    await assert.rejects(
      startMcpProxy({
        client: c,
        name: "stdio-proxy",
        upstream: { url: "http://127.0.0.1:1/mcp" },
        authorizationServers: true,
      }),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.ARGUMENT_INVALID,
    );
  });

  it("aztp mcp proxy --authorization-server --scope: end to end with an SDK Client and a bearer token", async (t) => {
    const { home, aztp: c } = fixture(t);
    const up = await recordingUpstream(t);
    const proxy = spawnNode(t, [
      "--import",
      "tsx",
      CLI,
      "--home",
      home,
      "mcp",
      "proxy",
      "--name",
      "cli-oauth-proxy",
      "--listen",
      "http://127.0.0.1:0",
      "--upstream-url",
      up.url.href,
      "--no-audit",
      "--authorization-server",
      "--scope",
      SCOPE,
      "--open-methods",
      "",
    ]);
    const url = new URL((await proxy.waitFor(/listening on (http:\/\/\S+)/, 60_000))[1] as string);
    await proxy.waitFor(/OAuth resource/);
    const init = await post(url, INITIALIZE);
    assert.equal(init.status, 401, "--open-methods '': even initialize needs a credential");
    assert.equal(extractWWWAuthenticateParams(init).scope, SCOPE);
    const authority = (await c.authority()) as EmbeddedAuthority;
    await c.secureConnect({}, "cli-agent");
    const token = authority.mintAccessToken(idOf("cli-agent"), { resource: url.href, scopes: [SCOPE] });
    const client = await bearerClient(t, url, token);
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "cli" } })), "cli");
    assert.deepEqual(up.seen, [undefined]);
  });
});

describe("mcp-remote (npm), an unmodified stdio-to-HTTP bridge hosts use, with --header", () => {
  const MCP_REMOTE = join(ROOT, "node_modules", "mcp-remote", "dist", "proxy.js");

  it('reaches a secured server with `--header "Authorization: Bearer ..."`: the call runs, the server audits the workload as a bearer caller', async (t) => {
    const s = await bearerServer(t);
    const token = await s.token("remote-host");
    const client = new Client({ name: "stdio-host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    // As mcp-remote's README writes it: the token in an environment variable, the header from it.
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE, s.url.href, "--transport", "http-only", "--header", "Authorization:Bearer ${AZTP_TOKEN}"],
      env: { ...getDefaultEnvironment(), AZTP_TOKEN: token, MCP_REMOTE_CONFIG_DIR: tempDir(t, "mcp-remote") },
      stderr: "pipe",
    });
    await withTimeout(client.connect(transport), 30_000, "mcp-remote connect");
    assert.equal(
      text(await client.callTool({ name: "echo", arguments: { text: "via mcp-remote" } })),
      "via mcp-remote",
    );
    assert.equal(s.runs.n, 1);
    const call = (await s.audit(1)).find((e) => e.tool === "echo");
    assert.ok(call, "the server audited the call");
    assert.equal(call.caller, idOf("remote-host"));
    assert.equal(call.authMethod, "bearer");
    assert.equal(call.accessTokenJti, decodeJwt(token).jti);
    assert.ok(!readFileSync(s.auditPath, "utf8").includes(token), "the token itself is never written");
  });
});
