/**
 * Tests that attack the signed-invocation protocol (DESIGN §4, issue 3 item 4): every forged,
 * tampered, misdirected, stale, replayed, over-delegated or denied call is refused with its own
 * stable code, and the tool body behind the verifier never runs. Receipts likewise. Each case
 * also has its passing twin, so a refusal is never an accident of a broken fixture.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign as cryptoSign, X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import * as jose from "jose";
import { ErrorCodes, type ErrorCode } from "../src/errors.js";
import { BundleSet } from "../src/spiffe/bundle.js";
import { signRaw } from "../src/spiffe/keys.js";
import type { AgentIdentity } from "../src/client/identity.js";
import { compilePolicies, parsePolicy, type PolicyDocument } from "../src/policy/index.js";
import {
  decideInvocation,
  delegate,
  MemoryReplayCache,
  signInvocation,
  signReceipt,
  Trust,
  verifyInvocation,
  verifyReceipt,
  type ReplayCache,
  type SignInvocationOptions,
  type VerifyInvocationOptions,
  type VerifyReceiptOptions,
} from "../src/invocation/index.js";
import {
  attempt,
  baseClaims,
  forge,
  highSTwin,
  leafPem,
  newDomain,
  newWorld,
  padded,
  resign,
  resignText,
  segments,
  verifierFor,
  type Domain,
  type World,
} from "./helpers/invocation-fixtures.js";
import { TestCA } from "./helpers/testca.js";

const TOOL = "search";
const ARGS = {
  query: "weather in Paris",
  limit: 5,
  strict: true,
  filters: { region: "eu", tags: ["news", "maps"], since: null },
};
const C = ErrorCodes;

let w: World;
/** Another embedded authority with the same trust-domain name (aztp.local) but its own CA. */
let lookalike: Domain;
/** Another embedded authority for another trust domain. */
let foreign: Domain;

before(async () => {
  [w, lookalike, foreign] = await Promise.all([newWorld(), newDomain(), newDomain("intruder.test")]);
});
after(() => {
  w.close();
  for (const d of [lookalike, foreign]) {
    d.client.close();
    rmSync(d.home, { recursive: true, force: true });
  }
});

function sign(caller: AgentIdentity, extra: Partial<SignInvocationOptions> = {}): string {
  return signInvocation(caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS, ...extra });
}

/** Verifier options of server A for the honest call (tool TOOL, args ARGS). */
function atA(extra: Partial<VerifyInvocationOptions> = {}): VerifyInvocationOptions {
  return verifierFor(w, w.serverA, TOOL, ARGS, extra);
}

async function expectRefused(token: unknown, options: VerifyInvocationOptions, code: ErrorCode): Promise<void> {
  const r = await attempt(token, options);
  assert.equal(r.code, code, r.error instanceof Error ? r.error.message : "accepted");
  assert.equal(r.ran, 0, "the tool body must not run");
}

async function expectAccepted(
  token: unknown,
  options: VerifyInvocationOptions,
): Promise<NonNullable<Awaited<ReturnType<typeof attempt>>["verified"]>> {
  const r = await attempt(token, options);
  assert.equal(r.code, "ok", r.error instanceof Error ? r.error.message : "");
  assert.equal(r.ran, 1);
  assert.ok(r.verified);
  return r.verified;
}

interface Case {
  name: string;
  code: ErrorCode | "ok";
  /** The token and, if the case needs them, changes to server A's honest verifier options. */
  build: () =>
    | Promise<{ token: unknown; options?: Partial<VerifyInvocationOptions> }>
    | { token: unknown; options?: Partial<VerifyInvocationOptions> };
}

async function runCases(cases: Case[]): Promise<void> {
  for (const c of cases) {
    await it(c.name, async () => {
      const { token, options } = await c.build();
      if (c.code === "ok") await expectAccepted(token, atA(options));
      else await expectRefused(token, atA(options), c.code);
    });
  }
}

describe("the honest call", () => {
  it("is accepted once, and the verified caller, claims and token come back", async () => {
    const token = sign(w.caller, { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7" });
    const v = await expectAccepted(token, atA());
    assert.equal(v.caller.toString(), w.caller.spiffeId);
    assert.equal(v.claims.aud, w.serverA.spiffeId);
    assert.equal(v.claims.tool, TOOL);
    assert.equal(v.claims.trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(v.claims.span, "00f067aa0ba902b7");
    assert.equal(v.claims.exp - v.claims.iat, 30);
    assert.ok(v.claims.jti.length >= 22, "jti carries at least 128 bits");
    assert.equal(v.token, token);
    assert.deepEqual(v.delegation, []);
  });

  it("is a standard JWS: jose verifies it with the leaf key from x5c", async () => {
    const token = sign(w.caller);
    const key = await jose.importX509(leafPem(w.caller.signer.x5c), "ES256");
    const { protectedHeader } = await jose.compactVerify(token, key);
    assert.equal(protectedHeader.typ, "aztp-invocation+jwt");
    assert.deepEqual(protectedHeader.x5c, [...w.caller.signer.x5c]);
  });

  it("accepts the callee named by its aztp:// ID on either side", async () => {
    const token = signInvocation(w.caller, { audience: w.serverA.aztpId, tool: TOOL, args: ARGS });
    await expectAccepted(token, atA({ audience: w.serverA.aztpId }));
  });
});

describe("forged and malformed tokens", async () => {
  const hs256 = (secret: string | Buffer) => () => {
    const claims = baseClaims(w.caller, w.serverA, TOOL, ARGS);
    return {
      token: forge({ alg: "HS256", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c }, claims, (input) =>
        createHmac("sha256", secret).update(input).digest(),
      ),
    };
  };
  const leafKey = () => new X509Certificate(Buffer.from(w.caller.signer.x5c[0] ?? "", "base64")).publicKey;
  await runCases([
    { name: "no token (undefined)", code: C.INVOCATION_MISSING, build: () => ({ token: undefined }) },
    { name: "no token (null)", code: C.INVOCATION_MISSING, build: () => ({ token: null }) },
    { name: "no token (empty string)", code: C.INVOCATION_MISSING, build: () => ({ token: "" }) },
    { name: "garbage: one word", code: C.INVOCATION_MALFORMED, build: () => ({ token: "garbage" }) },
    { name: "garbage: a.b.c", code: C.INVOCATION_MALFORMED, build: () => ({ token: "a.b.c" }) },
    {
      name: "garbage: four segments",
      code: C.INVOCATION_MALFORMED,
      build: () => ({ token: `${sign(w.caller)}.AAAA` }),
    },
    { name: "garbage: a number", code: C.INVOCATION_MALFORMED, build: () => ({ token: 42 }) },
    {
      name: "garbage: header is not JSON",
      code: C.INVOCATION_MALFORMED,
      build: () => ({ token: `${Buffer.from("{alg").toString("base64url")}.e30.AAAA` }),
    },
    {
      name: "garbage: 70 KB token",
      code: C.INVOCATION_MALFORMED,
      build: () => ({ token: `${"A".repeat(70_000)}.e30.AAAA` }),
    },
    {
      name: "a JWT-SVID is not an invocation token (no x5c, wrong typ)",
      code: C.INVOCATION_MALFORMED,
      build: async () => ({ token: await w.caller.jwtSvid(w.serverA.spiffeId) }),
    },
    {
      name: "a receipt is not an invocation token (typ)",
      code: C.INVOCATION_MALFORMED,
      build: () => ({
        token: signReceipt(w.caller, { caller: w.serverA.spiffeId, tool: TOOL, result: {}, status: "ok" }),
      }),
    },
    {
      name: "alg: none, empty signature",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => ({
        token: forge(
          { alg: "none", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
          baseClaims(w.caller, w.serverA, TOOL, ARGS),
          () => "",
        ),
      }),
    },
    {
      name: "alg: NoNe, the caller's real signature",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => ({ token: resign(w.caller.signer, baseClaims(w.caller, w.serverA, TOOL, ARGS), { alg: "NoNe" }) }),
    },
    {
      name: "alg: HS256 keyed with the leaf's public key (SPKI PEM)",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => hs256(leafKey().export({ format: "pem", type: "spki" }).toString())(),
    },
    {
      name: "alg: HS256 keyed with the leaf's public key (SPKI DER)",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => hs256(leafKey().export({ format: "der", type: "spki" }))(),
    },
    {
      name: "alg: HS256 keyed with the x5c certificate text",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => hs256(w.caller.signer.x5c[0] ?? "")(),
    },
    {
      name: "alg: EdDSA, signed by an Ed25519 key, valid x5c of the caller",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => {
        const { privateKey } = generateKeyPairSync("ed25519");
        return {
          token: forge(
            { alg: "EdDSA", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
            baseClaims(w.caller, w.serverA, TOOL, ARGS),
            (input) => cryptoSign(null, input, privateKey),
          ),
        };
      },
    },
    {
      name: "alg: ES512 (off the allow-list), signed by a P-521 key, valid x5c of the caller",
      code: C.INVOCATION_ALG_NOT_ALLOWED,
      build: () => {
        const { privateKey } = generateKeyPairSync("ec", { namedCurve: "secp521r1" });
        return {
          token: forge(
            { alg: "ES512", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
            baseClaims(w.caller, w.serverA, TOOL, ARGS),
            (input) => signRaw("ES512", privateKey, input),
          ),
        };
      },
    },
    {
      name: "alg: ES384 (allowed) over the P-256 leaf: refused before any ECDSA runs with the wrong curve",
      code: C.INVOCATION_SIGNATURE_INVALID,
      build: () => {
        const { privateKey } = generateKeyPairSync("ec", { namedCurve: "secp384r1" });
        return {
          token: forge(
            { alg: "ES384", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
            baseClaims(w.caller, w.serverA, TOOL, ARGS),
            (input) => signRaw("ES384", privateKey, input),
          ),
        };
      },
    },
    {
      name: "alg: RS256 (allowed), signed by an RSA key, the caller's EC x5c",
      code: C.INVOCATION_SIGNATURE_INVALID,
      build: () => {
        const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
        return {
          token: forge(
            { alg: "RS256", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
            baseClaims(w.caller, w.serverA, TOOL, ARGS),
            (input) => signRaw("RS256", privateKey, input),
          ),
        };
      },
    },
    {
      name: "signed by another trusted identity's key under the caller's x5c",
      code: C.INVOCATION_SIGNATURE_INVALID,
      build: () => ({
        token: forge(
          { alg: "ES256", typ: "aztp-invocation+jwt", x5c: w.caller.signer.x5c },
          baseClaims(w.caller, w.serverA, TOOL, ARGS),
          (input) => w.third.signer.sign(input),
        ),
      }),
    },
    {
      name: "header with crit",
      code: C.INVOCATION_MALFORMED,
      build: () => ({ token: resign(w.caller.signer, baseClaims(w.caller, w.serverA, TOOL, ARGS), { crit: ["exp"] }) }),
    },
    {
      name: "no x5c at all",
      code: C.INVOCATION_UNTRUSTED,
      build: () => ({
        token: resign(w.caller.signer, baseClaims(w.caller, w.serverA, TOOL, ARGS), { x5c: undefined }),
      }),
    },
    {
      name: "x5c without the intermediate",
      code: C.INVOCATION_UNTRUSTED,
      build: () => ({
        token: resign(w.caller.signer, baseClaims(w.caller, w.serverA, TOOL, ARGS), {
          x5c: w.caller.signer.x5c.slice(0, 1),
        }),
      }),
    },
  ]);
});

describe("chains that do not lead to the verifier's bundle", async () => {
  await runCases([
    {
      name: "an untrusted CA: another authority for another trust domain",
      code: C.INVOCATION_UNTRUSTED,
      build: async () => ({ token: sign(await foreign.identity("caller")) }),
    },
    {
      name: "an untrusted CA claiming our trust domain's name (another aztp.local authority)",
      code: C.INVOCATION_UNTRUSTED,
      build: async () => {
        const impostor = await lookalike.identity("caller");
        assert.equal(impostor.spiffeId, w.caller.spiffeId, "same SPIFFE ID, other CA");
        return { token: sign(impostor) };
      },
    },
    {
      name: "a leaf of our authority's second trust domain, when the verifier's bundle has only the first",
      code: C.INVOCATION_UNTRUSTED,
      build: async () => {
        const elsewhere = await w.identity("elsewhere", { trustDomain: "second.test" });
        const onlyFirst = new Trust(new BundleSet([w.authority.bundle("aztp.local")]), { revocation: w.authority });
        // The positive control: with both bundles the same token is good.
        const both = new Trust(w.authority.bundleSet(), { revocation: w.authority });
        const token = sign(elsewhere);
        await expectAccepted(token, atA({ trust: both }));
        return { token, options: { trust: onlyFirst } };
      },
    },
    {
      name: "a leaf for trust domain B issued by trust domain A's CA, the verifier trusting both",
      code: C.INVOCATION_UNTRUSTED,
      build: async () => {
        const [caA, caB] = await Promise.all([TestCA.create("a.test"), TestCA.create("b.test")]);
        const inter = await caA.createCA();
        const svid = await inter.createX509Svid("spiffe://b.test/workload/caller");
        const trust = new Trust(new BundleSet([caA.bundle(), caB.bundle()]));
        const signer = { alg: "ES256", x5c: svid.x5c, sign: (d: Uint8Array) => signRaw("ES256", svid.privateKey, d) };
        const claims = {
          ...baseClaims(w.caller, w.serverA, TOOL, ARGS),
          iss: "spiffe://b.test/workload/caller",
          sub: "spiffe://b.test/workload/caller",
        };
        // Control: the same CA's leaf for its own trust domain is accepted by that trust.
        const own = await inter.createX509Svid("spiffe://a.test/workload/caller");
        const ownClaims = { ...claims, iss: "spiffe://a.test/workload/caller", sub: "spiffe://a.test/workload/caller" };
        await expectAccepted(
          resign({ alg: "ES256", x5c: own.x5c, sign: (d) => signRaw("ES256", own.privateKey, d) }, ownClaims),
          atA({ trust }),
        );
        return { token: resign(signer, claims), options: { trust } };
      },
    },
  ]);
});

describe("claims that do not match the SVID or the call", async () => {
  const now = () => Math.floor(Date.now() / 1000);
  const claims = (change: Record<string, unknown>) => () => ({
    token: resign(w.caller.signer, { ...baseClaims(w.caller, w.serverA, TOOL, ARGS), ...change }),
  });
  /** `claim` set to a list nested 15,000 deep: JSON.parse takes it, JSON.stringify overflows the stack on it. */
  const deep = (claim: string) => () => {
    const text = JSON.stringify({ ...baseClaims(w.caller, w.serverA, TOOL, ARGS), [claim]: "DEEP" }).replace(
      '"DEEP"',
      `${"[".repeat(15_000)}${"]".repeat(15_000)}`,
    );
    return { token: resignText(w.caller.signer, text) };
  };
  await runCases([
    {
      name: "iss is another identity (signed with the caller's real key)",
      code: C.INVOCATION_ISSUER_MISMATCH,
      build: () => claims({ iss: w.third.spiffeId, sub: w.third.spiffeId })(),
    },
    {
      name: "iss is the callee",
      code: C.INVOCATION_ISSUER_MISMATCH,
      build: () => claims({ iss: w.serverA.spiffeId })(),
    },
    { name: "iss is missing", code: C.INVOCATION_ISSUER_MISMATCH, build: () => claims({ iss: undefined })() },
    {
      name: "iss is the caller in aztp:// spelling (one spelling only: spiffe://)",
      code: C.INVOCATION_ISSUER_MISMATCH,
      build: () => claims({ iss: w.caller.aztpId })(),
    },
    {
      name: "sub differs from iss",
      code: C.INVOCATION_ISSUER_MISMATCH,
      build: () => claims({ sub: w.third.spiffeId })(),
    },
    {
      name: "exp - iat is 61 s (over the 60 s maximum)",
      code: C.INVOCATION_LIFETIME_TOO_LONG,
      build: () => claims({ iat: now(), exp: now() + 61 })(),
    },
    {
      name: "exp - iat is 1 h",
      code: C.INVOCATION_LIFETIME_TOO_LONG,
      build: () => claims({ iat: now() - 60, exp: now() + 3540 })(),
    },
    {
      name: "exp before iat",
      code: C.INVOCATION_LIFETIME_TOO_LONG,
      build: () => claims({ iat: now(), exp: now() - 1 })(),
    },
    { name: "exp - iat is exactly 60 s", code: "ok", build: () => claims({ iat: now(), exp: now() + 60 })() },
    { name: "iat as a string", code: C.INVOCATION_MALFORMED, build: () => claims({ iat: String(now()) })() },
    { name: "exp as a fraction", code: C.INVOCATION_MALFORMED, build: () => claims({ exp: now() + 10.5 })() },
    { name: "no exp", code: C.INVOCATION_MALFORMED, build: () => claims({ exp: undefined })() },
    { name: "jti of 64 bits", code: C.INVOCATION_MALFORMED, build: () => claims({ jti: "AAAAAAAAAAA" })() },
    { name: "no jti", code: C.INVOCATION_MALFORMED, build: () => claims({ jti: undefined })() },
    { name: "trace not a string", code: C.INVOCATION_MALFORMED, build: () => claims({ trace: 7 })() },
    // trace and span are W3C trace context IDs (lower-case hex, not all zero), the span only with a trace.
    { name: "trace a W3C trace-id", code: "ok", build: () => claims({ trace: "4bf92f3577b34da6a3ce929d0e0e4736" })() },
    {
      name: "trace and span",
      code: "ok",
      build: () => claims({ trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7" })(),
    },
    { name: "trace not hex", code: C.INVOCATION_MALFORMED, build: () => claims({ trace: "trace-1" })() },
    {
      name: "trace in upper case",
      code: C.INVOCATION_MALFORMED,
      build: () => claims({ trace: "4BF92F3577B34DA6A3CE929D0E0E4736" })(),
    },
    {
      name: "trace all zero",
      code: C.INVOCATION_MALFORMED,
      build: () => claims({ trace: "00000000000000000000000000000000" })(),
    },
    { name: "span without a trace", code: C.INVOCATION_MALFORMED, build: () => claims({ span: "00f067aa0ba902b7" })() },
    {
      name: "span of 15 digits",
      code: C.INVOCATION_MALFORMED,
      build: () => claims({ trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b" })(),
    },
    {
      name: "span all zero",
      code: C.INVOCATION_MALFORMED,
      build: () => claims({ trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "0000000000000000" })(),
    },
    {
      name: "iss nested 15,000 lists deep: a coded refusal, not a RangeError",
      code: C.INVOCATION_ISSUER_MISMATCH,
      build: deep("iss"),
    },
    {
      name: "aud nested 15,000 lists deep: a coded refusal, not a RangeError",
      code: C.INVOCATION_AUDIENCE_MISMATCH,
      build: deep("aud"),
    },
    {
      name: "tool nested 15,000 lists deep: a coded refusal, not a RangeError",
      code: C.INVOCATION_TOOL_MISMATCH,
      build: deep("tool"),
    },
    {
      name: "iat far in the future (max safe integer): a coded refusal, not a RangeError",
      code: C.INVOCATION_NOT_YET_VALID,
      build: () => claims({ iat: Number.MAX_SAFE_INTEGER, exp: Number.MAX_SAFE_INTEGER })(),
    },
  ]);
});

describe("revocation", () => {
  /** Who calls, and whose revocation must stop it. */
  const revocations: Array<[string, () => Promise<{ caller: AgentIdentity; revoked: AgentIdentity }>]> = [
    [
      "a revoked caller",
      async () => {
        const caller = await w.identity("soon-revoked");
        return { caller, revoked: caller };
      },
    ],
    [
      "a caller whose parent is revoked",
      async () => {
        const parent = await w.identity("boss");
        return { caller: await w.identity("worker", { parentIdentity: parent.aztpId }), revoked: parent };
      },
    ],
    [
      "a caller whose grandparent is revoked",
      async () => {
        const top = await w.identity("top");
        const mid = await w.identity("mid", { parentIdentity: top.aztpId });
        return { caller: await w.identity("leaf", { parentIdentity: mid.aztpId }), revoked: top };
      },
    ],
  ];
  for (const [name, setup] of revocations) {
    it(`${name} is refused (the same token passed before the revocation)`, async () => {
      const { caller, revoked } = await setup();
      const token = sign(caller);
      await expectAccepted(sign(caller), atA());
      await w.authority.revoke(revoked.spiffeId, "compromised");
      await expectRefused(token, atA(), C.INVOCATION_REVOKED);
    });
  }

  it("an SVID revoked by serial: after revoke and reissue, the old SVID's tokens stay refused, the renewed SVID's pass", async () => {
    const id = await w.identity("reissued");
    const oldSigner = id.signer;
    await w.authority.revoke(id.spiffeId, "key lost");
    await w.client.reissueIdentity(id.aztpId);
    await id.rotate();
    assert.notDeepEqual(id.signer.x5c, oldSigner.x5c);
    await expectRefused(
      signInvocation(oldSigner, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS }),
      atA(),
      C.INVOCATION_REVOKED,
    );
    await expectAccepted(sign(id), atA());
  });
});

describe("time window", async () => {
  const ago = (s: number) => new Date(Date.now() - s * 1000);
  const at = (token: string, offset: number): Partial<VerifyInvocationOptions> => ({
    now: new Date((segments(token).payload.iat as number) * 1000 + offset * 1000),
  });
  await runCases([
    {
      name: "expired: issued 120 s ago with a 30 s ttl",
      code: C.INVOCATION_EXPIRED,
      build: () => ({ token: sign(w.caller, { now: ago(120) }) }),
    },
    {
      name: "expired: verified at exp + leeway",
      code: C.INVOCATION_EXPIRED,
      build: () => {
        const token = sign(w.caller);
        return { token, options: at(token, 30 + 30) };
      },
    },
    {
      name: "still good: verified at exp + leeway - 1 s",
      code: "ok",
      build: () => {
        const token = sign(w.caller);
        return { token, options: at(token, 30 + 30 - 1) };
      },
    },
    {
      name: "expired under a zero leeway: verified at exp",
      code: C.INVOCATION_EXPIRED,
      build: () => {
        const token = sign(w.caller);
        return { token, options: { ...at(token, 30), leewaySeconds: 0 } };
      },
    },
    {
      name: "from the future beyond the leeway: iat = now + 120 s",
      code: C.INVOCATION_NOT_YET_VALID,
      build: () => ({ token: sign(w.caller, { now: ago(-120) }) }),
    },
    {
      name: "from the future within the leeway: iat = now + 20 s",
      code: "ok",
      build: () => ({ token: sign(w.caller, { now: ago(-20) }) }),
    },
    {
      name: "verified before the caller's SVID was valid",
      code: C.INVOCATION_UNTRUSTED,
      build: () => {
        const token = sign(w.caller, { now: ago(3 * 3600) });
        return { token, options: at(token, 0) };
      },
    },
  ]);

  it("signInvocation refuses a ttl over the maximum", () => {
    assert.throws(() => sign(w.caller, { ttlSeconds: 61 }), { code: C.ARGUMENT_INVALID });
    assert.throws(() => sign(w.caller, { ttlSeconds: 0 }), { code: C.ARGUMENT_INVALID });
  });
});

describe("audience and tool", async () => {
  await runCases([
    {
      name: "a token for server A presented to server B",
      code: C.INVOCATION_AUDIENCE_MISMATCH,
      build: () => ({ token: sign(w.caller), options: { audience: w.serverB.spiffeId } }),
    },
    {
      name: "aud as a list naming both servers",
      code: C.INVOCATION_AUDIENCE_MISMATCH,
      build: () => ({
        token: resign(w.caller.signer, {
          ...baseClaims(w.caller, w.serverA, TOOL, ARGS),
          aud: [w.serverA.spiffeId, w.serverB.spiffeId],
        }),
      }),
    },
    {
      name: "tool name swapped (signed for search, delete called)",
      code: C.INVOCATION_TOOL_MISMATCH,
      build: () => ({ token: sign(w.caller), options: { tool: "delete" } }),
    },
    {
      name: "tool name differs only in case",
      code: C.INVOCATION_TOOL_MISMATCH,
      build: () => ({ token: sign(w.caller), options: { tool: "Search" } }),
    },
    {
      name: "several defects: the first in verification order is reported (audience before time)",
      code: C.INVOCATION_AUDIENCE_MISMATCH,
      build: () => ({
        token: sign(w.caller, { now: new Date(Date.now() - 600_000) }),
        options: { audience: w.serverB.spiffeId },
      }),
    },
  ]);
});

describe("arguments: the digest is over what is actually received", async () => {
  const received = (args: unknown, expect: ErrorCode | "ok", name: string): Case => ({
    name,
    code: expect,
    build: () => ({ token: sign(w.caller), options: { args } }),
  });
  const { filters, ...withoutFilters } = ARGS;
  await runCases([
    received({ ...ARGS, query: "weather in Rome" }, C.INVOCATION_ARGS_MISMATCH, "one argument changed (string)"),
    received({ ...ARGS, limit: 6 }, C.INVOCATION_ARGS_MISMATCH, "one argument changed (number)"),
    received({ ...ARGS, limit: "5" }, C.INVOCATION_ARGS_MISMATCH, 'one argument changed type (5 to "5")'),
    received({ ...ARGS, strict: 1 }, C.INVOCATION_ARGS_MISMATCH, "one argument changed type (true to 1)"),
    received({ ...ARGS, admin: true }, C.INVOCATION_ARGS_MISMATCH, "one argument added"),
    received(withoutFilters, C.INVOCATION_ARGS_MISMATCH, "one argument removed"),
    received(
      { ...ARGS, filters: { ...filters, region: "us" } },
      C.INVOCATION_ARGS_MISMATCH,
      "a nested argument changed",
    ),
    received({ ...ARGS, filters: { ...filters, extra: 1 } }, C.INVOCATION_ARGS_MISMATCH, "a nested argument added"),
    received(
      { ...ARGS, filters: { region: "eu", tags: ["news", "maps"] } },
      C.INVOCATION_ARGS_MISMATCH,
      "a nested null removed",
    ),
    received(
      { ...ARGS, filters: { ...filters, tags: ["maps", "news"] } },
      C.INVOCATION_ARGS_MISMATCH,
      "array order changed (arrays are ordered)",
    ),
    received(
      { ...ARGS, filters: { ...filters, tags: ["news", "maps", "x"] } },
      C.INVOCATION_ARGS_MISMATCH,
      "array element added",
    ),
    received({ ...ARGS, query: "weather in Pa\u0072is " }, C.INVOCATION_ARGS_MISMATCH, "trailing space"),
    received(
      JSON.parse(`{"__proto__":{"admin":true},${JSON.stringify(ARGS).slice(1)}`),
      C.JSON_PROTO_KEY_NOT_ALLOWED,
      "a __proto__ key added (as JSON.parse makes it; the SDK's parse would drop it)",
    ),
    received(
      {
        ...ARGS,
        filters: JSON.parse(`{"__proto__":{"region":"us"},"region":"eu","tags":["news","maps"],"since":null}`),
      },
      C.JSON_PROTO_KEY_NOT_ALLOWED,
      "a nested __proto__ key",
    ),
    received({ ...ARGS, query: "weather in \ud800Paris" }, C.JSON_UNREPRESENTABLE, "a lone surrogate in a string"),
    received({ ...ARGS, ["\udc00"]: 1 }, C.JSON_UNREPRESENTABLE, "a lone surrogate in a key"),
    received({ ...ARGS, limit: Infinity }, C.JSON_UNREPRESENTABLE, "Infinity (what 1e400 in JSON text parses as)"),
    received({ ...ARGS, limit: NaN }, C.JSON_UNREPRESENTABLE, "NaN"),
    received(undefined, C.INVOCATION_ARGS_MISMATCH, "no arguments received"),
    received([ARGS], C.INVOCATION_ARGS_MISMATCH, "arguments wrapped in an array"),
    received({ ...ARGS, limit: 2n }, C.JSON_UNREPRESENTABLE, "arguments JSON cannot carry (a BigInt)"),
    received(
      Object.fromEntries(Object.entries(ARGS).reverse()),
      "ok",
      "argument key order changed (passes: canonical form)",
    ),
    received(
      {
        filters: { since: null, tags: ["news", "maps"], region: "eu" },
        strict: true,
        limit: 5,
        query: "weather in Paris",
      },
      "ok",
      "nested key order changed (passes: canonical form)",
    ),
    received(
      JSON.parse(JSON.stringify(ARGS).replace('"limit":5', '"limit":5.0')),
      "ok",
      "number spelled 5.0 instead of 5 (passes: JCS)",
    ),
    received(
      JSON.parse(JSON.stringify(ARGS).replace('"limit":5', '"limit":50e-1')),
      "ok",
      "number spelled 50e-1 (passes: JCS)",
    ),
  ]);

  it("unicode is not normalised: precomposed é and e + combining acute differ", async () => {
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: { q: "caf\u00e9" } });
    await expectRefused(token, verifierFor(w, w.serverA, TOOL, { q: "cafe\u0301" }), C.INVOCATION_ARGS_MISMATCH);
  });

  it("1.0 and 1 are one number on the signing side too", async () => {
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: JSON.parse('{"n":1.0}') });
    await expectAccepted(token, verifierFor(w, w.serverA, TOOL, { n: 1 }));
  });
});

describe("replay", () => {
  it("a used token is refused the second time, on the same verifier", async () => {
    const token = sign(w.caller);
    const replay = new MemoryReplayCache();
    await expectAccepted(token, atA({ replay }));
    await expectRefused(token, atA({ replay }), C.INVOCATION_REPLAYED);
  });

  /**
   * Three re-encodings of one token that jose's compactVerify accepts with the leaf key
   * (checked here, jose 6): the high-S twin of the ECDSA signature (OpenSSL, WebCrypto and jose
   * all accept s and n - s), base64 padding added to the signature segment, and a trailing
   * newline (jose ignores the whitespace when it decodes). Our verifier refuses the padded and
   * the newline forms as malformed (strict base64url, RFC 7515), fresh or not; the high-S twin
   * is a valid signature, so on a fresh verifier it would be accepted: after the original was
   * used it must be refused as replayed, which works only because the replay cache is keyed on
   * the claims (iss, jti), never on the token text.
   */
  const variants: Array<{ name: string; make: (t: string) => string; afterUse: ErrorCode; fresh: ErrorCode | "ok" }> = [
    { name: "the high-S twin of its ECDSA signature", make: highSTwin, afterUse: C.INVOCATION_REPLAYED, fresh: "ok" },
    {
      name: "base64 padding added to the signature segment",
      make: (t) => {
        const { h, p, s } = segments(t);
        return `${h}.${p}.${padded(s)}`;
      },
      afterUse: C.INVOCATION_MALFORMED,
      fresh: C.INVOCATION_MALFORMED,
    },
    {
      name: "a trailing newline",
      make: (t) => `${t}\n`,
      afterUse: C.INVOCATION_MALFORMED,
      fresh: C.INVOCATION_MALFORMED,
    },
    {
      name: "a trailing CRLF",
      make: (t) => `${t}\r\n`,
      afterUse: C.INVOCATION_MALFORMED,
      fresh: C.INVOCATION_MALFORMED,
    },
  ];
  for (const v of variants) {
    it(`re-encoded replay: ${v.name} (jose accepts it; we refuse it)`, async () => {
      const token = sign(w.caller);
      const variant = v.make(token);
      assert.notEqual(variant, token);
      const key = await jose.importX509(leafPem(w.caller.signer.x5c), "ES256");
      const { payload } = await jose.compactVerify(variant, key);
      assert.deepEqual(
        JSON.parse(Buffer.from(payload).toString("utf8")),
        segments(token).payload,
        "jose accepts the re-encoded form as the same token",
      );

      const replay = new MemoryReplayCache();
      await expectAccepted(token, atA({ replay }));
      await expectRefused(variant, atA({ replay }), v.afterUse);
      // And on a verifier that never saw the original.
      const fresh = new MemoryReplayCache();
      if (v.fresh === "ok") {
        await expectAccepted(variant, atA({ replay: fresh }));
        await expectRefused(token, atA({ replay: fresh }), C.INVOCATION_REPLAYED);
      } else await expectRefused(variant, atA({ replay: fresh }), v.fresh);
    });
  }

  it("a replay within the leeway after exp is still refused as replayed; after it, as expired", async () => {
    const token = sign(w.caller);
    const { iat, exp } = segments(token).payload as { iat: number; exp: number };
    const replay = new MemoryReplayCache();
    await expectAccepted(token, atA({ replay, now: new Date(iat * 1000) }));
    await expectRefused(token, atA({ replay, now: new Date((exp + 29) * 1000) }), C.INVOCATION_REPLAYED);
    await expectRefused(token, atA({ replay, now: new Date((exp + 30) * 1000) }), C.INVOCATION_EXPIRED);
  });

  it("the cache is told to keep each token until exp + leeway", async () => {
    const seen: Array<[string, number]> = [];
    const inner = new MemoryReplayCache();
    const spy: ReplayCache = { checkAndRemember: (k, t) => (seen.push([k, t]), inner.checkAndRemember(k, t)) };
    const token = sign(w.caller);
    await expectAccepted(token, atA({ replay: spy, leewaySeconds: 12 }));
    const { exp, jti } = segments(token).payload as { exp: number; jti: string };
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.[1], (exp + 12) * 1000);
    assert.ok(seen[0]?.[0].includes(jti));
  });
});

describe("MemoryReplayCache", () => {
  it("entries expire after their expiry time, and are swept", () => {
    let t = 1_000_000;
    const cache = new MemoryReplayCache({ now: () => t });
    assert.equal(cache.checkAndRemember("a", t + 60_000), true);
    assert.equal(cache.checkAndRemember("a", t + 60_000), false);
    t += 59_999;
    assert.equal(cache.checkAndRemember("a", t + 60_000), false, "still live one ms before expiry");
    t += 1;
    assert.equal(cache.checkAndRemember("b", t + 60_000), true);
    assert.equal(cache.size, 1, "the expired entry was swept on the next insert");
    assert.equal(
      cache.checkAndRemember("a", t + 60_000),
      true,
      "an expired key may be seen again (the verifier refuses its token as expired)",
    );
  });

  it("when full of live entries it fails closed: refuses new tokens, forgets none", () => {
    let t = 0;
    const cache = new MemoryReplayCache({ maxEntries: 3, now: () => t });
    for (const k of ["a", "b", "c"]) assert.equal(cache.checkAndRemember(k, 1000), true);
    assert.throws(() => cache.checkAndRemember("d", 1000), { code: C.INVOCATION_REPLAYED, message: /full/ });
    for (const k of ["a", "b", "c"]) assert.equal(cache.checkAndRemember(k, 1000), false, `${k} still remembered`);
    t = 1000;
    assert.equal(cache.checkAndRemember("d", 2000), true, "room again once entries expired");
    assert.ok(cache.size <= 3);
  });

  it("a verifier whose cache is full refuses the call, and the tool does not run", async () => {
    let offset = 0;
    const replay = new MemoryReplayCache({ maxEntries: 2, now: () => Date.now() + offset });
    await expectAccepted(sign(w.caller), atA({ replay }));
    await expectAccepted(sign(w.caller), atA({ replay }));
    const third = sign(w.caller);
    await expectRefused(third, atA({ replay }), C.INVOCATION_REPLAYED);
    offset = 120_000; // both entries (exp + 30 s leeway) are now past
    await expectAccepted(third, atA({ replay, now: new Date() }));
  });
});

describe("delegation", () => {
  let root: AgentIdentity, mid: AgentIdentity, leaf: AgentIdentity;
  before(async () => {
    [root, mid, leaf] = [await w.identity("dlg-root"), await w.identity("dlg-mid"), await w.identity("dlg-leaf")];
  });
  const A = () => w.serverA.spiffeId;
  /** root -> mid (depth 1, search*, server A) -> leaf (depth 0, search, server A), or with changes. */
  const chain = (first: Parameters<typeof delegate>[2] = {}, second: Parameters<typeof delegate>[2] = {}) => {
    const one = delegate(root, mid.spiffeId, {
      tools: ["search*"],
      servers: [A()],
      depth: 1,
      ttlSeconds: 600,
      ...first,
    });
    return delegate(
      mid,
      leaf.spiffeId,
      { tools: ["search"], servers: [A()], depth: 0, ttlSeconds: 300, ...second },
      one,
    );
  };
  const by = (signer: AgentIdentity, delegation: string[], extra: Partial<SignInvocationOptions> = {}) =>
    sign(signer, { delegation, ...extra });

  it("a valid 2-link chain passes, and comes back verified", async () => {
    const v = await expectAccepted(by(leaf, chain()), atA());
    assert.deepEqual(
      v.delegation.map((d) => [d.delegator, d.delegate, d.scope.depth]),
      [
        [root.spiffeId, mid.spiffeId, 1],
        [mid.spiffeId, leaf.spiffeId, 0],
      ],
    );
  });

  it("a valid 1-link chain passes (aztp:// server pattern and wildcard tool)", async () => {
    await expectAccepted(
      by(leaf, delegate(root, leaf.aztpId, { tools: ["sea*"], servers: [w.serverA.aztpId] })),
      atA(),
    );
  });

  const refused: Array<[string, () => Promise<string> | string, (() => Partial<VerifyInvocationOptions>)?]> = [
    ["the child widens the tools (search* to *)", () => by(leaf, chain({}, { tools: ["*"] }))],
    ["the child widens the tools (adds delete)", () => by(leaf, chain({}, { tools: ["search", "delete"] }))],
    [
      "the child widens the tools (? covers more than a letter)",
      () => by(leaf, chain({ tools: ["search?"] }, { tools: ["search*"] })),
    ],
    ["the child widens the servers (A to *)", () => by(leaf, chain({}, { servers: ["*"] }))],
    ["the child widens the servers (A to B)", () => by(leaf, chain({}, { servers: [w.serverB.spiffeId] }))],
    ["the child keeps the depth (1 to 1)", () => by(leaf, chain({}, { depth: 1 }))],
    ["the parent allowed no further delegation (depth 0)", () => by(leaf, chain({ depth: 0 }))],
    ["the child outlives the parent (expiry widened)", () => by(leaf, chain({ ttlSeconds: 60 }, { ttlSeconds: 3600 }))],
    ["the last delegate is not the signer (mid signs with leaf's chain)", () => by(mid, chain())],
    ["the last delegate is not the signer (a third identity)", () => by(w.third, chain())],
    [
      "the call is outside the delegated tools",
      () => by(leaf, chain(), { tool: "search_all" }),
      () => ({ tool: "search_all" }),
    ],
    [
      "the call is to a server outside the delegated servers",
      () => signInvocation(leaf, { audience: w.serverB.spiffeId, tool: TOOL, args: ARGS, delegation: chain() }),
      () => ({ audience: w.serverB.spiffeId }),
    ],
    [
      "the invocation outlives its delegation",
      () => by(leaf, delegate(root, leaf.spiffeId, { ttlSeconds: 10 }), { ttlSeconds: 30 }),
    ],
    [
      "links from two different chains (the second is not bound to the first)",
      () => {
        const other = delegate(w.third, mid.spiffeId, { depth: 1 });
        const second = delegate(mid, leaf.spiffeId, { tools: ["search"], servers: [A()] }, other);
        return by(leaf, [chain()[0] as string, second[1] as string]);
      },
    ],
    ["links in reverse order", () => by(leaf, chain().reverse())],
    [
      "an empty chain, hand-signed into the claims",
      () => resign(leaf.signer, { ...baseClaims(leaf, w.serverA, TOOL, ARGS), dlg: [] }),
    ],
    [
      "a chain that is not a list",
      () => resign(leaf.signer, { ...baseClaims(leaf, w.serverA, TOOL, ARGS), dlg: "x.y.z" }),
    ],
    ["a link that is garbage", () => by(leaf, ["garbage"])],
    ["an invocation token used as a link", () => by(leaf, [sign(root)])],
    [
      "a link whose scope the delegate rewrote (re-signed with the delegate's key, iss kept)",
      () => {
        const [link] = delegate(root, leaf.spiffeId, { tools: ["search"] });
        const { payload } = segments(link as string);
        return by(leaf, [
          resign(
            leaf.signer,
            { ...payload, scope: { tools: ["*"], servers: ["*"], depth: 0 } },
            {},
            "aztp-delegation+jwt",
          ),
        ]);
      },
    ],
    [
      "a link that expired at -(2^53 - 1) s (a coded refusal, not a RangeError)",
      () => {
        const [link] = delegate(root, leaf.spiffeId);
        const { payload } = segments(link as string);
        return by(leaf, [
          resign(root.signer, { ...payload, exp: -Number.MAX_SAFE_INTEGER }, {}, "aztp-delegation+jwt"),
        ]);
      },
    ],
    [
      "a link from an untrusted authority",
      async () => by(leaf, delegate(await foreign.identity("dlg-root"), leaf.spiffeId)),
    ],
  ];
  for (const [name, build, options] of refused) {
    it(`refused: ${name}`, async () => {
      await expectRefused(await build(), atA(options?.()), C.DELEGATION_INVALID);
    });
  }

  it("refused: a link signed by a revoked delegator", async () => {
    const delegator = await w.identity("dlg-revoked");
    const links = delegate(delegator, leaf.spiffeId, { tools: [TOOL] });
    await expectAccepted(by(leaf, links), atA());
    await w.authority.revoke(delegator.spiffeId, "compromised");
    await expectRefused(by(leaf, links), atA(), C.DELEGATION_INVALID);
    // The delegate itself is not revoked: without the chain it still calls as itself.
    await expectAccepted(sign(leaf), atA());
  });

  it("refused: the middle link's delegator revoked in a 2-link chain", async () => {
    const m = await w.identity("dlg-mid-revoked");
    const one = delegate(root, m.spiffeId, { depth: 1 });
    const links = delegate(m, leaf.spiffeId, {}, one);
    await expectAccepted(by(leaf, links), atA());
    await w.authority.revoke(m.spiffeId, "compromised");
    await expectRefused(by(leaf, links), atA(), C.DELEGATION_INVALID);
  });
});

describe("policy", () => {
  let policies: PolicyDocument[];
  before(() => {
    policies = [
      parsePolicy({
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "CallerMayCall",
            Effect: "Allow",
            Principal: { AZTP: w.caller.aztpId },
            Action: "tool:call",
            Resource: ["search", "delete_*"],
          },
          { Sid: "NeverDelete", Effect: "Deny", Action: "tool:call", Resource: "delete_*" },
        ],
      }),
    ];
  });
  const cases: Array<[string, () => AgentIdentity, string, ErrorCode | "ok"]> = [
    ["allowed by an Allow statement", () => w.caller, "search", "ok"],
    ["an explicit Deny wins over an Allow", () => w.caller, "delete_all", C.POLICY_DENIED],
    ["implicit deny: no statement allows the tool", () => w.caller, "fetch", C.POLICY_DENIED],
    ["implicit deny: no statement names the principal", () => w.third, "search", C.POLICY_DENIED],
  ];
  for (const compiled of [false, true]) {
    for (const [name, who, tool, code] of cases) {
      it(`${name} (${compiled ? "compiled" : "document list"})`, async () => {
        // The policy step runs after verification, as CalleeGuard.admit runs it: a caller it
        // refuses has still verified, and is audited as such.
        const token = signInvocation(who(), { audience: w.serverA.spiffeId, tool, args: ARGS });
        const v = await verifyInvocation(token, verifierFor(w, w.serverA, tool, ARGS));
        const policy = compiled ? compilePolicies(policies) : policies;
        if (code === "ok") assert.equal(decideInvocation(v, { policy, args: ARGS }).decision, "allow");
        else assert.throws(() => decideInvocation(v, { policy, args: ARGS }), { code });
      });
    }
  }
});

describe("receipts", () => {
  const RESULT = { answer: "sunny", temperature: 21 };
  interface Call {
    token: string;
    receipt: string;
    options: VerifyReceiptOptions;
  }
  /** One honest call: caller -> server A, A verified it and answered with a receipt. */
  async function call(server = w.serverA, result: unknown = RESULT): Promise<Call> {
    const token = signInvocation(w.caller, { audience: server.spiffeId, tool: TOOL, args: ARGS });
    const v = await expectAccepted(token, verifierFor(w, server, TOOL, ARGS));
    const receipt = signReceipt(server, {
      caller: v.caller.toString(),
      tool: TOOL,
      invocationToken: token,
      invocationJti: v.claims.jti,
      result,
      status: "ok",
    });
    return {
      token,
      receipt,
      options: { invocationToken: token, result, callee: server.spiffeId, caller: w.caller.spiffeId, trust: w.trust },
    };
  }
  const expectReceipt = (receipt: unknown, options: VerifyReceiptOptions, code: ErrorCode) =>
    assert.throws(() => verifyReceipt(receipt, options), { code });

  it("an honest receipt verifies, bound to the call", async () => {
    const c = await call();
    const r = verifyReceipt(c.receipt, c.options);
    assert.equal(r.signer, w.serverA.spiffeId);
    assert.equal(r.claims.status, "ok");
    assert.equal(r.claims.inv, segments(c.token).payload.jti);
    // Result key order does not matter (canonical form).
    verifyReceipt(c.receipt, { ...c.options, result: { temperature: 21, answer: "sunny" } });
  });

  const attacks: Array<
    [string, ErrorCode, (c: Call) => Promise<[unknown, VerifyReceiptOptions]> | [unknown, VerifyReceiptOptions]]
  > = [
    ["a receipt for another call", C.RECEIPT_MISMATCH, async (c) => [(await call()).receipt, c.options]],
    [
      "a changed result",
      C.RECEIPT_MISMATCH,
      (c) => [c.receipt, { ...c.options, result: { ...RESULT, answer: "rain" } }],
    ],
    [
      "a result with one field more",
      C.RECEIPT_MISMATCH,
      (c) => [c.receipt, { ...c.options, result: { ...RESULT, extra: 1 } }],
    ],
    [
      "wrong signer: a third trusted identity signs it",
      C.RECEIPT_INVALID,
      (c) => [
        signReceipt(w.third, {
          caller: w.caller.spiffeId,
          tool: TOOL,
          invocationToken: c.token,
          result: RESULT,
          status: "ok",
        }),
        c.options,
      ],
    ],
    [
      "wrong signer: the caller signs its own receipt",
      C.RECEIPT_INVALID,
      (c) => [
        signReceipt(w.caller, {
          caller: w.caller.spiffeId,
          tool: TOOL,
          invocationToken: c.token,
          result: RESULT,
          status: "ok",
        }),
        c.options,
      ],
    ],
    [
      "wrong signer: an untrusted authority's identity with the callee's SPIFFE ID",
      C.RECEIPT_INVALID,
      async (c) => [
        signReceipt(await lookalike.identity("server-a"), {
          caller: w.caller.spiffeId,
          tool: TOOL,
          invocationToken: c.token,
          result: RESULT,
          status: "ok",
        }),
        c.options,
      ],
    ],
    [
      "addressed to another caller",
      C.RECEIPT_MISMATCH,
      (c) => [
        signReceipt(w.serverA, {
          caller: w.third.spiffeId,
          tool: TOOL,
          invocationToken: c.token,
          result: RESULT,
          status: "ok",
        }),
        c.options,
      ],
    ],
    ["missing (undefined)", C.RECEIPT_MISSING, (c) => [undefined, c.options]],
    ["missing (empty string)", C.RECEIPT_MISSING, (c) => ["", c.options]],
    [
      "tampered signature (one character)",
      C.RECEIPT_INVALID,
      (c) => {
        const { h, p, s } = segments(c.receipt);
        return [`${h}.${p}.${s.startsWith("A") ? "B" : "A"}${s.slice(1)}`, c.options];
      },
    ],
    [
      "tampered payload (status rewritten, old signature)",
      C.RECEIPT_INVALID,
      (c) => {
        const { h, payload, s } = segments(c.receipt);
        return [
          `${h}.${Buffer.from(JSON.stringify({ ...payload, status: "error" })).toString("base64url")}.${s}`,
          c.options,
        ];
      },
    ],
    ["the invocation token presented as its receipt", C.RECEIPT_INVALID, (c) => [c.token, c.options]],
    [
      "a receipt older than maxAgeSeconds",
      C.RECEIPT_INVALID,
      (c) => [c.receipt, { ...c.options, now: new Date(Date.now() + 301_000) }],
    ],
    [
      "an unknown status, signed by the callee",
      C.RECEIPT_INVALID,
      (c) => {
        const { payload } = segments(c.receipt);
        return [resign(w.serverA.signer, { ...payload, status: "fine" }, {}, "aztp-receipt+jwt"), c.options];
      },
    ],
  ];
  for (const [name, code, build] of attacks) {
    it(`refused: ${name}`, async () => {
      const c = await call();
      const [receipt, options] = await build(c);
      expectReceipt(receipt, options, code);
    });
  }

  it("refused: a receipt from a callee revoked since", async () => {
    const server = await w.identity("server-revoked");
    const c = await call(server);
    verifyReceipt(c.receipt, c.options);
    await w.authority.revoke(server.spiffeId, "compromised");
    expectReceipt(c.receipt, c.options, C.CALLEE_REVOKED);
  });

  describe("the receipt's status must agree with the answer", () => {
    const ERROR_RESULT = { content: [{ type: "text", text: "no such city" }], isError: true };
    const REFUSAL = { code: C.POLICY_DENIED, message: "policy denies it" };
    /** A receipt with `status` over `result`, verified as an answer that is (or is not) an error. */
    const receiptFor = async (status: "ok" | "error" | "denied", result: unknown): Promise<Call> => {
      const c = await call(w.serverA, result);
      const receipt = signReceipt(w.serverA, {
        caller: w.caller.spiffeId,
        tool: TOOL,
        invocationToken: c.token,
        result,
        status,
        ...(status !== "ok" ? { code: C.POLICY_DENIED } : {}),
      });
      return { ...c, receipt };
    };
    const cases: Array<[string, "ok" | "error" | "denied", unknown, boolean | undefined, ErrorCode | "ok"]> = [
      ["ok on a success result", "ok", RESULT, false, "ok"],
      ["ok on a success result (isError not given: read from the result)", "ok", RESULT, undefined, "ok"],
      ["error on an isError result", "error", ERROR_RESULT, true, "ok"],
      ["error on an isError result (isError read from the result)", "error", ERROR_RESULT, undefined, "ok"],
      ["denied on a JSON-RPC error", "denied", REFUSAL, true, "ok"],
      ["error on a JSON-RPC error", "error", REFUSAL, true, "ok"],
      ["denied on a success result", "denied", RESULT, false, C.RECEIPT_STATUS_MISMATCH],
      ["error on a success result", "error", RESULT, false, C.RECEIPT_STATUS_MISMATCH],
      [
        "denied on a success result (isError read from the result)",
        "denied",
        RESULT,
        undefined,
        C.RECEIPT_STATUS_MISMATCH,
      ],
      ["ok on an isError result", "ok", ERROR_RESULT, true, C.RECEIPT_STATUS_MISMATCH],
      [
        "ok on an isError result (isError read from the result)",
        "ok",
        ERROR_RESULT,
        undefined,
        C.RECEIPT_STATUS_MISMATCH,
      ],
      ["ok on a JSON-RPC error", "ok", REFUSAL, true, C.RECEIPT_STATUS_MISMATCH],
    ];
    for (const [name, status, result, isError, expected] of cases) {
      it(`${expected === "ok" ? "accepted" : "refused"}: ${name}`, async () => {
        const c = await receiptFor(status, result);
        const options = { ...c.options, ...(isError !== undefined ? { isError } : {}) };
        if (expected === "ok") {
          assert.equal(verifyReceipt(c.receipt, options).claims.status, status);
          return;
        }
        assert.throws(
          () => verifyReceipt(c.receipt, options),
          (e: unknown) => {
            assert.ok(e instanceof Error && "code" in e && e.code === expected, String(e));
            assert.match(
              (e as Error).message,
              new RegExp(`"${status}".*${status === "ok" ? "an error" : "a success result"}`),
              "the message names both",
            );
            return true;
          },
        );
      });
    }
  });
});
