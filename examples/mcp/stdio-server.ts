// A secured MCP tool server over stdio. Its identity is issued at start-up by the embedded
// authority in AZTP_HOME (else ./.aztp); every tools/call must carry a valid AZTP token.
// Run by stdio-client.ts (or any MCP client that signs: see docs/protocol.md).
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import aztp from "aztp-client";
import { secureMcpServer } from "aztp-client/mcp";

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });
const server = new McpServer({ name: "weather", version: "1.0.0" });
server.registerTool(
  "forecast",
  { description: "Forecast for a city", inputSchema: { city: z.string(), days: z.number().int().min(1).max(7) } },
  async ({ city, days }) => ({
    content: [{ type: "text", text: `${city}: sunny for ${days} day(s)` }],
  }),
);

const secured = await secureMcpServer(server, {
  client,
  name: "weather-server",
  mode: process.env.AZTP_MODE === "audit" ? "audit" : "enforce",
});
// stdout carries MCP: anything for people goes to stderr.
process.stderr.write(`weather server ${secured.identity.aztpId} on stdio\n`);
await secured.connect(new StdioServerTransport());
