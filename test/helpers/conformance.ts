/**
 * The MCP conformance suite (`@modelcontextprotocol/conformance`), as the tests run it: the
 * pinned version on Node 22, both fetched from the npm registry through one npx call (cached
 * after the first run), because the suite needs Node 22 and the project runs on Node 20 (see
 * test/mcp-ecosystem.test.ts, which runs its server scenarios, for why it is no devDependency).
 * Without the registry a test skips, except under CI (`CI` set), where it fails: there the
 * registry is reachable and a skip would hide a regression.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { runCommand } from "./mcp-util.js";

/** The conformance suite's version, pinned: a new release may add scenarios or change checks. */
export const CONFORMANCE_VERSION = "0.1.16";

/** A Node 22 binary and the conformance CLI. */
export interface ConformanceRuntime {
  node: string;
  cli: string;
}

/** Node 22 and the pinned conformance CLI, or why they could not be had. */
export async function conformanceRuntime(): Promise<ConformanceRuntime | { missing: string }> {
  // npx puts both packages' bins first on PATH: `node` is Node 22, `conformance` the suite's CLI.
  const report =
    "const { existsSync, realpathSync } = require('node:fs'); const { delimiter, join } = require('node:path'); const bin = process.env.PATH.split(delimiter).map((d) => join(d, 'conformance')).find(existsSync); process.stdout.write(JSON.stringify({ node: process.execPath, version: process.version, cli: bin && realpathSync(bin) }))";
  const r = await runCommand(
    "npx",
    [
      "--yes",
      "--package",
      "node@22",
      "--package",
      `@modelcontextprotocol/conformance@${CONFORMANCE_VERSION}`,
      "--",
      "node",
      "-e",
      report,
    ],
    { timeoutMs: 180_000 },
  );
  let found: { node?: string; version?: string; cli?: string } = {};
  try {
    found = JSON.parse(r.stdout.trim()) as typeof found;
  } catch {
    // reported below, with what npx printed
  }
  if (r.code !== 0 || !found.node || !found.cli || !found.version?.startsWith("v22.")) {
    return {
      missing: `node@22 and @modelcontextprotocol/conformance@${CONFORMANCE_VERSION} could not be had from the npm registry (npx exited ${r.code ?? r.signal}): ${r.stdout.trim().slice(-400)} ${r.stderr.trim().slice(-400)}`,
    };
  }
  const version = (
    JSON.parse(readFileSync(join(found.cli, "..", "..", "package.json"), "utf8")) as { version?: string }
  ).version;
  assert.equal(version, CONFORMANCE_VERSION, `npx ran ${found.cli}, version ${version}, not the pinned one`);
  return { node: found.node, cli: found.cli };
}

/** The runtime, or undefined after skipping `t` (a failure under CI: see the file comment). */
export async function conformanceRuntimeOr(t: TestContext): Promise<ConformanceRuntime | undefined> {
  const runtime = await conformanceRuntime();
  if (!("missing" in runtime)) return runtime;
  assert.ok(
    !process.env.CI,
    `under CI the registry is reachable and the conformance suite must run: ${runtime.missing}`,
  );
  t.skip(runtime.missing);
  return undefined;
}

export interface Check {
  id: string;
  status: string;
  description?: string;
}

/** The files the suite saved for one run: every `checks.json` under `dir`, with its folder's stdout and stderr. */
export function savedResults(dir: string): Array<{ dir: string; checks: Check[]; stdout: string; stderr: string }> {
  const found: Array<{ dir: string; checks: Check[]; stdout: string; stderr: string }> = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === "checks.json") {
        const read = (f: string): string => (existsSync(join(d, f)) ? readFileSync(join(d, f), "utf8") : "");
        found.push({
          dir: d,
          checks: JSON.parse(readFileSync(p, "utf8")) as Check[],
          stdout: read("stdout.txt"),
          stderr: read("stderr.txt"),
        });
      }
    }
  };
  walk(dir);
  return found;
}
