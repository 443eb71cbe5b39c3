/**
 * `store/` sits below `serve/` (docs/architecture.md): the service is built on the stores, never
 * the other way round. Read from the source, so a new import from a room above fails here.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { describe, it } from "node:test";

const ROOT = resolve(import.meta.dirname, "..");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith(".ts") ? [join(dir, d.name)] : [],
  );
}

/** Every relative module an import or export-from names, resolved to a path under the repository. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(
    /(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"|import\(\s*"(\.{1,2}\/[^"]+)"\s*\)/g,
  )) {
    const spec = m[1] ?? m[2];
    if (spec !== undefined) out.push(relative(ROOT, resolve(dirname(file), spec)));
  }
  return out;
}

describe("store/ layering", () => {
  it("nothing in src/store imports from src/serve (the API-key model lives in store/)", () => {
    const files = sources(join(ROOT, "src", "store"));
    assert.ok(files.length > 0);
    const upward = files.flatMap((f) =>
      importsOf(f)
        .filter((p) => p.startsWith(join("src", "serve")))
        .map((p) => `${relative(ROOT, f)} -> ${p}`),
    );
    assert.deepEqual(upward, []);
  });

  it("the import reader sees imports (a twin, so the test above cannot pass by reading nothing)", () => {
    const serve = importsOf(join(ROOT, "src", "serve", "open.ts"));
    assert.ok(
      serve.some((p) => p.startsWith(join("src", "store"))),
      serve.join(", "),
    );
  });
});
