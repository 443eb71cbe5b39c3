/**
 * Reading an audit log for people: filtered entries (`aztp audit query`) and a summary of who
 * called what (`aztp audit stats`). Both stream the file; neither verifies it (that is
 * `verifyAuditLog`'s job), but both refuse a line that is not a well-formed record, since a
 * report silently built on damaged data would mislead.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { entryProblem, readableEntry, type AuditDecision, type AuditEntry, type AuditOutcome, type StoredAuditEntry } from "./entry.js";
import { isCheckpointRecord } from "./checkpoint.js";
import { scanLines } from "./lines.js";

export interface AuditQuery {
  readonly caller?: string;
  readonly callee?: string;
  readonly tool?: string;
  readonly decision?: AuditDecision;
  /** Entries at or after this time (a Date, an ISO string or epoch milliseconds). */
  readonly since?: Date | string | number;
  /** Entries strictly before this time. */
  readonly until?: Date | string | number;
  /** At most this many entries, the oldest first. */
  readonly limit?: number;
}

/** Entries matching every given criterion, in log order. */
export async function queryAuditLog(path: string, query: AuditQuery = {}): Promise<AuditEntry[]> {
  const since = query.since === undefined ? -Infinity : toMillis(query.since, "since");
  const until = query.until === undefined ? Infinity : toMillis(query.until, "until");
  const limit = query.limit ?? Infinity;
  if (limit !== Infinity && (!Number.isInteger(limit) || limit < 0)) invalid("limit must be a non-negative integer");
  const out: AuditEntry[] = [];
  if (limit === 0) return out;
  await forEachEntry(path, (entry) => {
    if (query.caller !== undefined && entry.caller !== query.caller) return true;
    if (query.callee !== undefined && entry.callee !== query.callee) return true;
    if (query.tool !== undefined && entry.tool !== query.tool) return true;
    if (query.decision !== undefined && entry.decision !== query.decision) return true;
    if (since !== -Infinity || until !== Infinity) {
      const t = Date.parse(entry.time);
      if (t < since || t >= until) return true;
    }
    out.push(entry);
    return out.length < limit;
  });
  return out;
}

export interface AuditCallStats {
  readonly caller: string;
  readonly callee: string;
  readonly tool: string;
  readonly total: number;
  readonly decisions: Readonly<Record<AuditDecision, number>>;
}

export interface AuditStats {
  readonly entries: number;
  readonly checkpoints: number;
  readonly firstTime: string | null;
  readonly lastTime: string | null;
  readonly decisions: Readonly<Record<AuditDecision, number>>;
  readonly outcomes: Readonly<Record<AuditOutcome | "none", number>>;
  /** One row per caller → callee / tool, the busiest first. */
  readonly calls: readonly AuditCallStats[];
}

/** Counts by decision and outcome, and by caller → callee / tool. */
export async function auditStats(path: string): Promise<AuditStats> {
  const decisions = { allow: 0, deny: 0, "audit-only": 0 };
  const outcomes = { ok: 0, error: 0, denied: 0, none: 0 };
  const calls = new Map<string, { caller: string; callee: string; tool: string; total: number; decisions: Record<AuditDecision, number> }>();
  let entries = 0;
  let firstTime: string | null = null;
  let lastTime: string | null = null;
  const checkpoints = await forEachEntry(path, (entry) => {
    entries++;
    firstTime ??= entry.time;
    lastTime = entry.time;
    decisions[entry.decision]++;
    outcomes[entry.outcome ?? "none"]++;
    // JSON of the triple: no separator can be spoofed by an ID that contains it.
    const key = JSON.stringify([entry.caller, entry.callee, entry.tool]);
    let row = calls.get(key);
    if (row === undefined) {
      row = { caller: entry.caller, callee: entry.callee, tool: entry.tool, total: 0, decisions: { allow: 0, deny: 0, "audit-only": 0 } };
      calls.set(key, row);
    }
    row.total++;
    row.decisions[entry.decision]++;
    return true;
  });
  const rows = [...calls.values()].sort(
    (a, b) => b.total - a.total || a.caller.localeCompare(b.caller) || a.callee.localeCompare(b.callee) || a.tool.localeCompare(b.tool),
  );
  return { entries, checkpoints, firstTime, lastTime, decisions, outcomes, calls: rows };
}

/** Calls `onEntry` for each entry (false stops); returns the number of checkpoints passed. */
async function forEachEntry(path: string, onEntry: (entry: AuditEntry) => boolean): Promise<number> {
  let checkpoints = 0;
  await scanLines(path, (line, lineNo) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `audit log ${path}: line ${lineNo} is not JSON (run \`aztp audit verify\`)`);
    }
    if (isCheckpointRecord(value)) {
      checkpoints++;
      return true;
    }
    const problem = entryProblem(value);
    if (problem !== null) {
      throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `audit log ${path}: line ${lineNo}: malformed entry: ${problem}`);
    }
    return onEntry(readableEntry(value as StoredAuditEntry));
  });
  return checkpoints;
}

function toMillis(value: Date | string | number, name: string): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(value);
  if (!Number.isFinite(ms)) invalid(`${name} must be a valid time`);
  return ms;
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.INVALID_ARGUMENT, message);
}
