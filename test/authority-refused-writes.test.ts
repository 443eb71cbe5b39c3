/**
 * Authorise, then validate, then write: an issuance the authority refuses leaves nothing behind,
 * in particular not the CA of the new trust domain it named (issue 17: a request answered 400
 * ERR_AUTHORITY_CSR_INVALID had already created one). Checked on both stores an authority runs
 * on, a home folder and PostgreSQL, through the stores themselves; each refusal has a twin, the
 * same request without its fault, that creates the trust domain, so the check can see one.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import type { RegisterRequest } from "../src/authority/registry.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { openStores, type Stores } from "../src/store/open-stores.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

const TD = "refused.test";

interface Case {
  label: string;
  code: string;
  /** The refused request, made in trust domain `td`. */
  refused(td: string, h: Harness): Promise<[RegisterRequest, Buffer | string, { ttlSeconds?: number; now?: Date }]>;
  /** The same request without its fault. */
  twin(td: string, h: Harness): Promise<[RegisterRequest, Buffer | string, { ttlSeconds?: number; now?: Date }]>;
}

interface Harness {
  authority: EmbeddedAuthority;
  /** A live identity of the default trust domain. */
  parent: string;
  /** A revoked identity of the default trust domain. */
  revoked: string;
}

const csr = async (): Promise<Buffer> => (await generateWorkloadKey()).csr;

const CASES: Case[] = [
  {
    label: "a CSR that is not one",
    code: "ERR_AUTHORITY_CSR_INVALID",
    refused: async (td) => [{ name: "w", trustDomain: td }, "not a csr", {}],
    twin: async (td) => [{ name: "w", trustDomain: td }, await csr(), {}],
  },
  {
    label: "a CSR whose signature does not verify",
    code: "ERR_AUTHORITY_CSR_INVALID",
    refused: async (td) => {
      const bad = Buffer.from(await csr());
      bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0x01;
      return [{ name: "w", trustDomain: td }, bad, {}];
    },
    twin: async (td) => [{ name: "w", trustDomain: td }, await csr(), {}],
  },
  {
    label: "a name that is not one path segment",
    code: "ERR_ARGUMENT_INVALID",
    refused: async (td) => [{ name: "a/b", trustDomain: td }, await csr(), {}],
    twin: async (td) => [{ name: "a-b", trustDomain: td }, await csr(), {}],
  },
  {
    label: "metadata that is not an object",
    code: "ERR_ARGUMENT_INVALID",
    refused: async (td) => [
      { name: "w", trustDomain: td, metadata: [] as unknown as Record<string, unknown> },
      await csr(),
      {},
    ],
    twin: async (td) => [{ name: "w", trustDomain: td, metadata: {} }, await csr(), {}],
  },
  {
    label: "a lifetime that is not positive",
    code: "ERR_ARGUMENT_INVALID",
    refused: async (td) => [{ name: "w", trustDomain: td }, await csr(), { ttlSeconds: -5 }],
    twin: async (td) => [{ name: "w", trustDomain: td }, await csr(), { ttlSeconds: 5 }],
  },
  {
    label: "an unknown parent",
    code: "ERR_IDENTITY_NOT_FOUND",
    refused: async (td) => [
      { name: "w", trustDomain: td, parentIdentity: `aztp://${TD}/workload/production/node/ghost` },
      await csr(),
      {},
    ],
    twin: async (td, h) => [{ name: "w", trustDomain: td, parentIdentity: h.parent }, await csr(), {}],
  },
  {
    label: "a revoked parent",
    code: "ERR_PARENT_INVALID",
    refused: async (td, h) => [{ name: "w", trustDomain: td, parentIdentity: h.revoked }, await csr(), {}],
    twin: async (td, h) => [{ name: "w", trustDomain: td, parentIdentity: h.parent }, await csr(), {}],
  },
  {
    label: "a parent whose SVID has expired",
    code: "ERR_PARENT_INVALID",
    refused: async (td, h) => [
      { name: "w", trustDomain: td, parentIdentity: h.parent },
      await csr(),
      { now: new Date(Date.now() + 3 * 3600_000) },
    ],
    twin: async (td, h) => [{ name: "w", trustDomain: td, parentIdentity: h.parent }, await csr(), {}],
  },
  {
    label: "a link to an unknown identity",
    code: "ERR_IDENTITY_NOT_FOUND",
    refused: async (td) => [
      { name: "w", trustDomain: td, linkTo: [`spiffe://${TD}/workload/production/node/ghost`] },
      await csr(),
      {},
    ],
    twin: async (td, h) => [{ name: "w", trustDomain: td, linkTo: [h.parent] }, await csr(), {}],
  },
];

/** What the store holds about `td`: its CA generations, whether the config lists it, its identities. */
async function heldOf(stores: Stores, td: string): Promise<{ cas: number; listed: boolean; identities: number }> {
  const config = await stores.ca.readConfig();
  const { state } = await stores.registry.fresh();
  return {
    cas: (await stores.ca.loadCa(td)).length,
    listed: config?.trustDomains.includes(td) ?? false,
    identities: Object.values(state.identities).filter((r) => r.trustDomain === td).length,
  };
}

async function runCases(t: TestContext, location: string, options: { kek?: Buffer; home?: string }): Promise<void> {
  const stores = await openStores(location, { kek: options.kek });
  t.after(() => stores.close());
  const authority = await EmbeddedAuthority.fromStores(stores, { create: true, trustDomain: TD, home: tempDir(t) });
  const parent = (await authority.issueIdentity({ name: "parent" }, await csr())).record.aztpId;
  const revoked = (await authority.issueIdentity({ name: "revoked" }, await csr())).record.aztpId;
  await authority.revoke(revoked, "test");
  const h: Harness = { authority, parent, revoked };
  // A second process on the same store: what it reads is what was written.
  const other = await openStores(location, { kek: options.kek });
  t.after(() => other.close());
  const failures: string[] = [];
  for (const [i, c] of CASES.entries()) {
    const td = `fresh-${i}.test`;
    const [req, body, opts] = await c.refused(td, h);
    await rejectsWithCode(() => authority.issueIdentity(req, body, opts), c.code, c.label);
    const held = await heldOf(other, td);
    if (held.cas !== 0 || held.listed || held.identities !== 0)
      failures.push(`${c.label}: refused with ${c.code}, yet the store holds ${JSON.stringify(held)} for ${td}`);
    if (authority.trustDomains.includes(td)) failures.push(`${c.label}: ${td} is in the authority's trust domains`);
    if (options.home !== undefined && existsSync(join(options.home, "trust-domains", td)))
      failures.push(`${c.label}: trust-domains/${td} exists`);
    const [req2, body2, opts2] = await c.twin(td, h);
    const done = await authority.issueIdentity(req2, body2, opts2);
    assert.equal(done.record.trustDomain, td, `${c.label}: twin`);
    assert.deepEqual(await heldOf(other, td), { cas: 1, listed: true, identities: 1 }, `${c.label}: the twin's writes`);
  }
  assert.deepEqual(failures, []);
}

describe("the authority writes nothing for an issuance it refuses", () => {
  it("home folder: no CA, no configuration entry, no identity for a refused request into a new trust domain", async (t) => {
    const home = tempDir(t, "refused");
    await runCases(t, home, { home });
  });

  it("PostgreSQL: no CA, no configuration entry, no identity for a refused request into a new trust domain", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    await runCases(t, url, { kek: randomBytes(32) });
  });
});
