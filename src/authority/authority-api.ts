/**
 * What a client and its wrappers need from an authority, whichever one it is: the embedded
 * authority (a home folder or PostgreSQL, in this process) or a remote `aztp serve` reached
 * over HTTPS (client/remote-authority.ts). The wrappers (MCP, LangChain) type against this
 * and never against a class, so they work unchanged on either.
 *
 * Two kinds of member:
 * - management calls (issue, revoke, link, policies, reads of records) may go over the
 *   network, so they return promises (or values, which `await` takes as well);
 * - the checks on a tool call's path (isRevoked, policiesOf, relations, the bundles) are
 *   synchronous and answer from state this process already holds: the registry itself for the
 *   embedded authority, verified feeds (the SPIFFE bundle endpoint and the signed, sequenced
 *   revocation list) for a remote one. Verification stays local.
 */
import type { BundleSet, BundleSource, TrustBundle } from "../spiffe/bundle.js";
import type { PolicyDocument } from "../policy/policy.js";
import type { KeyObject } from "node:crypto";
import type { PersonIssuerConfig } from "../people/person-issuers.js";
import type { TokenExchangeRequest, TokenExchangeResult } from "../people/token-exchange.js";
import type { IssuedSvid } from "./ca.js";
import type { IdentityLink, IdentityRecord, LinkType, PolicyEntry, RegisterRequest } from "./registry.js";

export interface IssueOptions {
  ttlSeconds?: number | undefined;
  now?: Date | undefined;
}

export interface IssueResult {
  record: IdentityRecord;
  svid: IssuedSvid;
}

export interface IdentityFilter {
  trustDomain?: string | undefined;
  status?: "active" | "revoked" | undefined;
}

/** What an identity asks of an authority's token endpoint (RFC 6749 §4.4, RFC 8707). */
export interface AccessTokenRequest {
  /** The resource server the token is for (RFC 8707): the token's `aud`. */
  resource: string;
  /** Scopes asked for; the token carries those the identity's policies allow. */
  scopes?: readonly string[] | undefined;
  /** Lifetime asked for (default 300 s; at most 3600, and never past an ancestor's SVID). */
  ttlSeconds?: number | undefined;
}

export interface AccessTokenResult {
  /** The RFC 9068 JWT, for `Authorization: Bearer`. */
  accessToken: string;
  tokenType: "Bearer";
  /** Seconds from now, as the token endpoint says (RFC 6749 §5.1). */
  expiresIn: number;
  expiresAt: Date;
  /** The scopes granted: those asked that the identity's policies allow. */
  scopes: string[];
}

/** Parent and links of an identity, for policy conditions (aztp:callerParent, aztp:callerLinks). */
export interface AuthorityRelations {
  parent?: string;
  links: string[];
}

export interface Authority extends BundleSource {
  /**
   * A folder of this process's own: where the default audit logs of identities issued through
   * this authority live. The embedded authority's home; for a remote one, the client's home.
   */
  readonly home: string;
  readonly defaultTrustDomain: string;
  /**
   * The issuer identifier of the OAuth access tokens this authority mints (RFC 9068 `iss`): a
   * resource server on this authority checks tokens of this issuer offline from the bundle.
   */
  readonly oauthIssuer: string;
  readonly trustDomains: readonly string[];

  /** Registers `req.name` (or updates it) and issues an X.509-SVID over the key in `csr`. */
  issueIdentity(req: RegisterRequest, csr: Buffer | string, options?: IssueOptions): Promise<IssueResult>;
  /** Rotation: a new SVID for an existing, active identity over a new key. */
  renewSvid(id: string, csr: Buffer | string, options?: IssueOptions): Promise<IssueResult>;
  /** A JWT-SVID for an active identity. */
  mintJwtSvid(id: string, audience: string | string[], ttlSeconds?: number): string | Promise<string>;
  /**
   * An OAuth access token (RFC 9068) for `id`, with the scopes its policies allow (the token
   * endpoint's one rule, oauth/token-request.ts). `assertion` signs a client assertion for an
   * audience with the identity's SVID key: a remote authority sends it to its token endpoint;
   * the embedded authority, in this process, mints without one.
   */
  accessToken(
    id: string,
    request: AccessTokenRequest,
    assertion: (audience: string) => string,
  ): Promise<AccessTokenResult>;

  /**
   * RFC 8693 token exchange (people/token-exchange.ts): a person's token (or an on-behalf-of
   * token to extend to a sub-agent) for an on-behalf-of token bound to `id`'s SVID key
   * `proof.key`. `proof.assertion` signs a client assertion with that key: a remote authority
   * sends it to its token endpoint as the `actor_token`; the embedded one, in this process,
   * checks the key against the identity's SVIDs instead.
   */
  exchangeToken(
    id: string,
    request: TokenExchangeRequest,
    proof: { key: KeyObject; assertion: (audience: string) => string },
  ): Promise<TokenExchangeResult>;
  /** The OpenID Providers trusted to say who a person is, in `trustDomain` (default: the default one). */
  personIssuers(trustDomain?: string): PersonIssuerConfig[] | Promise<PersonIssuerConfig[]>;
  addPersonIssuer(config: PersonIssuerConfig, trustDomain?: string): Promise<PersonIssuerConfig>;
  removePersonIssuer(issuer: string, trustDomain?: string): Promise<boolean>;

  get(id: string): IdentityRecord | Promise<IdentityRecord>;
  find(id: string): IdentityRecord | undefined | Promise<IdentityRecord | undefined>;
  findByName(name: string, trustDomain?: string): IdentityRecord | undefined | Promise<IdentityRecord | undefined>;
  list(filter?: IdentityFilter): IdentityRecord[] | Promise<IdentityRecord[]>;
  connected(a: string, b: string): boolean | Promise<boolean>;

  revoke(id: string, reason: string): Promise<string[]>;
  reissue(id: string): Promise<IdentityRecord>;
  link(source: string, target: string, type: LinkType, metadata?: Record<string, unknown>): Promise<IdentityLink>;
  attachPolicy(id: string, document: unknown, policyName?: string): Promise<PolicyEntry>;
  detachPolicy(id: string, code: string): Promise<boolean>;

  // ---- the tool call's path: synchronous, from state held here ----

  /**
   * The record of `id` as this process holds it now (the registry itself, or the copy a remote
   * client keeps of an identity it holds).
   */
  heldRecord(id: string): IdentityRecord | undefined;

  /**
   * The identity, an ancestor, or the SVID `serial` is revoked. Throws (fails closed) when the
   * state it answers from is too old to trust.
   */
  isRevoked(id: string, serial?: string): boolean;
  /**
   * The policies attached to `id` (only `code`'s, if given): from held state, or a promise when
   * this process has never seen `id` (a remote authority fetches it once, then holds it).
   */
  policiesOf(id: string, code?: string): readonly PolicyDocument[] | Promise<readonly PolicyDocument[]>;
  /** Parent and links of `id`; a promise when this process has never seen `id` (as for policiesOf). */
  relations(id: string): AuthorityRelations | undefined | Promise<AuthorityRelations | undefined>;
  /** The trust bundle of `trustDomain` (default: the default trust domain). */
  bundle(trustDomain?: string): TrustBundle;
  /** Bundles for every trust domain: what a local verifier trusts. */
  bundleSet(): BundleSet;

  /** Releases connections and timers (a no-op for a home folder). */
  close?(): Promise<void>;
}
