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
import { type PolicyDocument, type Principal, parsePolicy, type Statement, statementsOf } from "./policy.js";

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
  );
}

const documentCache = new WeakMap<object, CompiledDocument>();

function compileDocument(document: PolicyDocument): CompiledDocument {
  const cached = documentCache.get(document);
  if (cached !== undefined) return cached;
  const parsed = parsePolicy(document);
  const denies: CompiledStatement[] = [];
  const allows: CompiledStatement[] = [];
  statementsOf(parsed).forEach((s, i) => (s.Effect === "Deny" ? denies : allows).push(compileStatement(s, i)));
  const compiled = { denies, allows };
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

  /** @internal use `compilePolicies`. */
  constructor(policies: readonly PolicyDocument[]) {
    this.sources = Object.freeze([...policies]);
    this.documents = this.sources.map(compileDocument);
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
    for (let i = 0; i < docs.length; i++) {
      for (const s of docs[i]!.allows) if (s.matches(p, a, r, ctx)) return decided("allow", s, i);
    }
    return IMPLICIT_DENY;
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
