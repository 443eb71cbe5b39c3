/**
 * The scope of an API key of `aztp serve`: which identities the key may touch. `scopeCovers` is
 * the one predicate: every route that names an identity (issue, renew, reissue, revoke, link,
 * policy, verify, JWT-SVIDs, listings, audit, and any route added later) asks it, through
 * `requireInScope` when the answer is a refusal.
 *
 * A scope is matched on the structure of a SPIFFE ID, never on its text: the trust domain exactly
 * (so a key of `td` covers neither `td.evil`, `tdx` nor `td.`), the path on segment boundaries
 * (`spiffe://td/team` covers `/team` and `/team/x`, not `/team-a`), unless the key was made with
 * `partialSegment`, which lets the prefix's last segment match a longer one (`/team` then covers
 * `/team-a` too). A prefix ending in `/` covers only what lies below it.
 *
 * Scopes stored before this rule (home-folder JSON, PostgreSQL rows) are read with it: a stored
 * prefix is matched on segment boundaries, which never covers more than the old string prefix
 * did. A stored scope this code cannot read covers nothing.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";

/** What a key may touch. Nothing given: everything. Both trustDomain and idPrefix: both must hold. */
export interface ApiKeyScope {
  /** Only identities of this trust domain (normalised lower-case name). */
  trustDomain?: string;
  /**
   * Only this ID and the IDs below it, in the normalised `spiffe://` form: the trust domain
   * exactly, the path on segment boundaries (`spiffe://td` alone: the whole trust domain).
   */
  idPrefix?: string;
  /** With idPrefix: its last path segment may also match a longer segment (`/team` covers `/team-a`). */
  partialSegment?: boolean;
}

/** A scope as the predicate reads it. */
interface Bounds {
  /** undefined: an unscoped key (every trust domain). */
  trustDomain: string | undefined;
  /** undefined: the whole trust domain; else the path the covered IDs' paths start with. */
  path: string | undefined;
  partial: boolean;
}

const PREFIX_RE = /^spiffe:\/\/([^/]+)(\/.*)?$/;

/** The bounds of a stored scope, or undefined when it cannot be read (then it covers nothing). */
function boundsOf(scope: ApiKeyScope): Bounds | undefined {
  if (scope === null || typeof scope !== "object") return undefined;
  const { trustDomain, idPrefix, partialSegment } = scope;
  if (trustDomain !== undefined && typeof trustDomain !== "string") return undefined;
  if (partialSegment !== undefined && typeof partialSegment !== "boolean") return undefined;
  if (idPrefix === undefined) {
    if (partialSegment === true) return undefined;
    return { trustDomain, path: undefined, partial: false };
  }
  if (typeof idPrefix !== "string") return undefined;
  const m = PREFIX_RE.exec(idPrefix);
  if (m === null) return undefined;
  const td = m[1] as string;
  if (trustDomain !== undefined && trustDomain !== td) return undefined;
  const path = m[2] ?? "";
  if (partialSegment === true && (path === "" || path.endsWith("/"))) return undefined;
  return { trustDomain: td, path: path === "" ? undefined : path, partial: partialSegment === true };
}

/**
 * Whether `scope` covers the identity `id` (any SPIFFE or AZTP ID string, or a parsed one; a
 * string that is not an ID throws its ERR_SPIFFEID_* code).
 */
export function scopeCovers(scope: ApiKeyScope, id: string | SpiffeId): boolean {
  const parsed = typeof id === "string" ? SpiffeId.parse(id) : id;
  const b = boundsOf(scope);
  if (b === undefined) return false;
  if (b.trustDomain === undefined) return true;
  if (parsed.trustDomain !== b.trustDomain) return false;
  if (b.path === undefined) return true;
  if (b.partial) return parsed.path.startsWith(b.path);
  return parsed.path === b.path || parsed.path.startsWith(b.path.endsWith("/") ? b.path : `${b.path}/`);
}

/**
 * Whether `scope` may name identities of the trust domain `td` at all: the one trust domain
 * scopeCovers compares against (a listing of `td` is then filtered by scopeCovers).
 */
export function scopeCoversTrustDomain(scope: ApiKeyScope, td: string): boolean {
  const b = boundsOf(scope);
  return b !== undefined && (b.trustDomain === undefined || b.trustDomain === td);
}

/** Whether `scope` limits the key at all. */
export function isScoped(scope: ApiKeyScope): boolean {
  const b = boundsOf(scope);
  return b === undefined || b.trustDomain !== undefined;
}

/**
 * The scope in words, for `aztp apikey list` and refusals: `trust domain td`, `prefix
 * spiffe://td/a* (partial last segment)`.
 */
export function describeScope(scope: ApiKeyScope): string {
  if (boundsOf(scope) === undefined) return `unreadable scope ${JSON.stringify(scope).slice(0, 200)} (covers nothing)`;
  const parts = [
    scope.trustDomain !== undefined ? `trust domain ${scope.trustDomain}` : "",
    scope.idPrefix !== undefined
      ? `prefix ${scope.idPrefix}${scope.partialSegment === true ? "* (partial last segment)" : ""}`
      : "",
  ].filter(Boolean);
  return parts.length === 0 ? "unscoped" : parts.join(", ");
}

/** A key as a refusal names it. */
export interface ScopedKey {
  readonly keyId: string;
  readonly scope: ApiKeyScope;
}

function scopeDenied(key: ScopedKey, what: string): AztpError {
  return new AztpError(
    ErrorCodes.SERVE_API_KEY_SCOPE_DENIED,
    `API key ${key.keyId} is limited to ${describeScope(key.scope)}: ${what} is outside it`,
  );
}

/**
 * Parses `id` (any ID form; its own error codes when invalid) and refuses it, with
 * ERR_SERVE_API_KEY_SCOPE_DENIED, when `key`'s scope does not cover it. What every route calls.
 */
export function requireInScope(key: ScopedKey, id: string | SpiffeId, field = "id"): SpiffeId {
  const parsed = typeof id === "string" ? SpiffeId.parse(id) : id;
  if (!scopeCovers(key.scope, parsed)) throw scopeDenied(key, `${field} ${parsed.toString()}`);
  return parsed;
}

/** Refuses a trust domain `key` may not name (a listing's `trustDomain`). */
export function requireTrustDomainInScope(key: ScopedKey, td: string): void {
  if (!scopeCoversTrustDomain(key.scope, td)) throw scopeDenied(key, `trust domain ${td}`);
}

/** Refuses what names none of the identities `key` covers (an audit entry: its caller or callee). */
export function requireAnyInScope(key: ScopedKey, names: readonly string[], what: string): void {
  if (!anyInScope(key.scope, names)) throw scopeDenied(key, what);
}

/** Whether some of `names` (IDs; anything that is not one is never covered) is covered by `scope`. */
export function anyInScope(scope: ApiKeyScope, names: readonly string[]): boolean {
  return names.some((n) => {
    try {
      return scopeCovers(scope, n);
    } catch {
      return false;
    }
  });
}

/**
 * A prefix in the normalised spiffe:// form: `aztp://` becomes `spiffe://`, the trust domain
 * lower-case, the path a valid SPIFFE path (ERR_SPIFFEID_* otherwise) that may end in `/`.
 */
export function normaliseIdPrefix(prefix: string): string {
  const m = /^(spiffe|aztp):\/\/([^/]*)(\/.*)?$/i.exec(prefix);
  if (m === null)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `api key idPrefix must start with spiffe://<trust domain>: ${prefix.slice(0, 100)}`,
    );
  const td = TrustDomain.parse(m[2] ?? "").name;
  const path = m[3] ?? "";
  // A trailing "/" means "below this": checked as the path of an ID one segment below.
  const probe = path.endsWith("/") ? `${path}x` : path;
  if (probe !== "") SpiffeId.parse(`spiffe://${td}${probe}`);
  return `spiffe://${td}${path}`;
}

/** Validates and normalises a scope given to create (ERR_ARGUMENT_INVALID or the ID codes). */
export function normaliseApiKeyScope(given: ApiKeyScope): ApiKeyScope {
  if (given === null || typeof given !== "object")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key scope must be an object");
  const scope: ApiKeyScope = {};
  if (given.trustDomain !== undefined) scope.trustDomain = TrustDomain.parse(given.trustDomain).name;
  if (given.idPrefix !== undefined) {
    if (typeof given.idPrefix !== "string" || given.idPrefix.length === 0) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key idPrefix must be a non-empty string");
    }
    scope.idPrefix = normaliseIdPrefix(given.idPrefix);
    const td = PREFIX_RE.exec(scope.idPrefix)?.[1];
    if (scope.trustDomain !== undefined && scope.trustDomain !== td) {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `api key idPrefix ${scope.idPrefix} is outside its trustDomain ${scope.trustDomain}`,
      );
    }
  }
  if (given.partialSegment !== undefined) {
    if (typeof given.partialSegment !== "boolean")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key partialSegment must be a boolean");
    if (given.partialSegment) {
      const path = scope.idPrefix === undefined ? "" : (PREFIX_RE.exec(scope.idPrefix)?.[2] ?? "");
      if (path === "" || path.endsWith("/")) {
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          "api key partialSegment needs an idPrefix whose path ends in a segment to extend (spiffe://td/team): a trust domain is always matched exactly",
        );
      }
      scope.partialSegment = true;
    }
  }
  return scope;
}
