/**
 * The MCP tool server the transport tests secure: `echo` registered before secureMcpServer
 * wraps it and `late` registered after, both answering with how many times any handler of
 * the process has run (so a test can prove a refused call never reached a handler, even when
 * the server runs in another process). Used in-process and by mcp-stdio-server.ts.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { secureMcpServer, type SecureMcpServerOptions } from "../../src/mcp/index.js";

/** Counts handler runs across every server built with the same counter. */
export interface RunCounter {
  runs: number;
}

/** What echo and late answer with, in their one text content item. */
export interface ToolAnswer {
  tool: "echo" | "late";
  value: string | number;
  runs: number;
}

function answer(counter: RunCounter, tool: ToolAnswer["tool"], value: string | number): CallToolResult {
  counter.runs += 1;
  const body: ToolAnswer = { tool, value, runs: counter.runs };
  return { content: [{ type: "text", text: JSON.stringify(body) }] };
}

/** Registers `echo`; the caller registers `late` with registerLate after wrapping. */
export function newToolServer(counter: RunCounter): McpServer {
  const server = new McpServer({ name: "aztp-test-tools", version: "1.0.0" });
  server.registerTool("echo", { description: "echoes text", inputSchema: { text: z.string() } }, async ({ text }) =>
    answer(counter, "echo", text),
  );
  return server;
}

export function registerLate(server: McpServer, counter: RunCounter): void {
  server.registerTool(
    "late",
    { description: "doubles n (registered after wrapping)", inputSchema: { n: z.number() } },
    async ({ n }) => answer(counter, "late", n * 2),
  );
}

/**
 * A secured tool server: echo registered before wrapping, late after. With `unsecured`, the
 * same server without AZTP (for the client's refusal to talk to an unproven server).
 */
export async function securedToolServer(
  counter: RunCounter,
  options: SecureMcpServerOptions & { unsecured?: boolean },
): Promise<McpServer> {
  const server = newToolServer(counter);
  if (options.unsecured) {
    registerLate(server, counter);
    return server;
  }
  const { unsecured: _u, ...secure } = options;
  const secured = await secureMcpServer(server, secure);
  registerLate(server, counter);
  return secured;
}

/** Parses what echo / late answered. */
export function toolAnswer(result: unknown): ToolAnswer {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content;
  const text = content?.[0]?.text;
  if (typeof text !== "string") throw new Error(`not a tool answer: ${JSON.stringify(result)}`);
  return JSON.parse(text) as ToolAnswer;
}
