/**
 * `aztp serve`'s TLS: HTTPS with its own SVID (spiffe://<td>/aztp/serve), which a client
 * verifying against the trust bundle's roots and the URI SAN accepts, and a client holding
 * another authority's roots refuses; rotation at half-life; plain HTTP only on loopback unless
 * explicitly allowed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { isLoopbackHost } from "../src/net/loopback.js";
import { parseListen, startServe as startRunning } from "../src/serve/server.js";
import { openssl, rejectsWithCode, tempDir } from "./helpers/authority-util.js";
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

/**
 * A plain `fetch` in a child process that trusts `caFile` through NODE_EXTRA_CA_CERTS, as an
 * OAuth library or an MCP host does: the system's TLS check, host name included.
 */
function plainFetch(url: string, caFile: string): Promise<{ ok: boolean; out: string }> {
  const script =
    "fetch(process.argv[1]).then(r => r.json()).then(j => console.log(JSON.stringify(j)), e => { console.log(String(e.cause?.code ?? e.message)); process.exit(3); })";
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["-e", script, url],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, timeout: 20_000 },
      (error, stdout) => resolve({ ok: error === null, out: stdout.trim() }),
    );
  });
}

describe("aztp serve TLS for standard HTTPS clients (host-name checks)", () => {
  it("--tls-name localhost: a plain fetch trusting the trust domain's root reaches the metadata by that name; without it the host-name check fails", async (t) => {
    const dir = tempDir(t, "tls-names");
    const named = await startServe(t, { tlsNames: ["localhost"] });
    const ca = join(dir, "root.pem");
    writeFileSync(ca, named.bundlePem);
    const port = new URL(named.url).port;
    const ok = await plainFetch(`https://localhost:${port}/.well-known/oauth-authorization-server`, ca);
    assert.ok(ok.ok, ok.out);
    assert.equal(JSON.parse(ok.out).issuer, `https://localhost:${port}`, "the name given is the issuer");

    const unnamed = await startServe(t);
    const ca2 = join(dir, "root2.pem");
    writeFileSync(ca2, unnamed.bundlePem);
    const p2 = new URL(unnamed.url).port;
    const refused = await plainFetch(`https://localhost:${p2}/.well-known/oauth-authorization-server`, ca2);
    assert.equal(refused.ok, false);
    assert.equal(refused.out, "ERR_TLS_CERT_ALTNAME_INVALID");
    // The listen host is named by default: its IP address passes.
    const byIp = await plainFetch(`https://127.0.0.1:${p2}/.well-known/oauth-authorization-server`, ca2);
    assert.ok(byIp.ok, byIp.out);
    // The library's own client still checks the SPIFFE ID, names or not.
    const chain = await presentedChain(named.url);
    assert.deepEqual(chain[0]?.uriSans, [`spiffe://${named.trustDomain}/aztp/serve`]);
  });

  it("--tls-cert/--tls-key: a certificate from the organisation's PKI, served as given (passing twin of the refusals: cert and key that match)", async (t) => {
    const dir = tempDir(t, "org-pki");
    const run = async (args: string[]): Promise<void> => {
      const r = await openssl(args, dir);
      assert.equal(r.code, 0, r.stderr);
    };
    writeFileSync(join(dir, "leaf.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n");
    await run([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-subj",
      "/CN=Org Test CA",
      "-days",
      "2",
    ]);
    await run([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "leaf.key",
      "-out",
      "leaf.csr",
      "-subj",
      "/CN=localhost",
    ]);
    await run([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "2",
      "-extfile",
      "leaf.ext",
    ]);
    const certPem = readFileSync(join(dir, "leaf.pem"), "utf8");
    const keyPem = readFileSync(join(dir, "leaf.key"), "utf8");
    const s = await startServe(t, { tlsCertificate: { certPem, keyPem } });
    const port = new URL(s.url).port;
    const ok = await plainFetch(
      `https://localhost:${port}/.well-known/oauth-authorization-server`,
      join(dir, "ca.pem"),
    );
    assert.ok(ok.ok, ok.out);
    assert.equal(s.running.serverId, undefined, "no SVID of its own");
    const started = s.logs.find((l) => l.msg === "started");
    assert.match(String(started?.certificate), /not rotated/);

    const otherKey = readFileSync(join(dir, "ca.key"), "utf8");
    await rejectsWithCode(
      () => startRunning({ store: s.home, port: 0, tlsCertificate: { certPem, keyPem: otherKey } }),
      "ERR_ARGUMENT_INVALID",
      "a key of another certificate",
    );
    await rejectsWithCode(
      () => startRunning({ store: s.home, port: 0, tlsNames: ["localhost"], tlsCertificate: { certPem, keyPem } }),
      "ERR_ARGUMENT_INVALID",
      "names for a given certificate",
    );
    await rejectsWithCode(
      () => startRunning({ store: s.home, port: 0, insecureHttp: true, tlsNames: ["localhost"] }),
      "ERR_ARGUMENT_INVALID",
      "names over plain HTTP",
    );
    await rejectsWithCode(
      () => startRunning({ store: s.home, port: 0, tlsNames: ["not a host"] }),
      "ERR_ARGUMENT_INVALID",
      "a name that is none",
    );
  });
});
