export { CalleeGuard, type CalleeGuardOptions, type Admission, type Settlement } from "./callee.js";
export { Unanswered, type GuardMode, type UnansweredReason } from "./recorder.js";
export {
  CallerGuard,
  type CallerGuardOptions,
  type PreparedCall,
  type SentCall,
  type UnsignedCall,
  type UnsignedSentCall,
} from "./caller.js";
export {
  approvalClaim,
  approvalNonce,
  approvalRequest,
  signApprovalStatement,
  verifyApproval,
  type Approval,
  type ApprovalRequest,
  type ApprovalRequestDetail,
  type SignApprovalStatementOptions,
  type VerifiedApproval,
  type VerifyApprovalOptions,
} from "../people/approval.js";
export { withTrace, currentTrace } from "./trace-scope.js";
