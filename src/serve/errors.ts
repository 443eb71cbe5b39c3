/**
 * The service's one table from error code to HTTP status, and the JSON every error answer
 * carries: `{ error: { code, message, rule? } }` with the library's codes (AztpError.toJSON),
 * so a client maps an answer back to the very AztpError the embedded authority would throw.
 *
 * An error that is not an AztpError is a bug: it answers 500 ERR_SERVE_INTERNAL_FAILED with a
 * fixed message (the detail goes to the log, never to the client).
 */
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";

const STATUS: ReadonlyMap<string, number> = new Map<ErrorCode, number>([
  [ErrorCodes.SERVE_API_KEY_INVALID, 401],
  [ErrorCodes.SERVE_API_KEY_SCOPE_DENIED, 403],
  [ErrorCodes.IDENTITY_NOT_FOUND, 404],
  [ErrorCodes.SERVE_ROUTE_NOT_FOUND, 404],
  [ErrorCodes.WORKLOAD_ENTRY_NOT_FOUND, 404],
  [ErrorCodes.SERVE_METHOD_NOT_ALLOWED, 405],
  [ErrorCodes.IDENTITY_EXISTS, 409],
  [ErrorCodes.IDENTITY_REVOKED, 409],
  [ErrorCodes.WORKLOAD_ENTRY_EXISTS, 409],
  [ErrorCodes.AUTHORITY_EXISTS, 409],
  [ErrorCodes.SERVE_BODY_TOO_LONG, 413],
  [ErrorCodes.SERVE_CONTENT_TYPE_UNSUPPORTED, 415],
  [ErrorCodes.SERVE_RATE_LIMITED, 429],
  [ErrorCodes.SERVE_INTERNAL_FAILED, 500],
  [ErrorCodes.UNEXPECTED, 500],
  [ErrorCodes.AUDIT_CORRUPT, 500],
  [ErrorCodes.SERVE_TLOG_ENTRY_TOO_LONG, 501],
  [ErrorCodes.AUTHORITY_STORE_FAILED, 503],
  [ErrorCodes.AUTHORITY_NOT_INITIALIZED, 503],
  [ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE, 503],
  [ErrorCodes.SERVE_UNAVAILABLE, 503],
  [ErrorCodes.AUDIT_IO_FAILED, 503],
  [ErrorCodes.AUDIT_UNAVAILABLE, 503],
  [ErrorCodes.AUDIT_CLOSED, 503],
]);

/**
 * The status of an error answer. Every other library code is about what the request carried
 * (an ID, a CSR, a policy, a PEM, an argument): 400.
 */
export function statusOf(code: string): number {
  return STATUS.get(code) ?? 400;
}

export interface ErrorBody {
  error: { code: string; message: string; rule?: string };
}

/** The error as answered: an AztpError as it is, anything else as ERR_SERVE_INTERNAL_FAILED. */
export function toServeError(e: unknown): AztpError {
  if (e instanceof AztpError) return e;
  return new AztpError(ErrorCodes.SERVE_INTERNAL_FAILED, "the service failed to answer this request (see its log)", {
    cause: e,
  });
}

export function errorBody(e: AztpError): ErrorBody {
  return { error: e.toJSON() };
}
