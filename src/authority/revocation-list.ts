/**
 * The authority's signed revocation list, checked by someone who holds only the trust bundle:
 * how it is signed (signRevocationList, which EmbeddedAuthority.signedRevocationList() calls)
 * and how its consumer verifies it (verifyRevocationList), in one place.
 *
 * It is a compact JWS, typ `aztp-revocations+jwt`, signed with the trust domain's JWT key (its
 * kid is in the bundle), whose payload holds the issuer `spiffe://TD`, a `sequence` that grows
 * with every revocation or reissue, the revoked SPIFFE IDs (a revoked parent's descendants are
 * listed too) and SVID serials, and a signed validity window: `iat` (a CRL's thisUpdate) and
 * `exp` (its nextUpdate). `aztp revocations export` writes it; `aztp verify x509 --revocations
 * FILE` applies it; `aztp serve` serves it to remote clients.
 *
 * Freshness comes from that window and from nothing else: a list past its nextUpdate (plus the
 * clock tolerance) is ERR_REVOCATION_LIST_EXPIRED however it arrived and however often it is
 * fetched, so whoever sits between the signer and a verifier (a cache, a TLS-terminating proxy,
 * a man in the middle on a plain-HTTP feed) can delay a revocation by at most the window, never
 * hide it. The signer renews the window (signs the list again) even when nothing changed; the
 * service does so every refresh hint (docs/serve.md says why a window and not a nonce).
 * A list signed without a window (before it had one) is ERR_REVOCATION_LIST_WINDOW_MISSING.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { decodeHeader, decodeRest, signCompact, verifyDecoded } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { checkTimeWindow, describeTime, type TimeWindow, type TimeWindowRule } from "../spiffe/time-window.js";

export const REVOCATION_LIST_TYP = "aztp-revocations+jwt";

/**
 * Clock skew tolerated between the signer and a verifier, on either side of the window: the
 * leeway of invocation tokens, which ride the same clocks. It adds to how long a frozen list
 * can go on answering, so a verifier with good clocks may give less (clockToleranceSeconds).
 */
export const DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS = 30;
/** The window of a list signed without one asked for (`aztp revocations export`): a day. */
export const DEFAULT_REVOCATION_LIST_VALIDITY_SECONDS = 24 * 3600;
/** The longest window signed or accepted: a list valid for longer would make its freshness meaningless. */
export const MAX_REVOCATION_LIST_VALIDITY_SECONDS = 31 * 24 * 3600;

/** A list is read whole from a file: 16 MiB holds some 400,000 serials. */
const MAX_LIST_LENGTH = 16 * 1024 * 1024;

const WINDOW: TimeWindow = {
  leewaySeconds: DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS,
  maxLifetimeSeconds: MAX_REVOCATION_LIST_VALIDITY_SECONDS,
  expRequired: true,
  iatRequired: true,
  integerDates: true,
};

const WINDOW_CODES: Readonly<Record<TimeWindowRule, ErrorCode>> = {
  claim_missing: ErrorCodes.REVOCATION_LIST_WINDOW_MISSING,
  claim_invalid: ErrorCodes.REVOCATION_LIST_INVALID,
  lifetime: ErrorCodes.REVOCATION_LIST_INVALID,
  expired: ErrorCodes.REVOCATION_LIST_EXPIRED,
  not_yet_valid: ErrorCodes.REVOCATION_LIST_NOT_YET_VALID,
  too_old: ErrorCodes.REVOCATION_LIST_EXPIRED,
};

export interface RevocationList {
  trustDomain: string;
  /** Grows with every revocation or reissue: of two lists, the higher sequence is the newer. */
  sequence: number;
  /** When it was signed (`iat`): of two lists of one sequence, the later signed is the fresher. */
  thisUpdate: Date;
  /** Until when it may be relied on (`exp`, plus the clock tolerance); the signer renews it before. */
  nextUpdate: Date;
  identities: ReadonlySet<string>;
  serials: ReadonlySet<string>;
  /** Why `id` (a SPIFFE or AZTP ID) or its SVID `serial` is revoked, or undefined when it is not on the list. */
  revoked(id: string, serial?: string): "identity" | "serial" | undefined;
}

/** What the registry holds about revocations (RegistryState["revocations"]): identities and serials by key. */
export interface RevocationRecords {
  readonly sequence: number;
  readonly identities: Readonly<Record<string, unknown>>;
  readonly serials: Readonly<Record<string, { readonly spiffeId: string }>>;
}

/**
 * Signs the list of `trustDomain` from the registry's `revocations` (only the entries of that
 * trust domain) with the trust domain's JWT key `key`, whose `kid` the bundle holds, valid from
 * `now` for `validitySeconds` (whole seconds, 1 to MAX_REVOCATION_LIST_VALIDITY_SECONDS).
 * Revocation already records a revoked parent's descendants, so they are listed too.
 */
export function signRevocationList(
  revocations: RevocationRecords,
  signing: { trustDomain: string; kid: string; key: KeyObject; validitySeconds: number; now?: Date },
): string {
  const { trustDomain, validitySeconds } = signing;
  if (
    !Number.isSafeInteger(validitySeconds) ||
    validitySeconds < 1 ||
    validitySeconds > MAX_REVOCATION_LIST_VALIDITY_SECONDS
  ) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `a revocation list's validity must be 1 to ${MAX_REVOCATION_LIST_VALIDITY_SECONDS} whole seconds, got ${String(validitySeconds)}`,
    );
  }
  const inTd = (spiffeId: string): boolean => SpiffeId.parse(spiffeId).trustDomain === trustDomain;
  const iat = Math.floor((signing.now ?? new Date()).getTime() / 1000);
  return signCompact(
    { typ: REVOCATION_LIST_TYP, kid: signing.kid },
    {
      iss: `spiffe://${trustDomain}`,
      iat,
      exp: iat + validitySeconds,
      sequence: revocations.sequence,
      identities: Object.keys(revocations.identities).filter(inTd),
      serials: Object.entries(revocations.serials)
        .filter(([, e]) => inTd(e.spiffeId))
        .map(([s]) => s),
    },
    signing.key,
  );
}

function invalid(rule: string): never {
  throw new AztpError(ErrorCodes.REVOCATION_LIST_INVALID, `revocation list: ${rule}`);
}

function stringList(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) invalid(`${name} is not a list of strings`);
  return value as string[];
}

export interface VerifyRevocationListOptions {
  /** The list must be this trust domain's. */
  trustDomain?: string | undefined;
  /** The time its window is checked at (default: now). */
  now?: Date | undefined;
  /** Clock skew tolerated on either side of the window (default DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS). */
  leewaySeconds?: number | undefined;
}

/**
 * Verifies a revocation list against the bundles of `source` and returns it. With
 * `trustDomain`, the list must be that trust domain's. A defect (shape, typ, issuer, a kid the
 * bundle does not hold, the signature, a malformed window) is ERR_REVOCATION_LIST_INVALID; the
 * window is checked after the signature, at `now`: no window is
 * ERR_REVOCATION_LIST_WINDOW_MISSING, past it ERR_REVOCATION_LIST_EXPIRED, signed in the
 * future ERR_REVOCATION_LIST_NOT_YET_VALID (each beyond the clock tolerance).
 */
export function verifyRevocationList(
  token: string,
  source: BundleSource,
  options: VerifyRevocationListOptions = {},
): RevocationList {
  const text = token.trim();
  if (text.length === 0 || text.length > MAX_LIST_LENGTH)
    invalid(`expected a compact JWS of 1 to ${MAX_LIST_LENGTH} characters`);
  const parts = text.split(".");
  if (parts.length !== 3)
    invalid("expected three dot-separated parts (a compact JWS, as `aztp revocations export` prints it)");
  const [h, p, s] = parts as [string, string, string];
  let decoded;
  try {
    decoded = decodeRest<Record<string, unknown>>(decodeHeader(h, DEFAULT_ALGORITHMS), h, p, s);
  } catch (e) {
    invalid((e as Error).message);
  }
  const { header, payload } = decoded;
  if (header.typ !== REVOCATION_LIST_TYP)
    invalid(`typ must be ${REVOCATION_LIST_TYP}, got ${JSON.stringify(header.typ ?? null).slice(0, 60)}`);
  if (typeof header.kid !== "string" || header.kid.length === 0) invalid("the header has no kid");
  let issuer: SpiffeId;
  try {
    issuer = SpiffeId.parse(String(payload.iss));
  } catch {
    invalid(`iss must be the trust domain's ID (spiffe://TD), got ${JSON.stringify(payload.iss ?? null).slice(0, 80)}`);
  }
  if (!issuer.isTrustDomainId) invalid(`iss must be a trust domain ID, got ${issuer.toString()}`);
  const trustDomain = issuer.trustDomain;
  if (options.trustDomain !== undefined && options.trustDomain !== trustDomain)
    invalid(`it is the list of ${trustDomain}, not of ${options.trustDomain}`);
  const bundle = source.getBundleForTrustDomain(trustDomain);
  if (bundle === undefined) invalid(`no bundle for trust domain ${trustDomain} to check it against`);
  const key = bundle.jwtAuthorities.get(header.kid);
  if (key === undefined)
    invalid(`the bundle of ${trustDomain} holds no JWT key with kid ${JSON.stringify(header.kid).slice(0, 80)}`);
  if (!verifyDecoded(decoded, key)) invalid(`its signature does not verify with ${trustDomain}'s key`);
  const { sequence } = payload;
  if (typeof sequence !== "number" || !Number.isSafeInteger(sequence) || sequence < 0)
    invalid("sequence is not a whole number");
  const leeway = options.leewaySeconds ?? DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS;
  if (!Number.isFinite(leeway) || leeway < 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `leewaySeconds must be 0 or more, got ${String(leeway)}`);
  const now = (options.now ?? new Date()).getTime() / 1000;
  const failure = checkTimeWindow(
    payload,
    now,
    leeway === WINDOW.leewaySeconds ? WINDOW : { ...WINDOW, leewaySeconds: leeway },
  );
  if (failure !== undefined) {
    const detail =
      failure.rule === "claim_missing"
        ? "was signed without a validity window (iat and exp, its thisUpdate and nextUpdate), so nothing says it is current: a list from an aztp that did not sign one. Export it again (aztp revocations export), or upgrade the service that signed it"
        : failure.rule === "expired"
          ? `${failure.message} (signed ${describeTime(payload.iat as number)}; ${leeway} s of clock tolerance): fetching it again does not make it fresh, only a list the authority signed since does`
          : `${failure.message}${failure.rule === "not_yet_valid" ? ` (${leeway} s of clock tolerance): the signer's clock or this one is wrong` : ""}`;
    throw new AztpError(
      WINDOW_CODES[failure.rule],
      `revocation list of ${trustDomain} (sequence ${sequence}) ${detail}`,
      { rule: failure.rule },
    );
  }
  const identities = new Set(stringList(payload.identities, "identities"));
  const serials = new Set(stringList(payload.serials, "serials"));
  return {
    trustDomain,
    sequence,
    thisUpdate: new Date((payload.iat as number) * 1000),
    nextUpdate: new Date((payload.exp as number) * 1000),
    identities,
    serials,
    revoked(id, serial) {
      if (serial !== undefined && serials.has(serial)) return "serial";
      let spiffeId: string;
      try {
        spiffeId = SpiffeId.parse(id).toString();
      } catch {
        return "identity"; // not an ID at all: never "not revoked"
      }
      return identities.has(spiffeId) ? "identity" : undefined;
    },
  };
}
