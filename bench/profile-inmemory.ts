/**
 * A profiling driver, not a figure: the in-memory MCP pair of mcp.bench.ts with `audit: false`
 * on both sides, called in a loop for `--seconds` (default 8), so a CPU profile shows where a
 * secured call's time goes beyond the plain one. Run it under the profiler and summarise:
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/profile-inmemory.ts
 *   npx tsx bench/cpuprofile-summary.ts /tmp/prof/<file>.cpuprofile
 * `--plain` calls the plain pair instead (the reference to subtract).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { Aztp } from "../src/client/aztp.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { SEARCH_ARGS } from "./helpers/mcp-http-process.js";

const seconds = Number(process.argv[process.argv.indexOf("--seconds") + 1]) || 8;
const plainOnly = process.argv.includes("--plain");

function toolServer(): McpServer {
  const s = new McpServer({ name: "bench", version: "1.0.0" });
  s.registerTool("search", { inputSchema: { query: z.string(), limit: z.number() } }, async ({ query, limit }) => ({
    content: [{ type: "text", text: `${limit} results for ${query}` }],
  }));
  return s;
}

const home = mkdtempSync(join(tmpdir(), "aztp-prof-"));
const aztp = new Aztp({ home });
try {
  const server = (await aztp.secureConnect({}, "bench-server")).identity;
  const client = (await aztp.secureConnect({}, "bench-client")).identity;
  const trust = await aztp.trust();
  const c = plainOnly
    ? new Client({ name: "plain", version: "1" })
    : await secureMcpClient(new Client({ name: "secured", version: "1" }), { identity: client, trust, audit: false });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await (
    plainOnly ? toolServer() : await secureMcpServer(toolServer(), { identity: server, trust, audit: false })
  ).connect(st);
  await c.connect(ct);
  const call = () => c.callTool({ name: "search", arguments: SEARCH_ARGS });
  for (let i = 0; i < 2000; i++) await call();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) {
    await call();
    n++;
  }
  const us = ((performance.now() - t0) * 1000) / n;
  process.stdout.write(`${plainOnly ? "plain" : "secured (no audit)"}: ${n} calls, ${us.toFixed(1)} µs per call\n`);
  await c.close();
} finally {
  aztp.close();
  rmSync(home, { recursive: true, force: true });
}
