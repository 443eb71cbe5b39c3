/**
 * What the service's audit routes need of an audit log: append a batch (durable before the
 * answer), and read entries after a sequence number. The home folder's is a file AuditLog
 * (fsync'ed: acknowledged means on disk); PostgreSQL's a PgAuditLog (open.ts wires both, signed
 * with the service's identity).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { AuditLog, type AuditLogOptions } from "../audit/log.js";
import { queryAuditLog } from "../audit/query.js";
import type { AuditEntryInput, StoredAuditEntry } from "../audit/entry.js";
import type { AuditWriter } from "../audit/writer.js";
import type { SignedTreeHead } from "../store/postgres/index.js";

export interface ServeAuditStore {
  /** Appends in order; resolves once every entry is durable. */
  appendBatch(entries: readonly AuditEntryInput[]): Promise<number>;
  /** Entries with seq > afterSeq, oldest first, at most `limit`. */
  query(q: { afterSeq: number; limit: number }): Promise<StoredAuditEntry[]>;
  /** Whether appends can be made now (for /readyz). */
  readonly writable: boolean;
  /** The log as its signed Merkle tree publishes it (tlog-tiles.ts); absent for a home folder's file. */
  readonly published?: PublishedAuditLog | undefined;
  close(): Promise<void>;
}

/** What the published tree is read from (PgAuditLog, store/postgres/audit-log.ts). */
export interface PublishedAuditLog {
  /** The newest checkpoint with a tree (its note and size), or null. */
  signedTreeHead(): Promise<SignedTreeHead | null>;
  /** Leaf hashes of entries afterSeq+1 .. upTo, at most `limit`. */
  leafHashes(afterSeq: number, upTo: number, limit?: number): Promise<Buffer[]>;
  /** Lines of entries afterSeq+1 .. afterSeq+count, as stored. */
  entryLines(afterSeq: number, count: number): Promise<string[]>;
}

/** An AuditWriter (src/audit/writer.ts) as a ServeAuditStore, reading back with `read`. */
export class WriterAuditStore implements ServeAuditStore {
  readonly #writer: AuditWriter;
  readonly #read: (q: { afterSeq: number; limit: number }) => Promise<StoredAuditEntry[]>;
  readonly published: PublishedAuditLog | undefined;

  constructor(
    writer: AuditWriter,
    read: (q: { afterSeq: number; limit: number }) => Promise<StoredAuditEntry[]>,
    published?: PublishedAuditLog,
  ) {
    this.#writer = writer;
    this.#read = read;
    this.published = published;
  }

  get writable(): boolean {
    return this.#writer.writable ?? true;
  }

  async appendBatch(entries: readonly AuditEntryInput[]): Promise<number> {
    if (this.#writer.writable === false) await this.#writer.recover?.();
    await Promise.all(entries.map((e) => this.#writer.append(e)));
    return entries.length;
  }

  query(q: { afterSeq: number; limit: number }): Promise<StoredAuditEntry[]> {
    return this.#read(q);
  }

  async close(): Promise<void> {
    await this.#writer.flush().catch(() => undefined);
    await this.#writer.close?.();
  }
}

/** `<home>/audit/serve.jsonl`, fsync'ed; one writer per file, so one service per home folder. */
export async function openFileAuditStore(home: string): Promise<ServeAuditStore> {
  return (await openFileAuditLog(home)).store;
}

/** As openFileAuditStore, with the log's options (its signer) and the log itself. */
export async function openFileAuditLog(
  home: string,
  options: Omit<AuditLogOptions, "durability"> = {},
): Promise<{ store: ServeAuditStore; log: AuditLog }> {
  const path = join(home, "audit", "serve.jsonl");
  mkdirSync(join(home, "audit"), { recursive: true, mode: 0o700 });
  const log = await AuditLog.open(path, { ...options, durability: "fsync" });
  // The file is scanned on each query: fine for the single-machine store (PostgreSQL's has an index on seq).
  const read = async (q: { afterSeq: number; limit: number }): Promise<StoredAuditEntry[]> => {
    const out: StoredAuditEntry[] = [];
    for (const e of await queryAuditLog(path)) {
      if (e.seq <= q.afterSeq) continue;
      out.push(e);
      if (out.length >= q.limit) break;
    }
    return out;
  };
  return { store: new WriterAuditStore(log, read), log };
}
