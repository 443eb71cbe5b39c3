/**
 * A throwaway PostgreSQL for the benchmarks and the replica load test: initdb in a temporary
 * folder, started on loopback (port picked free), stopped and removed at the end. As root it
 * runs as the `postgres` user (PostgreSQL refuses root). With AZTP_BENCH_PG_URL set, that
 * server is used instead and nothing is started (then `restart` is unavailable).
 *
 * Unlike .ci/run's server this one keeps fsync on: the figures it gives are for durable writes.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ThrowawayPg {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  /** Stops and starts the server (fast shutdown: open connections are cut), as a crash-and-restart would. */
  restart?: () => void;
  stop(): void;
}

function findBin(name: string): string | undefined {
  const which = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
  if (which.status === 0 && which.stdout.trim()) return which.stdout.trim();
  for (const dir of ["/usr/local/bin", ...listPgLibDirs()]) if (existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

function listPgLibDirs(): string[] {
  const r = spawnSync("sh", ["-c", "ls -d /usr/lib/postgresql/*/bin 2>/dev/null"], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function throwawayPg(): Promise<ThrowawayPg> {
  const given = process.env.AZTP_BENCH_PG_URL;
  if (given) return { url: given, stop: () => undefined };
  const initdb = findBin("initdb");
  const pgCtl = findBin("pg_ctl");
  if (!initdb || !pgCtl)
    throw new Error(
      "PostgreSQL is not installed (initdb, pg_ctl): `apt-get install postgresql`, or set AZTP_BENCH_PG_URL",
    );
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "aztp-bench-pg-"));
  if (root)
    chownSync(
      dir,
      Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()),
      Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim()),
    );
  const run = (args: string[]): void => {
    const r = root
      ? spawnSync(
          "su",
          ["postgres", "-s", "/bin/sh", "-c", args.map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")],
          { encoding: "utf8" },
        )
      : spawnSync(args[0] as string, args.slice(1), { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${args.join(" ")} failed: ${r.stderr || r.stdout}`);
  };
  const port = await freePort();
  const data = join(dir, "data");
  run([initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
  const start = (): void =>
    run([
      pgCtl,
      "-D",
      data,
      "-l",
      join(dir, "postgres.log"),
      "-w",
      "-t",
      "60",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=300`,
      "start",
    ]);
  start();
  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    restart: () => {
      run([pgCtl, "-D", data, "-m", "fast", "-w", "stop"]);
      start();
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      try {
        run([pgCtl, "-D", data, "-m", "fast", "-w", "stop"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
