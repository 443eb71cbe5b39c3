// The main demo (`npm start`): everything on the embedded authority in AZTP_HOME (else ./.aztp),
// offline, in a few seconds.
//
//  1. the seed quick start: an agent gets an identity
//  2. an MCP tool server and an MCP client, each with an identity and an audit log
//  3. signed calls between them: one allowed, one denied by policy, one tampered with on the
//     way, one replayed; the tool runs only for the first
//  4. `aztp audit verify` on both logs
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import aztp from "aztp-client";
import { AuditLog } from "aztp-client/audit";
import { svidCheckpointSigner } from "aztp-client/invocation";
import { InterceptingTransport, secureMcpClient, secureMcpServer } from "aztp-client/mcp";

const home = resolve(process.env.AZTP_HOME ?? ".aztp");
const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY, home });

// 1. The seed quick start.
const agent = await client.secureConnect({}, "my-agent");
console.log(`1. identity issued: ${agent.identity.aztpId}`);
console.log(`   X.509-SVID serial ${agent.identity.serial}, valid until ${agent.identity.expiresAt.toISOString()}\n`);

// 2. A tool server and a client, each with an identity and its own audit log.
const serverIdentity = (await client.secureConnect({}, "search-server")).identity;
const clientIdentity = (await client.secureConnect({}, "research-agent")).identity;
mkdirSync(join(home, "audit"), { recursive: true });
const serverLogPath = join(home, "audit", "search-server.jsonl");
const clientLogPath = join(home, "audit", "research-agent.jsonl");
const serverLog = await AuditLog.open(serverLogPath, { signer: svidCheckpointSigner(serverIdentity), checkpointEvery: 4 });
const clientLog = await AuditLog.open(clientLogPath, { signer: svidCheckpointSigner(clientIdentity), checkpointEvery: 4 });

const td = serverIdentity.trustDomain;
await client.attachPolicy(
  serverIdentity.aztpId,
  {
    Version: "2025-01-01",
    Statement: [
      { Sid: "MembersMaySearch", Effect: "Allow", Principal: `aztp://${td}/*`, Action: "tool:call", Resource: "web_search" },
      { Sid: "NobodyDeletes", Effect: "Deny", Principal: "*", Action: "tool:call", Resource: "delete_*" },
    ],
  },
  "search-server-policy",
);

let toolRuns = 0;
const server = new McpServer({ name: "search-server", version: "1.0.0" });
server.registerTool("web_search", { inputSchema: { query: z.string(), limit: z.number() } }, async ({ query, limit }) => {
  toolRuns++;
  return { content: [{ type: "text", text: `${limit} results for "${query}"` }] };
});
server.registerTool("delete_index", { inputSchema: { name: z.string() } }, async () => {
  toolRuns++;
  return { content: [{ type: "text", text: "index deleted" }] };
});
const securedServer = await secureMcpServer(server, { client, identity: serverIdentity, audit: serverLog });
const researcher = await secureMcpClient(new Client({ name: "research-agent", version: "1.0.0" }), { client, identity: clientIdentity, audit: clientLog });

console.log(`2. MCP tool server ${serverIdentity.aztpId}`);
console.log(`   MCP client      ${clientIdentity.aztpId}`);
console.log(`   policy on the server: members of ${td} may call web_search; nobody may call delete_*\n`);

// Someone on the wire between them, who can change a message or send an old one again.
let tamper: ((m: JSONRPCMessage) => JSONRPCMessage) | undefined;
let captured: JSONRPCMessage | undefined;
const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
const onTheWire = new InterceptingTransport(clientSide, {
  incoming: (m, _extra, deliver) => deliver(m),
  outgoing: (m) => {
    if ("method" in m && m.method === "tools/call") {
      captured ??= structuredClone(m);
      if (tamper) {
        const changed = tamper(m);
        tamper = undefined;
        return changed;
      }
    }
    return m;
  },
});
await securedServer.connect(serverSide);
await researcher.connect(onTheWire);
console.log(`   the client proved the server's identity at initialize: ${researcher.aztpServer.serverId?.toString()}\n`);

// 3. Four calls.
const outcome = async (label: string, call: () => Promise<unknown>): Promise<void> => {
  const before = toolRuns;
  try {
    const r = (await call()) as { content?: Array<{ text?: string }>; _meta?: Record<string, unknown> };
    const receipt = r._meta?.["io.aztp/receipt"] ? "signed receipt verified" : "no receipt";
    console.log(`   ${label.padEnd(34)} ALLOWED  "${r.content?.[0]?.text ?? ""}" (${receipt})`);
  } catch (e) {
    const code = (e as { data?: { code?: string } }).data?.code ?? (e as { code?: string }).code;
    console.log(`   ${label.padEnd(34)} REFUSED  ${code}`);
  }
  console.log(`   ${"".padEnd(34)} tool ran: ${toolRuns > before ? "yes" : "no"}`);
};

console.log("3. signed tool calls");
await outcome("web_search (allowed by policy)", () => researcher.callTool({ name: "web_search", arguments: { query: "SPIFFE", limit: 3 } }));
await outcome("delete_index (denied by policy)", () => researcher.callTool({ name: "delete_index", arguments: { name: "main" } }));
tamper = (m) => {
  const c = structuredClone(m) as unknown as { params: { arguments: { limit: number } } };
  c.params.arguments.limit = 10_000; // signed for 3, delivered as 10000
  return c as unknown as JSONRPCMessage;
};
await outcome("web_search, arguments changed", () => researcher.callTool({ name: "web_search", arguments: { query: "SPIFFE", limit: 3 } }));
// Replay: the first call's exact signed request, sent again straight onto the wire.
const replayed = await new Promise<JSONRPCMessage>((resolveReply) => {
  const id = "replay-1";
  const inner = onTheWire.inner;
  const previous = inner.onmessage;
  inner.onmessage = (m) => {
    if ("id" in m && m.id === id) {
      inner.onmessage = previous;
      resolveReply(m);
    } else previous?.(m);
  };
  void inner.send({ ...(captured as object), id } as JSONRPCMessage);
});
const replayCode = (replayed as { error?: { data?: { code?: string } } }).error?.data?.code;
console.log(`   ${"the first call, replayed".padEnd(34)} ${replayCode ? `REFUSED  ${replayCode}` : "ALLOWED (!)"}`);
console.log(`   tool runs in total: ${toolRuns} (only the allowed call)\n`);

await researcher.close();
await securedServer.aztpGuard.flush();
await researcher.aztpGuard.flush();
await serverLog.close();
await clientLog.close();
client.close();

// 4. Verify both audit logs with the CLI.
console.log("4. aztp audit verify");
let failed = false;
for (const log of [serverLogPath, clientLogPath]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(projectRoot, "src/cli/main.ts"), "--home", home, "audit", "verify", log], { encoding: "utf8" });
  console.log(`   ${log}\n   ${(r.stdout || r.stderr).trim()}`);
  if (r.status !== 0) failed = true;
}
const stats = spawnSync(process.execPath, ["--import", "tsx", join(projectRoot, "src/cli/main.ts"), "--home", home, "audit", "stats", serverLogPath], { encoding: "utf8" });
console.log(`\n   who called what (server side):\n${stats.stdout.trimEnd().replace(/^/gm, "   ")}`);
process.exitCode = failed ? 1 : 0;
