/**
 * The fake SPIRE agent (test/helpers/fake-spire-agent.ts) is a faithful counterpart of SPIRE's:
 * called by a client built from the official workload.proto (as a workload would), what it sends
 * is read by this project's own verifiers (verifyX509Svid, validateJwtSvid) and by openssl, under
 * its own CA and JWT key, never our authority's; its streams are pushed to on rotation and on a
 * change of identities; it refuses what SPIRE's agent refuses. The Workload API client source's
 * tests stand on it to show the source does not depend on our authority.
 */
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { ErrorCodes } from "../src/errors.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { samePublicKey } from "../src/spiffe/keys.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { openssl } from "./helpers/authority-util.js";
import {
  splitDerCertificates,
  startFakeSpireAgent,
  type FakeSpireAgent,
  type FakeSpireAgentOptions,
} from "./helpers/fake-spire-agent.js";
import {
  connectWorkloadApi as connect,
  unary,
  WorkloadStream as Stream,
  type Any,
  type WorkloadClient,
} from "./helpers/workload-api-client.js";

const WEB = "spiffe://spire.example/ns/default/sa/web";
const API = "spiffe://spire.example/ns/default/sa/api";
const AUD = "spiffe://spire.example/db";

const certs = (bytes: Uint8Array): Certificate[] => splitDerCertificates(bytes).map((d) => Certificate.fromDer(d));

/** Our verifier's word on an X509SVID message: the SPIFFE ID, against the bundle the message carries. */
function verifyMessage(svid: Any, trustDomain = "spire.example"): string {
  const bundle = new TrustBundle({ trustDomain, x509Authorities: certs(svid.bundle) });
  const chain = certs(svid.x509_svid);
  const verified = verifyX509Svid(chain, new BundleSet([bundle]));
  const key = createPrivateKey({ key: Buffer.from(svid.x509_svid_key), format: "der", type: "pkcs8" });
  assert.ok(samePublicKey(chain[0]!.publicKey, key), "the PKCS#8 key is the leaf's");
  return verified.id.toString();
}

async function withAgent(
  options: Omit<FakeSpireAgentOptions, "socketPath">,
  body: (agent: FakeSpireAgent, client: WorkloadClient, dir: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "aztp-fake-spire-"));
  const agent = await startFakeSpireAgent({ ...options, socketPath: join(dir, "agent.sock") });
  const client = connect(agent.socketPath);
  try {
    await body(agent, client, dir);
  } finally {
    client.close();
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("the fake SPIRE agent, read by our verifiers and by openssl", () => {
  let dir: string;
  let agent: FakeSpireAgent;
  let client: WorkloadClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "aztp-fake-spire-"));
    agent = await startFakeSpireAgent({
      socketPath: join(dir, "agent.sock"),
      identities: [{ spiffeId: WEB, hint: "internal" }, { spiffeId: API }],
      federated: [{ trustDomain: "partner.example" }],
    });
    client = connect(agent.socketPath);
  });
  after(async () => {
    client?.close();
    await agent?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("FetchX509SVID: each identity's SVID (leaf alone, SPIRE's default) verifies under the bundle it came with, over its own key", async () => {
    const s = new Stream(client, "FetchX509SVID");
    try {
      const m = await s.next(1);
      assert.deepEqual(
        m.svids.map((x: Any) => [x.spiffe_id, x.hint]),
        [
          [WEB, "internal"],
          [API, ""],
        ],
      );
      for (const svid of m.svids) {
        assert.equal(verifyMessage(svid), svid.spiffe_id);
        assert.equal(certs(svid.x509_svid).length, 1);
      }
      assert.notEqual(
        Buffer.from(m.svids[0].x509_svid_key).toString("hex"),
        Buffer.from(m.svids[1].x509_svid_key).toString("hex"),
      );
      // Its own CA, in the bundle it says it has; the federated trust domain's alongside.
      assert.deepEqual(
        certs(m.svids[0].bundle).map((c) => c.toPem()),
        Certificate.parsePem(agent.bundlePem()).map((c) => c.toPem()),
      );
      assert.deepEqual(Object.keys(m.federated_bundles), ["spiffe://partner.example"]);
      assert.deepEqual(
        certs(m.federated_bundles["spiffe://partner.example"]).map((c) => c.toPem()),
        Certificate.parsePem(agent.bundlePem("partner.example")).map((c) => c.toPem()),
      );
    } finally {
      s.cancel();
    }
  });

  it("the SVID verifies under openssl against the agent's bundle, and not against another agent's CA", async () => {
    const s = new Stream(client, "FetchX509SVID");
    const other = mkdtempSync(join(tmpdir(), "aztp-fake-spire-other-"));
    const stranger = await startFakeSpireAgent({ socketPath: join(other, "agent.sock"), identities: [] });
    try {
      const svid = (await s.next(1)).svids[0];
      const leaf = certs(svid.x509_svid)[0]!;
      writeFileSync(join(dir, "leaf.pem"), leaf.toPem());
      writeFileSync(
        join(dir, "bundle.pem"),
        certs(svid.bundle)
          .map((c) => c.toPem())
          .join(""),
      );
      writeFileSync(join(dir, "stranger.pem"), stranger.bundlePem());
      const ok = await openssl(["verify", "-CAfile", "bundle.pem", "leaf.pem"], dir);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /leaf\.pem: OK/);
      const bad = await openssl(["verify", "-CAfile", "stranger.pem", "leaf.pem"], dir);
      assert.notEqual(bad.code, 0);
      const text = await openssl(["x509", "-in", "leaf.pem", "-noout", "-text"], dir);
      assert.match(text.stdout, /URI:spiffe:\/\/spire\.example\/ns\/default\/sa\/web/);
      assert.match(text.stdout, /CA:FALSE/);
      assert.match(text.stdout, /Digital Signature/);
    } finally {
      s.cancel();
      await stranger.close();
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("FetchX509Bundles: its own bundle and the federated one, keyed by trust domain ID", async () => {
    const s = new Stream(client, "FetchX509Bundles");
    try {
      const m = await s.next(1);
      assert.deepEqual(Object.keys(m.bundles).sort(), ["spiffe://partner.example", "spiffe://spire.example"]);
      assert.equal(
        certs(m.bundles["spiffe://spire.example"])[0]!.toPem(),
        Certificate.parsePem(agent.bundlePem())[0]!.toPem(),
      );
    } finally {
      s.cancel();
    }
  });

  it("FetchJWTSVID: a JWT-SVID that validateJwtSvid accepts under the JWT bundle FetchJWTBundles sends; a wrong audience it refuses", async () => {
    const res = await unary(client, "FetchJWTSVID", { audience: [AUD] });
    assert.deepEqual(
      res.svids.map((x: Any) => x.spiffe_id),
      [WEB, API],
    );
    const s = new Stream(client, "FetchJWTBundles");
    try {
      const m = await s.next(1);
      assert.deepEqual(Object.keys(m.bundles).sort(), ["spiffe://partner.example", "spiffe://spire.example"]);
      const jwks = JSON.parse(Buffer.from(m.bundles["spiffe://spire.example"]).toString("utf8"));
      assert.deepEqual(jwks, agent.jwks());
      const bundles = new BundleSet([TrustBundle.parseJwks(jwks, "spire.example")]);
      assert.equal(validateJwtSvid(res.svids[0].svid, bundles, { audience: AUD }).id.toString(), WEB);
      assert.throws(() => validateJwtSvid(res.svids[0].svid, bundles, { audience: "spiffe://spire.example/other" }), {
        code: ErrorCodes.JWT_AUDIENCE_MISMATCH,
      });
      // Another agent's keys do not validate it: the bundle is what made it pass.
      const stranger = new BundleSet([TrustBundle.parseJwks(agent.jwks("partner.example"), "spire.example")]);
      assert.throws(() => validateJwtSvid(res.svids[0].svid, stranger, { audience: AUD }), {
        code: ErrorCodes.JWT_KID_UNKNOWN,
      });
    } finally {
      s.cancel();
    }
  });

  it("FetchJWTSVID: spiffe_id selects one; an ID it does not hold is PERMISSION_DENIED, no audience INVALID_ARGUMENT", async () => {
    const one = await unary(client, "FetchJWTSVID", { audience: [AUD], spiffe_id: API });
    assert.deepEqual(
      one.svids.map((x: Any) => x.spiffe_id),
      [API],
    );
    const other = await unary(client, "FetchJWTSVID", { audience: [AUD], spiffe_id: "spiffe://spire.example/admin" });
    assert.deepEqual(other, { error: "PERMISSION_DENIED", details: "no identity issued" });
    assert.equal((await unary(client, "FetchJWTSVID", { audience: [] })).error, "INVALID_ARGUMENT");
    assert.equal(
      (await unary(client, "FetchJWTSVID", { audience: [AUD], spiffe_id: "not an id" })).error,
      "INVALID_ARGUMENT",
    );
  });

  it("ValidateJWTSVID: its own JWT-SVID for the audience, with the claims; the wrong audience or a forged claim INVALID_ARGUMENT", async () => {
    const svid = (await unary(client, "FetchJWTSVID", { audience: [AUD], spiffe_id: WEB })).svids[0].svid as string;
    const ok = await unary(client, "ValidateJWTSVID", { audience: AUD, svid });
    assert.equal(ok.spiffe_id, WEB);
    assert.equal(ok.claims.fields.sub.stringValue, WEB);
    assert.equal(
      (await unary(client, "ValidateJWTSVID", { audience: "spiffe://x/y", svid })).error,
      "INVALID_ARGUMENT",
    );
    const [h, p, sig] = svid.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    const forged = [h, Buffer.from(JSON.stringify({ ...claims, sub: API })).toString("base64url"), sig].join(".");
    assert.equal((await unary(client, "ValidateJWTSVID", { audience: AUD, svid: forged })).error, "INVALID_ARGUMENT");
  });

  for (const [method, req] of [
    ["FetchJWTSVID", { audience: [AUD] }],
    ["ValidateJWTSVID", { audience: AUD, svid: "a.b.c" }],
  ] as const) {
    it(`${method} without the workload.spiffe.io header: INVALID_ARGUMENT (with it, an answer of its own)`, async () => {
      const bare = await unary(client, method, req, new grpc.Metadata());
      assert.deepEqual(bare, { error: "INVALID_ARGUMENT", details: "security header missing from request" });
      const wrong = new grpc.Metadata();
      wrong.set("workload.spiffe.io", "false");
      assert.equal((await unary(client, method, req, wrong)).error, "INVALID_ARGUMENT");
      const answered = await unary(client, method, req);
      assert.notEqual(answered.details, "security header missing from request");
    });
  }
  for (const method of ["FetchX509SVID", "FetchX509Bundles", "FetchJWTBundles"]) {
    it(`${method} without the workload.spiffe.io header: INVALID_ARGUMENT, and with it, a first message`, async () => {
      const bare = new Stream(client, method, new grpc.Metadata());
      await assert.rejects(bare.next(1), /stream ended/);
      assert.equal(bare.error?.code, "INVALID_ARGUMENT");
      const ok = new Stream(client, method);
      try {
        await ok.next(1);
      } finally {
        ok.cancel();
      }
    });
  }
});

describe("the fake SPIRE agent's streams are pushed to", () => {
  it("rotate(): a new SVID over a new key reaches an open FetchX509SVID stream, and still verifies", async () => {
    await withAgent({ identities: [{ spiffeId: WEB }] }, async (agent, client) => {
      const s = new Stream(client, "FetchX509SVID");
      try {
        const first = (await s.next(1)).svids[0];
        await agent.rotate();
        const second = (await s.next(2)).svids[0];
        assert.notEqual(certs(first.x509_svid)[0]!.serialNumber, certs(second.x509_svid)[0]!.serialNumber);
        assert.notEqual(
          Buffer.from(first.x509_svid_key).toString("hex"),
          Buffer.from(second.x509_svid_key).toString("hex"),
        );
        assert.equal(verifyMessage(second), WEB);
        assert.equal(certs(second.x509_svid)[0]!.toPem(), Certificate.parsePem(agent.svids()[0]!.chainPem)[0]!.toPem());
      } finally {
        s.cancel();
      }
    });
  });

  it("autoRotate: SVIDs renewed at half their lifetime by themselves, as SPIRE's agent renews them", async () => {
    await withAgent(
      { identities: [{ spiffeId: WEB }], svidTtlSeconds: 2, autoRotate: true },
      async (_agent, client) => {
        const s = new Stream(client, "FetchX509SVID");
        try {
          const first = certs((await s.next(1)).svids[0].x509_svid)[0]!;
          const second = certs((await s.next(2, 3000)).svids[0].x509_svid)[0]!;
          assert.notEqual(first.serialNumber, second.serialNumber);
          assert.ok(second.notAfter.getTime() - first.notAfter.getTime() >= 0);
        } finally {
          s.cancel();
        }
      },
    );
  });

  it("rotateJwtKey(): the JWT bundle stream gets both keys, and new JWT-SVIDs are signed with the new one", async () => {
    await withAgent({ identities: [{ spiffeId: WEB }] }, async (agent, client) => {
      const s = new Stream(client, "FetchJWTBundles");
      try {
        const kids = (m: Any): string[] =>
          JSON.parse(Buffer.from(m.bundles["spiffe://spire.example"]).toString()).keys.map((k: Any) => k.kid);
        const before = kids(await s.next(1));
        const old = (await unary(client, "FetchJWTSVID", { audience: [AUD] })).svids[0].svid as string;
        await agent.rotateJwtKey();
        const after = await s.next(2);
        assert.equal(kids(after).length, 2);
        assert.equal(kids(after)[0], before[0]);
        const fresh = (await unary(client, "FetchJWTSVID", { audience: [AUD] })).svids[0].svid as string;
        const kidOf = (t: string): string => JSON.parse(Buffer.from(t.split(".")[0]!, "base64url").toString()).kid;
        assert.equal(kidOf(old), before[0]);
        assert.equal(kidOf(fresh), kids(after)[1]);
        const bundles = new BundleSet([
          TrustBundle.parseJwks(
            JSON.parse(Buffer.from(after.bundles["spiffe://spire.example"]).toString()),
            "spire.example",
          ),
        ]);
        for (const t of [old, fresh]) assert.equal(validateJwtSvid(t, bundles, { audience: AUD }).id.toString(), WEB);
      } finally {
        s.cancel();
      }
    });
  });

  it("setIdentities([]): an empty update on the open stream, which stays open; a new stream and FetchJWTSVID are PERMISSION_DENIED; identities given back come on it", async () => {
    await withAgent({ identities: [{ spiffeId: WEB }] }, async (agent, client) => {
      const s = new Stream(client, "FetchX509SVID");
      try {
        assert.equal((await s.next(1)).svids.length, 1);
        await agent.setIdentities([]);
        const empty = await s.next(2);
        assert.deepEqual(empty.svids, []);
        const fresh = new Stream(client, "FetchX509SVID");
        await assert.rejects(fresh.next(1), /stream ended/);
        assert.deepEqual(fresh.error, { code: "PERMISSION_DENIED", details: "no identity issued" });
        assert.equal((await unary(client, "FetchJWTSVID", { audience: [AUD] })).error, "PERMISSION_DENIED");
        await agent.setIdentities([{ spiffeId: API, hint: "back" }]);
        const back = await s.next(3);
        assert.deepEqual(
          back.svids.map((x: Any) => [x.spiffe_id, x.hint]),
          [[API, "back"]],
        );
        assert.equal(verifyMessage(back.svids[0]), API);
        assert.equal(s.error, undefined);
      } finally {
        s.cancel();
      }
    });
  });

  it("setIdentities keeps the SVID of an identity it keeps, and issues one for a new identity", async () => {
    await withAgent({ identities: [{ spiffeId: WEB }] }, async (agent, client) => {
      const s = new Stream(client, "FetchX509SVID");
      try {
        const first = (await s.next(1)).svids[0];
        await agent.setIdentities([{ spiffeId: WEB }, { spiffeId: API }]);
        const second = await s.next(2);
        assert.deepEqual(
          second.svids.map((x: Any) => x.spiffe_id),
          [WEB, API],
        );
        assert.deepEqual(Buffer.from(second.svids[0].x509_svid), Buffer.from(first.x509_svid));
        assert.equal(verifyMessage(second.svids[1]), API);
      } finally {
        s.cancel();
      }
    });
  });

  it('whenIdentitiesRemoved: "permission-denied" ends the stream with PERMISSION_DENIED instead', async () => {
    await withAgent(
      { identities: [{ spiffeId: WEB }], whenIdentitiesRemoved: "permission-denied" },
      async (agent, client) => {
        const s = new Stream(client, "FetchX509SVID");
        await s.next(1);
        await agent.setIdentities([]);
        await assert.rejects(s.next(2), /stream ended/);
        assert.deepEqual(s.error, { code: "PERMISSION_DENIED", details: "no identity issued" });
      },
    );
  });

  it("intermediate: true sends the chain leaf then the server CA, which verifies under the root alone (ours and openssl's)", async () => {
    await withAgent({ identities: [{ spiffeId: WEB }], intermediate: true }, async (agent, client, dir) => {
      const s = new Stream(client, "FetchX509SVID");
      try {
        const svid = (await s.next(1)).svids[0];
        const chain = certs(svid.x509_svid);
        assert.equal(chain.length, 2);
        assert.equal(certs(svid.bundle).length, 1);
        assert.equal(verifyMessage(svid), WEB);
        // Without the server CA the leaf does not reach the root: the chain is what made it pass.
        const bundle = new BundleSet([
          new TrustBundle({ trustDomain: "spire.example", x509Authorities: certs(svid.bundle) }),
        ]);
        assert.throws(() => verifyX509Svid([chain[0]!], bundle), { code: ErrorCodes.X509SVID_UNTRUSTED });
        writeFileSync(join(dir, "leaf.pem"), chain[0]!.toPem());
        writeFileSync(join(dir, "ca.pem"), chain[1]!.toPem());
        writeFileSync(join(dir, "root.pem"), agent.bundlePem());
        const ok = await openssl(["verify", "-CAfile", "root.pem", "-untrusted", "ca.pem", "leaf.pem"], dir);
        assert.equal(ok.code, 0, ok.stderr);
        assert.notEqual((await openssl(["verify", "-CAfile", "root.pem", "leaf.pem"], dir)).code, 0);
      } finally {
        s.cancel();
      }
    });
  });

  it("a federated trust domain given as PEM is sent as given", async () => {
    const other = mkdtempSync(join(tmpdir(), "aztp-fake-spire-fed-"));
    const partner = await startFakeSpireAgent({
      socketPath: join(other, "agent.sock"),
      trustDomain: "partner.example",
      identities: [],
    });
    try {
      await withAgent(
        {
          identities: [{ spiffeId: WEB }],
          federated: [{ trustDomain: "partner.example", pem: partner.bundlePem(), jwks: partner.jwks() }],
        },
        async (agent, client) => {
          const s = new Stream(client, "FetchX509SVID");
          try {
            const m = await s.next(1);
            assert.equal(
              certs(m.federated_bundles["spiffe://partner.example"])[0]!.toPem(),
              Certificate.parsePem(partner.bundlePem())[0]!.toPem(),
            );
            assert.deepEqual(agent.jwks("partner.example"), partner.jwks());
          } finally {
            s.cancel();
          }
        },
      );
    } finally {
      await partner.close();
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("refuses an identity outside its trust domain", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-fake-spire-"));
    try {
      await assert.rejects(
        startFakeSpireAgent({ socketPath: join(dir, "a.sock"), identities: [{ spiffeId: "spiffe://example.org/x" }] }),
        /not in the agent's trust domain/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
