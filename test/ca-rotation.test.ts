/**
 * CA rotation (`aztp ca rotate`): a new intermediate and JWT key under the same root. What a
 * user relies on: SVIDs and JWT-SVIDs issued before it keep verifying, new ones come from the
 * new generation, the bundle carries both JWT keys (its sequence growing) until the old
 * generation retires, and then drops the old one.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { verifyX509Svid } from "../src/spiffe/x509svid.js";
import { aztpCli, assertExit, tempDir } from "./helpers/authority-util.js";

const TD = "rotate.test";

async function issue(
  a: EmbeddedAuthority,
  name: string,
): Promise<{ chainPem: string; issuerKeyId: string | undefined /* the intermediate's fingerprint */ }> {
  const key = await generateWorkloadKey();
  const { svid } = await a.issueIdentity({ name }, key.csr);
  const chain = Certificate.parsePem(svid.chainPem);
  return { chainPem: svid.chainPem, issuerKeyId: chain[1]?.fingerprint };
}

describe("aztp ca rotate", () => {
  it("live SVIDs and JWT-SVIDs keep verifying, new ones come from the new intermediate, both JWT keys overlap in the bundle until the old generation retires", async (t) => {
    const home = tempDir(t);
    const before = await EmbeddedAuthority.init(home, TD);
    const old = await issue(before, "old");
    const oldJwt = before.mintJwtSvid(`spiffe://${TD}/workload/production/node/old`, "svc");
    const seqBefore = before.bundle().sequence;

    const r = await aztpCli(home, ["ca", "rotate"]);
    assertExit(r, 0, "aztp ca rotate");
    const out = r.json as { generation: number; previousRetiresAfter: string; bundleSequence: number };
    assert.equal(out.generation, 2);
    assert.ok(Date.parse(out.previousRetiresAfter) > Date.now(), "the old generation retires in the future");

    const after = await EmbeddedAuthority.open(home);
    const bundle = after.bundle();
    assert.ok((bundle.sequence ?? 0) > (seqBefore ?? 0), "spiffe_sequence grows with the rotation");
    assert.equal(bundle.jwtAuthorities.size, 2, "old and new JWT keys overlap in the bundle");
    // Issued before: still valid against the bundle after the rotation.
    verifyX509Svid(Certificate.parsePem(old.chainPem), after.bundleSet());
    validateJwtSvid(oldJwt, after, { audience: "svc" });
    // Issued after: by the new intermediate, under the same root.
    const fresh = await issue(after, "new");
    assert.notEqual(fresh.issuerKeyId, old.issuerKeyId, "a new intermediate signs");
    verifyX509Svid(Certificate.parsePem(fresh.chainPem), after.bundleSet());
    validateJwtSvid(after.mintJwtSvid(`spiffe://${TD}/workload/production/node/new`, "svc"), after, {
      audience: "svc",
    });

    // Past the old generation's retirement it leaves the bundle, and the sequence grows again.
    const later = Date.parse(out.previousRetiresAfter) + 1000;
    const retired = after.bundleSet(later).getBundleForTrustDomain(TD);
    assert.equal(retired?.jwtAuthorities.size, 1);
    assert.ok((retired?.sequence ?? 0) > (bundle.sequence ?? 0));
  });
});
