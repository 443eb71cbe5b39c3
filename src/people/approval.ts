/**
 * Approvals bound to the exact call (DESIGN §13): a policy's `Approval` block lets a call run
 * only when a person it names approved that very call, authenticated at that moment.
 *
 * The callee refuses such a call that carries no approval with ERR_APPROVAL_REQUIRED, whose
 * `detail` is the approval request: the callee, the tool, the argument digest, the caller, the
 * person the call is made for, the policy's reason and approvers, a fresh request id and an
 * expiry, and `nonce`, the base64url SHA-256 of the request's RFC 8785 form (without `nonce`).
 * The approver signs in at a trusted OpenID Provider with that nonce; the caller signs the call
 * again with `apr: { req: <the request>, idt: <their ID token> }` among the invocation's claims,
 * so the approval is covered by the caller's signature and cannot ride on another call.
 *
 * The callee (CalleeGuard.admit, after the policy step) checks, in this order: the claim's
 * shape (`malformed`) → the request is the one this call needs now: same callee, tool,
 * argument digest, caller and person, same reason, approvers and maximum age (`call`) → the
 * request has not expired and holds no longer than the policy's MaxAgeSeconds (`expired`) →
 * the ID token, with the one person-token verifier (people/person-issuers.ts): a trusted
 * provider (`issuer`), its key and signature (`signature`), its time window (`expired`), its
 * audience and form (`person_token`), its nonce is the request's digest (`nonce`), the person
 * signed in at most MaxAgeSeconds ago (`auth_time`) → the person may approve under every
 * matching statement (`approver`) → the request id was never used (`replayed`: an approval is
 * single-use, remembered only once every other check passed, so a refused one burns nothing).
 *
 * The second form (people/approval-statement.ts): `apr: { req, stm }`, where `stm` is an approval
 * statement an approval service (a workload the policy names in `ApproverIdentities`) signed with
 * its SVID: it authenticated the person itself and vouches that they approved the request whose
 * digest is the statement's `nonce`. In place of the ID token step: the policy accepts statements
 * at all (`approver_identity`) → the statement through the one validator: chain (`chain`),
 * signature and iss (`signature`), the service not revoked (`revoked`), its short time window
 * (`expired`), its claims (`malformed`) → the service is one every matching statement names
 * (`approver_identity`) → its nonce is the request's digest (`nonce`) → the service authenticated
 * the person at most MaxAgeSeconds ago (`auth_time`); then the approver and single-use steps
 * as above, with the person and groups the statement names.
 *
 * Everything an auditor needs is in the invocation token the audit entry keeps: the request,
 * the ID token (checked again with the provider's keys) or the statement (with the bundle), and
 * the call it is bound to.
 */
import { createHash } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalJson } from "../json/canonical.js";
import { isPlainObject } from "../json/value.js";
import type { SignerLike } from "../invocation/codec.js";
import type { ApprovalClaim, VerifiedApprovalSummary, VerifiedInvocation } from "../invocation/invocation.js";
import { newJti } from "../invocation/nonce.js";
import type { ReplayCache } from "../invocation/replay.js";
import type { Trust } from "../invocation/trust.js";
import { approverAllowed, approverIdentityAllowed, type ApprovalRequirement } from "../policy/evaluate.js";
import {
  MAX_APPROVAL_STATEMENT_LENGTH,
  readApprovalStatement,
  signApprovalStatementFor,
  type ApprovalStatementClaims,
  type ApprovingPerson,
  type ReadApprovalStatement,
} from "./approval-statement.js";
import type { PersonIssuers, VerifiedPersonToken } from "./person-issuers.js";

/** The clock tolerance of a request's expiry: an invocation's. */
export const APPROVAL_LEEWAY_SECONDS = 30;
/** The longest ID token an approval may carry (characters). */
const MAX_ID_TOKEN_LENGTH = 16_384;

/** What a person approves: one call, and the policy's terms for approving it. */
export interface ApprovalRequest {
  /** The callee's SPIFFE ID (the invocation's `aud`). */
  callee: string;
  tool: string;
  /** The invocation's `args_sha256`: the approval holds for these arguments only. */
  argsDigest: string;
  /** The caller's SPIFFE ID (the invocation's signer). */
  caller: string;
  /** The person the call is made for, `<iss>#<sub>`, when it is made for one. */
  person?: string;
  /** The policy's reasons, joined with "; ". */
  reason: string;
  /**
   * Who may approve: every matching statement's `Approvers` (patterns, `$person`). An approval
   * must satisfy each statement in `statements` (usually one).
   */
  approvers: string[];
  approverGroups?: string[];
  /**
   * The approval services that may sign an approval statement instead of the person's ID token
   * (every matching statement's `ApproverIdentities`); absent: only the ID token form holds.
   */
  approverIdentities?: string[];
  /** The approver signs in at most this long before the call; the request expires this long after it was made. */
  maxAgeSeconds: number;
  /** The Allow statements asking for the approval (Sid, or index in their document). */
  statements: Array<string | number>;
  /** Random, 128 bits: an approval is used once. */
  requestId: string;
  /** ISO 8601, whole seconds. */
  expiresAt: string;
}

/** The request as ERR_APPROVAL_REQUIRED's `detail` carries it: with the nonce to sign in with. */
export interface ApprovalRequestDetail extends ApprovalRequest {
  /** base64url SHA-256 of the request's RFC 8785 form (without this member): the ID token's `nonce`. */
  nonce: string;
}

/**
 * An approval as a caller holds it: the request, and either the approver's ID token for its
 * nonce or an approval statement an approval service signed for it (signApprovalStatement).
 */
export type Approval =
  | { request: ApprovalRequest | ApprovalRequestDetail; idToken: string; statement?: undefined }
  | { request: ApprovalRequest | ApprovalRequestDetail; statement: string; idToken?: undefined };

/** What the callee verified: who approved, when, and what. */
export interface VerifiedApproval extends VerifiedApprovalSummary {
  request: ApprovalRequest;
  /** The approver's ID token, in the ID token form. */
  personToken?: VerifiedPersonToken;
  /** The approval statement, in the statement form (its `service` signed it). */
  statement?: ReadApprovalStatement;
}

const REQUEST_KEYS = [
  "callee",
  "tool",
  "argsDigest",
  "caller",
  "person",
  "reason",
  "approvers",
  "approverGroups",
  "approverIdentities",
  "maxAgeSeconds",
  "statements",
  "requestId",
  "expiresAt",
] as const;

function invalid(rule: string, message: string, cause?: unknown): never {
  throw new AztpError(
    ErrorCodes.APPROVAL_INVALID,
    `approval: ${message}`,
    cause === undefined ? { rule } : { rule, cause },
  );
}

function unique(values: Iterable<string>): string[] {
  return [...new Set(values)];
}

/** The request without `nonce` (or anything else not a request member), members in their order. */
function requestOnly(request: ApprovalRequest | ApprovalRequestDetail): ApprovalRequest {
  const out: Record<string, unknown> = {};
  for (const k of REQUEST_KEYS)
    if ((request as unknown as Record<string, unknown>)[k] !== undefined) out[k] = request[k];
  return out as unknown as ApprovalRequest;
}

/** The nonce an approver's ID token must carry for `request`: base64url SHA-256 of its RFC 8785 form. */
export function approvalNonce(request: ApprovalRequest | ApprovalRequestDetail): string {
  return createHash("sha256")
    .update(canonicalJson(requestOnly(request)))
    .digest("base64url");
}

/**
 * The approval request for a verified call under `requirements` (the policy decision's
 * `approval`), with the given id and expiry (a new request: a fresh id, expiring the smallest
 * MaxAgeSeconds from `now`).
 */
export function approvalRequest(
  verified: Pick<VerifiedInvocation, "caller" | "claims" | "onBehalfOf">,
  requirements: readonly ApprovalRequirement[],
  o: { requestId?: string; expiresAt?: string; now?: Date } = {},
): ApprovalRequest {
  if (requirements.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an approval request needs the policy's approval requirements");
  const maxAgeSeconds = Math.min(...requirements.map((r) => r.maxAgeSeconds));
  const groups = requirements.flatMap((r) => r.approverGroups ?? []);
  const identities = requirements.flatMap((r) => r.approverIdentities ?? []);
  const person = verified.onBehalfOf?.person.id;
  const nowSeconds = Math.floor((o.now ?? new Date()).getTime() / 1000);
  return {
    callee: verified.claims.aud,
    tool: verified.claims.tool,
    argsDigest: verified.claims.args_sha256,
    caller: verified.caller.toString(),
    ...(person !== undefined ? { person } : {}),
    reason: unique(requirements.map((r) => r.reason)).join("; "),
    approvers: unique(requirements.flatMap((r) => r.approvers)),
    ...(groups.length > 0 ? { approverGroups: unique(groups) } : {}),
    ...(identities.length > 0 ? { approverIdentities: unique(identities) } : {}),
    maxAgeSeconds,
    statements: requirements.map((r) => r.statement),
    requestId: o.requestId ?? newJti(),
    expiresAt: o.expiresAt ?? new Date((nowSeconds + maxAgeSeconds) * 1000).toISOString(),
  };
}

/** The request with its nonce, as ERR_APPROVAL_REQUIRED's detail. */
export function approvalRequestDetail(request: ApprovalRequest): ApprovalRequestDetail {
  return { ...requestOnly(request), nonce: approvalNonce(request) };
}

/** ERR_APPROVAL_REQUIRED for a call that carries no approval, its detail a new request. */
export function approvalRequired(
  verified: Pick<VerifiedInvocation, "caller" | "claims" | "onBehalfOf">,
  requirements: readonly ApprovalRequirement[],
  now?: Date,
): AztpError {
  const request = approvalRequestDetail(approvalRequest(verified, requirements, now ? { now } : {}));
  return new AztpError(
    ErrorCodes.APPROVAL_REQUIRED,
    `${request.tool} needs a person's approval of this call (${request.reason}); approvers: ${request.approvers.join(", ")}; the request is in the error's detail`,
    { detail: request as unknown as Record<string, unknown> },
  );
}

/**
 * The `apr` claim a caller signs for `approval`: the request without its nonce, and the ID token
 * (`idt`) or the approval statement (`stm`), exactly one.
 */
export function approvalClaim(approval: Approval): ApprovalClaim {
  const a = approval as unknown;
  if (
    !isPlainObject(a) ||
    !isPlainObject(a.request) ||
    (typeof a.idToken === "string") === (typeof a.statement === "string") ||
    (a.idToken !== undefined && typeof a.idToken !== "string") ||
    (a.statement !== undefined && typeof a.statement !== "string")
  )
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "an approval is { request: the ERR_APPROVAL_REQUIRED detail, idToken: the approver's ID token } or { request, statement: an approval service's statement }",
    );
  const req = requestOnly(approval.request) as unknown as Record<string, unknown>;
  return typeof approval.idToken === "string" ? { req, idt: approval.idToken } : { req, stm: approval.statement! };
}

export interface SignApprovalStatementOptions {
  /** The request the person approved (the ERR_APPROVAL_REQUIRED detail). */
  request: ApprovalRequest | ApprovalRequestDetail;
  /** Who approved, as their provider names them. */
  person: ApprovingPerson;
  /** When the service authenticated them. */
  authTime: Date;
  /** What the service vouches for beyond who they are (groups, amr). */
  claims?: ApprovalStatementClaims;
  /** At most (and by default) 300 s. */
  ttlSeconds?: number;
  now?: Date;
}

/**
 * Signs, as the approval service `identity` (a workload the callee's policy names in
 * `ApproverIdentities`), that `person`, whom it authenticated at `authTime`, approved `request`.
 * The caller carries it as `{ request, statement }`.
 */
export function signApprovalStatement(identity: SignerLike, o: SignApprovalStatementOptions): string {
  if (!isPlainObject(o) || !isPlainObject(o.request))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an approval statement needs the request the person approved");
  return signApprovalStatementFor(identity, {
    nonce: approvalNonce(o.request),
    person: o.person,
    authTime: o.authTime,
    ...(o.claims !== undefined ? { claims: o.claims } : {}),
    ...(o.ttlSeconds !== undefined ? { ttlSeconds: o.ttlSeconds } : {}),
    ...(o.now !== undefined ? { now: o.now } : {}),
  });
}

/** Whether `approval`'s request is for this call (a caller attaches an approval only to the call it is for). */
export function approvalFits(
  approval: Approval,
  call: { tool: string; argsDigest: string; audience?: string },
): boolean {
  const r = approval.request;
  return (
    r.tool === call.tool &&
    r.argsDigest === call.argsDigest &&
    (call.audience === undefined || r.callee === call.audience)
  );
}

/** The person a token-verify failure concerns, mapped onto this code's rules. */
function personTokenRule(e: AztpError): string {
  if (e.code === ErrorCodes.PERSON_ISSUER_UNTRUSTED) return "issuer";
  switch (e.rule) {
    case "signature":
    case "kid":
    case "alg":
      return "signature";
    case "nonce":
      return "nonce";
    case "auth_time":
      return "auth_time";
    case "expired":
    case "not_yet_valid":
      return "expired";
    default:
      return "person_token";
  }
}

function firstDifference(a: Record<string, unknown>, b: Record<string, unknown>): string {
  for (const k of unique([...Object.keys(b), ...Object.keys(a)])) {
    let same: boolean;
    try {
      same = canonicalJson(a[k] ?? null) === canonicalJson(b[k] ?? null);
    } catch {
      same = false;
    }
    if (!same) return k;
  }
  return "(none)";
}

export interface VerifyApprovalOptions {
  /** The callee's trust domain's OpenID Providers (undefined: it trusts none, so no approval holds). */
  personIssuers: PersonIssuers | undefined;
  /** The callee's replay cache: an approval's request id is remembered until it expires. */
  replay: ReplayCache;
  /** The callee's trust (bundle, revocation): an approval statement is validated with it. */
  trust?: Trust;
  now?: Date;
}

/**
 * Checks the approval a verified call carries against the policy's `requirements` (see the
 * file comment for the order). Throws ERR_APPROVAL_REQUIRED when it carries none (its detail a
 * new request) and ERR_APPROVAL_INVALID with the rule that failed.
 */
export async function verifyApproval(
  verified: Pick<VerifiedInvocation, "caller" | "claims" | "onBehalfOf">,
  requirements: readonly ApprovalRequirement[],
  o: VerifyApprovalOptions,
): Promise<VerifiedApproval> {
  const now = o.now ?? new Date();
  const apr = verified.claims.apr as unknown;
  if (apr === undefined) throw approvalRequired(verified, requirements, now);
  if (!isPlainObject(apr) || Object.keys(apr).some((k) => k !== "req" && k !== "idt" && k !== "stm"))
    invalid("malformed", "apr must be { req, idt } or { req, stm }");
  const { req, idt, stm } = apr as Record<string, unknown>;
  if (!isPlainObject(req)) invalid("malformed", "apr.req must be the approval request");
  if ((idt === undefined) === (stm === undefined))
    invalid("malformed", "apr carries exactly one of idt (an ID token) and stm (an approval statement)");
  if (idt !== undefined && (typeof idt !== "string" || idt.length === 0 || idt.length > MAX_ID_TOKEN_LENGTH))
    invalid("malformed", "apr.idt must be the approver's ID token");
  if (stm !== undefined && (typeof stm !== "string" || stm.length === 0 || stm.length > MAX_APPROVAL_STATEMENT_LENGTH))
    invalid("malformed", "apr.stm must be an approval statement");
  const { requestId, expiresAt } = req;
  if (typeof requestId !== "string" || !/^[A-Za-z0-9_-]{22,128}$/.test(requestId))
    invalid("malformed", "the request's requestId must be 22 to 128 base64url characters");
  const exp = typeof expiresAt === "string" ? Date.parse(expiresAt) / 1000 : Number.NaN;
  if (!Number.isInteger(exp) || new Date(exp * 1000).toISOString() !== expiresAt)
    invalid("malformed", "the request's expiresAt must be an ISO 8601 time in whole seconds");

  // The request must be the one this call needs now: bound to its callee, tool, arguments,
  // caller and person, under the policy's present terms. Anything else approved something else.
  const expected = approvalRequest(verified, requirements, { requestId, expiresAt: expiresAt as string });
  let same: boolean;
  try {
    same = canonicalJson(req) === canonicalJson(expected);
  } catch {
    same = false;
  }
  if (!same) {
    const field = firstDifference(req, expected as unknown as Record<string, unknown>);
    invalid("call", `the approval is not for this call: its request's ${field} differs from this call's`);
  }
  const nowSeconds = now.getTime() / 1000;
  if (nowSeconds > exp + APPROVAL_LEEWAY_SECONDS) invalid("expired", `the approval request expired at ${expiresAt}`);
  if (exp - nowSeconds > expected.maxAgeSeconds + APPROVAL_LEEWAY_SECONDS)
    invalid("expired", `the approval request holds until ${expiresAt}, longer than ${expected.maxAgeSeconds} s`);

  let proof: Pick<VerifiedApproval, "approvedAt" | "personToken" | "statement">;
  let approver: { id: string; groups?: readonly string[] | undefined };
  if (typeof stm === "string") {
    const statement = approvalStatement(stm, expected, requirements, o.trust, now);
    proof = { approvedAt: statement.issuedAt, statement };
    approver = { id: statement.person.id, groups: statement.groups };
  } else {
    if (o.personIssuers === undefined)
      invalid("issuer", "this callee's trust domain trusts no OpenID Provider, so no person's approval can be checked");
    let token: VerifiedPersonToken;
    try {
      token = await o.personIssuers.verify(idt as string, {
        nonce: approvalNonce(expected),
        maxAuthAgeSeconds: expected.maxAgeSeconds,
        now,
      });
    } catch (e) {
      if (!(e instanceof AztpError)) throw e;
      invalid(personTokenRule(e), `the approver's ID token: ${e.message}`, e);
    }
    if (token.kind !== "id_token")
      invalid("person_token", "the approver's token must be an ID token (an access token carries no nonce)");
    proof = { approvedAt: token.issuedAt, personToken: token };
    approver = { id: token.person.id, groups: token.person.claims.groups };
  }

  const person = verified.onBehalfOf?.person.id;
  for (const r of requirements) {
    if (!approverAllowed(r, approver, person))
      invalid(
        "approver",
        `${approver.id} may not approve under statement ${String(r.statement)} (approvers: ${r.approvers.join(", ")}${r.approverGroups ? `; groups: ${r.approverGroups.join(", ")}` : ""})`,
      );
  }

  // Single use, and remembered last: a refused approval burns nothing.
  const remembered = o.replay.checkAndRemember(`approval\n${requestId}`, (exp + APPROVAL_LEEWAY_SECONDS) * 1000);
  const fresh = typeof remembered === "boolean" ? remembered : await remembered;
  if (!fresh) invalid("replayed", `the approval ${requestId} was already used`);

  return { approvedBy: approver.id, requestId, request: expected, ...proof };
}

/**
 * The statement form's checks (see the file comment): the policy accepts statements, the
 * statement is valid, its service is named by every matching statement, it is for this request,
 * and the person was authenticated recently enough.
 */
function approvalStatement(
  stm: string,
  expected: ApprovalRequest,
  requirements: readonly ApprovalRequirement[],
  trust: Trust | undefined,
  now: Date,
): ReadApprovalStatement {
  if (requirements.some((r) => r.approverIdentities === undefined))
    invalid(
      "approver_identity",
      "the policy names no approval service (ApproverIdentities) that may sign an approval statement: approve with the person's ID token",
    );
  if (trust === undefined) invalid("chain", "this callee has no trust to check an approval statement with");
  const statement = readApprovalStatement(stm, { trust, now });
  for (const r of requirements)
    if (!approverIdentityAllowed(r, statement.service))
      invalid(
        "approver_identity",
        `${statement.service} may not sign approvals under statement ${String(r.statement)} (approver identities: ${(r.approverIdentities ?? []).join(", ")})`,
      );
  if (statement.nonce !== approvalNonce(expected))
    invalid("nonce", "the approval statement's nonce is not this request's digest: it approves another request");
  const age = now.getTime() / 1000 - statement.authTime.getTime() / 1000;
  if (age > expected.maxAgeSeconds + APPROVAL_LEEWAY_SECONDS)
    invalid(
      "auth_time",
      `the approval service authenticated ${statement.person.id} ${Math.round(age)} s ago; at most ${expected.maxAgeSeconds} s`,
    );
  return statement;
}
