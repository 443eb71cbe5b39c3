/**
 * The paths `aztp` is given: an unusable one (under /proc, a file where a folder is expected
 * or the reverse, no permission, endless) fails at once with exit 1, a code, and the path
 * named; stdin that arrives late is read; and `aztp issue` never overwrites key.pem (or the
 * SVID and bundle files) unless --force is given, creating each file with O_EXCL.
 *
 * Real child processes, each with a deadline (`aztp issue --out /proc/nope` used to spin for
 * ever at 100% CPU).
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { open } from "node:fs/promises";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { writeNewFiles } from "../src/cli/files.js";
import { ErrorCodes } from "../src/errors.js";
import { aztpCli, assertExit, CLI, ROOT, tempDir, type CliResult } from "./helpers/authority-util.js";
import { until } from "./helpers/mcp-util.js";
import { waitingForInput } from "./helpers/process-state.js";

const TD = "example.org";
/** A hung command is killed after this long and the test fails (a run takes ~1-5 s on a loaded machine). */
const DEADLINE_MS = 60_000;

async function initHome(t: TestContext): Promise<string> {
  const home = join(tempDir(t), "home");
  assertExit(await aztpCli(home, ["init", "--trust-domain", TD]), 0, "init");
  return home;
}

function assertError(r: CliResult, code: string, names: string, what: string): void {
  assert.equal(r.signal, null, `${what}: ended by itself, not killed at the deadline (stderr: ${r.stderr})`);
  assertExit(r, 1, what);
  assert.equal(r.json?.error?.code, code, `${what}: ${JSON.stringify(r.json)}`);
  assert.ok(
    String(r.json.error.message).includes(names),
    `${what}: the message names ${names}: ${r.json.error.message}`,
  );
}

/** The tsx loader by absolute path, so the CLI can run from any folder. */
const TSX = join(ROOT, "node_modules", "tsx", "dist", "esm", "index.mjs");

/** `aztp --json ARGS` from folder `cwd`, optionally as another user; killed at the deadline. */
function cliIn(args: string[], options: { cwd: string; uid?: number }): Promise<CliResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const ids = options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {};
    const child = spawn(process.execPath, ["--import", TSX, CLI, "--json", ...args], {
      cwd: options.cwd,
      env,
      ...ids,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), DEADLINE_MS);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, json });
    });
  });
}

/** The children of process `pid` (Linux /proc; none elsewhere). */
function childrenOf(pid: number | undefined): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/** Runs the cases a few at a time (the machine is shared). */
async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

describe("aztp on unusable paths", () => {
  it("fails at once with exit 1, the code, and the path named (table)", async (t) => {
    const home = await initHome(t);
    const scratch = tempDir(t, "paths");
    const svid = join(scratch, "svid");
    assertExit(await aztpCli(home, ["issue", "worker", "--out", svid]), 0, "issue");
    const aFile = join(scratch, "a-file");
    writeFileSync(aFile, "not a folder\n");
    const aFolder = join(scratch, "a-folder");
    mkdirSync(aFolder);
    // A home whose authority.json is a folder.
    const brokenHome = join(scratch, "broken-home");
    mkdirSync(join(brokenHome, "authority.json"), { recursive: true });
    const bundle = join(svid, "bundle.json");
    const cert = join(svid, "svid.pem");
    const exit0 = ["--upstream-command", "sh -c 'exit 0'"];

    // [label, home, args, code, what the message must name]
    const cases: Array<[string, string, string[], string, string]> = [
      ["issue --out under /proc", home, ["issue", "a", "--out", "/proc/nope"], ErrorCodes.FILE_UNUSABLE, "/proc/nope"],
      [
        "issue --out deep under /proc",
        home,
        ["issue", "b", "--out", "/proc/nope/deeper/still"],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope",
      ],
      ["issue --out a file", home, ["issue", "c", "--out", aFile], ErrorCodes.FILE_UNUSABLE, aFile],
      ["issue --out below a file", home, ["issue", "d", "--out", join(aFile, "sub")], ErrorCodes.FILE_UNUSABLE, aFile],
      [
        "init --home under /proc",
        "/proc/nope",
        ["init", "--trust-domain", TD],
        ErrorCodes.AUTHORITY_STORE_FAILED,
        "/proc/nope",
      ],
      ["init --home a file", aFile, ["init", "--trust-domain", TD], ErrorCodes.AUTHORITY_STORE_FAILED, aFile],
      ["list --home under /proc", "/proc/nope", ["list"], ErrorCodes.AUTHORITY_NOT_INITIALIZED, "/proc/nope"],
      [
        "list, authority.json a folder",
        brokenHome,
        ["list"],
        ErrorCodes.AUTHORITY_STORE_FAILED,
        join(brokenHome, "authority.json"),
      ],
      [
        "policy attach, file under /proc",
        home,
        ["policy", "attach", "worker", "/proc/nope/policy.json"],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope/policy.json",
      ],
      ["policy attach, a folder", home, ["policy", "attach", "worker", aFolder], ErrorCodes.FILE_UNUSABLE, aFolder],
      [
        "verify x509, cert under /proc",
        home,
        ["verify", "x509", "/proc/nope/svid.pem", "--bundle", bundle],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope/svid.pem",
      ],
      [
        "verify x509, --bundle a folder",
        home,
        ["verify", "x509", cert, "--bundle", aFolder],
        ErrorCodes.FILE_UNUSABLE,
        aFolder,
      ],
      [
        "verify x509, --bundle endless",
        home,
        ["verify", "x509", cert, "--bundle", "/dev/zero"],
        ErrorCodes.FILE_UNUSABLE,
        "/dev/zero",
      ],
      [
        "verify jwt, --bundle under /proc",
        home,
        ["verify", "jwt", "t.t.t", "--bundle", "/proc/nope", "--audience", "a"],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope",
      ],
      [
        "mcp proxy --policy under /proc",
        home,
        ["mcp", "proxy", "--name", "p", ...exit0, "--policy", "/proc/nope/p.json"],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope/p.json",
      ],
      [
        "mcp proxy --policy a folder",
        home,
        ["mcp", "proxy", "--name", "p", ...exit0, "--policy", aFolder],
        ErrorCodes.FILE_UNUSABLE,
        aFolder,
      ],
      [
        "mcp proxy --audit-log under /proc",
        home,
        ["mcp", "proxy", "--name", "p", ...exit0, "--audit-log", "/proc/nope/audit.jsonl"],
        ErrorCodes.FILE_UNUSABLE,
        "/proc/nope",
      ],
    ];
    const results = await inBatches(cases, 4, ([, h, args]) => aztpCli(h, args, { timeoutMs: DEADLINE_MS }));
    cases.forEach(([label, , args, code, names], i) =>
      assertError(results[i]!, code, names, `${label}: aztp ${args.join(" ")}`),
    );
  });

  it("without permission: exit 1 naming the path (run as nobody, so root's bypass does not hide it)", async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("needs root, to run the CLI as nobody");
      return;
    }
    const home = await initHome(t);
    const scratch = tempDir(t, "perm");
    chmodSync(scratch, 0o755); // nobody may enter, not write
    const secret = join(scratch, "secret.pem");
    writeFileSync(secret, "x", { mode: 0o600 });
    const cases: Array<[string, string[], string, string]> = [
      [
        "init in a folder nobody may write",
        ["--home", join(scratch, "home"), "init", "--trust-domain", TD],
        ErrorCodes.AUTHORITY_STORE_FAILED,
        join(scratch, "home"),
      ],
      [
        "verify x509 of an unreadable file",
        ["--home", home, "verify", "x509", secret, "--bundle", secret],
        ErrorCodes.FILE_UNUSABLE,
        secret,
      ],
    ];
    for (const [label, args, code, names] of cases) {
      const r = await cliIn(args, { cwd: scratch, uid: 65534 });
      if (r.json === undefined && /EACCES|permission denied/i.test(r.stderr)) {
        t.skip(`nobody cannot run the CLI here: ${r.stderr.slice(0, 200)}`);
        return;
      }
      assertError(r, code, names, label);
      assert.match(r.json.error.message, /EACCES/, label);
    }
  });
});

describe("aztp reads stdin that arrives late", () => {
  it("verify jwt - gets its token from a pipe that is empty at first (a sync read of the non-blocking pipe failed with EAGAIN)", async (t) => {
    const home = await initHome(t);
    const out = join(tempDir(t, "out"), "svid");
    assertExit(await aztpCli(home, ["issue", "caller", "--out", out]), 0, "issue");
    const token = (await aztpCli(home, ["jwt", "caller", "--audience", "svc"])).json.token as string;
    // stdin is a pipe from a producer that writes nothing yet, as in `slow | aztp verify jwt -`:
    // cat copies from a named pipe that this test writes to once the CLI waits.
    const fifo = join(tempDir(t, "fifo"), "stdin");
    execFileSync("mkfifo", [fifo]);
    const cli = [
      "--import",
      TSX,
      CLI,
      "--home",
      home,
      "--json",
      "verify",
      "jwt",
      "-",
      "--bundle",
      join(out, "bundle.json"),
      "--audience",
      "svc",
    ];
    const env: NodeJS.ProcessEnv = { ...process.env, FIFO: fifo };
    delete env.NODE_TEST_CONTEXT;
    const shell = spawn("sh", ["-c", 'cat "$FIFO" | "$0" "$@"', process.execPath, ...cli], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    shell.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    shell.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const ended = new Promise<number | null>((resolve) => shell.once("close", (code) => resolve(code)));
    t.after(() => shell.kill("SIGKILL"));
    let cliPid: number | undefined;
    await until(
      () => (cliPid = childrenOf(shell.pid).find((pid) => commOf(pid) === "node")) !== undefined,
      "the CLI process started",
      30_000,
    );
    const writer = await open(fifo, "w");
    await waitingForInput(cliPid, "verify jwt - on a pipe");
    await writer.write(`${token}\n`);
    await writer.close();
    assert.equal(await ended, 0, `stderr: ${stderr} stdout: ${stdout}`);
    assert.equal((JSON.parse(stdout) as { valid: boolean }).valid, true);
  });
});

describe("aztp issue never overwrites without --force", () => {
  const FILES = ["key.pem", "svid.pem", "bundle.pem", "bundle.json"];

  it("a second issue into the same folder is refused (ERR_FILE_EXISTS naming the file and --force, exit 1); nothing is issued or changed; --force replaces all four", async (t) => {
    const home = await initHome(t);
    const dir = join(tempDir(t, "out"), "svid");
    assertExit(await aztpCli(home, ["issue", "first", "--out", dir]), 0, "first issue");
    const before = Object.fromEntries(FILES.map((f) => [f, readFileSync(join(dir, f), "utf8")]));

    const again = await aztpCli(home, ["issue", "second", "--out", dir]);
    assertError(again, ErrorCodes.FILE_EXISTS, join(dir, "key.pem"), "second issue");
    assert.match(again.json.error.message, /--force/);
    for (const f of FILES) assert.equal(readFileSync(join(dir, f), "utf8"), before[f], `${f} untouched`);
    const listed = await aztpCli(home, ["list"]);
    assert.deepEqual(
      listed.json.map((r: { name: string }) => r.name),
      ["first"],
      "the refused identity was not issued",
    );

    const forced = await aztpCli(home, ["issue", "second", "--out", dir, "--force"]);
    assertExit(forced, 0, "issue --force");
    assert.notEqual(readFileSync(join(dir, "key.pem"), "utf8"), before["key.pem"], "a new key");
    assert.notEqual(readFileSync(join(dir, "svid.pem"), "utf8"), before["svid.pem"], "a new SVID");
    assert.equal(statSync(join(dir, "key.pem")).mode & 0o777, 0o600);
  });

  it("each of the four files alone, and a symlink planted as key.pem, is enough to refuse (default --out: the current folder)", async (t) => {
    const home = await initHome(t);
    const cases = [...FILES.map((f) => [f, "file"] as const), ["key.pem", "symlink"] as const];
    await inBatches(cases, 3, async ([name, kind]) => {
      const cwd = tempDir(t, "cwd");
      const target = join(tempDir(t, "elsewhere"), "target");
      if (kind === "file") writeFileSync(join(cwd, name), "precious\n");
      else symlinkSync(target, join(cwd, name)); // dangling: O_CREAT would write through it
      const r = await cliIn(["--home", home, "issue", `only-${name}-${kind}`.replace(/\W/g, "-")], { cwd });
      assertError(r, ErrorCodes.FILE_EXISTS, join(cwd, name), `${name} (${kind}) exists`);
      if (kind === "file") assert.equal(readFileSync(join(cwd, name), "utf8"), "precious\n");
      else
        assert.equal(
          readlinkSync(join(cwd, name)),
          target,
          "the symlink is left as it was, and nothing written through it",
        );
      for (const other of FILES.filter((f) => f !== name))
        assert.throws(() => lstatSync(join(cwd, other)), `${other} not written`);
    });
  });

  it("the files are created with O_EXCL: one that appears after the check is not overwritten either, and the set is rolled back", (t) => {
    const dir = tempDir(t, "excl");
    writeFileSync(join(dir, "svid.pem"), "someone else's\n");
    assert.throws(
      () =>
        writeNewFiles(
          dir,
          [
            { name: "key.pem", text: "KEY", mode: 0o600 },
            { name: "svid.pem", text: "SVID" },
          ],
          false,
        ),
      (e: unknown) =>
        (e as { code?: string }).code === ErrorCodes.FILE_EXISTS &&
        String((e as Error).message).includes(join(dir, "svid.pem")),
    );
    assert.equal(readFileSync(join(dir, "svid.pem"), "utf8"), "someone else's\n");
    assert.throws(() => lstatSync(join(dir, "key.pem")), "the key.pem this call created was removed again");
  });
});
