export { CalleeGuard, type CalleeGuardOptions, type Admission, type Settlement } from "./callee.js";
export { Unanswered, type GuardMode, type UnansweredReason } from "./recorder.js";
export { CallerGuard, type CallerGuardOptions, type PreparedCall, type UnsignedCall } from "./caller.js";
