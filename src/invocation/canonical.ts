/**
 * Digests of tool arguments and results over RFC 8785 (JCS) canonical JSON, so that the
 * same value hashes the same whatever its key order or number spelling. Uses the
 * `canonicalize` package (by the RFC's co-author) rather than a hand-written serialiser.
 */
import { hash } from "node:crypto";
import canonicalize from "canonicalize";
import { AztpError, ErrorCodes } from "../errors.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Throws ERR_INVALID_ARGUMENT naming the path of the first value JSON cannot carry. */
function assertJson(value: unknown, path: string, depth: number): void {
  if (depth > 64) throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `${path} is nested more than 64 levels deep`);
  if (value === null || typeof value === "string" || typeof value === "boolean") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `${path} is ${value}, which JSON cannot carry`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      // JSON turns undefined array slots into null; so must the digest, and canonicalize does.
      if (v !== undefined) assertJson(v, `${path}[${i}]`, depth + 1);
    });
    return;
  }
  if (typeof value === "object") {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      if (typeof (value as { toJSON?: unknown }).toJSON === "function") return; // Date and friends: canonicalize calls toJSON
      throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `${path} is a ${(value as object).constructor?.name ?? "non-plain object"}, not plain JSON`);
    }
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) assertJson(v, `${path}.${k}`, depth + 1);
    }
    return;
  }
  if (value === undefined) return;
  throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `${path} is a ${typeof value}, which JSON cannot carry`);
}

/** The RFC 8785 canonical form of `value`. `undefined` canonicalises as `{}` (no arguments). */
export function canonicalJson(value: unknown, what = "value"): string {
  if (value === undefined) return "{}";
  assertJson(value, what, 0);
  const text = canonicalize(value);
  if (text === undefined) throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `${what} cannot be canonicalised`);
  return text;
}

/** base64url(SHA-256(JCS(value))): the form carried in tokens and receipts. */
export function canonicalDigest(value: unknown, what = "value"): string {
  // One-shot crypto.hash: no Hash object per call (this runs several times per tool call).
  return hash("sha256", canonicalJson(value, what), "base64url");
}

/** base64url(SHA-256(text)), used to bind one token to another (as WIMSE's `*th` claims do). */
export function tokenHash(token: string): string {
  return hash("sha256", token, "base64url");
}
