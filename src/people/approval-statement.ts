/**
 * An approval statement: the second form of a person's approval (people/approval.ts), made by an
 * approval service instead of the person's own ID token. The service (a workload with an SVID: a
 * chat bot, a web app) authenticated the person itself and signs that this person approved the
 * request whose digest is `nonce`. A callee accepts one only from a workload its policy names in
 * `ApproverIdentities`; the person in it must still be an approver the policy allows.
 *
 * Token: header { alg, typ: "aztp-approval+jwt", x5c }, claims { iss: the service's SPIFFE ID,
 * iat, exp (≤ 300 s after iat), jti, nonce: the approval request's digest (as an approver's ID
 * token carries it), sub_id: { format: "iss_sub", iss: the person's provider, sub } (RFC 9493,
 * as on-behalf-of tokens name people), auth_time: when the service authenticated them, and
 * optionally groups and amr, which the service vouches for }.
 *
 * Read through the one validator (invocation/validate.ts): chain, signature, iss = the SVID's
 * SPIFFE ID, the service not revoked, the time window. Every failure is ERR_APPROVAL_INVALID
 * with a rule of the approval check.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { signerOf, signWithHeader, type SignerLike } from "../invocation/codec.js";
import { newJti } from "../invocation/nonce.js";
import { personId } from "../invocation/on-behalf-of.js";
import {
  APPROVAL_STATEMENT_KIND,
  APPROVAL_STATEMENT_TYP,
  MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS,
} from "../invocation/token-kinds.js";
import type { Trust } from "../invocation/trust.js";
import { validateToken, type TokenRule } from "../invocation/validate.js";
import { isPlainObject } from "../json/value.js";

export { APPROVAL_STATEMENT_TYP, MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS };

/** The person who approved, as their provider names them. */
export interface ApprovingPerson {
  /** Their OpenID Provider's issuer URL. */
  issuer: string;
  subject: string;
}

/** What the service vouches for beyond who the person is. */
export interface ApprovalStatementClaims {
  groups?: string[];
  amr?: string[];
}

export interface SignApprovalStatementOptions {
  /** The approval request's digest (`approvalNonce(request)`). */
  nonce: string;
  person: ApprovingPerson;
  /** When the service authenticated the person. */
  authTime: Date;
  claims?: ApprovalStatementClaims;
  /** Default and maximum: 300 s. */
  ttlSeconds?: number;
  now?: Date;
}

/** A statement read and validated: who signed it, and who approved what, when. */
export interface ReadApprovalStatement {
  /** The approval service's SPIFFE ID (spiffe:// spelling). */
  service: string;
  person: { issuer: string; subject: string; id: string };
  nonce: string;
  authTime: Date;
  issuedAt: Date;
  groups?: string[];
  amr?: string[];
}

/** The longest statement text a call may carry (characters): an x5c chain and a few claims. */
export const MAX_APPROVAL_STATEMENT_LENGTH = 16_384;

function argument(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `approval statement: ${message}`);
}

function invalid(rule: string, message: string, cause?: unknown): never {
  throw new AztpError(
    ErrorCodes.APPROVAL_INVALID,
    `approval statement: ${message}`,
    cause === undefined ? { rule } : { rule, cause },
  );
}

function isIssuerUrl(value: unknown): value is string {
  if (typeof value !== "string" || value.length > 2048 || !/^https?:\/\//i.test(value)) return false;
  try {
    return new URL(value).search === "";
  } catch {
    return false;
  }
}

function isSubject(value: unknown): value is string {
  return typeof value === "string" && value.length > 0 && value.length <= 255;
}

function isStringList(value: unknown): value is string[] {
  return (
    Array.isArray(value) &&
    value.length <= 256 &&
    value.every((v) => typeof v === "string" && v.length > 0 && v.length <= 256)
  );
}

/** Signs, as the approval service `identity`, that `person` approved the request whose digest is `nonce`. */
export function signApprovalStatementFor(identity: SignerLike, o: SignApprovalStatementOptions): string {
  if (typeof o.nonce !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(o.nonce))
    argument("nonce must be an approval request's digest (approvalNonce)");
  if (!isPlainObject(o.person) || !isIssuerUrl(o.person.issuer) || !isSubject(o.person.subject))
    argument("person must be { issuer: their provider's issuer URL, subject }");
  if (!(o.authTime instanceof Date) || Number.isNaN(o.authTime.getTime()))
    argument("authTime must be when the service authenticated the person");
  const ttl = o.ttlSeconds ?? MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS)
    argument(`ttlSeconds must be 1 to ${MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS}`);
  const { groups, amr } = o.claims ?? {};
  if (groups !== undefined && !isStringList(groups)) argument("claims.groups must be a list of strings");
  if (amr !== undefined && !isStringList(amr)) argument("claims.amr must be a list of strings");
  const signer = signerOf(identity);
  const iat = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return signWithHeader(signer, APPROVAL_STATEMENT_TYP, {
    iss: signer.id.toString(),
    iat,
    exp: iat + ttl,
    jti: newJti(),
    nonce: o.nonce,
    sub_id: { format: "iss_sub", iss: o.person.issuer, sub: o.person.subject },
    auth_time: Math.floor(o.authTime.getTime() / 1000),
    ...(groups !== undefined ? { groups: [...groups] } : {}),
    ...(amr !== undefined ? { amr: [...amr] } : {}),
  });
}

/** The approval check's rule for a validator rule. */
function ruleOf(rule: TokenRule | undefined): string {
  switch (rule) {
    case "chain":
      return "chain";
    case "signature":
    case "alg":
    case "issuer":
      return "signature";
    case "revoked":
      return "revoked";
    case "expired":
    case "not_yet_valid":
    case "lifetime":
    case "too_old":
      return "expired";
    default:
      return "malformed";
  }
}

/**
 * Validates an approval statement with `trust` (chain, signature, iss, revocation, time window)
 * and reads its claims. Says nothing about whether its service may approve, or for what: the
 * approval check (people/approval.ts) decides that.
 */
export function readApprovalStatement(token: unknown, o: { trust: Trust; now?: Date }): ReadApprovalStatement {
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_APPROVAL_STATEMENT_LENGTH)
    invalid("malformed", "must be a compact JWS");
  let c: Record<string, unknown>;
  let service: string;
  try {
    const v = validateToken(token, APPROVAL_STATEMENT_KIND, o.trust, { now: o.now });
    c = v.claims;
    service = v.signer.spiffeId;
  } catch (e) {
    if (!(e instanceof AztpError)) throw e;
    invalid(ruleOf(e.rule as TokenRule | undefined), e.message.replace(/^approval statement: /, ""), e);
  }
  if (typeof c.jti !== "string" || c.jti.length === 0) invalid("malformed", "has no jti");
  if (typeof c.nonce !== "string" || c.nonce.length === 0) invalid("malformed", "has no nonce");
  const subId = c.sub_id;
  if (
    !isPlainObject(subId) ||
    subId.format !== "iss_sub" ||
    !isIssuerUrl(subId.iss) ||
    !isSubject(subId.sub) ||
    Object.keys(subId).length !== 3
  )
    invalid("malformed", "sub_id must name the person: { format: iss_sub, iss: their provider, sub }");
  if (typeof c.auth_time !== "number" || !Number.isInteger(c.auth_time))
    invalid("malformed", "auth_time must be when the service authenticated the person (whole seconds)");
  if (c.groups !== undefined && !isStringList(c.groups)) invalid("malformed", "groups must be a list of strings");
  if (c.amr !== undefined && !isStringList(c.amr)) invalid("malformed", "amr must be a list of strings");
  const iat = c.iat as number;
  if (c.auth_time > iat + APPROVAL_STATEMENT_KIND.window.leewaySeconds)
    invalid("auth_time", "auth_time is after the statement was signed");
  return {
    service,
    person: { issuer: subId.iss, subject: subId.sub, id: personId(subId.iss, subId.sub) },
    nonce: c.nonce,
    authTime: new Date(c.auth_time * 1000),
    issuedAt: new Date(iat * 1000),
    ...(c.groups !== undefined ? { groups: c.groups } : {}),
    ...(c.amr !== undefined ? { amr: c.amr } : {}),
  };
}
