/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/, Level 1) for tool calls: one call's
 * audit entries on every side (caller, proxy, callee, bridge) share one trace ID, each side's
 * entry has a span of its own, and a callee's span names the caller's as its parent.
 *
 * A call carries its context twice. On the wire as the `traceparent` (and `tracestate`) that
 * MCP reserves in a request's `_meta` (mcp/meta.ts), so any OpenTelemetry tooling sees it; and
 * signed, in the invocation token: `trace` (the trace ID) and `span` (the caller's span ID), so
 * that nobody on the transport can move a call into another trace. The unsigned copy never
 * overrules the signed one (`calleeSpan`).
 *
 * A malformed context never breaks a call: what came is refused, the call starts a new trace (or
 * keeps the one it was already in), and the entry's `traceNote` says what was refused.
 * `parseTraceparent` alone throws (ERR_TRACE_CONTEXT_INVALID, with the `rule` that failed), for
 * a context a program hands over itself.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { describeClaim } from "./describe.js";
import { randomHex } from "./nonce.js";

/** The trace-flags bit that says the caller may have recorded its part of the trace. */
export const TRACE_FLAG_SAMPLED = 0x01;

/**
 * Where new work hangs: a trace, and the span in it that is the parent of what starts here
 * (absent: a span with no parent in that trace, as the first call of an agent's run).
 */
export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero: the W3C `parent-id`. */
  readonly parentId?: string | undefined;
  /** The trace-flags (only the sampled bit is kept: Level 1 defines no other). */
  readonly flags: number;
  /** The `tracestate` that came with it, checked, passed on unchanged. */
  readonly tracestate?: string | undefined;
}

/**
 * What a call continues: a context (absent: it starts a trace of its own), and what was refused on
 * the way there (a malformed `traceparent`), for its audit entry.
 */
export interface TraceOrigin {
  readonly context?: TraceContext | undefined;
  readonly note?: string | undefined;
}

/** One side's span of one call, as its audit entry records it. */
export interface CallSpan {
  readonly traceId: string;
  /** This side's own span: new for each side and each hop. */
  readonly spanId: string;
  /** The span this one continues: the caller's, for a callee. */
  readonly parentSpanId?: string | undefined;
  readonly flags: number;
  readonly tracestate?: string | undefined;
  /** What was refused or overruled (a malformed or tampered context), recorded as `traceNote`. */
  readonly note?: string | undefined;
}

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);
/** version "-" trace-id "-" parent-id "-" trace-flags, as version 00 spells it: 55 characters. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const TRACEPARENT_LENGTH = 55;

/** Whether `v` is a W3C trace-id: 32 lower-case hex digits, not all zero. */
export function isTraceId(v: unknown): v is string {
  return typeof v === "string" && TRACE_ID.test(v) && v !== ZERO_TRACE_ID;
}

/** Whether `v` is a W3C span (parent) ID: 16 lower-case hex digits, not all zero. */
export function isSpanId(v: unknown): v is string {
  return typeof v === "string" && SPAN_ID.test(v) && v !== ZERO_SPAN_ID;
}

/** A random trace ID (128 bits from the CSPRNG pool). */
export function newTraceId(): string {
  for (;;) {
    const id = randomHex(16);
    if (id !== ZERO_TRACE_ID) return id;
  }
}

/** A random span ID (64 bits). */
export function newSpanId(): string {
  for (;;) {
    const id = randomHex(8);
    if (id !== ZERO_SPAN_ID) return id;
  }
}

function invalid(rule: string, message: string): never {
  throw new AztpError(ErrorCodes.TRACE_CONTEXT_INVALID, message, { rule });
}

/**
 * Parses a `traceparent` (and its `tracestate`, when given) as W3C Trace Context Level 1 reads
 * them: version 00 exactly (55 characters); a later version by its first four fields, as the spec
 * asks of a reader older than the sender; `ff` is no version. Lower-case hex only, and neither
 * ID all zero. A `tracestate` that is not well formed is dropped (the spec: never pass on one
 * that cannot be parsed), never the traceparent with it.
 *
 * Throws ERR_TRACE_CONTEXT_INVALID, whose `rule` is `format`, `version`, `trace-id` or
 * `parent-id`.
 */
export function parseTraceparent(value: unknown, tracestate?: unknown): TraceContext {
  if (typeof value !== "string") invalid("format", `a traceparent is a string, not ${describeClaim(value)}`);
  // A later version may append fields after the four of version 00: those four are read, and
  // must end where version 00 ends.
  const version = value.slice(0, 2);
  const head =
    version !== "00" && value.length > TRACEPARENT_LENGTH && value[TRACEPARENT_LENGTH] === "-"
      ? value.slice(0, TRACEPARENT_LENGTH)
      : value;
  const m = TRACEPARENT.exec(head);
  if (m === null)
    invalid(
      "format",
      `traceparent ${describeClaim(value, 80)} is not version-traceid-parentid-flags in lower-case hex (00-<32 hex>-<16 hex>-<2 hex>, 55 characters in version 00)`,
    );
  const [, , traceId, parentId, flags] = m as unknown as [string, string, string, string, string];
  if (version === "ff") invalid("version", "traceparent version ff is no version (the spec forbids it)");
  if (traceId === ZERO_TRACE_ID) invalid("trace-id", "traceparent's trace-id is all zero, which is no trace");
  if (parentId === ZERO_SPAN_ID) invalid("parent-id", "traceparent's parent-id is all zero, which is no span");
  const state = tracestate === undefined ? undefined : checkedTracestate(tracestate);
  return {
    traceId,
    parentId,
    flags: Number.parseInt(flags, 16) & TRACE_FLAG_SAMPLED,
    ...(state !== undefined && state.value !== undefined ? { tracestate: state.value } : {}),
  };
}

/** The `traceparent` naming `span` as the parent of whatever it is sent to (always version 00). */
export function formatTraceparent(span: { traceId: string; spanId: string; flags: number }): string {
  return `00-${span.traceId}-${span.spanId}-${(span.flags & TRACE_FLAG_SAMPLED) === 0 ? "00" : "01"}`;
}

// tracestate: list-member *( OWS "," OWS list-member ), at most 32, each key "=" value.
const TRACESTATE_KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const TRACESTATE_VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;
/** What this library passes on: the 512 characters the spec asks every vendor to propagate. */
const TRACESTATE_MAX_LENGTH = 512;
const TRACESTATE_MAX_MEMBERS = 32;

/**
 * A `tracestate` checked against the spec's grammar: `value` to pass on (absent when there is
 * none, or it was refused), `problem` saying why it was refused.
 */
function checkedTracestate(value: unknown): { value?: string; problem?: string } {
  if (typeof value !== "string") return { problem: `a tracestate is a string, not ${describeClaim(value)}` };
  if (value.length > TRACESTATE_MAX_LENGTH)
    return { problem: `tracestate of ${value.length} characters, more than the ${TRACESTATE_MAX_LENGTH} passed on` };
  const members = value
    .split(",")
    .map((m) => m.replace(/^[ \t]+|[ \t]+$/g, ""))
    .filter((m) => m.length > 0);
  if (members.length === 0) return {};
  if (members.length > TRACESTATE_MAX_MEMBERS)
    return { problem: `tracestate has ${members.length} members, more than ${TRACESTATE_MAX_MEMBERS}` };
  const keys = new Set<string>();
  for (const member of members) {
    const eq = member.indexOf("=");
    const key = eq < 0 ? member : member.slice(0, eq);
    if (eq < 0 || !TRACESTATE_KEY.test(key) || !TRACESTATE_VALUE.test(member.slice(eq + 1)))
      return { problem: `tracestate member ${describeClaim(member, 60)} is not key=value as the spec spells them` };
    if (keys.has(key)) return { problem: `tracestate names ${describeClaim(key, 60)} twice` };
    keys.add(key);
  }
  return { value: members.join(",") };
}

/**
 * The context a carried `traceparent` (and `tracestate`) names, never throwing: `context` when it
 * is well formed; a `note` saying what was refused when it is not (or when only its tracestate
 * was); nothing at all when none came.
 */
export function carriedTrace(traceparent: unknown, tracestate: unknown): TraceOrigin {
  if (traceparent === undefined) return {};
  let context: TraceContext;
  try {
    context = parseTraceparent(traceparent);
  } catch (e) {
    const error = e as AztpError;
    return { note: `traceparent refused (${error.code}, rule ${error.rule ?? "format"}): ${error.message}` };
  }
  if (tracestate === undefined) return { context };
  const state = checkedTracestate(tracestate);
  if (state.problem !== undefined) return { context, note: `tracestate not passed on: ${state.problem}` };
  return { context: state.value === undefined ? context : { ...context, tracestate: state.value } };
}

function joinNotes(...notes: Array<string | undefined>): string | undefined {
  const all = notes.filter((n): n is string => n !== undefined && n.length > 0);
  return all.length > 0 ? all.join("; ") : undefined;
}

/**
 * What a call continues on its caller's side: the context its request carried (an application's
 * or a host's `traceparent`), else `fallback` (the trace the caller is working in); a carried one
 * that was refused is noted either way.
 */
export function continuing(carried: TraceOrigin, fallback: TraceOrigin | undefined): TraceOrigin | undefined {
  if (carried.context !== undefined || carried.note === undefined)
    return carried.context !== undefined ? carried : fallback;
  const note = joinNotes(carried.note, fallback?.note);
  return {
    ...(fallback?.context !== undefined ? { context: fallback.context } : {}),
    ...(note !== undefined ? { note } : {}),
  };
}

/**
 * A new span continuing `origin`: in its trace, under its parent; in a trace of its own when it
 * names none (its note then says so, when something was refused on the way).
 */
export function startSpan(origin?: TraceOrigin): CallSpan {
  const c = origin?.context;
  const note =
    c === undefined && origin?.note !== undefined ? joinNotes(origin.note, "a new trace was started") : origin?.note;
  return {
    traceId: c?.traceId ?? newTraceId(),
    spanId: newSpanId(),
    ...(c?.parentId !== undefined ? { parentSpanId: c.parentId } : {}),
    flags: c?.flags ?? TRACE_FLAG_SAMPLED,
    ...(c?.tracestate !== undefined ? { tracestate: c.tracestate } : {}),
    ...(note !== undefined ? { note } : {}),
  };
}

/** The context work done inside `span` continues: its trace, with `span` as the parent. */
export function contextOf(span: CallSpan): TraceContext {
  return {
    traceId: span.traceId,
    parentId: span.spanId,
    flags: span.flags,
    ...(span.tracestate !== undefined ? { tracestate: span.tracestate } : {}),
  };
}

/**
 * The callee's span of a call (a server's, the proxy's, a secured tool's). The trace is the one
 * the caller signed (`trace`, with its own span as `span`) whenever there is one; the carried
 * `traceparent` is only the wire's copy of it:
 *
 * - it agrees (same trace, and the signed span as its parent-id): taken, with its flags and
 *   tracestate;
 * - it disagrees (moved to another trace, or another parent, on the way): the signed context is
 *   recorded, and the note names the traceparent that was refused;
 * - it is malformed or absent: the signed context, noted when malformed.
 *
 * With nothing signed (an OAuth bearer call, a caller that signs no trace, a token that did not
 * verify and claims none), the carried context is all there is and is taken as it came; a
 * malformed one starts a new trace, noted. `signed` holds the token's claims: verified ones, or
 * for a token that did not verify the ones it claims (the entry says the caller was not verified).
 */
export function calleeSpan(
  signed: { readonly trace?: unknown; readonly span?: unknown } | undefined,
  carried: { readonly traceparent?: unknown; readonly tracestate?: unknown },
): CallSpan {
  const wire = carriedTrace(carried.traceparent, carried.tracestate);
  const trace = isTraceId(signed?.trace) ? signed.trace : undefined;
  if (trace === undefined) return startSpan(wire);
  const parent = isSpanId(signed?.span) ? signed.span : undefined;
  const c = wire.context;
  if (c !== undefined && c.traceId === trace && (parent === undefined || c.parentId === parent)) return startSpan(wire);
  const overruled =
    c === undefined
      ? wire.note
      : `the traceparent carried, ${describeClaim(carried.traceparent, 80)}, disagrees with the signed trace ${trace}${parent !== undefined ? ` and span ${parent}` : ""}: the signed one is recorded`;
  return startSpan({
    context: { traceId: trace, parentId: parent, flags: c?.flags ?? TRACE_FLAG_SAMPLED },
    note: overruled,
  });
}
