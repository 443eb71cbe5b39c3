/**
 * The MCP authorization spec end to end, with nothing of this library on the host's side: the
 * MCP SDK's unmodified OAuth clients (`PrivateKeyJwtProvider` signing with the workload's SVID
 * key, `StaticPrivateKeyJwtProvider` given its JWT-SVID) reach a secured MCP server through
 * `aztp serve` as the authorization server, given only the server's URL.
 *
 * - `aztp serve` runs over HTTPS on loopback with `--tls-name localhost`, so the host's global
 *   fetch (trusting the trust domain's root through NODE_EXTRA_CA_CERTS, in a process of its
 *   own) passes its host-name check; its URL is the OAuth issuer.
 * - The secured server (secureMcpServer + serveMcpHttp, enforce mode) is a process of the
 *   service's, `aztp.initialize({ baseUrl, apiKey, trustBundle })`, accepting the service's
 *   tokens (`authorizationServers: true`), checked offline from the bundle it holds, its
 *   revocations from the signed feed.
 * - The host: 401 with `resource_metadata` → Protected Resource Metadata → the issuer's RFC 8414
 *   metadata → the token endpoint (client_credentials, private_key_jwt) → the request again
 *   with the bearer → the guard → a receipt and an audit entry naming the workload.
 *
 * Every refusal has its passing twin: a revoked workload's live token (and its next token
 * request), a token of another resource.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt } from "jose";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import type { CalleeGuard } from "../src/guard/callee.js";
import { secureMcpServer, serveMcpHttp, type McpHttpServer } from "../src/mcp/index.js";
import { JWT_BEARER_ASSERTION_TYPE } from "../src/oauth/client-assertion.js";
import type { ServingAuthority } from "../src/oauth/protected-resource.js";
import { tempDir } from "./helpers/authority-util.js";
import { spawnNode, until, withTimeout, type Child } from "./helpers/mcp-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import {
  client as serveClient,
  sdkAssertion,
  startServe,
  tokenRequest,
  workload,
  type StartedServe,
  type Workload,
} from "./helpers/serve-util.js";

const SCOPE = "mcp:tools";
const HOST = join(import.meta.dirname, "helpers", "oauth-sdk-client.ts");

/** A secured MCP server with an `echo` tool that counts its runs, on a remote aztp client. */
interface SecuredServer {
  http: McpHttpServer;
  url: URL;
  runs: { n: number };
  audit(atLeast: number): Promise<AuditEntry[]>;
}

async function securedServer(
  t: TestContext,
  c: Aztp,
  name: string,
  options: { openMethods?: readonly string[] | undefined } = {},
): Promise<SecuredServer> {
  const { identity } = await c.secureConnect({}, name);
  const auditPath = join(tempDir(t, `${name}-audit`), "server-audit.jsonl");
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const runs = { n: 0 };
  const guards: CalleeGuard[] = [];
  const http = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      const server = new McpServer({ name, version: "1.0.0" });
      server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => {
        runs.n += 1;
        return { content: [{ type: "text", text }] } satisfies CallToolResult;
      });
      const secured = await secureMcpServer(server, { client: c, identity, audit: log, mode: "enforce" });
      guards.push(secured.aztpGuard);
      await secured.connect(transport);
    },
    {
      client: c,
      authorizationServers: true,
      scopes: [SCOPE],
      // The gate records the calls it refuses (401, 403) as the sessions' identity, in their log.
      guard: { identity, audit: log, mode: "enforce" },
      ...(options.openMethods !== undefined ? { openMethods: options.openMethods } : {}),
    },
  );
  t.after(async () => {
    await http.close();
    for (const g of guards) await g.flush();
    await log.close();
  });
  return {
    http,
    url: http.url,
    runs,
    async audit(atLeast) {
      const deadline = Date.now() + 5_000;
      for (;;) {
        for (const g of guards) await g.flush();
        const entries = await queryAuditLog(auditPath);
        if (entries.length >= atLeast || Date.now() > deadline) return entries;
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/** The scene: the service, the resource server's remote client on it, a workload issued through it. */
interface Scene {
  s: StartedServe;
  /** The service's URL by the name its certificate carries: the OAuth issuer. */
  issuer: string;
  /** The trust domain's root, as a file for NODE_EXTRA_CA_CERTS. */
  rootFile: string;
  dir: string;
  c: Aztp;
  authority: ServingAuthority;
  w: Workload;
  keyFile: string;
}

async function scene(t: TestContext, store?: string): Promise<Scene> {
  const s = await startServe(t, {
    tlsNames: ["localhost"],
    // `aztp serve --scope mcp:tools`: the scope the resource servers ask for, offered (and the
    // default of a request that names none, which is what the SDK 1.x providers send).
    scopesSupported: [SCOPE],
    refreshHintSeconds: 1,
    trustDomain: "e2e.test",
    ...(store !== undefined ? { store } : {}),
  });
  const issuer = `https://localhost:${new URL(s.url).port}`;
  const dir = tempDir(t, "e2e");
  const rootFile = join(dir, "root.pem");
  writeFileSync(rootFile, s.bundlePem);
  // The resource server's process: a remote client of the service, by its URL and an API key.
  const c = Aztp.initialize({ baseUrl: issuer, apiKey: s.apiKey, trustBundle: s.bundlePem, home: join(dir, "rs") });
  t.after(() => c.close());
  const authority = await c.authority();
  assert.equal(authority.oauthIssuer, issuer, "the resource server learns the issuer from the service's metadata");
  // The workload: its key made here, its SVID issued through the service's API from a CSR.
  const w = await workload(s.url, s.bundlePem, s.apiKey, "mcp-host");
  const keyFile = join(dir, "host-key.pem");
  writeFileSync(keyFile, w.keyPem, { mode: 0o600 });
  return { s, issuer, rootFile, dir, c, authority, w, keyFile };
}

interface HostEvent {
  event: string;
  [k: string]: unknown;
}

interface TracedRequest {
  method: string;
  origin: string;
  path: string;
  rpc?: string;
  status: number;
  assertionType?: string;
  bearer: boolean;
}

/** The unmodified SDK host, in its own process trusting the root as Node's system store would. */
interface Host {
  child: Child;
  next(): Promise<HostEvent>;
  send(line: string): void;
  trace(): Promise<TracedRequest[]>;
}

function startHost(
  t: TestContext,
  sc: Scene,
  url: URL,
  provider: "private-key-jwt" | "static",
  assertion?: string,
): Host {
  const config = {
    url: url.href,
    issuer: sc.issuer,
    clientId: sc.w.id,
    provider,
    ...(provider === "static" ? { assertion } : { keyFile: sc.keyFile }),
  };
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: sc.rootFile };
  for (const k of ["AZTP_HOME", "AZTP_SERVER", "AZTP_API_KEY", "AZTP_TRUST_BUNDLE"]) delete env[k];
  const child = spawnNode(t, ["--import", "tsx", HOST, JSON.stringify(config)], { env });
  let read = 0;
  const lines = (): string[] => child.stdout().split("\n").slice(0, -1);
  const next = async (): Promise<HostEvent> => {
    await until(
      () => lines().length > read || child.process.exitCode !== null,
      `the host's next event (stderr: ${child.stderr().slice(-500)})`,
      30_000,
    );
    const line = lines()[read];
    assert.ok(line !== undefined, `the host exited ${child.process.exitCode}: ${child.stderr().slice(-2000)}`);
    read += 1;
    return JSON.parse(line) as HostEvent;
  };
  return {
    child,
    next,
    send: (line) => void child.process.stdin?.write(`${line}\n`),
    async trace() {
      child.process.stdin?.write("trace\n");
      const e = await next();
      assert.equal(e.event, "trace");
      return e.requests as TracedRequest[];
    },
  };
}

async function expectEvent(host: Host, event: string): Promise<HostEvent> {
  const e = await host.next();
  assert.equal(e.event, event, JSON.stringify(e));
  return e;
}

const PRM_PATH = "/.well-known/oauth-protected-resource/mcp";
const AS_METADATA_PATH = "/.well-known/oauth-authorization-server";

/** A trace without the event-stream GET the SDK opens on the MCP endpoint: it races the rest. */
const withoutStream = (trace: TracedRequest[], server: URL): TracedRequest[] =>
  trace.filter((r) => !(r.method === "GET" && r.origin === server.origin && r.path === server.pathname));

/**
 * Asserts the OAuth dance in `trace`: the first request the server refused (401, no bearer) is
 * `refusedRpc`; then the metadata of the resource and of the issuer, one token request with a
 * jwt-bearer assertion; then `refusedRpc` again with the bearer, answered. Nothing before it
 * carried a bearer, everything after it does.
 */
function assertOAuthDance(trace: TracedRequest[], sc: Scene, server: URL, refusedRpc: string): void {
  const steps = withoutStream(trace, server);
  const at = steps.findIndex((r) => r.status === 401);
  assert.ok(at >= 0, `a 401: ${JSON.stringify(steps)}`);
  const summary = steps.map((r) => `${r.method} ${r.origin}${r.path} ${r.rpc ?? ""} ${r.status}`.trim());
  assert.equal(steps[at]?.rpc, refusedRpc, summary.join("\n"));
  assert.ok(
    steps.slice(0, at + 1).every((r) => !r.bearer),
    "no bearer before the challenge",
  );
  const dance = steps.slice(at + 1, at + 5);
  assert.deepEqual(
    dance.map((r) => [r.method, r.origin, r.path, r.status]),
    [
      ["GET", server.origin, PRM_PATH, 200],
      ["GET", sc.issuer, AS_METADATA_PATH, 200],
      ["POST", sc.issuer, "/oauth/token", 200],
      ["POST", server.origin, server.pathname, 200],
    ],
    summary.join("\n"),
  );
  assert.equal(dance[2]?.assertionType, JWT_BEARER_ASSERTION_TYPE, "private_key_jwt (RFC 7523)");
  assert.equal(dance[3]?.rpc, refusedRpc, "the refused request, again");
  assert.ok(
    steps.slice(at + 1).every((r) => r.origin !== server.origin || r.path !== server.pathname || r.bearer),
    "every MCP request after it carries the bearer",
  );
}

/** Asserts the called event's token, and the server's audit entry for it: its `nth` call. */
async function assertBearerCall(
  sc: Scene,
  server: SecuredServer,
  called: HostEvent,
  expectedText: string,
  nth = 1,
): Promise<Record<string, unknown>> {
  assert.equal(called.text, expectedText);
  assert.equal(called.isError, false);
  assert.equal(called.receipt, true, "a bearer call is receipted");
  const token = called.token as string;
  const claims = decodeJwt(token);
  assert.equal(claims.iss, sc.issuer, "the token's issuer is the service's URL");
  assert.deepEqual([claims.aud].flat(), [server.url.href], "its audience the server's resource");
  assert.equal(claims.sub, sc.w.id);
  assert.equal(claims.client_id, sc.w.id);
  // The scope the server requires: the service's default, as the SDK 1.x providers ask for none.
  assert.equal(claims.scope, SCOPE);
  // The gate's refusals (the 401 before the token, when it came at tools/call) are entries too:
  // denied, for want of a credential, before any token existed.
  let all = await server.audit(nth);
  for (let i = 0; i < 100 && all.filter((e) => e.decision !== "deny").length < nth; i++) {
    await new Promise((r) => setTimeout(r, 50));
    all = await server.audit(nth);
  }
  for (const refused of all.filter((e) => e.decision === "deny")) {
    assert.equal(refused.reason, "ERR_OAUTH_TOKEN_MISSING", "refused at the gate only for want of a token");
    assert.equal(refused.tool, "echo");
    assert.equal(refused.accessTokenJti, undefined);
  }
  const entries = all.filter((e) => e.decision !== "deny");
  assert.equal(entries.length, nth, "one allowed entry per call");
  const entry = entries[nth - 1] as AuditEntry;
  assert.equal(entry.accessTokenJti, claims.jti, "the entry records the token's jti");
  assert.equal(entry.caller, sc.w.id, "the workload's SPIFFE ID is the caller");
  assert.equal(entry.callerVerified, true);
  assert.equal(entry.authMethod, "bearer");
  assert.equal(entry.tool, "echo");
  assert.equal(entry.decision, "allow");
  assert.equal(entry.outcome, "ok");
  return claims;
}

/** A raw tools/call as a host would send it, with a bearer token and no session. */
function rawCall(url: URL, token: string): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer ${token}`,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "echo", arguments: { text: "raw" } },
    }),
  });
}

async function codeOf(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { error?: { data?: { code?: string } } }).error?.data?.code;
}

/** An in-process SDK Client that already holds a token (`requestInit` headers), unmodified. */
async function bearerClient(t: TestContext, url: URL, token: string): Promise<Client> {
  const client = new Client({ name: "token-holder", version: "1.0.0" });
  t.after(() => client.close().catch(() => undefined));
  await withTimeout(
    client.connect(
      new StreamableHTTPClientTransport(url, { requestInit: { headers: { Authorization: `Bearer ${token}` } } }),
    ),
    10_000,
    "connect",
  );
  return client;
}

/** A token from the service's token endpoint for `resource`, the workload's private_key_jwt as curl would post it. */
async function tokenFor(sc: Scene, resource: string): Promise<string> {
  const r = await tokenRequest(
    sc.s.url,
    {
      grant_type: "client_credentials",
      client_id: sc.w.id,
      client_assertion_type: JWT_BEARER_ASSERTION_TYPE,
      client_assertion: await sdkAssertion(sc.w, sc.issuer),
      resource,
      scope: SCOPE,
    },
    { ca: sc.s.bundlePem },
  );
  assert.equal(r.status, 200, r.text);
  return r.json.access_token as string;
}

describe("the MCP SDK's OAuth clients reach a secured MCP server through aztp serve, given only its URL", () => {
  const cases: Array<{ name: string; openMethods: readonly string[] | undefined; refused: string }> = [
    {
      name: "default open methods: the 401 comes at tools/call, mid-session",
      openMethods: undefined,
      refused: "tools/call",
    },
    { name: "openMethods: []: the 401 comes at initialize", openMethods: [], refused: "initialize" },
  ];
  for (const { name, openMethods, refused } of cases) {
    it(`PrivateKeyJwtProvider (the SVID key), ${name}`, async (t) => {
      const sc = await scene(t);
      const server = await securedServer(t, sc.c, "tools", { openMethods });
      const host = startHost(t, sc, server.url, "private-key-jwt");
      await expectEvent(host, "connected");
      assert.deepEqual((await expectEvent(host, "tools")).names, ["echo"]);
      await assertBearerCall(sc, server, await expectEvent(host, "called"), "hello");
      assert.equal(server.runs.n, 1);
      assertOAuthDance(await host.trace(), sc, server.url, refused);
      const tokenLines = sc.s.logs.filter((l) => l.msg === "request" && l.path === "/oauth/token");
      assert.deepEqual(
        tokenLines.map((l) => [l.status, l.clientId]),
        [[200, sc.w.id]],
        "one token request, authenticated as the workload",
      );
      // The session goes on with the same token: no second token request.
      host.send("call again");
      await assertBearerCall(sc, server, await expectEvent(host, "called"), "again", 2);
      assert.equal(sc.s.logs.filter((l) => l.msg === "request" && l.path === "/oauth/token").length, 1);
    });

    it(`StaticPrivateKeyJwtProvider (a JWT-SVID for the issuer as its assertion), ${name}`, async (t) => {
      const sc = await scene(t);
      const server = await securedServer(t, sc.c, "tools", { openMethods });
      const svid = (await serveClient(sc.s)("/v1/identities/jwt-svid", { body: { id: sc.w.id, audience: sc.issuer } }))
        .json.token as string;
      assert.equal(decodeJwt(svid).aud, sc.issuer);
      const host = startHost(t, sc, server.url, "static", svid);
      await expectEvent(host, "connected");
      assert.deepEqual((await expectEvent(host, "tools")).names, ["echo"]);
      await assertBearerCall(sc, server, await expectEvent(host, "called"), "hello");
      assert.equal(server.runs.n, 1);
      assertOAuthDance(await host.trace(), sc, server.url, refused);
    });
  }

  it("revocation reaches the resource server: the revoked workload's live token is refused (401 ERR_OAUTH_TOKEN_REVOKED), and so is its next token request (invalid_client)", async (t) => {
    await revocationScenario(t);
  });

  it("a token of another resource (another server's URL) is refused: audience (passing twin: the same token at its own server, and this server's own token)", async (t) => {
    const sc = await scene(t);
    const server = await securedServer(t, sc.c, "tools");
    const other = await securedServer(t, sc.c, "other-tools");
    const othersToken = await tokenFor(sc, other.url.href);
    const refused = await rawCall(server.url, othersToken);
    assert.equal(refused.status, 401);
    const challenge = extractWWWAuthenticateParams(refused);
    assert.equal(challenge.error, "invalid_token");
    assert.equal(challenge.resourceMetadataUrl?.href, new URL(PRM_PATH, server.url).href);
    assert.equal(await codeOf(refused), ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH);
    const wrong = new Client({ name: "wrong-audience", version: "1.0.0" });
    t.after(() => wrong.close().catch(() => undefined));
    await assert.rejects(
      wrong.connect(
        new StreamableHTTPClientTransport(server.url, {
          requestInit: { headers: { Authorization: `Bearer ${othersToken}` } },
        }),
      ),
      new RegExp(ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH),
    );
    assert.equal(server.runs.n, 0);
    // The twins: the token at the server it was minted for; a token minted for this server.
    const atOther = await bearerClient(t, other.url, othersToken);
    const r1 = (await atOther.callTool({ name: "echo", arguments: { text: "at its own" } })) as CallToolResult;
    assert.deepEqual(r1.content, [{ type: "text", text: "at its own" }]);
    const own = await bearerClient(t, server.url, await tokenFor(sc, server.url.href));
    const r2 = (await own.callTool({ name: "echo", arguments: { text: "own" } })) as CallToolResult;
    assert.deepEqual(r2.content, [{ type: "text", text: "own" }]);
    assert.equal(server.runs.n, 1);
    assert.equal(other.runs.n, 1);
    assert.equal((await server.audit(1))[0]?.caller, sc.w.id);
  });

  it("on PostgreSQL: the same journey and revocation, the service's state in the database", async (t) => {
    if (skipWithoutPg(t)) return;
    await revocationScenario(t, await pgDatabase(t));
  });
});

/**
 * A host connects and calls with PrivateKeyJwtProvider; the workload is revoked at the service;
 * once the resource server's feed has the revocation, its live token is refused and so is the
 * host's attempt at a new one. The call before the revocation is the passing twin.
 */
async function revocationScenario(t: TestContext, store?: string): Promise<void> {
  const sc = await scene(t, store);
  const server = await securedServer(t, sc.c, "tools");
  const host = startHost(t, sc, server.url, "private-key-jwt");
  await expectEvent(host, "connected");
  await expectEvent(host, "tools");
  const claims = await assertBearerCall(sc, server, await expectEvent(host, "called"), "hello");
  host.send("call before");
  const live = await expectEvent(host, "called");
  assert.equal(live.text, "before", "the twin: the same token, before the revocation");
  const liveToken = live.token as string;
  assert.equal(decodeJwt(liveToken).jti, claims.jti, "still the first token");
  assert.equal(server.runs.n, 2);

  const revoked = await serveClient(sc.s)("/v1/identities/revoke", { body: { id: sc.w.id, reason: "test" } });
  assert.equal(revoked.status, 200, revoked.text);
  await until(
    () => sc.authority.isRevoked(sc.w.id),
    "the resource server's revocation feed has the revocation",
    10_000,
  );
  assert.ok((decodeJwt(liveToken).exp as number) * 1000 > Date.now() + 30_000, "the token is still unexpired");

  const refused = await rawCall(server.url, liveToken);
  assert.equal(refused.status, 401);
  assert.equal(extractWWWAuthenticateParams(refused).error, "invalid_token");
  assert.equal(await codeOf(refused), ErrorCodes.OAUTH_TOKEN_REVOKED);

  // The host's session: its token refused, the SDK asks for a new one, the token endpoint says no.
  host.send("call after");
  const failed = await expectEvent(host, "error");
  assert.equal(failed.name, "InvalidClientError", JSON.stringify(failed));
  const trace = withoutStream(await host.trace(), server.url);
  const last = trace.findLastIndex((r) => r.rpc === "tools/call");
  assert.equal(trace[last]?.status, 401, "the last call, with the live token, was refused");
  assert.ok(trace[last]?.bearer);
  const after = trace.slice(last + 1).filter((r) => r.path === "/oauth/token");
  assert.ok(after.length >= 1 && after.every((r) => r.status === 401), JSON.stringify(trace.slice(last)));
  const denied = sc.s.logs.filter((l) => l.msg === "request" && l.path === "/oauth/token" && l.status === 401);
  assert.ok(
    denied.length >= 1 && denied.every((l) => l.code === ErrorCodes.OAUTH_CLIENT_REVOKED),
    JSON.stringify(denied),
  );
  // A raw token request says the same, as RFC 6749 error JSON.
  const fresh = await tokenRequest(
    sc.s.url,
    {
      grant_type: "client_credentials",
      client_assertion_type: JWT_BEARER_ASSERTION_TYPE,
      client_assertion: await sdkAssertion(sc.w, sc.issuer),
      resource: server.url.href,
    },
    { ca: sc.s.bundlePem },
  );
  assert.equal(fresh.status, 401);
  assert.equal(fresh.json.error, "invalid_client");
  assert.equal(fresh.json.code, ErrorCodes.OAUTH_CLIENT_REVOKED);
  assert.equal(server.runs.n, 2, "nothing ran after the revocation");
}
