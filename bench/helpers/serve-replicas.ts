/**
 * `aztp serve` replicas as real processes on one PostgreSQL database, for the benchmarks and
 * the replica load test: a fresh database on a (throwaway) server, a KEK file, N replicas
 * started at once (migrations and the CA's creation must not race), an API key, and the
 * bundle file clients are given. Everything is stopped and removed by `stop()`, and on exit.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { EmbeddedAuthority } from "../../src/authority/authority.js";
import { openPostgresStores, type PostgresStores } from "../../src/store/postgres/index.js";
import { throwawayPg, type ThrowawayPg } from "./throwaway-pg.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface Replica {
  name: string;
  port: number;
  url: string;
  child: ChildProcess | undefined;
}

export interface ReplicaSet {
  server: ThrowawayPg;
  storeUrl: string;
  trustDomain: string;
  work: string;
  replicas: Replica[];
  /** The stores themselves, opened in this process (for checks and the bundle). */
  stores: PostgresStores;
  apiKey: string;
  bundleFile: string;
  /** Starts (again) a replica that was stopped or killed, on its port. */
  start(r: Replica): Promise<void>;
  stop(): Promise<void>;
}

export async function startReplicas(options: {
  count: number;
  trustDomain: string;
  refreshHintSeconds: number;
}): Promise<ReplicaSet> {
  const server = await throwawayPg();
  const children = new Set<ChildProcess>();
  const work = mkdtempSync(join(tmpdir(), "aztp-replicas-"));
  let stopped = false;
  const kill = (): void => {
    for (const c of children) c.kill("SIGKILL");
  };
  process.on("exit", () => {
    if (stopped) return;
    kill();
    server.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const dbName = `aztp_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const storeUrl = server.url.replace(/\/[^/]*$/, `/${dbName}`);
  const kekFile = join(work, "kek");
  writeFileSync(kekFile, randomBytes(32), { mode: 0o600 });

  const start = async (r: Replica): Promise<void> => {
    const child = spawn(
      process.execPath,
      [
        // e.g. AZTP_BENCH_REPLICA_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the replicas
        ...(process.env.AZTP_BENCH_REPLICA_NODE_ARGS ?? "").split(" ").filter(Boolean),
        "--import",
        "tsx",
        join(root, "src/cli/main.ts"),
        "serve",
        "--store",
        storeUrl,
        "--kek-file",
        kekFile,
        "--trust-domain",
        options.trustDomain,
        "--listen",
        `127.0.0.1:${r.port}`,
        "--refresh-hint",
        String(options.refreshHintSeconds),
        // The benchmarks measure the service, not its per-key and per-client limits.
        "--issue-rate",
        "100000",
        "--issue-burst",
        "100000",
        "--token-rate",
        "100000",
        "--token-burst",
        "100000",
      ],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"] },
    );
    r.child = child;
    children.add(child);
    child.once("exit", () => children.delete(child));
    child.stderr?.resume();
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`replica ${r.name} did not start within 60 s`)), 60_000);
      const early = (code: number | null): void => reject(new Error(`replica ${r.name} exited with ${code} at start`));
      child.once("exit", early);
      lines.on("line", (line) => {
        if (!line.includes('"msg":"started"')) return;
        clearTimeout(timer);
        child.off("exit", early);
        r.url = (JSON.parse(line) as { url: string }).url;
        resolve();
      });
    });
  };

  const base = 20000 + Math.floor(Math.random() * 20000);
  const replicas: Replica[] = Array.from({ length: options.count }, (_, i) => ({
    name: String.fromCharCode(65 + i),
    port: base + i,
    url: "",
    child: undefined,
  }));
  await Promise.all(replicas.map(start));
  const stores = await openPostgresStores(storeUrl, { kekFile });
  const { key: apiKey } = await stores.apiKeys.create({ name: "bench" });
  const bundleFile = join(work, "bundle.pem");
  writeFileSync(bundleFile, (await EmbeddedAuthority.fromStores(stores)).bundle(options.trustDomain).toPem());
  return {
    server,
    storeUrl,
    trustDomain: options.trustDomain,
    work,
    replicas,
    stores,
    apiKey,
    bundleFile,
    start,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stores.close();
      for (const c of children) c.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 500));
      kill();
      server.stop();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
