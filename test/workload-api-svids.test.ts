/**
 * SVIDs and bundles in the Workload API's wire forms (src/workload-api/svids.ts), read back by
 * tools we did not write: the message through go-spiffe's workload.proto (@grpc/proto-loader),
 * the chain and bundle by `openssl verify`, the PKCS#8 key by `openssl pkey`, and a JWT-SVID
 * checked by `jose` against the JWT bundle sent.
 */
import { describe, it, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as protoLoader from "@grpc/proto-loader";
import { createLocalJWKSet, jwtVerify } from "jose";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { X509SvidResponseCodec, JwtBundlesResponseCodec } from "../src/workload-api/messages.js";
import { bundleMap, x509SvidMessage } from "../src/workload-api/svids.js";
import { isAztpError } from "../src/errors.js";
import { openssl, ROOT, tempDir } from "./helpers/authority-util.js";

const REFERENCE = join(ROOT, "..", "shared", "conformance", "spiffe-workload-api", "workload.proto");
const reference = protoLoader.loadSync(REFERENCE, { keepCase: true, defaults: true })[
  "SpiffeWorkloadAPI"
] as protoLoader.ServiceDefinition;

/** Splits concatenated DER certificates (SEQUENCE, definite length) into PEM blocks. */
function pemsOf(der: Buffer): string[] {
  const out: string[] = [];
  for (let off = 0; off < der.length;) {
    assert.equal(der[off], 0x30, "each certificate is a DER SEQUENCE");
    let len = der[off + 1] as number;
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + (der[off + 2 + i] as number);
      head += n;
    }
    const cert = der.subarray(off, off + head + len);
    out.push(
      `-----BEGIN CERTIFICATE-----\n${cert.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----\n`,
    );
    off += head + len;
  }
  return out;
}

async function workload(t: TestContext) {
  const authority = await EmbeddedAuthority.init(tempDir(t), "example.org");
  const key = await generateWorkloadKey();
  const issued = await authority.issueIdentity({ name: "api" }, key.csr);
  return { authority, key, issued, chain: Certificate.parsePem(issued.svid.chainPem) };
}

describe("the Workload API's SVIDs and bundles, read by other tools", () => {
  it("an X509SVID decodes through workload.proto; openssl verifies its chain against its bundle and reads its PKCS#8 key", async (t) => {
    const { authority, key, chain } = await workload(t);
    const message = x509SvidMessage(chain, key.privateKey, authority.bundle(), "internal");
    const wire = X509SvidResponseCodec.encode({ svids: [message], crl: [], federatedBundles: {} });
    const decoded = (reference["FetchX509SVID"] as protoLoader.MethodDefinition<object, object>).responseDeserialize(
      wire,
    ) as {
      svids: Array<{ spiffe_id: string; x509_svid: Buffer; x509_svid_key: Buffer; bundle: Buffer; hint: string }>;
    };
    const svid = decoded.svids[0]!;
    assert.equal(svid.spiffe_id, "spiffe://example.org/workload/production/node/api");
    assert.equal(svid.hint, "internal");

    const dir = tempDir(t, "wl");
    const certs = pemsOf(Buffer.from(svid.x509_svid));
    assert.equal(certs.length, chain.length, "the whole chain, leaf first");
    writeFileSync(join(dir, "leaf.pem"), certs[0]!);
    writeFileSync(join(dir, "intermediates.pem"), certs.slice(1).join(""));
    writeFileSync(join(dir, "bundle.pem"), pemsOf(Buffer.from(svid.bundle)).join(""));
    const verified = await openssl(
      ["verify", "-CAfile", "bundle.pem", "-untrusted", "intermediates.pem", "leaf.pem"],
      dir,
    );
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);

    writeFileSync(join(dir, "key.der"), svid.x509_svid_key);
    // `pkcs8` reads an unencrypted PKCS#8 key and nothing else (a SEC1 key is refused).
    const pkcs8 = await openssl(["pkcs8", "-inform", "DER", "-nocrypt", "-in", "key.der", "-out", "key.pem"], dir);
    assert.equal(pkcs8.code, 0, pkcs8.stderr);
    const fromKey = await openssl(["pkey", "-in", "key.pem", "-pubout"], dir);
    assert.equal(fromKey.code, 0, fromKey.stderr);
    const fromLeaf = await openssl(["x509", "-in", "leaf.pem", "-pubkey", "-noout"], dir);
    assert.equal(fromKey.stdout, fromLeaf.stdout, "the key is the leaf's");
  });

  it("a JWT-SVID of the authority verifies with jose against the JWT bundle sent, keyed by trust domain ID", async (t) => {
    const { authority, issued } = await workload(t);
    const bundles = bundleMap([authority.bundle()], "jwt");
    assert.deepEqual(Object.keys(bundles), ["spiffe://example.org"]);
    const decoded = (reference["FetchJWTBundles"] as protoLoader.MethodDefinition<object, object>).responseDeserialize(
      JwtBundlesResponseCodec.encode({ bundles }),
    ) as { bundles: Record<string, Buffer> };
    const jwks = JSON.parse(Buffer.from(decoded.bundles["spiffe://example.org"]!).toString("utf8")) as {
      keys: Array<{ use?: string; x5c?: unknown }>;
    };
    assert.ok(jwks.keys.length > 0 && jwks.keys.every((k) => k.use === "jwt-svid" && k.x5c === undefined));
    const token = authority.mintJwtSvid(issued.record.aztpId, "spiffe://example.org/tools");
    // jose takes a key whose `use` is absent or "sig"; SPIFFE marks JWT authorities "jwt-svid".
    const forJose = { keys: jwks.keys.map(({ use: _use, ...k }) => k) };
    const { payload } = await jwtVerify(token, createLocalJWKSet(forJose as never), {
      audience: "spiffe://example.org/tools",
    });
    assert.equal(payload.sub, "spiffe://example.org/workload/production/node/api");
  });

  it("refuses what a workload could not use: another's key, another trust domain's bundle, no chain, a CA for a leaf", async (t) => {
    const { authority, key, chain } = await workload(t);
    const other = await generateWorkloadKey();
    const partner = await EmbeddedAuthority.init(tempDir(t), "partner.example");
    const cases: Array<[string, () => unknown, RegExp]> = [
      ["another key", () => x509SvidMessage(chain, other.privateKey, authority.bundle()), /not the key/],
      ["a public key", () => x509SvidMessage(chain, key.publicKey, authority.bundle()), /private key/],
      ["another trust domain", () => x509SvidMessage(chain, key.privateKey, partner.bundle()), /partner\.example/],
      ["no chain", () => x509SvidMessage([], key.privateKey, authority.bundle()), /leaf/],
    ];
    for (const [label, make, message] of cases)
      assert.throws(make, (e) => isAztpError(e, "ERR_ARGUMENT_INVALID") && message.test((e as Error).message), label);
    // The intermediate CA in the leaf's place is no X.509-SVID.
    assert.throws(
      () => x509SvidMessage(chain.slice(1), key.privateKey, authority.bundle()),
      (e) => (e as { code?: string }).code !== undefined,
    );
  });
});
