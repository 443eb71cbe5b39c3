// Starts the local OpenID Provider, signs alice in, closes it, and returns without exiting:
// the process ends on its own only if close() left nothing running.
import { startLocalOpenIdProvider } from "../../examples/local-openid-provider.js";

const op = await startLocalOpenIdProvider();
const { claims } = await op.login({ account: "alice", amr: ["pwd"] });
await op.close();
console.log(`signed in ${String(claims.sub)} at ${op.issuer}`);
