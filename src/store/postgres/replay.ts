/**
 * The replay cache on PostgreSQL, shared by replicas: a token accepted by one is refused by
 * every other. Check and set are one statement: an INSERT that, on a key already there,
 * updates it only when the recorded one has expired, RETURNING a row only when it inserted or
 * updated. PostgreSQL locks the conflicting row, so of any number of concurrent calls for one
 * key exactly one gets the row back.
 *
 * Expired rows are swept now and then (at most once a minute per process, off the caller's path).
 */
import type { ReplayCache } from "../../invocation/replay.js";
import { query, type PgConnection } from "./pool.js";

export interface PgReplayCacheOptions {
  /** Clock (ms), for tests. */
  readonly now?: (() => number) | undefined;
  /** Sweep expired rows at most this often (ms); default 60000. */
  readonly sweepEveryMs?: number | undefined;
}

export class PgReplayCache implements ReplayCache {
  readonly #conn: PgConnection;
  readonly #now: () => number;
  readonly #sweepEveryMs: number;
  #sweptAt: number;
  #sweeping: Promise<void> | null = null;

  constructor(conn: PgConnection, options: PgReplayCacheOptions = {}) {
    this.#conn = conn;
    this.#now = options.now ?? Date.now;
    this.#sweepEveryMs = options.sweepEveryMs ?? 60_000;
    this.#sweptAt = this.#now();
  }

  async checkAndRemember(key: string, expiresAtMs: number): Promise<boolean> {
    const now = this.#now();
    const { rowCount } = await query(
      this.#conn.pool,
      this.#conn.location,
      "check the replay cache",
      `INSERT INTO aztp_replay AS r (key, expires_at) VALUES ($1, $2)
       ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE r.expires_at <= $3
       RETURNING 1`,
      [key, Math.ceil(expiresAtMs), now],
    );
    if (now - this.#sweptAt >= this.#sweepEveryMs && this.#sweeping === null) {
      this.#sweptAt = now;
      this.#sweeping = this.sweep(now)
        .catch(() => undefined) // best effort: the next sweep gets them
        .finally(() => {
          this.#sweeping = null;
        });
    }
    return rowCount === 1;
  }

  /** Deletes every expired row. */
  async sweep(now = this.#now()): Promise<void> {
    await query(
      this.#conn.pool,
      this.#conn.location,
      "sweep the replay cache",
      "DELETE FROM aztp_replay WHERE expires_at <= $1",
      [now],
    );
  }

  /** Waits for a sweep in flight; the pool is closed by its owner. */
  async close(): Promise<void> {
    await this.#sweeping;
  }
}
