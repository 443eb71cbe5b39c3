/**
 * Policy evaluation, the way IAM users expect: an explicit Deny in any statement of any policy
 * wins; otherwise an Allow that matches allows; otherwise the request is denied by default.
 *
 * A statement matches a request when its Principal (or NotPrincipal), Action (or NotAction),
 * Resource (or NotResource) and every Condition hold. Evaluation is pure and allocation-light:
 * policies are compiled once (patterns to Sets and RegExps, conditions to closures) and the
 * compiled forms are cached per document object (and per list, for `evaluatePolicies`), so
 * documents must not be mutated once evaluated (`parsePolicy` returns frozen ones).
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { type ConditionCheck, compileConditions, type PolicyContext } from "./conditions.js";
import { Matcher, normalizeId } from "./match.js";
import {
  APPROVER_PERSON,
  type ApprovalBlock,
  DEFAULT_APPROVAL_MAX_AGE_SECONDS,
  type PolicyDocument,
  type Principal,
  parsePolicy,
  type Statement,
  statementsOf,
} from "./policy.js";

export interface PolicyRequest {
  /** The caller's ID, `aztp://` or `spiffe://`. */
  principal: string;
  /** What is asked, e.g. `tool:call` or `tools/call`. Compared case-insensitively. */
  action: string;
  /** What it is asked of: a tool name (`search`) or an ID such as `aztp://td/.../tool/search`. */
  resource: string;
  /** Condition keys and values; see `buildPolicyContext` for the `aztp:` keys. */
  context?: PolicyContext;
}

export type PolicyDecisionReason = "explicit_deny" | "allow" | "implicit_deny";

export interface PolicyDecision {
  readonly decision: "allow" | "deny";
  readonly reason: PolicyDecisionReason;
  /** The deciding statement: its Sid, or its index in its document when it has none. */
  readonly statement?: string | number;
  /** Index, in the list evaluated, of the document holding that statement. */
  readonly policy?: number;
  /**
   * Set on an allow when a matching Allow statement has an `Approval` block: the call may run
   * only with an approval that satisfies every one of these (people/approval.ts checks it).
   * Another Allow without one matching too does not lift it: an author who wrote an approval
   * for these calls meant it for them, whatever else also allows them.
   */
  readonly approval?: readonly ApprovalRequirement[];
}

/** One statement's `Approval` block, as a decision carries it. */
export interface ApprovalRequirement {
  /** The statement's Sid, or its index in its document. */
  readonly statement: string | number;
  /** Index of its document in the list evaluated. */
  readonly policy: number;
  readonly approvers: readonly string[];
  readonly approverGroups?: readonly string[];
  /** The workloads that may sign an approval statement (SPIFFE ID patterns); absent: none may. */
  readonly approverIdentities?: readonly string[];
  readonly maxAgeSeconds: number;
  readonly reason: string;
}

const IMPLICIT_DENY: PolicyDecision = Object.freeze({ decision: "deny", reason: "implicit_deny" });
const EMPTY_CONTEXT: PolicyContext = Object.freeze({});

/** One statement, compiled. A field that is absent is undefined and matches everything. */
class CompiledStatement {
  constructor(
    readonly id: string | number,
    private readonly principal: Matcher | undefined,
    private readonly notPrincipal: boolean,
    private readonly action: Matcher,
    private readonly notAction: boolean,
    private readonly resource: Matcher | undefined,
    private readonly notResource: boolean,
    private readonly conditions: readonly ConditionCheck[],
    /** The statement's Approval block, with its document index filled in when decided. */
    readonly approval: ApprovalBlock | undefined,
  ) {}

  /** Inputs are already normalised: principal and resource by normalizeId, action lower-cased. */
  matches(principal: string, action: string, resource: string, ctx: PolicyContext): boolean {
    // Action first: it is the most selective field and the cheapest to test.
    if (this.action.test(action) === this.notAction) return false;
    if (this.resource !== undefined && this.resource.test(resource) === this.notResource) return false;
    if (this.principal !== undefined && this.principal.test(principal) === this.notPrincipal) return false;
    for (const check of this.conditions) if (!check(ctx)) return false;
    return true;
  }
}

interface CompiledDocument {
  readonly denies: readonly CompiledStatement[];
  readonly allows: readonly CompiledStatement[];
  /** Whether an Allow of this document has an Approval block (else the first matching Allow decides). */
  readonly approvals: boolean;
}

function list(value: string | string[]): readonly string[] {
  return typeof value === "string" ? [value] : value;
}

function principalPatterns(p: Principal): readonly string[] {
  return list(typeof p === "object" && !Array.isArray(p) ? p.AZTP : p);
}

/** Action matcher, shared with `isActionAllowed`. */
export function actionMatcher(patterns: string | string[]): Matcher {
  return new Matcher(list(patterns).map((a) => a.toLowerCase()));
}

function compileStatement(s: Statement, index: number): CompiledStatement {
  const principal = s.Principal ?? s.NotPrincipal;
  const resource = s.Resource ?? s.NotResource;
  const action = s.Action ?? s.NotAction;
  if (action === undefined) throw new Error("unreachable: parsePolicy requires Action or NotAction");
  return new CompiledStatement(
    s.Sid ?? index,
    principal === undefined ? undefined : new Matcher(principalPatterns(principal).map(normalizeId)),
    s.NotPrincipal !== undefined,
    actionMatcher(action),
    s.NotAction !== undefined,
    resource === undefined ? undefined : new Matcher(list(resource).map(normalizeId)),
    s.NotResource !== undefined,
    s.Condition === undefined ? [] : compileConditions(s.Condition),
    s.Approval,
  );
}

function listOf(value: string | string[] | undefined): readonly string[] | undefined {
  return value === undefined ? undefined : Object.freeze([...list(value)]);
}

const approverMatchers = new WeakMap<
  ApprovalRequirement,
  { approvers: Matcher; groups: ReadonlySet<string> | undefined }
>();
const requirements = new WeakMap<CompiledStatement, Map<number, ApprovalRequirement>>();

/** The requirement of an approval statement in document `policy` (one frozen object per pair). */
function requirementOf(s: CompiledStatement, policy: number): ApprovalRequirement {
  let byPolicy = requirements.get(s);
  if (byPolicy === undefined) requirements.set(s, (byPolicy = new Map()));
  let r = byPolicy.get(policy);
  if (r !== undefined) return r;
  const a = s.approval as ApprovalBlock;
  const groups = listOf(a.ApproverGroups);
  const identities = listOf(a.ApproverIdentities);
  r = Object.freeze({
    statement: s.id,
    policy,
    approvers: listOf(a.Approvers) as readonly string[],
    ...(groups !== undefined ? { approverGroups: groups } : {}),
    ...(identities !== undefined ? { approverIdentities: identities } : {}),
    maxAgeSeconds: a.MaxAgeSeconds ?? DEFAULT_APPROVAL_MAX_AGE_SECONDS,
    reason: a.Reason ?? `policy statement ${String(s.id)} requires an approval`,
  });
  byPolicy.set(policy, r);
  return r;
}

/**
 * Whether `approver` (a person `<iss>#<sub>` and their groups) may approve under `requirement`
 * for a call made for `person` (`$person` names them; a call for nobody has no `$person`).
 */
export function approverAllowed(
  requirement: ApprovalRequirement,
  approver: { id: string; groups?: readonly string[] | undefined },
  person?: string,
): boolean {
  let m = approverMatchers.get(requirement);
  if (m === undefined) {
    m = {
      approvers: new Matcher(requirement.approvers.filter((a) => a !== APPROVER_PERSON)),
      groups: requirement.approverGroups === undefined ? undefined : new Set(requirement.approverGroups),
    };
    approverMatchers.set(requirement, m);
  }
  const named =
    m.approvers.test(approver.id) ||
    (person !== undefined && person === approver.id && requirement.approvers.includes(APPROVER_PERSON));
  if (!named) return false;
  if (m.groups === undefined) return true;
  return (approver.groups ?? []).some((g) => m.groups!.has(g));
}

const identityMatchers = new WeakMap<ApprovalRequirement, Matcher>();

/**
 * Whether the workload `spiffeId` may sign approval statements under `requirement` (its
 * `ApproverIdentities`, compared as Principal patterns are: one normal form of an ID).
 */
export function approverIdentityAllowed(requirement: ApprovalRequirement, spiffeId: string): boolean {
  if (requirement.approverIdentities === undefined) return false;
  let m = identityMatchers.get(requirement);
  if (m === undefined) {
    m = new Matcher(requirement.approverIdentities.map(normalizeId));
    identityMatchers.set(requirement, m);
  }
  return m.test(normalizeId(spiffeId));
}

const documentCache = new WeakMap<object, CompiledDocument>();

function compileDocument(document: PolicyDocument): CompiledDocument {
  const cached = documentCache.get(document);
  if (cached !== undefined) return cached;
  const parsed = parsePolicy(document);
  const denies: CompiledStatement[] = [];
  const allows: CompiledStatement[] = [];
  statementsOf(parsed).forEach((s, i) => (s.Effect === "Deny" ? denies : allows).push(compileStatement(s, i)));
  const compiled = { denies, allows, approvals: allows.some((s) => s.approval !== undefined) };
  documentCache.set(document, compiled);
  return compiled;
}

function decided(reason: PolicyDecisionReason, statement: CompiledStatement, policy: number): PolicyDecision {
  return { decision: reason === "allow" ? "allow" : "deny", reason, statement: statement.id, policy };
}

/**
 * A set of policies compiled for fast repeated decisions. Cheap to build once its documents are
 * compiled (they are cached per document), so a fresh list of known documents costs little.
 */
export class CompiledPolicies {
  /** The documents compiled, in order (their identities, for the cache check). */
  readonly sources: readonly PolicyDocument[];
  private readonly documents: readonly CompiledDocument[];
  readonly #approvals: boolean;

  /** @internal use `compilePolicies`. */
  constructor(policies: readonly PolicyDocument[]) {
    this.sources = Object.freeze([...policies]);
    this.documents = this.sources.map(compileDocument);
    this.#approvals = this.documents.some((d) => d.approvals);
  }

  get statementCount(): number {
    return this.documents.reduce((n, d) => n + d.denies.length + d.allows.length, 0);
  }

  evaluate(request: PolicyRequest): PolicyDecision {
    const { principal, action, resource } = request;
    if (typeof principal !== "string" || typeof action !== "string" || typeof resource !== "string") {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "policy request needs string principal, action and resource");
    }
    const p = normalizeId(principal);
    const a = action.toLowerCase();
    const r = normalizeId(resource);
    const ctx = request.context ?? EMPTY_CONTEXT;
    const docs = this.documents;
    // Every Deny is looked at before any Allow, so statement order never changes the outcome.
    for (let i = 0; i < docs.length; i++) {
      for (const s of docs[i]!.denies) if (s.matches(p, a, r, ctx)) return decided("explicit_deny", s, i);
    }
    if (!this.#approvals) {
      for (let i = 0; i < docs.length; i++) {
        for (const s of docs[i]!.allows) if (s.matches(p, a, r, ctx)) return decided("allow", s, i);
      }
      return IMPLICIT_DENY;
    }
    // Some Allow asks for an approval: every matching Allow is looked at, so one without an
    // approval can never lift another's (the order of statements never changes the outcome).
    let first: PolicyDecision | undefined;
    let approval: ApprovalRequirement[] | undefined;
    for (let i = 0; i < docs.length; i++) {
      for (const s of docs[i]!.allows) {
        if (!s.matches(p, a, r, ctx)) continue;
        if (s.approval !== undefined) {
          if (approval === undefined) first = decided("allow", s, i);
          (approval ??= []).push(requirementOf(s, i));
        } else first ??= decided("allow", s, i);
      }
    }
    if (first === undefined) return IMPLICIT_DENY;
    return approval === undefined ? first : { ...first, approval: Object.freeze(approval) };
  }
}

/**
 * Validates and compiles policies once, for many decisions. Throws ERR_POLICY_INVALID if a
 * document is invalid. Documents already compiled (by object identity) are reused.
 */
export function compilePolicies(policies: readonly PolicyDocument[]): CompiledPolicies {
  if (!Array.isArray(policies)) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "compilePolicies expects a list of policy documents");
  }
  return new CompiledPolicies(policies);
}

const listCache = new WeakMap<readonly PolicyDocument[], CompiledPolicies>();

function sameDocuments(a: readonly PolicyDocument[], b: readonly PolicyDocument[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Decides one request against a list of policies. The compiled form is cached for the list (and
 * for each document), so calling this repeatedly with the same policies costs what
 * `compilePolicies(...).evaluate(...)` does. A list changed in place is noticed and recompiled.
 */
export function evaluatePolicies(policies: readonly PolicyDocument[], request: PolicyRequest): PolicyDecision {
  let compiled = listCache.get(policies);
  if (compiled === undefined || !sameDocuments(compiled.sources, policies)) {
    compiled = compilePolicies(policies);
    listCache.set(policies, compiled);
  }
  return compiled.evaluate(request);
}
