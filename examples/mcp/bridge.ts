// An MCP host that cannot sign (Claude Desktop, VS Code, Cursor) calling a secured server
// through `aztp mcp bridge`, in one command:
//   npm run example:mcp-bridge
// The host here is the MCP SDK's own Client, unmodified: it starts the bridge over stdio as a
// host's configuration does. The bridge holds its own identity, has the server prove its own,
// signs each tools/call and checks each receipt; the server sees the bridge as the caller, and
// its audit log says so. Offline, in a temporary home removed at the end.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import aztp from "aztp-client";
import { queryAuditLog } from "aztp-client/audit";
import { secureMcpServer, serveMcpHttp } from "aztp-client/mcp";
import type { PolicyDocument } from "aztp-client/policy";

const root = fileURLToPath(new URL("../..", import.meta.url));
const home = mkdtempSync(join(tmpdir(), "aztp-bridge-example-"));
const client = aztp.initialize({ home });

// The secured server: Streamable HTTP on loopback. Its policy lets the bridge call `forecast`
// and nothing else, so what reaches the tool was signed by the bridge.
const bridgeId = (await client.secureConnect({}, "desktop-bridge")).identity.aztpId;
const policy: PolicyDocument = {
  Version: "2025-01-01",
  Statement: [{ Effect: "Allow", Principal: bridgeId, Action: "tool:call", Resource: "forecast" }],
};
const identity = (await client.secureConnect({}, "weather-server")).identity;
const http = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
  const server = new McpServer({ name: "weather", version: "1.0.0" });
  server.registerTool("forecast", { inputSchema: { city: z.string() } }, async ({ city }) => ({
    content: [{ type: "text", text: `${city}: sunny` }],
  }));
  server.registerTool("reset", { inputSchema: {} }, async () => ({ content: [{ type: "text", text: "reset" }] }));
  await (await secureMcpServer(server, { client, identity, policy: [policy] })).connect(transport);
});
console.log(`secured server ${identity.aztpId} at ${http.url.href}`);

// The host: a plain SDK Client starting `aztp mcp bridge --name desktop-bridge --url URL`.
const host = new Client({ name: "desktop-host", version: "1.0.0" });
const bridge = new StdioClientTransport({
  command: process.execPath,
  args: ["--import", "tsx", join(root, "src/cli/main.ts"), "--home", home, "mcp", "bridge"].concat([
    "--name",
    "desktop-bridge",
    "--url",
    http.url.href,
  ]),
  env: getDefaultEnvironment(),
  cwd: root,
  stderr: "pipe",
});
let said = "";
bridge.stderr?.on("data", (d: Buffer) => (said += d.toString("utf8")));
await host.connect(bridge);
console.log(`host sees tools: ${(await host.listTools()).tools.map((t) => t.name).join(", ")}`);

const text = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;
const forecast = await host.callTool({ name: "forecast", arguments: { city: "Lisbon" } });
console.log(`host calls forecast: ${text(forecast)}`);
// A refusal reaches the host as a tool result the model can read, not as a broken server.
const reset = (await host.callTool({ name: "reset", arguments: {} })) as CallToolResult;
console.log(`host calls reset: isError ${reset.isError}, the model reads "${text(reset)}"`);

// The server's audit log: each call under the bridge's identity, verified, signed.
for (const e of await queryAuditLog(join(home, "audit", "weather-server.jsonl")))
  console.log(
    `server's audit: caller ${e.caller} (${e.callerVerified ? "verified" : "unverified"}, ${e.authMethod}) → ${e.tool} ${e.decision}${e.reason ? ` ${e.reason}` : ""}`,
  );

await host.close();
const proven = /server (\S+) proven at first connect/.exec(said)?.[1];
console.log(`the bridge pinned the server it proved: ${proven}`);
await http.close();
await client.close();
rmSync(home, { recursive: true, force: true });
