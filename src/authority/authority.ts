/**
 * The embedded authority: CA, issuance, registry and revocation for one or more trust
 * domains, with its state in a home folder. No server, no account, no network.
 *
 * Layout of a home:
 *   authority.json                      { version, defaultTrustDomain, trustDomains }
 *   registry.json                       identities, links, policies, revocations (RegistryState)
 *   trust-domains/<td>/root.pem         root CA certificate (the X.509 bundle)
 *   trust-domains/<td>/intermediate.pem intermediate CA certificate (signs SVIDs)
 *   trust-domains/<td>/jwt.json         { kid } of the JWT-SVID signing key
 *   trust-domains/<td>/*-key.pem        private keys, mode 0600
 *
 * Every change happens under the home's lock after re-reading registry.json, so two
 * processes issuing from one home at once neither corrupt it nor lose each other's writes;
 * serials are 128 random bits, unique without coordination.
 */
import { createPublicKey } from "node:crypto";
import { resolve } from "node:path";
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, TrustBundle, type BundleSource } from "../spiffe/bundle.js";
import { mintJwtSvid } from "../spiffe/jwtsvid.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { parsePolicy, policyCode, type PolicyDocument } from "../policy/policy.js";
import { CertificateAuthority, createCaKeyMaterial, type CaKeyMaterial, type IssuedSvid } from "./ca.js";
import * as registry from "./registry.js";
import type { IdentityRecord, LinkType, RegisterRequest, RegistryState } from "./registry.js";
import { signRevocationList } from "./revocation-list.js";
import { RegistrySnapshot } from "./snapshot.js";
import { HomeStore } from "./store.js";

export const DEFAULT_TRUST_DOMAIN = "aztp.local";
export { DEFAULT_ENVIRONMENT, DEFAULT_METHOD, MAX_JWT_SVID_TTL_SECONDS, MAX_SPIFFE_ID_BYTES, workloadSpiffeId } from "./registry.js";
export type { RegisterRequest } from "./registry.js";

export interface IssueOptions {
  ttlSeconds?: number;
  now?: Date;
}

export interface IssueResult {
  record: IdentityRecord;
  svid: IssuedSvid;
}

interface AuthorityConfig {
  version: 1;
  defaultTrustDomain: string;
  trustDomains: string[];
  createdAt: string;
}

export class EmbeddedAuthority implements BundleSource {
  readonly home: string;
  private readonly store: HomeStore;
  private config: AuthorityConfig;
  private readonly cas = new Map<string, CertificateAuthority>();
  /** The registry as last read (or written) by this process; null until the first read. */
  #snapshot: RegistrySnapshot | null = null;

  private bundles: BundleSet | undefined;
  private bundlesVersion = 0;
  private configVersion: string | undefined;

  private constructor(home: string, config: AuthorityConfig) {
    this.home = home;
    this.store = new HomeStore(home);
    this.config = config;
  }

  /**
   * Opens the authority in `home`, creating it (trust domain `trustDomain`, else
   * AZTP_TRUST_DOMAIN, else aztp.local) when `create` is true and none exists yet. With
   * `exclusive`, finding one already there (even one created concurrently) is ERR_AUTHORITY_EXISTS.
   */
  static async open(home: string, options: { trustDomain?: string | undefined; create?: boolean | undefined; exclusive?: boolean | undefined } = {}): Promise<EmbeddedAuthority> {
    const store = new HomeStore(resolve(home));
    if (!store.exists("authority.json")) {
      if (!options.create) {
        throw new AztpError(ErrorCodes.AUTHORITY_NOT_INITIALIZED, `no authority in ${store.home}: run \`aztp init --trust-domain TD --home ${store.home}\``);
      }
      const td = TrustDomain.parse(options.trustDomain ?? process.env.AZTP_TRUST_DOMAIN ?? DEFAULT_TRUST_DOMAIN).name;
      await store.withLock(async () => {
        if (store.exists("authority.json")) {
          // Another process won the race. `init` (exclusive) must not report a creation it did not make.
          if (options.exclusive) throw new AztpError(ErrorCodes.AUTHORITY_EXISTS, `${store.home} already holds an authority (created concurrently)`);
          return;
        }
        await EmbeddedAuthority.createTrustDomainFiles(store, td);
        const config: AuthorityConfig = { version: 1, defaultTrustDomain: td, trustDomains: [td], createdAt: new Date().toISOString() };
        store.writeJson(["registry.json"], registry.emptyRegistry());
        store.writeJson(["authority.json"], config);
      });
    }
    const authority = new EmbeddedAuthority(store.home, store.readJson<AuthorityConfig>("authority.json"));
    await authority.loadCas();
    return authority;
  }

  /** `aztp init`: creates a new authority; refuses to overwrite one. */
  static async init(home: string, trustDomain: string): Promise<EmbeddedAuthority> {
    const store = new HomeStore(resolve(home));
    if (store.exists("authority.json")) {
      const existing = store.readJson<AuthorityConfig>("authority.json");
      throw new AztpError(ErrorCodes.AUTHORITY_EXISTS, `${store.home} already holds an authority for ${existing.defaultTrustDomain}`);
    }
    return EmbeddedAuthority.open(home, { trustDomain, create: true, exclusive: true });
  }

  get defaultTrustDomain(): string {
    return this.config.defaultTrustDomain;
  }

  get trustDomains(): string[] {
    return [...this.config.trustDomains];
  }

  private static async createTrustDomainFiles(store: HomeStore, td: string): Promise<void> {
    const m = await createCaKeyMaterial(td);
    const dir = ["trust-domains", td];
    store.writeText([...dir, "root.pem"], m.rootCertPem);
    store.writeText([...dir, "intermediate.pem"], m.intermediateCertPem);
    store.writeSecret([...dir, "root-key.pem"], m.rootKeyPem);
    store.writeSecret([...dir, "intermediate-key.pem"], m.intermediateKeyPem);
    store.writeSecret([...dir, "jwt-key.pem"], m.jwtKeyPem);
    store.writeJson([...dir, "jwt.json"], { kid: m.jwtKid });
  }

  private async loadCas(): Promise<void> {
    for (const td of this.config.trustDomains) {
      if (this.cas.has(td)) continue;
      const dir = ["trust-domains", td];
      const m: CaKeyMaterial = {
        trustDomain: td,
        rootCertPem: this.store.readText(...dir, "root.pem"),
        rootKeyPem: this.store.readText(...dir, "root-key.pem"),
        intermediateCertPem: this.store.readText(...dir, "intermediate.pem"),
        intermediateKeyPem: this.store.readText(...dir, "intermediate-key.pem"),
        jwtKeyPem: this.store.readText(...dir, "jwt-key.pem"),
        jwtKid: this.store.readJson<{ kid: string }>(...dir, "jwt.json").kid,
      };
      this.cas.set(td, await CertificateAuthority.load(m));
    }
    this.bundles = undefined;
  }

  /** Re-reads authority.json if another process added a trust domain. */
  private async refreshConfig(): Promise<void> {
    this.configVersion = this.store.version("authority.json");
    const config = this.store.readJson<AuthorityConfig>("authority.json");
    if (config.trustDomains.length !== this.config.trustDomains.length) {
      this.config = config;
      await this.loadCas();
    }
  }

  /** Adds a trust domain to this authority (the embedded authority accepts any valid name). */
  async ensureTrustDomain(trustDomain: string): Promise<string> {
    const td = TrustDomain.parse(trustDomain).name;
    if (this.cas.has(td)) return td;
    await this.store.withLock(async () => {
      const config = this.store.readJson<AuthorityConfig>("authority.json");
      if (!config.trustDomains.includes(td)) {
        await EmbeddedAuthority.createTrustDomainFiles(this.store, td);
        config.trustDomains.push(td);
        this.store.writeJson(["authority.json"], config);
      }
      this.config = config;
    });
    await this.loadCas();
    return td;
  }

  private ca(td: string): CertificateAuthority {
    const ca = this.cas.get(td);
    if (ca === undefined) throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `this authority has no CA for trust domain ${td}`);
    return ca;
  }

  /** The registry as on disk now: the current snapshot, replaced only when the file changed (cheap stat otherwise). */
  private current(): RegistrySnapshot {
    // One stat per synchronous run (~2 µs in a tight loop, ~8 to 17 µs on an MCP call's path
    // here): a revocation committed by another process is seen by every check that starts in a
    // later turn of the event loop, so by every call that arrives after it, with no window
    // beyond the run in progress. Checks made back to back in one run (a caller checking
    // itself and its callee, a token's signer and its delegation links) share the stat: they
    // are microseconds apart, and a revocation landing between them is concurrent with the
    // call either way. Every write replaces the file (new inode), so the version changes
    // reliably. A folder watch would save the stat but could lag behind the event loop.
    const snapshot = this.#snapshot;
    if (this.#statedThisRun && snapshot !== null) return snapshot;
    const v = this.store.version("registry.json");
    this.#statedThisRun = true;
    // Cleared by a microtask, so the stat never outlives the microtasks queued so far: a write
    // by this process acknowledged after it is seen (its continuation queues behind the clear),
    // and news from another process comes as I/O, which the event loop takes only once every
    // microtask has run.
    queueMicrotask(this.#endRun);
    if (snapshot !== null && snapshot.version === v) return snapshot;
    return (this.#snapshot = new RegistrySnapshot(this.readState(), v));
  }

  #statedThisRun = false;
  readonly #endRun = (): void => {
    this.#statedThisRun = false;
  };

  /** A fresh, mutable copy of registry.json (the empty registry when there is none). */
  private readState(): RegistryState {
    return this.store.exists("registry.json") ? this.store.readJson<RegistryState>("registry.json") : registry.emptyRegistry();
  }

  /**
   * Read-modify-write of the registry under the home lock, on a fresh read of the file (never
   * the current snapshot, which stays frozen). Once written, the new state becomes the
   * snapshot; if `fn` fails, nothing was written and the snapshot stands.
   */
  private async mutate<T>(fn: (state: RegistryState) => Promise<T> | T): Promise<T> {
    return this.store.withLock(async () => {
      const state = this.readState();
      const result = await fn(state);
      this.store.writeJson(["registry.json"], state);
      this.#snapshot = new RegistrySnapshot(state, this.store.version("registry.json"));
      return result;
    });
  }

  /**
   * Registers `name` (or updates it if it exists: same AZTP ID, links and metadata merged)
   * and issues an X.509-SVID over the key in `csr`.
   */
  async issueIdentity(req: RegisterRequest, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    const td = await this.ensureTrustDomain(req.trustDomain ?? this.defaultTrustDomain);
    const id = registry.workloadSpiffeId(td, req.environment ?? registry.DEFAULT_ENVIRONMENT, req.method ?? registry.DEFAULT_METHOD, req.name);
    const now = options.now ?? new Date();
    registry.checkMetadata(req.metadata);
    return this.mutate(async (state) => {
      const rec = registry.register(state, id, td, req, now);
      const svid = await this.signFor(state, rec, csr, options.ttlSeconds, now);
      return { record: structuredClone(rec), svid };
    });
  }

  /** Rotation: a new SVID for an existing, active identity over a new key. */
  async renewSvid(id: string, csr: Buffer | string, options: IssueOptions = {}): Promise<IssueResult> {
    const now = options.now ?? new Date();
    return this.mutate(async (state) => {
      const rec = registry.getRecord(state, id);
      const svid = await this.signFor(state, rec, csr, options.ttlSeconds, now);
      return { record: structuredClone(rec), svid };
    });
  }

  /** Issues under the registry's rules (registry.lifetimeCap) and records the SVID. */
  private async signFor(state: RegistryState, rec: IdentityRecord, csr: Buffer | string, ttlSeconds: number | undefined, now: Date): Promise<IssuedSvid> {
    const cap = registry.lifetimeCap(state, rec);
    await this.refreshConfig();
    const svid = await this.ca(rec.trustDomain).issueSvid(SpiffeId.parse(rec.spiffeId), csr, {
      ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
      ...(cap ? { notAfterCap: cap } : {}),
      now,
      commonName: rec.name,
    });
    registry.recordSvid(rec, svid, now);
    return svid;
  }

  /** Mints a JWT-SVID for an active identity with the trust domain's JWT key, for as long as registry.jwtSvidTtl allows. */
  mintJwtSvid(id: string, audience: string | string[], ttlSeconds?: number, now = new Date()): string {
    const { state } = this.current();
    const rec = registry.getRecord(state, id);
    const ttl = registry.jwtSvidTtl(state, rec, ttlSeconds, now);
    const ca = this.ca(rec.trustDomain);
    return mintJwtSvid({ subject: rec.spiffeId, audience, key: ca.jwtKey, kid: ca.jwtKid, ttlSeconds: ttl, now });
  }

  get(id: string): IdentityRecord {
    return structuredClone(registry.getRecord(this.current().state, id));
  }

  find(id: string): IdentityRecord | undefined {
    const rec = registry.findRecord(this.current().state, id);
    return rec ? structuredClone(rec) : undefined;
  }

  findByName(name: string, trustDomain?: string): IdentityRecord | undefined {
    const recs = Object.values(this.current().state.identities).filter((r) => r.name === name && (!trustDomain || r.trustDomain === trustDomain));
    const pick = recs.find((r) => r.trustDomain === (trustDomain ?? this.defaultTrustDomain)) ?? recs[0];
    return pick ? structuredClone(pick) : undefined;
  }

  list(filter: { trustDomain?: string; status?: "active" | "revoked" } = {}): IdentityRecord[] {
    return Object.values(this.current().state.identities)
      .filter((r) => (!filter.trustDomain || r.trustDomain === filter.trustDomain) && (!filter.status || r.status === filter.status))
      .map((r) => structuredClone(r));
  }

  async revoke(id: string, reason: string): Promise<string[]> {
    return this.mutate((state) => registry.revoke(state, id, reason || "unspecified", new Date()));
  }

  /** Restores a revoked identity; its holder then renews (old serials stay revoked). */
  async reissue(id: string): Promise<IdentityRecord> {
    return this.mutate((state) => structuredClone(registry.restore(state, id, new Date())));
  }

  async link(source: string, target: string, type: LinkType, metadata: Record<string, unknown> = {}): Promise<registry.IdentityLink> {
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
      structuredClone(registry.attachPolicy(state, id, { code, policyName: policyName ?? code, policyStatement: doc, attachedAt: new Date().toISOString() })),
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
  relations(id: string): { parent?: string; links: string[] } | undefined {
    const rec = registry.findRecord(this.current().state, id);
    if (!rec) return undefined;
    return { ...(rec.parentIdentity ? { parent: rec.parentIdentity } : {}), links: rec.links.filter((l) => l.type === "linked").map((l) => l.target) };
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
   * domain's JWT key, so any holder of the bundle can check it).
   */
  signedRevocationList(trustDomain = this.defaultTrustDomain): string {
    const ca = this.ca(trustDomain);
    return signRevocationList(this.current().state.revocations, { trustDomain, kid: ca.jwtKid, key: ca.jwtKey });
  }

  /** The trust bundle of `trustDomain` (X.509 root + JWT key). */
  bundle(trustDomain = this.defaultTrustDomain): TrustBundle {
    const b = this.bundleSet().getBundleForTrustDomain(TrustDomain.parse(trustDomain).name);
    if (b === undefined) throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `this authority has no trust domain ${trustDomain}`);
    return b;
  }

  /**
   * The authority as a BundleSource: verifiers that hold it see trust domains added later
   * (by this or another process) without being rebuilt.
   */
  getBundleForTrustDomain(trustDomain: string): TrustBundle | undefined {
    if (!this.cas.has(trustDomain) && this.store.version("authority.json") !== this.configVersion) {
      // Another process may have added it: load its CA (async), so later calls find it.
      void this.refreshConfig().catch(() => undefined);
    }
    return this.bundleSet().getBundleForTrustDomain(trustDomain);
  }

  /** Changes whenever the set of bundles does (BundleSource contract, for verifier caches). */
  get version(): number {
    return this.bundlesVersion;
  }

  /** Bundles for every trust domain of this authority: what a local verifier trusts. */
  bundleSet(): BundleSet {
    if (this.bundles && this.bundles.size === this.cas.size) return this.bundles;
    const set = new BundleSet();
    for (const [td, ca] of this.cas) {
      set.add(
        new TrustBundle({
          trustDomain: td,
          x509Authorities: TrustBundle.fromPem(td, ca.rootCertPem).x509Authorities,
          jwtAuthorities: [[ca.jwtKid, createPublicKey(ca.jwtKey)]],
          sequence: 1,
        }),
      );
    }
    this.bundles = set;
    this.bundlesVersion++;
    return set;
  }
}
