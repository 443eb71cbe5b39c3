/**
 * The local OpenID Provider the people tests and the demo sign in at (examples/local-openid-provider.ts):
 * panva's oidc-provider on loopback, driven headlessly through the real authorization code flow
 * with PKCE. Its tokens must verify the way a relying party verifies a real provider's: keys
 * found through discovery by our IssuerKeys, signatures, and the claims people-policy reads.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createHash, randomBytes } from "node:crypto";
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type JWTVerifyGetKey,
} from "jose";
import { ErrorCodes } from "../src/errors.js";
import { verifyAccessToken } from "../src/oauth/access-token.js";
import { IssuerKeys } from "../src/oauth/issuer-keys.js";
import type { JwsAlgorithm } from "../src/spiffe/keys.js";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { ROOT, rejectsWithCode, runTs } from "./helpers/authority-util.js";

/** jose's key lookup, answered by our discovery: the ID token verifies only with keys IssuerKeys found. */
function keysFrom(keys: IssuerKeys): JWTVerifyGetKey {
  return async (header) => {
    const key = await keys.keyFor(header.kid, header.alg as JwsAlgorithm);
    if (key === undefined) throw new Error(`no key ${header.kid}`);
    return key;
  };
}

describe("local OpenID Provider (oidc-provider on loopback)", () => {
  let op: LocalOpenIdProvider;
  let keys: IssuerKeys;
  before(async () => {
    op = await startLocalOpenIdProvider();
    keys = new IssuerKeys({ issuer: op.issuer });
  });
  after(() => op.close());

  it("publishes discovery the way real providers do, and IssuerKeys finds its keys there", async () => {
    assert.match(op.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
    const metadata = await keys.metadata();
    assert.equal(metadata.issuer, op.issuer);
    assert.equal(metadata.jwks_uri, `${op.issuer}/jwks`);
    assert.deepEqual(metadata.code_challenge_methods_supported, ["S256"]);
    assert.ok((metadata.scopes_supported as string[]).includes("groups"));
  });

  it("signs alice in twice: each ID token verifies, carries its own nonce and amr, her email and groups", async () => {
    const first = await op.login({ account: "alice", nonce: "nonce-one", amr: ["pwd"] });
    const second = await op.login({
      account: "alice",
      nonce: "nonce-two",
      amr: ["pwd", "mfa"],
      acr: "urn:example:acr:mfa",
    });
    for (const [login, nonce, amr] of [
      [first, "nonce-one", ["pwd"]],
      [second, "nonce-two", ["pwd", "mfa"]],
    ] as const) {
      const { payload, protectedHeader } = await jwtVerify(login.idToken, keysFrom(keys), {
        issuer: op.issuer,
        audience: op.defaultClientId,
        algorithms: ["ES256"],
      });
      assert.equal(protectedHeader.alg, "ES256");
      assert.equal(payload.sub, "alice");
      assert.equal(payload.nonce, nonce);
      assert.equal(login.nonce, nonce);
      assert.deepEqual(payload.amr, amr);
      assert.equal(payload.email, "alice@example.com");
      assert.equal(payload.email_verified, true);
      assert.deepEqual(payload.groups, ["finance"]);
      assert.equal(payload.azp, op.defaultClientId);
      assert.equal(typeof payload.auth_time, "number");
      assert.deepEqual(login.claims, payload);
    }
    assert.equal(first.claims.acr, undefined);
    assert.equal(second.claims.acr, "urn:example:acr:mfa");
    assert.notEqual(first.idToken, second.idToken);
  });

  it("bob is someone else: his own subject and groups, no amr when the login page reported none", async () => {
    const bob = await op.login({ account: "bob" });
    const { payload } = await jwtVerify(bob.idToken, keysFrom(keys), {
      issuer: op.issuer,
      audience: op.defaultClientId,
    });
    assert.equal(payload.sub, "bob");
    assert.equal(payload.email, "bob@example.com");
    assert.deepEqual(payload.groups, ["support"]);
    assert.equal(payload.amr, undefined);
    assert.equal(typeof bob.nonce, "string");
    assert.equal(payload.nonce, bob.nonce);
  });

  it("an unknown person is refused at the login page (alice, above, is the passing twin)", async () => {
    await assert.rejects(op.login({ account: "mallory" }), /access_denied/);
  });

  it("with a resource indicator the access token is an RFC 9068 JWT for that resource; without, it is opaque", async () => {
    const resource = "https://api.example.test/mcp";
    const login = await op.login({ account: "alice", resource, scope: "openid email groups read offline_access" });
    assert.equal(decodeProtectedHeader(login.accessToken).typ, "at+jwt");
    const at = await verifyAccessToken(login.accessToken, { resource, issuers: [{ issuer: op.issuer, keys }] });
    assert.equal(at.subject, "alice");
    assert.deepEqual(at.audience, [resource]);
    assert.equal(at.clientId, op.defaultClientId);
    assert.deepEqual(at.scopes, ["read"]);
    assert.ok(login.expiresIn > 0);
    assert.equal(typeof login.refreshToken, "string");
    // The same token is not for another resource.
    await rejectsWithCode(
      () =>
        verifyAccessToken(login.accessToken, {
          resource: "https://other.example.test",
          issuers: [{ issuer: op.issuer, keys }],
        }),
      ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
    );
    const plain = await op.login({ account: "alice" });
    assert.equal(plain.accessToken.split(".").length, 1);
    assert.equal(plain.refreshToken, undefined);
  });

  it("a confidential client added at runtime, its ID tokens in RS256: authorize() returns its redirect, the code redeems with its secret", async () => {
    const redirectUri = "http://127.0.0.1:9/rp/callback";
    // Metadata oidc-provider refuses is refused when added, not at the first login.
    await assert.rejects(
      op.addClient({ client_id: "rp-confidential", redirect_uris: [redirectUri] }),
      /invalid_client_metadata: client_secret is mandatory/,
    );
    await op.addClient({
      client_id: "rp-confidential",
      client_secret: "a-long-enough-client-secret-for-tests",
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: "client_secret_basic",
      id_token_signed_response_alg: "RS256",
    });
    const login = await op.login({ account: "bob", clientId: "rp-confidential", amr: ["pwd", "otp"] });
    assert.equal(decodeProtectedHeader(login.idToken).alg, "RS256");
    const jwks = createRemoteJWKSet(new URL((await keys.metadata()).jwks_uri));
    const { payload } = await jwtVerify(login.idToken, jwks, { issuer: op.issuer, audience: "rp-confidential" });
    assert.equal(payload.sub, "bob");
    assert.equal(payload.azp, "rp-confidential");
    // A relying party's own request: the browser half only.
    const auth = new URL("/auth", op.issuer);
    auth.search = new URLSearchParams({
      client_id: "rp-confidential",
      redirect_uri: redirectUri,
      response_type: "code",
      scope: "openid email",
      state: "s1",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      code_challenge_method: "S256",
    }).toString();
    const back = await op.authorize(auth, { account: "alice" });
    assert.equal(back.origin + back.pathname, redirectUri);
    assert.equal(back.searchParams.get("state"), "s1");
    assert.equal(back.searchParams.get("iss"), op.issuer);
    assert.match(back.searchParams.get("code") ?? "", /^[\w-]{20,}$/);
    // A client not registered is not let in.
    await assert.rejects(
      op.authorize(auth.href.replace("rp-confidential", "rp-unknown"), { account: "alice" }),
      /expected a redirect|invalid_client/,
    );
  });
  it("a relying party authenticating with private_key_jwt (as aztp serve will) redeems its code with a signed assertion", async () => {
    const { privateKey, publicKey } = await generateKeyPair("ES256");
    const redirectUri = "http://127.0.0.1:9/oauth/callback";
    await op.addClient({
      client_id: "rp-pkjwt",
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: "private_key_jwt",
      token_endpoint_auth_signing_alg: "ES256",
      jwks: { keys: [{ ...(await exportJWK(publicKey)), kid: "rp-1", alg: "ES256", use: "sig" }] },
    });
    const verifier = randomBytes(32).toString("base64url");
    const auth = new URL("/auth", op.issuer);
    auth.search = new URLSearchParams({
      client_id: "rp-pkjwt",
      redirect_uri: redirectUri,
      response_type: "code",
      scope: "openid email groups",
      state: "s2",
      nonce: "n2",
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
    }).toString();
    const back = await op.authorize(auth, { account: "alice", amr: ["pwd", "mfa"] });
    const redeem = async (signedBy: Parameters<SignJWT["sign"]>[0]) =>
      fetch(`${op.issuer}/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code: back.searchParams.get("code") ?? "",
          redirect_uri: redirectUri,
          code_verifier: verifier,
          client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
          client_assertion: await new SignJWT({})
            .setProtectedHeader({ alg: "ES256", kid: "rp-1" })
            .setIssuer("rp-pkjwt")
            .setSubject("rp-pkjwt")
            .setAudience(op.issuer)
            .setJti(randomBytes(8).toString("hex"))
            .setIssuedAt()
            .setExpirationTime("1m")
            .sign(signedBy),
        }),
      });
    // Another key's assertion is refused first (the code stays unused), then the client's own redeems it.
    const refused = await redeem((await generateKeyPair("ES256")).privateKey);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: string }).error, "invalid_client");
    const res = await redeem(privateKey);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { id_token: string };
    const { payload } = await jwtVerify(body.id_token, keysFrom(keys), { issuer: op.issuer, audience: "rp-pkjwt" });
    assert.equal(payload.nonce, "n2");
    assert.deepEqual(payload.amr, ["pwd", "mfa"]);
  });
});

describe("local OpenID Provider, signing in RS256 throughout", () => {
  it("ID tokens and JWT access tokens in RS256 verify through discovery", async () => {
    const op = await startLocalOpenIdProvider({ signingAlg: "RS256", idTokenTtlSeconds: 120 });
    try {
      const keys = new IssuerKeys({ issuer: op.issuer });
      const login = await op.login({ account: "alice", resource: "https://api.example.test/" });
      const { payload, protectedHeader } = await jwtVerify(login.idToken, keysFrom(keys), {
        issuer: op.issuer,
        audience: op.defaultClientId,
        algorithms: ["RS256"],
      });
      assert.equal(protectedHeader.alg, "RS256");
      assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 120);
      const at = await verifyAccessToken(login.accessToken, {
        resource: "https://api.example.test/",
        issuers: [{ issuer: op.issuer, keys }],
      });
      assert.equal(at.header.alg, "RS256");
    } finally {
      await op.close();
    }
  });
});

describe("local OpenID Provider, in a process of its own", () => {
  it("close() leaves nothing running (the process exits by itself), and nothing is printed on stderr", async () => {
    const r = await runTs(join(ROOT, "test/helpers/local-op-login.ts"), [], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /^signed in alice at http:\/\/127\.0\.0\.1:\d+\n$/);
    assert.equal(r.stderr, "");
  });
});
