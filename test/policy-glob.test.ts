/**
 * The wildcard matcher (src/policy/glob.ts): the same answers as the RegExp translation it
 * replaced, on random patterns and values small enough for a RegExp to be quick; a table for
 * pattern coverage (delegations may only narrow); and patterns built to make a backtracking
 * matcher explode, through policy and delegation, in a child process with a deadline.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { globCovers, globMatch } from "../src/policy/glob.js";
import { ROOT, runTs } from "./helpers/authority-util.js";

/** The reference: what a glob means, as a RegExp (fine for short values only). */
function referenceMatch(pattern: string, value: string): boolean {
  let body = "";
  for (const ch of pattern) body += ch === "*" ? ".*" : ch === "?" ? "." : ch.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  return new RegExp(`^${body}$`, "su").test(value);
}

/** The reference for coverage: `narrow` read as text, a wide `?` standing for any one non-star. */
function referenceCovers(wide: string, narrow: string): boolean {
  let body = "";
  for (const ch of wide) body += ch === "*" ? ".*" : ch === "?" ? "[^*]" : ch.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  return new RegExp(`^${body}$`, "su").test(narrow);
}

// Few distinct characters, so that random patterns and values often nearly match; with regex
// syntax, a newline and characters outside the BMP, where code units and code points differ.
const ALPHABET = ["a", "b", ".", "/", "\n", "é", "😀", "(", "\\"];
const text = (extra: string[]) =>
  fc.array(fc.constantFrom(...ALPHABET, ...extra), { maxLength: 12 }).map((a) => a.join(""));

describe("glob matching", () => {
  it("answers as the RegExp translation does (fast-check, 20,000 cases)", () => {
    fc.assert(
      fc.property(text(["*", "?", "*", "?"]), text([]), (pattern, value) => {
        assert.equal(
          globMatch(pattern, value),
          referenceMatch(pattern, value),
          `${JSON.stringify(pattern)} vs ${JSON.stringify(value)}`,
        );
      }),
      { numRuns: 20_000 },
    );
  });

  it("covers as the RegExp translation does, and coverage is sound: a covered pattern's matches are matched (fast-check)", () => {
    fc.assert(
      fc.property(text(["*", "?", "*", "?"]), text(["*", "?"]), text([]), (wide, narrow, value) => {
        const covers = globCovers(wide, narrow);
        assert.equal(covers, referenceCovers(wide, narrow), `${JSON.stringify(wide)} covers ${JSON.stringify(narrow)}`);
        if (covers && globMatch(narrow, value))
          assert.ok(
            globMatch(wide, value),
            `${JSON.stringify(wide)} ⊇ ${JSON.stringify(narrow)} but misses ${JSON.stringify(value)}`,
          );
      }),
      { numRuns: 20_000 },
    );
  });

  const coverage: Array<[string, string, boolean]> = [
    ["search*", "search", true],
    ["search*", "search-*", true],
    ["search*", "sea*", false],
    ["s?arch", "search", true],
    ["s?arch", "s?arch", true],
    ["s*arch", "s?arch", true],
    ["search", "s?arch", false],
    ["s?arch", "s*arch", false],
    ["*", "*", true],
    ["?", "*", false],
    ["a*b", "a*b*b", true],
    ["a*b", "a*", false],
  ];
  for (const [wide, narrow, want] of coverage) {
    it(`${JSON.stringify(wide)} ${want ? "covers" : "does not cover"} ${JSON.stringify(narrow)}`, () => {
      assert.equal(globCovers(wide, narrow), want);
    });
  }

  it("patterns built to make a backtracking matcher explode decide at once, through policy and delegation", async () => {
    // A RegExp-based matcher took 8 s for 400 characters against `*:*:*:*.txt`; these values
    // are 5,000 to 50,000 characters, so a regression does not finish before the deadline.
    const r = await runTs(join(ROOT, "test", "helpers", "glob-worst-case.ts"), [], { timeoutMs: 30_000 });
    assert.equal(r.signal, null, `killed at the 30 s deadline: the matcher backtracks (stderr: ${r.stderr})`);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      resource: "deny",
      resourceMatch: "allow",
      condition: "deny",
      delegatedTool: "ERR_DELEGATION_INVALID",
      delegatedToolMatch: "accepted",
      widening: "ERR_DELEGATION_INVALID",
      narrowing: "accepted",
    });
  });
});
