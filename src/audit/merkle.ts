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
import { createHash } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";

/** Hashes of this tree are SHA-256: 32 bytes. */
export const MERKLE_HASH_SIZE = 32;

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
}

const LEAF = Buffer.from([0x00]);
const NODE = Buffer.from([0x01]);

/** RFC 6962's leaf hash of `data` (an entry's bytes). */
export function leafHash(data: Uint8Array): Buffer {
  return sha256(LEAF, data);
}

/** RFC 6962's interior node hash. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE, left, right);
}

/** The hash of the tree of no leaves: SHA-256 of the empty string. */
export const EMPTY_TREE_HASH: Buffer = sha256();

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

/** The root of the tree over `leaves` (leaf hashes), from `start` for `n` leaves. */
function subtreeRoot(leaves: readonly Uint8Array[], start: number, n: number): Buffer {
  if (n === 0) return EMPTY_TREE_HASH;
  if (n === 1) return Buffer.from(leaves[start] as Uint8Array);
  const k = split(n);
  return nodeHash(subtreeRoot(leaves, start, k), subtreeRoot(leaves, start + k, n - k));
}

/** The root hash of the tree whose leaf hashes are `leaves` (RFC 6962's MTH). */
export function treeRoot(leaves: readonly Uint8Array[]): Buffer {
  return subtreeRoot(leaves, 0, leaves.length);
}

/**
 * The inclusion proof of leaf `index` in the tree of the first `size` of `leaves` (RFC 6962's
 * PATH): the sibling hashes from the leaf up.
 */
export function inclusionProof(leaves: readonly Uint8Array[], index: number, size = leaves.length): Buffer[] {
  checkSize(size, "size");
  if (size > leaves.length) invalid(`a tree of ${size} leaves from ${leaves.length}`);
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) invalid(`leaf ${index} is not in a tree of ${size}`);
  const path = (m: number, start: number, n: number): Buffer[] => {
    if (n <= 1) return [];
    const k = split(n);
    return m < k
      ? [...path(m, start, k), subtreeRoot(leaves, start + k, n - k)]
      : [...path(m - k, start + k, n - k), subtreeRoot(leaves, start, k)];
  };
  return path(index, 0, size);
}

/**
 * The consistency proof between the tree of the first `from` leaves and that of the first `to`
 * (RFC 6962's PROOF): the hashes that let a holder of the older root compute the newer.
 */
export function consistencyProof(leaves: readonly Uint8Array[], from: number, to = leaves.length): Buffer[] {
  checkSize(from, "from");
  checkSize(to, "to");
  if (to > leaves.length) invalid(`a tree of ${to} leaves from ${leaves.length}`);
  if (from > to) invalid(`the older tree (${from}) is larger than the newer (${to})`);
  if (from === 0 || from === to) return [];
  const subproof = (m: number, start: number, n: number, complete: boolean): Buffer[] => {
    if (m === n) return complete ? [] : [subtreeRoot(leaves, start, n)];
    const k = split(n);
    return m <= k
      ? [...subproof(m, start, k, complete), subtreeRoot(leaves, start + k, n - k)]
      : [...subproof(m - k, start + k, n - k, false), subtreeRoot(leaves, start, k)];
  };
  return subproof(from, 0, to, true);
}

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
