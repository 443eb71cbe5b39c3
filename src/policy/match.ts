/**
 * Wildcard patterns (`*`, `?`; see glob.ts) and the one normal form of an ID, shared by
 * Principal, Action, Resource and the StringLike condition operators.
 *
 * Patterns are compiled once into a `Matcher` when a policy is compiled: literal values go into
 * a Set (one hash lookup), wildcard patterns into a list tried in turn by the glob matcher. No
 * pattern ever becomes a RegExp (backtracking on caller-chosen values; see glob.ts), so `.` or
 * `(` in a policy is never syntax.
 */
import { Glob, hasWildcard } from "./glob.js";

export { hasWildcard };

/** A compiled set of patterns: `test(value)` is true if any pattern matches the whole value. */
export class Matcher {
  private readonly any: boolean;
  private readonly exact: ReadonlySet<string>;
  private readonly globs: readonly Glob[];

  /** Values must already be in the form `test` will be given (see `normalizeId`, lower case). */
  constructor(patterns: readonly string[], wildcards = true) {
    const exact = new Set<string>();
    const globs: Glob[] = [];
    let any = false;
    for (const p of patterns) {
      if (!wildcards || !hasWildcard(p)) exact.add(p);
      else if (/^\*+$/.test(p)) any = true;
      else globs.push(new Glob(p));
    }
    this.any = any;
    this.exact = exact;
    this.globs = any ? [] : globs;
  }

  test(value: string): boolean {
    if (this.any || this.exact.has(value)) return true;
    for (const g of this.globs) if (g.test(value)) return true;
    return false;
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
  if (
    c === 0x61 /* a */ &&
    value.length > 7 &&
    value.startsWith("://", 4) &&
    value.slice(0, 4).toLowerCase() === "aztp"
  ) {
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
