/**
 * RemoteAuthority against the real `aztp serve` (HTTPS, its own SVID): the management calls
 * round-trip with the library's records and codes, the calls on a tool call's path answer
 * from held state, and a revocation made anywhere reaches every client within the hint.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { RemoteAuthority, type RemoteAuthorityOptions } from "../src/client/remote-authority.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { startServe } from "./helpers/serve-util.js";

const TD = "remote.test";

/** `aztp serve` on loopback HTTPS over a fresh authority of TD, with an API key (test/helpers/serve-util.ts). */
function serve(t: TestContext, options: { refreshHintSeconds?: number } = {}) {
  return startServe(t, { trustDomain: TD, refreshHintSeconds: options.refreshHintSeconds ?? 1, logLevel: "error" });
}

async function client(
  t: TestContext,
  s: { url: string; apiKey: string; bundlePem: string },
  extra: Partial<RemoteAuthorityOptions> = {},
): Promise<RemoteAuthority> {
  const r = await RemoteAuthority.connect({
    baseUrl: s.url,
    apiKey: s.apiKey,
    trustBundle: s.bundlePem,
    home: tempDir(t, "client"),
    onWarning: () => undefined,
    ...extra,
  });
  t.after(() => r.close());
  return r;
}

async function issue(r: RemoteAuthority, name: string, extra: { parentIdentity?: string } = {}) {
  const key = await generateWorkloadKey();
  return { key, ...(await r.issueIdentity({ name, ...extra }, key.csr, { ttlSeconds: 600 })) };
}

describe("RemoteAuthority over aztp serve", () => {
  it("issue, get, renew, JWT-SVID, revoke, reissue: one round trip per call, records as the library makes them", async (t) => {
    const s = await serve(t);
    const r = await client(t, s);
    assert.equal(r.defaultTrustDomain, TD);
    assert.deepEqual(r.trustDomains, [TD]);

    const { record, svid } = await issue(r, "alice");
    assert.equal(record.spiffeId, `spiffe://${TD}/workload/production/node/alice`);
    assert.equal(record.status, "active");
    assert.ok(svid.notAfter instanceof Date && svid.notAfter > new Date());
    // The SVID verifies locally against the bundle the feed holds, and it is alice's.
    const verified = verifyX509Svid(Certificate.parsePem(svid.chainPem), r.bundleSet());
    assert.equal(verified.id.toString(), record.spiffeId);

    assert.equal((await r.get(record.aztpId)).spiffeId, record.spiffeId);
    assert.equal((await r.findByName("alice"))?.aztpId, record.aztpId);
    assert.equal(await r.find(`aztp://${TD}/workload/production/node/nobody`), undefined);
    assert.equal(await r.findByName("nobody"), undefined);
    await rejectsWithCode(() => r.get(`aztp://${TD}/workload/production/node/nobody`), ErrorCodes.IDENTITY_NOT_FOUND);
    assert.deepEqual(
      (await r.list()).map((x) => x.name),
      ["alice"],
    );

    const renewed = await r.renewSvid(record.spiffeId, (await generateWorkloadKey()).csr, { ttlSeconds: 300 });
    assert.notEqual(renewed.svid.serial, svid.serial);
    const jwt = await r.mintJwtSvid(record.spiffeId, "https://api.example");
    assert.equal(jwt.split(".").length, 3);

    // Held state answers synchronously for an identity this client issued.
    assert.equal(r.isRevoked(record.spiffeId, svid.serial), false);
    assert.deepEqual(r.policiesOf(record.spiffeId), []);
    assert.deepEqual(r.relations(record.spiffeId), { links: [] });

    const revoked = await r.revoke(record.aztpId, "key leaked");
    assert.deepEqual(revoked, [record.aztpId]);
    // Its own revocation is seen at once: revoke() fetched the list before returning.
    assert.equal(r.isRevoked(record.spiffeId), true);
    assert.equal(
      r.isRevoked(`spiffe://${TD}/workload/production/node/bob`, renewed.svid.serial),
      true,
      "the serial alone is revoked",
    );
    assert.ok((r.revocationSequence() ?? 0) >= 1);
    assert.equal((await r.get(record.spiffeId)).status, "revoked");
    await rejectsWithCode(() => r.renewSvid(record.spiffeId, "not a csr"), ErrorCodes.IDENTITY_REVOKED);

    const back = await r.reissue(record.spiffeId);
    assert.equal(back.status, "active");
    assert.equal(r.isRevoked(record.spiffeId), false);
    assert.equal(r.isRevoked(record.spiffeId, svid.serial), true, "old serials stay revoked");
  });

  it("a child is revoked with its parent, and links and policies through this client change held state at once", async (t) => {
    const s = await serve(t);
    const r = await client(t, s);
    const parent = await issue(r, "planner");
    const child = await issue(r, "worker", { parentIdentity: parent.record.aztpId });
    const peer = await issue(r, "peer");
    assert.deepEqual(r.relations(child.record.spiffeId), { parent: parent.record.aztpId, links: [] });

    await r.link(peer.record.aztpId, parent.record.aztpId, "linked");
    assert.deepEqual(r.relations(peer.record.spiffeId), { links: [parent.record.aztpId] });
    assert.equal(await r.connected(peer.record.aztpId, parent.record.aztpId), true);
    assert.equal(await r.connected(peer.record.aztpId, child.record.aztpId), false);

    const doc = {
      Version: "2012-10-17",
      Statement: [{ Sid: "calls", Effect: "Allow", Action: ["tool:call"], Resource: ["*"] }],
    };
    const entry = await r.attachPolicy(parent.record.aztpId, doc, "calls");
    const held = r.policiesOf(parent.record.spiffeId);
    assert.ok(Array.isArray(held), "synchronous for a held record");
    assert.equal(held.length, 1);
    assert.strictEqual(
      r.policiesOf(parent.record.spiffeId),
      held,
      "the same parsed array again, so evaluation caches hit",
    );
    assert.equal((r.policiesOf(parent.record.spiffeId, entry.code) as readonly unknown[]).length, 1);
    assert.equal(await r.detachPolicy(parent.record.aztpId, entry.code), true);
    assert.deepEqual(r.policiesOf(parent.record.spiffeId), []);

    await r.revoke(parent.record.aztpId, "compromised");
    assert.equal(r.isRevoked(child.record.spiffeId, child.svid.serial), true, "the child goes with its parent");
    assert.equal(r.isRevoked(peer.record.spiffeId), false);
  });

  it("issuing into a trust domain the service adds on the way: the feeds take it up, its SVID verifies and its revocations are answered", async (t) => {
    const s = await serve(t);
    const r = await client(t, s);
    const key = await generateWorkloadKey();
    const { record, svid } = await r.issueIdentity({ name: "far", trustDomain: "second.test" }, key.csr);
    assert.equal(record.trustDomain, "second.test");
    assert.ok(r.trustDomains.includes("second.test"));
    assert.equal(verifyX509Svid(Certificate.parsePem(svid.chainPem), r.bundleSet()).id.toString(), record.spiffeId);
    assert.equal(r.isRevoked(record.spiffeId, svid.serial), false);
    await r.revoke(record.aztpId, "x");
    assert.equal(r.isRevoked(record.spiffeId), true);
    assert.equal(r.heldRecord(record.aztpId)?.status, "revoked", "the held record is re-read after the revoke");
  });

  it("an identity this client never saw: policiesOf and relations fetch once, then answer from the cache", async (t) => {
    const s = await serve(t);
    const writer = await client(t, s);
    const reader = await client(t, s);
    const { record } = await issue(writer, "tool");
    await writer.attachPolicy(record.aztpId, {
      Version: "2012-10-17",
      Statement: [{ Effect: "Deny", Action: ["*"], Resource: ["*"] }],
    });

    const first = reader.policiesOf(record.spiffeId);
    assert.ok(first instanceof Promise, "a promise the first time");
    assert.equal((await first).length, 1);
    assert.equal((reader.policiesOf(record.spiffeId) as readonly unknown[]).length, 1, "synchronous afterwards");
    assert.equal(await reader.relations(`spiffe://${TD}/workload/production/node/ghost`), undefined);
    await rejectsWithCode(
      async () => reader.policiesOf(`spiffe://${TD}/workload/production/node/ghost`),
      ErrorCodes.IDENTITY_NOT_FOUND,
    );
  });

  it("a revocation made through another client is seen here within the refresh hint (1 s)", async (t) => {
    const s = await serve(t, { refreshHintSeconds: 1 });
    const observer = await client(t, s, { refreshHintSeconds: 1 });
    const admin = await client(t, s);
    const { record, svid } = await issue(admin, "victim");
    assert.equal(observer.isRevoked(record.spiffeId, svid.serial), false);
    const revokedAt = Date.now();
    await admin.revoke(record.aztpId, "test");
    while (!observer.isRevoked(record.spiffeId, svid.serial)) {
      assert.ok(Date.now() - revokedAt < 3_000, "not seen within the hint (1 s) plus slack");
      await new Promise((r) => setTimeout(r, 50));
    }
    const seenAfter = Date.now() - revokedAt;
    assert.ok(seenAfter <= 2_500, `seen after ${seenAfter} ms`);
  });

  it("a policy attached through another client reaches this client's held record within the hint", async (t) => {
    const s = await serve(t, { refreshHintSeconds: 1 });
    const holder = await client(t, s, { refreshHintSeconds: 1 });
    const admin = await client(t, s);
    const { record } = await issue(holder, "callee");
    assert.deepEqual(holder.policiesOf(record.spiffeId), []);
    await admin.attachPolicy(record.aztpId, {
      Version: "2012-10-17",
      Statement: [{ Effect: "Deny", Action: ["*"], Resource: ["*"] }],
    });
    const at = Date.now();
    while ((holder.policiesOf(record.spiffeId) as readonly unknown[]).length === 0) {
      assert.ok(Date.now() - at < 3_000, "not seen within the hint plus slack");
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it("the server's errors come back with its code: a wrong API key is ERR_SERVE_API_KEY_INVALID, a bad CSR ERR_AUTHORITY_CSR_INVALID, an unknown ID ERR_IDENTITY_NOT_FOUND", async (t) => {
    const s = await serve(t);
    await assert.rejects(
      () =>
        RemoteAuthority.connect({
          baseUrl: s.url,
          apiKey: "aztp_nokey_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
          trustBundle: s.bundlePem,
          home: tempDir(t, "c"),
        }),
      (e: unknown) => e instanceof AztpError && e.code === "ERR_SERVE_API_KEY_INVALID",
    );
    const r = await client(t, s);
    await rejectsWithCode(
      () =>
        r.issueIdentity(
          { name: "x" },
          "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ),
      ErrorCodes.AUTHORITY_CSR_INVALID,
    );
    await rejectsWithCode(
      () => r.attachPolicy(`aztp://${TD}/workload/production/node/nobody`, { Version: "2012-10-17", Statement: [] }),
      ErrorCodes.IDENTITY_NOT_FOUND,
    );
  });

  it("the feeds alone, without an API key: bundles and revocations are public, signed and sequenced", async (t) => {
    const s = await serve(t);
    const admin = await client(t, s);
    const { record } = await issue(admin, "pub");
    await admin.revoke(record.aztpId, "x");
    const verifier = await RemoteAuthority.connect({
      baseUrl: s.url,
      trustBundle: s.bundlePem,
      home: join(tempDir(t, "v"), "home"),
      onWarning: () => undefined,
    });
    t.after(() => verifier.close());
    assert.equal(verifier.defaultTrustDomain, TD);
    assert.equal(verifier.isRevoked(record.spiffeId), true);
    assert.ok(
      verifier.bundle().jwtAuthorities.size >= 1,
      "the JWT keys come from the endpoint (the PEM given has only roots)",
    );
    await rejectsWithCode(() => verifier.list(), "ERR_SERVE_API_KEY_INVALID");
  });
});
