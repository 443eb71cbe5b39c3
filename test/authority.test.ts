/**
 * The embedded authority: home layout and key protection, the X.509-SVID profile checked by
 * openssl and by our own parser, CSR-only issuance, revocation (cascade, signed list),
 * reissue, the parent lifetime cap, link rules, and several processes sharing one home.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { compactVerify, decodeProtectedHeader } from "jose";
import {
  EmbeddedAuthority,
  MAX_JWT_SVID_TTL_SECONDS,
  MAX_SPIFFE_ID_BYTES,
  type IssueResult,
  type RegisterRequest,
} from "../src/authority/authority.js";
import type { RegistryState } from "../src/authority/registry.js";
import { ErrorCodes } from "../src/errors.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { samePublicKey } from "../src/spiffe/keys.js";
import { x509 } from "../src/spiffe/x509lib.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import {
  aztpCli,
  assertExit,
  openssl,
  rejectsWithCode,
  ROOT,
  runTs,
  tempDir,
  type RunResult,
} from "./helpers/authority-util.js";

const ISSUE_MANY = join(ROOT, "test", "helpers", "authority-issue-many.ts");
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

async function newAuthority(t: TestContext, trustDomain = "example.org"): Promise<EmbeddedAuthority> {
  return EmbeddedAuthority.init(tempDir(t), trustDomain);
}

/** Issues `name` the way a workload does: its own key, only the CSR goes to the authority. */
async function issue(
  a: EmbeddedAuthority,
  req: RegisterRequest | string,
  opts: { ttlSeconds?: number; now?: Date } = {},
): Promise<IssueResult & { chain: Certificate[] }> {
  const key = await generateWorkloadKey();
  const r = await a.issueIdentity(typeof req === "string" ? { name: req } : req, key.csr, opts);
  const chain = Certificate.parsePem(r.svid.chainPem);
  assert.ok(chain[0] && samePublicKey(chain[0].publicKey, key.publicKey), "the SVID certifies the workload's own key");
  return { ...r, chain };
}

function registryOf(home: string): RegistryState {
  return JSON.parse(readFileSync(join(home, "registry.json"), "utf8")) as RegistryState;
}

describe("aztp init", () => {
  it("lays out the home with private keys at mode 0600 and an empty registry", async (t) => {
    const home = join(tempDir(t), "nested", "home");
    const r = await aztpCli(home, ["init", "--trust-domain", "Example.ORG"]);
    assertExit(r, 0);
    assert.deepEqual(r.json, { home, trustDomain: "example.org" }, "trust domain normalised");

    const td = join(home, "trust-domains", "example.org");
    for (const f of ["authority.json", "registry.json"]) assert.ok(existsSync(join(home, f)), f);
    assert.deepEqual(readdirSync(td).sort(), [
      "generation.json",
      "intermediate-key.pem",
      "intermediate.pem",
      "jwt-key.pem",
      "jwt.json",
      "root-key.pem",
      "root.pem",
    ]);
    for (const key of ["root-key.pem", "intermediate-key.pem", "jwt-key.pem"]) {
      assert.equal(statSync(join(td, key)).mode & 0o777, 0o600, `${key} must be readable by its owner only`);
      assert.match(readFileSync(join(td, key), "utf8"), /^-----BEGIN PRIVATE KEY-----/);
    }
    // Nothing secret anywhere else, and no key is left group/world readable.
    for (const f of ["authority.json", "registry.json"])
      assert.doesNotMatch(readFileSync(join(home, f), "utf8"), /PRIVATE KEY/);
    for (const f of ["root.pem", "intermediate.pem", "jwt.json"])
      assert.doesNotMatch(readFileSync(join(td, f), "utf8"), /PRIVATE KEY/);

    const config = JSON.parse(readFileSync(join(home, "authority.json"), "utf8")) as {
      defaultTrustDomain: string;
      trustDomains: string[];
    };
    assert.equal(config.defaultTrustDomain, "example.org");
    assert.deepEqual(config.trustDomains, ["example.org"]);
    const reg = registryOf(home);
    assert.deepEqual(reg.identities, {});
    assert.equal(reg.revocations.sequence, 0);

    const [root] = Certificate.parsePem(readFileSync(join(td, "root.pem")));
    const [inter] = Certificate.parsePem(readFileSync(join(td, "intermediate.pem")));
    assert.ok(root && inter);
    assert.ok(
      root.isCA && root.keyUsage.keyCertSign && root.isSelfIssued && root.verifySignedBy(root),
      "root is a self-signed CA",
    );
    assert.ok(
      inter.isCA && inter.keyUsage.keyCertSign && inter.verifySignedBy(root),
      "intermediate is a CA signed by the root",
    );
    assert.equal(inter.pathLenConstraint, 0, "the intermediate signs leaves only");
    assert.deepEqual(root.uriSans, ["spiffe://example.org"]);
  });

  it("refuses to overwrite an existing authority (ERR_AUTHORITY_EXISTS) and leaves it intact", async (t) => {
    const home = tempDir(t);
    const a = await EmbeddedAuthority.init(home, "example.org");
    await issue(a, "survivor");
    const rootBefore = readFileSync(join(home, "trust-domains", "example.org", "root.pem"), "utf8");
    for (const td of ["example.org", "other.org"]) {
      await rejectsWithCode(() => EmbeddedAuthority.init(home, td), ErrorCodes.AUTHORITY_EXISTS, `init ${td} again`);
    }
    assert.equal(readFileSync(join(home, "trust-domains", "example.org", "root.pem"), "utf8"), rootBefore);
    assert.ok(!existsSync(join(home, "trust-domains", "other.org")));
    assert.equal(
      (await EmbeddedAuthority.open(home)).get("aztp://example.org/workload/production/node/survivor").status,
      "active",
    );
  });

  it("open() without create on an empty folder says how to initialise (ERR_AUTHORITY_NOT_INITIALIZED)", async (t) => {
    const home = tempDir(t);
    const e = await rejectsWithCode(() => EmbeddedAuthority.open(home), ErrorCodes.AUTHORITY_NOT_INITIALIZED);
    assert.match(e.message, /aztp init/);
    assert.ok(!existsSync(join(home, "authority.json")));
  });
});

describe("X.509-SVID issuance", () => {
  const cases: Array<{
    label: string;
    make: (a: EmbeddedAuthority) => Promise<IssueResult & { chain: Certificate[] }>;
    spiffeId: string;
  }> = [
    {
      label: "default path",
      make: (a) => issue(a, "agent-1"),
      spiffeId: "spiffe://example.org/workload/production/node/agent-1",
    },
    {
      label: "environment and method",
      make: (a) => issue(a, { name: "tool.v2", environment: "staging", method: "k8s" }),
      spiffeId: "spiffe://example.org/workload/staging/k8s/tool.v2",
    },
    {
      label: "a second trust domain of the same authority",
      make: (a) => issue(a, { name: "agent_x", trustDomain: "partner.example" }),
      spiffeId: "spiffe://partner.example/workload/production/node/agent_x",
    },
    {
      label: "a child identity",
      make: async (a) => {
        const p = await issue(a, "parent");
        return issue(a, { name: "child", parentIdentity: p.record.aztpId });
      },
      spiffeId: "spiffe://example.org/workload/production/node/child",
    },
  ];

  for (const c of cases) {
    it(`${c.label}: openssl verifies the chain against bundle.pem and sees exactly one URI SAN`, async (t) => {
      const a = await newAuthority(t);
      const { record, svid, chain } = await c.make(a);
      assert.equal(record.spiffeId, c.spiffeId);
      assert.equal(record.aztpId, c.spiffeId.replace(/^spiffe:/, "aztp:"));
      const dir = tempDir(t, "pem");
      writeFileSync(join(dir, "svid.pem"), svid.chainPem);
      writeFileSync(join(dir, "bundle.pem"), a.bundle(record.trustDomain).toPem());

      const v = await openssl(["verify", "-CAfile", "bundle.pem", "-untrusted", "svid.pem", "svid.pem"], dir);
      assert.equal(v.code, 0, v.stderr + v.stdout);
      assert.match(v.stdout, /svid\.pem: OK/);
      for (const purpose of ["sslserver", "sslclient"]) {
        const p = await openssl(
          ["verify", "-purpose", purpose, "-CAfile", "bundle.pem", "-untrusted", "svid.pem", "svid.pem"],
          dir,
        );
        assert.equal(p.code, 0, `usable for ${purpose}: ${p.stderr}${p.stdout}`);
      }
      const san = await openssl(["x509", "-in", "svid.pem", "-noout", "-ext", "subjectAltName"], dir);
      assert.equal(san.code, 0, san.stderr);
      assert.deepEqual(san.stdout.match(/URI:\S+/g), [`URI:${c.spiffeId}`]);
      assert.doesNotMatch(san.stdout, /DNS:|IP Address:|email:/);

      // And a bundle from another authority must not vouch for it.
      const stranger = await newAuthority(t);
      writeFileSync(join(dir, "other.pem"), stranger.bundle().toPem());
      const bad = await openssl(["verify", "-CAfile", "other.pem", "-untrusted", "svid.pem", "svid.pem"], dir);
      assert.notEqual(bad.code, 0, "another trust root must not verify this SVID");

      assert.equal(verifyX509Svid(chain, a.bundleSet()).id.toString(), c.spiffeId);
    });
  }

  it("leaf profile: cA=false, key usage critical digitalSignature only, EKU serverAuth+clientAuth, 1 h default", async (t) => {
    const a = await newAuthority(t);
    const { svid, chain, record } = await issue(a, "profiled");
    const [leaf, inter] = chain;
    assert.ok(leaf && inter && chain.length === 2, "leaf then intermediate");
    assert.ok(leaf.basicConstraintsPresent && !leaf.isCA);
    assert.deepEqual(
      { ...leaf.keyUsage },
      {
        present: true,
        critical: true,
        digitalSignature: true,
        nonRepudiation: false,
        keyEncipherment: false,
        dataEncipherment: false,
        keyAgreement: false,
        keyCertSign: false,
        cRLSign: false,
        encipherOnly: false,
        decipherOnly: false,
      },
    );
    assert.deepEqual(leaf.uriSans, [record.spiffeId]);
    assert.deepEqual(leaf.dnsSans, []);
    assert.deepEqual(leaf.unknownCriticalExtensions, []);
    const eku = new x509.X509Certificate(new Uint8Array(leaf.der)).getExtension(x509.ExtendedKeyUsageExtension);
    assert.ok(eku, "EKU present");
    assert.deepEqual([...eku.usages].map(String).sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
    assert.equal(leaf.serialNumber, svid.serial);
    assert.equal(record.currentSerial, svid.serial);
    assert.deepEqual(record.serials, [svid.serial]);
    assert.ok(inter.isCA && inter.keyUsage.keyCertSign && leaf.verifySignedBy(inter));
    const lifetime = leaf.notAfter.getTime() - Date.now();
    assert.ok(lifetime > 3500_000 && lifetime <= 3600_000, `default lifetime about 1 h, got ${lifetime} ms`);
    assert.ok(leaf.notBefore.getTime() <= Date.now(), "valid immediately");
  });

  it("serials are unique 128-bit positive numbers across many issuances", async (t) => {
    const a = await newAuthority(t);
    const serials = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { svid, chain } = await issue(a, `s${i % 5}`);
      assert.match(svid.serial, /^[1-7][0-9a-f]{31}$/, "positive, 16 bytes, no leading zero byte");
      assert.equal(chain[0]?.serialNumber, svid.serial);
      serials.add(svid.serial);
    }
    assert.equal(serials.size, 20);
  });

  it("takes only a CSR: one with a broken signature, a swapped key or bad bytes is refused and registers nothing", async (t) => {
    const a = await newAuthority(t);
    const good = await generateWorkloadKey();
    const other = await generateWorkloadKey();
    const spki = (k: typeof good): Buffer => k.publicKey.export({ format: "der", type: "spki" });
    const flipLast = Buffer.from(good.csr);
    flipLast[flipLast.length - 1] = (flipLast[flipLast.length - 1] ?? 0) ^ 0x01;
    const keyAt = good.csr.indexOf(spki(good));
    assert.ok(keyAt > 0, "the CSR carries the public key");
    // Someone asking for a certificate over a key they cannot sign with.
    const swapped = Buffer.concat([
      good.csr.subarray(0, keyAt),
      spki(other),
      good.csr.subarray(keyAt + spki(good).length),
    ]);
    const cases: Array<[string, Buffer | string]> = [
      ["signature bit flipped", flipLast],
      ["public key swapped for another's", swapped],
      ["truncated", good.csr.subarray(0, good.csr.length - 20)],
      ["random bytes", Buffer.from("30820101deadbeef", "hex")],
      ["empty", Buffer.alloc(0)],
      ["not PEM", "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n"],
    ];
    for (const [label, csr] of cases) {
      await rejectsWithCode(() => a.issueIdentity({ name: "victim" }, csr), ErrorCodes.AUTHORITY_CSR_INVALID, label);
      assert.equal(
        a.find("aztp://example.org/workload/production/node/victim"),
        undefined,
        `${label}: nothing registered in this process`,
      );
    }
    assert.deepEqual(registryOf(a.home).identities, {}, "nothing registered on disk");
    // The untouched CSR works, in PEM as well as DER.
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${good.csr.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE REQUEST-----\n`;
    const ok = await a.issueIdentity({ name: "victim" }, pem);
    assert.ok(samePublicKey(Certificate.parsePem(ok.svid.chainPem)[0]!.publicKey, good.publicKey));
    // No workload key ever reaches the home.
    const workloadKeyPem = good.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
        d.isDirectory() ? files(join(dir, d.name)) : [join(dir, d.name)],
      );
    for (const f of files(a.home)) assert.ok(!readFileSync(f, "utf8").includes(workloadKeyPem.split("\n")[1]!), f);
  });

  it("refuses invalid names without registering anything", async (t) => {
    const a = await newAuthority(t);
    const { csr } = await generateWorkloadKey();
    for (const name of ["with space", "a/b", "", ".", "..", "émoji", undefined, 42]) {
      await rejectsWithCode(
        () => a.issueIdentity({ name: name as string }, csr),
        ErrorCodes.ARGUMENT_INVALID,
        JSON.stringify(name),
      );
    }
    await rejectsWithCode(
      () => a.issueIdentity({ name: "ok", trustDomain: "Bad Domain" }, csr),
      ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID,
    );
    await rejectsWithCode(
      () => a.issueIdentity({ name: "ok" }, csr, { ttlSeconds: -5 }),
      ErrorCodes.ARGUMENT_INVALID,
      "negative ttl",
    );
    assert.deepEqual(a.list(), []);
  });

  it("issues an ID of exactly 2048 bytes (the SPIFFE limit) and refuses a name that would make it longer", async (t) => {
    const a = await newAuthority(t);
    const { csr } = await generateWorkloadKey();
    const prefix = (await a.issueIdentity({ name: "short" }, csr)).record.spiffeId.length - "short".length;
    const longest = "n".repeat(MAX_SPIFFE_ID_BYTES - prefix);
    const issued = await a.issueIdentity({ name: longest }, csr);
    assert.equal(issued.record.spiffeId.length, MAX_SPIFFE_ID_BYTES);
    assert.equal(
      verifyX509Svid(Certificate.parsePem(issued.svid.chainPem), a.bundleSet()).id.toString(),
      issued.record.spiffeId,
      "its SVID verifies",
    );
    await rejectsWithCode(
      () => a.issueIdentity({ name: `${longest}n` }, csr),
      ErrorCodes.ARGUMENT_INVALID,
      "2049 bytes",
    );
    assert.equal(a.list().length, 2, "the refused name registered nothing");
  });
});

describe("JWT-SVID lifetime", () => {
  const lifetime = (token: string): { iat: number; exp: number } =>
    JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString("utf8"));

  it("is 5 minutes by default, at most 24 h, and never past an ancestor's SVID", async (t) => {
    const a = await newAuthority(t);
    const now = new Date();
    const parent = await issue(a, "parent", { ttlSeconds: 600, now });
    const child = await issue(a, { name: "child", parentIdentity: parent.record.aztpId }, { now });
    const standalone = await issue(a, "standalone");

    const byDefault = lifetime(a.mintJwtSvid(standalone.record.aztpId, "svc", undefined, now));
    assert.equal(byDefault.exp - byDefault.iat, 300);
    const longest = lifetime(a.mintJwtSvid(standalone.record.aztpId, "svc", MAX_JWT_SVID_TTL_SECONDS, now));
    assert.equal(longest.exp - longest.iat, 24 * 3600);
    for (const ttl of [MAX_JWT_SVID_TTL_SECONDS + 1, 86_400_000_000, 0, -1, Number.NaN, Infinity]) {
      await rejectsWithCode(
        () => a.mintJwtSvid(standalone.record.aztpId, "svc", ttl, now),
        ErrorCodes.ARGUMENT_INVALID,
        `ttl ${ttl}`,
      );
    }

    // The parent's SVID ends in 600 s: the child's JWT-SVID ends then too, however long it asks for.
    const capped = lifetime(a.mintJwtSvid(child.record.aztpId, "svc", 3600, now));
    assert.equal(capped.exp, Math.floor(parent.svid.notAfter.getTime() / 1000));
    const short = lifetime(a.mintJwtSvid(child.record.aztpId, "svc", 60, now));
    assert.equal(short.exp - short.iat, 60, "a lifetime inside the parent's is left alone");
    await rejectsWithCode(
      () => a.mintJwtSvid(child.record.aztpId, "svc", 60, new Date(parent.svid.notAfter.getTime() + 1000)),
      ErrorCodes.PARENT_INVALID,
      "the parent's SVID has expired",
    );
  });

  it("aztp jwt refuses a lifetime over 24 h (exit 2)", async (t) => {
    const home = tempDir(t);
    assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0);
    assertExit(await aztpCli(home, ["issue", "w", "--out", join(home, "w")]), 0);
    const r = await aztpCli(home, ["jwt", "w", "--audience", "svc", "--ttl", "999999d"]);
    assertExit(r, 2);
    assert.match(r.json.error.message, /at most 86400 s/);
    assertExit(await aztpCli(home, ["jwt", "w", "--audience", "svc", "--ttl", "24h"]), 0);
  });
});

describe("revocation", () => {
  it("revoking a parent cascades to children and grandchildren, and the signed list names them all", async (t) => {
    const a = await newAuthority(t);
    const root = await issue(a, "root");
    const child = await issue(a, { name: "child", parentIdentity: root.record.aztpId });
    const grandchild = await issue(a, { name: "grandchild", parentIdentity: child.record.aztpId });
    const sibling = await issue(a, { name: "sibling", parentIdentity: root.record.aztpId });
    const unrelated = await issue(a, "unrelated");
    const before = a.revocationSequence();

    const revoked = await a.revoke(root.record.aztpId, "compromised");
    assert.deepEqual(new Set(revoked), new Set([root, child, grandchild, sibling].map((x) => x.record.aztpId)));
    for (const x of [root, child, grandchild, sibling]) {
      assert.equal(a.isRevoked(x.record.aztpId), true, `${x.record.name} by ID`);
      assert.equal(a.isRevoked(x.record.spiffeId, x.svid.serial), true, `${x.record.name} by serial`);
      assert.equal(a.get(x.record.aztpId).status, "revoked");
      await rejectsWithCode(
        () => a.mintJwtSvid(x.record.aztpId, "svc"),
        ErrorCodes.IDENTITY_REVOKED,
        `no JWT-SVID for ${x.record.name}`,
      );
      const { csr } = await generateWorkloadKey();
      await rejectsWithCode(
        () => a.renewSvid(x.record.aztpId, csr),
        ErrorCodes.IDENTITY_REVOKED,
        `no renewal for ${x.record.name}`,
      );
    }
    assert.match(a.get(grandchild.record.aztpId).revokeReason ?? "", /parent revoked: compromised/);
    assert.equal(a.isRevoked(unrelated.record.aztpId, unrelated.svid.serial), false);
    assert.ok(a.revocationSequence() > before);
    // A fresh process (another authority object on the same home) sees it at once.
    const again = await EmbeddedAuthority.open(a.home);
    assert.equal(again.isRevoked(grandchild.record.aztpId), true);

    const jws = a.signedRevocationList();
    const header = decodeProtectedHeader(jws);
    assert.equal(header.typ, "aztp-revocations+jwt");
    assert.equal(header.alg, "ES256");
    const key = a.bundle().jwtAuthorities.get(String(header.kid));
    assert.ok(key, "the list's kid is the trust domain's JWT key in its bundle");
    const { payload } = await compactVerify(jws, key);
    const list = JSON.parse(new TextDecoder().decode(payload)) as {
      iss: string;
      sequence: number;
      identities: string[];
      serials: string[];
    };
    assert.equal(list.iss, "spiffe://example.org");
    assert.equal(list.sequence, a.revocationSequence());
    assert.deepEqual(
      new Set(list.identities),
      new Set([root, child, grandchild, sibling].map((x) => x.record.spiffeId)),
    );
    assert.deepEqual(new Set(list.serials), new Set([root, child, grandchild, sibling].map((x) => x.svid.serial)));
    assert.ok(!list.serials.includes(unrelated.svid.serial));

    // Tampering with the list breaks its signature; another trust domain's key does not verify it.
    const [h, , s] = jws.split(".");
    const forged = Buffer.from(JSON.stringify({ ...list, serials: [] })).toString("base64url");
    await assert.rejects(compactVerify(`${h}.${forged}.${s}`, key));
    const stranger = await newAuthority(t);
    await assert.rejects(compactVerify(jws, [...stranger.bundle().jwtAuthorities.values()][0]!));
  });

  it("reissue restores the identity; its old serials stay revoked, the next SVID is good", async (t) => {
    const a = await newAuthority(t);
    const first = await issue(a, "phoenix");
    const id = first.record.aztpId;
    await a.revoke(id, "lost laptop");
    const seqRevoked = a.revocationSequence();
    const restored = await a.reissue(id);
    assert.equal(restored.status, "active");
    assert.equal(restored.workloadId, first.record.workloadId, "same workload");
    assert.equal(restored.revokeReason, undefined);
    assert.ok(a.revocationSequence() > seqRevoked, "reissue bumps the sequence");
    assert.equal(a.isRevoked(id), false);
    assert.equal(a.isRevoked(id, first.svid.serial), true, "the old SVID stays revoked");

    const { svid, chain } = await (async () => {
      const k = await generateWorkloadKey();
      const r = await a.renewSvid(id, k.csr);
      return { ...r, chain: Certificate.parsePem(r.svid.chainPem) };
    })();
    assert.notEqual(svid.serial, first.svid.serial);
    assert.equal(a.isRevoked(id, svid.serial), false);
    assert.equal(verifyX509Svid(chain, a.bundleSet()).id.toString(), first.record.spiffeId);
    assert.deepEqual(a.get(id).serials, [first.svid.serial, svid.serial]);
    const list = JSON.parse(Buffer.from(a.signedRevocationList().split(".")[1]!, "base64url").toString()) as {
      identities: string[];
      serials: string[];
    };
    assert.deepEqual(list.identities, []);
    assert.deepEqual(list.serials, [first.svid.serial]);
    assert.ok(a.mintJwtSvid(id, "svc").split(".").length === 3, "JWT-SVIDs again");
  });

  it("reissue is refused while an ancestor is revoked, and allowed once the ancestor is restored", async (t) => {
    const a = await newAuthority(t);
    const p = await issue(a, "p");
    const c = await issue(a, { name: "c", parentIdentity: p.record.aztpId });
    const g = await issue(a, { name: "g", parentIdentity: c.record.aztpId });
    await a.revoke(p.record.aztpId, "test");
    for (const x of [c, g]) {
      const e = await rejectsWithCode(
        () => a.reissue(x.record.aztpId),
        ErrorCodes.IDENTITY_REVOKED,
        `reissue ${x.record.name}`,
      );
      assert.match(e.message, /ancestor/);
      assert.equal(a.get(x.record.aztpId).status, "revoked");
    }
    // A new child cannot be hung under a revoked parent either.
    await rejectsWithCode(() => issue(a, { name: "late", parentIdentity: p.record.aztpId }), ErrorCodes.PARENT_INVALID);
    await a.reissue(p.record.aztpId);
    assert.equal(a.get(c.record.aztpId).status, "revoked", "children are restored one by one");
    // The parent must hold a fresh SVID before a child can be issued under it.
    const { csr } = await generateWorkloadKey();
    await a.renewSvid(p.record.aztpId, csr);
    await a.reissue(c.record.aztpId);
    await a.reissue(g.record.aztpId);
    const renewed = await a.renewSvid(g.record.aztpId, (await generateWorkloadKey()).csr);
    assert.equal(a.isRevoked(g.record.aztpId, renewed.svid.serial), false);
  });

  it("unknown identities: revoke/reissue say ERR_IDENTITY_NOT_FOUND, isRevoked treats garbage as revoked", async (t) => {
    const a = await newAuthority(t);
    await rejectsWithCode(
      () => a.revoke("aztp://example.org/workload/production/node/ghost", "x"),
      ErrorCodes.IDENTITY_NOT_FOUND,
    );
    await rejectsWithCode(
      () => a.reissue("aztp://example.org/workload/production/node/ghost"),
      ErrorCodes.IDENTITY_NOT_FOUND,
    );
    assert.equal(a.isRevoked("not an id"), true);
  });
});

describe("parent lifetime cap", () => {
  const cases: Array<{ parentTtl: number; childTtl: number | undefined; expectCapped: boolean }> = [
    { parentTtl: 600, childTtl: 3600, expectCapped: true },
    { parentTtl: 600, childTtl: undefined, expectCapped: true }, // default 1 h
    { parentTtl: 600, childTtl: 86400 * 365, expectCapped: true },
    { parentTtl: 3600, childTtl: 60, expectCapped: false },
  ];
  for (const c of cases) {
    it(`parent ttl ${c.parentTtl}s, child asks ${c.childTtl ?? "default"}: child notAfter ≤ parent's`, async (t) => {
      const a = await newAuthority(t);
      const p = await issue(a, "p", { ttlSeconds: c.parentTtl });
      const ch = await issue(
        a,
        { name: "c", parentIdentity: p.record.aztpId },
        c.childTtl !== undefined ? { ttlSeconds: c.childTtl } : {},
      );
      const g = await issue(a, { name: "g", parentIdentity: ch.record.aztpId }, { ttlSeconds: 86400 });
      const pNa = p.chain[0]!.notAfter.getTime();
      const cNa = ch.chain[0]!.notAfter.getTime();
      const gNa = g.chain[0]!.notAfter.getTime();
      assert.ok(
        cNa <= pNa,
        `child ${new Date(cNa).toISOString()} must not outlive parent ${new Date(pNa).toISOString()}`,
      );
      assert.ok(gNa <= cNa, "grandchild must not outlive child");
      if (c.expectCapped) assert.equal(cNa, pNa, "capped at exactly the parent's expiry");
      else
        assert.ok(
          cNa < pNa && Math.abs(cNa - (Date.now() + (c.childTtl ?? 0) * 1000)) < 5000,
          "the shorter ttl asked for is kept",
        );
      assert.equal(a.get(ch.record.aztpId).parentIdentity, p.record.aztpId);
    });
  }

  it("no child SVID once the parent's has expired (ERR_PARENT_INVALID)", async (t) => {
    const a = await newAuthority(t);
    const p = await issue(a, "p", { ttlSeconds: 60 });
    const c = await issue(a, { name: "c", parentIdentity: p.record.aztpId });
    const later = new Date(p.svid.notAfter.getTime() + 1000);
    const { csr } = await generateWorkloadKey();
    await rejectsWithCode(() => a.renewSvid(c.record.aztpId, csr, { now: later }), ErrorCodes.PARENT_INVALID);
    await rejectsWithCode(
      () => issue(a, { name: "late", parentIdentity: p.record.aztpId }, { now: later }),
      ErrorCodes.PARENT_INVALID,
    );
    assert.equal(a.find("aztp://example.org/workload/production/node/late"), undefined);
  });
});

describe("links", () => {
  it("parent links that would make a cycle are refused; plain links may go both ways", async (t) => {
    const a = await newAuthority(t);
    const [x, y, z, w] = await Promise.all(["x", "y", "z", "w"].map(async (n) => (await issue(a, n)).record.aztpId));
    assert.ok(x && y && z && w);
    await a.link(y, x, "parent"); // x is y's parent
    await a.link(z, y, "parent"); // y is z's parent
    assert.deepEqual(
      a.ancestors(z).map((r) => r.aztpId),
      [y, x],
    );
    await rejectsWithCode(() => a.link(x, z, "parent"), ErrorCodes.PARENT_INVALID, "x under its grandchild");
    await rejectsWithCode(() => a.link(x, y, "parent"), ErrorCodes.PARENT_INVALID, "x under its child");
    await rejectsWithCode(() => a.link(x, x, "parent"), ErrorCodes.ARGUMENT_INVALID, "x under itself");
    await rejectsWithCode(() => a.link(x, x, "linked"), ErrorCodes.ARGUMENT_INVALID, "x linked to itself");
    await rejectsWithCode(() => a.link(z, w, "parent"), ErrorCodes.PARENT_INVALID, "a second parent");
    await rejectsWithCode(
      () => a.link(x, "aztp://example.org/workload/production/node/nobody", "linked"),
      ErrorCodes.IDENTITY_NOT_FOUND,
    );
    await rejectsWithCode(() => a.link(x, w, "friend" as "linked"), ErrorCodes.ARGUMENT_INVALID, "unknown link type");
    assert.equal(a.get(x).parentIdentity, null, "refused links change nothing");

    await a.link(w, x, "linked", { why: "a" });
    await a.link(x, w, "linked", { why: "b" });
    const again = await a.link(w, x, "linked", { more: 1 });
    assert.deepEqual(again.metadata, { why: "a", more: 1 }, "re-linking merges metadata");
    assert.equal(a.get(w).links.length, 1, "no duplicate links");
    assert.equal(a.connected(w, x), true);
    assert.equal(a.connected(x, w), true);
    assert.equal(a.connected(z, y), true, "child and parent are connected");
    assert.equal(a.connected(y, z), true);
    assert.equal(a.connected(z, x), false, "grandparent is not a direct connection");
    assert.equal(a.connected(w, z), false);
  });
});

/** Spawns the issue-many helper; `ready` resolves once it waits at the barrier. */
function racer(args: string[]): { ready: Promise<void>; done: Promise<RunResult> } {
  let onReady!: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  let seen = "";
  const done = runTs(ISSUE_MANY, args, {
    timeoutMs: 60_000,
    onStdout: (c) => {
      seen += c;
      if (seen.includes("ready\n")) onReady();
    },
  });
  void done.then(onReady); // a crashed racer must not hang the barrier
  return { ready, done };
}

async function race(t: TestContext, runs: string[][]): Promise<RunResult[]> {
  const go = join(tempDir(t, "go"), "go");
  const racers = runs.map((args) => racer([...args.slice(0, 3), go, ...args.slice(3)]));
  await Promise.all(racers.map((r) => r.ready));
  writeFileSync(go, "");
  return Promise.all(racers.map((r) => r.done));
}

function lastJson<T>(r: RunResult): T {
  assert.equal(r.code, 0, `helper failed:\n${r.stderr}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] ?? "") as T;
}

describe("several processes sharing one home", () => {
  it("4 processes × 15 issuances at once: registry intact, 60 identities, unique serials, every SVID verifies", async (t) => {
    const a = await newAuthority(t);
    const results = await race(
      t,
      ["p0", "p1", "p2", "p3"].map((prefix) => [a.home, prefix, "15"]),
    );
    const issued = results.flatMap((r) =>
      lastJson<Array<{ name: string; aztpId: string; serial: string; chainPem: string }>>(r),
    );
    assert.equal(issued.length, 60);

    const reg = registryOf(a.home); // parses: not torn
    const records = Object.values(reg.identities);
    assert.equal(records.length, 60, "no process lost another's writes");
    assert.deepEqual(new Set(records.map((r) => r.name)), new Set(issued.map((i) => i.name)));
    const allSerials = records.flatMap((r) => r.serials);
    assert.equal(allSerials.length, 60);
    assert.equal(new Set(allSerials).size, 60, "serials are unique");
    assert.equal(new Set(records.map((r) => r.workloadId)).size, 60);

    const fresh = await EmbeddedAuthority.open(a.home);
    for (const i of issued) {
      const chain = Certificate.parsePem(i.chainPem);
      assert.equal(verifyX509Svid(chain, fresh.bundleSet()).id.aztpId, i.aztpId);
      assert.equal(chain[0]?.serialNumber, i.serial);
      assert.equal(fresh.get(i.aztpId).currentSerial, i.serial);
      assert.equal(fresh.isRevoked(i.aztpId, i.serial), false);
    }
    assert.deepEqual(
      readdirSync(a.home).filter((f) => f.endsWith(".tmp") || f === ".lock"),
      [],
      "no temp files or stale lock left",
    );
  });

  it("two processes creating one fresh home at once end up with one root CA, and both issue under it", async (t) => {
    const home = join(tempDir(t), "fresh");
    const results = await race(t, [
      [home, "a", "3", "example.org"],
      [home, "b", "3", "example.org"],
    ]);
    const issued = results.flatMap((r) => lastJson<Array<{ aztpId: string; chainPem: string }>>(r));
    assert.equal(issued.length, 6);
    const config = JSON.parse(readFileSync(join(home, "authority.json"), "utf8")) as { trustDomains: string[] };
    assert.deepEqual(config.trustDomains, ["example.org"]);
    assert.deepEqual(readdirSync(join(home, "trust-domains")), ["example.org"]);
    const roots = Certificate.parsePem(readFileSync(join(home, "trust-domains", "example.org", "root.pem")));
    assert.equal(roots.length, 1);
    const authority = await EmbeddedAuthority.open(home);
    for (const i of issued)
      assert.equal(verifyX509Svid(Certificate.parsePem(i.chainPem), authority.bundleSet()).id.aztpId, i.aztpId);
    assert.equal(authority.list().length, 6);
  });

  it("several `init`s racing on one fresh home: exactly one wins, the rest get ERR_AUTHORITY_EXISTS", async (t) => {
    const home = join(tempDir(t), "fresh");
    const tds = ["one.example", "two.example", "three.example"];
    const results = await race(
      t,
      tds.map((td) => [home, "@init", "0", td]),
    );
    const outcomes = results.map((r) => lastJson<{ trustDomain?: string; error?: string }>(r));
    const winners = outcomes.filter((o) => o.trustDomain !== undefined);
    assert.equal(winners.length, 1, JSON.stringify(outcomes));
    assert.deepEqual(
      outcomes.filter((o) => o.error !== undefined).map((o) => o.error),
      [ErrorCodes.AUTHORITY_EXISTS, ErrorCodes.AUTHORITY_EXISTS],
    );
    const config = JSON.parse(readFileSync(join(home, "authority.json"), "utf8")) as { trustDomains: string[] };
    assert.deepEqual(config.trustDomains, [winners[0]!.trustDomain]);
    assert.deepEqual(readdirSync(join(home, "trust-domains")), [winners[0]!.trustDomain]);
  });
});
