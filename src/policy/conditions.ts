/**
 * Condition operators: validation of a `Condition` block and its compilation into checks.
 *
 * IAM semantics, which users of AWS policies already know:
 * - several operators in one block, and several keys under one operator, are ANDed;
 * - several values for one key are ORed;
 * - a key absent from the context makes a condition false; except that a negated operator
 *   (`StringNotEquals`, `StringNotLike`, `NumericNotEquals`, `DateNotEquals`, `NotIpAddress`,
 *   ...) is then true, as AWS documents. This keeps the usual guard, a Deny with a negated
 *   operator ("deny unless the trust domain is ours"), failing closed when the key is missing;
 * - `...IfExists`: an absent key makes the condition true;
 * - `Null`: `true` means the key is absent, `false` that it is present;
 * - `ForAnyValue:` is true if some value of a (multi-valued) key matches; false when absent;
 * - `ForAllValues:` is true if every value matches, and, as in IAM, also when the key is absent
 *   or empty: pair it with `Null: { key: "false" }` to require the key;
 * - a negated operator matches a value when none of the policy values does;
 * - without a set qualifier, an array value matches a positive operator when any element does,
 *   and a negated one when no element matches the positive form.
 * A context value that cannot be read as the operator's type (an object for StringEquals, "abc"
 * for NumericLessThan) never satisfies a condition, negated or not.
 */
import { BlockList, isIP } from "node:net";
import { ARGS_FIELD_PREFIX, ARGS_KEY, unknownContextKeyReason } from "./context.js";
import { isPlainObject } from "../json/value.js";
import { fieldPath, invalid, shown } from "./invalid.js";
import { Matcher, normalizeId } from "./match.js";

export type ConditionValue = string | number | boolean;
/** `{ Operator: { "context:key": value | [values] } }` */
export type ConditionBlock = Record<string, Record<string, ConditionValue | ConditionValue[]>>;

type Family = "String" | "StringIgnoreCase" | "StringLike" | "Numeric" | "Date" | "Bool" | "IpAddress" | "Null";
type Comparison = "eq" | "lt" | "le" | "gt" | "ge";

interface BaseOperator {
  readonly family: Family;
  readonly negated: boolean;
  readonly comparison: Comparison;
}

function op(family: Family, negated = false, comparison: Comparison = "eq"): BaseOperator {
  return { family, negated, comparison };
}

function ordered(family: "Numeric" | "Date"): Array<[string, BaseOperator]> {
  return [
    [`${family}Equals`, op(family)],
    [`${family}NotEquals`, op(family, true)],
    [`${family}LessThan`, op(family, false, "lt")],
    [`${family}LessThanEquals`, op(family, false, "le")],
    [`${family}GreaterThan`, op(family, false, "gt")],
    [`${family}GreaterThanEquals`, op(family, false, "ge")],
  ];
}

const BASE_OPERATORS: ReadonlyMap<string, BaseOperator> = new Map([
  ["StringEquals", op("String")],
  ["StringNotEquals", op("String", true)],
  ["StringEqualsIgnoreCase", op("StringIgnoreCase")],
  ["StringNotEqualsIgnoreCase", op("StringIgnoreCase", true)],
  ["StringLike", op("StringLike")],
  ["StringNotLike", op("StringLike", true)],
  ...ordered("Numeric"),
  ...ordered("Date"),
  ["Bool", op("Bool")],
  ["IpAddress", op("IpAddress")],
  ["NotIpAddress", op("IpAddress", true)],
  ["Null", op("Null")],
]);

/** Every base operator name (without `ForAnyValue:`/`ForAllValues:` or `IfExists`). */
export const CONDITION_OPERATORS: readonly string[] = Object.freeze([...BASE_OPERATORS.keys()]);

interface Operator {
  readonly base: BaseOperator;
  readonly set: "any" | "all" | undefined;
  readonly ifExists: boolean;
}

function parseOperator(name: string, path: string): Operator {
  let rest = name;
  let set: Operator["set"];
  if (rest.startsWith("ForAnyValue:")) {
    set = "any";
    rest = rest.slice("ForAnyValue:".length);
  } else if (rest.startsWith("ForAllValues:")) {
    set = "all";
    rest = rest.slice("ForAllValues:".length);
  }
  let ifExists = false;
  if (rest.endsWith("IfExists") && rest !== "IfExists") {
    ifExists = true;
    rest = rest.slice(0, -"IfExists".length);
  }
  const base = BASE_OPERATORS.get(rest);
  if (base === undefined) {
    invalid(
      path,
      `is not a known condition operator (known: ${CONDITION_OPERATORS.join(", ")}; optionally prefixed ` +
        "ForAnyValue: or ForAllValues: and suffixed IfExists)",
    );
  }
  if (base.family === "Null" && (set !== undefined || ifExists)) {
    invalid(path, "Null takes neither a ForAnyValue:/ForAllValues: qualifier nor IfExists");
  }
  return { base, set, ifExists };
}

// ---- reading values -------------------------------------------------------------------------

const NUMERIC = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const EPOCH = /^\d+$/;
// ISO 8601 as IAM and RFC 3339 use it. A time needs a zone: a local time would make a policy
// mean different instants on different machines.
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2}))?$/;

function readNumber(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v === "string" && NUMERIC.test(v)) return Number(v);
  return undefined;
}

/** Milliseconds since 1970. Numbers and all-digit strings are epoch seconds, as in IAM. */
function readDate(v: unknown): number | undefined {
  if (v instanceof Date) {
    const t = v.getTime();
    return Number.isNaN(t) ? undefined : t;
  }
  if (typeof v === "number") return Number.isFinite(v) ? v * 1000 : undefined;
  if (typeof v !== "string") return undefined;
  if (EPOCH.test(v)) return Number(v) * 1000;
  if (!ISO_DATE.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

function readBool(v: unknown): boolean | undefined {
  if (typeof v === "boolean") return v;
  if (typeof v === "string") {
    const lower = v.toLowerCase();
    if (lower === "true") return true;
    if (lower === "false") return false;
  }
  return undefined;
}

/** Context strings: numbers and booleans read as their JSON text; IDs in their normal form. */
function readString(v: unknown): string | undefined {
  if (typeof v === "string") return normalizeId(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return undefined;
}

interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly type: "ipv4" | "ipv6";
}

function readCidr(v: unknown): Cidr | undefined {
  if (typeof v !== "string") return undefined;
  const slash = v.indexOf("/");
  const address = slash === -1 ? v : v.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const text = v.slice(slash + 1);
    if (!/^\d{1,3}$/.test(text)) return undefined;
    prefix = Number(text);
    if (prefix > max) return undefined;
  }
  return { address, prefix, type: version === 4 ? "ipv4" : "ipv6" };
}

const EXPECTED: Record<Family, string> = {
  String: "a string",
  StringIgnoreCase: "a string",
  StringLike: "a string pattern",
  Numeric: "a number or a numeric string",
  Date: "an ISO 8601 date (with a time zone if it has a time) or epoch seconds",
  Bool: 'true, false, "true" or "false"',
  IpAddress: "an IP address or CIDR range",
  Null: 'true, false, "true" or "false"',
};

/** Converts one policy value to the form its check compares, or undefined if it is not valid. */
function policyValue(family: Family, v: unknown): string | number | boolean | Cidr | undefined {
  switch (family) {
    case "String":
    case "StringLike":
      return typeof v === "string" ? normalizeId(v) : undefined;
    case "StringIgnoreCase":
      return typeof v === "string" ? normalizeId(v).toLowerCase() : undefined;
    case "Numeric":
      return readNumber(v);
    case "Date":
      return readDate(v);
    case "Bool":
    case "Null":
      return readBool(v);
    case "IpAddress":
      return readCidr(v);
  }
}

// ---- validation -----------------------------------------------------------------------------

/** Validates a Condition block and returns a frozen copy of it. */
export function parseConditionBlock(raw: unknown, path: string): Readonly<ConditionBlock> {
  if (!isPlainObject(raw)) invalid(path, "must be an object of condition operators");
  const out: ConditionBlock = {};
  for (const [name, keys] of Object.entries(raw)) {
    const opPath = fieldPath(path, name);
    const { base } = parseOperator(name, opPath);
    if (!isPlainObject(keys)) invalid(opPath, "must be an object of context keys");
    const entries = Object.entries(keys);
    if (entries.length === 0) invalid(opPath, "must name at least one context key");
    const copy: Record<string, ConditionValue | ConditionValue[]> = {};
    for (const [key, value] of entries) {
      const keyPath = fieldPath(opPath, key);
      if (key.length === 0) invalid(keyPath, "context key cannot be empty");
      const why = unknownContextKeyReason(key);
      if (why !== undefined) invalid(keyPath, why);
      const values = Array.isArray(value) ? value : [value];
      if (values.length === 0) invalid(keyPath, "must have at least one value");
      values.forEach((v, i) => {
        const at = Array.isArray(value) ? `${keyPath}[${i}]` : keyPath;
        const ok =
          (typeof v === "string" || typeof v === "number" || typeof v === "boolean") &&
          policyValue(base.family, v) !== undefined;
        if (!ok) invalid(at, `must be ${EXPECTED[base.family]}, got ${shown(v)}`);
      });
      copy[key] = Array.isArray(value)
        ? (Object.freeze([...(value as ConditionValue[])]) as ConditionValue[])
        : (value as ConditionValue);
    }
    out[name] = Object.freeze(copy);
  }
  return Object.freeze(out);
}

// ---- compilation ----------------------------------------------------------------------------

export type PolicyContext = Readonly<Record<string, unknown>>;
/** One compiled condition (an operator applied to one key): true if it holds for the context. */
export type ConditionCheck = (ctx: PolicyContext) => boolean;

/** true/false: the value matches / does not; undefined: it cannot be read as the operator's type. */
type ValueTest = (v: unknown) => boolean | undefined;

type Resolver = (ctx: PolicyContext) => unknown;

const hasOwn = Object.hasOwn;

function resolver(key: string): Resolver {
  if (!key.startsWith(ARGS_FIELD_PREFIX)) return (ctx) => (hasOwn(ctx, key) ? ctx[key] : undefined);
  const segments = key.slice(ARGS_FIELD_PREFIX.length).split(".");
  return (ctx) => {
    // A caller may also flatten argument fields into the context itself.
    if (hasOwn(ctx, key)) return ctx[key];
    let cur: unknown = hasOwn(ctx, ARGS_KEY) ? ctx[ARGS_KEY] : undefined;
    for (const seg of segments) {
      // Own properties only: `aztp:args.constructor` must not find Object.prototype.constructor.
      if (cur === null || typeof cur !== "object" || !hasOwn(cur, seg)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    }
    return cur;
  };
}

function compare(comparison: Comparison): (a: number, b: number) => boolean {
  switch (comparison) {
    case "eq":
      return (a, b) => a === b;
    case "lt":
      return (a, b) => a < b;
    case "le":
      return (a, b) => a <= b;
    case "gt":
      return (a, b) => a > b;
    case "ge":
      return (a, b) => a >= b;
  }
}

/** Reads a context value as the operator's type, then tests it; unreadable stays undefined. */
function readThen<T>(read: (v: unknown) => T | undefined, test: (x: T) => boolean): ValueTest {
  return (v) => {
    const x = read(v);
    return x === undefined ? undefined : test(x);
  };
}

function readLowerString(v: unknown): string | undefined {
  return readString(v)?.toLowerCase();
}

function valueTest(base: BaseOperator, raw: ConditionValue[]): ValueTest {
  const values = raw.map((v) => policyValue(base.family, v));
  switch (base.family) {
    case "String": {
      const set = new Set(values as string[]);
      return readThen(readString, (s) => set.has(s));
    }
    case "StringIgnoreCase": {
      const set = new Set(values as string[]);
      return readThen(readLowerString, (s) => set.has(s));
    }
    case "StringLike": {
      const matcher = new Matcher(values as string[]);
      return readThen(readString, (s) => matcher.test(s));
    }
    case "Numeric":
    case "Date": {
      const cmp = compare(base.comparison);
      const bounds = values as number[];
      return readThen(base.family === "Numeric" ? readNumber : readDate, (n) => {
        for (const p of bounds) if (cmp(n, p)) return true;
        return false;
      });
    }
    case "Bool": {
      const set = new Set(values as boolean[]);
      return readThen(readBool, (b) => set.has(b));
    }
    case "IpAddress": {
      const list = new BlockList();
      for (const c of values as Cidr[]) list.addSubnet(c.address, c.prefix, c.type);
      return (v) => {
        if (typeof v !== "string") return undefined;
        const version = isIP(v);
        return version === 0 ? undefined : list.check(v, version === 4 ? "ipv4" : "ipv6");
      };
    }
    case "Null":
      throw new Error("unreachable: Null has no value test");
  }
}

function compileOne(operator: Operator, key: string, raw: ConditionValue[]): ConditionCheck {
  const resolve = resolver(key);
  if (operator.base.family === "Null") {
    const values = raw.map(readBool);
    const acceptAbsent = values.includes(true);
    const acceptPresent = values.includes(false);
    return (ctx) => {
      const v = resolve(ctx);
      return v === undefined || v === null ? acceptAbsent : acceptPresent;
    };
  }
  const test = valueTest(operator.base, raw);
  const one: (v: unknown) => boolean = operator.base.negated ? (v) => test(v) === false : (v) => test(v) === true;
  // Two shapes cover every case: "some value matches" (a missing key gives IfExists), and
  // "every value matches" (a missing key gives true) for ForAllValues: and negated operators.
  const { set, ifExists } = operator;
  if (set === "all" || (set === undefined && operator.base.negated)) {
    return (ctx) => {
      const v = resolve(ctx);
      if (v === undefined || v === null) return true;
      return Array.isArray(v) ? v.every(one) : one(v);
    };
  }
  return (ctx) => {
    const v = resolve(ctx);
    if (v === undefined || v === null) return ifExists;
    return Array.isArray(v) ? v.some(one) : one(v);
  };
}

/** Compiles a validated Condition block into checks that must all hold. */
export function compileConditions(block: Readonly<ConditionBlock>): ConditionCheck[] {
  const checks: ConditionCheck[] = [];
  for (const [name, keys] of Object.entries(block)) {
    const operator = parseOperator(name, name);
    for (const [key, value] of Object.entries(keys)) {
      checks.push(compileOne(operator, key, Array.isArray(value) ? value : [value]));
    }
  }
  return checks;
}
