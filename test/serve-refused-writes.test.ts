/**
 * `aztp serve` authorises, then validates, then writes: a request it refuses leaves nothing in
 * the store. Issue 17: an issuance answered 400 ERR_AUTHORITY_CSR_INVALID had already created the
 * CA of the new trust domain it named. Checked on a home folder and on PostgreSQL, through the
 * service (authority, bundle, revocation feed, listing) and through the store itself; each
 * refused issuance has a twin without its fault that does create the trust domain.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it, type TestContext } from "node:test";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { encodePem } from "../src/spiffe/pem.js";
import { jsonLogger } from "../src/serve/log.js";
import { openServeBackend } from "../src/serve/open.js";
import { startServe as startServeOn } from "../src/serve/server.js";
import { openStores, type Stores } from "../src/store/open-stores.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { serveRequest, startServe, type ServeAnswer, type ServeRequestOptions } from "./helpers/serve-util.js";

const TD = "refused.test";

interface Service {
  url: string;
  /** An unscoped key, and one limited to the default trust domain. */
  key: string;
  scopedKey: string;
  /** The store as another process opens it. */
  stores: Stores;
}

async function onHomeFolder(t: TestContext): Promise<Service> {
  const s = await startServe(t, { trustDomain: TD, insecureHttp: true });
  const stores = await openStores(s.home);
  t.after(() => stores.close());
  return { url: s.url, key: s.apiKey, scopedKey: (await s.newKey({ trustDomain: TD })).key, stores };
}

async function onPostgres(t: TestContext): Promise<Service> {
  const url = (await pgDatabase(t)) as string;
  const kek = randomBytes(32);
  const backend = await openServeBackend(url, { kek, createTrustDomain: TD });
  const running = await startServeOn({
    backend,
    host: "127.0.0.1",
    port: 0,
    insecureHttp: true,
    logger: jsonLogger("error", () => undefined),
  });
  t.after(() => running.stop());
  const stores = await openStores(url, { kek });
  t.after(() => stores.close());
  const key = (await stores.apiKeys.create({ name: "admin" })).key;
  const scopedKey = (await stores.apiKeys.create({ name: "scoped", scope: { trustDomain: TD } })).key;
  return { url: running.url, key, scopedKey, stores };
}

const csrPem = async (): Promise<string> => encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);

function caller(s: Service): (path: string, o?: ServeRequestOptions) => Promise<ServeAnswer> {
  return (path, o = {}) => serveRequest(s.url, path, { key: s.key, ...o });
}

/** Everything the store holds, as another process reads it. */
async function storeState(stores: Stores): Promise<string> {
  const { state } = await stores.registry.fresh();
  const config = await stores.ca.readConfig();
  return JSON.stringify({ state, trustDomains: config?.trustDomains, rotations: config?.rotations });
}

interface IssueCase {
  label: string;
  status: number;
  code: string;
  /** The refused body (and key), naming the new trust domain `td`. */
  refused(td: string, ids: Ids, s: Service): Promise<[unknown, string]>;
  twin(td: string, ids: Ids, s: Service): Promise<[unknown, string]>;
}

interface Ids {
  parent: string;
  revoked: string;
}

const ISSUE_CASES: IssueCase[] = [
  {
    label: "a CSR that is not one",
    status: 400,
    code: "ERR_AUTHORITY_CSR_INVALID",
    refused: async (td, _i, s) => [{ request: { name: "w", trustDomain: td }, csr: "not a csr" }, s.key],
    twin: async (td, _i, s) => [{ request: { name: "w", trustDomain: td }, csr: await csrPem() }, s.key],
  },
  {
    label: "an unknown parent",
    status: 404,
    code: "ERR_IDENTITY_NOT_FOUND",
    refused: async (td, _i, s) => [
      {
        request: { name: "w", trustDomain: td, parentIdentity: `aztp://${TD}/workload/production/node/ghost` },
        csr: await csrPem(),
      },
      s.key,
    ],
    twin: async (td, i, s) => [
      { request: { name: "w", trustDomain: td, parentIdentity: i.parent }, csr: await csrPem() },
      s.key,
    ],
  },
  {
    label: "a revoked parent",
    status: 400,
    code: "ERR_PARENT_INVALID",
    refused: async (td, i, s) => [
      { request: { name: "w", trustDomain: td, parentIdentity: i.revoked }, csr: await csrPem() },
      s.key,
    ],
    twin: async (td, i, s) => [
      { request: { name: "w", trustDomain: td, parentIdentity: i.parent }, csr: await csrPem() },
      s.key,
    ],
  },
  {
    label: "a link to an unknown identity",
    status: 404,
    code: "ERR_IDENTITY_NOT_FOUND",
    refused: async (td, _i, s) => [
      {
        request: { name: "w", trustDomain: td, linkTo: [`spiffe://${TD}/workload/production/node/ghost`] },
        csr: await csrPem(),
      },
      s.key,
    ],
    twin: async (td, i, s) => [
      { request: { name: "w", trustDomain: td, linkTo: [i.parent] }, csr: await csrPem() },
      s.key,
    ],
  },
  {
    label: "a name that is not one path segment",
    status: 400,
    code: "ERR_ARGUMENT_INVALID",
    refused: async (td, _i, s) => [{ request: { name: "a/b", trustDomain: td }, csr: await csrPem() }, s.key],
    twin: async (td, _i, s) => [{ request: { name: "a-b", trustDomain: td }, csr: await csrPem() }, s.key],
  },
  {
    label: "a lifetime that is not positive",
    status: 400,
    code: "ERR_ARGUMENT_INVALID",
    refused: async (td, _i, s) => [
      { request: { name: "w", trustDomain: td }, csr: await csrPem(), ttlSeconds: 0 },
      s.key,
    ],
    twin: async (td, _i, s) => [
      { request: { name: "w", trustDomain: td }, csr: await csrPem(), ttlSeconds: 60 },
      s.key,
    ],
  },
  {
    label: "a key whose scope does not cover the new trust domain",
    status: 403,
    code: "ERR_SERVE_API_KEY_SCOPE_DENIED",
    refused: async (td, _i, s) => [{ request: { name: "w", trustDomain: td }, csr: await csrPem() }, s.scopedKey],
    twin: async (td, _i, s) => [{ request: { name: "w", trustDomain: td }, csr: await csrPem() }, s.key],
  },
];

async function refusedIssuance(t: TestContext, s: Service): Promise<void> {
  const call = caller(s);
  const issue = async (name: string): Promise<string> => {
    const r = await call("/v1/identities", { body: { request: { name }, csr: await csrPem() } });
    assert.equal(r.status, 201, r.text);
    return r.json.record.aztpId as string;
  };
  const ids: Ids = { parent: await issue("parent"), revoked: await issue("revoked") };
  assert.equal((await call("/v1/identities/revoke", { body: { id: ids.revoked, reason: "test" } })).status, 200);
  const failures: string[] = [];
  for (const [i, c] of ISSUE_CASES.entries()) {
    const td = `fresh-${i}.test`;
    const before = await storeState(s.stores);
    const [body, key] = await c.refused(td, ids, s);
    const r = await call("/v1/identities", { body, key });
    assert.equal(r.status, c.status, `${c.label}: ${r.text}`);
    assert.equal(r.json.error.code, c.code, c.label);
    if ((await storeState(s.stores)) !== before) failures.push(`${c.label}: the store changed`);
    if ((await s.stores.ca.loadCa(td)).length !== 0) failures.push(`${c.label}: the store holds a CA for ${td}`);
    const authority = await call("/v1/authority");
    if (authority.json.trustDomains.includes(td)) failures.push(`${c.label}: /v1/authority lists ${td}`);
    if ((await serveRequest(s.url, `/.well-known/spiffe/bundle/${td}`)).status !== 404)
      failures.push(`${c.label}: a bundle is served for ${td}`);
    if ((await serveRequest(s.url, `/v1/revocations/${td}`)).status !== 404)
      failures.push(`${c.label}: a revocation list is served for ${td}`);
    const listed = await call(`/v1/identities?trustDomain=${td}`);
    if (listed.json.identities.length !== 0) failures.push(`${c.label}: ${td} lists identities`);
    // The twin: the same request without its fault creates the trust domain, as the checks above would see.
    const [body2, key2] = await c.twin(td, ids, s);
    const ok = await call("/v1/identities", { body: body2, key: key2 });
    assert.equal(ok.status, 201, `${c.label} (twin): ${ok.text}`);
    assert.equal((await s.stores.ca.loadCa(td)).length, 1, `${c.label} (twin): the CA is in the store`);
    assert.equal((await serveRequest(s.url, `/.well-known/spiffe/bundle/${td}`)).status, 200, `${c.label} (twin)`);
  }
  assert.deepEqual(failures, []);
}

/** The other writing routes: a refused request changes nothing in the store. */
async function refusedWrites(t: TestContext, s: Service): Promise<void> {
  const call = caller(s);
  const issue = async (name: string, extra: Record<string, unknown> = {}): Promise<string> => {
    const r = await call("/v1/identities", { body: { request: { name, ...extra }, csr: await csrPem() } });
    assert.equal(r.status, 201, r.text);
    return r.json.record.aztpId as string;
  };
  const a = await issue("a");
  const child = await issue("child", { parentIdentity: a });
  const gone = await issue("gone");
  const orphan = await issue("orphan", { parentIdentity: gone });
  assert.equal((await call("/v1/identities/revoke", { body: { id: gone, reason: "t" } })).status, 200);
  const ghost = `aztp://${TD}/workload/production/node/ghost`;
  const entry = (caller: string): Record<string, unknown> => ({
    side: "callee",
    caller,
    callerVerified: true,
    callee: caller,
    tool: "t",
    argsDigest: "d",
    decision: "allow",
  });
  const cases: Array<[string, string, unknown, number, string, string?]> = [
    [
      "renew an unknown identity",
      "/v1/identities/renew",
      { id: ghost, csr: await csrPem() },
      404,
      "ERR_IDENTITY_NOT_FOUND",
    ],
    ["renew with a bad CSR", "/v1/identities/renew", { id: a, csr: "nope" }, 400, "ERR_AUTHORITY_CSR_INVALID"],
    [
      "renew a revoked identity",
      "/v1/identities/renew",
      { id: gone, csr: await csrPem() },
      409,
      "ERR_IDENTITY_REVOKED",
    ],
    ["revoke an unknown identity", "/v1/identities/revoke", { id: ghost, reason: "x" }, 404, "ERR_IDENTITY_NOT_FOUND"],
    ["reissue under a revoked parent", "/v1/identities/reissue", { id: orphan }, 409, "ERR_IDENTITY_REVOKED"],
    ["reissue an unknown identity", "/v1/identities/reissue", { id: ghost }, 404, "ERR_IDENTITY_NOT_FOUND"],
    [
      "link to an unknown identity",
      "/v1/links",
      { source: a, target: ghost, type: "linked" },
      404,
      "ERR_IDENTITY_NOT_FOUND",
    ],
    ["link to itself", "/v1/links", { source: a, target: a, type: "linked" }, 400, "ERR_ARGUMENT_INVALID"],
    [
      "a parent link making a cycle",
      "/v1/links",
      { source: a, target: child, type: "parent" },
      400,
      "ERR_PARENT_INVALID",
    ],
    ["a policy that is not one", "/v1/policies", { id: a, document: { Version: 3 } }, 400, "ERR_POLICY_INVALID"],
    [
      "a policy on an unknown identity",
      "/v1/policies",
      { id: ghost, document: { Version: "2012-10-17", Statement: [] } },
      404,
      "ERR_IDENTITY_NOT_FOUND",
    ],
    ["detach from an unknown identity", "/v1/policies/detach", { id: ghost, code: "x" }, 404, "ERR_IDENTITY_NOT_FOUND"],
    [
      "an audit batch with one bad entry",
      "/v1/audit",
      { entries: [entry(a), { side: "callee" }] },
      400,
      "ERR_ARGUMENT_INVALID",
    ],
    [
      "an audit batch with an entry out of scope",
      "/v1/audit",
      { entries: [entry(a), entry("spiffe://elsewhere.test/x")] },
      403,
      "ERR_SERVE_API_KEY_SCOPE_DENIED",
      s.scopedKey,
    ],
  ];
  for (const [label, path, body, status, code, key] of cases) {
    const before = await storeState(s.stores);
    const auditBefore = (await call("/v1/audit?limit=1000")).json.entries.length;
    const r = await call(path, { body, ...(key !== undefined ? { key } : {}) });
    assert.equal(r.status, status, `${label}: ${r.text}`);
    assert.equal(r.json.error.code, code, label);
    assert.equal(await storeState(s.stores), before, `${label}: the store changed`);
    assert.equal((await call("/v1/audit?limit=1000")).json.entries.length, auditBefore, `${label}: audit appended`);
  }
}

describe("aztp serve: a refused request leaves nothing in the store", () => {
  it("home folder: a refused issuance into a new trust domain makes no CA, lists nothing, serves no bundle", async (t) => {
    await refusedIssuance(t, await onHomeFolder(t));
  });

  it("PostgreSQL: a refused issuance into a new trust domain makes no CA, lists nothing, serves no bundle", async (t) => {
    if (skipWithoutPg(t)) return;
    await refusedIssuance(t, await onPostgres(t));
  });

  it("home folder: every other writing route, refused, changes nothing", async (t) => {
    await refusedWrites(t, await onHomeFolder(t));
  });

  it("PostgreSQL: every other writing route, refused, changes nothing", async (t) => {
    if (skipWithoutPg(t)) return;
    await refusedWrites(t, await onPostgres(t));
  });
});
