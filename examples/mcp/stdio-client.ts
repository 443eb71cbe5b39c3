// A secured MCP client over stdio: spawns stdio-server.ts, checks the server's proof of
// identity at initialize, signs each call and verifies each receipt.
//   npx tsx examples/mcp/stdio-client.ts
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import aztp from "aztp-client";
import { secureMcpClient } from "aztp-client/mcp";

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });
const mcp = await secureMcpClient(new Client({ name: "travel-agent", version: "1.0.0" }), {
  client,
  name: "travel-agent",
  expectedServer: `aztp://${(await client.authority()).defaultTrustDomain}/workload/production/node/weather-server`,
});
const server = fileURLToPath(new URL("stdio-server.ts", import.meta.url));
await mcp.connect(
  new StdioClientTransport({
    command: process.execPath,
    args: ["--import", "tsx", server],
    env: { ...process.env } as Record<string, string>,
    stderr: "inherit",
  }),
);

console.log("client:", mcp.identity.aztpId);
console.log("server proved:", mcp.aztpServer.serverId?.toString());
const result = await mcp.callTool({ name: "forecast", arguments: { city: "Lisbon", days: 3 } });
console.log("result:", JSON.stringify(result.content));
console.log("receipt verified:", typeof result._meta?.["io.aztp/receipt"] === "string");
await mcp.close();
await client.close();
