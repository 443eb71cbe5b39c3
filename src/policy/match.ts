/**
 * Wildcard patterns (`*`, `?`) and the one normal form of an ID, shared by Principal, Action,
 * Resource and the StringLike condition operators.
 *
 * Patterns are compiled once into a `Matcher` when a policy is compiled: literal values go into
 * a Set (one hash lookup), wildcard patterns into a single anchored alternation RegExp. Every
 * other character of a pattern is literal: `.` or `(` in a policy never means regex syntax.
 */

/** Characters RegExp treats as syntax in `u` mode; `*` and `?` are handled before escaping. */
const REGEX_SYNTAX = /[\\^$.+()[\]{}|/]/g;

/**
 * A small process-wide cache of compiled wildcard sources, so reloading or recompiling the same
 * policies does not rebuild their RegExps. Bounded: cleared when full rather than tracked LRU,
 * because policies are few and the cost of a miss is one `new RegExp`.
 */
const regexCache = new Map<string, RegExp>();
const REGEX_CACHE_MAX = 2048;

export function hasWildcard(pattern: string): boolean {
  return pattern.includes("*") || pattern.includes("?");
}

/** RegExp source (unanchored) for one wildcard pattern. */
function wildcardSource(pattern: string): string {
  let out = "";
  for (const ch of pattern) {
    if (ch === "*") out += ".*";
    else if (ch === "?") out += ".";
    else out += ch.replace(REGEX_SYNTAX, "\\$&");
  }
  return out;
}

function compileRegex(patterns: readonly string[]): RegExp {
  const source = `^(?:${patterns.map(wildcardSource).join("|")})$`;
  let re = regexCache.get(source);
  if (re === undefined) {
    if (regexCache.size >= REGEX_CACHE_MAX) regexCache.clear();
    // `s`: `*` and `?` match newlines too; `u`: `?` is one code point, not half a surrogate pair.
    re = new RegExp(source, "su");
    regexCache.set(source, re);
  }
  return re;
}

/** A compiled set of patterns: `test(value)` is true if any pattern matches the whole value. */
export class Matcher {
  private readonly any: boolean;
  private readonly exact: ReadonlySet<string>;
  private readonly regex: RegExp | undefined;

  /** Values must already be in the form `test` will be given (see `normalizeId`, lower case). */
  constructor(patterns: readonly string[], wildcards = true) {
    const exact = new Set<string>();
    const globs: string[] = [];
    let any = false;
    for (const p of patterns) {
      if (!wildcards || !hasWildcard(p)) exact.add(p);
      else if (/^\*+$/.test(p)) any = true;
      else globs.push(p);
    }
    this.any = any;
    this.exact = exact;
    this.regex = !any && globs.length > 0 ? compileRegex(globs) : undefined;
  }

  test(value: string): boolean {
    return this.any || this.exact.has(value) || (this.regex !== undefined && this.regex.test(value));
  }
}

/**
 * The single form in which IDs are compared: `aztp://td/p` and `spiffe://td/p` name the same
 * workload, and the scheme and trust domain are case-insensitive (SPIFFE-ID standard), so both
 * become `spiffe://<lower-case td>/p`. The path keeps its case. Anything that is not an ID is
 * returned unchanged. A trust domain holding a wildcard (a pattern such as `aztp://td*Agent`,
 * where `*` may run into the path) is left alone, since folding it could change what it matches.
 *
 * Cheap on the hot path: one character test for strings that cannot be IDs.
 */
export function normalizeId(value: string): string {
  const c = value.charCodeAt(0) | 0x20;
  let start: number;
  if (c === 0x61 /* a */ && value.length > 7 && value.startsWith("://", 4) && value.slice(0, 4).toLowerCase() === "aztp") {
    start = 7;
  } else if (
    c === 0x73 /* s */ &&
    value.length > 9 &&
    value.startsWith("://", 6) &&
    value.slice(0, 6).toLowerCase() === "spiffe"
  ) {
    start = 9;
  } else {
    return value;
  }
  const slash = value.indexOf("/", start);
  const td = slash === -1 ? value.slice(start) : value.slice(start, slash);
  const path = slash === -1 ? "" : value.slice(slash);
  const folded = hasWildcard(td) ? td : td.toLowerCase();
  if (start === 9 && folded === td && value.startsWith("spiffe")) return value;
  return `spiffe://${folded}${path}`;
}
