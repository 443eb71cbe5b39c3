/**
 * aztp-client/langchain/mcp: MCP tools through @langchain/mcp-adapters (an optional peer
 * dependency, needed only here), signed by the agent that calls them.
 */
export { loadMcpTools, SecureMultiServerMCPClient, type SecureMultiServerOptions } from "./mcp-tools.js";
export { isMcpTool, mcpServerOf } from "./mcp-mark.js";
