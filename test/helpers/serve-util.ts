/**
 * `aztp serve` in the test process, on loopback, with a real authority in a throw-away home
 * and an API key: `startServe(t, …)` gives its URL, the bundle's PEM roots and a key, and stops
 * it when the test ends. `serveRequest` speaks to it the way a careful client does: over HTTPS
 * it trusts only the bundle's roots and checks the URI SAN (spiffe://<td>/aztp/serve).
 */
import assert from "node:assert/strict";
import { randomBytes, type KeyObject } from "node:crypto";
import { request as httpRequest } from "node:http";
import { request as httpsRequest, type RequestOptions } from "node:https";
import type { PeerCertificate } from "node:tls";
import type { TestContext } from "node:test";
import { SignJWT } from "jose";
import { EmbeddedAuthority } from "../../src/authority/authority.js";
import type { ApiKeyScope } from "../../src/store/api-key-scope.js";
import { jsonLogger } from "../../src/serve/log.js";
import { openServeBackend } from "../../src/serve/open.js";
import { startServe as start, type RunningServe, type ServeOptions } from "../../src/serve/server.js";
import { Certificate } from "../../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../../src/spiffe/csr.js";
import { exportPrivateKeyPem } from "../../src/spiffe/keys.js";
import { encodePem } from "../../src/spiffe/pem.js";
import { isPostgresUrl } from "../../src/store/open-stores.js";
import { tempDir } from "./authority-util.js";

export interface StartedServe {
  url: string;
  bundlePem: string;
  /** An unscoped key. */
  apiKey: string;
  /** The home folder, or the PostgreSQL URL, it serves. */
  home: string;
  trustDomain: string;
  running: RunningServe;
  /** Log lines as parsed objects. */
  logs: Array<Record<string, unknown>>;
  /** Makes another key on the same store. */
  newKey(scope?: ApiKeyScope, name?: string): Promise<{ key: string; keyId: string }>;
  stop(): Promise<void>;
}

export interface StartServeTestOptions extends Omit<ServeOptions, "store" | "backend" | "logger"> {
  /**
   * A home folder with an authority; or a PostgreSQL URL (see helpers/pg.ts), where an
   * authority of `trustDomain` is created when the database holds none; default: a fresh home
   * folder (trust domain `trustDomain`).
   */
  store?: string;
  trustDomain?: string;
  /** The key-encryption key of a PostgreSQL store's CA keys (default: a random one). */
  kek?: Buffer;
}

export async function startServe(t: TestContext, options: StartServeTestOptions = {}): Promise<StartedServe> {
  const trustDomain = options.trustDomain ?? "serve.test";
  let home = options.store;
  if (home === undefined) {
    home = tempDir(t, "serve");
    await EmbeddedAuthority.init(home, trustDomain);
  }
  const logs: Array<Record<string, unknown>> = [];
  const logger = jsonLogger(
    options.logLevel ?? "debug",
    (line) => void logs.push(JSON.parse(line) as Record<string, unknown>),
  );
  const backend = isPostgresUrl(home)
    ? await openServeBackend(home, { kek: options.kek ?? randomBytes(32), createTrustDomain: trustDomain })
    : await openServeBackend(home);
  const { store: _s, trustDomain: _td, kek: _k, ...rest } = options;
  const running = await start({ host: "127.0.0.1", port: 0, ...rest, backend, logger });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await running.stop();
  };
  t.after(stop);
  const newKey = async (scope: ApiKeyScope = {}, name = "test"): Promise<{ key: string; keyId: string }> => {
    const { key, record } = await backend.apiKeys.create({ name, scope });
    return { key, keyId: record.keyId };
  };
  const { key } = await newKey({}, "default");
  return {
    url: running.url,
    bundlePem: running.bundlePem(),
    apiKey: key,
    home,
    trustDomain: backend.authority.defaultTrustDomain,
    running,
    logs,
    newKey,
    stop,
  };
}

export interface ServeAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body's bytes, as received (still encoded when the answer has a Content-Encoding). */
  bytes: Buffer;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: any;
}

export interface ServeRequestOptions {
  method?: string;
  /** A value to send as JSON, or a raw string/Buffer. */
  body?: unknown;
  raw?: string | Buffer;
  key?: string;
  headers?: Record<string, string>;
  /** Send the body without a Content-Type (by default a body is sent as application/json). */
  noContentType?: boolean;
  /** PEM roots to trust (HTTPS); default: none given means the request fails verification. */
  ca?: string;
  /** The SPIFFE ID the server must present (HTTPS); default spiffe://<any>/aztp/serve. */
  serverId?: string;
  timeoutMs?: number;
}

/** Checks the server's URI SAN instead of a host name (SVIDs have no DNS SAN). */
export function spiffeServerCheck(
  expected: string | undefined,
): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const sans = (cert.subjectaltname ?? "")
      .split(", ")
      .filter((s) => s.startsWith("URI:"))
      .map((s) => s.slice(4));
    if (sans.length !== 1) return new Error(`server certificate has ${sans.length} URI SANs`);
    const id = sans[0] as string;
    if (expected !== undefined ? id !== expected : !/^spiffe:\/\/[^/]+\/aztp\/serve$/.test(id))
      return new Error(`server is ${id}, not ${expected ?? "spiffe://<td>/aztp/serve"}`);
    return undefined;
  };
}

export function serveRequest(base: string, path: string, o: ServeRequestOptions = {}): Promise<ServeAnswer> {
  const url = new URL(path, base);
  const payload = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.key !== undefined) headers.authorization = `Bearer ${o.key}`;
  if (payload !== undefined) {
    if (o.noContentType !== true) headers["content-type"] ??= "application/json";
    if (headers["transfer-encoding"] === undefined) headers["content-length"] ??= String(Buffer.byteLength(payload));
  }
  const method = o.method ?? (payload === undefined ? "GET" : "POST");
  const common: RequestOptions = { method, headers, agent: false, timeout: o.timeoutMs ?? 20_000 };
  return new Promise((resolve, reject) => {
    const req =
      url.protocol === "https:"
        ? httpsRequest(url, {
            ...common,
            ...(o.ca !== undefined ? { ca: o.ca } : {}),
            checkServerIdentity: spiffeServerCheck(o.serverId),
          })
        : httpRequest(url, common);
    req.on("timeout", () => req.destroy(new Error(`request ${method} ${path} timed out`)));
    req.on("error", reject);
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const bytes = Buffer.concat(chunks);
        const text = bytes.toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, bytes, json });
      });
      res.on("error", reject);
    });
    if (payload !== undefined) req.end(payload);
    else req.end();
  });
}

/** serveRequest bound to a started service, trusting its bundle and sending its default key. */
export function client(s: StartedServe): (path: string, o?: ServeRequestOptions) => Promise<ServeAnswer> {
  return (path, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, key: s.apiKey, ...o });
}

// ---- workloads and their token requests, as the OAuth tests make them ----

export interface Workload {
  id: string;
  key: KeyObject;
  /** PKCS#8 PEM: what the MCP SDK's PrivateKeyJwtProvider takes. */
  keyPem: string;
  x5c: string[];
}

/** A workload issued through the service's API (CSR in, SVID out): its key stays here. */
export async function workload(base: string, ca: string | undefined, apiKey: string, name: string): Promise<Workload> {
  const wk = await generateWorkloadKey();
  const r = await serveRequest(base, "/v1/identities", {
    body: { request: { name }, csr: encodePem("CERTIFICATE REQUEST", wk.csr) },
    key: apiKey,
    ...(ca !== undefined ? { ca } : {}),
  });
  assert.equal(r.status, 201, r.text);
  return {
    id: r.json.record.spiffeId,
    key: wk.privateKey,
    keyPem: exportPrivateKeyPem(wk.privateKey),
    x5c: Certificate.parsePem(r.json.svid.chainPem).map((c) => c.der.toString("base64")),
  };
}

/** What the MCP SDK's PrivateKeyJwtProvider signs ({alg, typ: "JWT"}, no kid), claims overridable. */
export async function sdkAssertion(
  w: Workload,
  aud: string,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    iss: w.id,
    sub: w.id,
    aud,
    iat: now,
    exp: now + 300,
    jti: randomBytes(8).toString("hex"),
    ...claims,
  })
    .setProtectedHeader({ alg: "ES256", typ: "JWT", ...header })
    .sign(w.key);
}

/** A raw token request: a form POST, as curl sends it. */
export function tokenRequest(
  base: string,
  params: Record<string, string | undefined>,
  o: { key?: string; ca?: string; path?: string } = {},
): Promise<ServeAnswer> {
  const form = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) form.set(k, v);
  return serveRequest(base, o.path ?? "/oauth/token", {
    raw: form.toString(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
    ...(o.key !== undefined ? { key: o.key } : {}),
    ...(o.ca !== undefined ? { ca: o.ca } : {}),
  });
}
