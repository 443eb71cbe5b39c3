/**
 * The Workload API's registration entries over `aztp serve` (src/serve/workload-entry-routes.ts)
 * and registering an identity by SPIFFE ID (`POST /v1/identities/register`), on a real service:
 * the flow on a home folder and on PostgreSQL (skipped, saying so, without AZTP_TEST_PG_URL),
 * bad bodies refused with their code and rule and nothing written, the identical entry, an
 * unknown or malformed entry ID, a trust domain the authority does not hold, a revoked identity;
 * and the API key's scope route by route, each refusal with a twin in scope that succeeds.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it, type TestContext } from "node:test";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import type { ApiKeyScope } from "../src/store/api-key-scope.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { client, serveRequest, startServe, type ServeAnswer, type StartedServe } from "./helpers/serve-util.js";

const TD = "td.test";
const WEB = `spiffe://${TD}/ns/default/sa/web`;
const DENIED = "ERR_SERVE_API_KEY_SCOPE_DENIED";

function entryBody(spiffeId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { spiffeId, selectors: ["unix:uid:1000"], ...extra };
}

function expectError(r: ServeAnswer, status: number, code: string, what: string): void {
  assert.equal(r.status, status, `${what}: ${r.text}`);
  assert.equal(r.json?.error?.code, code, `${what}: ${r.text}`);
}

/** The flow every store serves alike. */
async function flow(s: StartedServe): Promise<void> {
  const call = client(s);
  const made = await call("/v1/workload-entries", {
    body: {
      spiffeId: `aztp://${TD}/ns/default/sa/web`,
      selectors: ["unix:uid:1000", "unix:path:/usr/bin/python3"],
      hint: "internal",
    },
  });
  assert.equal(made.status, 201, made.text);
  const entry = made.json.entry;
  assert.equal(entry.spiffeId, WEB, "the spiffe:// form kept");
  assert.deepEqual(entry.selectors, ["unix:path:/usr/bin/python3", "unix:uid:1000"]);
  assert.equal(entry.hint, "internal");
  assert.match(entry.entryId, /^[0-9a-f-]{36}$/);

  // Its SPIFFE ID is an identity of the registry, unissued.
  const record = await call(`/v1/identities?id=${encodeURIComponent(WEB)}`);
  assert.equal(record.status, 200, record.text);
  assert.equal(record.json.record.status, "active");

  assert.deepEqual((await call("/v1/workload-entries")).json, { entries: [entry] });
  assert.deepEqual((await call(`/v1/workload-entries/${entry.entryId}`)).json, { entry });

  expectError(
    await call("/v1/workload-entries", {
      body: { spiffeId: WEB, selectors: ["unix:path:/usr/bin/python3", "unix:uid:1000"], hint: "other" },
    }),
    409,
    "ERR_WORKLOAD_ENTRY_EXISTS",
    "the identical entry (the hint aside)",
  );
  expectError(
    await call("/v1/workload-entries", { body: entryBody("spiffe://other.example/web") }),
    400,
    "ERR_TRUST_DOMAIN_NOT_ALLOWED",
    "a trust domain the authority does not hold",
  );
  const another = await call("/v1/workload-entries", { body: entryBody(WEB) });
  assert.equal(another.status, 201, "the same ID with other selectors is another entry");
  assert.equal((await call("/v1/workload-entries")).json.entries.length, 2);

  const unknown = randomUUID();
  expectError(
    await call(`/v1/workload-entries/${unknown}`, { method: "DELETE" }),
    404,
    "ERR_WORKLOAD_ENTRY_NOT_FOUND",
    "an unknown entry ID",
  );
  expectError(
    await call(`/v1/workload-entries/${unknown}`),
    404,
    "ERR_WORKLOAD_ENTRY_NOT_FOUND",
    "GET an unknown entry ID",
  );
  expectError(
    await call("/v1/workload-entries/not-a-uuid", { method: "DELETE" }),
    404,
    "ERR_WORKLOAD_ENTRY_NOT_FOUND",
    "an entry ID of another form",
  );

  const deleted = await call(`/v1/workload-entries/${entry.entryId}`, { method: "DELETE" });
  assert.equal(deleted.status, 200, deleted.text);
  assert.deepEqual(deleted.json, { entryId: entry.entryId, deleted: true });
  expectError(
    await call(`/v1/workload-entries/${entry.entryId}`, { method: "DELETE" }),
    404,
    "ERR_WORKLOAD_ENTRY_NOT_FOUND",
    "deleted twice",
  );
  assert.deepEqual(
    (await call("/v1/workload-entries")).json.entries.map((e: { entryId: string }) => e.entryId),
    [another.json.entry.entryId],
  );
  // Deleting an entry leaves its identity; revoking the identity refuses new entries for it.
  assert.equal((await call(`/v1/identities?id=${encodeURIComponent(WEB)}`)).json.record.status, "active");
  assert.equal((await call("/v1/identities/revoke", { body: { id: WEB, reason: "test" } })).status, 200);
  expectError(
    await call("/v1/workload-entries", { body: entryBody(WEB, { selectors: ["unix:gid:5"] }) }),
    409,
    "ERR_IDENTITY_REVOKED",
    "an entry for a revoked identity",
  );
}

describe("aztp serve: Workload API registration entries", () => {
  it("register, list, get, the identical entry, a foreign trust domain, delete, an unknown ID (home folder)", async (t) => {
    await flow(await startServe(t, { trustDomain: TD }));
  });

  it("the same on PostgreSQL", async (t: TestContext) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    await flow(await startServe(t, { trustDomain: TD, store: url }));
  });

  it("bad bodies are refused with their code and rule, and write nothing", async (t) => {
    const s = await startServe(t, { trustDomain: TD });
    const call = client(s);
    const cases: Array<{ label: string; body?: unknown; raw?: string; code: string; rule?: string }> = [
      {
        label: "no spiffeId",
        body: { selectors: ["unix:uid:1"] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "spiffe_id",
      },
      {
        label: "spiffeId not a string",
        body: entryBody(7 as unknown as string),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "spiffe_id",
      },
      {
        label: "not a SPIFFE ID",
        body: entryBody("https://td.test/web"),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "spiffe_id",
      },
      {
        label: "the trust domain's own ID",
        body: entryBody(`spiffe://${TD}`),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "spiffe_id",
      },
      { label: "no selectors", body: { spiffeId: WEB }, code: "ERR_WORKLOAD_ENTRY_INVALID", rule: "selectors" },
      {
        label: "empty selectors",
        body: { spiffeId: WEB, selectors: [] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selectors",
      },
      {
        label: "selectors not a list",
        body: { spiffeId: WEB, selectors: "unix:uid:1" },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selectors",
      },
      {
        label: "33 selectors",
        body: { spiffeId: WEB, selectors: Array.from({ length: 33 }, (_, i) => `unix:uid:${i}`) },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selectors",
      },
      {
        label: "a selector of another kind",
        body: { spiffeId: WEB, selectors: ["k8s:ns:default"] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selector",
      },
      {
        label: "a relative path",
        body: { spiffeId: WEB, selectors: ["unix:path:bin/sh"] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selector",
      },
      {
        label: "a selector twice",
        body: { spiffeId: WEB, selectors: ["unix:uid:1", "unix:uid:1"] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selector",
      },
      {
        label: "a selector not a string",
        body: { spiffeId: WEB, selectors: [1000] },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "selector",
      },
      { label: "an empty hint", body: entryBody(WEB, { hint: "" }), code: "ERR_WORKLOAD_ENTRY_INVALID", rule: "hint" },
      {
        label: "a hint with a newline",
        body: entryBody(WEB, { hint: "a\nb" }),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "hint",
      },
      {
        label: "a hint of 257 characters",
        body: entryBody(WEB, { hint: "h".repeat(257) }),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "hint",
      },
      {
        label: "a misspelt member",
        body: entryBody(WEB, { hnt: "internal" }),
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "field",
      },
      {
        label: "an entry wrapped in another object",
        body: { entry: entryBody(WEB) },
        code: "ERR_WORKLOAD_ENTRY_INVALID",
        rule: "field",
      },
      { label: "a JSON array", body: [entryBody(WEB)], code: "ERR_ARGUMENT_INVALID" },
      { label: "not JSON", raw: "{spiffeId:", code: "ERR_ARGUMENT_INVALID" },
      {
        label: "__proto__",
        raw: `{"spiffeId":"${WEB}","selectors":["unix:uid:1"],"__proto__":{"x":1}}`,
        code: "ERR_JSON_PROTO_KEY_NOT_ALLOWED",
      },
    ];
    for (const c of cases) {
      const r = await call("/v1/workload-entries", c.raw !== undefined ? { raw: c.raw } : { body: c.body });
      expectError(r, 400, c.code, c.label);
      if (c.rule !== undefined) assert.equal(r.json.error.rule, c.rule, c.label);
    }
    // Another media type is refused before the body is read.
    expectError(
      await call("/v1/workload-entries", {
        raw: JSON.stringify(entryBody(WEB)),
        headers: { "content-type": "text/plain" },
      }),
      415,
      "ERR_SERVE_CONTENT_TYPE_UNSUPPORTED",
      "text/plain",
    );
    assert.deepEqual((await call("/v1/workload-entries")).json.entries, [], "nothing written");
    expectError(
      await call(`/v1/identities?id=${encodeURIComponent(WEB)}`),
      404,
      "ERR_IDENTITY_NOT_FOUND",
      "no identity made by a refused entry",
    );
    // The passing twin: the same body, valid.
    assert.equal((await call("/v1/workload-entries", { body: entryBody(WEB, { hint: "h".repeat(256) }) })).status, 201);
  });

  it("needs an API key; other methods are 405 with Allow", async (t) => {
    const s = await startServe(t, { trustDomain: TD });
    const noKey = (path: string, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, ...o });
    expectError(await noKey("/v1/workload-entries"), 401, "ERR_SERVE_API_KEY_INVALID", "list without a key");
    expectError(
      await noKey("/v1/workload-entries", { body: entryBody(WEB) }),
      401,
      "ERR_SERVE_API_KEY_INVALID",
      "create without a key",
    );
    expectError(
      await noKey(`/v1/workload-entries/${randomUUID()}`, { method: "DELETE" }),
      401,
      "ERR_SERVE_API_KEY_INVALID",
      "delete without a key",
    );
    const put = await client(s)("/v1/workload-entries", { method: "PUT", body: entryBody(WEB) });
    expectError(put, 405, "ERR_SERVE_METHOD_NOT_ALLOWED", "PUT");
    assert.equal(put.headers.allow, "GET, POST");
    const post = await client(s)(`/v1/workload-entries/${randomUUID()}`, { body: {} });
    expectError(post, 405, "ERR_SERVE_METHOD_NOT_ALLOWED", "POST to an entry");
    assert.equal(post.headers.allow, "GET, DELETE");
  });

  describe("the API key's scope", () => {
    const TEAM = `spiffe://${TD}/team/web`;
    const TEAM_A = `spiffe://${TD}/team-a/web`;
    const OTHER = `spiffe://${TD}/other/db`;
    const FOREIGN = "spiffe://foreign.test/team/web";
    const IDS = [TEAM, TEAM_A, OTHER, FOREIGN];
    const KEYS: Array<{ label: string; scope: ApiKeyScope; covers: string[] }> = [
      { label: "unscoped", scope: {}, covers: IDS },
      { label: `trust domain ${TD}`, scope: { trustDomain: TD }, covers: [TEAM, TEAM_A, OTHER] },
      { label: "prefix /team", scope: { idPrefix: `spiffe://${TD}/team` }, covers: [TEAM] },
      {
        label: "prefix /team, partial",
        scope: { idPrefix: `spiffe://${TD}/team`, partialSegment: true },
        covers: [TEAM, TEAM_A],
      },
      { label: "trust domain foreign.test", scope: { trustDomain: "foreign.test" }, covers: [FOREIGN] },
      { label: "prefix of a look-alike trust domain", scope: { idPrefix: `spiffe://${TD}.evil` }, covers: [] },
    ];

    it("create, list, get and delete: refused outside the key's scope (403 to create, 404 to read or delete), each with a twin in scope", async (t) => {
      const s = await startServe(t, { trustDomain: TD });
      const admin = client(s);
      // A second trust domain the authority holds (an unscoped key's issuance creates it).
      const csr = encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
      const made = await admin("/v1/identities", {
        body: { request: { name: "seed", trustDomain: "foreign.test" }, csr },
      });
      assert.equal(made.status, 201, made.text);

      for (const k of KEYS) {
        const { key } = await s.newKey(k.scope, k.label);
        const call = (path: string, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, key, ...o });
        for (const id of IDS) {
          const what = `${k.label} on ${id}`;
          const inScope = k.covers.includes(id);
          // Distinct selectors per key, so no entry is the identical one of another key's.
          const body = { spiffeId: id, selectors: [`unix:uid:${KEYS.indexOf(k)}`] };
          const r = await call("/v1/workload-entries", { body });
          if (!inScope) {
            expectError(r, 403, DENIED, `create: ${what}`);
            // Refused before the body is looked at further: bad selectors change nothing.
            expectError(
              await call("/v1/workload-entries", { body: { ...body, selectors: ["bad"] } }),
              403,
              DENIED,
              `create with bad selectors: ${what}`,
            );
            continue;
          }
          assert.equal(r.status, 201, `create: ${what}: ${r.text}`);
        }
      }

      // Every entry as the unscoped key sees it.
      const all: Array<{ entryId: string; spiffeId: string }> = (await admin("/v1/workload-entries")).json.entries;
      for (const k of KEYS) {
        const { key } = await s.newKey(k.scope, `${k.label} (reader)`);
        const call = (path: string, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, key, ...o });
        const listed: Array<{ entryId: string }> = (await call("/v1/workload-entries")).json.entries;
        const expected = all.filter((e) => k.covers.includes(e.spiffeId));
        assert.deepEqual(
          listed.map((e) => e.entryId),
          expected.map((e) => e.entryId),
          `list: ${k.label} sees exactly the entries of its scope`,
        );
        for (const e of all) {
          const what = `${k.label} on ${e.spiffeId}`;
          const got = await call(`/v1/workload-entries/${e.entryId}`);
          if (k.covers.includes(e.spiffeId)) assert.equal(got.status, 200, `get: ${what}`);
          else expectError(got, 404, "ERR_WORKLOAD_ENTRY_NOT_FOUND", `get: ${what}`);
        }
      }

      // Delete: a key outside an entry's scope cannot, and the entry stays; the twin in scope can.
      for (const k of KEYS.filter((x) => x.label !== "unscoped")) {
        const { key } = await s.newKey(k.scope, `${k.label} (deleter)`);
        const call = (path: string, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, key, ...o });
        const left: Array<{ entryId: string; spiffeId: string }> = (await admin("/v1/workload-entries")).json.entries;
        const outside = left.find((e) => !k.covers.includes(e.spiffeId));
        assert.ok(outside !== undefined, `${k.label}: an entry outside its scope to attack`);
        expectError(
          await call(`/v1/workload-entries/${outside.entryId}`, { method: "DELETE" }),
          404,
          "ERR_WORKLOAD_ENTRY_NOT_FOUND",
          `delete: ${k.label} on ${outside.spiffeId}`,
        );
        assert.equal((await admin(`/v1/workload-entries/${outside.entryId}`)).status, 200, "it is still there");
        const inside = left.find((e) => k.covers.includes(e.spiffeId));
        if (inside === undefined) continue; // the look-alike key covers nothing: no twin to run
        const ok = await call(`/v1/workload-entries/${inside.entryId}`, { method: "DELETE" });
        assert.equal(ok.status, 200, `delete: ${k.label} on ${inside.spiffeId}: ${ok.text}`);
      }
    });

    it("POST /v1/identities/register: the SPIFFE ID in scope, members checked; the record answered, nothing issued", async (t) => {
      const s = await startServe(t, { trustDomain: TD });
      const { key } = await s.newKey({ idPrefix: `spiffe://${TD}/team` }, "team");
      const call = (path: string, o = {}) => serveRequest(s.url, path, { ca: s.bundlePem, key, ...o });
      expectError(
        await call("/v1/identities/register", { body: { spiffeId: OTHER } }),
        403,
        DENIED,
        "an ID outside the scope",
      );
      expectError(
        await call("/v1/identities/register", { body: { spiffeId: TEAM_A } }),
        403,
        DENIED,
        "an ID in the prefix's text but not its segment",
      );
      expectError(
        await call("/v1/identities/register", { body: { spiffeId: TEAM, name: "x" } }),
        400,
        "ERR_ARGUMENT_INVALID",
        "an unknown member",
      );
      expectError(
        await call("/v1/identities/register", { body: { spiffeId: TEAM, metadata: "x" } }),
        400,
        "ERR_ARGUMENT_INVALID",
        "metadata not an object",
      );
      expectError(await call("/v1/identities/register", { body: {} }), 400, "ERR_ARGUMENT_INVALID", "no spiffeId");
      expectError(
        await client(s)("/v1/identities/register", { body: { spiffeId: `spiffe://${TD}` } }),
        400,
        "ERR_SPIFFEID_ROOT_PATH_NOT_ALLOWED",
        "the trust domain's own ID",
      );
      const ok = await call("/v1/identities/register", { body: { spiffeId: TEAM, metadata: { owner: "web" } } });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.record.spiffeId, TEAM);
      assert.equal(ok.json.record.status, "active");
      assert.deepEqual(ok.json.record.serials, [], "nothing issued");
      assert.equal(ok.json.record.metadata.owner, "web");
      const again = await call("/v1/identities/register", { body: { spiffeId: TEAM } });
      assert.equal(again.status, 200, "registering it again finds it");
      expectError(
        await client(s)("/v1/identities/register", { body: { spiffeId: "spiffe://other.example/x" } }),
        400,
        "ERR_TRUST_DOMAIN_NOT_ALLOWED",
        "a trust domain the authority does not hold",
      );
    });
  });
});
