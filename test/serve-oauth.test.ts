/**
 * `aztp serve` as an OAuth 2.1 authorization server for workloads, driven by unmodified clients:
 * the MCP SDK's own discovery and token exchange (`discoverAuthorizationServerMetadata`,
 * `fetchToken` with `PrivateKeyJwtProvider` and `StaticPrivateKeyJwtProvider`), jose's remote
 * JWKS, and raw form posts as the README shows them. Every refusal has its passing twin.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { discoverAuthorizationServerMetadata } from "@modelcontextprotocol/sdk/client/auth.js";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { client, serveRequest, startServe } from "./helpers/serve-util.js";

describe("aztp serve: OAuth authorization server metadata and keys", () => {
  it("the MCP SDK discovers the metadata (RFC 8414) and jose verifies a minted token against the JWKS", async (t) => {
    const s = await startServe(t, { insecureHttp: true, scopesSupported: ["tools:read", "tools:call"] });
    const metadata = await discoverAuthorizationServerMetadata(s.url);
    assert.ok(metadata !== undefined);
    assert.equal(metadata.issuer, s.url);
    assert.equal(metadata.token_endpoint, `${s.url}/oauth/token`);
    assert.deepEqual(metadata.grant_types_supported, ["client_credentials"]);
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

async function csr(): Promise<string> {
  return encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
}
