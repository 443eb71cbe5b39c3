/**
 * A secured MCP client in its own process, for the "written before the answer" test on the
 * caller's side:
 *
 *   node --import tsx test/helpers/audit-kill-caller.ts --home DIR [--durability write|fsync]
 *
 * It calls `echo` on an in-process secured server (which keeps no log, so only the caller's
 * entry is at stake) and prints `RESULT <jti>` the moment the application has the result;
 * then it waits to be killed. Its log is the default one, <home>/audit/kill-caller.jsonl.
 */
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import aztp from "aztp-client";
import { secureMcpClient, secureMcpServer } from "../../src/mcp/index.js";
import { newToolServer, type RunCounter } from "./mcp-tool-server.js";
import { tap } from "./mcp-util.js";

const { values } = parseArgs({
  options: { home: { type: "string" }, durability: { type: "string", default: "write" } },
});
if (!values.home) throw new Error("--home is required");
const client = aztp.initialize({ home: values.home });
const counter: RunCounter = { runs: 0 };
const server = await secureMcpServer(newToolServer(counter), { client, name: "kill-callee", audit: false });
const secured = await secureMcpClient(new Client({ name: "kill-caller", version: "1" }), {
  client,
  name: "kill-caller",
  audit: { durability: values.durability as "write" | "fsync" },
});
const [c, s] = InMemoryTransport.createLinkedPair();
await server.connect(s);
const wire = tap();
await secured.connect(wire.wrap(c));
await secured.callTool({ name: "echo", arguments: { text: "last words" } });
const call = wire.sent.find((m) => "method" in m && m.method === "tools/call") as {
  params: { _meta: Record<string, string> };
};
const token = call.params._meta["io.aztp/invocation"] as string;
const jti = (JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString("utf8")) as { jti: string })
  .jti;
process.stdout.write(`RESULT ${jti}\n`);
setInterval(() => undefined, 1_000); // wait to be killed
