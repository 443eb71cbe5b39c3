/**
 * A plain MCP server on stdio that answers every request under its id re-spelled as a string
 * (`"1"` for 1), which the MCP SDK's client still matches to the request: an upstream the proxy
 * must pass down under the request's own id, with its receipt.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const server = new McpServer({ name: "respelling-upstream", version: "1.0.0" });
server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
  content: [{ type: "text", text }],
}));
const transport = new StdioServerTransport();
const send = transport.send.bind(transport);
transport.send = (message: JSONRPCMessage) => {
  const id = (message as { id?: unknown }).id;
  return send(
    typeof id === "number" && !("method" in message) ? ({ ...message, id: String(id) } as JSONRPCMessage) : message,
  );
};
await server.connect(transport);
