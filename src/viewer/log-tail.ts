/**
 * A log file read as it grows: complete lines with their byte offsets, from where the last
 * read stopped.
 *
 * The viewer needs what `audit/lines.ts` does not give: where each line sits in the file (an
 * entry's detail is read back from there, not kept in memory: 100,000 entries with their tokens
 * are hundreds of megabytes) and a read that resumes at the end of the last complete line. A
 * file that no longer holds the bytes already read (cut, replaced, the last line rewritten) is
 * reported as rewritten: its reader starts again from the beginning, and verifies again.
 */
import { createHash, type Hash } from "node:crypto";
import { open, stat } from "node:fs/promises";
import { AztpError, ErrorCodes } from "../errors.js";

export interface TailLine {
  readonly text: string;
  /** 1-based. */
  readonly line: number;
  /** Byte offset of the line's first byte. */
  readonly offset: number;
  /** Bytes of the line, without its newline. */
  readonly length: number;
}

export type TailRead = "appended" | "unchanged" | "rewritten";

const CHUNK = 1 << 20;
const NEWLINE = 0x0a;

export class LogTail {
  readonly path: string;
  #offset = 0;
  #lines = 0;
  #ino: number | null = null;
  /** The last complete line's bytes (with its newline) and where they start. */
  #last: { offset: number; bytes: Buffer } | null = null;

  constructor(path: string) {
    this.path = path;
  }

  /** Bytes read so far, up to the end of the last complete line. */
  get offset(): number {
    return this.#offset;
  }

  /** Complete lines read so far. */
  get lines(): number {
    return this.#lines;
  }

  /**
   * Reads the complete lines after the last read, in order, into `onLine`; a last line without
   * its newline is left for the next read (a writer is in the middle of it). `hash`, if given,
   * is fed every byte consumed. "rewritten": the file no longer holds what was read, nothing was
   * read this time; call `reset()` and read again.
   */
  async read(onLine: (line: TailLine) => void, hash?: Hash): Promise<TailRead> {
    let handle;
    try {
      handle = await open(this.path, "r");
    } catch (cause) {
      throw ioError(this.path, cause);
    }
    try {
      const st = await handle.stat();
      if (this.#ino !== null && st.ino !== this.#ino) return "rewritten";
      this.#ino = st.ino;
      if (st.size < this.#offset) return "rewritten";
      if (this.#last !== null) {
        const again = Buffer.alloc(this.#last.bytes.length);
        await handle.read(again, 0, again.length, this.#last.offset);
        if (!again.equals(this.#last.bytes)) return "rewritten";
      }
      if (st.size === this.#offset) return "unchanged";
      let position = this.#offset;
      let carry: Buffer | null = null;
      let read = false;
      const buffer = Buffer.alloc(CHUNK);
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
        if (bytesRead === 0) break;
        const chunk: Buffer =
          carry === null ? buffer.subarray(0, bytesRead) : Buffer.concat([carry, buffer.subarray(0, bytesRead)]);
        const chunkStart: number = position - (carry === null ? 0 : carry.length);
        position += bytesRead;
        let start = 0;
        for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, start)) {
          const offset = chunkStart + start;
          this.#lines++;
          onLine({ text: chunk.toString("utf8", start, nl), line: this.#lines, offset, length: nl - start });
          hash?.update(chunk.subarray(start, nl + 1));
          this.#last = { offset, bytes: Buffer.from(chunk.subarray(start, nl + 1)) };
          this.#offset = offset + (nl - start) + 1;
          read = true;
          start = nl + 1;
        }
        // Copied: the buffer is reused by the next read.
        carry = start < chunk.length ? Buffer.from(chunk.subarray(start)) : null;
      }
      return read ? "appended" : "unchanged";
    } catch (cause) {
      throw ioError(this.path, cause);
    } finally {
      await handle.close();
    }
  }

  /** Forgets what was read: the next read starts from the beginning of the file. */
  reset(): void {
    this.#offset = 0;
    this.#lines = 0;
    this.#ino = null;
    this.#last = null;
  }
}

/** SHA-256 of the file's first `bytes` bytes (null when it holds fewer). */
export async function prefixDigest(path: string, bytes: number): Promise<string | null> {
  const hash = createHash("sha256");
  let handle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw ioError(path, cause);
  }
  try {
    const buffer = Buffer.alloc(CHUNK);
    let position = 0;
    while (position < bytes) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(CHUNK, bytes - position), position);
      if (bytesRead === 0) return null;
      hash.update(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
    return hash.digest("hex");
  } finally {
    await handle.close();
  }
}

/** The bytes of one line, read back from where the tail saw it. */
export async function readLineAt(path: string, offset: number, length: number): Promise<string> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw ioError(path, cause);
  }
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.toString("utf8", 0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Whether `path` exists as a file now (a log that is not there yet is not an error while watching). */
export async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function ioError(path: string, cause: unknown): AztpError {
  if (cause instanceof AztpError) return cause;
  return new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot read audit log ${path}: ${(cause as Error).message}`, {
    cause,
  });
}
