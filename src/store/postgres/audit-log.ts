/**
 * The audit log on PostgreSQL, for MANY WRITERS: any number of processes and replicas append
 * to one hash chain, and `aztp audit verify` checks an export of it as it checks a file log.
 *
 * THE MANY-WRITER CHAIN RULE. There is one chain (the rule of audit/chain.ts, unchanged): seq
 * 1, 2, 3 ... with no gaps, each entry's prev the hash of the entry before it. No writer holds
 * the chain's head in memory, since another writer may have moved it. Instead each batch is
 * one transaction that
 *   1. takes the transaction advisory lock LOCKS.audit (writers queue here, across replicas),
 *   2. reads the head from the table (the row with the highest seq; genesis when empty), or,
 *      when this writer wrote the last batch it knows of, checks in the INSERT itself that
 *      the head is still that one (inserting nothing otherwise, and then reading it),
 *   3. chains its entries after it (nextLink, sealEntry: the file log's exact bytes),
 *   4. inserts them in one multi-row INSERT (seq is the primary key: a writer that broke the
 *      rule would fail, never fork the chain), and, with a signer, a checkpoint when due,
 *   5. commits; only then do the batch's appends resolve (durable: PostgreSQL's commit).
 * So the chain's order is the commit order of batches, entries of one batch in call order.
 * A batch that fails rolls back whole: no seq is used by it, and nothing chains to it.
 * If the connection is lost during COMMIT the outcome is unknown to the writer; its appends
 * reject (the guard refuses the calls), and the entries may or may not be in the chain: either
 * way the chain is whole, since every entry was chained to the head it read under the lock.
 *
 * Group commit: appends that arrive while a batch is in flight collect into the next one
 * (up to maxBatchEntries), so the lock is taken once per batch, not per entry.
 *
 * Checkpoints: each writer may sign with its own SVID (any signer the verifier trusts); a
 * checkpoint is cut inside the batch transaction, naming the head just written, when
 * checkpointEvery entries were added since the newest one (by any writer), and on close.
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { GENESIS, nextCheckpoint, nextLink, type ChainHead } from "../../audit/chain.js";
import { checkpointLine, signCheckpoint, type Checkpoint, type CheckpointSigner } from "../../audit/checkpoint.js";
import {
  entryFields,
  validateEntryInput,
  type AuditEntry,
  type AuditEntryInput,
  type StoredAuditEntry,
  type UnsealedEntry,
} from "../../audit/entry.js";
import { redact } from "../../audit/redact.js";
import { writeWitness } from "../../audit/witness.js";
import type { AuditWriter, AuditWriterOptions } from "../../audit/writer.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { canonicalJson } from "../../json/canonical.js";
import { sha256Hex } from "../../sha256.js";
import { LOCKS, query, transaction, withClient, type PgConnection } from "./pool.js";
import type pg from "pg";

/** An entry's fields as appended, made storable, without its place in the chain. */
type Fields = Omit<UnsealedEntry, "seq" | "prev">;

/**
 * An entry waiting for its place in the chain, with its canonical JSON made already, in three
 * runs of members: those sorting before "prev", between "prev" and "seq", and after "seq".
 * Under the chain's lock only seq and prev are spliced in and the result hashed: the costly
 * part (canonical form of every field) is done before, outside the lock, by each writer.
 */
interface Prepared {
  readonly fields: Fields;
  readonly runs: readonly [string, string, string];
}

interface Pending {
  readonly prepared: Prepared;
  readonly resolve: (entry: AuditEntry) => void;
  readonly reject: (cause: unknown) => void;
}

export interface AuditExportResult {
  readonly entries: number;
  readonly checkpoints: number;
  readonly lastSeq: number;
  readonly head: string;
}

export class PgAuditLog implements AuditWriter {
  readonly path: string;
  readonly #conn: PgConnection;
  readonly #includeArgs: boolean;
  readonly #redactFields: readonly string[];
  readonly #signer: CheckpointSigner | undefined;
  readonly #checkpointEvery: number;
  readonly #maxBatch: number;
  readonly #recoverIntervalMs: number;
  #queue: Pending[] = [];
  #inFlight: Promise<void> | null = null;
  #failure: AztpError | null = null;
  #lastRecoverAttempt = -Infinity;
  #closed = false;
  #idle: Array<() => void> = [];
  /** The head this writer's last batch committed (and the newest checkpoint it knew of); null: unknown. */
  #knownHead: { head: ChainHead; checkpointUpTo: number } | null = null;
  #skipFastPath = 0;

  constructor(conn: PgConnection, options: AuditWriterOptions = {}) {
    this.#conn = conn;
    this.path = `${conn.location} (audit)`;
    this.#includeArgs = options.includeArgs === true;
    this.#redactFields = [...(options.redactFields ?? [])];
    redact(null, this.#redactFields); // rejects malformed field names now rather than at the first append
    this.#signer = options.signer;
    this.#checkpointEvery = positiveInt(options.checkpointEvery, "checkpointEvery", 1000);
    this.#maxBatch = positiveInt(options.maxBatchEntries, "maxBatchEntries", 1000);
    this.#recoverIntervalMs = options.recoverIntervalMs ?? 500;
  }

  /** False after a batch failed to commit, until recover() reaches the database again. */
  get writable(): boolean {
    return !this.#closed && this.#failure === null;
  }

  append(input: AuditEntryInput): Promise<AuditEntry> {
    if (this.#closed) return Promise.reject(new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`));
    if (this.#failure !== null) return Promise.reject(this.#failure);
    let prepared: Prepared;
    try {
      validateEntryInput(input);
      prepared = this.#prepare(input);
    } catch (cause) {
      return Promise.reject(cause);
    }
    return new Promise<AuditEntry>((resolve, reject) => {
      this.#queue.push({ prepared, resolve, reject });
      this.#inFlight ??= this.#drain();
    });
  }

  /** Reaches the database again after a failure (at most once per recoverIntervalMs). */
  async recover(): Promise<boolean> {
    if (this.#closed) return false;
    if (this.#failure === null) return true;
    const now = performance.now();
    if (now - this.#lastRecoverAttempt < this.#recoverIntervalMs) return false;
    this.#lastRecoverAttempt = now;
    try {
      await query(this.#conn.pool, this.#conn.location, "reach the audit log", "SELECT 1");
    } catch {
      return false;
    }
    // Nothing to reset: the head is read from the table by every batch.
    this.#failure = null;
    return true;
  }

  /** Resolves once every append so far has committed (or failed). */
  flush(): Promise<void> {
    if (this.#inFlight === null) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Flushes, checkpoints what is not yet covered (with a signer), and refuses later appends. The
   * pool is its owner's.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
    if (this.#signer !== undefined && this.#failure === null) {
      await transaction(this.#conn, "checkpoint the audit log", async (client) => {
        await this.#lock(client);
        const head = await this.#head(client);
        await this.#checkpointIfDue(client, head, true);
      }).catch(() => undefined); // the next writer's checkpoint covers it
    }
  }

  /** Entries with seq > afterSeq, oldest first, at most `limit` (default 1000). */
  async query(afterSeq = 0, limit = 1000): Promise<StoredAuditEntry[]> {
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0 || !Number.isSafeInteger(limit) || limit < 0) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "afterSeq and limit must be whole numbers >= 0");
    }
    const { rows } = await query<{ entry: string }>(
      this.#conn.pool,
      this.#conn.location,
      "read the audit log",
      "SELECT entry FROM aztp_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
      [afterSeq, limit],
    );
    return rows.map((r) => JSON.parse(r.entry) as StoredAuditEntry);
  }

  /** The chain's head as committed now. */
  async head(): Promise<ChainHead> {
    return transaction(this.#conn, "read the audit head", (client) => this.#head(client));
  }

  /**
   * Writes the whole log as the file log stores it (one line per entry, each checkpoint right
   * after the entry it names), from one consistent snapshot, so `aztp audit verify` checks it.
   * Given a path, the newest checkpoint is also written to `<path>.witness`.
   */
  async exportJsonl(out: string | Writable): Promise<AuditExportResult> {
    const stream: Writable = typeof out === "string" ? createWriteStream(out, { mode: 0o600 }) : out;
    const write = async (line: string): Promise<void> => {
      if (!stream.write(`${line}\n`)) await once(stream, "drain");
    };
    const result = await transaction(
      this.#conn,
      "export the audit log",
      async (client) => {
        const checkpoints = (
          await query<{ up_to: string; record: string }>(
            client,
            this.#conn.location,
            "export the audit log",
            "SELECT up_to, record FROM aztp_audit_checkpoints ORDER BY seq",
          )
        ).rows;
        let c = 0;
        let after = 0;
        let head: ChainHead = GENESIS;
        let entries = 0;
        for (;;) {
          const { rows } = await query<{ seq: string; entry: string; hash: string }>(
            client,
            this.#conn.location,
            "export the audit log",
            "SELECT seq, entry, hash FROM aztp_audit WHERE seq > $1 ORDER BY seq LIMIT 5000",
            [after],
          );
          if (rows.length === 0) break;
          for (const row of rows) {
            const seq = Number(row.seq);
            await write(row.entry);
            entries++;
            head = { seq, hash: row.hash };
            while (c < checkpoints.length && Number(checkpoints[c]?.up_to) === seq)
              await write(checkpoints[c++]?.record as string);
          }
          after = head.seq;
        }
        // Checkpoints that name no exported entry would be reported by verify: they are written anyway, at the end.
        while (c < checkpoints.length) await write(checkpoints[c++]?.record as string);
        const newest =
          checkpoints.length === 0
            ? null
            : (JSON.parse(checkpoints[checkpoints.length - 1]?.record as string) as Checkpoint);
        return { entries, checkpoints: checkpoints.length, lastSeq: head.seq, head: head.hash, newest };
      },
      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    );
    if (typeof out === "string") {
      stream.end();
      await once(stream, "close");
      if (result.newest !== null) await writeWitness(`${out}.witness`, result.newest);
    }
    return { entries: result.entries, checkpoints: result.checkpoints, lastSeq: result.lastSeq, head: result.head };
  }

  /** Writes batches until the queue is empty; one batch in flight at a time per writer. */
  async #drain(): Promise<void> {
    await Promise.resolve(); // never finish before append has stored this promise as #inFlight
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#maxBatch);
      if (this.#failure !== null) {
        for (const p of batch) p.reject(this.#failure);
        continue;
      }
      try {
        const sealed = await this.#commit(batch.map((p) => p.prepared));
        batch.forEach((p, i) => p.resolve(sealed[i] as AuditEntry));
      } catch (cause) {
        const failure =
          cause instanceof AztpError && cause.code === ErrorCodes.AUDIT_IO_FAILED
            ? cause
            : new AztpError(
                ErrorCodes.AUDIT_IO_FAILED,
                `audit log ${this.path}: a batch of ${batch.length} entries was not written: ${(cause as Error).message}`,
                { cause },
              );
        this.#failure = failure;
        for (const p of batch) p.reject(failure);
      }
    }
    this.#inFlight = null;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** One batch: lock, read the head, chain, insert, checkpoint if due, commit. */
  /**
   * One batch. When this writer wrote the last batch it knows (`#knownHead`), it first tries
   * the fast path: one round trip that chains on that head and inserts only if the table's
   * head is still it (checked under the lock, in the INSERT). If another writer appended in
   * between, nothing was inserted, and the slow path reads the head under the lock first.
   */
  async #commit(batch: readonly Prepared[]): Promise<AuditEntry[]> {
    const known = this.#skipFastPath > 0 ? null : this.#knownHead;
    if (this.#skipFastPath > 0) this.#skipFastPath--;
    this.#knownHead = null; // until this batch commits
    try {
      if (known !== null && !this.#checkpointMaybeDue(known.head.seq + batch.length, known.checkpointUpTo)) {
        const fast = await this.#commitOn(batch, known.head, true);
        if (fast !== null) {
          this.#knownHead = { head: fast.head, checkpointUpTo: known.checkpointUpTo };
          return fast.entries;
        }
        this.#skipFastPath = 4; // writers are interleaving: the next few batches go the slow way
      }
      const slow = (await this.#commitOn(batch, null, false)) as {
        entries: AuditEntry[];
        head: ChainHead;
        checkpointUpTo: number;
      };
      this.#knownHead = { head: slow.head, checkpointUpTo: slow.checkpointUpTo };
      return slow.entries;
    } catch (cause) {
      this.#knownHead = null;
      throw cause;
    }
  }

  /** Whether a checkpoint may be due at `seq`, as far as this writer knows (the slow path then decides). */
  #checkpointMaybeDue(seq: number, checkpointUpTo: number): boolean {
    return this.#signer !== undefined && seq - checkpointUpTo >= this.#checkpointEvery;
  }

  /**
   * Fast (`on` given): BEGIN, lock, guarded INSERT, COMMIT in one round trip; null when the
   * guard found another head. Slow: BEGIN, lock, head and newest checkpoint; then INSERT, the
   * checkpoint if due, COMMIT. Values are inlined as literals (a multi-statement query takes
   * no parameters): numbers and hex this writer made, text through escapeLiteral.
   */
  #commitOn(
    batch: readonly Prepared[],
    on: ChainHead | null,
    fast: boolean,
  ): Promise<{ entries: AuditEntry[]; head: ChainHead; checkpointUpTo: number } | null> {
    return withClient(this.#conn, "append to the audit log", async (client) => {
      const what = "append to the audit log";
      const lock = `BEGIN; SELECT pg_advisory_xact_lock(${LOCKS.audit.toString()})`;
      try {
        let start: ChainHead;
        let previous: Checkpoint | null = null;
        if (fast && on !== null) {
          start = on;
        } else {
          const started = (await query(
            client,
            this.#conn.location,
            what,
            `${lock}; ${HEAD_QUERY}${this.#signer === undefined ? "" : `; ${NEWEST_CHECKPOINT_QUERY}`}`,
          )) as unknown as pg.QueryResult[];
          start = headOf(started[2]?.rows[0] as HeadRow | undefined);
          previous = parseCheckpointRow(started[3]?.rows[0] as CheckpointRow | undefined);
        }
        let head = start;
        const entries: AuditEntry[] = [];
        let lines = "";
        for (const prepared of batch) {
          const link = nextLink(head);
          const { entry, line } = seal(prepared, link.seq, link.prev);
          entries.push(entry);
          lines += lines === "" ? line : `\n${line}`;
          head = { seq: entry.seq, hash: entry.hash };
        }
        if (fast) {
          const results = (await query(
            client,
            this.#conn.location,
            what,
            `${lock}; ${insertBatch(client, lines, start, true)}; COMMIT`,
          )) as unknown as pg.QueryResult[];
          const inserted = results[2]?.rowCount ?? 0;
          if (inserted === batch.length) return { entries, head, checkpointUpTo: 0 };
          if (inserted !== 0)
            throw new AztpError(
              ErrorCodes.AUDIT_CORRUPT,
              `audit log ${this.path}: ${inserted} of ${batch.length} entries inserted`,
            );
          return null; // nothing inserted, and the empty transaction is committed
        }
        let second = insertBatch(client, lines, start, false);
        const checkpoint = this.#dueCheckpoint(previous, head, false);
        if (checkpoint !== null) second += `; ${insertCheckpoint(client, checkpoint)}`;
        await query(client, this.#conn.location, what, `${second}; COMMIT`);
        return { entries, head, checkpointUpTo: checkpoint?.upTo ?? previous?.upTo ?? 0 };
      } catch (cause) {
        await client.query("ROLLBACK").catch(() => undefined);
        throw cause;
      }
    });
  }

  async #lock(client: pg.PoolClient): Promise<void> {
    await query(client, this.#conn.location, "lock the audit chain", "SELECT pg_advisory_xact_lock($1)", [
      LOCKS.audit.toString(),
    ]);
  }

  async #head(client: pg.PoolClient): Promise<ChainHead> {
    return headOf((await query<HeadRow>(client, this.#conn.location, "read the audit head", HEAD_QUERY)).rows[0]);
  }

  /** Under the lock: cuts a checkpoint at `head` when due (or, `force`, when anything is uncovered). */
  async #checkpointIfDue(client: pg.PoolClient, head: ChainHead, force: boolean): Promise<void> {
    if (this.#signer === undefined) return;
    const { rows } = await query<CheckpointRow>(
      client,
      this.#conn.location,
      "read the newest checkpoint",
      NEWEST_CHECKPOINT_QUERY,
    );
    const checkpoint = this.#dueCheckpoint(parseCheckpointRow(rows[0]), head, force);
    if (checkpoint !== null)
      await query(client, this.#conn.location, "write a checkpoint", insertCheckpoint(client, checkpoint));
  }

  /** The checkpoint to cut after `previous` at `head`, signed, or null when none is due (or no signer). */
  #dueCheckpoint(previous: Checkpoint | null, head: ChainHead, force: boolean): Checkpoint | null {
    const signer = this.#signer;
    if (signer === undefined || head.seq === 0) return null;
    const covered = previous?.upTo ?? 0;
    if (head.seq === covered || (!force && head.seq - covered < this.#checkpointEvery)) return null;
    return signCheckpoint(
      { type: "checkpoint", ...nextCheckpoint(previous, head), time: new Date().toISOString(), signer: signer.id },
      signer,
    );
  }

  /**
   * The entry as the file log builds it (entryFields in audit/entry.ts, which both use), split
   * in the three runs of members around `prev` and `seq`, which are spliced in under the lock.
   */
  #prepare(input: AuditEntryInput): Prepared {
    const fields = this.#fields(input);
    const runs: [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>] = [{}, {}, {}];
    for (const [key, value] of Object.entries(fields)) {
      // RFC 8785 orders members by UTF-16 code units, as JavaScript compares strings.
      (runs[key < "prev" ? 0 : key < "seq" ? 1 : 2] as Record<string, unknown>)[key] = value;
    }
    return { fields, runs: [members(runs[0]), members(runs[1]), members(runs[2])] };
  }

  #fields(input: AuditEntryInput): Fields {
    return entryFields(input, { includeArgs: this.#includeArgs, redactFields: this.#redactFields });
  }
}

interface HeadRow {
  seq: string;
  hash: string;
}

/** The chain's head: the entry with the highest seq (the primary key's index answers it). */
const HEAD_QUERY = "SELECT seq, hash FROM aztp_audit ORDER BY seq DESC LIMIT 1";

/**
 * The batch's INSERT: one text literal of its lines split by newline (canonical JSON has none
 * inside a line), so there is no array literal to escape and parse. Each line ends with its
 * hash (`,"hash":"<64 hex>"}`); each prev is the hash of the line before, the first's the head's.
 */
function insertBatch(client: pg.PoolClient, lines: string, start: ChainHead, guarded: boolean): string {
  // Guarded: only if the table's head is still `start` (rows are never changed, so its seq says it).
  const guard = guarded ? `WHERE coalesce((SELECT max(seq) FROM aztp_audit), 0) = ${start.seq}` : "";
  return `INSERT INTO aztp_audit (seq, entry, hash, prev)
    SELECT ${start.seq + 1} + ord - 1, line, hash, coalesce(lag(hash) OVER (ORDER BY ord), '${hex64(start.hash)}')
    FROM (SELECT line, ord, substr(line, length(line) - 65, 64) AS hash
          FROM unnest(string_to_array(${client.escapeLiteral(lines)}, E'\\n')) WITH ORDINALITY AS t(line, ord)) AS batch ${guard}`;
}

function insertCheckpoint(client: pg.PoolClient, c: Checkpoint): string {
  return `INSERT INTO aztp_audit_checkpoints (seq, up_to, record) VALUES (${c.seq}, ${c.upTo}, ${client.escapeLiteral(checkpointLine(c))})`;
}

/** A hash about to be inlined in SQL: only ever 64 hex digits. */
function hex64(hash: string): string {
  if (!/^[0-9a-f]{64}$/.test(hash))
    throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `the audit chain's head hash is not 64 hex digits`);
  return hash;
}

const NEWEST_CHECKPOINT_QUERY = "SELECT record FROM aztp_audit_checkpoints ORDER BY seq DESC LIMIT 1";

interface CheckpointRow {
  record: string;
}

function parseCheckpointRow(row: CheckpointRow | undefined): Checkpoint | null {
  return row === undefined ? null : (JSON.parse(row.record) as Checkpoint);
}

function headOf(row: HeadRow | undefined): ChainHead {
  return row === undefined ? GENESIS : { seq: Number(row.seq), hash: row.hash };
}

/** The members of `object`'s canonical JSON, without the braces ("" for none). */
function members(object: Record<string, unknown>): string {
  let json: string;
  try {
    json = canonicalJson(object);
  } catch (cause) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `audit entry cannot be canonicalised: ${(cause as Error).message}`,
      { cause },
    );
  }
  return json.slice(1, -1);
}

/**
 * What sealEntry (audit/entry.ts) makes of the entry at `seq` after `prev`, from its prepared
 * runs: the same canonical JSON, hash and line (the file log's test pins them byte for byte).
 */
function seal(prepared: Prepared, seq: number, prev: string): { entry: AuditEntry; line: string } {
  const [before, between, after] = prepared.runs;
  let body = "{";
  if (before !== "") body += `${before},`;
  body += `"prev":${JSON.stringify(prev)}`;
  if (between !== "") body += `,${between}`;
  body += `,"seq":${seq}`;
  if (after !== "") body += `,${after}`;
  body += "}";
  const hash = sha256Hex(body);
  return {
    entry: { ...prepared.fields, prev, seq, hash } as AuditEntry,
    line: `${body.slice(0, -1)},"hash":"${hash}"}`,
  };
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${name} must be a whole number >= 1`);
  return value;
}
