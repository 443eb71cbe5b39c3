/**
 * The calls the page lists: every entry of every log joined into one row per tool call, filtered,
 * paged and counted here, on the server, so the page never holds more than one page of rows.
 *
 * The join. Both sides of a call record the invocation token's `jti`, so entries sharing one are
 * one call; an entry without a jti (a token the callee refused before trusting anything in it)
 * falls back to the tool-call id the token carried, and joins a call whose jti it does not
 * contradict. A call holds at most one entry per log and side: a replayed token (the same jti
 * again, in the callee's log) is a call of its own, seen by one side only, as it should be.
 * Entries are joined in time order (then log, then line), so the result does not depend on the
 * order the logs were given in. Both keys are caller-chosen text: a join says which entries tell
 * of one call, never that any of them is true; each side keeps its own verification state, and
 * a row shows the weakest.
 *
 * Lines that are not well-formed entries are listed as rows of their own, so the first bad line
 * can be pointed at.
 */
import type { AuditDecision, AuditOutcome } from "../audit/entry.js";
import { personMatches } from "../audit/query.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { ENTRY_STATES, type EntryState, type IndexedEntry } from "./verified-log.js";

export interface Call {
  readonly id: number;
  readonly entries: IndexedEntry[];
  /** The earliest entry's time (a malformed line takes the time of the line before it). */
  timeMs: number;
  jti: string | undefined;
  toolCallId: string | undefined;
  /** `<log id>:<side>` of each entry: a call holds one entry per log and side. */
  readonly slots: string[];
  /** Lower-case text of every field the free-text search reads, built when first searched. */
  haystack: string | undefined;
}

export interface CallFilter {
  /** A SPIFFE/AZTP ID (exact, either spelling), else text found in the caller's ID. */
  readonly caller?: string;
  /** `<issuer>#<subject>` or a subject alone (as `aztp audit query --person`), else text found in it. */
  readonly person?: string;
  readonly callee?: string;
  /** Exactly this tool name. */
  readonly tool?: string;
  /** The call's decision: the deciding side's (callee, else proxy, else caller). */
  readonly decision?: AuditDecision;
  /** A reason code on any side. */
  readonly code?: string;
  readonly outcome?: AuditOutcome;
  /** Epoch milliseconds, inclusive. */
  readonly since?: number;
  /** Epoch milliseconds, exclusive. */
  readonly until?: number;
  readonly toolCallId?: string;
  readonly traceId?: string;
  /** Text found anywhere in the call's fields (case-insensitive). */
  readonly q?: string;
  /** Calls with an entry in this state; "problems": bad or unverified. */
  readonly state?: EntryState | "problems";
  /** Calls with an entry in this log (its id). */
  readonly log?: number;
}

/** What the page shows of a call in its row. */
export interface CallRow {
  readonly id: number;
  readonly time: string;
  readonly state: EntryState;
  readonly malformed?: string;
  readonly caller: string;
  readonly callerVerified: boolean;
  readonly delegation?: readonly string[];
  readonly person?: string;
  readonly actors?: readonly string[];
  readonly approvedBy?: string;
  readonly authMethod?: string;
  readonly tool: string;
  readonly argsDigest: string;
  readonly hasArgs: boolean;
  readonly callee: string;
  readonly decision: string;
  readonly reason?: string;
  readonly outcome?: string;
  readonly durationMs?: number;
  readonly toolCallId?: string;
  readonly traceId?: string;
  readonly jti?: string;
  readonly sides: readonly SideRow[];
}

export interface SideRow {
  readonly log: number;
  readonly logName: string;
  readonly side: string;
  readonly line: number;
  readonly seq: number;
  readonly state: EntryState;
  readonly time: string;
  readonly caller: string;
  readonly callerVerified: boolean;
  readonly decision: string;
  readonly reason?: string;
  readonly outcome?: string;
  readonly durationMs?: number;
}

export interface CallPage {
  readonly total: number;
  readonly offset: number;
  readonly rows: readonly CallRow[];
}

export interface Charts {
  /** The time span charted (epoch ms), and the width of one bucket. */
  readonly from: number;
  readonly to: number;
  readonly bucketMs: number;
  /** Per bucket: calls, those allowed, and those denied by reason code. */
  readonly buckets: ReadonlyArray<{ start: number; total: number; allowed: number; denied: Record<string, number> }>;
  /** Reason codes of denials, the most frequent first. */
  readonly reasons: readonly string[];
  readonly callers: ReadonlyArray<{ name: string; calls: number; denied: number }>;
  readonly tools: ReadonlyArray<{ name: string; calls: number; denied: number }>;
  readonly total: number;
}

export interface Facets {
  readonly callers: readonly string[];
  readonly callees: readonly string[];
  readonly tools: readonly string[];
  readonly codes: readonly string[];
  readonly persons: readonly string[];
}

/** Which side decides a call: the callee's entry, else the proxy's, else the caller's. */
const SIDE_RANK: Readonly<Record<string, number>> = { callee: 0, proxy: 1, caller: 2, "": 3 };
const STATE_RANK = new Map(ENTRY_STATES.map((s, i) => [s, i]));
const MAX_PAGE = 500;
const TOP = 10;
/** Bucket widths the time chart picks from: the smallest giving at most MAX_BUCKETS. */
const BUCKET_STEPS_MS = [
  10, 50, 100, 250, 500, 1e3, 5e3, 15e3, 30e3, 60e3, 300e3, 900e3, 1_800e3, 3_600e3, 10_800e3, 21_600e3, 43_200e3,
  86_400e3, 604_800e3, 2_592_000e3,
];
const MAX_BUCKETS = 60;

export class CallIndex {
  #calls: Call[] = [];
  #byId = new Map<number, Call>();
  #byJti = new Map<string, Call[]>();
  #byToolCallId = new Map<string, Call[]>();
  #nextId = 1;
  #unsorted = false;
  #normal = new Map<string, string>();

  get size(): number {
    return this.#calls.length;
  }

  get(id: number): Call | undefined {
    return this.#byId.get(id);
  }

  /** Forgets every call and joins `entries` again (after a log was read anew). */
  rebuild(entries: Iterable<IndexedEntry>): void {
    this.#calls = [];
    this.#byId.clear();
    this.#byJti.clear();
    this.#byToolCallId.clear();
    this.#nextId = 1;
    this.add(entries);
  }

  /** Joins `entries` into the calls (new calls for those that join none). */
  add(entries: Iterable<IndexedEntry>): void {
    // A malformed line takes the time of the line before it in its log, to sit where it was written.
    const lastTime = new Map<number, number>();
    const timed: Array<{ e: IndexedEntry; t: number }> = [];
    for (const e of entries) {
      const t = Number.isFinite(e.timeMs) ? e.timeMs : (lastTime.get(e.log.id) ?? 0);
      lastTime.set(e.log.id, t);
      timed.push({ e, t });
    }
    timed.sort((a, b) => a.t - b.t || a.e.log.id - b.e.log.id || a.e.line - b.e.line);
    const newest = this.#calls.at(-1)?.timeMs ?? -Infinity;
    for (const { e, t } of timed) this.#join(e, t);
    if (timed.length > 0 && (timed[0] as { t: number }).t < newest) this.#unsorted = true;
  }

  #join(e: IndexedEntry, t: number): void {
    const slot = `${e.log.id}:${e.side}`;
    let call: Call | undefined;
    if (e.malformed === null) {
      if (e.jti !== undefined) call = this.#byJti.get(e.jti)?.find((c) => !c.slots.includes(slot));
      if (call === undefined && e.toolCallId !== undefined)
        call = this.#byToolCallId
          .get(e.toolCallId)
          ?.find((c) => !c.slots.includes(slot) && (c.jti === undefined || e.jti === undefined || c.jti === e.jti));
    }
    if (call === undefined) {
      call = {
        id: this.#nextId++,
        entries: [],
        timeMs: t,
        jti: undefined,
        toolCallId: undefined,
        slots: [],
        haystack: undefined,
      };
      this.#calls.push(call);
      this.#byId.set(call.id, call);
    }
    call.entries.push(e);
    call.slots.push(slot);
    call.haystack = undefined;
    if (t < call.timeMs) {
      call.timeMs = t;
      this.#unsorted = true;
    }
    if (e.jti !== undefined && call.jti === undefined) {
      call.jti = e.jti;
      push(this.#byJti, e.jti, call);
    }
    if (e.toolCallId !== undefined && call.toolCallId === undefined) {
      call.toolCallId = e.toolCallId;
      push(this.#byToolCallId, e.toolCallId, call);
    }
  }

  #sorted(): Call[] {
    if (this.#unsorted) {
      this.#calls.sort((a, b) => a.timeMs - b.timeMs || a.id - b.id);
      this.#unsorted = false;
    }
    return this.#calls;
  }

  /** One page of the calls matching `filter`, the newest first, and how many match. */
  query(filter: CallFilter, offset = 0, limit = 100): CallPage {
    const calls = this.#sorted();
    const match = this.#matcher(filter);
    const end = offset + Math.min(Math.max(limit, 0), MAX_PAGE);
    const rows: CallRow[] = [];
    let total = 0;
    for (let i = calls.length - 1; i >= 0; i--) {
      const call = calls[i] as Call;
      if (!match(call)) continue;
      if (total >= offset && total < end) rows.push(rowOf(call));
      total++;
    }
    return { total, offset, rows };
  }

  /** Calls and denials over time by reason, and the busiest callers and tools, of the calls matching `filter`. */
  charts(filter: CallFilter): Charts {
    const match = this.#matcher(filter);
    const matched: Call[] = [];
    let from = Infinity;
    let to = -Infinity;
    for (const call of this.#sorted()) {
      if (!match(call)) continue;
      matched.push(call);
      if (call.timeMs < from) from = call.timeMs;
      if (call.timeMs > to) to = call.timeMs;
    }
    if (matched.length === 0)
      return { from: 0, to: 0, bucketMs: 0, buckets: [], reasons: [], callers: [], tools: [], total: 0 };
    const span = Math.max(to - from, 1);
    const bucketMs = BUCKET_STEPS_MS.find((step) => span / step < MAX_BUCKETS) ?? Math.ceil(span / MAX_BUCKETS);
    const start = Math.floor(from / bucketMs) * bucketMs;
    const count = Math.floor((to - start) / bucketMs) + 1;
    const buckets = Array.from({ length: count }, (_, i) => ({
      start: start + i * bucketMs,
      total: 0,
      allowed: 0,
      denied: {} as Record<string, number>,
    }));
    const reasons = new Map<string, number>();
    const callers = new Map<string, { calls: number; denied: number }>();
    const tools = new Map<string, { calls: number; denied: number }>();
    for (const call of matched) {
      const s = summary(call);
      const bucket = buckets[Math.floor((call.timeMs - start) / bucketMs)];
      if (bucket === undefined) continue;
      bucket.total++;
      const denied = s.decision === "deny";
      if (denied) {
        const reason = s.reason ?? "(no code)";
        bucket.denied[reason] = (bucket.denied[reason] ?? 0) + 1;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      } else bucket.allowed++;
      if (s.malformed === undefined) {
        tally(callers, s.callerVerified ? s.caller : `${s.caller} (claimed)`, denied);
        tally(tools, s.tool, denied);
      }
    }
    return {
      from,
      to,
      bucketMs,
      buckets,
      reasons: [...reasons].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([r]) => r),
      callers: top(callers),
      tools: top(tools),
      total: matched.length,
    };
  }

  /** The distinct values the filters offer, the most frequent first (at most 200 of each). */
  facets(): Facets {
    const callers = new Map<string, number>();
    const callees = new Map<string, number>();
    const tools = new Map<string, number>();
    const codes = new Map<string, number>();
    const persons = new Map<string, number>();
    const count = (m: Map<string, number>, v: string | undefined): void => {
      if (v !== undefined && v !== "") m.set(v, (m.get(v) ?? 0) + 1);
    };
    for (const call of this.#calls)
      for (const e of call.entries) {
        count(callers, e.caller);
        count(callees, e.callee);
        count(tools, e.tool);
        count(codes, e.reason);
        count(persons, e.person);
      }
    const list = (m: Map<string, number>): string[] =>
      [...m]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, 200)
        .map(([v]) => v);
    return {
      callers: list(callers),
      callees: list(callees),
      tools: list(tools),
      codes: list(codes),
      persons: list(persons),
    };
  }

  #matcher(f: CallFilter): (call: Call) => boolean {
    const tests: Array<(call: Call) => boolean> = [];
    const any = (test: (e: IndexedEntry) => boolean) => (call: Call) => call.entries.some(test);
    if (f.caller !== undefined) {
      const id = this.#idOrText(f.caller);
      tests.push(any((e) => this.#idMatches(e.caller, id)));
    }
    if (f.callee !== undefined) {
      const id = this.#idOrText(f.callee);
      tests.push(any((e) => this.#idMatches(e.callee, id)));
    }
    if (f.person !== undefined) {
      const wanted = f.person;
      const text = wanted.toLowerCase();
      tests.push(
        any(
          (e) => e.person !== undefined && (personMatches(e.person, wanted) || e.person.toLowerCase().includes(text)),
        ),
      );
    }
    if (f.tool !== undefined) tests.push(any((e) => e.tool === f.tool));
    if (f.code !== undefined) tests.push(any((e) => e.reason === f.code));
    if (f.toolCallId !== undefined) tests.push(any((e) => e.toolCallId === f.toolCallId));
    if (f.traceId !== undefined) {
      const trace = f.traceId.toLowerCase();
      tests.push(any((e) => e.traceId?.toLowerCase() === trace));
    }
    if (f.log !== undefined) tests.push(any((e) => e.log.id === f.log));
    if (f.decision !== undefined) tests.push((call) => summary(call).decision === f.decision);
    if (f.outcome !== undefined) tests.push(any((e) => e.outcome === f.outcome));
    if (f.since !== undefined) {
      const since = f.since;
      tests.push((call) => call.timeMs >= since);
    }
    if (f.until !== undefined) {
      const until = f.until;
      tests.push((call) => call.timeMs < until);
    }
    if (f.state !== undefined) {
      const wanted = f.state;
      tests.push(
        any((e) => {
          const s = e.log.stateOf(e);
          return wanted === "problems" ? s === "bad" || s === "unverified" : s === wanted;
        }),
      );
    }
    if (f.q !== undefined && f.q !== "") {
      const q = f.q.toLowerCase();
      tests.push((call) => (call.haystack ??= haystackOf(call)).includes(q));
    }
    return (call) => tests.every((t) => t(call));
  }

  /** A filter value: the normal form of an ID (exact match), or lower-case text (found in the ID). */
  #idOrText(value: string): { id: string } | { text: string } {
    try {
      return { id: SpiffeId.parse(value).toString() };
    } catch {
      return { text: value.toLowerCase() };
    }
  }

  #idMatches(value: string, wanted: { id: string } | { text: string }): boolean {
    if ("text" in wanted) return value.toLowerCase().includes(wanted.text);
    return value === wanted.id || this.#normalId(value) === wanted.id;
  }

  /** The normal form of an entry's ID (aztp:// and spiffe:// spellings agree), or the text as written. */
  #normalId(text: string): string {
    let normal = this.#normal.get(text);
    if (normal !== undefined) return normal;
    try {
      normal = SpiffeId.parse(text).toString();
    } catch {
      normal = text;
    }
    if (this.#normal.size >= 10_000) this.#normal.clear();
    this.#normal.set(text, normal);
    return normal;
  }
}

interface Summary {
  readonly primary: IndexedEntry;
  readonly state: EntryState;
  readonly malformed: string | undefined;
  readonly caller: string;
  readonly callerVerified: boolean;
  readonly decision: string;
  readonly reason: string | undefined;
  readonly tool: string;
}

/** What a call's row says: the deciding side's view, each side's kept apart in `sides`. */
function summary(call: Call): Summary {
  let primary = call.entries[0] as IndexedEntry;
  let state: EntryState = "signed";
  for (const e of call.entries) {
    if ((SIDE_RANK[e.side] ?? 3) < (SIDE_RANK[primary.side] ?? 3)) primary = e;
    const s = e.log.stateOf(e);
    if ((STATE_RANK.get(s) ?? 0) > (STATE_RANK.get(state) ?? 0)) state = s;
  }
  const reason = primary.reason ?? call.entries.find((e) => e.reason !== undefined)?.reason;
  return {
    primary,
    state,
    malformed: primary.malformed ?? undefined,
    caller: primary.caller,
    callerVerified: primary.callerVerified,
    decision: primary.decision,
    reason,
    tool: primary.tool,
  };
}

function rowOf(call: Call): CallRow {
  const s = summary(call);
  const p = s.primary;
  const first = <K extends keyof IndexedEntry>(key: K): IndexedEntry[K] | undefined =>
    p[key] ?? call.entries.find((e) => e[key] !== undefined)?.[key];
  // The caller's side times the whole call (signing, the round trip, the receipt check).
  const durationMs = call.entries.find((e) => e.side === "caller")?.durationMs ?? p.durationMs;
  const row: Record<string, unknown> = {
    id: call.id,
    time: new Date(call.timeMs).toISOString(),
    state: s.state,
    caller: s.caller,
    callerVerified: s.callerVerified,
    tool: s.tool,
    argsDigest: p.argsDigest,
    hasArgs: call.entries.some((e) => e.hasArgs),
    callee: p.callee,
    decision: s.decision,
  };
  const set = (key: string, value: unknown): void => {
    if (value !== undefined) row[key] = value;
  };
  set("malformed", s.malformed);
  set("delegation", first("delegation"));
  set("person", first("person"));
  set("actors", first("actors"));
  set("approvedBy", first("approvedBy"));
  set("authMethod", first("authMethod"));
  set("reason", s.reason);
  set("outcome", p.outcome ?? first("outcome"));
  set("durationMs", durationMs);
  set("toolCallId", call.toolCallId);
  set("traceId", first("traceId"));
  set("jti", call.jti);
  row.sides = call.entries.map((e): SideRow => {
    const side: Record<string, unknown> = {
      log: e.log.id,
      logName: e.log.name,
      side: e.side,
      line: e.line,
      seq: e.seq,
      state: e.log.stateOf(e),
      time: e.time,
      caller: e.caller,
      callerVerified: e.callerVerified,
      decision: e.decision,
    };
    if (e.reason !== undefined) side.reason = e.reason;
    if (e.outcome !== undefined) side.outcome = e.outcome;
    if (e.durationMs !== undefined) side.durationMs = e.durationMs;
    return side as unknown as SideRow;
  });
  return row as unknown as CallRow;
}

function haystackOf(call: Call): string {
  const parts: string[] = [];
  for (const e of call.entries) {
    parts.push(e.caller, e.callee, e.tool, e.argsDigest, e.decision, e.side, e.log.name);
    for (const v of [
      e.reason,
      e.outcome,
      e.jti,
      e.toolCallId,
      e.traceId,
      e.spanId,
      e.person,
      e.approvedBy,
      e.malformed,
    ])
      if (v !== undefined && v !== null) parts.push(v);
    if (e.delegation) parts.push(...e.delegation);
    if (e.actors) parts.push(...e.actors);
  }
  return parts.join("\n").toLowerCase();
}

function push(map: Map<string, Call[]>, key: string, call: Call): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [call]);
  else list.push(call);
}

function tally(map: Map<string, { calls: number; denied: number }>, key: string, denied: boolean): void {
  let t = map.get(key);
  if (t === undefined) map.set(key, (t = { calls: 0, denied: 0 }));
  t.calls++;
  if (denied) t.denied++;
}

function top(
  map: Map<string, { calls: number; denied: number }>,
): Array<{ name: string; calls: number; denied: number }> {
  return [...map]
    .sort((a, b) => b[1].calls - a[1].calls || a[0].localeCompare(b[0]))
    .slice(0, TOP)
    .map(([name, t]) => ({ name, ...t }));
}

const DECISIONS: ReadonlySet<string> = new Set(["allow", "deny", "audit-only"]);
const OUTCOMES: ReadonlySet<string> = new Set(["ok", "error", "denied", "interrupted"]);
const STATES: ReadonlySet<string> = new Set([...ENTRY_STATES, "problems"]);

/** The filter in a request's query string (the page's names); ERR_ARGUMENT_INVALID for a value that cannot be one. */
export function parseFilter(params: URLSearchParams): CallFilter {
  const f: Record<string, unknown> = {};
  const text = (name: string): string | undefined => {
    const v = params.get(name)?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  for (const name of ["caller", "person", "callee", "tool", "code", "toolCallId", "traceId", "q"]) {
    const v = text(name);
    if (v !== undefined) f[name] = v;
  }
  const oneOf = (name: string, allowed: ReadonlySet<string>): void => {
    const v = text(name);
    if (v === undefined) return;
    if (!allowed.has(v)) invalid(`${name} must be one of ${[...allowed].join(", ")}`);
    f[name] = v;
  };
  oneOf("decision", DECISIONS);
  oneOf("outcome", OUTCOMES);
  oneOf("state", STATES);
  for (const name of ["since", "until"]) {
    const v = text(name);
    if (v === undefined) continue;
    const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(ms)) invalid(`${name} must be a time (ISO 8601 or epoch milliseconds)`);
    f[name] = ms;
  }
  const log = text("log");
  if (log !== undefined) {
    if (!/^\d+$/.test(log)) invalid("log must be a log's number");
    f.log = Number(log);
  }
  return f as CallFilter;
}

/** A whole number in a query string (default when absent), ERR_ARGUMENT_INVALID otherwise. */
export function intParam(params: URLSearchParams, name: string, fallback: number): number {
  const v = params.get(name);
  if (v === null || v === "") return fallback;
  if (!/^\d{1,9}$/.test(v)) invalid(`${name} must be a whole number`);
  return Number(v);
}

function invalid(message: string): never {
  throw new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}
