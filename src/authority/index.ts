export { EmbeddedAuthority, DEFAULT_TRUST_DOMAIN, DEFAULT_ENVIRONMENT, DEFAULT_METHOD, MAX_JWT_SVID_TTL_SECONDS, MAX_SPIFFE_ID_BYTES, workloadSpiffeId } from "./authority.js";
export type { RegisterRequest, IssueOptions, IssueResult } from "./authority.js";
export type { IdentityRecord, IdentityLink, IdentityStatus, LinkType, PolicyEntry, RevocationEntry } from "./registry.js";
export { CertificateAuthority, DEFAULT_SVID_TTL_SECONDS } from "./ca.js";
export type { IssuedSvid } from "./ca.js";
