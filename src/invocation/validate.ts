/**
 * The one validator of AZTP's signed tokens: invocations, receipts, delegation links, proofs
 * of possession and audit checkpoints all go through validateToken, like jose's jwtVerify
 * (compactVerify + one validateClaimsSet) and go-spiffe's x509svid.Verify. What differs by
 * kind is data (a TokenKind, see token-kinds.ts); the checks and their order are the same:
 *
 *   present → decoded (three canonical segments, JSON objects) → `alg` on the allow-list →
 *   `typ` → the `x5c` chain to the bundle (at the kind's chain time) → the signature with the
 *   leaf key → `iss` is the SVID's SPIFFE ID → the expected signer, if one is named → not
 *   revoked (when the kind checks it) → the expected `aud`, if one is named → the time window
 *   (spiffe/time-window.ts, the rule JWT-SVIDs use too).
 *
 * Every failure is an AztpError with a stable `rule` and the code the kind maps it to. What a
 * kind checks beyond this (an invocation's audience, a receipt's result digest, a link's
 * scope) stays with the kind.
 */
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { decodePayload, decodeSignature, splitCompact, type JwsHeader } from "../spiffe/jws.js";
import { verifyRaw, type JwsAlgorithm } from "../spiffe/keys.js";
import { checkTimeWindow, type TimeWindow, type TimeWindowRule } from "../spiffe/time-window.js";
import { describeClaim } from "./describe.js";
import type { ResolvedHeader, Trust, VerifiedSigner } from "./trust.js";

/** What verifiers accept: P-256 by default, and the chains SPIRE may issue (ES384, RSA). */
export const TOKEN_ALGORITHMS: readonly JwsAlgorithm[] = ["ES256", "ES384", "RS256", "PS256"];

/** The rules of the validator, in the order they are checked. Stable: errors carry them as `rule`. */
export type TokenRule =
  | "missing"
  | "malformed"
  | "alg"
  | "typ"
  | "chain"
  | "signature"
  | "issuer"
  | "signer"
  | "revoked"
  | "audience"
  | TimeWindowRule;

/** One kind of token, as data. */
export interface TokenKind {
  readonly typ: string;
  /** Its name in messages ("invocation token", "receipt"). */
  readonly what: string;
  readonly window: TimeWindow;
  /** Whether a revoked signer's token is refused (not for checkpoints: see token-kinds.ts). */
  readonly revocation: boolean;
  /** When the x5c chain must be valid: at verification (`now`) or at the token's own `iat`. */
  readonly chainAt: "now" | "iat";
  /** The code each rule's failure throws with. */
  readonly codes: Readonly<Record<TokenRule, ErrorCode>>;
}

export interface ValidateTokenOptions {
  now?: Date | undefined;
  /** Per-call changes to the kind's window (a verifier's own leeway or maximum age). */
  window?: Partial<TimeWindow> | undefined;
  /** The SPIFFE ID (spiffe:// spelling) that must have signed it, when only one may (a receipt's callee). */
  signer?: string | undefined;
  /**
   * The `aud` the token must carry, exactly (one string, spiffe:// spelling), checked before the
   * time window as jose's validateClaimsSet does: a token for someone else is that first.
   */
  audience?: string | undefined;
  /** The message's name for this token, when it is not the kind's (e.g. "delegation link 2"). */
  what?: string | undefined;
}

export interface ValidatedToken {
  readonly header: JwsHeader;
  readonly claims: Record<string, unknown>;
  readonly signer: VerifiedSigner;
}

function refuse(kind: TokenKind, rule: TokenRule, what: string, message: string, cause?: unknown): never {
  throw new AztpError(kind.codes[rule], `${what}: ${message}`, cause === undefined ? { rule } : { cause, rule });
}

/** `iat` read before the chain is checked at it (checkpoints): unverified, only to pick the time. */
function chainTime(kind: TokenKind, what: string, claims: Record<string, unknown>): Date {
  const iat = claims.iat;
  if (typeof iat !== "number" || !Number.isFinite(iat)) refuse(kind, "claim_missing", what, "has no readable iat");
  return new Date(iat * 1000);
}

/**
 * Validates `token` as a token of `kind`, with `trust`'s bundle and revocation source. Throws
 * AztpError (code from the kind, `rule` from TokenRule) at the first failure.
 */
export function validateToken(
  token: unknown,
  kind: TokenKind,
  trust: Trust,
  options: ValidateTokenOptions = {},
): ValidatedToken {
  const what = options.what ?? kind.what;
  if (token === undefined || token === null || token === "") refuse(kind, "missing", what, "none was presented");
  const now = options.now ?? new Date();
  let h: string, p: string, s: string;
  let claims: Record<string, unknown>;
  let resolved: ResolvedHeader;
  let signature: Buffer;
  try {
    [h, p, s] = splitCompact(token);
    if (kind.chainAt === "iat") {
      // The chain time comes from the payload, so it is decoded first (still unverified).
      claims = decodePayload(p);
      resolved = trust.resolveHeader(h, TOKEN_ALGORITHMS, chainTime(kind, what, claims));
    } else {
      resolved = trust.resolveHeader(h, TOKEN_ALGORITHMS, now);
      claims = decodePayload(p);
    }
    signature = decodeSignature(s);
  } catch (e) {
    if (e instanceof AztpError && e.rule !== undefined) throw e; // chainTime's own refusal
    if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED)
      refuse(kind, "alg", what, `${e.message} (allowed: ${TOKEN_ALGORITHMS.join(", ")})`, e);
    refuse(kind, "malformed", what, (e as Error).message, e);
  }
  const header = resolved.header;
  if (header.typ !== kind.typ) refuse(kind, "typ", what, `typ must be ${kind.typ}`);
  const signer = resolved.signer;
  if (signer === undefined) {
    const why = resolved.chainError;
    refuse(
      kind,
      "chain",
      what,
      `the signer's certificate chain is not trusted: ${why instanceof Error ? why.message : String(why)}`,
      why,
    );
  }
  // The signing input is the token's own prefix: sliced, not rebuilt from its parts.
  if (
    !verifyRaw(
      header.alg,
      signer.key,
      Buffer.from((token as string).slice(0, h.length + 1 + p.length), "latin1"),
      signature,
    )
  ) {
    refuse(kind, "signature", what, "signature does not verify with the key of the presented SVID");
  }
  const iss = claims.iss;
  if (typeof iss !== "string" || iss !== signer.spiffeId)
    refuse(kind, "issuer", what, `iss ${describeClaim(iss)} is not the SVID's SPIFFE ID ${signer.spiffeId}`);
  if (options.signer !== undefined && signer.spiffeId !== options.signer)
    refuse(kind, "signer", what, `signed by ${signer.spiffeId}, not by ${options.signer}`);
  if (kind.revocation && trust.isRevoked(signer.spiffeId, signer.serial)) {
    refuse(kind, "revoked", what, `signer ${signer.spiffeId} (or an ancestor, or this SVID) is revoked`);
  }
  if (options.audience !== undefined && claims.aud !== options.audience)
    refuse(kind, "audience", what, `is for ${describeClaim(claims.aud)}, not for ${options.audience}`);
  const window = options.window === undefined ? kind.window : { ...kind.window, ...options.window };
  const late = checkTimeWindow(claims, now.getTime() / 1000, window);
  if (late !== undefined) refuse(kind, late.rule, what, late.message);
  return { header, claims, signer };
}
