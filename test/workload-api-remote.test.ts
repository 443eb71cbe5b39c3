/**
 * `aztp workload-api --server URL --trust-bundle F --socket PATH` (the real CLI, as a process),
 * backed by a real `aztp serve` (in this process, HTTPS, its own SVID) through the endpoint's
 * key (AZTP_API_KEY) scoped to one node's IDs, called by a client built from the official
 * workload.proto: FetchX509SVID gives the entry's SVID (verifying against the bundle it came
 * with and the service's), the entry outside the key's scope is not served, FetchJWTSVID's token
 * validates against the service's JWT bundle, and revoking the identity on the service ends its
 * SVID on the stream (the empty update) within the sync interval; a reissue brings a new one.
 * The lag from revoke to the empty update is measured and reported.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { samePublicKey } from "../src/spiffe/keys.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { registerWorkloadEntry } from "../src/workload-api/entries.js";
import { aztpCli, assertExit, CLI, tempDir } from "./helpers/authority-util.js";
import { startServe, type StartedServe } from "./helpers/serve-util.js";
import {
  connectWorkloadApi,
  splitDer,
  unary,
  WorkloadStream,
  type Any,
  type WorkloadClient,
} from "./helpers/workload-api-client.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const TD = "example.org";
const WEB = `spiffe://${TD}/node-a/web`;
const ELSEWHERE = `spiffe://${TD}/node-b/db`;
const uid = process.getuid?.() ?? -1;
/** The default --sync-interval. */
const SYNC_MS = 5000;

interface Endpoint {
  socketPath: string;
  process: ChildProcess;
  stderr: () => string;
}

/** `aztp workload-api --server …` as a process; resolves once it says where it serves. */
async function startEndpoint(t: TestContext, s: StartedServe, apiKey: string, extra: string[] = []): Promise<Endpoint> {
  const dir = mkdtempSync(join(tmpdir(), "aztp-wlremote-"));
  chmodSync(dir, 0o755);
  const socketPath = join(dir, "agent.sock");
  const bundle = join(dir, "bundle.pem");
  writeFileSync(bundle, s.bundlePem);
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      CLI,
      "--home",
      join(dir, "home"),
      "--server",
      s.url,
      "--trust-bundle",
      bundle,
      "workload-api",
      "--socket",
      socketPath,
      ...extra,
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, AZTP_API_KEY: apiKey } },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    child.once("exit", (code) => reject(new Error(`aztp workload-api exited ${code}: ${stderr}`)));
  });
  assert.match(line, new RegExp(`^serving the SPIFFE Workload API on unix://${socketPath} `));
  assert.ok(line.includes(`authority ${s.url.replace(/\/+$/, "")}`), line);
  return { socketPath, process: child, stderr: () => stderr };
}

function ids(msg: Any): string[] {
  return (msg.svids as Any[]).map((v) => v.spiffe_id as string);
}

describe("aztp workload-api --server: the Workload API from a remote aztp serve", () => {
  it("serves the entries of the key's scope: the X.509-SVID verifies, the JWT-SVID validates; a revocation on the service ends the SVID on the stream within the sync interval, a reissue brings it back", async (t) => {
    const s = await startServe(t, { trustDomain: TD, logLevel: "error" });
    const admin = await RemoteAuthority.connect({
      baseUrl: s.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    t.after(() => admin.close());
    const entries = admin.workloadEntries();
    await registerWorkloadEntry(admin, entries, { spiffeId: WEB, selectors: [`unix:uid:${uid}`], hint: "internal" });
    // This process matches it too, but it is outside the endpoint's key: not served.
    await registerWorkloadEntry(admin, entries, { spiffeId: ELSEWHERE, selectors: [`unix:uid:${uid}`] });
    const { key } = await s.newKey({ idPrefix: `spiffe://${TD}/node-a` }, "node-a endpoint");

    const endpoint = await startEndpoint(t, s, key);
    const client: WorkloadClient = connectWorkloadApi(endpoint.socketPath);
    t.after(() => client.close());

    const stream = new WorkloadStream(client, "FetchX509SVID");
    t.after(() => stream.cancel());
    const first = await stream.next(1, 10_000);
    assert.deepEqual(ids(first), [WEB], "the entry of the key's scope, and only it");
    const svid = first.svids[0];
    assert.equal(svid.hint, "internal");
    const chain = splitDer(svid.x509_svid);
    const sent = new TrustBundle({ trustDomain: TD, x509Authorities: splitDer(svid.bundle) });
    assert.equal(verifyX509Svid(chain, new BundleSet([sent])).id.toString(), WEB, "against the bundle it came with");
    assert.equal(verifyX509Svid(chain, admin.bundleSet()).id.toString(), WEB, "against the service's bundle");
    const key509 = createPrivateKey({ key: Buffer.from(svid.x509_svid_key), format: "der", type: "pkcs8" });
    assert.ok(samePublicKey(chain[0]!.publicKey, key509), "its key is the leaf's");
    assert.equal((await admin.get(WEB)).serials.includes(chain[0]!.serialNumber), true, "issued by the service");

    const jwt = await unary(client, "FetchJWTSVID", { audience: ["spiffe://example.org/db"] });
    assert.deepEqual(ids(jwt), [WEB], JSON.stringify(jwt));
    const validated = validateJwtSvid(jwt.svids[0].svid, admin.bundleSet(), { audience: "spiffe://example.org/db" });
    assert.equal(validated.id.toString(), WEB);
    const notMine = await unary(client, "FetchJWTSVID", { audience: ["x"], spiffe_id: ELSEWHERE });
    assert.equal(notMine.error, "PERMISSION_DENIED", "the ID outside the key's scope");

    // Revoked on the service (the route, as `aztp revoke --server` does): the empty update.
    const revokedAt = performance.now();
    await admin.revoke(WEB, "compromised");
    const empty = await stream.next(2, SYNC_MS + 5000);
    const lagMs = Math.round(stream.times[1]! - revokedAt);
    assert.deepEqual(empty.svids, [], "an empty update, as SPIRE's agent sends");
    t.diagnostic(`revocation lag (revoke on the service → empty update on the stream): ${lagMs} ms`);
    assert.ok(lagMs <= SYNC_MS + 1500, `within the sync interval and a tick: ${lagMs} ms`);
    assert.equal((await unary(client, "FetchJWTSVID", { audience: ["x"] })).error, "PERMISSION_DENIED");
    assert.equal(stream.error, undefined, "the stream stays open");

    const reissuedAt = performance.now();
    await admin.reissue(WEB);
    const back = await stream.next(3, SYNC_MS + 5000);
    assert.deepEqual(ids(back), [WEB], "a reissued identity comes on the same stream");
    t.diagnostic(`reissue → SVID on the stream: ${Math.round(stream.times[2]! - reissuedAt)} ms`);
    const newChain = splitDer(back.svids[0].x509_svid);
    assert.notEqual(newChain[0]!.serialNumber, chain[0]!.serialNumber);
    assert.equal(verifyX509Svid(newChain, admin.bundleSet()).id.toString(), WEB);
    assert.equal(endpoint.stderr(), "", "no warnings");
  });

  it("with --sync-interval 1s, revocations and new entries arrive within about a second", async (t) => {
    const s = await startServe(t, { trustDomain: TD, logLevel: "error" });
    const admin = await RemoteAuthority.connect({
      baseUrl: s.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    t.after(() => admin.close());
    const entries = admin.workloadEntries();
    await registerWorkloadEntry(admin, entries, { spiffeId: WEB, selectors: [`unix:uid:${uid}`] });
    const { key } = await s.newKey({ trustDomain: TD }, "endpoint");
    const endpoint = await startEndpoint(t, s, key, ["--sync-interval", "1s"]);
    const client = connectWorkloadApi(endpoint.socketPath);
    t.after(() => client.close());
    const stream = new WorkloadStream(client, "FetchX509SVID");
    t.after(() => stream.cancel());
    assert.deepEqual(ids(await stream.next(1, 10_000)), [WEB]);

    const API = `spiffe://${TD}/node-a/api`;
    let at = performance.now();
    await registerWorkloadEntry(admin, entries, { spiffeId: API, selectors: [`unix:uid:${uid}`] });
    assert.deepEqual(ids(await stream.next(2, 5000)).sort(), [API, WEB], "a new entry comes on the stream");
    t.diagnostic(`new entry → stream (sync 1 s): ${Math.round(stream.times[1]! - at)} ms`);

    at = performance.now();
    await admin.revoke(API, "test");
    assert.deepEqual(ids(await stream.next(3, 5000)), [WEB], "the revoked identity's SVID left out");
    const lagMs = Math.round(stream.times[2]! - at);
    t.diagnostic(`revocation lag (sync 1 s): ${lagMs} ms`);
    assert.ok(lagMs <= 1000 + 1500, `${lagMs} ms`);
  });

  it("usage errors exit 2: --sync-interval without --server, --kek-file with --server, a sync interval under a second", async (t) => {
    const home = tempDir(t);
    const cases: Array<[string[], RegExp]> = [
      [["workload-api", "--socket", "/tmp/x.sock", "--sync-interval", "5s"], /--sync-interval is for --server/],
      [["--server", "https://127.0.0.1:1", "workload-api", "--socket", "/tmp/x.sock", "--kek-file", "k"], /--kek-file/],
      [
        ["--server", "https://127.0.0.1:1", "workload-api", "--socket", "/tmp/x.sock", "--sync-interval", "0.5s"],
        /at least 1s/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await aztpCli(home, args);
      assertExit(r, 2, args.join(" "));
      assert.match(r.json.error.message, message);
    }
  });
});
