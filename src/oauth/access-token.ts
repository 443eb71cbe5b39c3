/**
 * OAuth 2.0 access tokens in the JWT profile (RFC 9068): minted by this library's authorities
 * (`aztp serve`'s token endpoint, `Aztp.accessToken` on the embedded authority) and verified by
 * every resource server (a secured MCP server or the proxy) before a bearer call is admitted.
 *
 * One verifier, strict in the order jose's jwtVerify and RFC 9068 §4 give: decode with an
 * algorithm allow-list (no `none`, no HMAC: algorithm confusion is refused before any crypto) →
 * `typ` is `at+jwt` (a JWT-SVID or an ID token is not an access token, RFC 9068 §4 step 2) →
 * `iss` is a trusted issuer → `kid` resolves to that issuer's key → signature → the time window
 * with the shared clock tolerance → `aud` names this resource (RFC 8707) → `sub`, `client_id`,
 * `jti` present → the subject is not revoked (SPIFFE subjects) → scopes, checked apart
 * (`missingScopes`) because a missing scope is a 403, not a 401.
 *
 * Tokens of this library's own issuers are signed with the trust domain's JWT key, so a resource
 * server verifies them offline from the bundle it already holds; those of any other issuer are
 * verified with the keys its metadata names (oauth/issuer-keys.ts).
 */
import { randomUUID, type KeyObject } from "node:crypto";
import { VerifiedSignatures } from "../spiffe/verified-signatures.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { decodeCompact, signCompact, verifyDecoded, type DecodedJws, type JwsHeader } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS, type JwsAlgorithm } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { checkTimeWindow, type TimeWindow, type TimeWindowRule } from "../spiffe/time-window.js";
import { personClaimsOf, personId, type Person, type PersonClaims } from "../invocation/on-behalf-of.js";

/** RFC 9068 §2.1: the `typ` header of a JWT access token (`application/at+jwt`, short form). */
export const ACCESS_TOKEN_TYP = "at+jwt";
/** Minutes, as DESIGN §12 asks: a stolen bearer token works until it expires. */
export const DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 300;
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 3600;
/** The clock tolerance every AZTP verifier shares (invocation tokens use the same 30 s). */
export const ACCESS_TOKEN_LEEWAY_SECONDS = 30;

const WINDOW: TimeWindow = {
  leewaySeconds: ACCESS_TOKEN_LEEWAY_SECONDS,
  expRequired: true,
  iatRequired: true,
  integerDates: false,
};

const TIME_CODES: Readonly<Record<TimeWindowRule, ErrorCode>> = {
  claim_missing: ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING,
  claim_invalid: ErrorCodes.OAUTH_TOKEN_MALFORMED,
  lifetime: ErrorCodes.OAUTH_TOKEN_EXPIRED,
  expired: ErrorCodes.OAUTH_TOKEN_EXPIRED,
  not_yet_valid: ErrorCodes.OAUTH_TOKEN_NOT_YET_VALID,
  too_old: ErrorCodes.OAUTH_TOKEN_EXPIRED,
};

/** A scope token as RFC 6749 §3.3 allows it: printable ASCII without space, `"` or `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export function isScopeToken(s: unknown): s is string {
  return typeof s === "string" && SCOPE_TOKEN.test(s);
}

/** Splits a `scope` claim or parameter; undefined when it is not a space-separated list of scope tokens. */
export function parseScope(value: unknown): string[] | undefined {
  if (value === undefined || value === "") return [];
  if (typeof value !== "string") return undefined;
  const parts = value.split(" ");
  return parts.every(isScopeToken) ? [...new Set(parts)] : undefined;
}

/**
 * A person a token is for (authorization code flow, the login delegated to their OpenID
 * Provider): `sub` is their subject there and `sub_id` (RFC 9493 `iss_sub`) names that
 * provider, as an on-behalf-of token does, so the subject is never read as this issuer's own.
 */
export interface PersonSubject {
  issuer: string;
  subject: string;
  /** The claims policy reads (`aztp:person.<claim>`); `email` only when the provider's configuration lets it be recorded. */
  claims?: PersonClaims;
}

export interface MintAccessTokenOptions {
  /** The authorization server's issuer identifier (its RFC 8414 `issuer`). */
  issuer: string;
  /** Who the token is for: a SPIFFE ID (a workload), or a person (then `clientId` names the host's client). */
  subject: SpiffeId | string | PersonSubject;
  /** RFC 9068 `client_id`; a workload's is its SPIFFE ID, the default; required for a person. */
  clientId?: string;
  /** The resource (RFC 8707) the token is good for: its `aud`. */
  audience: string;
  scopes: readonly string[];
  /** The trust domain's JWT signing key and its key ID as published in the bundle. */
  key: KeyObject;
  kid: string;
  ttlSeconds?: number;
  /** The token never outlives this (the subject's SVID, a parent's lifetime cap). */
  notAfter?: Date;
  now?: Date;
}

/** Signs an RFC 9068 access token. Throws ERR_ARGUMENT_INVALID on options no verifier would accept. */
export function mintAccessToken(options: MintAccessTokenOptions): string {
  const person = isPersonSubject(options.subject) ? checkedPerson(options.subject) : undefined;
  const sub =
    person !== undefined
      ? undefined
      : typeof options.subject === "string"
        ? SpiffeId.parse(options.subject)
        : (options.subject as SpiffeId);
  if (person !== undefined && (typeof options.clientId !== "string" || options.clientId.length === 0))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "a person's access token names the client it was issued to");
  if (typeof options.issuer !== "string" || options.issuer.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an access token needs an issuer");
  if (typeof options.audience !== "string" || options.audience.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an access token needs a resource (its aud)");
  if (!options.kid) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an access token needs a kid");
  const bad = options.scopes.find((s) => !isScopeToken(s));
  if (bad !== undefined)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `not a scope token: ${JSON.stringify(bad).slice(0, 60)}`);
  const ttl = options.ttlSeconds ?? DEFAULT_ACCESS_TOKEN_TTL_SECONDS;
  if (!Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_ACCESS_TOKEN_TTL_SECONDS)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `an access token lives between 1 and ${MAX_ACCESS_TOKEN_TTL_SECONDS} s, not ${ttl}`,
    );
  const iat = Math.floor((options.now ?? new Date()).getTime() / 1000);
  let exp = iat + Math.floor(ttl);
  if (options.notAfter !== undefined) exp = Math.min(exp, Math.floor(options.notAfter.getTime() / 1000));
  if (exp <= iat) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "the access token's lifetime cap has passed");
  const claims: Record<string, unknown> =
    person !== undefined
      ? {
          iss: options.issuer,
          sub: person.subject,
          sub_id: { format: "iss_sub", iss: person.issuer, sub: person.subject },
          client_id: options.clientId,
          aud: options.audience,
          iat,
          exp,
          jti: randomUUID(),
          ...personClaimsOf({ ...(person.claims ?? {}) }),
        }
      : {
          iss: options.issuer,
          sub: (sub as SpiffeId).toString(),
          client_id: options.clientId ?? (sub as SpiffeId).toString(),
          aud: options.audience,
          iat,
          exp,
          jti: randomUUID(),
        };
  if (options.scopes.length > 0) claims.scope = [...new Set(options.scopes)].join(" ");
  return signCompact({ typ: ACCESS_TOKEN_TYP, kid: options.kid }, claims, options.key);
}

function isPersonSubject(v: unknown): v is PersonSubject {
  return typeof v === "object" && v !== null && !(v instanceof SpiffeId) && "issuer" in v && "subject" in v;
}

/** A person's provider is an http(s) URL without `#` (their ID is `<iss>#<sub>`), never a SPIFFE ID. */
function checkedPerson(p: PersonSubject): PersonSubject {
  if (!isPersonIssuer(p.issuer))
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `not a person's provider: ${JSON.stringify(p.issuer).slice(0, 80)}`,
    );
  if (typeof p.subject !== "string" || p.subject.length === 0 || p.subject.length > 255)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "a person's subject is 1 to 255 characters");
  return p;
}

function isPersonIssuer(v: unknown): v is string {
  return typeof v === "string" && /^https?:\/\/[^#\s]+$/i.test(v) && v.length <= 2048;
}

/**
 * The person an access token of this library's issuer names (`sub_id` in the `iss_sub` form,
 * equal to `sub`), or undefined when it names none; throws when `sub_id` is there but malformed.
 */
function personOfClaims(payload: Record<string, unknown>): Person | undefined {
  const subId = payload.sub_id;
  if (subId === undefined) return undefined;
  const s = subId as Record<string, unknown>;
  if (
    typeof subId !== "object" ||
    subId === null ||
    s.format !== "iss_sub" ||
    !isPersonIssuer(s.iss) ||
    typeof s.sub !== "string" ||
    s.sub !== payload.sub
  )
    fail(
      ErrorCodes.OAUTH_TOKEN_CLAIM_INVALID,
      "sub_id must be { format: iss_sub, iss: <https URL>, sub: <sub> }",
      "sub_id",
    );
  return { issuer: s.iss, subject: s.sub, id: personId(s.iss, s.sub), claims: personClaimsOf(payload) };
}

/** Where the keys of one trusted issuer come from. */
export type TrustedIssuer =
  | {
      /** An issuer of this library: tokens signed with a trust domain's JWT key, checked offline. */
      issuer: string;
      bundles: BundleSource;
      /** Trust domains whose workloads this issuer speaks for: a token's `sub` must be in one. */
      trustDomains: readonly string[];
    }
  | {
      /** Any other issuer: its keys by `kid`, e.g. an `IssuerKeys` from oauth/issuer-keys.ts. */
      issuer: string;
      keys: AccessTokenKeySource;
    };

export interface AccessTokenKeySource {
  /** The issuer's public key with `kid`; may fetch (a key rotated in since the last fetch). */
  keyFor(kid: string | undefined, alg: JwsAlgorithm): Promise<KeyObject | undefined> | KeyObject | undefined;
}

// The cache of checked signatures lives with the JWS code (spiffe/), which on-behalf-of tokens share.
export { VerifiedSignatures };

export interface VerifyAccessTokenOptions {
  /** This resource server's resource identifier: `aud` must name it (RFC 8707). */
  resource: string;
  issuers: readonly TrustedIssuer[];
  /** Whether a SPIFFE subject is revoked (fail closed: it may throw). */
  isRevoked?: (spiffeId: string) => boolean;
  time?: Date;
  leewaySeconds?: number;
  algorithms?: readonly JwsAlgorithm[];
  /** Signatures checked before, to skip checking again (a resource server keeps one). */
  signatures?: VerifiedSignatures;
}

export interface AccessToken {
  issuer: string;
  /** `sub` as the issuer wrote it. */
  subject: string;
  /** The subject as a SPIFFE ID, when it is one (a workload's token). */
  spiffeId?: SpiffeId;
  /**
   * The person a token of this library's issuer names (`sub_id`, iss_sub): someone signed in at
   * their OpenID Provider through the authorization code flow, `clientId` the host's client.
   */
  person?: Person;
  clientId: string;
  audience: string[];
  scopes: string[];
  jti: string;
  issuedAt: Date;
  expiry: Date;
  header: JwsHeader;
  claims: Record<string, unknown>;
}

function fail(code: ErrorCode, message: string, rule?: string): never {
  throw new AztpError(code, `access token: ${message}`, rule === undefined ? undefined : { rule });
}

function quoted(v: unknown): string {
  return JSON.stringify(v)?.slice(0, 80) ?? String(v);
}

function audiencesOf(aud: unknown): string[] | undefined {
  if (typeof aud === "string") return [aud];
  if (Array.isArray(aud) && aud.length > 0 && aud.every((a) => typeof a === "string")) return aud as string[];
  return undefined;
}

async function keyOf(
  trusted: TrustedIssuer,
  decoded: DecodedJws,
  sub: unknown,
): Promise<{ key: KeyObject | undefined; spiffeId?: SpiffeId; person?: Person }> {
  const kid = decoded.header.kid;
  if ("bundles" in trusted && decoded.payload.sub_id !== undefined) {
    // A person signed in through this issuer: signed with the JWT key of one of the trust
    // domains it serves (the one whose providers vouched for them).
    const person = personOfClaims(decoded.payload);
    if (typeof kid !== "string" || kid.length === 0)
      fail(ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN, "header has no kid", "kid");
    for (const td of trusted.trustDomains) {
      const key = trusted.bundles.getBundleForTrustDomain(td)?.jwtAuthorities.get(kid);
      if (key !== undefined) return person === undefined ? { key } : { key, person };
    }
    return { key: undefined };
  }
  if ("bundles" in trusted) {
    // A trust domain's JWT key speaks only for that trust domain's workloads, and only the
    // trust domains this issuer serves: a federated domain's key cannot mint for this issuer.
    let id: SpiffeId;
    try {
      if (typeof sub !== "string") throw new Error("not a string");
      id = SpiffeId.parse(sub);
    } catch {
      fail(ErrorCodes.OAUTH_TOKEN_CLAIM_INVALID, `sub ${quoted(sub)} is not a SPIFFE ID`, "sub");
    }
    if (!trusted.trustDomains.includes(id.trustDomain))
      fail(
        ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED,
        `issuer ${quoted(trusted.issuer)} does not speak for trust domain ${id.trustDomain}`,
        "trust_domain",
      );
    if (typeof kid !== "string" || kid.length === 0)
      fail(ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN, "header has no kid", "kid");
    const bundle = trusted.bundles.getBundleForTrustDomain(id.trustDomain);
    return { key: bundle?.jwtAuthorities.get(kid), spiffeId: id };
  }
  const key = await trusted.keys.keyFor(typeof kid === "string" ? kid : undefined, decoded.header.alg);
  let spiffeId: SpiffeId | undefined;
  if (typeof sub === "string" && sub.startsWith("spiffe://")) {
    try {
      spiffeId = SpiffeId.parse(sub);
    } catch {
      spiffeId = undefined;
    }
  }
  return spiffeId === undefined ? { key } : { key, spiffeId };
}

/**
 * Verifies an access token for `options.resource`. Every failure is an AztpError whose code
 * names the check (ERR_OAUTH_TOKEN_*); scopes are left to `missingScopes`.
 */
export async function verifyAccessToken(token: string, options: VerifyAccessTokenOptions): Promise<AccessToken> {
  let decoded: DecodedJws;
  try {
    decoded = decodeCompact(token, options.algorithms ?? DEFAULT_ALGORITHMS);
  } catch (e) {
    if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED)
      fail(ErrorCodes.OAUTH_TOKEN_ALG_NOT_ALLOWED, e.message, "alg");
    fail(ErrorCodes.OAUTH_TOKEN_MALFORMED, e instanceof Error ? e.message : "not a JWS", "format");
  }
  const { header, payload } = decoded;
  // RFC 9068 §4: "application/at+jwt" may also be written in full; compared case-insensitively.
  const typ = typeof header.typ === "string" ? header.typ.toLowerCase() : header.typ;
  if (typ !== ACCESS_TOKEN_TYP && typ !== `application/${ACCESS_TOKEN_TYP}`)
    fail(ErrorCodes.OAUTH_TOKEN_TYP_INVALID, `typ must be at+jwt, got ${quoted(header.typ)}`, "typ");

  const iss = payload.iss;
  if (typeof iss !== "string" || iss.length === 0) fail(ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING, "no iss", "iss");
  const trusted = options.issuers.find((t) => t.issuer === iss);
  if (trusted === undefined)
    fail(ErrorCodes.OAUTH_TOKEN_ISSUER_UNTRUSTED, `issuer ${quoted(iss)} is not trusted`, "iss");

  const { key, spiffeId, person } = await keyOf(trusted, decoded, payload.sub);
  if (key === undefined)
    fail(ErrorCodes.OAUTH_TOKEN_KID_UNKNOWN, `issuer ${quoted(iss)} has no key ${quoted(header.kid)}`, "kid");
  const seen = options.signatures;
  if (seen === undefined || !seen.has(token, key)) {
    if (!verifyDecoded(decoded, key))
      fail(ErrorCodes.OAUTH_TOKEN_SIGNATURE_INVALID, "signature does not verify with the issuer's key", "signature");
    seen?.add(token, key);
  }

  const now = (options.time ?? new Date()).getTime() / 1000;
  const window = options.leewaySeconds === undefined ? WINDOW : { ...WINDOW, leewaySeconds: options.leewaySeconds };
  const late = checkTimeWindow(payload, now, window);
  if (late !== undefined) fail(TIME_CODES[late.rule], `token ${late.message}`, late.rule);

  const audience = audiencesOf(payload.aud);
  if (audience === undefined) fail(ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING, "no aud", "aud");
  if (!audience.includes(options.resource))
    fail(
      ErrorCodes.OAUTH_TOKEN_AUDIENCE_MISMATCH,
      `aud ${quoted(payload.aud)} does not name this resource ${quoted(options.resource)}`,
      "aud",
    );
  const sub = payload.sub;
  if (typeof sub !== "string" || sub.length === 0) fail(ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING, "no sub", "sub");
  const clientId = payload.client_id;
  if (typeof clientId !== "string" || clientId.length === 0)
    fail(ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING, "no client_id", "client_id");
  const jti = payload.jti;
  if (typeof jti !== "string" || jti.length === 0) fail(ErrorCodes.OAUTH_TOKEN_CLAIM_MISSING, "no jti", "jti");
  const scopes = parseScope(payload.scope);
  if (scopes === undefined) fail(ErrorCodes.OAUTH_TOKEN_CLAIM_INVALID, "scope is not a list of scope tokens", "scope");

  if (spiffeId !== undefined && options.isRevoked?.(spiffeId.toString()) === true)
    fail(ErrorCodes.OAUTH_TOKEN_REVOKED, `subject ${spiffeId.toString()} is revoked`, "revoked");

  return {
    issuer: iss,
    subject: sub,
    ...(spiffeId !== undefined ? { spiffeId } : {}),
    ...(person !== undefined ? { person } : {}),
    clientId,
    audience,
    scopes,
    jti,
    issuedAt: new Date((payload.iat as number) * 1000),
    expiry: new Date((payload.exp as number) * 1000),
    header,
    claims: payload,
  };
}

/** The scopes of `required` that `token` lacks, in the order given (empty: it has them all). */
export function missingScopes(token: Pick<AccessToken, "scopes">, required: readonly string[]): string[] {
  return required.filter((s) => !token.scopes.includes(s));
}
