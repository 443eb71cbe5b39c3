/**
 * Registration entries of the Workload API on PostgreSQL, with the rules of
 * workload-api/entries.ts, so every store accepts and refuses exactly the same entries. The
 * identical entry is refused by a unique key of the SPIFFE ID and selector set (the table's
 * entry_key), so two replicas creating it at once cannot both win; every read is a query, so an
 * entry one replica adds or deletes is seen by all on their next read.
 */
import { AztpError, ErrorCodes } from "../../errors.js";
import {
  checkNewWorkloadEntry,
  entryExists,
  isWorkloadEntryId,
  newWorkloadEntry,
  storedWorkloadEntry,
  workloadEntryKey,
  type NewWorkloadEntry,
  type WorkloadEntry,
  type WorkloadEntryStore,
} from "../../workload-api/entries.js";
import { query, type PgConnection } from "./pool.js";

interface EntryRow {
  entry_id: string;
  spiffe_id: string;
  selectors: unknown;
  hint: string | null;
  created_at: string;
}

const COLUMNS = "entry_id, spiffe_id, selectors, hint, created_at";

export class PgWorkloadEntryStore implements WorkloadEntryStore {
  readonly #conn: PgConnection;

  constructor(conn: PgConnection) {
    this.#conn = conn;
  }

  get location(): string {
    return this.#conn.location;
  }

  async create(entry: NewWorkloadEntry): Promise<WorkloadEntry> {
    const checked = checkNewWorkloadEntry(entry);
    const made = newWorkloadEntry(checked);
    const { rowCount } = await query(
      this.#conn.pool,
      this.#conn.location,
      "create a Workload API entry",
      `INSERT INTO aztp_workload_entries (${COLUMNS}, entry_key) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (entry_key) DO NOTHING`,
      [
        made.entryId,
        made.spiffeId,
        JSON.stringify(made.selectors),
        made.hint ?? null,
        made.createdAt,
        workloadEntryKey(checked),
      ],
    );
    if (rowCount !== 1) throw entryExists(checked);
    return made;
  }

  async list(): Promise<WorkloadEntry[]> {
    const { rows } = await query<EntryRow>(
      this.#conn.pool,
      this.#conn.location,
      "list Workload API entries",
      `SELECT ${COLUMNS} FROM aztp_workload_entries ORDER BY seq`,
    );
    return rows.map((r) => this.#fromRow(r));
  }

  async get(entryId: string): Promise<WorkloadEntry | undefined> {
    if (!isWorkloadEntryId(entryId)) return undefined;
    const { rows } = await query<EntryRow>(
      this.#conn.pool,
      this.#conn.location,
      "read a Workload API entry",
      `SELECT ${COLUMNS} FROM aztp_workload_entries WHERE entry_id = $1`,
      [entryId],
    );
    const row = rows[0];
    return row === undefined ? undefined : this.#fromRow(row);
  }

  async delete(entryId: string): Promise<boolean> {
    if (!isWorkloadEntryId(entryId)) return false;
    const { rowCount } = await query(
      this.#conn.pool,
      this.#conn.location,
      "delete a Workload API entry",
      "DELETE FROM aztp_workload_entries WHERE entry_id = $1",
      [entryId],
    );
    return rowCount === 1;
  }

  /** The pool belongs to openPostgresStores, which closes it. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  #fromRow(r: EntryRow): WorkloadEntry {
    const entry = storedWorkloadEntry({
      entryId: r.entry_id,
      spiffeId: r.spiffe_id,
      selectors: r.selectors,
      hint: r.hint,
      createdAt: r.created_at,
    });
    if (entry === undefined)
      throw new AztpError(
        ErrorCodes.AUTHORITY_STORE_FAILED,
        `PostgreSQL store ${this.#conn.location}: the Workload API entry ${JSON.stringify(r.entry_id).slice(0, 60)} is not a valid entry (written by something else?)`,
      );
    return entry;
  }
}
