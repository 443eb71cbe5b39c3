/**
 * Redaction of tool-call arguments before they are written to the audit log, and the bounds
 * that keep any argument value recordable.
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
 * mutated: the result is a deep copy that is plain JSON with a canonical form, because the
 * audit hash is taken over its RFC 8785 canonical form.
 *
 * TOTAL AND BOUNDED. The arguments are whatever a caller sent, hostile ones included, and a
 * refused call must still be audited: so this never throws on a value and never recurses
 * without bound. What it cannot keep it replaces with a marker string (`"[OMITTED: ...]"`,
 * `"...[TRUNCATED: ...]"`) and says so in `omitted`, which the log stores as `argsOmitted`:
 *
 * - nesting deeper than `ARGS_LIMITS.depth` levels (the walk is a recursion with a depth
 *   counter: its stack is at most that deep, whatever the input);
 * - numbers JSON cannot carry (NaN, Infinity: `1e400` parses to Infinity), bigints,
 *   functions, symbols, circular references, objects that are not plain (a Date, a Map, a
 *   class instance), values whose reading throws (a getter, a revoked Proxy);
 * - strings longer than `ARGS_LIMITS.stringLength`, cut and followed by their length and the
 *   SHA-256 of their UTF-8 (lone surrogates encoded as U+FFFD);
 * - lone surrogates (in values and in keys), which RFC 8785 cannot represent: replaced with
 *   U+FFFD; a key that then equals another key of its object is dropped;
 * - more than `ARGS_LIMITS.members` members of one object or array, and anything beyond the
 *   total budget (`ARGS_LIMITS.totalChars` characters, `ARGS_LIMITS.values` values): the
 *   rest of that container is left out (an array gets one marker element saying how many).
 *
 * The digest the entry carries (`argsDigest`) is still of the real arguments, so a holder of
 * them can prove what was called without the log holding all of them.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { isPlainObject, type JsonValue } from "../json/value.js";
import { sha256Hex } from "../sha256.js";

export const REDACTED = "[REDACTED]";

/** The bounds on what of the arguments an entry keeps. */
export const ARGS_LIMITS = {
  /** Levels of nesting kept below the root; deeper values become a marker. */
  depth: 64,
  /** Members kept per object or array. */
  members: 1000,
  /** Characters (UTF-16 units) kept per string; a longer one is cut and carries its digest. */
  stringLength: 8192,
  /** Characters of strings and keys kept in all, about 256 KiB. */
  totalChars: 256 * 1024,
  /** Values kept in all. */
  values: 20_000,
  /** Notes in `omitted`; further ones are counted in a last note. */
  notes: 32,
  /** Characters per note. */
  noteLength: 240,
  /** Characters kept per key. */
  keyLength: 256,
} as const;

export interface RedactedArgs {
  readonly value: JsonValue;
  /** Why parts of the arguments could not be kept, one note per place ("args.a.b: ..."); empty when all were. */
  readonly omitted: readonly string[];
}

interface Matcher {
  readonly anywhere: ReadonlySet<string>;
  readonly paths: readonly (readonly string[])[];
}

/** A deep JSON copy of `value` with the fields named in `fields` replaced by "[REDACTED]". */
export function redact(value: unknown, fields: readonly string[]): JsonValue {
  return redactArgs(value, fields).value;
}

/**
 * As `redact`, and says what could not be kept. Throws ERR_ARGUMENT_INVALID only for a
 * malformed field list (a programming error), never because of `value`.
 */
export function redactArgs(value: unknown, fields: readonly string[]): RedactedArgs {
  return copyJson(value, compile(fields));
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

/** Collects notes, bounded in number and length. */
export class OmissionNotes {
  readonly #notes: string[] = [];
  #dropped = 0;
  constructor(private readonly limit: number = ARGS_LIMITS.notes) {}

  add(where: string, why: string): void {
    if (this.#notes.length >= this.limit) {
      this.#dropped++;
      return;
    }
    this.#notes.push(capNote(`${where}: ${why}`));
  }

  list(): string[] {
    return this.#dropped === 0 ? [...this.#notes] : [...this.#notes, `… and ${this.#dropped} more not listed`];
  }
}

function capNote(note: string): string {
  const max = ARGS_LIMITS.noteLength;
  return note.length <= max ? note : `${wellFormed(note.slice(0, max - 1))}…`;
}

// With the u flag a well-formed surrogate pair is one code point, so only lone halves match.
const LONE_SURROGATE = /\p{Cs}/u;
const LONE_SURROGATES = /\p{Cs}/gu;

/** `text` with every lone surrogate replaced by U+FFFD, and how many there were. */
export function replaceLoneSurrogates(text: string): { text: string; replaced: number } {
  if (!LONE_SURROGATE.test(text)) return { text, replaced: 0 };
  let replaced = 0;
  const out = text.replace(LONE_SURROGATES, () => {
    replaced++;
    return "\ufffd";
  });
  return { text: out, replaced };
}

function wellFormed(text: string): string {
  return replaceLoneSurrogates(text).text;
}

/**
 * `text` cut to `max` characters, followed by its length and digest; null when it fits.
 * A cut never splits a surrogate pair.
 */
export function truncateText(text: string, max: number): string | null {
  if (text.length <= max) return null;
  let keep = max;
  const last = text.charCodeAt(keep - 1);
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep--; // a high surrogate whose low half is cut off
  // One-shot hash: the whole text is hashed, as the digest must identify all of it.
  return `${text.slice(0, keep)}…[TRUNCATED: ${text.length} characters, sha256 ${sha256Hex(text)}]`;
}

/** A member whose reading threw (a getter, a Proxy trap): walked as the error it gave. */
class Unreadable {
  constructor(readonly cause: unknown) {}
}

const marker = (why: string): string => `[OMITTED: ${why}]`;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** A readable, bounded path step for notes. */
function step(where: string, key: string): string {
  if (IDENTIFIER.test(key) && key.length <= 64) return `${where}.${key}`;
  const shown = key.length <= 40 ? key : `${key.slice(0, 40)}…`;
  return `${where}[${JSON.stringify(wellFormed(shown))}]`;
}

function describeType(value: unknown): string {
  switch (typeof value) {
    case "bigint":
      return "a bigint";
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      return `a ${typeof value}`;
  }
}

function errorName(cause: unknown): string {
  try {
    // Even inspecting what was thrown may throw (a Proxy's traps).
    return cause instanceof Error && typeof cause.name === "string" && cause.name.length <= 64
      ? wellFormed(cause.name)
      : "a value";
  } catch {
    return "a value";
  }
}

function constructorName(value: object): string {
  try {
    const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name.length > 0 && name.length <= 64 ? wellFormed(name) : "non-plain object";
  } catch {
    return "non-plain object";
  }
}

function copyJson(root: unknown, matcher: Matcher): RedactedArgs {
  const notes = new OmissionNotes();
  const seen = new Set<object>();
  let chars = ARGS_LIMITS.totalChars;
  let values = ARGS_LIMITS.values;
  const spent = (): boolean => chars <= 0 || values <= 0;

  /** A string cut to `limit` and with lone surrogates replaced, each change noted at `where`. */
  const storable = (value: string, where: string, limit: number, what: "string" | "key"): string => {
    const cut = truncateText(value, limit);
    if (cut !== null) notes.add(where, `a ${what} of ${value.length} characters, cut to ${limit}`);
    const fixed = replaceLoneSurrogates(cut ?? value);
    if (fixed.replaced > 0)
      notes.add(
        where,
        `${fixed.replaced} lone surrogate(s)${what === "key" ? " in the key" : ""} replaced with U+FFFD`,
      );
    return fixed.text;
  };

  const text = (value: string, where: string): string => {
    const out = storable(value, where, ARGS_LIMITS.stringLength, "string");
    chars -= out.length;
    return out;
  };

  const walk = (value: unknown, active: readonly (readonly string[])[], where: string, depth: number): JsonValue => {
    values--;
    try {
      if (value instanceof Unreadable) throw value.cause;
      switch (typeof value) {
        case "string":
          return text(value, where);
        case "boolean":
          return value;
        case "number":
          if (Number.isFinite(value)) return value;
          notes.add(where, `${String(value)} is not JSON`);
          return marker(`${String(value)} is not JSON`);
        case "undefined":
          return null; // only reached for the root and array items: JSON.stringify writes null there
        case "object":
          break;
        default:
          notes.add(where, `${describeType(value)} is not JSON`);
          return marker(`${describeType(value)} is not JSON`);
      }
      if (value === null) return null;
      if (depth >= ARGS_LIMITS.depth) {
        notes.add(where, `nested deeper than ${ARGS_LIMITS.depth} levels`);
        return marker(`nested deeper than ${ARGS_LIMITS.depth} levels`);
      }
      if (seen.has(value)) {
        notes.add(where, "a circular reference");
        return marker("circular reference");
      }
      seen.add(value);
      try {
        return Array.isArray(value) ? array(value, active, where, depth) : object(value, active, where, depth);
      } finally {
        seen.delete(value);
      }
    } catch (cause) {
      // A getter that throws, a revoked Proxy: the value exists but cannot be read.
      const why = `could not be read (${errorName(cause)} thrown)`;
      notes.add(where, why);
      return marker(why);
    }
  };

  const array = (
    value: readonly unknown[],
    active: readonly (readonly string[])[],
    where: string,
    depth: number,
  ): JsonValue[] => {
    const items: JsonValue[] = [];
    const length = value.length;
    const kept = Math.min(length, ARGS_LIMITS.members);
    let i = 0;
    for (; i < kept && !spent(); i++) {
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
      let item: unknown;
      try {
        item = value[i];
      } catch (cause) {
        item = new Unreadable(cause);
      }
      // JSON.stringify turns a hole or undefined in an array into null; so does walk.
      items.push(redacted ? REDACTED : walk(item, next, `${where}[${i}]`, depth + 1));
    }
    if (i < length) {
      const why =
        i < ARGS_LIMITS.members ? "over the size budget of the arguments" : `over ${ARGS_LIMITS.members} items`;
      notes.add(where, `${length - i} of ${length} items not kept (${why})`);
      items.push(marker(`${length - i} more items, ${why}`));
    }
    return items;
  };

  const object = (value: object, active: readonly (readonly string[])[], where: string, depth: number): JsonValue => {
    if (!isPlainObject(value)) {
      const why = `a ${constructorName(value)}, not a plain JSON object`;
      notes.add(where, why);
      return marker(why);
    }
    const obj: { [key: string]: JsonValue } = {};
    const allKeys = Object.keys(value);
    // The first members in insertion order, then sorted: sorting all of a huge object would
    // cost more than it is worth to know which thousand are kept.
    const keys = (allKeys.length > ARGS_LIMITS.members ? allKeys.slice(0, ARGS_LIMITS.members) : allKeys).sort();
    let skipped = allKeys.length - keys.length;
    let stopped = false;
    const out: [string, JsonValue][] = [];
    const taken = new Set<string>();
    for (let k = 0; k < keys.length; k++) {
      if (spent()) {
        stopped = true;
        skipped += keys.length - k;
        break;
      }
      const key = keys[k] as string;
      const here = step(where, key);
      let item: unknown;
      try {
        item = (value as Record<string, unknown>)[key];
      } catch (cause) {
        item = new Unreadable(cause);
      }
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
      const safeKey = storedKey(key, here);
      if (taken.has(safeKey)) {
        notes.add(here, "dropped: its key equals another key once made storable");
        continue;
      }
      taken.add(safeKey);
      chars -= safeKey.length;
      out.push([safeKey, redacted ? REDACTED : walk(item, next, here, depth + 1)]);
    }
    if (skipped > 0) {
      const why = stopped ? "over the size budget of the arguments" : `over ${ARGS_LIMITS.members} members`;
      notes.add(where, `${skipped} of ${allKeys.length} members not kept (${why})`);
    }
    // Keys in RFC 8785 order (sanitised keys may sort differently), so that the entry's hash
    // can take its fast path.
    if (out.some(([k], i) => i > 0 && !((out[i - 1] as [string, JsonValue])[0] < k)))
      out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [key, copy] of out) {
      // A plain assignment to "__proto__" would set the prototype instead of a key.
      if (key === "__proto__")
        Object.defineProperty(obj, key, { value: copy, enumerable: true, writable: true, configurable: true });
      else obj[key] = copy;
    }
    return obj;
  };

  const storedKey = (key: string, here: string): string => storable(key, here, ARGS_LIMITS.keyLength, "key");

  const value = walk(root, matcher.paths, "args", 0);
  return { value, omitted: notes.list() };
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}
