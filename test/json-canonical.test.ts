/**
 * RFC 8785 (JCS) canonical JSON: one serialiser for audit hashes, invocation digests and policy
 * names, checked against the `canonicalize` package (the reference implementation by the RFC's
 * co-author) on generated JSON: numbers' edge cases, all of Unicode, keys that sort oddly or
 * mean something to JavaScript, nesting.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { ErrorCodes, isAztpError } from "../src/errors.js";
import { canonicalDigest, canonicalJson as signedJson, MAX_JSON_DEPTH } from "../src/invocation/canonical.js";
import { canonicalJson, canonicalObject, MAX_CANONICAL_DEPTH } from "../src/json/canonical.js";

/** What canonicalize gives, or "throws". */
function reference(value: unknown): string {
  try {
    const text = canonicalize(value);
    return text === undefined ? "throws" : text;
  } catch {
    return "throws";
  }
}

/** What json/canonical.ts gives, or "throws" (and then always ERR_JSON_UNREPRESENTABLE). */
function ours(value: unknown): string {
  try {
    return canonicalJson(value);
  } catch (e) {
    assert.ok(isAztpError(e, ErrorCodes.JSON_UNREPRESENTABLE), `not ERR_JSON_UNREPRESENTABLE: ${String(e)}`);
    return "throws";
  }
}

/** Numbers whose shortest round-trip spelling is easy to get wrong. */
const edgeNumber = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    0.1,
    0.1 + 0.2,
    1e21,
    1e20,
    123456789012345680000,
    1e-6,
    1e-7,
    5e-324,
    -5e-324,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.MIN_VALUE,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 2,
    2 ** 53,
    4.35,
    0.000001,
    333333333.3333333,
    1e23,
    9007199254740993,
  ),
);

/** Keys that sort by UTF-16 code unit (not code point), look like numbers, or name JavaScript internals. */
const oddKey = fc.oneof(
  fc.string({ unit: "grapheme", maxLength: 6 }),
  fc.string({ unit: "binary", maxLength: 4 }),
  fc.constantFrom(
    "",
    "__proto__",
    "constructor",
    "prototype",
    "toString",
    "toJSON",
    "hasOwnProperty",
    "10",
    "9",
    "1e3",
    "-0",
    "\u0000",
    "\u007f",
    "\u00e9",
    "e\u0301",
    "\ufb33",
    "\uffff",
    "\ud83d\ude00",
    "\u20ac",
    "a\u2028b",
    '"',
    "\\",
  ),
);

const text = fc.oneof(
  fc.string({ unit: "grapheme" }),
  fc.string({ unit: "binary" }),
  fc.constantFrom("\u2028\u2029", "\u0000\u001f", "\ud800", "a\udc00", "\ud83d\ude00", "\\ud800", "</script>"),
);

/** Objects from [key, value] pairs, with `__proto__` as an own member (as JSON.parse makes it). */
const jsonObject: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    edgeNumber,
    text,
    fc.array(tie("value"), { maxLength: 5 }),
    fc.array(fc.tuple(oddKey, tie("value")), { maxLength: 6 }).map((pairs) => {
      const o: Record<string, unknown> = {};
      for (const [k, v] of pairs)
        Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
      return o;
    }),
  ),
})).value;

/** `value` nested `levels` deep in arrays and objects, alternately. */
function nested(levels: number, value: unknown): unknown {
  let v = value;
  for (let i = 0; i < levels; i++) v = i % 2 === 0 ? [v] : { k: v };
  return v;
}

describe("RFC 8785 canonical JSON", () => {
  it("equals the canonicalize package on generated JSON, and refuses exactly what it refuses", () => {
    fc.assert(
      fc.property(jsonObject, (value) => {
        assert.equal(ours(value), reference(value), JSON.stringify(value));
      }),
      { numRuns: 3000 },
    );
  });

  it("equals the canonicalize package on JSON text as parsed, a __proto__ member included", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.boolean(), (value, proto) => {
        let text = JSON.stringify(value);
        if (proto && text.startsWith("{")) text = `{"__proto__":${text},${text.slice(1)}`.replace(",}", "}");
        const parsed: unknown = JSON.parse(text);
        assert.equal(ours(parsed), reference(parsed), text);
      }),
      { numRuns: 1000 },
    );
  });

  it("canonicalObject is the canonical form without one member, on the stored layout and any other", () => {
    fc.assert(
      fc.property(fc.dictionary(oddKey, fc.jsonValue({ maxDepth: 3 })), fc.string(), (obj, omitted) => {
        const without = { ...obj };
        delete without.hash;
        const want = reference(without);
        // The stored layout (canonical members, then the omitted one last) takes the fast path.
        if (want !== "throws") {
          const sorted = JSON.parse(want) as Record<string, unknown>;
          assert.equal(canonicalObject({ ...sorted, hash: omitted }, "hash"), want);
        }
        let got: string;
        try {
          got = canonicalObject({ hash: omitted, ...obj }, "hash");
        } catch {
          got = "throws";
        }
        assert.equal(got, want);
      }),
      { numRuns: 500 },
    );
  });

  it("the hand-picked cases: number spellings, code-unit order, toJSON, undefined, nesting", () => {
    const cases: unknown[] = [
      { b: 1, a: 2, "10": 3, "9": 4 },
      { "\u00e9": 1, e: 2, E: 3, "\ud83d\ude00": 4, "\uffff": 5 },
      [1e21, -0, 0.1, 1e-7, 5e-324, 1e23, 2 ** 53 + 1],
      { s: "\\ud800" },
      { s: "\ud800" },
      { "\udc00": 1 },
      JSON.parse('{"__proto__":{"admin":true},"a":1}'),
      { d: new Date(0) },
      [{ toJSON: () => ({ b: 1, a: 2 }) }],
      Object.defineProperty({ x: 1 }, "toJSON", { value: () => ({ z: 1, y: 2 }), enumerable: false }),
      { toJSON: "not a method" },
      { u: undefined, a: [undefined, 1] },
      Object.assign(Object.create(null) as object, { z: 1, a: 2 }),
      nested(100, "deep"),
      nested(MAX_CANONICAL_DEPTH - 1, "as deep as allowed"),
    ];
    for (const value of cases) assert.equal(ours(value), reference(value), JSON.stringify(value)?.slice(0, 120));
  });

  it("refuses what is not JSON with ERR_JSON_UNREPRESENTABLE, where JSON.stringify would drop or misread it", () => {
    const refused: Array<[string, unknown, RegExp]> = [
      ["NaN", { n: NaN }, /NaN cannot be represented/],
      ["Infinity", [Infinity], /Infinity cannot be represented/],
      ["a lone surrogate", "a\ud800", /lone surrogate/],
      ["a Map (JSON.stringify writes {})", { m: new Map([[1, 2]]) }, /a Map is not plain JSON/],
      [
        "a class instance",
        {
          c: new (class Point {
            x = 1;
          })(),
        },
        /a Point is not plain JSON/,
      ],
      ["a bigint", { b: 10n }, /a bigint is not JSON/],
      ["a function (JSON.stringify drops it)", { f: () => 1 }, /a function is not JSON/],
      ["a symbol", [Symbol("s")], /a symbol is not JSON/],
      [`nesting past ${MAX_CANONICAL_DEPTH}`, nested(MAX_CANONICAL_DEPTH + 1, 1), /nested deeper than 512 levels/],
      ["100,000 levels (never a stack overflow)", nested(100_000, 1), /nested deeper than 512 levels/],
      [
        "a cycle",
        (() => {
          const a: unknown[] = [];
          a.push(a);
          return a;
        })(),
        /nested deeper than 512 levels/,
      ],
    ];
    for (const [name, value, why] of refused) {
      assert.throws(
        () => canonicalJson(value),
        (e: unknown) => isAztpError(e, ErrorCodes.JSON_UNREPRESENTABLE) && why.test((e as Error).message),
        name,
      );
    }
  });

  it("signed values: the protocol's stricter rule, then the same form", () => {
    // Every value the signing rule admits (no __proto__ member, at most 64 levels) is digested
    // over exactly the form above; what it refuses, the audit log still hashes.
    fc.assert(
      fc.property(jsonObject, (value) => {
        let signed: string;
        try {
          signed = signedJson(value);
        } catch (e) {
          assert.ok(
            isAztpError(e, ErrorCodes.JSON_UNREPRESENTABLE) || isAztpError(e, ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED),
            String(e),
          );
          return;
        }
        assert.equal(signed, canonicalJson(value));
      }),
      { numRuns: 1000 },
    );
    const proto: unknown = JSON.parse('{"__proto__":{"admin":true},"a":1}');
    assert.equal(canonicalJson(proto), '{"__proto__":{"admin":true},"a":1}');
    assert.throws(
      () => canonicalDigest(proto),
      (e: unknown) => isAztpError(e, ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED),
    );
    assert.equal(canonicalJson(nested(MAX_JSON_DEPTH + 1, 1)).length > 0, true);
    assert.throws(
      () => canonicalDigest(nested(MAX_JSON_DEPTH + 1, 1)),
      (e: unknown) => isAztpError(e, ErrorCodes.JSON_UNREPRESENTABLE),
    );
    assert.equal(signedJson(nested(MAX_JSON_DEPTH, 1)), canonicalJson(nested(MAX_JSON_DEPTH, 1)));
  });
});
