/**
 * `aztp serve` routes over real HTTPS on loopback (in-process service, real certificates):
 * every route's happy path, then what must be refused: no key, a wrong or revoked key, a key
 * out of its scope, malformed or oversize bodies, wrong types, unknown routes and methods, and
 * issuance over the rate.
 */
import assert from "node:assert/strict";
import { renameSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { verifyRevocationList } from "../src/authority/revocation-list.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { encodePem } from "../src/spiffe/pem.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { client, serveRequest, startServe, type StartedServe } from "./helpers/serve-util.js";

async function csrPem(): Promise<string> {
  return encodePem("CERTIFICATE REQUEST", (await generateWorkloadKey()).csr);
}

const POLICY = {
  Version: "2012-10-17",
  Statement: [{ Sid: "All", Effect: "Allow", Action: "tool:call", Resource: "*" }],
};

function entry(caller: string, callee: string, i = 0): Record<string, unknown> {
  return { side: "callee", caller, callerVerified: true, callee, tool: "t", argsDigest: `d${i}`, decision: "allow" };
}

async function issue(s: StartedServe, name: string, extra: Record<string, unknown> = {}, key = s.apiKey): Promise<any> {
  const r = await client(s)("/v1/identities", { body: { request: { name, ...extra }, csr: await csrPem() }, key });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

describe("aztp serve routes", () => {
  it("health, readiness, bundle, authority: the feeds need no key, /v1 does", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    assert.deepEqual((await call("/healthz", { key: undefined as unknown as string })).json, { status: "ok" });
    assert.deepEqual((await call("/readyz")).json, { status: "ready" });
    const b = await serveRequest(s.url, "/.well-known/spiffe/bundle", { ca: s.bundlePem });
    assert.equal(b.status, 200);
    assert.equal(b.json.spiffe_refresh_hint, 30);
    assert.equal(typeof b.json.spiffe_sequence, "number");
    assert.match(String(b.headers["cache-control"]), /max-age=15/);
    const bundle = TrustBundle.parseSpiffe(b.json, s.trustDomain);
    assert.equal(bundle.x509Authorities.length, 1);
    assert.equal(bundle.jwtAuthorities.size, 1);
    assert.equal(
      (await serveRequest(s.url, `/.well-known/spiffe/bundle/${s.trustDomain}`, { ca: s.bundlePem })).status,
      200,
    );
    const unknownTd = await serveRequest(s.url, "/.well-known/spiffe/bundle/nope.example", { ca: s.bundlePem });
    assert.equal(unknownTd.status, 404);
    assert.equal(unknownTd.json.error.code, "ERR_SERVE_ROUTE_NOT_FOUND");
    const auth = await call("/v1/authority");
    assert.deepEqual(auth.json, {
      defaultTrustDomain: s.trustDomain,
      trustDomains: [s.trustDomain],
      refreshHintSeconds: 30,
    });
  });

  it("POST /v1/verify by ID follows the client's rule: an identity whose SVID has expired is not valid (ERR_X509SVID_EXPIRED)", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const short = await issue(s, "short-lived", {});
    const renewed = await call("/v1/identities/renew", {
      body: { id: short.record.spiffeId, csr: await csrPem(), ttlSeconds: 1 },
    });
    assert.equal(renewed.status, 200);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual((await call("/v1/verify", { body: { id: short.record.spiffeId } })).json, {
      valid: false,
      id: short.record.spiffeId,
      reason: "ERR_X509SVID_EXPIRED",
    });
  });

  it("readyz is 503 with why while the store is unusable, and ready again once it is back; healthz stays 200", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const file = join(s.home, "authority.json");
    renameSync(file, `${file}.away`);
    const down = await call("/readyz");
    assert.equal(down.status, 503);
    assert.equal(down.json.status, "not-ready");
    assert.match(down.json.why, /ERR_AUTHORITY_NOT_INITIALIZED/);
    assert.equal((await call("/healthz")).status, 200);
    renameSync(`${file}.away`, file);
    assert.equal((await call("/readyz")).status, 200);
  });

  it("issue, renew, get, find by name, list, verify (by id and chain), jwt-svid, link, connected, policies, revoke, reissue, revocations", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const parent = await issue(s, "orchestrator");
    assert.match(parent.record.spiffeId, /^spiffe:\/\/serve\.test\//);
    const chain = Certificate.parsePem(parent.svid.chainPem);
    const bundles = new BundleSet([TrustBundle.fromPem(s.trustDomain, s.bundlePem)]);
    assert.equal(verifyX509Svid(chain, bundles).id.toString(), parent.record.spiffeId);
    assert.ok(Date.parse(parent.svid.notAfter) > Date.now());
    const child = await issue(s, "worker", { parentIdentity: parent.record.aztpId });
    assert.equal(child.record.parentIdentity, parent.record.aztpId);

    const renewed = await call("/v1/identities/renew", {
      body: { id: child.record.aztpId, csr: await csrPem(), ttlSeconds: 600 },
    });
    assert.equal(renewed.status, 200, renewed.text);
    assert.notEqual(renewed.json.svid.serial, child.svid.serial);

    const got = await call(`/v1/identities?id=${encodeURIComponent(child.record.aztpId)}`);
    assert.equal(got.json.record.spiffeId, child.record.spiffeId);
    const byName = await call(`/v1/identities?name=worker&trustDomain=${s.trustDomain}`);
    assert.equal(byName.json.record.spiffeId, child.record.spiffeId);
    const listed = await call("/v1/identities?status=active");
    assert.deepEqual(listed.json.identities.map((r: any) => r.name).sort(), ["orchestrator", "worker"]);
    const missing = await call(`/v1/identities?id=${encodeURIComponent(`spiffe://${s.trustDomain}/nobody`)}`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, "ERR_IDENTITY_NOT_FOUND");

    assert.deepEqual((await call("/v1/verify", { body: { id: child.record.spiffeId } })).json, {
      valid: true,
      id: child.record.spiffeId,
    });
    assert.deepEqual((await call("/v1/verify", { body: { chainPem: renewed.json.svid.chainPem } })).json, {
      valid: true,
      id: child.record.spiffeId,
    });

    const jwt = await call("/v1/identities/jwt-svid", {
      body: { id: child.record.spiffeId, audience: "spiffe://serve.test/tool" },
    });
    assert.equal(jwt.status, 200, jwt.text);
    const bundle = TrustBundle.parseSpiffe(
      (await serveRequest(s.url, "/.well-known/spiffe/bundle", { ca: s.bundlePem })).json,
      s.trustDomain,
    );
    assert.equal(
      validateJwtSvid(jwt.json.token, new BundleSet([bundle]), {
        audience: ["spiffe://serve.test/tool"],
      }).id.toString(),
      child.record.spiffeId,
    );

    const tool = await issue(s, "tool");
    const link = await call("/v1/links", {
      body: { source: child.record.spiffeId, target: tool.record.spiffeId, type: "linked" },
    });
    assert.equal(link.status, 200, link.text);
    assert.equal(link.json.link.type, "linked");
    const connected = await call(
      `/v1/connected?a=${encodeURIComponent(child.record.spiffeId)}&b=${encodeURIComponent(tool.record.spiffeId)}`,
    );
    assert.deepEqual(connected.json, { connected: true });

    const pol = await call("/v1/policies", { body: { id: tool.record.spiffeId, document: POLICY, policyName: "all" } });
    assert.equal(pol.status, 200, pol.text);
    assert.equal(pol.json.policy.policyName, "all");
    const badPol = await call("/v1/policies", { body: { id: tool.record.spiffeId, document: { Version: 3 } } });
    assert.equal(badPol.status, 400);
    assert.equal(badPol.json.error.code, "ERR_POLICY_INVALID");
    const detached = await call("/v1/policies/detach", {
      body: { id: tool.record.spiffeId, code: pol.json.policy.code },
    });
    assert.deepEqual(detached.json, { detached: true });

    const revoked = await call("/v1/identities/revoke", {
      body: { id: parent.record.spiffeId, reason: "compromised" },
    });
    assert.equal(revoked.status, 200, revoked.text);
    assert.deepEqual([...revoked.json.revoked].sort(), [parent.record.aztpId, child.record.aztpId].sort());
    assert.deepEqual((await call("/v1/verify", { body: { id: child.record.spiffeId } })).json, {
      valid: false,
      id: child.record.spiffeId,
      reason: "ERR_IDENTITY_REVOKED",
    });
    assert.deepEqual((await call("/v1/verify", { body: { chainPem: renewed.json.svid.chainPem } })).json, {
      valid: false,
      id: child.record.spiffeId,
      reason: "ERR_X509SVID_REVOKED",
    });
    const renewRevoked = await call("/v1/identities/renew", {
      body: { id: child.record.spiffeId, csr: await csrPem() },
    });
    assert.equal(renewRevoked.status, 409, renewRevoked.text);
    assert.equal(renewRevoked.json.error.code, "ERR_IDENTITY_REVOKED");
    assert.deepEqual((await call("/v1/identities?status=revoked")).json.identities.length, 2);

    const list = await serveRequest(s.url, `/v1/revocations/${s.trustDomain}`, { ca: s.bundlePem });
    assert.equal(list.status, 200);
    const verified = verifyRevocationList(list.json.list, new BundleSet([bundle]));
    assert.ok(verified.sequence >= 1);
    assert.equal(verified.revoked(child.record.spiffeId), "identity");

    const reissued = await call("/v1/identities/reissue", { body: { id: parent.record.spiffeId } });
    assert.equal(reissued.status, 200, reissued.text);
    assert.equal(reissued.json.record.status, "active");
    const later = verifyRevocationList(
      (await serveRequest(s.url, `/v1/revocations/${s.trustDomain}`, { ca: s.bundlePem })).json.list,
      new BundleSet([bundle]),
    );
    assert.ok(later.sequence > verified.sequence, "the list's sequence grows");
  });

  it("audit: a batch is appended (durable before the answer) and read back after a seq", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const caller = `spiffe://${s.trustDomain}/a`;
    const callee = `spiffe://${s.trustDomain}/b`;
    const r = await call("/v1/audit", {
      body: { entries: [entry(caller, callee, 1), entry(caller, callee, 2), entry(caller, callee, 3)] },
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { appended: 3 });
    const all = await call("/v1/audit?afterSeq=0&limit=10");
    assert.deepEqual(
      all.json.entries.map((e: any) => e.seq),
      [1, 2, 3],
    );
    const after = await call("/v1/audit?afterSeq=1&limit=1");
    assert.deepEqual(
      after.json.entries.map((e: any) => e.argsDigest),
      ["d2"],
    );
    const bad = await call("/v1/audit", { body: { entries: [entry(caller, callee, 4), { side: "callee" }] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, "ERR_ARGUMENT_INVALID");
    assert.match(bad.json.error.message, /^entries\[1\]/);
    assert.equal((await call("/v1/audit?afterSeq=0&limit=100")).json.entries.length, 3, "a bad batch writes nothing");
    for (const q of ["limit=0", "limit=100000", "afterSeq=-1", "afterSeq=x", "limit=1&limit=2"]) {
      const r2 = await call(`/v1/audit?${q}`);
      assert.equal(r2.status, 400, q);
    }
  });

  it("API keys: none, malformed, unknown, wrong secret and revoked keys are 401, the feeds stay open", async (t) => {
    const s = await startServe(t);
    const extra = await s.newKey();
    const [, id] = /^aztp_([0-9a-f]{16})_/.exec(s.apiKey) ?? [];
    const cases: Array<[string, Record<string, string>]> = [
      ["no header", {}],
      ["not bearer", { authorization: `Basic ${s.apiKey}` }],
      ["garbage", { authorization: "Bearer nope" }],
      ["unknown id", { authorization: `Bearer aztp_0000000000000000_${"A".repeat(43)}` }],
      ["wrong secret", { authorization: `Bearer aztp_${id}_${"B".repeat(43)}` }],
      ["overlong", { authorization: `Bearer ${"x".repeat(5000)}` }],
    ];
    for (const [label, headers] of cases) {
      const r = await serveRequest(s.url, "/v1/authority", { ca: s.bundlePem, headers });
      assert.equal(r.status, 401, label);
      assert.equal(r.json.error.code, "ERR_SERVE_API_KEY_INVALID", label);
      assert.doesNotMatch(r.text, /B{43}/, "the answer does not echo the key");
    }
    assert.equal((await serveRequest(s.url, "/v1/authority", { ca: s.bundlePem, key: extra.key })).status, 200);
    assert.equal(await s.running.backend.apiKeys.revoke(extra.keyId), true);
    const r = await serveRequest(s.url, "/v1/authority", { ca: s.bundlePem, key: extra.key });
    assert.equal(r.status, 401);
    assert.equal((await serveRequest(s.url, "/healthz", { ca: s.bundlePem })).status, 200);
    assert.equal((await serveRequest(s.url, `/v1/revocations/${s.trustDomain}`, { ca: s.bundlePem })).status, 200);
    const line = s.logs.find((l) => l.msg === "request" && l.status === 200 && l.path === "/v1/authority");
    assert.equal(line?.keyId, extra.keyId, "the request log names the key");
    const logText = JSON.stringify(s.logs);
    for (const k of [s.apiKey, extra.key]) assert.ok(!logText.includes(k.slice(22)), "no secret in the logs");
    assert.equal(typeof line?.ms, "number");
  });

  it("scopes: a key limited to a trust domain or an ID prefix gets 403 outside it, and lists only what it covers", async (t) => {
    const s = await startServe(t);
    const call = client(s);
    const a = await issue(s, "team-a-bot");
    const b = await issue(s, "other-bot");
    // A partial last segment, asked for explicitly: `.../team-a` covers `team-a-bot` and `team-a-two`.
    const prefix = a.record.spiffeId.replace(/team-a-bot$/, "team-a");
    const scoped = await s.newKey({ idPrefix: prefix, partialSegment: true });
    const otherTd = await s.newKey({ trustDomain: "elsewhere.test" });
    const k = scoped.key;
    // In scope.
    assert.equal((await call(`/v1/identities?id=${encodeURIComponent(a.record.spiffeId)}`, { key: k })).status, 200);
    const mine = await call("/v1/identities", { key: k });
    assert.deepEqual(
      mine.json.identities.map((r: any) => r.name),
      ["team-a-bot"],
    );
    assert.equal(
      (await call("/v1/identities", { key: k, body: { request: { name: "team-a-two" }, csr: await csrPem() } })).status,
      201,
    );
    // Out of scope, route by route.
    const denied: Array<[string, Parameters<ReturnType<typeof client>>[1]]> = [
      [`/v1/identities?id=${encodeURIComponent(b.record.spiffeId)}`, {}],
      ["/v1/identities", { body: { request: { name: "intruder" }, csr: await csrPem() } }],
      [
        "/v1/identities",
        { body: { request: { name: "team-a-three", parentIdentity: b.record.aztpId }, csr: await csrPem() } },
      ],
      ["/v1/identities/renew", { body: { id: b.record.spiffeId, csr: await csrPem() } }],
      ["/v1/identities/revoke", { body: { id: b.record.spiffeId, reason: "x" } }],
      ["/v1/identities/reissue", { body: { id: b.record.spiffeId } }],
      ["/v1/identities/jwt-svid", { body: { id: b.record.spiffeId, audience: "x" } }],
      ["/v1/verify", { body: { id: b.record.spiffeId } }],
      ["/v1/verify", { body: { chainPem: b.svid.chainPem } }],
      ["/v1/links", { body: { source: a.record.spiffeId, target: b.record.spiffeId, type: "linked" } }],
      [`/v1/connected?a=${encodeURIComponent(a.record.spiffeId)}&b=${encodeURIComponent(b.record.spiffeId)}`, {}],
      ["/v1/policies", { body: { id: b.record.spiffeId, document: POLICY } }],
      ["/v1/policies/detach", { body: { id: b.record.spiffeId, code: "x" } }],
      ["/v1/audit", { body: { entries: [entry(b.record.spiffeId, b.record.spiffeId)] } }],
      ["/v1/identities?trustDomain=elsewhere.test", {}],
    ];
    for (const [path, o] of denied) {
      const r = await call(path, { ...o, key: k });
      assert.equal(r.status, 403, `${path} ${JSON.stringify(o?.body ?? {}).slice(0, 80)}: ${r.text}`);
      assert.equal(r.json.error.code, "ERR_SERVE_API_KEY_SCOPE_DENIED");
    }
    // A name outside the scope is not found, as a name nobody has: a 403 would say it exists.
    const byName = await call("/v1/identities?name=other-bot", { key: k });
    assert.deepEqual([byName.status, byName.json.error.code], [404, "ERR_IDENTITY_NOT_FOUND"]);
    // Nothing out of scope was written.
    assert.equal(
      (await call(`/v1/identities?id=${encodeURIComponent(b.record.spiffeId)}`)).json.record.status,
      "active",
    );
    assert.equal((await call("/v1/identities?name=intruder")).status, 404);
    // A trust-domain key sees nothing of this one.
    assert.deepEqual((await call("/v1/identities", { key: otherTd.key })).json.identities, []);
    assert.equal(
      (await call(`/v1/identities?id=${encodeURIComponent(a.record.spiffeId)}`, { key: otherTd.key })).status,
      403,
    );
    // Audit: a scoped key reads only entries naming its identities.
    await call("/v1/audit", {
      body: {
        entries: [entry(a.record.spiffeId, b.record.spiffeId, 1), entry(b.record.spiffeId, b.record.spiffeId, 2)],
      },
    });
    assert.deepEqual(
      (await call("/v1/audit", { key: k })).json.entries.map((e: any) => e.argsDigest),
      ["d1"],
    );
    // Paging past entries it may not see: the page is filled from further reads, and nextAfterSeq moves on.
    await call("/v1/audit", {
      body: {
        entries: [1, 2, 3, 4]
          .map((i) => entry(b.record.spiffeId, b.record.spiffeId, 10 + i))
          .concat([entry(a.record.spiffeId, a.record.spiffeId, 99)]),
      },
    });
    const page = await call("/v1/audit?afterSeq=1&limit=1", { key: k });
    assert.deepEqual(
      page.json.entries.map((e: any) => e.argsDigest),
      ["d99"],
    );
    assert.equal(page.json.nextAfterSeq, 7);
    const end = await call("/v1/audit?afterSeq=7&limit=1", { key: k });
    assert.deepEqual(end.json.entries, []);
  });

  it("issuance is rate-limited per key: 429 with Retry-After past the burst, other keys unaffected", async (t) => {
    const s = await startServe(t, { issueRate: 0.5, issueBurst: 2 });
    const call = client(s);
    const other = await s.newKey();
    const csr = await csrPem();
    const codes: number[] = [];
    for (let i = 0; i < 3; i++)
      codes.push((await call("/v1/identities", { body: { request: { name: `r${i}` }, csr } })).status);
    assert.deepEqual(codes, [201, 201, 429]);
    const r = await call("/v1/identities/renew", { body: { id: `spiffe://${s.trustDomain}/x`, csr } });
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, "ERR_SERVE_RATE_LIMITED");
    assert.ok(Number(r.headers["retry-after"]) >= 1, String(r.headers["retry-after"]));
    assert.equal((await call("/v1/identities", { key: other.key, body: { request: { name: "o" }, csr } })).status, 201);
    assert.equal((await call("/v1/identities?status=active")).status, 200, "reads are not limited");
  });

  it("content type: a JSON route given anything but application/json (utf-8) answers 415 ERR_SERVE_CONTENT_TYPE_UNSUPPORTED without reading the body", async (t) => {
    const s = await startServe(t, { insecureHttp: true });
    const call = client(s);
    const a = await issue(s, "ct");
    const body = JSON.stringify({ id: a.record.spiffeId });
    const refused: Array<[string, Record<string, string>, boolean?]> = [
      ["text/plain (a browser's simple request)", { "content-type": "text/plain" }],
      ["text/plain with utf-8", { "content-type": "text/plain;charset=UTF-8" }],
      ["a form", { "content-type": "application/x-www-form-urlencoded" }],
      ["multipart", { "content-type": "multipart/form-data; boundary=x" }],
      ["no Content-Type", {}, true],
      ["an empty Content-Type", { "content-type": "" }],
      ["text/json", { "content-type": "text/json" }],
      ["application/jsonp", { "content-type": "application/jsonp" }],
      ["a +json type", { "content-type": "application/vnd.api+json" }],
      ["application/json-seq", { "content-type": "application/json-seq" }],
      ["a list of types", { "content-type": "application/json, text/plain" }],
      ["another charset", { "content-type": "application/json; charset=iso-8859-1" }],
      ["compressed", { "content-type": "application/json", "content-encoding": "gzip" }],
    ];
    for (const [label, headers, omit] of refused) {
      const r = await call("/v1/verify", { raw: body, headers, ...(omit ? { noContentType: true } : {}) });
      assert.equal(r.status, 415, `${label}: ${r.text}`);
      assert.equal(r.json?.error?.code, "ERR_SERVE_CONTENT_TYPE_UNSUPPORTED", label);
      assert.equal(typeof r.json.error.message, "string", label);
    }
    // Every JSON route, not only verify.
    for (const path of [
      "/v1/identities",
      "/v1/identities/renew",
      "/v1/identities/revoke",
      "/v1/identities/reissue",
      "/v1/identities/jwt-svid",
      "/v1/links",
      "/v1/policies",
      "/v1/policies/detach",
      "/v1/audit",
    ]) {
      const r = await call(path, { raw: "{}", headers: { "content-type": "text/plain" } });
      assert.equal(r.status, 415, `${path}: ${r.text}`);
      assert.equal(r.json?.error?.code, "ERR_SERVE_CONTENT_TYPE_UNSUPPORTED", path);
    }
    // Authorise first: without a key the answer is 401, whatever the body.
    const noKey = await serveRequest(s.url, "/v1/verify", { raw: body, headers: { "content-type": "text/plain" } });
    assert.equal(noKey.status, 401);
    // The twins: application/json in any case, with or without a UTF-8 charset, quoted or not.
    for (const type of [
      "application/json",
      "Application/JSON",
      "application/json; charset=utf-8",
      "application/json;charset=UTF-8",
      'application/json ; charset="utf-8"',
    ]) {
      const r = await call("/v1/verify", { raw: body, headers: { "content-type": type } });
      assert.equal(r.status, 200, `${type}: ${r.text}`);
      assert.deepEqual(r.json, { valid: true, id: a.record.spiffeId }, type);
    }
    const identity = await call("/v1/identities", {
      raw: JSON.stringify({ request: { name: "ct2" }, csr: await csrPem() }),
      headers: { "content-type": "application/json; charset=utf-8" },
    });
    assert.equal(identity.status, 201, identity.text);
    // Still serving on the same connection pool after the refusals.
    assert.equal((await call("/healthz")).status, 200);
  });

  it("bad input: malformed JSON, wrong types, oversize bodies, unknown routes and methods, raw garbage: each a JSON error, never a hang", async (t) => {
    const s = await startServe(t, { maxBodyBytes: 4096 });
    const call = client(s);
    const table: Array<[string, string, Parameters<ReturnType<typeof client>>[1], number, string]> = [
      ["malformed JSON", "/v1/identities", { raw: "{nope" }, 400, "ERR_ARGUMENT_INVALID"],
      ["empty body", "/v1/identities", { raw: "", method: "POST" }, 400, "ERR_ARGUMENT_INVALID"],
      ["array body", "/v1/identities", { raw: "[]" }, 400, "ERR_ARGUMENT_INVALID"],
      [
        "deep nesting",
        "/v1/identities",
        { raw: `{"a":${"[".repeat(1000)}${"]".repeat(1000)}}` },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "__proto__ member",
        "/v1/identities",
        { raw: '{"request":{"name":"a","metadata":{"\\u005f_proto__":{"x":1}}},"csr":"y"}' },
        400,
        "ERR_JSON_PROTO_KEY_NOT_ALLOWED",
      ],
      ["invalid UTF-8", "/v1/identities", { raw: Buffer.from([0x7b, 0xff, 0x7d]) }, 400, "ERR_ARGUMENT_INVALID"],
      ["request not an object", "/v1/identities", { body: { request: "x", csr: "y" } }, 400, "ERR_ARGUMENT_INVALID"],
      ["name a number", "/v1/identities", { body: { request: { name: 5 }, csr: "y" } }, 400, "ERR_ARGUMENT_INVALID"],
      [
        "unknown request member",
        "/v1/identities",
        { body: { request: { name: "a", evil: 1 }, csr: "y" } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "ttl a string",
        "/v1/identities",
        { body: { request: { name: "a" }, csr: "y", ttlSeconds: "60" } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "ttl negative",
        "/v1/identities",
        { body: { request: { name: "a" }, csr: "y", ttlSeconds: -1 } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "csr garbage",
        "/v1/identities",
        { body: { request: { name: "a" }, csr: "not a csr" } },
        400,
        "ERR_AUTHORITY_CSR_INVALID",
      ],
      ["bad name", "/v1/identities", { body: { request: { name: "a/b" }, csr: "y" } }, 400, "ERR_ARGUMENT_INVALID"],
      [
        "bad trust domain",
        "/v1/identities",
        { body: { request: { name: "a", trustDomain: "Bad Domain" }, csr: "y" } },
        400,
        "ERR_SPIFFEID_TRUST_DOMAIN_CHAR_INVALID",
      ],
      ["id not an ID", "/v1/identities/revoke", { body: { id: "http://x/y" } }, 400, "ERR_SPIFFEID_SCHEME_INVALID"],
      [
        "verify both",
        "/v1/verify",
        { body: { id: "spiffe://serve.test/a", chainPem: "x" } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "link type",
        "/v1/links",
        { body: { source: "spiffe://serve.test/a", target: "spiffe://serve.test/b", type: "friend" } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      [
        "audience missing",
        "/v1/identities/jwt-svid",
        { body: { id: "spiffe://serve.test/a" } },
        400,
        "ERR_ARGUMENT_INVALID",
      ],
      ["entries not an array", "/v1/audit", { body: { entries: {} } }, 400, "ERR_ARGUMENT_INVALID"],
      [
        "oversize body",
        "/v1/audit",
        { body: { entries: [], pad: "x".repeat(10_000) } },
        413,
        "ERR_SERVE_BODY_TOO_LONG",
      ],
      [
        "oversize, no length",
        "/v1/audit",
        { raw: "x".repeat(10_000), headers: { "transfer-encoding": "chunked" } },
        413,
        "ERR_SERVE_BODY_TOO_LONG",
      ],
      ["unknown route", "/v2/nothing", {}, 404, "ERR_SERVE_ROUTE_NOT_FOUND"],
      ["wrong method", "/v1/identities/revoke", { method: "GET" }, 405, "ERR_SERVE_METHOD_NOT_ALLOWED"],
      [
        "wrong method on feed",
        "/.well-known/spiffe/bundle",
        { method: "PUT", raw: "{}" },
        405,
        "ERR_SERVE_METHOD_NOT_ALLOWED",
      ],
      ["bad td in path", "/v1/revocations/%ZZ", {}, 400, "ERR_ARGUMENT_INVALID"],
      ["query twice", "/v1/identities?id=a&id=b", {}, 400, "ERR_ARGUMENT_INVALID"],
    ];
    for (const [label, path, o, status, code] of table) {
      const r = await call(path, o);
      assert.equal(r.status, status, `${label}: ${r.text}`);
      assert.equal(r.json?.error?.code, code, `${label}: ${r.text}`);
      assert.equal(typeof r.json.error.message, "string");
      if (status === 405) assert.ok(r.headers.allow, `${label}: Allow header`);
    }
    // A request line no HTTP parser accepts: a 400 on the raw socket (TLS would hide this, so plain HTTP here).
    const plain = await startServe(t, { insecureHttp: true });
    const port = new URL(plain.url).port;
    const raw = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), "127.0.0.1", () => sock.write("BLAH\x00 / HTTP/9\r\n\r\n"));
      let got = "";
      sock.on("data", (d) => (got += d.toString()));
      sock.on("end", () => resolve(got));
      sock.on("error", reject);
      sock.setTimeout(5000, () => reject(new Error("hang")));
    });
    assert.match(raw, /^HTTP\/1\.1 400/);
    assert.match(raw, /ERR_ARGUMENT_INVALID/);
    // Still serving.
    assert.equal((await serveRequest(plain.url, "/healthz")).status, 200);
    assert.equal((await call("/healthz")).status, 200);
  });
});
