/**
 * RFC 9068 access tokens: what the embedded authority mints, and the one verifier every resource
 * server uses. Each attack has a passing twin: the same token, unaltered, verifies.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { ErrorCodes } from "../src/errors.js";
import {
  ACCESS_TOKEN_TYP,
  missingScopes,
  mintAccessToken,
  verifyAccessToken,
  type TrustedIssuer,
} from "../src/oauth/access-token.js";
import { discoveryUrls, IssuerKeys } from "../src/oauth/issuer-keys.js";
import { forge, newDomain, newWorld, type World } from "./helpers/invocation-fixtures.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import { signCompact } from "../src/spiffe/jws.js";

const ISSUER = "https://auth.example.test";
const RESOURCE = "https://tools.example.test/mcp";

describe("access tokens of the embedded authority", () => {
  let w: World;
  let issuers: TrustedIssuer[];
  before(async () => {
    w = await newWorld();
    issuers = [{ issuer: ISSUER, bundles: w.authority.bundleSet(), trustDomains: [w.authority.defaultTrustDomain] }];
  });
  after(() => w.close());

  const verify = (token: string, extra: Partial<Parameters<typeof verifyAccessToken>[1]> = {}) =>
    verifyAccessToken(token, {
      resource: RESOURCE,
      issuers,
      isRevoked: (id) => w.authority.isRevoked(id),
      ...extra,
    });
  const mint = (id: string, o: Partial<Parameters<World["authority"]["mintAccessToken"]>[1]> = {}) =>
    w.authority.mintAccessToken(id, { issuer: ISSUER, resource: RESOURCE, scopes: ["mcp:tools"], ...o });

  it("a minted token verifies offline from the bundle, with its claims as RFC 9068 names them", async () => {
    const token = mint(w.caller.spiffeId.toString());
    const at = await verify(token);
    assert.equal(at.subject, w.caller.spiffeId.toString());
    assert.equal(at.clientId, w.caller.spiffeId.toString());
    assert.equal(at.spiffeId?.toString(), w.caller.spiffeId.toString());
    assert.deepEqual(at.audience, [RESOURCE]);
    assert.deepEqual(at.scopes, ["mcp:tools"]);
    assert.equal(at.header.typ, ACCESS_TOKEN_TYP);
    assert.ok(at.jti.length > 0);
    assert.ok(at.expiry.getTime() - at.issuedAt.getTime() <= 300_000);
    assert.deepEqual(missingScopes(at, ["mcp:tools"]), []);
    assert.deepEqual(missingScopes(at, ["mcp:tools", "admin"]), ["admin"]);
  });

  const attacks: Array<{ name: string; code: string; token: () => string; options?: () => object }> = [
    {
      name: "another resource (aud)",
      code: ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
      token: () => mint(w.caller.spiffeId.toString(), { resource: "https://other.example.test/mcp" }),
    },
    {
      name: "expired",
      code: ErrorCodes.OAUTH_TOKEN_EXPIRED,
      token: () => mint(w.caller.spiffeId.toString(), { now: new Date(Date.now() - 400_000) }),
    },
    {
      name: "issued in the future",
      code: ErrorCodes.OAUTH_TOKEN_NOT_YET_VALID,
      token: () => mint(w.caller.spiffeId.toString(), { now: new Date(Date.now() + 120_000) }),
    },
    {
      name: "an issuer the resource does not trust",
      code: ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED,
      token: () => mint(w.caller.spiffeId.toString(), { issuer: "https://evil.example.test" }),
    },
    {
      name: "alg none",
      code: ErrorCodes.OAUTH_TOKEN_ALG_NOT_ALLOWED,
      token: () => {
        const [, payload] = mint(w.caller.spiffeId.toString()).split(".");
        return `${Buffer.from(JSON.stringify({ alg: "none", typ: "at+jwt" })).toString("base64url")}.${payload}.`;
      },
    },
    {
      name: "HS256 keyed with the bundle's public key (algorithm confusion)",
      code: ErrorCodes.OAUTH_TOKEN_ALG_NOT_ALLOWED,
      token: () => {
        const kid = w.authority.bundle().jwtAuthorities.keys().next().value as string;
        const [, payload] = mint(w.caller.spiffeId.toString()).split(".");
        const claims = JSON.parse(Buffer.from(payload!, "base64url").toString()) as object;
        return forge({ alg: "HS256", typ: "at+jwt", kid }, claims, () => Buffer.alloc(32));
      },
    },
    {
      name: "a JWT-SVID is not an access token (typ)",
      code: ErrorCodes.OAUTH_TOKEN_TYP_INVALID,
      token: () => w.authority.mintJwtSvid(w.caller.spiffeId.toString(), RESOURCE),
    },
    {
      name: "tampered claims (scope widened)",
      code: ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID,
      token: () => {
        const [h, p, s] = mint(w.caller.spiffeId.toString()).split(".");
        const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
        claims.scope = "mcp:tools admin";
        return `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
      },
    },
    {
      name: "signed by a key the bundle does not hold",
      code: ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN,
      token: () => {
        const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
        const now = Math.floor(Date.now() / 1000);
        return signCompact(
          { typ: "at+jwt", kid: "not-in-bundle" },
          {
            iss: ISSUER,
            sub: w.caller.spiffeId.toString(),
            client_id: w.caller.spiffeId.toString(),
            aud: RESOURCE,
            iat: now,
            exp: now + 60,
            jti: "x",
          },
          privateKey,
        );
      },
    },
    {
      name: "no jti",
      code: ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING,
      token: () => {
        const jwk = w.authority as unknown as { ca(td: string): { jwtKey: KeyObject; jwtKid: string } };
        const ca = jwk.ca(w.authority.defaultTrustDomain);
        const now = Math.floor(Date.now() / 1000);
        return signCompact(
          { typ: "at+jwt", kid: ca.jwtKid },
          {
            iss: ISSUER,
            sub: w.caller.spiffeId.toString(),
            client_id: w.caller.spiffeId.toString(),
            aud: RESOURCE,
            iat: now,
            exp: now + 60,
          },
          ca.jwtKey,
        );
      },
    },
    {
      name: "garbage",
      code: ErrorCodes.OAUTH_TOKEN_MALFORMED,
      token: () => "not.a.token",
    },
  ];
  for (const a of attacks) {
    it(`refuses ${a.name}, and its twin passes`, async () => {
      await rejectsWithCode(() => verify(a.token()), a.code, a.name);
      await verify(mint(w.caller.spiffeId.toString()));
    });
  }

  it("another trust domain's key cannot mint for this issuer, though the resource holds its bundle", async () => {
    const other = await newDomain("other.test");
    try {
      const o = await other.identity("intruder");
      const token = other.authority.mintAccessToken(o.spiffeId.toString(), { issuer: ISSUER, resource: RESOURCE });
      const both = w.authority.bundleSet();
      both.add(other.authority.bundle());
      await rejectsWithCode(
        () =>
          verify(token, {
            issuers: [{ issuer: ISSUER, bundles: both, trustDomains: [w.authority.defaultTrustDomain] }],
          }),
        ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED,
      );
      // Twin: an issuer configured to speak for that trust domain accepts it.
      const at = await verify(token, {
        issuers: [{ issuer: ISSUER, bundles: both, trustDomains: ["other.test"] }],
      });
      assert.equal(at.spiffeId?.trustDomain, "other.test");
    } finally {
      other.client.close();
    }
  });

  it("a revoked workload gets no token, and its live tokens are refused", async () => {
    const victim = await w.identity("victim");
    const live = mint(victim.spiffeId.toString());
    await verify(live);
    await w.authority.revoke(victim.spiffeId.toString(), "compromised");
    await rejectsWithCode(() => verify(live), ErrorCodes.OAUTH_TOKEN_REVOKED);
    assert.throws(() => mint(victim.spiffeId.toString()), { code: ErrorCodes.IDENTITY_REVOKED });
  });

  it("refuses a lifetime past the maximum and scopes that are not scope tokens", () => {
    assert.throws(() => mint(w.caller.spiffeId.toString(), { ttlSeconds: 7200 }), {
      code: ErrorCodes.ARGUMENT_INVALID,
    });
    assert.throws(() => mint(w.caller.spiffeId.toString(), { scopes: ["a b"] }), { code: ErrorCodes.ARGUMENT_INVALID });
  });
});

describe("an external issuer's keys (discovery, JWKS)", () => {
  let server: Server;
  let base: string;
  let key: Parameters<SignJWT["sign"]>[0];
  let publicJwk: Record<string, unknown>;
  let jwksFetches = 0;
  let metadataIssuer: string | undefined;
  before(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    key = pair.privateKey;
    publicJwk = { ...(await exportJWK(pair.publicKey)), kid: "k1", use: "sig", alg: "ES256" };
    server = createServer((req, res) => {
      if (req.url === "/.well-known/oauth-authorization-server/tenant") {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ issuer: metadataIssuer ?? `${base}/tenant`, jwks_uri: `${base}/jwks` }));
      } else if (req.url === "/jwks") {
        jwksFetches++;
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ keys: [publicJwk] }));
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", typ: "at+jwt", kid: "k1", ...header })
      .setIssuedAt()
      .setExpirationTime("2m")
      .sign(key);

  it("discovers the metadata with the path inserted, and verifies a token signed with the issuer's key", async () => {
    assert.deepEqual(discoveryUrls("https://a.test/tenant"), [
      "https://a.test/.well-known/oauth-authorization-server/tenant",
      "https://a.test/.well-known/openid-configuration/tenant",
      "https://a.test/tenant/.well-known/openid-configuration",
    ]);
    const issuer = `${base}/tenant`;
    const keys = new IssuerKeys({ issuer });
    const token = await sign({
      iss: issuer,
      sub: "user-42",
      client_id: "app",
      aud: RESOURCE,
      jti: "j1",
      scope: "read",
    });
    const at = await verifyAccessToken(token, { resource: RESOURCE, issuers: [{ issuer, keys }] });
    assert.equal(at.subject, "user-42");
    assert.equal(at.spiffeId, undefined);
    // An unknown kid refetches at most once per cooldown: no hammering.
    const before = jwksFetches;
    const unknown = await sign({ iss: issuer, sub: "u", client_id: "a", aud: RESOURCE, jti: "j2" }, { kid: "k9" });
    await rejectsWithCode(
      () => verifyAccessToken(unknown, { resource: RESOURCE, issuers: [{ issuer, keys }] }),
      ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN,
    );
    await rejectsWithCode(
      () => verifyAccessToken(unknown, { resource: RESOURCE, issuers: [{ issuer, keys }] }),
      ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN,
    );
    assert.equal(jwksFetches, before);
  });

  it("refuses metadata whose issuer is another than the one configured", async () => {
    metadataIssuer = "https://someone-else.test";
    try {
      const issuer = `${base}/tenant`;
      const keys = new IssuerKeys({ issuer });
      const token = await sign({ iss: issuer, sub: "u", client_id: "a", aud: RESOURCE, jti: "j3" });
      await rejectsWithCode(
        () => verifyAccessToken(token, { resource: RESOURCE, issuers: [{ issuer, keys }] }),
        ErrorCodes.OAUTH_ISSUER_METADATA_INVALID,
      );
    } finally {
      metadataIssuer = undefined;
    }
  });

  it("an unreachable issuer is ERR_OAUTH_ISSUER_UNAVAILABLE; plain http off loopback is refused", async () => {
    const keys = new IssuerKeys({ issuer: `${base}/nowhere` });
    await rejectsWithCode(() => keys.keyFor("k1", "ES256"), ErrorCodes.OAUTH_ISSUER_UNAVAILABLE);
    assert.throws(() => new IssuerKeys({ issuer: "http://auth.example.test" }), {
      code: ErrorCodes.OAUTH_ISSUER_UNAVAILABLE,
    });
    assert.throws(() => new IssuerKeys({ issuer: "https://auth.example.test/?q=1" }), {
      code: ErrorCodes.ARGUMENT_INVALID,
    });
  });
});
