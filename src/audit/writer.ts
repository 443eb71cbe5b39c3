/**
 * What a guard needs of an audit log, and so what every log implements: `AuditLog` (a JSON
 * Lines file), `PgAuditLog` (the shared chain of `aztp serve` on PostgreSQL), `RemoteAuditLog`
 * (that chain over HTTPS). It lives with the log, not with the guards, so the stores and the
 * service implement it without importing the guard layer above them.
 */
import type { CheckpointSigner } from "./checkpoint.js";
import type { AuditEntryInput } from "./entry.js";

/**
 * `writable` turns false when a write failed, and `recover()` tries to make the log writable
 * again (a log rate-limits the attempts).
 */
export interface AuditWriter {
  readonly path: string;
  append(entry: AuditEntryInput): Promise<unknown>;
  readonly writable?: boolean;
  recover?(): Promise<boolean>;
  flush(): Promise<void>;
  close?(): Promise<void>;
}

/**
 * What every writer of an audit chain is opened with: the file log (`AuditLogOptions` adds the
 * file's own), the shared chain on PostgreSQL, and (a part of it) a wrapper's default home log.
 */
export interface AuditWriterOptions {
  /** Store the (redacted) arguments in each entry. Default false: only their digest. */
  readonly includeArgs?: boolean | undefined;
  /** Field names (any depth) and dotted paths (from the root) replaced by "[REDACTED]". */
  readonly redactFields?: readonly string[] | undefined;
  /**
   * Signs checkpoints (the writer's SVID); without one this writer cuts none, and a log no
   * writer signs has no protection against a cut tail.
   */
  readonly signer?: CheckpointSigner | undefined;
  /**
   * Checkpoint once this many entries were added since the newest checkpoint (by any writer of
   * the chain). Default 1000; a file log also takes 0, which turns the count trigger off.
   */
  readonly checkpointEvery?: number | undefined;
  /**
   * Group commit: entries written together at most. Default 1024 for a file log, 1000 on
   * PostgreSQL (one transaction under the chain's lock).
   */
  readonly maxBatchEntries?: number | undefined;
  /**
   * After a failed write, `recover()` really tries to reach the log again at most this often
   * (ms); calls in between return false at once. Default 500.
   */
  readonly recoverIntervalMs?: number | undefined;
}
