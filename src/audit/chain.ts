/**
 * The audit chain rule: how an entry hangs on the one before it. One rule, used by the writer
 * (assigning seq and prev), by its crash recovery (checking the tail it reopens) and by
 * `aztp audit verify` (checking the whole log), so what the writer continues from and what the
 * verifier accepts can never drift apart.
 *
 * - Genesis: before the first entry the chain stands at seq 0 with hash GENESIS_HASH.
 * - A step: the entry after head H has seq = H.seq + 1 and prev = H.hash, and its own hash is
 *   that of its content (entryHash); the new head is its seq and hash.
 * - A checkpoint names the head just before it: upTo = head's seq, head = head's hash; it is
 *   numbered one after the previous checkpoint (the first is 1) and counts the entries since it.
 *
 * A fault is reported as which part of a step failed, checked in this order: "hash-mismatch"
 * (the entry was edited), "sequence" (entries deleted, inserted or reordered), "chain" (a
 * splice: the seq fits but prev names another entry).
 */
import { entryHash, type StoredAuditEntry } from "./entry.js";

/** The `prev` of the first entry of every log: no entry hashes to 64 zeros. */
export const GENESIS_HASH = "0".repeat(64);

/** Where a chain stands: the seq and hash of its newest entry. */
export interface ChainHead {
  readonly seq: number;
  readonly hash: string;
}

/** The head of a log with no entry yet. */
export const GENESIS: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH });

export type ChainFault = "hash-mismatch" | "sequence" | "chain";

/** The seq and prev the entry after `head` carries. */
export function nextLink(head: ChainHead): { seq: number; prev: string } {
  return { seq: head.seq + 1, prev: head.hash };
}

/**
 * "hash-mismatch" when `entry`'s hash is not that of its content. Throws (AztpError) for
 * content that has no canonical form (a lone surrogate): the caller reports it as malformed.
 */
export function sealFault(entry: StoredAuditEntry): "hash-mismatch" | null {
  return entryHash(entry) === entry.hash ? null : "hash-mismatch";
}

/** Whether `entry` follows `head`: "sequence" if its seq is not the next, "chain" if its prev is not head's hash. */
export function linkFault(
  head: ChainHead,
  entry: { readonly seq: number; readonly prev: string },
): "sequence" | "chain" | null {
  if (entry.seq !== head.seq + 1) return "sequence";
  if (entry.prev !== head.hash) return "chain";
  return null;
}

/** One chain step from `head` to `entry`: sealed, then linked. Throws as sealFault does. */
export function stepFault(head: ChainHead, entry: StoredAuditEntry): ChainFault | null {
  return sealFault(entry) ?? linkFault(head, entry);
}

/** Whether a checkpoint names `head` (the entry just before it). */
export function namesHead(checkpoint: { readonly upTo: number; readonly head: string }, head: ChainHead): boolean {
  return checkpoint.upTo === head.seq && checkpoint.head === head.hash;
}

/** What the checkpoint after `previous` (null: the first) at `head` holds: its seq, upTo, head and count. */
export function nextCheckpoint(
  previous: { readonly seq: number; readonly upTo: number } | null,
  head: ChainHead,
): { seq: number; upTo: number; head: string; count: number } {
  return {
    seq: (previous?.seq ?? 0) + 1,
    upTo: head.seq,
    head: head.hash,
    count: head.seq - (previous?.upTo ?? GENESIS.seq),
  };
}
