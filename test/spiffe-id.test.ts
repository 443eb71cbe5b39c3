/**
 * SPIFFE ID parsing against the conformance vectors of go-spiffe, java-spiffe, py-spiffe and
 * rust-spiffe (../shared/conformance/spiffe, read in place, never copied), plus the project's
 * own rules: error codes, the aztp:// alias, fromSegments and TrustDomain.parse.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import { SpiffeId, TrustDomain } from "../src/spiffe/spiffeid.js";

function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../../shared/conformance/spiffe/${name}`, import.meta.url), "utf8")) as T;
}

const cases = vectors<{ valid: string[]; invalid: string[] }>("spiffeid_cases.json");
const goErrors = vectors<{ invalid_with_go_spiffe_error: Array<[string, string]> }>("spiffeid_cases_go_errors.json");
const others = vectors<{ valid: string[]; invalid: string[]; case_insensitive_divergent: Record<string, string> }>(
  "spiffeid_cases_other_impls.json",
);

/** Asserts `fn` throws an AztpError (not a TypeError or anything else) and returns it. */
function thrown(fn: () => unknown): AztpError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AztpError, `expected an AztpError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected an AztpError, nothing was thrown");
}

function rejects(input: unknown, code: ErrorCode): AztpError {
  const e = thrown(() => SpiffeId.parse(input as string));
  assert.equal(e.code, code, `${JSON.stringify(input)}: ${e.message}`);
  assert.equal(SpiffeId.isValid(input as string), false);
  return e;
}

/** One test per row: `parse(input)` must throw an AztpError with the row's code. */
function codeTable(table: Array<[string, ErrorCode]>, parse: (input: string) => unknown): void {
  for (const [input, code] of table) {
    it(`${JSON.stringify(input)} -> ${code}`, () => {
      const e = thrown(() => parse(input));
      assert.equal(e.code, code, e.message);
    });
  }
}

/** The go-spiffe strings this project accepts: upper case in the trust domain is normalised. */
const UPPER_TD = /^spiffe:\/\/trustdomain[A-Z]\/path$/;

describe("SpiffeId: go-spiffe vectors (TestFromString, TestFromURI, TestTrustDomainFromString)", () => {
  it("has the documented number of vectors", () => {
    assert.equal(cases.valid.length, 109);
    assert.equal(cases.invalid.length, 430);
    assert.equal(goErrors.invalid_with_go_spiffe_error.length, 430);
    assert.deepEqual(new Set(goErrors.invalid_with_go_spiffe_error.map(([s]) => s)), new Set(cases.invalid));
  });

  it("parses all 109 valid IDs and round-trips them", () => {
    for (const input of cases.valid) {
      const id = SpiffeId.parse(input);
      assert.equal(id.toString(), input);
      assert.equal(SpiffeId.isValid(input), true);
      assert.equal(`spiffe://${id.trustDomain}${id.path}`, input);
      assert.ok(id.equals(input));
    }
  });

  it("accepts exactly the 26 spiffe://trustdomain<A-Z>/path strings, lower-casing the trust domain", () => {
    const accepted = cases.invalid.filter((s) => SpiffeId.isValid(s));
    assert.equal(accepted.length, 26);
    for (const input of accepted) {
      assert.match(input, UPPER_TD);
      const id = SpiffeId.parse(input);
      assert.equal(id.toString(), input.toLowerCase());
      assert.equal(id.trustDomain, `trustdomain${input.charAt(20).toLowerCase()}`);
      assert.equal(id.path, "/path");
    }
  });

  it("rejects the other 404 with go-spiffe's message (except the Spiffe:// divergence)", () => {
    let checked = 0;
    for (const [input, goMessage] of goErrors.invalid_with_go_spiffe_error) {
      if (UPPER_TD.test(input) || input === "Spiffe://") continue;
      const e = thrown(() => SpiffeId.parse(input));
      assert.ok(
        e.message.endsWith(`: ${goMessage}`),
        `${JSON.stringify(input)}: got ${JSON.stringify(e.message)}, want ...${goMessage}`,
      );
      assert.equal(e.code.startsWith("ERR_SPIFFEID_"), true);
      // Messages quote the input escaped: no raw control characters reach logs.
      assert.doesNotMatch(e.message, /[\u0000-\u001f]/);
      checked++;
    }
    assert.equal(checked, 403);
  });

  it("diverges on Spiffe:// only as documented: the scheme case is normalised, so the trust domain is missing", () => {
    const go = goErrors.invalid_with_go_spiffe_error.find(([s]) => s === "Spiffe://");
    assert.deepEqual(go, ["Spiffe://", "scheme is missing or invalid"]);
    const e = rejects("Spiffe://", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING);
    assert.ok(e.message.endsWith(": trust domain is missing"));
  });
});

describe("SpiffeId: java-spiffe, py-spiffe and rust-spiffe vectors", () => {
  it("parses the 28 valid IDs (including the 2048-byte one) and round-trips them", () => {
    assert.equal(others.valid.length, 28);
    assert.ok(others.valid.some((s) => s.length === 2048));
    for (const input of others.valid) assert.equal(SpiffeId.parse(input).toString(), input);
  });

  it("rejects the 54 invalid strings with an AztpError", () => {
    assert.equal(others.invalid.length, 54);
    for (const input of others.invalid) {
      const e = thrown(() => SpiffeId.parse(input));
      assert.match(e.code, /^ERR_SPIFFEID_/, input);
    }
  });

  it("normalises the 34 case_insensitive_divergent inputs to their mapped form", () => {
    const entries = Object.entries(others.case_insensitive_divergent);
    assert.equal(entries.length, 34);
    for (const [input, canonical] of entries) {
      const id = SpiffeId.parse(input);
      assert.equal(id.toString(), canonical, input);
      assert.ok(id.equals(canonical));
      assert.ok(SpiffeId.parse(canonical).equals(input));
    }
  });
});

describe("SpiffeId: error codes", () => {
  const table: Array<[string, ErrorCode]> = [
    ["", ErrorCodes.SPIFFEID_EMPTY],
    ["example.org/path", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["http://example.org/path", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["spiffe:/example.org", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["spiffe:example.org", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["aztp:/example.org", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["xspiffe://example.org", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["spiffe://", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["spiffe:///path", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["aztp://", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["spiffe://example.org:8080/path", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["spiffe://user@example.org/path", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["spiffe://exa mple.org", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["spiffe://ex\u00e4mple.org", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["spiffe://example.org?query", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["spiffe://example.org/pa th", ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["spiffe://example.org/path?x=1", ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["spiffe://example.org/path#frag", ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["spiffe://example.org/%61pi", ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["spiffe://example.org/caf\u00e9", ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["spiffe://example.org//path", ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY],
    ["spiffe://example.org/a//b", ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY],
    ["spiffe://example.org/.", ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["spiffe://example.org/..", ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["spiffe://example.org/a/./b", ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["spiffe://example.org/a/../b", ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["spiffe://example.org/", ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED],
    ["spiffe://example.org/a/", ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED],
    ["aztp://example.org/a/", ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED],
  ];
  codeTable(table, (input) => SpiffeId.parse(input));

  it("isValid is false for every row of the table", () => {
    for (const [input] of table) assert.equal(SpiffeId.isValid(input), false, input);
  });

  it("keeps dot-prefixed names that are not dot segments", () => {
    for (const input of [
      "spiffe://example.org/.a",
      "spiffe://example.org/..a",
      "spiffe://example.org/a./...",
      "spiffe://example.org/a.b",
    ]) {
      assert.equal(SpiffeId.parse(input).toString(), input);
    }
  });

  it("keeps the path case-sensitive", () => {
    const id = SpiffeId.parse("SPIFFE://Example.ORG/Agent/Alpha");
    assert.equal(id.toString(), "spiffe://example.org/Agent/Alpha");
    assert.equal(id.path, "/Agent/Alpha");
    assert.equal(id.equals("spiffe://example.org/agent/alpha"), false);
  });

  const nonStrings: unknown[] = [undefined, null, 42, {}, ["spiffe://example.org"], new URL("spiffe://example.org/a")];
  for (const input of nonStrings) {
    it(`non-string ${Object.prototype.toString.call(input)} -> AztpError, not a TypeError`, () => {
      rejects(input, ErrorCodes.SPIFFEID_EMPTY);
      const e = thrown(() => TrustDomain.parse(input as string));
      assert.match(e.code, /^ERR_SPIFFEID_/);
    });
  }

  it("errors serialise to { code, message } and clip long inputs", () => {
    const e = rejects(`spiffe://example.org/${"a".repeat(500)}/`, ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED);
    assert.deepEqual(Object.keys(e.toJSON()).sort(), ["code", "message"]);
    assert.ok(e.message.length < 250, e.message);
  });
});

describe("SpiffeId: aztp:// alias", () => {
  const table: Array<[string, string]> = [
    ["aztp://example.org/agent/alpha", "spiffe://example.org/agent/alpha"],
    ["AZTP://Example.Org/agent/Alpha", "spiffe://example.org/agent/Alpha"],
    ["aztp://example.org", "spiffe://example.org"],
  ];
  for (const [input, spiffe] of table) {
    it(`${input} names ${spiffe}`, () => {
      const id = SpiffeId.parse(input);
      assert.equal(id.toString(), spiffe);
      assert.equal(id.toJSON(), spiffe);
      assert.equal(id.aztpId, spiffe.replace(/^spiffe:/, "aztp:"));
      assert.ok(id.equals(spiffe));
      assert.ok(id.equals(SpiffeId.parse(spiffe)));
      assert.ok(SpiffeId.parse(spiffe).equals(input));
      assert.ok(SpiffeId.parse(id.aztpId).equals(id));
    });
  }

  it("equals is false for other IDs and for unparseable strings", () => {
    const id = SpiffeId.parse("aztp://example.org/a");
    assert.equal(id.equals("aztp://example.org/b"), false);
    assert.equal(id.equals("spiffe://example.com/a"), false);
    assert.equal(id.equals("not an id"), false);
  });

  it("exposes trust domain membership and the trust domain ID", () => {
    const id = SpiffeId.parse("aztp://Example.org/a");
    assert.equal(id.memberOf("example.org"), true);
    assert.equal(id.memberOf(TrustDomain.parse("example.org")), true);
    assert.equal(id.memberOf("example.com"), false);
    assert.equal(id.isTrustDomainId, false);
    assert.equal(SpiffeId.parse("aztp://example.org").isTrustDomainId, true);
    assert.equal(id.trustDomainObject().id().toString(), "spiffe://example.org");
  });
});

describe("SpiffeId.fromSegments", () => {
  const ok: Array<[string | TrustDomain, string[], string]> = [
    ["example.org", [], "spiffe://example.org"],
    ["example.org", ["agent"], "spiffe://example.org/agent"],
    ["Example.ORG", ["Agent", "v1.2", "x_y-z"], "spiffe://example.org/Agent/v1.2/x_y-z"],
    [TrustDomain.parse("example.org"), ["a", "..b"], "spiffe://example.org/a/..b"],
    ["spiffe://example.org/ignored", ["a"], "spiffe://example.org/a"],
  ];
  for (const [td, segments, want] of ok) {
    it(`${String(td)} + ${JSON.stringify(segments)} -> ${want}`, () => {
      assert.equal(SpiffeId.fromSegments(td, ...segments).toString(), want);
    });
  }

  const bad: Array<[string, unknown[], ErrorCode]> = [
    ["", ["a"], ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["exa$mple.org", ["a"], ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["example.org", [""], ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY],
    ["example.org", ["a", ""], ErrorCodes.SPIFFEID_PATH_SEGMENT_EMPTY],
    ["example.org", ["."], ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["example.org", ["a", ".."], ErrorCodes.SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED],
    ["example.org", ["a b"], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["example.org", ["a%2Fb"], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    // One argument is one segment: a slash must not split it into two.
    ["example.org", ["a/b"], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["example.org", ["/a"], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["example.org", ["a/"], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
    ["example.org", [7], ErrorCodes.SPIFFEID_PATH_CHAR_INVALID],
  ];
  for (const [td, segments, code] of bad) {
    it(`${JSON.stringify(td)} + ${JSON.stringify(segments)} -> ${code}`, () => {
      const e = thrown(() => SpiffeId.fromSegments(td, ...(segments as string[])));
      assert.equal(e.code, code, e.message);
    });
  }
});

describe("TrustDomain.parse", () => {
  const ok: Array<[string, string]> = [
    ["example.org", "example.org"],
    ["Example.ORG", "example.org"],
    ["a_b-c.1", "a_b-c.1"],
    ["spiffe://example.org", "example.org"],
    ["spiffe://Example.org/path/Upper", "example.org"],
    ["aztp://example.org/agent", "example.org"],
  ];
  for (const [input, name] of ok) {
    it(`${input} -> ${name}`, () => {
      const td = TrustDomain.parse(input);
      assert.equal(td.name, name);
      assert.equal(td.toString(), name);
      assert.ok(td.equals(name));
      assert.ok(td.equals(TrustDomain.parse(name)));
      assert.equal(td.id().toString(), `spiffe://${name}`);
    });
  }

  const bad: Array<[string, ErrorCode]> = [
    ["", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["spiffe://", ErrorCodes.SPIFFEID_TRUST_DOMAIN_MISSING],
    ["example.org/path", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["exa mple.org", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["example.org:443", ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID],
    ["http://example.org", ErrorCodes.SPIFFEID_SCHEME_INVALID],
    ["spiffe://example.org/", ErrorCodes.SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED],
  ];
  codeTable(bad, (input) => TrustDomain.parse(input));

  it("agrees with SpiffeId on every go-spiffe trust domain vector", () => {
    for (const input of cases.valid) {
      assert.equal(TrustDomain.parse(input).name, SpiffeId.parse(input).trustDomain);
    }
  });
});
