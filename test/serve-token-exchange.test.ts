/**
 * `aztp serve`'s token endpoint as an RFC 8693 token exchange (serve/token-exchange-grant.ts):
 * alice signs in at a real OpenID Provider on loopback (oidc-provider), an agent exchanges her
 * ID token for an on-behalf-of token bound to its key, a call signed with it verifies at a callee
 * with the person in it, and a sub-agent extends it. Every refusal answers RFC 6749 error JSON
 * with the library's code, and has its passing twin. The same exchange through the embedded
 * authority (identity.actFor on a home) agrees with the one through serve.
 */
import assert from "node:assert/strict";
import { createPublicKey, X509Certificate, type KeyObject } from "node:crypto";
import { after, before, describe, it, type TestContext } from "node:test";
import { decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { Aztp } from "../src/client/aztp.js";
import type { AgentIdentity } from "../src/client/identity.js";
import type { RemoteAuthority } from "../src/client/remote-authority.js";
import { ErrorCodes } from "../src/errors.js";
import { delegate, MemoryReplayCache, signInvocation, verifyInvocation } from "../src/invocation/index.js";
import { keyThumbprint } from "../src/invocation/on-behalf-of.js";
import { Trust } from "../src/invocation/trust.js";
import type { Authority } from "../src/authority/authority-api.js";
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPE } from "../src/people/token-exchange.js";
import { peekClaims } from "../src/spiffe/jws.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { tempDir } from "./helpers/authority-util.js";
import {
  sdkAssertion,
  serveRequest,
  startServe,
  tokenRequest,
  workload,
  type ServeAnswer,
  type StartedServe,
  type Workload,
} from "./helpers/serve-util.js";

const TD = "people-serve.test";
const ARGS = { amount: 10 };

/** A test context for what the whole file shares: cleanups run in `after`. */
const cleanups: Array<() => unknown> = [];
const shared = { after: (fn: () => unknown) => void cleanups.push(fn) } as unknown as TestContext;

let op: LocalOpenIdProvider;
let rogue: LocalOpenIdProvider;
let s: StartedServe;
let remote: Aztp;
let authority: RemoteAuthority;
let alice: { idToken: string };
let wOrch: Workload;
let wResearch: Workload;
let wStranger: Workload;

async function childWorkload(name: string, parent: string): Promise<Workload> {
  const wk = await generateWorkloadKey();
  const r = await serveRequest(s.url, "/v1/identities", {
    body: { request: { name, parentIdentity: parent }, csr: encodePem("CERTIFICATE REQUEST", wk.csr) },
    key: s.apiKey,
    ca: s.bundlePem,
  });
  assert.equal(r.status, 201, r.text);
  return {
    id: r.json.record.spiffeId,
    key: wk.privateKey,
    keyPem: "",
    x5c: Certificate.parsePem(r.json.svid.chainPem).map((c) => c.der.toString("base64")),
  };
}

before(async () => {
  [op, rogue] = await Promise.all([startLocalOpenIdProvider(), startLocalOpenIdProvider()]);
  await op.addClient({
    client_id: "other-app",
    redirect_uris: ["http://127.0.0.1:9/other"],
    token_endpoint_auth_method: "none",
  });
  s = await startServe(shared, { trustDomain: TD, logLevel: "error", refreshHintSeconds: 1 });
  remote = Aztp.initialize({ apiKey: s.apiKey, baseUrl: s.url, trustBundle: s.bundlePem, home: tempDir(shared) });
  authority = (await remote.authority()) as RemoteAuthority;
  await authority.addPersonIssuer({ issuer: op.issuer, audiences: ["local-app"], recordEmail: true });
  alice = await op.login({ account: "alice" });
  wOrch = await workload(s.url, s.bundlePem, s.apiKey, "w-orchestrator");
  const orchAztp = (
    await serveRequest(s.url, `/v1/identities?id=${encodeURIComponent(wOrch.id)}`, {
      key: s.apiKey,
      ca: s.bundlePem,
    })
  ).json.record.aztpId as string;
  wResearch = await childWorkload("w-researcher", orchAztp);
  wStranger = await workload(s.url, s.bundlePem, s.apiKey, "w-stranger");
});

after(async () => {
  await remote?.close();
  for (const f of cleanups.reverse()) await f();
  await Promise.all([op?.close(), rogue?.close()]);
});

/** A token-exchange form post, with the first hop's defaults (alice's ID token, actor `actor`). */
function exchange(actor: Workload | undefined, params: Record<string, string | undefined> = {}): Promise<ServeAnswer> {
  return (async () =>
    tokenRequest(
      s.url,
      {
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: alice.idToken,
        subject_token_type: TOKEN_TYPE.idToken,
        ...(actor !== undefined ? { actor_token: await sdkAssertion(actor, s.url) } : {}),
        actor_token_type: TOKEN_TYPE.jwt,
        ...params,
      },
      { ca: s.bundlePem },
    ))();
}

function refusedWith(r: ServeAnswer, status: number, error: string, code: string, rule?: string): void {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.error, error, r.text);
  assert.equal(r.json.code, code, r.text);
  if (rule !== undefined) assert.equal(r.json.rule, rule, r.text);
  assert.equal(r.json.access_token, undefined);
}

function granted(r: ServeAnswer): Record<string, any> {
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.issued_token_type, TOKEN_TYPE.jwt);
  assert.equal(r.json.token_type, "N_A");
  assert.ok(r.json.expires_in > 0 && r.json.expires_in <= 3600, r.text);
  return peekClaims(r.json.access_token) as Record<string, any>;
}

function publicKeyOf(w: Workload): KeyObject {
  return createPublicKey(w.key);
}

/** A call signed by `signer` for `onBehalfOf`, verified at `callee` as a guard verifies it. */
function callAt(
  a: Authority,
  signer: AgentIdentity,
  callee: string,
  onBehalfOf: string,
  delegation?: readonly string[],
) {
  const token = signInvocation(signer, {
    audience: callee,
    tool: "transfer",
    args: ARGS,
    onBehalfOf,
    ...(delegation !== undefined ? { delegation } : {}),
  });
  return verifyInvocation(token, {
    audience: callee,
    tool: "transfer",
    args: ARGS,
    trust: new Trust(a, { revocation: { isRevoked: (id, serial) => a.isRevoked(id, serial) } }),
    replay: new MemoryReplayCache(),
  });
}

describe("aztp serve: RFC 8693 token exchange at the token endpoint", () => {
  it("advertises the grant in its RFC 8414 metadata", async () => {
    const m = (await serveRequest(s.url, "/.well-known/oauth-authorization-server", { ca: s.bundlePem })).json;
    assert.deepEqual(m.grant_types_supported, ["client_credentials", TOKEN_EXCHANGE_GRANT]);
  });

  it("first hop: alice's ID token for an on-behalf-of token naming her, acted by the agent, bound to its key", async () => {
    const c = granted(await exchange(wOrch, { resource: "spiffe://people-serve.test/workload/default/w-payments" }));
    assert.equal(c.sub, "alice");
    assert.deepEqual(c.sub_id, { format: "iss_sub", iss: op.issuer, sub: "alice" });
    assert.equal(c.iss, `spiffe://${TD}`);
    assert.deepEqual(c.act, { sub: wOrch.id });
    assert.equal(c.cnf.jkt, keyThumbprint(publicKeyOf(wOrch)));
    assert.ok(c.exp <= (peekClaims(alice.idToken)?.exp as number), "never outlives alice's token");
    assert.equal(c.email, "alice@example.com", "recordEmail is on for this provider");
  });

  it("binds to the key the actor proved: an x5c assertion's leaf, a JWT-SVID's newest recorded SVID key", async () => {
    const x5c = await sdkAssertion(wOrch, s.url, {}, { x5c: wOrch.x5c });
    const viaX5c = granted(await exchange(undefined, { actor_token: x5c }));
    assert.equal(
      viaX5c.cnf.jkt,
      keyThumbprint(new X509Certificate(Buffer.from(wOrch.x5c[0] as string, "base64")).publicKey),
    );

    const svid = await serveRequest(s.url, "/v1/identities/jwt-svid", {
      body: { id: wOrch.id, audience: s.url },
      key: s.apiKey,
      ca: s.bundlePem,
    });
    assert.equal(svid.status, 200, svid.text);
    const viaSvid = granted(await exchange(undefined, { actor_token: svid.json.token }));
    assert.equal(viaSvid.cnf.jkt, keyThumbprint(publicKeyOf(wOrch)));
    assert.deepEqual(viaSvid.act, { sub: wOrch.id });

    // After a renewal over a new key, a JWT-SVID's token is bound to the new SVID's key, not the old one's.
    const rotating = await workload(s.url, s.bundlePem, s.apiKey, "w-rotating");
    const next = await generateWorkloadKey();
    const renewed = await serveRequest(s.url, "/v1/identities/renew", {
      body: { id: rotating.id, csr: encodePem("CERTIFICATE REQUEST", next.csr) },
      key: s.apiKey,
      ca: s.bundlePem,
    });
    assert.equal(renewed.status, 200, renewed.text);
    const svid2 = await serveRequest(s.url, "/v1/identities/jwt-svid", {
      body: { id: rotating.id, audience: s.url },
      key: s.apiKey,
      ca: s.bundlePem,
    });
    const rebound = granted(await exchange(undefined, { actor_token: svid2.json.token }));
    assert.equal(rebound.cnf.jkt, keyThumbprint(createPublicKey(next.privateKey)));
    assert.notEqual(rebound.cnf.jkt, keyThumbprint(publicKeyOf(rotating)));
  });

  it("several resource parameters (RFC 8707) become the token's audience; a repeated other parameter is refused", async () => {
    const a = "spiffe://people-serve.test/workload/default/a";
    const b = "spiffe://people-serve.test/workload/default/b";
    const form = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: alice.idToken,
      subject_token_type: TOKEN_TYPE.idToken,
      actor_token: await sdkAssertion(wOrch, s.url),
      actor_token_type: TOKEN_TYPE.jwt,
    });
    form.append("resource", a);
    form.append("resource", b);
    const post = (f: URLSearchParams) =>
      serveRequest(s.url, "/oauth/token", {
        raw: f.toString(),
        headers: { "content-type": "application/x-www-form-urlencoded" },
        ca: s.bundlePem,
      });
    assert.deepEqual(granted(await post(form)).aud, [a, b]);
    form.set("actor_token", await sdkAssertion(wOrch, s.url));
    form.append("scope", "x");
    form.append("scope", "y");
    refusedWith(await post(form), 400, "invalid_request", ErrorCodes.ARGUMENT_INVALID);
  });

  it("refuses a forged, an expired, an untrusted or a misaddressed person token (invalid_grant), each beside its twin", async () => {
    granted(await exchange(wOrch));
    // Forged: alice's claims re-signed with another key under the provider's kid.
    const { privateKey } = await generateKeyPair("ES256");
    const header = decodeProtectedHeader(alice.idToken);
    const forged = await new SignJWT(peekClaims(alice.idToken) as Record<string, unknown>)
      .setProtectedHeader({ alg: "ES256", ...(header.kid !== undefined ? { kid: header.kid } : {}) })
      .sign(privateKey);
    refusedWith(
      await exchange(wOrch, { subject_token: forged }),
      400,
      "invalid_grant",
      ErrorCodes.PERSON_TOKEN_INVALID,
      "signature",
    );

    // Expired: issued by the provider itself (its own IdToken model and key), an hour ago.
    // (oidc-provider's models are documented but not in its type declarations.)
    const provider = op.provider as unknown as {
      Client: { find(id: string): Promise<unknown> };
      IdToken: new (
        claims: Record<string, unknown>,
        o: { client: unknown },
      ) => { set(k: string, v: unknown): void; issue(o: { use: "idtoken"; expiresAt?: number }): Promise<string> };
    };
    const idToken = (expiresAt?: number): Promise<string> => {
      const token = new provider.IdToken({ sub: "alice" }, { client });
      // The claims mask keeps only what scopes ask for: the subject is set outright.
      token.set("sub", "alice");
      return token.issue({ use: "idtoken", ...(expiresAt !== undefined ? { expiresAt } : {}) });
    };
    const client = await provider.Client.find(op.defaultClientId);
    assert.ok(client !== undefined);
    const stale = await idToken(Math.floor(Date.now() / 1000) - 3600);
    const fresh = await idToken();
    granted(await exchange(wOrch, { subject_token: fresh }));
    refusedWith(
      await exchange(wOrch, { subject_token: stale }),
      400,
      "invalid_grant",
      ErrorCodes.PERSON_TOKEN_INVALID,
      "expired",
    );

    // Untrusted: a real provider this trust domain was never told about.
    const elsewhere = await rogue.login({ account: "alice" });
    refusedWith(
      await exchange(wOrch, { subject_token: elsewhere.idToken }),
      400,
      "invalid_grant",
      ErrorCodes.PERSON_ISSUER_UNTRUSTED,
    );

    // Wrong audience: alice signed in to another app of the same provider.
    const otherApp = await op.login({ account: "alice", clientId: "other-app" });
    refusedWith(
      await exchange(wOrch, { subject_token: otherApp.idToken }),
      400,
      "invalid_grant",
      ErrorCodes.PERSON_TOKEN_INVALID,
      "aud",
    );
  });

  it("the actor is the client: another identity's actor token, someone else's key, a replayed assertion are invalid_client", async () => {
    // client_id names the orchestrator, the actor token is the stranger's.
    granted(await exchange(wOrch, { client_id: wOrch.id }));
    refusedWith(
      await exchange(wStranger, { client_id: wOrch.id }),
      401,
      "invalid_client",
      ErrorCodes.OAUTH_CLIENT_ID_MISMATCH,
      "client_id",
    );
    // A client assertion of the orchestrator beside the stranger's actor token.
    const clientAssertion = (w: Workload) => sdkAssertion(w, s.url);
    granted(
      await exchange(wOrch, {
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: await clientAssertion(wOrch),
      }),
    );
    refusedWith(
      await exchange(wStranger, {
        client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion: await clientAssertion(wOrch),
      }),
      401,
      "invalid_client",
      ErrorCodes.OAUTH_CLIENT_ID_MISMATCH,
      "actor_token",
    );
    // An assertion naming the orchestrator, signed with the stranger's key.
    const stolen = await sdkAssertion({ ...wOrch, key: wStranger.key }, s.url);
    refusedWith(
      await exchange(undefined, { actor_token: stolen }),
      401,
      "invalid_client",
      ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
    );
    // Single-use: the same assertion twice.
    const once = await sdkAssertion(wOrch, s.url);
    granted(await exchange(undefined, { actor_token: once }));
    refusedWith(
      await exchange(undefined, { actor_token: once }),
      401,
      "invalid_client",
      ErrorCodes.OAUTH_ASSERTION_REPLAYED,
    );
    // A refused exchange leaves its assertion unspent.
    const kept = await sdkAssertion(wOrch, s.url);
    refusedWith(
      await exchange(undefined, { actor_token: kept, subject_token: "not-a-token" }),
      400,
      "invalid_grant",
      ErrorCodes.PERSON_TOKEN_INVALID,
    );
    granted(await exchange(undefined, { actor_token: kept }));
  });

  it("second hop: only a child of the holder extends it, only narrowing (invalid_grant / invalid_target)", async () => {
    const payments = `spiffe://${TD}/workload/default/payments`;
    const first = (await exchange(wOrch, { resource: payments })).json.access_token as string;
    const hop = { subject_token: first, subject_token_type: TOKEN_TYPE.jwt };
    const c = granted(await exchange(wResearch, hop));
    assert.deepEqual(c.act, { sub: wResearch.id, act: { sub: wOrch.id } });
    assert.equal(c.cnf.jkt, keyThumbprint(publicKeyOf(wResearch)));
    assert.deepEqual(c.aud, [payments]);
    refusedWith(
      await exchange(wStranger, hop),
      400,
      "invalid_grant",
      ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
      "not_child",
    );
    refusedWith(
      await exchange(wResearch, { ...hop, resource: `spiffe://${TD}/workload/default/elsewhere` }),
      400,
      "invalid_target",
      ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
      "audience",
    );
  });

  it("requested_token_type other than jwt, and each missing parameter, is invalid_request", async () => {
    granted(await exchange(wOrch, { requested_token_type: TOKEN_TYPE.jwt }));
    refusedWith(
      await exchange(wOrch, { requested_token_type: TOKEN_TYPE.accessToken }),
      400,
      "invalid_request",
      ErrorCodes.OAUTH_REQUEST_INVALID,
      "requested_token_type",
    );
    for (const name of ["subject_token", "subject_token_type", "actor_token", "actor_token_type"]) {
      refusedWith(
        await exchange(wOrch, { [name]: undefined }),
        400,
        "invalid_request",
        ErrorCodes.OAUTH_REQUEST_INVALID,
        name,
      );
    }
    refusedWith(
      await exchange(wOrch, { actor_token_type: TOKEN_TYPE.idToken }),
      400,
      "invalid_request",
      ErrorCodes.OAUTH_REQUEST_INVALID,
      "actor_token_type",
    );
    refusedWith(
      await exchange(wOrch, { subject_token_type: "urn:example:saml" }),
      400,
      "invalid_request",
      ErrorCodes.ARGUMENT_INVALID,
    );
  });
});

describe("aztp serve: the token exchange's rate limit", () => {
  it("takes from the agent's own token bucket; past it temporarily_unavailable, and the actor token stays unspent", async (t) => {
    const limited = await startServe(t, { trustDomain: TD, logLevel: "error", tokenRate: 1, tokenBurst: 1 });
    const add = await serveRequest(limited.url, `/v1/trust-domains/${TD}/person-issuers`, {
      body: { config: { issuer: op.issuer, audiences: ["local-app"] } },
      key: limited.apiKey,
      ca: limited.bundlePem,
    });
    assert.equal(add.status, 200, add.text);
    const hasty = await workload(limited.url, limited.bundlePem, limited.apiKey, "hasty");
    const patient = await workload(limited.url, limited.bundlePem, limited.apiKey, "patient");
    const post = (actorToken: string) =>
      tokenRequest(
        limited.url,
        {
          grant_type: TOKEN_EXCHANGE_GRANT,
          subject_token: alice.idToken,
          subject_token_type: TOKEN_TYPE.idToken,
          actor_token: actorToken,
          actor_token_type: TOKEN_TYPE.jwt,
        },
        { ca: limited.bundlePem },
      );
    granted(await post(await sdkAssertion(hasty, limited.url)));
    const held = await sdkAssertion(hasty, limited.url);
    const refused = await post(held);
    refusedWith(refused, 429, "temporarily_unavailable", ErrorCodes.SERVE_RATE_LIMITED);
    assert.ok(Number(refused.headers["retry-after"]) >= 1);
    granted(await post(await sdkAssertion(patient, limited.url)));
    await new Promise((r) => setTimeout(r, 1100));
    granted(await post(held));
  });
});

describe("identity.actFor: through aztp serve and on a home, the same token", () => {
  it("the agent acts for alice, a call signed with it verifies at the callee with her in it; a sub-agent extends it", async (t) => {
    const orchestrator = await remote.secureConnect({}, "orchestrator");
    const researcher = await remote.secureConnect({}, "researcher", { parentIdentity: orchestrator.identity.aztpId });
    const payments = await remote.secureConnect({}, "payments");
    const viaServe = await orchestrator.identity.actFor(alice.idToken, { resources: [payments.identity.spiffeId] });
    assert.equal(viaServe.person.id, `${op.issuer}#alice`);
    assert.deepEqual(viaServe.actors, [orchestrator.identity.spiffeId]);
    assert.deepEqual(viaServe.audience, [payments.identity.spiffeId]);
    const v = await callAt(authority, orchestrator.identity, payments.identity.spiffeId, viaServe.token);
    assert.equal(v.onBehalfOf?.person.id, `${op.issuer}#alice`);
    assert.deepEqual(v.onBehalfOf?.actors, [orchestrator.identity.spiffeId]);
    // Bound to the orchestrator: the researcher signing with it is refused at the callee.
    await assert.rejects(callAt(authority, researcher.identity, payments.identity.spiffeId, viaServe.token), {
      code: ErrorCodes.ON_BEHALF_OF_INVALID,
    });

    const extended = await researcher.identity.actFor(viaServe.token);
    assert.deepEqual(extended.actors, [orchestrator.identity.spiffeId, researcher.identity.spiffeId]);
    const link = delegate(orchestrator.identity, researcher.identity.spiffeId, { tools: ["transfer"], servers: ["*"] });
    const v2 = await callAt(authority, researcher.identity, payments.identity.spiffeId, extended.token, link);
    assert.deepEqual(v2.onBehalfOf?.actors, [orchestrator.identity.spiffeId, researcher.identity.spiffeId]);
    const stranger = await remote.secureConnect({}, "stranger");
    await assert.rejects(stranger.identity.actFor(viaServe.token), {
      code: ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
    });

    // The same on a home, the embedded authority in this process.
    const embedded = Aztp.initialize({ home: tempDir(t, "people-home") });
    t.after(() => embedded.close());
    const home = await embedded.authority();
    await home.addPersonIssuer({ issuer: op.issuer, audiences: ["local-app"], recordEmail: true });
    const hOrch = await embedded.secureConnect({}, "orchestrator");
    const hPayments = await embedded.secureConnect({}, "payments");
    const viaHome = await hOrch.identity.actFor(alice.idToken, { resources: [hPayments.identity.spiffeId] });
    const hv = await callAt(home, hOrch.identity, hPayments.identity.spiffeId, viaHome.token);
    assert.equal(hv.onBehalfOf?.person.id, v.onBehalfOf?.person.id);

    // Both agree: the same person, claims, shape; only the trust domain's names and times differ.
    assert.deepEqual(viaHome.person, viaServe.person);
    assert.deepEqual(viaHome.scopes, viaServe.scopes);
    const a = peekClaims(viaServe.token) as Record<string, unknown>;
    const b = peekClaims(viaHome.token) as Record<string, unknown>;
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    for (const k of ["sub", "sub_id", "email", "email_verified", "groups"]) assert.deepEqual(a[k], b[k], k);
    assert.ok(Math.abs((a.exp as number) - (b.exp as number)) <= 5);
    assert.deepEqual(decodeProtectedHeader(viaServe.token).typ, decodeProtectedHeader(viaHome.token).typ);
  });
});
