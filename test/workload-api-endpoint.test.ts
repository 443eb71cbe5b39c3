/**
 * The Workload API endpoint (src/workload-api/endpoint.ts) on a real Unix socket, called by a
 * client built by @grpc/proto-loader from go-spiffe's workload.proto (not our description), with
 * callers attested by the kernel: this process, and children run as another uid.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { samePublicKey } from "../src/spiffe/keys.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { createPrivateKey } from "node:crypto";
import { WorkloadApiEndpoint } from "../src/workload-api/endpoint.js";
import { FileWorkloadEntryStore, registerWorkloadEntry } from "../src/workload-api/entries.js";
import {
  connectWorkloadApi as connect,
  REFERENCE_PROTO as REFERENCE,
  splitDer,
  unary,
  WorkloadStream as Stream,
  type Any,
  type WorkloadClient,
} from "./helpers/workload-api-client.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const uid = process.getuid?.() ?? -1;
const gid = process.getgid?.() ?? -1;
const root = uid === 0;
const OTHER = 65534; // nobody

/** Runs `node -e` as `runAs` (uid and gid), calling the endpoint; prints the answer as JSON. */
function callAs(runAs: number, socketPath: string, method: "FetchJWTSVID" | "FetchX509SVID"): Promise<Any> {
  const script = `
    const grpc = require(${JSON.stringify(join(ROOT, "node_modules", "@grpc", "grpc-js"))});
    const loader = require(${JSON.stringify(join(ROOT, "node_modules", "@grpc", "proto-loader"))});
    const def = loader.loadSync(${JSON.stringify(REFERENCE)}, { keepCase: true, defaults: true });
    const C = grpc.makeGenericClientConstructor(def.SpiffeWorkloadAPI, "SpiffeWorkloadAPI");
    const c = new C("unix://" + ${JSON.stringify(socketPath)}, grpc.credentials.createInsecure());
    const md = new grpc.Metadata(); md.set("workload.spiffe.io", "true");
    const done = (o) => { process.stdout.write(JSON.stringify(o)); process.exit(0); };
    if (${JSON.stringify(method)} === "FetchJWTSVID")
      c.FetchJWTSVID({ audience: ["spiffe://example.org/db"] }, md, (e, r) =>
        done(e ? { error: grpc.status[e.code], details: e.details } : { ids: r.svids.map((s) => s.spiffe_id) }));
    else {
      const s = c.FetchX509SVID({}, md);
      s.on("data", (r) => done({ ids: r.svids.map((s) => s.spiffe_id) }));
      s.on("error", (e) => done({ error: grpc.status[e.code], details: e.details }));
    }`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], {
      uid: runAs,
      gid: runAs,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    child.on("close", () => {
      try {
        resolve(JSON.parse(out) as Any);
      } catch {
        reject(new Error(`child printed ${JSON.stringify(out)}; stderr ${err}`));
      }
    });
  });
}

describe("the Workload API endpoint", () => {
  const dir = mkdtempSync(join(tmpdir(), "aztp-wlapi-"));
  chmodSync(dir, 0o755); // the socket is reached by children of another uid
  const socketPath = join(dir, "agent.sock");
  let authority: EmbeddedAuthority;
  let entries: FileWorkloadEntryStore;
  let endpoint: WorkloadApiEndpoint;
  let client: WorkloadClient;
  const warnings: string[] = [];
  const WEB = "spiffe://example.org/ns/default/sa/web";

  before(async () => {
    authority = await EmbeddedAuthority.init(join(dir, "home"), "example.org");
    entries = new FileWorkloadEntryStore(join(dir, "home"));
    await registerWorkloadEntry(authority, entries, {
      spiffeId: WEB,
      selectors: [`unix:uid:${uid}`],
      hint: "internal",
    });
    endpoint = await WorkloadApiEndpoint.start({
      socketPath,
      authority,
      entries,
      refreshMs: 100,
      onWarning: (m) => warnings.push(m),
    });
    client = connect(socketPath);
  });
  after(async () => {
    client?.close();
    await endpoint?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("listens on a socket any local user may connect to (mode 0666), attestation deciding what each gets", () => {
    const st = statSync(socketPath);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o666);
  });

  it("FetchX509SVID: the entry's SVID, its chain verifying against the bundle sent with it, its PKCS#8 key the leaf's, the hint", async () => {
    const s = new Stream(client, "FetchX509SVID");
    try {
      const first = await s.next(1);
      assert.equal(first.svids.length, 1);
      const svid = first.svids[0];
      assert.equal(svid.spiffe_id, WEB);
      assert.equal(svid.hint, "internal");
      const chain = splitDer(svid.x509_svid);
      const bundle = new TrustBundle({ trustDomain: "example.org", x509Authorities: splitDer(svid.bundle) });
      const verified = verifyX509Svid(chain, new BundleSet([bundle]));
      assert.equal(verified.id.toString(), WEB);
      const key = createPrivateKey({ key: Buffer.from(svid.x509_svid_key), format: "der", type: "pkcs8" });
      assert.ok(samePublicKey(chain[0]!.publicKey, key));
    } finally {
      s.cancel();
    }
  });

  it("FetchJWTSVID: a JWT-SVID for the audience asked, valid against the JWT bundle the stream sends; ValidateJWTSVID agrees", async () => {
    const res = await unary(client, "FetchJWTSVID", { audience: ["spiffe://example.org/db"] });
    assert.equal(res.svids.length, 1);
    assert.equal(res.svids[0].spiffe_id, WEB);
    const bundles = new Stream(client, "FetchJWTBundles");
    try {
      const msg = await bundles.next(1);
      const jwks = JSON.parse(Buffer.from(msg.bundles["spiffe://example.org"]).toString("utf8"));
      const bundle = TrustBundle.parseJwks(jwks, "example.org");
      const svid = validateJwtSvid(res.svids[0].svid, new BundleSet([bundle]), { audience: "spiffe://example.org/db" });
      assert.equal(svid.id.toString(), WEB);
    } finally {
      bundles.cancel();
    }
    const ok = await unary(client, "ValidateJWTSVID", { audience: "spiffe://example.org/db", svid: res.svids[0].svid });
    assert.equal(ok.spiffe_id, WEB);
    const wrong = await unary(client, "ValidateJWTSVID", {
      audience: "spiffe://example.org/other",
      svid: res.svids[0].svid,
    });
    assert.equal(wrong.error, "INVALID_ARGUMENT");
    const [h, p, sig] = (res.svids[0].svid as string).split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    const forged = [
      h,
      Buffer.from(JSON.stringify({ ...claims, sub: "spiffe://example.org/admin" })).toString("base64url"),
      sig,
    ].join(".");
    const tampered = await unary(client, "ValidateJWTSVID", { audience: "spiffe://example.org/db", svid: forged });
    assert.equal(tampered.error, "INVALID_ARGUMENT");
  });

  for (const [method, req] of [
    ["FetchJWTSVID", { audience: ["x"] }],
    ["ValidateJWTSVID", { audience: "x", svid: "a.b.c" }],
  ] as const) {
    it(`${method} without the workload.spiffe.io header: INVALID_ARGUMENT`, async () => {
      const res = await unary(client, method, req, new grpc.Metadata());
      assert.equal(res.error, "INVALID_ARGUMENT");
      assert.match(res.details, /security header/);
    });
  }
  for (const method of ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles"]) {
    it(`${method} without the workload.spiffe.io header: INVALID_ARGUMENT, and with it, a first message`, async () => {
      const bare = new Stream(client, method, new grpc.Metadata());
      await assert.rejects(bare.next(1), /stream ended/);
      assert.equal(bare.error?.code, "INVALID_ARGUMENT");
      const ok = new Stream(client, method);
      try {
        await ok.next(1);
      } finally {
        ok.cancel();
      }
    });
  }

  it("FetchJWTSVID refuses an empty audience (INVALID_ARGUMENT) and an ID that is not the caller's (PERMISSION_DENIED)", async () => {
    assert.equal((await unary(client, "FetchJWTSVID", { audience: [] })).error, "INVALID_ARGUMENT");
    const other = await unary(client, "FetchJWTSVID", {
      audience: ["x"],
      spiffe_id: "spiffe://example.org/ns/default/sa/admin",
    });
    assert.equal(other.error, "PERMISSION_DENIED");
    const own = await unary(client, "FetchJWTSVID", { audience: ["x"], spiffe_id: WEB });
    assert.equal(own.svids[0].spiffe_id, WEB);
  });

  it(
    "a process of another uid that matches no entry gets PERMISSION_DENIED; an entry for its uid gives it that identity alone",
    {
      skip: root ? false : "needs root to run a process as another uid",
    },
    async () => {
      assert.deepEqual(await callAs(OTHER, socketPath, "FetchJWTSVID"), {
        error: "PERMISSION_DENIED",
        details: "no identity issued",
      });
      assert.equal((await callAs(OTHER, socketPath, "FetchX509SVID")).error, "PERMISSION_DENIED");
      const NOBODY = "spiffe://example.org/ns/default/sa/nobody";
      const entry = await registerWorkloadEntry(authority, entries, {
        spiffeId: NOBODY,
        selectors: [`unix:uid:${OTHER}`],
      });
      try {
        await new Promise((r) => setTimeout(r, 300)); // the endpoint reads entries every 100 ms here
        assert.deepEqual(await callAs(OTHER, socketPath, "FetchJWTSVID"), { ids: [NOBODY] });
        assert.deepEqual(await callAs(OTHER, socketPath, "FetchX509SVID"), { ids: [NOBODY] });
      } finally {
        await entries.delete(entry.entryId);
      }
    },
  );

  it("two entries matching one caller: two SVIDs, each over its own key; unix:path matches the caller's executable", async () => {
    const API = "spiffe://example.org/ns/default/sa/api";
    const entry = await registerWorkloadEntry(authority, entries, {
      spiffeId: API,
      selectors: [`unix:uid:${uid}`, `unix:gid:${gid}`, `unix:path:${realpathSync(process.execPath)}`],
    });
    const elsewhere = await registerWorkloadEntry(authority, entries, {
      spiffeId: "spiffe://example.org/ns/default/sa/python",
      selectors: [`unix:uid:${uid}`, "unix:path:/usr/bin/python3.11"],
    });
    await new Promise((r) => setTimeout(r, 300));
    const s = new Stream(client, "FetchX509SVID");
    try {
      const first = await s.next(1);
      const ids = first.svids.map((x: Any) => x.spiffe_id).sort();
      assert.deepEqual(ids, [API, WEB].sort());
      const keys = first.svids.map((x: Any) => Buffer.from(x.x509_svid_key).toString("hex"));
      assert.notEqual(keys[0], keys[1]);
    } finally {
      s.cancel();
      await entries.delete(entry.entryId);
      await entries.delete(elsewhere.entryId);
    }
  });

  it("a stream follows: a deleted entry and a revoked identity end the SVID (an empty update), a reissue brings a new one", async () => {
    const TEMP = "spiffe://example.org/ns/default/sa/temp";
    const entry = await registerWorkloadEntry(authority, entries, { spiffeId: TEMP, selectors: [`unix:gid:${gid}`] });
    await new Promise((r) => setTimeout(r, 300));
    const s = new Stream(client, "FetchX509SVID");
    try {
      const has = (m: Any, id: string): boolean => m.svids.some((x: Any) => x.spiffe_id === id);
      assert.ok(has(await s.next(1), TEMP));
      await authority.revoke(TEMP, "compromised");
      const revoked = await s.next(2, 3000);
      assert.ok(!has(revoked, TEMP) && has(revoked, WEB));
      const jwt = await unary(client, "FetchJWTSVID", { audience: ["x"], spiffe_id: TEMP });
      assert.equal(jwt.error, "PERMISSION_DENIED");
      await authority.reissue(TEMP);
      assert.ok(has(await s.next(3, 3000), TEMP));
      await entries.delete(entry.entryId);
      assert.ok(!has(await s.next(4, 3000), TEMP));
    } finally {
      s.cancel();
      await entries.delete(entry.entryId);
    }
  });

  it("a CA rotation (a new intermediate and JWT key under the same root) reaches the JWT bundle stream", async () => {
    const x509 = new Stream(client, "FetchX509Bundles");
    const jwt = new Stream(client, "FetchJWTBundles");
    try {
      const before = await x509.next(1);
      const beforeJwt = await jwt.next(1);
      const kids = (m: Any): string[] =>
        JSON.parse(Buffer.from(m.bundles["spiffe://example.org"]).toString()).keys.map((k: Any) => k.kid);
      await authority.rotateCa("example.org");
      const afterJwt = await jwt.next(2, 3000);
      assert.equal(kids(afterJwt).length, kids(beforeJwt).length + 1);
      assert.ok(
        kids(beforeJwt).every((k) => kids(afterJwt).includes(k)),
        "the old key stays until what it signed expires",
      );
      // The root is the same, so the X.509 bundle is too: nothing new is pushed for it.
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(x509.messages.length, 1);
      assert.equal(splitDer(before.bundles["spiffe://example.org"]).length, 1);
    } finally {
      x509.cancel();
      jwt.cancel();
    }
  });
});

describe("the Workload API endpoint's SVIDs rotate", () => {
  it("at half-life, and the stream has the new SVID, over a new key (bench/ measures how soon)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-wlapi-rot-"));
    const socketPath = join(dir, "agent.sock");
    const authority = await EmbeddedAuthority.init(join(dir, "home"), "example.org");
    const entries = new FileWorkloadEntryStore(join(dir, "home"));
    await registerWorkloadEntry(authority, entries, {
      spiffeId: "spiffe://example.org/rot",
      selectors: [`unix:uid:${uid}`],
    });
    const endpoint = await WorkloadApiEndpoint.start({ socketPath, authority, entries, svidTtlSeconds: 4 });
    const client = connect(socketPath);
    const s = new Stream(client, "FetchX509SVID");
    try {
      const first = await s.next(1);
      const leaf1 = splitDer(first.svids[0].x509_svid)[0]!;
      const second = await s.next(2, 6000);
      const leaf2 = splitDer(second.svids[0].x509_svid)[0]!;
      assert.notEqual(leaf1.serialNumber, leaf2.serialNumber);
      assert.notEqual(
        Buffer.from(first.svids[0].x509_svid_key).toString("hex"),
        Buffer.from(second.svids[0].x509_svid_key).toString("hex"),
      );
    } finally {
      s.cancel();
      client.close();
      await endpoint.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the Workload API endpoint's socket", () => {
  it("replaces a stale socket, refuses a file that is not a socket and a socket an endpoint is serving", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-wlapi-sock-"));
    try {
      const authority = await EmbeddedAuthority.init(join(dir, "home"), "example.org");
      const entries = new FileWorkloadEntryStore(join(dir, "home"));
      const plain = join(dir, "plain");
      writeFileSync(plain, "not a socket");
      await assert.rejects(WorkloadApiEndpoint.start({ socketPath: plain, authority, entries }), {
        code: "ERR_ARGUMENT_INVALID",
      });
      const socketPath = join(dir, "agent.sock");
      const first = await WorkloadApiEndpoint.start({ socketPath, authority, entries });
      await assert.rejects(WorkloadApiEndpoint.start({ socketPath, authority, entries }), /in use/);
      await first.close();
      // A socket file left behind by an endpoint that died: its process killed, the file still there.
      const dead = spawn(process.execPath, [
        "-e",
        `require("node:net").createServer().listen(${JSON.stringify(socketPath)}, () => console.log("up"))`,
      ]);
      await new Promise<void>((r) => dead.stdout!.once("data", () => r()));
      dead.kill("SIGKILL");
      await new Promise<void>((r) => dead.once("close", () => r()));
      assert.ok(statSync(socketPath).isSocket());
      const second = await WorkloadApiEndpoint.start({ socketPath, authority, entries });
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
