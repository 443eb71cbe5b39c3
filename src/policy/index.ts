/** AZTP policies: documents, strict parsing, IAM-style evaluation, and the request context. */
export {
  APPROVER_PERSON,
  type ApprovalBlock,
  type Effect,
  type PolicyDocument,
  type Principal,
  type Statement,
  parsePolicy,
  policyCode,
  statementsOf,
} from "./policy.js";
export { CONDITION_OPERATORS, type ConditionBlock, type ConditionValue, type PolicyContext } from "./conditions.js";
export {
  approverAllowed,
  approverIdentityAllowed,
  type ApprovalRequirement,
  type CompiledPolicies,
  compilePolicies,
  evaluatePolicies,
  type PolicyDecision,
  type PolicyDecisionReason,
  type PolicyRequest,
} from "./evaluate.js";
export {
  buildPolicyContext,
  POLICY_CONTEXT_KEYS,
  type AuthMethod,
  type PolicyContextInput,
  type PolicyContextKey,
} from "./context.js";
export {
  CONNECT_ACTION,
  decidePolicy,
  normalizeSourceIp,
  policyRequest,
  TOKEN_ACTION,
  TOOL_CALL_ACTION,
  type IdentityRelations,
  type PolicyRequestInput,
} from "./request.js";
export { findStatements, getPolicyValue, isActionAllowed, type PolicyRecord } from "./helpers.js";
