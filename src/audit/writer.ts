/**
 * What a guard needs of an audit log, and so what every log implements: `AuditLog` (a JSON
 * Lines file), `PgAuditLog` (the shared chain of `aztp serve` on PostgreSQL), `RemoteAuditLog`
 * (that chain over HTTPS). It lives with the log, not with the guards, so the stores and the
 * service implement it without importing the guard layer above them.
 */
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
