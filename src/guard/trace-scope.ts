/**
 * The trace the work in progress belongs to, so that a call made from inside another call (a
 * tool that calls a tool, a sub-agent's run, an MCP server's handler calling another server)
 * continues its trace instead of starting one of its own: a callee runs what it admitted inside
 * its own span (`withTrace`), and the caller's guard reads it when it signs (`currentTrace`).
 *
 * Failing a scope of ours, an OpenTelemetry span active in the context is the trace: an
 * application already traced joins its tool calls to its own spans. The OpenTelemetry API is
 * read only when something has registered it (its global, `opentelemetry.js.api.1`, exists):
 * with no SDK there can be no active span, and loading the API costs about 20 ms at start.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire } from "node:module";
import { AztpError, ErrorCodes } from "../errors.js";
import { isSpanId, isTraceId, parseTraceparent, TRACE_FLAG_SAMPLED } from "../invocation/trace-context.js";
import type { TraceContext, TraceOrigin } from "../invocation/trace-context.js";

const storage = new AsyncLocalStorage<TraceOrigin>();

/**
 * Runs `fn` with `origin` as the trace of everything it calls: a `TraceOrigin`, a parsed context,
 * or a `traceparent` string (parsed: ERR_TRACE_CONTEXT_INVALID when it is not well formed).
 */
export function withTrace<T>(origin: TraceOrigin | TraceContext | string, fn: () => T): T {
  const value: TraceOrigin =
    typeof origin === "string"
      ? { context: parseTraceparent(origin) }
      : "traceId" in origin
        ? { context: checked(origin) }
        : origin;
  return storage.run(value, fn);
}

function checked(context: TraceContext): TraceContext {
  if (!isTraceId(context.traceId) || (context.parentId !== undefined && !isSpanId(context.parentId)))
    throw new AztpError(
      ErrorCodes.TRACE_CONTEXT_INVALID,
      "a trace context needs a W3C trace ID (32 lower-case hex digits) and, if any, a parent span ID (16)",
      { rule: isTraceId(context.traceId) ? "parent-id" : "trace-id" },
    );
  return context;
}

/** Runs `fn` outside any trace scope of ours (a server's work is not its in-memory caller's). */
export function outsideTrace<T>(fn: () => T): T {
  return storage.exit(fn);
}

/** The trace scope of ours `fn` runs in, if any (`withTrace`). */
export function traceScope(): TraceOrigin | undefined {
  return storage.getStore();
}

/** The trace of the current work: our scope, else the active OpenTelemetry span, else none. */
export function currentTrace(): TraceOrigin | undefined {
  return storage.getStore() ?? activeOtelTrace();
}

const OTEL_GLOBAL = Symbol.for("opentelemetry.js.api.1");
type OtelApi = typeof import("@opentelemetry/api");
let otel: OtelApi | undefined;

/**
 * The span active in OpenTelemetry's context, when an application registered a context manager
 * (no active span can exist otherwise). Loaded synchronously (the guard signs synchronously); the
 * API's instances share their registrations through that global, whichever build is loaded.
 */
export function activeOtelTrace(): TraceOrigin | undefined {
  const registered = (globalThis as Record<symbol, { context?: unknown } | undefined>)[OTEL_GLOBAL];
  if (registered?.context === undefined) return undefined;
  otel ??= createRequire(import.meta.url)("@opentelemetry/api") as OtelApi;
  const sc = otel.trace.getSpanContext(otel.context.active());
  if (sc === undefined || !otel.isSpanContextValid(sc)) return undefined;
  const tracestate = sc.traceState?.serialize();
  return {
    context: {
      traceId: sc.traceId,
      parentId: sc.spanId,
      flags: sc.traceFlags & TRACE_FLAG_SAMPLED,
      ...(tracestate ? { tracestate } : {}),
    },
  };
}
