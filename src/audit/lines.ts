/**
 * Streams the lines of a log file, front to back, for the readers (verify, query, stats).
 *
 * A last line without its newline is not a line: it is what a crash left in the middle of a
 * write, returned apart as `torn` so that each reader decides what it means.
 */
import { createReadStream } from "node:fs";
import { AztpError, ErrorCodes } from "../errors.js";

export interface LineScan {
  /** Complete lines seen (up to the stop, when the callback stopped the scan). */
  readonly lines: number;
  /** Bytes after the last newline, if any (only when the scan ran to the end). */
  readonly torn: string | null;
  readonly stopped: boolean;
}

/** Calls `onLine` for each complete line (1-based numbers); returning false stops the scan. */
export async function scanLines(
  path: string,
  onLine: (line: string, lineNo: number) => boolean | void,
): Promise<LineScan> {
  const stream = createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 20 });
  let lineNo = 0;
  let carry = "";
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      // The carry is joined to the first line only, not to the whole chunk: joining a rope
      // to a megabyte of text would copy all of it once more.
      let start = 0;
      for (let nl = chunk.indexOf("\n"); nl >= 0; nl = chunk.indexOf("\n", start)) {
        let line = chunk.slice(start, nl);
        if (carry.length > 0) {
          line = carry + line;
          carry = "";
        }
        lineNo++;
        if (onLine(line, lineNo) === false) return { lines: lineNo, torn: null, stopped: true };
        start = nl + 1;
      }
      carry += chunk.slice(start);
    }
  } catch (cause) {
    if (cause instanceof AztpError) throw cause; // from onLine: already says what is wrong
    throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot read audit log ${path}: ${(cause as Error).message}`, {
      cause,
    });
  } finally {
    stream.destroy();
  }
  return { lines: lineNo, torn: carry.length > 0 ? carry : null, stopped: false };
}
