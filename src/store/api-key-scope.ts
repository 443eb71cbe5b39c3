/**
 * The scope of an API key of `aztp serve`: which identities the key may touch, and the one
 * predicate every route asks (scopeCovers).
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";

/** What a key may touch. Both absent: everything. Both present: both must hold. */
export interface ApiKeyScope {
  /** Only identities of this trust domain (normalised lower-case name). */
  trustDomain?: string;
  /** Only IDs whose normalised `spiffe://` form starts with this prefix. */
  idPrefix?: string;
}

/**
 * A prefix in the normalised spiffe:// form: `aztp://` becomes `spiffe://`, the trust domain
 * lower-case. A prefix need not be a whole ID (`spiffe://td/team-a` covers `/team-a-bot` too;
 * end it with `/` to mean a subtree).
 */
export function normaliseIdPrefix(prefix: string): string {
  const m = /^(spiffe|aztp):\/\/([^/]*)(\/.*)?$/i.exec(prefix);
  if (m === null)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `api key idPrefix must start with spiffe://<trust domain>: ${prefix.slice(0, 100)}`,
    );
  const td = TrustDomain.parse(m[2] ?? "").name;
  return `spiffe://${td}${m[3] ?? ""}`;
}

/** The trust domain of a normalised prefix. */
function prefixTrustDomain(prefix: string): string {
  return /^spiffe:\/\/([^/]*)/.exec(prefix)?.[1] ?? "";
}

/** Whether `scope` covers the identity `id` (any SPIFFE/AZTP ID string, or a parsed one). */
export function scopeCovers(scope: ApiKeyScope, id: string | SpiffeId): boolean {
  const parsed = typeof id === "string" ? SpiffeId.parse(id) : id;
  if (scope.trustDomain !== undefined && parsed.trustDomain !== scope.trustDomain) return false;
  if (scope.idPrefix !== undefined && !parsed.toString().startsWith(scope.idPrefix)) return false;
  return true;
}

/** Whether `scope` may cover some identity of the trust domain `td` (a listing of it is then filtered by scopeCovers). */
export function scopeCoversTrustDomain(scope: ApiKeyScope, td: string): boolean {
  if (scope.trustDomain !== undefined && scope.trustDomain !== td) return false;
  if (scope.idPrefix !== undefined) {
    return prefixTrustDomain(scope.idPrefix) === td;
  }
  return true;
}

/** Validates and normalises a scope given to create (ERR_ARGUMENT_INVALID or the ID codes). */
export function normaliseApiKeyScope(given: ApiKeyScope): ApiKeyScope {
  const scope: ApiKeyScope = {};
  if (given === null || typeof given !== "object")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key scope must be an object");
  if (given.trustDomain !== undefined) scope.trustDomain = TrustDomain.parse(given.trustDomain).name;
  if (given.idPrefix !== undefined) {
    if (typeof given.idPrefix !== "string" || given.idPrefix.length === 0) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key idPrefix must be a non-empty string");
    }
    scope.idPrefix = normaliseIdPrefix(given.idPrefix);
    const td = prefixTrustDomain(scope.idPrefix);
    if (scope.trustDomain !== undefined && scope.trustDomain !== td) {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `api key idPrefix ${scope.idPrefix} is outside its trustDomain ${scope.trustDomain}`,
      );
    }
  }
  return scope;
}
