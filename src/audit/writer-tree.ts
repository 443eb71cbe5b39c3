/**
 * The writer's Merkle tree: the frontier (RFC 6962's right edge) over every entry a log has
 * appended, from which each checkpoint takes its root.
 *
 * Hashing a leaf (SHA-256 of a ~2 KB line) and pushing it onto the frontier costs about 3 µs per
 * entry, a fifth of what an append costs the appending thread. On a machine with a second core
 * ("worker") it is done on a worker thread: the sink hands it each batch it wrote
 * (`JsonlSink.observe`; the bytes are transferred, not copied), and the worker answers with the
 * frontier after that batch, giving the bytes back for the sink to encode a later batch into.
 * This thread keeps the entry lines the worker has not yet answered for, and reads its answers
 * synchronously from its port (a busy appender may not return to the event loop for a long
 * time). A checkpoint of every entry appended (`frontier()`) hashes those lines here, usually
 * the batch not yet written; a checkpoint due under load is cut instead where the worker has
 * caught up (`knownFrontier`, log.ts), and nothing is hashed here. The worker and this thread
 * hash the same bytes (the lines as UTF-8, as the sink writes them), so either one's frontier
 * is the tree.
 *
 * One worker serves every log of the process and never keeps the process alive. If it dies, the
 * logs are told (`onLost`) and hash on this thread: the lines waiting for it are hashed here
 * once there are more than MAX_PENDING. With one core, or `leafWorker: "never"`, everything is
 * hashed here ("inline").
 *
 * The worker is a few lines of JavaScript evaluated as such (no module to resolve: the same code
 * runs from src/ under tsx and from dist/), so it restates the frontier's push from merkle.ts;
 * test/audit-writer-tree.test.ts holds the two to the same roots, and a verifier checks every
 * checkpoint against a tree it builds itself.
 */
import { availableParallelism } from "node:os";
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import { AztpError, ErrorCodes } from "../errors.js";
import type { WrittenBatch } from "./jsonl-sink.js";
import { leafHashOfText, MERKLE_HASH_SIZE, MerkleFrontier } from "./merkle.js";

/** Where leaves are hashed: mostly on the shared worker thread, or all on the appending thread. */
export type WriterTreeMode = "worker" | "inline";

/** The tag the log appends entry lines with: the sink hands it back, and the worker hashes only those lines. */
export const LEAF_TAG = 1;

/** Entry lines the worker has not answered for, past which this thread hashes the oldest itself. */
export const MAX_PENDING = 4096;

export interface WriterTree {
  readonly mode: WriterTreeMode;
  /** An entry line, as handed to the sink (in the same order). */
  add(line: string): void;
  /** A batch the sink wrote. Never throws. */
  written(batch: WrittenBatch): void;
  /** The frontier over every entry added so far (a copy). */
  frontier(): MerkleFrontier;
  /** The frontier over the first `size` entries if it is known without hashing anything here, else null. */
  knownFrontier(size: number): MerkleFrontier | null;
  /** Entry lines added whose leaves are not known yet (this thread would hash them for `frontier()`). */
  unhashed(): number;
  /** Starts over from `frontier` (after a failed write was recovered): lines added before no longer count. */
  reset(frontier: MerkleFrontier): void;
  close(): void;
}

/**
 * A tree starting at `frontier`. `preference`: "auto" (the worker when the machine has more
 * than one core), "always", "never".
 */
export function startWriterTree(
  frontier: MerkleFrontier,
  preference: "auto" | "always" | "never",
  hooks: TreeHooks = {},
): WriterTree {
  const worker = preference === "always" || (preference === "auto" && availableParallelism() > 1);
  return worker ? new WorkerTree(frontier, hooks) : new InlineTree(frontier);
}

export interface TreeHooks {
  /** Told, once, if the worker dies. */
  readonly onLost?: (cause: AztpError) => void;
  /** Given each batch's bytes back once the worker hashed them (`JsonlSink.recycle`). */
  readonly recycle?: (bytes: ArrayBuffer) => void;
}

class InlineTree implements WriterTree {
  readonly mode = "inline";
  #frontier: MerkleFrontier;

  constructor(frontier: MerkleFrontier) {
    this.#frontier = frontier.clone();
  }

  add(line: string): void {
    this.#frontier.push(leafHashOfText(line));
  }

  written(): void {}

  frontier(): MerkleFrontier {
    return this.#frontier.clone();
  }

  knownFrontier(size: number): MerkleFrontier | null {
    return size === this.#frontier.size ? this.#frontier.clone() : null;
  }

  unhashed(): number {
    return 0;
  }

  reset(frontier: MerkleFrontier): void {
    this.#frontier = frontier.clone();
  }

  close(): void {}
}

// Per tree id, the worker keeps a frontier, hashes each batch's lines tagged as leaves, and posts
// the frontier after the batch on its port (id, generation, size, roots concatenated). A batch's
// line i spans [ends[i-1] + 1, ends[i]); its leaf is SHA-256(0x00 || line): the newline before
// the line is overwritten with the 0x00 (the worker owns the bytes), the first line is copied
// behind one. Messages for an old generation of a tree (before a reset) are ignored.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { hash } = require("node:crypto");
const out = workerData.port;
const ZERO = Buffer.from([0]);
const ONE = Buffer.from([1]);
const trees = new Map();
function push(t, h) {
  for (let n = t.size; n % 2 === 1; n = Math.floor(n / 2)) h = hash("sha256", Buffer.concat([ONE, t.roots.pop(), h]), "buffer");
  t.roots.push(h);
  t.size++;
}
parentPort.on("message", (m) => {
  if (m.t === "open") {
    const roots = [];
    for (let i = 0; i < m.roots.length; i += 32) roots.push(Buffer.from(m.roots.subarray(i, i + 32)));
    trees.set(m.id, { gen: m.gen, size: m.size, roots });
  } else if (m.t === "close") {
    trees.delete(m.id);
  } else if (m.t === "batch") {
    const t = trees.get(m.id);
    if (t === undefined || t.gen !== m.gen) return;
    const data = Buffer.from(m.data, m.offset, m.length);
    let start = 0;
    for (let i = 0; i < m.ends.length; i++) {
      const end = m.ends[i];
      if (m.tags[i] === ${LEAF_TAG}) {
        let h;
        if (start === 0) h = hash("sha256", Buffer.concat([ZERO, data.subarray(0, end)]), "buffer");
        else { data[start - 1] = 0; h = hash("sha256", data.subarray(start - 1, end), "buffer"); }
        push(t, h);
      }
      start = end + 1;
    }
    // The bytes go back with the answer, for the sink to encode a later batch into.
    out.postMessage({ id: m.id, gen: t.gen, size: t.size, roots: new Uint8Array(Buffer.concat(t.roots)), data: m.data }, [m.data]);
  }
});
`;

interface Snapshot {
  id: number;
  gen: number;
  size: number;
  roots: Uint8Array;
  /** The batch's bytes, given back. */
  data: ArrayBuffer;
}

/** The process's one leaf worker; a new one is started, for trees opened later, after a death. */
class LeafWorker {
  static #current: LeafWorker | null = null;

  static shared(): LeafWorker {
    if (LeafWorker.#current === null || LeafWorker.#current.dead) LeafWorker.#current = new LeafWorker();
    return LeafWorker.#current;
  }

  /** Stops the shared worker as a crash would (tests of what a log does then). */
  static async kill(): Promise<void> {
    const current = LeafWorker.#current;
    if (current !== null) await current.#worker.terminate();
  }

  readonly #worker: Worker;
  readonly #answers: MessagePort;
  readonly #trees = new Map<number, WorkerTree>();
  #nextTree = 1;
  dead = false;

  private constructor() {
    const { port1, port2 } = new MessageChannel();
    // execArgv: []: the worker runs plain JavaScript, and must not load the parent's loaders (tsx).
    this.#worker = new Worker(WORKER, { eval: true, execArgv: [], workerData: { port: port2 }, transferList: [port2] });
    this.#worker.unref(); // the process may end whenever its own work is done
    this.#answers = port1;
    this.#answers.unref(); // read with receiveMessageOnPort only
    this.#worker.on("error", (cause) => this.#die(`failed: ${cause.message}`, cause));
    this.#worker.on("exit", (code) => this.#die(`stopped (exit ${code})`));
  }

  adopt(tree: WorkerTree): number {
    const id = this.#nextTree++;
    this.#trees.set(id, tree);
    return id;
  }

  release(id: number): void {
    this.#trees.delete(id);
    this.post({ t: "close", id });
  }

  post(message: unknown, transfer?: ArrayBuffer[]): void {
    if (!this.dead) this.#worker.postMessage(message, transfer);
  }

  /** Hands every answer the worker has posted so far to its tree, without waiting for any. */
  drain(): void {
    for (let m = receiveMessageOnPort(this.#answers); m !== undefined; m = receiveMessageOnPort(this.#answers)) {
      const snapshot = m.message as Snapshot;
      this.#trees.get(snapshot.id)?.answered(snapshot);
    }
  }

  #die(why: string, cause?: unknown): void {
    if (this.dead) return;
    this.dead = true;
    const error = new AztpError(ErrorCodes.AUDIT_IO_FAILED, `the audit leaf worker ${why}`, { cause });
    for (const tree of this.#trees.values()) tree.lost(error);
    this.#trees.clear();
  }
}

/** Stops the shared leaf worker as a crash would. For tests only: its logs go on hashing inline. */
export function killLeafWorkerForTests(): Promise<void> {
  return LeafWorker.kill();
}

class WorkerTree implements WriterTree {
  readonly mode = "worker";
  readonly #host: LeafWorker;
  readonly #id: number;
  readonly #hooks: TreeHooks;
  /** The tree over the first `#known.size` entries. */
  #known: MerkleFrontier;
  /** Entry lines after those, from index `#first`: what the worker has not answered for. */
  #pending: string[] = [];
  #first = 0;
  #gen = 0;
  #lost = false;

  constructor(frontier: MerkleFrontier, hooks: TreeHooks) {
    this.#host = LeafWorker.shared();
    this.#id = this.#host.adopt(this);
    this.#hooks = hooks;
    this.#known = frontier.clone();
    this.#open();
  }

  add(line: string): void {
    this.#pending.push(line);
    if (this.#pending.length - this.#first > MAX_PENDING) {
      this.#host.drain();
      this.#hashPending(this.#pending.length - this.#first - MAX_PENDING / 2);
    }
  }

  written({ data, ends, tags }: WrittenBatch): void {
    if (this.#lost) return;
    this.#host.drain();
    // The batch's bytes have an ArrayBuffer of their own (the sink's contract): moved, not copied.
    const bytes = data.buffer as ArrayBuffer;
    this.#host.post(
      {
        t: "batch",
        id: this.#id,
        gen: this.#gen,
        data: bytes,
        offset: data.byteOffset,
        length: data.length,
        ends,
        tags,
      },
      [bytes, ends.buffer as ArrayBuffer, tags.buffer as ArrayBuffer],
    );
  }

  frontier(): MerkleFrontier {
    this.#host.drain();
    this.#hashPending(this.#pending.length - this.#first);
    return this.#known.clone();
  }

  knownFrontier(size: number): MerkleFrontier | null {
    this.#host.drain();
    return size === this.#known.size ? this.#known.clone() : null;
  }

  unhashed(): number {
    this.#host.drain();
    return this.#pending.length - this.#first;
  }

  reset(frontier: MerkleFrontier): void {
    this.#gen++;
    this.#known = frontier.clone();
    this.#pending = [];
    this.#first = 0;
    this.#open();
  }

  close(): void {
    this.#host.release(this.#id);
  }

  /** The worker's frontier after a batch: taken when it is ahead of ours. */
  answered(snapshot: Snapshot): void {
    this.#hooks.recycle?.(snapshot.data);
    if (snapshot.gen !== this.#gen || snapshot.size <= this.#known.size) return;
    const ahead = snapshot.size - this.#known.size;
    // The worker hashes written lines only, all of which were added: never more than are pending.
    if (ahead > this.#pending.length - this.#first) return;
    const roots: Uint8Array[] = [];
    for (let i = 0; i < snapshot.roots.length; i += MERKLE_HASH_SIZE)
      roots.push(snapshot.roots.subarray(i, i + MERKLE_HASH_SIZE));
    this.#known = MerkleFrontier.of(snapshot.size, roots);
    this.#skip(ahead);
  }

  lost(cause: AztpError): void {
    if (this.#lost) return;
    this.#lost = true;
    this.#hooks.onLost?.(cause);
  }

  /** Hashes the oldest `n` pending lines here. */
  #hashPending(n: number): void {
    const end = this.#first + n;
    for (let i = this.#first; i < end; i++) this.#known.push(leafHashOfText(this.#pending[i] as string));
    this.#skip(n);
  }

  #skip(n: number): void {
    this.#first += n;
    if (this.#first === this.#pending.length) {
      this.#pending = [];
      this.#first = 0;
    } else if (this.#first > 1024 && this.#first * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#first);
      this.#first = 0;
    }
  }

  #open(): void {
    this.#host.post({
      t: "open",
      id: this.#id,
      gen: this.#gen,
      size: this.#known.size,
      roots: new Uint8Array(Buffer.concat(this.#known.roots)),
    });
  }
}
