/** Runs every bench/*.bench.ts and writes bench/results/latest.json plus a readable table. */
import { existsSync, readdirSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Figures } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv[2];
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts") && (!only || f.includes(only)))
  .sort();

const all: Figures = {};
for (const file of files) {
  const mod = (await import(pathToFileURL(join(here, file)).href)) as { default: () => Promise<Figures> };
  process.stderr.write(`running ${file}...\n`);
  const figures = await mod.default();
  for (const [k, v] of Object.entries(figures)) {
    all[k] = v;
    process.stdout.write(`${k.padEnd(44)} ${String(v).padStart(14)}\n`);
  }
}
mkdirSync(join(here, "results"), { recursive: true });
const file = join(here, "results", "latest.json");
// A filtered run (`npm run bench -- invocation`) updates its own figures and keeps the others.
const previous: Figures = only && existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Figures) : {};
writeFileSync(file, `${JSON.stringify({ ...previous, ...all, measured_at: Date.now(), node: Number(process.versions.node.split(".")[0]) }, null, 2)}\n`);
process.stdout.write(`\nwrote bench/results/latest.json (${Object.keys(all).length} figures)\n`);
