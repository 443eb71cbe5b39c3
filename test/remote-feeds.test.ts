/**
 * The feeds a remote verifier checks, under attack and through an outage, against the real
 * `aztp serve`:
 * - the first list replayed forever by a man in the middle (or a cache) fails closed once its
 *   signed window has passed (ERR_REVOCATION_LIST_EXPIRED), while without the replay the
 *   service renews the window and nothing fails;
 * - an old signed revocation list replayed (by a proxy in the path) is refused, the newer kept;
 * - a list signed by another authority (same trust domain name, other keys) is refused;
 * - a bundle with a lower spiffe_sequence is refused;
 * - with the service down, verification answers from held state until the list's window (or
 *   the client's maxStaleness, from its signed thisUpdate) ends, then fails closed; issuing fails with ERR_AUTHORITY_REMOTE_UNAVAILABLE; the service restarted on
 *   the same port, everything recovers by itself.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { RemoteAuthority, type RemoteAuthorityOptions } from "../src/client/remote-authority.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { startServe, type StartedServe } from "./helpers/serve-util.js";

const TD = "feeds.test";

/** `aztp serve` on loopback HTTPS (test/helpers/serve-util.ts): a fresh authority of TD, or the one in `store` again (on `port`). */
async function serveOn(
  t: TestContext,
  options: { store?: string; port?: number; revocationWindowSeconds?: number } = {},
): Promise<StartedServe> {
  return startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error", ...options });
}

async function client(t: TestContext, options: RemoteAuthorityOptions): Promise<RemoteAuthority> {
  const r = await RemoteAuthority.connect(options);
  t.after(() => r.close());
  return r;
}

/**
 * A plain-http proxy on loopback in front of the service: forwards every request, except the
 * paths in `replace`, which it answers with the body given (what an attacker in the path, or a
 * stale cache, would serve), and the paths in `freeze`, whose first 200 answer it keeps and
 * replays forever after (a man in the middle, or a cache that never revalidates); `replayed`
 * counts those replays.
 */
async function proxy(
  t: TestContext,
  target: { url: string; bundlePem: string },
): Promise<{ url: string; replace: Map<string, string>; freeze: Set<string>; replayed: Map<string, number> }> {
  const replace = new Map<string, string>();
  const freeze = new Set<string>();
  const frozen = new Map<string, string>();
  const replayed = new Map<string, number>();
  const agent = new https.Agent({ ca: target.bundlePem, checkServerIdentity: () => undefined });
  const server = http.createServer((req, res) => {
    const path = req.url ?? "";
    const replay = freeze.has(path) ? frozen.get(path) : undefined;
    const canned = replace.get(path) ?? replay;
    if (canned !== undefined) {
      if (replay !== undefined) replayed.set(path, (replayed.get(path) ?? 0) + 1);
      res.writeHead(200, { "content-type": "application/json" }).end(canned);
      return;
    }
    const up = https.request(
      new URL(path || "/", target.url),
      { method: req.method, headers: { ...req.headers, host: new URL(target.url).host }, agent },
      (upRes) => {
        if (!freeze.has(path)) {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        upRes.on("data", (c: Buffer) => chunks.push(c));
        upRes.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          if (upRes.statusCode === 200 && !frozen.has(path)) frozen.set(path, body);
          res.writeHead(upRes.statusCode ?? 502, { "content-type": "application/json" }).end(body);
        });
      },
    );
    up.on("error", () => res.writeHead(502).end());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
        agent.destroy();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, replace, freeze, replayed };
}

async function fetchText(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca, checkServerIdentity: () => undefined }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString("utf8")));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("revocation and bundle feeds", () => {
  // The service signs each list valid for 3 s (thisUpdate + 3 s) and renews it every 1 s hint;
  // the verifier tolerates 1 s of clock skew. So a list frozen by someone in the path is dead
  // 4 s after it was signed, however often it is fetched again.
  const WINDOW = 3;
  const TOLERANCE = 1;

  /**
   * aztp serve (signing each list for WINDOW seconds), an admin client, two identities, a
   * loopback proxy in front of the service (replaying the first revocation list forever when
   * `frozen`), and a verifier reading its feeds through that proxy on a 1 s hint.
   */
  async function feedThroughProxy(t: TestContext, frozen: boolean) {
    const s = await serveOn(t, { revocationWindowSeconds: WINDOW });
    const admin = await client(t, {
      baseUrl: s.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    const victim = await admin.issueIdentity({ name: "victim" }, (await generateWorkloadKey()).csr);
    const bystander = await admin.issueIdentity({ name: "bystander" }, (await generateWorkloadKey()).csr);
    const p = await proxy(t, s);
    if (frozen) p.freeze.add(`/v1/revocations/${TD}`);
    const warnings: AztpError[] = [];
    const verifier = await client(t, {
      baseUrl: p.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "v"),
      refreshHintSeconds: 1,
      clockToleranceSeconds: TOLERANCE,
      onWarning: (e) => warnings.push(e),
    });
    return { admin, victim, bystander, p, warnings, verifier };
  }

  it("a man in the middle replaying the first list forever: an identity revoked after the freeze fails closed (ERR_REVOCATION_LIST_EXPIRED) once the list's signed window has passed", async (t) => {
    const { admin, victim, bystander, p, warnings, verifier } = await feedThroughProxy(t, true);
    assert.equal(verifier.isRevoked(victim.record.spiffeId), false);
    // Revoked after the freeze, through the service itself: the verifier is fed the old list.
    await admin.revoke(victim.record.aztpId, "compromised");
    const revokedAt = Date.now();
    while (Date.now() - revokedAt < (WINDOW + TOLERANCE + 2) * 1000) await sleep(100);
    assert.ok(
      (p.replayed.get(`/v1/revocations/${TD}`) ?? 0) >= 3,
      "the proxy replayed the frozen list on every refresh",
    );

    // Six hints later, the victim must not verify: every revocation check fails closed.
    let answer: unknown;
    try {
      answer = verifier.isRevoked(victim.record.spiffeId);
    } catch (e) {
      answer = e;
    }
    assert.ok(
      answer instanceof AztpError && answer.code === ErrorCodes.REVOCATION_LIST_EXPIRED,
      `the revoked identity was checked against the frozen list and answered ${String(answer)} (isRevoked)`,
    );
    assert.throws(
      () => verifier.isRevoked(bystander.record.spiffeId, bystander.svid.serial),
      (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED,
    );
    // Fetching the frozen list again does not make it fresh: the fetch itself is refused.
    await rejectsWithCode(() => verifier.revocationFeed.refresh(TD), ErrorCodes.REVOCATION_LIST_EXPIRED);
    assert.throws(
      () => verifier.isRevoked(victim.record.spiffeId),
      (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED,
    );
    assert.ok(
      warnings.some((w) => w.code === ErrorCodes.REVOCATION_LIST_EXPIRED),
      "the refresh loop warned that the list it is fed is expired",
    );

    // The man in the middle gone, the next refresh recovers, and the revocation is seen.
    p.freeze.clear();
    const deadline = Date.now() + 4_000;
    for (;;) {
      try {
        assert.equal(verifier.isRevoked(victim.record.spiffeId), true);
        break;
      } catch (e) {
        assert.ok(e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED, String(e));
        assert.ok(Date.now() < deadline, "did not recover within the hint plus slack");
        await sleep(100);
      }
    }
    assert.equal(verifier.isRevoked(bystander.record.spiffeId, bystander.svid.serial), false);
  });

  it("the passing twin, the same path without the replay: the service renews the window while nothing changes, so nothing fails closed past it, and a revocation is seen within the hint", async (t) => {
    const { admin, victim, bystander, warnings, verifier } = await feedThroughProxy(t, false);
    const first = verifier.revocationFeed.list(TD);
    assert.ok(first !== undefined);
    assert.equal(first.nextUpdate.getTime() - first.thisUpdate.getTime(), WINDOW * 1000, "the signed window");
    const startedAt = Date.now();
    while (Date.now() - startedAt < (WINDOW + TOLERANCE + 2) * 1000) await sleep(100);

    // Nothing was revoked meanwhile, yet the list held is a newer signature of the same sequence.
    assert.equal(verifier.isRevoked(bystander.record.spiffeId, bystander.svid.serial), false);
    const renewed = verifier.revocationFeed.list(TD);
    assert.ok(renewed !== undefined);
    assert.equal(renewed.sequence, first.sequence, "no change in the revocations");
    assert.ok(renewed.thisUpdate > first.thisUpdate, "the service re-signed the unchanged list");
    assert.deepEqual(
      warnings.map((w) => w.code),
      [],
    );

    await admin.revoke(victim.record.aztpId, "compromised");
    const revokedAt = Date.now();
    while (!verifier.isRevoked(victim.record.spiffeId)) {
      assert.ok(Date.now() - revokedAt < 2_500, "the revocation was not seen within the hint plus slack");
      await sleep(50);
    }
    assert.equal(verifier.isRevoked(bystander.record.spiffeId, bystander.svid.serial), false);
  });

  it("an old signed list replayed is refused (ERR_REVOCATION_LIST_REPLAYED) and the newer one kept; an equal one is kept as is", async (t) => {
    const s = await serveOn(t);
    const { apiKey } = s;
    const admin = await client(t, {
      baseUrl: s.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    const a = await admin.issueIdentity({ name: "a" }, (await generateWorkloadKey()).csr);
    const b = await admin.issueIdentity({ name: "b" }, (await generateWorkloadKey()).csr);
    await admin.revoke(a.record.aztpId, "first");
    // Capture the list as it is now (sequence n, a revoked), then revoke b (sequence n+1).
    const old = await fetchText(`${s.url}/v1/revocations/${TD}`, s.bundlePem);
    await admin.revoke(b.record.aztpId, "second");

    const p = await proxy(t, s);
    const warnings: AztpError[] = [];
    const verifier = await client(t, {
      baseUrl: p.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "v"),
      onWarning: (e) => warnings.push(e),
    });
    assert.equal(verifier.isRevoked(b.record.spiffeId), true);
    const held = verifier.revocationSequence();

    p.replace.set(`/v1/revocations/${TD}`, old);
    await rejectsWithCode(() => verifier.revocationFeed.refresh(TD), ErrorCodes.REVOCATION_LIST_REPLAYED);
    assert.equal(verifier.revocationSequence(), held, "the newer list stays");
    assert.equal(
      verifier.isRevoked(b.record.spiffeId),
      true,
      "b's revocation cannot be un-seen by replaying the older list",
    );
    // The background loop meets the same replay within the hint and warns about it.
    const deadline = Date.now() + 3_000;
    while (!warnings.some((w) => w.code === ErrorCodes.REVOCATION_LIST_REPLAYED)) {
      assert.ok(Date.now() < deadline, "no replay warning from the refresh loop");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(verifier.isRevoked(b.record.spiffeId), true);

    // The current list again (equal sequence): accepted as a refresh, nothing changes.
    p.replace.delete(`/v1/revocations/${TD}`);
    const same = await verifier.revocationFeed.refresh(TD);
    assert.equal(same.sequence, held);
  });

  it("a list signed by another authority of the same trust domain name is refused (ERR_REVOCATION_LIST_INVALID), whatever its sequence", async (t) => {
    const s = await serveOn(t);
    const { apiKey } = s;
    const admin = await client(t, {
      baseUrl: s.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    const victim = await admin.issueIdentity({ name: "victim" }, (await generateWorkloadKey()).csr);
    await admin.revoke(victim.record.aztpId, "revoked for real");

    // An impostor authority with the same trust domain name: an empty list, a higher sequence.
    const impostor = await EmbeddedAuthority.init(tempDir(t, "impostor"), TD);
    for (let i = 0; i < 5; i++) {
      const r = await impostor.issueIdentity({ name: `x${i}` }, (await generateWorkloadKey()).csr);
      await impostor.revoke(r.record.spiffeId, "x");
      await impostor.reissue(r.record.spiffeId);
    }
    const forged = JSON.stringify({ list: impostor.signedRevocationList(TD) });

    const p = await proxy(t, s);
    const verifier = await client(t, {
      baseUrl: p.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "v"),
      onWarning: () => undefined,
    });
    const held = verifier.revocationSequence();
    p.replace.set(`/v1/revocations/${TD}`, forged);
    await rejectsWithCode(() => verifier.revocationFeed.refresh(TD), ErrorCodes.REVOCATION_LIST_INVALID);
    assert.equal(verifier.revocationSequence(), held);
    assert.equal(verifier.isRevoked(victim.record.spiffeId), true, "the forged empty list did not un-revoke anyone");
    // A list that is not even a JWS, and one for another trust domain.
    p.replace.set(`/v1/revocations/${TD}`, JSON.stringify({ list: "not.a.jws" }));
    await rejectsWithCode(() => verifier.revocationFeed.refresh(TD), ErrorCodes.REVOCATION_LIST_INVALID);
    const other = await EmbeddedAuthority.init(tempDir(t, "other"), "other.test");
    p.replace.set(`/v1/revocations/${TD}`, JSON.stringify({ list: other.signedRevocationList("other.test") }));
    await rejectsWithCode(() => verifier.revocationFeed.refresh(TD), ErrorCodes.REVOCATION_LIST_INVALID);
    assert.equal(verifier.isRevoked(victim.record.spiffeId), true);
  });

  it("a bundle with a lower spiffe_sequence is refused (ERR_BUNDLE_REPLAYED); the held bundle stays", async (t) => {
    const s = await serveOn(t);
    const { apiKey } = s;
    const p = await proxy(t, s);
    const verifier = await client(t, {
      baseUrl: p.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "v"),
      onWarning: () => undefined,
    });
    const held = verifier.bundle();
    const version = verifier.version;
    assert.ok(held.sequence !== undefined && held.sequence >= 1);
    const doc = JSON.parse(await fetchText(`${s.url}/.well-known/spiffe/bundle/${TD}`, s.bundlePem)) as {
      spiffe_sequence: number;
    };
    p.replace.set(`/.well-known/spiffe/bundle/${TD}`, JSON.stringify({ ...doc, spiffe_sequence: held.sequence - 1 }));
    await rejectsWithCode(() => verifier.bundleFeed.refresh(TD), ErrorCodes.BUNDLE_REPLAYED);
    assert.strictEqual(verifier.bundle(), held);
    // The same bundle again changes nothing: the version verifier caches key on stays put.
    p.replace.delete(`/.well-known/spiffe/bundle/${TD}`);
    assert.equal(await verifier.bundleFeed.refresh(TD), false);
    assert.equal(verifier.version, version);
  });

  it("CA rotation on the service: the feed takes the new bundle (higher sequence, both JWT keys), old and new SVIDs verify, a list signed with the new key is accepted at once", async (t) => {
    const s = await serveOn(t);
    const r = await client(t, {
      baseUrl: s.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "c"),
      onWarning: () => undefined,
    });
    const old = await r.issueIdentity({ name: "old" }, (await generateWorkloadKey()).csr);
    const before = r.bundle();
    const operator = await EmbeddedAuthority.open(s.home);
    await operator.rotateCa(TD);

    // Issued from the new intermediate: it chains to the same root, so it verifies at once.
    const fresh = await r.issueIdentity({ name: "fresh" }, (await generateWorkloadKey()).csr);
    // The list is now signed with the new JWT key; revoke() must still see its own revocation
    // at once (the feed refreshes the bundle when a list names a key it does not hold yet).
    await r.revoke(fresh.record.aztpId, "after rotation");
    assert.equal(r.isRevoked(fresh.record.spiffeId), true);
    assert.equal(r.isRevoked(old.record.spiffeId, old.svid.serial), false);

    await r.bundleFeed.refresh(TD);
    const after = r.bundle();
    assert.ok(
      (after.sequence ?? 0) > (before.sequence ?? 0),
      `spiffe_sequence ${before.sequence} -> ${after.sequence}`,
    );
    assert.equal(after.jwtAuthorities.size, before.jwtAuthorities.size + 1, "old and new JWT keys overlap");
    for (const kid of before.jwtAuthorities.keys())
      assert.ok(after.jwtAuthorities.has(kid), "the old JWT key stays while what it signed lives");
    assert.equal(
      verifyX509Svid(Certificate.parsePem(old.svid.chainPem), r.bundleSet()).id.toString(),
      old.record.spiffeId,
      "an SVID of the old generation still verifies",
    );
    assert.equal(
      verifyX509Svid(Certificate.parsePem(fresh.svid.chainPem), r.bundleSet()).id.toString(),
      fresh.record.spiffeId,
    );
  });

  it("outage: verification answers from held state, issuing fails clearly, past maxStaleness (from the list's signed thisUpdate) revocation checks fail closed, and a restart on the same port recovers by itself", async (t) => {
    let s = await serveOn(t);
    const { apiKey, home } = s;
    const port = s.running.port;
    const warnings: AztpError[] = [];
    const r = await client(t, {
      baseUrl: s.url,
      apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "c"),
      refreshHintSeconds: 1,
      // Tighter than the service's window (5 hints): a client's own bound, from the signed thisUpdate.
      maxStalenessSeconds: 3,
      clockToleranceSeconds: 0,
      onWarning: (e) => warnings.push(e),
      timeoutMs: 2_000,
    });
    const alive = await r.issueIdentity({ name: "alive" }, (await generateWorkloadKey()).csr);
    const dead = await r.issueIdentity({ name: "dead" }, (await generateWorkloadKey()).csr);
    await r.revoke(dead.record.aztpId, "x");

    await s.stop();
    const downAt = Date.now();
    // Verification goes on from held state.
    assert.equal(r.isRevoked(alive.record.spiffeId, alive.svid.serial), false);
    assert.equal(r.isRevoked(dead.record.spiffeId), true);
    assert.ok(r.bundle().x509Authorities.length >= 1);
    assert.deepEqual(r.policiesOf(alive.record.spiffeId), []);
    // Issuing fails, saying the service cannot be reached and where.
    const e = await rejectsWithCode(
      () => r.issueIdentity({ name: "new" }, "csr"),
      ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
    );
    assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    await rejectsWithCode(() => r.get(alive.record.spiffeId), ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE);

    // The list held was signed before the outage: 3 s (maxStaleness) later, revocation checks throw: fail closed.
    while (Date.now() - downAt < 3_500) await new Promise((res) => setTimeout(res, 100));
    const expired = await rejectsWithCode(() => r.isRevoked(alive.record.spiffeId), ErrorCodes.REVOCATION_LIST_EXPIRED);
    assert.match(expired.message, /maxStalenessSeconds/);
    const outageWarnings = warnings.filter((w) => w.code === ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE).length;
    assert.ok(outageWarnings >= 1, "the refresh loop warned about the outage");
    assert.ok(
      outageWarnings <= 2,
      `one warning per feed for the whole outage, not one per hint (got ${outageWarnings})`,
    );
    assert.ok(r.bundle().x509Authorities.length >= 1, "the bundle is still held");

    // Back on the same port: the next refresh (within the hint) recovers without being asked.
    s = await serveOn(t, { store: home, port });
    const upAt = Date.now();
    for (;;) {
      try {
        assert.equal(r.isRevoked(alive.record.spiffeId), false);
        break;
      } catch (err) {
        assert.ok(err instanceof AztpError && err.code === ErrorCodes.REVOCATION_LIST_EXPIRED, String(err));
        assert.ok(Date.now() - upAt < 4_000, "did not recover within the hint plus slack");
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    assert.equal(r.isRevoked(dead.record.spiffeId), true);
    const again = await r.issueIdentity({ name: "after" }, (await generateWorkloadKey()).csr);
    assert.equal(again.record.status, "active");
  });
});
