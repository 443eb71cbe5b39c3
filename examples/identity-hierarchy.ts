// In the shape of astha.ai's parent/child demo: a root agent, two children linked back to it,
// the root secured again with new links, and every connection verified both ways.
// Runs on the embedded authority (AZTP_HOME, else ./.aztp).
import aztp from "aztp-client";

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });

const root = await client.secureConnect({ role: "orchestrator" }, "sdr-agent", { isGlobalIdentity: true });
console.log("root:", root.identity.aztpId);

const sales = await client.secureConnect({ role: "sales" }, "sales-agent", {
  parentIdentity: root.identity.aztpId,
  linkTo: [root.identity.aztpId],
});
const support = await client.secureConnect({ role: "support" }, "support-agent", {
  parentIdentity: root.identity.aztpId,
  linkTo: [root.identity.aztpId],
});
console.log("children:", sales.identity.aztpId, support.identity.aztpId);

// Securing the root again keeps its AZTP ID and adds the new links.
const rootAgain = await client.secureConnect({ role: "orchestrator" }, "sdr-agent", {
  isGlobalIdentity: true,
  linkTo: [sales.identity.aztpId, support.identity.aztpId],
  metadata: { team: "growth" },
});
console.log("root secured again, same AZTP ID:", rootAgain.identity.aztpId === root.identity.aztpId);

let failures = 0;
const check = async (label: string, from: string, to: string, expected: boolean): Promise<void> => {
  const ok = await client.verifyIdentityConnection(from, to);
  console.log(`${ok === expected ? "ok  " : "FAIL"} ${label}: ${ok}`);
  if (ok !== expected) failures++;
};
for (const [a, b] of [
  [rootAgain, sales],
  [rootAgain, support],
] as const) {
  await check(`${a.identity.name} -> ${b.identity.name}`, a.identity.aztpId, b.identity.aztpId, true);
  await check(
    `${b.identity.name} -> ${a.identity.aztpId.split("/").pop()}`,
    b.identity.aztpId,
    a.identity.aztpId,
    true,
  );
}
// The two children were never linked to each other.
await check("sales-agent -> support-agent", sales.identity.aztpId, support.identity.aztpId, false);
await check("support-agent -> sales-agent", support.identity.aztpId, sales.identity.aztpId, false);

const record = await client.getIdentity(rootAgain);
console.log("root links:", record.links.map((l) => `${l.type}:${l.target}`).join(", "));
console.log(failures === 0 ? "all connections verified" : `${failures} unexpected result(s)`);
process.exitCode = failures === 0 ? 0 : 1;
