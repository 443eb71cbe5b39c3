/**
 * Proofs about a log that anyone holding the trust bundle can check, without the log:
 *
 * - an **inclusion proof** that entry N is in the tree a signed checkpoint names (the entry as
 *   stored, its leaf index, the RFC 6962 audit path, and the checkpoint record, whose JWS ties
 *   its note to an SVID that chains to the bundle);
 * - a **consistency proof** that an older checkpoint's tree is a prefix of a newer one's: an
 *   auditor who kept any earlier checkpoint detects a log rewritten or cut since.
 *
 * A proof is made only from a log that verifies first (verify before you show), and only
 * against a checkpoint that carries a tree (a log that predates proofs has none). Checking a
 * proof never trusts the file: the checkpoints' signatures, their notes and the hashes are all
 * checked again (`verifyProof`).
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { sealFault } from "./chain.js";
import {
  checkCheckpointSignature,
  checkpointBody,
  checkpointProblem,
  isCheckpointRecord,
  type Checkpoint,
  type CheckpointVerifier,
} from "./checkpoint.js";
import { entryProblem, type StoredAuditEntry } from "./entry.js";
import { scanLines } from "./lines.js";
import { leafHashOfText, MerkleTree, verifyConsistency, verifyInclusion } from "./merkle.js";
import { ecdsaVerifierKey, parseSignedNote, verifyNote } from "./signed-note.js";
import type { CheckpointBody } from "./tlog-checkpoint.js";
import { verifyAuditLog, type AuditVerifyOptions, type AuditVerifyResult } from "./verify.js";

export const INCLUSION_PROOF_TYPE = "aztp-audit-inclusion-proof/v1";
export const CONSISTENCY_PROOF_TYPE = "aztp-audit-consistency-proof/v1";

export interface InclusionProof {
  readonly type: typeof INCLUSION_PROOF_TYPE;
  /** The entry's seq (its leaf index is seq - 1). */
  readonly seq: number;
  /** The entry line as stored: its leaf hash is SHA-256(0x00 || these bytes). */
  readonly entry: string;
  readonly treeSize: number;
  /** The audit path, base64 hashes from the leaf up. */
  readonly proof: readonly string[];
  /** The signed checkpoint whose tree the entry is in. */
  readonly checkpoint: Checkpoint;
}

export interface ConsistencyProof {
  readonly type: typeof CONSISTENCY_PROOF_TYPE;
  readonly from: Checkpoint;
  readonly to: Checkpoint;
  readonly proof: readonly string[];
}

export type AuditProof = InclusionProof | ConsistencyProof;

function proofError(rule: string, message: string): AztpError {
  return new AztpError(ErrorCodes.AUDIT_PROOF_INVALID, message, { rule });
}

/** A log read for proofs: its verdict, its whole tree, and its checkpoints that carry one. */
export interface ProvableLog {
  readonly verdict: AuditVerifyResult;
  readonly tree: MerkleTree;
  /** Checkpoints with a tree, oldest first. */
  readonly checkpoints: readonly Checkpoint[];
  /** Entry lines kept on request (`keep`), by seq. */
  readonly lines: ReadonlyMap<number, string>;
}

/**
 * Verifies the log at `path`, then reads its tree (a second pass: nothing is proven from a log
 * that did not verify). Throws ERR_AUDIT_CORRUPT with the first bad record when it does not.
 */
export async function readProvableLog(
  path: string,
  options: AuditVerifyOptions & { keep?: readonly number[] } = {},
): Promise<ProvableLog> {
  const verdict = await verifyAuditLog(path, options);
  if (!verdict.ok) {
    const bad = verdict.firstBad;
    throw new AztpError(
      ErrorCodes.AUDIT_CORRUPT,
      `audit log ${path} does not verify (${bad?.reason}: ${bad?.message}): no proof is made from it`,
    );
  }
  const tree = new MerkleTree();
  const checkpoints: Checkpoint[] = [];
  const keep = new Set(options.keep ?? []);
  const lines = new Map<number, string>();
  await scanLines(path, (line) => {
    // Entries and checkpoints are told apart as verification did; it passed, so every line parses.
    if (line.includes('"type":"checkpoint"')) {
      const value = JSON.parse(line) as unknown;
      if (isCheckpointRecord(value)) {
        if ((value as Checkpoint).note !== undefined) checkpoints.push(value as Checkpoint);
        return true;
      }
    }
    if (tree.size >= verdict.lastSeq) return false;
    tree.push(leafHashOfText(line));
    if (keep.has(tree.size)) lines.set(tree.size, line);
    return true;
  });
  return { verdict, tree, checkpoints, lines };
}

function pick(checkpoints: readonly Checkpoint[], seq: number | undefined, path: string): Checkpoint {
  if (checkpoints.length === 0)
    throw proofError(
      "no-tree",
      `audit log ${path} has no checkpoint with a Merkle tree (it predates proofs, or has no signed checkpoint yet)`,
    );
  if (seq === undefined) return checkpoints[checkpoints.length - 1] as Checkpoint;
  const cp = checkpoints.find((c) => c.seq === seq);
  if (cp === undefined)
    throw proofError("checkpoint", `audit log ${path} has no checkpoint #${seq} with a Merkle tree`);
  return cp;
}

const b64 = (h: Buffer): string => h.toString("base64");

/** An inclusion proof of entry `seq` against checkpoint `checkpointSeq` (default: the newest with a tree). */
export async function proveInclusion(
  path: string,
  seq: number,
  options: AuditVerifyOptions & { checkpointSeq?: number } = {},
): Promise<InclusionProof> {
  if (!Number.isSafeInteger(seq) || seq < 1)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `entry must be a seq >= 1, got ${seq}`);
  const log = await readProvableLog(path, { ...options, keep: [seq] });
  const checkpoint = pick(log.checkpoints, options.checkpointSeq, path);
  if (seq > checkpoint.upTo)
    throw proofError(
      "not-covered",
      `entry ${seq} is after checkpoint #${checkpoint.seq} (up to entry ${checkpoint.upTo}): checkpoint the log first`,
    );
  return {
    type: INCLUSION_PROOF_TYPE,
    seq,
    entry: log.lines.get(seq) as string,
    treeSize: checkpoint.upTo,
    proof: log.tree.inclusionProof(seq - 1, checkpoint.upTo).map(b64),
    checkpoint,
  };
}

/**
 * A consistency proof from `from` (an older checkpoint of this log, as an auditor kept it) to the
 * log's newest checkpoint with a tree. Throws ERR_AUDIT_PROOF_INVALID when the log is not an
 * extension of `from`: rewritten (rule "consistency") or cut below it (rule "truncated").
 */
export async function proveConsistency(
  path: string,
  from: Checkpoint,
  options: AuditVerifyOptions = {},
): Promise<ConsistencyProof> {
  const fromBody = readBody(from, "the older checkpoint");
  const log = await readProvableLog(path, options);
  const to = pick(log.checkpoints, undefined, path);
  const toBody = checkpointBody(to) as CheckpointBody;
  if (fromBody.origin !== toBody.origin)
    throw proofError("origin", `the older checkpoint is of log "${fromBody.origin}", this log is "${toBody.origin}"`);
  if (fromBody.size > to.upTo)
    throw proofError(
      "truncated",
      `the older checkpoint covers ${fromBody.size} entries, but this log's newest checkpoint only ${to.upTo}: the log was cut`,
    );
  if (!log.tree.root(fromBody.size).equals(fromBody.root))
    throw proofError(
      "consistency",
      `this log's first ${fromBody.size} entries are not the tree the older checkpoint signed: the log was rewritten`,
    );
  return {
    type: CONSISTENCY_PROOF_TYPE,
    from,
    to,
    proof: log.tree.consistencyProof(fromBody.size, to.upTo).map(b64),
  };
}

function readBody(cp: Checkpoint, what: string): CheckpointBody {
  const problem = checkpointProblem(cp);
  if (problem !== null) throw proofError("malformed", `${what} is not a checkpoint: ${problem}`);
  let body: CheckpointBody | null;
  try {
    body = checkpointBody(cp);
  } catch (cause) {
    throw proofError("malformed", `${what}: ${(cause as Error).message}`);
  }
  if (body === null) throw proofError("no-tree", `${what} (#${cp.seq}) has no Merkle tree: it predates proofs`);
  if (body.size !== cp.upTo)
    throw proofError("checkpoint", `${what}'s note says ${body.size} entries, its record ${cp.upTo}`);
  return body;
}

/**
 * Checks a checkpoint the way a proof needs it: its JWS against the verifier's trust (which
 * yields the signer's key), then its note's signature by that key.
 */
function checkSigned(cp: Checkpoint, verifier: CheckpointVerifier, what: string): CheckpointBody {
  const body = readBody(cp, what);
  const checked = checkCheckpointSignature(cp, verifier);
  if (checked.problem !== null) throw proofError("checkpoint", `${what}: ${checked.problem}`);
  if (checked.publicKey === undefined)
    throw proofError("checkpoint", `${what}: the verifier gave no key to check the note's signature with`);
  try {
    verifyNote(parseSignedNote(cp.note as string), [ecdsaVerifierKey(body.origin, checked.publicKey)]);
  } catch (cause) {
    throw proofError("checkpoint", `${what}: ${(cause as Error).message}`);
  }
  return body;
}

function hashes(list: unknown, what: string): Buffer[] {
  if (!Array.isArray(list) || list.length > 64)
    throw proofError("malformed", `${what} must be a list of at most 64 hashes`);
  return list.map((h) => {
    if (typeof h !== "string" || !/^[A-Za-z0-9+/]{43}=$/.test(h))
      throw proofError("malformed", `${what} holds something that is not a base64 SHA-256 hash`);
    return Buffer.from(h, "base64");
  });
}

export interface ProofVerdict {
  readonly type: "inclusion" | "consistency";
  readonly origin: string;
  readonly signer: string;
  /** Inclusion: the entry's seq and tree size; consistency: the two sizes. */
  readonly seq?: number;
  readonly treeSize?: number;
  readonly fromSize?: number;
  readonly toSize?: number;
}

/**
 * Checks a proof with the trust bundle alone (`verifier`): throws ERR_AUDIT_PROOF_INVALID naming
 * the rule that fails, or returns what was proven.
 */
export function verifyProof(proof: unknown, verifier: CheckpointVerifier): ProofVerdict {
  if (typeof proof !== "object" || proof === null || Array.isArray(proof))
    throw proofError("malformed", "a proof is a JSON object");
  const p = proof as Record<string, unknown>;
  if (p.type === INCLUSION_PROOF_TYPE) {
    const cp = p.checkpoint as Checkpoint;
    const body = checkSigned(cp, verifier, "the checkpoint");
    const seq = p.seq;
    if (!Number.isSafeInteger(seq) || (seq as number) < 1)
      throw proofError("malformed", "seq must be a whole number >= 1");
    if (p.treeSize !== body.size)
      throw proofError("malformed", `treeSize ${String(p.treeSize)} is not the checkpoint's ${body.size}`);
    if (typeof p.entry !== "string") throw proofError("malformed", "entry must be the entry line as stored");
    let entry: unknown;
    try {
      entry = JSON.parse(p.entry);
    } catch {
      throw proofError("leaf", "the entry is not JSON");
    }
    const problem = entryProblem(entry);
    if (problem !== null) throw proofError("leaf", `the entry is not an audit entry: ${problem}`);
    if ((entry as StoredAuditEntry).seq !== seq)
      throw proofError("leaf", `the entry is seq ${(entry as StoredAuditEntry).seq}, the proof says ${String(seq)}`);
    if (sealFault(entry as StoredAuditEntry) !== null)
      throw proofError("leaf", "the entry does not match its own hash (edited)");
    const path = hashes(p.proof, "proof");
    if (!verifyInclusion(leafHashOfText(p.entry), (seq as number) - 1, body.size, path, body.root))
      throw proofError(
        "inclusion",
        `entry ${String(seq)} is not in the tree of ${body.size} entries checkpoint #${cp.seq} signed (the entry, the proof or the checkpoint differs)`,
      );
    return { type: "inclusion", origin: body.origin, signer: cp.signer, seq: seq as number, treeSize: body.size };
  }
  if (p.type === CONSISTENCY_PROOF_TYPE) {
    const from = checkSigned(p.from as Checkpoint, verifier, "the older checkpoint");
    const to = checkSigned(p.to as Checkpoint, verifier, "the newer checkpoint");
    if (from.origin !== to.origin)
      throw proofError("origin", `the checkpoints are of two logs ("${from.origin}", "${to.origin}")`);
    const path = hashes(p.proof, "proof");
    if (!verifyConsistency(from.size, to.size, path, from.root, to.root))
      throw proofError(
        "consistency",
        `the tree of ${to.size} entries does not extend the tree of ${from.size} (the log was rewritten or cut, or the proof was altered)`,
      );
    return {
      type: "consistency",
      origin: to.origin,
      signer: (p.to as Checkpoint).signer,
      fromSize: from.size,
      toSize: to.size,
    };
  }
  throw proofError("malformed", `unknown proof type ${JSON.stringify(p.type)}`);
}

/** Reads a checkpoint an auditor kept: a checkpoint record (a log's line, or a witness file). */
export function parseKeptCheckpoint(text: string): Checkpoint {
  let value: unknown;
  try {
    value = JSON.parse(text.trim());
  } catch {
    throw proofError(
      "malformed",
      "the checkpoint file is not a checkpoint record (JSON, as a log or its witness holds it)",
    );
  }
  const problem = checkpointProblem(value);
  if (problem !== null) throw proofError("malformed", `the checkpoint file is not a checkpoint: ${problem}`);
  return value as Checkpoint;
}
