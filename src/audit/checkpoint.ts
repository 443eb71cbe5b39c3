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
import { MerkleFrontier } from "./merkle.js";
import {
  ecdsaVerifierKey,
  formatSignedNote,
  joseToDerSignature,
  ecdsaKeyId,
  parseSignedNote,
  verifyNote,
} from "./signed-note.js";
import { formatCheckpointBody, isOrigin, parseCheckpointBody, type CheckpointBody } from "./tlog-checkpoint.js";

export interface Checkpoint {
  readonly type: "checkpoint";
  readonly seq: number;
  readonly upTo: number;
  readonly head: string;
  readonly count: number;
  readonly time: string;
  readonly signer: string;
  /**
   * The log's Merkle tree at `upTo` entries (RFC 6962, leaves the entry lines as stored) as a
   * C2SP checkpoint in signed-note form, signed by the writer's SVID key (type 0x02). Absent in
   * checkpoints written before the log kept a tree: such a log "predates proofs".
   */
  readonly note?: string;
  /** The tree's frontier at `upTo` (base64 hashes, largest subtree first), so a writer reopening the log continues the tree. */
  readonly frontier?: readonly string[];
  /** Compact JWS over `checkpointPayload` of the other members. */
  readonly sig: string;
}

export type UnsignedCheckpoint = Omit<Checkpoint, "sig">;

/** Signs checkpoint payloads; the identity layer backs it with the writer's SVID key. */
export interface CheckpointSigner {
  readonly id: string;
  /** Returns a compact JWS over `payload` (attached or detached, as the verifier expects). */
  sign(payload: Buffer): string;
  /**
   * Signs a C2SP checkpoint's note text with the same key: ECDSA P-256 over SHA-256, as JOSE
   * writes it (r || s), and the key's DER SubjectPublicKeyInfo. Null (or absent) when the key is
   * not P-256: its checkpoints then carry no note, and the log says it has no proofs.
   */
  signNote?(text: Buffer): { spki: Buffer; signature: Buffer } | null;
}

/** Checks checkpoint signatures; throws when `sig` is not a valid signature over `payload`. */
export interface CheckpointVerifier {
  /** `publicKey`: the verified signer's DER SubjectPublicKeyInfo, which the checkpoint's note must be signed by. */
  verify(sig: string, payload: Buffer): { signer: string; publicKey?: Buffer };
}

/**
 * The origin of a log's checkpoints (their first line, and the note's key name): the signer's
 * SPIFFE ID without its scheme, then `/audit/` and the log's name. A log keeps the origin of its
 * first note whatever its writer is called later.
 */
export function defaultOrigin(signerId: string, logName: string): string {
  const id = signerId.replace(/^[a-z]+:\/\//, "");
  const name = logName.replace(/[^A-Za-z0-9._-]/g, "-") || "log";
  const origin = `${id.replace(/[^A-Za-z0-9._/-]/g, "-")}/audit/${name}`;
  return origin;
}

/** The frontier as a checkpoint stores it. */
function frontierMember(tree: MerkleFrontier): string[] {
  return tree.roots.map((h) => h.toString("base64"));
}

/** A checkpoint's frontier, read back; null when it has none or it is not one. */
export function checkpointFrontier(checkpoint: Checkpoint): MerkleFrontier | null {
  if (checkpoint.frontier === undefined) return null;
  try {
    return MerkleFrontier.of(
      checkpoint.upTo,
      checkpoint.frontier.map((h) => Buffer.from(h, "base64")),
    );
  } catch {
    return null;
  }
}

/**
 * Signs a checkpoint of the chain head `unsigned` names and of the Merkle tree `tree` (of
 * `unsigned.upTo` leaves) under `origin`: the note first (type 0x02, by the signer's key), then
 * the JWS over every member, the note among them.
 */
export function makeCheckpoint(
  unsigned: UnsignedCheckpoint,
  tree: MerkleFrontier | null,
  origin: string,
  signer: CheckpointSigner,
): Checkpoint {
  if (tree === null || signer.signNote === undefined) return signCheckpoint(unsigned, signer);
  if (tree.size !== unsigned.upTo)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `checkpoint of ${unsigned.upTo} entries from a tree of ${tree.size}`,
    );
  if (!isOrigin(origin))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `checkpoint origin "${origin}" must have no spaces or "+"`);
  const text = formatCheckpointBody({ origin, size: tree.size, root: tree.root() });
  const signed = signer.signNote(Buffer.from(text, "utf8"));
  if (signed === null) return signCheckpoint(unsigned, signer);
  const note = formatSignedNote({
    text,
    signatures: [{ name: origin, keyId: ecdsaKeyId(signed.spki), signature: joseToDerSignature(signed.signature) }],
  });
  return signCheckpoint({ ...unsigned, note, frontier: frontierMember(tree) }, signer);
}

/** The checkpoint body (origin, size, root) a checkpoint's note holds; null when it has none. Throws ERR_AUDIT_NOTE_INVALID for a malformed one. */
export function checkpointBody(checkpoint: Checkpoint): CheckpointBody | null {
  if (checkpoint.note === undefined) return null;
  return parseCheckpointBody(parseSignedNote(checkpoint.note).text);
}

/**
 * Why a checkpoint's tree is not the tree `tree` of the entries it covers, or null when it is:
 * its frontier, its note's size and root, its origin (`origin`, when the log has one already),
 * and, given the verified signer's key, the note's signature by that key under the origin.
 */
export function checkpointTreeProblem(
  checkpoint: Checkpoint,
  tree: MerkleFrontier,
  options: { origin?: string | undefined; publicKey?: Buffer | undefined } = {},
): string | null {
  return checkpointNoteProblem(checkpoint, options) ?? checkpointRootProblem(checkpoint, tree);
}

/**
 * Why a checkpoint's note does not hold by itself, or null: it parses, names the log's origin
 * (`origin`, when the log has one already) and the checkpoint's size, and, given the verified
 * signer's key, is signed by that key under the origin. The tree it signs is checkpointRootProblem's.
 */
export function checkpointNoteProblem(
  checkpoint: Checkpoint,
  options: { origin?: string | undefined; publicKey?: Buffer | undefined } = {},
): string | null {
  if (checkpoint.note === undefined) return "has no tree (note)";
  let body: CheckpointBody;
  try {
    body = checkpointBody(checkpoint) as CheckpointBody;
  } catch (cause) {
    return (cause as Error).message;
  }
  if (options.origin !== undefined && body.origin !== options.origin)
    return `is for origin "${body.origin}", the log's earlier checkpoints for "${options.origin}"`;
  if (body.size !== checkpoint.upTo) return `note says ${body.size} entries, the checkpoint covers ${checkpoint.upTo}`;
  if (options.publicKey !== undefined) {
    try {
      verifyNote(parseSignedNote(checkpoint.note), [ecdsaVerifierKey(body.origin, options.publicKey)]);
    } catch (cause) {
      return `note is not signed by the checkpoint's signer: ${(cause as Error).message}`;
    }
  }
  return null;
}

/** Why a checkpoint's note and frontier are not the tree `tree` of the entries it covers, or null. */
export function checkpointRootProblem(checkpoint: Checkpoint, tree: MerkleFrontier): string | null {
  let body: CheckpointBody | null;
  try {
    body = checkpointBody(checkpoint);
  } catch (cause) {
    return (cause as Error).message;
  }
  if (body === null) return "has no tree (note)";
  if (!body.root.equals(tree.root())) return `note's root hash is not the Merkle root of entries 1..${checkpoint.upTo}`;
  const frontier = checkpoint.frontier ?? [];
  const expected = frontierMember(tree);
  if (frontier.length !== expected.length || frontier.some((h, i) => h !== expected[i]))
    return "frontier is not the tree's";
  return null;
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

const CHECKPOINT_KEYS = ["type", "seq", "upTo", "head", "count", "time", "signer", "note", "frontier", "sig"] as const;

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
  if ((c.note === undefined) !== (c.frontier === undefined)) return `fields "note" and "frontier" come together`;
  if (c.note !== undefined && (typeof c.note !== "string" || c.note.length === 0 || c.note.length > 65536))
    return `field "note" must be a signed note`;
  if (
    c.frontier !== undefined &&
    (!Array.isArray(c.frontier) ||
      c.frontier.length > 64 ||
      !c.frontier.every((h) => typeof h === "string" && /^[A-Za-z0-9+/]{43}=$/.test(h)))
  )
    return `field "frontier" must be a list of base64 SHA-256 hashes`;
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
  return checkCheckpointSignature(checkpoint, verifier).problem;
}

/** As checkpointSignatureProblem, with the verified signer's key (to check the note by). */
export function checkCheckpointSignature(
  checkpoint: Checkpoint,
  verifier: CheckpointVerifier,
): { problem: string | null; publicKey?: Buffer } {
  let verified: { signer: string; publicKey?: Buffer };
  try {
    verified = verifier.verify(checkpoint.sig, checkpointPayload(checkpoint));
  } catch (cause) {
    return { problem: `signature does not verify: ${cause instanceof Error ? cause.message : String(cause)}` };
  }
  if (verified.signer !== checkpoint.signer)
    return { problem: `signed by "${String(verified.signer)}", but the record names "${checkpoint.signer}"` };
  return verified.publicKey === undefined ? { problem: null } : { problem: null, publicKey: verified.publicKey };
}

/** True when two checkpoints are the same record (same members, same signature). */
export function sameCheckpoint(a: Checkpoint, b: Checkpoint): boolean {
  return checkpointLine(a) === checkpointLine(b);
}
