/**
 * `aztp serve` as an OAuth 2.1 authorization server for workloads, driven by unmodified clients:
 * the MCP SDK's own discovery and token exchange (`discoverAuthorizationServerMetadata`,
 * `fetchToken` with `PrivateKeyJwtProvider` and `StaticPrivateKeyJwtProvider`), jose's remote
 * JWKS, and raw form posts as the README shows them. Every refusal has its passing twin.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync } from "node:crypto";
import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import {
  discoverAuthorizationServerMetadata as discoverAuthorizationServerMetadata2,
  fetchToken as fetchToken2,
  IssuerMismatchError,
  PrivateKeyJwtProvider as PrivateKeyJwtProvider2,
} from "@modelcontextprotocol/client";
import { discoverAuthorizationServerMetadata, fetchToken } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  PrivateKeyJwtProvider,
  StaticPrivateKeyJwtProvider,
} from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import {
  InvalidClientError,
  InvalidScopeError,
  InvalidTargetError,
} from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { verifyAccessToken, type AccessToken } from "../src/oauth/access-token.js";
import { JWT_BEARER_ASSERTION_TYPE, JWT_SPIFFE_ASSERTION_TYPE } from "../src/oauth/client-assertion.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend } from "../src/serve/open.js";
import { startServe as startRunning, type RunningServe } from "../src/serve/server.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { openPostgresStores } from "../src/store/postgres/index.js";
import { CLI, ROOT, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import {
  client,
  sdkAssertion,
  serveRequest,
  startServe,
  tokenRequest,
  workload,
  type ServeAnswer,
} from "./helpers/serve-util.js";

const RESOURCE = "https://tools.example.test/mcp";

describe("aztp serve: OAuth authorization server metadata and keys", () => {
  it("the MCP SDK discovers the metadata (RFC 8414) and jose verifies a minted token against the JWKS", async (t) => {
    const s = await startServe(t, { insecureHttp: true, scopesSupported: ["tools:read", "tools:call"] });
    const metadata = await discoverAuthorizationServerMetadata(s.url);
    assert.ok(metadata !== undefined);
    assert.equal(metadata.issuer, s.url);
    assert.equal(metadata.token_endpoint, `${s.url}/oauth/token`);
    assert.deepEqual(metadata.grant_types_supported, [
      "client_credentials",
      "urn:ietf:params:oauth:grant-type:token-exchange",
    ]);
    assert.deepEqual(metadata.token_endpoint_auth_methods_supported, ["private_key_jwt"]);
    assert.ok(metadata.token_endpoint_auth_signing_alg_values_supported?.includes("ES256"));
    assert.deepEqual(metadata.response_types_supported, []);
    assert.deepEqual(metadata.scopes_supported, ["tools:read", "tools:call"]);
    assert.equal((metadata as Record<string, unknown>).jwks_uri, `${s.url}/oauth/jwks`);

    // A token of this issuer, verified by a library that knows nothing of SPIFFE: only the JWKS.
    const authority = await EmbeddedAuthority.open(s.home);
    const { spiffeId } = (
      await client(s)("/v1/identities", {
        body: { request: { name: "jwks-client" }, csr: await csr() },
      })
    ).json.record;
    await authority.refresh();
    const token = authority.mintAccessToken(spiffeId, {
      issuer: metadata.issuer,
      resource: "https://tools.example.test/mcp",
      scopes: ["tools:read"],
    });
    const jwks = createRemoteJWKSet(new URL(String((metadata as Record<string, unknown>).jwks_uri)));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: s.url,
      audience: "https://tools.example.test/mcp",
      typ: "at+jwt",
    });
    assert.equal(payload.sub, spiffeId);
    assert.equal(payload.client_id, spiffeId);
    assert.equal(protectedHeader.alg, "ES256");
    const keys = (await serveRequest(s.url, "/oauth/jwks")).json.keys as Array<Record<string, unknown>>;
    assert.equal(keys.length, 1);
    assert.equal(keys[0]?.use, "sig");
    assert.equal(keys[0]?.alg, "ES256");
    assert.equal(keys[0]?.kid, protectedHeader.kid);
    assert.equal(keys[0]?.d, undefined, "no private member");
  });

  it("over HTTPS, behind a --public-url: the metadata names the public URL, also at the path-aware well-known", async (t) => {
    const s = await startServe(t, { publicUrl: "https://aztp.example.test/auth/" });
    const call = client(s);
    const root = await call("/.well-known/oauth-authorization-server");
    assert.equal(root.status, 200);
    assert.equal(root.json.issuer, "https://aztp.example.test/auth");
    assert.equal(root.json.token_endpoint, "https://aztp.example.test/auth/oauth/token");
    assert.equal(root.json.scopes_supported, undefined);
    assert.match(String(root.headers["cache-control"]), /max-age=15/);
    assert.deepEqual((await call("/.well-known/oauth-authorization-server/auth")).json, root.json);
    const other = await call("/.well-known/oauth-authorization-server/elsewhere");
    assert.equal(other.status, 404);
    assert.equal(other.json.error, "invalid_request");
    assert.equal(other.json.code, "ERR_SERVE_ROUTE_NOT_FOUND");
  });

  it("the authorization endpoint runs no flow: unsupported_response_type, as RFC 6749 error JSON", async (t) => {
    const s = await startServe(t);
    const r = await client(s)("/oauth/authorize?response_type=code&client_id=x");
    assert.equal(r.status, 400);
    assert.equal(r.json.error, "unsupported_response_type");
    assert.equal(r.json.code, "ERR_OAUTH_RESPONSE_TYPE_UNSUPPORTED");
    assert.equal(r.headers["cache-control"], "no-store");
    assert.doesNotMatch(r.json.error_description, /["\\]/);
  });
});

describe("aztp serve: the token endpoint, driven by the MCP SDK's own client code", () => {
  it("PrivateKeyJwtProvider (the SVID key's PKCS#8 PEM) through fetchToken: an RFC 9068 token that verifies offline from the bundle", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "sdk-client");
    const metadata = await discoverAuthorizationServerMetadata(s.url);
    assert.ok(metadata !== undefined);
    const provider = new PrivateKeyJwtProvider({
      clientId: w.id,
      privateKey: w.keyPem,
      algorithm: "ES256",
      expectedIssuer: s.url,
      scope: "tools:read tools:call",
    });
    const tokens = await fetchToken(provider, s.url, { metadata, resource: new URL(RESOURCE) });
    assert.equal(tokens.token_type, "Bearer");
    assert.equal(tokens.scope, "tools:read tools:call");
    assert.ok(tokens.expires_in !== undefined && tokens.expires_in > 290 && tokens.expires_in <= 300);
    const at = await verified(s, tokens.access_token);
    assert.equal(at.subject, w.id);
    assert.equal(at.clientId, w.id);
    assert.deepEqual(at.audience, [RESOURCE]);
    assert.deepEqual(at.scopes, ["tools:read", "tools:call"]);
    assert.equal(at.header.typ, "at+jwt");
    assert.equal(at.issuer, s.url);
    // Each fetch signs a fresh assertion (a new jti): a second token comes as easily.
    const again = await fetchToken(provider, s.url, { metadata, resource: new URL(RESOURCE) });
    assert.notEqual(again.access_token, tokens.access_token);
    const logged = s.logs.filter((l) => l.msg === "request" && l.path === "/oauth/token");
    assert.equal(logged.length, 2);
    assert.ok(logged.every((l) => l.clientId === w.id && l.status === 200));
    assert.ok(!JSON.stringify(s.logs).includes(tokens.access_token), "no token in the log");
  });

  it("the MCP SDK 2.x (@modelcontextprotocol/client): its discovery checks the issuer echo (RFC 8414 §3.3), its PrivateKeyJwtProvider gets a token", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "sdk2-client");
    const metadata = await discoverAuthorizationServerMetadata2(s.url);
    assert.ok(metadata !== undefined);
    assert.equal(metadata.issuer, s.url);
    const provider = new PrivateKeyJwtProvider2({
      clientId: w.id,
      privateKey: w.keyPem,
      algorithm: "ES256",
      expectedIssuer: s.url,
      scope: "tools:read",
    });
    const tokens = await fetchToken2(provider, s.url, { metadata, resource: new URL(RESOURCE) });
    const at = await verified(s, tokens.access_token);
    assert.equal(at.subject, w.id);
    assert.deepEqual(at.scopes, ["tools:read"]);
    // Discovered at another spelling of the server, the metadata is refused by the SDK itself.
    const other = s.url.replace("127.0.0.1", "localhost");
    await assert.rejects(discoverAuthorizationServerMetadata2(other), IssuerMismatchError);
  });

  it("StaticPrivateKeyJwtProvider given a JWT-SVID as its assertion: one token per JWT-SVID, a second use is a replay", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "static-client");
    const metadata = await discoverAuthorizationServerMetadata(s.url);
    assert.ok(metadata !== undefined);
    const svid = (await client(s)("/v1/identities/jwt-svid", { body: { id: w.id, audience: s.url } })).json.token;
    const provider = new StaticPrivateKeyJwtProvider({
      clientId: w.id,
      jwtBearerAssertion: svid,
      expectedIssuer: s.url,
    });
    const tokens = await fetchToken(provider, s.url, { metadata, resource: new URL(RESOURCE) });
    assert.equal((await verified(s, tokens.access_token)).subject, w.id);
    assert.equal(tokens.scope, undefined);
    await assert.rejects(fetchToken(provider, s.url, { metadata, resource: new URL(RESOURCE) }), (e: unknown) => {
      assert.ok(e instanceof InvalidClientError, String(e));
      assert.match((e as Error).message, /already spent/);
      return true;
    });
  });

  it("a raw form POST, as curl sends it: jwt-spiffe with a JWT-SVID, the answer no-store, RFC 6749 §5.1", async (t) => {
    const s = await startServe(t);
    const w = await workload(s.url, s.bundlePem, s.apiKey, "curl-client");
    const meta = (await serveRequest(s.url, "/.well-known/oauth-authorization-server", { ca: s.bundlePem })).json;
    const svid = (await client(s)("/v1/identities/jwt-svid", { body: { id: w.id, audience: meta.issuer } })).json.token;
    const r = await tokenRequest(
      s.url,
      {
        grant_type: "client_credentials",
        client_id: w.id,
        client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE,
        client_assertion: svid,
        resource: RESOURCE,
        scope: "tools:read",
      },
      { ca: s.bundlePem, path: new URL(meta.token_endpoint).pathname },
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["cache-control"], "no-store");
    assert.equal(r.headers.pragma, "no-cache");
    assert.deepEqual(Object.keys(r.json).sort(), ["access_token", "expires_in", "scope", "token_type"]);
    assert.equal((await verified(s, r.json.access_token)).subject, w.id);
  });

  it("refusals as RFC 6749 error JSON with the library's code alongside, each with its passing twin", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "attacked");
    const other = await startServe(t, { insecureHttp: true, trustDomain: "elsewhere.test" });
    const foreign = await workload(other.url, undefined, other.apiKey, "foreign");
    const foreignSvid = (await client(other)("/v1/identities/jwt-svid", { body: { id: foreign.id, audience: s.url } }))
      .json.token;
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: w.id, sub: w.id, aud: s.url, iat: now, exp: now + 60, jti: "forged" };
    const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");
    const hsInput = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
    const publicX = (w.key.export({ format: "jwk" }) as { x: string }).x;
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const cases: Array<[string, Record<string, string | undefined>, string, string, number]> = [
      [
        "wrong audience",
        bearerParams(await sdkAssertion(w, "https://elsewhere.test")),
        "invalid_client",
        "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
        401,
      ],
      [
        "expired",
        bearerParams(await sdkAssertion(w, s.url, { iat: now - 600, exp: now - 120 })),
        "invalid_client",
        "ERR_OAUTH_ASSERTION_EXPIRED",
        401,
      ],
      [
        "another issuer's key",
        bearerParams(await sdkAssertion({ ...w, key: stranger }, s.url)),
        "invalid_client",
        "ERR_OAUTH_ASSERTION_SIGNATURE_INVALID",
        401,
      ],
      [
        "alg none",
        bearerParams(`${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`),
        "invalid_client",
        "ERR_OAUTH_ASSERTION_ALG_NOT_ALLOWED",
        401,
      ],
      [
        "HS256 keyed with the public key",
        bearerParams(`${hsInput}.${createHmac("sha256", publicX).update(hsInput).digest("base64url")}`),
        "invalid_client",
        "ERR_OAUTH_ASSERTION_ALG_NOT_ALLOWED",
        401,
      ],
      [
        "a JWT-SVID of another trust domain",
        { ...bearerParams(foreignSvid), client_assertion_type: JWT_SPIFFE_ASSERTION_TYPE },
        "invalid_client",
        "ERR_OAUTH_ASSERTION_UNTRUSTED",
        401,
      ],
      [
        "client_id naming another",
        bearerParams(await sdkAssertion(w, s.url), { client_id: foreign.id }),
        "invalid_client",
        "ERR_OAUTH_CLIENT_ID_MISMATCH",
        401,
      ],
      [
        "no client authentication",
        { grant_type: "client_credentials", resource: RESOURCE, client_id: w.id },
        "invalid_client",
        "ERR_OAUTH_CLIENT_AUTH_MISSING",
        401,
      ],
      [
        "missing resource",
        bearerParams(await sdkAssertion(w, s.url), { resource: undefined }),
        "invalid_target",
        "ERR_OAUTH_RESOURCE_INVALID",
        400,
      ],
      [
        "a resource with a fragment",
        bearerParams(await sdkAssertion(w, s.url), { resource: `${RESOURCE}#x` }),
        "invalid_target",
        "ERR_OAUTH_RESOURCE_INVALID",
        400,
      ],
      [
        "a relative resource",
        bearerParams(await sdkAssertion(w, s.url), { resource: "/mcp" }),
        "invalid_target",
        "ERR_OAUTH_RESOURCE_INVALID",
        400,
      ],
      [
        "unsupported grant type",
        bearerParams(await sdkAssertion(w, s.url), { grant_type: "authorization_code" }),
        "unsupported_grant_type",
        "ERR_OAUTH_GRANT_TYPE_UNSUPPORTED",
        400,
      ],
      [
        "no grant type",
        bearerParams(await sdkAssertion(w, s.url), { grant_type: undefined }),
        "invalid_request",
        "ERR_OAUTH_REQUEST_INVALID",
        400,
      ],
      [
        "a malformed scope",
        bearerParams(await sdkAssertion(w, s.url), { scope: 'a "b"' }),
        "invalid_scope",
        "ERR_OAUTH_SCOPE_INVALID",
        400,
      ],
    ];
    for (const [what, params, error, code, status] of cases) {
      const r = await tokenRequest(s.url, params);
      assert.equal(r.status, status, `${what}: ${r.text}`);
      assert.equal(r.json.error, error, what);
      assert.equal(r.json.code, code, `${what}: ${r.json.error_description}`);
      assert.equal(typeof r.json.error_description, "string", what);
      assert.equal(r.headers["cache-control"], "no-store", what);
      if (status === 401) assert.match(String(r.headers["www-authenticate"]), /^Bearer /, what);
    }
    // The passing twin of every case above: the same client, one consistent request.
    const ok = await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url), { client_id: w.id, scope: "a b" }));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.scope, "a b");
  });

  it("the form is read strictly: JSON, a repeated parameter, a bad escape (passing twin: the same as a form)", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "strict");
    const params = bearerParams(await sdkAssertion(w, s.url));
    const json = await serveRequest(s.url, "/oauth/token", { body: params });
    assert.equal(json.status, 415);
    assert.equal(json.json.error, "invalid_request");
    assert.equal(json.json.code, "ERR_SERVE_CONTENT_TYPE_UNSUPPORTED");
    const form = new URLSearchParams(params).toString();
    for (const raw of [`${form}&resource=https%3A%2F%2Fother.test%2F`, `${form}&x=%zz`, `${form}&x=%C3%28`]) {
      const r = await serveRequest(s.url, "/oauth/token", {
        raw,
        headers: { "content-type": "application/x-www-form-urlencoded" },
      });
      assert.equal(r.status, 400, raw.slice(-40));
      assert.equal(r.json.error, "invalid_request");
    }
    const ok = await serveRequest(s.url, "/oauth/token", {
      raw: form,
      headers: { "content-type": "application/x-www-form-urlencoded; charset=UTF-8" },
    });
    assert.equal(ok.status, 200, ok.text);
  });

  it("a replayed assertion and a revoked client get no token (passing twin: the first use, before the revocation)", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "revocable");
    const assertion = await sdkAssertion(w, `${s.url}/oauth/token`);
    assert.equal((await tokenRequest(s.url, bearerParams(assertion))).status, 200);
    const replayed = await tokenRequest(s.url, bearerParams(assertion));
    assert.equal(replayed.json.code, "ERR_OAUTH_ASSERTION_REPLAYED");
    assert.equal(replayed.json.error, "invalid_client");
    await client(s)("/v1/identities/revoke", { body: { id: w.id, reason: "test" } });
    const revoked = await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)));
    assert.equal(revoked.status, 401);
    assert.equal(revoked.json.code, "ERR_OAUTH_CLIENT_REVOKED");
  });

  it("scopes no wider than the client's policy: oauth:token narrows per scope and per resource (passing twin: no policy, all granted)", async (t) => {
    const s = await startServe(t, { insecureHttp: true, scopesSupported: ["tools:read", "tools:call", "admin"] });
    const w = await workload(s.url, undefined, s.apiKey, "narrowed");
    const ask = async (scope: string | undefined, resource = RESOURCE): Promise<ServeAnswer> =>
      tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url), { scope, resource }));
    assert.equal(
      (await ask("tools:read tools:call admin")).json.scope,
      "tools:read tools:call admin",
      "no policy: as asked",
    );
    assert.equal((await ask("tools:read nope")).json.scope, "tools:read", "scopes_supported bounds every client");
    assert.equal((await ask("nope")).json.code, "ERR_OAUTH_SCOPE_DENIED");
    assert.equal((await ask(undefined)).json.scope, "tools:read tools:call admin", "none asked: all offered");

    const policy = {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "ReadTools",
          Effect: "Allow",
          Action: "oauth:token",
          Resource: "https://tools.example.test/*",
          Condition: { StringEquals: { "aztp:scope": ["tools:read", "tools:call"] } },
        },
        {
          Sid: "NeverCall",
          Effect: "Deny",
          Action: "oauth:token",
          Resource: "*",
          Condition: { StringEquals: { "aztp:scope": "tools:call" } },
        },
      ],
    };
    assert.equal((await client(s)("/v1/policies", { body: { id: w.id, document: policy } })).status, 200);
    const narrowed = await ask("tools:read tools:call admin");
    assert.equal(narrowed.status, 200, narrowed.text);
    assert.equal(narrowed.json.scope, "tools:read", "the answer says which scopes were granted");
    assert.deepEqual((await verified(s, narrowed.json.access_token)).scopes, ["tools:read"]);
    const denied = await ask("admin");
    assert.equal(denied.status, 400);
    assert.equal(denied.json.error, "invalid_scope");
    assert.equal(denied.json.code, "ERR_OAUTH_SCOPE_DENIED");
    const elsewhere = await ask("tools:read", "https://billing.example.test/mcp");
    assert.equal(elsewhere.json.code, "ERR_OAUTH_SCOPE_DENIED", "the policy's Resource bounds the resource too");
    // No scope asked (what the MCP SDK 1.x providers send): the offered scopes the policy allows.
    const unscoped = await ask(undefined);
    assert.equal(unscoped.status, 200, unscoped.text);
    assert.equal(unscoped.json.scope, "tools:read");
    const unscopedElsewhere = await ask(undefined, "https://billing.example.test/mcp");
    assert.equal(unscopedElsewhere.json.error, "invalid_target");
    assert.equal(unscopedElsewhere.json.code, "ERR_OAUTH_RESOURCE_DENIED");
  });

  it("an API key, when sent, limits which SPIFFE IDs obtain tokens through it; a bad key is refused (passing twin: no key, or one in scope)", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const w = await workload(s.url, undefined, s.apiKey, "keyed");
    const { key: narrow } = await s.newKey({ idPrefix: `spiffe://${s.trustDomain}/workload/production/node/other` });
    const { key: wide } = await s.newKey({ trustDomain: s.trustDomain });
    const out = await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)), { key: narrow });
    assert.equal(out.status, 400);
    assert.equal(out.json.error, "unauthorized_client");
    assert.equal(out.json.code, "ERR_SERVE_API_KEY_SCOPE_DENIED");
    const bad = await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)), { key: "aztp_nope_nope" });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error, "invalid_client");
    assert.equal(bad.json.code, "ERR_SERVE_API_KEY_INVALID");
    assert.equal((await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)), { key: wide })).status, 200);
    assert.equal((await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)))).status, 200);
  });

  it("issuance is rate-limited per client; a refused request leaves its assertion unspent", async (t) => {
    const s = await startServe(t, { insecureHttp: true, tokenRate: 1, tokenBurst: 2 });
    const w = await workload(s.url, undefined, s.apiKey, "hasty");
    const other = await workload(s.url, undefined, s.apiKey, "patient");
    for (let i = 0; i < 2; i++)
      assert.equal((await tokenRequest(s.url, bearerParams(await sdkAssertion(w, s.url)))).status, 200);
    const held = await sdkAssertion(w, s.url);
    const limited = await tokenRequest(s.url, bearerParams(held));
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error, "temporarily_unavailable");
    assert.equal(limited.json.code, "ERR_SERVE_RATE_LIMITED");
    assert.equal(limited.headers["retry-after"], "1");
    assert.equal((await tokenRequest(s.url, bearerParams(await sdkAssertion(other, s.url)))).status, 200, "per client");
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await tokenRequest(s.url, bearerParams(held))).status, 200, "the refused assertion still works");
  });
});

describe("the README's authorization server section", () => {
  it("its curl sequence runs as printed (the port and the CLI substituted, and a wait for the service to listen)", async (t) => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const from = readme.indexOf("### The authorization server: `aztp serve`");
    assert.ok(from > 0, "the README has the section");
    const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(from))?.[1];
    assert.ok(block !== undefined, "the section has a sh block");
    const dir = tempDir(t, "readme-oauth");
    const port = await freePort();
    const lines = block.replaceAll("8443", String(port)).split("\n");
    const serveAt = lines.findIndex((l) => l.startsWith("aztp serve "));
    assert.ok(serveAt >= 0 && lines[serveAt]?.trimEnd().endsWith("&"), "the service starts in the background");
    lines.splice(
      serveAt + 1,
      0,
      `until curl -s -o /dev/null --cacert root.pem https://localhost:${port}/healthz; do sleep 0.2; done`,
    );
    // `aztp` as an installed bin would be: an executable that execs node, so the background
    // `aztp serve ... &` is the service's own process, which the trap's kill reaches (a shell
    // function would put a subshell in between, and the service would outlive the test).
    const bin = join(dir, "bin");
    mkdirSync(bin);
    writeFileSync(
      join(bin, "aztp"),
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} --import ${JSON.stringify(import.meta.resolve("tsx"))} ${JSON.stringify(CLI)} "$@"\n`,
      { mode: 0o755 },
    );
    const script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT", ...lines].join("\n");
    const out = await new Promise<string>((resolve, reject) => {
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` };
      // The children are no part of this test run, and use the folders the script names.
      for (const k of ["NODE_TEST_CONTEXT", "AZTP_HOME", "AZTP_SERVER", "AZTP_API_KEY", "AZTP_TRUST_BUNDLE"])
        delete env[k];
      execFile("bash", ["-c", script], { cwd: dir, env, timeout: 120_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}\n${stdout}`)) : resolve(stdout),
      );
    });
    const answer = /\{"access_token"[^}]*\}/.exec(out)?.[0];
    assert.ok(answer !== undefined, out.slice(-2000));
    const tokens = JSON.parse(answer) as {
      access_token: string;
      token_type: string;
      expires_in: number;
      scope: string;
    };
    assert.equal(tokens.token_type, "Bearer");
    assert.equal(tokens.scope, "tools:read");
    const authority = await EmbeddedAuthority.open(join(dir, "authority"));
    const at = await verifyAccessToken(tokens.access_token, {
      resource: "https://mcp.example.com/mcp",
      issuers: [{ issuer: `https://localhost:${port}`, bundles: authority.bundleSet(), trustDomains: ["example.org"] }],
    });
    assert.equal(at.subject, "spiffe://example.org/workload/production/node/my-agent");
  });
});

describe("aztp serve on PostgreSQL: the token endpoint across replicas", () => {
  const TD = "pg-oauth.test";
  async function replica(t: TestContext, url: string, kek: Buffer): Promise<RunningServe> {
    const backend = await openServeBackend(url, { kek, createTrustDomain: TD });
    const running = await startRunning({
      backend,
      host: "127.0.0.1",
      port: 0,
      insecureHttp: true,
      // One issuer for both, as behind a load balancer.
      publicUrl: "https://aztp.pg.test",
      logger: jsonLogger("error", () => undefined),
    });
    t.after(() => running.stop());
    return running;
  }

  it("an assertion spent at one replica is refused at the other; keys and revocations recorded at one hold at the other", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const [a, b] = await Promise.all([replica(t, url, kek), replica(t, url, kek)]);
    const stores = await openPostgresStores(url, { kek });
    t.after(() => stores.close());
    const { key: apiKey } = await stores.apiKeys.create({ name: "test" });
    const w = await workload(a.url, undefined, apiKey, "replicated");
    const issuer = "https://aztp.pg.test";
    // Issued through A, authenticated at B by the key A recorded.
    const first = await sdkAssertion(w, issuer);
    const atB = await tokenRequest(b.url, bearerParams(first));
    assert.equal(atB.status, 200, atB.text);
    assert.equal(
      (await verified({ url: b.url, bundlePem: b.bundlePem(), trustDomain: TD }, atB.json.access_token, issuer))
        .subject,
      w.id,
    );
    const atA = await tokenRequest(a.url, bearerParams(first));
    assert.equal(atA.json.code, "ERR_OAUTH_ASSERTION_REPLAYED", "the jti cache is shared");
    assert.equal((await tokenRequest(a.url, bearerParams(await sdkAssertion(w, issuer)))).status, 200);
    await serveRequest(b.url, "/v1/identities/revoke", { body: { id: w.id, reason: "test" }, key: apiKey });
    const revoked = await tokenRequest(a.url, bearerParams(await sdkAssertion(w, issuer)));
    assert.equal(revoked.json.code, "ERR_OAUTH_CLIENT_REVOKED", "revoked through B, refused at A at once");
  });
});

async function csr(): Promise<string> {
  return encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
}

const bearerParams = (assertion: string, extra: Record<string, string | undefined> = {}) => ({
  grant_type: "client_credentials",
  client_assertion_type: JWT_BEARER_ASSERTION_TYPE,
  client_assertion: assertion,
  resource: RESOURCE,
  ...extra,
});

/** The token, verified offline from the service's bundle, as a resource server does. */
async function verified(
  s: { url: string; bundlePem: string; trustDomain: string },
  token: string,
  issuer = s.url,
): Promise<AccessToken> {
  const doc = (await serveRequest(s.url, "/.well-known/spiffe/bundle", { ca: s.bundlePem })).json;
  const set = new BundleSet([TrustBundle.parseSpiffe(doc, s.trustDomain)]);
  return verifyAccessToken(token, {
    resource: RESOURCE,
    issuers: [{ issuer, bundles: set, trustDomains: [s.trustDomain] }],
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
