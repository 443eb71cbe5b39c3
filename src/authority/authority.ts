/**
 * The authority in this process: CA, issuance, registry and revocation for one or more trust
 * domains, on a store. The embedded default keeps its state in a home folder (no server, no
 * account, no network); `aztp serve` runs the same authority on PostgreSQL, shared by its
 * replicas (store/open-stores.ts picks the store from a location).
 *
 * Layout of a home (file-ca-store.ts, file-registry-store.ts):
 *   authority.json                      { version, defaultTrustDomain, trustDomains }
 *   registry.json                       identities, links, policies, revocations (RegistryState)
 *   trust-domains/<td>/root.pem         root CA certificate (the X.509 bundle)
 *   trust-domains/<td>/intermediate.pem intermediate CA certificate (signs SVIDs)
 *   trust-domains/<td>/jwt.json         { kid } of the JWT-SVID signing key
 *   trust-domains/<td>/generation.json  { generation, createdAt } of this CA (rotation adds one)
 *   trust-domains/<td>/*-key.pem        private keys, mode 0600
 *   trust-domains/<td>/generations/<n>/ an older CA generation, until it retires (rotation)
 *
 * Every change is a read-modify-write of the newest committed registry, serialised across
 * processes by the store, so two processes issuing at once neither corrupt it nor lose each
 * other's writes; serials are 128 random bits, unique without coordination.
 */
import { createPublicKey, randomUUID, type JsonWebKey, type KeyObject } from "node:crypto";
import { resolve } from "node:path";
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, TrustBundle, type BundleSource } from "../spiffe/bundle.js";
import { verifyCsr } from "../spiffe/csr.js";
import { mintJwtSvid } from "../spiffe/jwtsvid.js";
import { isScopeToken, mintAccessToken } from "../oauth/access-token.js";
import { grantScopes, parseResource } from "../oauth/token-request.js";
import { peekClaims } from "../spiffe/jws.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { parsePolicy, policyCode, type PolicyDocument } from "../policy/policy.js";
import type {
  AccessTokenRequest,
  AccessTokenResult,
  Authority,
  AuthorityRelations,
  IdentityFilter,
  IssueOptions,
  IssueResult,
} from "./authority-api.js";
import { CertificateAuthority, checkSvidTtl, createCaKeyMaterial, lifetimeEnded, type IssuedSvid } from "./ca.js";
import type { AuthorityConfig, CaGeneration, CaStore } from "./ca-store.js";
import { FileCaStore } from "./file-ca-store.js";
import { FileRegistryStore } from "./file-registry-store.js";
import * as registry from "./registry.js";
import type { IdentityRecord, LinkType, RegisterRequest, RegistryState } from "./registry.js";
import type { RegistryStore } from "./registry-store.js";
import { DEFAULT_REVOCATION_LIST_VALIDITY_SECONDS, signRevocationList } from "./revocation-list.js";
import type { RegistrySnapshot } from "./snapshot.js";
import {
  checkPersonIssuerConfig,
  personIssuersFor,
  type PersonIssuerConfig,
  type PersonIssuers,
} from "../people/person-issuers.js";
import {
  exchangeToken,
  type TokenExchangeDeps,
  type TokenExchangeRequest,
  type TokenExchangeResult,
} from "../people/token-exchange.js";
import { keyThumbprint } from "../invocation/on-behalf-of.js";
import { Trust } from "../invocation/trust.js";
import { HomeStore } from "./store.js";

export const DEFAULT_TRUST_DOMAIN = "aztp.local";
export {
  DEFAULT_ENVIRONMENT,
  DEFAULT_METHOD,
  MAX_JWT_SVID_TTL_SECONDS,
  MAX_SPIFFE_ID_BYTES,
  workloadSpiffeId,
} from "./registry.js";
export type { RegisterRequest } from "./registry.js";
export type { IssueOptions, IssueResult } from "./authority-api.js";

/** The stores an authority runs on: a home folder's, or PostgreSQL's (store/open-stores.ts). */
export interface AuthorityStores {
  registry: RegistryStore;
  ca: CaStore;
}

export interface OpenOptions {
  trustDomain?: string | undefined;
  /** Create the authority when there is none yet. */
  create?: boolean | undefined;
  /** With `create`: finding one already there (even one created concurrently) is ERR_AUTHORITY_EXISTS. */
  exclusive?: boolean | undefined;
}

/** A trust domain's CAs: the newest signs; older generations stay in the bundle until they retire. */
interface LoadedTrustDomain {
  ca: CertificateAuthority;
  generations: CaGeneration[];
  /** JWT keys of the generations still in the bundle. */
  jwtKeys: Array<[string, KeyObject]>;
}

export class EmbeddedAuthority implements Authority, BundleSource {
  /** Where this process keeps its own files (the home folder; for PostgreSQL, the folder given). */
  readonly home: string;
  /** Where the state lives, for messages: the home folder or the PostgreSQL URL (no password). */
  readonly location: string;
  readonly #registry: RegistryStore;
  readonly #caStore: CaStore;
  private config: AuthorityConfig;
  readonly #tds = new Map<string, LoadedTrustDomain>();
  #oauthIssuer: string | undefined;
  #trust: Trust | undefined;

  private bundles: BundleSet | undefined;
  private bundlesVersion = 0;
  private configVersion: string | undefined;
  /** When the bundle next changes on its own: an older CA generation retiring. */
  #bundleValidUntil = Infinity;

  private constructor(home: string, stores: AuthorityStores, config: AuthorityConfig) {
    this.home = home;
    this.location = stores.registry.location;
    this.#registry = stores.registry;
    this.#caStore = stores.ca;
    this.config = config;
  }

  /**
   * Opens the authority in `home`, creating it (trust domain `trustDomain`, else
   * AZTP_TRUST_DOMAIN, else aztp.local) when `create` is true and none exists yet. With
   * `exclusive`, finding one already there (even one created concurrently) is ERR_AUTHORITY_EXISTS.
   */
  static async open(home: string, options: OpenOptions = {}): Promise<EmbeddedAuthority> {
    const store = new HomeStore(resolve(home));
    if (!store.exists("authority.json") && !options.create) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_NOT_INITIALIZED,
        `no authority in ${store.home}: run \`aztp init --trust-domain TD --home ${store.home}\``,
      );
    }
    return EmbeddedAuthority.fromStores(
      { registry: new FileRegistryStore(store), ca: new FileCaStore(store) },
      { ...options, home: store.home },
    );
  }

  /**
   * The authority on `stores` (a home folder's or PostgreSQL's), created there with `create`.
   * `home` is this process's own folder (default ./.aztp), for files that are never shared.
   */
  static async fromStores(
    stores: AuthorityStores,
    options: OpenOptions & { home?: string | undefined } = {},
  ): Promise<EmbeddedAuthority> {
    let config = await stores.ca.readConfig();
    if (config === undefined) {
      if (!options.create) {
        throw new AztpError(
          ErrorCodes.AUTHORITY_NOT_INITIALIZED,
          `no authority in ${stores.ca.location}: run \`aztp init --trust-domain TD\` there first`,
        );
      }
      const td = TrustDomain.parse(options.trustDomain ?? process.env.AZTP_TRUST_DOMAIN ?? DEFAULT_TRUST_DOMAIN).name;
      const created = await stores.ca.create(
        { version: 1, defaultTrustDomain: td, trustDomains: [td], createdAt: new Date().toISOString() },
        await createCaKeyMaterial(td),
      );
      // Another process won the race. `init` (exclusive) must not report a creation it did not make.
      if (!created && options.exclusive)
        throw new AztpError(
          ErrorCodes.AUTHORITY_EXISTS,
          `${stores.ca.location} already holds an authority (created concurrently)`,
        );
      config = await stores.ca.readConfig();
      if (config === undefined)
        throw new AztpError(
          ErrorCodes.AUTHORITY_STORE_FAILED,
          `${stores.ca.location}: the authority just created cannot be read back`,
        );
    }
    const authority = new EmbeddedAuthority(resolve(options.home ?? ".aztp"), stores, config);
    authority.configVersion = await stores.ca.configVersion();
    await authority.loadCas();
    return authority;
  }

  /** `aztp init`: creates a new authority; refuses to overwrite one. */
  static async init(home: string, trustDomain: string): Promise<EmbeddedAuthority> {
    const store = new HomeStore(resolve(home));
    if (store.exists("authority.json")) {
      const existing = store.readJson<AuthorityConfig>("authority.json");
      throw new AztpError(
        ErrorCodes.AUTHORITY_EXISTS,
        `${store.home} already holds an authority for ${existing.defaultTrustDomain}`,
      );
    }
    return EmbeddedAuthority.open(home, { trustDomain, create: true, exclusive: true });
  }

  /**
   * The issuer identifier (`iss`) of the access tokens this authority mints: the service's
   * public URL under `aztp serve`, else the default trust domain as a URI (`spiffe://<td>`),
   * which names no metadata to discover: in one process, resource servers check its tokens
   * offline from the bundle.
   */
  get oauthIssuer(): string {
    return this.#oauthIssuer ?? `spiffe://${this.defaultTrustDomain}`;
  }

  /** Sets the issuer identifier (`aztp serve` calls this with its public URL). */
  setOAuthIssuer(issuer: string): void {
    this.#oauthIssuer = issuer;
  }

  get defaultTrustDomain(): string {
    return this.config.defaultTrustDomain;
  }

  get trustDomains(): string[] {
    return [...this.config.trustDomains];
  }

  /** Loads the CAs of every trust domain not loaded yet (all of them with `reload`, after a rotation). */
  private async loadCas(reload = false): Promise<void> {
    for (const td of this.config.trustDomains) {
      if (this.#tds.has(td) && !reload) continue;
      const generations = await this.#caStore.loadCa(td);
      const newest = generations[0];
      if (newest === undefined)
        throw new AztpError(
          ErrorCodes.AUTHORITY_STORE_FAILED,
          `${this.#caStore.location} lists trust domain ${td} but holds no CA for it`,
        );
      const loaded = this.#tds.get(td);
      const ca =
        loaded !== undefined && loaded.generations[0]?.generation === newest.generation
          ? loaded.ca
          : await CertificateAuthority.load(newest.material);
      this.#tds.set(td, { ca, generations, jwtKeys: [] });
    }
    this.bundles = undefined;
  }

  /** Re-reads the configuration if another process added a trust domain or rotated a CA. */
  private async refreshConfig(): Promise<void> {
    const version = await this.#caStore.configVersion();
    if (version === this.configVersion) return;
    this.configVersion = version;
    const config = await this.#caStore.readConfig();
    if (config === undefined) return;
    const rotated = JSON.stringify(config.rotations ?? {}) !== JSON.stringify(this.config.rotations ?? {});
    this.config = config;
    await this.loadCas(rotated);
  }

  /**
   * For a replica that must answer from the committed state (`aztp serve` before each request
   * that depends on it): the newest registry, trust domains and CA generations.
   */
  async refresh(): Promise<void> {
    await this.#registry.fresh();
    await this.refreshConfig();
  }

  /** Adds a trust domain to this authority (the embedded authority accepts any valid name). */
  async ensureTrustDomain(trustDomain: string): Promise<string> {
    const td = TrustDomain.parse(trustDomain).name;
    if (this.#tds.has(td)) return td;
    this.config = await this.#caStore.addTrustDomain(td, () => createCaKeyMaterial(td));
    this.configVersion = await this.#caStore.configVersion();
    await this.loadCas();
    return td;
  }

  /**
   * CA rotation: a new intermediate under the same root, and a new JWT key. New SVIDs and
   * JWT-SVIDs come from the new generation at once. The old one stays in the bundle (its JWT
   * key next to the new one) until everything it signed has expired: the latest SVID expiry
   * in the registry, or the longest JWT-SVID lifetime from now, whichever is later. Live SVIDs
   * keep verifying throughout: their chains still end at the same root.
   */
  async rotateCa(trustDomain = this.defaultTrustDomain, now = new Date()): Promise<CaGeneration[]> {
    const td = TrustDomain.parse(trustDomain).name;
    const newest = this.#loaded(td).generations[0];
    if (newest === undefined) throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `no CA loaded for ${td}`);
    const { state } = await this.#registry.fresh();
    let retireAfter = now.getTime() + registry.MAX_JWT_SVID_TTL_SECONDS * 1000;
    for (const rec of Object.values(state.identities)) {
      if (rec.trustDomain === td && rec.notAfter !== undefined)
        retireAfter = Math.max(retireAfter, Date.parse(rec.notAfter));
    }
    const generations = await this.#caStore.rotate(
      td,
      await createCaKeyMaterial(td, now, newest.material),
      new Date(retireAfter),
    );
    this.configVersion = undefined;
    await this.refreshConfig();
    return generations;
  }

  #loaded(td: string): LoadedTrustDomain {
    const loaded = this.#tds.get(td);
    if (loaded === undefined)
      throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `this authority has no CA for trust domain ${td}`);
    return loaded;
  }

  private ca(td: string): CertificateAuthority {
    return this.#loaded(td).ca;
  }

  /** The registry as committed: the store's current snapshot (cheap; see RegistryStore.current). */
  private current(): RegistrySnapshot {
    return this.#registry.current();
  }

  /**
   * Read-modify-write of the newest committed registry (never the current snapshot, which
   * stays frozen); if `fn` fails, nothing is written.
   */
  private mutate<T>(fn: (state: RegistryState) => Promise<T> | T): Promise<T> {
    return this.#registry.mutate(fn);
  }

  /**
   * Registers `name` (or updates it if it exists: same AZTP ID, links and metadata merged)
   * and issues an X.509-SVID over the key in `csr`.
   */
  async issueIdentity(req: RegisterRequest, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    // Validate, then write: everything that can refuse the request runs before its first write,
    // the CA of a trust domain this authority does not have yet included.
    const td = TrustDomain.parse(req.trustDomain ?? this.defaultTrustDomain).name;
    const id = registry.workloadSpiffeId(
      td,
      req.environment ?? registry.DEFAULT_ENVIRONMENT,
      req.method ?? registry.DEFAULT_METHOD,
      req.name,
    );
    const now = options.now ?? new Date();
    registry.checkMetadata(req.metadata);
    if (!this.#tds.has(td)) {
      await this.refreshConfig(); // another process may have added it
      if (!this.#tds.has(td)) {
        await this.#checkIssuance(id, td, req, csr, options.ttlSeconds, now);
        await this.ensureTrustDomain(td);
      }
    }
    const early = await this.#signEarly(id, req.parentIdentity ?? null, req.name, csr, options.ttlSeconds, now);
    return this.mutate(async (state) => {
      const rec = registry.register(state, id, td, req, now);
      const svid = await this.signFor(state, rec, csr, options.ttlSeconds, now, early);
      return { record: structuredClone(rec), svid };
    });
  }

  /**
   * Everything that could refuse an issuance into the new trust domain of `id`, run before its
   * CA is made: the CSR and its proof of possession, the lifetime, and the registry's rules
   * (parent, links, the parent's lifetime cap) applied to a copy of the registry as committed
   * now. A writer that changes the registry between this check and the write (revoking the
   * parent, say) can still have the write refused after the CA exists; the CA then stands for a
   * trust domain the caller was authorised to create, with no identity in it.
   */
  async #checkIssuance(
    id: SpiffeId,
    td: string,
    req: RegisterRequest,
    csr: Buffer | string,
    ttlSeconds: number | undefined,
    now: Date,
  ): Promise<void> {
    await verifyCsr(csr);
    checkSvidTtl(ttlSeconds);
    const { state } = await this.#registry.fresh();
    const draft = structuredClone(state);
    const rec = registry.register(draft, id, td, req, now);
    const cap = registry.lifetimeCap(draft, rec);
    if (cap !== undefined && cap <= now) throw lifetimeEnded();
  }

  /**
   * Registers `spiffeId` as it is (any path of a trust domain this authority holds), or finds the
   * active record that exists, without issuing anything: what a Workload API entry names, so
   * that `revoke`, `renewSvid` and `mintJwtSvid` work on it as on any identity (its SVIDs are
   * issued later, to the workload that attests). Its name is the ID's last path segment, its
   * environment `workload-api`, its method `unix`. A revoked record is refused
   * (ERR_IDENTITY_REVOKED: reissue it first); a trust domain this authority does not hold is
   * ERR_TRUST_DOMAIN_NOT_ALLOWED, never created here.
   */
  async registerSpiffeId(
    spiffeId: string,
    options: { metadata?: Record<string, unknown> } = {},
  ): Promise<IdentityRecord> {
    const id = SpiffeId.parse(spiffeId);
    registry.checkMetadata(options.metadata);
    await this.#holdTrustDomain(id.trustDomain);
    return this.mutate((state) => structuredClone(registry.registerSpiffeId(state, id, options.metadata, new Date())));
  }

  /** Refuses a trust domain this authority holds no CA for (after looking again: another process may have added it). */
  async #holdTrustDomain(td: string): Promise<void> {
    if (this.#tds.has(td)) return;
    await this.refreshConfig();
    if (!this.#tds.has(td))
      throw new AztpError(
        ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
        `this authority holds no trust domain ${td} (it holds ${this.config.trustDomains.join(", ")})`,
      );
  }

  /** Rotation: a new SVID for an existing, active identity over a new key. */
  async renewSvid(id: string, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    const now = options.now ?? new Date();
    const known = this.find(id);
    const early =
      known === undefined
        ? undefined
        : await this.#signEarly(SpiffeId.parse(known.spiffeId), null, known.name, csr, options.ttlSeconds, now);
    return this.mutate(async (state) => {
      const rec = registry.getRecord(state, id);
      const svid = await this.signFor(state, rec, csr, options.ttlSeconds, now, early);
      return { record: structuredClone(rec), svid };
    });
  }

  /**
   * Signing takes milliseconds, and writers of the registry are serialised (across replicas, on
   * PostgreSQL): so an SVID is signed before the write, under the lifetime cap that the
   * registry as held now gives, and the write only checks that the cap it finds under its lock
   * still covers it (else it signs again there). An SVID signed early and not kept is never
   * handed out; one that would have failed fails again, with its error, in the write.
   */
  async #signEarly(
    id: SpiffeId,
    parentIdentity: string | null,
    name: string,
    csr: Buffer | string,
    ttlSeconds: number | undefined,
    now: Date,
  ): Promise<IssuedSvid | undefined> {
    await this.refreshConfig();
    const { state } = this.current();
    const parentId = parentIdentity ?? registry.findRecord(state, id.toString())?.parentIdentity ?? null;
    let cap: Date | undefined;
    if (parentId !== null) {
      const parent = registry.findRecord(state, parentId);
      if (parent === undefined) return undefined;
      for (const a of [parent, ...registry.ancestors(state, parent.spiffeId)]) {
        if (a.notAfter === undefined) return undefined;
        const na = new Date(a.notAfter);
        if (cap === undefined || na < cap) cap = na;
      }
    }
    try {
      return await this.ca(id.trustDomain).issueSvid(id, csr, {
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
        ...(cap ? { notAfterCap: cap } : {}),
        now,
        commonName: name,
      });
    } catch {
      return undefined;
    }
  }

  /**
   * Issues under the registry's rules (registry.lifetimeCap) and records the SVID; `early`, when
   * its lifetime is within the cap.
   */
  private async signFor(
    state: RegistryState,
    rec: IdentityRecord,
    csr: Buffer | string,
    ttlSeconds: number | undefined,
    now: Date,
    early?: IssuedSvid,
  ): Promise<IssuedSvid> {
    const cap = registry.lifetimeCap(state, rec);
    const svid =
      early !== undefined && (cap === undefined || early.notAfter <= cap)
        ? early
        : await this.ca(rec.trustDomain).issueSvid(SpiffeId.parse(rec.spiffeId), csr, {
            ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
            ...(cap ? { notAfterCap: cap } : {}),
            now,
            commonName: rec.name,
          });
    registry.recordSvid(rec, svid, now);
    return svid;
  }

  /**
   * Mints a JWT-SVID for an active identity with the trust domain's JWT key, for as long as
   * registry.jwtSvidTtl allows. It carries a `jti` (the JWT-SVID standard allows other claims), so
   * it can serve once as a client assertion at a token endpoint, which spends assertions by jti.
   */
  mintJwtSvid(id: string, audience: string | string[], ttlSeconds?: number, now = new Date()): string {
    const { state } = this.current();
    const rec = registry.getRecord(state, id);
    const ttl = registry.jwtSvidTtl(state, rec, ttlSeconds, now);
    const ca = this.ca(rec.trustDomain);
    return mintJwtSvid({
      subject: rec.spiffeId,
      audience,
      key: ca.jwtKey,
      kid: ca.jwtKid,
      ttlSeconds: ttl,
      now,
      claims: { jti: randomUUID() },
    });
  }

  /**
   * An OAuth access token (RFC 9068) for an active identity, signed with its trust domain's JWT
   * key so any holder of the bundle verifies it offline: `sub` and `client_id` the SPIFFE ID,
   * `aud` the resource. Never outlives an ancestor's SVID (the same cap as a JWT-SVID).
   */
  mintAccessToken(
    id: string,
    options: { issuer?: string; resource: string; scopes?: readonly string[]; ttlSeconds?: number; now?: Date },
  ): string {
    const now = options.now ?? new Date();
    const { state } = this.current();
    const rec = registry.getRecord(state, id);
    const cap = registry.lifetimeCap(state, rec);
    const ca = this.ca(rec.trustDomain);
    return mintAccessToken({
      issuer: options.issuer ?? this.oauthIssuer,
      subject: rec.spiffeId,
      audience: options.resource,
      scopes: options.scopes ?? [],
      key: ca.jwtKey,
      kid: ca.jwtKid,
      ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
      ...(cap !== undefined ? { notAfter: cap } : {}),
      now,
    });
  }

  /** The OpenID Providers trusted to say who a person is, in `trustDomain` (default: the default one). */
  personIssuers(trustDomain?: string): PersonIssuerConfig[] {
    const td = trustDomain === undefined ? this.defaultTrustDomain : TrustDomain.parse(trustDomain).name;
    return structuredClone(this.config.personIssuers?.[td] ?? []);
  }

  /** Trusts `config`'s provider in `trustDomain` (replacing its earlier configuration, if any). */
  async addPersonIssuer(config: PersonIssuerConfig, trustDomain?: string): Promise<PersonIssuerConfig> {
    const checked = checkPersonIssuerConfig(config);
    const td = trustDomain === undefined ? this.defaultTrustDomain : TrustDomain.parse(trustDomain).name;
    if (!this.#tds.has(td))
      throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `this authority holds no trust domain ${td}`);
    this.config = await this.#caStore.updateConfig((c) => {
      const all = { ...(c.personIssuers ?? {}) };
      all[td] = [...(all[td] ?? []).filter((i) => i.issuer !== checked.issuer), checked];
      return { ...c, personIssuers: all };
    });
    this.configVersion = await this.#caStore.configVersion();
    return structuredClone(checked);
  }

  /** Stops trusting `issuer` in `trustDomain`; false when it was not trusted there. */
  async removePersonIssuer(issuer: string, trustDomain?: string): Promise<boolean> {
    const td = trustDomain === undefined ? this.defaultTrustDomain : TrustDomain.parse(trustDomain).name;
    let removed = false;
    this.config = await this.#caStore.updateConfig((c) => {
      const all = { ...(c.personIssuers ?? {}) };
      const before = all[td] ?? [];
      const after = before.filter((i) => i.issuer !== issuer);
      removed = after.length !== before.length;
      if (after.length === 0) delete all[td];
      else all[td] = after;
      return { ...c, personIssuers: all };
    });
    this.configVersion = await this.#caStore.configVersion();
    return removed;
  }

  /** The verifier of `trustDomain`'s trusted providers (their keys cached while the configuration holds). */
  personIssuerVerifier(trustDomain: string): PersonIssuers {
    return personIssuersFor(this.config.personIssuers?.[trustDomain] ?? []);
  }

  /** This authority's own bundles and revocations, as a verifier holds them. */
  trust(): Trust {
    this.#trust ??= new Trust(this, { revocation: { isRevoked: (id, serial) => this.isRevoked(id, serial) } });
    return this.#trust;
  }

  /**
   * RFC 8693 token exchange, in this process (people/token-exchange.ts, the rule `aztp serve`'s
   * token endpoint runs): a person's token, or an on-behalf-of token to extend, for one bound to
   * `id`'s key. `proof.key` must be the public key of one of `id`'s unexpired SVIDs: the caller
   * holds the identity, so no assertion is asked for.
   */
  async exchangeToken(
    id: string,
    request: TokenExchangeRequest,
    proof: { key: KeyObject },
  ): Promise<TokenExchangeResult> {
    const rec = registry.getRecord(this.current().state, id);
    if (rec.status !== "active" || this.isRevoked(rec.spiffeId))
      throw new AztpError(ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED, `${rec.spiffeId} is revoked`, {
        rule: "revoked",
      });
    const jkt = keyThumbprint(proof.key);
    const now = Date.now();
    const known = (rec.svidKeys ?? []).some((k) => {
      if (Date.parse(k.notAfter) <= now) return false;
      try {
        return keyThumbprint(createPublicKey({ key: k.jwk as JsonWebKey, format: "jwk" })) === jkt;
      } catch {
        return false;
      }
    });
    if (!known)
      throw new AztpError(
        ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
        `the key offered is not the key of an unexpired SVID of ${rec.spiffeId}`,
        { rule: "key" },
      );
    return exchangeToken(request, { spiffeId: rec.spiffeId, key: proof.key }, this.exchangeDeps());
  }

  /** What the exchange rule needs of this authority (the token endpoint of `aztp serve` uses it too). */
  exchangeDeps(): TokenExchangeDeps {
    return {
      issuers: (td) => this.personIssuerVerifier(td),
      trust: this.trust(),
      parentOf: (sid) => {
        // Records name their parent by AZTP ID; the act chain speaks SPIFFE IDs.
        const parent = registry.findRecord(this.current().state, sid)?.parentIdentity;
        return parent == null ? undefined : SpiffeId.parse(parent).toString();
      },
      isRevoked: (sid) => this.isRevoked(sid),
      signingKey: (td) => {
        const ca = this.ca(td);
        return { key: ca.jwtKey, kid: ca.jwtKid };
      },
    };
  }

  /**
   * An access token for `id`, in this process: the scopes its policies allow (grantScopes, the
   * token endpoint's rule), minted as mintAccessToken does. The caller holds the identity (the
   * client's `accessToken`), so no assertion is asked for: `aztp serve`'s token endpoint is where
   * a client proves it.
   */
  async accessToken(id: string, request: AccessTokenRequest): Promise<AccessTokenResult> {
    const resource = parseResource(request.resource);
    const asked = request.scopes ?? [];
    const bad = asked.find((sc) => !isScopeToken(sc));
    if (bad !== undefined)
      throw new AztpError(ErrorCodes.OAUTH_SCOPE_INVALID, `not a scope token: ${JSON.stringify(bad).slice(0, 60)}`);
    const rec = registry.getRecord(this.current().state, id);
    if (rec.status !== "active" || this.isRevoked(rec.spiffeId))
      throw new AztpError(ErrorCodes.OAUTH_CLIENT_REVOKED, `${rec.spiffeId} is revoked: it gets no token`);
    const scopes = grantScopes({
      clientId: rec.spiffeId,
      resource,
      scopes: [...new Set(asked)],
      policies: this.policiesOf(rec.spiffeId),
      relations: this.relations(rec.spiffeId),
    });
    const now = new Date();
    const accessToken = this.mintAccessToken(rec.spiffeId, {
      resource,
      scopes,
      now,
      ...(request.ttlSeconds !== undefined ? { ttlSeconds: request.ttlSeconds } : {}),
    });
    const exp = peekClaims(accessToken)?.exp as number;
    return {
      accessToken,
      tokenType: "Bearer",
      expiresIn: Math.max(0, exp - Math.floor(now.getTime() / 1000)),
      expiresAt: new Date(exp * 1000),
      scopes,
    };
  }

  get(id: string): IdentityRecord {
    return structuredClone(registry.getRecord(this.current().state, id));
  }

  find(id: string): IdentityRecord | undefined {
    const rec = registry.findRecord(this.current().state, id);
    return rec ? structuredClone(rec) : undefined;
  }

  /** The registry is in this process: the record as committed. */
  heldRecord(id: string): IdentityRecord | undefined {
    return this.find(id);
  }

  findByName(name: string, trustDomain?: string): IdentityRecord | undefined {
    const recs = Object.values(this.current().state.identities).filter(
      (r) => r.name === name && (!trustDomain || r.trustDomain === trustDomain),
    );
    const pick = registry.pickByName(recs, trustDomain ?? this.defaultTrustDomain);
    return pick ? structuredClone(pick) : undefined;
  }

  list(filter: IdentityFilter = {}): IdentityRecord[] {
    return Object.values(this.current().state.identities)
      .filter(
        (r) =>
          (!filter.trustDomain || r.trustDomain === filter.trustDomain) &&
          (!filter.status || r.status === filter.status),
      )
      .map((r) => structuredClone(r));
  }

  async revoke(id: string, reason: string): Promise<string[]> {
    return this.mutate((state) => registry.revoke(state, id, reason || "unspecified", new Date()));
  }

  /** Restores a revoked identity; its holder then renews (old serials stay revoked). */
  async reissue(id: string): Promise<IdentityRecord> {
    return this.mutate((state) => structuredClone(registry.restore(state, id, new Date())));
  }

  async link(
    source: string,
    target: string,
    type: LinkType,
    metadata: Record<string, unknown> = {},
  ): Promise<registry.IdentityLink> {
    return this.mutate((state) => structuredClone(registry.link(state, source, target, type, metadata, new Date())));
  }

  /**
   * Attaches a policy document to an identity (validated; replaces one with the same code).
   * The identity's policies govern who may call it and connect to it.
   */
  async attachPolicy(id: string, document: unknown, policyName?: string): Promise<registry.PolicyEntry> {
    const doc = parsePolicy(document);
    const code = policyCode(doc);
    return this.mutate((state) =>
      structuredClone(
        registry.attachPolicy(state, id, {
          code,
          policyName: policyName ?? code,
          policyStatement: doc,
          attachedAt: new Date().toISOString(),
        }),
      ),
    );
  }

  async detachPolicy(id: string, code: string): Promise<boolean> {
    return this.mutate((state) => registry.detachPolicy(state, id, code));
  }

  /**
   * The validated policy documents attached to `id` (optionally only the one with `code`).
   * Asked on every call by a guarded server: parsed (and so compiled) once per registry
   * version, and the same array handed back so evaluation caches hit.
   */
  policiesOf(id: string, code?: string): readonly PolicyDocument[] {
    return this.current().policiesOf(id, code);
  }

  /** Parent and links of an identity, for policy conditions (aztp:callerParent, aztp:callerLinks). */
  relations(id: string): AuthorityRelations | undefined {
    const rec = registry.findRecord(this.current().state, id);
    if (!rec) return undefined;
    return {
      ...(rec.parentIdentity ? { parent: rec.parentIdentity } : {}),
      links: rec.links.filter((l) => l.type === "linked").map((l) => l.target),
    };
  }

  connected(a: string, b: string): boolean {
    return registry.connected(this.current().state, a, b);
  }

  ancestors(id: string): IdentityRecord[] {
    return registry.ancestors(this.current().state, id).map((r) => structuredClone(r));
  }

  /**
   * The revocation check verifiers call per request: the identity, any ancestor, or the SVID's
   * serial. Applies another process's revocation as soon as registry.json changes.
   */
  isRevoked(id: string, serial?: string): boolean {
    return this.current().isRevoked(id, serial);
  }

  revocationSequence(): number {
    return this.current().state.revocations.sequence;
  }

  /**
   * The revocation list of `trustDomain` as a signed, sequenced JWS (signed with the trust
   * domain's JWT key, so any holder of the bundle can check it), valid from `now` for
   * `validitySeconds` (default a day: what `aztp revocations export` signs; the service signs
   * a few refresh hints and renews it every hint).
   */
  signedRevocationList(
    trustDomain = this.defaultTrustDomain,
    options: { validitySeconds?: number; now?: Date } = {},
  ): string {
    const ca = this.ca(trustDomain);
    return signRevocationList(this.current().state.revocations, {
      trustDomain,
      kid: ca.jwtKid,
      key: ca.jwtKey,
      validitySeconds: options.validitySeconds ?? DEFAULT_REVOCATION_LIST_VALIDITY_SECONDS,
      ...(options.now !== undefined ? { now: options.now } : {}),
    });
  }

  /** The trust bundle of `trustDomain` (X.509 root + JWT key). */
  bundle(trustDomain = this.defaultTrustDomain): TrustBundle {
    const b = this.bundleSet().getBundleForTrustDomain(TrustDomain.parse(trustDomain).name);
    if (b === undefined)
      throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `this authority has no trust domain ${trustDomain}`);
    return b;
  }

  /**
   * The authority as a BundleSource: verifiers that hold it see trust domains added later
   * (by this or another process) without being rebuilt.
   */
  getBundleForTrustDomain(trustDomain: string): TrustBundle | undefined {
    if (!this.#tds.has(trustDomain)) {
      // Another process may have added it: load its CA (async), so later calls find it.
      void this.refreshConfig().catch(() => undefined);
    }
    return this.bundleSet().getBundleForTrustDomain(trustDomain);
  }

  /** Changes whenever the set of bundles does (BundleSource contract, for verifier caches). */
  get version(): number {
    return this.bundlesVersion;
  }

  /**
   * Bundles for every trust domain of this authority: what a local verifier trusts. Each holds
   * the root and the JWT key of every CA generation not yet retired; its spiffe_sequence grows
   * with every rotation and every retirement.
   */
  bundleSet(now = Date.now()): BundleSet {
    if (this.bundles && now < this.#bundleValidUntil) return this.bundles;
    const set = new BundleSet();
    let validUntil = Infinity;
    for (const [td, loaded] of this.#tds) {
      const live = loaded.generations.filter(
        (g, i) => i === 0 || g.retireAfter === undefined || Date.parse(g.retireAfter) > now,
      );
      for (const g of live)
        if (g.retireAfter !== undefined) validUntil = Math.min(validUntil, Date.parse(g.retireAfter));
      const roots = new Map<string, string>();
      for (const g of live) roots.set(g.material.rootCertPem.trim(), g.material.rootCertPem);
      const retired = loaded.generations.length - live.length;
      loaded.jwtKeys = live.map(
        (g) => [g.material.jwtKid, createPublicKey(g.material.jwtKeyPem)] as [string, KeyObject],
      );
      set.add(
        new TrustBundle({
          trustDomain: td,
          x509Authorities: [...roots.values()].flatMap((pem) => TrustBundle.fromPem(td, pem).x509Authorities),
          jwtAuthorities: loaded.jwtKeys,
          sequence: (loaded.generations[0]?.generation ?? 1) + retired,
        }),
      );
    }
    this.bundles = set;
    this.#bundleValidUntil = validUntil;
    this.bundlesVersion++;
    return set;
  }
}
