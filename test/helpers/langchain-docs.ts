/**
 * The MCP tool server the LangChain tests call: a secured in-memory McpServer named docs-server
 * (`search`, `delete_doc`, `fails`, `slow`), a secured MCP client (mcp-client) connected to it,
 * and its tools loaded through this package's `loadMcpTools`. `runs` holds what each tool ran
 * with, so a test can assert that a refused call never ran.
 */
import type { TestContext } from "node:test";
import type { StructuredToolInterface } from "@langchain/core/tools";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Aztp } from "../../src/client/aztp.js";
import { loadMcpTools } from "../../src/langchain/mcp.js";
import { secureMcpClient, secureMcpServer } from "../../src/mcp/index.js";
import type { PolicyDocument } from "../../src/policy/policy.js";
import { linkInMemory } from "./mcp-util.js";

export interface Docs {
  readonly runs: { search: string[]; delete_doc: string[]; slow: string[]; fails: string[] };
  readonly server: Awaited<ReturnType<typeof secureMcpServer<McpServer>>>;
  readonly client: Awaited<ReturnType<typeof secureMcpClient<Client>>>;
  readonly tools: StructuredToolInterface[];
  flush(): Promise<void>;
}

/** The policy most tests run the server under: any verified caller of the trust domain. */
export const THE_TEAM: PolicyDocument = {
  Version: "2012-10-17",
  Statement: [
    {
      Sid: "the-team",
      Effect: "Allow",
      Principal: "spiffe://aztp.local/workload/production/node/*",
      Action: "tool:call",
      Resource: "*",
    },
  ],
};

export async function docs(t: TestContext, aztp: Aztp, policy?: PolicyDocument[]): Promise<Docs> {
  const runs = { search: [] as string[], delete_doc: [] as string[], slow: [] as string[], fails: [] as string[] };
  const server = new McpServer({ name: "docs", version: "1.0.0" });
  server.registerTool("search", { description: "searches the docs", inputSchema: { q: z.string() } }, async ({ q }) => {
    runs.search.push(q);
    return { content: [{ type: "text", text: `found ${q}` }] };
  });
  server.registerTool(
    "delete_doc",
    { description: "deletes a doc", inputSchema: { id: z.string() } },
    async ({ id }) => {
      runs.delete_doc.push(id);
      return { content: [{ type: "text", text: `deleted ${id}` }] };
    },
  );
  server.registerTool(
    "fails",
    { description: "answers with an error result", inputSchema: { id: z.string() } },
    async ({ id }) => {
      runs.fails.push(id);
      return { isError: true, content: [{ type: "text", text: `no doc ${id}` }] };
    },
  );
  // Answers after 3 s, or stops at once when the call is cancelled.
  server.registerTool(
    "slow",
    { description: "takes its time", inputSchema: { q: z.string() } },
    async ({ q }, extra) => {
      runs.slow.push(q);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => resolve({ content: [{ type: "text", text: `slow ${q}` }] }), 3_000);
        extra.signal.addEventListener("abort", () => (clearTimeout(timer), reject(new Error("cancelled"))), {
          once: true,
        });
      });
    },
  );
  const secured = await secureMcpServer(server, { client: aztp, name: "docs-server", ...(policy ? { policy } : {}) });
  const client = await secureMcpClient(new Client({ name: "mcp-client", version: "1.0.0" }), {
    client: aztp,
    name: "mcp-client",
  });
  await linkInMemory(t, secured, client);
  return {
    runs,
    server: secured,
    client,
    tools: await loadMcpTools("docs", client),
    flush: async () => void (await Promise.all([secured.aztpGuard.flush(), client.aztpGuard.flush()])),
  };
}
