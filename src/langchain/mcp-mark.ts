/**
 * The mark a tool loaded from a secured MCP client carries, so an agent's middleware knows that
 * client signs the tool's calls as the agent. Apart from mcp-tools.ts so that agents without MCP
 * need no @langchain/mcp-adapters.
 */
import type { ServerBinding } from "../mcp/client.js";

const MCP_TOOL = Symbol.for("aztp.mcpTool");

/** What a marked tool knows of its server: the binding its secured client proved. */
interface McpToolMark {
  readonly server: ServerBinding;
}

export function mark<T extends object>(tool: T, server: ServerBinding): T {
  // MultiServerMCPClient hands out the same (cached) tool objects on every getTools(): marking
  // one again must not throw, and it keeps the binding of the client that now carries it.
  Object.defineProperty(tool, MCP_TOOL, { value: { server } satisfies McpToolMark, configurable: true });
  return tool;
}

/** Whether `tool` was loaded from a secured MCP client (so that client signs its calls). */
export function isMcpTool(tool: unknown): boolean {
  return typeof tool === "object" && tool !== null && (tool as { [MCP_TOOL]?: unknown })[MCP_TOOL] !== undefined;
}

/** The ID of the MCP server a marked tool calls, once its client has proven it. */
export function mcpServerOf(tool: unknown): string | undefined {
  const m = typeof tool === "object" && tool !== null ? (tool as { [MCP_TOOL]?: McpToolMark })[MCP_TOOL] : undefined;
  return m?.server.serverId?.toString();
}

