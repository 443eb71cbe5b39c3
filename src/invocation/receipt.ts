/**
 * Receipts: the callee's signed answer, bound to the exact invocation token it processed
 * (`ith`, its SHA-256) and to the canonical result (`result_sha256`), with the status. The
 * caller verifies it against the token it sent and the result it got: a receipt for another
 * call, a changed result, or a signer other than the callee it addressed are all refused.
 */
import { newJti } from "./nonce.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { canonicalDigest, tokenHash } from "./canonical.js";
import { signerOf, signWithHeader, type SignerLike } from "./codec.js";
import { RECEIPT_KIND, RECEIPT_TYP } from "./token-kinds.js";
import type { Trust } from "./trust.js";
import { validateToken } from "./validate.js";

export { RECEIPT_TYP } from "./token-kinds.js";
export type ReceiptStatus = "ok" | "error" | "denied";

export interface ReceiptClaims {
  iss: string;
  aud: string;
  iat: number;
  jti: string;
  /** SHA-256 of the invocation token as received (absent when the call carried none). */
  ith?: string;
  /** The invocation's jti, for audit correlation. */
  inv?: string;
  /**
   * SHA-256 of the OAuth access token a call authenticated by a bearer token carried (base64url,
   * as an invocation's `ath`): what binds the receipt to that call's credential when there is
   * no invocation token for `ith` to hash.
   */
  ath?: string;
  tool: string;
  status: ReceiptStatus;
  /** For error and denied: the AztpError code. */
  code?: string;
  result_sha256: string;
}

export interface SignReceiptOptions {
  /** The caller's ID (the receipt's audience). */
  caller: string;
  tool: string;
  /** The invocation token as received; absent for an unsigned call (audit mode). */
  invocationToken?: string;
  invocationJti?: string;
  /** The access token of a call a bearer token authenticated (hashed into `ath`, never kept). */
  accessToken?: string;
  result: unknown;
  status: ReceiptStatus;
  code?: string;
  now?: Date;
}

/**
 * A receipt's audience: the caller's SPIFFE ID in its one form; for a caller only a verified
 * bearer token names and who is no workload (another issuer's subject, `<iss>#<sub>`), that
 * name as it is. Anything else that is not an ID throws, so a claimed caller of a token that
 * did not verify gets no receipt.
 */
function receiptAudience(options: SignReceiptOptions): string {
  if (
    options.accessToken !== undefined &&
    options.invocationToken === undefined &&
    !/^(?:spiffe|aztp):/i.test(options.caller)
  )
    return options.caller;
  return SpiffeId.parse(options.caller).toString();
}

/** Signs a receipt, returning it with the claims signed (the result digest, for audit records). */
export function createReceipt(
  callee: SignerLike,
  options: SignReceiptOptions,
): { receipt: string; claims: ReceiptClaims } {
  const signer = signerOf(callee);
  const claims: ReceiptClaims = {
    iss: signer.id.toString(),
    aud: receiptAudience(options),
    iat: Math.floor((options.now?.getTime() ?? Date.now()) / 1000),
    jti: newJti(),
    tool: options.tool,
    status: options.status,
    result_sha256: canonicalDigest(options.result, "result"),
  };
  if (options.invocationToken !== undefined) claims.ith = tokenHash(options.invocationToken);
  if (options.invocationJti !== undefined) claims.inv = options.invocationJti;
  if (options.accessToken !== undefined) claims.ath = tokenHash(options.accessToken);
  if (options.code !== undefined) claims.code = options.code;
  return { receipt: signWithHeader(signer, RECEIPT_TYP, claims), claims };
}

/** Signs the callee's receipt for one call. Returns the compact token. */
export function signReceipt(callee: SignerLike, options: SignReceiptOptions): string {
  return createReceipt(callee, options).receipt;
}

export interface VerifyReceiptOptions {
  /** The invocation token this caller sent. */
  invocationToken: string;
  /** The result this caller received. */
  result: unknown;
  /** The callee the call was addressed to: the receipt must be signed by it. */
  callee: string;
  /** The caller (me): the receipt's audience. */
  caller: string;
  trust: Trust;
  now?: Date;
  /**
   * How old a receipt may be (default 300 s, DEFAULT_RECEIPT_MAX_AGE_SECONDS): receipts are
   * verified as they arrive.
   */
  maxAgeSeconds?: number;
  /**
   * Whether the answer received is an error (MCP: a result with `isError: true`, or a JSON-RPC
   * error): the receipt's status must agree, `ok` with a success and `error`/`denied` with an
   * error. Default: the result's own `isError` flag (`result.isError === true`), the MCP shape.
   */
  isError?: boolean;
}

export interface VerifiedReceipt {
  claims: ReceiptClaims;
  signer: string;
  /** The serial of the SVID that signed it. */
  serial: string;
}

function fail(code: ErrorCode, message: string, rule: string): never {
  throw new AztpError(code, `receipt: ${message}`, { rule });
}

export function verifyReceipt(receipt: unknown, options: VerifyReceiptOptions): VerifiedReceipt {
  const { claims, signer } = validateToken(receipt, RECEIPT_KIND, options.trust, {
    now: options.now,
    window: options.maxAgeSeconds === undefined ? undefined : { maxAgeSeconds: options.maxAgeSeconds },
    // Only the callee addressed may answer: checked before revocation, so a third party's
    // revoked SVID is "not the callee", not "the callee is revoked".
    signer: SpiffeId.parse(options.callee).toString(),
    audience: SpiffeId.parse(options.caller).toString(),
  });
  const c = claims as Partial<ReceiptClaims>;
  if (c.ith !== tokenHash(options.invocationToken))
    fail(ErrorCodes.RECEIPT_MISMATCH, "it answers another call (invocation token hash differs)", "ith");
  if (c.result_sha256 !== canonicalDigest(options.result, "result"))
    fail(ErrorCodes.RECEIPT_MISMATCH, "the result received is not the result the callee signed", "result");
  if (c.status !== "ok" && c.status !== "error" && c.status !== "denied")
    fail(ErrorCodes.RECEIPT_INVALID, "unknown status", "status");
  // The digest binds the result, not what the caller makes of it: a callee (or a replayed
  // receipt of one) saying "denied" over a success result, or "ok" over an error, would have
  // the caller's audit and the application disagree on what happened.
  const isError =
    options.isError ??
    (typeof options.result === "object" &&
      options.result !== null &&
      (options.result as { isError?: unknown }).isError === true);
  if (isError !== (c.status !== "ok")) {
    fail(
      ErrorCodes.RECEIPT_STATUS_MISMATCH,
      `its status is "${c.status}", but the answer received is ${isError ? "an error" : "a success result"}`,
      "status",
    );
  }
  return { claims: c as ReceiptClaims, signer: signer.spiffeId, serial: signer.serial };
}
