export {
  signInvocation,
  createInvocation,
  verifyInvocation,
  INVOCATION_TYP,
  INVOCATION_ALGORITHMS,
  MAX_INVOCATION_LIFETIME_SECONDS,
  DEFAULT_INVOCATION_TTL_SECONDS,
  DEFAULT_INVOCATION_LEEWAY_SECONDS,
  TOOL_CALL_ACTION,
} from "./invocation.js";
export { decideInvocation, decideToolCall } from "./decide.js";
export type {
  InvocationClaims,
  SignInvocationOptions,
  VerifyInvocationOptions,
  VerifiedInvocation,
  IdentityRelations,
} from "./invocation.js";
export type { SignerLike } from "./codec.js";
export type { SvidSigner } from "../spiffe/signer.js";
export { validateToken, TOKEN_ALGORITHMS } from "./validate.js";
export type { TokenKind, TokenRule, ValidateTokenOptions, ValidatedToken } from "./validate.js";
export {
  INVOCATION_KIND,
  RECEIPT_KIND,
  DELEGATION_KIND,
  PROOF_KIND,
  CHECKPOINT_KIND,
  APPROVAL_STATEMENT_KIND,
} from "./token-kinds.js";
export type { TimeWindow, TimeWindowRule } from "../spiffe/time-window.js";
export { signReceipt, createReceipt, verifyReceipt, RECEIPT_TYP } from "./receipt.js";
export type {
  ReceiptClaims,
  ReceiptStatus,
  SignReceiptOptions,
  VerifyReceiptOptions,
  VerifiedReceipt,
} from "./receipt.js";
export { delegate, verifyDelegationChain, DELEGATION_TYP } from "./delegation.js";
export type { DelegationScope, DelegationClaims, VerifiedDelegation, VerifyDelegationOptions } from "./delegation.js";
export { MemoryReplayCache } from "./replay.js";
export type { ReplayCache, MemoryReplayCacheOptions } from "./replay.js";
export { Trust } from "./trust.js";
export type { RevocationChecker, TrustOptions, VerifiedSigner } from "./trust.js";
export { canonicalJson, canonicalDigest, tokenHash } from "./canonical.js";
export { svidCheckpointSigner, svidCheckpointVerifier, CHECKPOINT_TYP } from "./checkpoint.js";
export type { SvidCheckpointSigner, SvidCheckpointVerifier } from "./checkpoint.js";
export { signPossessionProof, verifyPossessionProof, PROOF_TYP } from "./proof.js";
export type { VerifyPossessionProofOptions } from "./proof.js";
export {
  mintOnBehalfOf,
  verifyOnBehalfOf,
  readOnBehalfOf,
  audienceCovers,
  isOnBehalfOfToken,
  keyThumbprint,
  actClaimOf,
  actorsOf,
  personId,
  personClaimsOf,
  OBO_TYP,
  MAX_OBO_TTL_SECONDS,
  DEFAULT_OBO_TTL_SECONDS,
  PERSON_CLAIMS,
} from "./on-behalf-of.js";
export type {
  ActClaim,
  MintOnBehalfOfOptions,
  OnBehalfOfClaims,
  Person,
  PersonClaims,
  VerifiedOnBehalfOf,
  VerifyOnBehalfOfOptions,
} from "./on-behalf-of.js";
export {
  parseTraceparent,
  formatTraceparent,
  carriedTrace,
  calleeSpan,
  startSpan,
  contextOf,
  isTraceId,
  isSpanId,
  newTraceId,
  newSpanId,
  TRACE_FLAG_SAMPLED,
} from "./trace-context.js";
export type { TraceContext, TraceOrigin, CallSpan } from "./trace-context.js";
