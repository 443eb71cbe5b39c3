/**
 * Reading an audit log for people: filtered entries (`aztp audit query`) and a summary of who
 * called what (`aztp audit stats`). Both stream the file; neither verifies it (that is
 * `verifyAuditLog`'s job), but both refuse a line that is not a well-formed record, since a
 * report silently built on damaged data would mislead.
 *
 * Callers are data: an entry's `caller` is the verified ID or only the claimed one, and
 * `callerVerified` says which. A query by caller finds both (the calls an ID made and those
 * made in its name), `callerVerified` narrows it, and stats never count a claim as a call by
 * that ID: claimed and verified callers are separate rows. Entries of version 1 logs are read
 * the same way (`readableEntry`).
 */
import { AztpError, ErrorCodes } from "../errors.js";
import {
  entryProblem,
  readableEntry,
  type AuditDecision,
  type AuditEntry,
  type AuditOutcome,
  type StoredAuditEntry,
} from "./entry.js";
import { isCheckpointRecord } from "./checkpoint.js";
import { scanLines } from "./lines.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export interface AuditQuery {
  /**
   * Calls this ID made or claimed to make. SPIFFE and AZTP forms of one ID match each other
   * (a claimed caller is compared in its normal form when it is a valid ID, else as written).
   */
  readonly caller?: string;
  /** true: only calls whose caller was verified; false: only those whose caller was claimed. */
  readonly callerVerified?: boolean;
  readonly callee?: string;
  readonly tool?: string;
  readonly decision?: AuditDecision;
  /** What came of the call (`interrupted`: paused by the framework's control flow, no result). */
  readonly outcome?: AuditOutcome;
  /** The framework's tool-call id (a LangChain ToolCall id): finds one call in the caller's log and in the callee's. */
  readonly toolCallId?: string;
  /**
   * The W3C trace ID of a call (or of an agent's run): every entry of it in this log, whichever
   * side wrote it; queried over several logs (the caller's, the proxy's, the callee's), the
   * call's whole path.
   */
  readonly traceId?: string;
  /**
   * Calls made for this person: `<issuer>#<subject>` exactly, or a subject alone, which matches
   * that subject at any provider (a subject is unique only within its provider: the entries say
   * which provider each one is from).
   */
  readonly person?: string;
  /** Entries at or after this time (a Date, an ISO string or epoch milliseconds). */
  readonly since?: Date | string | number;
  /** Entries strictly before this time. */
  readonly until?: Date | string | number;
  /** At most this many entries, the oldest first. */
  readonly limit?: number;
}

/** Whether an entry's person (`<issuer>#<subject>`) is `wanted`: the whole ID, or its subject. */
export function personMatches(person: string | undefined, wanted: string): boolean {
  if (person === undefined) return false;
  if (person === wanted) return true;
  // An issuer identifier has no fragment, so the first "#" ends it; a subject may hold more.
  const hash = person.indexOf("#");
  return !wanted.includes("://") && hash >= 0 && person.slice(hash + 1) === wanted;
}

/** Entries matching every given criterion, in log order. */
export async function queryAuditLog(path: string, query: AuditQuery = {}): Promise<AuditEntry[]> {
  const since = query.since === undefined ? -Infinity : toMillis(query.since, "since");
  const until = query.until === undefined ? Infinity : toMillis(query.until, "until");
  const limit = query.limit ?? Infinity;
  if (limit !== Infinity && (!Number.isInteger(limit) || limit < 0)) invalid("limit must be a non-negative integer");
  if (query.callerVerified !== undefined && typeof query.callerVerified !== "boolean")
    invalid("callerVerified must be true or false");
  const out: AuditEntry[] = [];
  if (limit === 0) return out;
  const normal = idNormaliser();
  const caller = query.caller === undefined ? undefined : normal(query.caller);
  await forEachEntry(path, (entry) => {
    if (caller !== undefined && entry.caller !== caller && normal(entry.caller) !== caller) return true;
    if (query.callerVerified !== undefined && entry.callerVerified !== query.callerVerified) return true;
    if (query.callee !== undefined && entry.callee !== query.callee) return true;
    if (query.tool !== undefined && entry.tool !== query.tool) return true;
    if (query.decision !== undefined && entry.decision !== query.decision) return true;
    if (query.outcome !== undefined && entry.outcome !== query.outcome) return true;
    if (query.toolCallId !== undefined && entry.toolCallId !== query.toolCallId) return true;
    if (query.traceId !== undefined && entry.traceId !== query.traceId) return true;
    if (query.person !== undefined && !personMatches(entry.person, query.person)) return true;
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
  /** Whether this row's calls had their caller verified: a claimed caller is a row of its own. */
  readonly callerVerified: boolean;
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
  /** Entries whose caller was verified, and those whose caller was only claimed (or unknown). */
  readonly callers: Readonly<{ verified: number; claimed: number }>;
  /** One row per caller (verified or claimed) → callee / tool, the busiest first. */
  readonly calls: readonly AuditCallStats[];
}

/** Counts by decision and outcome, and by caller (verified apart from claimed) → callee / tool. */
export async function auditStats(path: string): Promise<AuditStats> {
  const decisions = { allow: 0, deny: 0, "audit-only": 0 };
  const outcomes = { ok: 0, error: 0, denied: 0, interrupted: 0, none: 0 };
  const callers = { verified: 0, claimed: 0 };
  type Row = {
    caller: string;
    callerVerified: boolean;
    callee: string;
    tool: string;
    total: number;
    decisions: Record<AuditDecision, number>;
  };
  const calls = new Map<string, Row>();
  let entries = 0;
  let firstTime: string | null = null;
  let lastTime: string | null = null;
  const checkpoints = await forEachEntry(path, (entry) => {
    entries++;
    firstTime ??= entry.time;
    lastTime = entry.time;
    decisions[entry.decision]++;
    outcomes[entry.outcome ?? "none"]++;
    callers[entry.callerVerified ? "verified" : "claimed"]++;
    // JSON of the tuple: no separator can be spoofed by an ID that contains it.
    const key = JSON.stringify([entry.caller, entry.callerVerified, entry.callee, entry.tool]);
    let row = calls.get(key);
    if (row === undefined) {
      row = {
        caller: entry.caller,
        callerVerified: entry.callerVerified,
        callee: entry.callee,
        tool: entry.tool,
        total: 0,
        decisions: { allow: 0, deny: 0, "audit-only": 0 },
      };
      calls.set(key, row);
    }
    row.total++;
    row.decisions[entry.decision]++;
    return true;
  });
  const rows = [...calls.values()].sort(
    (a, b) =>
      b.total - a.total ||
      a.caller.localeCompare(b.caller) ||
      Number(b.callerVerified) - Number(a.callerVerified) ||
      a.callee.localeCompare(b.callee) ||
      a.tool.localeCompare(b.tool),
  );
  return { entries, checkpoints, firstTime, lastTime, decisions, outcomes, callers, calls: rows };
}

/** Calls `onEntry` for each entry (false stops); returns the number of checkpoints passed. */
async function forEachEntry(path: string, onEntry: (entry: AuditEntry) => boolean): Promise<number> {
  let checkpoints = 0;
  await scanLines(path, (line, lineNo) => {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new AztpError(
        ErrorCodes.AUDIT_CORRUPT,
        `audit log ${path}: line ${lineNo} is not JSON (run \`aztp audit verify\`)`,
      );
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

/**
 * The normal form of an ID (aztp:// and spiffe:// forms of one ID are equal), or the text as
 * written when it is not a valid ID ("unknown", or whatever a forged token claimed). Each
 * distinct text is parsed once per read; the memo is bounded.
 */
function idNormaliser(): (text: string) => string {
  const memo = new Map<string, string>();
  return (text) => {
    let normal = memo.get(text);
    if (normal !== undefined) return normal;
    try {
      normal = SpiffeId.parse(text).toString();
    } catch {
      normal = text;
    }
    if (memo.size >= 10_000) memo.clear();
    memo.set(text, normal);
    return normal;
  };
}

function toMillis(value: Date | string | number, name: string): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(value);
  if (!Number.isFinite(ms)) invalid(`${name} must be a valid time`);
  return ms;
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}
