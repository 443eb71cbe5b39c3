/**
 * `aztp serve` publishes its shared audit log as a C2SP tiled transparency log. A client written
 * here from the specifications alone (c2sp.org/tlog-tiles, tlog-checkpoint, signed-note, RFC 6962;
 * hashing with node:crypto, not this library's tree) fetches the checkpoint, the hash tiles and
 * the entry bundles over HTTPS, checks the note's signature, recomputes the root from the
 * leaves, checks every higher tile against the tiles below and every entry against its leaf.
 * Only what the newest signed checkpoint covers is served; reading needs an unscoped key.
 * With Go installed, golang.org/x/mod/sumdb/tlog (an implementation we did not write) reads the
 * same tiles (test/go/tlogcheck).
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash, createPublicKey, verify } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { describe, it, type TestContext } from "node:test";
import pg from "pg";
import type { Checkpoint } from "../src/audit/checkpoint.js";
import type { AuditEntryInput } from "../src/audit/entry.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend } from "../src/serve/open.js";
import { startServe, type RunningServe } from "../src/serve/server.js";
import { openPostgresStores, type PostgresStores } from "../src/store/postgres/index.js";
import { x5cKeyOf } from "./helpers/audit-tree.js";
import { tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { serveRequest, startServe as startHomeServe, type ServeAnswer } from "./helpers/serve-util.js";

const TD = "pg-serve-tlog.test";
const PREFIX = "/v1/audit/tlog";

// ---- a C2SP tlog-tiles client, from the specifications ------------------------------------

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (entry: Buffer): Buffer => sha256(Buffer.from([0]), entry);
const nodeHash = (l: Buffer, r: Buffer): Buffer => sha256(Buffer.from([1]), l, r);

/** RFC 6962 §2.1 MTH over leaf hashes. */
function mth(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0] as Buffer;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** tlog-tiles: "index 1234067 will be encoded as x001/x234/067". */
function tileIndex(n: number): string {
  const groups: string[] = [];
  do {
    groups.unshift(String(n % 1000).padStart(3, "0"));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join("/");
}

function tilePath(level: number | "entries", index: number, width: number): string {
  return `${PREFIX}/tile/${level}/${tileIndex(index)}${width === 256 ? "" : `.p/${width}`}`;
}

interface ParsedCheckpoint {
  text: string;
  origin: string;
  size: number;
  root: Buffer;
  signatures: Array<{ name: string; keyId: Buffer; sig: Buffer }>;
}

/** tlog-checkpoint in a signed note: origin, size, base64 root, then a blank line and "— name base64(keyid||sig)" lines. */
function parseCheckpoint(note: string): ParsedCheckpoint {
  const split = note.indexOf("\n\n");
  assert.ok(split > 0, "a blank line ends the note text");
  const text = note.slice(0, split + 1);
  const [origin, size, root] = text.split("\n");
  const signatures = note
    .slice(split + 2)
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const m = /^\u2014 (\S+) (\S+)$/.exec(line);
      assert.ok(m !== null, `a signature line: ${line}`);
      const raw = Buffer.from(m[2] as string, "base64");
      return { name: m[1] as string, keyId: raw.subarray(0, 4), sig: raw.subarray(4) };
    });
  assert.match(size as string, /^(0|[1-9]\d*)$/);
  return {
    text,
    origin: origin as string,
    size: Number(size),
    root: Buffer.from(root as string, "base64"),
    signatures,
  };
}

/** Signature type 0x02 (transparency-dev witness ECDSA): key ID SHA-256(SPKI)[:4], ASN.1 signature over SHA-256 of the text. */
function verifyEcdsaNote(cp: ParsedCheckpoint, spki: Buffer): boolean {
  const keyId = sha256(spki).subarray(0, 4);
  const key = createPublicKey({ key: spki, format: "der", type: "spki" });
  return cp.signatures.some(
    (s) => s.name === cp.origin && s.keyId.equals(keyId) && verify("sha256", Buffer.from(cp.text, "utf8"), key, s.sig),
  );
}

/** Entry bundles: big-endian uint16 length-prefixed entries. */
function parseBundle(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length;) {
    assert.ok(at + 2 <= data.length, "a length prefix");
    const n = data.readUInt16BE(at);
    assert.ok(at + 2 + n <= data.length, "an entry as long as its prefix");
    out.push(data.subarray(at + 2, at + 2 + n));
    at += 2 + n;
  }
  return out;
}

type Fetch = (path: string, headers?: Record<string, string>) => Promise<ServeAnswer>;

/**
 * What a client of the published log does: the checkpoint, then every tile and bundle its size
 * requires. Returns what it read, having checked that it all fits together.
 */
async function readPublishedLog(get: Fetch): Promise<{ checkpoint: ParsedCheckpoint; entries: Buffer[] }> {
  const answer = await get(`${PREFIX}/checkpoint`);
  assert.equal(answer.status, 200, answer.text);
  assert.equal(answer.headers["content-type"], "text/plain; charset=utf-8");
  const checkpoint = parseCheckpoint(answer.text);
  const s = checkpoint.size;
  // Level 0: every leaf hash, from the full tiles and the partial one.
  const leaves: Buffer[] = [];
  const tiles = new Map<string, Buffer[]>();
  for (let level = 0; 256 ** level <= s; level++) {
    const count = Math.floor(s / 256 ** level); // hashes at this level
    for (let n = 0; n * 256 < count; n++) {
      const width = Math.min(256, count - n * 256);
      const tile = await get(tilePath(level, n, width));
      assert.equal(tile.status, 200, `${tilePath(level, n, width)}: ${tile.text}`);
      assert.equal(tile.headers["content-type"], "application/octet-stream");
      assert.equal(tile.bytes.length, width * 32);
      const hashes = Array.from({ length: width }, (_, i) => tile.bytes.subarray(i * 32, i * 32 + 32));
      tiles.set(`${level}/${n}`, hashes);
      if (level === 0) leaves.push(...hashes);
    }
  }
  assert.equal(leaves.length, s);
  assert.ok(mth(leaves).equals(checkpoint.root), "the root recomputed from the level-0 tiles is the checkpoint's");
  // Each hash at level l >= 1 is the MTH of a full tile at level l-1 (256 hashes of it).
  for (const [key, hashes] of tiles) {
    const [level, n] = key.split("/").map(Number) as [number, number];
    if (level === 0) continue;
    hashes.forEach((h, i) => {
      const below = tiles.get(`${level - 1}/${n * 256 + i}`);
      assert.ok(below !== undefined && below.length === 256, `tile ${level - 1}/${n * 256 + i} is full`);
      assert.ok(mth(below).equals(h), `tile ${level}/${n}[${i}] is the hash of tile ${level - 1}/${n * 256 + i}`);
    });
  }
  // Entry bundles: each entry hashes to its leaf.
  const entries: Buffer[] = [];
  for (let n = 0; n * 256 < s; n++) {
    const width = Math.min(256, s - n * 256);
    const bundle = await get(tilePath("entries", n, width));
    assert.equal(bundle.status, 200, bundle.text);
    const got = parseBundle(bundle.bytes);
    assert.equal(got.length, width);
    got.forEach((e, i) =>
      assert.ok(leafHash(e).equals(leaves[n * 256 + i] as Buffer), `entry ${n * 256 + i} hashes to its leaf`),
    );
    entries.push(...got);
  }
  return { checkpoint, entries };
}

// ---- the service ----------------------------------------------------------------------------

function entry(i: number, extra: Partial<AuditEntryInput> = {}): AuditEntryInput {
  return {
    side: i % 2 === 0 ? "caller" : "callee",
    caller: `spiffe://${TD}/workload/production/node/agent-${i % 7}`,
    callerVerified: true,
    callee: `spiffe://${TD}/workload/production/node/tools`,
    tool: `tool-${i}`,
    argsDigest: `digest-${i}`,
    decision: "allow",
    outcome: "ok",
    ...extra,
  };
}

async function serve(
  t: TestContext,
  url: string,
  kek: Buffer,
  intervalSeconds: number,
): Promise<{ running: RunningServe; stores: PostgresStores; key: string; get: Fetch }> {
  const backend = await openServeBackend(url, {
    kek,
    createTrustDomain: TD,
    audit: { checkpointEvery: 100_000, checkpointIntervalSeconds: intervalSeconds },
  });
  const running = await startServe({ backend, host: "127.0.0.1", port: 0, logger: jsonLogger("error", () => {}) });
  t.after(() => running.stop());
  const stores = await openPostgresStores(url, { kek });
  t.after(() => stores.close());
  const { key } = await stores.apiKeys.create({ name: "auditor" });
  const get: Fetch = (path, headers = {}) => serveRequest(running.url, path, { ca: running.bundlePem(), key, headers });
  return { running, stores, key, get };
}

async function pool(t: TestContext, url: string): Promise<pg.Pool> {
  const p = new pg.Pool({ connectionString: url });
  p.on("error", () => undefined);
  t.after(() => p.end());
  return p;
}

async function coveredBy(db: pg.Pool, size: number, ms = 20_000): Promise<Checkpoint> {
  const until = Date.now() + ms;
  for (;;) {
    const { rows } = await db.query<{ record: string }>(
      "SELECT record FROM aztp_audit_checkpoints ORDER BY seq DESC LIMIT 1",
    );
    const cp = rows[0] === undefined ? null : (JSON.parse(rows[0].record) as Checkpoint);
    if (cp !== null && cp.upTo >= size) return cp;
    assert.ok(Date.now() < until, `a checkpoint of ${size} entries within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const here = dirname(fileURLToPath(import.meta.url));

function run(
  file: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; timeout: number },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { ...options, encoding: "utf8", maxBuffer: 1 << 24 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : null, stdout, stderr }),
    );
  });
}

describe("aztp serve publishes its audit log as C2SP tiles", () => {
  it("a client from the specification reads checkpoint, tiles (three levels) and bundles, and they all agree; nothing past the checkpoint is served", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const { stores, get, running } = await serve(t, url, randomBytes(32), 0.3);
    const db = await pool(t, url);
    // 65,536 + 3 × 256 + 17: level 0 has 259 full tiles and one of 17, level 1 one full tile and
    // one of 3, level 2 one of 1. Written straight to the table (fast), signed by the service's timer.
    const size = 256 * 256 + 3 * 256 + 17;
    for (let at = 0; at < size; at += 2000)
      await Promise.all(
        Array.from({ length: Math.min(2000, size - at) }, (_, i) =>
          stores.audit.append(entry(at + i, at + i === 5 ? { reason: "naïve ✓ non-ASCII" } : {})),
        ),
      );
    const signed = await coveredBy(db, size);
    assert.equal(signed.upTo, size);
    const { checkpoint, entries } = await readPublishedLog(get);
    assert.equal(checkpoint.size, size);
    assert.ok(verifyEcdsaNote(checkpoint, x5cKeyOf(signed)), "the note is signed by the service's SVID key");
    assert.match(checkpoint.origin, new RegExp(`^${TD}/aztp/serve/audit/`));
    const lines = (await db.query<{ entry: string }>("SELECT entry FROM aztp_audit WHERE seq IN (1, 6) ORDER BY seq"))
      .rows;
    assert.equal(entries[0]?.toString("utf8"), lines[0]?.entry, "an entry's bytes are its line as stored");
    assert.equal(entries[5]?.toString("utf8"), lines[1]?.entry);

    // Caching as the specification recommends.
    const full = await get(tilePath(0, 3, 256));
    assert.match(String(full.headers["cache-control"]), /immutable/);
    assert.match(String(full.headers["cache-control"]), /private/, "authenticated: no shared cache");
    const partial = await get(tilePath(0, 259, 17));
    assert.doesNotMatch(String(partial.headers["cache-control"]), /immutable/);
    assert.match(String((await get(`${PREFIX}/checkpoint`)).headers["cache-control"]), /max-age=[0-5]\b/);
    const gz = await get(tilePath("entries", 0, 256), { "accept-encoding": "gzip" });
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.ok(gunzipSync(gz.bytes).equals((await get(tilePath("entries", 0, 256))).bytes));

    // A partial tile narrower than the newest checkpoint's is covered too; wider, or the next, is not.
    assert.equal((await get(tilePath(0, 259, 16))).status, 200);
    for (const path of [
      tilePath(0, 259, 18),
      tilePath(0, 259, 256),
      tilePath(0, 260, 1),
      tilePath(1, 1, 4),
      tilePath(2, 0, 2),
      tilePath(3, 0, 1),
      tilePath("entries", 259, 18),
      tilePath("entries", 260, 1),
      `${PREFIX}/tile/0/x000/003`, // not the one encoding of 3
      `${PREFIX}/tile/0/3`,
      `${PREFIX}/tile/00/003`,
      `${PREFIX}/tile/64/000.p/1`,
      `${PREFIX}/tile/0/003.p/0`,
      `${PREFIX}/tile/0/003.p/256`,
      `${PREFIX}/tile/0/003.p/016`,
    ]) {
      const r = await get(path);
      assert.equal(r.status, 404, `${path}: ${r.text}`);
      assert.equal(r.json?.error?.code, "ERR_SERVE_ROUTE_NOT_FOUND", path);
    }

    // More entries: served once a checkpoint covers them (never before: the newest one is read first).
    await Promise.all(Array.from({ length: 300 }, (_, i) => stores.audit.append(entry(size + i))));
    const early = await get(tilePath(0, 260, 1));
    const signedNow = (await db.query("SELECT max(up_to) AS n FROM aztp_audit_checkpoints")).rows[0].n;
    if (early.status === 200) assert.ok(Number(signedNow) >= 260 * 256 + 1, "served only once signed");
    else assert.equal(early.status, 404);
    await coveredBy(db, size + 300);
    // The service reads the newest checkpoint again at most once a second.
    for (let tries = 0; parseCheckpoint((await get(`${PREFIX}/checkpoint`)).text).size < size + 300; tries++) {
      assert.ok(tries < 40, "the served checkpoint follows the newest within seconds");
      await new Promise((r) => setTimeout(r, 100));
    }
    const grown = await readPublishedLog(get);
    assert.equal(grown.checkpoint.size, size + 300);
    assert.ok(
      grown.entries.slice(0, size).every((e, i) => e.equals(entries[i] as Buffer)),
      "the old entries unchanged",
    );
    await running.stop();
  });

  it("reading needs an unscoped API key: none is 401, a scoped key 403, the unscoped twin 200", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const { stores, get, running } = await serve(t, url, randomBytes(32), 0.2);
    const db = await pool(t, url);
    await Promise.all(Array.from({ length: 10 }, (_, i) => stores.audit.append(entry(i))));
    await coveredBy(db, 10);
    const scoped = (await stores.apiKeys.create({ name: "team", scope: { trustDomain: TD } })).key;
    for (const path of [`${PREFIX}/checkpoint`, tilePath(0, 0, 10), tilePath("entries", 0, 10)]) {
      const none = await serveRequest(running.url, path, { ca: running.bundlePem() });
      assert.equal(none.status, 401, path);
      assert.equal(none.json?.error?.code, "ERR_SERVE_API_KEY_INVALID");
      const narrow = await serveRequest(running.url, path, { ca: running.bundlePem(), key: scoped });
      assert.equal(narrow.status, 403, path);
      assert.equal(narrow.json?.error?.code, "ERR_SERVE_API_KEY_SCOPE_DENIED");
      assert.equal((await get(path)).status, 200, `${path} with an unscoped key`);
    }
    await running.stop();
  });

  it("an entry longer than a bundle's 16-bit length: its bundle is refused (501), its hash tile still served", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const { stores, get, running } = await serve(t, url, randomBytes(32), 0.2);
    const db = await pool(t, url);
    await stores.audit.append(entry(0));
    await stores.audit.append(entry(1, { token: "t".repeat(64 * 1024) }));
    await coveredBy(db, 2);
    const bundle = await get(tilePath("entries", 0, 2));
    assert.equal(bundle.status, 501, bundle.text);
    assert.equal(bundle.json?.error?.code, "ERR_SERVE_TLOG_ENTRY_TOO_LONG");
    const tile = await get(tilePath(0, 0, 2));
    assert.equal(tile.status, 200);
    assert.equal((await get(tilePath("entries", 0, 1))).status, 200, "the bundle of the entry before it is served");
    await running.stop();
  });

  it("a stored leaf hash changed under the signed tree: nothing is served from that tree (500)", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const { stores, get, running } = await serve(t, url, kek, 0.2);
    const db = await pool(t, url);
    await Promise.all(Array.from({ length: 5 }, (_, i) => stores.audit.append(entry(i))));
    await coveredBy(db, 5);
    assert.equal((await get(`${PREFIX}/checkpoint`)).status, 200, "the honest twin");
    // A fresh process (nothing cached) over a table whose third leaf hash was changed.
    await running.stop();
    await db.query("UPDATE aztp_audit SET leaf = sha256('forged'::bytea) WHERE seq = 3");
    const again = await serve(t, url, kek, 0.2);
    const cp = await again.get(`${PREFIX}/checkpoint`);
    assert.equal(cp.status, 500, cp.text);
    assert.equal(cp.json?.error?.code, "ERR_AUDIT_CORRUPT");
    assert.equal((await again.get(tilePath(0, 0, 5))).status, 500);
    await again.running.stop();
  });

  it("a home-folder store has no published log: 404, saying so", async (t) => {
    const s = await startHomeServe(t);
    const r = await serveRequest(s.url, `${PREFIX}/checkpoint`, { ca: s.bundlePem, key: s.apiKey });
    assert.equal(r.status, 404);
    assert.match(r.json?.error?.message, /PostgreSQL/);
  });

  it("Go's golang.org/x/mod/sumdb/tlog reads the served tiles: its tree hash is the checkpoint's root, its record proofs check", async (t) => {
    if (skipWithoutPg(t)) return;
    const go = spawnSync("go", ["version"], { encoding: "utf8" });
    const gopath = "/usr/share/gocode";
    if (go.status !== 0 || !existsSync(join(gopath, "src/golang.org/x/mod/sumdb/tlog"))) {
      t.skip("no Go with golang.org/x/mod (Debian: golang-go, golang-golang-x-mod-dev)");
      return;
    }
    const url = (await pgDatabase(t)) as string;
    const { stores, running, key } = await serve(t, url, randomBytes(32), 0.2);
    const db = await pool(t, url);
    const size = 256 * 3 + 100;
    await Promise.all(Array.from({ length: size }, (_, i) => stores.audit.append(entry(i))));
    await coveredBy(db, size);
    const dir = tempDir(t, "go");
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, running.bundlePem());
    mkdirSync(join(dir, "cache"), { recursive: true });
    // Asynchronously: the service answering the Go client runs in this very process.
    const r = await run("go", ["run", join(here, "go", "tlogcheck", "main.go")], {
      env: {
        ...process.env,
        GOPATH: gopath,
        GO111MODULE: "off",
        GOCACHE: join(dir, "cache"),
        TLOG_URL: `${running.url}${PREFIX}`,
        TLOG_KEY: key,
        TLOG_CA: caFile,
      },
      timeout: 180_000,
    });
    assert.equal(r.code, 0, `go run: ${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() as string) as { size: number; proven: number };
    assert.equal(out.size, size);
    assert.ok(out.proven >= 4);
    await running.stop();
  });
});
