/**
 * The mark a tool loaded from a secured MCP client carries, so an agent's middleware knows that
 * client signs the tool's calls as the agent. Apart from mcp-tools.ts so that agents without MCP
 * need no @langchain/mcp-adapters.
 */
import { actingCaller } from "../guard/acting-caller.js";
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
  keepAnswers(tool);
  return tool;
}

const KEEPS_ANSWERS = Symbol.for("aztp.mcpToolKeepsAnswers");

/**
 * The receipt of an MCP call covers the server's result, which the secured client checks
 * before the adapters turn it into the ToolMessage; a middleware inside the agent's secure one
 * could still change that ToolMessage on its way out. So the tool leaves the answer it gave in
 * the acting caller's context, and the middleware shows the model that answer or none.
 */
function keepAnswers(tool: object): void {
  const t = tool as { invoke?: unknown; [KEEPS_ANSWERS]?: true };
  if (t[KEEPS_ANSWERS] === true || typeof t.invoke !== "function") return;
  const invoke = t.invoke as (this: unknown, ...args: unknown[]) => Promise<unknown>;
  Object.defineProperty(tool, "invoke", {
    value: async function (this: unknown, ...args: unknown[]): Promise<unknown> {
      const answer = await invoke.apply(this, args);
      const acting = actingCaller();
      if (acting !== undefined) acting.answered = answer;
      return answer;
    },
    configurable: true,
    writable: true,
  });
  Object.defineProperty(tool, KEEPS_ANSWERS, { value: true });
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
