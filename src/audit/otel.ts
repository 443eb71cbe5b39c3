/**
 * Optional OpenTelemetry export of audit entries, through the global `@opentelemetry/api` only:
 * whatever SDK and exporters the application registered receive them, and with none registered
 * every call below is a no-op on the API's no-op objects.
 *
 * Each durable entry becomes
 * - an event `aztp.audit` on the span that was active when `append` was called, if it is
 *   recording (so the audit decision sits inside the trace of the tool call), or otherwise a
 *   short span `aztp.audit` of its own, so trace-only pipelines still see every entry;
 * - a log record with event name `aztp.audit`, when a logger provider is registered and wants it.
 *
 * Only the decision's metadata is exported: never the arguments, the token or the receipt,
 * which stay in the log.
 */
import { context, logs, SeverityNumber, SpanKind, trace, type Attributes, type Context } from "@opentelemetry/api";
import type { AuditEntry } from "./entry.js";

const SCOPE = "aztp-client/audit";
const EVENT = "aztp.audit";

/** The context to export under: the caller's, captured when it appended. */
export function captureContext(): Context {
  return context.active();
}

export function exportEntry(entry: AuditEntry, ctx: Context): void {
  // getTracer/getLogger per call: they are cheap proxies and follow a provider registered later.
  const active = trace.getSpan(ctx);
  if (active !== undefined && active.isRecording()) {
    active.addEvent(EVENT, entryAttributes(entry));
  } else {
    const span = trace.getTracer(SCOPE).startSpan(EVENT, { kind: SpanKind.INTERNAL }, ctx);
    if (span.isRecording()) span.setAttributes(entryAttributes(entry));
    span.end();
  }
  const logger = logs.getLogger(SCOPE);
  if (logger.enabled({ context: ctx, eventName: EVENT })) {
    logger.emit({
      eventName: EVENT,
      timestamp: new Date(entry.time),
      severityNumber: entry.decision === "deny" ? SeverityNumber.WARN : SeverityNumber.INFO,
      severityText: entry.decision === "deny" ? "WARN" : "INFO",
      attributes: entryAttributes(entry),
      context: ctx,
    });
  }
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
  if (entry.toolCallId !== undefined) a["aztp.audit.tool_call_id"] = entry.toolCallId;
  if (entry.delegation !== undefined) a["aztp.audit.delegation"] = [...entry.delegation];
  return a;
}
