/**
 * What a token request may obtain: the one rule of the token endpoint (`aztp serve`) and of
 * `Aztp.accessToken` on the embedded authority.
 *
 * - `resource` is required (RFC 8707): one absolute URI without a fragment; it becomes the
 *   token's `aud`, so a token is good at one resource server only.
 * - Scopes are never wider than the client's policy allows. The policies attached to the
 *   client's identity are asked, as a request by the client itself, one policy request per
 *   scope (policy/request.ts: action `oauth:token`, Resource the resource, `aztp:scope` the
 *   scope; without scopes, one request without `aztp:scope`). An identity with no policy
 *   attached obtains what it asks for: nothing narrows it, as nothing narrows who may connect
 *   to an identity without policy; the token still names one resource and lives minutes, and
 *   the resource server's own policy decides each call.
 * - A server configured with `scopes_supported` grants no other scope, and a request naming no
 *   scope is given those of them the client's policies allow (RFC 6749 §3.3's default).
 * - A request whose every scope is refused is `invalid_scope`; one that names none, gets no
 *   offered scope and is refused is `invalid_target` (the client may obtain no token for that
 *   resource at all).
 *   Scopes partly refused are left out of the token and the answer's `scope` says which it got
 *   (RFC 6749 §3.3).
 */
import { AztpError, ErrorCodes } from "../errors.js";
import type { PolicyDocument } from "../policy/policy.js";
import { decidePolicy, TOKEN_ACTION, type IdentityRelations } from "../policy/request.js";
import { parseScope } from "./access-token.js";

/** Longer than any resource identifier worth naming, short enough to keep out of every log line's way. */
const MAX_RESOURCE_LENGTH = 2048;

/** The `resource` parameter (RFC 8707 §2): required, an absolute URI without a fragment. */
export function parseResource(value: string | undefined): string {
  if (value === undefined || value === "")
    throw new AztpError(
      ErrorCodes.OAUTH_RESOURCE_INVALID,
      "resource is required: name the resource server the token is for (its protected resource metadata's resource)",
      { rule: "missing" },
    );
  let ok = value.length <= MAX_RESOURCE_LENGTH && !value.includes("#") && /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(value);
  if (ok) {
    try {
      new URL(value);
    } catch {
      ok = false;
    }
  }
  if (!ok)
    throw new AztpError(
      ErrorCodes.OAUTH_RESOURCE_INVALID,
      `resource ${JSON.stringify(value.slice(0, 200))} is not an absolute URI without a fragment (RFC 8707)`,
      { rule: "malformed" },
    );
  return value;
}

/** The `scope` parameter: a space-separated list of scope tokens, or none. */
export function parseScopeParam(value: string | undefined): string[] {
  const scopes = parseScope(value ?? "");
  if (scopes === undefined)
    throw new AztpError(
      ErrorCodes.OAUTH_SCOPE_INVALID,
      "scope must be scope tokens (printable ASCII without space, quote or backslash) separated by single spaces",
    );
  return scopes;
}

export interface GrantScopesInput {
  /** The authenticated client (a SPIFFE ID): the principal its own policies are asked about. */
  clientId: string;
  resource: string;
  /** The scopes asked for (parseScopeParam). */
  scopes: readonly string[];
  /** The policies attached to the client's identity. */
  policies: readonly PolicyDocument[];
  relations?: IdentityRelations | undefined;
  /** The server's scopes_supported, when it has one. */
  scopesSupported?: readonly string[] | undefined;
  now?: Date | undefined;
}

/**
 * The scopes the client obtains (a subset of those asked, in their order; none asked, of those
 * offered). Throws
 * ERR_OAUTH_SCOPE_DENIED when scopes were asked and none is granted, ERR_OAUTH_RESOURCE_DENIED
 * when none was asked and the client's policies allow it no token for the resource.
 */
export function grantScopes(input: GrantScopesInput): string[] {
  const supported = input.scopesSupported;
  const candidates = supported === undefined ? [...input.scopes] : input.scopes.filter((s) => supported.includes(s));
  const policies = input.policies;
  const hasPolicy = policies.length > 0;
  const allowed = (scope?: string): boolean =>
    decidePolicy(policies, {
      principal: input.clientId,
      action: TOKEN_ACTION,
      resource: input.resource,
      relations: input.relations,
      scope,
      now: input.now,
    }).decision === "allow";

  if (input.scopes.length === 0) {
    // RFC 6749 §3.3: a request naming no scope is given the server's default, the scopes it
    // offers that the client may have. Hosts on the MCP SDK 1.x send none: its client
    // credentials providers put only their own `scope` option in the token request, never the
    // scope the resource server's challenge or metadata names (the 2.x SDK sends that one).
    if (supported !== undefined && supported.length > 0) {
      const offered = hasPolicy ? supported.filter((s) => allowed(s)) : [...supported];
      if (offered.length > 0) return offered;
    }
    if (hasPolicy && !allowed())
      throw new AztpError(
        ErrorCodes.OAUTH_RESOURCE_DENIED,
        `the policies of ${input.clientId} allow it no token for ${input.resource} (action ${TOKEN_ACTION})`,
      );
    return [];
  }
  const granted = hasPolicy ? candidates.filter((s) => allowed(s)) : candidates;
  if (granted.length === 0)
    throw new AztpError(
      ErrorCodes.OAUTH_SCOPE_DENIED,
      `none of the scopes asked (${input.scopes.join(" ").slice(0, 200)}) is ${
        supported !== undefined && candidates.length === 0 ? "supported by this server" : `allowed to ${input.clientId}`
      } for ${input.resource}`,
    );
  return granted;
}
