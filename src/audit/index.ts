/** The tamper-evident audit log: writer, entry and checkpoint formats, verification and reading. */
export { AuditLog, type AuditLogOptions, type AuditRecovery, type AuditWarning } from "./log.js";
export type { AuditWriter, AuditWriterOptions } from "./writer.js";
export {
  AUDIT_ENTRY_VERSION,
  ENTRY_TEXT_LIMITS,
  entryHash,
  parseAuditEntry,
  readableEntry,
  type AuditAuthMethod,
  type AuditDecision,
  type AuditEntry,
  type AuditEntryInput,
  type AuditOutcome,
  type AuditSide,
  type StoredAuditEntry,
} from "./entry.js";
export { GENESIS_HASH } from "./chain.js";
export { ARGS_LIMITS, redact, redactArgs, REDACTED, type RedactedArgs } from "./redact.js";
export type { JsonValue } from "../json/value.js";
export {
  checkpointPayload,
  parseCheckpoint,
  type Checkpoint,
  type CheckpointSigner,
  type CheckpointVerifier,
  type UnsignedCheckpoint,
} from "./checkpoint.js";
export { defaultWitnessPath, readWitness } from "./witness.js";
export {
  verifyAuditLog,
  type AuditFault,
  type AuditFinding,
  type AuditVerifyOptions,
  type AuditVerifyResult,
  type AuditTreeVerdict,
} from "./verify.js";
export { auditStats, queryAuditLog, type AuditCallStats, type AuditQuery, type AuditStats } from "./query.js";
export {
  proveConsistency,
  proveInclusion,
  verifyProof,
  parseKeptCheckpoint,
  type AuditProof,
  type ConsistencyProof,
  type InclusionProof,
  type ProofVerdict,
} from "./proof.js";
export { MerkleTree, MerkleFrontier, leafHash, leafHashOfText, verifyInclusion, verifyConsistency } from "./merkle.js";
export { parseSignedNote, formatSignedNote, verifyNote, parseVerifierKey, ecdsaVkey } from "./signed-note.js";
export { formatCheckpointBody, parseCheckpointBody, type CheckpointBody } from "./tlog-checkpoint.js";
export { cosign, cosignerVerifierKey, parseCosignerVkey } from "./cosignature.js";
