import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { before, describe, it } from "node:test";
import { ErrorCodes, type ErrorCode } from "../src/errors.js";
import { BundleSet, TrustBundle, type BundleSource } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { samePublicKey } from "../src/spiffe/keys.js";
import { parseX509Svid, verifyX509Svid, X509SvidVerifier } from "../src/spiffe/x509svid.js";
import { x509 } from "../src/spiffe/x509lib.js";
import { conformance, expectCode, generateKeys, KU, TestCA, type TestSvid } from "./helpers/testca.js";

const x509Fixture = (name: string): string => conformance(`x509/${name}`);
const certs = (name: string): Certificate[] => Certificate.parsePem(x509Fixture(name));

describe("Certificate", () => {
  it("parses once: the same DER gives the same cached instance", () => {
    const [a] = certs("good-leaf-only.pem");
    const [b] = certs("good-leaf-only.pem");
    assert.ok(a && a === b);
    assert.equal(Certificate.fromDer(Buffer.from(a.der)), a);
  });

  it("exposes the fields path validation needs", () => {
    const [leaf, ca] = certs("rust-spiffe/1-svid-chain.pem");
    assert.ok(leaf && ca);
    assert.equal(leaf.fingerprint, createHash("sha256").update(leaf.der).digest("hex"));
    // Serial 1002 = 0x3ea: lower-case hex of the value, no leading zeros.
    assert.equal(leaf.serialNumber, "3ea");
    assert.equal(ca.serialNumber, "3e9");
    assert.equal(leaf.subject, "CN=rust-spiffe test leaf");
    assert.equal(leaf.issuer, "CN=rust-spiffe test CA");
    assert.ok(leaf.rawIssuer.equals(ca.rawSubject));
    assert.equal(leaf.notAfter.toISOString(), "2100-03-28T22:11:09.000Z");
    assert.equal(leaf.isCA, false);
    assert.equal(leaf.basicConstraintsCritical, true);
    assert.deepEqual(
      {
        present: leaf.keyUsage.present,
        critical: leaf.keyUsage.critical,
        ds: leaf.keyUsage.digitalSignature,
        kcs: leaf.keyUsage.keyCertSign,
      },
      { present: true, critical: true, ds: true, kcs: false },
    );
    assert.deepEqual(leaf.uriSans, ["spiffe://example.org/service"]);
    assert.equal(ca.isCA, true);
    assert.equal(ca.keyUsage.keyCertSign, true);
    assert.equal(ca.isSelfIssued, true);
    assert.deepEqual(ca.uriSans, []);
    assert.equal(leaf.publicKey.asymmetricKeyType, "ec");
    assert.ok(leaf.verifySignedBy(ca));
    assert.ok(!ca.verifySignedBy(leaf));
    assert.deepEqual(leaf.unknownCriticalExtensions, []);
  });

  it("reads DNS SANs and SAN criticality", () => {
    const [leaf] = certs("rust-spiffe-rustls/spiffe_leaf.pem");
    assert.deepEqual(leaf?.dnsSans, ["example.org"]);
    assert.equal(leaf?.sanCritical, false);
    const [empty] = certs("rust-spiffe/empty-subject-name.pem");
    assert.equal(empty?.hasEmptySubject, true);
    assert.equal(empty?.subject, "");
    assert.equal(empty?.keyUsage.critical, false);
  });

  it("a key usage extension absent is distinguishable from one with no bits", () => {
    const [noKu] = certs("rust-spiffe-rustls/spiffe_leaf_no_key_usage.pem");
    assert.equal(noKu?.keyUsage.present, false);
    const [caNoKu] = certs("rust-spiffe-rustls/ca_uri_only.pem");
    assert.equal(caNoKu?.keyUsage.present, false);
    assert.equal(caNoKu?.isCA, true);
  });

  it("toPem round-trips", () => {
    const [leaf] = certs("good-leaf-only.pem");
    assert.equal(Certificate.parsePem(leaf!.toPem())[0], leaf);
  });

  it("parsePem errors name the failure", () => {
    expectCode(() => Certificate.parsePem(x509Fixture("not-pem")), ErrorCodes.PEM_BLOCKS_MISSING);
    expectCode(() => Certificate.parsePem(x509Fixture("corrupt-cert.pem")), ErrorCodes.CERT_MALFORMED);
    assert.deepEqual(Certificate.parsePem(x509Fixture("key-pkcs8-rsa.pem")), [], "key blocks are skipped");
    expectCode(() => Certificate.fromDer(Buffer.alloc(0)), ErrorCodes.CERT_MALFORMED);
  });

  it("rejects trailing data after the DER certificate", () => {
    const [leaf] = certs("good-leaf-only.pem");
    expectCode(() => Certificate.fromDer(Buffer.concat([leaf!.der, Buffer.from([0])])), ErrorCodes.CERT_MALFORMED);
  });
});

interface ParseCase {
  name: string;
  certs: string;
  key?: string;
  /** An error code, or the expected ID and certificate count. */
  expect: ErrorCode | { id: string; count: number };
}

describe("parseX509Svid: go-spiffe x509svid.Parse (INDEX table A) and rust-spiffe (tables B, C)", () => {
  const ok = (id: string, count: number) => ({ id, count });
  const cases: ParseCase[] = [
    // Table A, in go-spiffe's order.
    {
      name: "single certificate and key",
      certs: "good-leaf-only.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ok("spiffe://example.org/workload-1", 1),
    },
    {
      name: "certificate with intermediate and key",
      certs: "good-leaf-and-intermediate.pem",
      key: "key-pkcs8-ecdsa.pem",
      expect: ok("spiffe://example.org/workload-1", 2),
    },
    {
      name: "key and certificate in one file",
      certs: "good-key-and-cert.pem",
      key: "good-key-and-cert.pem",
      expect: ok("spiffe://example.org/workload-1", 1),
    },
    {
      name: "certificate and key in one file",
      certs: "good-cert-and-key.pem",
      key: "good-cert-and-key.pem",
      expect: ok("spiffe://example.org/workload-1", 1),
    },
    {
      name: "missing certificate",
      certs: "key-pkcs8-rsa.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_CERTIFICATES_MISSING,
    },
    { name: "missing key", certs: "good-leaf-only.pem", key: "good-leaf-only.pem", expect: ErrorCodes.KEY_MISSING },
    {
      name: "key bytes are not PEM",
      certs: "good-leaf-only.pem",
      key: "not-pem",
      expect: ErrorCodes.PEM_BLOCKS_MISSING,
    },
    {
      name: "certificate bytes are not PEM",
      certs: "not-pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.PEM_BLOCKS_MISSING,
    },
    {
      name: "corrupted private key",
      certs: "good-leaf-only.pem",
      key: "corrupt-key.pem",
      expect: ErrorCodes.KEY_MALFORMED,
    },
    {
      name: "corrupted certificate",
      certs: "corrupt-cert.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.CERT_MALFORMED,
    },
    {
      name: "key does not match the leaf",
      certs: "good-leaf-and-intermediate.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.KEY_MISMATCH,
    },
    {
      name: "leaf without a URI SAN",
      certs: "wrong-leaf-empty-id.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_URI_SAN_MISSING,
    },
    {
      name: "leaf with CA flag",
      certs: "wrong-leaf-ca-true.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_LEAF_CA_FLAG_SET,
    },
    // Also breaks the keyCertSign rule; digitalSignature is checked first, as in go.
    {
      name: "leaf without digitalSignature",
      certs: "wrong-leaf-no-digital-signature.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING,
    },
    {
      name: "leaf with keyCertSign",
      certs: "wrong-leaf-cert-sign.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_LEAF_KEY_CERT_SIGN_SET,
    },
    {
      name: "leaf with cRLSign",
      certs: "wrong-leaf-crl-sign.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_LEAF_CRL_SIGN_SET,
    },
    {
      name: "signing certificate not a CA",
      certs: "wrong-intermediate-no-ca.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
    },
    {
      name: "signing certificate without keyCertSign",
      certs: "wrong-intermediate-no-key-cert-sign.pem",
      key: "key-pkcs8-rsa.pem",
      expect: ErrorCodes.X509SVID_SIGNER_KEY_CERT_SIGN_MISSING,
    },
    // java-spiffe's spare keys match nothing.
    {
      name: "RSA key of another workload",
      certs: "good-leaf-only.pem",
      key: "java-spiffe/key-rsa-other.pem",
      expect: ErrorCodes.KEY_MISMATCH,
    },
    {
      name: "EC key of another workload",
      certs: "good-leaf-and-intermediate.pem",
      key: "java-spiffe/key-ecdsa-other.pem",
      expect: ErrorCodes.KEY_MISMATCH,
    },
    // Table B: rust-spiffe.
    {
      name: "rust 1-svid-chain",
      certs: "rust-spiffe/1-svid-chain.pem",
      key: "rust-spiffe/1-key.pem",
      expect: ok("spiffe://example.org/service", 2),
    },
    {
      name: "rust svid-with-dns (DNS SANs allowed)",
      certs: "rust-spiffe/svid-with-dns.pem",
      key: "rust-spiffe/svid-with-dns-key.pem",
      expect: ok("spiffe://example.org/service", 1),
    },
    {
      name: "rust expired-svid-chain parses (no dates in Parse)",
      certs: "rust-spiffe/expired-svid-chain.pem",
      key: "rust-spiffe/expired-key.pem",
      expect: ok("spiffe://example.org/service", 2),
    },
    // rust-spiffe accepts it; the X509-SVID standard does not, and we are strict.
    {
      name: "rust empty subject with non-critical URI SAN",
      certs: "rust-spiffe/empty-subject-name.pem",
      key: "rust-spiffe/empty-subject-name-key.pem",
      expect: ErrorCodes.X509SVID_SAN_NOT_CRITICAL,
    },
    // Table C: rust-spiffe-rustls.
    {
      name: "rustls spiffe_leaf",
      certs: "rust-spiffe-rustls/spiffe_leaf.pem",
      key: "rust-spiffe-rustls/leaf.key.pem",
      expect: ok("spiffe://example.org/service", 1),
    },
    {
      name: "rustls spiffe_leaf with mismatched key",
      certs: "rust-spiffe-rustls/spiffe_leaf.pem",
      key: "rust-spiffe-rustls/mismatched.key.pem",
      expect: ErrorCodes.KEY_MISMATCH,
    },
    {
      name: "rustls spiffe_leaf_uri_only",
      certs: "rust-spiffe-rustls/spiffe_leaf_uri_only.pem",
      expect: ok("spiffe://example.org/service", 1),
    },
    {
      name: "rustls no_spiffe_leaf",
      certs: "rust-spiffe-rustls/no_spiffe_leaf.pem",
      expect: ErrorCodes.X509SVID_URI_SAN_MISSING,
    },
    {
      name: "rustls ca_with_spiffe_signing as a leaf",
      certs: "rust-spiffe-rustls/ca_with_spiffe_signing.pem",
      expect: ErrorCodes.X509SVID_LEAF_CA_FLAG_SET,
    },
    {
      name: "rustls spiffe_leaf_no_key_usage",
      certs: "rust-spiffe-rustls/spiffe_leaf_no_key_usage.pem",
      expect: ErrorCodes.X509SVID_LEAF_KEY_USAGE_MISSING,
    },
    {
      name: "rustls spiffe_leaf_no_digital_signature",
      certs: "rust-spiffe-rustls/spiffe_leaf_no_digital_signature.pem",
      expect: ErrorCodes.X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING,
    },
    {
      name: "rustls ca.pem as a leaf",
      certs: "rust-spiffe-rustls/ca.pem",
      expect: ErrorCodes.X509SVID_URI_SAN_MISSING,
    },
    {
      name: "rustls ca_uri_only.pem as a leaf",
      certs: "rust-spiffe-rustls/ca_uri_only.pem",
      expect: ErrorCodes.X509SVID_URI_SAN_MISSING,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const certsPem = x509Fixture(c.certs);
      const keyPem = c.key === undefined ? undefined : x509Fixture(c.key);
      if (typeof c.expect === "string") {
        expectCode(() => parseX509Svid(certsPem, keyPem), c.expect);
        return;
      }
      const svid = parseX509Svid(certsPem, keyPem);
      assert.equal(svid.id.toString(), c.expect.id);
      assert.equal(svid.certificates.length, c.expect.count);
      if (keyPem === undefined) assert.equal(svid.privateKey, undefined);
      else assert.ok(svid.privateKey && samePublicKey(svid.privateKey, svid.certificates[0]!.publicKey));
    });
  }

  it("accepts Buffers as well as strings", () => {
    const svid = parseX509Svid(
      Buffer.from(x509Fixture("good-leaf-only.pem")),
      Buffer.from(x509Fixture("key-pkcs8-rsa.pem")),
    );
    assert.equal(svid.id.toString(), "spiffe://example.org/workload-1");
  });
});

describe("verifyX509Svid: fixtures through full path validation", () => {
  const bundleOf = (trustDomain: string, ...authorities: Certificate[]): BundleSet =>
    new BundleSet([new TrustBundle({ trustDomain, x509Authorities: authorities })]);

  it("rust-spiffe 1-svid-chain with its 2nd certificate as the bundle (valid to 2100)", () => {
    const chain = certs("rust-spiffe/1-svid-chain.pem");
    const source = bundleOf("example.org", chain[1]!);
    for (const presented of [chain, chain.slice(0, 1)]) {
      const result = verifyX509Svid(presented, source);
      assert.equal(result.id.toString(), "spiffe://example.org/service");
      assert.deepEqual(
        result.chain.map((c) => c.fingerprint),
        chain.map((c) => c.fingerprint),
      );
      assert.equal(result.notAfter.toISOString(), "2100-03-28T22:11:09.000Z");
      const key = parseX509Svid(
        x509Fixture("rust-spiffe/1-svid-chain.pem"),
        x509Fixture("rust-spiffe/1-key.pem"),
      ).privateKey!;
      assert.ok(samePublicKey(key, result.leafKey));
    }
  });

  const rustlsTime = new Date("2026-06-01T00:00:00Z"); // before spiffe_leaf's 2026-12-22 expiry
  it("rust-spiffe-rustls spiffe_leaf with ca.pem at a pinned time", () => {
    const [ca] = certs("rust-spiffe-rustls/ca.pem");
    const result = verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf.pem"), bundleOf("example.org", ca!), {
      time: rustlsTime,
    });
    assert.equal(result.id.toString(), "spiffe://example.org/service");
    assert.equal(result.chain.length, 2);
    expectCode(
      () =>
        verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf.pem"), bundleOf("example.org", ca!), {
          time: new Date("2026-12-23T00:00:00Z"),
        }),
      ErrorCodes.X509SVID_EXPIRED,
    );
  });

  it("rust-spiffe-rustls spiffe_leaf_uri_only with ca_uri_only.pem (a root without key usage is allowed)", () => {
    const [ca] = certs("rust-spiffe-rustls/ca_uri_only.pem");
    const result = verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf_uri_only.pem"), bundleOf("example.org", ca!), {
      time: rustlsTime,
    });
    assert.equal(result.id.toString(), "spiffe://example.org/service");
  });

  it("rust-spiffe-rustls rejections", () => {
    const [ca] = certs("rust-spiffe-rustls/ca.pem");
    const [caUriOnly] = certs("rust-spiffe-rustls/ca_uri_only.pem");
    const source = bundleOf("example.org", ca!);
    const at = { time: rustlsTime };
    expectCode(
      () => verifyX509Svid(certs("rust-spiffe-rustls/no_spiffe_leaf.pem"), source, at),
      ErrorCodes.X509SVID_URI_SAN_MISSING,
    );
    expectCode(
      () => verifyX509Svid(certs("rust-spiffe-rustls/ca_with_spiffe_signing.pem"), source, at),
      ErrorCodes.X509SVID_LEAF_CA_FLAG_SET,
    );
    expectCode(
      () => verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf_no_key_usage.pem"), source, at),
      ErrorCodes.X509SVID_LEAF_KEY_USAGE_MISSING,
    );
    expectCode(
      () => verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf_no_digital_signature.pem"), source, at),
      ErrorCodes.X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING,
    );
    // The other test CA did not issue spiffe_leaf.
    expectCode(
      () => verifyX509Svid(certs("rust-spiffe-rustls/spiffe_leaf.pem"), bundleOf("example.org", caUriOnly!), at),
      ErrorCodes.X509SVID_UNTRUSTED,
    );
  });

  it("rust-spiffe expired-svid-chain: expired now, valid at 2021-02-09T19:00Z", () => {
    const chain = certs("rust-spiffe/expired-svid-chain.pem");
    const source = bundleOf("example.org", chain[1]!);
    expectCode(() => verifyX509Svid(chain, source), ErrorCodes.X509SVID_EXPIRED);
    const result = verifyX509Svid(chain, source, { time: new Date("2021-02-09T19:00:00Z") });
    assert.equal(result.id.toString(), "spiffe://example.org/service");
    assert.equal(result.notAfter.toISOString(), "2021-02-09T19:20:22.000Z");
    expectCode(
      () => verifyX509Svid(chain, source, { time: new Date("2021-02-09T18:00:00Z") }),
      ErrorCodes.X509SVID_NOT_YET_VALID,
    );
  });

  it("go-spiffe good-leaf-and-intermediate with cert #2 as the anchor at 2020-03-24T14:30Z", () => {
    const chain = certs("good-leaf-and-intermediate.pem");
    const source = bundleOf("example.org", chain[1]!);
    const time = new Date("2020-03-24T14:30:00Z");
    for (const presented of [chain, chain.slice(0, 1)]) {
      const result = verifyX509Svid(presented, source, { time });
      assert.equal(result.id.toString(), "spiffe://example.org/workload-1");
      assert.equal(result.chain.length, 2);
    }
    expectCode(() => verifyX509Svid(chain, source), ErrorCodes.X509SVID_EXPIRED);
  });

  it("go-spiffe wrong-intermediate files: the signer rules apply to a bundle authority too", () => {
    // The 2nd certificate did not issue the self-signed leaf, but both carry the same RSA key,
    // so its key does verify the leaf's signature: what remains wrong is the signer itself.
    const time = { time: new Date("2021-01-01T00:00:00Z") };
    const [leaf1, noCa] = certs("wrong-intermediate-no-ca.pem");
    expectCode(
      () => verifyX509Svid([leaf1!], bundleOf("example.org", noCa!), time),
      ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
    );
    const [leaf2, noKeyCertSign] = certs("wrong-intermediate-no-key-cert-sign.pem");
    expectCode(
      () => verifyX509Svid([leaf2!], bundleOf("example.org", noKeyCertSign!), time),
      ErrorCodes.X509SVID_SIGNER_KEY_CERT_SIGN_MISSING,
    );
    // Presented as intermediates below good-leaf-only's own root they fail the same rules.
    const [selfSigned] = certs("good-leaf-only.pem");
    expectCode(
      () => verifyX509Svid([leaf1!, noCa!], bundleOf("example.org", selfSigned!), time),
      ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
    );
  });

  it("a bundle authority with the issuer's name but another key", () => {
    // Both SPIRE CAs are named C=US, O=SPIFFE (PrintableString); neither signed the other's leaf.
    const [leaf] = certs("good-leaf-and-intermediate.pem");
    const [, otherCa] = certs("rust-spiffe/expired-svid-chain.pem");
    expectCode(
      () => verifyX509Svid([leaf!], bundleOf("example.org", otherCa!), { time: new Date("2021-02-09T19:00:00Z") }),
      ErrorCodes.X509SVID_SIGNATURE_INVALID,
    );
  });

  it("issuer names are compared as DER bytes, as Go does", () => {
    // good-leaf-only's issuer spells O=SPIFFE as UTF8String, the P-384 CA as PrintableString.
    const [leaf] = certs("good-leaf-only.pem");
    const [, ca] = certs("good-leaf-and-intermediate.pem");
    expectCode(
      () => verifyX509Svid([leaf!], bundleOf("example.org", ca!), { time: new Date("2020-03-24T14:30:00Z") }),
      ErrorCodes.X509SVID_UNTRUSTED,
    );
  });

  it("rust-spiffe empty-subject-name is rejected by the leaf rules before any trust question", () => {
    const chain = certs("rust-spiffe/empty-subject-name.pem");
    expectCode(
      () => verifyX509Svid(chain, bundleOf("example.org", chain[0]!), { time: new Date("2026-01-19T20:00:00Z") }),
      ErrorCodes.X509SVID_SAN_NOT_CRITICAL,
    );
  });
});

describe("verifyX509Svid: go-spiffe Verify cases, generated at run time", () => {
  let root: TestCA;
  let intermediate: TestCA;
  let source: BundleSet;
  let good: TestSvid;
  before(async () => {
    root = await TestCA.create("example.org");
    intermediate = await root.createCA();
    source = new BundleSet([root.bundle()]);
    good = await intermediate.createX509Svid("spiffe://example.org/workload");
  });

  it("success", () => {
    const result = verifyX509Svid(good.certificates, source);
    assert.equal(result.id.toString(), "spiffe://example.org/workload");
    assert.deepEqual(
      result.chain.map((c) => c.fingerprint),
      [...good.certificates, root.cert].map((c) => c.fingerprint),
    );
    assert.ok(samePublicKey(good.privateKey, result.leafKey));
    assert.equal(result.notAfter.getTime(), Math.min(...result.chain.map((c) => c.notAfter.getTime())));
  });

  it("empty chain", () => {
    expectCode(() => verifyX509Svid([], source), ErrorCodes.X509SVID_CERTIFICATES_MISSING);
  });

  it("no bundle source", () => {
    expectCode(() => verifyX509Svid(good.certificates, null as unknown as BundleSource), ErrorCodes.ARGUMENT_INVALID);
  });

  it("no bundle for the trust domain", async () => {
    const other = new BundleSet([(await TestCA.create("other.org")).bundle()]);
    expectCode(() => verifyX509Svid(good.certificates, other), ErrorCodes.X509SVID_BUNDLE_MISSING);
  });

  it("bundle with no roots", () => {
    const empty = new BundleSet([new TrustBundle({ trustDomain: "example.org" })]);
    expectCode(() => verifyX509Svid(good.certificates, empty), ErrorCodes.X509SVID_UNTRUSTED);
  });

  it("wrong CA", async () => {
    const wrong = new BundleSet([(await TestCA.create("example.org")).bundle()]);
    expectCode(() => verifyX509Svid(good.certificates, wrong), ErrorCodes.X509SVID_UNTRUSTED);
  });

  const leafCases: Array<{
    name: string;
    id?: string;
    options: Parameters<TestCA["createX509Svid"]>[1];
    code: ErrorCode;
  }> = [
    {
      name: "non-spiffe URI",
      options: { uris: ["https://example.org/workload"] },
      code: ErrorCodes.X509SVID_SPIFFEID_INVALID,
    },
    {
      name: "aztp:// URI (an API alias, never in a certificate)",
      options: { uris: ["aztp://example.org/workload"] },
      code: ErrorCodes.X509SVID_SPIFFEID_INVALID,
    },
    {
      name: "invalid SPIFFE ID",
      options: { uris: ["spiffe://example.org/a//b"] },
      code: ErrorCodes.X509SVID_SPIFFEID_INVALID,
    },
    { name: "no URI SAN", options: { uris: [], dnsNames: ["example.org"] }, code: ErrorCodes.X509SVID_URI_SAN_MISSING },
    {
      name: "two URI SANs",
      options: { uris: ["spiffe://example.org/a", "spiffe://example.org/b"] },
      code: ErrorCodes.X509SVID_URI_SANS_TOO_MANY,
    },
    {
      name: "trust domain ID as leaf ID",
      options: { uris: ["spiffe://example.org"] },
      code: ErrorCodes.X509SVID_ROOT_PATH_NOT_ALLOWED,
    },
    { name: "CA:TRUE leaf", options: { isCA: true }, code: ErrorCodes.X509SVID_LEAF_CA_FLAG_SET },
    {
      name: "leaf with keyCertSign",
      options: { keyUsage: KU.digitalSignature | KU.keyCertSign },
      code: ErrorCodes.X509SVID_LEAF_KEY_CERT_SIGN_SET,
    },
    {
      name: "leaf with cRLSign",
      options: { keyUsage: KU.digitalSignature | KU.cRLSign },
      code: ErrorCodes.X509SVID_LEAF_CRL_SIGN_SET,
    },
    {
      name: "leaf without digitalSignature",
      options: { keyUsage: KU.keyEncipherment },
      code: ErrorCodes.X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING,
    },
    { name: "leaf without key usage", options: { keyUsage: null }, code: ErrorCodes.X509SVID_LEAF_KEY_USAGE_MISSING },
    {
      name: "leaf key usage not critical",
      options: { keyUsageCritical: false },
      code: ErrorCodes.X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL,
    },
    {
      name: "empty subject, URI SAN not critical",
      options: { subject: "" },
      code: ErrorCodes.X509SVID_SAN_NOT_CRITICAL,
    },
    {
      name: "unknown critical extension on the leaf",
      options: { extraExtensions: [new x509.Extension("1.2.3.4.5", true, new Uint8Array([5, 0]))] },
      code: ErrorCodes.X509SVID_CRITICAL_EXTENSION_UNKNOWN,
    },
    {
      name: "critical name constraints (not evaluated, so refused)",
      options: { extraExtensions: [new x509.Extension("2.5.29.30", true, new Uint8Array([0x30, 0]))] },
      code: ErrorCodes.X509SVID_CRITICAL_EXTENSION_UNKNOWN,
    },
  ];
  for (const c of leafCases) {
    it(c.name, async () => {
      const svid = await intermediate.createX509Svid(c.id ?? "spiffe://example.org/workload", c.options);
      expectCode(() => verifyX509Svid(svid.certificates, source), c.code);
    });
  }

  it("empty subject with a critical URI SAN is fine", async () => {
    const svid = await intermediate.createX509Svid("spiffe://example.org/w", { subject: "", sanCritical: true });
    assert.equal(verifyX509Svid(svid.certificates, source).id.toString(), "spiffe://example.org/w");
  });

  it("a non-critical unknown extension is fine", async () => {
    const svid = await intermediate.createX509Svid("spiffe://example.org/w", {
      extraExtensions: [new x509.Extension("1.2.3.4.5", false, new Uint8Array([5, 0]))],
    });
    assert.equal(verifyX509Svid(svid.certificates, source).id.toString(), "spiffe://example.org/w");
  });

  it("upper-case scheme and trust domain in the URI SAN normalise", async () => {
    const svid = await intermediate.createX509Svid("SPIFFE://Example.ORG/Work");
    assert.equal(verifyX509Svid(svid.certificates, source).id.toString(), "spiffe://example.org/Work");
  });

  it("expired: NotAfter + 1 s fails, NotAfter itself still passes", () => {
    // The chain's NotAfter is its earliest, root included: the CAs were issued first, and when
    // the clock ticked into the next second before the leaf was, the leaf outlived them by one.
    const notAfter = new Date(Math.min(...[...good.certificates, root.cert].map((c) => c.notAfter.getTime())));
    expectCode(
      () => verifyX509Svid(good.certificates, source, { time: new Date(notAfter.getTime() + 1000) }),
      ErrorCodes.X509SVID_EXPIRED,
    );
    assert.ok(verifyX509Svid(good.certificates, source, { time: notAfter }));
  });

  it("not yet valid", () => {
    const notBefore = new Date(Math.max(...[...good.certificates, root.cert].map((c) => c.notBefore.getTime())));
    expectCode(
      () => verifyX509Svid(good.certificates, source, { time: new Date(notBefore.getTime() - 1000) }),
      ErrorCodes.X509SVID_NOT_YET_VALID,
    );
  });

  it("the root may be included in the chain", () => {
    const result = verifyX509Svid([...good.certificates, root.cert], source);
    assert.equal(result.chain.length, 3);
  });

  it("a chain out of order is not trusted", async () => {
    const second = await intermediate.createCA();
    const svid = await second.createX509Svid("spiffe://example.org/w");
    const [leaf, lower, upper] = svid.certificates;
    expectCode(() => verifyX509Svid([leaf!, upper!, lower!], source), ErrorCodes.X509SVID_UNTRUSTED);
    assert.equal(verifyX509Svid([leaf!, lower!, upper!], source).chain.length, 4);
  });

  it("a missing intermediate is not trusted", () => {
    expectCode(() => verifyX509Svid(good.certificates.slice(0, 1), source), ErrorCodes.X509SVID_UNTRUSTED);
  });

  it("a bundle source that answers with another trust domain's bundle is refused", async () => {
    const other = (await TestCA.create("other.org")).bundle();
    const confused: BundleSource = { getBundleForTrustDomain: () => other };
    expectCode(() => verifyX509Svid(good.certificates, confused), ErrorCodes.BUNDLE_TRUST_DOMAIN_MISMATCH);
  });
});

describe("verifyX509Svid: forged and malformed paths", () => {
  let root: TestCA;
  let source: BundleSet;
  before(async () => {
    root = await TestCA.create("example.org");
    source = new BundleSet([root.bundle()]);
  });

  it("intermediate not signed by the root (rogue key, root's name)", async () => {
    const rogue = await generateKeys();
    const fake = await root.createCA({ signWith: rogue.privateKey });
    const svid = await fake.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_SIGNATURE_INVALID);
  });

  it("an attacker's root with the bundle root's name, appended to the chain", async () => {
    const impostor = await TestCA.create("example.org", { subject: root.name });
    const inter = await impostor.createCA();
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(
      () => verifyX509Svid([...svid.certificates, impostor.cert], source),
      ErrorCodes.X509SVID_SIGNATURE_INVALID,
    );
  });

  it("leaf signed by a key that is not its issuer's", async () => {
    const inter = await root.createCA();
    const rogue = await generateKeys();
    const svid = await inter.createX509Svid("spiffe://example.org/w", { signWith: rogue.privateKey });
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_SIGNATURE_INVALID);
  });

  it("leaf naming an issuer that is not the next certificate", async () => {
    const inter = await root.createCA();
    const svid = await inter.createX509Svid("spiffe://example.org/w", { issuerName: "CN=someone else" });
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_UNTRUSTED);
  });

  it("intermediate without the CA flag", async () => {
    const inter = await root.createCA({ isCA: false });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING);
  });

  it("intermediate without basic constraints", async () => {
    const inter = await root.createCA({ omitBasicConstraints: true });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING);
  });

  it("intermediate whose key usage lacks keyCertSign", async () => {
    const inter = await root.createCA({ keyUsage: KU.cRLSign });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_SIGNER_KEY_CERT_SIGN_MISSING);
  });

  it("intermediate without a key usage extension is allowed (RFC 5280)", async () => {
    const inter = await root.createCA({ keyUsage: null });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    assert.equal(verifyX509Svid(svid.certificates, source).chain.length, 3);
  });

  it("intermediate with an unknown critical extension", async () => {
    const inter = await root.createCA({
      extraExtensions: [new x509.Extension("1.2.3.4.6", true, new Uint8Array([5, 0]))],
    });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_CRITICAL_EXTENSION_UNKNOWN);
  });

  it("expired intermediate", async () => {
    const inter = await root.createCA({
      notBefore: new Date(Date.now() - 7200_000),
      notAfter: new Date(Date.now() - 3600_000),
    });
    const svid = await inter.createX509Svid("spiffe://example.org/w");
    expectCode(() => verifyX509Svid(svid.certificates, source), ErrorCodes.X509SVID_EXPIRED);
  });

  it("root not valid yet (dates are checked on the anchor too)", async () => {
    const future = await TestCA.create("example.org", {
      notBefore: new Date(Date.now() + 3600_000),
      notAfter: new Date(Date.now() + 7200_000),
    });
    const svid = await future.createX509Svid("spiffe://example.org/w");
    expectCode(
      () => verifyX509Svid(svid.certificates, new BundleSet([future.bundle()])),
      ErrorCodes.X509SVID_NOT_YET_VALID,
    );
  });

  it("a bundle root that is not a CA", async () => {
    const notCa = await TestCA.create("example.org", { isCA: false });
    const svid = await notCa.createX509Svid("spiffe://example.org/w");
    expectCode(
      () => verifyX509Svid(svid.certificates, new BundleSet([notCa.bundle()])),
      ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
    );
  });

  const pathLenCases: Array<{
    name: string;
    rootPathLen?: number;
    interPathLens: Array<number | undefined>;
    code?: ErrorCode;
  }> = [
    {
      name: "root pathLen 0, one intermediate",
      rootPathLen: 0,
      interPathLens: [undefined],
      code: ErrorCodes.X509SVID_PATH_LENGTH_EXCEEDED,
    },
    {
      name: "root pathLen 1, two intermediates",
      rootPathLen: 1,
      interPathLens: [undefined, undefined],
      code: ErrorCodes.X509SVID_PATH_LENGTH_EXCEEDED,
    },
    {
      name: "intermediate pathLen 0 with one below it",
      interPathLens: [0, undefined],
      code: ErrorCodes.X509SVID_PATH_LENGTH_EXCEEDED,
    },
    { name: "root pathLen 0, leaf directly below", rootPathLen: 0, interPathLens: [] },
    { name: "root pathLen 1, one intermediate", rootPathLen: 1, interPathLens: [undefined] },
    { name: "intermediate pathLen 0 signing the leaf", interPathLens: [0] },
  ];
  for (const c of pathLenCases) {
    it(`path length: ${c.name}`, async () => {
      let ca = await TestCA.create("example.org", c.rootPathLen === undefined ? {} : { pathLen: c.rootPathLen });
      const bundle = new BundleSet([ca.bundle()]);
      for (const pathLen of c.interPathLens) ca = await ca.createCA(pathLen === undefined ? {} : { pathLen });
      const svid = await ca.createX509Svid("spiffe://example.org/w");
      if (c.code !== undefined) expectCode(() => verifyX509Svid(svid.certificates, bundle), c.code);
      else assert.equal(verifyX509Svid(svid.certificates, bundle).chain.length, c.interPathLens.length + 2);
    });
  }

  it("a root from another trust domain does not vouch for this one", async () => {
    const other = await TestCA.create("other.org");
    const svid = await other.createX509Svid("spiffe://example.org/w");
    const both = new BundleSet([root.bundle(), other.bundle()]);
    expectCode(() => verifyX509Svid(svid.certificates, both), ErrorCodes.X509SVID_UNTRUSTED);
    // And only the leaf's own trust domain's bundle is consulted, even when it alone would accept.
    const onlyOther = new BundleSet([other.bundle()]);
    expectCode(() => verifyX509Svid(svid.certificates, onlyOther), ErrorCodes.X509SVID_BUNDLE_MISSING);
  });

  it("a bundle with several roots finds the right one", async () => {
    const second = await TestCA.create("example.org");
    const bundle = new BundleSet([
      new TrustBundle({ trustDomain: "example.org", x509Authorities: [root.cert, second.cert] }),
    ]);
    const svid = await second.createX509Svid("spiffe://example.org/w");
    assert.equal(verifyX509Svid(svid.certificates, bundle).chain[1]?.fingerprint, second.cert.fingerprint);
  });
});

describe("X509SvidVerifier (cached)", () => {
  let root: TestCA;
  let svid: TestSvid;
  before(async () => {
    root = await TestCA.create("example.org");
    svid = await (await root.createCA()).createX509Svid("spiffe://example.org/cached");
  });

  it("verifies x5c strings and DER buffers, and caches the path", () => {
    const verifier = new X509SvidVerifier(new BundleSet([root.bundle()]));
    const first = verifier.verify(svid.x5c);
    assert.equal(first.id.toString(), "spiffe://example.org/cached");
    assert.equal(verifier.cacheSize, 1);
    assert.equal(verifier.verify(svid.x5c), first, "a hit returns the cached result");
    assert.equal(
      verifier.verify(svid.certificates.map((c) => c.der)),
      first,
      "DER and base64 of one chain are one key",
    );
    assert.equal(verifier.cacheSize, 1);
  });

  it("a hit still checks the time window", () => {
    const verifier = new X509SvidVerifier(new BundleSet([root.bundle()]));
    const result = verifier.verify(svid.x5c);
    expectCode(
      () => verifier.verify(svid.x5c, { time: new Date(result.notAfter.getTime() + 1000) }),
      ErrorCodes.X509SVID_EXPIRED,
    );
    expectCode(
      () => verifier.verify(svid.x5c, { time: new Date(result.notBefore.getTime() - 1000) }),
      ErrorCodes.X509SVID_NOT_YET_VALID,
    );
    assert.equal(verifier.verify(svid.x5c, { time: result.notAfter }), result);
  });

  it("a first verification outside the window fails, and a later one inside it succeeds", () => {
    const verifier = new X509SvidVerifier(new BundleSet([root.bundle()]));
    expectCode(
      () => verifier.verify(svid.x5c, { time: new Date(Date.now() + 86400_000) }),
      ErrorCodes.X509SVID_EXPIRED,
    );
    assert.equal(verifier.verify(svid.x5c).id.toString(), "spiffe://example.org/cached");
  });

  it("changing the bundle set invalidates cached paths", async () => {
    const set = new BundleSet([root.bundle()]);
    const verifier = new X509SvidVerifier(set);
    verifier.verify(svid.x5c);
    set.add((await TestCA.create("example.org")).bundle()); // trust moves to another root
    expectCode(() => verifier.verify(svid.x5c), ErrorCodes.X509SVID_UNTRUSTED);
    set.add(root.bundle());
    assert.ok(verifier.verify(svid.x5c));
    set.remove("example.org");
    expectCode(() => verifier.verify(svid.x5c), ErrorCodes.X509SVID_BUNDLE_MISSING);
  });

  it("a source without a version is still safe: a replaced bundle object forces re-validation", async () => {
    let current = root.bundle();
    const source: BundleSource = {
      getBundleForTrustDomain: (td) => (td === current.trustDomain ? current : undefined),
    };
    const verifier = new X509SvidVerifier(source);
    verifier.verify(svid.x5c);
    current = (await TestCA.create("example.org")).bundle();
    expectCode(() => verifier.verify(svid.x5c), ErrorCodes.X509SVID_UNTRUSTED);
  });

  it("failures are not cached", () => {
    const verifier = new X509SvidVerifier(new BundleSet());
    expectCode(() => verifier.verify(svid.x5c), ErrorCodes.X509SVID_BUNDLE_MISSING);
    assert.equal(verifier.cacheSize, 0);
  });

  it("input errors", () => {
    const verifier = new X509SvidVerifier(new BundleSet([root.bundle()]));
    expectCode(() => verifier.verify([]), ErrorCodes.X509SVID_CERTIFICATES_MISSING);
    expectCode(() => verifier.verify(["not base64!"]), ErrorCodes.CERT_MALFORMED);
    expectCode(() => verifier.verify([svid.x5c[0]!.slice(0, -8)]), ErrorCodes.CERT_MALFORMED);
    expectCode(() => verifier.verify([Buffer.from("garbage")]), ErrorCodes.CERT_MALFORMED);
  });

  it("the cache is bounded", async () => {
    const verifier = new X509SvidVerifier(new BundleSet([root.bundle()]), { cacheSize: 1 });
    const other = await root.createX509Svid("spiffe://example.org/other");
    verifier.verify(svid.x5c);
    verifier.verify(other.x5c);
    assert.equal(verifier.cacheSize, 1);
  });
});
