/**
 * A plain (unsecured) MCP server on stdio whose `exit` tool ends the process in the middle of
 * the call, without answering: an upstream that crashes, for the proxy tests.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "crashing-upstream", version: "1.0.0" });
server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
  content: [{ type: "text", text }],
}));
server.registerTool("exit", { inputSchema: {} }, async () => {
  process.exit(3);
});
await server.connect(new StdioServerTransport());
