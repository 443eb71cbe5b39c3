/**
 * Digests of tool arguments and results over RFC 8785 (JCS) canonical JSON, so that the
 * same value hashes the same whatever its key order or number spelling. The canonical form is
 * the one serialiser of `json/canonical.ts`; what this file adds is the protocol's rule of what
 * a signed value may hold, checked on the signer's side and the verifier's alike before any
 * digest is taken.
 *
 * One walk throws an AztpError naming the first place a value breaks that rule: a lone
 * surrogate (in a string or a key), a non-finite number (`1e400` in JSON text parses as
 * Infinity), a non-JSON type, nesting deeper than MAX_JSON_DEPTH. The walk keeps its own
 * stack, so 100,000 levels of nesting are refused at level 65, never a RangeError.
 *
 * Two of these rules are stricter than the canonical form itself, on purpose. A `__proto__`
 * member is refused (ERR_JSON_PROTO_KEY_NOT_ALLOWED): JSON.parse makes it an ordinary member,
 * which the canonical form (and so the digest) covers, but the MCP SDK's zod parse drops it,
 * so the tool would run on other arguments than were signed and checked (and a result reach
 * the caller without it). And signed values nest at most 64 levels where the canonical form
 * allows 512 (the audit log's bound): every verifier already deployed refuses deeper values, so
 * a signer that allowed them would make calls that fail on the other side, and a verifier
 * walks at most that deep for a token whatever it is sent.
 */
import { hash } from "node:crypto";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { canonicalJson as canonicalForm } from "../json/canonical.js";

/** How deep a signed value may nest: arguments and results deeper than this are refused. */
export const MAX_JSON_DEPTH = 64;

/** One value still to check, and where it sits (the path is spelled out only for an error). */
interface Frame {
  readonly value: unknown;
  readonly depth: number;
  readonly parent: Frame | undefined;
  /** Its key in the parent: a member name, an index, or "toJSON" for what a toJSON returned. */
  readonly key: string | number | undefined;
  readonly viaToJSON?: boolean;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function pathOf(frame: Frame, root: string): string {
  const parts: string[] = [];
  for (let f: Frame | undefined = frame; f?.parent !== undefined; f = f.parent) {
    if (f.viaToJSON) parts.push(".toJSON()");
    else if (typeof f.key === "number") parts.push(`[${f.key}]`);
    else {
      const key = f.key ?? "";
      const shown = key.length > 40 ? `${key.slice(0, 40)}...` : key;
      parts.push(IDENTIFIER.test(shown) ? `.${shown}` : `[${JSON.stringify(shown)}]`);
    }
  }
  return root + parts.reverse().join("");
}

function fail(frame: Frame, root: string, why: string, code: ErrorCode = ErrorCodes.JSON_UNREPRESENTABLE): never {
  throw new AztpError(code, `${pathOf(frame, root)} ${why}`);
}

/** String.prototype.isWellFormed (ES2024, in Node 20): no lone surrogate. Native, one pass. */
function wellFormed(s: string): boolean {
  return (s as string & { isWellFormed(): boolean }).isWellFormed();
}

/**
 * Throws ERR_JSON_UNREPRESENTABLE (or ERR_JSON_PROTO_KEY_NOT_ALLOWED) naming the first place in
 * `value` JCS cannot carry.
 */
export function assertRepresentable(value: unknown, what = "value"): void {
  const stack: Frame[] = [{ value, depth: 0, parent: undefined, key: undefined }];
  for (let frame = stack.pop(); frame !== undefined; frame = stack.pop()) {
    const v = frame.value;
    if (frame.depth > MAX_JSON_DEPTH) fail(frame, what, `is nested more than ${MAX_JSON_DEPTH} levels deep`);
    if (typeof v === "string") {
      if (!wellFormed(v)) fail(frame, what, "holds a lone surrogate, which JSON text (RFC 8785) cannot carry");
      continue;
    }
    if (v === null || typeof v === "boolean") continue;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) fail(frame, what, `is ${v}, which JSON (RFC 8785) cannot carry`);
      continue;
    }
    if (typeof v !== "object") fail(frame, what, `is a ${typeof v}, which JSON cannot carry`);
    // As JSON.stringify and canonicalize do: a toJSON (Date and friends) stands for its object.
    let replaced: { value: unknown } | undefined;
    try {
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === "function") replaced = { value: (toJSON as () => unknown).call(v) };
    } catch (e) {
      fail(frame, what, `has a toJSON that threw: ${(e as Error)?.message ?? String(e)}`);
    }
    if (replaced !== undefined) {
      stack.push({ value: replaced.value, depth: frame.depth + 1, parent: frame, key: "toJSON", viaToJSON: true });
      continue;
    }
    if (Array.isArray(v)) {
      // JSON turns undefined array slots into null; so must the digest, and canonicalize does.
      for (let i = v.length - 1; i >= 0; i--) {
        const item: unknown = v[i];
        if (item !== undefined) stack.push({ value: item, depth: frame.depth + 1, parent: frame, key: i });
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v) as unknown;
    if (proto !== Object.prototype && proto !== null)
      fail(frame, what, `is a ${(v as object).constructor?.name ?? "non-plain object"}, not plain JSON`);
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      const item: unknown = (v as Record<string, unknown>)[key];
      if (key === "__proto__") {
        fail(
          { value: item, depth: frame.depth + 1, parent: frame, key },
          what,
          "is a __proto__ member, which the MCP SDK drops when it parses a message: what was signed would not be what is used",
          ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED,
        );
      }
      if (!wellFormed(key))
        fail(
          { value: item, depth: frame.depth + 1, parent: frame, key },
          what,
          "is a key with a lone surrogate, which JSON text (RFC 8785) cannot carry",
        );
      if (item !== undefined) stack.push({ value: item, depth: frame.depth + 1, parent: frame, key });
    }
  }
}

/**
 * The RFC 8785 canonical form of `value` as it is signed: the signing rule, then the form.
 * `undefined` canonicalises as `{}` (no arguments).
 */
export function canonicalJson(value: unknown, what = "value"): string {
  if (value === undefined) return "{}";
  assertRepresentable(value, what);
  try {
    return canonicalForm(value);
  } catch (e) {
    // Only a toJSON that answers differently the second time gets here (the walk called it once).
    throw new AztpError(
      ErrorCodes.JSON_UNREPRESENTABLE,
      `${what} cannot be canonicalised: ${(e as Error)?.message ?? String(e)}`,
      { cause: e },
    );
  }
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
