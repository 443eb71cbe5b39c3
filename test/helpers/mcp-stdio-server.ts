/**
 * A secured MCP tool server on stdio, for the transport tests:
 *
 *   node --import tsx test/helpers/mcp-stdio-server.ts --home DIR --name NAME
 *        [--mode enforce|audit] [--audit FILE | --no-audit] [--durability write|fsync]
 *        [--policy JSON] [--filter] [--unsecured]
 *
 * Without --audit it keeps the default log, <home>/audit/<name>.jsonl.
 *
 * It shares the test's AZTP home, so both sides trust the same authority. It exits when its
 * stdin ends (the client closed) or on SIGTERM, after flushing its audit log.
 */
import { parseArgs } from "node:util";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import aztp from "aztp-client";
import { AuditLog } from "../../src/audit/index.js";
import type { PolicyDocument } from "../../src/policy/policy.js";
import { securedToolServer, type RunCounter } from "./mcp-tool-server.js";

const { values } = parseArgs({
  options: {
    home: { type: "string" },
    name: { type: "string" },
    mode: { type: "string", default: "enforce" },
    audit: { type: "string" },
    "no-audit": { type: "boolean", default: false },
    durability: { type: "string", default: "write" },
    policy: { type: "string" },
    filter: { type: "boolean", default: false },
    unsecured: { type: "boolean", default: false },
  },
});
if (!values.home || !values.name) throw new Error("--home and --name are required");

const client = aztp.initialize({ home: values.home });
const audit = values.audit ? await AuditLog.open(values.audit, { batchWindowMs: 0 }) : undefined;
const counter: RunCounter = { runs: 0 };
const server = await securedToolServer(counter, {
  client,
  name: values.name,
  mode: values.mode as "enforce" | "audit",
  audit: audit ?? (values["no-audit"] ? false : { durability: values.durability as "write" | "fsync" }),
  ...(values.policy ? { policy: [JSON.parse(values.policy) as PolicyDocument] } : {}),
  filterToolsByPolicy: values.filter,
  unsecured: values.unsecured,
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  await server.close().catch(() => undefined);
  await (server as { aztpGuard?: { flush(): Promise<void> } }).aztpGuard?.flush();
  await audit?.close();
  client.close();
  process.exit(0);
}
process.stdin.on("end", () => void stop());
process.once("SIGTERM", () => void stop());

await server.connect(new StdioServerTransport());
process.stderr.write(`mcp-stdio-server ready\n`);
