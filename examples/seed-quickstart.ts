// The seed documents' TypeScript quick start, as written; only the import changed.
// With no AZTP_API_KEY (and no baseUrl) it runs on the embedded authority: no account, no network.
import aztp from "aztp-client";

const apiKey = process.env.AZTP_API_KEY;

// Initialize the client
const client = aztp.initialize({ apiKey });

// Secure an agent
const agent = {};
const secured = await client.secureConnect(agent, "my-agent");

console.log("AZTP ID:", secured.identity.aztpId);
