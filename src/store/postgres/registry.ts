/**
 * The registry on PostgreSQL, shared by any number of `aztp serve` replicas.
 *
 * Rows: one per identity (aztp_registry_identities: key, record, changed_at_version) and one
 * meta row holding the registry version and the revocations document. Every committed change
 * bumps the version and stamps the rows it wrote with it, so a replica that knows version v
 * catches up by reading the meta row and the rows changed after v, never the whole registry.
 *
 * Writers are serialised by a transaction-scoped advisory lock: `mutate` takes it, catches its
 * cached state up to the committed version, runs `fn` on a deep copy, writes only what changed
 * (identity rows whose JSON differs, the revocations document if it differs), bumps the
 * version and NOTIFYs, all in one transaction. So two replicas mutating at once never lose a
 * write: the second runs `fn` on the state the first committed.
 *
 * Readers: `current()` answers synchronously from the snapshot as of the last notification or
 * refresh. A dedicated connection LISTENs for the writers' NOTIFY (reconnecting when it drops),
 * and a poll every second catches up in case a notification was missed while it was down; a
 * replica that must be exact calls `fresh()`, one query of the version.
 */
import pg from "pg";
import { emptyRegistry, type IdentityRecord, type RegistryState } from "../../authority/registry.js";
import type { RegistryStore } from "../../authority/registry-store.js";
import { RegistrySnapshot } from "../../authority/snapshot.js";
import { LOCKS, query, storeFailed, transaction, type PgConnection } from "./pool.js";

const CHANNEL = "aztp_registry";

type Revocations = RegistryState["revocations"];

interface MetaRow {
  version: string;
  revocations: Revocations;
  revocations_changed_at: string;
}

interface IdentityRow {
  key: string;
  record: IdentityRecord | null;
}

export interface PgRegistryStoreOptions {
  /** The safety-net poll (ms); default 1000, 0 turns it off (tests of the notification path). */
  readonly pollMs?: number | undefined;
  /** Listen for other replicas' changes; default true. */
  readonly listen?: boolean | undefined;
}

export class PgRegistryStore implements RegistryStore {
  readonly #conn: PgConnection;
  #snapshot: RegistrySnapshot;
  #version: number;
  #refreshing: Promise<void> | null = null;
  #refreshAgain = false;
  #listener: pg.Client | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #poll: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(conn: PgConnection, snapshot: RegistrySnapshot, version: number) {
    this.#conn = conn;
    this.#snapshot = snapshot;
    this.#version = version;
  }

  /** Loads the registry as committed now, and starts listening for changes. */
  static async open(conn: PgConnection, options: PgRegistryStoreOptions = {}): Promise<PgRegistryStore> {
    const store = new PgRegistryStore(conn, new RegistrySnapshot(emptyRegistry(), "0"), 0);
    await store.#catchUp();
    if (options.listen !== false) await store.#listen();
    const pollMs = options.pollMs ?? 1000;
    if (pollMs > 0) {
      store.#poll = setInterval(() => void store.fresh().catch(() => undefined), pollMs);
      store.#poll.unref(); // a poll must not keep the process alive
    }
    return store;
  }

  get location(): string {
    return this.#conn.location;
  }

  /** The registry version this replica has seen (the snapshot's version as a number). */
  get version(): number {
    return this.#version;
  }

  current(): RegistrySnapshot {
    return this.#snapshot;
  }

  /** One query of the committed version; catches up first if this replica is behind. */
  async fresh(): Promise<RegistrySnapshot> {
    const { rows } = await query<{ version: string }>(this.#conn.pool, this.location, "read the registry version", "SELECT version FROM aztp_registry_meta WHERE id = 1");
    if (Number(rows[0]?.version ?? 0) > this.#version) await this.#refresh();
    return this.#snapshot;
  }

  async mutate<T>(fn: (state: RegistryState) => T | Promise<T>): Promise<T> {
    let next: { version: number; changed: IdentityRow[]; revocations: Revocations | null } | null = null;
    const result = await transaction(this.#conn, "update the registry", async (client) => {
      const what = "update the registry";
      await query(client, this.location, `${what} (lock)`, "SELECT pg_advisory_xact_lock($1)", [LOCKS.registry.toString()]);
      // Under the lock nobody else commits: this is the newest state, and stays so until COMMIT.
      await this.#catchUpWith(client);
      const before = this.#snapshot.state;
      const version = this.#version;
      const working = structuredClone(before) as RegistryState;
      const value = await fn(working);
      const changed: IdentityRow[] = [];
      for (const [key, record] of Object.entries(working.identities)) {
        const old = before.identities[key];
        if (old === undefined || JSON.stringify(old) !== JSON.stringify(record)) changed.push({ key, record });
      }
      for (const key of Object.keys(before.identities)) if (!Object.hasOwn(working.identities, key)) changed.push({ key, record: null });
      const revocations = JSON.stringify(before.revocations) === JSON.stringify(working.revocations) ? null : working.revocations;
      if (changed.length === 0 && revocations === null) return value;
      const v = version + 1;
      if (changed.length > 0) {
        await query(
          client,
          this.location,
          `${what} (identities)`,
          `INSERT INTO aztp_registry_identities (key, record, changed_at_version)
             SELECT k, r, $3 FROM unnest($1::text[], $2::jsonb[]) AS t(k, r)
           ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, changed_at_version = EXCLUDED.changed_at_version`,
          [changed.map((c) => c.key), changed.map((c) => (c.record === null ? null : JSON.stringify(c.record))), v],
        );
      }
      await query(
        client,
        this.location,
        `${what} (version)`,
        revocations === null
          ? "UPDATE aztp_registry_meta SET version = $1 WHERE id = 1"
          : "UPDATE aztp_registry_meta SET version = $1, revocations = $2, revocations_changed_at = $1 WHERE id = 1",
        revocations === null ? [v] : [v, JSON.stringify(revocations)],
      );
      // Delivered at COMMIT, to every replica listening (this one included, which then finds nothing new).
      await query(client, this.location, `${what} (notify)`, "SELECT pg_notify($1, $2)", [CHANNEL, String(v)]);
      next = { version: v, changed, revocations };
      return value;
    });
    // Committed: the new state becomes the snapshot, so this process sees its own write at once.
    if (next !== null) this.#apply(next);
    return result;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#poll !== null) clearInterval(this.#poll);
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    const listener = this.#listener;
    this.#listener = null;
    await listener?.end().catch(() => undefined);
    await this.#refreshing?.catch(() => undefined);
  }

  /** Catch-ups are coalesced: one in flight, and at most one more queued behind it. */
  #refresh(): Promise<void> {
    if (this.#refreshing !== null) {
      this.#refreshAgain = true;
      return this.#refreshing;
    }
    const run = async (): Promise<void> => {
      try {
        do {
          this.#refreshAgain = false;
          await this.#catchUp();
        } while (this.#refreshAgain && !this.#closed);
      } finally {
        this.#refreshing = null;
      }
    };
    this.#refreshing = run();
    return this.#refreshing;
  }

  /** Reads the meta row and the changed rows in one consistent (repeatable read) snapshot. */
  #catchUp(): Promise<void> {
    return transaction(this.#conn, "read the registry", (client) => this.#catchUpWith(client), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }

  async #catchUpWith(client: pg.PoolClient): Promise<void> {
    const what = "read the registry";
    const since = this.#version;
    const meta = (await query<MetaRow>(client, this.location, what, "SELECT version, revocations, revocations_changed_at FROM aztp_registry_meta WHERE id = 1")).rows[0];
    if (meta === undefined) throw storeFailed(this.location, what, new Error("the registry meta row is missing (schema not migrated?)"));
    const version = Number(meta.version);
    if (version <= since) return;
    const { rows } = await query<IdentityRow>(client, this.location, what, "SELECT key, record FROM aztp_registry_identities WHERE changed_at_version > $1", [since]);
    this.#apply({ version, changed: rows, revocations: Number(meta.revocations_changed_at) > since ? meta.revocations : null });
  }

  /**
   * Swaps in the snapshot of `version`: the current one with `changed` rows and (if given) the
   * revocations replaced. Ignored if this replica already has that version or a newer one (a
   * catch-up and a mutate may finish in either order; each carries a consistent state).
   */
  #apply(next: { version: number; changed: IdentityRow[]; revocations: Revocations | null }): void {
    if (next.version <= this.#version) return;
    const base = this.#snapshot.state;
    // Unchanged records are shared with the previous snapshot: they are frozen, and the
    // snapshot only freezes what is not frozen yet, so a change costs what changed.
    const identities: Record<string, IdentityRecord> = { ...base.identities };
    for (const { key, record } of next.changed) {
      if (record === null) delete identities[key];
      else identities[key] = structuredClone(record);
    }
    const revocations = next.revocations === null ? base.revocations : structuredClone(next.revocations);
    this.#snapshot = new RegistrySnapshot({ version: 1, identities, revocations }, String(next.version));
    this.#version = next.version;
  }

  async #listen(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client(this.#conn.config);
    const lost = (): void => {
      if (this.#listener !== client) return;
      this.#listener = null;
      client.removeAllListeners("notification");
      client.end().catch(() => undefined);
      this.#scheduleReconnect();
    };
    client.on("error", lost);
    client.on("end", lost);
    client.on("notification", (msg) => {
      if (msg.channel === CHANNEL && Number(msg.payload) > this.#version) void this.#refresh().catch(() => undefined);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch (cause) {
      client.removeAllListeners();
      client.on("error", () => undefined);
      await client.end().catch(() => undefined);
      // At open, a store that cannot listen is a store that cannot be reached: say so.
      if (this.#listener === null && this.#reconnectTimer === null && !this.#everListened) throw storeFailed(this.location, "listen for registry changes", cause);
      this.#scheduleReconnect();
      return;
    }
    this.#everListened = true;
    this.#listener = client;
    // Changes committed while it was not listening: catch up now rather than at the next poll.
    void this.#refresh().catch(() => undefined);
  }

  #everListened = false;

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer !== null) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      void this.#listen();
    }, 1000);
    this.#reconnectTimer.unref();
  }
}
