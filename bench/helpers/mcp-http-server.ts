/**
 * An MCP tool server over Streamable HTTP in its own process, for the HTTP benchmark:
 *   node --import tsx bench/helpers/mcp-http-server.ts <plain|padded|secured|bearer> <home>
 * Prints its URL on stdout when listening; exits when stdin closes. `padded` is the plain
 * server answering with a receipt-sized string in `_meta` (bench/http-breakdown.ts); `bearer`
 * is the secured server as an OAuth resource server accepting the home authority's access
 * tokens (bench/mcp-bearer.bench.ts).
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { Aztp } from "../../src/client/aztp.js";
import { secureMcpServer, serveMcpHttp } from "../../src/mcp/index.js";

const [kind, home] = process.argv.slice(2);
/** About the size of a receipt (and of an invocation token): the x5c chain dominates both. */
const PADDING = "x".repeat(2400);
const PADDING_KEY = "io.aztp/padding";
function toolServer(): McpServer {
  const s = new McpServer({ name: "bench", version: "1.0.0" });
  s.registerTool("search", { inputSchema: { query: z.string(), limit: z.number() } }, async ({ query, limit }) => ({
    content: [{ type: "text", text: `${limit} results for ${query}` }],
    ...(kind === "padded" ? { _meta: { [PADDING_KEY]: PADDING } } : {}),
  }));
  return s;
}
const client = new Aztp({ home: home as string });
const secured = kind === "secured" || kind === "bearer";
const identity = secured ? (await client.secureConnect({}, "bench-http-server")).identity : undefined;
const http = await serveMcpHttp(
  "http://127.0.0.1:0",
  async (t) => {
    const server = identity ? await secureMcpServer(toolServer(), { client, identity }) : toolServer();
    await server.connect(t);
  },
  kind === "bearer" && identity ? { client, authorizationServers: true, guard: { identity } } : {},
);
process.stdout.write(`${http.url.href}\n`);
process.stdin.resume();
process.stdin.on("end", () => {
  void http.close().then(() => {
    client.close();
    process.exit(0);
  });
});
