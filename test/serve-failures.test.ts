/**
 * `aztp serve` when things go wrong underneath: a bug in the authority is a 500 without detail
 * (the log has it), a store that cannot be read is a 503 with Retry-After, and concurrent
 * issuance through HTTP loses nothing and duplicates no serial.
 */
import assert from "node:assert/strict";
import { writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend, type ServeBackend } from "../src/serve/open.js";
import { startServe as start } from "../src/serve/server.js";
import { tempDir } from "./helpers/authority-util.js";
import { client, serveRequest, startServe } from "./helpers/serve-util.js";

describe("aztp serve under failures", () => {
  it("an unexpected error is 500 ERR_SERVE_INTERNAL_FAILED with no detail in the answer, and its stack in the log", async (t) => {
    const home = tempDir(t, "serve-bug");
    await EmbeddedAuthority.init(home, "bug.test");
    const real = await openServeBackend(home);
    const authority = new Proxy(real.authority, {
      get(target, prop, receiver) {
        if (prop === "list") return () => Promise.reject(new TypeError("secret internal detail"));
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const backend: ServeBackend = {
      ...real,
      authority,
      ready: () => real.ready(),
      close: () => real.close(),
      issueServiceSvid: (c, s) => real.issueServiceSvid(c, s),
    };
    const logs: Array<Record<string, unknown>> = [];
    const running = await start({
      backend,
      host: "127.0.0.1",
      port: 0,
      logger: jsonLogger("debug", (l) => void logs.push(JSON.parse(l) as Record<string, unknown>)),
    });
    t.after(() => running.stop());
    const { key } = await real.apiKeys.create({});
    const r = await serveRequest(running.url, "/v1/identities", { ca: running.bundlePem(), key });
    assert.equal(r.status, 500);
    assert.equal(r.json.error.code, "ERR_SERVE_INTERNAL_FAILED");
    assert.doesNotMatch(r.text, /secret internal detail/);
    assert.ok(logs.some((l) => l.msg === "internal failure" && String(l.error).includes("secret internal detail")));
    assert.ok(logs.some((l) => l.msg === "request" && l.status === 500 && l.level === "error"));
    assert.equal(
      (await serveRequest(running.url, "/healthz", { ca: running.bundlePem() })).status,
      200,
      "still serving",
    );
  });

  it("a registry that cannot be read is 503 ERR_AUTHORITY_STORE_FAILED with Retry-After; fixed, it answers again", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const file = join(s.home, "registry.json");
    const good = readFileSync(file, "utf8");
    writeFileSync(file, "{torn");
    const r = await call("/v1/identities");
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error.code, "ERR_AUTHORITY_STORE_FAILED");
    assert.equal(r.headers["retry-after"], "1");
    assert.equal((await call("/readyz")).status, 503);
    assert.equal((await call("/.well-known/spiffe/bundle")).status, 200, "the bundle held is still handed out");
    assert.equal(
      (await call(`/v1/revocations/${s.trustDomain}`)).status,
      503,
      "a revocation list is not signed from stale state",
    );
    writeFileSync(file, good);
    assert.equal((await call("/v1/identities")).status, 200);
    assert.equal((await call("/readyz")).status, 200);
  });

  it("30 concurrent issuances over HTTP: all answered 201, 30 identities, 30 distinct serials", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const csr = encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, i) => call("/v1/identities", { body: { request: { name: `c${i}` }, csr } })),
    );
    assert.deepEqual([...new Set(answers.map((a) => a.status))], [201]);
    assert.equal(new Set(answers.map((a) => a.json.svid.serial)).size, 30);
    assert.equal((await call("/v1/identities")).json.identities.length, 30);
  });
});
