/**
 * Who the remote client agrees to talk to: the real `aztp serve` over HTTPS, checked against
 * the trust bundle (chain) and the expected server ID (URI SAN), never a DNS name; plain http
 * only to loopback or when explicitly allowed; https without a bundle refused, saying what
 * to pass.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { ErrorCodes } from "../src/errors.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { startServe, type StartedServe } from "./helpers/serve-util.js";

const TD = "tls.test";

async function serve(
  t: TestContext,
  options: { insecureHttp?: boolean } = {},
): Promise<{ s: StartedServe["running"]; apiKey: string }> {
  const started = await startServe(t, {
    trustDomain: TD,
    refreshHintSeconds: 1,
    logLevel: "error",
    ...(options.insecureHttp ? { insecureHttp: true } : {}),
  });
  return { s: started.running, apiKey: started.apiKey };
}

/** Runs `fn` with AZTP_TRUST_BUNDLE set to `value` (or unset), restoring it after. */
async function withTrustBundleEnv<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const before = process.env.AZTP_TRUST_BUNDLE;
  if (value === undefined) delete process.env.AZTP_TRUST_BUNDLE;
  else process.env.AZTP_TRUST_BUNDLE = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.AZTP_TRUST_BUNDLE;
    else process.env.AZTP_TRUST_BUNDLE = before;
  }
}

const quiet = { onWarning: () => undefined, timeoutMs: 3_000 };

describe("remote client TLS and transport rules", () => {
  it("accepts the service's SVID by its SPIFFE ID, whatever host name the URL uses (no DNS check)", async (t) => {
    const { s, apiKey } = await serve(t);
    const url = s.url.replace("127.0.0.1", "localhost");
    const r = await RemoteAuthority.connect({
      baseUrl: url,
      apiKey,
      trustBundle: s.bundlePem(),
      home: tempDir(t, "c"),
      ...quiet,
    });
    t.after(() => r.close());
    assert.equal(r.defaultTrustDomain, TD);
    assert.equal(s.serverId, `spiffe://${TD}/aztp/serve`);
  });

  it("wrong roots (another authority of the same trust domain name): ERR_AUTHORITY_REMOTE_UNTRUSTED, rule chain", async (t) => {
    const { s, apiKey } = await serve(t);
    const impostor = await EmbeddedAuthority.init(tempDir(t, "impostor"), TD);
    const e = await rejectsWithCode(
      () =>
        RemoteAuthority.connect({
          baseUrl: s.url,
          apiKey,
          trustBundle: impostor.bundle().toPem(),
          home: tempDir(t, "c"),
          ...quiet,
        }),
      ErrorCodes.AUTHORITY_REMOTE_UNTRUSTED,
    );
    assert.equal(e.rule, "chain");
  });

  it("a server ID other than the one expected: ERR_AUTHORITY_REMOTE_UNTRUSTED, rule server-id", async (t) => {
    const { s, apiKey } = await serve(t);
    const e = await rejectsWithCode(
      () =>
        RemoteAuthority.connect({
          baseUrl: s.url,
          apiKey,
          trustBundle: s.bundlePem(),
          serverId: `spiffe://${TD}/aztp/other`,
          home: tempDir(t, "c"),
          ...quiet,
        }),
      ErrorCodes.AUTHORITY_REMOTE_UNTRUSTED,
    );
    assert.equal(e.rule, "server-id");
    assert.match(e.message, /spiffe:\/\/tls\.test\/aztp\/serve/);
  });

  it("https with no trust bundle (and no AZTP_TRUST_BUNDLE) fails saying what to pass; AZTP_TRUST_BUNDLE is read when set", async (t) => {
    const { s, apiKey } = await serve(t);
    const e = await withTrustBundleEnv(undefined, () =>
      rejectsWithCode(
        () => RemoteAuthority.connect({ baseUrl: s.url, apiKey, home: tempDir(t, "c"), ...quiet }),
        ErrorCodes.AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING,
      ),
    );
    assert.match(e.message, /trustBundle/);
    assert.match(e.message, /AZTP_TRUST_BUNDLE/);
    const file = join(tempDir(t, "bundle"), "bundle.pem");
    writeFileSync(file, s.bundlePem());
    const r = await withTrustBundleEnv(file, () =>
      RemoteAuthority.connect({ baseUrl: s.url, apiKey, home: tempDir(t, "c"), ...quiet }),
    );
    t.after(() => r.close());
    assert.equal(r.defaultTrustDomain, TD);
  });

  it("plain http to a host that is not loopback is refused before any connection, unless allowInsecureHttp", async (t) => {
    for (const baseUrl of [
      "http://192.0.2.10:8443",
      "http://aztp.example.com",
      "http://[2001:db8::1]:80",
      "http://127.0.0.1.nip.io:80",
    ]) {
      const e = await rejectsWithCode(
        () => RemoteAuthority.connect({ baseUrl, apiKey: "k", home: tempDir(t, "c"), ...quiet }),
        ErrorCodes.AUTHORITY_REMOTE_HTTP_NOT_ALLOWED,
        baseUrl,
      );
      assert.match(e.message, /allowInsecureHttp/);
    }
    // Allowed explicitly, it still needs a bundle: one taken from the wire would be anyone's.
    await rejectsWithCode(
      () =>
        RemoteAuthority.connect({
          baseUrl: "http://aztp.invalid:8443",
          allowInsecureHttp: true,
          home: tempDir(t, "c"),
          ...quiet,
        }),
      ErrorCodes.AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING,
    );
    // With one, it goes as far as the network (a name that cannot resolve).
    const bundle = (await EmbeddedAuthority.init(tempDir(t, "a"), TD)).bundle();
    await rejectsWithCode(
      () =>
        RemoteAuthority.connect({
          baseUrl: "http://aztp.invalid:8443",
          allowInsecureHttp: true,
          trustBundle: bundle,
          home: tempDir(t, "c"),
          ...quiet,
        }),
      ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
    );
    await rejectsWithCode(
      () => RemoteAuthority.connect({ baseUrl: "ftp://127.0.0.1/", home: tempDir(t, "c"), ...quiet }),
      ErrorCodes.ARGUMENT_INVALID,
    );
  });

  it("plain http to loopback (aztp serve --insecure-http) works without a bundle: it is taken from the endpoint", async (t) => {
    const { s, apiKey } = await serve(t, { insecureHttp: true });
    assert.match(s.url, /^http:\/\/127\.0\.0\.1:/);
    const r = await withTrustBundleEnv(undefined, () =>
      RemoteAuthority.connect({ baseUrl: s.url, apiKey, home: tempDir(t, "c"), ...quiet }),
    );
    t.after(() => r.close());
    assert.equal(r.defaultTrustDomain, TD);
    assert.ok(r.bundle().jwtAuthorities.size >= 1);
  });

  it("a SPIFFE bundle (JSON) as the trust bundle, its trust domain given by serverId", async (t) => {
    const { s, apiKey } = await serve(t);
    const json = JSON.stringify((await EmbeddedAuthority.open(s.backend.location)).bundle().toSpiffe());
    const r = await RemoteAuthority.connect({
      baseUrl: s.url,
      apiKey,
      trustBundle: json,
      serverId: `spiffe://${TD}/aztp/serve`,
      home: tempDir(t, "c"),
      ...quiet,
    });
    t.after(() => r.close());
    assert.equal(r.defaultTrustDomain, TD);
  });

  it("nothing listening: ERR_AUTHORITY_REMOTE_UNAVAILABLE naming the URL and the cause", async (t) => {
    const { s, apiKey } = await serve(t);
    const { port } = s;
    const pem = s.bundlePem();
    await s.stop();
    const e = await rejectsWithCode(
      () =>
        RemoteAuthority.connect({
          baseUrl: `https://127.0.0.1:${port}`,
          apiKey,
          trustBundle: pem,
          home: tempDir(t, "c"),
          ...quiet,
        }),
      ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
    );
    assert.match(e.message, new RegExp(`https://127\\.0\\.0\\.1:${port}`));
    assert.match(e.message, /ECONNREFUSED/);
  });
});
