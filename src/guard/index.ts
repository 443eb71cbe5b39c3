export { CalleeGuard, type CalleeGuardOptions, type Admission, type Settlement } from "./callee.js";
export { AuditRecorder, CANCELLED, checkMode, type GuardMode } from "./recorder.js";
export { CallerGuard, type CallerGuardOptions, type PreparedCall } from "./caller.js";
