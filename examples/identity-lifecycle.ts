// In the shape of astha.ai's revoke/reissue demo: issue, verify, revoke, verify (false),
// reissue, verify (true): for the same secured object throughout.
import aztp from "aztp-client";

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });
const secured = await client.secureConnect({}, "lifecycle-agent");
const id = secured.identity.aztpId;

const steps: Array<[string, boolean, boolean]> = [];
steps.push(["issued, verify", await client.verifyIdentity(secured), true]);

const { revoked } = await client.revokeIdentity(id, "key compromised in demo");
console.log("revoked:", revoked.join(", "));
steps.push(["revoked, verify", await client.verifyIdentity(secured), false]);

await client.reissueIdentity(id);
steps.push(["reissued, verify", await client.verifyIdentity(secured), true]);

let failures = 0;
for (const [label, got, expected] of steps) {
  console.log(`${got === expected ? "ok  " : "FAIL"} ${label}: ${got}`);
  if (got !== expected) failures++;
}
console.log("status:", (await client.getIdentity(id)).status, "serial:", secured.identity.serial);
process.exitCode = failures === 0 ? 0 : 1;
