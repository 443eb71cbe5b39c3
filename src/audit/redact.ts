/**
 * Redaction of tool-call arguments before they are written to the audit log.
 *
 * Arguments are stored only when a log is opened with `includeArgs`, and even then a field
 * list names what must never reach the disk. Two kinds of names:
 *
 * - a bare name (`"password"`) matches that key at any depth, in every nested object and
 *   every array element: secrets tend to turn up wherever a tool's schema nests them;
 * - a dotted path (`"user.credentials.token"`) is anchored at the root. Arrays on the way are
 *   transparent (`"items.secret"` redacts `secret` in every element of `items`), and a numeric
 *   segment selects one element (`"items.0.secret"`).
 *
 * The matched value is replaced by `"[REDACTED]"` whatever its type. The input is never
 * mutated: the result is a deep copy that is also guaranteed to be plain JSON, because the
 * audit hash is taken over its RFC 8785 canonical form and a value JSON cannot carry
 * faithfully (a Date, a Map, NaN, a cycle) would make that hash depend on the serialiser.
 */
import { AztpError, ErrorCodes } from "../errors.js";

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export const REDACTED = "[REDACTED]";

interface Matcher {
  readonly anywhere: ReadonlySet<string>;
  readonly paths: readonly (readonly string[])[];
}

/** Returns a deep JSON copy of `value` with the fields named in `fields` replaced by "[REDACTED]". */
export function redact(value: unknown, fields: readonly string[]): JsonValue {
  return copyJson(value, compile(fields));
}

/** Returns a deep copy of `value` as plain JSON, or throws ERR_INVALID_ARGUMENT naming the bad path. */
export function toJsonValue(value: unknown): JsonValue {
  return copyJson(value, compile([]));
}

function compile(fields: readonly string[]): Matcher {
  if (!Array.isArray(fields)) invalid("redactFields must be an array of field names or dotted paths");
  const anywhere = new Set<string>();
  const paths: string[][] = [];
  for (const field of fields) {
    if (typeof field !== "string" || field.length === 0) invalid("a redaction field must be a non-empty string");
    const segments = field.split(".");
    if (segments.some((s) => s.length === 0)) invalid(`redaction field "${field}" has an empty path segment`);
    if (segments.length === 1) anywhere.add(field);
    else paths.push(segments);
  }
  return { anywhere, paths };
}

function copyJson(root: unknown, matcher: Matcher): JsonValue {
  const seen = new Set<object>();

  const walk = (value: unknown, active: readonly (readonly string[])[], where: string): JsonValue => {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        if (!Number.isFinite(value)) invalid(`${where} is ${String(value)}, which JSON cannot represent`);
        return value;
      case "object":
        break;
      default:
        invalid(`${where} is a ${typeof value}, which is not JSON`);
    }
    if (value === null) return null;
    if (seen.has(value)) invalid(`${where} is a circular reference`);
    seen.add(value);
    let out: JsonValue;
    if (Array.isArray(value)) {
      const items: JsonValue[] = [];
      for (let i = 0; i < value.length; i++) {
        // Arrays are transparent to named segments; a numeric segment picks this index.
        const index = String(i);
        let redacted = false;
        const next: (readonly string[])[] = [];
        for (const path of active) {
          if (path[0] === index) {
            if (path.length === 1) redacted = true;
            else next.push(path.slice(1));
          } else {
            next.push(path);
          }
        }
        const item: unknown = value[i];
        // JSON.stringify turns a hole or undefined in an array into null; so do we.
        items.push(redacted ? REDACTED : item === undefined ? null : walk(item, next, `${where}[${i}]`));
      }
      out = items;
    } else {
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        invalid(`${where} is a ${(value as object).constructor?.name ?? "non-plain object"}, not a plain JSON object`);
      }
      const obj: { [key: string]: JsonValue } = {};
      // Keys in RFC 8785 order, so that the entry's hash can take its fast path.
      for (const key of Object.keys(value).sort()) {
        const item: unknown = (value as Record<string, unknown>)[key];
        if (item === undefined) continue; // as JSON.stringify does
        let redacted = matcher.anywhere.has(key);
        const next: (readonly string[])[] = [];
        if (!redacted) {
          for (const path of active) {
            if (path[0] !== key) continue;
            if (path.length === 1) {
              redacted = true;
              break;
            }
            next.push(path.slice(1));
          }
        }
        const copy = redacted ? REDACTED : walk(item, next, `${where}.${key}`);
        // A plain assignment to "__proto__" would set the prototype instead of a key.
        if (key === "__proto__") Object.defineProperty(obj, key, { value: copy, enumerable: true, writable: true, configurable: true });
        else obj[key] = copy;
      }
      out = obj;
    }
    seen.delete(value);
    return out;
  };

  return walk(root, matcher.paths, "args");
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.INVALID_ARGUMENT, message);
}
