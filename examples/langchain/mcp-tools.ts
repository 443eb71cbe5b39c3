// MCP tools for LangChain agents, through @langchain/mcp-adapters, signed by the agent that
// calls them (not by the MCP client that carries the call).
//   npm run example:langchain-mcp
//
//  1. loadMcpTools over a client made by secureMcpClient (an in-memory MCP server): two agents
//     share that one client, and each call is signed by the agent that made it
//  2. SecureMultiServerMCPClient, which takes MultiServerMCPClient's configuration unchanged,
//     over a stdio server (examples/mcp/stdio-server.ts, spawned): the agent's call is found in
//     its own log and in the server's by its LangChain tool-call id
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { AIMessage, fakeModel, ToolMessage, type BaseMessage } from "langchain";
import { z } from "zod";
import aztp from "aztp-client";
import { queryAuditLog } from "aztp-client/audit";
import { createSecureAgent, receiptOf } from "aztp-client/langchain";
import { loadMcpTools, SecureMultiServerMCPClient } from "aztp-client/langchain/mcp";
import { secureMcpClient, secureMcpServer } from "aztp-client/mcp";

const startedAt = new Date();
const home = resolve(process.env.AZTP_HOME ?? ".aztp");
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY, home });
const short = (id: string) => id.slice(id.lastIndexOf("/") + 1);
const asks = (name: string, args: Record<string, unknown>, id: string) =>
  fakeModel().respondWithTools([{ name, args, id }]).respond(new AIMessage("done"));
const show = (who: string, out: { messages: BaseMessage[] }) => {
  for (const m of out.messages.filter((x) => ToolMessage.isInstance(x))) {
    const r = receiptOf(m);
    console.log(
      `   ${who} → ${m.name}: ${m.status === "error" ? `REFUSED ${r?.code}` : `"${m.content}" (receipt from ${short(r?.callee ?? "?")} verified)`}`,
    );
  }
};
const ask = (content: string) => ({ messages: [{ role: "user", content }] });

// 1. loadMcpTools over one secured client, shared by two agents.
const kb = new McpServer({ name: "kb", version: "1.0.0" });
kb.registerTool(
  "lookup",
  { description: "Look up a term in the knowledge base", inputSchema: { term: z.string() } },
  async ({ term }) => ({
    content: [{ type: "text", text: `${term}: see chapter 3` }],
  }),
);
const kbServer = await secureMcpServer(kb, { client, name: "kb-server" });
const shared = await secureMcpClient(new Client({ name: "shared-mcp-client", version: "1.0.0" }), {
  client,
  name: "shared-mcp-client",
  expectedServer: kbServer.identity.aztpId,
});
const [a, b] = InMemoryTransport.createLinkedPair();
await kbServer.connect(b);
await shared.connect(a);
const kbTools = await loadMcpTools("kb", shared);

console.log("1. loadMcpTools: two agents share one secured MCP client");
const planner = await createSecureAgent({
  client,
  name: "planner",
  model: asks("lookup", { term: "SVID" }, "call_planner_1"),
  tools: kbTools,
});
const writer = await createSecureAgent({
  client,
  name: "writer",
  model: asks("lookup", { term: "receipt" }, "call_writer_1"),
  tools: kbTools,
});
show("planner", (await planner.invoke(ask("What is an SVID?"))) as { messages: BaseMessage[] });
show("writer ", (await writer.invoke(ask("What is a receipt?"))) as { messages: BaseMessage[] });
await shared.close();
for (const e of await queryAuditLog(join(home, "audit", "kb-server.jsonl"), { since: startedAt })) {
  console.log(
    `   kb-server's log: ${short(e.caller)} called ${e.tool} (${e.callerVerified ? "verified" : "unverified"}), ${e.decision}`,
  );
}

// 2. SecureMultiServerMCPClient: MultiServerMCPClient's configuration, unchanged.
console.log("\n2. SecureMultiServerMCPClient over stdio");
const td = (await client.authority()).defaultTrustDomain;
const weatherServer = fileURLToPath(new URL("../mcp/stdio-server.ts", import.meta.url));
const mcp = await SecureMultiServerMCPClient.create(
  {
    mcpServers: {
      weather: {
        transport: "stdio",
        command: process.execPath,
        args: ["--import", "tsx", weatherServer],
        env: { ...(process.env as Record<string, string>), AZTP_HOME: home },
      },
    },
  },
  {
    client,
    name: "travel-mcp-client",
    expectedServers: { weather: `aztp://${td}/workload/production/node/weather-server` },
  },
);
const weatherTools = await mcp.getTools(); // connects: the server proves its identity at initialize
const traveller = await createSecureAgent({
  client,
  name: "traveller",
  model: asks("forecast", { city: "Lisbon", days: 3 }, "call_forecast_1"),
  tools: weatherTools,
});
show("traveller", (await traveller.invoke(ask("Weather in Lisbon for 3 days?"))) as { messages: BaseMessage[] });
await mcp.close();

// One call, both sides: what `npx aztp audit query <logs...> --tool-call-id call_forecast_1` prints.
for (const name of ["traveller", "weather-server"]) {
  for (const e of await queryAuditLog(join(home, "audit", `${name}.jsonl`), {
    toolCallId: "call_forecast_1",
    since: startedAt,
  })) {
    console.log(
      `   ${`${name}.jsonl`.padEnd(20)} ${e.side} ${short(e.caller)} → ${short(e.callee)} ${e.tool} ${e.decision} ${e.outcome ?? ""} [call ${e.toolCallId}]`,
    );
  }
}
await client.close();
