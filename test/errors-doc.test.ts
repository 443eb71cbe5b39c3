/**
 * docs/errors.md against src/errors.ts: the table has one row for every value of ErrorCodes
 * and no row for a code that does not exist, so the doc cannot fall behind the code.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import { LEGACY_CODES } from "../src/audit/legacy-codes.js";
import { ROOT } from "./helpers/authority-util.js";

/** The rows of the doc's one table, each split into its trimmed cells. */
function tableRows(): string[][] {
  const lines = readFileSync(join(ROOT, "docs", "errors.md"), "utf8").split("\n");
  const start = lines.findIndex((l) => l.startsWith("| Code |"));
  assert.ok(start >= 0, "docs/errors.md has no table headed `| Code |`");
  assert.match(lines[start + 1] ?? "", /^\|( --- \|){3}$/, "the table's header is not followed by its separator");
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    assert.ok(line.endsWith("|"), `a table row does not end with |: ${line}`);
    rows.push(
      line
        .slice(1, -1)
        .split("|")
        .map((c) => c.trim()),
    );
  }
  return rows;
}

describe("docs/errors.md", () => {
  const rows = tableRows();
  const codes: string[] = [];
  for (const cells of rows) {
    assert.equal(cells.length, 3, `a row has ${cells.length} cells, not 3: ${cells.join(" | ")}`);
    const [first = "", meaning = "", todo = ""] = cells;
    if (/^\*\*[^*]+\*\*$/.test(first)) {
      assert.deepEqual([meaning, todo], ["", ""], `the group row ${first} has text in its other cells`);
      continue;
    }
    const code = /^`(ERR_[A-Z0-9_]+)`$/.exec(first)?.[1];
    assert.ok(code !== undefined, `a row's first cell is neither a \`ERR_...\` code nor a **group**: ${first}`);
    assert.ok(meaning.length > 0 && todo.length > 0, `${code}: the meaning or the what-to-do cell is empty`);
    codes.push(code);
  }
  const known = [...new Set(Object.values(ErrorCodes) as string[])];

  it("has a row for every value of ErrorCodes, exactly once", () => {
    for (const code of known) {
      const n = codes.filter((c) => c === code).length;
      assert.equal(n, 1, `${code} is in the table ${n} times, not once`);
    }
  });

  it("lists every renamed code in its Renamed codes table", () => {
    const text = readFileSync(join(ROOT, "docs", "errors.md"), "utf8");
    const rows = [...text.matchAll(/^\| `(ERR_[A-Z0-9_]+)` \| `(ERR_[A-Z0-9_]+)` \|$/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(rows.sort(), Object.entries(LEGACY_CODES).sort());
  });

  it("lists no code that is not a value of ErrorCodes", () => {
    const unknown = codes.filter((c) => !known.includes(c));
    assert.deepEqual(unknown, [], `not in ErrorCodes: ${unknown.join(", ")}`);
    assert.equal(codes.length, known.length);
  });
});
