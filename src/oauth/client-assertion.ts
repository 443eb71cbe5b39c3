/**
 * Client assertions: how a workload authenticates to the token endpoint with its SVID and no
 * secret. Two forms, one verifier:
 *
 * - `private_key_jwt` (RFC 7523 §2.2, `client_assertion_type=...:jwt-bearer`), signed by the key
 *   of one of the client's X.509-SVIDs. The MCP SDK's PrivateKeyJwtProvider names no key (no
 *   `kid`, no `x5c`): the key is found from the subject, among the keys of its unexpired,
 *   unrevoked SVIDs as its identity record holds them. A signer may instead carry its X.509-SVID
 *   chain in `x5c`, which is then verified against the bundle.
 * - A JWT-SVID as the assertion (draft-ietf-oauth-spiffe-client-auth §3.1,
 *   `...:jwt-spiffe`; also accepted under `jwt-bearer`, as the SDK's StaticPrivateKeyJwtProvider
 *   sends a given assertion), validated with `validateJwtSvid` against the bundle.
 *
 * The SPIFFE ID is the client_id. Order of checks, first failure wins: the form (type, compact
 * JWS, algorithm allow-list: no `none`, no HMAC) → `typ` → `sub` a SPIFFE ID, equal to a
 * `client_id` sent → its trust domain held here → the key and the signature → `iss` → the client
 * known, active, not revoked (nor the SVID whose key signed) → the time window (exp required, a
 * lifetime of at most MAX_ASSERTION_LIFETIME_SECONDS) → `aud` exactly one value naming this
 * server (its issuer or its token endpoint: RFC 7523bis asks for the issuer alone, the MCP SDK
 * sends the issuer, RFC 7523 and the SPIFFE draft's example the token endpoint) → `jti`.
 *
 * Assertions are single-use: `spendClientAssertion` remembers the jti in a replay cache shared
 * by the replicas, and is called last, once every other check of the request has passed, so a
 * refused request never burns an assertion.
 */
import { createPublicKey, randomUUID, type JsonWebKeyInput, type KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { ReplayCache } from "../invocation/replay.js";
import { sha256Hex } from "../sha256.js";
import type { BundleSource } from "../spiffe/bundle.js";
import type { Certificate } from "../spiffe/certificate.js";
import { decodeCompact, signCompact, verifyDecoded, type DecodedJws } from "../spiffe/jws.js";
import { validateJwtSvid } from "../spiffe/jwtsvid.js";
import { algorithmForKey, DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { checkTimeWindow, type TimeWindow, type TimeWindowRule } from "../spiffe/time-window.js";
import { X509SvidVerifier } from "../spiffe/x509svid.js";
import { ACCESS_TOKEN_LEEWAY_SECONDS } from "./access-token.js";

/** RFC 7523 §2.2: a JWT (here signed with an SVID key, or a JWT-SVID) authenticates the client. */
export const JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** draft-ietf-oauth-spiffe-client-auth §3.1: the assertion is a JWT-SVID. */
export const JWT_SPIFFE_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/**
 * An assertion proves possession now, for one request: one that lives longer is refused. The MCP
 * SDK signs for 300 s, and JWT-SVIDs live 300 s by default.
 */
export const MAX_ASSERTION_LIFETIME_SECONDS = 600;
/** What a client signs by default: long enough for one request and a retry. */
export const DEFAULT_ASSERTION_TTL_SECONDS = 60;
const MAX_JTI_LENGTH = 256;
/** An X.509-SVID chain is a leaf and an intermediate or two. */
const MAX_X5C = 4;

export type ClientAuthMethod = "private_key_jwt" | "x5c" | "jwt_svid";

/** What the verifier needs to know of a client: its identity record, as the authority holds it now. */
export interface ClientRecord {
  readonly status: "active" | "revoked";
  readonly svidKeys?: ReadonlyArray<{ readonly serial: string; readonly notAfter: string; readonly jwk: object }>;
}

export interface ClientDirectory {
  /** The client's record, or undefined when the authority has no such identity. */
  client(spiffeId: string): ClientRecord | undefined;
  /** The identity, an ancestor, or the SVID `serial` is revoked. */
  isRevoked(spiffeId: string, serial?: string): boolean;
}

export interface ClientAssertionVerifierOptions {
  /** The trust bundles of the trust domains this server holds (JWT-SVIDs, x5c chains). */
  bundles: BundleSource;
  /** The trust domains whose workloads this server authenticates. */
  trustDomains: () => readonly string[];
  clients: ClientDirectory;
  /** Every value an assertion's `aud` may be: this server's issuer identifier and its token endpoint URL. */
  audiences: () => readonly string[];
  leewaySeconds?: number;
}

export interface ClientAssertionInput {
  /** `client_assertion_type` as sent. */
  assertionType?: string | undefined;
  /** `client_assertion` as sent. */
  assertion?: string | undefined;
  /** `client_id` as sent: when present, it must name the assertion's subject. */
  clientId?: string | undefined;
}

export interface VerifiedClientAssertion {
  /** The authenticated client: its SPIFFE ID is its client_id. */
  clientId: SpiffeId;
  method: ClientAuthMethod;
  jti: string;
  expiresAt: Date;
  /**
   * The public key that signed (an x5c leaf's, or one of the client's recorded SVID keys): what
   * a token exchange binds its token to. None for a JWT-SVID, which the trust domain signed.
   */
  key?: KeyObject;
}

function fail(code: ErrorCode, message: string, rule?: string): never {
  throw new AztpError(code, `client assertion: ${message}`, rule === undefined ? undefined : { rule });
}

function quoted(v: unknown): string {
  return JSON.stringify(v)?.slice(0, 80) ?? String(v);
}

const TIME_CODES: Readonly<Record<TimeWindowRule, ErrorCode>> = {
  claim_missing: ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING,
  claim_invalid: ErrorCodes.OAUTH_ASSERTION_MALFORMED,
  lifetime: ErrorCodes.OAUTH_ASSERTION_EXPIRED,
  expired: ErrorCodes.OAUTH_ASSERTION_EXPIRED,
  not_yet_valid: ErrorCodes.OAUTH_ASSERTION_NOT_YET_VALID,
  too_old: ErrorCodes.OAUTH_ASSERTION_EXPIRED,
};

/** validateJwtSvid's codes, as the assertion codes a token endpoint answers. */
const JWT_SVID_CODES: Readonly<Record<string, ErrorCode>> = {
  [ErrorCodes.JWT_MALFORMED]: ErrorCodes.OAUTH_ASSERTION_MALFORMED,
  [ErrorCodes.JWT_ALG_NOT_ALLOWED]: ErrorCodes.OAUTH_ASSERTION_ALG_NOT_ALLOWED,
  [ErrorCodes.JWT_TYP_INVALID]: ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
  [ErrorCodes.JWT_CLAIM_MISSING]: ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING,
  [ErrorCodes.JWT_SUBJECT_INVALID]: ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
  [ErrorCodes.JWT_KID_MISSING]: ErrorCodes.OAUTH_ASSERTION_UNTRUSTED,
  [ErrorCodes.JWT_BUNDLE_MISSING]: ErrorCodes.OAUTH_ASSERTION_UNTRUSTED,
  [ErrorCodes.JWT_KID_UNKNOWN]: ErrorCodes.OAUTH_ASSERTION_UNTRUSTED,
  [ErrorCodes.JWT_SIGNATURE_INVALID]: ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
  [ErrorCodes.JWT_EXPIRED]: ErrorCodes.OAUTH_ASSERTION_EXPIRED,
  [ErrorCodes.JWT_NOT_YET_VALID]: ErrorCodes.OAUTH_ASSERTION_NOT_YET_VALID,
  [ErrorCodes.JWT_AUDIENCE_MISMATCH]: ErrorCodes.OAUTH_ASSERTION_AUDIENCE_MISMATCH,
};

/** `typ` values an assertion may carry: none, a plain JWT, or RFC 7523bis' explicit type. */
const ASSERTION_TYPS = new Set(["jwt", "jose", "client-authentication+jwt", "application/client-authentication+jwt"]);

/**
 * Public keys of recorded SVIDs, parsed once: keyed by the SVID's serial (128 random bits, one
 * key for ever) and the key's own coordinates, so a record copied anew on every read still hits.
 */
const recordedKeys = new LRUCache<string, { key: KeyObject | null }>({ max: 10_000 });

function recordedKey(serial: string, jwk: object): KeyObject | undefined {
  const j = jwk as { x?: unknown; n?: unknown };
  const id = `${serial}:${String(j.x ?? j.n)}`;
  let hit = recordedKeys.get(id);
  if (hit === undefined) {
    try {
      hit = { key: createPublicKey({ key: jwk as JsonWebKeyInput["key"], format: "jwk" }) };
    } catch {
      hit = { key: null };
    }
    recordedKeys.set(id, hit);
  }
  return hit.key ?? undefined;
}

export class ClientAssertionVerifier {
  readonly #o: ClientAssertionVerifierOptions;
  readonly #x509: X509SvidVerifier;
  readonly #window: TimeWindow;

  constructor(options: ClientAssertionVerifierOptions) {
    this.#o = options;
    this.#x509 = new X509SvidVerifier(options.bundles);
    this.#window = {
      leewaySeconds: options.leewaySeconds ?? ACCESS_TOKEN_LEEWAY_SECONDS,
      maxLifetimeSeconds: MAX_ASSERTION_LIFETIME_SECONDS,
      expRequired: true,
      iatRequired: false,
      integerDates: false,
    };
  }

  /** Authenticates a token request's client. Every failure is an AztpError whose code names the check. */
  verify(input: ClientAssertionInput, now = new Date()): VerifiedClientAssertion {
    const { assertionType, assertion } = input;
    if (assertion === undefined && assertionType === undefined)
      fail(ErrorCodes.OAUTH_CLIENT_AUTH_MISSING, "the request carries no client_assertion: authenticate with the SVID");
    if (assertion === undefined || assertion === "" || assertionType === undefined)
      fail(
        ErrorCodes.OAUTH_REQUEST_INVALID,
        "client_assertion and client_assertion_type go together: send both",
        assertion === undefined || assertion === "" ? "client_assertion" : "client_assertion_type",
      );
    if (assertionType !== JWT_BEARER_ASSERTION_TYPE && assertionType !== JWT_SPIFFE_ASSERTION_TYPE)
      fail(
        ErrorCodes.OAUTH_ASSERTION_TYPE_UNSUPPORTED,
        `client_assertion_type ${quoted(assertionType)} is not ${JWT_BEARER_ASSERTION_TYPE} or ${JWT_SPIFFE_ASSERTION_TYPE}`,
      );

    let decoded: DecodedJws;
    try {
      decoded = decodeCompact(assertion, DEFAULT_ALGORITHMS);
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED)
        fail(ErrorCodes.OAUTH_ASSERTION_ALG_NOT_ALLOWED, e.message, "alg");
      fail(ErrorCodes.OAUTH_ASSERTION_MALFORMED, e instanceof Error ? e.message : "not a JWS", "format");
    }
    const { header, payload } = decoded;
    const typ = header.typ;
    if (typ !== undefined && (typeof typ !== "string" || !ASSERTION_TYPS.has(typ.toLowerCase())))
      fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID, `typ ${quoted(typ)} is not a client assertion's`, "typ");

    const id = this.#subject(payload.sub);
    if (input.clientId !== undefined && input.clientId !== "") {
      let named: string | undefined;
      try {
        named = SpiffeId.parse(input.clientId).toString();
      } catch {
        named = undefined;
      }
      if (named !== id.toString())
        fail(
          ErrorCodes.OAUTH_CLIENT_ID_MISMATCH,
          `client_id ${quoted(input.clientId)} is not the assertion's subject ${id.toString()}`,
          "client_id",
        );
    }
    if (!this.#o.trustDomains().includes(id.trustDomain))
      fail(
        ErrorCodes.OAUTH_ASSERTION_UNTRUSTED,
        `this server holds no trust domain ${id.trustDomain}: it authenticates only its own workloads`,
        "trust_domain",
      );

    // The key: an x5c chain, a JWT-SVID (the trust domain's JWT key by kid), or the client's own SVID keys.
    const bundle = this.#o.bundles.getBundleForTrustDomain(id.trustDomain);
    const isJwtSvid =
      assertionType === JWT_SPIFFE_ASSERTION_TYPE ||
      (header.x5c === undefined && typeof header.kid === "string" && bundle?.jwtAuthorities.has(header.kid) === true);
    const record = this.#o.clients.client(id.toString());
    let method: ClientAuthMethod;
    let signed: { serial: string; key: KeyObject } | undefined;
    if (header.x5c !== undefined && !isJwtSvid) {
      method = "x5c";
      signed = this.#verifyX5c(decoded, id, now);
    } else if (isJwtSvid) {
      method = "jwt_svid";
      this.#verifyJwtSvid(assertion, now);
    } else {
      method = "private_key_jwt";
      signed = this.#verifyRecordedKey(decoded, id, record, now);
    }
    const serial = signed?.serial;

    // RFC 7523 §3: iss is the client. A JWT-SVID's iss, when it has one, names its issuer instead.
    if (method !== "jwt_svid") {
      if (payload.iss === undefined) fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING, "no iss", "iss");
      let iss: string | undefined;
      try {
        iss = typeof payload.iss === "string" ? SpiffeId.parse(payload.iss).toString() : undefined;
      } catch {
        iss = undefined;
      }
      if (iss !== id.toString())
        fail(
          ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
          `iss ${quoted(payload.iss)} is not the client ${id.toString()} (RFC 7523: iss and sub are the client_id)`,
          "iss",
        );
    }

    if (record === undefined)
      fail(ErrorCodes.OAUTH_CLIENT_UNKNOWN, `${id.toString()} is no identity of this authority`, "sub");
    if (record.status !== "active" || this.#o.clients.isRevoked(id.toString(), serial))
      fail(
        ErrorCodes.OAUTH_CLIENT_REVOKED,
        `${id.toString()}${serial !== undefined ? ` (or the SVID ${serial} that signed)` : ""} is revoked`,
        "revoked",
      );

    const late = checkTimeWindow(payload, now.getTime() / 1000, this.#window);
    if (late !== undefined) fail(TIME_CODES[late.rule], `assertion ${late.message}`, late.rule);
    const exp = payload.exp as number;
    // Without iat the lifetime rule has nothing to measure from: bound what is left instead.
    if (exp - now.getTime() / 1000 > MAX_ASSERTION_LIFETIME_SECONDS + this.#window.leewaySeconds)
      fail(
        ErrorCodes.OAUTH_ASSERTION_EXPIRED,
        `assertion lives until ${new Date(exp * 1000).toISOString()}; at most ${MAX_ASSERTION_LIFETIME_SECONDS} s is accepted`,
        "lifetime",
      );

    this.#checkAudience(payload.aud);
    const jti = payload.jti;
    if (jti === undefined)
      fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING, "no jti: assertions are single-use and need one", "jti");
    if (typeof jti !== "string" || jti.length === 0 || jti.length > MAX_JTI_LENGTH)
      fail(
        ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
        `jti must be a string of 1 to ${MAX_JTI_LENGTH} characters`,
        "jti",
      );
    return {
      clientId: id,
      method,
      jti,
      expiresAt: new Date(exp * 1000),
      ...(signed !== undefined ? { key: signed.key } : {}),
    };
  }

  #subject(sub: unknown): SpiffeId {
    if (sub === undefined) fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING, "no sub", "sub");
    try {
      if (typeof sub !== "string") throw new Error("not a string");
      const id = SpiffeId.parse(sub);
      if (!id.isTrustDomainId) return id;
    } catch {
      // fall through
    }
    fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID, `sub ${quoted(sub)} is not a workload's SPIFFE ID`, "sub");
  }

  #checkAudience(aud: unknown): void {
    if (aud === undefined) fail(ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING, "no aud", "aud");
    const values = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : undefined;
    // One value only: an assertion addressed to several servers could be replayed by any of them.
    if (values === undefined || values.length !== 1 || !this.#o.audiences().includes(values[0] as string))
      fail(
        ErrorCodes.OAUTH_ASSERTION_AUDIENCE_MISMATCH,
        `aud ${quoted(aud)} is not exactly one of ${this.#o
          .audiences()
          .map((a) => quoted(a))
          .join(", ")}`,
        "aud",
      );
  }

  /** A JWT-SVID, by the one JWT-SVID validator, against the bundle of its subject's trust domain. */
  #verifyJwtSvid(token: string, now: Date): void {
    try {
      validateJwtSvid(token, this.#o.bundles, {
        audience: this.#o.audiences(),
        time: now,
        leewaySeconds: this.#window.leewaySeconds,
      });
    } catch (e) {
      if (!(e instanceof AztpError)) throw e;
      const code = JWT_SVID_CODES[e.code];
      if (code === undefined) throw e;
      fail(code, e.message, e.rule ?? e.code);
    }
  }

  /** The x5c chain to the bundle; its leaf names the subject and its key signed. Returns the leaf's serial and key. */
  #verifyX5c(decoded: DecodedJws, id: SpiffeId, now: Date): { serial: string; key: KeyObject } {
    const x5c = decoded.header.x5c;
    if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > MAX_X5C || !x5c.every((c) => typeof c === "string"))
      fail(ErrorCodes.OAUTH_ASSERTION_MALFORMED, `x5c must be an array of 1 to ${MAX_X5C} base64 certificates`, "x5c");
    let svid: ReturnType<X509SvidVerifier["verify"]>;
    try {
      svid = this.#x509.verify(x5c, { time: now });
    } catch (e) {
      if (!(e instanceof AztpError)) throw e;
      if (e.code === ErrorCodes.CERT_MALFORMED) fail(ErrorCodes.OAUTH_ASSERTION_MALFORMED, e.message, "x5c");
      fail(ErrorCodes.OAUTH_ASSERTION_UNTRUSTED, `x5c: ${e.message}`, e.code);
    }
    if (svid.id.toString() !== id.toString())
      fail(
        ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
        `sub ${id.toString()} is not the x5c leaf's SPIFFE ID ${svid.id.toString()}`,
        "sub",
      );
    if (!verifyDecoded(decoded, svid.leafKey))
      fail(
        ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
        "the x5c leaf's key does not verify the signature",
        "signature",
      );
    return { serial: (svid.chain[0] as Certificate).serialNumber, key: svid.leafKey };
  }

  /**
   * private_key_jwt without a key named: the keys of the client's unexpired SVIDs, as its record
   * holds them. Returns the serial and key of the SVID whose key verified.
   */
  #verifyRecordedKey(
    decoded: DecodedJws,
    id: SpiffeId,
    record: ClientRecord | undefined,
    now: Date,
  ): { serial: string; key: KeyObject } {
    if (record === undefined)
      fail(ErrorCodes.OAUTH_CLIENT_UNKNOWN, `${id.toString()} is no identity of this authority`, "sub");
    const live = (record.svidKeys ?? []).filter((k) => Date.parse(k.notAfter) > now.getTime());
    if (live.length === 0)
      fail(
        ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
        `${id.toString()} holds no unexpired X.509-SVID whose key could have signed`,
        "key",
      );
    for (const k of live) {
      const key = recordedKey(k.serial, k.jwk);
      if (key !== undefined && verifyDecoded(decoded, key)) return { serial: k.serial, key };
    }
    fail(
      ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
      `the signature verifies with the key of no unexpired X.509-SVID of ${id.toString()}`,
      "signature",
    );
  }
}

/**
 * The replay cache key of an assertion: from its claims, never its text (an ECDSA signature has
 * two spellings). The jti is hashed: it is the client's text, and a shared store keeps text (a
 * NUL, which PostgreSQL refuses, must not turn a replay check into an outage). A SPIFFE ID has no
 * space, so the two parts cannot run into each other.
 */
function replayKey(v: VerifiedClientAssertion): string {
  return `oauth-assertion ${v.clientId.toString()} ${sha256Hex(v.jti)}`;
}

/**
 * Spends a verified assertion: its jti is remembered until it expires (plus the clock tolerance),
 * in a cache shared by every replica, and a second use is ERR_OAUTH_ASSERTION_REPLAYED. Call it
 * last, when everything else about the request has passed.
 */
export async function spendClientAssertion(
  v: VerifiedClientAssertion,
  replay: ReplayCache,
  leewaySeconds = ACCESS_TOKEN_LEEWAY_SECONDS,
): Promise<void> {
  let fresh: boolean;
  try {
    fresh = await replay.checkAndRemember(replayKey(v), v.expiresAt.getTime() + leewaySeconds * 1000);
  } catch (e) {
    // A full in-memory cache refuses rather than forget a live entry (fail closed).
    if (e instanceof AztpError && e.code === ErrorCodes.INVOCATION_REPLAYED)
      fail(ErrorCodes.OAUTH_ASSERTION_REPLAYED, e.message, "cache_full");
    throw e;
  }
  if (!fresh)
    fail(
      ErrorCodes.OAUTH_ASSERTION_REPLAYED,
      `jti ${quoted(v.jti)} of ${v.clientId.toString()} was already spent: sign a fresh assertion for each token request`,
      "jti",
    );
}

export interface SignClientAssertionOptions {
  /** The client: its SPIFFE ID, the assertion's iss and sub. */
  clientId: SpiffeId | string;
  /** The authorization server's issuer identifier (or its token endpoint URL). */
  audience: string;
  /** The private key of the client's current X.509-SVID. */
  key: KeyObject;
  /** The SVID chain (base64 DER, leaf first), to carry in `x5c`; without it the server finds the key by subject. */
  x5c?: readonly string[];
  ttlSeconds?: number;
  now?: Date;
}

/** A `private_key_jwt` client assertion (RFC 7523 §3) signed with an SVID key, good for one token request. */
export function signClientAssertion(o: SignClientAssertionOptions): string {
  const id = (typeof o.clientId === "string" ? SpiffeId.parse(o.clientId) : o.clientId).toString();
  const ttl = o.ttlSeconds ?? DEFAULT_ASSERTION_TTL_SECONDS;
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_ASSERTION_LIFETIME_SECONDS)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `a client assertion lives between 1 and ${MAX_ASSERTION_LIFETIME_SECONDS} s, not ${ttl}`,
    );
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return signCompact(
    { alg: algorithmForKey(o.key), typ: "JWT", ...(o.x5c !== undefined ? { x5c: [...o.x5c] } : {}) },
    { iss: id, sub: id, aud: o.audience, iat, exp: iat + Math.floor(ttl), jti: randomUUID() },
    o.key,
  );
}
