// A secured MCP server and a secured client over Streamable HTTP on loopback, in one command:
//   npx tsx examples/mcp/http.ts
// The server checks Host and Origin (DNS rebinding), proves its identity at initialize,
// verifies every call before the tool runs and answers with a receipt.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import aztp from "aztp-client";
import { secureMcpClient, secureMcpServer, serveMcpHttp } from "aztp-client/mcp";

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });

function weatherServer(): McpServer {
  const server = new McpServer({ name: "weather", version: "1.0.0" });
  server.registerTool(
    "forecast",
    { inputSchema: { city: z.string(), days: z.number().int() } },
    async ({ city, days }) => ({
      content: [{ type: "text", text: `${city}: sunny for ${days} day(s)` }],
    }),
  );
  return server;
}

// One identity for the service, issued once; one McpServer per HTTP session, as the SDK recommends.
const identity = (await client.secureConnect({}, "weather-http")).identity;
const http = await serveMcpHttp(process.env.MCP_LISTEN ?? "http://127.0.0.1:0", async (transport) => {
  const server = await secureMcpServer(weatherServer(), { client, identity });
  await server.connect(transport);
});
console.log("server", identity.aztpId, "at", http.url.href);

const mcp = await secureMcpClient(new Client({ name: "travel-agent", version: "1.0.0" }), {
  client,
  name: "travel-agent",
  expectedServer: identity.aztpId,
});
await mcp.connect(new StreamableHTTPClientTransport(http.url));
const result = await mcp.callTool({ name: "forecast", arguments: { city: "Porto", days: 2 } });
console.log("result:", JSON.stringify(result.content), "(receipt verified)");

// An unmodified MCP client may connect and list tools, but its unsigned call is refused.
const plain = new Client({ name: "plain", version: "1.0.0" });
await plain.connect(new StreamableHTTPClientTransport(http.url));
console.log("plain client sees tools:", (await plain.listTools()).tools.map((t) => t.name).join(", "));
try {
  await plain.callTool({ name: "forecast", arguments: { city: "Porto", days: 2 } });
} catch (e) {
  console.log("plain client's call:", (e as Error).message.slice(0, 120), "...");
}
await plain.close();
await mcp.close();
await http.close();
await client.close();
