/**
 * A text flame-graph summary of a V8 .cpuprofile (node --cpu-prof): the functions with the
 * most self time, and the most inclusive time (self + callees, each function counted once per
 * stack so recursion does not count twice), as shares of all samples.
 *   npx tsx bench/cpuprofile-summary.ts <file.cpuprofile> [top=25] [filter]
 * `filter` keeps only functions whose label contains it (e.g. "src/") in both tables.
 */
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
}

const [file, topArg, filter] = process.argv.slice(2);
if (file === undefined) throw new Error("usage: cpuprofile-summary <file.cpuprofile> [top] [filter]");
const top = Number(topArg) || 25;
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const label = (n: Node): string => {
  const url = n.callFrame.url
    .replace(/^file:\/\//, "")
    .replace(/.*\/(node_modules\/)/, "$1")
    .replace(/.*\/(src|bench|test)\//, "$1/");
  return `${n.callFrame.functionName || "(anonymous)"} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ""}`.trim();
};

const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const hits = new Map<number, number>();
for (const s of profile.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
let total = 0;
for (const [id, count] of hits) {
  const n = byId.get(id);
  if (n === undefined) continue;
  total += count;
  const name = label(n);
  self.set(name, (self.get(name) ?? 0) + count);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const m = byId.get(cur);
    if (m === undefined) break;
    const l = label(m);
    if (seen.has(l)) continue;
    seen.add(l);
    inclusive.set(l, (inclusive.get(l) ?? 0) + count);
  }
}

const table = (title: string, m: Map<string, number>, keep: (name: string) => boolean): void => {
  process.stdout.write(`\n${title} (${total} samples)\n`);
  [...m.entries()]
    .filter(([name]) => keep(name))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .forEach(([name, count]) => process.stdout.write(`${((100 * count) / total).toFixed(1).padStart(6)}%  ${name}\n`));
};
table("self time", self, (name) => filter === undefined || name.includes(filter));
table("inclusive time", inclusive, (name) => filter === undefined || name.includes(filter));
