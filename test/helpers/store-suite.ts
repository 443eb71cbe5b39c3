/**
 * ONE suite for every store (the file store of the embedded authority, PostgreSQL of
 * `aztp serve`): each promise of the RegistryStore, CaStore, ReplayCache and ApiKeyStore
 * interfaces, checked the same way against each, with two store instances on one location
 * standing for two processes (or two replicas).
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { createCaKeyMaterial, type CaKeyMaterial } from "../../src/authority/ca.js";
import type { AuthorityConfig, CaStore } from "../../src/authority/ca-store.js";
import * as registry from "../../src/authority/registry.js";
import type { RegistryStore } from "../../src/authority/registry-store.js";
import type { ReplayCache } from "../../src/invocation/replay.js";
import type { ApiKeyStore } from "../../src/store/api-keys.js";
import { isAztpError } from "../../src/errors.js";

/** What one store instance (one process, one replica) opens on a location. */
export interface StoreInstance {
  readonly registry: RegistryStore;
  readonly ca: CaStore;
  readonly replay: ReplayCache;
  readonly apiKeys?: ApiKeyStore | undefined;
  close(): Promise<void>;
}

export interface StoreFactory {
  readonly name: string;
  /** A fresh, empty location for this test; undefined when the store is not available (then `skip` has skipped `t`). */
  location(t: TestContext): Promise<string | undefined>;
  open(location: string): Promise<StoreInstance>;
  /** How soon another instance's `current()` must show a committed change (ms). */
  readonly propagationMs: number;
}

const TD = "suite.example";
const NOW = new Date("2026-12-01T12:00:00Z");

function config(): AuthorityConfig {
  return { version: 1, defaultTrustDomain: TD, trustDomains: [TD], createdAt: NOW.toISOString() };
}

function addIdentity(state: registry.RegistryState, name: string, td = TD): registry.IdentityRecord {
  return registry.register(
    state,
    registry.workloadSpiffeId(td, registry.DEFAULT_ENVIRONMENT, registry.DEFAULT_METHOD, name),
    td,
    { name },
    NOW,
  );
}

async function within(ms: number, what: string, check: () => boolean): Promise<number> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > ms) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now() - start;
}

let materials: Promise<CaKeyMaterial[]> | null = null;
/** CA material is slow to make: four sets, made once per file and shared by the tests that need them. */
function someMaterial(): Promise<CaKeyMaterial[]> {
  materials ??= Promise.all([
    createCaKeyMaterial(TD),
    createCaKeyMaterial(TD),
    createCaKeyMaterial("other.example"),
    createCaKeyMaterial("other.example"),
  ]);
  return materials;
}

export function storeSuite(factory: StoreFactory): void {
  describe(`stores: ${factory.name}`, () => {
    /** Two instances on one fresh location, closed after the test. */
    async function two(t: TestContext): Promise<[StoreInstance, StoreInstance] | undefined> {
      const where = await factory.location(t);
      if (where === undefined) return undefined;
      const a = await factory.open(where);
      const b = await factory.open(where);
      t.after(async () => {
        await a.close();
        await b.close();
      });
      return [a, b];
    }

    it("mutate writes, current() shows it at once, the other instance's fresh() too", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const before = a.registry.current();
      const rec = await a.registry.mutate((state) => addIdentity(state, "alpha"));
      assert.equal(a.registry.current().state.identities[rec.spiffeId]?.name, "alpha");
      assert.notEqual(a.registry.current().version, before.version);
      assert.throws(
        () => ((a.registry.current().state.identities as Record<string, unknown>).x = 1),
        TypeError,
        "snapshots are frozen",
      );
      const seen = await b.registry.fresh();
      assert.equal(seen.state.identities[rec.spiffeId]?.name, "alpha");
      assert.equal(seen.version, a.registry.current().version, "both instances name the committed version alike");
    });

    it("50 parallel mutations from 2 instances: none is lost", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          (i % 2 === 0 ? a : b).registry.mutate((state) => addIdentity(state, `w${i}`)),
        ),
      );
      for (const inst of [a, b]) {
        const snap = await inst.registry.fresh();
        assert.equal(Object.keys(snap.state.identities).length, 50);
      }
    });

    it("fn throws: nothing is written, the snapshot stands, the error comes back as thrown", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      await a.registry.mutate((state) => addIdentity(state, "kept"));
      const before = a.registry.current();
      const boom = new Error("rule refused");
      await assert.rejects(
        a.registry.mutate((state) => {
          addIdentity(state, "lost");
          state.revocations.sequence += 1;
          throw boom;
        }),
        (e) => e === boom,
      );
      assert.equal(a.registry.current(), before, "the same snapshot object");
      await assert.rejects(
        a.registry.mutate(async (state) => {
          addIdentity(state, "lost-async");
          await new Promise((r) => setTimeout(r, 5));
          throw boom;
        }),
        (e) => e === boom,
      );
      const other = await b.registry.fresh();
      assert.deepEqual(
        Object.values(other.state.identities).map((r) => r.name),
        ["kept"],
      );
      assert.equal(other.state.revocations.sequence, before.state.revocations.sequence);
      // And the store is still writable afterwards (the lock was released).
      await a.registry.mutate((state) => addIdentity(state, "after"));
      assert.equal(Object.keys((await b.registry.fresh()).state.identities).length, 2);
    });

    it("concurrent mutations where some throw: only those are lost, each gets its own error, the rest are written", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const results = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) =>
          (i % 2 === 0 ? a : b).registry.mutate(async (state) => {
            const rec = addIdentity(state, `m${i}`);
            if (i % 7 === 0) {
              // A whole new map, as a rule could write it: still one change among the others.
              state.identities = { ...state.identities };
            }
            await new Promise((r) => setTimeout(r, i % 3));
            if (i % 3 === 0) {
              state.revocations.sequence += 100;
              throw new Error(`refused ${i}`);
            }
            return rec.name;
          }),
        ),
      );
      results.forEach((r, i) => {
        if (i % 3 === 0) assert.equal(r.status === "rejected" && (r.reason as Error).message, `refused ${i}`);
        else assert.equal(r.status === "fulfilled" && r.value, `m${i}`);
      });
      const snap = await a.registry.fresh();
      const names = Object.values(snap.state.identities)
        .map((r) => r.name)
        .sort();
      assert.deepEqual(
        names,
        Array.from({ length: 30 }, (_, i) => i)
          .filter((i) => i % 3 !== 0)
          .map((i) => `m${i}`)
          .sort(),
      );
      assert.equal(snap.state.revocations.sequence, 0, "no thrown mutation's change to the revocations was kept");
    });

    it("a revocation is seen by the other instance: current() within the refresh interval, fresh() at once", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const rec = await a.registry.mutate((state) => addIdentity(state, "victim"));
      await b.registry.fresh();
      assert.equal(b.registry.current().isRevoked(rec.spiffeId), false);
      await a.registry.mutate((state) => registry.revoke(state, rec.spiffeId, "compromised", NOW));
      assert.equal((await b.registry.fresh()).isRevoked(rec.spiffeId), true, "fresh() sees the commit at once");
      // Without fresh(): only the store's own news (a notification, a poll, a file's version) can tell b.
      const rec2 = await a.registry.mutate((state) => addIdentity(state, "victim2"));
      await within(
        factory.propagationMs,
        "the new identity reaches b.current()",
        () => b.registry.current().state.identities[rec2.spiffeId] !== undefined,
      );
      await a.registry.mutate((state) => registry.revoke(state, rec2.spiffeId, "compromised", NOW));
      const took = await within(factory.propagationMs, "the revocation reaches b.current()", () =>
        b.registry.current().isRevoked(rec2.spiffeId),
      );
      t.diagnostic(`${factory.name}: revocation seen by the other instance's current() after ${took.toFixed(0)} ms`);
    });

    it("CA create race: one of two wins, both load the same CA", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const [m1, m2] = (await someMaterial()) as [CaKeyMaterial, CaKeyMaterial];
      assert.equal(await a.ca.readConfig(), undefined);
      const won = await Promise.all([a.ca.create(config(), m1), b.ca.create(config(), m2)]);
      assert.deepEqual(won.filter(Boolean).length, 1, `exactly one create wins: ${won}`);
      const [ga, gb] = await Promise.all([a.ca.loadCa(TD), b.ca.loadCa(TD)]);
      assert.equal(ga.length, 1);
      assert.equal(ga[0]?.generation, 1);
      assert.deepEqual(ga, gb);
      const winner = won[0] === true ? m1 : m2;
      assert.deepEqual(ga[0]?.material, winner, "private keys come back exactly as given");
      assert.deepEqual(await b.ca.readConfig(), config());
      assert.equal(await a.ca.create(config(), m1), false, "a later create writes nothing");
    });

    it("addTrustDomain race: one CA for the new trust domain, both see it", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const [m1, , o1, o2] = (await someMaterial()) as [CaKeyMaterial, CaKeyMaterial, CaKeyMaterial, CaKeyMaterial];
      assert.equal(await a.ca.create(config(), m1), true);
      const v0 = await a.ca.configVersion();
      const [ca, cb] = await Promise.all([
        a.ca.addTrustDomain("other.example", async () => o1),
        b.ca.addTrustDomain("other.example", async () => o2),
      ]);
      assert.deepEqual(ca.trustDomains, [TD, "other.example"]);
      assert.deepEqual(cb.trustDomains, [TD, "other.example"]);
      const [ga, gb] = await Promise.all([a.ca.loadCa("other.example"), b.ca.loadCa("other.example")]);
      assert.equal(ga.length, 1);
      assert.deepEqual(ga, gb);
      assert.notEqual(await a.ca.configVersion(), v0, "the config version changed");
      let called = false;
      await a.ca.addTrustDomain("other.example", async () => {
        called = true;
        return o1;
      });
      assert.equal(called, false, "no keys are made for a trust domain that exists");
    });

    it("rotate: the new generation is newest, the previous one gets retireAfter, both load", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const [m1, m2] = (await someMaterial()) as [CaKeyMaterial, CaKeyMaterial];
      await a.ca.create(config(), m1);
      const retire = new Date("2026-12-02T12:00:00.000Z");
      const gens = await a.ca.rotate(TD, m2, retire);
      assert.deepEqual(
        gens.map((g) => g.generation),
        [2, 1],
      );
      assert.equal(gens[0]?.retireAfter, undefined);
      assert.equal(gens[1]?.retireAfter, retire.toISOString());
      assert.deepEqual(gens[0]?.material, m2);
      assert.deepEqual(await b.ca.loadCa(TD), gens);
      assert.equal(
        (await b.ca.readConfig())?.rotations?.[TD],
        1,
        "the configuration counts the rotation, so other processes reload",
      );
      const again = await b.ca.rotate(TD, m1, new Date("2026-12-03T12:00:00.000Z"));
      assert.deepEqual(
        again.map((g) => g.generation),
        [3, 2, 1],
      );
      assert.equal(again[1]?.retireAfter, "2026-12-03T12:00:00.000Z");
      assert.equal(again[2]?.retireAfter, retire.toISOString(), "an older generation keeps its own retireAfter");
    });

    it("replay cache: 100 concurrent checks of one key from 2 instances, exactly one accepted", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      const exp = Date.now() + 60_000;
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? a : b).replay.checkAndRemember("iss\njti-1", exp)),
      );
      assert.equal(results.filter((r) => r === true).length, 1);
      assert.equal(await b.replay.checkAndRemember("iss\njti-2", exp), true, "another key is its own");
    });

    it("replay cache: an expired key is accepted again, a live one is not", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      assert.equal(await a.replay.checkAndRemember("k", Date.now() + 150), true);
      assert.equal(await b.replay.checkAndRemember("k", Date.now() + 150), false);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(await b.replay.checkAndRemember("k", Date.now() + 60_000), true, "expired: accepted again");
      assert.equal(await a.replay.checkAndRemember("k", Date.now() + 60_000), false, "and remembered anew");
    });

    it("API keys: create, authenticate on the other instance, revoke there, refused here; only hashes kept", async (t) => {
      const s = await two(t);
      if (s === undefined) return;
      const [a, b] = s;
      if (a.apiKeys === undefined || b.apiKeys === undefined) return t.skip(`${factory.name} has no API key store`);
      const made = await a.apiKeys.create({ name: "ci", scope: { trustDomain: TD } });
      assert.match(made.key, /^aztp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
      assert.deepEqual(await b.apiKeys.authenticate(made.key), made.record);
      const secret = made.key.slice(made.key.lastIndexOf("_", made.key.length - 44) + 1);
      assert.ok(!JSON.stringify(await b.apiKeys.list()).includes(secret), "list never shows the secret");
      const forged = `${made.key.slice(0, -1)}${made.key.endsWith("A") ? "B" : "A"}`;
      await assert.rejects(
        a.apiKeys.authenticate(forged),
        (e) => isAztpError(e) && e.code === "ERR_SERVE_API_KEY_INVALID",
      );
      assert.equal(await b.apiKeys.revoke(made.record.keyId), true);
      assert.equal(await a.apiKeys.revoke(made.record.keyId), false, "revoked once");
      await assert.rejects(
        a.apiKeys.authenticate(made.key),
        (e) => isAztpError(e) && e.code === "ERR_SERVE_API_KEY_INVALID",
      );
      const listed = await a.apiKeys.list();
      assert.equal(listed.length, 1);
      assert.ok(listed[0]?.revokedAt !== undefined);
    });
  });
}
