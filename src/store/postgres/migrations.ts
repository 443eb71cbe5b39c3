/**
 * The PostgreSQL schema, as numbered migrations kept in the project, applied on start.
 *
 * Several replicas may start at once on a fresh database: each takes the session advisory
 * lock LOCKS.migrations first (before even creating the bookkeeping table, since concurrent
 * `CREATE TABLE IF NOT EXISTS` can itself fail on a duplicate type), so one applies what is
 * missing while the others wait, then find nothing left to do. Each migration runs in its own
 * transaction with its row in aztp_schema_migrations, so a crash leaves it applied or not.
 * A database migrated by a newer version (a version this code does not know) is refused:
 * an older replica must not write a schema it does not understand.
 */
import { AztpError, ErrorCodes } from "../../errors.js";
import { LOCKS, query, withClient, type PgConnection } from "./pool.js";

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "authority, registry, api keys, replay, audit",
    sql: `
      -- The authority's configuration: one row. version changes with every trust domain or CA generation added.
      CREATE TABLE aztp_authority (
        id int PRIMARY KEY CHECK (id = 1),
        config jsonb NOT NULL,
        version bigint NOT NULL
      );
      -- CA generations: certificates in the clear, private keys sealed under the KEK (authority/sealed-key.ts).
      CREATE TABLE aztp_ca_generations (
        trust_domain text NOT NULL,
        generation int NOT NULL CHECK (generation >= 1),
        created_at text NOT NULL,
        retire_after text,
        root_cert_pem text NOT NULL,
        intermediate_cert_pem text NOT NULL,
        jwt_kid text NOT NULL,
        root_key_sealed text NOT NULL,
        intermediate_key_sealed text NOT NULL,
        jwt_key_sealed text NOT NULL,
        PRIMARY KEY (trust_domain, generation)
      );
      -- The registry: one row per identity (record NULL: removed), stamped with the registry
      -- version that last changed it, so a replica catches up by reading only newer rows.
      CREATE TABLE aztp_registry_identities (
        key text PRIMARY KEY,
        record jsonb,
        changed_at_version bigint NOT NULL
      );
      CREATE INDEX aztp_registry_identities_changed ON aztp_registry_identities (changed_at_version);
      -- The registry's version counter and the revocations document (with its own sequence inside).
      CREATE TABLE aztp_registry_meta (
        id int PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL,
        revocations jsonb NOT NULL,
        revocations_changed_at bigint NOT NULL
      );
      INSERT INTO aztp_registry_meta (id, version, revocations, revocations_changed_at)
        VALUES (1, 0, '{"sequence": 0, "identities": {}, "serials": {}}', 0);
      -- API keys of \`aztp serve\`: only a hash of each secret.
      CREATE TABLE aztp_api_keys (
        key_id text PRIMARY KEY,
        secret_hash text NOT NULL,
        name text NOT NULL,
        scope jsonb NOT NULL,
        created_at text NOT NULL,
        revoked_at text
      );
      -- Replay cache: expires_at in ms since the epoch.
      CREATE TABLE aztp_replay (
        key text PRIMARY KEY,
        expires_at bigint NOT NULL
      );
      CREATE INDEX aztp_replay_expires ON aztp_replay (expires_at);
      -- The audit chain: entry is the line as the file log writes it (canonical JSON + hash).
      CREATE TABLE aztp_audit (
        seq bigint PRIMARY KEY CHECK (seq >= 1),
        entry text NOT NULL,
        hash text NOT NULL,
        prev text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE aztp_audit_checkpoints (
        seq bigint PRIMARY KEY CHECK (seq >= 1),
        up_to bigint NOT NULL,
        record text NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "audit Merkle tree: leaf hashes, checkpoint times",
    sql: `
      -- The RFC 6962 leaf hash of each entry, SHA-256(0x00 || the entry line's UTF-8), written
      -- with the row, so a checkpoint reads 32 bytes per entry since the last one, not the lines.
      -- NULL in rows written before (and by a replica that predates this migration): readers
      -- compute it from entry then.
      ALTER TABLE aztp_audit ADD COLUMN leaf bytea CHECK (leaf IS NULL OR length(leaf) = 32);
      -- When the database stored each checkpoint (its own clock, the same for every replica):
      -- the time trigger cuts a checkpoint once the newest is older than the interval.
      -- Rows from before get the migration's time.
      ALTER TABLE aztp_audit_checkpoints ADD COLUMN written_at timestamptz NOT NULL DEFAULT now();
    `,
  },
  {
    version: 3,
    name: "Workload API registration entries",
    sql: `
      -- Registration entries of the Workload API (workload-api/entries.ts): selectors in SPIRE's
      -- syntax, formatted and sorted. entry_key is SHA-256 of the SPIFFE ID and the selector set
      -- (workloadEntryKey): unique, so two replicas creating the identical entry at once cannot
      -- both succeed, whatever the selectors' length. seq orders them oldest first.
      CREATE TABLE aztp_workload_entries (
        entry_id text PRIMARY KEY,
        seq bigint GENERATED ALWAYS AS IDENTITY,
        spiffe_id text NOT NULL,
        selectors jsonb NOT NULL CHECK (jsonb_typeof(selectors) = 'array'),
        hint text,
        created_at text NOT NULL,
        entry_key text NOT NULL UNIQUE
      );
    `,
  },
];

/** Applies every migration the database lacks, under the migrations lock; resolves with the schema version. */
export async function migrate(conn: PgConnection, migrations: readonly Migration[] = MIGRATIONS): Promise<number> {
  return withClient(conn, "run migrations", async (client) => {
    const what = "run migrations";
    await query(client, conn.location, `${what} (lock)`, "SELECT pg_advisory_lock($1)", [LOCKS.migrations.toString()]);
    try {
      await query(
        client,
        conn.location,
        what,
        "CREATE TABLE IF NOT EXISTS aztp_schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const applied = new Set(
        (
          await query<{ version: number }>(client, conn.location, what, "SELECT version FROM aztp_schema_migrations")
        ).rows.map((r) => r.version),
      );
      const known = new Set(migrations.map((m) => m.version));
      const unknown = [...applied].filter((v) => !known.has(v)).sort((a, b) => a - b);
      if (unknown.length > 0) {
        throw new AztpError(
          ErrorCodes.AUTHORITY_STORE_FAILED,
          `PostgreSQL store ${conn.location} has schema migration(s) ${unknown.join(", ")} this version of aztp does not know: it was migrated by a newer version; upgrade this replica`,
        );
      }
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (applied.has(m.version)) continue;
        const step = `apply migration ${m.version} (${m.name})`;
        await query(client, conn.location, step, "BEGIN");
        try {
          await query(client, conn.location, step, m.sql);
          await query(
            client,
            conn.location,
            step,
            "INSERT INTO aztp_schema_migrations (version, name) VALUES ($1, $2)",
            [m.version, m.name],
          );
          await query(client, conn.location, step, "COMMIT");
        } catch (cause) {
          await client.query("ROLLBACK").catch(() => undefined);
          throw cause;
        }
      }
      return Math.max(0, ...known);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [LOCKS.migrations.toString()]).catch(() => undefined);
    }
  });
}
