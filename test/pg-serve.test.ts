/**
 * `aztp serve` on PostgreSQL, end to end: two replicas (each its own pool, LISTEN connection and
 * caches) created at once on an empty database agree on one CA; remote clients of each issue,
 * a revocation through one reaches the other's verified feed within the hint, and the calls a
 * secured MCP pair makes land in the one shared audit chain, whose export verifies.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { verifyAuditLog } from "../src/audit/verify.js";
import { Aztp } from "../src/client/aztp.js";
import { secureMcpClient } from "../src/mcp/index.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend } from "../src/serve/open.js";
import { startServe, type RunningServe } from "../src/serve/server.js";
import { openPostgresStores } from "../src/store/postgres/index.js";
import { tempDir } from "./helpers/authority-util.js";
import { linkInMemory } from "./helpers/mcp-util.js";
import { securedToolServer } from "./helpers/mcp-tool-server.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { serveRequest } from "./helpers/serve-util.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { generateApiKey } from "../src/store/api-keys.js";
import pg from "pg";

const TD = "pg-serve.test";

async function replica(t: TestContext, url: string, kek: Buffer): Promise<RunningServe> {
  const backend = await openServeBackend(url, { kek, createTrustDomain: TD });
  const running = await startServe({
    backend,
    host: "127.0.0.1",
    port: 0,
    refreshHintSeconds: 1,
    logger: jsonLogger("error", () => undefined),
  });
  t.after(() => running.stop());
  return running;
}

describe("aztp serve on PostgreSQL", () => {
  it("two replicas, one CA; a revocation through B reaches A's clients within the hint; both sides of a call in the shared chain, which verifies once exported", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const [a, b] = await Promise.all([replica(t, url, kek), replica(t, url, kek)]);
    assert.equal(a.bundlePem(), b.bundlePem(), "replicas started together on an empty store agree on one CA");
    const stores = await openPostgresStores(url, { kek });
    t.after(() => stores.close());
    const { key: apiKey } = await stores.apiKeys.create({ name: "test" });
    const clientOf = (r: RunningServe, name: string): Aztp => {
      const c = Aztp.initialize({
        apiKey,
        baseUrl: r.url,
        trustBundle: r.bundlePem(),
        home: tempDir(t, name),
        refreshHintSeconds: 1,
      });
      t.after(() => c.close());
      return c;
    };
    const onA = clientOf(a, "a");
    const onB = clientOf(b, "b");

    const agent = await onA.secureConnect({}, "agent");
    const victim = await onB.secureConnect({}, "victim");
    assert.equal(await onA.verifyIdentity(victim.identity.aztpId), true);
    assert.notEqual(agent.identity.serial, victim.identity.serial);

    await onB.revokeIdentity(victim.identity.aztpId, "test");
    const remoteA = await onA.authority();
    const at = Date.now();
    while (!remoteA.isRevoked(victim.identity.spiffeId)) {
      assert.ok(Date.now() - at < 5_000, "A's client did not see B's revocation within the hint plus slack");
      await new Promise((r) => setTimeout(r, 50));
    }

    const audit = await onA.sharedAuditLog();
    const server = await securedToolServer(
      { runs: 0 },
      { client: onB, name: "tools", audit: await onB.sharedAuditLog() },
    );
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
      client: onA,
      name: "agent",
      audit,
    });
    await linkInMemory(t, server, client);
    for (let i = 0; i < 5; i++) await client.callTool({ name: "echo", arguments: { text: `hi ${i}` } });

    const out = join(tempDir(t, "export"), "audit.jsonl");
    const exported = await stores.audit.exportJsonl(out);
    assert.equal(
      exported.entries,
      10,
      "five calls, each with a caller and a callee entry, written through two replicas",
    );
    const verified = await verifyAuditLog(out, { witnessPath: false });
    assert.equal(verified.ok, true);
    assert.equal(verified.entries, 10);
  });

  it("a key row stored before segment-boundary scopes keeps working with the strict meaning: its prefix without a path covers its trust domain, not pg-serve.test.evil", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const a = await replica(t, url, kek);
    // The row as every earlier version wrote it for `--id-prefix spiffe://pg-serve.test`.
    const made = generateApiKey();
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    try {
      await db.query(
        "INSERT INTO aztp_api_keys (key_id, secret_hash, name, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
        [made.keyId, made.secretHash, "old", JSON.stringify({ idPrefix: `spiffe://${TD}` }), new Date(0).toISOString()],
      );
    } finally {
      await db.end();
    }
    const csr = async (): Promise<string> => encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
    const call = (path: string, body?: unknown) =>
      serveRequest(a.url, path, { ca: a.bundlePem(), key: made.key, ...(body !== undefined ? { body } : {}) });
    const escaped = await call("/v1/identities", {
      request: { name: "escaped", trustDomain: `${TD}.evil` },
      csr: await csr(),
    });
    assert.equal(escaped.status, 403, escaped.text);
    assert.equal(escaped.json.error.code, "ERR_SERVE_API_KEY_SCOPE_DENIED");
    assert.deepEqual((await call("/v1/authority")).json.trustDomains, [TD], "no CA for the trust domain out of scope");
    const twin = await call("/v1/identities", { request: { name: "ok" }, csr: await csr() });
    assert.equal(twin.status, 201, twin.text);
    assert.equal((await call(`/v1/identities?trustDomain=${TD}`)).json.identities.length, 1);
  });
});
