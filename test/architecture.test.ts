/**
 * The layers of docs/architecture.md, held to the code: every import of every file under
 * `src/` (static `import`/`export ... from`, `import()` and `import("...")` types) is read
 * with the TypeScript parser, and each folder may import only the folders its row of the
 * doc's "Layers" table lists in "depends on" (and must import each one it lists, so the
 * column says what is true, not what once was). The table is parsed from the doc, so the
 * doc and the code cannot drift apart. No import cycle may run between folders, nor between
 * files.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SRC = join(ROOT, "src");
const DOC = join(ROOT, "docs", "architecture.md");

/** `src/` itself: its files are no layer's (see ROOT_FILES). */
const ROOT_FOLDER = ".";
/** The package's main entry point: above every layer, it may import any of them. */
const ENTRY = "index.ts";

/**
 * Imports the table does not allow but the tree has for now, each with why and until when.
 * An entry names one importing file and one imported file, nothing wider.
 */
const ALLOWED_FOR_NOW: ReadonlyArray<{ from: string; to: string; why: string }> = [];

interface Layer {
  readonly folder: string;
  /** The folders it may import. */
  readonly allowed: ReadonlySet<string>;
  /** False for "everything below": a permission, not a list of what it does import. */
  readonly exact: boolean;
}

/** The "Layers" table: one row per folder, its "depends on" column read as folder names. */
function layersOfDoc(): Layer[] {
  const text = readFileSync(DOC, "utf8");
  const section = text.slice(text.indexOf("## Layers"));
  const rows = section
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) => line.split(" | ").map((cell) => cell.replace(/^\|\s*|\s*\|$/g, "").trim()));
  assert.ok(rows.length > 5, "docs/architecture.md has its Layers table");
  const folders = rows.map(([first]) => {
    const m = /^`([a-z][a-z0-9-]*)\/`/.exec(first ?? "");
    assert.ok(m, `a row of the Layers table does not start with a folder: ${first}`);
    return m[1] as string;
  });
  return rows.map((cells, i) => {
    const folder = folders[i] as string;
    const column = cells.at(-1) ?? "";
    const allowed = new Set<string>();
    let exact = true;
    // Parentheses explain ("spiffe (IDs)"); commas separate.
    for (const raw of column.replace(/\([^)]*\)/g, "").split(",")) {
      const item = raw
        .replace(/`/g, "")
        .trim()
        .replace(/\/$/, "")
        .replace(/ only$/, "");
      if (item === "everything below") {
        for (const below of folders.slice(i + 1)) allowed.add(below);
        exact = false;
      } else if (item === "nothing" || item === "errors") {
        // `errors.ts` and the other root files are open to every folder.
      } else if (folders.includes(item)) {
        allowed.add(item);
      } else if (/[@:]/.test(item) || /^[a-z0-9-]+\/[a-z0-9-]+$/.test(item)) {
        // A package (`@peculiar/x509`, `node:crypto`): not a folder of src/.
      } else {
        assert.fail(`the "depends on" of ${folder}/ names ${JSON.stringify(item)}, which is no folder of the table`);
      }
    }
    return { folder, allowed, exact };
  });
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Every module specifier `file` imports or re-exports from, static, dynamic or in a type. */
function specifiersOf(file: string, text = readFileSync(file, "utf8")): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined
    ) {
      const arg = node.arguments[0];
      // A dynamic import of a computed path cannot be checked: refuse it rather than miss it.
      assert.ok(
        ts.isStringLiteralLike(arg),
        `${relative(ROOT, file)}: import() of a computed path (${arg.getText(source)})`,
      );
      found.push(arg.text);
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      found.push(node.argument.literal.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expr = node.moduleReference.expression;
      if (ts.isStringLiteral(expr)) found.push(expr.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** A file's path under src/, with forward slashes. */
const underSrc = (path: string): string => relative(SRC, path).split("\\").join("/");
const folderOf = (file: string): string => (file.includes("/") ? (file.split("/")[0] as string) : ROOT_FOLDER);

/** Every import between files of src/, as paths under src/. */
function importsOfSrc(): Array<{ from: string; to: string }> {
  const edges: Array<{ from: string; to: string }> = [];
  for (const path of sourceFiles(SRC)) {
    for (const spec of specifiersOf(path)) {
      if (!spec.startsWith(".")) continue; // a package
      const target = resolve(dirname(path), spec).replace(/\.js$/, ".ts");
      const to = underSrc(target);
      assert.ok(!to.startsWith(".."), `${underSrc(path)} imports ${spec}, outside src/`);
      edges.push({ from: underSrc(path), to });
    }
  }
  return edges;
}

const isAllowedForNow = (e: { from: string; to: string }): boolean =>
  ALLOWED_FOR_NOW.some((a) => a.from === e.from && a.to === e.to);

/** Each cycle of the graph, as the nodes of one strongly connected component (Tarjan). */
function cyclesOf(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const strong = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.has(v)) cycles.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) strong(v);
  return cycles;
}

describe("the layers of docs/architecture.md", () => {
  const layers = layersOfDoc();
  const edges = importsOfSrc();

  it("has one row per folder of src/, and names every file at the root of src/", () => {
    const folders = new Set(
      sourceFiles(SRC)
        .map((p) => folderOf(underSrc(p)))
        .filter((f) => f !== ROOT_FOLDER),
    );
    assert.deepEqual([...folders].sort(), layers.map((l) => l.folder).sort());
    const doc = readFileSync(DOC, "utf8");
    for (const path of sourceFiles(SRC)) {
      const file = underSrc(path);
      if (folderOf(file) === ROOT_FOLDER && file !== ENTRY)
        assert.ok(doc.includes(`\`${file}\``), `docs/architecture.md says nothing of src/${file}`);
    }
  });

  it("each row depends only on rows below it: the table is an order", () => {
    const wrong: string[] = [];
    layers.forEach((layer, i) => {
      for (const dep of layer.allowed) {
        const at = layers.findIndex((l) => l.folder === dep);
        if (at <= i) wrong.push(`${layer.folder}/ depends on ${dep}/, which is not below it`);
      }
    });
    assert.deepEqual(wrong, []);
  });

  it("each folder imports exactly the folders its row lists (the root files are open to all)", () => {
    const imported = new Map<string, Set<string>>();
    const wrong: string[] = [];
    const allowedOf = new Map(layers.map((l) => [l.folder, l]));
    for (const e of edges) {
      const from = folderOf(e.from);
      const to = folderOf(e.to);
      if (from === to || from === ROOT_FOLDER || isAllowedForNow(e)) continue;
      if (to === ROOT_FOLDER) {
        // errors.ts, make-dirs.ts, sha256.ts: below every layer. The entry point is above them all.
        if (e.to === ENTRY) wrong.push(`${e.from} imports src/${ENTRY}, the package's entry point`);
        continue;
      }
      let set = imported.get(from);
      if (set === undefined) imported.set(from, (set = new Set()));
      set.add(to);
      if (!allowedOf.get(from)?.allowed.has(to))
        wrong.push(`${from}/ imports ${to}/ (${e.from} -> ${e.to}), which its row does not list`);
    }
    for (const layer of layers) {
      if (!layer.exact) continue;
      for (const listed of layer.allowed)
        if (!imported.get(layer.folder)?.has(listed))
          wrong.push(`${layer.folder}/ lists ${listed}/ in "depends on" but imports nothing of it`);
    }
    assert.deepEqual(wrong, []);
  });

  it("the root files import no folder: they are below every layer", () => {
    const wrong = edges
      .filter((e) => folderOf(e.from) === ROOT_FOLDER && e.from !== ENTRY && folderOf(e.to) !== ROOT_FOLDER)
      .map((e) => `${e.from} -> ${e.to}`);
    assert.deepEqual(wrong, []);
  });

  it("no import cycle runs between folders", () => {
    const graph = new Map<string, Set<string>>();
    for (const e of edges) {
      const from = folderOf(e.from);
      const to = folderOf(e.to);
      // The root files are below every folder and the entry point above them all (checked above).
      if (from === to || from === ROOT_FOLDER || to === ROOT_FOLDER || isAllowedForNow(e)) continue;
      let set = graph.get(from);
      if (set === undefined) graph.set(from, (set = new Set()));
      set.add(to);
    }
    assert.deepEqual(cyclesOf(graph), []);
  });

  it("no import cycle runs between files", () => {
    const graph = new Map<string, Set<string>>();
    for (const e of edges) {
      if (isAllowedForNow(e)) continue;
      let set = graph.get(e.from);
      if (set === undefined) graph.set(e.from, (set = new Set()));
      set.add(e.to);
    }
    assert.deepEqual(cyclesOf(graph), []);
  });

  it("every import allowed for now still exists (delete the entry once it is gone)", () => {
    const stale = ALLOWED_FOR_NOW.filter((a) => !edges.some((e) => e.from === a.from && e.to === a.to));
    assert.deepEqual(stale, []);
  });

  it("reads every kind of import (the reader checked on itself)", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "./b.js";',
      'export { c } from "./c.js";',
      'export * from "./d.js";',
      'const e = await import("./e.js");',
      'type F = typeof import("./f.js");',
      'import "node:fs";',
      "const notAnImport = 'import(\"./g.js\")';",
    ].join("\n");
    assert.deepEqual(specifiersOf("fixture.ts", text).sort(), [
      "./a.js",
      "./b.js",
      "./c.js",
      "./d.js",
      "./e.js",
      "./f.js",
      "node:fs",
    ]);
  });
});
