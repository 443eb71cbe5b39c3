/**
 * JWT-SVIDs: go-spiffe's jwtsvid.ParseAndValidate cases, generated at run time (no fixed tokens
 * exist upstream), the strict compact JWS under them, and a cross-check against jose as an
 * independent implementation. Every failure is asserted by its AztpError `code`.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign as cryptoSign, type KeyObject } from "node:crypto";
import { describe, it } from "node:test";
import { jwtVerify, SignJWT } from "jose";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import { b64uDecode, b64uEncode } from "../src/spiffe/base64url.js";
import { BundleSet, TrustBundle, type BundleSource } from "../src/spiffe/bundle.js";
import { decodeCompact, MAX_TOKEN_LENGTH, signCompact, type JwsHeader } from "../src/spiffe/jws.js";
import {
  DEFAULT_LEEWAY_SECONDS,
  mintJwtSvid,
  validateJwtSvid,
  type ValidateJwtSvidOptions,
} from "../src/spiffe/jwtsvid.js";
import { DEFAULT_ALGORITHMS, type JwsAlgorithm } from "../src/spiffe/keys.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";

// ---------------------------------------------------------------- fixtures

const TD = "example.org";
const SUB = "spiffe://example.org/agent/alpha";
const AUD = "spiffe://example.org/mcp/tools";
/** A fixed clock: every token and every check uses it, so no test depends on the wall clock. */
const NOW = new Date("2031-05-04T12:00:00Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);

const p256 = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" });
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const rsaPss = generateKeyPairSync("rsa-pss", { modulusLength: 2048 });
const ed25519 = generateKeyPairSync("ed25519");
/** A P-256 key the bundle does not know. */
const stranger = generateKeyPairSync("ec", { namedCurve: "prime256v1" });

const bundles = new BundleSet([
  new TrustBundle({
    trustDomain: TD,
    jwtAuthorities: [
      ["p256", p256.publicKey],
      ["p384", p384.publicKey],
      ["rsa", rsa.publicKey],
      ["rsa-pss", rsaPss.publicKey],
    ],
  }),
]);

/** A BundleSource that records lookups: a token refused with none made was refused before any crypto. */
function spy(inner: BundleSource): { source: BundleSource; lookups: string[] } {
  const lookups: string[] = [];
  return {
    lookups,
    source: {
      getBundleForTrustDomain(td: string) {
        lookups.push(td);
        return inner.getBundleForTrustDomain(td);
      },
    },
  };
}

const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: SUB,
  aud: AUD,
  iat: NOW_S,
  exp: NOW_S + 300,
  ...extra,
});

function without(obj: Record<string, unknown>, name: string): Record<string, unknown> {
  const copy = { ...obj };
  delete copy[name];
  return copy;
}

/** Signs with node:crypto through the library's own JWS writer (any header, any payload). */
function sign(header: Record<string, unknown>, payload: object, key: KeyObject = p256.privateKey): string {
  return signCompact({ typ: "JWT", kid: "p256", ...header } as Omit<JwsHeader, "alg">, payload, key);
}

/** Builds a token from raw parts, for headers signCompact would not write. */
function raw(header: unknown, payload: unknown, signature = "c2ln"): string {
  return `${b64uEncode(JSON.stringify(header))}.${b64uEncode(JSON.stringify(payload))}.${signature}`;
}

const good = mintJwtSvid({ subject: SUB, audience: AUD, key: p256.privateKey, kid: "p256", now: NOW });
const [goodH, goodP, goodS] = good.split(".") as [string, string, string];

const validateOptions: ValidateJwtSvidOptions = { audience: AUD, time: NOW };

function validate(token: unknown, options: Partial<ValidateJwtSvidOptions> = {}, source: BundleSource = bundles) {
  return validateJwtSvid(token as string, source, { ...validateOptions, ...options });
}

function expectCode(fn: () => unknown, code: ErrorCode): AztpError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AztpError, `expected an AztpError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, nothing was thrown`);
}

/** Flips one of the unused low bits of the last base64url character: same bytes, second spelling. */
function nonCanonical(part: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const i = alphabet.indexOf(part.charAt(part.length - 1));
  return part.slice(0, -1) + alphabet.charAt(i | 1);
}

// ---------------------------------------------------------------- cases

interface Case {
  name: string;
  token: () => unknown;
  options?: Partial<ValidateJwtSvidOptions>;
  /** An error code, or "ok" for a token that must validate. */
  expect: ErrorCode | "ok";
}

const success: Case[] = [
  { name: "mintJwtSvid, P-256 (ES256) default", token: () => good, expect: "ok" },
  { name: "ES384 (P-384 key)", token: () => sign({ kid: "p384" }, claims(), p384.privateKey), expect: "ok" },
  { name: "RS256 (RSA key)", token: () => sign({ kid: "rsa" }, claims(), rsa.privateKey), expect: "ok" },
  { name: "PS256 (RSA key)", token: () => sign({ kid: "rsa", alg: "PS256" }, claims(), rsa.privateKey), expect: "ok" },
  { name: "PS256 (RSA-PSS key)", token: () => sign({ kid: "rsa-pss" }, claims(), rsaPss.privateKey), expect: "ok" },
  { name: "typ JOSE", token: () => sign({ typ: "JOSE" }, claims()), expect: "ok" },
  { name: "typ absent", token: () => signCompact({ kid: "p256" }, claims(), p256.privateKey), expect: "ok" },
  { name: "no iat", token: () => sign({}, without(claims(), "iat")), expect: "ok" },
  {
    name: "aud list, any-of match",
    token: () => sign({}, claims({ aud: ["other", AUD] })),
    options: { audience: ["x", AUD] },
    expect: "ok",
  },
  {
    name: "expected audience list, any-of",
    token: () => good,
    options: { audience: ["spiffe://example.org/other", AUD] },
    expect: "ok",
  },
  { name: "expired, but within the 60 s leeway", token: () => sign({}, claims({ exp: NOW_S - 59 })), expect: "ok" },
  { name: "nbf in the future, within leeway", token: () => sign({}, claims({ nbf: NOW_S + 59 })), expect: "ok" },
  { name: "iat in the future, within leeway", token: () => sign({}, claims({ iat: NOW_S + 59 })), expect: "ok" },
  {
    name: "upper-case trust domain in sub",
    token: () => sign({}, claims({ sub: "spiffe://EXAMPLE.org/agent/alpha" })),
    expect: "ok",
  },
];

const malformed: Case[] = [
  { name: "not a string", token: () => 42, expect: ErrorCodes.JWT_MALFORMED },
  { name: "empty", token: () => "", expect: ErrorCodes.JWT_MALFORMED },
  { name: "one part", token: () => goodH, expect: ErrorCodes.JWT_MALFORMED },
  { name: "2 parts", token: () => `${goodH}.${goodP}`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "4 parts", token: () => `${good}.${goodS}`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "JWE-like 5 parts", token: () => `${goodH}..${goodP}.${goodS}.x`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "empty signature", token: () => `${goodH}.${goodP}.`, expect: ErrorCodes.JWT_MALFORMED },
  {
    name: "bad base64url in header (std alphabet +)",
    token: () => `${goodH.slice(0, -1)}+.${goodP}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "bad base64url in payload (*)",
    token: () => `${goodH}.*${goodP}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  { name: "padding added to the signature", token: () => `${good}==`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "padding added to the header", token: () => `${goodH}=.${goodP}.${goodS}`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "trailing newline", token: () => `${good}\n`, expect: ErrorCodes.JWT_MALFORMED },
  { name: "leading space", token: () => ` ${good}`, expect: ErrorCodes.JWT_MALFORMED },
  {
    name: "signature with non-canonical trailing bits",
    token: () => `${goodH}.${goodP}.${nonCanonical(goodS)}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "non-JSON header",
    token: () => `${b64uEncode("not json")}.${goodP}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "header is a JSON array",
    token: () => `${b64uEncode('["ES256"]')}.${goodP}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "header is JSON null",
    token: () => `${b64uEncode("null")}.${goodP}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "payload is a JSON array (properly signed)",
    token: () => sign({}, [SUB, AUD]),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "payload is not JSON",
    token: () => `${goodH}.${b64uEncode("{sub:")}.${goodS}`,
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "header without alg",
    token: () => raw({ typ: "JWT", kid: "p256" }, claims()),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  { name: "kid not a string", token: () => sign({ kid: 7 }, claims()), expect: ErrorCodes.JWT_MALFORMED },
  { name: "typ not a string", token: () => sign({ typ: ["JWT"] }, claims()), expect: ErrorCodes.JWT_MALFORMED },
  {
    name: "crit header refused",
    token: () => sign({ crit: ["exp"], exp: NOW_S + 60 }, claims()),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "b64 header refused",
    token: () => sign({ b64: false, crit: ["b64"] }, claims()),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "exp not a number (properly signed)",
    token: () => sign({}, claims({ exp: String(NOW_S + 300) })),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: "nbf not a number (properly signed)",
    token: () => sign({}, claims({ nbf: "now" })),
    expect: ErrorCodes.JWT_MALFORMED,
  },
  {
    name: `longer than ${MAX_TOKEN_LENGTH} characters`,
    token: () => sign({}, claims({ pad: "x".repeat(MAX_TOKEN_LENGTH) })),
    expect: ErrorCodes.JWT_MALFORMED,
  },
];

const hs256 = (): string => {
  // The classic confusion attack: HMAC keyed with the verifier's public key bytes.
  const secret = p256.publicKey.export({ format: "pem", type: "spki" });
  const input = `${b64uEncode(JSON.stringify({ alg: "HS256", typ: "JWT", kid: "p256" }))}.${b64uEncode(JSON.stringify(claims()))}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
};
const edDsa = await new SignJWT(claims())
  .setProtectedHeader({ alg: "EdDSA", typ: "JWT", kid: "p256" })
  .sign(ed25519.privateKey);

const algorithms: Case[] = [
  {
    name: "alg none, empty signature",
    token: () => raw({ alg: "none", typ: "JWT", kid: "p256" }, claims(), ""),
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
  {
    name: "alg none, junk signature",
    token: () => raw({ alg: "none", typ: "JWT", kid: "p256" }, claims()),
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
  {
    name: "alg None",
    token: () => raw({ alg: "None", kid: "p256" }, claims()),
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
  { name: "alg HS256 keyed with the public key", token: hs256, expect: ErrorCodes.JWT_ALG_NOT_ALLOWED },
  { name: "alg EdDSA (signed by jose with Ed25519)", token: () => edDsa, expect: ErrorCodes.JWT_ALG_NOT_ALLOWED },
  {
    name: "alg Ed25519",
    token: () => raw({ alg: "Ed25519", kid: "p256" }, claims()),
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
  {
    name: "alg es256 (case matters)",
    token: () => raw({ alg: "es256", kid: "p256" }, claims()),
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
  { name: "alg not a string", token: () => raw({ alg: 256, kid: "p256" }, claims()), expect: ErrorCodes.JWT_MALFORMED },
  {
    name: "alg outside a caller's allow-list",
    token: () => good,
    options: { algorithms: ["RS256"] },
    expect: ErrorCodes.JWT_ALG_NOT_ALLOWED,
  },
];

const confusion: Case[] = [
  {
    name: "header ES384, kid names a P-256 key",
    token: () => sign({ alg: "ES384" }, claims()),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "header ES256, kid names a P-384 key",
    token: () => sign({ alg: "ES256", kid: "p384" }, claims(), p384.privateKey),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "header RS256, kid names an EC key",
    token: () => sign({ alg: "RS256" }, claims(), rsa.privateKey),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "header PS256, kid names an EC key",
    token: () => sign({ alg: "PS256" }, claims(), rsa.privateKey),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "header ES256, kid names an RSA key",
    token: () => sign({ kid: "rsa" }, claims()),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "header RS256, kid names an RSA-PSS key",
    token: () => sign({ alg: "RS256", kid: "rsa-pss" }, claims(), rsa.privateKey),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
];

const validation: Case[] = [
  { name: "missing sub", token: () => sign({}, without(claims(), "sub")), expect: ErrorCodes.JWT_CLAIM_MISSING },
  { name: "missing exp", token: () => sign({}, without(claims(), "exp")), expect: ErrorCodes.JWT_CLAIM_MISSING },
  { name: "missing aud", token: () => sign({}, without(claims(), "aud")), expect: ErrorCodes.JWT_CLAIM_MISSING },
  { name: "empty aud list", token: () => sign({}, claims({ aud: [] })), expect: ErrorCodes.JWT_CLAIM_MISSING },
  {
    name: "aud list with a non-string",
    token: () => sign({}, claims({ aud: [AUD, 1] })),
    expect: ErrorCodes.JWT_CLAIM_MISSING,
  },
  {
    name: "expired beyond the 60 s leeway",
    token: () => sign({}, claims({ exp: NOW_S - 61 })),
    expect: ErrorCodes.JWT_EXPIRED,
  },
  {
    name: "expired exactly at the leeway",
    token: () => sign({}, claims({ exp: NOW_S - DEFAULT_LEEWAY_SECONDS })),
    expect: ErrorCodes.JWT_EXPIRED,
  },
  {
    name: "expired with leeway 0",
    token: () => sign({}, claims({ exp: NOW_S - 1 })),
    options: { leewaySeconds: 0 },
    expect: ErrorCodes.JWT_EXPIRED,
  },
  {
    name: "nbf in the future beyond leeway",
    token: () => sign({}, claims({ nbf: NOW_S + 61 })),
    expect: ErrorCodes.JWT_NOT_YET_VALID,
  },
  {
    name: "iat in the future beyond leeway",
    token: () => sign({}, claims({ iat: NOW_S + 61 })),
    expect: ErrorCodes.JWT_NOT_YET_VALID,
  },
  {
    name: "wrong audience",
    token: () => good,
    options: { audience: "spiffe://example.org/someone-else" },
    expect: ErrorCodes.JWT_AUDIENCE_MISMATCH,
  },
  {
    name: "wrong audience (list)",
    token: () => sign({}, claims({ aud: ["a", "b"] })),
    options: { audience: ["c", "d"] },
    expect: ErrorCodes.JWT_AUDIENCE_MISMATCH,
  },
  {
    name: "empty expected audience list",
    token: () => good,
    options: { audience: [] },
    expect: ErrorCodes.ARGUMENT_INVALID,
  },
  {
    name: "empty expected audience list, garbage token",
    token: () => "garbage",
    options: { audience: [] },
    expect: ErrorCodes.ARGUMENT_INVALID,
  },
  {
    name: "invalid sub: not a SPIFFE ID",
    token: () => sign({}, claims({ sub: "https://example.org/agent" })),
    expect: ErrorCodes.JWT_SUBJECT_INVALID,
  },
  {
    name: "invalid sub: trailing slash",
    token: () => sign({}, claims({ sub: "spiffe://example.org/agent/" })),
    expect: ErrorCodes.JWT_SUBJECT_INVALID,
  },
  { name: "invalid sub: empty", token: () => sign({}, claims({ sub: "" })), expect: ErrorCodes.JWT_SUBJECT_INVALID },
  { name: "invalid sub: a number", token: () => sign({}, claims({ sub: 42 })), expect: ErrorCodes.JWT_SUBJECT_INVALID },
  {
    name: "missing kid",
    token: () => signCompact({ typ: "JWT" }, claims(), p256.privateKey),
    expect: ErrorCodes.JWT_KID_MISSING,
  },
  { name: "empty kid", token: () => sign({ kid: "" }, claims()), expect: ErrorCodes.JWT_KID_MISSING },
  {
    name: "no bundle for the trust domain",
    token: () => sign({}, claims({ sub: "spiffe://other.org/agent" })),
    expect: ErrorCodes.JWT_BUNDLE_MISSING,
  },
  {
    name: "no authority for the kid",
    token: () => sign({ kid: "unknown" }, claims()),
    expect: ErrorCodes.JWT_KID_UNKNOWN,
  },
  { name: "kid __proto__", token: () => sign({ kid: "__proto__" }, claims()), expect: ErrorCodes.JWT_KID_UNKNOWN },
  {
    name: "signed by another key",
    token: () => sign({}, claims(), stranger.privateKey),
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "payload swapped under a valid signature",
    token: () => `${goodH}.${b64uEncode(JSON.stringify(claims({ sub: "spiffe://example.org/agent/root" })))}.${goodS}`,
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "ECDSA signature DER-encoded instead of r||s",
    token: () =>
      `${goodH}.${goodP}.${cryptoSign("sha256", Buffer.from(`${goodH}.${goodP}`), p256.privateKey).toString("base64url")}`,
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  {
    name: "signature truncated",
    token: () => `${goodH}.${goodP}.${goodS.slice(0, 84)}`,
    expect: ErrorCodes.JWT_SIGNATURE_INVALID,
  },
  { name: "bad typ: JWS", token: () => sign({ typ: "JWS" }, claims()), expect: ErrorCodes.JWT_TYP_INVALID },
  {
    name: "bad typ: jwt (case matters)",
    token: () => sign({ typ: "jwt" }, claims()),
    expect: ErrorCodes.JWT_TYP_INVALID,
  },
  { name: "bad typ: at+jwt", token: () => sign({ typ: "at+jwt" }, claims()), expect: ErrorCodes.JWT_TYP_INVALID },
  { name: "bad typ: empty", token: () => sign({ typ: "" }, claims()), expect: ErrorCodes.JWT_TYP_INVALID },
];

function runCases(cases: Case[]): void {
  for (const c of cases) {
    it(`${c.name} -> ${c.expect}`, () => {
      const token = c.token();
      if (c.expect === "ok") {
        const svid = validate(token, c.options);
        assert.equal(svid.id.toString(), SUB);
        assert.equal(svid.token, token);
        return;
      }
      const e = expectCode(() => validate(token, c.options), c.expect);
      // Messages name the rule and never echo a whole token.
      if (typeof token === "string" && token.length > 40) assert.ok(!e.message.includes(token));
    });
  }
}

// ---------------------------------------------------------------- tests

describe("validateJwtSvid: success (go-spiffe ParseAndValidate)", () => {
  runCases(success);

  it("returns the ID, audience, expiry, issued-at, header and claims", () => {
    const token = mintJwtSvid({
      subject: SpiffeId.parse(SUB),
      audience: [AUD, "spiffe://example.org/other"],
      key: p256.privateKey,
      kid: "p256",
      now: NOW,
      ttlSeconds: 120,
      claims: { sub: "spiffe://evil.org/x", exp: NOW_S + 999_999, tool: "search" },
    });
    const svid = validate(token);
    assert.ok(svid.id.equals(SUB));
    assert.deepEqual(svid.audience, [AUD, "spiffe://example.org/other"]);
    assert.equal(svid.expiry.getTime(), (NOW_S + 120) * 1000);
    assert.equal(svid.issuedAt?.getTime(), NOW_S * 1000);
    assert.deepEqual(svid.header, { typ: "JWT", kid: "p256", alg: "ES256" });
    // Extra claims ride along but cannot override the registered ones.
    assert.equal(svid.claims.tool, "search");
    assert.equal(svid.claims.sub, SUB);
  });

  it("mintJwtSvid picks the algorithm from the key", () => {
    const cases: Array<[KeyObject, string, JwsAlgorithm]> = [
      [p256.privateKey, "p256", "ES256"],
      [p384.privateKey, "p384", "ES384"],
      [rsa.privateKey, "rsa", "RS256"],
      [rsaPss.privateKey, "rsa-pss", "PS256"],
    ];
    for (const [key, kid, alg] of cases) {
      const svid = validate(mintJwtSvid({ subject: SUB, audience: AUD, key, kid, now: NOW }));
      assert.equal(svid.header.alg, alg);
    }
  });

  it("uses the wall clock when no time is given", () => {
    const token = mintJwtSvid({ subject: SUB, audience: AUD, key: p256.privateKey, kid: "p256" });
    assert.equal(validateJwtSvid(token, bundles, { audience: AUD }).id.toString(), SUB);
    expectCode(
      () => validateJwtSvid(good, bundles, { audience: AUD, time: new Date((NOW_S + 361) * 1000) }),
      ErrorCodes.JWT_EXPIRED,
    );
  });
});

describe("validateJwtSvid: malformed tokens", () => {
  runCases(malformed);
});

describe("validateJwtSvid: unsupported algorithms", () => {
  runCases(algorithms);

  it("refuses none, HS256 and EdDSA before looking up any key", () => {
    for (const token of [raw({ alg: "none", kid: "p256" }, claims(), ""), hs256(), edDsa]) {
      const { source, lookups } = spy(bundles);
      expectCode(() => validate(token, {}, source), ErrorCodes.JWT_ALG_NOT_ALLOWED);
      assert.deepEqual(lookups, []);
    }
  });

  it("the default allow-list is RS/ES/PS only", () => {
    assert.deepEqual([...DEFAULT_ALGORITHMS].sort(), [
      "ES256",
      "ES384",
      "ES512",
      "PS256",
      "PS384",
      "PS512",
      "RS256",
      "RS384",
      "RS512",
    ]);
  });
});

describe("validateJwtSvid: algorithm/key confusion", () => {
  runCases(confusion);
});

describe("validateJwtSvid: claims, kid, bundle and signature", () => {
  runCases(validation);
});

describe("mintJwtSvid: arguments", () => {
  const table: Array<[string, Record<string, unknown>, ErrorCode]> = [
    ["empty audience list", { audience: [] }, ErrorCodes.ARGUMENT_INVALID],
    ["empty audience string", { audience: "" }, ErrorCodes.ARGUMENT_INVALID],
    ["empty kid", { kid: "" }, ErrorCodes.ARGUMENT_INVALID],
    ["zero ttl", { ttlSeconds: 0 }, ErrorCodes.ARGUMENT_INVALID],
    ["negative ttl", { ttlSeconds: -5 }, ErrorCodes.ARGUMENT_INVALID],
    ["invalid subject", { subject: "spiffe://example.org/a/" }, ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED],
  ];
  for (const [name, override, code] of table) {
    it(`${name} -> ${code}`, () => {
      expectCode(
        () => mintJwtSvid({ subject: SUB, audience: AUD, key: p256.privateKey, kid: "p256", now: NOW, ...override }),
        code,
      );
    });
  }
});

describe("JWT-SVIDs cross-checked with jose", () => {
  const mint = (key: KeyObject, kid: string) => (): string =>
    mintJwtSvid({ subject: SUB, audience: AUD, key, kid, now: NOW });
  // jose cannot import an "rsa-pss" KeyObject, so PS256 is checked through signCompact with an RSA key.
  const ours: Array<[string, () => string, KeyObject, string]> = [
    ["ES256", mint(p256.privateKey, "p256"), p256.publicKey, "p256"],
    ["ES384", mint(p384.privateKey, "p384"), p384.publicKey, "p384"],
    ["RS256", mint(rsa.privateKey, "rsa"), rsa.publicKey, "rsa"],
    ["PS256", () => sign({ alg: "PS256", kid: "rsa" }, claims(), rsa.privateKey), rsa.publicKey, "rsa"],
  ];
  for (const [alg, make, publicKey, kid] of ours) {
    it(`a ${alg} token minted by this library verifies with jose's jwtVerify`, async () => {
      const token = make();
      const { payload, protectedHeader } = await jwtVerify(token, publicKey, {
        audience: AUD,
        subject: SUB,
        algorithms: [alg],
        typ: "JWT",
        currentDate: NOW,
        requiredClaims: ["exp", "iat"],
      });
      assert.deepEqual(protectedHeader, { typ: "JWT", kid, alg });
      assert.deepEqual(payload, { sub: SUB, aud: AUD, iat: NOW_S, exp: NOW_S + 300 });
    });
  }

  const theirs: Array<[string, KeyObject, string]> = [
    ["ES256", p256.privateKey, "p256"],
    ["ES384", p384.privateKey, "p384"],
    ["RS256", rsa.privateKey, "rsa"],
    ["PS256", rsa.privateKey, "rsa"],
  ];
  for (const [alg, privateKey, kid] of theirs) {
    it(`a ${alg} token made by jose's SignJWT validates with validateJwtSvid`, async () => {
      const token = await new SignJWT({ scope: "tools" })
        .setProtectedHeader({ alg, kid, typ: "JWT" })
        .setSubject(SUB)
        .setAudience([AUD, "spiffe://example.org/other"])
        .setIssuedAt(NOW_S)
        .setExpirationTime(NOW_S + 300)
        .sign(privateKey);
      const svid = validate(token);
      assert.equal(svid.id.toString(), SUB);
      assert.deepEqual(svid.audience, [AUD, "spiffe://example.org/other"]);
      assert.equal(svid.claims.scope, "tools");
      // And one jose signed with a key the bundle does not hold is refused.
      const forged = await new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: "p256", typ: "JWT" })
        .setSubject(SUB)
        .setAudience(AUD)
        .setExpirationTime(NOW_S + 300)
        .sign(stranger.privateKey);
      expectCode(() => validate(forged), ErrorCodes.JWT_SIGNATURE_INVALID);
    });
  }

  it("jose also refuses the algorithm-confusion tokens this library refuses", async () => {
    await assert.rejects(jwtVerify(sign({ alg: "ES384" }, claims()), p256.publicKey, { currentDate: NOW }));
    await assert.rejects(jwtVerify(sign({}, claims(), stranger.privateKey), p256.publicKey, { currentDate: NOW }));
  });
});

describe("decodeCompact", () => {
  it("decodes a token without verifying it", () => {
    const decoded = decodeCompact<{ sub: string }>(good, DEFAULT_ALGORITHMS);
    assert.equal(decoded.payload.sub, SUB);
    assert.equal(decoded.header.kid, "p256");
    assert.equal(decoded.signingInput, `${goodH}.${goodP}`);
    assert.equal(decoded.signature.length, 64);
  });

  it("an empty allow-list allows nothing", () => {
    expectCode(() => decodeCompact(good, []), ErrorCodes.JWT_ALG_NOT_ALLOWED);
  });
});

describe("base64url strictness", () => {
  const refused: Array<[string, string]> = [
    ["padding", "QQ=="],
    ["single padding", "QUI="],
    ["whitespace inside", "QU JD"],
    ["trailing newline", "QUJD\n"],
    ["leading tab", "\tQUJD"],
    ["standard alphabet +", "+/8"],
    ["standard alphabet /", "QU/D"],
    ["non-alphabet char", "QU*D"],
    ["non-ASCII char", "QUJ\u00e9"],
    ["length 1 mod 4", "QUJDR"],
    ["single character", "Q"],
    ["non-canonical trailing bits (1 byte)", "QR"],
    ["non-canonical trailing bits (2 bytes)", "QUJ"],
    ["percent-encoded", "QU%4A"],
  ];
  for (const [name, text] of refused) {
    it(`refuses ${name}: ${JSON.stringify(text)}`, () => {
      assert.equal(b64uDecode(text), undefined);
    });
  }

  const accepted: Array<[string, string]> = [
    ["", ""],
    ["QQ", "A"],
    ["QUI", "AB"],
    ["QUJD", "ABC"],
    ["-_8", "\u00fb\u00ff"],
  ];
  for (const [text, latin1] of accepted) {
    it(`decodes ${JSON.stringify(text)}`, () => {
      assert.deepEqual(b64uDecode(text), Buffer.from(latin1, "latin1"));
    });
  }

  it("round-trips every length from 0 to 70 bytes", () => {
    for (let n = 0; n <= 70; n++) {
      const bytes = Buffer.alloc(n, 0).map((_, i) => (i * 37 + n * 11) & 0xff);
      const text = b64uEncode(bytes);
      assert.match(text, /^[A-Za-z0-9_-]*$/);
      assert.deepEqual(b64uDecode(text), Buffer.from(bytes));
    }
    assert.equal(b64uEncode("é"), "w6k");
  });
});
