/**
 * `aztp serve`'s TLS: HTTPS with its own SVID (spiffe://<td>/aztp/serve), which a client
 * verifying against the trust bundle's roots and the URI SAN accepts, and a client holding
 * another authority's roots refuses; rotation at half-life; plain HTTP only on loopback unless
 * explicitly allowed.
 */
import assert from "node:assert/strict";
import { connect as tlsConnect } from "node:tls";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { isLoopbackHost } from "../src/net/loopback.js";
import { parseListen } from "../src/serve/server.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { serveRequest, startServe } from "./helpers/serve-util.js";

/** The certificate chain the server presents on a fresh connection (no verification). */
function presentedChain(url: string): Promise<Certificate[]> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const chain: Certificate[] = [];
      let c = sock.getPeerCertificate(true);
      const seen = new Set<string>();
      while (c && c.raw && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256);
        chain.push(Certificate.fromDer(c.raw));
        c = c.issuerCertificate;
      }
      sock.end();
      resolve(chain);
    });
    sock.on("error", reject);
  });
}

describe("aztp serve TLS", () => {
  it("serves its own X.509-SVID: verified against the bundle roots and the URI SAN; another CA's roots or another expected ID are refused", async (t) => {
    const s = await startServe(t);
    const expectedId = `spiffe://${s.trustDomain}/aztp/serve`;
    assert.equal(s.running.serverId, expectedId);
    assert.ok(s.url.startsWith("https://"));
    const ok = await serveRequest(s.url, "/v1/authority", { ca: s.bundlePem, key: s.apiKey, serverId: expectedId });
    assert.equal(ok.status, 200);

    const chain = await presentedChain(s.url);
    const leaf = chain[0] as Certificate;
    assert.deepEqual(leaf.uriSans, [expectedId]);
    const verified = verifyX509Svid(
      chain.slice(0, 2),
      new BundleSet([TrustBundle.fromPem(s.trustDomain, s.bundlePem)]),
    );
    assert.equal(verified.id.toString(), expectedId);

    const otherHome = tempDir(t, "other");
    const other = await EmbeddedAuthority.init(otherHome, s.trustDomain);
    await assert.rejects(
      serveRequest(s.url, "/healthz", { ca: other.bundle().toPem() }),
      (e: NodeJS.ErrnoException) => {
        assert.match(String(e.code ?? e.message), /UNABLE_TO_VERIFY|SELF_SIGNED|CERT|verify/i);
        return true;
      },
    );
    await assert.rejects(serveRequest(s.url, "/healthz", {}), "no roots given: the system store does not hold this CA");
    await assert.rejects(
      serveRequest(s.url, "/healthz", { ca: s.bundlePem, serverId: `spiffe://${s.trustDomain}/someone-else` }),
      /not spiffe:\/\/.*someone-else/,
    );
    // The service's SVID is not in the registry: it is the service's, not a workload's.
    assert.deepEqual(
      (await serveRequest(s.url, "/v1/identities", { ca: s.bundlePem, key: s.apiKey })).json.identities,
      [],
    );
  });

  it("rotates its SVID at half-life: new connections get a new serial, and still verify", async (t) => {
    // A 3 s SVID: replaced after 1.5 s.
    const s = await startServe(t, { svidTtlSeconds: 3 });
    const first = (await presentedChain(s.url))[0] as Certificate;
    await new Promise((r) => setTimeout(r, 2500));
    const second = (await presentedChain(s.url))[0] as Certificate;
    assert.notEqual(second.serialNumber, first.serialNumber);
    assert.ok(
      s.logs.some((l) => l.msg === "tls svid rotated"),
      "rotation is logged",
    );
    assert.equal((await serveRequest(s.url, "/healthz", { ca: s.bundlePem })).status, 200);
  });

  it("plain HTTP: served on loopback with --insecure-http (said at start), refused elsewhere unless allowed", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    assert.ok(s.url.startsWith("http://127.0.0.1:"));
    assert.equal((await serveRequest(s.url, "/v1/authority", { key: s.apiKey })).status, 200);
    const started = s.logs.find((l) => l.msg === "started");
    assert.equal(started?.tls, false);
    assert.match(String(started?.warning), /PLAIN HTTP/);

    for (const host of ["0.0.0.0", "::", "10.1.2.3"]) {
      await rejectsWithCode(
        () => startServe(t, { insecureHttp: true, host }),
        "ERR_SERVE_INSECURE_HTTP_NOT_ALLOWED",
        host,
      );
    }
    const allowed = await startServe(t, { insecureHttp: true, host: "0.0.0.0", allowInsecureNonLoopback: true });
    assert.equal((await serveRequest(`http://127.0.0.1:${allowed.running.port}`, "/healthz")).status, 200);
  });

  it("loopback and --listen parsing", () => {
    const loop: Array<[string, boolean]> = [
      ["127.0.0.1", true],
      ["127.9.9.9", true],
      ["::1", true],
      ["[::1]", true],
      ["localhost", true],
      ["::ffff:127.0.0.1", true],
      ["0.0.0.0", false],
      ["::", false],
      ["10.0.0.1", false],
      ["128.0.0.1", false],
      ["localhost.evil.com", false],
      ["127.0.0.1.nip.io", false],
    ];
    for (const [h, want] of loop) assert.equal(isLoopbackHost(h), want, h);
    assert.deepEqual(parseListen("127.0.0.1:8443"), { host: "127.0.0.1", port: 8443 });
    assert.deepEqual(parseListen("[::1]:0"), { host: "::1", port: 0 });
    assert.deepEqual(parseListen("9000"), { host: "127.0.0.1", port: 9000 });
    for (const bad of ["", "host", "1.2.3.4:", "1.2.3.4:99999", "::1:80", "a:b"])
      assert.throws(() => parseListen(bad), /--listen/, bad);
  });
});
