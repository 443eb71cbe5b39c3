/**
 * On-behalf-of tokens: a person's delegation to an agent, the result of an RFC 8693 token
 * exchange (DESIGN §13). The authority that made the exchange signs it with the trust domain's
 * JWT key (as it signs JWT-SVIDs), so a callee verifies it offline from the bundle it already
 * holds, and it rides inside the agent's signed invocation (`obo`), never alone:
 *
 *   header { alg, typ: "aztp-obo+jwt", kid }
 *   claims { iss: "spiffe://<trust domain>", sub: <the person's subject, as their provider names it>,
 *            sub_id: { format: "iss_sub", iss: <their provider>, sub } (RFC 9493),
 *            aud: [resources: a callee's SPIFFE ID, or a trust domain's "spiffe://<td>" for all of its workloads],
 *            iat, exp (never after the person's own token), jti,
 *            act: { sub: <the acting agent>, act: { sub: <the agent before it> ... } } (RFC 8693 §4.1),
 *            cnf: { jkt: <RFC 7638 thumbprint of the acting agent's SVID key> } (RFC 7800),
 *            [scope], [email, email_verified, groups, acr, amr, auth_time] }
 *
 * `iss` names the trust domain whose key signed it (as a JWT-SVID's key is found): an exchange
 * made by `aztp serve` under its public URL and one made in-process by the embedded authority
 * verify the same way. The person's own provider is `sub_id.iss`; a person is (iss, sub),
 * never an e-mail alone.
 *
 * The callee checks, beyond signature and time: the token is bound to the key that signed the
 * invocation (so a token lifted by another agent is useless to it), the act chain is exactly the
 * path of agents the call came through (the delegation links' delegators, then the signer: no
 * hop skipped, added or reordered), it names this callee, and no agent in the chain is revoked.
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { decodeCompact, decodeHeader, signCompact, verifyDecoded, type DecodedJws } from "../spiffe/jws.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { checkTimeWindow, type TimeWindow } from "../spiffe/time-window.js";
import { VerifiedSignatures } from "../spiffe/verified-signatures.js";
import { newJti } from "./nonce.js";
import type { VerifiedDelegation } from "./delegation.js";
import type { Trust } from "./trust.js";
import { TOKEN_ALGORITHMS } from "./validate.js";

export const OBO_TYP = "aztp-obo+jwt";
/** An exchange lives at most this long, and never longer than the person's own token. */
export const MAX_OBO_TTL_SECONDS = 3600;
export const DEFAULT_OBO_TTL_SECONDS = 900;
/** Hops an act chain may hold: as many as a delegation chain has links, plus its root. */
export const MAX_ACT_DEPTH = 9;
/** The clock tolerance of an invocation, which the token rides in. */
const WINDOW: TimeWindow = { leewaySeconds: 30, expRequired: true, iatRequired: true, integerDates: true };

/** The claims of a person an exchange may carry (display claims are recorded only when configured). */
export interface PersonClaims {
  email?: string;
  email_verified?: boolean;
  groups?: string[];
  acr?: string;
  amr?: string[];
  auth_time?: number;
}

export const PERSON_CLAIMS = ["email", "email_verified", "groups", "acr", "amr", "auth_time"] as const;

/** A person: their provider's issuer identifier and their subject there. */
export interface Person {
  issuer: string;
  subject: string;
  /** `<issuer>#<subject>`: the one string policies, audit queries and `aztp:person` use. */
  id: string;
  claims: PersonClaims;
}

export function personId(issuer: string, subject: string): string {
  return `${issuer}#${subject}`;
}

/** RFC 8693 §4.1: the current actor outermost, each earlier one nested inside it. */
export interface ActClaim {
  sub: string;
  act?: ActClaim;
}

export interface OnBehalfOfClaims extends PersonClaims {
  iss: string;
  sub: string;
  sub_id: { format: "iss_sub"; iss: string; sub: string };
  aud: string[];
  iat: number;
  exp: number;
  jti: string;
  act: ActClaim;
  cnf: { jkt: string };
  scope?: string;
}

export interface VerifiedOnBehalfOf {
  person: Person;
  /** The agents that acted for the person, the first one first; the last is the caller. */
  actors: string[];
  jti: string;
  audience: string[];
  scopes: string[];
  expiresAt: Date;
  claims: OnBehalfOfClaims;
}

function invalid(rule: string, message: string, cause?: unknown): never {
  throw new AztpError(
    ErrorCodes.ON_BEHALF_OF_INVALID,
    `on-behalf-of token: ${message}`,
    cause === undefined ? { rule } : { cause, rule },
  );
}

const thumbprints = new WeakMap<KeyObject, string>();
/** On-behalf-of signatures already checked (spiffe/verified-signatures.ts): every other check runs per call. */
const signatures = new VerifiedSignatures();

/**
 * RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key: the required members in
 * lexicographic order, no whitespace. Remembered per key object (one per verified SVID).
 */
export function keyThumbprint(key: KeyObject): string {
  const hit = thumbprints.get(key);
  if (hit !== undefined) return hit;
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" }) as Record<string, string>;
  let members: string;
  if (jwk.kty === "EC") members = `{"crv":"${jwk.crv}","kty":"EC","x":"${jwk.x}","y":"${jwk.y}"}`;
  else if (jwk.kty === "RSA") members = `{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`;
  else if (jwk.kty === "OKP") members = `{"crv":"${jwk.crv}","kty":"OKP","x":"${jwk.x}"}`;
  else throw new AztpError(ErrorCodes.KEY_UNSUPPORTED, `no JWK thumbprint for key type ${String(jwk.kty)}`);
  const t = createHash("sha256").update(members).digest("base64url");
  thumbprints.set(key, t);
  return t;
}

/** The act claim for `actors` (the first actor first): the last one outermost. */
export function actClaimOf(actors: readonly string[]): ActClaim {
  if (actors.length === 0 || actors.length > MAX_ACT_DEPTH)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `an act chain holds 1 to ${MAX_ACT_DEPTH} agents`);
  let act: ActClaim | undefined;
  for (const a of actors) act = act === undefined ? { sub: a } : { sub: a, act };
  return act as ActClaim;
}

/** The agents of an act claim, the first one first; undefined when it is not a well-formed chain. */
export function actorsOf(act: unknown): string[] | undefined {
  const out: string[] = [];
  let cur: unknown = act;
  while (cur !== undefined) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur)) return undefined;
    const { sub, act: inner, ...rest } = cur as Record<string, unknown>;
    // Only sub and act: another member would be a claim about this actor nobody verifies.
    if (Object.keys(rest).length > 0 || typeof sub !== "string") return undefined;
    let id: string;
    try {
      id = SpiffeId.parse(sub).toString();
    } catch {
      return undefined;
    }
    if (id !== sub) return undefined;
    out.push(sub);
    if (out.length > MAX_ACT_DEPTH) return undefined;
    cur = inner;
  }
  return out.length === 0 ? undefined : out.reverse();
}

export interface MintOnBehalfOfOptions {
  /** The trust domain whose JWT key signs: the token's `iss` is `spiffe://<it>`. */
  trustDomain: string;
  key: KeyObject;
  kid: string;
  person: { issuer: string; subject: string; claims?: PersonClaims };
  /** The agents acting for the person, the first one first; the last is the one bound. */
  actors: readonly string[];
  /** The public key of the last actor's SVID: the token is bound to it (`cnf.jkt`). */
  actorKey: KeyObject;
  /** Resources the token is good for (default: every workload of the last actor's trust domain). */
  audience?: readonly string[];
  scopes?: readonly string[];
  /** Never after this: the person's own token's expiry (and a parent token's). */
  notAfter: Date;
  ttlSeconds?: number;
  now?: Date;
}

/** Signs an on-behalf-of token. Throws ERR_ARGUMENT_INVALID on options no verifier would accept. */
export function mintOnBehalfOf(o: MintOnBehalfOfOptions): string {
  if (typeof o.person.issuer !== "string" || o.person.issuer.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an on-behalf-of token needs the person's issuer");
  if (typeof o.person.subject !== "string" || o.person.subject.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an on-behalf-of token needs the person's subject");
  const actors = o.actors.map((a) => SpiffeId.parse(a).toString());
  const last = SpiffeId.parse(actors[actors.length - 1] ?? "");
  const ttl = o.ttlSeconds ?? DEFAULT_OBO_TTL_SECONDS;
  if (!(ttl > 0 && ttl <= MAX_OBO_TTL_SECONDS))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `an on-behalf-of token lives 1 to ${MAX_OBO_TTL_SECONDS} s`);
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  const exp = Math.min(iat + Math.floor(ttl), Math.floor(o.notAfter.getTime() / 1000));
  if (exp <= iat) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "the person's token has expired");
  // A workload's SPIFFE ID, or a trust domain's own (`spiffe://<td>`: every workload of it).
  const audience =
    o.audience !== undefined && o.audience.length > 0
      ? o.audience.map((a) => SpiffeId.parse(a).toString())
      : [TrustDomain.parse(last.trustDomain).id().toString()];
  const claims: OnBehalfOfClaims = {
    iss: TrustDomain.parse(o.trustDomain).id().toString(),
    sub: o.person.subject,
    sub_id: { format: "iss_sub", iss: o.person.issuer, sub: o.person.subject },
    aud: audience,
    iat,
    exp,
    jti: newJti(),
    act: actClaimOf(actors),
    cnf: { jkt: keyThumbprint(o.actorKey) },
  };
  if (o.scopes !== undefined && o.scopes.length > 0) claims.scope = [...new Set(o.scopes)].join(" ");
  const pc = o.person.claims ?? {};
  for (const k of PERSON_CLAIMS) if (pc[k] !== undefined) (claims as unknown as Record<string, unknown>)[k] = pc[k];
  return signCompact({ typ: OBO_TYP, kid: o.kid }, claims, o.key);
}

/** What a person's token says of them, kept only when it has the form the claim's standard gives. */
export function personClaimsOf(payload: Record<string, unknown>): PersonClaims {
  const out: PersonClaims = {};
  if (typeof payload.email === "string") out.email = payload.email;
  if (typeof payload.email_verified === "boolean") out.email_verified = payload.email_verified;
  if (Array.isArray(payload.groups) && payload.groups.every((g) => typeof g === "string"))
    out.groups = payload.groups as string[];
  if (typeof payload.acr === "string") out.acr = payload.acr;
  if (Array.isArray(payload.amr) && payload.amr.every((g) => typeof g === "string")) out.amr = payload.amr as string[];
  if (typeof payload.auth_time === "number" && Number.isSafeInteger(payload.auth_time))
    out.auth_time = payload.auth_time;
  return out;
}

/**
 * Reads an on-behalf-of token and checks what holds whoever presents it: signature with its
 * trust domain's JWT key, time window, the person, a well-formed act chain, and that no agent
 * in it is revoked. Binding and path are the presenter's: verifyOnBehalfOf checks them for a
 * call, a token exchange for the actor it extends the chain to.
 */
export function readOnBehalfOf(token: unknown, o: { trust: Trust; now: Date }): VerifiedOnBehalfOf {
  let decoded: DecodedJws;
  try {
    if (typeof token !== "string") throw new Error("not a string");
    decoded = decodeCompact(token, TOKEN_ALGORITHMS);
  } catch (e) {
    if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED) invalid("alg", e.message, e);
    invalid("malformed", e instanceof Error ? e.message : "not a compact JWS", e);
  }
  const { header, payload: c } = decoded;
  if (header.typ !== OBO_TYP) invalid("typ", `typ must be ${OBO_TYP}, got ${JSON.stringify(header.typ)?.slice(0, 40)}`);
  let td: string;
  try {
    if (typeof c.iss !== "string") throw new Error("not a string");
    const iss = SpiffeId.parse(c.iss);
    // Exactly a trust domain's ID, as the signer wrote it: no path, no other spelling.
    if (iss.path !== "" || iss.toString() !== c.iss) throw new Error("not a trust domain ID");
    td = iss.trustDomain;
  } catch {
    invalid("issuer", `iss ${JSON.stringify(c.iss)?.slice(0, 80)} is not a trust domain's ID (spiffe://<td>)`);
  }
  const bundle = o.trust.bundles.getBundleForTrustDomain(td);
  if (bundle === undefined) invalid("issuer", `no bundle for trust domain ${td}`);
  const key = typeof header.kid === "string" ? bundle.jwtAuthorities.get(header.kid) : undefined;
  if (key === undefined)
    invalid("kid", `trust domain ${td} has no JWT key ${JSON.stringify(header.kid)?.slice(0, 80)}`);
  // A run signs the same token into each of its calls: its signature is checked once per key.
  if (!signatures.has(token as string, key)) {
    if (!verifyDecoded(decoded, key)) invalid("signature", `signature does not verify with ${td}'s JWT key`);
    signatures.add(token as string, key);
  }

  const late = checkTimeWindow(c, o.now.getTime() / 1000, WINDOW);
  if (late !== undefined) invalid(late.rule, `token ${late.message}`);
  if ((c.exp as number) - (c.iat as number) > MAX_OBO_TTL_SECONDS)
    invalid("lifetime", `lives longer than ${MAX_OBO_TTL_SECONDS} s`);

  const subId = c.sub_id as Record<string, unknown> | undefined;
  if (
    typeof c.sub !== "string" ||
    c.sub.length === 0 ||
    typeof subId !== "object" ||
    subId === null ||
    subId.format !== "iss_sub" ||
    typeof subId.iss !== "string" ||
    subId.iss.length === 0 ||
    subId.sub !== c.sub
  )
    invalid("claims", "sub and sub_id (format iss_sub) must name the person");
  if (typeof c.jti !== "string" || c.jti.length < 16 || c.jti.length > 128) invalid("claims", "jti malformed");
  const aud = c.aud;
  if (!Array.isArray(aud) || aud.length === 0 || !aud.every((a) => typeof a === "string"))
    invalid("claims", "aud must be a non-empty list of resources");
  let scopes: string[] = [];
  if (c.scope !== undefined) {
    if (typeof c.scope !== "string") invalid("claims", "scope must be a string");
    scopes = c.scope.split(" ").filter((s) => s.length > 0);
  }
  const cnf = c.cnf as Record<string, unknown> | undefined;
  if (typeof cnf !== "object" || cnf === null || typeof cnf.jkt !== "string")
    invalid("binding", "no cnf.jkt: the token is bound to no key");
  const actors = actorsOf(c.act);
  if (actors === undefined) invalid("act", "act is not a chain of SPIFFE IDs (sub, act)");
  for (const a of actors) {
    if (o.trust.isRevoked(a, "")) invalid("revoked", `${a}, which acts in the chain, is revoked`);
  }
  return {
    person: { issuer: subId.iss, subject: c.sub, id: personId(subId.iss, c.sub), claims: personClaimsOf(c) },
    actors,
    jti: c.jti,
    audience: aud as string[],
    scopes,
    expiresAt: new Date((c.exp as number) * 1000),
    claims: c as unknown as OnBehalfOfClaims,
  };
}

/**
 * Whether a token with audience `aud` is good for `resource`: named itself, or its trust domain's
 * ID (`spiffe://<td>`, every workload of it). `resource` is a SPIFFE ID, or a trust domain's.
 */
export function audienceCovers(aud: readonly string[], resource: string | SpiffeId): boolean {
  const id = typeof resource === "string" ? SpiffeId.parse(resource) : resource;
  // A parsed ID's trust domain is already in its one spelling: its ID is spiffe://<td>.
  return aud.includes(id.toString()) || aud.includes(`spiffe://${id.trustDomain}`);
}

/** Whether `token` is one of this library's on-behalf-of tokens (by its header's `typ`), not a person's own. */
export function isOnBehalfOfToken(token: string): boolean {
  const dot = token.indexOf(".");
  if (dot <= 0) return false;
  try {
    return decodeHeader(token.slice(0, dot), TOKEN_ALGORITHMS).typ === OBO_TYP;
  } catch {
    return false;
  }
}

export interface VerifyOnBehalfOfOptions {
  trust: Trust;
  /** The invocation's verified signer: its ID and the key the token must be bound to. */
  signer: { spiffeId: string; key: KeyObject };
  /** The invocation's verified delegation chain, root first (empty: a direct call). */
  delegation: readonly VerifiedDelegation[];
  /** The callee (me). */
  audience: string;
  now: Date;
}

/**
 * Verifies an on-behalf-of token for a call signed by `signer` (readOnBehalfOf, then): it names
 * this callee, it is bound to the signer's key, and its act chain is exactly the path the call
 * came through. Throws ERR_ON_BEHALF_OF_INVALID with the rule that failed.
 */
export function verifyOnBehalfOf(token: unknown, o: VerifyOnBehalfOfOptions): VerifiedOnBehalfOf {
  const v = readOnBehalfOf(token, o);
  const me = SpiffeId.parse(o.audience);
  if (!audienceCovers(v.audience, me))
    invalid("audience", `aud ${JSON.stringify(v.audience).slice(0, 120)} does not name ${me.toString()}`);
  if (v.claims.cnf.jkt !== keyThumbprint(o.signer.key))
    invalid("binding", `the token is bound to another key than the one ${o.signer.spiffeId} signed the call with`);
  const path =
    o.delegation.length === 0
      ? [o.signer.spiffeId]
      : [
          SpiffeId.parse(o.delegation[0]!.delegator).toString(),
          ...o.delegation.map((d) => SpiffeId.parse(d.delegate).toString()),
        ];
  if (v.actors.length !== path.length || v.actors.some((a, i) => a !== path[i]))
    invalid("act", `the act chain ${v.actors.join(" → ")} is not the path the call came through (${path.join(" → ")})`);
  return v;
}
