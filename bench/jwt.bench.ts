/**
 * JWT-SVID validation throughput: one cached, realistic ES256 JWT-SVID (SPIRE-style kid and
 * path, one audience, 5-minute lifetime, a couple of extra claims) validated against a
 * BundleSet holding several trust domains, each with a few JWT authorities (as during key
 * rotation). Every call does the full work: decode, allow-list, kid lookup, P-256 verify and
 * claim checks; nothing is cached between calls. Target: >= 5,000 validations/s.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { BundleSet, TrustBundle } from "../src/spiffe/bundle.js";
import { mintJwtSvid, validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { opsPerSecond, round } from "./harness.js";

const AUDIENCE = "spiffe://example.org/workload/production/mcp/tools-server";
const SUBJECT = "spiffe://example.org/ns/production/sa/agent-alpha";

function p256() {
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

function kid(): string {
  return randomBytes(24).toString("base64url");
}

export default async (): Promise<{ jwt_svid_validate_per_s: number }> => {
  const signer = p256();
  const signerKid = kid();
  const bundles = new BundleSet();
  for (const td of ["example.org", "partner.example.net", "staging.example.org"]) {
    const authorities: Array<[string, typeof signer.publicKey]> = [
      [kid(), p256().publicKey],
      [kid(), p256().publicKey],
    ];
    if (td === "example.org") authorities.push([signerKid, signer.publicKey]);
    bundles.add(new TrustBundle({ trustDomain: td, jwtAuthorities: authorities, sequence: 7 }));
  }

  const token = mintJwtSvid({
    subject: SUBJECT,
    audience: AUDIENCE,
    key: signer.privateKey,
    kid: signerKid,
    ttlSeconds: 300,
    claims: { iss: "https://spire.example.org", jti: randomBytes(16).toString("hex") },
  });
  const options = { audience: AUDIENCE };
  if (validateJwtSvid(token, bundles, options).id.toString() !== SUBJECT)
    throw new Error("bench token does not validate");

  const perSecond = await opsPerSecond(() => validateJwtSvid(token, bundles, options), 1500);
  return { jwt_svid_validate_per_s: round(perSecond, 0) };
};
