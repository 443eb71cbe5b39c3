/**
 * API-key scopes of `aztp serve`, attacked route by route: keys scoped by trust domain and by ID
 * prefix (with and without a path, on segment boundaries or explicitly partial) against their
 * own identities and identities of look-alike trust domains (`td.evil`, `tdx`, `td.`, punycode),
 * and the same IDs spelled in upper case. Every refusal asserts 403 ERR_SERVE_API_KEY_SCOPE_DENIED
 * and has a twin in scope that succeeds, so nothing passes by everything being refused.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { generateApiKey } from "../src/store/api-keys.js";
import { encodePem } from "../src/spiffe/pem.js";
import type { ApiKeyScope } from "../src/store/api-key-scope.js";
import { aztpCli, assertExit, CLI, runTs } from "./helpers/authority-util.js";
import { client, serveRequest, startServe, type ServeRequestOptions, type StartedServe } from "./helpers/serve-util.js";

const DENIED = "ERR_SERVE_API_KEY_SCOPE_DENIED";
const TD = "td";
const LOOKALIKES = ["td.evil", "tdx", "td.", "xn--td-8ka"];

async function csrPem(): Promise<string> {
  return encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
}

function wid(td: string, name: string): string {
  return `spiffe://${td}/workload/production/node/${name}`;
}

const POLICY = {
  Version: "2012-10-17",
  Statement: [{ Sid: "All", Effect: "Allow", Action: "tool:call", Resource: "*" }],
};

/** The identities the matrix works on: four in `td`, one in each look-alike trust domain. */
const NAMES_IN_TD = ["team", "team-a", "teammate", "other"];

interface Target {
  label: string;
  /** The ID as the request spells it. */
  id: string;
  /** The identity it names: trust domain and name (for issuance). */
  td: string;
  name: string;
}

const TARGETS: Target[] = [
  ...NAMES_IN_TD.map((name) => ({ label: `td/${name}`, id: wid(TD, name), td: TD, name })),
  // The same identity spelled with an upper-case scheme and trust domain (SPIFFE: case-insensitive there).
  { label: "TD/team (upper case)", id: "AZTP://TD/workload/production/node/team", td: "TD", name: "team" },
  ...LOOKALIKES.map((td) => ({ label: `${td}/team`, id: wid(td, "team"), td, name: "team" })),
];

interface KeyCase {
  label: string;
  scope: ApiKeyScope;
  /** Target labels in scope (every other target is refused). */
  covers: string[];
  /** An identity in scope to pair with a target (links, connected). */
  anchor: string;
}

const ALL_TD = ["td/team", "td/team-a", "td/teammate", "td/other", "TD/team (upper case)"];

const KEYS: KeyCase[] = [
  { label: "trust domain td", scope: { trustDomain: TD }, covers: ALL_TD, anchor: "td/other" },
  { label: "trust domain TD (upper case)", scope: { trustDomain: "TD" }, covers: ALL_TD, anchor: "td/other" },
  { label: "prefix spiffe://td (no path)", scope: { idPrefix: "spiffe://td" }, covers: ALL_TD, anchor: "td/other" },
  {
    label: "prefix aztp://TD/ (no path, upper case)",
    scope: { idPrefix: "aztp://TD/" },
    covers: ALL_TD,
    anchor: "td/other",
  },
  {
    label: "prefix with a path, segment boundary",
    scope: { idPrefix: "spiffe://td/workload/production/node/team" },
    covers: ["td/team", "TD/team (upper case)"],
    // The one identity in scope: no link has a twin for this key.
    anchor: "td/team",
  },
  {
    label: "prefix with a path, partial last segment",
    scope: { idPrefix: "spiffe://td/workload/production/node/team", partialSegment: true },
    covers: ["td/team", "td/team-a", "td/teammate", "TD/team (upper case)"],
    anchor: "td/team-a",
  },
  {
    label: "trust domain and a prefix",
    scope: { trustDomain: TD, idPrefix: "spiffe://td/workload/production" },
    covers: ALL_TD,
    anchor: "td/other",
  },
];

interface RouteCase {
  route: string;
  /** The request naming `target` (with `anchor`, an identity in scope, where a second ID is needed). */
  request(target: Target, anchor: Target): Promise<[string, ServeRequestOptions]>;
  /** The status of the request in scope. */
  ok: number;
}

let entrySelectors = 0;

const ROUTES: RouteCase[] = [
  {
    route: "POST /v1/identities",
    request: async (t) => [
      "/v1/identities",
      { body: { request: { name: t.name, trustDomain: t.td }, csr: await csrPem() } },
    ],
    ok: 201,
  },
  {
    route: "POST /v1/identities (linkTo)",
    request: async (t, a) => [
      "/v1/identities",
      { body: { request: { name: a.name, trustDomain: a.td, linkTo: [t.id] }, csr: await csrPem() } },
    ],
    ok: 201,
  },
  {
    route: "POST /v1/identities/renew",
    request: async (t) => ["/v1/identities/renew", { body: { id: t.id, csr: await csrPem() } }],
    ok: 200,
  },
  {
    route: "GET /v1/identities?id=",
    request: async (t) => [`/v1/identities?id=${encodeURIComponent(t.id)}`, {}],
    ok: 200,
  },
  {
    route: "GET /v1/identities?name=&trustDomain=",
    request: async (t) => [`/v1/identities?name=${t.name}&trustDomain=${encodeURIComponent(t.td)}`, {}],
    ok: 200,
  },
  { route: "POST /v1/verify", request: async (t) => ["/v1/verify", { body: { id: t.id } }], ok: 200 },
  {
    route: "POST /v1/identities/jwt-svid",
    request: async (t) => ["/v1/identities/jwt-svid", { body: { id: t.id, audience: "spiffe://td/tool" } }],
    ok: 200,
  },
  {
    route: "POST /v1/links (source)",
    request: async (t, a) => ["/v1/links", { body: { source: t.id, target: a.id, type: "linked" } }],
    ok: 200,
  },
  {
    route: "POST /v1/links (target)",
    request: async (t, a) => ["/v1/links", { body: { source: a.id, target: t.id, type: "linked" } }],
    ok: 200,
  },
  {
    route: "GET /v1/connected",
    request: async (t, a) => [`/v1/connected?a=${encodeURIComponent(a.id)}&b=${encodeURIComponent(t.id)}`, {}],
    ok: 200,
  },
  {
    route: "POST /v1/policies",
    request: async (t) => ["/v1/policies", { body: { id: t.id, document: POLICY, policyName: "p" } }],
    ok: 200,
  },
  {
    route: "POST /v1/policies/detach",
    request: async (t) => ["/v1/policies/detach", { body: { id: t.id, code: "nope" } }],
    ok: 200,
  },
  {
    route: "POST /v1/identities/revoke",
    request: async (t) => ["/v1/identities/revoke", { body: { id: t.id, reason: "scope test" } }],
    ok: 200,
  },
  {
    route: "POST /v1/identities/reissue",
    request: async (t) => ["/v1/identities/reissue", { body: { id: t.id } }],
    ok: 200,
  },
  {
    route: "POST /v1/audit",
    request: async (t) => [
      "/v1/audit",
      {
        body: {
          entries: [
            {
              side: "callee",
              caller: t.id,
              callerVerified: true,
              callee: t.id,
              tool: "t",
              argsDigest: "d",
              decision: "allow",
            },
          ],
        },
      },
    ],
    ok: 200,
  },
  {
    route: "POST /v1/identities/register",
    request: async (t) => ["/v1/identities/register", { body: { spiffeId: t.id } }],
    ok: 200,
  },
  {
    route: "POST /v1/workload-entries",
    // Selectors of its own each time: the same ID with the same selectors is the identical entry (409).
    request: async (t) => [
      "/v1/workload-entries",
      { body: { spiffeId: t.id, selectors: [`unix:uid:${++entrySelectors}`] } },
    ],
    ok: 201,
  },
];

function sameIdentity(a: Target, b: Target): boolean {
  return a.td.toLowerCase() === b.td.toLowerCase() && a.name === b.name;
}

async function seeded(t: Parameters<typeof startServe>[0]): Promise<StartedServe> {
  const s = await startServe(t, { trustDomain: TD, insecureHttp: true, issueBurst: 1000, issueRate: 1000 });
  const call = client(s);
  for (const target of TARGETS) {
    if (target.td === "TD") continue;
    const r = await call("/v1/identities", {
      body: { request: { name: target.name, trustDomain: target.td }, csr: await csrPem() },
    });
    assert.equal(r.status, 201, `${target.label}: ${r.text}`);
  }
  return s;
}

describe("aztp serve: API-key scopes", () => {
  it("issue 17's escape: a key made with --id-prefix spiffe://serve.example cannot issue in serve.example.evil, and no CA is made for it", async (t) => {
    const s = await startServe(t, { trustDomain: "serve.example", insecureHttp: true });
    const made = await aztpCli(undefined, [
      "apikey",
      "create",
      "--store",
      s.home,
      "--id-prefix",
      "spiffe://serve.example",
    ]);
    assertExit(made, 0, "apikey create");
    const key = made.json.key as string;
    const call = client(s);
    const escaped = await call("/v1/identities", {
      key,
      body: { request: { name: "escaped", trustDomain: "serve.example.evil" }, csr: await csrPem() },
    });
    assert.equal(escaped.status, 403, escaped.text);
    assert.equal(escaped.json.error.code, DENIED);
    const authority = await call("/v1/authority");
    assert.deepEqual(authority.json.trustDomains, ["serve.example"], "no CA for the trust domain out of scope");
    assert.equal((await serveRequest(s.url, "/.well-known/spiffe/bundle/serve.example.evil")).status, 404);
    assert.equal((await call("/v1/identities?trustDomain=serve.example.evil", { key })).status, 403);
    // The twin: the same key in its own trust domain.
    const inScope = await call("/v1/identities", {
      key,
      body: { request: { name: "ok" }, csr: await csrPem() },
    });
    assert.equal(inScope.status, 201, inScope.text);
    assert.equal(inScope.json.record.aztpId, "aztp://serve.example/workload/production/node/ok");
  });

  it("a key stored in the home folder before segment-boundary scopes keeps working with the strict meaning", async (t) => {
    const s = await startServe(t, { trustDomain: "serve.example", insecureHttp: true });
    const made = generateApiKey();
    // api-keys.json as every earlier version wrote it for `--id-prefix spiffe://serve.example`.
    writeFileSync(
      join(s.home, "api-keys.json"),
      JSON.stringify({
        version: 1,
        keys: [
          {
            keyId: made.keyId,
            name: "old",
            scope: { idPrefix: "spiffe://serve.example" },
            createdAt: new Date(0).toISOString(),
            secretHash: made.secretHash,
          },
        ],
      }),
      { mode: 0o600 },
    );
    const call = client(s);
    const escaped = await call("/v1/identities", {
      key: made.key,
      body: { request: { name: "escaped", trustDomain: "serve.example.evil" }, csr: await csrPem() },
    });
    assert.equal(escaped.status, 403, escaped.text);
    assert.equal(escaped.json.error.code, DENIED);
    const twin = await call("/v1/identities", {
      key: made.key,
      body: { request: { name: "ok" }, csr: await csrPem() },
    });
    assert.equal(twin.status, 201, twin.text);
    assert.deepEqual((await call("/v1/authority", { key: made.key })).json.trustDomains, ["serve.example"]);
  });

  it("every route, every key: 403 ERR_SERVE_API_KEY_SCOPE_DENIED outside the scope, success inside", async (t) => {
    const s = await seeded(t);
    const call = client(s);
    const byLabel = new Map(TARGETS.map((x) => [x.label, x]));
    const failures: string[] = [];
    let refused = 0;
    let allowed = 0;
    for (const k of KEYS) {
      const { key } = await s.newKey(k.scope, k.label);
      const anchor = byLabel.get(k.anchor) as Target;
      for (const route of ROUTES) {
        for (const target of TARGETS) {
          const inScope = k.covers.includes(target.label);
          // A link needs two identities: the one in-scope target that is the anchor itself has no twin here.
          const linking = route.route.startsWith("POST /v1/links") || route.route.endsWith("(linkTo)");
          if (linking && inScope && sameIdentity(target, anchor)) continue;
          const [path, o] = await route.request(target, anchor);
          const r = await call(path, { ...o, key });
          const what = `${k.label} | ${route.route} | ${target.label}`;
          if (inScope) {
            allowed++;
            if (r.status !== route.ok) failures.push(`${what}: expected ${route.ok}, got ${r.status} ${r.text}`);
          } else {
            refused++;
            if (r.status !== 403 || r.json?.error?.code !== DENIED)
              failures.push(`${what}: expected 403 ${DENIED}, got ${r.status} ${r.text.slice(0, 200)}`);
          }
        }
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(refused > 100 && allowed > 100, `${refused} refused, ${allowed} allowed`);
  });

  it("listings and the audit read: a key sees exactly what the one predicate covers, in every trust domain it may name", async (t) => {
    const s = await seeded(t);
    const call = client(s);
    // One audit entry per identity, written with the unscoped key.
    const audited = TARGETS.filter((x) => x.td !== "TD");
    const entries = audited.map((x) => ({
      side: "callee",
      caller: x.id,
      callerVerified: true,
      callee: x.id,
      tool: "t",
      argsDigest: x.label,
      decision: "allow",
    }));
    assert.equal((await call("/v1/audit", { body: { entries } })).status, 200);
    for (const k of KEYS) {
      const { key } = await s.newKey(k.scope, k.label);
      const covered = audited.filter((x) => k.covers.includes(x.label)).map((x) => x.id);
      const all = await call("/v1/identities", { key });
      assert.equal(all.status, 200, `${k.label}: ${all.text}`);
      assert.deepEqual(
        all.json.identities.map((r: { spiffeId: string }) => r.spiffeId).sort(),
        [...covered].sort(),
        k.label,
      );
      for (const td of [TD, "TD"]) {
        const own = await call(`/v1/identities?trustDomain=${td}`, { key });
        assert.equal(own.status, 200, `${k.label} lists ${td}: ${own.text}`);
        assert.deepEqual(own.json.identities.map((r: { spiffeId: string }) => r.spiffeId).sort(), [...covered].sort());
      }
      for (const td of LOOKALIKES) {
        const other = await call(`/v1/identities?trustDomain=${encodeURIComponent(td)}`, { key });
        assert.equal(other.status, 403, `${k.label} lists ${td}: ${other.text}`);
        assert.equal(other.json.error.code, DENIED);
        // A name that does not exist there is refused the same way: no 404 tells what exists outside the scope.
        const ghost = await call(`/v1/identities?name=ghost&trustDomain=${encodeURIComponent(td)}`, { key });
        assert.equal(ghost.status, 403, `${k.label} looks up a ghost in ${td}: ${ghost.text}`);
        assert.equal(ghost.json.error.code, DENIED);
      }
      const ghost = await call(`/v1/identities?name=ghost&trustDomain=${TD}`, { key });
      assert.equal(ghost.status, 404, `${k.label}: a ghost in its own trust domain is not found`);
      // By name alone, a key finds only what it may see: td's "team" or "other" when the key
      // covers it, and otherwise not found, answered as a ghost is (a 403 would say it exists).
      const anyGhost = await call(`/v1/identities?name=ghost`, { key });
      assert.equal(anyGhost.status, 404, `${k.label}: a ghost by name alone`);
      for (const name of ["team", "other"]) {
        const found = await call(`/v1/identities?name=${name}`, { key });
        if (k.covers.includes(`td/${name}`)) {
          assert.equal(found.status, 200, `${k.label}: ${name} by name alone: ${found.text}`);
          assert.equal(found.json.record.spiffeId, wid(TD, name));
        } else {
          assert.equal(found.status, 404, `${k.label}: ${name} (outside its scope) by name alone: ${found.text}`);
          assert.equal(found.json.error.code, anyGhost.json.error.code);
        }
      }
      const read = await call("/v1/audit?limit=1000", { key });
      assert.deepEqual(
        read.json.entries.map((e: { argsDigest: string }) => e.argsDigest).sort(),
        audited
          .filter((x) => k.covers.includes(x.label))
          .map((x) => x.label)
          .sort(),
        k.label,
      );
    }
  });

  it("aztp apikey create --partial-segment stores the mark, apikey list shows it; without the flag a prefix is matched on segments", async (t) => {
    const s = await startServe(t, { trustDomain: TD, insecureHttp: true });
    const prefix = "spiffe://td/workload/production/node/team";
    const partial = await aztpCli(undefined, [
      "apikey",
      "create",
      "--store",
      s.home,
      "--id-prefix",
      prefix,
      "--partial-segment",
    ]);
    assertExit(partial, 0, "create --partial-segment");
    assert.deepEqual(partial.json.record.scope, { idPrefix: prefix, partialSegment: true });
    const whole = await aztpCli(undefined, ["apikey", "create", "--store", s.home, "--id-prefix", prefix]);
    assertExit(whole, 0, "create");
    assert.deepEqual(whole.json.record.scope, { idPrefix: prefix });
    const noPath = await aztpCli(undefined, [
      "apikey",
      "create",
      "--store",
      s.home,
      "--id-prefix",
      "spiffe://td",
      "--partial-segment",
    ]);
    assert.equal(noPath.code, 1, "a partial trust domain is never allowed");
    assert.equal(noPath.json.error.code, "ERR_ARGUMENT_INVALID");
    const listed = await runTs(CLI, ["apikey", "list", "--store", s.home]);
    assertExit(listed, 0, "list");
    const line = (id: string): string => listed.stdout.split("\n").find((l) => l.startsWith(id)) ?? "";
    assert.match(
      line(partial.json.record.keyId),
      /prefix spiffe:\/\/td\/workload\/production\/node\/team\* \(partial last segment\)/,
    );
    assert.match(line(whole.json.record.keyId), /prefix spiffe:\/\/td\/workload\/production\/node\/team(?!\*)/);
    assert.doesNotMatch(line(whole.json.record.keyId), /partial/);
    const call = client(s);
    const issue = async (key: string, name: string): Promise<number> =>
      (await call("/v1/identities", { key, body: { request: { name }, csr: await csrPem() } })).status;
    assert.equal(await issue(partial.json.key, "team-a"), 201);
    assert.equal(await issue(whole.json.key, "team-b"), 403);
    assert.equal(await issue(whole.json.key, "team"), 201);
    assert.equal(await issue(partial.json.key, "tea"), 403);
  });
});
