/**
 * JWT-SVIDs per the JWT-SVID standard: mint and validate.
 *
 * Validation follows go-spiffe's jwtsvid.ParseAndValidate: algorithm allow-list (RS/ES/PS
 * 256-512; EdDSA, HS* and none are refused), `typ` absent or JWT/JOSE, `kid` required and
 * resolved in the bundle of the subject's trust domain, `sub` a valid SPIFFE ID, `exp`
 * required, `aud` required and matched any-of against a non-empty expected list, 60 s leeway.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { BundleSource } from "./bundle.js";
import { decodeCompact, signCompact, verifyDecoded, type JwsHeader } from "./jws.js";
import { DEFAULT_ALGORITHMS, type JwsAlgorithm } from "./keys.js";
import { SpiffeId } from "./spiffeid.js";
import { checkTimeWindow, type TimeWindow, type TimeWindowRule } from "./time-window.js";

export const DEFAULT_JWT_SVID_TTL_SECONDS = 300;
export const DEFAULT_LEEWAY_SECONDS = 60;

/** The JWT-SVID standard's time rules: exp required, no lifetime bound of its own, any NumericDate. */
const JWT_SVID_WINDOW: TimeWindow = {
  leewaySeconds: DEFAULT_LEEWAY_SECONDS,
  expRequired: true,
  iatRequired: false,
  integerDates: false,
};

const TIME_CODES: Readonly<Record<TimeWindowRule, ErrorCode>> = {
  claim_missing: ErrorCodes.JWT_CLAIM_MISSING,
  claim_invalid: ErrorCodes.JWT_MALFORMED,
  lifetime: ErrorCodes.JWT_EXPIRED,
  expired: ErrorCodes.JWT_EXPIRED,
  not_yet_valid: ErrorCodes.JWT_NOT_YET_VALID,
  too_old: ErrorCodes.JWT_EXPIRED,
};

export interface MintJwtSvidOptions {
  subject: SpiffeId | string;
  audience: string | readonly string[];
  /** The trust domain's JWT signing key and its key ID as published in the bundle. */
  key: KeyObject;
  kid: string;
  ttlSeconds?: number;
  now?: Date;
  /** Extra claims; they cannot override sub, aud, exp or iat. */
  claims?: Record<string, unknown>;
}

export function mintJwtSvid(options: MintJwtSvidOptions): string {
  const sub = typeof options.subject === "string" ? SpiffeId.parse(options.subject) : options.subject;
  const aud = typeof options.audience === "string" ? [options.audience] : [...options.audience];
  if (aud.length === 0 || aud.some((a) => typeof a !== "string" || a.length === 0)) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "a JWT-SVID needs at least one non-empty audience");
  }
  if (!options.kid) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "a JWT-SVID needs a kid");
  const ttl = options.ttlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS;
  if (!Number.isFinite(ttl) || ttl <= 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "ttlSeconds must be positive");
  const iat = Math.floor((options.now ?? new Date()).getTime() / 1000);
  return signCompact(
    { typ: "JWT", kid: options.kid },
    { ...options.claims, sub: sub.toString(), aud: aud.length === 1 ? aud[0] : aud, iat, exp: iat + Math.floor(ttl) },
    options.key,
  );
}

export interface ValidateJwtSvidOptions {
  /** Expected audiences: the token must name at least one of them. Must be non-empty. */
  audience: string | readonly string[];
  time?: Date;
  leewaySeconds?: number;
  algorithms?: readonly JwsAlgorithm[];
}

export interface JwtSvid {
  id: SpiffeId;
  audience: string[];
  expiry: Date;
  issuedAt?: Date;
  header: JwsHeader;
  claims: Record<string, unknown>;
  token: string;
}

function jwtError(code: ErrorCode, message: string, rule?: string): never {
  throw new AztpError(code, `invalid JWT-SVID: ${message}`, rule === undefined ? undefined : { rule });
}

export function validateJwtSvid(token: string, source: BundleSource, options: ValidateJwtSvidOptions): JwtSvid {
  const expected = typeof options.audience === "string" ? [options.audience] : [...(options.audience ?? [])];
  if (expected.length === 0) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "validateJwtSvid needs a non-empty list of expected audiences");
  }
  const decoded = decodeCompact(token, options.algorithms ?? DEFAULT_ALGORITHMS);
  const { header, payload } = decoded;
  if (header.typ !== undefined && header.typ !== "JWT" && header.typ !== "JOSE") {
    jwtError(ErrorCodes.JWT_TYP_INVALID, `typ must be JWT or JOSE, got ${JSON.stringify(header.typ).slice(0, 40)}`);
  }
  if (typeof header.kid !== "string" || header.kid.length === 0)
    jwtError(ErrorCodes.JWT_KID_MISSING, "token header has no kid");

  if (payload.sub === undefined) jwtError(ErrorCodes.JWT_CLAIM_MISSING, "token has no sub claim");
  let id: SpiffeId;
  try {
    if (typeof payload.sub !== "string") throw new Error("not a string");
    id = SpiffeId.parse(payload.sub);
  } catch {
    jwtError(ErrorCodes.JWT_SUBJECT_INVALID, "sub is not a valid SPIFFE ID");
  }

  const bundle = source.getBundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) jwtError(ErrorCodes.JWT_BUNDLE_MISSING, `no bundle for trust domain ${id.trustDomain}`);
  const key = bundle.jwtAuthorities.get(header.kid);
  if (key === undefined)
    jwtError(
      ErrorCodes.JWT_KID_UNKNOWN,
      `no JWT authority with kid ${JSON.stringify(header.kid).slice(0, 80)} in trust domain ${id.trustDomain}`,
    );
  if (!verifyDecoded(decoded, key))
    jwtError(ErrorCodes.JWT_SIGNATURE_INVALID, "signature does not verify with the bundle's key");

  const now = (options.time ?? new Date()).getTime() / 1000;
  const window =
    options.leewaySeconds === undefined
      ? JWT_SVID_WINDOW
      : { ...JWT_SVID_WINDOW, leewaySeconds: options.leewaySeconds };
  const late = checkTimeWindow(payload, now, window);
  if (late !== undefined) jwtError(TIME_CODES[late.rule], `token ${late.message}`, late.rule);

  const aud = payload.aud;
  const audiences =
    typeof aud === "string"
      ? [aud]
      : Array.isArray(aud) && aud.every((a) => typeof a === "string")
        ? (aud as string[])
        : undefined;
  if (audiences === undefined || audiences.length === 0)
    jwtError(ErrorCodes.JWT_CLAIM_MISSING, "token has no aud claim");
  if (!audiences.some((a) => expected.includes(a))) {
    jwtError(
      ErrorCodes.JWT_AUDIENCE_MISMATCH,
      `audience ${JSON.stringify(audiences).slice(0, 200)} does not include any of the expected ${JSON.stringify(expected).slice(0, 200)}`,
    );
  }

  return {
    id,
    audience: audiences,
    expiry: new Date((payload.exp as number) * 1000),
    ...(typeof payload.iat === "number" ? { issuedAt: new Date(payload.iat * 1000) } : {}),
    header,
    claims: payload,
    token,
  };
}
