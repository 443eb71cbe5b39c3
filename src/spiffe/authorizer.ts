/**
 * Authorizers decide whether a peer's SPIFFE ID is acceptable, as go-spiffe's tlsconfig
 * authorizers do: small composable values (any ID, this ID, one of these, member of this
 * trust domain). Each throws an AztpError naming why the ID was refused.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId, TrustDomain } from "./spiffeid.js";

export type Authorizer = (id: SpiffeId) => void;

function refuse(id: SpiffeId, why: string): never {
  throw new AztpError(ErrorCodes.PEER_NOT_AUTHORIZED, `peer ${id.toString()} is not authorized: ${why}`);
}

export function authorizeAny(): Authorizer {
  return () => undefined;
}

export function authorizeId(expected: string | SpiffeId): Authorizer {
  const want = typeof expected === "string" ? SpiffeId.parse(expected) : expected;
  return (id) => {
    if (!id.equals(want)) refuse(id, `expected ${want.toString()}`);
  };
}

export function authorizeOneOf(expected: ReadonlyArray<string | SpiffeId>): Authorizer {
  const want = expected.map((e) => (typeof e === "string" ? SpiffeId.parse(e) : e));
  return (id) => {
    if (!want.some((w) => w.equals(id))) refuse(id, `expected one of ${want.map(String).join(", ")}`);
  };
}

export function authorizeMemberOf(trustDomain: string | TrustDomain): Authorizer {
  const td = typeof trustDomain === "string" ? TrustDomain.parse(trustDomain) : trustDomain;
  return (id) => {
    if (!id.memberOf(td)) refuse(id, `expected a member of ${td.name}`);
  };
}

/** Builds an authorizer from the short forms options accept: an ID, a list of IDs, or a function. */
export function toAuthorizer(
  spec: string | SpiffeId | ReadonlyArray<string | SpiffeId> | Authorizer | undefined,
): Authorizer {
  if (spec === undefined) return authorizeAny();
  if (typeof spec === "function") return spec;
  if (Array.isArray(spec)) return authorizeOneOf(spec);
  return authorizeId(spec as string | SpiffeId);
}
