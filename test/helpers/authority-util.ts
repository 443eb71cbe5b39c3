/**
 * Shared plumbing for the authority, client and CLI tests: throw-away homes, real child
 * processes (the CLI, the examples, helper scripts) and error-code assertions.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { AztpError } from "../../src/errors.js";

/** The package root: where `node --import tsx` finds tsx and tsconfig.json (for `aztp-client`). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CLI = join(ROOT, "src", "cli", "main.ts");
const BUILT_CLI = join(ROOT, "dist", "cli", "main.js");

/**
 * How a script is run: the CLI from its build when the build is newer than every source file
 * (as after `npm ci`, whose prepare script builds it: half a second less per run, over hundreds
 * of runs), else through tsx from the source, so a change not yet built is never tested stale.
 * AZTP_TEST_CLI=source always runs the source.
 */
function nodeArgs(script: string): string[] {
  return script === CLI && builtCliIsFresh() ? [BUILT_CLI] : ["--import", "tsx", script];
}

let fresh: boolean | undefined;
function builtCliIsFresh(): boolean {
  if (fresh !== undefined) return fresh;
  if (process.env.AZTP_TEST_CLI === "source" || !existsSync(BUILT_CLI)) return (fresh = false);
  const built = statSync(BUILT_CLI).mtimeMs;
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...readdirSync(dir, { withFileTypes: true }).map((e) =>
        e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs,
      ),
    );
  return (fresh = newest(join(ROOT, "src")) <= built && statSync(join(ROOT, "package.json")).mtimeMs <= built);
}

/** A fresh folder under the OS temp dir, removed when the test ends. */
export function tempDir(t: TestContext, label = "home"): string {
  const dir = mkdtempSync(join(tmpdir(), `aztp-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  /** Kill the child after this long (the result then has signal SIGKILL). */
  timeoutMs?: number;
  /** Called with each stdout chunk as it arrives. */
  onStdout?: (chunk: string) => void;
}

/**
 * At most this many runTs children at once per test file. A table test that starts two dozen
 * CLI processes together (each ~1.5 s of CPU to load) on a 2-core machine already running
 * another test file took longer than the 30 s hang deadline for its last ones: the deadline
 * timed the queue for the CPU, not the command. Queued children start, and are timed, later.
 */
const MAX_CHILDREN = 6; // the barrier races of authority.test.ts need 4 alive at once
let running = 0;
const queue: Array<() => void> = [];

async function childSlot(): Promise<() => void> {
  if (running >= MAX_CHILDREN) await new Promise<void>((resolve) => queue.push(resolve));
  running++;
  return () => {
    running--;
    queue.shift()?.();
  };
}

/** Runs `node --import tsx <script> ...args` from the package root (the CLI from its build when fresh: nodeArgs). */
export async function runTs(script: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
  const release = await childSlot();
  try {
    return await spawnTs(script, args, options);
  } finally {
    release();
  }
}

function spawnTs(script: string, args: string[], options: RunOptions): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
    for (const [k, v] of Object.entries(options.env ?? {})) if (v === undefined) delete env[k];
    // The child must not think it is part of this test run.
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, [...nodeArgs(script), ...args], {
      cwd: ROOT,
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
      options.onStdout?.(c);
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const timer = options.timeoutMs ? setTimeout(() => child.kill("SIGKILL"), options.timeoutMs) : undefined;
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
    child.stdin.end(options.input ?? "");
  });
}

export interface CliResult extends RunResult {
  /** stdout parsed as JSON when it is JSON, else undefined. */
  json: any;
}

/** Runs the real `aztp` CLI with `--home home --json`. */
export async function aztpCli(home: string | undefined, args: string[], options: RunOptions = {}): Promise<CliResult> {
  const r = await runTs(CLI, [...(home !== undefined ? ["--home", home] : []), "--json", ...args], {
    timeoutMs: 30_000,
    ...options,
  });
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

/** Asserts a CLI run's exit code, showing its output when it differs. */
export function assertExit(r: RunResult, code: number, what = "aztp"): void {
  assert.equal(r.code, code, `${what}: expected exit ${code}, got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

/** Asserts that `fn` (sync or async) fails with an AztpError of `code`, never a TypeError. */
export async function rejectsWithCode(fn: () => unknown, code: string, what?: string): Promise<AztpError> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${what ?? "call"}: expected ${code}, but it succeeded`);
  assert.ok(caught instanceof AztpError, `${what ?? "call"}: expected an AztpError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, `${what ?? "call"}: ${caught.message}`);
  return caught;
}

/** Runs openssl; resolves with its exit code and output (never rejects on a non-zero exit). */
export function openssl(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile("openssl", args, { cwd, encoding: "utf8" }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/**
 * A fresh home made with the CLI (`init`, then `issue srv`) and `policy` written to a file:
 * the start of every `aztp policy` test. Returns the home and the policy file's path.
 */
export async function cliHomeWithPolicy(t: TestContext, policy: unknown): Promise<{ home: string; file: string }> {
  const home = join(tempDir(t), "home");
  assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0, "init");
  assertExit(await aztpCli(home, ["issue", "srv", "--out", join(home, "out")]), 0, "issue");
  const file = join(tempDir(t, "policy"), "policy.json");
  writeFileSync(file, JSON.stringify(policy));
  return { home, file };
}
