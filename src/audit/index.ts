/** The tamper-evident audit log: writer, entry and checkpoint formats, verification and reading. */
export { AuditLog, type AuditLogOptions, type AuditRecovery, type AuditWarning } from "./log.js";
export {
  GENESIS_HASH,
  entryHash,
  parseAuditEntry,
  type AuditDecision,
  type AuditEntry,
  type AuditEntryInput,
  type AuditOutcome,
  type AuditSide,
} from "./entry.js";
export { redact, REDACTED, type JsonValue } from "./redact.js";
export {
  checkpointPayload,
  parseCheckpoint,
  type Checkpoint,
  type CheckpointSigner,
  type CheckpointVerifier,
} from "./checkpoint.js";
export { defaultWitnessPath, readWitness } from "./witness.js";
export {
  verifyAuditLog,
  type AuditFault,
  type AuditFinding,
  type AuditVerifyOptions,
  type AuditVerifyResult,
} from "./verify.js";
export { auditStats, queryAuditLog, type AuditCallStats, type AuditQuery, type AuditStats } from "./query.js";
