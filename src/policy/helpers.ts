/**
 * The two policy helpers of the astha.ai clients, under the same names and argument order, so
 * code written against them keeps working. `isActionAllowed` fixes what theirs gets wrong: it
 * honours Deny, wildcards and NotAction. For real decisions use `evaluatePolicies`.
 */
import { actionMatcher } from "./evaluate.js";
import type { Matcher } from "./match.js";
import { type PolicyDocument, type Statement, statementsOf } from "./policy.js";

/** The shape the astha.ai API returns policies in. */
export interface PolicyRecord {
  policyStatement: PolicyDocument;
}

/** True if the statement's field `key` is `value`, or is a list that holds `value`. */
function fieldEquals(statement: Statement, key: string, value: string): boolean {
  if (!Object.hasOwn(statement, key)) return false;
  const field: unknown = (statement as unknown as Record<string, unknown>)[key];
  return field === value || (Array.isArray(field) && field.includes(value));
}

/** Every statement, across the records, whose field `key` (e.g. "Sid", "Effect") equals `value`. */
export function findStatements(policies: readonly PolicyRecord[], key: string, value: string): Statement[] {
  const found: Statement[] = [];
  for (const record of policies) {
    const doc = record?.policyStatement;
    if (doc === undefined || doc === null || doc.Statement === undefined) continue;
    for (const s of statementsOf(doc)) if (fieldEquals(s, key, value)) found.push(s);
  }
  return found;
}

/**
 * The first statement, across the records, whose field `key` equals `value` (the astha.ai
 * helper's contract), or null if none does. `findStatements` returns all of them.
 */
export function getPolicyValue(policies: readonly PolicyRecord[], key: string, value: string): Statement | null {
  return findStatements(policies, key, value)[0] ?? null;
}

const matcherCache = new WeakMap<Statement, { matcher: Matcher; not: boolean }>();

/**
 * Whether this one statement allows `action`: false for a Deny statement; with NotAction, true
 * for actions it does not list; with Action, true for actions it lists, `*` and `?` wildcards
 * included, compared case-insensitively. Principal, Resource and Condition are not looked at:
 * this answers "does the statement cover the action", not "is the request allowed".
 */
export function isActionAllowed(statement: Statement, action: string): boolean {
  if (statement?.Effect !== "Allow" || typeof action !== "string") return false;
  let compiled = matcherCache.get(statement);
  if (compiled === undefined) {
    const patterns = statement.NotAction ?? statement.Action;
    // Records from a remote API are not validated documents: refuse what is not strings.
    const ok =
      typeof patterns === "string" || (Array.isArray(patterns) && patterns.every((a) => typeof a === "string"));
    if (!ok) return false;
    compiled = { matcher: actionMatcher(patterns), not: statement.NotAction !== undefined };
    matcherCache.set(statement, compiled);
  }
  return compiled.matcher.test(action.toLowerCase()) !== compiled.not;
}
