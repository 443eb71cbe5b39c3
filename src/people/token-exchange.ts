/**
 * RFC 8693 token exchange: a person's delegation to an agent (DESIGN §13). The one rule set,
 * used by `aztp serve`'s token endpoint (grant `urn:ietf:params:oauth:grant-type:token-exchange`)
 * and by the embedded authority in-process, so both hand out the same token for the same ask.
 *
 * The subject token is either
 * - the person's own token (an ID token or a JWT access token of a trusted OpenID Provider of
 *   the actor's trust domain: people/person-issuers.ts): the first hop, act = [the actor]; or
 * - an on-behalf-of token this library issued: a further hop, extended to a sub-agent. The new
 *   actor must be a child of the token's current actor (the agent that holds it made it, as
 *   `subAgent` does), and what it asks may only narrow: resources covered by the token's
 *   audience, scopes among its scopes, never outliving it.
 *
 * The actor is authenticated by whoever calls this (the token endpoint by its client assertion,
 * the embedded authority by holding the identity), and named with the public key it proved: the
 * token is bound to that key (`cnf.jkt`, RFC 7800), so only that agent can use it.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import {
  audienceCovers,
  DEFAULT_OBO_TTL_SECONDS,
  isOnBehalfOfToken,
  MAX_ACT_DEPTH,
  MAX_OBO_TTL_SECONDS,
  mintOnBehalfOf,
  readOnBehalfOf,
  type Person,
} from "../invocation/on-behalf-of.js";
import type { Trust } from "../invocation/trust.js";
import { decodeHeader } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { PersonIssuers } from "./person-issuers.js";

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
/** RFC 8693 §3: the token types this exchange takes and issues. */
export const TOKEN_TYPE = {
  idToken: "urn:ietf:params:oauth:token-type:id_token",
  accessToken: "urn:ietf:params:oauth:token-type:access_token",
  jwt: "urn:ietf:params:oauth:token-type:jwt",
} as const;
const SUBJECT_TOKEN_TYPES: ReadonlySet<string> = new Set(Object.values(TOKEN_TYPE));

export interface TokenExchangeRequest {
  subjectToken: string;
  /** RFC 8693 `subject_token_type`: id_token, access_token or jwt. */
  subjectTokenType: string;
  /** RFC 8707 `resource`s (callee SPIFFE IDs, or `spiffe://<td>` for all of a trust domain's). */
  resources?: readonly string[];
  scopes?: readonly string[];
  ttlSeconds?: number;
}

export interface TokenExchangeActor {
  /** The authenticated actor's SPIFFE ID. */
  spiffeId: string;
  /** The public key it proved: the token is bound to it. */
  key: KeyObject;
}

export interface TokenExchangeDeps {
  /** The trusted OpenID Providers of a trust domain. */
  issuers(trustDomain: string): PersonIssuers;
  /** Bundles and revocations, to read an on-behalf-of subject token. */
  trust: Trust;
  /** The parent of an identity in the registry (undefined: none, or unknown). */
  parentOf(spiffeId: string): string | undefined;
  isRevoked(spiffeId: string): boolean;
  /** The trust domain's JWT key, which signs the token (as it signs JWT-SVIDs). */
  signingKey(trustDomain: string): { key: KeyObject; kid: string };
  now?: Date;
}

export interface TokenExchangeResult {
  /** The on-behalf-of token (RFC 8693 `access_token`; its `issued_token_type` is jwt, `token_type` N_A). */
  token: string;
  issuedTokenType: typeof TOKEN_TYPE.jwt;
  person: Person;
  /** The agents acting for the person, the first one first; the last is the actor. */
  actors: string[];
  audience: string[];
  scopes: string[];
  expiresAt: Date;
}

function notAllowed(message: string, rule: string): never {
  throw new AztpError(ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED, `token exchange: ${message}`, { rule });
}

function badRequest(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `token exchange: ${message}`);
}

/** The RFC 8693 token type of a subject token, read from its header: jwt (ours), access_token or id_token. */
export function subjectTokenTypeOf(token: string): string {
  if (isOnBehalfOfToken(token)) return TOKEN_TYPE.jwt;
  const dot = token.indexOf(".");
  try {
    const typ = decodeHeader(token.slice(0, Math.max(0, dot)), DEFAULT_ALGORITHMS).typ;
    if (typeof typ === "string" && /^(application\/)?at\+jwt$/i.test(typ)) return TOKEN_TYPE.accessToken;
  } catch {
    // Unreadable: the exchange says why.
  }
  return TOKEN_TYPE.idToken;
}

/** A resource the token is for: a workload's SPIFFE ID, or a trust domain's (`spiffe://<td>`). */
function resourceOf(r: string): string {
  try {
    return SpiffeId.parse(r).toString();
  } catch (e) {
    throw new AztpError(
      ErrorCodes.OAUTH_RESOURCE_INVALID,
      `token exchange: resource ${JSON.stringify(r).slice(0, 80)} is neither a SPIFFE ID nor a trust domain's spiffe://<td>`,
      { cause: e },
    );
  }
}

/** Exchanges a person's token (or an on-behalf-of token) for one bound to `actor`. */
export async function exchangeToken(
  request: TokenExchangeRequest,
  actor: TokenExchangeActor,
  deps: TokenExchangeDeps,
): Promise<TokenExchangeResult> {
  const now = deps.now ?? new Date();
  if (typeof request.subjectToken !== "string" || request.subjectToken.length === 0)
    badRequest("subject_token is required");
  if (!SUBJECT_TOKEN_TYPES.has(request.subjectTokenType))
    badRequest(
      `subject_token_type ${JSON.stringify(request.subjectTokenType)?.slice(0, 80)} is not one of ${[...SUBJECT_TOKEN_TYPES].join(", ")}`,
    );
  const actorId = SpiffeId.parse(actor.spiffeId);
  const actorKey = actorId.toString();
  if (deps.isRevoked(actorKey)) notAllowed(`${actorKey} is revoked`, "revoked");
  const ttl = request.ttlSeconds ?? DEFAULT_OBO_TTL_SECONDS;
  if (!(Number.isFinite(ttl) && ttl > 0 && ttl <= MAX_OBO_TTL_SECONDS))
    badRequest(`ttl must be 1 to ${MAX_OBO_TTL_SECONDS} s`);
  let resources = (request.resources ?? []).map(resourceOf);
  const scopes = [...new Set(request.scopes ?? [])];

  let person: Person;
  let actors: string[];
  let notAfter: Date;
  let claims = {};
  if (isOnBehalfOfToken(request.subjectToken)) {
    // A further hop: only to a sub-agent of the agent holding the token, only narrowing.
    const parent = readOnBehalfOf(request.subjectToken, { trust: deps.trust, now });
    const current = parent.actors[parent.actors.length - 1] as string;
    if (deps.parentOf(actorKey) !== current)
      notAllowed(`${actorKey} is not a sub-agent of ${current}, which holds the delegation`, "not_child");
    if (parent.actors.length >= MAX_ACT_DEPTH)
      notAllowed(`the act chain is already ${MAX_ACT_DEPTH} agents long`, "depth");
    if (resources.length === 0) resources = [...parent.audience];
    const wider = resources.find((r) => !audienceCovers(parent.audience, r));
    if (wider !== undefined) notAllowed(`resource ${wider} is outside the delegation's audience`, "audience");
    if (parent.scopes.length > 0) {
      const extra = scopes.find((sc) => !parent.scopes.includes(sc));
      if (extra !== undefined) notAllowed(`scope ${extra} is outside the delegation's scopes`, "scope");
    }
    person = parent.person;
    actors = [...parent.actors, actorKey];
    notAfter = parent.expiresAt;
    claims = parent.person.claims;
    if (scopes.length === 0 && parent.scopes.length > 0) scopes.push(...parent.scopes);
  } else {
    const verified = await deps.issuers(actorId.trustDomain).verify(request.subjectToken, { now });
    const c = { ...verified.person.claims };
    // An e-mail is personal data: it leaves the exchange (and so reaches every callee's log in
    // the signed call) only when the provider's configuration allows it.
    if (!verified.recordEmail) {
      delete c.email;
      delete c.email_verified;
    }
    person = { ...verified.person, claims: c };
    actors = [actorKey];
    notAfter = verified.expiresAt;
    claims = c;
  }
  const { key, kid } = deps.signingKey(actorId.trustDomain);
  if (notAfter.getTime() <= now.getTime())
    throw new AztpError(ErrorCodes.PERSON_TOKEN_INVALID, "token exchange: the subject token has expired", {
      rule: "expired",
    });
  const token = mintOnBehalfOf({
    trustDomain: actorId.trustDomain,
    key,
    kid,
    person: { issuer: person.issuer, subject: person.subject, claims },
    actors,
    actorKey: actor.key,
    ...(resources.length > 0 ? { audience: resources } : {}),
    scopes,
    notAfter,
    ttlSeconds: ttl,
    now,
  });
  const iat = Math.floor(now.getTime() / 1000);
  const exp = Math.min(iat + Math.floor(ttl), Math.floor(notAfter.getTime() / 1000));
  return {
    token,
    issuedTokenType: TOKEN_TYPE.jwt,
    person,
    actors,
    audience: resources.length > 0 ? resources : [`spiffe://${actorId.trustDomain}`],
    scopes,
    expiresAt: new Date(exp * 1000),
  };
}
