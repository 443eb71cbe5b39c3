/**
 * The OAuth routes' error answers: RFC 6749 §5.2 error JSON, `{ error, error_description,
 * code, rule? }`, where `error` is the registered OAuth error a client switches on and `code`
 * the library's own (the same AztpError the rest of the service answers with), so an OAuth
 * library reads the first and an operator the second. One table from code to (error, status),
 * as serve/errors.ts is for the JSON API.
 *
 * invalid_client is 401, as RFC 6749 §5.2 allows; since a 401 must name a scheme (RFC 9110
 * §15.5.2), it carries `WWW-Authenticate: Bearer`, the one HTTP scheme this endpoint takes (an
 * API key that narrows which clients may obtain tokens through it).
 */
import { ErrorCodes, type AztpError, type ErrorCode } from "../errors.js";
import { statusOf } from "./errors.js";

export type OAuthError =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "unsupported_response_type"
  | "invalid_scope"
  | "invalid_target"
  | "temporarily_unavailable"
  | "server_error";

const CLIENT: readonly ErrorCode[] = [
  ErrorCodes.OAUTH_CLIENT_AUTH_MISSING,
  ErrorCodes.OAUTH_ASSERTION_TYPE_UNSUPPORTED,
  ErrorCodes.OAUTH_ASSERTION_MALFORMED,
  ErrorCodes.OAUTH_ASSERTION_ALG_NOT_ALLOWED,
  ErrorCodes.OAUTH_ASSERTION_SIGNATURE_INVALID,
  ErrorCodes.OAUTH_ASSERTION_UNTRUSTED,
  ErrorCodes.OAUTH_ASSERTION_CLAIM_MISSING,
  ErrorCodes.OAUTH_ASSERTION_CLAIM_INVALID,
  ErrorCodes.OAUTH_ASSERTION_AUDIENCE_MISMATCH,
  ErrorCodes.OAUTH_ASSERTION_EXPIRED,
  ErrorCodes.OAUTH_ASSERTION_NOT_YET_VALID,
  ErrorCodes.OAUTH_ASSERTION_REPLAYED,
  ErrorCodes.OAUTH_CLIENT_ID_MISMATCH,
  ErrorCodes.OAUTH_CLIENT_UNKNOWN,
  ErrorCodes.OAUTH_CLIENT_REVOKED,
  ErrorCodes.SERVE_API_KEY_INVALID,
  // Minting refuses a client whose standing changed between authentication and the token.
  ErrorCodes.IDENTITY_REVOKED,
  ErrorCodes.IDENTITY_NOT_FOUND,
  ErrorCodes.PARENT_INVALID,
];

const ERRORS: ReadonlyMap<string, OAuthError> = new Map<string, OAuthError>([
  ...CLIENT.map((c): [string, OAuthError] => [c, "invalid_client"]),
  [ErrorCodes.OAUTH_REQUEST_INVALID, "invalid_request"],
  [ErrorCodes.OAUTH_GRANT_TYPE_UNSUPPORTED, "unsupported_grant_type"],
  // The authorization code grant (authorization-code.ts): the code or its PKCE proof does not hold.
  [ErrorCodes.OAUTH_CODE_INVALID, "invalid_grant"],
  [ErrorCodes.OAUTH_PKCE_INVALID, "invalid_grant"],
  [ErrorCodes.OAUTH_RESPONSE_TYPE_UNSUPPORTED, "unsupported_response_type"],
  [ErrorCodes.OAUTH_RESOURCE_INVALID, "invalid_target"],
  [ErrorCodes.OAUTH_RESOURCE_DENIED, "invalid_target"],
  [ErrorCodes.OAUTH_SCOPE_INVALID, "invalid_scope"],
  [ErrorCodes.OAUTH_SCOPE_DENIED, "invalid_scope"],
  // The API key is valid but may not speak for this client (RFC 6749: not authorized to use this grant).
  [ErrorCodes.SERVE_API_KEY_SCOPE_DENIED, "unauthorized_client"],
  [ErrorCodes.SERVE_RATE_LIMITED, "temporarily_unavailable"],
  // RFC 8693 §2.2.2: a subject token that is invalid, expired, from an untrusted provider, or
  // that this actor may not extend, is an invalid grant.
  [ErrorCodes.PERSON_TOKEN_INVALID, "invalid_grant"],
  [ErrorCodes.PERSON_ISSUER_UNTRUSTED, "invalid_grant"],
  [ErrorCodes.ON_BEHALF_OF_INVALID, "invalid_grant"],
  [ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED, "invalid_grant"],
  // The person's provider could not be asked for its keys: try again, nothing was wrong with the request.
  [ErrorCodes.OAUTH_ISSUER_UNAVAILABLE, "temporarily_unavailable"],
]);

/** Where one code covers checks that OAuth names differently: `<code>:<rule>`. */
const RULE_ERRORS: ReadonlyMap<string, OAuthError> = new Map<string, OAuthError>([
  // RFC 8693 §2.2.2: a resource the delegation does not reach is invalid_target; a scope it lacks, invalid_scope.
  [`${ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED}:audience`, "invalid_target"],
  [`${ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED}:scope`, "invalid_scope"],
]);

export interface OAuthErrorAnswer {
  status: number;
  body: { error: OAuthError; error_description: string; code: string; rule?: string };
  headers: Record<string, string>;
}

/**
 * RFC 6749's error_description is printable ASCII without `"` and `\`: messages that quote a
 * value (JSON.stringify) are made to fit rather than sent as something a strict client rejects.
 */
function description(message: string): string {
  return message
    .replace(/"/g, "'")
    .replace(/\\/g, "/")
    .replace(/[^\x20-\x7e]/g, "?")
    .slice(0, 1000);
}

/** The RFC 6749 answer of an error on an OAuth route. */
export function oauthErrorAnswer(e: AztpError): OAuthErrorAnswer {
  const known = (e.rule !== undefined ? RULE_ERRORS.get(`${e.code}:${e.rule}`) : undefined) ?? ERRORS.get(e.code);
  let status = statusOf(e.code);
  let error: OAuthError;
  if (known !== undefined) {
    error = known;
    status = error === "invalid_client" ? 401 : error === "temporarily_unavailable" ? status : 400;
  } else if (status >= 500) {
    error = status === 503 ? "temporarily_unavailable" : "server_error";
  } else {
    // Every other library code is about what the request carried (413, 415 keep their status).
    error = "invalid_request";
  }
  const headers: Record<string, string> = { pragma: "no-cache" };
  if (status === 401) headers["www-authenticate"] = 'Bearer realm="aztp"';
  const body: OAuthErrorAnswer["body"] = { error, error_description: description(e.message), code: e.code };
  if (e.rule !== undefined) body.rule = e.rule;
  return { status, body, headers };
}
