/**
 * Every `aztp` process ends on SIGINT and SIGTERM, promptly, whatever it is doing: blocked in
 * synchronous code, reading stdin, waiting for the home's lock, or serving as `mcp proxy` on
 * stdio or HTTP. Real child processes, each with a deadline: a process still there after it
 * fails the test (and is then SIGKILLed).
 *
 * The defect: proper-lockfile (through signal-exit) listened for SIGTERM and SIGINT from the
 * moment it was loaded, and a signal with a JavaScript listener waits for the event loop, so a
 * process stuck in a synchronous call ignored both (`aztp issue --out /proc/nope` spun in
 * Node's recursive mkdir; `timeout` could not stop it).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { aztpCli, assertExit, tempDir } from "./helpers/authority-util.js";
import { CLI, EVERYTHING, spawnNode, until, type Child } from "./helpers/mcp-util.js";
import { waitingForInput } from "./helpers/process-state.js";

const BUSY = join("test", "helpers", "busy-after-import.ts");
const HOLD_LOCK = join("test", "helpers", "hold-home-lock.ts");
const SIGNALS = ["SIGTERM", "SIGINT"] as const;
/** How long a signalled process may take to end: generous for a loaded machine, far below a hang. */
const PROMPT_MS = 15_000;

/** Sends `signal` and waits for the child to end; fails (after SIGKILL) if it is still there after PROMPT_MS. */
async function endsOn(
  child: Child,
  signal: NodeJS.Signals,
  what: string,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  child.process.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), PROMPT_MS)));
  const end = await Promise.race([child.exit, late]);
  clearTimeout(timer);
  if (end === "late") {
    child.process.kill("SIGKILL");
    assert.fail(`${what}: still running ${PROMPT_MS} ms after ${signal} (stderr: ${child.stderr()})`);
  }
  return end;
}

async function initHome(t: TestContext): Promise<string> {
  const home = join(tempDir(t), "home");
  assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0, "init");
  assertExit(await aztpCli(home, ["issue", "worker", "--out", join(home, "worker")]), 0, "issue");
  return home;
}

describe("aztp ends on SIGINT and SIGTERM", () => {
  for (const signal of SIGNALS) {
    it(`${signal}: a process that loaded the authority and its lock library dies of it even while its main thread is stuck in synchronous code`, async (t) => {
      const child = spawnNode(t, ["--import", "tsx", BUSY]);
      await child.waitFor(/busy/, 30_000);
      const end = await endsOn(child, signal, "busy process");
      assert.equal(end.signal, signal, `killed by ${signal}, got ${JSON.stringify(end)}`);
    });
  }

  it("a process holding the home's lock still removes it when signalled, and one waiting for it leaves it alone", async (t) => {
    const home = await initHome(t);
    const holder = spawnNode(t, ["--import", "tsx", HOLD_LOCK, home]);
    await holder.waitFor(/locked/, 30_000);
    const lock = join(home, ".lock");
    assert.ok(existsSync(lock), "the lock is held");
    // A command waiting for that lock (it retries for up to ~40 s) ends on SIGTERM at once
    // and does not remove a lock it never held.
    const waiter = spawnNode(t, ["--import", "tsx", CLI, "--home", home, "revoke", "worker"]);
    await until(() => existsSync(`/proc/${waiter.process.pid}`) || waiter.process.exitCode !== null, "waiter started");
    const waited = await endsOn(waiter, "SIGTERM", "revoke waiting for the lock");
    assert.equal(waited.signal, "SIGTERM");
    assert.ok(existsSync(lock), "the waiter left the holder's lock in place");
    const held = await endsOn(holder, "SIGTERM", "lock holder");
    assert.equal(held.signal, "SIGTERM", "the holder dies of the signal (re-raised after the clean-up)");
    assert.ok(!existsSync(lock), "the signalled holder removed its lock");
    // And the home works at once (no stale lock to wait out).
    assertExit(await aztpCli(home, ["revoke", "worker"]), 0, "revoke after the holder died");
  });

  // Commands waiting for their input on stdin (the parent never closes it).
  const stdinReaders: Array<[string, (home: string) => string[]]> = [
    [
      "verify jwt -",
      (home) => ["verify", "jwt", "-", "--bundle", join(home, "worker", "bundle.json"), "--audience", "svc"],
    ],
    ["verify x509 -", (home) => ["verify", "x509", "-", "--bundle", join(home, "worker", "bundle.json")]],
    ["policy attach ID -", () => ["policy", "attach", "worker", "-"]],
  ];
  for (const [label, args] of stdinReaders) {
    it(`${label}, waiting for stdin, ends on SIGTERM and on SIGINT`, async (t) => {
      const home = await initHome(t);
      for (const signal of SIGNALS) {
        const child = spawnNode(t, ["--import", "tsx", CLI, "--home", home, ...args(home)]);
        await waitingForInput(child.process.pid, label);
        const end = await endsOn(child, signal, label);
        assert.equal(end.signal, signal, `${label}: killed by ${signal}, got ${JSON.stringify(end)}`);
      }
    });
  }

  for (const listen of ["stdio", "http://127.0.0.1:0"]) {
    it(`mcp proxy --listen ${listen} stops on SIGTERM and on SIGINT: exit 0, and its upstream is gone too`, async (t) => {
      const home = join(tempDir(t), "home");
      for (const signal of SIGNALS) {
        const pidFile = join(tempDir(t, "pid"), "upstream.pid");
        // The upstream writes its pid, then becomes server-everything (exec keeps the pid).
        const upstream = `sh -c 'echo $$ > "${pidFile}"; exec "${process.execPath}" "${EVERYTHING}" stdio'`;
        const child = spawnNode(t, [
          "--import",
          "tsx",
          CLI,
          "--home",
          home,
          "mcp",
          "proxy",
          "--name",
          "sig-proxy",
          "--listen",
          listen,
          "--upstream-command",
          upstream,
        ]);
        await child.waitFor(listen === "stdio" ? /on stdio/ : /listening on/, 60_000);
        if (listen === "stdio")
          await until(
            () => existsSync(pidFile) && readFileSync(pidFile, "utf8").trim() !== "",
            "the upstream wrote its pid",
            30_000,
          );
        const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) : undefined;
        const end = await endsOn(child, signal, `proxy on ${listen}`);
        assert.deepEqual(
          end,
          { code: 0, signal: null },
          `a stop asked for is a clean exit (stderr: ${child.stderr()})`,
        );
        if (pid !== undefined) {
          const alive = (): boolean => {
            try {
              process.kill(pid, 0);
              return true;
            } catch {
              return false;
            }
          };
          await until(() => !alive(), `upstream ${pid} ended with the proxy`, PROMPT_MS);
        }
        writeFileSync(pidFile, "");
      }
    });
  }
});
