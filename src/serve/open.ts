/**
 * The ONE place the service builds what it runs on from `--store`: the authority, the API key
 * store, the audit store, and how it issues its own TLS SVID. Everything else in serve/ sees
 * only the ServeBackend interface.
 *
 * Two kinds of store, one path: a home folder (its file stores, a file audit log in the folder)
 * or PostgreSQL (`postgres://…`: every store from store/open-stores.ts, the many-writer
 * PgAuditLog as the audit store), both through backendFromStores and EmbeddedAuthority.fromStores.
 *
 * The audit log is signed with the service's identity (audit-signer.ts): its checkpoints, every
 * N entries or T seconds across all replicas, carry the C2SP checkpoint of its Merkle tree. The
 * log is opened once the authority is there, since its signer's SVID comes from the CA.
 */
import { resolve } from "node:path";
import { checkpointBody, defaultOrigin, type CheckpointSigner } from "../audit/checkpoint.js";
import type { AuditWriterOptions } from "../audit/writer.js";
import { EmbeddedAuthority } from "../authority/authority.js";
import type { Authority } from "../authority/authority-api.js";
import { CertificateAuthority, type IssuedSvid } from "../authority/ca.js";
import type { CaStore } from "../authority/ca-store.js";
import { FileCaStore } from "../authority/file-ca-store.js";
import { FileRegistryStore } from "../authority/file-registry-store.js";
import type { IdentityRecord } from "../authority/registry.js";
import type { RegistryStore } from "../authority/registry-store.js";
import { HomeStore } from "../authority/store.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { MemoryReplayCache, type ReplayCache } from "../invocation/replay.js";
import type { TokenExchangeDeps } from "../people/token-exchange.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { FileApiKeyStore, type ApiKeyStore } from "../store/api-keys.js";
import { FileWorkloadEntryStore, type WorkloadEntryStore } from "../workload-api/entries.js";
import { openFileAuditLog, WriterAuditStore, type ServeAuditStore } from "./audit-store.js";
import { ServiceAuditSigner } from "./audit-signer.js";
import { isPostgresUrl, openStores } from "../store/open-stores.js";

/** What the routes call: the client API of an authority, plus the feeds. */
export type ServeAuthority = Pick<
  Authority,
  | "defaultTrustDomain"
  | "trustDomains"
  | "issueIdentity"
  | "renewSvid"
  | "mintJwtSvid"
  | "get"
  | "find"
  | "findByName"
  | "list"
  | "connected"
  | "revoke"
  | "reissue"
  | "link"
  | "attachPolicy"
  | "detachPolicy"
  | "isRevoked"
  | "bundle"
  | "bundleSet"
  | "getBundleForTrustDomain"
  | "version"
  | "heldRecord"
  | "policiesOf"
  | "relations"
  | "oauthIssuer"
  | "personIssuers"
  | "addPersonIssuer"
  | "removePersonIssuer"
> & {
  /**
   * Registers `spiffeId` as it is (any path of a trust domain the authority holds) or finds its
   * active record, issuing nothing: a Workload API entry's identity (EmbeddedAuthority.registerSpiffeId).
   */
  registerSpiffeId(spiffeId: string, options?: { metadata?: Record<string, unknown> }): Promise<IdentityRecord>;
  /** The issuer identifier of the access tokens it mints: the service's public URL, set at start. */
  setOAuthIssuer(issuer: string): void;
  /** An RFC 9068 access token for an active identity (EmbeddedAuthority.mintAccessToken). */
  mintAccessToken(
    id: string,
    options: { issuer?: string; resource: string; scopes?: readonly string[]; ttlSeconds?: number; now?: Date },
  ): string;
  /**
   * What the token endpoint's RFC 8693 grant and the people's login need (EmbeddedAuthority.exchangeDeps):
   * the trusted OpenID Providers and the JWT keys of each trust domain.
   */
  exchangeDeps(): TokenExchangeDeps;
  /** The signed, sequenced revocation list of `trustDomain` (compact JWS), valid from `now` for `validitySeconds`. */
  signedRevocationList(
    trustDomain?: string,
    options?: { validitySeconds?: number; now?: Date },
  ): string | Promise<string>;
  /** Grows with every revocation or reissue (any trust domain's): a signed list is as of one. */
  revocationSequence(): number;
  /**
   * Brings this replica's view up to the committed state of the store (a store-backed authority
   * caches); called before every answer that depends on registry or revocation state.
   */
  refresh?(): Promise<void>;
  close?(): Promise<void>;
};

/** Who signs the service's audit log, and when. */
export interface AuditSigning extends Required<Pick<AuditWriterOptions, "checkpointEvery">> {
  /** The SPIFFE ID that signs the checkpoints: the service's, spiffe://<td>/aztp/serve. */
  readonly signer: string;
  /** The origin of its C2SP checkpoints (the log keeps the one its notes name). */
  readonly origin: string;
  /** 0: no time trigger. */
  readonly checkpointIntervalSeconds: number;
}

export interface ServeBackend {
  /** For messages: a folder or a URL without password. */
  readonly location: string;
  readonly authority: ServeAuthority;
  readonly apiKeys: ApiKeyStore;
  /** The Workload API's registration entries, in the same store (closed with it). */
  readonly workloadEntries: WorkloadEntryStore;
  readonly audit: ServeAuditStore;
  /** Who signs the audit log's checkpoints; null when its log was given unsigned (ServeStores.audit). */
  readonly auditSigning: AuditSigning | null;
  /**
   * Client assertions spent at the token endpoint: shared by every replica on PostgreSQL; in
   * memory for a home folder, which serves one replica.
   */
  readonly replay: ReplayCache;
  /**
   * The service's own X.509-SVID (spiffe://<defaultTD>/aztp/serve), signed by the CA directly
   * and not registered: the registry holds workloads only, and a serve SVID lives for an hour
   * and is replaced at half-life.
   */
  issueServiceSvid(csr: Buffer, ttlSeconds: number, hostNames?: readonly string[]): Promise<IssuedSvid>;
  /** Resolves when the store answers and the CA is loaded; rejects saying why not. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenBackendOptions {
  /** The key-encryption key of the CA keys in PostgreSQL (--kek-file); else AZTP_KEK or AZTP_KEK_FILE. */
  kek?: Buffer | undefined;
  /**
   * Create the authority, with this default trust domain, when the store holds none yet
   * (`--trust-domain`). Replicas starting together on one empty store agree on one CA.
   */
  createTrustDomain?: string | undefined;
  /** How the audit log is signed. */
  audit?: ServeAuditOptions | undefined;
}

/** `checkpointEvery` as every audit writer takes it (audit/writer.ts): by any replica, default 1000. */
export interface ServeAuditOptions extends Pick<AuditWriterOptions, "checkpointEvery"> {
  /**
   * Checkpoint once the newest checkpoint is this old (seconds) and entries were added since
   * (by any replica). Default 60; 0: no time trigger.
   */
  checkpointIntervalSeconds?: number | undefined;
  /** Lifetime of the SVID that signs them (replaced at half-life). Default 3600. */
  svidTtlSeconds?: number | undefined;
  /** Receives what a checkpoint could not do (a failed signature, a failed rotation); default: a process warning. */
  onWarning?: ((message: string) => void) | undefined;
}

export const AUDIT_DEFAULTS = { checkpointEvery: 1000, checkpointIntervalSeconds: 60, svidTtlSeconds: 3600 } as const;

/** What a store's audit log opens as, once its signer exists. */
export interface OpenedAudit {
  readonly store: ServeAuditStore;
  /** The origin its checkpoints name. */
  readonly origin: string;
}

export { isPostgresUrl };

export async function openServeBackend(location: string, options: OpenBackendOptions = {}): Promise<ServeBackend> {
  if (isPostgresUrl(location)) return openPostgresBackend(location, options);
  return openHomeBackend(resolve(location), options);
}

/** PostgreSQL: every store from openStores, the many-writer audit log as the audit store. */
async function openPostgresBackend(location: string, options: OpenBackendOptions): Promise<ServeBackend> {
  const audit = options.audit ?? {};
  const every = auditCheckpointEvery(audit);
  const intervalSeconds = auditCheckpointInterval(audit);
  const s = await openStores(location, { kek: options.kek });
  return backendFromStores({
    location: s.location,
    registry: s.registry,
    ca: s.ca,
    apiKeys: s.apiKeys,
    workloadEntries: s.workloadEntries,
    audit: {
      ...audit,
      async open(signer) {
        // The stores' own PgAuditLog is unsigned (for `aztp audit export`); the service writes through its own.
        const writer = s.auditWriter;
        if (writer === undefined)
          throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `${s.location} has no audit log`);
        const log = writer({
          signer,
          checkpointEvery: every,
          checkpointIntervalMs: intervalSeconds * 1000,
          ...(audit.onWarning !== undefined ? { onWarning: audit.onWarning } : {}),
        });
        return {
          store: new WriterAuditStore(log, (q) => log.query(q.afterSeq, q.limit), log),
          origin: (await log.origin()) as string,
        };
      },
    },
    replay: s.replay,
    createTrustDomain: options.createTrustDomain,
    close: () => s.close(),
  });
}

/**
 * What a backend is made of: the store set `openStores` gives (src/store/open-stores.ts), with
 * the audit log as a ServeAuditStore. `close` closes the stores themselves.
 */
export interface ServeStores {
  location: string;
  registry: RegistryStore;
  ca: CaStore;
  apiKeys: ApiKeyStore;
  /** The Workload API's registration entries; `close` closes them. */
  workloadEntries: WorkloadEntryStore;
  /**
   * The audit log: opened once the authority exists, with the service's signer (`open`), or a
   * store already open, whose checkpoints are its own business (tests, embedding).
   */
  audit: ServeAuditStore | SignedAuditOpener;
  /** Spent client assertions; default: in this process's memory (one replica). */
  replay?: ReplayCache | undefined;
  /** This process's own folder (EmbeddedAuthority's `home`); the home folder itself for a file store. */
  home?: string | undefined;
  /** Create the authority with this trust domain when the store holds none. */
  createTrustDomain?: string | undefined;
  close(): Promise<void>;
}

/** Opens a store's audit log signed by the service (ServeStores.audit). */
export interface SignedAuditOpener extends ServeAuditOptions {
  open(signer: CheckpointSigner): Promise<OpenedAudit>;
}

function isOpener(audit: ServeAuditStore | SignedAuditOpener): audit is SignedAuditOpener {
  return typeof (audit as SignedAuditOpener).open === "function";
}

function auditCheckpointEvery(o: ServeAuditOptions): number {
  const n = o.checkpointEvery ?? AUDIT_DEFAULTS.checkpointEvery;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `the audit checkpoint count must be a whole number >= 1, got ${n}`,
    );
  return n;
}

function auditCheckpointInterval(o: ServeAuditOptions): number {
  const n = o.checkpointIntervalSeconds ?? AUDIT_DEFAULTS.checkpointIntervalSeconds;
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0 || n > 2 ** 31 / 1000)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `the audit checkpoint interval must be from 0 to ${Math.floor(2 ** 31 / 1000)} seconds, got ${n}`,
    );
  return n;
}

/**
 * The audit log signed with the service's identity: its SVID issued by the CA (the newest
 * generation of the default trust domain), then the log opened with it.
 */
async function openSignedAudit(
  opener: SignedAuditOpener,
  ca: CaStore,
  authority: EmbeddedAuthority,
): Promise<{ audit: ServeAuditStore; signing: AuditSigning; signer: ServiceAuditSigner }> {
  const warn =
    opener.onWarning ??
    ((message: string) => process.emitWarning(message, { type: "AztpAuditWarning", code: "AZTP_AUDIT_SIGNER" }));
  const issue = serviceSvidIssuer(ca, () => authority.defaultTrustDomain);
  const signer = await ServiceAuditSigner.start(
    (csr, ttl) => issue(csr, ttl),
    SpiffeId.fromSegments(authority.defaultTrustDomain, "aztp", "serve").toString(),
    opener.svidTtlSeconds ?? AUDIT_DEFAULTS.svidTtlSeconds,
    (cause) =>
      warn(`the service's audit-signing SVID could not be renewed (retried in 30 s): ${(cause as Error).message}`),
  );
  try {
    const opened = await opener.open(signer);
    return {
      audit: opened.store,
      signer,
      signing: {
        signer: signer.id,
        origin: opened.origin,
        checkpointEvery: auditCheckpointEvery(opener),
        checkpointIntervalSeconds: auditCheckpointInterval(opener),
      },
    };
  } catch (e) {
    signer.stop();
    throw e;
  }
}

/** The backend on a store set: the authority from its registry and CA stores, the rest as given. */
export async function backendFromStores(stores: ServeStores): Promise<ServeBackend> {
  const closeAudit = (): Promise<unknown> =>
    isOpener(stores.audit) ? Promise.resolve() : (stores.audit as ServeAuditStore).close();
  let authority: EmbeddedAuthority;
  let audit: ServeAuditStore;
  let signing: AuditSigning | null = null;
  let auditSigner: ServiceAuditSigner | undefined;
  try {
    authority = await EmbeddedAuthority.fromStores(
      { registry: stores.registry, ca: stores.ca },
      {
        ...(stores.home !== undefined ? { home: stores.home } : {}),
        ...(stores.createTrustDomain !== undefined ? { create: true, trustDomain: stores.createTrustDomain } : {}),
      },
    );
    if (isOpener(stores.audit)) {
      const signed = await openSignedAudit(stores.audit, stores.ca, authority);
      audit = signed.audit;
      signing = signed.signing;
      auditSigner = signed.signer;
    } else audit = stores.audit;
  } catch (e) {
    await Promise.allSettled([closeAudit(), stores.apiKeys.close()]);
    await stores.close().catch(() => undefined);
    throw e;
  }
  return {
    location: stores.location,
    authority,
    apiKeys: stores.apiKeys,
    workloadEntries: stores.workloadEntries,
    audit,
    auditSigning: signing,
    replay: stores.replay ?? new MemoryReplayCache(),
    issueServiceSvid: serviceSvidIssuer(stores.ca, () => authority.defaultTrustDomain),
    async ready() {
      // A round trip to each store: the configuration (and so the CA) and the committed registry.
      const config = await stores.ca.readConfig();
      if (config === undefined)
        throw new AztpError(ErrorCodes.AUTHORITY_NOT_INITIALIZED, `no authority in ${stores.location}`);
      await stores.registry.fresh();
      authority.bundle();
      if (!audit.writable) throw new AztpError(ErrorCodes.AUDIT_UNAVAILABLE, "the audit log cannot be written");
    },
    async close() {
      // The log closes first: its last checkpoint is signed with the SVID still held.
      await Promise.allSettled([audit.close(), stores.apiKeys.close()]);
      auditSigner?.stop();
      await stores.close();
    },
  };
}

async function openHomeBackend(home: string, options: OpenBackendOptions): Promise<ServeBackend> {
  const store = new HomeStore(home);
  if (options.createTrustDomain !== undefined)
    await EmbeddedAuthority.open(home, { create: true, trustDomain: options.createTrustDomain });
  if (!store.exists("authority.json")) {
    throw new AztpError(
      ErrorCodes.AUTHORITY_NOT_INITIALIZED,
      `no authority in ${home}: run \`aztp init --trust-domain TD --home ${home}\``,
    );
  }
  const registry = new FileRegistryStore(store);
  const workloadEntries = new FileWorkloadEntryStore(store);
  const audit = options.audit ?? {};
  const every = auditCheckpointEvery(audit);
  const intervalSeconds = auditCheckpointInterval(audit);
  return backendFromStores({
    location: home,
    home,
    registry,
    ca: new FileCaStore(store),
    apiKeys: new FileApiKeyStore(home),
    workloadEntries,
    audit: {
      ...audit,
      async open(signer) {
        const opened = await openFileAuditLog(home, {
          signer,
          checkpointEvery: every,
          checkpointIntervalMs: intervalSeconds * 1000,
        });
        const newest = opened.log.lastCheckpoint;
        return {
          store: opened.store,
          origin: (newest === null ? null : checkpointBody(newest))?.origin ?? defaultOrigin(signer.id, "serve"),
        };
      },
    },
    close: async () => {
      await Promise.all([registry.close(), workloadEntries.close()]);
    },
  });
}

/**
 * Issues the service's SVID with the newest CA generation of the default trust domain, read
 * afresh from the CA store at each issuance (every half-life), so a rotated CA is picked up.
 */
export function serviceSvidIssuer(
  caStore: CaStore,
  trustDomain: () => string,
): (csr: Buffer, ttlSeconds: number, hostNames?: readonly string[]) => Promise<IssuedSvid> {
  return async (csr, ttlSeconds, hostNames) => {
    const td = trustDomain();
    const newest = (await caStore.loadCa(td))[0];
    if (newest === undefined)
      throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `${caStore.location} has no CA for ${td}`);
    const ca = await CertificateAuthority.load(newest.material);
    return ca.issueSvid(SpiffeId.fromSegments(td, "aztp", "serve"), csr, {
      ttlSeconds,
      commonName: "aztp-serve",
      ...(hostNames !== undefined ? { hostNames } : {}),
    });
  };
}

/** The API key store alone (`aztp apikey`), on the same store location `aztp serve --store` takes. */
export async function openApiKeyStore(location: string, options: OpenBackendOptions = {}): Promise<ApiKeyStore> {
  if (isPostgresUrl(location)) {
    // The API keys alone; the other stores close with them.
    const s = await openStores(location, { kek: options.kek });
    const keys = s.apiKeys;
    return {
      create: (o) => keys.create(o),
      list: () => keys.list(),
      revoke: (id) => keys.revoke(id),
      authenticate: (k) => keys.authenticate(k),
      close: () => s.close(),
    };
  }
  const home = resolve(location);
  if (!new HomeStore(home).exists("authority.json")) {
    throw new AztpError(
      ErrorCodes.AUTHORITY_NOT_INITIALIZED,
      `no authority in ${home}: run \`aztp init --trust-domain TD --home ${home}\` first`,
    );
  }
  return new FileApiKeyStore(home);
}
