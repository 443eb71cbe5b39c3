/**
 * The default audit sink: an append-only JSON Lines file with group commit.
 *
 * Durability: `append(line)` resolves only once the line has been written and the file
 * fdatasync'ed, so an acknowledged record survives a crash of the process or the machine.
 * Group commit makes that affordable: records arriving while a batch is open share one
 * write and one fdatasync. A batch opens with its first record and is written when it is
 * `batchWindowMs` old or reaches `maxBatchEntries` / `maxBatchBytes`, whichever comes first;
 * while one batch is being written the next one fills, so at most one write is in flight and
 * records reach the file in the order they were appended.
 *
 * Failure: after a failed write or fdatasync nothing in the page cache can be trusted
 * (Linux may drop the dirty pages and report success on the next fsync), so the sink fails
 * for good: the batch and every later append reject with ERR_AUDIT_IO, and the log must be
 * reopened (which re-reads and repairs the tail).
 *
 * Crash repair: a crash in the middle of a write can leave a last line without its newline.
 * Opening the file reports it (`torn`) and truncates it away; it never was acknowledged, and
 * appending after it would merge it with the next record.
 */
import { closeSync, fdatasync, fstatSync, ftruncateSync, fdatasyncSync, openSync, readSync, write } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { AztpError, ErrorCodes } from "../errors.js";
import { acquireLock, type FileLock } from "./lock.js";
import { syncDirectory } from "./witness.js";

const writeAsync = promisify(write);
const fdatasyncAsync = promisify(fdatasync);

export interface JsonlSinkOptions {
  /** How long a batch stays open for more records before it is written (ms). */
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

interface Batch {
  lines: string[];
  bytes: number;
  readonly done: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class JsonlSink {
  readonly path: string;
  /** Set when opening found and removed an unfinished last line. */
  readonly torn: TornTail | null;
  #fd: number;
  #lock: FileLock;
  #options: JsonlSinkOptions;
  #open: Batch | null = null; // filling
  #inFlight: Promise<void> | null = null; // the write+fdatasync under way
  #writing: Batch | null = null; // the batch it is writing
  #timer: NodeJS.Timeout | null = null;
  #due = false; // the open batch should be written as soon as the writer is free
  #failure: AztpError | null = null;
  #closed = false;
  #size: number;

  private constructor(path: string, fd: number, lock: FileLock, options: JsonlSinkOptions, size: number, torn: TornTail | null) {
    this.path = path;
    this.#fd = fd;
    this.#lock = lock;
    this.#options = options;
    this.#size = size;
    this.torn = torn;
  }

  static async open(path: string, options: JsonlSinkOptions): Promise<JsonlSink> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 }).catch((cause: unknown) => {
      throw new AztpError(ErrorCodes.AUDIT_IO, `cannot create the folder of audit log ${path}: ${(cause as Error).message}`, { cause });
    });
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
      throw new AztpError(ErrorCodes.AUDIT_IO, `cannot open audit log ${path}: ${(cause as Error).message}`, { cause });
    }
  }

  /** Bytes durably in the file (not counting a batch being written). */
  get size(): number {
    return this.#size;
  }

  /** Queues one record (without its newline); resolves once it is durable. */
  append(line: string): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new AztpError(ErrorCodes.AUDIT_CLOSED, `audit log ${this.path} is closed`));
    let batch = this.#open;
    if (batch === null) {
      batch = newBatch();
      this.#open = batch;
      this.#timer = setTimeout(() => this.#markDue(), this.#options.batchWindowMs);
    }
    batch.lines.push(line);
    batch.bytes += line.length + 1; // UTF-16 units: close enough for a flush threshold
    if (batch.lines.length >= this.#options.maxBatchEntries || batch.bytes >= this.#options.maxBatchBytes) {
      this.#markDue();
    }
    return batch.done;
  }

  /** Writes what is queued now; resolves once everything appended so far is durable. */
  flush(): Promise<void> {
    const pending = this.#open?.done ?? this.#writing?.done ?? Promise.resolve();
    if (this.#open !== null) this.#markDue();
    return pending;
  }

  /** Flushes, closes the file and releases the lock. Later appends reject with ERR_AUDIT_CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      await this.#inFlight?.catch(() => undefined);
      closeSync(this.#fd);
      await this.#lock.release();
    }
  }

  /**
   * Complete lines of the file from the last to the first, with their byte offsets.
   * Used on open, before any append, to recover the chain's head.
   */
  *linesBackward(chunkSize = 64 * 1024): Generator<{ line: string; offset: number }> {
    const size = this.#size; // the file ends with "\n" here (repairTornTail saw to it)
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
      for (let nl = hi > 0 ? data.lastIndexOf(10, hi - 1) : -1; nl >= 0; nl = hi > 0 ? data.lastIndexOf(10, hi - 1) : -1) {
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
    if (this.#inFlight === null) void this.#writeOpenBatch();
  }

  async #writeOpenBatch(): Promise<void> {
    const batch = this.#open;
    if (batch === null || this.#failure) return;
    this.#open = null;
    this.#due = false;
    const buffer = encodeLines(batch.lines);
    const run = (async () => {
      for (let off = 0; off < buffer.length; ) {
        const { bytesWritten } = await writeAsync(this.#fd, buffer, off, buffer.length - off, null);
        off += bytesWritten;
      }
      await fdatasyncAsync(this.#fd);
      this.#size += buffer.length;
    })();
    this.#inFlight = run;
    this.#writing = batch;
    try {
      await run;
      batch.resolve();
    } catch (cause) {
      this.#fail(cause, batch);
    } finally {
      this.#inFlight = null;
      this.#writing = null;
    }
    // The next batch filled while this one was written; its window may already be over.
    if (this.#open !== null && this.#due) void this.#writeOpenBatch();
  }

  #fail(cause: unknown, batch: Batch): void {
    this.#failure = new AztpError(
      ErrorCodes.AUDIT_IO,
      `audit log ${this.path}: write failed, the log must be reopened: ${(cause as Error).message}`,
      { cause },
    );
    batch.reject(this.#failure);
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#open?.reject(this.#failure);
    this.#open = null;
  }
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers get `done` (or a promise derived from it) and handle its rejection; the sink's own
  // references to it (flush, close) must not turn a handled failure into an unhandled one.
  done.catch(() => undefined);
  return { lines: [], bytes: 0, done, resolve, reject };
}

/**
 * The batch as UTF-8 with a newline after each line, in one pass: encoding line by line into
 * one buffer is several times cheaper than joining the (rope) strings and then encoding.
 */
function encodeLines(lines: readonly string[]): Buffer {
  let units = 0;
  for (const line of lines) units += line.length;
  // A UTF-16 code unit never takes more than 3 bytes in UTF-8.
  const buffer = Buffer.allocUnsafe(units * 3 + lines.length);
  let off = 0;
  for (const line of lines) {
    off += buffer.write(line, off, "utf8");
    buffer[off++] = 10;
  }
  return buffer.subarray(0, off);
}

function readFully(fd: number, into: Buffer, position: number): void {
  for (let off = 0; off < into.length; ) {
    const n = readSync(fd, into, off, into.length - off, position + off);
    if (n === 0) throw new AztpError(ErrorCodes.AUDIT_IO, "audit log shrank while it was being read");
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
  for (let end = size; end > 0; ) {
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
