/**
 * One location string, every store an authority runs on. `postgres://…` (or `postgresql://`)
 * opens the PostgreSQL stores, shared by any number of `aztp serve` replicas (the CA keys
 * sealed under the key-encryption key each replica is given); anything else is a home folder,
 * the embedded authority's own layout.
 */
import { resolve } from "node:path";
import type { CaStore } from "../authority/ca-store.js";
import { FileCaStore } from "../authority/file-ca-store.js";
import { FileRegistryStore } from "../authority/file-registry-store.js";
import type { RegistryStore } from "../authority/registry-store.js";
import { HomeStore } from "../authority/store.js";
import { MemoryReplayCache, type ReplayCache } from "../invocation/replay.js";
import { FileWorkloadEntryStore, type WorkloadEntryStore } from "../workload-api/entries.js";
import { FileApiKeyStore, type ApiKeyStore } from "./api-keys.js";
import { isPostgresUrl, openPostgresStores, PgAuditLog, type PgAuditLogOptions } from "./postgres/index.js";

export interface Stores {
  /** For messages: the folder, or the URL without its password. */
  readonly location: string;
  readonly kind: "file" | "postgres";
  readonly registry: RegistryStore;
  readonly ca: CaStore;
  readonly apiKeys: ApiKeyStore;
  /** The Workload API's registration entries (a home folder's workload-entries.json, or a table). */
  readonly workloadEntries: WorkloadEntryStore;
  /**
   * Tokens accepted once across every process on the store. A home folder has none shared:
   * each process keeps its own in memory (a callee's tokens are addressed to it alone).
   */
  readonly replay: ReplayCache;
  /** The shared, many-writer audit log (PostgreSQL); a home folder's logs are files per identity. */
  readonly audit?: PgAuditLog | undefined;
  /**
   * Another writer of the shared log on the same pool, with options of its own (a signer: what
   * `aztp serve` writes through); closed by its owner before `close()`.
   */
  readonly auditWriter?: ((options: PgAuditLogOptions) => PgAuditLog) | undefined;
  close(): Promise<void>;
}

export interface OpenStoresOptions {
  /** The key-encryption key of the CA keys in PostgreSQL; else kekFile, AZTP_KEK or AZTP_KEK_FILE. */
  kek?: Buffer | undefined;
  kekFile?: string | undefined;
}

export { isPostgresUrl };

export async function openStores(location: string, options: OpenStoresOptions = {}): Promise<Stores> {
  if (isPostgresUrl(location)) {
    const pg = await openPostgresStores(location, { kek: options.kek, kekFile: options.kekFile });
    return {
      location: pg.location,
      kind: "postgres",
      registry: pg.registry,
      ca: pg.ca,
      apiKeys: pg.apiKeys,
      replay: pg.replay,
      workloadEntries: pg.workloadEntries,
      audit: pg.audit,
      auditWriter: (options) => new PgAuditLog(pg.connection, options),
      close: () => pg.close(),
    };
  }
  const home = new HomeStore(resolve(location));
  const workloadEntries = new FileWorkloadEntryStore(home);
  return {
    location: home.home,
    kind: "file",
    registry: new FileRegistryStore(home),
    ca: new FileCaStore(home),
    apiKeys: new FileApiKeyStore(home.home),
    workloadEntries,
    replay: new MemoryReplayCache(),
    close: () => workloadEntries.close(),
  };
}
