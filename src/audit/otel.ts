/**
 * Optional OpenTelemetry export of audit entries, through the global `@opentelemetry/api` only:
 * whatever SDK and exporters the application registered receive them, and with none registered
 * every call below is a no-op on the API's no-op objects.
 *
 * Each durable entry joins the trace of its call: every entry records the W3C trace and span IDs
 * of its side of the call (one trace across caller, proxy and callee), and its export is a child
 * of that span, built from the recorded IDs as a remote span context, so a tracing backend shows
 * one call's entries, from every log that saw it, in one trace. Each becomes
 * - an event `aztp.audit` on the span that was active when `append` was called, if it is
 *   recording and in the call's trace (so the audit decision sits inside the application's own
 *   span of the tool call), or otherwise a short span `aztp.audit` under the call's span, linked
 *   to the active span of another trace if there was one;
 * - a log record with event name `aztp.audit`, in the call's trace context, when a logger
 *   provider is registered and wants it.
 * An entry without trace IDs (written before they were recorded) is exported under the active
 * context, as before.
 *
 * Only the decision's metadata is exported: never the arguments, the token or the receipt,
 * which stay in the log.
 */
import {
  context,
  isValidSpanId,
  isValidTraceId,
  logs,
  SeverityNumber,
  SpanKind,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type Link,
} from "@opentelemetry/api";
import type { AuditEntry } from "./entry.js";

const SCOPE = "aztp-client/audit";
const EVENT = "aztp.audit";

/** The context to export under: the caller's, captured when it appended. */
export function captureContext(): Context {
  return context.active();
}

export function exportEntry(entry: AuditEntry, ctx: Context): void {
  // getTracer/getLogger per call: they are cheap proxies and follow a provider registered later.
  const call = callContext(entry, ctx);
  const active = trace.getSpan(ctx);
  const activeContext = active?.spanContext();
  if (
    active !== undefined &&
    active.isRecording() &&
    (call === undefined || activeContext?.traceId === entry.traceId)
  ) {
    active.addEvent(EVENT, entryAttributes(entry));
  } else {
    // Under the call's span; the application's span of another trace, if any, linked to it.
    const links: Link[] =
      call !== undefined && activeContext !== undefined && trace.isSpanContextValid(activeContext)
        ? [{ context: activeContext }]
        : [];
    const span = trace
      .getTracer(SCOPE)
      .startSpan(EVENT, { kind: SpanKind.INTERNAL, ...(links.length > 0 ? { links } : {}) }, call ?? ctx);
    if (span.isRecording()) span.setAttributes(entryAttributes(entry));
    span.end();
  }
  const logger = logs.getLogger(SCOPE);
  const logContext = call ?? ctx;
  if (logger.enabled({ context: logContext, eventName: EVENT })) {
    logger.emit({
      eventName: EVENT,
      timestamp: new Date(entry.time),
      severityNumber: entry.decision === "deny" ? SeverityNumber.WARN : SeverityNumber.INFO,
      severityText: entry.decision === "deny" ? "WARN" : "INFO",
      attributes: entryAttributes(entry),
      context: logContext,
    });
  }
}

/**
 * `ctx` with the entry's side of the call as its (remote) span: the trace and span IDs the entry
 * recorded. Undefined for an entry without them (older logs), or whose IDs are not W3C ones.
 */
function callContext(entry: AuditEntry, ctx: Context): Context | undefined {
  if (entry.traceId === undefined || entry.spanId === undefined) return undefined;
  if (!isValidTraceId(entry.traceId) || !isValidSpanId(entry.spanId)) return undefined;
  return trace.setSpanContext(ctx, {
    traceId: entry.traceId,
    spanId: entry.spanId,
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
}

function entryAttributes(entry: AuditEntry): Attributes {
  const a: Attributes = {
    "aztp.audit.seq": entry.seq,
    "aztp.audit.hash": entry.hash,
    "aztp.audit.side": entry.side,
    "aztp.audit.caller": entry.caller,
    "aztp.audit.callee": entry.callee,
    "aztp.audit.tool": entry.tool,
    "aztp.audit.args_digest": entry.argsDigest,
    "aztp.audit.decision": entry.decision,
  };
  if (entry.reason !== undefined) a["aztp.audit.reason"] = entry.reason;
  if (entry.outcome !== undefined) a["aztp.audit.outcome"] = entry.outcome;
  if (entry.resultDigest !== undefined) a["aztp.audit.result_digest"] = entry.resultDigest;
  if (entry.durationMs !== undefined) a["aztp.audit.duration_ms"] = entry.durationMs;
  if (entry.jti !== undefined) a["aztp.audit.jti"] = entry.jti;
  if (entry.authMethod !== undefined) a["aztp.audit.auth_method"] = entry.authMethod;
  if (entry.accessTokenJti !== undefined) a["aztp.audit.access_token_jti"] = entry.accessTokenJti;
  if (entry.traceId !== undefined) a["aztp.audit.trace_id"] = entry.traceId;
  if (entry.spanId !== undefined) a["aztp.audit.span_id"] = entry.spanId;
  if (entry.parentSpanId !== undefined) a["aztp.audit.parent_span_id"] = entry.parentSpanId;
  if (entry.traceNote !== undefined) a["aztp.audit.trace_note"] = entry.traceNote;
  if (entry.toolCallId !== undefined) a["aztp.audit.tool_call_id"] = entry.toolCallId;
  if (entry.delegation !== undefined) a["aztp.audit.delegation"] = [...entry.delegation];
  return a;
}
