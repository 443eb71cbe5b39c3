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
 * checkpointEvery entries were added since the newest one (by any writer); by a timer when the
 * newest one is older than checkpointIntervalMs (the database's clock) and entries were added
 * since; and on close. Every cut happens under the chain's lock and after re-reading the newest
 * checkpoint, so there is one signer at a time, and a writer that finds the checkpoint already
 * cut by another does nothing.
 *
 * THE MERKLE TREE. Each checkpoint also signs the RFC 6962 tree of the entry lines as stored
 * (audit/merkle.ts, leaf = SHA-256(0x00 || line)) as a C2SP checkpoint note, with the tree's
 * frontier (makeCheckpoint in audit/checkpoint.ts, what the file log calls too). No writer holds
 * the tree across batches, since others extend it: under the lock, a checkpoint continues from
 * the newest checkpoint's frontier with the leaf hashes of the entries after it, which each row
 * stores (column leaf, computed by PostgreSQL in the INSERT from the line itself). A batch that
 * makes a checkpoint due by count gets those leaf hashes with the head it reads (one query:
 * 32 bytes per entry since the last checkpoint, never the lines, never the whole log), hashes
 * its own lines, and sends the checkpoint with its INSERT. No two checkpoints can disagree: each
 * extends the one before over the same, never-changed rows. A database from before (rows
 * without leaf, checkpoints without note) is read once, by the first checkpoint that carries a
 * note; its old checkpoints verify as predating proofs.
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { GENESIS, nextCheckpoint, nextLink, type ChainHead } from "../../audit/chain.js";
import {
  checkpointBody,
  checkpointFrontier,
  checkpointLine,
  defaultOrigin,
  makeCheckpoint,
  type Checkpoint,
  type CheckpointSigner,
} from "../../audit/checkpoint.js";
import { leafHashOfText, MerkleFrontier } from "../../audit/merkle.js";
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

/** A shared log's options: those of every audit writer, and the shared log's own. */
export interface PgAuditLogOptions extends AuditWriterOptions {
  /**
   * With a signer: checkpoint once the newest checkpoint (by any writer) is this old (ms, the
   * database's clock) and entries were added since. Default 60000; 0 turns it off.
   */
  readonly checkpointIntervalMs?: number | undefined;
  /**
   * The origin of the log's C2SP checkpoints. Default `<signer's SPIFFE ID without
   * spiffe://>/audit/<database name>`; a log whose checkpoints carry notes keeps the origin
   * they name, whoever signs next.
   */
  readonly origin?: string | undefined;
  /** Receives what a background checkpoint could not do; default: `process.emitWarning`. */
  readonly onWarning?: ((message: string, cause: unknown) => void) | undefined;
}

/** What a reader of the published tree needs (serve/tlog-tiles.ts): the newest signed checkpoint with a tree. */
export interface SignedTreeHead {
  /** The C2SP checkpoint, a signed note. */
  readonly note: string;
  /** Its tree size: the entries it covers (seq 1..size). */
  readonly size: number;
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
  readonly #checkpointIntervalMs: number;
  readonly #origin: string | undefined;
  readonly #onWarning: (message: string, cause: unknown) => void;
  #timer: NodeJS.Timeout | null = null;
  #timeCheck: Promise<void> | null = null;
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

  constructor(conn: PgConnection, options: PgAuditLogOptions = {}) {
    this.#conn = conn;
    this.path = `${conn.location} (audit)`;
    this.#includeArgs = options.includeArgs === true;
    this.#redactFields = [...(options.redactFields ?? [])];
    redact(null, this.#redactFields); // rejects malformed field names now rather than at the first append
    this.#signer = options.signer;
    this.#checkpointEvery = positiveInt(options.checkpointEvery, "checkpointEvery", 1000);
    this.#maxBatch = positiveInt(options.maxBatchEntries, "maxBatchEntries", 1000);
    this.#recoverIntervalMs = options.recoverIntervalMs ?? 500;
    this.#checkpointIntervalMs = nonNegativeInt(options.checkpointIntervalMs, "checkpointIntervalMs", 60_000);
    this.#origin = options.origin;
    this.#onWarning =
      options.onWarning ??
      ((message) => process.emitWarning(message, { type: "AztpAuditWarning", code: "AZTP_AUDIT_CHECKPOINT_FAILED" }));
    if (this.#signer !== undefined && this.#checkpointIntervalMs > 0) {
      // Checked twice per interval, so no entry waits much more than the interval for a checkpoint.
      this.#timer = setInterval(
        () => this.#checkpointByTime(),
        Math.max(50, Math.floor(this.#checkpointIntervalMs / 2)),
      );
      this.#timer.unref(); // a pending checkpoint must not keep the process alive
    }
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
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.#timeCheck;
    if (this.#signer !== undefined && this.#failure === null) {
      await this.#checkpointUnderLock("force").catch(() => undefined); // the next writer's checkpoint covers it
    }
  }

  /**
   * Cuts a checkpoint now if entries were added since the newest one (by any writer), under the
   * chain's lock. Resolves with it, or null when there was nothing to cover. Needs a signer.
   */
  async checkpoint(): Promise<Checkpoint | null> {
    if (this.#signer === undefined)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "PgAuditLog.checkpoint() needs the `signer` option");
    if (this.#closed) throw new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`);
    return this.#checkpointUnderLock("force");
  }

  /**
   * The origin this writer's checkpoints name: the newest note's, else the configured or the
   * default one. Null without a signer (this writer signs nothing).
   */
  async origin(): Promise<string | null> {
    const signer = this.#signer;
    if (signer === undefined) return null;
    const { rows } = await query<CheckpointRow>(
      this.#conn.pool,
      this.#conn.location,
      "read the newest checkpoint",
      NEWEST_CHECKPOINT_QUERY,
    );
    return this.#originAfter(parseCheckpointRow(rows[0]), signer);
  }

  /**
   * The newest checkpoint that signs a tree (a C2SP note), or null when there is none yet: what
   * a published tree (tlog-tiles) may show, and no more.
   */
  async signedTreeHead(): Promise<SignedTreeHead | null> {
    const { rows } = await query<{ up_to: string; record: string }>(
      this.#conn.pool,
      this.#conn.location,
      "read the newest signed tree",
      "SELECT up_to, record FROM aztp_audit_checkpoints ORDER BY seq DESC LIMIT 1",
    );
    const row = rows[0];
    if (row === undefined) return null;
    const checkpoint = JSON.parse(row.record) as Checkpoint;
    // Notes come in order (verify refuses a noteless checkpoint after a noted one): the newest has one, or none has.
    return checkpoint.note === undefined ? null : { note: checkpoint.note, size: Number(row.up_to) };
  }

  /**
   * The leaf hashes of entries afterSeq+1 .. upTo (at most `limit` of them), in order: what a
   * reader extends its copy of the tree with. Rows written before the tree have theirs computed.
   */
  async leafHashes(afterSeq: number, upTo: number, limit = LEAF_PAGE): Promise<Buffer[]> {
    if (upTo <= afterSeq) return [];
    return readLeafRange(this.#conn.pool, this.#conn.location, afterSeq, Math.min(upTo, afterSeq + limit));
  }

  /** The lines of entries afterSeq+1 .. afterSeq+count as stored (what the tree's leaves hash). */
  async entryLines(afterSeq: number, count: number): Promise<string[]> {
    const { rows } = await query<{ entry: string }>(
      this.#conn.pool,
      this.#conn.location,
      "read the audit log",
      "SELECT entry FROM aztp_audit WHERE seq > $1 AND seq <= $2 ORDER BY seq",
      [afterSeq, afterSeq + count],
    );
    return rows.map((r) => r.entry);
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
        let dueLeaves: DueLeavesRow | undefined;
        if (fast && on !== null) {
          start = on;
        } else {
          // A signer of trees also asks, in the same round trip, for the leaf hashes since the
          // newest checkpoint, should this batch make one due: its tree is then complete here.
          const wantsLeaves = this.#signer?.signNote !== undefined;
          const started = (await query(
            client,
            this.#conn.location,
            what,
            `${lock}; ${HEAD_QUERY}${this.#signer === undefined ? "" : `; ${NEWEST_CHECKPOINT_QUERY}`}${
              wantsLeaves ? `; ${dueLeavesQuery(batch.length, this.#checkpointEvery)}` : ""
            }`,
          )) as unknown as pg.QueryResult[];
          start = headOf(started[2]?.rows[0] as HeadRow | undefined);
          previous = parseCheckpointRow(started[3]?.rows[0] as CheckpointRow | undefined);
          dueLeaves = wantsLeaves ? (started[4]?.rows[0] as DueLeavesRow | undefined) : undefined;
        }
        let head = start;
        const entries: AuditEntry[] = [];
        let lines = "";
        const lineList: string[] = [];
        for (const prepared of batch) {
          const link = nextLink(head);
          const { entry, line } = seal(prepared, link.seq, link.prev);
          entries.push(entry);
          lines += lines === "" ? line : `\n${line}`;
          lineList.push(line);
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
        const insert = insertBatch(client, lines, start, false);
        if (!this.#countDue(previous, head)) {
          await query(client, this.#conn.location, what, `${insert}; COMMIT`);
          return { entries, head, checkpointUpTo: previous?.upTo ?? 0 };
        }
        // The tree: the newest checkpoint's frontier, the leaf hashes since (they came with the head),
        // and this batch's, hashed here; the checkpoint is then signed before the INSERT and goes
        // with it, in one round trip. Else (the checkpoints predate trees, a signer without one) the
        // leaf hashes come back with the INSERT, this batch's rows included.
        let tree = this.#treeFrom(previous, dueLeaves, start.seq);
        if (tree !== null) for (const line of lineList) tree.push(leafHashOfText(line));
        let cut: { checkpoint: Checkpoint; tree: MerkleFrontier | null } | null;
        if (tree !== null || this.#signer?.signNote === undefined) {
          cut = this.#sign(head, previous, tree);
          const checkpointSql = cut === null ? "" : `; ${insertCheckpoint(client, cut.checkpoint)}`;
          await query(client, this.#conn.location, what, `${insert}${checkpointSql}; COMMIT`);
        } else {
          tree = this.#treeBase(previous);
          const page = { after: tree.size, upTo: Math.min(head.seq, tree.size + LEAF_PAGE) };
          const results = (await query(
            client,
            this.#conn.location,
            what,
            `${insert}; ${leafRangeQuery(page.after, page.upTo)}`,
          )) as unknown as pg.QueryResult[];
          for (const leaf of leafRange(results[1]?.rows[0] as LeafRangeRow, page.after, page.upTo)) tree.push(leaf);
          cut = this.#sign(head, previous, await this.#extendTree(client, tree, head.seq));
          const checkpointSql = cut === null ? "" : `${insertCheckpoint(client, cut.checkpoint)}; `;
          await query(client, this.#conn.location, what, `${checkpointSql}COMMIT`);
        }
        return { entries, head, checkpointUpTo: cut?.checkpoint.upTo ?? previous?.upTo ?? 0 };
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

  /** Whether `checkpointEvery` entries were added after `previous` by the time the head is `head`. */
  #countDue(previous: Checkpoint | null, head: ChainHead): boolean {
    return this.#signer !== undefined && head.seq - (previous?.upTo ?? 0) >= this.#checkpointEvery;
  }

  /**
   * The timer's check (twice per interval): without the lock, whether the newest checkpoint is
   * older than the interval with entries after it; if so, under the lock, the same again (another
   * writer may have cut one meanwhile) and the cut. One check at a time per writer.
   */
  #checkpointByTime(): void {
    if (this.#timeCheck !== null || this.#closed || this.#failure !== null) return;
    this.#timeCheck = (async () => {
      try {
        if (await this.#dueByTime(this.#conn.pool)) await this.#checkpointUnderLock("time");
      } catch (cause) {
        this.#onWarning(
          `audit log ${this.path}: a checkpoint by time failed: ${(cause as Error).message}; the next check tries again`,
          cause,
        );
      } finally {
        this.#timeCheck = null;
      }
    })();
  }

  async #dueByTime(client: pg.Pool | pg.PoolClient): Promise<boolean> {
    const { rows } = await query<{ due: boolean | null }>(
      client,
      this.#conn.location,
      "check whether a checkpoint is due",
      DUE_BY_TIME_QUERY,
      [this.#checkpointIntervalMs],
    );
    return rows[0]?.due === true;
  }

  /**
   * One transaction under the chain's lock: reads the head and the newest checkpoint, and cuts a
   * checkpoint when anything is uncovered (`force`) or when one is due by time (`time`).
   */
  async #checkpointUnderLock(mode: "force" | "time"): Promise<Checkpoint | null> {
    let cut: { checkpoint: Checkpoint } | null = null;
    await transaction(this.#conn, "checkpoint the audit log", async (client) => {
      await this.#lock(client);
      if (mode === "time" && !(await this.#dueByTime(client))) return;
      const head = await this.#head(client);
      const { rows } = await query<CheckpointRow>(
        client,
        this.#conn.location,
        "read the newest checkpoint",
        NEWEST_CHECKPOINT_QUERY,
      );
      const previous = parseCheckpointRow(rows[0]);
      if (head.seq <= (previous?.upTo ?? 0)) return; // nothing new: another writer cut it
      const tree =
        this.#signer?.signNote === undefined
          ? null
          : await this.#extendTree(client, this.#treeBase(previous), head.seq);
      cut = this.#sign(head, previous, tree);
      if (cut !== null)
        await query(client, this.#conn.location, "write a checkpoint", insertCheckpoint(client, cut.checkpoint));
    });
    return (cut as { checkpoint: Checkpoint } | null)?.checkpoint ?? null;
  }

  /**
   * Under the lock: the checkpoint after `previous` at `head`, signed, with `tree` (entries
   * 1..head: its note and frontier; null for a signer that cannot sign one), or null when
   * nothing is uncovered or it cannot be signed (said through onWarning: auditing goes on, and
   * the next checkpoint covers these entries).
   */
  #sign(
    head: ChainHead,
    previous: Checkpoint | null,
    tree: MerkleFrontier | null,
  ): { checkpoint: Checkpoint; tree: MerkleFrontier | null } | null {
    const signer = this.#signer;
    if (signer === undefined || head.seq <= (previous?.upTo ?? 0)) return null;
    try {
      const checkpoint = makeCheckpoint(
        { type: "checkpoint", ...nextCheckpoint(previous, head), time: new Date().toISOString(), signer: signer.id },
        tree,
        this.#originAfter(previous, signer),
        signer,
      );
      if (previous?.note !== undefined && checkpoint.note === undefined) {
        // A noteless checkpoint after a noted one would read as a tree removed: leave it to a writer that can.
        this.#onWarning(
          `audit log ${this.path}: ${signer.id} cannot sign the tree (its key is not P-256); checkpoints are left to writers that can`,
          null,
        );
        return null;
      }
      return { checkpoint, tree: checkpoint.note === undefined ? null : tree };
    } catch (cause) {
      this.#onWarning(
        `audit log ${this.path}: checkpoint not signed, entries after ${previous?.upTo ?? 0} stay uncovered for now: ${(cause as Error).message}`,
        cause,
      );
      return null;
    }
  }

  /**
   * The tree at entry `upTo` when the newest checkpoint's frontier and the leaf hashes after it
   * (`leaves`, read with the head) make it; null otherwise (no leaves asked for or due, a
   * checkpoint that predates trees, a signer that cannot sign one).
   */
  #treeFrom(previous: Checkpoint | null, leaves: DueLeavesRow | undefined, upTo: number): MerkleFrontier | null {
    if (leaves === undefined || this.#signer?.signNote === undefined) return null;
    const base = previous === null ? MerkleFrontier.empty() : checkpointFrontier(previous);
    if (base === null || Number(leaves.after) !== base.size) return null;
    for (const leaf of leafRange(leaves, base.size, upTo)) base.push(leaf);
    return base;
  }

  /**
   * Where the tree starts from: the newest checkpoint's frontier; empty when the log's
   * checkpoints predate trees (it is then read from its first entry, once: the checkpoint cut
   * now carries the frontier). Rows never change, so a frontier once signed stays the tree's.
   */
  #treeBase(previous: Checkpoint | null): MerkleFrontier {
    return (previous === null ? null : checkpointFrontier(previous)) ?? MerkleFrontier.empty();
  }

  /** `tree` extended with the stored leaf hashes up to entry upTo, a page per round trip. */
  async #extendTree(client: pg.PoolClient, tree: MerkleFrontier, upTo: number): Promise<MerkleFrontier> {
    while (tree.size < upTo) {
      for (const leaf of await readLeafRange(
        client,
        this.#conn.location,
        tree.size,
        Math.min(upTo, tree.size + LEAF_PAGE),
      ))
        tree.push(leaf);
    }
    return tree;
  }

  /** The origin the log's notes already name, else the configured or the default one. */
  #originAfter(previous: Checkpoint | null, signer: CheckpointSigner): string {
    const named = previous === null ? null : checkpointBody(previous);
    return named?.origin ?? this.#origin ?? defaultOrigin(signer.id, databaseName(this.#conn.location));
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
  return `INSERT INTO aztp_audit (seq, entry, hash, prev, leaf)
    SELECT ${start.seq + 1} + ord - 1, line, hash, coalesce(lag(hash) OVER (ORDER BY ord), '${hex64(start.hash)}'), ${LEAF_OF("line")}
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

/** RFC 6962's leaf hash of a stored line, in SQL: SHA-256(0x00 || its UTF-8 bytes), as merkle.ts's leafHashOfText. */
const LEAF_OF = (column: string): string => `sha256(decode('00', 'hex') || convert_to(${column}, 'UTF8'))`;

/** Leaf hashes read per query when a tree is extended (2 MiB). */
const LEAF_PAGE = 65536;

/**
 * Whether a checkpoint is due by time ($1 ms): entries after the newest checkpoint, and that
 * checkpoint (or, before the first, the first entry) older than the interval, by the database's
 * clock, the one every replica shares.
 */
const DUE_BY_TIME_QUERY = `WITH c AS (SELECT up_to, written_at FROM aztp_audit_checkpoints ORDER BY seq DESC LIMIT 1)
  SELECT coalesce((SELECT max(seq) FROM aztp_audit), 0) > coalesce((SELECT up_to FROM c), 0)
    AND now() - coalesce((SELECT written_at FROM c), (SELECT written_at FROM aztp_audit WHERE seq = 1))
        >= make_interval(secs => $1::float8 / 1000) AS due`;

/**
 * The leaf hashes of entries after+1 .. upTo in one row (concatenated: a row per entry costs
 * the client more than the hashing), with what shows a gap.
 */
function leafRangeQuery(after: number, upTo: number): string {
  return `SELECT count(*) AS n, coalesce(min(seq), 0) AS lo, coalesce(max(seq), 0) AS hi,
      string_agg(coalesce(leaf, ${LEAF_OF("entry")}), ''::bytea ORDER BY seq) AS leaves
    FROM aztp_audit WHERE seq > ${safeInt(after)} AND seq <= ${safeInt(upTo)}`;
}

interface LeafRangeRow {
  n: string;
  lo: string;
  hi: string;
  leaves: Buffer | null;
}

/** A leafRangeQuery row from dueLeavesQuery, with where its range starts. */
interface DueLeavesRow extends LeafRangeRow {
  after: string;
}

/**
 * Under the lock, with the head: the leaf hashes of the entries after the newest checkpoint,
 * if `adding` more entries make a checkpoint due by count (else none, at the cost of two
 * index lookups).
 */
function dueLeavesQuery(adding: number, every: number): string {
  return `WITH c AS (SELECT coalesce((SELECT up_to FROM aztp_audit_checkpoints ORDER BY seq DESC LIMIT 1), 0) AS up_to)
    SELECT count(*) AS n, coalesce(min(seq), 0) AS lo, coalesce(max(seq), 0) AS hi,
      string_agg(coalesce(leaf, ${LEAF_OF("entry")}), ''::bytea ORDER BY seq) AS leaves, (SELECT up_to FROM c) AS after
    FROM aztp_audit
    WHERE seq > (SELECT up_to FROM c)
      AND coalesce((SELECT max(seq) FROM aztp_audit), 0) + ${safeInt(adding)} - (SELECT up_to FROM c) >= ${safeInt(every)}`;
}

/** The leaf hashes a leafRangeQuery row holds, checked to be entries after+1 .. upTo, every one. */
function leafRange(row: LeafRangeRow | undefined, after: number, upTo: number): Buffer[] {
  const n = upTo - after;
  const leaves = row?.leaves ?? Buffer.alloc(0);
  if (
    n > 0 &&
    (Number(row?.n) !== n || Number(row?.lo) !== after + 1 || Number(row?.hi) !== upTo || leaves.length !== n * 32)
  )
    throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `the audit log does not hold every entry of ${after + 1}..${upTo}`);
  return Array.from({ length: Math.max(0, n) }, (_, i) => leaves.subarray(i * 32, i * 32 + 32));
}

async function readLeafRange(
  client: pg.Pool | pg.PoolClient,
  location: string,
  after: number,
  upTo: number,
): Promise<Buffer[]> {
  const { rows } = await query<LeafRangeRow>(
    client,
    location,
    "read the audit tree's leaves",
    leafRangeQuery(after, upTo),
  );
  return leafRange(rows[0], after, upTo);
}

/** A number about to be inlined in SQL: only ever a whole number. */
function safeInt(n: number): number {
  if (!Number.isSafeInteger(n)) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `not a whole number: ${n}`);
  return n;
}

/** The database's name in a (redacted) PostgreSQL URL: the default origin names it. */
function databaseName(location: string): string {
  try {
    return decodeURIComponent(new URL(location).pathname.replace(/^\//, "")) || "audit";
  } catch {
    return "audit";
  }
}

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

function nonNegativeInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0 || value > 2 ** 31 - 1)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${name} must be a whole number from 0 to ${2 ** 31 - 1}`);
  return value;
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${name} must be a whole number >= 1`);
  return value;
}
