/**
 * The default audit sink: an append-only JSON Lines file with group commit.
 *
 * Durability, one of two modes:
 * - "write" (the default): `append(line)` resolves once the line has been handed to the
 *   kernel with write(). It then survives a crash or SIGKILL of the process, not a power loss
 *   or a kernel crash (the page cache may not have reached the disk). Checkpoint lines are
 *   fdatasync'ed all the same (`append(line, { sync: true })` resolves after it), so the
 *   witness, written after them, never names a checkpoint a power loss could take from the
 *   log. The fdatasync runs in the background: the other lines of its batch are acknowledged
 *   once written, as always in this mode, and later batches are written meanwhile (an
 *   fdatasync of a busy log takes milliseconds, and every append would wait for it).
 * - "fsync": `append` resolves after fdatasync: the line survives a power loss too.
 *
 * Group commit, in both modes: when the writer is idle, what was appended is written at once
 * (after the current microtask, so that appends made in one synchronous run share a write);
 * appends arriving while a write (or fdatasync) is in flight share the next one. So there is
 * at most one write in flight, records reach the file in the order they were appended, and
 * under load one fdatasync covers many records. No window is waited for by default: a call's
 * answer waits for its entry, and a 2 ms window would cost every call 2 ms. `batchWindowMs`
 * (default 0) can hold a batch open longer, to trade latency for fewer writes; a batch is
 * written early once it holds `maxBatchEntries` records or about `maxBatchBytes`.
 *
 * Failure: after a failed write or fdatasync nothing in the page cache can be trusted (Linux
 * may drop the dirty pages and report success on the next fsync), so the sink fails: the
 * batch and every later append reject with ERR_AUDIT_IO_FAILED, and `writable` is false, until
 * `reopen()` succeeds. Reopening opens the file again, truncates it back to what had been
 * acknowledged (the lines of a failed batch were never acknowledged: whatever of them reached
 * the file is removed), syncs that, and checks that a write would now fit (a probe written
 * past the end and cut off again), so that a full disk stays failed until space is freed.
 *
 * Observer: `observe(fn)` hands each batch, once written (in "fsync" mode, once synced), to `fn` as
 * the bytes that reached the file with each line's end and the `tag` its append gave it. The
 * writer's Merkle tree is kept that way (`writer-tree.ts`): over the bytes as stored, and only
 * over lines that were written.
 *
 * Crash repair: a crash in the middle of a write can leave a last line without its newline.
 * Opening the file reports it (`torn`) and truncates it away; it never was acknowledged, and
 * appending after it would merge it with the next record.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  write,
  writeSync,
} from "node:fs";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { AztpError, ErrorCodes } from "../errors.js";
import { makeDirs } from "../make-dirs.js";
import { acquireLock, type FileLock } from "./lock.js";
import { syncDirectory } from "./witness.js";

const writeAsync = promisify(write);
const fdatasyncAsync = promisify(fdatasync);

/** When `append` resolves: after write() ("write"), or after fdatasync ("fsync"). */
export type AuditDurability = "write" | "fsync";

export interface JsonlSinkOptions {
  readonly durability: AuditDurability;
  /** How long a batch stays open for more records before it is written (ms); 0: at once. */
  readonly batchWindowMs: number;
  /** A batch is written early once it holds this many records... */
  readonly maxBatchEntries: number;
  /** ...or about this many bytes. */
  readonly maxBatchBytes: number;
}

/** What opening found at the end of the file and removed: a line a crash left unfinished. */
export interface TornTail {
  /** Byte offset where the unfinished line started (the file's new length). */
  readonly offset: number;
  readonly bytes: number;
  /** The discarded bytes, for inspection. */
  readonly data: Buffer;
}

export interface AppendOptions {
  /** fdatasync the line even in "write" mode; the append resolves after it. */
  readonly sync?: boolean;
  /** A byte handed back with the line to the observer. */
  readonly tag?: number;
}

/** A batch as it was written: its bytes, each line's end, and each line's tag. */
export interface WrittenBatch {
  /**
   * The bytes written, a newline after each line. The observer owns them (it may transfer their
   * ArrayBuffer, which holds nothing else, to another thread).
   */
  readonly data: Buffer;
  /** Offset in `data` of each line's newline. */
  readonly ends: Uint32Array;
  /** The `tag` each line was appended with (0 when none). */
  readonly tags: Uint8Array;
}

interface Batch {
  lines: string[];
  /** Each line's tag, kept only while there is an observer. */
  tags: number[];
  bytes: number;
  /** fdatasync this batch even in "write" mode. */
  sync: boolean;
  readonly done: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
  /** In "write" mode, what the lines appended with `sync` get: settled after the batch's fdatasync. */
  synced: Settlement | null;
}

interface Settlement {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

/** Bytes a reopened file must accept past its end before it is declared writable. */
const PROBE_BYTES = 4096;

export class JsonlSink {
  readonly path: string;
  /** Set when opening found and removed an unfinished last line. */
  readonly torn: TornTail | null;
  #fd: number;
  #lock: FileLock;
  #options: JsonlSinkOptions;
  #open: Batch | null = null; // filling
  #inFlight: Promise<void> | null = null; // the write (+fdatasync) under way
  #writing: Batch | null = null; // the batch it is writing
  #timer: NodeJS.Timeout | null = null;
  #syncing: Promise<void> | null = null; // "write" mode: the background fdatasync(s) under way
  #due = false; // the open batch should be written as soon as the writer is free
  #failure: AztpError | null = null;
  #closed = false;
  #size: number;
  #unsynced = false; // written in "write" mode since the last fdatasync
  #writes = 0;
  #syncs = 0;
  #observer: ((batch: WrittenBatch) => void) | null = null;
  /** Buffers to encode batches into: allocating ~3 MB per write costs page faults and collections. */
  readonly #spare: ArrayBuffer[] = [];

  private constructor(
    path: string,
    fd: number,
    lock: FileLock,
    options: JsonlSinkOptions,
    size: number,
    torn: TornTail | null,
  ) {
    this.path = path;
    this.#fd = fd;
    this.#lock = lock;
    this.#options = options;
    this.#size = size;
    this.torn = torn;
  }

  static async open(path: string, options: JsonlSinkOptions): Promise<JsonlSink> {
    // makeDirs, not a recursive mkdir: that one never settles for a path under /proc.
    try {
      makeDirs(dirname(path), 0o700);
    } catch (cause) {
      throw new AztpError(
        ErrorCodes.AUDIT_IO_FAILED,
        `cannot create the folder of audit log ${path}: ${(cause as Error).message}`,
        { cause },
      );
    }
    const lock = await acquireLock(`${path}.lock`);
    let fd = -1;
    try {
      const existed = await stat(path).then(
        () => true,
        (cause: NodeJS.ErrnoException) => {
          if (cause.code === "ENOENT") return false;
          throw cause;
        },
      );
      // O_APPEND: even a writer that ignored the lock could only add after our lines.
      fd = openSync(path, "a+", 0o600);
      if (!existed) await syncDirectory(dirname(path)); // the new file's name must survive a crash too
      const { size, torn } = repairTornTail(fd);
      return new JsonlSink(path, fd, lock, options, size, torn);
    } catch (cause) {
      if (fd >= 0) closeSync(fd);
      await lock.release();
      if (cause instanceof AztpError) throw cause;
      throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot open audit log ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }

  /** Bytes acknowledged in the file (not counting a batch being written). */
  get size(): number {
    return this.#size;
  }

  /** False after a failed write (until `reopen()` succeeds) and after `close()`. */
  get writable(): boolean {
    return this.#failure === null && !this.#closed;
  }

  /** Batches written and fdatasyncs done since open: how well group commit shares them. */
  get stats(): { readonly writes: number; readonly syncs: number } {
    return { writes: this.#writes, syncs: this.#syncs };
  }

  /** Why the sink failed, while it is failed. */
  get failure(): AztpError | null {
    return this.#failure;
  }

  /** Hands every batch written from now on to `observer` (see the file comment); one observer. */
  observe(observer: (batch: WrittenBatch) => void): void {
    this.#observer = observer;
  }

  /** Gives a batch's bytes back (once the observer is done with them), to encode a later batch into. */
  recycle(buffer: ArrayBuffer): void {
    if (this.#spare.length < MAX_SPARE && buffer.byteLength >= MIN_ENCODE_BUFFER && buffer.byteLength <= MAX_REUSED)
      this.#spare.push(buffer);
  }

  /**
   * Queues one record (without its newline); resolves once it is written (and, in "fsync"
   * mode or with `sync`, fdatasync'ed). `tag` (a byte) is handed back to the observer with it.
   */
  append(line: string, options?: AppendOptions): Promise<void> {
    return this.#queue(line, options, false);
  }

  /** Whether a batch is being written (a line queued now cannot go right after what is written). */
  get busy(): boolean {
    return this.#inFlight !== null;
  }

  /**
   * Queues a record ahead of those not yet written: it lands right after everything written so
   * far. Only while no batch is being written (`busy`); throws ERR_ARGUMENT_INVALID otherwise.
   */
  appendFirst(line: string, options?: AppendOptions): Promise<void> {
    if (this.#inFlight !== null)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "appendFirst while a batch is being written");
    return this.#queue(line, options, true);
  }

  #queue(line: string, options: AppendOptions | undefined, first: boolean): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`));
    let batch = this.#open;
    if (batch === null) {
      batch = newBatch();
      this.#open = batch;
      if (this.#options.batchWindowMs === 0) {
        this.#due = true;
        // After this microtask, not now: appends of the same synchronous run join this batch.
        queueMicrotask(() => this.#kick());
      } else {
        this.#timer = setTimeout(() => this.#markDue(), this.#options.batchWindowMs);
      }
    }
    if (first) batch.lines.unshift(line);
    else batch.lines.push(line);
    if (this.#observer !== null) {
      if (first) batch.tags.unshift(options?.tag ?? 0);
      else batch.tags.push(options?.tag ?? 0);
    }
    batch.bytes += line.length + 1; // UTF-16 units: close enough for a flush threshold
    let done = batch.done;
    if (options?.sync === true) {
      batch.sync = true;
      if (this.#options.durability === "write") {
        batch.synced ??= settlement();
        done = batch.synced.promise;
      }
    }
    if (batch.lines.length >= this.#options.maxBatchEntries || batch.bytes >= this.#options.maxBatchBytes) {
      this.#markDue();
    }
    return done;
  }

  /**
   * Writes what is queued now; resolves once everything appended so far is written, and synced
   * where it was appended with `sync`.
   */
  flush(): Promise<void> {
    const open = this.#open;
    const pending = open?.done ?? this.#writing?.done ?? Promise.resolve();
    if (open !== null) this.#markDue();
    const synced = open?.synced?.promise ?? this.#writing?.synced?.promise;
    // A sync under way settles its own lines; flush only waits for it (its failure fails the sink).
    const syncing = this.#syncing;
    if (synced === undefined && syncing === null) return pending;
    return Promise.all([pending, synced?.catch(() => undefined), syncing]).then(() => undefined);
  }

  /**
   * Flushes, makes the file durable (fdatasync, in "write" mode too), closes it and releases
   * the lock. Later appends reject with ERR_AUDIT_CLOSED.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
      await this.#syncing;
      if (this.#unsynced && this.#failure === null) {
        this.#syncs++;
        await fdatasyncAsync(this.#fd);
        this.#unsynced = false;
      }
    } finally {
      this.#closed = true;
      await this.#inFlight?.catch(() => undefined);
      try {
        closeSync(this.#fd);
      } catch {
        // Already closed by a failed reopen: nothing left to release but the lock.
      }
      await this.#lock.release();
    }
  }

  /**
   * After a failure: opens the file again, cuts it back to what was acknowledged, syncs,
   * checks that a write fits, and clears the failure. Throws ERR_AUDIT_IO_FAILED (the sink stays
   * failed) when any of that fails, ERR_AUDIT_CORRUPT when the file holds less than was
   * acknowledged (someone else cut it). Does nothing on a sink that has not failed.
   */
  async reopen(): Promise<void> {
    if (this.#closed) throw new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`);
    if (this.#failure === null) return;
    await this.#inFlight?.catch(() => undefined);
    await this.#syncing;
    try {
      closeSync(this.#fd);
    } catch {
      // A descriptor a failed reopen already closed.
    }
    let fd: number;
    try {
      fd = openSync(this.path, "a+", 0o600);
    } catch (cause) {
      throw this.#ioError("cannot reopen", cause);
    }
    this.#fd = fd;
    try {
      const size = fstatSync(fd).size;
      if (size < this.#size) {
        throw new AztpError(
          ErrorCodes.AUDIT_CORRUPT,
          `audit log ${this.path} holds ${size} bytes, less than the ${this.#size} acknowledged: it was cut while the log was failed (run \`aztp audit verify\`)`,
        );
      }
      // Whatever of a failed batch reached the file was never acknowledged: remove it.
      if (size > this.#size) ftruncateSync(fd, this.#size);
      fdatasyncSync(fd);
      // A full disk can still take a truncate and a sync: prove that a write fits now. A crash
      // right here leaves the probe as an unfinished last line, which the next open removes.
      const probe = Buffer.alloc(PROBE_BYTES, 0x20);
      for (let off = 0; off < probe.length;) off += writeSync(fd, probe, off, probe.length - off);
      ftruncateSync(fd, this.#size);
      fdatasyncSync(fd);
    } catch (cause) {
      if (cause instanceof AztpError) throw cause;
      try {
        ftruncateSync(fd, this.#size); // never leave a probe behind
      } catch {
        // The next reopen cuts it (or the next open repairs it as a torn tail).
      }
      throw this.#ioError("still cannot write", cause);
    }
    this.#unsynced = false;
    this.#failure = null;
  }

  /** Fails the sink (appends reject with ERR_AUDIT_IO_FAILED) for a reason found above it. */
  markFailed(cause: unknown): void {
    if (this.#failure !== null || this.#closed) return;
    this.#failure =
      cause instanceof AztpError && cause.code === ErrorCodes.AUDIT_IO_FAILED
        ? cause
        : this.#ioError("cannot be written", cause);
  }

  /**
   * Complete lines of the file from the last to the first, with their byte offsets.
   * Used on open and on reopen, before any append, to recover the chain's head.
   */
  *linesBackward(chunkSize = 64 * 1024): Generator<{ line: string; offset: number }> {
    const size = this.#size; // the file ends with "\n" here (repairTornTail or reopen saw to it)
    if (size === 0) return;
    let end = size; // [0, end) is still unread
    let rest: Buffer = Buffer.alloc(0); // the line being assembled: from `end` to its newline
    let first = true;
    while (end > 0) {
      const start = Math.max(0, end - chunkSize);
      const chunk = Buffer.alloc(end - start);
      readFully(this.#fd, chunk, start);
      const data = rest.length > 0 ? Buffer.concat([chunk, rest]) : chunk;
      let hi = data.length; // exclusive end of the current line within `data`
      if (first) {
        hi -= 1; // the file's final newline ends the last line
        first = false;
      }
      for (
        let nl = hi > 0 ? data.lastIndexOf(10, hi - 1) : -1;
        nl >= 0;
        nl = hi > 0 ? data.lastIndexOf(10, hi - 1) : -1
      ) {
        yield { line: data.toString("utf8", nl + 1, hi), offset: start + nl + 1 };
        hi = nl;
      }
      rest = Buffer.from(data.subarray(0, hi));
      end = start;
    }
    yield { line: rest.toString("utf8"), offset: 0 };
  }

  #markDue(): void {
    this.#due = true;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    this.#kick();
  }

  #kick(): void {
    if (this.#inFlight === null && this.#open !== null && this.#due && this.#failure === null)
      void this.#writeOpenBatch();
  }

  async #writeOpenBatch(): Promise<void> {
    const batch = this.#open;
    if (batch === null) return;
    this.#open = null;
    this.#due = false;
    const observer = this.#observer;
    const { buffer, ends } = encodeLines(batch.lines, observer !== null, this.#spare);
    const fd = this.#fd;
    const fsync = this.#options.durability === "fsync";
    this.#writes++;
    if (fsync) this.#syncs++;
    const run = fsync
      ? (async () => {
          for (let off = 0; off < buffer.length;) {
            const { bytesWritten } = await writeAsync(fd, buffer, off, buffer.length - off, null);
            off += bytesWritten;
          }
          await fdatasyncAsync(fd);
        })()
      : // Without an fsync, write() only copies into the page cache: done inline it costs ~20 µs
        // of this thread, where a trip through libuv's thread pool doubles the append's latency
        // (p50 0.023 ms against 0.05 ms, measured here) and every call's answer waits for it.
        // The cost: a disk so slow that the kernel throttles writers stalls this thread too.
        (async () => {
          for (let off = 0; off < buffer.length;) off += writeSync(fd, buffer, off, buffer.length - off);
        })();
    this.#inFlight = run;
    this.#writing = batch;
    try {
      await run;
      this.#size += buffer.length;
      this.#unsynced = !fsync;
      // Before the batch resolves: whoever waits for it may count on the observer having seen it.
      if (observer !== null) this.#hand(observer, buffer, ends as Uint32Array, batch.tags);
      else this.recycle(buffer.buffer as ArrayBuffer);
      batch.resolve();
      if (!fsync && batch.sync) this.#syncInBackground(batch);
    } catch (cause) {
      this.#fail(cause, batch);
    } finally {
      this.#inFlight = null;
      this.#writing = null;
    }
    // The next batch filled while this one was written; with no window it is due already.
    this.#kick();
  }

  /**
   * "write" mode, a batch with lines appended with `sync`: fdatasync after it, while later
   * batches are written; its sync lines settle then. One fdatasync at a time, in order; none
   * after a failure (a later one could report success for pages the failed one lost).
   */
  #syncInBackground(batch: Batch): void {
    const synced = batch.synced as Settlement;
    const writes = this.#writes;
    const fd = this.#fd;
    this.#syncs++;
    const previous = this.#syncing;
    const run = (async () => {
      await previous;
      if (this.#failure !== null) throw this.#failure;
      await fdatasyncAsync(fd);
    })().then(
      () => {
        if (this.#writes === writes) this.#unsynced = false; // nothing was written after it
        synced.resolve();
      },
      (cause: unknown) => {
        if (this.#failure === null) this.#fail(cause, batch, "fdatasync");
        synced.reject(this.#failure ?? this.#ioError("fdatasync failed", cause));
      },
    );
    this.#syncing = run;
    void run.then(() => {
      if (this.#syncing === run) this.#syncing = null;
    });
  }

  #hand(observer: (batch: WrittenBatch) => void, data: Buffer, ends: Uint32Array, tags: number[]): void {
    try {
      observer({ data, ends, tags: Uint8Array.from(tags) });
    } catch {
      // The batch is written and must be acknowledged: what the observer keeps is its own affair
      // (the writer's tree checks its size before every checkpoint).
    }
  }

  #fail(cause: unknown, batch: Batch, what = "write"): void {
    this.#failure = this.#ioError(`${what} failed, appends are refused until the log recovers`, cause);
    batch.reject(this.#failure);
    batch.synced?.reject(this.#failure);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#open?.reject(this.#failure);
    this.#open?.synced?.reject(this.#failure);
    this.#open = null;
  }

  #ioError(what: string, cause: unknown): AztpError {
    const code = (cause as NodeJS.ErrnoException | null)?.code;
    return new AztpError(
      ErrorCodes.AUDIT_IO_FAILED,
      `audit log ${this.path}: ${what}${code ? ` (${code})` : ""}: ${(cause as Error)?.message ?? String(cause)}`,
      {
        cause,
      },
    );
  }
}

function newBatch(): Batch {
  const { promise: done, resolve, reject } = settlement();
  return { lines: [], tags: [], bytes: 0, sync: false, done, resolve, reject, synced: null };
}

function settlement(): Settlement {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers get `promise` (or a promise derived from it) and handle its rejection; the sink's own
  // references to it (flush, close) must not turn a handled failure into an unhandled one.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

/**
 * The batch as UTF-8 with a newline after each line, in one pass: encoding line by line into
 * one buffer is several times cheaper than joining the (rope) strings and then encoding. Into a
 * spare buffer that is big enough, else a new one (its own ArrayBuffer, never a slice of Node's
 * shared pool, so that an observer may transfer it). With `withEnds`, also where each newline is.
 */
function encodeLines(
  lines: readonly string[],
  withEnds: boolean,
  spare: ArrayBuffer[],
): { buffer: Buffer; ends: Uint32Array | null } {
  let units = 0;
  for (const line of lines) units += line.length;
  // A UTF-16 code unit never takes more than 3 bytes in UTF-8.
  const size = units * 3 + lines.length;
  let memory: ArrayBuffer | undefined;
  while (memory === undefined && spare.length > 0) {
    const candidate = spare.pop() as ArrayBuffer;
    if (candidate.byteLength >= size) memory = candidate;
  }
  // Sizes rounded up to a power of two, so that a buffer fits the batches after it.
  memory ??= Buffer.allocUnsafeSlow(Math.max(MIN_ENCODE_BUFFER, 2 ** Math.ceil(Math.log2(size)))).buffer as ArrayBuffer;
  const buffer = Buffer.from(memory);
  const ends = withEnds ? new Uint32Array(lines.length) : null;
  let off = 0;
  for (let i = 0; i < lines.length; i++) {
    off += buffer.write(lines[i] as string, off, "utf8");
    if (ends !== null) ends[i] = off;
    buffer[off++] = 10;
  }
  return { buffer: buffer.subarray(0, off), ends };
}

const MIN_ENCODE_BUFFER = 64 * 1024;
/**
 * Spare buffers kept, and the biggest kept (a default batch needs 4 MiB at most): two are enough
 * for the one being written and the one an observer is giving back.
 */
const MAX_SPARE = 2;
const MAX_REUSED = 8 * 1024 * 1024;

function readFully(fd: number, into: Buffer, position: number): void {
  for (let off = 0; off < into.length;) {
    const n = readSync(fd, into, off, into.length - off, position + off);
    if (n === 0) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, "audit log shrank while it was being read");
    off += n;
  }
}

/** Truncates an unfinished last line (no trailing newline) and reports what was removed. */
function repairTornTail(fd: number): { size: number; torn: TornTail | null } {
  const size = fstatSync(fd).size;
  if (size === 0) return { size, torn: null };
  const last = Buffer.alloc(1);
  readFully(fd, last, size - 1);
  if (last[0] === 10) return { size, torn: null };
  // Find the last newline; everything after it is the unfinished line.
  let cut = 0;
  const chunk = Buffer.alloc(64 * 1024);
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length);
    const view = chunk.subarray(0, end - start);
    readFully(fd, view, start);
    const nl = view.lastIndexOf(10);
    if (nl >= 0) {
      cut = start + nl + 1;
      break;
    }
    end = start;
  }
  const data = Buffer.alloc(size - cut);
  readFully(fd, data, cut);
  ftruncateSync(fd, cut);
  fdatasyncSync(fd);
  return { size: cut, torn: { offset: cut, bytes: size - cut, data } };
}
