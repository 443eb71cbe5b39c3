/**
 * Claim values and dates in error messages. Only ever called on a failure: the success path
 * builds no message.
 */
export { describeTime } from "../spiffe/time-window.js";

/**
 * A claim value for an error message: a string quoted and cut to `max`, anything else named by
 * its kind. Never JSON.stringify a claim: on a list nested a few thousand deep (which JSON.parse
 * accepts) it overflows the stack and a RangeError, not an AztpError, would leave the verifier.
 */
export function describeClaim(value: unknown, max = 120): string {
  if (typeof value === "string") return JSON.stringify(value.length > max ? `${value.slice(0, max)}...` : value);
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "a list" : "an object";
}
