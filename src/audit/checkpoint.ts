/**
 * Signed checkpoints: what makes the hash chain hard to rewrite and its tail hard to cut.
 *
 * A checkpoint is a line of its own in the log, written right after the entry it covers:
 *
 *   { type: "checkpoint", seq, upTo, head, count, time, signer, sig }
 *
 * `seq` numbers the checkpoints (1, 2, ...), `upTo` is the seq of the last entry covered,
 * `head` that entry's hash, `count` the entries since the previous checkpoint (so removing a
 * checkpoint line is itself detected), `signer` the signer's ID and `sig` a compact JWS by the
 * writer (its SVID key) over the RFC 8785 canonical JSON of the other members. Checkpoints are
 * not part of the entry chain: `head` commits to every entry up to `upTo` through the chain.
 *
 * The newest checkpoint is also copied to a witness file outside the log (witness.ts),
 * atomically and only after the log holding it is durable, so the witness never claims more
 * than the log held.
 *
 * WHAT A CUT CAN AND CANNOT BE DETECTED AGAINST
 *
 * Detected, by `verifyAuditLog`:
 * - an edit of any field of any entry (its hash no longer matches);
 * - a deleted, inserted or reordered entry anywhere (seq gap or `prev` mismatch);
 * - an edit of entries followed by a recomputed chain, up to the last checkpoint (the
 *   checkpoint's signed `head` no longer matches; forging it needs the writer's key);
 * - a cut of the tail that removes the newest checkpoint, with the entries before it or not:
 *   the witness names a checkpoint (and its `upTo`/`head`) the log no longer holds;
 * - a cut that keeps a checkpoint line but removes entries it covers (its `head` no longer
 *   follows the entry before it), with or without a witness;
 * - a torn last line (a write interrupted by a crash), until the writer repairs it on open.
 *
 * NOT detected:
 * - a clean cut (at a line boundary) of entries written after the newest checkpoint: nothing
 *   signed refers to them yet. Checkpoint often (`checkpointEvery`, `checkpointIntervalMs`)
 *   to bound this window; `AuditLog.close()` checkpoints, so a cleanly closed log has none.
 * - a cut of the log together with a rollback of the witness to an older copy (or with the
 *   witness deleted and verification told not to require one): the log and the witness then
 *   agree on an older state. Keep the witness where the log's writer cannot roll it back,
 *   or copy checkpoints elsewhere (another host, a transparency log) when that matters.
 * - a whole log and witness replaced by ones signed with another key the verifier trusts:
 *   the verifier decides which signers are acceptable.
 * - checkpoint signatures, when no verifier is given: the structure is still checked.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalJson, canonicalObject } from "../json/canonical.js";
import { isHex64, isIsoTime, isPositiveSafeInteger } from "./entry.js";

export interface Checkpoint {
  readonly type: "checkpoint";
  readonly seq: number;
  readonly upTo: number;
  readonly head: string;
  readonly count: number;
  readonly time: string;
  readonly signer: string;
  /** Compact JWS over `checkpointPayload` of the other members. */
  readonly sig: string;
}

export type UnsignedCheckpoint = Omit<Checkpoint, "sig">;

/** Signs checkpoint payloads; the identity layer backs it with the writer's SVID key. */
export interface CheckpointSigner {
  readonly id: string;
  /** Returns a compact JWS over `payload` (attached or detached, as the verifier expects). */
  sign(payload: Buffer): string;
}

/** Checks checkpoint signatures; throws when `sig` is not a valid signature over `payload`. */
export interface CheckpointVerifier {
  verify(sig: string, payload: Buffer): { signer: string };
}

/** The bytes a checkpoint signature covers: the canonical JSON of all members but `sig`. */
export function checkpointPayload(checkpoint: UnsignedCheckpoint | Checkpoint): Buffer {
  return Buffer.from(canonicalObject(checkpoint as unknown as Record<string, unknown>, "sig"), "utf8");
}

export function signCheckpoint(unsigned: UnsignedCheckpoint, signer: CheckpointSigner): Checkpoint {
  const sig = signer.sign(checkpointPayload(unsigned));
  if (typeof sig !== "string" || sig.length === 0) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "checkpoint signer returned no signature");
  }
  return { ...unsigned, sig };
}

/** The line that stores a checkpoint (no newline). */
export function checkpointLine(checkpoint: Checkpoint): string {
  return canonicalJson(checkpoint);
}

export function isCheckpointRecord(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as { type?: unknown }).type === "checkpoint";
}

const CHECKPOINT_KEYS = ["type", "seq", "upTo", "head", "count", "time", "signer", "sig"] as const;

/** Returns why `value` is not a well-formed checkpoint, or null if it is one. */
export function checkpointProblem(value: unknown): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const c = value as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!(CHECKPOINT_KEYS as readonly string[]).includes(key)) return `unknown field "${key}"`;
  }
  if (c.type !== "checkpoint") return `field "type" must be "checkpoint"`;
  if (!isPositiveSafeInteger(c.seq)) return `field "seq" must be a positive integer`;
  if (!isPositiveSafeInteger(c.upTo)) return `field "upTo" must be a positive integer`;
  if (!isHex64(c.head)) return `field "head" must be 64 lower-case hex digits`;
  if (!isPositiveSafeInteger(c.count) || c.count > c.upTo) return `field "count" must be an integer in 1..upTo`;
  if (!isIsoTime(c.time)) return `field "time" must be an ISO 8601 timestamp`;
  if (typeof c.signer !== "string" || c.signer.length === 0) return `field "signer" must be a non-empty string`;
  if (typeof c.sig !== "string" || c.sig.length === 0) return `field "sig" must be a non-empty string`;
  return null;
}

/** Validates a parsed record as a checkpoint, throwing ERR_AUDIT_CORRUPT if it is not one. */
export function parseCheckpoint(value: unknown): Checkpoint {
  const problem = checkpointProblem(value);
  if (problem !== null) throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `malformed checkpoint: ${problem}`);
  return value as Checkpoint;
}

/**
 * Returns why the checkpoint's signature does not hold (the verifier threw, or it names a
 * different signer than the record claims), or null when it does.
 */
export function checkpointSignatureProblem(checkpoint: Checkpoint, verifier: CheckpointVerifier): string | null {
  let signer: unknown;
  try {
    signer = verifier.verify(checkpoint.sig, checkpointPayload(checkpoint)).signer;
  } catch (cause) {
    return `signature does not verify: ${cause instanceof Error ? cause.message : String(cause)}`;
  }
  if (signer !== checkpoint.signer) return `signed by "${String(signer)}", but the record names "${checkpoint.signer}"`;
  return null;
}

/** True when two checkpoints are the same record (same members, same signature). */
export function sameCheckpoint(a: Checkpoint, b: Checkpoint): boolean {
  return checkpointLine(a) === checkpointLine(b);
}
