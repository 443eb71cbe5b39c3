export { EmbeddedAuthority, DEFAULT_TRUST_DOMAIN } from "./authority.js";
export type { IssueOptions, IssueResult } from "./authority.js";
export type { AccessTokenRequest, AccessTokenResult } from "./authority-api.js";
export {
  DEFAULT_ENVIRONMENT,
  DEFAULT_METHOD,
  MAX_JWT_SVID_TTL_SECONDS,
  MAX_SPIFFE_ID_BYTES,
  workloadSpiffeId,
} from "./registry.js";
export type {
  RegisterRequest,
  IdentityRecord,
  IdentityLink,
  IdentityStatus,
  LinkType,
  PolicyEntry,
  RevocationEntry,
} from "./registry.js";
export { CertificateAuthority, DEFAULT_SVID_TTL_SECONDS } from "./ca.js";
export type { IssuedSvid } from "./ca.js";
