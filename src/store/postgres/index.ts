/**
 * Every store of an authority on one PostgreSQL database, sharing one pool: what
 * store/open-stores.ts opens for a `postgres://` location. Migrations run first (under their
 * advisory lock, so replicas starting together do not race), and the key-encryption key is
 * required up front: a replica that could not open its CA keys should fail at start, not at
 * its first issuance.
 */
import { resolveKek, type KeyEncryptionKey } from "../../authority/sealed-key.js";
import { PgApiKeyStore } from "./api-keys.js";
import type { AuditWriterOptions } from "../../audit/writer.js";
import { PgAuditLog } from "./audit-log.js";
import { PgCaStore } from "./ca.js";
import { migrate } from "./migrations.js";
import { createPool, type PgConnection, type PgPoolOptions } from "./pool.js";
import { PgRegistryStore, type PgRegistryStoreOptions } from "./registry.js";
import { PgReplayCache } from "./replay.js";
import { PgWorkloadEntryStore } from "./workload-entries.js";

export { PgApiKeyStore } from "./api-keys.js";
export { PgAuditLog, type AuditExportResult, type PgAuditLogOptions, type SignedTreeHead } from "./audit-log.js";
export { PgCaStore } from "./ca.js";
export { migrate, MIGRATIONS } from "./migrations.js";
export { createPool, isPostgresUrl, redactUrl, type PgConnection } from "./pool.js";
export { PgRegistryStore } from "./registry.js";
export { PgReplayCache } from "./replay.js";
export { PgWorkloadEntryStore } from "./workload-entries.js";

export interface PostgresStoreOptions {
  /** The key-encryption key (32 bytes); else `kekFile`, AZTP_KEK (base64) or AZTP_KEK_FILE. */
  readonly kek?: Buffer | undefined;
  readonly kekFile?: string | undefined;
  readonly pool?: PgPoolOptions | undefined;
  readonly registry?: PgRegistryStoreOptions | undefined;
  readonly audit?: AuditWriterOptions | undefined;
}

export interface PostgresStores {
  /** The URL without its password. */
  readonly location: string;
  readonly connection: PgConnection;
  readonly kek: KeyEncryptionKey;
  readonly registry: PgRegistryStore;
  readonly ca: PgCaStore;
  readonly apiKeys: PgApiKeyStore;
  readonly replay: PgReplayCache;
  readonly audit: PgAuditLog;
  readonly workloadEntries: PgWorkloadEntryStore;
  /** Flushes the audit log, stops listening and closes the pool. */
  close(): Promise<void>;
}

export async function openPostgresStores(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStores> {
  const connection = createPool(url, options.pool);
  try {
    const kek = resolveKek(
      { kek: options.kek, kekFile: options.kekFile },
      `the PostgreSQL store ${connection.location}`,
    );
    await migrate(connection);
    const registry = await PgRegistryStore.open(connection, options.registry);
    const ca = new PgCaStore(connection, kek);
    const apiKeys = new PgApiKeyStore(connection);
    const replay = new PgReplayCache(connection);
    const audit = new PgAuditLog(connection, options.audit);
    const workloadEntries = new PgWorkloadEntryStore(connection);
    let closing: Promise<void> | null = null;
    return {
      location: connection.location,
      connection,
      kek,
      registry,
      ca,
      apiKeys,
      replay,
      audit,
      workloadEntries,
      close: () =>
        (closing ??= (async () => {
          await audit.close().catch(() => undefined);
          await registry.close();
          await replay.close();
          await workloadEntries.close();
          await connection.pool.end();
        })()),
    };
  } catch (cause) {
    await connection.pool.end().catch(() => undefined);
    throw cause;
  }
}
