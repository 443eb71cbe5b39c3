/**
 * aztp-client/langchain: secured LangChain.js agents, tools, MCP tools and sub-agents.
 * LangChain is an optional peer dependency: only this entry point imports it.
 */
export {
  createSecureAgent,
  subAgent,
  type SecureAgentParams,
  type SecureAgentOptions,
  type SecureAgentTool,
  type SecureReactAgent,
  type SecuredAgentExtras,
  type SubAgentScope,
  type SubAgentSpec,
} from "./agent.js";
export {
  createSecureMiddleware,
  servedToolName,
  type SecureMiddleware,
  type SecureMiddlewareOptions,
  type DelegationSource,
} from "./middleware.js";
export { secureTool, SecuredTool, isSecuredTool, type SecureToolOptions } from "./tool.js";
export { receiptOf, RECEIPT_ARTIFACT, type ReceiptArtifact } from "./receipt-artifact.js";
export { isMcpTool, mcpServerOf } from "./mcp-mark.js";
export { APPROVAL_INTERRUPT, type ApprovalInterrupt, type ApprovalResume } from "./approval-interrupt.js";
export type { Approval, ApprovalRequest, ApprovalRequestDetail } from "../people/approval.js";
export { signApprovalStatement, type SignApprovalStatementOptions } from "../people/approval.js";
export type { AztpRunConfig } from "./run-person.js";
