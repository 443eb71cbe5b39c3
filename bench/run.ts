/**
 * Runs every bench/*.bench.ts and writes bench/results/latest.json plus a readable table.
 * Each module runs in its own process, so one module's heap (the replay-cache figure fills
 * 200,000 entries) and JIT state never weigh on another's timings.
 *   npm run bench                 all modules
 *   npm run bench -- invocation   the modules whose file name contains "invocation"
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { Figures } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const [first, second] = process.argv.slice(2);

if (first === "--one" && second) {
  // Child mode: run one module, print its figures as JSON on the last line.
  const mod = (await import(pathToFileURL(join(here, second)).href)) as { default: () => Promise<Figures> };
  process.stdout.write(`\n${JSON.stringify(await mod.default())}\n`);
  process.exit(0);
}

const only = first;
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts") && (!only || f.includes(only)))
  .sort();

const all: Figures = {};
let failed = false;
for (const file of files) {
  process.stderr.write(`running ${file}...\n`);
  // The SDK's Streamable HTTP client passes one AbortSignal to every fetch, and undici adds a
  // listener to it per request (dropped only when the request is collected): past 1,500 a
  // warning per call floods stderr, for the plain client as much as the secured one.
  const r = spawnSync(
    process.execPath,
    ["--disable-warning=MaxListenersExceededWarning", "--import", "tsx", fileURLToPath(import.meta.url), "--one", file],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 16 * 1024 * 1024 },
  );
  const last = r.stdout.trim().split("\n").pop() ?? "";
  let figures: Figures;
  try {
    figures = JSON.parse(last) as Figures;
  } catch {
    process.stderr.write(`${file} failed (exit ${r.status})\n${r.stdout}\n`);
    failed = true;
    continue;
  }
  for (const [k, v] of Object.entries(figures)) {
    all[k] = v;
    process.stdout.write(`${k.padEnd(44)} ${String(v).padStart(14)}\n`);
  }
}
mkdirSync(join(here, "results"), { recursive: true });
const file = join(here, "results", "latest.json");
// A filtered run updates its own figures and keeps the others.
const previous: Figures = only && existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Figures) : {};
writeFileSync(
  file,
  `${JSON.stringify({ ...previous, ...all, measured_at: Date.now(), node: Number(process.versions.node.split(".")[0]) }, null, 2)}\n`,
);
process.stdout.write(`\nwrote bench/results/latest.json (${Object.keys(all).length} figures)\n`);
process.exitCode = failed ? 1 : 0;
