/**
 * SPIFFE IDs and trust domains, parsed strictly per the SPIFFE-ID standard.
 *
 * One deliberate difference from go-spiffe: the standard says the scheme and the trust domain
 * are case-insensitive, so (like java-, py- and rust-spiffe) we accept upper case there and
 * normalise it to lower case. The path stays case-sensitive. `aztp://` is accepted as an
 * alias of `spiffe://`: an AZTP ID names the same workload as its SPIFFE ID.
 */
import { AztpError, ErrorCodes } from "../errors.js";

export const SPIFFE_SCHEME = "spiffe";
export const AZTP_SCHEME = "aztp";

const PREFIXES = [`${SPIFFE_SCHEME}://`, `${AZTP_SCHEME}://`];

function fail(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], rule: string, input: string): never {
  throw new AztpError(code, `invalid SPIFFE ID ${printable(input)}: ${rule}`);
}

/** Quote the input for an error message without letting control characters through. */
function printable(input: string): string {
  const clipped = input.length > 120 ? `${input.slice(0, 120)}…` : input;
  return JSON.stringify(clipped);
}

function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f // . - _
  );
}

function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

/** Normalises and validates a trust domain name; throws naming the rule that failed. */
function checkTrustDomain(raw: string, input: string): string {
  if (raw.length === 0) fail(ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING, "trust domain is missing", input);
  // Only ASCII A-Z are folded: anything else outside [a-z0-9._-] stays invalid.
  const td = raw.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  for (let i = 0; i < td.length; i++) {
    if (!isTrustDomainChar(td.charCodeAt(i))) {
      fail(
        ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID,
        "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
        input,
      );
    }
  }
  return td;
}

/** Validates a path ("" or "/seg/seg"), in go-spiffe's order so the first rule broken is named. */
function checkPath(path: string, input: string): void {
  if (path === "") return;
  if (path.charCodeAt(0) !== 0x2f) {
    fail(ErrorCodes.SPIFFEID_PATH_LEADING_SLASH_MISSING, "path must have a leading slash", input);
  }
  let start = 0;
  let end = 0;
  for (; end < path.length; end++) {
    const c = path.charCodeAt(end);
    if (c === 0x2f) {
      const seg = path.slice(start, end);
      if (seg === "/") fail(ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY, "path cannot contain empty segments", input);
      if (seg === "/." || seg === "/..")
        fail(ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED, "path cannot contain dot segments", input);
      start = end;
      continue;
    }
    if (!isPathChar(c)) {
      fail(
        ErrorCodes.SPIFFEID_PATH_CHAR_INVALID,
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
        input,
      );
    }
  }
  const last = path.slice(start, end);
  if (last === "/")
    fail(ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED, "path cannot have a trailing slash", input);
  if (last === "/." || last === "/..")
    fail(ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED, "path cannot contain dot segments", input);
}

const PARSED_MAX = 4096;
const parsed = new Map<string, SpiffeId>();

export class TrustDomain {
  /** The normalised (lower-case) name, e.g. `example.org`. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  /** Accepts a bare name (`example.org`) or a SPIFFE/AZTP ID, whose trust domain is taken. */
  static parse(input: string): TrustDomain {
    if (typeof input !== "string" || input.length === 0) {
      fail(ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING, "trust domain is missing", String(input ?? ""));
    }
    if (input.includes(":/")) return SpiffeId.parse(input).trustDomainObject();
    return new TrustDomain(checkTrustDomain(input, input));
  }

  /** @internal already validated. */
  static unchecked(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The trust domain's own ID, `spiffe://<name>`, the one SPIFFE uses for its CA. */
  id(): SpiffeId {
    return SpiffeId.unchecked(this.name, "");
  }

  equals(other: TrustDomain | string): boolean {
    return this.name === (typeof other === "string" ? other : other.name);
  }

  toString(): string {
    return this.name;
  }
}

export class SpiffeId {
  /** Normalised trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  /** The path, `""` or `/seg(/seg)*`, case preserved. */
  readonly path: string;

  private constructor(trustDomain: string, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    Object.freeze(this);
  }

  /**
   * Parses `spiffe://td/path` or `aztp://td/path`. Throws an AztpError whose code names the
   * rule broken (ERR_SPIFFEID_*). The result's toString() is the normalised spiffe:// form.
   */
  static parse(input: string): SpiffeId {
    // IDs recur on every call (issuer, audience, caller): parsed ones are kept, immutable and
    // shared, in a small bounded map. Only valid IDs are kept; an invalid one throws each time.
    const cached = typeof input === "string" ? parsed.get(input) : undefined;
    if (cached !== undefined) return cached;
    const id = SpiffeId.parseUncached(input);
    if (parsed.size >= PARSED_MAX) parsed.clear();
    parsed.set(input, id);
    return id;
  }

  private static parseUncached(input: string): SpiffeId {
    if (typeof input !== "string") {
      throw new AztpError(ErrorCodes.SPIFFEID_EMPTY, "invalid SPIFFE ID: expected a string");
    }
    if (input.length === 0) fail(ErrorCodes.SPIFFEID_EMPTY, "cannot be empty", input);
    const head = input.slice(0, 9).toLowerCase();
    const prefix = PREFIXES.find((p) => head.startsWith(p));
    if (prefix === undefined) fail(ErrorCodes.SPIFFEID_SCHEME_INVALID, "scheme is missing or invalid", input);
    const rest = input.slice(prefix.length);
    const slash = rest.indexOf("/");
    const rawTd = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? "" : rest.slice(slash);
    const td = checkTrustDomain(rawTd, input);
    checkPath(path, input);
    return new SpiffeId(td, path);
  }

  /** Builds an ID from a trust domain and path segments, validating each. */
  static fromSegments(trustDomain: string | TrustDomain, ...segments: string[]): SpiffeId {
    const td = typeof trustDomain === "string" ? TrustDomain.parse(trustDomain).name : trustDomain.name;
    const path = segments.map((s) => `/${String(s)}`).join("");
    const input = `spiffe://${td}${path}`;
    // Each argument is one segment: a "/" inside it (or a non-string) must not silently make
    // more segments, and "" is an empty segment (go-spiffe's ValidatePathSegment rules).
    for (const s of segments) {
      if (typeof s !== "string" || s.includes("/")) {
        fail(
          ErrorCodes.SPIFFEID_PATH_CHAR_INVALID,
          "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
          input,
        );
      }
      if (s === "") fail(ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY, "path cannot contain empty segments", input);
    }
    checkPath(path, input);
    return new SpiffeId(td, path);
  }

  /** @internal already validated parts. */
  static unchecked(trustDomain: string, path: string): SpiffeId {
    return new SpiffeId(trustDomain, path);
  }

  /** True if `input` parses; never throws. */
  static isValid(input: string): boolean {
    try {
      SpiffeId.parse(input);
      return true;
    } catch {
      return false;
    }
  }

  trustDomainObject(): TrustDomain {
    return TrustDomain.unchecked(this.trustDomain);
  }

  /** True for the trust domain's own ID (no path), which no workload SVID may carry. */
  get isTrustDomainId(): boolean {
    return this.path === "";
  }

  memberOf(td: string | TrustDomain): boolean {
    return this.trustDomain === (typeof td === "string" ? td : td.name);
  }

  equals(other: SpiffeId | string): boolean {
    if (typeof other === "string") {
      try {
        other = SpiffeId.parse(other);
      } catch {
        return false;
      }
    }
    return this.trustDomain === other.trustDomain && this.path === other.path;
  }

  /** `spiffe://td/path` */
  toString(): string {
    return `spiffe://${this.trustDomain}${this.path}`;
  }

  /** `aztp://td/path`: the same workload under the AZTP scheme. */
  get aztpId(): string {
    return `aztp://${this.trustDomain}${this.path}`;
  }

  toJSON(): string {
    return this.toString();
  }
}
