/**
 * RFC 8785 (JCS) canonical JSON: the one serialiser behind audit hashes (`audit/entry.ts`,
 * `audit/checkpoint.ts`, the PostgreSQL chain), invocation and receipt digests
 * (`invocation/canonical.ts`) and policy names (`policy/policy.ts`).
 *
 * It produces exactly what the `canonicalize` package (the reference implementation by the
 * RFC's co-author) produces for JSON data, which `test/json-canonical.test.ts` checks on
 * generated values, several times faster on audit entries, whose long strings (tokens with x5c
 * chains, receipts) dominate: the package builds the text member by member in JavaScript and
 * scans every string one UTF-16 unit at a time for lone surrogates. Every append, every
 * verified entry and every signed call computes at least one such form.
 *
 * What it accepts, and why these rules and no others:
 *
 * - JSON data, as JSON.stringify and `canonicalize` read it: plain objects (prototype
 *   Object.prototype or null) and arrays, strings, finite numbers, booleans, null; an object
 *   with a `toJSON` method stands for what it returns (a Date is its ISO string); an undefined
 *   member is left out and an undefined array item is null. Anything else (a Map, a class
 *   instance, a bigint, a function, a symbol) is refused rather than serialised as `{}` or
 *   dropped, so two different values never share a digest by accident.
 * - A lone surrogate (in a string or a key) and a non-finite number are refused, as RFC 8785
 *   requires.
 * - A `__proto__` member is an ordinary member, as RFC 8785 and JSON.parse have it. The audit
 *   log must hash whatever a caller sent, hostile keys included (DESIGN.md §11: no input goes
 *   unaudited), and logs already written hold such members; refusing them here would make
 *   those logs unverifiable. What may be *signed* is a stricter protocol rule and lives with
 *   the protocol: `invocation/canonical.ts` refuses `__proto__` members (the MCP SDK's parse
 *   drops them) and nesting deeper than 64 before it takes a digest.
 * - Nesting deeper than MAX_CANONICAL_DEPTH is refused. It is a bound on this function's
 *   stack, not a data rule, and it is the audit side's old bound: the writer nests arguments at
 *   most 64 levels below its entries, and entries written by other tools may nest deeper, so a
 *   lower bound would make existing logs unverifiable, while the signing rule (64) keeps every
 *   digest of a token inside it. A line JSON.parse read 100,000 levels deep is refused with
 *   ERR_JSON_UNREPRESENTABLE, never a stack overflow.
 *
 * Every refusal is an AztpError ERR_JSON_UNREPRESENTABLE; callers that must say more (the
 * audit writer, the verifier) wrap it.
 */
import { AztpError, ErrorCodes } from "../errors.js";

/** Levels of nesting accepted (see the file comment for why 512). */
export const MAX_CANONICAL_DEPTH = 512;

// With the u flag a well-formed surrogate pair is one code point, so only lone halves match.
const LONE_SURROGATE = /\p{Cs}/u;
// JSON.stringify writes a lone surrogate as a \udxxx escape; this may also match an escaped
// backslash before "ud8..", which only sends the value down the exact (slower) path.
const MAYBE_LONE_ESCAPE = /\\u[dD][89a-fA-F]/;

function unrepresentable(why: string): never {
  throw new AztpError(ErrorCodes.JSON_UNREPRESENTABLE, why);
}

/**
 * The canonical form of `value`.
 *
 * Fast path: for plain data whose object keys are already in canonical order, the native
 * JSON.stringify output is the canonical form (RFC 8785 adopts ECMAScript's serialisation of
 * strings, numbers and literals). The audit writer builds entries in that order, and parsed
 * lines keep their order, so nearly every audit hash takes this path.
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
 * `lastKey`, if given, allowed only as the top level's last member) and would not drop, alter
 * or replace anything: plain objects and arrays without toJSON, finite numbers, no undefined.
 */
function isCanonicalOrder(value: object, lastKey: string | undefined, depth: number): boolean {
  if (depth >= MAX_CANONICAL_DEPTH) return false; // the exact path says why
  // A toJSON (own, inherited or not enumerable) would make JSON.stringify write something else.
  if (typeof (value as { toJSON?: unknown }).toJSON === "function") return false;
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
      if (LONE_SURROGATE.test(value)) unrepresentable("a string holds a lone surrogate, which RFC 8785 forbids");
      return JSON.stringify(value);
    case "number":
      // ECMAScript number serialisation is RFC 8785's; it turns -0 into 0 as required.
      if (!Number.isFinite(value)) unrepresentable(`${value} cannot be represented in JSON`);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (depth >= MAX_CANONICAL_DEPTH) unrepresentable(`nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
      const toJSON: unknown = (value as { toJSON?: unknown }).toJSON;
      // As JSON.stringify and canonicalize do: a toJSON (Date and friends) stands for its object.
      // One level deeper, so a toJSON returning objects with toJSONs cannot go on for ever.
      if (typeof toJSON === "function") return exactCanonicalJson((toJSON as () => unknown).call(value), depth + 1);
      if (Array.isArray(value))
        return `[${value.map((item) => (item === undefined ? "null" : exactCanonicalJson(item, depth + 1))).join(",")}]`;
      const proto: unknown = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
        unrepresentable(`a ${typeof name === "string" && name !== "" ? name : "non-plain object"} is not plain JSON`);
      }
      return exactObject(value as Record<string, unknown>, undefined, depth);
    }
    default:
      return unrepresentable(`a ${typeof value} is not JSON`);
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
