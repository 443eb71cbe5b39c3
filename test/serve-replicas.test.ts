/**
 * Two `aztp serve` replicas on one store (a home folder's registry, CA and API keys; each its
 * own audit file): nothing one replica needs is held only by the other. What is written through
 * one is what the next request to the other answers from.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { FileCaStore } from "../src/authority/file-ca-store.js";
import { FileRegistryStore } from "../src/authority/file-registry-store.js";
import { FileApiKeyStore } from "../src/store/api-keys.js";
import { openFileAuditStore } from "../src/serve/audit-store.js";
import { jsonLogger } from "../src/serve/log.js";
import { backendFromStores } from "../src/serve/open.js";
import { FileWorkloadEntryStore } from "../src/workload-api/entries.js";
import { startServe } from "../src/serve/server.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { tempDir } from "./helpers/authority-util.js";
import { serveRequest } from "./helpers/serve-util.js";

describe("aztp serve replicas on one store", () => {
  it("issue on A, revoke on B: A refuses at once; a key revoked on B is refused by A; serials stay distinct", async (t) => {
    const home = tempDir(t, "replicas");
    await EmbeddedAuthority.init(home, "rep.test");
    const replica = async (n: number) => {
      const backend = await backendFromStores({
        location: home,
        home,
        registry: new FileRegistryStore(home),
        ca: new FileCaStore(home),
        apiKeys: new FileApiKeyStore(home),
        workloadEntries: new FileWorkloadEntryStore(home),
        audit: await openFileAuditStore(join(tempDir(t, `audit${n}`))),
        close: async () => undefined,
      });
      const running = await startServe({
        backend,
        host: "127.0.0.1",
        port: 0,
        logger: jsonLogger("error", () => undefined),
      });
      t.after(() => running.stop());
      return running;
    };
    const [a, b] = await Promise.all([replica(1), replica(2)]);
    const ca = a.bundlePem();
    assert.equal(ca, b.bundlePem(), "one CA");
    const { key, record } = await new FileApiKeyStore(home).create({ name: "both" });
    const call = (r: typeof a, path: string, body?: unknown) =>
      serveRequest(r.url, path, { ca, key, ...(body !== undefined ? { body } : {}) });
    const csr = encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);

    const issued = await Promise.all(
      Array.from({ length: 10 }, (_, i) => call(i % 2 ? a : b, "/v1/identities", { request: { name: `r${i}` }, csr })),
    );
    assert.deepEqual([...new Set(issued.map((r) => r.status))], [201]);
    assert.equal(new Set(issued.map((r) => r.json.svid.serial)).size, 10);
    assert.equal((await call(a, "/v1/identities")).json.identities.length, 10, "A lists what B issued");

    const victim = issued[0]!.json;
    assert.equal((await call(b, "/v1/identities/revoke", { id: victim.record.spiffeId, reason: "test" })).status, 200);
    assert.deepEqual((await call(a, "/v1/verify", { chainPem: victim.svid.chainPem })).json.valid, false);
    assert.equal((await call(a, "/v1/identities/renew", { id: victim.record.spiffeId, csr })).status, 409);
    assert.equal(
      (await call(a, "/v1/identities/jwt-svid", { id: victim.record.spiffeId, audience: "x" })).json.error.code,
      "ERR_IDENTITY_REVOKED",
    );

    assert.equal(await b.backend.apiKeys.revoke(record.keyId), true);
    assert.equal((await call(a, "/v1/authority")).status, 401, "A refuses a key revoked through B");
  });
});
