/**
 * Delegation: a parent lets a named child act for it within a scope (tools, servers, expiry,
 * remaining depth). Each link is a JWS signed by the delegator's SVID key (x5c), names the
 * delegate, and binds the previous link's hash, so a chain is bound to keys and order, never
 * to bearer strings. A child presents the chain in its invocation token (`dlg`).
 *
 * The verifier checks every link's signature and trust, that none is revoked or expired,
 * that each link's delegator is the previous link's delegate, that each scope only narrows,
 * that the last delegate is the token's signer, and that the call fits the last scope.
 */
import { newJti } from "./nonce.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { globCovers, globMatch } from "../policy/glob.js";
import { normalizeId } from "../policy/match.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { tokenHash } from "./canonical.js";
import { signerOf, signWithHeader, type SignerLike } from "./codec.js";
import { DELEGATION_KIND, DELEGATION_TYP } from "./token-kinds.js";
import type { Trust } from "./trust.js";
import { validateToken } from "./validate.js";

export { DELEGATION_TYP } from "./token-kinds.js";
export const MAX_DELEGATION_CHAIN = 8;
export const DEFAULT_DELEGATION_TTL_SECONDS = 3600;

export interface DelegationScope {
  /** Tool name patterns (`*`, `?` wildcards). Default ["*"]. */
  tools?: string[];
  /** Callee ID patterns (aztp:// or spiffe://, wildcards allowed). Default ["*"]. */
  servers?: string[];
  /** How many further hops the delegate may delegate. Default 0. */
  depth?: number;
  ttlSeconds?: number;
}

export interface DelegationClaims {
  iss: string;
  sub: string;
  iat: number;
  exp: number;
  jti: string;
  scope: { tools: string[]; servers: string[]; depth: number };
  /** Hash of the previous link (absent on the first). */
  prev?: string;
}

export interface VerifiedDelegation {
  delegator: string;
  delegate: string;
  scope: DelegationClaims["scope"];
  exp: number;
}

function invalid(rule: string, message: string, cause?: unknown): never {
  throw new AztpError(
    ErrorCodes.DELEGATION_INVALID,
    `delegation: ${message}`,
    cause === undefined ? { rule } : { cause, rule },
  );
}

function matchesAny(patterns: readonly string[], value: string): boolean {
  return patterns.some((p) => globMatch(p, value));
}

function narrows(wide: readonly string[], narrow: readonly string[]): boolean {
  return narrow.every((n) => wide.some((w) => globCovers(w, n)));
}

function checkPatterns(what: string, value: unknown): string[] {
  if (value === undefined) return ["*"];
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((v) => typeof v === "string" && v.length > 0 && v.length <= 512)
  ) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `delegation scope ${what} must be a non-empty list of patterns`);
  }
  return (value as string[]).map(normalizeId);
}

/**
 * `parent` delegates to `childAztpId` within `scope`. If the parent acts under a delegation
 * itself, pass its chain as `parentChain`; the result is the full chain the child presents.
 */
export function delegate(
  parent: SignerLike,
  childAztpId: string,
  scope: DelegationScope = {},
  parentChain: readonly string[] = [],
): string[] {
  const signer = signerOf(parent);
  const child = SpiffeId.parse(childAztpId).toString();
  const depth = scope.depth ?? 0;
  if (!Number.isSafeInteger(depth) || depth < 0 || depth >= MAX_DELEGATION_CHAIN) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `delegation depth must be a whole number from 0 to ${MAX_DELEGATION_CHAIN - 1}`,
    );
  }
  const ttl = scope.ttlSeconds ?? DEFAULT_DELEGATION_TTL_SECONDS;
  if (!(ttl > 0)) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "delegation ttlSeconds must be positive");
  const iat = Math.floor(Date.now() / 1000);
  const claims: DelegationClaims = {
    iss: signer.id.toString(),
    sub: child,
    iat,
    exp: iat + Math.floor(ttl),
    jti: newJti(),
    scope: { tools: checkPatterns("tools", scope.tools), servers: checkPatterns("servers", scope.servers), depth },
  };
  const last = parentChain[parentChain.length - 1];
  if (last !== undefined) claims.prev = tokenHash(last);
  return [...parentChain, signWithHeader(signer, DELEGATION_TYP, claims)];
}

function readClaims(payload: Record<string, unknown>, index: number): DelegationClaims {
  // iat and exp were checked by the validator's time window.
  const { sub, jti, scope, prev } = payload;
  const s = scope as Record<string, unknown> | undefined;
  const ok =
    typeof sub === "string" &&
    typeof jti === "string" &&
    s !== null &&
    typeof s === "object" &&
    Array.isArray(s.tools) &&
    s.tools.every((t) => typeof t === "string") &&
    Array.isArray(s.servers) &&
    s.servers.every((t) => typeof t === "string") &&
    Number.isSafeInteger(s.depth) &&
    (s.depth as number) >= 0 &&
    (prev === undefined || typeof prev === "string");
  if (!ok) invalid("claims", `link ${index} has malformed claims`);
  return payload as unknown as DelegationClaims;
}

export interface VerifyDelegationOptions {
  /** The invocation's signer: must be the last delegate. */
  signer: string;
  audience: string;
  tool: string;
  /** The invocation's expiry: must not outlive the delegation. */
  exp: number;
  trust: Trust;
  now: Date;
}

export function verifyDelegationChain(chain: unknown, options: VerifyDelegationOptions): VerifiedDelegation[] {
  if (
    !Array.isArray(chain) ||
    chain.length === 0 ||
    chain.length > MAX_DELEGATION_CHAIN ||
    !chain.every((t) => typeof t === "string")
  ) {
    invalid("links", `the chain must be a list of 1 to ${MAX_DELEGATION_CHAIN} tokens`);
  }
  const out: VerifiedDelegation[] = [];
  let prev: DelegationClaims | undefined;
  (chain as string[]).forEach((token, i) => {
    // Chain, signature, iss, revocation and the time window: the one validator, whose rules
    // (chain, signature, revoked, expired, not_yet_valid, ...) these links' errors carry.
    const { claims } = validateToken(token, DELEGATION_KIND, options.trust, {
      now: options.now,
      what: `delegation link ${i}`,
    });
    const c = readClaims(claims, i);
    if (prev === undefined) {
      if (c.prev !== undefined) invalid("binding", "the first link must not reference a previous one");
    } else {
      if (c.iss !== prev.sub)
        invalid("delegator", `link ${i} is signed by ${c.iss}, but link ${i - 1} delegated to ${prev.sub}`);
      if (c.prev !== tokenHash((chain as string[])[i - 1] as string))
        invalid("binding", `link ${i} is not bound to link ${i - 1}`);
      if (prev.scope.depth < 1) invalid("depth", `link ${i - 1} allows no further delegation`);
      if (c.scope.depth >= prev.scope.depth) invalid("depth", `link ${i} does not reduce the remaining depth`);
      if (!narrows(prev.scope.tools, c.scope.tools))
        invalid("scope.tools", `link ${i} widens the tools of link ${i - 1}`);
      if (!narrows(prev.scope.servers.map(normalizeId), c.scope.servers.map(normalizeId)))
        invalid("scope.servers", `link ${i} widens the servers of link ${i - 1}`);
      if (c.exp > prev.exp) invalid("outlives", `link ${i} outlives link ${i - 1}`);
    }
    out.push({ delegator: c.iss, delegate: c.sub, scope: c.scope, exp: c.exp });
    prev = c;
  });
  const last = prev as DelegationClaims;
  let delegate: string;
  try {
    delegate = SpiffeId.parse(last.sub).toString();
  } catch (e) {
    invalid("delegate", "the last delegate is not a valid SPIFFE ID", e);
  }
  if (delegate !== options.signer)
    invalid("delegate", `the last delegate ${delegate} is not the signer ${options.signer}`);
  if (!matchesAny(last.scope.tools, options.tool))
    invalid("tool", `tool ${options.tool} is outside the delegated tools`);
  if (!matchesAny(last.scope.servers.map(normalizeId), normalizeId(options.audience)))
    invalid("server", `server ${options.audience} is outside the delegated servers`);
  if (options.exp > last.exp) invalid("invocation_outlives", "the invocation outlives its delegation");
  return out;
}
