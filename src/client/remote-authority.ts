/**
 * A remote `aztp serve` as an Authority: management calls go over HTTPS (authority-http.ts),
 * while everything on a tool call's path answers from state this process holds and can check:
 *
 * - bundles from the SPIFFE bundle endpoint (bundle-feed.ts), sequence-checked;
 * - revocations from the signed, sequenced list (revocation-feed.ts), verified against those
 *   bundles, failing closed once past the window its signer gave it;
 * - policies and relations from a cache of the records this client has seen: those it issued
 *   (from the issue answer), those asked for once, refreshed on the hint, and changed at once
 *   by the writes made through this client.
 *
 * So a call is verified with zero network traffic, a service briefly down stops issuance
 * (ERR_AUTHORITY_REMOTE_UNAVAILABLE) but not verification, and the feeds recover by themselves
 * when it is back.
 */
import type { KeyObject } from "node:crypto";
import { keyThumbprint, readOnBehalfOf, type VerifiedOnBehalfOf } from "../invocation/on-behalf-of.js";
import { Trust } from "../invocation/trust.js";
import { checkPersonIssuerConfig, type PersonIssuerConfig } from "../people/person-issuers.js";
import {
  TOKEN_EXCHANGE_GRANT,
  TOKEN_TYPE,
  type TokenExchangeRequest,
  type TokenExchangeResult,
} from "../people/token-exchange.js";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { LRUCache } from "lru-cache";
import type {
  AccessTokenRequest,
  AccessTokenResult,
  Authority,
  AuthorityRelations,
  IdentityFilter,
  IssueOptions,
  IssueResult,
} from "../authority/authority-api.js";
import type { IssuedSvid } from "../authority/ca.js";
import type { IdentityLink, IdentityRecord, LinkType, PolicyEntry, RegisterRequest } from "../authority/registry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { parsePolicy, type PolicyDocument } from "../policy/policy.js";
import { loadBundleFile, TrustBundle, type BundleSet, type SpiffeBundleDocument } from "../spiffe/bundle.js";
import { Certificate } from "../spiffe/certificate.js";
import { encodePem } from "../spiffe/pem.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { verifyX509Svid } from "../spiffe/x509svid.js";
import { isLoopbackHost } from "../net/loopback.js";
import { AuthorityHttp, type FormValue } from "./authority-http.js";
import {
  BundleFeed,
  DEFAULT_REFRESH_HINT_SECONDS,
  defaultWarning,
  RefreshLoop,
  type FeedWarning,
} from "./bundle-feed.js";
import { RemoteAuditLog } from "./remote-audit.js";
import { RevocationFeed } from "./revocation-feed.js";
import { RemoteWorkloadEntryStore, type RemoteWorkloadEntryStoreOptions } from "./remote-workload-entries.js";

export interface RemoteAuthorityOptions {
  /** The service, e.g. https://aztp.internal:8443 (plain http only to loopback, or with allowInsecureHttp). */
  baseUrl: string;
  /** `aztp_<keyId>_<secret>`, from `aztp apikey create`; without one only the feeds are read. */
  apiKey?: string | undefined;
  /** A folder of this process's own: where the default audit logs of its identities live. */
  home: string;
  /**
   * What the service is checked against: a bundle file (PEM or SPIFFE bundle JSON), its text,
   * or a TrustBundle; else AZTP_TRUST_BUNDLE. Required over https. Over plain http to loopback
   * without one, the bundle is taken from the service's bundle endpoint.
   */
  trustBundle?: string | TrustBundle | undefined;
  /** Plain http to a host that is not loopback (behind a TLS-terminating proxy you trust). */
  allowInsecureHttp?: boolean | undefined;
  /** The URI SAN the server's certificate must carry (default spiffe://TD/aztp/serve, TD the trust bundle's). */
  serverId?: string | undefined;
  /** How often the feeds and cached records are refreshed (default: what the service says, else 30 s). */
  refreshHintSeconds?: number | undefined;
  /**
   * A revocation list answers until its signed nextUpdate (the service renews it every hint);
   * this bounds its age further, counted from when it was signed (default: the window alone).
   */
  maxStalenessSeconds?: number | undefined;
  /**
   * Clock skew tolerated between the service and this process on either side of a revocation list's
   * signed window (default 30 s).
   */
  clockToleranceSeconds?: number | undefined;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number | undefined;
  /** Where the feeds report refused or failed refreshes (default: process.emitWarning). */
  onWarning?: FeedWarning | undefined;
}

/** One record this client holds, with its parsed policies (parsed once per record version, so policy caches hit). */
interface CachedRecord {
  record: IdentityRecord;
  policies: Map<string, readonly PolicyDocument[]>;
}

/** Records held at most (the least recently used go first); identities a process issues are few. */
const MAX_CACHED_RECORDS = 10_000;
/** Records re-read per refresh round (see refreshRecords). */
const MAX_REFRESH_PER_ROUND = 256;
/** Parent chains are short; a longer one is a cycle or an attack. */
const MAX_ANCESTRY = 64;

export class RemoteAuthority implements Authority {
  readonly home: string;
  readonly #http: AuthorityHttp;
  readonly #bundles: BundleFeed;
  readonly #revocations: RevocationFeed;
  readonly #records = new LRUCache<string, CachedRecord>({ max: MAX_CACHED_RECORDS });
  readonly #recordLoop: RefreshLoop;
  #defaultTrustDomain: string;
  #trustDomains: string[];
  #closed = false;
  readonly #warn: FeedWarning;
  readonly #oauthIssuer: string;

  private constructor(init: {
    oauthIssuer: string;
    home: string;
    http: AuthorityHttp;
    bundles: BundleFeed;
    revocations: RevocationFeed;
    defaultTrustDomain: string;
    trustDomains: string[];
    hint: number;
    warn: FeedWarning;
  }) {
    this.home = init.home;
    this.#oauthIssuer = init.oauthIssuer;
    this.#warn = init.warn;
    this.#http = init.http;
    this.#bundles = init.bundles;
    this.#revocations = init.revocations;
    this.#defaultTrustDomain = init.defaultTrustDomain;
    this.#trustDomains = init.trustDomains;
    this.#recordLoop = new RefreshLoop(
      () => init.hint,
      () => this.refreshRecords().catch(() => undefined),
    );
  }

  /**
   * Connects to the service: checks the transport rules (https with a trust bundle, or http to
   * loopback), learns its trust domains, and fetches every bundle and revocation list once
   * before returning, so the first check answers from verified state. Fails with the
   * transport's error when the service cannot be reached.
   */
  static async connect(options: RemoteAuthorityOptions): Promise<RemoteAuthority> {
    if (options === null || typeof options !== "object" || typeof options.baseUrl !== "string") {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "RemoteAuthority.connect needs { baseUrl, home }");
    }
    if (typeof options.home !== "string" || options.home === "")
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "RemoteAuthority.connect needs a home folder (for the default audit logs)",
      );
    const warn = options.onWarning ?? defaultWarning;
    // A bundle file names no trust domain; a serverId given says which one it is for.
    const serverIdTd = options.serverId === undefined ? undefined : SpiffeId.parse(options.serverId).trustDomain;
    const initial = readTrustBundle(options.trustBundle ?? process.env.AZTP_TRUST_BUNDLE, serverIdTd);
    // The feed is built after the transport, which asks it for roots per connection.
    let feed: BundleFeed | undefined;
    let serverTd = initial?.trustDomain;
    const http = new AuthorityHttp({
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      allowInsecureHttp: options.allowInsecureHttp,
      timeoutMs: options.timeoutMs,
      roots: () => (serverTd === undefined ? undefined : (feed?.getBundleForTrustDomain(serverTd) ?? initial)?.toPem()),
      serverId: () => options.serverId ?? `spiffe://${serverTd ?? "unknown.invalid"}/aztp/serve`,
    });
    if (http.secure && initial === undefined) {
      http.close();
      throw new AztpError(
        ErrorCodes.AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING,
        `${http.baseUrl.origin} is https, but there is no trust bundle to check it against: pass trustBundle (a PEM or SPIFFE bundle file of the service's trust domain), --trust-bundle FILE, or set AZTP_TRUST_BUNDLE`,
      );
    }
    if (!http.secure && initial === undefined && !isLoopbackHost(http.baseUrl.hostname)) {
      // Taking the bundle from the endpoint is safe only when no other machine is on the path.
      http.close();
      throw new AztpError(
        ErrorCodes.AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING,
        `${http.baseUrl.origin} is plain http to another machine: its bundle cannot be taken from the wire. Pass trustBundle (the service's bundle file), --trust-bundle FILE, or set AZTP_TRUST_BUNDLE`,
      );
    }
    try {
      let bootstrap = initial;
      if (bootstrap === undefined) {
        // Plain http to loopback: this machine is the only one on the path, so the bundle the
        // service publishes is taken as it is (its trust domain read from the root's URI SAN).
        const doc = await http.get<SpiffeBundleDocument>(".well-known/spiffe/bundle", { auth: false });
        bootstrap = loadBundleFile(JSON.stringify(doc));
        serverTd = bootstrap.trustDomain;
      }
      const info = options.apiKey !== undefined ? await authorityInfo(http) : undefined;
      const defaultTrustDomain = info?.defaultTrustDomain ?? bootstrap.trustDomain;
      const trustDomains = info?.trustDomains ?? [defaultTrustDomain];
      const hint =
        positive(options.refreshHintSeconds) ??
        positive(info?.refreshHintSeconds) ??
        positive(bootstrap.refreshHint) ??
        DEFAULT_REFRESH_HINT_SECONDS;
      feed = new BundleFeed(http, {
        initial: [bootstrap],
        refreshHintSeconds: hint,
        fixedRefreshHintSeconds: positive(options.refreshHintSeconds),
        onWarning: warn,
      });
      for (const td of trustDomains) feed.addTrustDomain(td);
      await feed.refreshAll();
      const revocations = new RevocationFeed(http, feed, {
        trustDomains,
        refreshHintSeconds: hint,
        maxStalenessSeconds: options.maxStalenessSeconds,
        clockToleranceSeconds: options.clockToleranceSeconds,
        onWarning: warn,
        refreshBundle: (td) => (feed as BundleFeed).refresh(td),
      });
      await revocations.refreshAll();
      const oauthIssuer = await issuerOf(http);
      const authority = new RemoteAuthority({
        oauthIssuer,
        home: resolve(options.home),
        http,
        bundles: feed,
        revocations,
        defaultTrustDomain,
        trustDomains,
        hint,
        warn,
      });
      feed.start();
      revocations.start();
      authority.#recordLoop.start();
      return authority;
    } catch (e) {
      feed?.stop();
      http.close();
      throw e;
    }
  }

  get defaultTrustDomain(): string {
    return this.#defaultTrustDomain;
  }

  /**
   * The service's OAuth issuer identifier, as its RFC 8414 metadata names it (read at connect):
   * its public URL, which is not the base URL behind a proxy (`aztp serve --public-url`). The
   * base URL for a service without the metadata.
   */
  get oauthIssuer(): string {
    return this.#oauthIssuer;
  }

  /**
   * An access token for `id` from the service's token endpoint, the client authenticated by
   * `assertion` (private_key_jwt signed with the identity's SVID key, addressed to the issuer).
   * The API key, when this client has one, is sent too: the service holds the request to its
   * scope.
   */
  async accessToken(
    id: string,
    request: AccessTokenRequest,
    assertion: (audience: string) => string,
  ): Promise<AccessTokenResult> {
    const clientId = SpiffeId.parse(id).toString();
    const params: Record<string, string> = {
      grant_type: "client_credentials",
      client_id: clientId,
      client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
      client_assertion: assertion(this.#oauthIssuer),
      resource: request.resource,
    };
    if (request.scopes !== undefined && request.scopes.length > 0) params.scope = request.scopes.join(" ");
    const sent = Date.now();
    const answer = await this.#http.postForm<Record<string, unknown>>("oauth/token", params);
    const { access_token: accessToken, token_type: tokenType, expires_in: expiresIn, scope } = answer;
    if (
      typeof accessToken !== "string" ||
      typeof tokenType !== "string" ||
      tokenType.toLowerCase() !== "bearer" ||
      typeof expiresIn !== "number" ||
      (scope !== undefined && typeof scope !== "string")
    )
      throw answerInvalid("POST /oauth/token", "access_token/token_type/expires_in/scope");
    return {
      accessToken,
      tokenType: "Bearer",
      expiresIn,
      expiresAt: new Date(sent + expiresIn * 1000),
      scopes: typeof scope === "string" && scope !== "" ? scope.split(" ") : [],
    };
  }

  /**
   * RFC 8693 token exchange at the service's token endpoint: the actor authenticates with
   * `actor_token`, a private_key_jwt signed by its SVID key (addressed to the issuer), whose key
   * the token is then bound to. The answer is read as a callee reads it (signature against the
   * bundle, act chain, binding to `proof.key`) before it is handed back. RFC 8693 has no lifetime
   * parameter: `ttlSeconds` is not sent, and the service's default lifetime applies.
   */
  async exchangeToken(
    id: string,
    request: TokenExchangeRequest,
    proof: { key: KeyObject; assertion: (audience: string) => string },
  ): Promise<TokenExchangeResult> {
    const actorId = SpiffeId.parse(id).toString();
    const params: Record<string, FormValue> = {
      grant_type: TOKEN_EXCHANGE_GRANT,
      subject_token: request.subjectToken,
      subject_token_type: request.subjectTokenType,
      actor_token: proof.assertion(this.#oauthIssuer),
      actor_token_type: TOKEN_TYPE.jwt,
      requested_token_type: TOKEN_TYPE.jwt,
    };
    if (request.resources !== undefined && request.resources.length > 0) params.resource = [...request.resources];
    if (request.scopes !== undefined && request.scopes.length > 0) params.scope = request.scopes.join(" ");
    const answer = await this.#http.postForm<Record<string, unknown>>("oauth/token", params);
    const { access_token: token, issued_token_type: issued, token_type: tokenType } = answer;
    if (typeof token !== "string" || issued !== TOKEN_TYPE.jwt || tokenType !== "N_A")
      throw answerInvalid("POST /oauth/token (token exchange)", "access_token/issued_token_type/token_type");
    let read: VerifiedOnBehalfOf;
    try {
      read = readOnBehalfOf(token, { trust: this.#trust(), now: new Date() });
    } catch (e) {
      // A JWT key rotated in since the bundle was last fetched: fetch it once and read again.
      if (!(e instanceof AztpError && e.rule === "kid")) throw e;
      await this.#bundles.refreshAll();
      read = readOnBehalfOf(token, { trust: this.#trust(), now: new Date() });
    }
    if (read.actors[read.actors.length - 1] !== actorId || read.claims.cnf.jkt !== keyThumbprint(proof.key))
      throw new AztpError(
        ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
        `POST /oauth/token (token exchange): the token is not bound to ${actorId}'s key`,
        { rule: "binding" },
      );
    return {
      token,
      issuedTokenType: TOKEN_TYPE.jwt,
      person: read.person,
      actors: read.actors,
      audience: read.audience,
      scopes: read.scopes,
      expiresAt: read.expiresAt,
    };
  }

  #trustHeld: Trust | undefined;

  /** The service's bundles and revocations as verified here: what reads an on-behalf-of token. */
  #trust(): Trust {
    this.#trustHeld ??= new Trust(this, { revocation: { isRevoked: (id, serial) => this.isRevoked(id, serial) } });
    return this.#trustHeld;
  }

  #personIssuersPath(trustDomain: string | undefined): string {
    const td = trustDomain === undefined ? this.#defaultTrustDomain : TrustDomain.parse(trustDomain).name;
    return `v1/trust-domains/${encodeURIComponent(td)}/person-issuers`;
  }

  /** The OpenID Providers the service's trust domain trusts (GET /v1/trust-domains/<td>/person-issuers). */
  async personIssuers(trustDomain?: string): Promise<PersonIssuerConfig[]> {
    const path = this.#personIssuersPath(trustDomain);
    const answer = await this.#http.get<{ issuers?: unknown }>(path);
    if (!Array.isArray(answer.issuers)) throw answerInvalid(`GET /${path}`, "issuers");
    try {
      return answer.issuers.map((c) => checkPersonIssuerConfig(c));
    } catch {
      throw answerInvalid(`GET /${path}`, "issuers");
    }
  }

  /** Trusts `config`'s provider in the service's trust domain (a key covering the whole trust domain). */
  async addPersonIssuer(config: PersonIssuerConfig, trustDomain?: string): Promise<PersonIssuerConfig> {
    const checked = checkPersonIssuerConfig(config);
    const path = this.#personIssuersPath(trustDomain);
    const answer = await this.#http.post<{ issuer?: unknown }>(path, { config: checked });
    try {
      return checkPersonIssuerConfig(answer.issuer);
    } catch {
      throw answerInvalid(`POST /${path}`, "issuer");
    }
  }

  /** Stops trusting `issuer` in the service's trust domain; false when it was not trusted there. */
  async removePersonIssuer(issuer: string, trustDomain?: string): Promise<boolean> {
    const path = `${this.#personIssuersPath(trustDomain)}/remove`;
    const answer = await this.#http.post<{ removed?: unknown }>(path, { issuer });
    if (typeof answer.removed !== "boolean") throw answerInvalid(`POST /${path}`, "removed");
    return answer.removed;
  }

  get trustDomains(): readonly string[] {
    return [...this.#trustDomains];
  }

  /** The bundle feed (what verifiers trust), for callers that refresh it by hand. */
  get bundleFeed(): BundleFeed {
    return this.#bundles;
  }

  /** The revocation feed (what isRevoked answers from). */
  get revocationFeed(): RevocationFeed {
    return this.#revocations;
  }

  /** The sequence of the revocation list held for `trustDomain` (default: the default one). */
  revocationSequence(trustDomain = this.#defaultTrustDomain): number | undefined {
    return this.#revocations.sequence(trustDomain);
  }

  // ---- management calls, over HTTP ----

  async issueIdentity(req: RegisterRequest, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    const answer = await this.#http.post<{ record?: unknown; svid?: unknown }>("v1/identities", {
      request: req,
      csr: csrPem(csr),
      ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
    });
    return this.#issued(answer, "POST /v1/identities");
  }

  async renewSvid(id: string, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    const answer = await this.#http.post<{ record?: unknown; svid?: unknown }>("v1/identities/renew", {
      id: SpiffeId.parse(id).toString(),
      csr: csrPem(csr),
      ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
    });
    return this.#issued(answer, "POST /v1/identities/renew");
  }

  /** An issue answer, checked: the chain must verify against the bundle held and name the record's ID. */
  async #issued(answer: { record?: unknown; svid?: unknown }, where: string): Promise<IssueResult> {
    const record = recordOf(answer.record, where);
    const svid = svidOf(answer.svid, where);
    // A trust domain the service added for this request (issuing into a new one creates it):
    // the feeds fetch it now, so the SVID can be checked and its revocations answered.
    if (!this.#trustDomains.includes(record.trustDomain)) await this.#addTrustDomain(record.trustDomain);
    const chain = Certificate.parsePem(svid.chainPem);
    const check = (): void => {
      const verified = verifyX509Svid(chain, this.#bundles);
      if (verified.id.toString() !== record.spiffeId) {
        throw new AztpError(
          ErrorCodes.AUTHORITY_REMOTE_UNTRUSTED,
          `${where}: the SVID issued is for ${verified.id.toString()}, not ${record.spiffeId}`,
          { rule: "svid" },
        );
      }
    };
    try {
      check();
    } catch (e) {
      // The CA may have rotated since the bundle was fetched: refresh once, then judge.
      if (e instanceof AztpError && e.rule === "svid") throw e;
      await this.#bundles.refresh(record.trustDomain).catch(() => false);
      try {
        check();
      } catch (again) {
        throw new AztpError(
          ErrorCodes.AUTHORITY_REMOTE_UNTRUSTED,
          `${where}: the SVID issued does not verify against the trust bundle held (${(again as Error).message})`,
          { cause: again, rule: "svid" },
        );
      }
    }
    this.#hold(record);
    return { record: structuredClone(record), svid };
  }

  async #addTrustDomain(trustDomain: string): Promise<void> {
    const td = TrustDomain.parse(trustDomain).name;
    this.#bundles.addTrustDomain(td);
    this.#revocations.addTrustDomain(td);
    await this.#bundles.refresh(td);
    await this.#revocations.refresh(td);
    if (!this.#trustDomains.includes(td)) this.#trustDomains = [...this.#trustDomains, td];
  }

  /**
   * Registers `spiffeId` as it is (any path of a trust domain the service holds) or finds its
   * active record, issuing nothing (POST /v1/identities/register): the identity of a Workload
   * API entry, as EmbeddedAuthority.registerSpiffeId, so `registerWorkloadEntry` works on this
   * authority too. The key must cover the ID.
   */
  async registerSpiffeId(
    spiffeId: string,
    options: { metadata?: Record<string, unknown> } = {},
  ): Promise<IdentityRecord> {
    const answer = await this.#http.post<{ record?: unknown }>("v1/identities/register", {
      spiffeId: SpiffeId.parse(spiffeId).toString(),
      ...(options.metadata !== undefined ? { metadata: options.metadata } : {}),
    });
    const record = recordOf(answer.record, "POST /v1/identities/register");
    this.#hold(record);
    return structuredClone(record);
  }

  /**
   * The service's Workload API registration entries (`/v1/workload-entries`), on this
   * authority's transport: those whose SPIFFE ID the key covers. Closed with the authority.
   */
  workloadEntries(options: RemoteWorkloadEntryStoreOptions = {}): RemoteWorkloadEntryStore {
    return new RemoteWorkloadEntryStore(this.#http, options);
  }

  /**
   * The record of `id` as this client holds it (issued through it, or read once), without a
   * request: undefined for one it has never seen. For synchronous readers such as an
   * identity's status.
   */
  heldRecord(id: string): IdentityRecord | undefined {
    const parsed = this.#parseId(id);
    const held = parsed === undefined ? undefined : this.#records.get(parsed.key);
    return held === undefined ? undefined : structuredClone(held.record);
  }

  async mintJwtSvid(id: string, audience: string | string[], ttlSeconds?: number): Promise<string> {
    const answer = await this.#http.post<{ token?: unknown }>("v1/identities/jwt-svid", {
      id: SpiffeId.parse(id).toString(),
      audience,
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
    });
    if (typeof answer.token !== "string") throw answerInvalid("POST /v1/identities/jwt-svid", "token");
    return answer.token;
  }

  async get(id: string): Promise<IdentityRecord> {
    return structuredClone((await this.#fetchRecord(SpiffeId.parse(id).toString())).record);
  }

  async find(id: string): Promise<IdentityRecord | undefined> {
    let key: string;
    try {
      key = SpiffeId.parse(id).toString();
    } catch {
      return undefined;
    }
    try {
      return structuredClone((await this.#fetchRecord(key)).record);
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.IDENTITY_NOT_FOUND) return undefined;
      throw e;
    }
  }

  async findByName(name: string, trustDomain?: string): Promise<IdentityRecord | undefined> {
    const q = new URLSearchParams({ name });
    if (trustDomain !== undefined) q.set("trustDomain", TrustDomain.parse(trustDomain).name);
    try {
      const answer = await this.#http.get<{ record?: unknown }>(`v1/identities?${q.toString()}`);
      const record = recordOf(answer.record, "GET /v1/identities?name");
      this.#hold(record);
      return structuredClone(record);
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.IDENTITY_NOT_FOUND) return undefined;
      throw e;
    }
  }

  async list(filter: IdentityFilter = {}): Promise<IdentityRecord[]> {
    const q = new URLSearchParams();
    if (filter.status !== undefined) q.set("status", filter.status);
    if (filter.trustDomain !== undefined) q.set("trustDomain", TrustDomain.parse(filter.trustDomain).name);
    const qs = q.toString();
    const answer = await this.#http.get<{ identities?: unknown }>(`v1/identities${qs === "" ? "" : `?${qs}`}`);
    if (!Array.isArray(answer.identities)) throw answerInvalid("GET /v1/identities", "identities");
    return answer.identities.map((r) => recordOf(r, "GET /v1/identities"));
  }

  async connected(a: string, b: string): Promise<boolean> {
    const q = new URLSearchParams({ a: SpiffeId.parse(a).toString(), b: SpiffeId.parse(b).toString() });
    const answer = await this.#http.get<{ connected?: unknown }>(`v1/connected?${q.toString()}`);
    if (typeof answer.connected !== "boolean") throw answerInvalid("GET /v1/connected", "connected");
    return answer.connected;
  }

  /**
   * Revokes `id` and its descendants, then fetches the revocation list before returning, so
   * this process's own checks see the revocation at once (other processes: within the hint).
   */
  async revoke(id: string, reason: string): Promise<string[]> {
    const key = SpiffeId.parse(id).toString();
    const answer = await this.#http.post<{ revoked?: unknown }>("v1/identities/revoke", { id: key, reason });
    if (!Array.isArray(answer.revoked) || !answer.revoked.every((r) => typeof r === "string"))
      throw answerInvalid("POST /v1/identities/revoke", "revoked");
    const revoked = answer.revoked as string[];
    await this.#afterWrite(SpiffeId.parse(key).trustDomain, [key, ...revoked]);
    return revoked;
  }

  async reissue(id: string): Promise<IdentityRecord> {
    const key = SpiffeId.parse(id).toString();
    const answer = await this.#http.post<{ record?: unknown }>("v1/identities/reissue", { id: key });
    const record = recordOf(answer.record, "POST /v1/identities/reissue");
    this.#hold(record);
    await this.#afterWrite(record.trustDomain, []);
    return structuredClone(record);
  }

  async link(
    source: string,
    target: string,
    type: LinkType,
    metadata: Record<string, unknown> = {},
  ): Promise<IdentityLink> {
    const s = SpiffeId.parse(source).toString();
    const t = SpiffeId.parse(target).toString();
    const answer = await this.#http.post<{ link?: unknown }>("v1/links", { source: s, target: t, type, metadata });
    if (typeof answer.link !== "object" || answer.link === null) throw answerInvalid("POST /v1/links", "link");
    // relations(source) must answer with the new link at once: re-read both ends.
    await Promise.all([
      this.#fetchRecord(s).catch(() => undefined),
      this.#records.has(t) ? this.#fetchRecord(t).catch(() => undefined) : undefined,
    ]);
    return answer.link as IdentityLink;
  }

  async attachPolicy(id: string, document: unknown, policyName?: string): Promise<PolicyEntry> {
    const key = SpiffeId.parse(id).toString();
    const answer = await this.#http.post<{ policy?: unknown }>("v1/policies", {
      id: key,
      document,
      ...(policyName !== undefined ? { policyName } : {}),
    });
    const entry = answer.policy as PolicyEntry | undefined;
    if (typeof entry !== "object" || entry === null || typeof entry.code !== "string")
      throw answerInvalid("POST /v1/policies", "policy");
    // The cache changes at once, so the next call to this identity is judged by the new policy.
    const held = this.#records.get(key);
    if (held !== undefined) {
      const record = structuredClone(held.record);
      record.policies = [...record.policies.filter((p) => p.code !== entry.code), entry];
      this.#hold(record);
    }
    return entry;
  }

  async detachPolicy(id: string, code: string): Promise<boolean> {
    const key = SpiffeId.parse(id).toString();
    const answer = await this.#http.post<{ detached?: unknown }>("v1/policies/detach", { id: key, code });
    if (typeof answer.detached !== "boolean") throw answerInvalid("POST /v1/policies/detach", "detached");
    const held = this.#records.get(key);
    if (held !== undefined && answer.detached) {
      const record = structuredClone(held.record);
      record.policies = record.policies.filter((p) => p.code !== code);
      this.#hold(record);
    }
    return answer.detached;
  }

  // ---- the tool call's path: from held state ----

  /**
   * From the revocation feed: the identity, an ancestor this client knows of (the list names a
   * revoked identity's descendants already; the walk covers a child it issued later), or the
   * serial. Throws ERR_REVOCATION_LIST_EXPIRED once the held list is past its signed window (fails closed).
   */
  isRevoked(id: string, serial?: string): boolean {
    const parsed = this.#parseId(id);
    if (parsed === undefined) return true; // not an ID at all: never "not revoked"
    if (this.#revocations.isRevokedParsed(parsed.key, parsed.td, serial)) return true;
    let parent = this.#records.peek(parsed.key)?.record.parentIdentity ?? null;
    if (parent === null) return false;
    const seen = new Set<string>([parsed.key]);
    while (parent !== null) {
      const p = this.#parseId(parent);
      if (p === undefined) return true; // a parent that is not an ID names no one trustworthy
      if (seen.has(p.key) || seen.size > MAX_ANCESTRY) return true;
      seen.add(p.key);
      if (this.#revocations.isRevokedParsed(p.key, p.td, undefined)) return true;
      parent = this.#records.peek(p.key)?.record.parentIdentity ?? null;
    }
    return false;
  }

  /** IDs as they come (AZTP or SPIFFE, any case), parsed once: the revocation check is on every call. */
  readonly #ids = new Map<string, { key: string; td: string }>();

  #parseId(id: string): { key: string; td: string } | undefined {
    const hit = this.#ids.get(id);
    if (hit !== undefined) return hit;
    let parsed: SpiffeId;
    try {
      parsed = SpiffeId.parse(id);
    } catch {
      return undefined;
    }
    // Bounded: a flood of distinct IDs costs a re-parse, never memory.
    if (this.#ids.size >= MAX_CACHED_RECORDS) this.#ids.clear();
    const entry = { key: parsed.toString(), td: parsed.trustDomain };
    this.#ids.set(id, entry);
    return entry;
  }

  policiesOf(id: string, code?: string): readonly PolicyDocument[] | Promise<readonly PolicyDocument[]> {
    const key = SpiffeId.parse(id).toString();
    const held = this.#records.get(key);
    if (held !== undefined) return docsOf(held, code);
    return this.#fetchRecord(key).then((fetched) => docsOf(fetched, code));
  }

  relations(id: string): AuthorityRelations | undefined | Promise<AuthorityRelations | undefined> {
    const key = SpiffeId.parse(id).toString();
    const held = this.#records.get(key);
    if (held !== undefined) return relationsOf(held.record);
    return this.#fetchRecord(key).then(
      (fetched) => relationsOf(fetched.record),
      (e: unknown) => {
        if (e instanceof AztpError && e.code === ErrorCodes.IDENTITY_NOT_FOUND) return undefined;
        throw e;
      },
    );
  }

  bundle(trustDomain = this.#defaultTrustDomain): TrustBundle {
    const b = this.#bundles.getBundleForTrustDomain(TrustDomain.parse(trustDomain).name);
    if (b === undefined)
      throw new AztpError(
        ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
        `the remote authority serves no trust domain ${trustDomain} (it serves ${this.#trustDomains.join(", ")})`,
      );
    return b;
  }

  bundleSet(): BundleSet {
    return this.#bundles.bundleSet();
  }

  getBundleForTrustDomain(td: string): TrustBundle | undefined {
    return this.#bundles.getBundleForTrustDomain(td);
  }

  get version(): number {
    return this.#bundles.version;
  }

  /** Where the next refreshRecords() round starts among the records held (they are taken in turn). */
  #refreshCursor = 0;

  /**
   * Re-reads records held (the loop does this on the hint), at most MAX_REFRESH_PER_ROUND per
   * round, taking them in turn: a client holding many records asks for a bounded number per
   * hint, and each record is re-read within ceil(held / MAX_REFRESH_PER_ROUND) hints. One gone
   * from the service is dropped.
   */
  async refreshRecords(): Promise<void> {
    const all = [...this.#records.keys()].sort();
    if (all.length === 0) return;
    const start = this.#refreshCursor % all.length;
    const keys = [...all.slice(start), ...all.slice(0, start)].slice(0, MAX_REFRESH_PER_ROUND);
    this.#refreshCursor = start + keys.length;
    for (let i = 0; i < keys.length; i += 8) {
      await Promise.all(
        keys.slice(i, i + 8).map((k) =>
          this.#fetchRecord(k).catch((e: unknown) => {
            if (e instanceof AztpError && e.code === ErrorCodes.IDENTITY_NOT_FOUND) this.#records.delete(k);
          }),
        ),
      );
    }
  }

  /** Refreshes the bundles, the revocation lists and the records now (the loops do it on the hint). */
  async refresh(): Promise<void> {
    await this.#bundles.refreshAll();
    await this.#revocations.refreshAll();
    await this.refreshRecords();
  }

  /**
   * The service's shared audit log, as an AuditWriter for a wrapper's `audit` option: the calls
   * of every machine in one chain. One per authority.
   */
  auditLog(): RemoteAuditLog {
    this.#auditLog ??= new RemoteAuditLog(this.#http);
    return this.#auditLog;
  }

  #auditLog: RemoteAuditLog | undefined;

  async close(): Promise<void> {
    await this.#auditLog?.close();
    if (this.#closed) return;
    this.#closed = true;
    this.#bundles.stop();
    this.#revocations.stop();
    this.#recordLoop.stop();
    this.#http.close();
  }

  // ---- the record cache ----

  #hold(record: IdentityRecord): CachedRecord {
    const entry: CachedRecord = { record: deepFreeze(structuredClone(record)), policies: new Map() };
    this.#records.set(record.spiffeId, entry);
    return entry;
  }

  async #fetchRecord(key: string): Promise<CachedRecord> {
    const q = new URLSearchParams({ id: key });
    const answer = await this.#http.get<{ record?: unknown }>(`v1/identities?${q.toString()}`);
    const record = recordOf(answer.record, "GET /v1/identities?id");
    const held = this.#records.peek(record.spiffeId);
    // The same record again keeps its parsed policies (and the caches keyed on them) warm.
    if (held !== undefined && JSON.stringify(held.record) === JSON.stringify(record)) {
      this.#records.get(record.spiffeId);
      return held;
    }
    return this.#hold(record);
  }

  /** After a write: the revocation list fetched anew, and the records it touched re-read. */
  async #afterWrite(trustDomain: string, touched: string[]): Promise<void> {
    const refreshes: Array<Promise<unknown>> = [
      // The write is done either way; a list that cannot be fetched now is warned about and
      // the loop fetches it on the hint.
      this.#revocations.refreshAfterWrite(trustDomain).catch((e: unknown) => {
        this.#warn(
          e instanceof AztpError
            ? e
            : new AztpError(ErrorCodes.UNEXPECTED, String((e as Error)?.message ?? e), { cause: e }),
        );
      }),
    ];
    for (const id of new Set(touched)) {
      let key: string;
      try {
        key = SpiffeId.parse(id).toString();
      } catch {
        continue;
      }
      if (this.#records.has(key)) refreshes.push(this.#fetchRecord(key).catch(() => undefined));
    }
    await Promise.all(refreshes);
  }
}

function docsOf(held: CachedRecord, code: string | undefined): readonly PolicyDocument[] {
  const k = code ?? "";
  let docs = held.policies.get(k);
  if (docs === undefined) {
    docs = Object.freeze(
      held.record.policies
        .filter((p) => code === undefined || p.code === code)
        .map((p) => parsePolicy(p.policyStatement)),
    );
    held.policies.set(k, docs);
  }
  return docs;
}

function relationsOf(rec: IdentityRecord): AuthorityRelations {
  return {
    ...(rec.parentIdentity ? { parent: rec.parentIdentity } : {}),
    links: rec.links.filter((l) => l.type === "linked").map((l) => l.target),
  };
}

/**
 * The issuer identifier in the service's RFC 8414 metadata; the base URL when the service has
 * none (an older service) or it cannot be read now.
 */
async function issuerOf(http: AuthorityHttp): Promise<string> {
  const base = http.baseUrl.href.replace(/\/+$/, "");
  try {
    const doc = await http.get<{ issuer?: unknown }>(".well-known/oauth-authorization-server", { auth: false });
    return typeof doc.issuer === "string" && doc.issuer !== "" ? doc.issuer : base;
  } catch {
    return base;
  }
}

async function authorityInfo(
  http: AuthorityHttp,
): Promise<{ defaultTrustDomain: string; trustDomains: string[]; refreshHintSeconds?: number }> {
  const a = await http.get<{ defaultTrustDomain?: unknown; trustDomains?: unknown; refreshHintSeconds?: unknown }>(
    "v1/authority",
  );
  if (
    typeof a.defaultTrustDomain !== "string" ||
    !Array.isArray(a.trustDomains) ||
    !a.trustDomains.every((t) => typeof t === "string")
  ) {
    throw answerInvalid("GET /v1/authority", "defaultTrustDomain/trustDomains");
  }
  const trustDomains = (a.trustDomains as string[]).map((t) => TrustDomain.parse(t).name);
  const defaultTrustDomain = TrustDomain.parse(a.defaultTrustDomain).name;
  if (!trustDomains.includes(defaultTrustDomain)) trustDomains.unshift(defaultTrustDomain);
  return {
    defaultTrustDomain,
    trustDomains,
    ...(typeof a.refreshHintSeconds === "number" ? { refreshHintSeconds: a.refreshHintSeconds } : {}),
  };
}

/** trustBundle as given: a TrustBundle, PEM or SPIFFE JSON text, or the path of a file holding either. */
function readTrustBundle(
  value: string | TrustBundle | undefined,
  trustDomain: string | undefined,
): TrustBundle | undefined {
  if (value === undefined || value === "") return undefined;
  if (value instanceof TrustBundle) return value;
  if (typeof value !== "string")
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "trustBundle must be a file path, PEM or SPIFFE bundle text, or a TrustBundle",
    );
  const trimmed = value.trimStart();
  if (trimmed.startsWith("-----BEGIN") || trimmed.startsWith("{")) return loadBundleFile(value, trustDomain);
  let text: string;
  try {
    text = readFileSync(value, "utf8");
  } catch (e) {
    throw new AztpError(ErrorCodes.FILE_UNUSABLE, `trust bundle ${value}: ${(e as Error).message}`, { cause: e });
  }
  return loadBundleFile(text, trustDomain);
}

function csrPem(csr: Buffer | string): string {
  return typeof csr === "string" ? csr : encodePem("CERTIFICATE REQUEST", csr);
}

function positive(n: number | undefined): number | undefined {
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? n : undefined;
}

function answerInvalid(where: string, member: string): AztpError {
  return new AztpError(
    ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
    `${where}: the answer's "${member}" is missing or of the wrong type`,
    { rule: "shape" },
  );
}

function recordOf(value: unknown, where: string): IdentityRecord {
  const r = value as Partial<IdentityRecord> | null | undefined;
  if (
    typeof r !== "object" ||
    r === null ||
    typeof r.spiffeId !== "string" ||
    typeof r.aztpId !== "string" ||
    typeof r.name !== "string" ||
    typeof r.trustDomain !== "string" ||
    (r.status !== "active" && r.status !== "revoked") ||
    !Array.isArray(r.policies) ||
    !Array.isArray(r.links) ||
    !Array.isArray(r.serials)
  ) {
    throw answerInvalid(where, "record");
  }
  // The record's ID in its one form, so cache keys and revocation checks agree.
  const spiffeId = SpiffeId.parse(r.spiffeId).toString();
  return { ...(r as IdentityRecord), spiffeId };
}

function svidOf(value: unknown, where: string): IssuedSvid {
  const s = value as
    { serial?: unknown; notBefore?: unknown; notAfter?: unknown; chainPem?: unknown } | null | undefined;
  if (typeof s !== "object" || s === null || typeof s.serial !== "string" || typeof s.chainPem !== "string")
    throw answerInvalid(where, "svid");
  const notBefore = new Date(String(s.notBefore));
  const notAfter = new Date(String(s.notAfter));
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime()))
    throw answerInvalid(where, "svid.notBefore/notAfter");
  return { serial: s.serial, notBefore, notAfter, chainPem: s.chainPem };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
