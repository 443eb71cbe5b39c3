/**
 * The replica load test (`npm run bench:replicas`): two `aztp serve` processes on one
 * PostgreSQL, clients spread over both, and the faults a deployment meets.
 *
 *   1. 500 concurrent secureConnects (each followed by an audit entry on the shared log).
 *      Mid-run, one replica is killed (SIGKILL) and started again; later PostgreSQL itself is
 *      restarted (fast shutdown: every connection cut). Clients retry what failed.
 *   2. 50 concurrent revocations, half through each replica; each is then watched for on a
 *      client of each replica until its verified revocation feed shows it.
 *   3. Checks, against the store itself: every acknowledged identity and serial is there, no
 *      serial twice, every acknowledged revocation is in the registry and the signed lists,
 *      every acknowledged audit entry is in the log, and the exported chain verifies.
 *
 * Options: --connects N (500), --revocations N (50), --refresh-hint S (1), --no-faults.
 * PostgreSQL: a throwaway server (bench/helpers/throwaway-pg.ts), or AZTP_BENCH_PG_URL (then
 * PostgreSQL is not restarted). Prints a JSON summary, writes bench/results/replicas.json,
 * and exits 1 if a check failed.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import aztp, { type Aztp } from "../src/index.js";
import { verifyAuditLog } from "../src/audit/verify.js";
import type { AuditEntryInput } from "../src/audit/entry.js";
import type { RemoteAuthority } from "../src/client/remote-authority.js";
import { AztpError } from "../src/errors.js";
import { startReplicas, type Replica } from "./helpers/serve-replicas.js";

const here = dirname(fileURLToPath(import.meta.url));
const { values: opts } = parseArgs({
  options: {
    connects: { type: "string", default: "500" },
    revocations: { type: "string", default: "50" },
    "refresh-hint": { type: "string", default: "1" },
    "no-faults": { type: "boolean", default: false },
  },
});
const CONNECTS = Number(opts.connects);
const REVOCATIONS = Number(opts.revocations);
const HINT_S = Number(opts["refresh-hint"]);
const FAULTS = !opts["no-faults"];
const TD = "replicas.test";
const CLIENTS_PER_REPLICA = 5;

const log = (msg: string): void => void process.stderr.write(`[replicas] ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- the world: PostgreSQL, a database, a KEK, two replicas started at once ----

const world = await startReplicas({ count: 2, trustDomain: TD, refreshHintSeconds: HINT_S });
const { server, replicas, stores, apiKey, bundleFile, work } = world;
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));
log(`replicas up: ${replicas.map((r) => r.url).join(", ")}`);

interface Client {
  replica: Replica;
  client: Aztp;
  remote: RemoteAuthority;
}
const clients: Client[] = [];
for (const replica of replicas) {
  for (let i = 0; i < CLIENTS_PER_REPLICA; i++) {
    const client = aztp.initialize({
      apiKey,
      baseUrl: `https://127.0.0.1:${replica.port}`,
      trustBundle: bundleFile,
      home: join(work, `home-${replica.name}-${i}`),
      refreshHintSeconds: HINT_S,
    });
    clients.push({ replica, client, remote: (await client.authority()) as RemoteAuthority });
  }
}

// ---- retries, and what each client saw ----

type Phase = "normal" | "replica-down" | "pg-restart";
let phase: Phase = "normal";
const errors: Record<string, Record<Phase, Record<string, number>>> = {
  A: { normal: {}, "replica-down": {}, "pg-restart": {} },
  B: { normal: {}, "replica-down": {}, "pg-restart": {} },
};
const unclear: string[] = [];

async function withRetry<T>(c: Client, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const code = e instanceof AztpError ? e.code : `not an AztpError: ${(e as Error).message}`;
      const seen = errors[c.replica.name]![phase];
      seen[code] = (seen[code] ?? 0) + 1;
      if (!(e instanceof AztpError)) unclear.push(`${what}: ${String(e)}`);
      if (attempt >= 60) throw e;
      await sleep(250);
    }
  }
}

// ---- phase 1: connects, a replica killed, PostgreSQL restarted ----

const acknowledged: Array<{ i: number; aztpId: string; spiffeId: string; serial: string; client: Client }> = [];
const auditAcked = new Set<string>();
let replicaKilledAt = 0;
let pgRestarted = false;

let ackedAtKill = 0;
let ackedAtPgRestart = 0;

async function faults(): Promise<void> {
  if (!FAULTS) return;
  while (auditAcked.size < CONNECTS * 0.2) await sleep(20);
  const b = replicas[1]!;
  ackedAtKill = auditAcked.size;
  log(`killing replica B (SIGKILL) after ${ackedAtKill} connects done (audit entry included)`);
  phase = "replica-down";
  replicaKilledAt = Date.now();
  b.child?.kill("SIGKILL");
  await sleep(1500);
  await world.start(b);
  log(`replica B back after ${Date.now() - replicaKilledAt} ms`);
  // B's clients were held up while it was down: PostgreSQL goes down while they catch up, so
  // the restart lands in the middle of their writes, whatever this machine's speed.
  phase = "normal";
  if (server.restart) {
    // A connect is done once its audit entry is acknowledged too.
    ackedAtPgRestart = auditAcked.size;
    log(`restarting PostgreSQL after ${ackedAtPgRestart} connects done (audit entry included)`);
    phase = "pg-restart";
    server.restart();
    pgRestarted = true;
    log("PostgreSQL back");
    await sleep(1000);
    phase = "normal";
  }
}

const started = Date.now();
const faulting = faults();
await Promise.all(
  Array.from({ length: CONNECTS }, async (_, i) => {
    const c = clients[i % clients.length]!;
    const secured = await withRetry(c, `secureConnect ${i}`, () => c.client.secureConnect({}, `agent-${i}`));
    acknowledged.push({
      i,
      aztpId: secured.identity.aztpId,
      spiffeId: secured.identity.spiffeId,
      serial: secured.identity.serial,
      client: c,
    });
    const entry: AuditEntryInput = {
      side: "caller",
      caller: secured.identity.spiffeId,
      callerVerified: true,
      callee: `spiffe://${TD}/aztp/serve`,
      tool: "load.connect",
      argsDigest: createHash("sha256").update(String(i)).digest("hex"),
      decision: "allow",
      outcome: "ok",
      jti: `connect-${i}`,
    };
    await withRetry(c, `audit ${i}`, () => c.remote.auditLog().append(entry));
    auditAcked.add(`connect-${i}`);
  }),
);
await faulting;
const connectSeconds = (Date.now() - started) / 1000;
log(`${acknowledged.length} connects in ${connectSeconds.toFixed(1)} s`);

// ---- phase 2: revocations, and how long until each replica's clients see them ----

const targets = acknowledged.slice(0, REVOCATIONS);
const revokedAcked: string[] = [];
const visibleAfterMs: number[] = [];
await Promise.all(
  targets.map(async (t, k) => {
    const via = clients.filter((c) => c.replica === replicas[k % 2])[k % CLIENTS_PER_REPLICA]!;
    await withRetry(via, `revoke ${t.aztpId}`, () => via.client.revokeIdentity(t.aztpId, "load test"));
    const ackedAt = Date.now();
    revokedAcked.push(t.spiffeId);
    // A client of each replica that did not make the revocation: its feed must show it.
    const watchers = replicas.map((r) => clients.find((c) => c.replica === r && c !== via)!);
    await Promise.all(
      watchers.map(async (w) => {
        while (!w.remote.isRevoked(t.spiffeId)) {
          if (Date.now() - ackedAt > 30_000)
            throw new Error(`revocation of ${t.aztpId} not visible through replica ${w.replica.name} after 30 s`);
          await sleep(20);
        }
        visibleAfterMs.push(Date.now() - ackedAt);
      }),
    );
  }),
);

// ---- phase 3: checks against the store ----

const failures: string[] = [];
const { state } = await stores.registry.fresh();
const allSerials: string[] = Object.values(state.identities).flatMap((r) => r.serials);
if (new Set(allSerials).size !== allSerials.length)
  failures.push(`duplicated serials: ${allSerials.length - new Set(allSerials).size}`);
for (const a of acknowledged) {
  const rec = Object.values(state.identities).find((r) => r.spiffeId === a.spiffeId);
  if (rec === undefined) failures.push(`acknowledged identity ${a.aztpId} missing`);
  else if (!rec.serials.includes(a.serial)) failures.push(`acknowledged serial ${a.serial} of ${a.aztpId} missing`);
}
for (const id of revokedAcked)
  if (state.revocations.identities[id] === undefined)
    failures.push(`acknowledged revocation of ${id} missing from the registry`);
const exportFile = join(work, "audit.jsonl");
await stores.audit.exportJsonl(exportFile);
const verified = await verifyAuditLog(exportFile);
if (!verified.ok) failures.push(`the exported audit chain does not verify: ${JSON.stringify(verified).slice(0, 300)}`);
const logged = await readJtis(exportFile);
for (const jti of auditAcked) if (!logged.has(jti)) failures.push(`acknowledged audit entry ${jti} missing`);
if (acknowledged.length !== CONNECTS) failures.push(`${CONNECTS - acknowledged.length} connects never succeeded`);
const otherDuringKill = errors.A!["replica-down"]!;
if (Object.keys(otherDuringKill).length > 0)
  failures.push(`clients of replica A saw errors while B was down: ${JSON.stringify(otherDuringKill)}`);
if (FAULTS && !(ackedAtKill < CONNECTS))
  failures.push("the replica was killed after every connect and its audit entry were done: not mid-run");
if (FAULTS && pgRestarted && !(ackedAtPgRestart < CONNECTS))
  failures.push("PostgreSQL was restarted after every connect and its audit entry were done: not mid-run");
if (unclear.length > 0) failures.push(`errors that are not AztpError: ${unclear.slice(0, 3).join("; ")}`);

async function readJtis(file: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.includes('"jti"')) continue;
    const e = JSON.parse(line) as { jti?: string };
    if (e.jti) out.set(e.jti, (out.get(e.jti) ?? 0) + 1);
  }
  return out;
}

visibleAfterMs.sort((a, b) => a - b);
const summary = {
  connects: acknowledged.length,
  connect_seconds: Number(connectSeconds.toFixed(2)),
  connects_per_s: Number((acknowledged.length / connectSeconds).toFixed(1)),
  serials: allSerials.length,
  duplicated_serials: allSerials.length - new Set(allSerials).size,
  revocations: revokedAcked.length,
  refresh_hint_s: HINT_S,
  revocation_visible_p50_ms: visibleAfterMs[Math.floor(visibleAfterMs.length / 2)] ?? null,
  revocation_visible_max_ms: visibleAfterMs[visibleAfterMs.length - 1] ?? null,
  audit_acknowledged: auditAcked.size,
  audit_in_log: [...logged.values()].reduce((a, b) => a + b, 0),
  audit_retried_duplicates: [...logged.values()].filter((n) => n > 1).length,
  audit_chain_verifies: verified.ok,
  // How many connects (with their audit entries) were done when each fault struck.
  faults: FAULTS
    ? { replica_killed_after_done: ackedAtKill, postgres_restarted_after_done: pgRestarted ? ackedAtPgRestart : null }
    : "off",
  errors_seen_by_clients: errors,
  failures,
};
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
mkdirSync(join(here, "results"), { recursive: true });
writeFileSync(
  join(here, "results", "replicas.json"),
  `${JSON.stringify({ ...summary, measured_at: Date.now() }, null, 2)}\n`,
);

for (const c of clients) await c.client.close();
await world.stop();
process.exit(failures.length > 0 ? 1 : 0);
