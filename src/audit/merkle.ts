/**
 * The Merkle tree of a log (RFC 6962 §2.1, as RFC 9162 §2.1 restates it): the tree transparency
 * logs use (Certificate Transparency, Go's checksum database, Sigstore's Rekor, C2SP
 * `tlog-checkpoint`), so that one entry's presence (an inclusion proof) and one tree being a
 * prefix of a later one (a consistency proof) can be proven with O(log n) hashes, and checked by
 * anyone holding a root.
 *
 * - leaf hash: SHA-256(0x00 || leaf), node hash: SHA-256(0x01 || left || right);
 * - the tree of n leaves splits at k, the largest power of two smaller than n; nothing is
 *   duplicated (an odd node is carried up), so no two different lists share a root;
 * - the tree of no leaves has the hash of the empty string.
 *
 * Proofs are generated from the leaf hashes (`leaves`) and verified by the algorithms of RFC 9162
 * §2.1.3.2 and §2.1.4.2, which never rebuild the tree and reject a proof of the wrong length.
 */
import { hash } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";

/** Hashes of this tree are SHA-256: 32 bytes. */
export const MERKLE_HASH_SIZE = 32;

// The one-shot crypto.hash (Node 20.12+, the package's floor) skips a Hash object per call: a
// third of the cost of a node hash, and every appended entry pays a leaf hash and about one node.
function sha256(...parts: Uint8Array[]): Buffer {
  return hash(
    "sha256",
    parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts),
    "buffer",
  ) as unknown as Buffer;
}

const LEAF = Buffer.from([0x00]);
const NODE = Buffer.from([0x01]);

/** RFC 6962's leaf hash of `data` (an entry's bytes). */
export function leafHash(data: Uint8Array): Buffer {
  return sha256(LEAF, data);
}

/** RFC 6962's interior node hash. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  if (left.length !== MERKLE_HASH_SIZE || right.length !== MERKLE_HASH_SIZE) return sha256(NODE, left, right);
  // 0x01 || left || right assembled in one reused buffer: no allocation per node.
  NODE_INPUT.set(left, 1);
  NODE_INPUT.set(right, 1 + MERKLE_HASH_SIZE);
  return sha256(NODE_INPUT);
}

const NODE_INPUT = Buffer.alloc(1 + 2 * MERKLE_HASH_SIZE, 0x01);

/** The hash of the tree of no leaves: SHA-256 of the empty string. */
export const EMPTY_TREE_HASH: Buffer = sha256(new Uint8Array(0));

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `merkle: ${message}`);
}

function checkSize(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) invalid(`${what} must be a whole number >= 0, got ${n}`);
}

/** The largest power of two smaller than n (n >= 2). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Something that knows the root of any run of leaves: a list of leaf hashes, or a MerkleTree. */
type SubtreeRoots = (start: number, n: number) => Buffer;

/** The root of the tree over `leaves` (leaf hashes), from `start` for `n` leaves. */
function listSubtreeRoot(leaves: readonly Uint8Array[], start: number, n: number): Buffer {
  if (n === 0) return EMPTY_TREE_HASH;
  if (n === 1) return Buffer.from(leaves[start] as Uint8Array);
  const k = split(n);
  return nodeHash(listSubtreeRoot(leaves, start, k), listSubtreeRoot(leaves, start + k, n - k));
}

/** The root hash of the tree whose leaf hashes are `leaves` (RFC 6962's MTH). */
export function treeRoot(leaves: readonly Uint8Array[]): Buffer {
  return listSubtreeRoot(leaves, 0, leaves.length);
}

function checkInclusion(index: number, size: number, available: number): void {
  checkSize(size, "size");
  if (size > available) invalid(`a tree of ${size} leaves from ${available}`);
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) invalid(`leaf ${index} is not in a tree of ${size}`);
}

function checkConsistency(from: number, to: number, available: number): void {
  checkSize(from, "from");
  checkSize(to, "to");
  if (to > available) invalid(`a tree of ${to} leaves from ${available}`);
  if (from > to) invalid(`the older tree (${from}) is larger than the newer (${to})`);
}

/** RFC 6962's PATH(m, D[start:start+n]), the sibling hashes from the leaf up. */
function path(roots: SubtreeRoots, m: number, start: number, n: number): Buffer[] {
  if (n <= 1) return [];
  const k = split(n);
  return m < k
    ? [...path(roots, m, start, k), roots(start + k, n - k)]
    : [...path(roots, m - k, start + k, n - k), roots(start, k)];
}

/** RFC 6962's SUBPROOF(m, D[start:start+n], complete). */
function subproof(roots: SubtreeRoots, m: number, start: number, n: number, complete: boolean): Buffer[] {
  if (m === n) return complete ? [] : [roots(start, n)];
  const k = split(n);
  return m <= k
    ? [...subproof(roots, m, start, k, complete), roots(start + k, n - k)]
    : [...subproof(roots, m - k, start + k, n - k, false), roots(start, k)];
}

/**
 * The inclusion proof of leaf `index` in the tree of the first `size` of `leaves` (RFC 6962's
 * PATH): the sibling hashes from the leaf up.
 */
export function inclusionProof(leaves: readonly Uint8Array[], index: number, size = leaves.length): Buffer[] {
  checkInclusion(index, size, leaves.length);
  return path((start, n) => listSubtreeRoot(leaves, start, n), index, 0, size);
}

/**
 * The consistency proof between the tree of the first `from` leaves and that of the first `to`
 * (RFC 6962's PROOF): the hashes that let a holder of the older root compute the newer.
 */
export function consistencyProof(leaves: readonly Uint8Array[], from: number, to = leaves.length): Buffer[] {
  checkConsistency(from, to, leaves.length);
  if (from === 0 || from === to) return [];
  return subproof((start, n) => listSubtreeRoot(leaves, start, n), from, 0, to, true);
}

/**
 * The tree's right edge (a "compact range" from 0): the roots of its complete subtrees, largest
 * first, one per bit set in the size. It is all a writer needs to extend the tree and compute
 * its root, in O(log n) memory; a checkpoint stores it so that a writer reopening a log continues
 * without rereading the entries the checkpoint covers.
 */
export class MerkleFrontier {
  #size: number;
  readonly #roots: Buffer[];

  private constructor(size: number, roots: Buffer[]) {
    this.#size = size;
    this.#roots = roots;
  }

  static empty(): MerkleFrontier {
    return new MerkleFrontier(0, []);
  }

  /** Rebuilds a frontier from its size and roots; throws ERR_ARGUMENT_INVALID if they disagree. */
  static of(size: number, roots: readonly Uint8Array[]): MerkleFrontier {
    checkSize(size, "size");
    if (roots.length !== popcount(size))
      invalid(`a tree of ${size} leaves has ${popcount(size)} frontier hashes, not ${roots.length}`);
    if (!hashes(roots)) invalid("frontier hashes must be 32 bytes each");
    return new MerkleFrontier(
      size,
      roots.map((r) => Buffer.from(r)),
    );
  }

  get size(): number {
    return this.#size;
  }

  /** The complete subtrees' roots, largest (leftmost) first. */
  get roots(): readonly Buffer[] {
    return this.#roots;
  }

  /** Adds a leaf (its leaf hash): one node hash per trailing 1 bit of the old size. */
  push(leaf: Uint8Array): void {
    let h: Uint8Array = leaf; // kept as given: leaf hashes are fresh buffers nobody changes
    for (let n = this.#size; n % 2 === 1; n = Math.floor(n / 2)) h = nodeHash(this.#roots.pop() as Buffer, h);
    this.#roots.push(Buffer.isBuffer(h) ? h : Buffer.from(h));
    this.#size++;
  }

  /** The root of the tree (the empty hash for no leaves). */
  root(): Buffer {
    return foldRight(this.#roots);
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.#size, [...this.#roots]);
  }
}

function popcount(n: number): number {
  let c = 0;
  for (; n > 0; n = Math.floor(n / 2)) c += n % 2;
  return c;
}

/** MTH from the complete subtrees of a size's binary decomposition: each joins the rest on its right. */
function foldRight(roots: readonly Buffer[]): Buffer {
  if (roots.length === 0) return EMPTY_TREE_HASH;
  let h = roots[roots.length - 1] as Buffer;
  for (let i = roots.length - 2; i >= 0; i--) h = nodeHash(roots[i] as Buffer, h);
  return h;
}

/**
 * A whole tree kept in memory: every level's complete-subtree hashes (2n hashes for n leaves,
 * stored contiguously, 64 bytes a leaf), so that any root, inclusion proof or consistency proof
 * of any prefix is O(log n) lookups, and a tile (C2SP tlog-tiles) is a slice of one level.
 */
export class MerkleTree {
  /** levels[l] holds the roots of the complete subtrees of 2^l leaves, left to right. */
  readonly #levels: { buf: Buffer; count: number }[] = [];

  get size(): number {
    return this.#levels[0]?.count ?? 0;
  }

  /** Adds a leaf hash; one node hash per completed subtree (amortized one). */
  push(leaf: Uint8Array): void {
    if (leaf.length !== MERKLE_HASH_SIZE) invalid("a leaf hash must be 32 bytes");
    let h: Uint8Array = leaf;
    for (let l = 0; ; l++) {
      const level = this.#level(l);
      this.#put(level, h);
      if (level.count % 2 === 1) return;
      h = nodeHash(this.#at(l, level.count - 2), this.#at(l, level.count - 1));
    }
  }

  /** Adds the leaf whose bytes are `data` (hashed as a leaf). */
  pushData(data: Uint8Array | string): void {
    this.push(typeof data === "string" ? leafHashOfText(data) : leafHash(data));
  }

  /** The hash at `index` of level `level` (a complete subtree of 2^level leaves). */
  hashAt(level: number, index: number): Buffer {
    const l = this.#levels[level];
    if (l === undefined || !Number.isSafeInteger(index) || index < 0 || index >= l.count)
      invalid(`no complete subtree ${index} at level ${level} in a tree of ${this.size}`);
    return this.#at(level, index);
  }

  /** How many complete subtrees level `level` holds. */
  levelSize(level: number): number {
    return this.#levels[level]?.count ?? 0;
  }

  /** The root of the first `size` leaves (default: all). */
  root(size = this.size): Buffer {
    checkSize(size, "size");
    if (size > this.size) invalid(`a tree of ${size} leaves from ${this.size}`);
    return this.#subtree(0, size);
  }

  inclusionProof(index: number, size = this.size): Buffer[] {
    checkInclusion(index, size, this.size);
    return path((start, n) => this.#subtree(start, n), index, 0, size);
  }

  consistencyProof(from: number, to = this.size): Buffer[] {
    checkConsistency(from, to, this.size);
    if (from === 0 || from === to) return [];
    return subproof((start, n) => this.#subtree(start, n), from, 0, to, true);
  }

  /** The frontier of the first `size` leaves, for a checkpoint. */
  frontier(size = this.size): MerkleFrontier {
    checkSize(size, "size");
    if (size > this.size) invalid(`a tree of ${size} leaves from ${this.size}`);
    const roots: Buffer[] = [];
    let start = 0;
    for (let l = 52; l >= 0; l--) {
      const n = 2 ** l;
      if (Math.floor(size / n) % 2 === 1) {
        roots.push(this.#at(l, start / n));
        start += n;
      }
    }
    return MerkleFrontier.of(size, roots);
  }

  #subtree(start: number, n: number): Buffer {
    if (n === 0) return EMPTY_TREE_HASH;
    if ((n & (n - 1)) === 0 && start % n === 0 && n <= 2 ** 30) {
      const l = Math.log2(n);
      if (start / n < this.levelSize(l)) return this.#at(l, start / n);
    }
    const k = split(n);
    return nodeHash(this.#subtree(start, k), this.#subtree(start + k, n - k));
  }

  #level(l: number): { buf: Buffer; count: number } {
    let level = this.#levels[l];
    if (level === undefined) {
      level = { buf: Buffer.allocUnsafe(MERKLE_HASH_SIZE * 64), count: 0 };
      this.#levels[l] = level;
    }
    return level;
  }

  #put(level: { buf: Buffer; count: number }, h: Uint8Array): void {
    const offset = level.count * MERKLE_HASH_SIZE;
    if (offset + MERKLE_HASH_SIZE > level.buf.length) {
      const grown = Buffer.allocUnsafe(level.buf.length * 2);
      level.buf.copy(grown, 0, 0, offset);
      level.buf = grown;
    }
    level.buf.set(h, offset);
    level.count++;
  }

  #at(l: number, index: number): Buffer {
    const level = this.#levels[l] as { buf: Buffer };
    return Buffer.from(level.buf.subarray(index * MERKLE_HASH_SIZE, (index + 1) * MERKLE_HASH_SIZE));
  }
}

/** The leaf hash of a line of text (its UTF-8 bytes), without copying it into a Buffer first. */
export function leafHashOfText(text: string): Buffer {
  // 0x00 || UTF-8(text), encoded into one reused buffer: no string concatenation to flatten and
  // no allocation per leaf (a UTF-16 unit takes at most 3 bytes in UTF-8).
  const max = 1 + text.length * 3;
  if (max > leafInput.length) leafInput = Buffer.alloc(Math.max(max, leafInput.length * 2));
  const n = leafInput.write(text, 1, "utf8");
  return sha256(leafInput.subarray(0, 1 + n));
}

let leafInput = Buffer.alloc(16 * 1024); // byte 0 stays 0x00, the leaf prefix

function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

function hashes(proof: readonly Uint8Array[]): boolean {
  return proof.every((h) => h instanceof Uint8Array && h.length === MERKLE_HASH_SIZE);
}

/**
 * RFC 9162's walk up the tree from node `fn` of a tree whose last node is `sn`, one proof hash
 * per level: a hash on the left when this node is a right child (or the last node, which has no
 * sibling on its right at its level: it climbs past the levels where it is a left child), on the
 * right otherwise. False when the proof is longer or shorter than the path to the root.
 */
function climb(
  fn: number,
  sn: number,
  proof: readonly Uint8Array[],
  step: { left(hash: Uint8Array): void; right(hash: Uint8Array): void },
): boolean {
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      step.left(p);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      step.right(p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0;
}

/**
 * Whether `proof` shows the leaf with hash `leaf` at `index` in the tree of `size` leaves whose
 * root is `root` (RFC 9162 §2.1.3.2). False for any malformed input, never a throw.
 */
export function verifyInclusion(
  leaf: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(index) || index < 0 || index >= size) return false;
  if (!hashes(proof) || leaf.length !== MERKLE_HASH_SIZE || root.length !== MERKLE_HASH_SIZE) return false;
  let r: Buffer = Buffer.from(leaf);
  const ok = climb(index, size - 1, proof, {
    left: (p) => (r = nodeHash(p, r)),
    right: (p) => (r = nodeHash(r, p)),
  });
  return ok && sameHash(r, root);
}

/**
 * Whether `proof` shows the tree of `from` leaves with root `fromRoot` to be a prefix of the tree
 * of `to` leaves with root `toRoot` (RFC 9162 §2.1.4.2). Equal sizes need an empty proof and equal
 * roots; a tree of no leaves is a prefix of every tree. False for any malformed input.
 */
export function verifyConsistency(
  from: number,
  to: number,
  proof: readonly Uint8Array[],
  fromRoot: Uint8Array,
  toRoot: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || from > to) return false;
  if (!hashes(proof) || fromRoot.length !== MERKLE_HASH_SIZE || toRoot.length !== MERKLE_HASH_SIZE) return false;
  if (from === 0) return proof.length === 0;
  if (from === to) return proof.length === 0 && sameHash(fromRoot, toRoot);
  if (proof.length === 0) return false;
  // A `from` that is a power of two is itself a node of the newer tree: its root starts the path.
  const path = (from & (from - 1)) === 0 ? [Buffer.from(fromRoot), ...proof] : [...proof];
  let fn = from - 1;
  let sn = to - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0] as Uint8Array);
  let sr: Buffer = Buffer.from(path[0] as Uint8Array);
  const ok = climb(fn, sn, path.slice(1), {
    left: (c) => {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
    },
    right: (c) => (sr = nodeHash(sr, c)),
  });
  return ok && sameHash(fr, fromRoot) && sameHash(sr, toRoot);
}
