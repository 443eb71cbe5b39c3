/**
 * Issue 2 figures: issuance (CSR to signed X.509-SVID, the CA step) and verification of an
 * X.509-SVID chain seen before (the cached path every tool call takes).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { CertificateAuthority, createCaKeyMaterial } from "../src/authority/ca.js";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import { X509SvidVerifier } from "../src/spiffe/x509svid.js";
import { opsPerSecond, round, type Figures } from "./harness.js";

export default async function identityBench(): Promise<Figures> {
  const ca = await CertificateAuthority.load(await createCaKeyMaterial("bench.test"));
  const id = SpiffeId.parse("spiffe://bench.test/workload/production/node/agent");
  const csrs = await Promise.all(Array.from({ length: 64 }, () => generateWorkloadKey()));
  let i = 0;
  // The CA step: parse the CSR, check its signature (proof of possession), build and sign the SVID.
  const issuance = await opsPerSecond(() => ca.issueSvid(id, (csrs[i++ % csrs.length] as { csr: Buffer }).csr), 2000);

  // End to end through the embedded authority: lock, registry write (fsync + rename), issue.
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-"));
  const authority = await EmbeddedAuthority.open(home, { trustDomain: "bench.test", create: true });
  let n = 0;
  const registered = await opsPerSecond(
    () => authority.issueIdentity({ name: `agent-${n++}` }, (csrs[n % csrs.length] as { csr: Buffer }).csr),
    1500,
  );
  rmSync(home, { recursive: true, force: true });

  const svid = await ca.issueSvid(id, (csrs[0] as { csr: Buffer }).csr);
  const x5c = Certificate.parsePem(svid.chainPem).map((c) => c.der.toString("base64"));
  const verifier = new X509SvidVerifier(new BundleSet([TrustBundle.fromPem("bench.test", ca.rootCertPem)]));
  verifier.verify(x5c);
  const cached = await opsPerSecond(() => verifier.verify(x5c), 1500);

  return {
    issuance_per_s: round(issuance, 0),
    identity_register_and_issue_per_s: round(registered, 0),
    x509_verify_cached_per_s: round(cached, 0),
  };
}
