/**
 * Wildcard patterns: `*` matches any run of characters (none, or newlines too), `?` exactly one
 * character (one code point: an emoji is one character), everything else itself.
 *
 * Why not RegExp: `*:*:*:*.txt` becomes `^.*:.*:.*:.*\.txt$`, and V8's backtracking engine
 * takes time polynomial in the value's length with the number of stars as the exponent.
 * Measured here against a run of colons and an `x`: 100 characters 33 ms, 200 0.5 s, 400 8 s.
 * Values are chosen by callers (tool names, arguments, delegation scopes), so a policy or a
 * delegation could be turned into a denial of service. Both matchers below place each piece of
 * a pattern once and never revisit an earlier star: O(pattern × value) at worst.
 */

/** A pattern or value as indexable characters: the string itself unless it holds surrogates. */
type Chars = string | readonly string[];

const SURROGATE = /[\uD800-\uDFFF]/;

/** `text` as characters: code units when that is the same thing, code points otherwise. */
function chars(text: string): Chars {
  return SURROGATE.test(text) ? Array.from(text) : text;
}

export function hasWildcard(pattern: string): boolean {
  return pattern.includes("*") || pattern.includes("?");
}

/**
 * The greedy match. With `covering`, `value` is itself a pattern and a `?` of `pattern` stands
 * only for one character that is not a `*` of `value` (see `globCovers`).
 */
function run(p: Chars, v: Chars, covering: boolean): boolean {
  const pn = p.length;
  const vn = v.length;
  let pi = 0;
  let vi = 0;
  let star = -1; // the last `*` seen in p
  let mark = 0; // where in v that star's run currently ends
  while (vi < vn) {
    if (pi < pn) {
      const pc = p[pi];
      if (pc === "*") {
        star = pi++;
        mark = vi;
        continue;
      }
      const vc = v[vi];
      if (pc === "?" ? !covering || vc !== "*" : pc === vc) {
        pi++;
        vi++;
        continue;
      }
    }
    // Mismatch: let the last star take one more character, and retry from there. Earlier stars
    // never need to grow, because the last one can absorb anything they would have.
    if (star === -1) return false;
    pi = star + 1;
    vi = ++mark;
  }
  while (pi < pn && p[pi] === "*") pi++;
  return pi === pn;
}

/** A run of pattern characters between stars: literal, or with `?`s. */
interface Segment {
  readonly text: string;
  readonly anyChar: boolean;
  /** The last character's code (-1 if empty or a `?`): a cheap first test before comparing. */
  readonly tail: number;
}

/**
 * One pattern, compiled for repeated matching. The pattern is split at its stars into
 * segments; the first is anchored at the value's start and the last at its end, and each one
 * between is placed at its leftmost occurrence after the previous (leftmost is never worse, as
 * a star can absorb what follows it). Literal segments are compared and searched with the
 * engine's own string operations, which keeps a decision over 50 statements at about the cost
 * the RegExp version had (policy_decision_p50_us). Those work on UTF-16 code units, which are
 * characters here only when the pattern holds no surrogates and, if it has a `?`, neither does
 * the value; otherwise the general matcher above decides, on code points.
 */
export class Glob {
  readonly pattern: string;
  private readonly segments: readonly Segment[];
  private readonly starred: boolean;
  private readonly minLength: number;
  private readonly anyChar: boolean;
  private readonly units: boolean;
  private general: Chars | undefined;

  constructor(pattern: string) {
    this.pattern = pattern;
    const parts = pattern.split("*");
    this.starred = parts.length > 1;
    this.segments = parts.map((text) => ({
      text,
      anyChar: text.includes("?"),
      tail: text.length === 0 || text.endsWith("?") ? -1 : text.charCodeAt(text.length - 1),
    }));
    this.minLength = parts.reduce((n, t) => n + t.length, 0);
    this.anyChar = pattern.includes("?");
    this.units = !SURROGATE.test(pattern);
  }

  test(value: string): boolean {
    if (!this.units || (this.anyChar && SURROGATE.test(value))) {
      this.general ??= chars(this.pattern);
      return run(this.general, chars(value), false);
    }
    const segs = this.segments;
    const first = segs[0] as Segment;
    if (!this.starred) return value.length === first.text.length && at(first, value, 0);
    if (value.length < this.minLength || !at(first, value, 0)) return false;
    const last = segs[segs.length - 1] as Segment;
    const end = value.length - last.text.length;
    if (!at(last, value, end)) return false;
    let pos = first.text.length;
    for (let i = 1; i < segs.length - 1; i++) {
      const seg = segs[i] as Segment;
      const found = find(seg, value, pos, end);
      if (found === -1) return false;
      pos = found + seg.text.length;
    }
    return true;
  }
}

/**
 * Does `seg` occur in `value` at code unit `i`? Its last character first (most mismatches end
 * there), then a literal as a slice: measured here on Node 20, the slice compare is ~40 ns
 * against ~200 ns for `startsWith(text, i)`, and a `charCodeAt` loop over the split-off segment
 * was slower still.
 */
function at(seg: Segment, value: string, i: number): boolean {
  const t = seg.text;
  if (seg.tail !== -1 && value.charCodeAt(i + t.length - 1) !== seg.tail) return false;
  if (!seg.anyChar) return value.slice(i, i + t.length) === t;
  for (let k = 0; k < t.length; k++) {
    const c = t.charCodeAt(k);
    if (c !== 0x3f /* ? */ && c !== value.charCodeAt(i + k)) return false;
  }
  return true;
}

/** The leftmost occurrence of `seg` in `value` starting at or after `from` and ending by `end`. */
function find(seg: Segment, value: string, from: number, end: number): number {
  const last = end - seg.text.length;
  if (!seg.anyChar) {
    const i = value.indexOf(seg.text, from);
    return i !== -1 && i <= last ? i : -1;
  }
  for (let i = from; i <= last; i++) if (at(seg, value, i)) return i;
  return -1;
}

/** True if `pattern` matches the whole of `value`. */
export function globMatch(pattern: string | Glob, value: string): boolean {
  return (typeof pattern === "string" ? new Glob(pattern) : pattern).test(value);
}

/**
 * True if every string the pattern `narrow` matches is also matched by the pattern `wide`.
 * Sound, though not complete, for these globs: `narrow` is read as text in which a `*` can only
 * be covered by a `*` of `wide`, and a `?` by a `?` or a `*`.
 */
export function globCovers(wide: string, narrow: string): boolean {
  return run(chars(wide), chars(narrow), true);
}
