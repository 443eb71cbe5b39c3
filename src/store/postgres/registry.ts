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

/** Mutations per transaction at most: the lock is held while they run (each may sign an SVID). */
const MAX_BATCH = 64;

interface Job {
  readonly fn: (state: RegistryState) => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (cause: unknown) => void;
}

/**
 * A view of the identities for one mutation: records are cloned when first read (so the
 * frozen snapshot is never touched), and only those it read, set or deleted are compared
 * afterwards: a mutation costs what it touches, not the registry's size. Iterating the view
 * (Object.values: a revocation's cascade) clones every record, as it must.
 */
function copyOnWrite(
  read: (key: string) => IdentityRecord | undefined,
  keys: () => string[],
): {
  identities: Record<string, IdentityRecord>;
  touched: Map<string, { value: IdentityRecord | undefined; original: IdentityRecord | undefined }>;
} {
  const touched = new Map<string, { value: IdentityRecord | undefined; original: IdentityRecord | undefined }>();
  const get = (key: string): IdentityRecord | undefined => {
    const t = touched.get(key);
    if (t !== undefined) return t.value;
    const original = read(key);
    if (original === undefined) return undefined;
    const value = structuredClone(original) as IdentityRecord;
    touched.set(key, { value, original });
    return value;
  };
  const put = (key: string, value: IdentityRecord | undefined): void => {
    const t = touched.get(key);
    touched.set(key, { value, original: t !== undefined ? t.original : read(key) });
  };
  const identities = new Proxy({} as Record<string, IdentityRecord>, {
    get: (_t, key) => (typeof key === "string" ? get(key) : undefined),
    has: (_t, key) => typeof key === "string" && get(key) !== undefined,
    set: (_t, key, value) => {
      if (typeof key !== "string") return false;
      put(key, value as IdentityRecord);
      return true;
    },
    defineProperty: (_t, key, desc) => {
      if (typeof key !== "string" || !("value" in desc)) return false;
      put(key, desc.value as IdentityRecord);
      return true;
    },
    deleteProperty: (_t, key) => {
      if (typeof key === "string") put(key, undefined);
      return true;
    },
    ownKeys: () => {
      const out = keys().filter((k) => touched.get(k)?.value !== undefined || !touched.has(k));
      for (const [k, t] of touched) if (t.value !== undefined && !out.includes(k)) out.push(k);
      return out;
    },
    getOwnPropertyDescriptor: (_t, key) => {
      if (typeof key !== "string") return undefined;
      const value = get(key);
      return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true };
    },
  });
  return { identities, touched };
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
  #jobs: Job[] = [];
  #draining: Promise<void> | null = null;

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
    const { rows } = await query<{ version: string }>(
      this.#conn.pool,
      this.location,
      "read the registry version",
      "SELECT version FROM aztp_registry_meta WHERE id = 1",
    );
    if (Number(rows[0]?.version ?? 0) > this.#version) await this.#refresh();
    return this.#snapshot;
  }

  /**
   * Group commit: mutations that arrive while a batch is in flight run in the next batch, one
   * after another in one transaction, so the lock, the catch-up and the commit (its fsync) are
   * paid once per batch. Each runs on its own copy-on-write view of the state as the mutations
   * before it in the batch left it; one that throws leaves no trace, and the others are written.
   */
  mutate<T>(fn: (state: RegistryState) => T | Promise<T>): Promise<T> {
    if (this.#closed)
      return Promise.reject(storeFailed(this.location, "update the registry", new Error("the store is closed")));
    return new Promise<T>((resolve, reject) => {
      this.#jobs.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      this.#draining ??= this.#drain();
    });
  }

  async #drain(): Promise<void> {
    await Promise.resolve(); // never finish before mutate has stored this promise as #draining
    while (this.#jobs.length > 0) await this.#runBatch(this.#jobs.splice(0, MAX_BATCH));
    this.#draining = null;
  }

  /** One batch in one transaction; settles every job (never throws). */
  async #runBatch(jobs: readonly Job[]): Promise<void> {
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    let next: { version: number; changed: IdentityRow[]; revocations: Revocations | null } | null = null;
    try {
      await transaction(this.#conn, "update the registry", async (client) => {
        const what = "update the registry";
        await query(client, this.location, `${what} (lock)`, "SELECT pg_advisory_xact_lock($1)", [
          LOCKS.registry.toString(),
        ]);
        // Under the lock nobody else commits: this is the newest state, and stays so until COMMIT.
        await this.#catchUpWith(client);
        const base = this.#snapshot.state;
        const version = this.#version;
        // What the batch changed so far (null: removed), over `base`.
        const changed = new Map<string, IdentityRecord | null>();
        let revocations: Revocations | null = null;
        const read = (key: string): IdentityRecord | undefined =>
          changed.has(key)
            ? (changed.get(key) ?? undefined)
            : Object.hasOwn(base.identities, key)
              ? base.identities[key]
              : undefined;
        const keys = (): string[] => {
          const out = Object.keys(base.identities).filter((k) => !changed.has(k) || changed.get(k) !== null);
          for (const [k, v] of changed) if (v !== null && !Object.hasOwn(base.identities, k)) out.push(k);
          return out;
        };
        for (const job of jobs) {
          const view = copyOnWrite(read, keys);
          const revBefore = revocations ?? base.revocations;
          const state: RegistryState = {
            version: 1,
            identities: view.identities,
            revocations: structuredClone(revBefore) as Revocations,
          };
          try {
            const value = await job.fn(state);
            if (state.identities !== view.identities) {
              // fn replaced the whole map: compare every record.
              const all = new Set([...keys(), ...Object.keys(state.identities)]);
              for (const key of all) {
                const now = Object.hasOwn(state.identities, key) ? state.identities[key] : undefined;
                if (JSON.stringify(now) !== JSON.stringify(read(key)))
                  changed.set(key, now === undefined ? null : structuredClone(now));
              }
            } else {
              for (const [key, t] of view.touched)
                if (JSON.stringify(t.value) !== JSON.stringify(t.original)) changed.set(key, t.value ?? null);
            }
            if (JSON.stringify(state.revocations) !== JSON.stringify(revBefore)) revocations = state.revocations;
            outcomes.push({ ok: true, value });
          } catch (error) {
            outcomes.push({ ok: false, error }); // its view is dropped: nothing of it is written
          }
        }
        if (changed.size === 0 && revocations === null) return;
        const rows: IdentityRow[] = [...changed].map(([key, record]) => ({ key, record }));
        const v = version + 1;
        if (rows.length > 0) {
          await query(
            client,
            this.location,
            `${what} (identities)`,
            `INSERT INTO aztp_registry_identities (key, record, changed_at_version)
               SELECT k, r, $3 FROM unnest($1::text[], $2::jsonb[]) AS t(k, r)
             ON CONFLICT (key) DO UPDATE SET record = EXCLUDED.record, changed_at_version = EXCLUDED.changed_at_version`,
            [rows.map((c) => c.key), rows.map((c) => (c.record === null ? null : JSON.stringify(c.record))), v],
          );
        }
        await query(
          client,
          this.location,
          `${what} (version)`,
          `${revocations === null ? "UPDATE aztp_registry_meta SET version = $1::bigint WHERE id = 1" : "UPDATE aztp_registry_meta SET version = $1::bigint, revocations = $3, revocations_changed_at = $1::bigint WHERE id = 1"}
           RETURNING pg_notify($2, $1::bigint::text)`,
          revocations === null ? [v, CHANNEL] : [v, CHANNEL, JSON.stringify(revocations)],
        );
        // The notification is delivered at COMMIT, to every replica listening (this one too, which
        // then finds nothing new).
        next = { version: v, changed: rows, revocations };
      });
    } catch (cause) {
      // Not committed: no job's change was written. A job that threw itself keeps its own error.
      jobs.forEach((job, i) => {
        const o = outcomes[i];
        job.reject(o !== undefined && !o.ok ? o.error : cause);
      });
      return;
    }
    // Committed: the new state becomes the snapshot before any job resolves, so each caller sees its write.
    if (next !== null) this.#apply(next);
    jobs.forEach((job, i) => {
      const o = outcomes[i] as (typeof outcomes)[number];
      if (o.ok) job.resolve(o.value);
      else job.reject(o.error);
    });
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
    return transaction(
      this.#conn,
      "read the registry",
      (client) => this.#catchUpWith(client),
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    );
  }

  async #catchUpWith(client: pg.PoolClient): Promise<void> {
    const what = "read the registry";
    const since = this.#version;
    const meta = (
      await query<MetaRow>(
        client,
        this.location,
        what,
        "SELECT version, revocations, revocations_changed_at FROM aztp_registry_meta WHERE id = 1",
      )
    ).rows[0];
    if (meta === undefined)
      throw storeFailed(this.location, what, new Error("the registry meta row is missing (schema not migrated?)"));
    const version = Number(meta.version);
    if (version <= since) return;
    const { rows } = await query<IdentityRow>(
      client,
      this.location,
      what,
      "SELECT key, record FROM aztp_registry_identities WHERE changed_at_version > $1",
      [since],
    );
    this.#apply({
      version,
      changed: rows,
      revocations: Number(meta.revocations_changed_at) > since ? meta.revocations : null,
    });
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
      if (this.#listener === null && this.#reconnectTimer === null && !this.#everListened)
        throw storeFailed(this.location, "listen for registry changes", cause);
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
