/**
 * Helper for test/client.test.ts, run as its own process with AZTP_HOME set: secures two
 * agents (rotation timers armed, one due in seconds) and then simply ends its module, without
 * calling close(). A rotation timer that kept the event loop alive would keep it running.
 */
import aztp from "aztp-client";

const client = aztp.initialize({ svidTtlSeconds: Number(process.env.AZTP_TEST_TTL ?? "3600") });
const a = await client.secureConnect({ role: "a" }, "exit-a");
const b = await client.secureConnect({ role: "b" }, "exit-b", { parentIdentity: a.identity.aztpId });
console.log(a.identity.aztpId);
console.log(b.identity.aztpId);
