/**
 * AuditLog: the writer of one tamper-evident audit log.
 *
 * It owns the hash chain (seq and prev are assigned synchronously inside `append`, so entries
 * are chained in call order however many appends are in flight), redaction, the checkpoint
 * schedule and the witness; the JSON Lines sink owns bytes and durability. `append` resolves
 * only once the entry is written as `durability` says (handed to the kernel, or fdatasync'ed):
 * nothing acknowledged is lost to a crash of the process (or, with "fsync", of the machine).
 *
 * No input makes an entry unwritable: only programming errors are refused; hostile strings and
 * arguments are made storable and the entry says what was changed (`sanitized`, `argsOmitted`).
 *
 * After a failed write the log is not `writable` and refuses appends (ERR_AUDIT_IO_FAILED) until
 * `recover()` has reopened the file and reset the chain's head from what is on disk.
 *
 * Opening an existing log re-reads its tail: the last entry (its hash recomputed, its chain
 * checked back to the newest checkpoint), the newest checkpoint (which must match the entry it
 * names) and the witness (which must not be ahead of the log: a log behind its witness was cut,
 * and the writer refuses to append to it). An unfinished last line left by a crash is removed,
 * reported in `recovered` and through `onWarning`.
 */
import { basename } from "node:path";
import { AztpError, ErrorCodes } from "../errors.js";
import {
  entryFields,
  parseStoredEntry,
  sealEntry,
  validateEntryInput,
  type AuditEntry,
  type AuditEntryInput,
  type StoredAuditEntry,
  type UnsealedEntry,
} from "./entry.js";
import type { AuditWriter, AuditWriterOptions } from "./writer.js";
import { GENESIS, linkFault, namesHead, nextCheckpoint, nextLink, sealFault, type ChainHead } from "./chain.js";
import {
  checkpointLine,
  isCheckpointRecord,
  parseCheckpoint,
  sameCheckpoint,
  checkpointBody,
  checkpointFrontier,
  defaultOrigin,
  makeCheckpoint,
  type Checkpoint,
  type CheckpointSigner,
} from "./checkpoint.js";
import { leafHashOfText, MerkleFrontier } from "./merkle.js";
import { LEAF_TAG, startWriterTree, type WriterTree } from "./writer-tree.js";
import { isOrigin } from "./tlog-checkpoint.js";
import { scanLines } from "./lines.js";
import { JsonlSink, type AuditDurability, type WrittenBatch } from "./jsonl-sink.js";
import { redact } from "./redact.js";
import { defaultWitnessPath, readWitness, writeWitness } from "./witness.js";

/** A file log's options: those of every audit writer, and the file's own. */
export interface AuditLogOptions extends AuditWriterOptions {
  /** Checkpoint this often (ms) when entries were added. Default 60000; 0 turns it off. */
  readonly checkpointIntervalMs?: number | undefined;
  /** Where the newest checkpoint is copied. Default `<path>.witness`. */
  readonly witnessPath?: string | undefined;
  /**
   * The origin of the log's C2SP checkpoints (their first line and the note's key name). Default
   * `<signer's SPIFFE ID without spiffe://>/audit/<file name without .jsonl>`; a log that has
   * checkpoints with notes keeps the origin they name.
   */
  readonly origin?: string | undefined;
  /**
   * When `append` resolves. "write" (default): once the entry has been handed to the kernel
   * with write(); it then survives a crash or SIGKILL of the process, not a power loss.
   * "fsync": once the file has been fdatasync'ed; it survives a power loss too. Both use
   * group commit: appends that arrive while a write (or fsync) is in flight share the next.
   */
  readonly durability?: AuditDurability | undefined;
  /**
   * Group commit: how long a batch collects entries before it is written (ms). Default 0:
   * written at once when the writer is idle (a caller's answer waits for its entry).
   */
  readonly batchWindowMs?: number | undefined;
  /** Group commit: write a batch early at about this many bytes. Default 1 MiB. */
  readonly maxBatchBytes?: number | undefined;
  /** Also export each durable entry through the global OpenTelemetry API. Default false. */
  readonly otel?: boolean | undefined;
  /**
   * Where the Merkle tree's leaves (kept with a signer) are hashed: "auto" (default) mostly on a
   * worker thread when the machine has more than one core, "always" there, "never" on the
   * appending thread (about 3 µs an entry). See writer-tree.ts.
   */
  readonly leafWorker?: "auto" | "always" | "never" | undefined;
  /** Receives what the log repaired or could not do; default: `process.emitWarning`. */
  readonly onWarning?: ((warning: AuditWarning) => void) | undefined;
}

export interface AuditWarning {
  readonly code:
    | "torn-tail"
    | "witness-missing"
    | "witness-behind"
    | "checkpoint-failed"
    | "write-failed"
    | "recovered"
    | "recover-failed"
    | "leaf-worker-failed";
  readonly message: string;
  readonly cause?: unknown;
}

/** What opening found and repaired: an unfinished last line left by a crash. */
export interface AuditRecovery {
  /** Bytes removed from the end of the file. */
  readonly tornBytes: number;
  /** Where they started: the file's length after the repair. */
  readonly tornOffset: number;
  /** The removed bytes, for inspection. */
  readonly discarded: Buffer;
  /** The chain's head after the repair. */
  readonly lastSeq: number;
  readonly lastHash: string;
}

interface Settings {
  includeArgs: boolean;
  redactFields: readonly string[];
  signer: CheckpointSigner | undefined;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  witnessPath: string;
  origin: string | undefined;
  leafWorker: "auto" | "always" | "never";
  recoverIntervalMs: number;
  /** Loaded only when `otel` is set, so that logs without it never load the OpenTelemetry API. */
  otel: typeof import("./otel.js") | null;
  onWarning: (warning: AuditWarning) => void;
}

interface Tail {
  lastEntry: StoredAuditEntry | null;
  lastCheckpoint: Checkpoint | null;
  /** Leaf hashes of the entries after the newest checkpoint, newest first. */
  after: Buffer[];
  /** Whether the backward read reached the first line (every entry is in `after`). */
  reachedStart: boolean;
}

/** Entries are the tree's leaves (the sink hands their tag to the tree); checkpoint lines are not. */
const LEAF_LINE = { tag: LEAF_TAG } as const;
const CHECKPOINT_LINE = { sync: true } as const;

/** Unhashed leaves a checkpoint due after `checkpointEvery` entries hashes here rather than wait for the worker. */
const HASH_HERE_AT_MOST = 64;
/** Entries a due checkpoint waits, at most, for the worker to catch up with the written batches. */
const WAIT_AT_MOST = 512;
const HEX64 = /^[0-9a-f]{64}$/;

export class AuditLog implements AuditWriter {
  readonly path: string;
  /** Set when opening repaired an unfinished last line; null when the file was clean. */
  readonly recovered: AuditRecovery | null;
  readonly #sink: JsonlSink;
  readonly #settings: Settings;
  #seq: number;
  #head: string;
  #lastCheckpoint: Checkpoint | null;
  #nextCheckpointAt: number;
  /** The Merkle tree over every entry, kept when there is a signer (checkpoints carry its root). */
  #tree: WriterTree | null = null;
  /** The newest entry in a batch the sink wrote (followed with the leaf worker: see #checkpointDue). */
  #written: ChainHead;
  #witnessChain: Promise<void> = Promise.resolve();
  #interval: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;
  #recovering: Promise<boolean> | null = null;
  #lastRecoverAttempt = -Infinity;
  #failureReported = false;
  readonly #failed = (cause: unknown): never => {
    this.#reportFailure(cause);
    throw cause;
  };

  private constructor(path: string, sink: JsonlSink, settings: Settings, tail: Tail) {
    this.path = path;
    this.#sink = sink;
    this.#settings = settings;
    this.#seq = tail.lastEntry?.seq ?? GENESIS.seq;
    this.#head = tail.lastEntry?.hash ?? GENESIS.hash;
    this.#lastCheckpoint = tail.lastCheckpoint;
    this.#nextCheckpointAt = (tail.lastCheckpoint?.upTo ?? 0) + settings.checkpointEvery;
    this.#written = { seq: this.#seq, hash: this.#head };
    const torn = sink.torn;
    this.recovered =
      torn === null
        ? null
        : {
            tornBytes: torn.bytes,
            tornOffset: torn.offset,
            discarded: torn.data,
            lastSeq: this.#seq,
            lastHash: this.#head,
          };
  }

  /** Opens (creating if needed) the log at `path` for appending; one writer per file. */
  static async open(path: string, options: AuditLogOptions = {}): Promise<AuditLog> {
    if (typeof path !== "string" || path.length === 0) invalid("audit log path must be a non-empty string");
    const settings = resolveSettings(path, options);
    if (options.otel === true) settings.otel = await import("./otel.js");
    const durability = options.durability ?? "write";
    if (durability !== "write" && durability !== "fsync")
      invalid(`durability must be "write" or "fsync", got ${JSON.stringify(durability)}`);
    const sink = await JsonlSink.open(path, {
      durability,
      batchWindowMs: intOption(options.batchWindowMs, "batchWindowMs", 0, 0, 10_000),
      maxBatchEntries: intOption(options.maxBatchEntries, "maxBatchEntries", 1024, 1, 1 << 20),
      maxBatchBytes: intOption(options.maxBatchBytes, "maxBatchBytes", 1 << 20, 1, 1 << 30),
    });
    let tree: WriterTree | null = null;
    try {
      const witness = await readWitness(settings.witnessPath);
      const tail = recoverTail(sink, settings.signer !== undefined || witness !== null);
      const log = new AuditLog(path, sink, settings, tail);
      if (settings.signer !== undefined) {
        tree = startWriterTree(await treeOf(path, tail), settings.leafWorker, {
          onLost: (cause) =>
            settings.onWarning({
              code: "leaf-worker-failed",
              message: `audit log ${path}: ${cause.message}; its Merkle tree's leaves are hashed on this thread from now on`,
              cause,
            }),
          recycle: (bytes) => sink.recycle(bytes),
        });
        log.#tree = tree;
        const observed = tree;
        if (observed.mode === "worker")
          sink.observe((batch) => {
            log.#sawWritten(batch); // first: the tree takes the batch's bytes away
            observed.written(batch);
          });
      }
      if (sink.torn !== null) {
        settings.onWarning({
          code: "torn-tail",
          message:
            `audit log ${path}: removed an unfinished last line (${sink.torn.bytes} bytes at offset ${sink.torn.offset}) ` +
            `left by an interrupted write; it had not been acknowledged. The log continues after seq ${log.lastSeq}.`,
        });
      }
      await log.#reconcileWitness(witness);
      if (settings.signer !== undefined && settings.checkpointIntervalMs > 0) {
        log.#interval = setInterval(() => log.#autoCheckpoint(), settings.checkpointIntervalMs);
        log.#interval.unref(); // a pending checkpoint must not keep the process alive
      }
      return log;
    } catch (cause) {
      await sink.close().catch(() => undefined);
      tree?.close();
      throw cause;
    }
  }

  /** Seq of the newest entry (0 for an empty log). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** Hash of the newest entry (the genesis value for an empty log). */
  get head(): string {
    return this.#head;
  }

  get lastCheckpoint(): Checkpoint | null {
    return this.#lastCheckpoint;
  }

  /**
   * Whether an append can be written now: false after a write failed (until `recover()`
   * succeeds) and after `close()`. Synchronous, so a guard can refuse a call before it runs.
   */
  get writable(): boolean {
    return this.#closing === null && this.#recovering === null && this.#sink.writable;
  }

  /** Why an append cannot be written now (closed is checked apart), or null. */
  #refusal(): AztpError | null {
    const failure = this.#sink.failure;
    if (failure !== null) return failure;
    if (this.#recovering !== null)
      return new AztpError(ErrorCodes.AUDIT_IO_FAILED, `audit log ${this.path} is recovering from a failed write`);
    return null;
  }

  /**
   * After a failed write: reopens the file, cuts it back to what was acknowledged (entries
   * that were rejected never were), re-reads and checks its tail, and resets the chain's head
   * (seq, hash, newest checkpoint) from what is on disk. Resolves whether the log can be
   * written again: true at once when it has not failed, false when closed or still failing.
   * Real attempts happen at most once per `recoverIntervalMs`; concurrent calls share one.
   */
  recover(): Promise<boolean> {
    if (this.#closing !== null) return Promise.resolve(false);
    if (this.#sink.writable) return Promise.resolve(true);
    if (this.#recovering !== null) return this.#recovering;
    const now = performance.now();
    if (now - this.#lastRecoverAttempt < this.#settings.recoverIntervalMs) return Promise.resolve(false);
    this.#lastRecoverAttempt = now;
    this.#recovering = this.#recover().finally(() => {
      this.#recovering = null;
    });
    return this.#recovering;
  }

  async #recover(): Promise<boolean> {
    const failure = this.#sink.failure;
    try {
      // Appends are refused while this runs (see #refusal), so nothing is chained to a head
      // that is about to be reset.
      await this.#witnessChain.catch(() => undefined);
      const witness = await readWitness(this.#settings.witnessPath);
      await this.#sink.reopen();
      try {
        const tail = recoverTail(this.#sink, this.#settings.signer !== undefined || witness !== null);
        this.#seq = tail.lastEntry?.seq ?? GENESIS.seq;
        this.#head = tail.lastEntry?.hash ?? GENESIS.hash;
        this.#lastCheckpoint = tail.lastCheckpoint;
        this.#nextCheckpointAt = (tail.lastCheckpoint?.upTo ?? 0) + this.#settings.checkpointEvery;
        this.#written = { seq: this.#seq, hash: this.#head };
        this.#tree?.reset(await treeOf(this.path, tail));
        await this.#reconcileWitness(witness);
      } catch (cause) {
        this.#sink.markFailed(cause); // never append on top of a tail that does not check out
        throw cause;
      }
    } catch (cause) {
      this.#settings.onWarning({
        code: "recover-failed",
        message: `audit log ${this.path}: cannot be written yet: ${(cause as Error).message}`,
        cause,
      });
      return false;
    }
    this.#failureReported = false;
    this.#settings.onWarning({
      code: "recovered",
      message: `audit log ${this.path} can be written again (after: ${failure?.message ?? "a failure"}); it continues after seq ${this.#seq}`,
    });
    return true;
  }

  /**
   * Chains and queues one entry; resolves with it once it is written (see `durability`).
   * Rejects with ERR_ARGUMENT_INVALID for a programming error (a missing field, a wrong
   * type; never for hostile content), ERR_AUDIT_CLOSED after `close()`, and ERR_AUDIT_IO_FAILED
   * when the file could not be written (the log then refuses appends until `recover()`).
   */
  append(input: AuditEntryInput): Promise<AuditEntry> {
    if (this.#closing !== null)
      return Promise.reject(new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`));
    // Refused before a seq is assigned: the chain only ever holds what could be written.
    const refusal = this.#refusal();
    if (refusal !== null) return Promise.reject(refusal);
    let sealed: { entry: AuditEntry; line: string };
    try {
      validateEntryInput(input);
      sealed = sealEntry(this.#unsealed(input));
    } catch (cause) {
      return Promise.reject(cause);
    }
    const { entry, line } = sealed;
    const written = this.#sink.append(line, LEAF_LINE);
    this.#seq = entry.seq;
    this.#head = entry.hash;
    this.#tree?.add(line);
    const s = this.#settings;
    if (s.signer !== undefined && s.checkpointEvery > 0 && entry.seq >= this.#nextCheckpointAt) this.#checkpointDue();
    // One derived promise per append (every call waits for one): a failure is reported on the way.
    const failed = this.#failed;
    const otel = s.otel;
    if (otel === null) return written.then(() => entry, failed);
    const ctx = otel.captureContext();
    return written.then(() => {
      try {
        otel.exportEntry(entry, ctx);
      } catch {
        // Telemetry must never fail an audit append that is already durable.
      }
      return entry;
    }, failed);
  }

  /**
   * Signs and writes a checkpoint of the current head now, and updates the witness; resolves
   * once both are durable. Returns the newest checkpoint unchanged when no entry was added
   * since it (null for a log without any). Requires a signer.
   */
  async checkpoint(): Promise<Checkpoint | null> {
    if (this.#settings.signer === undefined) invalid("AuditLog.checkpoint() needs the `signer` option");
    if (this.#closing !== null) throw new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`);
    const written = this.#cut();
    if (written !== null) return written;
    await this.#sink.flush();
    await this.#witnessChain;
    return this.#lastCheckpoint;
  }

  /**
   * Resolves once every entry appended so far is written (as `durability` says) and the
   * witness names the newest checkpoint written so far: the files agree with each other.
   */
  async flush(): Promise<void> {
    await this.#sink.flush();
    await this.#witnessChain.catch(() => undefined);
  }

  /**
   * Checkpoints what is not yet covered (with a signer), makes everything durable, updates the
   * witness, closes the file and releases the writer lock. Later appends reject with
   * ERR_AUDIT_CLOSED.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#interval !== null) clearInterval(this.#interval);
    await this.#recovering; // a reopen under way must not race the file's close (it never rejects)
    try {
      let final: Promise<Checkpoint> | null = null;
      try {
        final = this.#cut();
      } catch (cause) {
        this.#warnCheckpoint(cause);
      }
      await this.#sink.flush();
      await final?.catch((cause: unknown) => this.#warnCheckpoint(cause));
      await this.#witnessChain.catch(() => undefined);
    } finally {
      await this.#sink.close();
      this.#tree?.close();
    }
  }

  #unsealed(input: AuditEntryInput): UnsealedEntry {
    return entryFields(input, this.#settings, nextLink({ seq: this.#seq, hash: this.#head }));
  }

  /**
   * Signs a checkpoint of the current head and queues it right after that entry (so a reader
   * finds it directly after the entry it names). Null when there is no signer or nothing new.
   * Resolves once the checkpoint is durable and the witness updated.
   */
  #cut(): Promise<Checkpoint> | null {
    const refusal = this.#refusal();
    if (refusal !== null) throw refusal; // a checkpoint of a head that may be reset is no checkpoint
    const covered = this.#lastCheckpoint?.upTo ?? GENESIS.seq;
    if (this.#settings.signer === undefined || this.#seq === covered) return null;
    return this.#cutAt({ seq: this.#seq, hash: this.#head }, this.#tree?.frontier() ?? null, false);
  }

  /**
   * Signs a checkpoint of `head` and of the tree `tree` (of head.seq entries), and queues it:
   * after everything queued, or (`first`) right after everything written, which must end with
   * `head`.
   */
  #cutAt(head: ChainHead, tree: MerkleFrontier | null, first: boolean): Promise<Checkpoint> {
    const signer = this.#settings.signer as CheckpointSigner;
    const checkpoint = makeCheckpoint(
      {
        type: "checkpoint",
        ...nextCheckpoint(this.#lastCheckpoint, head),
        time: new Date().toISOString(),
        signer: signer.id,
      },
      tree,
      this.#origin(signer),
      signer,
    );
    this.#lastCheckpoint = checkpoint;
    this.#nextCheckpointAt = checkpoint.upTo + this.#settings.checkpointEvery;
    // Synced in "write" mode too: the witness comes next, and must never be ahead of the disk.
    const line = checkpointLine(checkpoint);
    const durable = first ? this.#sink.appendFirst(line, CHECKPOINT_LINE) : this.#sink.append(line, CHECKPOINT_LINE);
    // Only a durable checkpoint may reach the witness: a witness ahead of the log reads as a cut.
    return durable.then(() => this.#updateWitness(checkpoint)).then(() => checkpoint);
  }

  /**
   * `checkpointEvery` entries were added. Under load with the leaf worker, the entries of the
   * batch being filled are not hashed yet, and hashing them here is what the worker is for; so
   * the checkpoint covers the written entries instead, its line going right after them (ahead of
   * the batch), once the worker has hashed them all: a batch or so later, within WAIT_AT_MOST
   * entries, or now if the batch holds few entries.
   */
  #checkpointDue(): void {
    const tree = this.#tree;
    if (
      tree === null ||
      tree.mode !== "worker" ||
      this.#seq - this.#nextCheckpointAt >= WAIT_AT_MOST ||
      tree.unhashed() <= HASH_HERE_AT_MOST
    ) {
      this.#autoCheckpoint();
      return;
    }
    const written = this.#written;
    if (this.#refusal() !== null || this.#sink.busy || written.seq <= (this.#lastCheckpoint?.upTo ?? GENESIS.seq))
      return;
    const known = tree.knownFrontier(written.seq);
    if (known === null || !HEX64.test(written.hash)) return;
    this.#tryCut(() => this.#cutAt(written, known, true));
  }

  /** The newest entry of a batch the sink wrote: its seq by count, its hash from its line's end (`,"hash":"…"}`). */
  #sawWritten({ data, ends, tags }: WrittenBatch): void {
    let leaves = 0;
    let last = -1;
    for (let i = 0; i < tags.length; i++) {
      if (tags[i] === LEAF_TAG) {
        leaves++;
        last = i;
      }
    }
    if (last < 0) return;
    const end = ends[last] as number;
    this.#written = { seq: this.#written.seq + leaves, hash: data.toString("latin1", end - 66, end - 2) };
  }

  /** The origin the log's notes already name, else the configured or default one. */
  #origin(signer: CheckpointSigner): string {
    const named = this.#lastCheckpoint === null ? null : checkpointBody(this.#lastCheckpoint);
    if (named !== null) return named.origin;
    return this.#settings.origin ?? defaultOrigin(signer.id, basename(this.path).replace(/\.jsonl$/, ""));
  }

  #autoCheckpoint(): void {
    if (this.#refusal() !== null) return; // the next append after recovery triggers it again
    this.#tryCut(() => this.#cut());
  }

  #tryCut(cut: () => Promise<Checkpoint> | null): void {
    try {
      cut()?.catch((cause: unknown) => this.#warnCheckpoint(cause));
    } catch (cause) {
      // A failing signer (an SVID mid-rotation, say) must not stop auditing; retry later.
      this.#nextCheckpointAt = this.#seq + this.#settings.checkpointEvery;
      this.#warnCheckpoint(cause);
    }
  }

  /** The first failed write is said once (per failure): the guard decides what it means for calls. */
  #reportFailure(cause: unknown): void {
    if (this.#failureReported || !(cause instanceof AztpError) || cause.code !== ErrorCodes.AUDIT_IO_FAILED) return;
    this.#failureReported = true;
    this.#settings.onWarning({
      code: "write-failed",
      message: `${cause.message}; call recover() once it can be written`,
      cause,
    });
  }

  #warnCheckpoint(cause: unknown): void {
    this.#settings.onWarning({
      code: "checkpoint-failed",
      message: `audit log ${this.path}: checkpoint failed, entries after seq ${this.#lastCheckpoint?.upTo ?? 0} are not yet covered: ${(cause as Error).message}`,
      cause,
    });
  }

  /** Witness writes are serialised, so it only ever moves forward. */
  #updateWitness(checkpoint: Checkpoint): Promise<void> {
    const next = this.#witnessChain
      .catch(() => undefined)
      .then(() => writeWitness(this.#settings.witnessPath, checkpoint));
    this.#witnessChain = next;
    return next;
  }

  async #reconcileWitness(witness: Checkpoint | null): Promise<void> {
    const newest = this.#lastCheckpoint;
    const where = this.#settings.witnessPath;
    if (witness !== null) {
      if (newest === null || witness.seq > newest.seq) {
        throw corrupt(
          `audit log ${this.path} is behind its witness ${where}: the witness holds checkpoint #${witness.seq} ` +
            `(up to entry ${witness.upTo}) but the log's newest checkpoint is ` +
            `${newest === null ? "none" : `#${newest.seq}`}. Its tail was cut; refusing to append (run \`aztp audit verify\`).`,
        );
      }
      if (witness.seq === newest.seq) {
        if (!sameCheckpoint(witness, newest)) {
          throw corrupt(
            `audit log ${this.path}: checkpoint #${newest.seq} differs from the one in the witness ${where}`,
          );
        }
        return;
      }
      // The log holds newer checkpoints: a crash came between the log's fsync and the witness.
      if (this.#settings.signer !== undefined) {
        this.#settings.onWarning({
          code: "witness-behind",
          message: `audit witness ${where} held checkpoint #${witness.seq}; updated to #${newest.seq} from the log`,
        });
        await this.#updateWitness(newest);
      }
      return;
    }
    if (newest !== null && this.#settings.signer !== undefined) {
      this.#settings.onWarning({
        code: "witness-missing",
        message:
          `audit witness ${where} is missing although the log holds checkpoints; recreated from checkpoint #${newest.seq}. ` +
          "If it was removed on purpose, a cut of the log before now can no longer be detected against it.",
      });
      await this.#updateWitness(newest);
    }
  }
}

/**
 * Reads the log backwards from its end: the newest entry, and (when `wantCheckpoint`) back to
 * the newest checkpoint, checking every entry's hash, the chain between them, and that the
 * checkpoint names the entry just before it. Anything wrong is ERR_AUDIT_CORRUPT: appending
 * to a broken chain would bury the damage under valid-looking entries.
 */
function recoverTail(sink: JsonlSink, wantCheckpoint: boolean): Tail {
  let lastEntry: StoredAuditEntry | null = null;
  let lastCheckpoint: Checkpoint | null = null;
  let newer: StoredAuditEntry | null = null; // the entry after the current line, in file order
  let checkpointAwaitsEntry = false;
  let reachedStart = true;
  const after: Buffer[] = [];
  for (const { line, offset } of sink.linesBackward()) {
    const where = `audit log ${sink.path}, line at byte ${offset}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw corrupt(`${where} is not JSON`);
    }
    if (isCheckpointRecord(value)) {
      if (lastCheckpoint === null) {
        lastCheckpoint = withContext(where, () => parseCheckpoint(value));
        if (
          newer !== null &&
          linkFault({ seq: lastCheckpoint.upTo, hash: lastCheckpoint.head }, newer) === "sequence"
        ) {
          throw corrupt(
            `${where}: checkpoint #${lastCheckpoint.seq} covers up to ${lastCheckpoint.upTo} but entry ${newer.seq} follows it`,
          );
        }
        checkpointAwaitsEntry = true;
      }
      continue;
    }
    const entry = withContext(where, () => parseStoredEntry(value));
    if (lastCheckpoint === null) after.push(leafHashOfText(line));
    if (withContext(where, () => sealFault(entry)) !== null)
      throw corrupt(`${where}: entry ${entry.seq} does not match its hash`);
    if (newer !== null && linkFault(entry, newer) !== null) {
      throw corrupt(`${where}: entry ${newer.seq} does not follow entry ${entry.seq} (broken chain)`);
    }
    if (checkpointAwaitsEntry && lastCheckpoint !== null) {
      if (!namesHead(lastCheckpoint, entry)) {
        throw corrupt(`${where}: checkpoint #${lastCheckpoint.seq} does not match entry ${entry.seq} before it`);
      }
      checkpointAwaitsEntry = false;
    }
    lastEntry ??= entry;
    newer = entry;
    if (!wantCheckpoint || lastCheckpoint !== null) {
      reachedStart = false;
      break;
    }
  }
  if (checkpointAwaitsEntry)
    throw corrupt(`audit log ${sink.path}: checkpoint #${lastCheckpoint?.seq} has no entry before it`);
  if (reachedStart && newer !== null && linkFault(GENESIS, newer) !== null) {
    throw corrupt(`audit log ${sink.path}: the first entry is seq ${newer.seq}, not 1 after the genesis value`);
  }
  return { lastEntry, lastCheckpoint, after, reachedStart };
}

/**
 * The Merkle tree's frontier over every entry of a log whose tail is `tail`: the newest
 * checkpoint's frontier and the entries after it; for a log whose checkpoints predate trees, one
 * forward pass over its entries (once: its next checkpoint carries the frontier).
 */
async function treeOf(path: string, tail: Tail): Promise<MerkleFrontier> {
  const last = tail.lastCheckpoint;
  let tree: MerkleFrontier | null = null;
  if (last !== null) tree = checkpointFrontier(last);
  else if (tail.reachedStart) tree = MerkleFrontier.empty();
  if (tree !== null) {
    for (let i = tail.after.length - 1; i >= 0; i--) tree.push(tail.after[i] as Buffer);
    return tree;
  }
  const rebuilt = MerkleFrontier.empty();
  const upTo = tail.lastEntry?.seq ?? 0;
  await scanLines(path, (line) => {
    if (rebuilt.size >= upTo) return false;
    if (!isCheckpointRecord(JSON.parse(line))) rebuilt.push(leafHashOfText(line));
    return true;
  });
  return rebuilt;
}

function resolveSettings(path: string, options: AuditLogOptions): Settings {
  if (typeof options !== "object" || options === null) invalid("AuditLog options must be an object");
  const redactFields = options.redactFields ?? [];
  redact(null, redactFields); // rejects malformed field names now rather than at the first append
  const signer = options.signer;
  if (
    signer !== undefined &&
    (typeof signer.id !== "string" || signer.id.length === 0 || typeof signer.sign !== "function")
  ) {
    invalid("signer must have a non-empty `id` and a `sign(payload)` function");
  }
  if (options.origin !== undefined && (typeof options.origin !== "string" || !isOrigin(options.origin)))
    invalid('origin must be a non-empty string without spaces or "+" (a C2SP checkpoint\'s first line)');
  const onWarning =
    options.onWarning ??
    ((w: AuditWarning) =>
      process.emitWarning(w.message, {
        type: "AztpAuditWarning",
        code: `AZTP_AUDIT_${w.code.toUpperCase().replace(/-/g, "_")}`,
      }));
  return {
    includeArgs: options.includeArgs === true,
    redactFields: [...redactFields],
    signer,
    checkpointEvery: intOption(options.checkpointEvery, "checkpointEvery", 1000, 0, Number.MAX_SAFE_INTEGER),
    checkpointIntervalMs: intOption(options.checkpointIntervalMs, "checkpointIntervalMs", 60_000, 0, 2 ** 31 - 1),
    witnessPath: options.witnessPath ?? defaultWitnessPath(path),
    origin: options.origin,
    leafWorker: leafWorkerOption(options.leafWorker),
    recoverIntervalMs: intOption(options.recoverIntervalMs, "recoverIntervalMs", 500, 0, 2 ** 31 - 1),
    otel: null,
    onWarning,
  };
}

function leafWorkerOption(value: unknown): "auto" | "always" | "never" {
  if (value === undefined) return "auto";
  if (value === "auto" || value === "always" || value === "never") return value;
  return invalid(`leafWorker must be "auto", "always" or "never", got ${JSON.stringify(value)}`);
}

function intOption(value: number | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    invalid(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function withContext<T>(where: string, parse: () => T): T {
  try {
    return parse();
  } catch (cause) {
    throw corrupt(`${where}: ${(cause as Error).message}`);
  }
}

function corrupt(message: string): AztpError {
  return new AztpError(ErrorCodes.AUDIT_CORRUPT, message);
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}
