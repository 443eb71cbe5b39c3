/**
 * oauth/protected-resource.ts on its own: the RFC 9728 document and well-known paths, the RFC
 * 6750 challenges as the MCP SDK's client parses them, who a bearer token speaks for, and the
 * remembered signatures (a second presentation of a token skips only the signature check:
 * time, revocation and a rotated key are checked again). Each refusal has its passing twin.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import {
  isVerifiedBearer,
  ProtectedResource,
  protectedResourceMetadataPath,
  protectedResourceMetadataUrl,
  type ServingAuthority,
} from "../src/oauth/protected-resource.js";
import type { TrustBundle } from "../src/spiffe/bundle.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import { newWorld, type World } from "./helpers/invocation-fixtures.js";

const RESOURCE = "https://tools.example.test/team/mcp";

/** What the SDK's client reads of a challenge (it takes a Response). */
const parsed = (header: string | undefined) =>
  extractWWWAuthenticateParams(
    new Response(null, { headers: header === undefined ? {} : { "www-authenticate": header } }),
  );

describe("the protected resource's metadata and challenges", () => {
  let w: World;
  let pr: ProtectedResource;
  before(async () => {
    w = await newWorld();
    pr = new ProtectedResource({
      resource: RESOURCE,
      authorizationServers: [w.authority.oauthIssuer],
      authority: w.authority,
      scopes: ["mcp:tools", "mcp:read"],
    });
  });
  after(() => w.close());

  it("RFC 9728 §3.1: the well-known suffix goes before the resource's path; the root form is served too", () => {
    assert.equal(protectedResourceMetadataPath(RESOURCE), "/.well-known/oauth-protected-resource/team/mcp");
    assert.equal(protectedResourceMetadataPath("https://tools.example.test"), "/.well-known/oauth-protected-resource");
    assert.equal(
      protectedResourceMetadataUrl("http://127.0.0.1:8080/mcp/"),
      "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp",
    );
    assert.equal(pr.metadataUrl, "https://tools.example.test/.well-known/oauth-protected-resource/team/mcp");
    assert.deepEqual(pr.metadataPaths("/mcp"), [
      "/.well-known/oauth-protected-resource/team/mcp",
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-protected-resource/mcp",
    ]);
    assert.deepEqual(pr.metadata(), {
      resource: RESOURCE,
      authorization_servers: [w.authority.oauthIssuer],
      scopes_supported: ["mcp:tools", "mcp:read"],
      bearer_methods_supported: ["header"],
    });
  });

  it("challenges: none for no credential, invalid_token, insufficient_scope; 503 when the token cannot be checked", () => {
    const none = pr.challenge();
    assert.equal(none.status, 401);
    assert.equal(none.error.code, ErrorCodes.OAUTH_TOKEN_MISSING);
    assert.deepEqual(parsed(none.header), {
      resourceMetadataUrl: new URL(pr.metadataUrl),
      scope: "mcp:tools mcp:read",
      error: undefined,
    });
    // A description naming `scope=` (or quotes) must not be read as the scope parameter.
    const bad = pr.challenge(new AztpError(ErrorCodes.OAUTH_TOKEN_EXPIRED, 'expired, scope="admin" error=x'));
    assert.equal(bad.status, 401);
    assert.deepEqual(parsed(bad.header), {
      resourceMetadataUrl: new URL(pr.metadataUrl),
      scope: "mcp:tools mcp:read",
      error: "invalid_token",
    });
    const scope = pr.challenge(new AztpError(ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING, "lacks mcp:read"));
    assert.equal(scope.status, 403);
    assert.equal(parsed(scope.header).error, "insufficient_scope");
    assert.equal(parsed(scope.header).scope, "mcp:tools mcp:read");
    const down = pr.challenge(new AztpError(ErrorCodes.OAUTH_ISSUER_UNAVAILABLE, "no route"));
    assert.equal(down.status, 503);
    assert.equal(down.header, undefined);
  });

  it("refuses configurations no client could use", () => {
    for (const [options, what] of [
      [{ resource: "https://x.test/mcp#frag", authorizationServers: ["https://as.test"] }, "a fragment"],
      [{ resource: "urn:x", authorizationServers: ["https://as.test"] }, "not http(s)"],
      [{ resource: RESOURCE, authorizationServers: [] }, "no authorization server"],
      [{ resource: RESOURCE, authorizationServers: ["https://as.test"], scopes: ["a b"] }, "a scope with a space"],
      [{ resource: RESOURCE, authorizationServers: ["not a url"] }, "an issuer that is no URL"],
    ] as const)
      assert.throws(
        () => new ProtectedResource(options),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.ARGUMENT_INVALID,
        what,
      );
    // The twin: the embedded authority's spiffe:// issuer needs the authority that owns it.
    assert.throws(
      () => new ProtectedResource({ resource: RESOURCE, authorizationServers: [w.authority.oauthIssuer] }),
      (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.OAUTH_ISSUER_UNAVAILABLE,
    );
  });

  it("a header of another scheme is no bearer credential; a malformed Bearer one is refused", async () => {
    assert.equal(await pr.authenticate(undefined), undefined);
    assert.equal(await pr.authenticate("Basic dXNlcjpwYXNz"), undefined);
    await rejectsWithCode(() => pr.authenticate("Bearer"), ErrorCodes.OAUTH_TOKEN_MALFORMED);
    await rejectsWithCode(() => pr.authenticate('Bearer a"b'), ErrorCodes.OAUTH_TOKEN_MALFORMED);
    const token = w.authority.mintAccessToken(w.caller.spiffeId, {
      resource: RESOURCE,
      scopes: ["mcp:tools", "mcp:read"],
    });
    const bearer = await pr.authenticate(`bearer   ${token}`);
    assert.equal(bearer?.caller, w.caller.spiffeId);
    assert.equal(bearer?.workload, true);
    assert.ok(isVerifiedBearer(bearer));
    assert.ok(!isVerifiedBearer({ ...bearer }), "a copy is not a verified bearer");
  });

  it("a refused credential says whom its token names, for the record: verified only when a scope alone is short; another issuer's subject stays issuer-qualified", async () => {
    const mint = (o: { scopes?: string[]; issuer?: string } = {}) =>
      w.authority.mintAccessToken(w.caller.spiffeId, { resource: RESOURCE, scopes: ["mcp:tools", "mcp:read"], ...o });
    const jtiOf = (token: string) =>
      (JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString()) as { jti: string }).jti;
    assert.deepEqual(await pr.credential(undefined), { bearer: undefined });
    const expired = mint();
    const short = mint({ scopes: ["mcp:tools"] });
    const foreign = mint({ issuer: "https://idp.example.test" });
    for (const [authorization, now, code, presented, token] of [
      [
        `Bearer ${expired}`,
        new Date(Date.now() + 3_600_000),
        ErrorCodes.OAUTH_TOKEN_EXPIRED,
        { caller: w.caller.spiffeId, verified: false },
        expired,
      ],
      [
        `Bearer ${short}`,
        undefined,
        ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING,
        { caller: w.caller.spiffeId, verified: true },
        short,
      ],
      [
        `Bearer ${foreign}`,
        undefined,
        ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED,
        // Not a workload, even in the record: the subject of an issuer that does not speak for it.
        { caller: `https://idp.example.test#${w.caller.spiffeId}`, verified: false },
        foreign,
      ],
      [
        "Bearer no-token-here",
        undefined,
        ErrorCodes.OAUTH_TOKEN_MALFORMED,
        { caller: "unknown", verified: false },
        undefined,
      ],
    ] as const) {
      const checked = await pr.credential(authorization, now);
      assert.equal(checked.bearer, undefined, code);
      assert.equal(checked.error?.code, code);
      assert.deepEqual(checked.presented, { ...presented, jti: token === undefined ? undefined : jtiOf(token) }, code);
    }
    // The twin: the full scope, in time.
    const ok = await pr.credential(`Bearer ${mint()}`);
    assert.equal(ok.error, undefined);
    assert.ok(isVerifiedBearer(ok.bearer));
  });
});

describe("remembered signatures", () => {
  let w: World;
  before(async () => {
    w = await newWorld();
  });
  after(() => w.close());

  it("a token seen before is still checked for time, revocation and its key", async () => {
    // The authority as the resource sees it, whose bundle a test can swap under it.
    let swapKey: ReturnType<typeof generateKeyPairSync>["publicKey"] | undefined;
    const kid = w.authority.bundle().jwtAuthorities.keys().next().value as string;
    const seen: ServingAuthority = {
      oauthIssuer: w.authority.oauthIssuer,
      trustDomains: w.authority.trustDomains,
      isRevoked: (id) => w.authority.isRevoked(id),
      getBundleForTrustDomain: (td) => {
        const b = w.authority.getBundleForTrustDomain(td);
        if (b === undefined || swapKey === undefined) return b;
        return { jwtAuthorities: new Map([[kid, swapKey]]) } as unknown as TrustBundle;
      },
    };
    const pr = new ProtectedResource({
      resource: RESOURCE,
      authorizationServers: [w.authority.oauthIssuer],
      authority: seen,
    });
    const subject = await w.identity("cache-subject");
    const token = w.authority.mintAccessToken(subject.spiffeId, { resource: RESOURCE, ttlSeconds: 120 });
    assert.ok(await pr.authenticate(`Bearer ${token}`));
    assert.ok(await pr.authenticate(`Bearer ${token}`), "the twin: seen again, accepted");
    await rejectsWithCode(
      () => pr.authenticate(`Bearer ${token}`, new Date(Date.now() + 200_000)),
      ErrorCodes.OAUTH_TOKEN_EXPIRED,
    );
    // The same kid now names another key: the remembered signature does not carry over.
    swapKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
    await rejectsWithCode(() => pr.authenticate(`Bearer ${token}`), ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID);
    swapKey = undefined;
    assert.ok(await pr.authenticate(`Bearer ${token}`), "the twin: the bundle's own key again");
    await w.authority.revoke(subject.spiffeId, "test");
    await rejectsWithCode(() => pr.authenticate(`Bearer ${token}`), ErrorCodes.OAUTH_TOKEN_REVOKED);
  });
});
