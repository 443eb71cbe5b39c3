/**
 * The leaf hashes of a log file's entries, computed on another thread while verification checks
 * the chain on this one. Verifying a log hashes every entry twice (its chain hash, over its
 * canonical form, and its Merkle leaf, over its line as stored): SHA-256 is most of the cost, and
 * the second hash needs nothing the first pass knows, so on a machine with a second core it is
 * done there (verify.ts checks the checkpoints' trees once both are done).
 *
 * The worker is a few lines of JavaScript evaluated as such (no module to resolve: the same code
 * runs from src/ under tsx and from dist/), and reads the file itself: nothing is copied between
 * threads but the hashes, transferred once at the end.
 */
import { Worker } from "node:worker_threads";
import { AztpError, ErrorCodes } from "../errors.js";
import { MERKLE_HASH_SIZE } from "./merkle.js";

// Reads the file a megabyte at a time, splits it into lines on 0x0A (as the verifier's line
// reader does), and hashes each complete line that is not a checkpoint record as RFC 6962's leaf:
// SHA-256(0x00 || bytes). The 0x00 is put in place of the newline before the line (and put back),
// so no line is copied. A last line without its newline is not a line.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { openSync, readSync, closeSync } = require("node:fs");
const { hash } = require("node:crypto");
const MARK = Buffer.from('"type":"checkpoint"');
const CHUNK = 1 << 20;
let out = Buffer.allocUnsafe(32 * 4096);
let count = 0;
let kinds = Buffer.allocUnsafe(4096);
let lines = 0;
function push(h) {
  if ((count + 1) * 32 > out.length) { const g = Buffer.allocUnsafe(out.length * 2); out.copy(g, 0, 0, count * 32); out = g; }
  h.copy(out, count * 32); count++;
}
function kind(k) {
  if (lines + 1 > kinds.length) { const g = Buffer.allocUnsafe(kinds.length * 2); kinds.copy(g, 0, 0, lines); kinds = g; }
  kinds[lines++] = k;
}
function isCheckpoint(buf, s, e) {
  if (buf.subarray(s, e).indexOf(MARK) < 0) return false; // within the line only: not the rest of the chunk
  try { const v = JSON.parse(buf.toString("utf8", s, e)); return v !== null && typeof v === "object" && v.type === "checkpoint"; } catch { return false; }
}
function leaf(buf, s, e) {
  // buf[s-1] is the newline before the line, or a 0x00 put there for it.
  const saved = buf[s - 1]; buf[s - 1] = 0; push(hash("sha256", buf.subarray(s - 1, e), "buffer")); buf[s - 1] = saved;
}
const fd = openSync(workerData.path, "r");
try {
  let carry = Buffer.alloc(1); // byte 0: room for the 0x00 before a line that spans two chunks
  const buf = Buffer.allocUnsafe(CHUNK + 1);
  for (;;) {
    const n = readSync(fd, buf, 1, CHUNK, null);
    if (n === 0) break;
    let s = 1;
    const end = n + 1;
    for (let nl = buf.indexOf(10, s); nl >= 0 && nl < end; nl = buf.indexOf(10, s)) {
      if (carry.length > 1) {
        const line = Buffer.concat([carry, buf.subarray(s, nl)]);
        if (isCheckpoint(line, 1, line.length)) kind(0); else { kind(1); leaf(line, 1, line.length); }
        carry = Buffer.alloc(1);
      } else if (isCheckpoint(buf, s, nl)) kind(0); else { kind(1); leaf(buf, s, nl); }
      s = nl + 1;
    }
    if (s < end) carry = Buffer.concat([carry, buf.subarray(s, end)]);
  }
} finally { closeSync(fd); }
const ab = out.buffer.slice(out.byteOffset, out.byteOffset + count * 32);
const kb = kinds.buffer.slice(kinds.byteOffset, kinds.byteOffset + lines);
parentPort.postMessage({ count, lines, leaves: ab, kinds: kb }, [ab, kb]);
`;

/** Logs smaller than this are hashed on the verifying thread: a worker costs tens of milliseconds to start. */
export const LEAF_WORKER_MIN_BYTES = 8 * 1024 * 1024;

/**
 * The leaf hashes of every complete entry line of `path` (32 bytes each, in order) and each
 * line's kind as this reading saw it (1 an entry, 0 a checkpoint), from a worker thread. Rejects
 * with ERR_AUDIT_IO_FAILED when the file cannot be read or the worker fails.
 */
export function leafHashesOf(path: string): Promise<{ leaves: Buffer; kinds: Uint8Array }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const worker = new Worker(WORKER, { eval: true, workerData: { path } });
    worker.on("message", (m: { count: number; lines: number; leaves: ArrayBuffer; kinds: ArrayBuffer }) => {
      settled = true;
      resolve({
        leaves: Buffer.from(m.leaves, 0, m.count * MERKLE_HASH_SIZE),
        kinds: new Uint8Array(m.kinds, 0, m.lines),
      });
      void worker.terminate();
    });
    worker.on("error", (cause) => {
      if (settled) return;
      settled = true;
      reject(
        new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot hash the entries of ${path}: ${cause.message}`, { cause }),
      );
    });
    worker.on("exit", (code) => {
      if (settled) return;
      settled = true;
      reject(new AztpError(ErrorCodes.AUDIT_IO_FAILED, `the leaf hasher of ${path} stopped (exit ${code})`));
    });
  });
}
