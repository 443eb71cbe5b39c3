/**
 * aztp-client: SPIFFE identities for AI agents, MCP servers and clients.
 *
 *   import aztp from "aztp-client";
 *   const client = aztp.initialize({ apiKey });
 *   const secured = await client.secureConnect(agent, "my-agent");
 *   secured.identity.aztpId; // aztp://aztp.local/workload/production/node/my-agent
 */
import { Aztp, whiteListTrustDomains, type AztpConfig } from "./client/aztp.js";

export { Aztp, whiteListTrustDomains } from "./client/aztp.js";
export type { AztpConfig, SecureConnectOptions, SecuredAgent } from "./client/aztp.js";
export { AgentIdentity } from "./client/identity.js";
export type { SvidSigner } from "./spiffe/signer.js";
export { AztpError, ErrorCodes, isAztpError } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { SpiffeId, TrustDomain } from "./spiffe/spiffeid.js";
export { CONNECT_ACTION, TOKEN_ACTION } from "./policy/request.js";
export type { AccessTokenRequest, AccessTokenResult } from "./authority/authority-api.js";
export { EmbeddedAuthority } from "./authority/authority.js";
export type { IdentityRecord, IdentityLink, LinkType } from "./authority/registry.js";

const aztp = {
  initialize: (config: AztpConfig = {}): Aztp => Aztp.initialize(config),
  Aztp,
  whiteListTrustDomains,
};

export default aztp;
