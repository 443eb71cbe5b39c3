/**
 * What only the PostgreSQL stores promise (the shared suite is stores.test.ts): migrations
 * that replicas starting at once do not race, CA keys never in plaintext and bound to their
 * place, a KEK required and checked, news that survives a dropped LISTEN connection, and a
 * process that outlives its connections. Plus the embedded authority running on them.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it, type TestContext } from "node:test";
import pg from "pg";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { createCaKeyMaterial } from "../src/authority/ca.js";
import * as registry from "../src/authority/registry.js";
import { KeyEncryptionKey } from "../src/authority/sealed-key.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { migrate, MIGRATIONS } from "../src/store/postgres/migrations.js";
import { createPool, redactUrl } from "../src/store/postgres/pool.js";
import { openPostgresStores, type PostgresStores } from "../src/store/postgres/index.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

const TD = "pg.example";
const NOW = new Date();

async function fresh(t: TestContext): Promise<string | undefined> {
  return skipWithoutPg(t) ? undefined : pgDatabase(t);
}

async function open(
  t: TestContext,
  url: string,
  kek: Buffer,
  options: Parameters<typeof openPostgresStores>[1] = {},
): Promise<PostgresStores> {
  const s = await openPostgresStores(url, { kek, ...options });
  t.after(() => s.close());
  return s;
}

async function sql<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}

const config = () => ({
  version: 1 as const,
  defaultTrustDomain: TD,
  trustDomains: [TD],
  createdAt: NOW.toISOString(),
});

describe("PostgreSQL stores", () => {
  it("4 replicas migrating one fresh database at once: one applies, none fails, the schema is whole", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const conns = Array.from({ length: 4 }, () => createPool(url));
    t.after(() => Promise.all(conns.map((c) => c.pool.end())));
    const versions = await Promise.all(conns.map((c) => migrate(c)));
    assert.deepEqual(
      versions,
      [1, 1, 1, 1].map(() => MIGRATIONS.length),
    );
    const applied = await sql<{ version: number }>(url, "SELECT version FROM aztp_schema_migrations ORDER BY version");
    assert.deepEqual(
      applied.map((r) => r.version),
      MIGRATIONS.map((m) => m.version),
    );
    // And openPostgresStores on it, 4 at once too.
    const kek = randomBytes(32);
    await Promise.all(Array.from({ length: 4 }, () => open(t, url, kek)));
  });

  it("a database migrated by a newer version is refused, naming the migration", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const conn = createPool(url);
    t.after(() => conn.pool.end());
    await migrate(conn);
    await sql(url, "INSERT INTO aztp_schema_migrations (version, name) VALUES (999, 'from the future')");
    await assert.rejects(migrate(conn), (e: Error) => /999/.test(e.message) && /newer version/.test(e.message));
  });

  it("no KEK: refused at open, saying what to give; a malformed one too", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const saved = { kek: process.env.AZTP_KEK, file: process.env.AZTP_KEK_FILE };
    delete process.env.AZTP_KEK;
    delete process.env.AZTP_KEK_FILE;
    t.after(() => {
      if (saved.kek !== undefined) process.env.AZTP_KEK = saved.kek;
      if (saved.file !== undefined) process.env.AZTP_KEK_FILE = saved.file;
    });
    const missing = await rejectsWithCode(() => openPostgresStores(url, {}), "ERR_AUTHORITY_KEK_MISSING");
    assert.match(missing.message, /AZTP_KEK/);
    await rejectsWithCode(() => openPostgresStores(url, { kek: randomBytes(16) }), "ERR_AUTHORITY_KEK_INVALID");
    process.env.AZTP_KEK = randomBytes(32).toString("base64");
    const s = await openPostgresStores(url, {});
    await s.close();
    process.env.AZTP_KEK = "too-short";
    await rejectsWithCode(() => openPostgresStores(url, {}), "ERR_AUTHORITY_KEK_INVALID");
  });

  it("CA private keys are sealed: no plaintext in the database, the wrong KEK and a moved key are refused by name", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const kek = randomBytes(32);
    const s = await open(t, url, kek);
    const m = await createCaKeyMaterial(TD);
    assert.equal(await s.ca.create(config(), m), true);
    await s.ca.rotate(TD, await createCaKeyMaterial(TD, new Date(), m), new Date(Date.now() + 3600_000));
    const dump = JSON.stringify(await sql(url, "SELECT * FROM aztp_ca_generations"));
    assert.ok(!dump.includes("PRIVATE KEY"), "no PEM private key in any column");
    for (const pem of [m.rootKeyPem, m.intermediateKeyPem, m.jwtKeyPem]) {
      const body = pem
        .split("\n")
        .filter((l) => !l.startsWith("-----"))
        .join("");
      assert.ok(!dump.includes(body.slice(0, 40)), "no base64 of a private key either");
    }
    assert.ok(dump.includes("BEGIN CERTIFICATE"), "certificates are public and stored as they are");

    const other = await open(t, url, randomBytes(32));
    const wrong = await rejectsWithCode(() => other.ca.loadCa(TD), "ERR_AUTHORITY_KEK_INVALID");
    assert.match(wrong.message, new RegExp(TD.replace(".", "\\.")));
    assert.match(wrong.message, new RegExp(s.kek.id), "it names the KEK the keys were sealed under");

    // An attacker with write access to the table moves generation 1's sealed intermediate key into generation 2.
    await sql(
      url,
      "UPDATE aztp_ca_generations SET intermediate_key_sealed = (SELECT intermediate_key_sealed FROM aztp_ca_generations WHERE generation = 1) WHERE generation = 2",
    );
    const moved = await rejectsWithCode(() => s.ca.loadCa(TD), "ERR_AUTHORITY_KEK_INVALID");
    assert.match(moved.message, /intermediate key of trust domain pg\.example \(CA generation 2\)/);
    // And a flipped byte in a sealed key.
    const [row] = await sql<{ jwt_key_sealed: string }>(
      url,
      "SELECT jwt_key_sealed FROM aztp_ca_generations WHERE generation = 1",
    );
    const parts = (row?.jwt_key_sealed as string).split(".");
    const ct = Buffer.from(parts[4] as string, "base64url");
    ct[0] = (ct[0] as number) ^ 1;
    parts[4] = ct.toString("base64url");
    await sql(url, "UPDATE aztp_ca_generations SET jwt_key_sealed = $1 WHERE generation = 1", [parts.join(".")]);
    await sql(url, "UPDATE aztp_ca_generations SET intermediate_key_sealed = $1 WHERE generation = 2", [
      s.kek.seal(m.intermediateKeyPem, { trustDomain: TD, generation: 2, role: "intermediate" }),
    ]);
    await rejectsWithCode(() => s.ca.loadCa(TD), "ERR_AUTHORITY_KEK_INVALID");
  });

  it("sealed keys: a round trip, bound to trust domain, generation and role", () => {
    const kek = KeyEncryptionKey.generate();
    const ctx = { trustDomain: TD, generation: 3, role: "jwt" as const };
    const sealed = kek.seal("secret pem", ctx);
    assert.equal(kek.unseal(sealed, ctx), "secret pem");
    assert.notEqual(kek.seal("secret pem", ctx), sealed, "a fresh nonce per seal");
    for (const other of [
      { ...ctx, trustDomain: "evil.example" },
      { ...ctx, generation: 2 },
      { ...ctx, role: "root" as const },
    ]) {
      assert.throws(
        () => kek.unseal(sealed, other),
        (e: Error & { code?: string }) => e.code === "ERR_AUTHORITY_KEK_INVALID",
      );
    }
    assert.throws(
      () => kek.unseal("aztp-sealed.v9.x.y.z.w", ctx),
      (e: Error & { code?: string }) => e.code === "ERR_AUTHORITY_KEK_INVALID",
    );
  });

  it("a dropped LISTEN connection: news still arrives (reconnect, and the poll), and nothing crashes", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const kek = randomBytes(32);
    const writer = await open(t, url, kek);
    // No poll: only the notification path (and its reconnect) can tell the reader.
    const reader = await open(t, url, kek, { registry: { pollMs: 0 } });
    const rec = await writer.registry.mutate((s) =>
      registry.register(s, registry.workloadSpiffeId(TD, "production", "node", "a"), TD, { name: "a" }, NOW),
    );
    await until(2000, () => reader.registry.current().state.identities[rec.spiffeId] !== undefined);
    await sql(
      url,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    );
    await new Promise((r) => setTimeout(r, 100));
    await writer.registry.mutate((s) => registry.revoke(s, rec.spiffeId, "gone", NOW));
    // Missed while disconnected: the reconnect (after ~1 s) catches up.
    await until(4000, () => reader.registry.current().isRevoked(rec.spiffeId));
    // Every connection of the database cut: the next calls reconnect.
    await sql(
      url,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    await new Promise((r) => setTimeout(r, 100));
    await writer.registry
      .mutate((s) =>
        registry.register(s, registry.workloadSpiffeId(TD, "production", "node", "b"), TD, { name: "b" }, NOW),
      )
      .catch(() => undefined);
    const after = await writer.registry.mutate((s) => Object.keys(s.identities).length);
    assert.ok(after >= 1);
    assert.equal(await writer.replay.checkAndRemember("k", Date.now() + 10_000), true);
  });

  it("a connection cut in the middle of a mutation: that one fails with ERR_AUTHORITY_STORE_FAILED, the process lives on, the next one is written", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const s = await open(t, url, randomBytes(32), { registry: { pollMs: 0 } });
    const add = (name: string) => (st: registry.RegistryState) =>
      registry.register(st, registry.workloadSpiffeId(TD, "production", "node", name), TD, { name }, NOW);
    const cut = s.registry.mutate(async (st) => {
      add("lost")(st);
      // The transaction's connection is idle between two queries now: cut it, and give the
      // client time to hear of it (an 'error' event on a checked-out client).
      await sql(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      await new Promise((r) => setTimeout(r, 300));
    });
    await rejectsWithCode(() => cut, "ERR_AUTHORITY_STORE_FAILED");
    await s.registry.mutate(add("kept"));
    const names = Object.values((await s.registry.fresh()).state.identities).map((r) => r.name);
    assert.deepEqual(names, ["kept"]);
  });

  it("a store that cannot be reached fails at open with ERR_AUTHORITY_STORE_FAILED, without the password", async () => {
    const url = "postgres://aztp:s3cret@127.0.0.1:1/none";
    const e = await rejectsWithCode(
      () => openPostgresStores(url, { kek: randomBytes(32), pool: { connectionTimeoutMillis: 2000 } }),
      "ERR_AUTHORITY_STORE_FAILED",
    );
    assert.ok(!e.message.includes("s3cret"), e.message);
    assert.match(e.message, /127\.0\.0\.1:1/);
    assert.equal(redactUrl("postgres://u:pw@h:5/d?password=pw"), "postgres://u:***@h:5/d");
  });

  it("the embedded authority runs on the PostgreSQL stores: two replicas issue, revoke, rotate", async (t) => {
    const url = await fresh(t);
    if (url === undefined) return;
    const kek = randomBytes(32);
    const [s1, s2] = await Promise.all([open(t, url, kek), open(t, url, kek)]);
    const [a1, a2] = await Promise.all(
      [s1, s2].map((s) =>
        EmbeddedAuthority.fromStores({ registry: s.registry, ca: s.ca }, { create: true, trustDomain: TD }),
      ),
    );
    assert.deepEqual((a1 as EmbeddedAuthority).trustDomains, (a2 as EmbeddedAuthority).trustDomains);
    const key = await generateWorkloadKey();
    const issued = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a1 : a2)!.issueIdentity({ name: `agent-${i}` }, key.csr)),
    );
    const serials = new Set(issued.map((r) => r.svid.serial));
    assert.equal(serials.size, 10, "no serial twice");
    await a2!.refresh();
    const gens = await a1!.rotateCa(TD);
    assert.equal(gens.length, 2);
    await a2!.refresh();
    const after = await a2!.issueIdentity({ name: "after-rotation" }, key.csr);
    assert.ok(!serials.has(after.svid.serial));
    await a1!.revoke(issued[0]!.record.spiffeId, "test");
    await a2!.refresh();
    assert.equal(s2.registry.current().isRevoked(issued[0]!.record.spiffeId), true);
  });
});

async function until(ms: number, check: () => boolean): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) assert.fail(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
