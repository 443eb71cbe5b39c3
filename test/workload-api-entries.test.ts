/**
 * Registration entries of the Workload API (workload-api/entries.ts): the rules every store
 * applies, table-driven with a passing twin for each refusal; one behaviour suite run against
 * the home folder and PostgreSQL (skipped, saying so, without AZTP_TEST_PG_URL), two instances
 * on one location standing for two processes or replicas; and an entry's SPIFFE ID as an
 * identity of the authority, which `revoke` ends and `renewSvid` / `mintJwtSvid` issue for.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { ErrorCodes, isAztpError } from "../src/errors.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import { parseX509Svid, verifyX509Svid } from "../src/spiffe/x509svid.js";
import {
  checkNewWorkloadEntry,
  FileWorkloadEntryStore,
  MAX_WORKLOAD_ENTRY_HINT,
  MAX_WORKLOAD_ENTRY_SELECTORS,
  registerWorkloadEntry,
  type NewWorkloadEntry,
  type WorkloadEntryStore,
} from "../src/workload-api/entries.js";
import { openPostgresStores, type PostgresStores } from "../src/store/postgres/index.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

const WEB = "spiffe://aztp.local/ns/default/sa/web";
const good = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  spiffeId: WEB,
  selectors: ["unix:uid:1000"],
  ...over,
});

function refusedWith(fn: () => unknown, rule: string, what: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(isAztpError(caught), `${what}: expected ERR_WORKLOAD_ENTRY_INVALID, got ${String(caught)}`);
  assert.equal(caught.code, ErrorCodes.WORKLOAD_ENTRY_INVALID, `${what}: ${caught.message}`);
  assert.equal(caught.rule, rule, `${what}: rule (${caught.message})`);
}

describe("checkNewWorkloadEntry", () => {
  // Each refusal beside the entry that differs from it only in what is refused, and passes.
  const cases: Array<{ what: string; bad: unknown; rule: string; twin: Record<string, unknown> }> = [
    { what: "not an object", bad: "spiffe://aztp.local/x", rule: "field", twin: good() },
    { what: "an array", bad: [WEB, ["unix:uid:1"]], rule: "field", twin: good() },
    { what: "a member it does not know", bad: good({ hnit: "x" }), rule: "field", twin: good({ hint: "x" }) },
    { what: "no SPIFFE ID", bad: good({ spiffeId: undefined }), rule: "spiffe_id", twin: good() },
    { what: "a SPIFFE ID that is a number", bad: good({ spiffeId: 7 }), rule: "spiffe_id", twin: good() },
    {
      what: "another scheme",
      bad: good({ spiffeId: "https://aztp.local/web" }),
      rule: "spiffe_id",
      twin: good({ spiffeId: "spiffe://aztp.local/web" }),
    },
    {
      what: "a dot segment",
      bad: good({ spiffeId: "spiffe://aztp.local/ns/../web" }),
      rule: "spiffe_id",
      twin: good({ spiffeId: "spiffe://aztp.local/ns/x/web" }),
    },
    {
      what: "a trailing slash",
      bad: good({ spiffeId: "spiffe://aztp.local/web/" }),
      rule: "spiffe_id",
      twin: good({ spiffeId: "spiffe://aztp.local/web" }),
    },
    {
      what: "a character a path may not hold",
      bad: good({ spiffeId: "spiffe://aztp.local/we b" }),
      rule: "spiffe_id",
      twin: good({ spiffeId: "spiffe://aztp.local/we_b" }),
    },
    {
      what: "the trust domain's own ID",
      bad: good({ spiffeId: "spiffe://aztp.local" }),
      rule: "spiffe_id",
      twin: good({ spiffeId: "spiffe://aztp.local/a" }),
    },
    {
      what: "an ID over 2048 bytes",
      bad: good({ spiffeId: `spiffe://aztp.local/${"a".repeat(2040)}` }),
      rule: "spiffe_id",
      twin: good({ spiffeId: `spiffe://aztp.local/${"a".repeat(2000)}` }),
    },
    { what: "no selectors member", bad: good({ selectors: undefined }), rule: "selectors", twin: good() },
    { what: "no selector", bad: good({ selectors: [] }), rule: "selectors", twin: good({ selectors: ["unix:gid:0"] }) },
    { what: "selectors not a list", bad: good({ selectors: "unix:uid:1" }), rule: "selectors", twin: good() },
    {
      what: "more than 32 selectors",
      bad: good({ selectors: Array.from({ length: MAX_WORKLOAD_ENTRY_SELECTORS + 1 }, (_, i) => `unix:uid:${i}`) }),
      rule: "selectors",
      twin: good({ selectors: Array.from({ length: MAX_WORKLOAD_ENTRY_SELECTORS }, (_, i) => `unix:uid:${i}`) }),
    },
    { what: "a selector that is not a string", bad: good({ selectors: [1000] }), rule: "selector", twin: good() },
    {
      what: "a selector of another type",
      bad: good({ selectors: ["k8s:ns:default"] }),
      rule: "selector",
      twin: good({ selectors: ["unix:uid:0"] }),
    },
    {
      what: "a uid that is not a number",
      bad: good({ selectors: ["unix:uid:root"] }),
      rule: "selector",
      twin: good({ selectors: ["unix:uid:0"] }),
    },
    {
      what: "a relative path",
      bad: good({ selectors: ["unix:path:usr/bin/python3"] }),
      rule: "selector",
      twin: good({ selectors: ["unix:path:/usr/bin/python3"] }),
    },
    {
      what: "a selector given twice",
      bad: good({ selectors: ["unix:uid:1000", "unix:uid:1000"] }),
      rule: "selector",
      twin: good({ selectors: ["unix:uid:1000", "unix:gid:1000"] }),
    },
    { what: "an empty hint", bad: good({ hint: "" }), rule: "hint", twin: good({ hint: "internal" }) },
    {
      what: "an overlong hint",
      bad: good({ hint: "h".repeat(MAX_WORKLOAD_ENTRY_HINT + 1) }),
      rule: "hint",
      twin: good({ hint: "h".repeat(MAX_WORKLOAD_ENTRY_HINT) }),
    },
    { what: "a hint with a newline", bad: good({ hint: "a\nb" }), rule: "hint", twin: good({ hint: "a b" }) },
    { what: "a hint with an escape", bad: good({ hint: "\u001b[31m" }), rule: "hint", twin: good({ hint: "[31m" }) },
    { what: "a hint that is not a string", bad: good({ hint: 1 }), rule: "hint", twin: good({ hint: "1" }) },
  ];
  for (const c of cases) {
    it(`refuses ${c.what}; its twin passes`, () => {
      refusedWith(() => checkNewWorkloadEntry(c.bad), c.rule, c.what);
      assert.doesNotThrow(() => checkNewWorkloadEntry(c.twin), `${c.what}: the twin must pass`);
    });
  }

  it("keeps the spiffe:// form of an aztp:// ID, the selectors formatted and sorted, and the hint", () => {
    assert.deepEqual(
      checkNewWorkloadEntry({
        spiffeId: "aztp://AZTP.local/ns/default/sa/web",
        selectors: ["unix:uid:1000", "unix:path:/usr/bin/python3", "unix:gid:0"],
        hint: "internal",
      }),
      {
        spiffeId: WEB,
        selectors: ["unix:gid:0", "unix:path:/usr/bin/python3", "unix:uid:1000"],
        hint: "internal",
      },
    );
    assert.deepEqual(checkNewWorkloadEntry(good()), { spiffeId: WEB, selectors: ["unix:uid:1000"] });
  });
});

/** Two store instances on one fresh location (two processes, two replicas), closed after the test. */
type OpenPair = (t: TestContext) => Promise<[WorkloadEntryStore, WorkloadEntryStore] | undefined>;

function entryStoreSuite(name: string, pair: OpenPair): void {
  describe(`workload entry store: ${name}`, () => {
    it("create, get, list oldest first, delete; the other instance sees each change", async (t) => {
      const p = await pair(t);
      if (p === undefined) return;
      const [a, b] = p;
      assert.deepEqual(await a.list(), []);
      const first = await a.create({ spiffeId: WEB, selectors: ["unix:uid:1000"], hint: "internal" });
      assert.match(first.entryId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(first.spiffeId, WEB);
      assert.deepEqual(first.selectors, ["unix:uid:1000"]);
      assert.equal(first.hint, "internal");
      assert.ok(Math.abs(Date.parse(first.createdAt) - Date.now()) < 60_000);
      const second = await b.create({
        spiffeId: "aztp://aztp.local/ns/default/sa/db",
        selectors: ["unix:uid:1001", "unix:path:/usr/bin/postgres"],
      });
      assert.equal(second.spiffeId, "spiffe://aztp.local/ns/default/sa/db");
      assert.deepEqual(second.selectors, ["unix:path:/usr/bin/postgres", "unix:uid:1001"]);
      assert.equal("hint" in second, false);
      for (const s of [a, b]) {
        assert.deepEqual(
          (await s.list()).map((e) => e.entryId),
          [first.entryId, second.entryId],
        );
        assert.deepEqual(await s.get(first.entryId), first);
        assert.deepEqual(await s.get(second.entryId), second);
      }
      assert.equal(await a.delete(second.entryId), true);
      assert.equal(await b.get(second.entryId), undefined);
      assert.equal(await b.delete(second.entryId), false, "deleted already");
      assert.deepEqual(await b.list(), [first]);
    });

    it("refuses the identical entry (same ID, same selectors in any order), from either instance; a different one passes", async (t) => {
      const p = await pair(t);
      if (p === undefined) return;
      const [a, b] = p;
      await a.create({ spiffeId: WEB, selectors: ["unix:uid:1000", "unix:gid:50"] });
      await rejectsWithCode(
        () => b.create({ spiffeId: WEB, selectors: ["unix:gid:50", "unix:uid:1000"], hint: "other" }),
        ErrorCodes.WORKLOAD_ENTRY_EXISTS,
        "same set, other order and hint",
      );
      await rejectsWithCode(
        () =>
          a.create({ spiffeId: "aztp://aztp.local/ns/default/sa/web", selectors: ["unix:gid:50", "unix:uid:1000"] }),
        ErrorCodes.WORKLOAD_ENTRY_EXISTS,
        "the aztp:// spelling of the ID",
      );
      // Twins: one selector more, one less, another ID: each its own entry.
      await b.create({ spiffeId: WEB, selectors: ["unix:uid:1000", "unix:gid:50", "unix:path:/bin/sh"] });
      await b.create({ spiffeId: WEB, selectors: ["unix:uid:1000"] });
      await a.create({ spiffeId: `${WEB}2`, selectors: ["unix:uid:1000", "unix:gid:50"] });
      assert.equal((await a.list()).length, 4);
    });

    it("validates what it stores (the rules are the store's too, not only the caller's)", async (t) => {
      const p = await pair(t);
      if (p === undefined) return;
      const [a] = p;
      await rejectsWithCode(
        () => a.create({ spiffeId: "spiffe://aztp.local", selectors: ["unix:uid:1"] }),
        ErrorCodes.WORKLOAD_ENTRY_INVALID,
      );
      await rejectsWithCode(() => a.create({ spiffeId: WEB, selectors: [] }), ErrorCodes.WORKLOAD_ENTRY_INVALID);
      await rejectsWithCode(
        () => a.create({ spiffeId: WEB, selectors: ["unix:uid:1"], extra: true } as unknown as NewWorkloadEntry),
        ErrorCodes.WORKLOAD_ENTRY_INVALID,
      );
      assert.deepEqual(await a.list(), []);
    });

    it("an unknown or malformed entry ID is no entry: get gives undefined, delete false", async (t) => {
      const p = await pair(t);
      if (p === undefined) return;
      const [a] = p;
      const made = await a.create(good() as unknown as NewWorkloadEntry);
      for (const id of [
        "00000000-0000-4000-8000-000000000000",
        "nope",
        "",
        made.entryId.toUpperCase(),
        `${made.entryId}x`,
      ]) {
        assert.equal(await a.get(id), undefined, id);
        assert.equal(await a.delete(id), false, id);
      }
      assert.equal(await a.delete(made.entryId), true, "the twin: its own ID deletes it");
    });

    it("concurrent creates of the identical entry: exactly one wins; of distinct entries: all are kept", async (t) => {
      const p = await pair(t);
      if (p === undefined) return;
      const [a, b] = p;
      const tries = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? a : b).create({ spiffeId: WEB, selectors: ["unix:uid:7"] })),
      );
      const won = tries.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, "exactly one create wins");
      for (const r of tries)
        if (r.status === "rejected")
          assert.equal((r.reason as { code?: string }).code, ErrorCodes.WORKLOAD_ENTRY_EXISTS, String(r.reason));
      await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (i % 2 === 0 ? a : b).create({ spiffeId: WEB, selectors: [`unix:uid:${100 + i}`] }),
        ),
      );
      assert.equal((await b.list()).length, 7);
    });
  });
}

entryStoreSuite("home folder", async (t) => {
  const home = tempDir(t, "entries");
  const a = new FileWorkloadEntryStore(home);
  const b = new FileWorkloadEntryStore(home);
  t.after(() => Promise.all([a.close(), b.close()]));
  return [a, b];
});

/** One KEK for every replica of a test, as an operator gives each replica the same one. */
const kek = randomBytes(32);

async function pgReplica(t: TestContext, url: string): Promise<PostgresStores> {
  const s = await openPostgresStores(url, { kek });
  t.after(() => s.close());
  return s;
}

entryStoreSuite("PostgreSQL", async (t) => {
  if (skipWithoutPg(t)) return undefined;
  const url = await pgDatabase(t);
  if (url === undefined) return undefined;
  // Two replicas, each with its own pool: the unique key, not one process's lock, decides a race.
  const a = await pgReplica(t, url);
  const b = await pgReplica(t, url);
  return [a.workloadEntries, b.workloadEntries];
});

describe("workload entry store: home folder only", () => {
  it("a hand-edited file with an invalid entry is reported corrupt, naming the file", async (t) => {
    const home = tempDir(t, "entries");
    const s = new FileWorkloadEntryStore(home);
    await s.create(good() as unknown as NewWorkloadEntry);
    const file = join(home, "workload-entries.json");
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        entries: [
          {
            entryId: "00000000-0000-4000-8000-000000000000",
            spiffeId: WEB,
            selectors: [],
            createdAt: "2026-01-01T00:00:00Z",
          },
        ],
      }),
    );
    const e = await rejectsWithCode(() => s.list(), ErrorCodes.AUTHORITY_STORE_FAILED);
    assert.match(e.message, /workload-entries\.json/);
  });

  it("a closed store refuses", async (t) => {
    const s = new FileWorkloadEntryStore(tempDir(t, "entries"));
    await s.close();
    await rejectsWithCode(() => s.list(), ErrorCodes.AUTHORITY_STORE_FAILED);
  });
});

describe("registerWorkloadEntry: the entry's SPIFFE ID is an identity of the authority", () => {
  async function setUp(t: TestContext): Promise<{ authority: EmbeddedAuthority; entries: FileWorkloadEntryStore }> {
    const home = tempDir(t, "authority");
    const authority = await EmbeddedAuthority.init(home, "aztp.local");
    const entries = new FileWorkloadEntryStore(home);
    t.after(() => entries.close());
    return { authority, entries };
  }

  it("registers the ID as it is (no workload/ path), issues an X.509-SVID and a JWT-SVID for it, and revoke ends it", async (t) => {
    const { authority, entries } = await setUp(t);
    const entry = await registerWorkloadEntry(authority, entries, {
      spiffeId: "aztp://aztp.local/ns/default/sa/web",
      selectors: ["unix:uid:1000"],
      hint: "internal",
    });
    assert.equal(entry.spiffeId, WEB);
    const rec = authority.get(WEB);
    assert.equal(rec.spiffeId, WEB);
    assert.equal(rec.name, "web");
    assert.equal(rec.environment, "workload-api");
    assert.equal(rec.method, "unix");
    assert.equal(rec.status, "active");
    assert.equal(rec.notAfter, undefined, "registered, nothing issued yet");

    const key = await generateWorkloadKey();
    const issued = await authority.renewSvid(WEB, key.csr);
    const svid = parseX509Svid(issued.svid.chainPem);
    assert.equal(svid.id.toString(), WEB);
    assert.deepEqual(svid.certificates[0]?.uriSans, [WEB], "the URI SAN is the entry's SPIFFE ID");
    assert.equal(verifyX509Svid(svid.certificates, authority).id.toString(), WEB);
    const jwt = authority.mintJwtSvid(WEB, "spiffe://aztp.local/api");
    assert.equal(validateJwtSvid(jwt, authority, { audience: "spiffe://aztp.local/api" }).id.toString(), WEB);

    assert.equal(authority.isRevoked(WEB, issued.svid.serial), false);
    assert.deepEqual(await authority.revoke(WEB, "test"), ["aztp://aztp.local/ns/default/sa/web"]);
    assert.equal(authority.isRevoked(WEB, issued.svid.serial), true);
    await rejectsWithCode(() => authority.renewSvid(WEB, key.csr), ErrorCodes.IDENTITY_REVOKED);
    assert.throws(() => authority.mintJwtSvid(WEB, "spiffe://aztp.local/api"), { code: ErrorCodes.IDENTITY_REVOKED });
    // A new entry naming the revoked identity is refused until it is reissued.
    await rejectsWithCode(
      () => registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:uid:2000"] }),
      ErrorCodes.IDENTITY_REVOKED,
    );
    await authority.reissue(WEB);
    await registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:uid:2000"] });
    assert.equal((await entries.list()).length, 2);
  });

  it("two entries naming one ID share its identity; deleting one leaves the identity as it was", async (t) => {
    const { authority, entries } = await setUp(t);
    const one = await registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:uid:1000"] });
    const before = authority.get(WEB);
    await registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:path:/usr/bin/node"] });
    assert.equal(authority.get(WEB).workloadId, before.workloadId);
    assert.equal(authority.list().length, 1);
    assert.equal(await entries.delete(one.entryId), true);
    assert.equal(authority.get(WEB).status, "active");
  });

  it("a trust domain the authority does not hold is refused, naming it, and nothing is written; its own passes", async (t) => {
    const { authority, entries } = await setUp(t);
    const e = await rejectsWithCode(
      () =>
        registerWorkloadEntry(authority, entries, {
          spiffeId: "spiffe://other.example/web",
          selectors: ["unix:uid:1"],
        }),
      ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
    );
    assert.match(e.message, /other\.example/);
    assert.deepEqual(await entries.list(), []);
    assert.deepEqual(authority.list(), []);
    assert.deepEqual(authority.trustDomains, ["aztp.local"], "no trust domain was created for it");
    await registerWorkloadEntry(authority, entries, { spiffeId: "spiffe://aztp.local/web", selectors: ["unix:uid:1"] });
  });

  it("an identical entry is refused before the registry is touched; an invalid one too", async (t) => {
    const { authority, entries } = await setUp(t);
    await registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:uid:1000"] });
    await rejectsWithCode(
      () => registerWorkloadEntry(authority, entries, { spiffeId: WEB, selectors: ["unix:uid:1000"] }),
      ErrorCodes.WORKLOAD_ENTRY_EXISTS,
    );
    await rejectsWithCode(
      () => registerWorkloadEntry(authority, entries, { spiffeId: "spiffe://aztp.local/x", selectors: [] }),
      ErrorCodes.WORKLOAD_ENTRY_INVALID,
    );
    assert.equal(authority.find("spiffe://aztp.local/x"), undefined);
  });

  it("on PostgreSQL: the entry and its identity are in the shared store, seen by another replica, revoked there", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = await pgDatabase(t);
    if (url === undefined) return;
    const one = await pgReplica(t, url);
    const a = await EmbeddedAuthority.fromStores(
      { registry: one.registry, ca: one.ca },
      { create: true, trustDomain: "aztp.local", home: tempDir(t, "replica-a") },
    );
    const entry = await registerWorkloadEntry(a, one.workloadEntries, { spiffeId: WEB, selectors: ["unix:uid:1000"] });
    const two = await pgReplica(t, url);
    const b = await EmbeddedAuthority.fromStores(
      { registry: two.registry, ca: two.ca },
      { home: tempDir(t, "replica-b") },
    );
    await b.refresh();
    assert.equal(b.get(WEB).environment, "workload-api");
    assert.deepEqual(await two.workloadEntries.get(entry.entryId), entry);
    const issued = await b.renewSvid(WEB, (await generateWorkloadKey()).csr);
    assert.deepEqual(parseX509Svid(issued.svid.chainPem).certificates[0]?.uriSans, [WEB]);
    await b.revoke(WEB, "test");
    await a.refresh();
    assert.equal(a.isRevoked(WEB, issued.svid.serial), true);
    await rejectsWithCode(
      () =>
        registerWorkloadEntry(a, one.workloadEntries, {
          spiffeId: "spiffe://other.example/x",
          selectors: ["unix:uid:1"],
        }),
      ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
    );
  });

  it("registerSpiffeId: the trust domain's own ID and a revoked identity are refused with their codes; an existing identity of any path is found", async (t) => {
    const { authority } = await setUp(t);
    await rejectsWithCode(
      () => authority.registerSpiffeId("spiffe://aztp.local"),
      ErrorCodes.SPIFFEID_ROOT_PATH_NOT_ALLOWED,
    );
    await rejectsWithCode(
      () => authority.registerSpiffeId("spiffe://aztp.local/a b"),
      ErrorCodes.SPIFFEID_PATH_CHAR_INVALID,
    );
    // An identity `aztp issue` made: found as it is, its environment and method kept.
    const issued = await authority.issueIdentity({ name: "agent" }, (await generateWorkloadKey()).csr);
    const found = await authority.registerSpiffeId(issued.record.spiffeId, { metadata: { via: "workload-api" } });
    assert.equal(found.workloadId, issued.record.workloadId);
    assert.equal(found.environment, "production");
    assert.deepEqual(found.metadata, { via: "workload-api" });
    await authority.revoke(issued.record.spiffeId, "test");
    await rejectsWithCode(() => authority.registerSpiffeId(issued.record.spiffeId), ErrorCodes.IDENTITY_REVOKED);
    await rejectsWithCode(
      () => authority.registerSpiffeId(WEB, { metadata: [] as unknown as Record<string, unknown> }),
      ErrorCodes.ARGUMENT_INVALID,
    );
    assert.equal(SpiffeId.parse((await authority.registerSpiffeId(WEB)).spiffeId).path, "/ns/default/sa/web");
  });
});
