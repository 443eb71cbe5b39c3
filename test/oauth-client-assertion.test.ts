/**
 * Client assertions (oauth/client-assertion.ts): a workload authenticating to a token endpoint
 * with its SVID. Assertions are signed here by jose exactly as the MCP SDK's
 * PrivateKeyJwtProvider signs them ({alg, typ: "JWT"}, no kid, no x5c, iss = sub = client_id),
 * by signClientAssertion, and JWT-SVIDs minted by the authority. Every attack has its passing
 * twin: the same assertion, unaltered, authenticates.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SignJWT } from "jose";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { ErrorCodes } from "../src/errors.js";
import { MemoryReplayCache } from "../src/invocation/replay.js";
import {
  ClientAssertionVerifier,
  JWT_BEARER_ASSERTION_TYPE,
  JWT_SPIFFE_ASSERTION_TYPE,
  signClientAssertion,
  spendClientAssertion,
  type ClientAssertionInput,
} from "../src/oauth/client-assertion.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { rejectsWithCode } from "./helpers/authority-util.js";

const ISSUER = "https://aztp.example.test";

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");
/** A compact JWS with exactly this header and payload, signed by `sign`. */
function forge(header: object, payload: object, sign: (input: Buffer) => Buffer | string): string {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = sign(Buffer.from(input, "ascii"));
  return `${input}.${typeof sig === "string" ? sig : sig.toString("base64url")}`;
}
const TOKEN_URL = `${ISSUER}/oauth/token`;

interface Client {
  id: string;
  key: KeyObject;
  x5c: string[];
  serial: string;
}

describe("client assertions", () => {
  const homes: string[] = [];
  let authority: EmbeddedAuthority;
  let other: EmbeddedAuthority; // another trust domain
  let impostor: EmbeddedAuthority; // another authority calling itself the same trust domain
  let client: Client;
  let verifier: ClientAssertionVerifier;

  const home = (): string => {
    const h = mkdtempSync(join(tmpdir(), "aztp-assert-"));
    homes.push(h);
    return h;
  };
  async function issue(a: EmbeddedAuthority, name: string): Promise<Client> {
    const wk = await generateWorkloadKey();
    const { record, svid } = await a.issueIdentity({ name }, wk.csr);
    return {
      id: record.spiffeId,
      key: wk.privateKey,
      x5c: Certificate.parsePem(svid.chainPem).map((c) => c.der.toString("base64")),
      serial: svid.serial,
    };
  }
  const verifierOf = (a: EmbeddedAuthority): ClientAssertionVerifier =>
    new ClientAssertionVerifier({
      bundles: a,
      trustDomains: () => a.trustDomains,
      clients: { client: (id) => a.heldRecord(id), isRevoked: (id, serial) => a.isRevoked(id, serial) },
      audiences: () => [ISSUER, TOKEN_URL],
    });

  before(async () => {
    authority = await EmbeddedAuthority.open(home(), { create: true, trustDomain: "as.test" });
    other = await EmbeddedAuthority.open(home(), { create: true, trustDomain: "other.test" });
    impostor = await EmbeddedAuthority.open(home(), { create: true, trustDomain: "as.test" });
    client = await issue(authority, "client");
    verifier = verifierOf(authority);
  });
  after(() => {
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  });

  /** What the MCP SDK's createPrivateKeyJwtAuth signs, claims overridable. */
  async function sdkAssertion(
    c: Client,
    claims: Record<string, unknown> = {},
    header: Record<string, unknown> = {},
  ): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      iss: c.id,
      sub: c.id,
      aud: ISSUER,
      iat: now,
      exp: now + 300,
      jti: `j-${Math.random()}`,
      ...claims,
    })
      .setProtectedHeader({ alg: "ES256", typ: "JWT", ...header })
      .sign(c.key);
  }
  const bearer = (assertion: string, clientId?: string): ClientAssertionInput => ({
    assertionType: JWT_BEARER_ASSERTION_TYPE,
    assertion,
    ...(clientId !== undefined ? { clientId } : {}),
  });
  const refused = (input: ClientAssertionInput, code: string, what: string, v = verifier) =>
    rejectsWithCode(() => v.verify(input), code, what);

  it("private_key_jwt as the MCP SDK signs it: no kid, no x5c, found by the subject's recorded SVID key", async () => {
    const a = verifier.verify(bearer(await sdkAssertion(client), client.id));
    assert.equal(a.clientId.toString(), client.id);
    assert.equal(a.method, "private_key_jwt");
    // RFC 7523's aud form, the token endpoint, is accepted as well as the issuer.
    assert.equal(verifier.verify(bearer(await sdkAssertion(client, { aud: TOKEN_URL }))).method, "private_key_jwt");
    assert.equal(verifier.verify(bearer(await sdkAssertion(client, { aud: [ISSUER] }))).method, "private_key_jwt");
  });

  it("signClientAssertion, with its SVID chain in x5c or without; and a JWT-SVID under either assertion type", () => {
    const withChain = signClientAssertion({ clientId: client.id, audience: ISSUER, key: client.key, x5c: client.x5c });
    assert.equal(verifier.verify(bearer(withChain)).method, "x5c");
    const plain = signClientAssertion({ clientId: client.id, audience: TOKEN_URL, key: client.key });
    assert.equal(verifier.verify(bearer(plain)).method, "private_key_jwt");
    const svid = authority.mintJwtSvid(client.id, ISSUER);
    assert.equal(verifier.verify({ assertionType: JWT_SPIFFE_ASSERTION_TYPE, assertion: svid }).method, "jwt_svid");
    assert.equal(verifier.verify(bearer(authority.mintJwtSvid(client.id, TOKEN_URL))).method, "jwt_svid");
  });

  it("a renewal at half-life keeps the previous SVID's key good while that SVID lives", async () => {
    const c = await issue(authority, "rotating");
    const wk = await generateWorkloadKey();
    await authority.renewSvid(c.id, wk.csr);
    const renewed = { ...c, key: wk.privateKey };
    assert.equal(verifier.verify(bearer(await sdkAssertion(renewed))).method, "private_key_jwt");
    assert.equal(verifier.verify(bearer(await sdkAssertion(c))).method, "private_key_jwt", "the previous key too");
  });

  it("refuses an assertion addressed elsewhere, or to several audiences (passing twin: the same claims, aud = the issuer)", async () => {
    await refused(
      bearer(await sdkAssertion(client, { aud: "https://elsewhere.test" })),
      "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
      "aud",
    );
    await refused(
      bearer(await sdkAssertion(client, { aud: [ISSUER, "https://elsewhere.test"] })),
      "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
      "two audiences",
    );
    await refused(
      bearer(authority.mintJwtSvid(client.id, "https://elsewhere.test")),
      "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
      "JWT-SVID aud",
    );
    await refused(
      bearer(authority.mintJwtSvid(client.id, [ISSUER, TOKEN_URL])),
      "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
      "JWT-SVID, two audiences",
    );
    verifier.verify(bearer(await sdkAssertion(client, { aud: ISSUER })));
  });

  it("refuses an expired assertion, one living too long, one not yet valid (passing twin: now, 300 s)", async () => {
    const now = Math.floor(Date.now() / 1000);
    const e = await refused(
      bearer(await sdkAssertion(client, { iat: now - 400, exp: now - 100 })),
      "ERR_OAUTH_ASSERTION_EXPIRED",
      "expired",
    );
    assert.equal(e.rule, "expired");
    const long = await refused(
      bearer(await sdkAssertion(client, { iat: now, exp: now + 3600 })),
      "ERR_OAUTH_ASSERTION_EXPIRED",
      "an hour",
    );
    assert.equal(long.rule, "lifetime");
    const { iat: _iat, ...noIat } = { iat: 0, exp: now + 3600 };
    await refused(
      bearer(await sdkAssertion(client, { ...noIat, iat: undefined })),
      "ERR_OAUTH_ASSERTION_EXPIRED",
      "an hour, no iat",
    );
    await refused(bearer(await sdkAssertion(client, { nbf: now + 600 })), "ERR_OAUTH_ASSERTION_NOT_YET_VALID", "nbf");
    await refused(
      bearer(await sdkAssertion(client, { exp: undefined })),
      "ERR_OAUTH_ASSERTION_CLAIM_MISSING",
      "no exp",
    );
    verifier.verify(bearer(await sdkAssertion(client, { iat: now, exp: now + 300 })));
  });

  it("refuses alg none, and HS256 keyed with the public key (passing twin: ES256 with the SVID key)", async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: client.id, sub: client.id, aud: ISSUER, iat: now, exp: now + 60, jti: "n1" };
    const none = forge({ alg: "none", typ: "JWT" }, claims, () => "");
    await refused(bearer(none), "ERR_OAUTH_ASSERTION_ALG_NOT_ALLOWED", "alg none");
    const spki = client.key.export({ format: "jwk" }) as { x: string };
    const hs = forge({ alg: "HS256", typ: "JWT" }, claims, (input) =>
      createHmac("sha256", spki.x).update(input).digest(),
    );
    await refused(bearer(hs), "ERR_OAUTH_ASSERTION_ALG_NOT_ALLOWED", "HS256 with the public key");
    verifier.verify(bearer(await sdkAssertion(client, claims)));
  });

  it("refuses a key that is not the client's, another issuer's JWT-SVID, another trust domain's (passing twin: the client's own)", async () => {
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const e = await refused(
      bearer(await sdkAssertion({ ...client, key: stranger })),
      "ERR_OAUTH_ASSERTION_SIGNATURE_INVALID",
      "a key of its own",
    );
    assert.equal(e.rule, "signature");
    const twin = await issue(impostor, "client"); // same SPIFFE ID, another authority's CA and JWT key
    assert.equal(twin.id, client.id);
    await refused(bearer(await sdkAssertion(twin)), "ERR_OAUTH_ASSERTION_SIGNATURE_INVALID", "the impostor's key");
    await refused(
      bearer(signClientAssertion({ clientId: twin.id, audience: ISSUER, key: twin.key, x5c: twin.x5c })),
      "ERR_OAUTH_ASSERTION_UNTRUSTED",
      "the impostor's chain",
    );
    await refused(
      { assertionType: JWT_SPIFFE_ASSERTION_TYPE, assertion: impostor.mintJwtSvid(client.id, ISSUER) },
      "ERR_OAUTH_ASSERTION_UNTRUSTED",
      "the impostor's JWT-SVID",
    );
    const foreign = await issue(other, "client");
    const f = await refused(
      { assertionType: JWT_SPIFFE_ASSERTION_TYPE, assertion: other.mintJwtSvid(foreign.id, ISSUER) },
      "ERR_OAUTH_ASSERTION_UNTRUSTED",
      "a JWT-SVID of another trust domain",
    );
    assert.equal(f.rule, "trust_domain");
    await refused(
      bearer(await sdkAssertion(foreign)),
      "ERR_OAUTH_ASSERTION_UNTRUSTED",
      "another trust domain's private_key_jwt",
    );
    verifier.verify({ assertionType: JWT_SPIFFE_ASSERTION_TYPE, assertion: authority.mintJwtSvid(client.id, ISSUER) });
  });

  it("the SPIFFE ID is the client_id: a client_id naming another, an iss that is not the subject, no jti (passing twin: all consistent)", async () => {
    const someone = await issue(authority, "someone");
    await refused(bearer(await sdkAssertion(client), someone.id), "ERR_OAUTH_CLIENT_ID_MISMATCH", "client_id");
    await refused(
      bearer(await sdkAssertion(client), "not-a-spiffe-id"),
      "ERR_OAUTH_CLIENT_ID_MISMATCH",
      "client_id not an ID",
    );
    await refused(bearer(await sdkAssertion(client, { iss: someone.id })), "ERR_OAUTH_ASSERTION_CLAIM_INVALID", "iss");
    await refused(
      bearer(await sdkAssertion(client, { iss: undefined })),
      "ERR_OAUTH_ASSERTION_CLAIM_MISSING",
      "no iss",
    );
    await refused(
      bearer(await sdkAssertion(client, { sub: "https://not-spiffe" })),
      "ERR_OAUTH_ASSERTION_CLAIM_INVALID",
      "sub",
    );
    await refused(
      bearer(await sdkAssertion(client, { jti: undefined })),
      "ERR_OAUTH_ASSERTION_CLAIM_MISSING",
      "no jti",
    );
    await refused(
      bearer(await sdkAssertion(client, {}, { typ: "at+jwt" })),
      "ERR_OAUTH_ASSERTION_CLAIM_INVALID",
      "an access token's typ",
    );
    const ghostKey = await generateWorkloadKey();
    const ghost = { ...client, id: "spiffe://as.test/workload/production/node/ghost", key: ghostKey.privateKey };
    await refused(bearer(await sdkAssertion(ghost)), "ERR_OAUTH_CLIENT_UNKNOWN", "no such identity");
    // Aztp IDs name the same client.
    verifier.verify(bearer(await sdkAssertion(client), client.id.replace("spiffe://", "aztp://")));
  });

  it("a revoked client, or a revoked SVID's key, authenticates no more (passing twin: before the revocation)", async () => {
    const c = await issue(authority, "to-revoke");
    verifier.verify(bearer(await sdkAssertion(c)));
    const svid = authority.mintJwtSvid(c.id, ISSUER);
    await authority.revoke(c.id, "test");
    await refused(bearer(await sdkAssertion(c)), "ERR_OAUTH_CLIENT_REVOKED", "revoked: private_key_jwt");
    await refused(
      bearer(signClientAssertion({ clientId: c.id, audience: ISSUER, key: c.key, x5c: c.x5c })),
      "ERR_OAUTH_CLIENT_REVOKED",
      "revoked: x5c",
    );
    await refused(bearer(svid), "ERR_OAUTH_CLIENT_REVOKED", "revoked: a JWT-SVID minted before");
    // Reissued: the identity is back, the old SVID's key is not (its serial stays revoked).
    await authority.reissue(c.id);
    await refused(bearer(await sdkAssertion(c)), "ERR_OAUTH_CLIENT_REVOKED", "the old SVID's key after a reissue");
    const wk = await generateWorkloadKey();
    await authority.renewSvid(c.id, wk.csr);
    verifier.verify(bearer(await sdkAssertion({ ...c, key: wk.privateKey })));
  });

  it("an assertion is spent once (passing twin: its first use)", async () => {
    const replay = new MemoryReplayCache();
    const assertion = await sdkAssertion(client);
    await spendClientAssertion(verifier.verify(bearer(assertion)), replay);
    const e = await rejectsWithCode(
      async () => spendClientAssertion(verifier.verify(bearer(assertion)), replay),
      "ERR_OAUTH_ASSERTION_REPLAYED",
    );
    assert.equal(e.rule, "jti");
    // A JWT-SVID too: this authority's carry a jti.
    const svid = authority.mintJwtSvid(client.id, ISSUER);
    await spendClientAssertion(verifier.verify(bearer(svid)), replay);
    await rejectsWithCode(
      async () => spendClientAssertion(verifier.verify(bearer(svid)), replay),
      "ERR_OAUTH_ASSERTION_REPLAYED",
    );
  });

  it("the request's form: no assertion, half of one, an unknown type (passing twin: both parameters, jwt-bearer)", async () => {
    const assertion = await sdkAssertion(client);
    await refused({}, ErrorCodes.OAUTH_CLIENT_AUTH_MISSING, "nothing");
    await refused({ assertion }, ErrorCodes.OAUTH_REQUEST_INVALID, "no type");
    await refused({ assertionType: JWT_BEARER_ASSERTION_TYPE }, ErrorCodes.OAUTH_REQUEST_INVALID, "no assertion");
    await refused(
      { assertionType: "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", assertion },
      ErrorCodes.OAUTH_ASSERTION_TYPE_UNSUPPORTED,
      "saml",
    );
    await refused(bearer("not.a.jwt"), ErrorCodes.OAUTH_ASSERTION_MALFORMED, "garbage");
    verifier.verify(bearer(assertion));
  });
});
