/**
 * One secured MCP tool call between two clients whose identities come from a Workload API (ours
 * or a SPIRE-like agent's): a server secured as "weather" serving `forecast`, and a client
 * secured as "planner", linked in memory. What the wrappers do on such identities, unchanged.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Aztp } from "../../src/client/aztp.js";
import { secureMcpClient, secureMcpServer } from "../../src/mcp/index.js";

export async function forecastOverMcp(
  serving: Aztp,
  calling: Aztp,
  city: string,
): Promise<{ serverId: string | undefined; content: unknown }> {
  const mcp = new McpServer({ name: "weather", version: "1.0.0" });
  mcp.registerTool("forecast", { inputSchema: { city: z.string() } }, ({ city: c }) => ({
    content: [{ type: "text", text: `forecast for ${c}` }],
  }));
  const server = await secureMcpServer(mcp, { client: serving, name: "weather" });
  const mcpClient = new Client({ name: "planner", version: "1.0.0" });
  const secured = await secureMcpClient(mcpClient, { client: calling, name: "planner" });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(b);
  await mcpClient.connect(a);
  try {
    const res = await mcpClient.callTool({ name: "forecast", arguments: { city } });
    return { serverId: secured.aztpServer.serverId?.toString(), content: res.content };
  } finally {
    await mcpClient.close();
    await server.close();
  }
}
