import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { ErrorCodes, type ErrorCode } from "../src/errors.js";
import { BundleSet, loadBundleFile, TrustBundle, type BundleSource } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { conformance, expectCode, TestCA } from "./helpers/testca.js";

interface BundleCase {
  file: string;
  /** Expected counts, or the error code. */
  expect: { x509: number; jwt: number; sequence?: number; refreshHint?: number } | ErrorCode;
}

/** One test per fixture of `dir`: `parse` must give the expected counts or fail with the code. */
function fixtureCases(dir: string, parse: (text: string) => TrustBundle, cases: BundleCase[]): void {
  for (const c of cases) {
    it(c.file, () => {
      const text = conformance(`bundle/${dir}/${c.file}`);
      if (typeof c.expect === "string") {
        expectCode(() => parse(text), c.expect);
        return;
      }
      const bundle = parse(text);
      assert.equal(bundle.trustDomain, "example.org");
      assert.equal(bundle.x509Authorities.length, c.expect.x509);
      assert.equal(bundle.jwtAuthorities.size, c.expect.jwt);
      assert.equal(bundle.sequence, c.expect.sequence);
      assert.equal(bundle.refreshHint, c.expect.refreshHint);
    });
  }
}

describe("TrustBundle.parseSpiffe: go-spiffe spiffebundle fixtures", () => {
  const cases: BundleCase[] = [
    { file: "spiffebundle_valid_1.json", expect: { x509: 1, jwt: 1 } },
    { file: "spiffebundle_valid_2.json", expect: { x509: 1, jwt: 6, sequence: 1, refreshHint: 60 } },
    // Its two "wit-svid" entries have a use we do not know: ignored, not an error.
    { file: "spiffebundle_valid_with_wit.json", expect: { x509: 1, jwt: 2, sequence: 1, refreshHint: 60 } },
    { file: "spiffebundle_missing_kid.json", expect: ErrorCodes.BUNDLE_KID_MISSING },
    { file: "spiffebundle_no_keys.json", expect: ErrorCodes.BUNDLE_KEYS_MISSING },
    { file: "spiffebundle_multiple_x509.json", expect: ErrorCodes.BUNDLE_X509_ENTRY_INVALID },
  ];
  fixtureCases("spiffebundle", (text) => TrustBundle.parseSpiffe(text, "example.org"), cases);
  // The already-parsed object form must behave the same.
  fixtureCases("spiffebundle", (text) => TrustBundle.parseSpiffe(JSON.parse(text) as object, "example.org"), cases);

  it("valid_2 round-trips through toSpiffe (object and JSON text)", () => {
    const bundle = TrustBundle.parseSpiffe(conformance("bundle/spiffebundle/spiffebundle_valid_2.json"), "example.org");
    for (const doc of [bundle.toSpiffe(), JSON.stringify(bundle.toSpiffe())]) {
      const again = TrustBundle.parseSpiffe(doc, "example.org");
      assert.deepEqual([...again.jwtAuthorities.keys()], [...bundle.jwtAuthorities.keys()]);
      for (const [kid, key] of bundle.jwtAuthorities) {
        assert.ok(again.jwtAuthorities.get(kid)?.equals(key), `key ${kid} survives the round trip`);
      }
      assert.deepEqual(
        again.x509Authorities.map((c) => c.fingerprint),
        bundle.x509Authorities.map((c) => c.fingerprint),
      );
      assert.equal(again.sequence, 1);
      assert.equal(again.refreshHint, 60);
    }
    const doc = bundle.toSpiffe();
    assert.equal(doc.keys.filter((k) => k.use === "x509-svid").length, 1);
    assert.ok(doc.keys.filter((k) => k.use === "jwt-svid").every((k) => typeof k.kid === "string"));
  });

  const jwk = (): Record<string, unknown> =>
    generateKeyPairSync("ec", { namedCurve: "prime256v1" }).publicKey.export({ format: "jwk" }) as Record<
      string,
      unknown
    >;
  const invalid: Array<{ name: string; doc: unknown; code: ErrorCode }> = [
    { name: "not JSON", doc: "{keys:", code: ErrorCodes.BUNDLE_MALFORMED },
    { name: "a JSON array", doc: "[]", code: ErrorCodes.BUNDLE_MALFORMED },
    { name: "keys is not an array", doc: { keys: {} }, code: ErrorCodes.BUNDLE_MALFORMED },
    { name: "a key is not an object", doc: { keys: ["x"] }, code: ErrorCodes.BUNDLE_MALFORMED },
    { name: "negative spiffe_sequence", doc: { keys: [], spiffe_sequence: -1 }, code: ErrorCodes.BUNDLE_MALFORMED },
    { name: "string refresh hint", doc: { keys: [], spiffe_refresh_hint: "60" }, code: ErrorCodes.BUNDLE_MALFORMED },
    {
      name: "jwt-svid with empty kid",
      doc: { keys: [{ use: "jwt-svid", kid: "", ...jwk() }] },
      code: ErrorCodes.BUNDLE_KID_MISSING,
    },
    {
      name: "two jwt-svid keys with one kid",
      doc: {
        keys: [
          { use: "jwt-svid", kid: "a", ...jwk() },
          { use: "jwt-svid", kid: "a", ...jwk() },
        ],
      },
      code: ErrorCodes.BUNDLE_MALFORMED,
    },
    {
      name: "private key material in a jwt-svid entry",
      doc: {
        keys: [
          {
            use: "jwt-svid",
            kid: "a",
            ...(generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey.export({ format: "jwk" }) as object),
          },
        ],
      },
      code: ErrorCodes.BUNDLE_MALFORMED,
    },
    {
      name: "jwt-svid with broken key",
      doc: { keys: [{ use: "jwt-svid", kid: "a", kty: "EC", crv: "P-256", x: "AA", y: "AA" }] },
      code: ErrorCodes.BUNDLE_MALFORMED,
    },
    {
      name: "x509-svid without x5c",
      doc: { keys: [{ use: "x509-svid", ...jwk() }] },
      code: ErrorCodes.BUNDLE_X509_ENTRY_INVALID,
    },
  ];
  for (const c of invalid) {
    it(`rejects ${c.name}`, () => {
      expectCode(() => TrustBundle.parseSpiffe(c.doc as object, "example.org"), c.code);
    });
  }

  it("rejects an x509-svid entry whose JWK is not its certificate's key", async () => {
    const ca = await TestCA.create("example.org");
    const doc = { keys: [{ use: "x509-svid", ...jwk(), x5c: [ca.cert.der.toString("base64")] }] };
    expectCode(() => TrustBundle.parseSpiffe(doc, "example.org"), ErrorCodes.BUNDLE_X509_ENTRY_INVALID);
  });

  it("ignores entries with an unknown kty or use, keeps the rest", () => {
    const doc = {
      keys: [
        { use: "jwt-svid", kid: "future", kty: "PQC", pub: "AAAA" },
        { use: "wit-svid", kid: "w", ...jwk() },
        { kid: "no-use", ...jwk() },
        { use: "jwt-svid", kid: "k1", ...jwk() },
      ],
    };
    const bundle = TrustBundle.parseSpiffe(doc, "Example.ORG");
    assert.equal(bundle.trustDomain, "example.org", "trust domain normalised");
    assert.deepEqual([...bundle.jwtAuthorities.keys()], ["k1"]);
  });

  it("an invalid trust domain is a SPIFFE ID error", () => {
    expectCode(
      () => TrustBundle.parseSpiffe({ keys: [] }, "exa mple.org"),
      ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID,
    );
  });
});

describe("TrustBundle.parseJwks: go-spiffe jwtbundle fixtures", () => {
  const cases: BundleCase[] = [
    { file: "jwks_valid_1.json", expect: { x509: 0, jwt: 1 } },
    { file: "jwks_valid_2.json", expect: { x509: 0, jwt: 2 } },
    { file: "jwks_missing_kid.json", expect: ErrorCodes.BUNDLE_KID_MISSING },
  ];
  fixtureCases("jwtbundle", (text) => TrustBundle.parseJwks(text, "example.org"), cases);

  it("jwks_valid_2 keeps both kids with their keys", () => {
    const bundle = TrustBundle.parseJwks(conformance("bundle/jwtbundle/jwks_valid_2.json"), "example.org");
    assert.deepEqual([...bundle.jwtAuthorities.keys()].sort(), [
      "C6vs25welZOx6WksNYfbMfiw9l96pMnD",
      "gHTCunJbefYtnZnTctd84xeRWyMrEsWD",
    ]);
    assert.equal(
      bundle.jwtAuthorities.get("C6vs25welZOx6WksNYfbMfiw9l96pMnD")?.asymmetricKeyDetails?.namedCurve,
      "prime256v1",
    );
  });

  it("a JWKS without keys is ERR_BUNDLE_KEYS_MISSING", () => {
    expectCode(() => TrustBundle.parseJwks("{}", "example.org"), ErrorCodes.BUNDLE_KEYS_MISSING);
  });
});

describe("TrustBundle.fromPem: go-spiffe x509bundle fixtures", () => {
  const cases: BundleCase[] = [
    { file: "certs.pem", expect: { x509: 2, jwt: 0 } },
    { file: "cert.pem", expect: { x509: 1, jwt: 0 } },
    { file: "empty.pem", expect: { x509: 0, jwt: 0 } },
    { file: "not-pem.pem", expect: ErrorCodes.PEM_BLOCKS_MISSING },
    { file: "corrupted.pem", expect: ErrorCodes.CERT_MALFORMED },
    // A key file given as a bundle: PEM, but not one certificate in it.
    { file: "key.pem", expect: ErrorCodes.PEM_BLOCKS_MISSING },
  ];
  fixtureCases("x509bundle", (text) => TrustBundle.fromPem("example.org", text), cases);

  it("toPem -> fromPem is the identity on the authorities", () => {
    for (const file of ["certs.pem", "cert.pem", "empty.pem"]) {
      const bundle = TrustBundle.fromPem("example.org", conformance(`bundle/x509bundle/${file}`));
      const again = TrustBundle.fromPem("example.org", bundle.toPem());
      assert.deepEqual(
        again.x509Authorities.map((a) => a.fingerprint),
        bundle.x509Authorities.map((a) => a.fingerprint),
      );
    }
  });

  it("certs.pem holds two distinct authorities, each findable", () => {
    const bundle = TrustBundle.fromPem("example.org", conformance("bundle/x509bundle/certs.pem"));
    const [a, b] = bundle.x509Authorities;
    assert.ok(a && b && a.fingerprint !== b.fingerprint);
    assert.ok(bundle.hasX509Authority(a) && bundle.hasX509Authority(b));
    assert.deepEqual(
      bundle
        .x509AuthoritiesNamed(a.rawSubject)
        .map((c) => c.fingerprint)
        .includes(a.fingerprint),
      true,
    );
  });

  it("the same root listed twice is one authority", () => {
    const one = conformance("bundle/x509bundle/cert.pem");
    assert.equal(TrustBundle.fromPem("example.org", one + one).x509Authorities.length, 1);
  });
});

describe("loadBundleFile", () => {
  it("reads SPIFFE JSON and PEM with an explicit trust domain", () => {
    const json = loadBundleFile(conformance("bundle/spiffebundle/spiffebundle_valid_2.json"), "example.org");
    assert.equal(json.jwtAuthorities.size, 6);
    const pem = loadBundleFile(Buffer.from(conformance("bundle/x509bundle/certs.pem")), "example.org");
    assert.equal(pem.x509Authorities.length, 2);
    assert.equal(pem.trustDomain, "example.org");
  });

  it("infers the trust domain from the root's spiffe:// URI SAN", async () => {
    const ca = await TestCA.create("infer.example");
    const bundle = loadBundleFile(ca.cert.toPem());
    assert.equal(bundle.trustDomain, "infer.example");
    // go-spiffe's SPIFFE bundle fixtures carry a CA with URI SAN spiffe://local.
    const json = loadBundleFile(conformance("bundle/spiffebundle/spiffebundle_valid_1.json"));
    assert.equal(json.trustDomain, "local");
    assert.equal(json.jwtAuthorities.size, 1);
    // good-leaf-and-intermediate.pem's CA certificate carries URI SAN spiffe://example.org.
    const second = Certificate.parsePem(conformance("x509/good-leaf-and-intermediate.pem"))[1]!;
    assert.equal(loadBundleFile(second.toPem()).trustDomain, "example.org");
  });

  it("requires a trust domain when no authority names one", () => {
    expectCode(() => loadBundleFile(conformance("x509/rust-spiffe-rustls/ca.pem")), ErrorCodes.ARGUMENT_INVALID);
    expectCode(
      () =>
        loadBundleFile(conformance("bundle/jwtbundle/jwks_valid_1.json").replace('"kty"', '"use":"jwt-svid","kty"')),
      ErrorCodes.ARGUMENT_INVALID,
    );
  });

  it("refuses authorities naming different trust domains", async () => {
    const a = await TestCA.create("a.example");
    const b = await TestCA.create("b.example");
    expectCode(() => loadBundleFile(a.cert.toPem() + b.cert.toPem()), ErrorCodes.BUNDLE_TRUST_DOMAIN_MISMATCH);
  });

  it("passes format errors through with their own codes", () => {
    expectCode(
      () => loadBundleFile(conformance("bundle/x509bundle/not-pem.pem"), "example.org"),
      ErrorCodes.PEM_BLOCKS_MISSING,
    );
    expectCode(
      () => loadBundleFile(conformance("bundle/spiffebundle/spiffebundle_no_keys.json"), "example.org"),
      ErrorCodes.BUNDLE_KEYS_MISSING,
    );
  });
});

describe("BundleSet", () => {
  it("adds, replaces and removes per trust domain, bumping version on every change", async () => {
    const a = await TestCA.create("example.org");
    const b = await TestCA.create("example.org");
    const set = new BundleSet();
    const source: BundleSource = set;
    assert.equal(set.version, 0);
    assert.equal(source.getBundleForTrustDomain("example.org"), undefined);

    set.add(a.bundle());
    assert.equal(set.version, 1);
    assert.equal(set.getBundleForTrustDomain("example.org")?.x509Authorities[0]?.fingerprint, a.cert.fingerprint);

    set.add(b.bundle()); // replaces
    assert.equal(set.version, 2);
    assert.equal(set.size, 1);
    assert.equal(set.getBundleForTrustDomain("example.org")?.x509Authorities[0]?.fingerprint, b.cert.fingerprint);
    assert.ok(set.has("EXAMPLE.org"), "lookup normalises case");

    assert.equal(set.remove("other.org"), false);
    assert.equal(set.version, 2, "removing nothing is no change");
    assert.equal(set.remove("example.org"), true);
    assert.equal(set.version, 3);
    assert.equal(set.getBundleForTrustDomain("example.org"), undefined);
  });

  it("holds one bundle per trust domain and iterates them", async () => {
    const set = new BundleSet([(await TestCA.create("a.org")).bundle(), (await TestCA.create("b.org")).bundle()]);
    assert.deepEqual([...set].map((bundle) => bundle.trustDomain).sort(), ["a.org", "b.org"]);
    assert.equal(set.version, 0, "construction is not a change");
  });
});
