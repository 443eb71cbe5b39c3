/**
 * RFC 8785 (JCS) canonical JSON for the audit hot paths.
 *
 * It produces exactly what the `canonicalize` package produces for JSON data (the audit tests
 * check that over generated values), several times faster on audit entries, whose long strings
 * (tokens with x5c chains, receipts) dominate: the package builds the text member by member in
 * JavaScript and scans every string one UTF-16 unit at a time for lone surrogates. Every append
 * and every verified entry computes one such hash, so this is most of their CPU cost.
 *
 * Input must be JSON data (what JSON.parse returns, or what `redactArgs` made): strings with
 * a lone surrogate and non-finite numbers are refused, as RFC 8785 requires, and so is
 * nesting deeper than `MAX_CANONICAL_DEPTH` (a TypeError each). Nothing here recurses without
 * bound: a log line that JSON.parse read 100,000 levels deep is refused, not a stack overflow.
 */

/**
 * Levels of nesting accepted. The writer never nests deeper than the argument bound (64)
 * plus the entry's own two levels; the margin is for entries written by other tools.
 */
const MAX_CANONICAL_DEPTH = 512;

// With the u flag a well-formed surrogate pair is one code point, so only lone halves match.
const LONE_SURROGATE = /\p{Cs}/u;
// JSON.stringify writes a lone surrogate as a \udxxx escape; this may also match an escaped
// backslash before "ud8..", which only sends the value down the exact (slower) path.
const MAYBE_LONE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * Fast path: for plain data whose object keys are already in canonical order, the native
 * JSON.stringify output is the canonical form (RFC 8785 adopts ECMAScript's serialisation of
 * strings, numbers and literals). The writer builds entries in that order, and parsed lines
 * keep their order, so nearly every hash takes this path.
 */
export function canonicalJson(value: unknown): string {
  if (typeof value === "object" && value !== null && isCanonicalOrder(value, undefined, 0)) {
    const text = JSON.stringify(value);
    if (!mayHoldLoneSurrogate(text)) return text;
  }
  return exactCanonicalJson(value, 0);
}

/** Canonical JSON of `object` as if its member `omit` were absent (no copy is made). */
export function canonicalObject(object: Record<string, unknown>, omit: string): string {
  // Fast path for the stored layout: canonical members, then `omit` as the last member.
  const omitted = object[omit];
  if (typeof omitted === "string" && isCanonicalOrder(object, omit, 0)) {
    const text = JSON.stringify(object);
    const suffix = `,${JSON.stringify(omit)}:${JSON.stringify(omitted)}}`;
    if (text.endsWith(suffix) && !mayHoldLoneSurrogate(text)) return `${text.slice(0, -suffix.length)}}`;
  }
  return exactObject(object, omit, 0);
}

function mayHoldLoneSurrogate(json: string): boolean {
  // indexOf is a plain substring search: much cheaper than the regex on the usual escape-free text.
  return json.includes("\\u") && MAYBE_LONE_ESCAPE.test(json);
}

/**
 * True when JSON.stringify(value) lists every object's members in RFC 8785 order (with
 * `lastKey`, if given, allowed only as the top level's last member) and would not drop or
 * alter anything: plain objects and arrays, finite numbers, no undefined.
 */
function isCanonicalOrder(value: object, lastKey: string | undefined, depth: number): boolean {
  if (depth >= MAX_CANONICAL_DEPTH) return false; // the exact path says why
  if (Array.isArray(value)) {
    for (const item of value) if (!isCanonicalValue(item, depth)) return false;
    return true;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  const keys = Object.keys(value);
  let end = keys.length;
  if (lastKey !== undefined) {
    if (keys[end - 1] !== lastKey) return false;
    end--;
  }
  for (let i = 0; i < end; i++) {
    const key = keys[i] as string;
    if (i > 0 && !((keys[i - 1] as string) < key)) return false; // < compares UTF-16 code units
    if (!isCanonicalValue((value as Record<string, unknown>)[key], depth)) return false;
  }
  return true;
}

function isCanonicalValue(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isFinite(value);
    case "object":
      return value === null || isCanonicalOrder(value, undefined, depth + 1);
    default:
      return false;
  }
}

/** The exact serialisation, member by member. */
function exactCanonicalJson(value: unknown, depth: number): string {
  switch (typeof value) {
    case "string":
      if (LONE_SURROGATE.test(value)) throw new TypeError("a string holds a lone surrogate, which RFC 8785 forbids");
      return JSON.stringify(value);
    case "number":
      // ECMAScript number serialisation is RFC 8785's; it turns -0 into 0 as required.
      if (!Number.isFinite(value)) throw new TypeError(`${value} cannot be represented in JSON`);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      if (value === null) return "null";
      if (depth >= MAX_CANONICAL_DEPTH) throw new TypeError(`nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
      if (Array.isArray(value))
        return `[${value.map((item) => (item === undefined ? "null" : exactCanonicalJson(item, depth + 1))).join(",")}]`;
      return exactObject(value as Record<string, unknown>, undefined, depth);
    default:
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

function exactObject(object: Record<string, unknown>, omit: string | undefined, depth: number): string {
  // Array.prototype.sort compares UTF-16 code units, which is the order RFC 8785 prescribes.
  const keys = Object.keys(object).sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const member = object[key];
    if (key === omit || member === undefined) continue;
    if (!first) out += ",";
    first = false;
    out += exactCanonicalJson(key, depth + 1);
    out += ":";
    out += exactCanonicalJson(member, depth + 1);
  }
  return `${out}}`;
}
