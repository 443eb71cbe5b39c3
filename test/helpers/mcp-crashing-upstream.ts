/**
 * A plain (unsecured) MCP server whose `exit` tool ends the process in the middle of the call,
 * without answering: an upstream that crashes, for the proxy tests. On stdio by default; with
 * `--http`, over Streamable HTTP on a free loopback port (printing `LISTENING <url>` on stderr),
 * where `exit` first sends a progress notification on the call's event stream, so the stream has
 * begun (its headers and an event are out) when the process dies under it.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";
import { serveMcpHttp } from "../../src/mcp/index.js";

const http = process.argv.includes("--http");

function crashingServer(): McpServer {
  const server = new McpServer({ name: "crashing-upstream", version: "1.0.0" });
  server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
    content: [{ type: "text", text }],
  }));
  server.registerTool("exit", { inputSchema: {} }, async (_args, extra) => {
    const token = extra._meta?.progressToken;
    if (http && token !== undefined) {
      await extra.sendNotification({ method: "notifications/progress", params: { progressToken: token, progress: 1 } });
      // Long enough for the event to leave this process before it dies.
      await new Promise((r) => setTimeout(r, 200));
    }
    process.exit(3);
  });
  return server;
}

if (http) {
  const served = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
    await crashingServer().connect(transport);
  });
  process.stderr.write(`LISTENING ${served.url.href}\n`);
} else {
  await crashingServer().connect(new StdioServerTransport());
}
