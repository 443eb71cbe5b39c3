/**
 * The time window of a signed token: one rule for every kind, the JWT-SVIDs of this layer and
 * the AZTP tokens of invocation/ (which builds on it). Like jose's validateClaimsSet with its
 * one clockTolerance: each kind gives its numbers as data (a TimeWindow), the checks and their
 * order are the same for all of them. The numbers of each kind are in docs/protocol.md.
 *
 * Order: the dates are well-formed (present when required, NumericDates) → exp - iat within
 * the maximum lifetime → not expired (now - leeway < exp) → not before nbf (when present, in
 * every kind) or iat (each at most now + leeway) → not older than the maximum age (tokens without exp: receipts).
 */

export interface TimeWindow {
  /** Clock skew tolerated on either side: after exp, before nbf, an iat in the future. */
  readonly leewaySeconds: number;
  /** exp - iat at most this, and exp not before iat; absent: no limit. */
  readonly maxLifetimeSeconds?: number | undefined;
  readonly expRequired: boolean;
  readonly iatRequired: boolean;
  /**
   * For a token without exp (a receipt): now - iat at most this. No leeway is added: the age
   * is itself the tolerance, and a receipt is checked as it arrives.
   */
  readonly maxAgeSeconds?: number | undefined;
  /** NumericDates must be whole seconds (AZTP signs them so); JWT-SVIDs take any finite number, as RFC 7519 allows. */
  readonly integerDates: boolean;
  /**
   * Only the dates' form is checked, never the clock: a kind whose tokens are verified long
   * after they were signed (audit checkpoints of an old log).
   */
  readonly dateOnly?: boolean;
}

/** Which rule failed: stable names, mapped to a code by each kind. */
export type TimeWindowRule = "claim_missing" | "claim_invalid" | "lifetime" | "expired" | "not_yet_valid" | "too_old";

export interface TimeWindowFailure {
  readonly rule: TimeWindowRule;
  readonly claim: "iat" | "exp" | "nbf";
  /** Says what failed, without the token kind's name (the caller prefixes it). */
  readonly message: string;
}

/**
 * A NumericDate for an error message. Any safe integer is a valid NumericDate, but Date only
 * spans ±8.64e12 s: toISOString() would throw a RangeError (not an AztpError) for the rest.
 */
export function describeTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? `${seconds} s after the epoch` : d.toISOString();
}

function isDate(v: unknown, integer: boolean): v is number {
  return typeof v === "number" && (integer ? Number.isSafeInteger(v) && v >= 0 : Number.isFinite(v));
}

function fail(rule: TimeWindowRule, claim: TimeWindowFailure["claim"], message: string): TimeWindowFailure {
  return { rule, claim, message };
}

/**
 * Checks `claims` (iat, exp, nbf) against `window` at `nowSeconds`. Returns the first failure,
 * or undefined: nothing is allocated when the token is in its window (the per-call path).
 */
export function checkTimeWindow(
  claims: Readonly<Record<string, unknown>>,
  nowSeconds: number,
  window: TimeWindow,
): TimeWindowFailure | undefined {
  // nbf is honoured whenever a token carries one, as jose does: AZTP's signers never set it,
  // but a verifier that ignored it would let a token signed for later be spent now.
  const { iat, exp, nbf } = claims;
  const integer = window.integerDates;
  if (exp === undefined) {
    if (window.expRequired) return fail("claim_missing", "exp", "has no exp");
  } else if (!isDate(exp, integer))
    return fail("claim_invalid", "exp", integer ? "exp is not a whole number of seconds" : "exp is not a number");
  if (iat === undefined) {
    if (window.iatRequired) return fail("claim_missing", "iat", "has no iat");
  } else if (!isDate(iat, integer))
    return fail("claim_invalid", "iat", integer ? "iat is not a whole number of seconds" : "iat is not a number");
  if (nbf !== undefined && !isDate(nbf, integer))
    return fail("claim_invalid", "nbf", integer ? "nbf is not a whole number of seconds" : "nbf is not a number");
  const max = window.maxLifetimeSeconds;
  if (max !== undefined && exp !== undefined && iat !== undefined && (exp - iat > max || exp < iat)) {
    return fail("lifetime", "exp", `lives ${exp - iat} s; at most ${max} s is accepted`);
  }
  if (window.dateOnly === true) return undefined;
  const leeway = window.leewaySeconds;
  if (exp !== undefined && nowSeconds - leeway >= exp) return fail("expired", "exp", `expired at ${describeTime(exp)}`);
  if (nbf !== undefined && nbf > nowSeconds + leeway)
    return fail("not_yet_valid", "nbf", `is not valid before ${describeTime(nbf)} (nbf)`);
  if (iat !== undefined && iat > nowSeconds + leeway)
    return fail("not_yet_valid", "iat", `was issued in the future (${describeTime(iat)})`);
  if (window.maxAgeSeconds !== undefined && iat !== undefined && nowSeconds - iat > window.maxAgeSeconds) {
    return fail("too_old", "iat", `was issued at ${describeTime(iat)}, more than ${window.maxAgeSeconds} s ago`);
  }
  return undefined;
}
