/**
 * People at unmodified hosts: `aztp serve` as the authorization server of the authorization code
 * flow (PKCE, S256), the person's login delegated to a REAL OpenID Provider (oidc-provider on
 * loopback, examples/local-openid-provider.ts, aztp serve registered there as a relying party
 * with a client secret), driven headlessly by its `authorize()` browser.
 *
 * - The MCP SDK's own OAuth client (`auth()` through `StreamableHTTPClientTransport` with an
 *   `OAuthClientProvider`) registers (RFC 7591), authorizes, redeems its code and calls a secured
 *   MCP server (resource gate) as alice: the server's audit entry names her, `<op>#alice`.
 * - Attacks, each with its passing twin: a wrong code_verifier, a code redeemed twice, a
 *   redirect_uri the client did not register (shown, not redirected) and another at the token
 *   endpoint, a Client ID Metadata Document whose client_id is not its URL, a state the server
 *   never sent at the OP callback (and the right state from another browser), an ID token
 *   carrying another nonce.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError, type OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt } from "jose";
import type { LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { ErrorCodes } from "../src/errors.js";
import { newPkce } from "../src/oauth/pkce.js";
import { parsePolicy, type PolicyDocument } from "../src/policy/index.js";
import { ledgerServer, peopleAtHosts } from "./helpers/people-hosts.js";
import type { StartedServe } from "./helpers/serve-util.js";

const HOST_REDIRECT = "http://127.0.0.1:9/callback";

interface Scene {
  op: LocalOpenIdProvider;
  s: StartedServe;
  issuer: string;
  /** A document server for Client ID Metadata Documents (loopback http, allowed in this test). */
  docs: Map<string, unknown>;
  docsUrl: string;
}

async function scene(t: TestContext): Promise<Scene> {
  const { op, s } = await peopleAtHosts(t, { clientMetadataDocuments: { allowLoopbackHttp: true } });
  const docs = new Map<string, unknown>();
  const docServer: Server = createServer((req, res) => {
    const doc = docs.get(req.url ?? "");
    res.writeHead(doc === undefined ? 404 : 200, { "content-type": "application/json" });
    res.end(doc === undefined ? "{}" : JSON.stringify(doc));
  });
  await new Promise<void>((r) => docServer.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => docServer.close(() => r())));
  const docsUrl = `http://127.0.0.1:${(docServer.address() as AddressInfo).port}`;
  return { op, s, issuer: s.url, docs, docsUrl };
}

/** A secured MCP server taking aztp serve's tokens (test/helpers/people-hosts.ts). */
const securedServer = (t: TestContext, sc: Scene, policy?: PolicyDocument[]) => ledgerServer(t, sc.s, policy);

/** The MCP SDK's OAuthClientProvider of a host, its browser the provider's headless one signing `account` in. */
class HostProvider implements OAuthClientProvider {
  #client: OAuthClientInformationMixed | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = "";
  code: string | undefined;
  redirects: URL[] = [];
  constructor(
    readonly op: LocalOpenIdProvider,
    readonly account: string,
  ) {}
  get redirectUrl(): string {
    return HOST_REDIRECT;
  }
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: "a host",
      redirect_uris: [HOST_REDIRECT],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.#client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens) {
    this.#tokens = tokens;
  }
  async redirectToAuthorization(url: URL): Promise<void> {
    const back = await this.op.authorize(url, { account: this.account, redirectUri: HOST_REDIRECT });
    this.redirects.push(back);
    this.code = back.searchParams.get("code") ?? undefined;
  }
  saveCodeVerifier(v: string) {
    this.#verifier = v;
  }
  codeVerifier() {
    return this.#verifier;
  }
}

/** A browser by hand: aztp serve's authorize request, its binding cookie, and the provider's login. */
async function browse(
  sc: Scene,
  params: Record<string, string>,
  opts: { tamperOpUrl?: (u: URL) => void } = {},
): Promise<{ status: number; location?: string; cookie?: string; body: string; callback?: URL }> {
  const url = new URL("/oauth/authorize", sc.issuer);
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const res = await fetch(url, { redirect: "manual" });
  const body = await res.text();
  const location = res.headers.get("location") ?? undefined;
  if (res.status !== 302 || location === undefined) return { status: res.status, body };
  const cookie = res.headers.getSetCookie()[0]?.split(";")[0];
  const opUrl = new URL(location);
  if (opUrl.origin !== new URL(sc.op.issuer).origin) return { status: res.status, location, body };
  opts.tamperOpUrl?.(opUrl);
  const callback = await sc.op.authorize(opUrl, { account: "alice", redirectUri: `${sc.issuer}/oauth/callback` });
  return { status: res.status, location, ...(cookie !== undefined ? { cookie } : {}), body, callback };
}

async function followCallback(
  callback: URL,
  cookie: string | undefined,
): Promise<{ status: number; location?: URL; body: string }> {
  const res = await fetch(callback, { redirect: "manual", headers: cookie !== undefined ? { cookie } : {} });
  const location = res.headers.get("location");
  return { status: res.status, body: await res.text(), ...(location !== null ? { location: new URL(location) } : {}) };
}

async function register(sc: Scene, redirectUris = [HOST_REDIRECT]): Promise<string> {
  const res = await fetch(`${sc.issuer}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      redirect_uris: redirectUris,
      client_name: "hand-made host",
      token_endpoint_auth_method: "none",
    }),
  });
  const body = (await res.json()) as Record<string, unknown>;
  assert.equal(res.status, 201, JSON.stringify(body));
  return body.client_id as string;
}

/** One code for alice, by hand, for `clientId`. */
async function codeFor(
  sc: Scene,
  clientId: string,
  resource: string,
  verifierChallenge: string,
  redirectUri = HOST_REDIRECT,
) {
  const b = await browse(sc, {
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirectUri,
    code_challenge: verifierChallenge,
    code_challenge_method: "S256",
    state: "host-state-1",
    resource,
    scope: "mcp:tools",
  });
  assert.equal(b.status, 302, b.body);
  assert.ok(b.callback !== undefined);
  const back = await followCallback(b.callback, b.cookie);
  assert.equal(back.status, 302, back.body);
  const loc = back.location as URL;
  assert.equal(loc.searchParams.get("state"), "host-state-1");
  assert.equal(loc.searchParams.get("iss"), sc.issuer, "RFC 9207: iss in the authorization response");
  const code = loc.searchParams.get("code");
  assert.ok(code !== null, loc.href);
  return code;
}

async function redeem(
  sc: Scene,
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${sc.issuer}/oauth/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "authorization_code", ...form }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("aztp serve: people at unmodified hosts (authorization code + PKCE, login at a real OpenID Provider)", () => {
  it("the MCP SDK's own OAuth client registers, signs alice in at the provider and calls a secured server as alice", async (t) => {
    const sc = await scene(t);
    const rs = await securedServer(t, sc);
    const meta = (await (await fetch(`${sc.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    assert.deepEqual(meta.response_types_supported, ["code"]);
    assert.deepEqual(meta.code_challenge_methods_supported, ["S256"]);
    assert.equal(meta.client_id_metadata_document_supported, true);
    assert.equal(meta.registration_endpoint, `${sc.issuer}/oauth/register`);
    assert.ok((meta.grant_types_supported as string[]).includes("authorization_code"));

    const provider = new HostProvider(sc.op, "alice");
    const host = new Client({ name: "host", version: "1.0.0" });
    await assert.rejects(
      host.connect(new StreamableHTTPClientTransport(rs.url, { authProvider: provider })),
      UnauthorizedError,
      "openMethods [] : the host authorizes at connect",
    );
    assert.ok(provider.code !== undefined, `a code came back: ${provider.redirects.map((u) => u.href).join(" ")}`);
    const transport = new StreamableHTTPClientTransport(rs.url, { authProvider: provider });
    await transport.finishAuth(provider.code);
    const token = provider.tokens()?.access_token as string;
    const claims = decodeJwt(token);
    assert.equal(claims.iss, sc.issuer);
    assert.equal(claims.sub, "alice");
    assert.deepEqual(claims.sub_id, { format: "iss_sub", iss: sc.op.issuer, sub: "alice" });
    assert.equal(claims.client_id, provider.clientInformation()?.client_id, "the token names the host's client");
    assert.equal(claims.aud, rs.url.href);
    assert.deepEqual(claims.groups, ["finance"]);

    const host2 = new Client({ name: "host", version: "1.0.0" });
    await host2.connect(transport);
    const r = (await host2.callTool({ name: "balance", arguments: { account: "ops" } })) as CallToolResult;
    assert.deepEqual(r.content, [{ type: "text", text: "ops: 42" }]);
    await host2.close();
    const entries = (await rs.audit()).filter((e) => e.tool === "balance");
    assert.equal(entries.length, 1);
    const e = entries[0] as AuditEntry;
    assert.equal(e.caller, `${sc.op.issuer}#alice`, "the server sees the person as the caller");
    assert.equal(e.person, `${sc.op.issuer}#alice`);
    assert.equal(e.personEmail, "alice@example.com", "recordEmail is on for this provider");
    assert.equal(e.authMethod, "bearer");
    assert.equal(e.decision, "allow");
  });

  it("a policy on the person decides for a person at a host: finance's alice may transfer, support's bob may not", async (t) => {
    const sc = await scene(t);
    const rs = await securedServer(t, sc, [
      parsePolicy({
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "FinanceMayTransfer",
            Effect: "Allow",
            Action: "tool:call",
            Resource: "transfer",
            Condition: { "ForAnyValue:StringEquals": { "aztp:person.groups": "finance" } },
          },
        ],
      }),
    ]);
    const callAs = async (account: string) => {
      const provider = new HostProvider(sc.op, account);
      await assert.rejects(
        new Client({ name: "host", version: "1.0.0" }).connect(
          new StreamableHTTPClientTransport(rs.url, { authProvider: provider }),
        ),
        UnauthorizedError,
      );
      const transport = new StreamableHTTPClientTransport(rs.url, { authProvider: provider });
      await transport.finishAuth(provider.code as string);
      const host = new Client({ name: "host", version: "1.0.0" });
      await host.connect(transport);
      try {
        return await host.callTool({ name: "transfer", arguments: { to: "acme", amount: 10 } });
      } catch (e) {
        return e as Error;
      } finally {
        await host.close();
      }
    };
    const alice = (await callAs("alice")) as CallToolResult;
    assert.deepEqual(alice.content, [{ type: "text", text: "paid 10 to acme" }]);
    const bob = await callAs("bob");
    const refused = bob instanceof Error ? bob.message : JSON.stringify(bob);
    assert.match(refused, /ERR_POLICY_DENIED/);
    const entries = (await rs.audit()).filter((e) => e.tool === "transfer");
    assert.deepEqual(
      entries.map((e) => [e.person, e.decision, e.reason ?? ""]),
      [
        [`${sc.op.issuer}#alice`, "allow", ""],
        [`${sc.op.issuer}#bob`, "deny", ErrorCodes.POLICY_DENIED],
      ],
    );
  });

  it("a wrong code_verifier is refused (the code is then spent); the right one redeems a fresh code", async (t) => {
    const sc = await scene(t);
    const clientId = await register(sc);
    const resource = "http://127.0.0.1:1/mcp";
    const pkce = newPkce();
    const code = await codeFor(sc, clientId, resource, pkce.challenge);
    const wrong = await redeem(sc, {
      code,
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_verifier: newPkce().verifier,
      resource,
    });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, "invalid_grant");
    assert.equal(wrong.body.code, ErrorCodes.OAUTH_PKCE_INVALID);
    const again = await redeem(sc, {
      code,
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_verifier: pkce.verifier,
      resource,
    });
    assert.equal(again.body.code, ErrorCodes.OAUTH_CODE_INVALID, "a code gets one try");

    const pkce2 = newPkce();
    const code2 = await codeFor(sc, clientId, resource, pkce2.challenge);
    const ok = await redeem(sc, {
      code: code2,
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_verifier: pkce2.verifier,
      resource,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(decodeJwt(ok.body.access_token as string).sub, "alice");
  });

  it("a code redeemed twice is refused the second time (replayed)", async (t) => {
    const sc = await scene(t);
    const clientId = await register(sc);
    const resource = "http://127.0.0.1:1/mcp";
    const pkce = newPkce();
    const code = await codeFor(sc, clientId, resource, pkce.challenge);
    const form = { code, client_id: clientId, redirect_uri: HOST_REDIRECT, code_verifier: pkce.verifier, resource };
    const first = await redeem(sc, form);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const second = await redeem(sc, form);
    assert.equal(second.status, 400);
    assert.equal(second.body.error, "invalid_grant");
    assert.equal(second.body.code, ErrorCodes.OAUTH_CODE_INVALID);
    assert.equal(second.body.rule, "replayed");
  });

  it("redirect_uri: another one is shown an error, never redirected to; a loopback redirect on another port is the same one; the token request must repeat it", async (t) => {
    const sc = await scene(t);
    const clientId = await register(sc);
    const base = {
      response_type: "code",
      client_id: clientId,
      code_challenge: newPkce().challenge,
      code_challenge_method: "S256",
      state: "s",
      resource: "http://127.0.0.1:1/mcp",
    };
    const evil = await browse(sc, { ...base, redirect_uri: "https://evil.example/callback" });
    assert.equal(evil.status, 400);
    assert.equal(evil.location, undefined, "not redirected: an open redirector otherwise");
    assert.equal(JSON.parse(evil.body).error.code, ErrorCodes.OAUTH_AUTHORIZATION_REQUEST_INVALID);
    const path = await browse(sc, { ...base, redirect_uri: "http://127.0.0.1:9/callback/other" });
    assert.equal(path.status, 400, "exact match: another path is another URI");
    // RFC 8252 §7.3: a native host listens on any free port.
    const port = await browse(sc, { ...base, redirect_uri: "http://127.0.0.1:54321/callback" });
    assert.equal(port.status, 302, port.body);
    assert.ok(port.location?.startsWith(sc.op.issuer));

    const pkce = newPkce();
    const code = await codeFor(sc, clientId, base.resource, pkce.challenge, "http://127.0.0.1:54321/callback");
    const mismatch = await redeem(sc, {
      code,
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_verifier: pkce.verifier,
    });
    assert.equal(mismatch.body.code, ErrorCodes.OAUTH_CODE_INVALID);
    assert.equal(mismatch.body.rule, "redirect_uri");
    const pkce2 = newPkce();
    const code2 = await codeFor(sc, clientId, base.resource, pkce2.challenge, "http://127.0.0.1:54321/callback");
    const ok = await redeem(sc, {
      code: code2,
      client_id: clientId,
      redirect_uri: "http://127.0.0.1:54321/callback",
      code_verifier: pkce2.verifier,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  it("a Client ID Metadata Document whose client_id is not its URL is refused; one naming itself is a client", async (t) => {
    const sc = await scene(t);
    const liar = `${sc.docsUrl}/liar.json`;
    const honest = `${sc.docsUrl}/host.json`;
    sc.docs.set("/liar.json", { client_id: honest, client_name: "liar", redirect_uris: ["https://evil.example/cb"] });
    sc.docs.set("/host.json", {
      client_id: honest,
      client_name: "host",
      redirect_uris: [HOST_REDIRECT],
      token_endpoint_auth_method: "none",
    });
    const base = {
      response_type: "code",
      redirect_uri: HOST_REDIRECT,
      code_challenge: newPkce().challenge,
      code_challenge_method: "S256",
      resource: "http://127.0.0.1:1/mcp",
    };
    const bad = await browse(sc, { ...base, client_id: liar, redirect_uri: "https://evil.example/cb" });
    assert.equal(bad.status, 400);
    assert.equal(bad.location, undefined);
    const err = JSON.parse(bad.body).error;
    assert.equal(err.code, ErrorCodes.OAUTH_AUTHORIZATION_REQUEST_INVALID);
    assert.equal(err.rule, "client_id");

    const pkce = newPkce();
    const code = await codeFor(sc, honest, base.resource, pkce.challenge);
    const ok = await redeem(sc, { code, client_id: honest, redirect_uri: HOST_REDIRECT, code_verifier: pkce.verifier });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(decodeJwt(ok.body.access_token as string).client_id, honest);
  });

  it("at the OP callback: a state the server never sent, or the right one from another browser, is refused; the right one with its cookie goes on", async (t) => {
    const sc = await scene(t);
    const clientId = await register(sc);
    const params = {
      response_type: "code",
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_challenge: newPkce().challenge,
      code_challenge_method: "S256",
      state: "host-state",
      resource: "http://127.0.0.1:1/mcp",
    };
    const b = await browse(sc, params);
    const callback = b.callback as URL;
    const forged = new URL(callback);
    forged.searchParams.set("state", "A".repeat(43));
    const r1 = await followCallback(forged, b.cookie);
    assert.equal(r1.status, 400);
    assert.equal(JSON.parse(r1.body).error.code, ErrorCodes.OAUTH_LOGIN_STATE_INVALID);
    const r2 = await followCallback(callback, b.cookie);
    assert.equal(r2.status, 302, r2.body);
    assert.ok(r2.location?.searchParams.get("code"));
    assert.equal(r2.location?.searchParams.get("state"), "host-state");

    const other = await browse(sc, params);
    const r3 = await followCallback(other.callback as URL, undefined);
    assert.equal(r3.status, 400);
    const e3 = JSON.parse(r3.body).error;
    assert.equal(e3.code, ErrorCodes.OAUTH_LOGIN_STATE_INVALID);
    assert.equal(e3.rule, "browser");
  });

  it("an ID token carrying another nonce than the login sent is refused (access_denied to the host); the login's own nonce passes", async (t) => {
    const sc = await scene(t);
    const clientId = await register(sc);
    const params = {
      response_type: "code",
      client_id: clientId,
      redirect_uri: HOST_REDIRECT,
      code_challenge: newPkce().challenge,
      code_challenge_method: "S256",
      state: "n",
      resource: "http://127.0.0.1:1/mcp",
    };
    const b = await browse(sc, params, {
      tamperOpUrl: (u) => u.searchParams.set("nonce", "another-nonce-of-an-attacker"),
    });
    const r = await followCallback(b.callback as URL, b.cookie);
    assert.equal(r.status, 302);
    assert.equal(r.location?.searchParams.get("error"), "access_denied");
    assert.equal(r.location?.searchParams.get("code"), null);
    assert.match(r.location?.searchParams.get("error_description") ?? "", /ERR_PERSON_TOKEN_INVALID.*nonce/);
    assert.equal(r.location?.searchParams.get("state"), "n");

    const twin = await browse(sc, params);
    const ok = await followCallback(twin.callback as URL, twin.cookie);
    assert.ok(ok.location?.searchParams.get("code"), ok.location?.href);
  });
});
