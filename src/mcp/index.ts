export {
  secureMcpServer,
  serverHooks,
  URL_ELICITATION_REQUIRED,
  type ApprovalUrl,
  type SecureMcpServerOptions,
  type SecuredMcpServerExtras,
} from "./server.js";
export {
  secureMcpClient,
  clientHooks,
  ServerBinding,
  type ClientHooks,
  type SecureMcpClientOptions,
  type SecuredMcpClientExtras,
} from "./client.js";
export { InterceptingTransport, type MessageHooks } from "./intercept.js";
export {
  INVOCATION_META_KEY,
  APPROVAL_META_KEY,
  RECEIPT_META_KEY,
  CHALLENGE_META_KEY,
  IDENTITY_META_KEY,
  AZTP_REFUSED,
  resultForDigest,
} from "./meta.js";
export { startMcpProxy, type McpProxy, type McpProxyOptions, type Upstream } from "./proxy.js";
export { startMcpBridge, type McpBridge, type McpBridgeOptions } from "./bridge.js";
export { type OAuthAssertion, type UpstreamOAuthOptions } from "./oauth-client.js";
export { serveMcpHttp, type McpHttpServer, type McpHttpOptions } from "./http.js";
export {
  mcpResourceGate,
  bearerOf,
  BEARER_AUTH_KEY,
  DEFAULT_OPEN_METHODS,
  McpResourceGate,
  type GateDecision,
  type McpResourceServerOptions,
} from "./resource-gate.js";
export {
  ProtectedResource,
  PROTECTED_RESOURCE_WELL_KNOWN,
  protectedResourceMetadataUrl,
  type BearerCaller,
  type ProtectedResourceOptions,
} from "../oauth/protected-resource.js";
export {
  approvalNonce,
  signApprovalStatement,
  type Approval,
  type ApprovalRequest,
  type ApprovalRequestDetail,
  type SignApprovalStatementOptions,
} from "../people/approval.js";
