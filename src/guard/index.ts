export { CalleeGuard, type CalleeGuardOptions, type Admission, type Settlement, type GuardMode } from "./callee.js";
export { CallerGuard, type CallerGuardOptions, type PreparedCall } from "./caller.js";
