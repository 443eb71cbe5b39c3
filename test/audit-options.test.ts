/**
 * The options of an audit log are one type: the file log (`AuditLog`), the shared chain on
 * PostgreSQL (`PgAuditLog`) and a wrapper's default home log take the same members, declared
 * once in audit/, so a member's meaning and documentation cannot drift between copies.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "..", "src");

/** The members every audit log's options share (`signer` is left out: many options have one). */
const SHARED = ["includeArgs", "redactFields", "checkpointEvery", "maxBatchEntries", "recoverIntervalMs", "durability"];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** Where each SHARED member is declared, in an interface or a type literal under src/: "file: Owner.member". */
function declarations(): Map<string, string[]> {
  const found = new Map<string, string[]>(SHARED.map((name) => [name, []]));
  for (const file of sourceFiles(SRC)) {
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      if (ts.isPropertySignature(node) && ts.isIdentifier(node.name) && found.has(node.name.text)) {
        const owner = ts.isInterfaceDeclaration(node.parent) ? node.parent.name.text : "a type literal";
        found.get(node.name.text)?.push(`${relative(SRC, file)}: ${owner}.${node.name.text}`);
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return found;
}

describe("audit log options", () => {
  it("no room but audit/ declares an audit log option: the PostgreSQL log and the home log reuse audit's types", () => {
    const outside = [...declarations().values()].flat().filter((where) => !where.startsWith("audit/"));
    assert.deepEqual(outside, []);
  });
});
