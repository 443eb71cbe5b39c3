/**
 * RemoteWorkloadEntryStore and RemoteAuthority.registerSpiffeId against the real `aztp serve`
 * (HTTPS, its own SVID): `registerWorkloadEntry` on a remote authority as on the embedded one,
 * the library's codes back from the service, a bad entry refused before any request, the list
 * held for `listMaxAgeMs`, and a service answering something that is not an entry refused.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it, type TestContext } from "node:test";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { RemoteWorkloadEntryStore } from "../src/client/remote-workload-entries.js";
import { registerWorkloadEntry } from "../src/workload-api/entries.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { startServe, type StartedServe } from "./helpers/serve-util.js";

const TD = "entries.test";
const WEB = `spiffe://${TD}/ns/default/sa/web`;

async function remote(t: TestContext, s: StartedServe, apiKey = s.apiKey): Promise<RemoteAuthority> {
  const r = await RemoteAuthority.connect({
    baseUrl: s.url,
    apiKey,
    trustBundle: s.bundlePem,
    home: tempDir(t, "client"),
    onWarning: () => undefined,
  });
  t.after(() => r.close());
  return r;
}

/** Requests the service logged for the entries' routes so far. */
function entryRequests(s: StartedServe): number {
  return s.logs.filter((l) => l.msg === "request" && String(l.path).startsWith("/v1/workload-entries")).length;
}

describe("RemoteWorkloadEntryStore over aztp serve", () => {
  it("registerWorkloadEntry on a RemoteAuthority: the identity registered, the entry stored; list, get, delete; the service's codes", async (t) => {
    const s = await startServe(t, { trustDomain: TD, logLevel: "info" });
    const r = await remote(t, s);
    const entries = r.workloadEntries();
    assert.equal(entries.location, s.url.replace(/\/+$/, ""));

    const entry = await registerWorkloadEntry(r, entries, {
      spiffeId: `aztp://${TD}/ns/default/sa/web`,
      selectors: ["unix:uid:1000", "unix:path:/usr/bin/python3"],
      hint: "internal",
    });
    assert.equal(entry.spiffeId, WEB);
    assert.deepEqual(entry.selectors, ["unix:path:/usr/bin/python3", "unix:uid:1000"]);
    assert.equal((await r.get(WEB)).status, "active", "its SPIFFE ID is an identity of the service's registry");
    assert.deepEqual(await entries.list(), [entry]);
    assert.deepEqual(await entries.get(entry.entryId), entry);
    assert.equal(await entries.get(randomUUID()), undefined, "an unknown entry");

    await rejectsWithCode(
      () =>
        registerWorkloadEntry(r, entries, {
          spiffeId: WEB,
          selectors: ["unix:uid:1000", "unix:path:/usr/bin/python3"],
        }),
      "ERR_WORKLOAD_ENTRY_EXISTS",
    );
    // The service refuses the identical entry itself too (one made through another client meanwhile).
    await rejectsWithCode(
      () => entries.create({ spiffeId: WEB, selectors: ["unix:path:/usr/bin/python3", "unix:uid:1000"] }),
      "ERR_WORKLOAD_ENTRY_EXISTS",
    );
    await rejectsWithCode(
      () => registerWorkloadEntry(r, entries, { spiffeId: "spiffe://other.example/web", selectors: ["unix:uid:1"] }),
      "ERR_TRUST_DOMAIN_NOT_ALLOWED",
    );

    // A bad entry fails here, before a request.
    const before = entryRequests(s);
    await rejectsWithCode(() => entries.create({ spiffeId: WEB, selectors: [] }), "ERR_WORKLOAD_ENTRY_INVALID");
    await rejectsWithCode(
      () => entries.create({ spiffeId: WEB, selectors: ["unix:uid:1"], extra: 1 } as never),
      "ERR_WORKLOAD_ENTRY_INVALID",
    );
    assert.equal(await entries.delete("not-an-entry-id"), false);
    assert.equal(await entries.get("not-an-entry-id"), undefined);
    assert.equal(entryRequests(s), before, "no request for what cannot be an entry");

    assert.equal(await entries.delete(entry.entryId), true);
    assert.equal(await entries.delete(entry.entryId), false, "deleted twice: not found");
    assert.deepEqual(await entries.list(), []);

    await entries.close();
    await rejectsWithCode(() => entries.list(), "ERR_AUTHORITY_STORE_FAILED");
  });

  it("a scoped key: registerSpiffeId and entries only for IDs it covers; it lists only those", async (t) => {
    const s = await startServe(t, { trustDomain: TD, logLevel: "error" });
    const admin = await remote(t, s);
    await registerWorkloadEntry(admin, admin.workloadEntries(), {
      spiffeId: `spiffe://${TD}/node-b/db`,
      selectors: ["unix:uid:2"],
    });
    const { key } = await s.newKey({ idPrefix: `spiffe://${TD}/node-a` }, "node-a");
    const r = await remote(t, s, key);
    const entries = r.workloadEntries();
    await rejectsWithCode(() => r.registerSpiffeId(`spiffe://${TD}/node-b/web`), "ERR_SERVE_API_KEY_SCOPE_DENIED");
    await rejectsWithCode(
      () => registerWorkloadEntry(r, entries, { spiffeId: `spiffe://${TD}/node-b/web`, selectors: ["unix:uid:1"] }),
      "ERR_SERVE_API_KEY_SCOPE_DENIED",
    );
    const record = await r.registerSpiffeId(`spiffe://${TD}/node-a/web`, { metadata: { team: "a" } });
    assert.equal(record.spiffeId, `spiffe://${TD}/node-a/web`);
    assert.equal(record.metadata.team, "a");
    const mine = await registerWorkloadEntry(r, entries, {
      spiffeId: `spiffe://${TD}/node-a/web`,
      selectors: ["unix:uid:1"],
    });
    assert.deepEqual(await entries.list(), [mine], "node-b's entry is not listed to node-a's key");
    assert.equal((await admin.workloadEntries().list()).length, 2);
  });

  it("listMaxAgeMs: list() answers from the list fetched within it; create and delete drop it", async (t) => {
    const s = await startServe(t, { trustDomain: TD, logLevel: "info" });
    const r = await remote(t, s);
    const held = r.workloadEntries({ listMaxAgeMs: 400 });
    const other = r.workloadEntries();
    const start = entryRequests(s);
    assert.deepEqual(await held.list(), []);
    await Promise.all([held.list(), held.list(), held.list()]);
    assert.equal(entryRequests(s) - start, 1, "one request within the age");

    const made = await registerWorkloadEntry(r, other, { spiffeId: WEB, selectors: ["unix:uid:1"] });
    assert.deepEqual(await held.list(), [], "another store's entry is not seen within the age");
    await new Promise((resolve) => setTimeout(resolve, 450));
    assert.deepEqual(await held.list(), [made], "it is after");
    assert.equal(await held.delete(made.entryId), true);
    assert.deepEqual(await held.list(), [], "its own delete drops what it held");
    assert.throws(
      () => r.workloadEntries({ listMaxAgeMs: -1 }),
      (e: { code?: string }) => e.code === "ERR_ARGUMENT_INVALID",
    );
  });

  it("a service answering something that is not an entry: ERR_AUTHORITY_REMOTE_ANSWER_INVALID", async (t) => {
    const answers: Record<string, unknown> = {
      "GET /v1/workload-entries": {
        entries: [{ entryId: randomUUID(), spiffeId: WEB, selectors: ["root"], createdAt: new Date().toISOString() }],
      },
      "POST /v1/workload-entries": { entry: { entryId: "1", spiffeId: WEB, selectors: ["unix:uid:1"] } },
      "DELETE /v1/workload-entries": { deleted: "yes" },
      "GET /v1/workload-entries/": { entry: null },
    };
    const server = createServer((req, res) => {
      const path = String(req.url).replace(/[0-9a-f-]{36}$/, "");
      const body = answers[`${req.method} ${path}`] ?? answers[`${req.method} ${path.replace(/\/$/, "")}`];
      req.resume();
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body ?? {}));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => server.close());
    const http = new AuthorityHttp({
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      apiKey: "aztp_x_y",
      roots: () => undefined,
      serverId: () => "spiffe://x/aztp/serve",
    });
    t.after(() => http.close());
    const entries = new RemoteWorkloadEntryStore(http);
    await rejectsWithCode(() => entries.list(), "ERR_AUTHORITY_REMOTE_ANSWER_INVALID");
    await rejectsWithCode(
      () => entries.create({ spiffeId: WEB, selectors: ["unix:uid:1"] }),
      "ERR_AUTHORITY_REMOTE_ANSWER_INVALID",
    );
    await rejectsWithCode(() => entries.delete(randomUUID()), "ERR_AUTHORITY_REMOTE_ANSWER_INVALID");
    await rejectsWithCode(() => entries.get(randomUUID()), "ERR_AUTHORITY_REMOTE_ANSWER_INVALID");
  });
});
