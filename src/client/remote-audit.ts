/**
 * The shared audit log of a remote `aztp serve`, as an AuditWriter: what a wrapper's `audit`
 * option takes, so the calls of agents on many machines land in one chain (on PostgreSQL, the
 * many-writer log of store/postgres/audit-log.ts). `append` resolves only once the service has
 * answered that the entry is durable, so a guard answers a call after its entry is written,
 * as it does with a local file.
 *
 * Group commit: entries appended while a batch is in flight travel together in the next one
 * (at most MAX_BATCH per request, the service's limit). A batch the service refuses or cannot
 * be reached for rejects every append in it, and the log reports itself unwritable until a
 * later batch succeeds: in enforce mode a guard then refuses calls rather than run them
 * unaudited.
 */
import type { AuditEntryInput } from "../audit/entry.js";
import type { AuditWriter } from "../audit/writer.js";
import type { AuthorityHttp } from "./authority-http.js";

/** Per request: well under the service's limits (1000 entries, 1 MiB body by default; serve/routes.ts). */
const MAX_BATCH = 500;

interface Pending {
  entry: AuditEntryInput;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class RemoteAuditLog implements AuditWriter {
  readonly path: string;
  readonly #http: AuthorityHttp;
  #queue: Pending[] = [];
  #inFlight: Promise<void> | null = null;
  #writable = true;
  #closed = false;

  constructor(http: AuthorityHttp) {
    this.#http = http;
    this.path = new URL("v1/audit", http.baseUrl).toString();
  }

  get writable(): boolean {
    return this.#writable;
  }

  append(entry: AuditEntryInput): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`the audit log ${this.path} is closed`));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ entry, resolve, reject });
      this.#inFlight ??= this.#drain();
    });
  }

  /** One more try at the service; the log is writable again once it answers. */
  async recover(): Promise<boolean> {
    try {
      await this.#http.get("readyz", { auth: false });
      this.#writable = true;
    } catch {
      this.#writable = false;
    }
    return this.#writable;
  }

  async flush(): Promise<void> {
    while (this.#inFlight !== null) await this.#inFlight;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      try {
        await this.#http.post("v1/audit", { entries: batch.map((p) => p.entry) });
        this.#writable = true;
        for (const p of batch) p.resolve();
      } catch (e) {
        this.#writable = false;
        for (const p of batch) p.reject(e);
      }
    }
    this.#inFlight = null;
  }
}
