/**
 * The AZTP policy document: IAM's JSON shape, with principals that are AZTP/SPIFFE IDs.
 *
 *   { "Version": "2012-10-17",
 *     "Statement": [ { "Sid": "search", "Effect": "Allow",
 *                      "Principal": { "AZTP": "aztp://example.org/workload/production/node/*" },
 *                      "Action": "tool:call", "Resource": "search",
 *                      "Condition": { "StringEquals": { "aztp:callerTrustDomain": "example.org" } } } ] }
 *
 * `parsePolicy` is strict, because a policy that does not mean what its author thinks is worse
 * than one that is refused: unknown fields, wrong types, a bad Effect, an unknown condition
 * operator or `aztp:` context key, and contradictory pairs (Action with NotAction) are all
 * rejected with ERR_POLICY_INVALID and the path of the field, e.g. `Statement[2].Effect`.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalJson } from "../json/canonical.js";
import { isPlainObject } from "../json/value.js";
import { sha256Hex } from "../sha256.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { type ConditionBlock, parseConditionBlock } from "./conditions.js";
import { fieldPath, invalid, shown } from "./invalid.js";
import { hasWildcard } from "./match.js";

export type Effect = "Allow" | "Deny";

/**
 * Who a statement is about: `"*"` (anyone), an ID or ID pattern (`aztp://td/workload/*`), a list
 * of them, or IAM's object form `{ "AZTP": ... }`. `aztp://` and `spiffe://` are interchangeable.
 */
export type Principal = string | string[] | { AZTP: string | string[] };

export interface Statement {
  /** Names the statement in decisions and audit entries; unique within its document. */
  Sid?: string;
  Effect: Effect;
  /** Absent (with NotPrincipal absent too) means any principal. */
  Principal?: Principal;
  NotPrincipal?: Principal;
  /** Exactly one of Action and NotAction. Matched case-insensitively, as IAM does. */
  Action?: string | string[];
  NotAction?: string | string[];
  /** At most one of Resource and NotResource; neither means any resource. Case-sensitive. */
  Resource?: string | string[];
  NotResource?: string | string[];
  Condition?: ConditionBlock;
  /**
   * Allow statements only: a call this statement allows runs only with a person's approval of
   * that exact call (people/approval.ts). See `ApprovalBlock`.
   */
  Approval?: ApprovalBlock;
}

/**
 * Who must approve a call an Allow statement matches, and for how long an approval holds:
 *
 *   "Approval": { "Approvers": ["https://login.example.com#*", "$person"],
 *                 "ApproverGroups": ["finance-leads"], "MaxAgeSeconds": 300,
 *                 "Reason": "transfers above 1000" }
 *
 * `Approvers`: who may approve, each `<issuer URL>#<subject>` (wildcards allowed: `#*` is anyone
 * that provider signs in), `*` (any person of a provider the callee's trust domain trusts), or
 * `$person` (the person the call is made for, when there is one). `ApproverGroups`: the approver
 * must also be in one of these groups (their token's `groups`, through the provider's
 * `claimsMap`). `MaxAgeSeconds` (1 to 3600, default 300): the person signed in at most this long
 * before the call, and the approval request expires this long after it was made. `Reason` is
 * shown to the approver and signed with the request. `ApproverIdentities`: the workloads (SPIFFE
 * ID patterns, as in `Principal`) that may sign an approval statement instead of the person's ID
 * token (people/approval-statement.ts: an approval service that authenticated the person
 * itself); without it only the person's own ID token approves. The person in a statement must
 * still be one `Approvers` (and `ApproverGroups`, from the statement's `groups`) allows.
 */
export interface ApprovalBlock {
  Approvers: string | string[];
  ApproverGroups?: string | string[];
  ApproverIdentities?: string | string[];
  MaxAgeSeconds?: number;
  Reason?: string;
}

export const DEFAULT_APPROVAL_MAX_AGE_SECONDS = 300;
export const MAX_APPROVAL_MAX_AGE_SECONDS = 3600;
/** The approver `$person` stands for the person the call is made for. */
export const APPROVER_PERSON = "$person";

export interface PolicyDocument {
  Version: string;
  /** IAM's optional document identifier. */
  Id?: string;
  Statement: Statement[] | Statement;
}

const DOCUMENT_KEYS: ReadonlySet<string> = new Set(["Version", "Id", "Statement"]);
const STATEMENT_KEYS: ReadonlySet<string> = new Set([
  "Sid",
  "Effect",
  "Principal",
  "NotPrincipal",
  "Action",
  "NotAction",
  "Resource",
  "NotResource",
  "Condition",
  "Approval",
]);
const APPROVAL_KEYS: ReadonlySet<string> = new Set([
  "Approvers",
  "ApproverGroups",
  "ApproverIdentities",
  "MaxAgeSeconds",
  "Reason",
]);

/** Object entries whose value is not undefined (JSON has no undefined; a typed literal may). */
function definedEntries(value: Record<string, unknown>): Array<[string, unknown]> {
  return Object.entries(value).filter(([, v]) => v !== undefined);
}

function checkKeys(value: Record<string, unknown>, allowed: ReadonlySet<string>, path: string): void {
  for (const [key] of definedEntries(value)) {
    if (!allowed.has(key)) {
      invalid(fieldPath(path, key), `is not a known field (allowed: ${[...allowed].join(", ")})`);
    }
  }
}

function nonEmptyString(value: unknown, path: string): string {
  if (typeof value !== "string" || value.length === 0) invalid(path, `must be a non-empty string, got ${shown(value)}`);
  return value;
}

/** A string or a non-empty array of strings; returns a frozen copy of the same shape. */
function stringOrList(value: unknown, path: string, check?: (s: string, path: string) => void): string | string[] {
  if (Array.isArray(value)) {
    if (value.length === 0) invalid(path, "must not be an empty list");
    const out = value.map((v, i) => {
      const s = nonEmptyString(v, `${path}[${i}]`);
      check?.(s, `${path}[${i}]`);
      return s;
    });
    return Object.freeze(out) as string[];
  }
  const s = nonEmptyString(value, path);
  check?.(s, path);
  return s;
}

/**
 * A principal entry is `*`, an ID (pattern) under `aztp://` or `spiffe://`, or the subject of
 * another OAuth issuer as a bearer caller is named, `<issuer URL>#<sub>` (pattern). One without
 * wildcards must be valid (a SPIFFE ID; an http(s) issuer with no query or fragment of its
 * own): a typo there would otherwise never match anyone.
 */
function checkPrincipalEntry(entry: string, path: string): void {
  if (entry === "*") return;
  const hash = entry.indexOf("#");
  if (/^https?:\/\//i.test(entry) && hash > 0 && hash < entry.length - 1) {
    if (hasWildcard(entry)) return;
    let issuer: URL | undefined;
    try {
      issuer = new URL(entry.slice(0, hash));
    } catch {
      issuer = undefined;
    }
    if (issuer === undefined || issuer.search !== "")
      invalid(path, `is not <issuer URL>#<subject>: ${shown(entry.slice(0, hash))} is not an issuer identifier`);
    return;
  }
  if (!/^(?:aztp|spiffe):\/\//i.test(entry)) {
    invalid(
      path,
      `must be "*", an aztp:// or spiffe:// ID (pattern), or an OAuth issuer's subject as <issuer URL>#<sub>, got ${shown(entry)}`,
    );
  }
  if (hasWildcard(entry)) return;
  try {
    SpiffeId.parse(entry);
  } catch (err) {
    invalid(path, `is not a valid ID: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parsePrincipal(value: unknown, path: string): Principal {
  if (isPlainObject(value)) {
    checkKeys(value, new Set(["AZTP"]), path);
    if (value.AZTP === undefined) invalid(path, 'object form must be { "AZTP": ID or [IDs] }');
    return Object.freeze({ AZTP: stringOrList(value.AZTP, fieldPath(path, "AZTP"), checkPrincipalEntry) });
  }
  return stringOrList(value, path, checkPrincipalEntry);
}

/** An approver: `$person`, `*`, or a person as `<issuer URL>#<subject>` (pattern). */
function checkApproverEntry(entry: string, path: string): void {
  if (entry === APPROVER_PERSON || entry === "*") return;
  const hash = entry.indexOf("#");
  if (!/^https?:\/\//i.test(entry) || hash <= 0 || hash === entry.length - 1)
    invalid(path, `must be "$person", "*" or a person as <issuer URL>#<subject> (pattern), got ${shown(entry)}`);
  if (hasWildcard(entry.slice(0, hash))) return;
  let issuer: URL | undefined;
  try {
    issuer = new URL(entry.slice(0, hash));
  } catch {
    issuer = undefined;
  }
  if (issuer === undefined || issuer.search !== "")
    invalid(path, `is not <issuer URL>#<subject>: ${shown(entry.slice(0, hash))} is not an issuer identifier`);
}

/** An approval service: a workload's aztp:// or spiffe:// ID (pattern); never `*` (any workload at all). */
function checkApproverIdentityEntry(entry: string, path: string): void {
  if (!/^(?:aztp|spiffe):\/\/[^*?]/i.test(entry))
    invalid(
      path,
      `must be a workload's aztp:// or spiffe:// ID (pattern, trust domain spelled out), got ${shown(entry)}`,
    );
  if (hasWildcard(entry)) return;
  try {
    SpiffeId.parse(entry);
  } catch (err) {
    invalid(path, `is not a valid ID: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseApproval(raw: unknown, path: string): ApprovalBlock {
  if (!isPlainObject(raw)) invalid(path, "must be an object");
  checkKeys(raw, APPROVAL_KEYS, path);
  if (raw.Approvers === undefined) invalid(fieldPath(path, "Approvers"), "is required: who may approve");
  const out: ApprovalBlock = {
    Approvers: stringOrList(raw.Approvers, fieldPath(path, "Approvers"), checkApproverEntry),
  };
  if (raw.ApproverGroups !== undefined)
    out.ApproverGroups = stringOrList(raw.ApproverGroups, fieldPath(path, "ApproverGroups"));
  if (raw.ApproverIdentities !== undefined)
    out.ApproverIdentities = stringOrList(
      raw.ApproverIdentities,
      fieldPath(path, "ApproverIdentities"),
      checkApproverIdentityEntry,
    );
  if (raw.MaxAgeSeconds !== undefined) {
    const m = raw.MaxAgeSeconds;
    if (typeof m !== "number" || !Number.isInteger(m) || m < 1 || m > MAX_APPROVAL_MAX_AGE_SECONDS)
      invalid(
        fieldPath(path, "MaxAgeSeconds"),
        `must be a whole number of seconds from 1 to ${MAX_APPROVAL_MAX_AGE_SECONDS}, got ${shown(m)}`,
      );
    out.MaxAgeSeconds = m;
  }
  if (raw.Reason !== undefined) {
    if (typeof raw.Reason !== "string" || raw.Reason.length === 0 || raw.Reason.length > 512)
      invalid(fieldPath(path, "Reason"), `must be a string of 1 to 512 characters, got ${shown(raw.Reason)}`);
    out.Reason = raw.Reason;
  }
  return Object.freeze(out);
}

/** Rejects a statement holding both halves of a pair such as Action and NotAction. */
function exclusive(raw: Record<string, unknown>, a: string, b: string, path: string): void {
  if (raw[a] !== undefined && raw[b] !== undefined) invalid(fieldPath(path, b), `cannot be used together with ${a}`);
}

function parseStatement(raw: unknown, path: string): Statement {
  if (!isPlainObject(raw)) invalid(path, "must be an object");
  checkKeys(raw, STATEMENT_KEYS, path);
  if (raw.Effect !== "Allow" && raw.Effect !== "Deny") {
    invalid(fieldPath(path, "Effect"), `must be "Allow" or "Deny", got ${shown(raw.Effect)}`);
  }
  exclusive(raw, "Principal", "NotPrincipal", path);
  exclusive(raw, "Action", "NotAction", path);
  exclusive(raw, "Resource", "NotResource", path);
  if (raw.Action === undefined && raw.NotAction === undefined)
    invalid(fieldPath(path, "Action"), "is required (or NotAction)");

  const out: Statement = { Effect: raw.Effect };
  if (raw.Sid !== undefined) {
    if (typeof raw.Sid !== "string") invalid(fieldPath(path, "Sid"), `must be a string, got ${shown(raw.Sid)}`);
    out.Sid = raw.Sid;
  }
  for (const key of ["Principal", "NotPrincipal"] as const) {
    if (raw[key] !== undefined) out[key] = parsePrincipal(raw[key], fieldPath(path, key));
  }
  for (const key of ["Action", "NotAction", "Resource", "NotResource"] as const) {
    if (raw[key] !== undefined) out[key] = stringOrList(raw[key], fieldPath(path, key));
  }
  if (raw.Condition !== undefined) out.Condition = parseConditionBlock(raw.Condition, fieldPath(path, "Condition"));
  if (raw.Approval !== undefined) {
    // An approval is of one tool call: a Deny needs none, and another action (a connection, a
    // token's scopes) has no call an approver could sign, so it would allow without one.
    if (out.Effect !== "Allow") invalid(fieldPath(path, "Approval"), "is only for Allow statements");
    const actions = out.Action === undefined ? undefined : typeof out.Action === "string" ? [out.Action] : out.Action;
    if (actions === undefined || !actions.every((a) => a.toLowerCase() === "tool:call"))
      invalid(
        fieldPath(path, "Approval"),
        'needs the statement\'s Action to be "tool:call" alone (approvals are of tool calls)',
      );
    out.Approval = parseApproval(raw.Approval, fieldPath(path, "Approval"));
  }
  return Object.freeze(out);
}

/**
 * Validates a policy document (an object, or its JSON text) and returns a deep-frozen copy of
 * the same shape. Throws ERR_POLICY_INVALID naming the first bad field.
 */
export function parsePolicy(input: unknown): PolicyDocument {
  let raw = input;
  if (typeof input === "string") {
    try {
      raw = JSON.parse(input) as unknown;
    } catch (err) {
      throw new AztpError(ErrorCodes.POLICY_INVALID, "invalid policy: not valid JSON", { cause: err });
    }
  }
  if (!isPlainObject(raw)) invalid("(document)", "must be a JSON object");
  checkKeys(raw, DOCUMENT_KEYS, "");
  const version = nonEmptyString(raw.Version, "Version");
  const doc: PolicyDocument = { Version: version, Statement: [] };
  if (raw.Id !== undefined) doc.Id = nonEmptyString(raw.Id, "Id");

  if (Array.isArray(raw.Statement)) {
    const statements = raw.Statement.map((s, i) => parseStatement(s, `Statement[${i}]`));
    const seen = new Map<string, number>();
    statements.forEach((s, i) => {
      if (s.Sid === undefined) return;
      const first = seen.get(s.Sid);
      if (first !== undefined) invalid(`Statement[${i}].Sid`, `${shown(s.Sid)} repeats the Sid of Statement[${first}]`);
      seen.set(s.Sid, i);
    });
    doc.Statement = Object.freeze(statements) as Statement[];
  } else if (isPlainObject(raw.Statement)) {
    doc.Statement = parseStatement(raw.Statement, "Statement");
  } else {
    invalid("Statement", "must be a statement object or a list of them");
  }
  return Object.freeze(doc);
}

/** The document's statements as a list, whichever form it uses. */
export function statementsOf(document: PolicyDocument): readonly Statement[] {
  return Array.isArray(document.Statement) ? document.Statement : [document.Statement];
}

/**
 * A short stable name for a document's content: `policy:` + the first 12 hex digits of the
 * SHA-256 of its RFC 8785 (JCS) canonical JSON. Key order and whitespace do not change it;
 * any change of meaning does. The document is validated first.
 */
export function policyCode(document: PolicyDocument): string {
  const parsed = parsePolicy(document);
  let text: string;
  try {
    text = canonicalJson(parsed);
  } catch (cause) {
    throw new AztpError(
      ErrorCodes.POLICY_INVALID,
      `invalid policy: cannot be canonicalised: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  return `policy:${sha256Hex(text).slice(0, 12)}`;
}
