/**
 * The trace an agent run's tool calls join (DESIGN §14): each call is a span of its own (signed by
 * the agent, continued by its callee), and the calls of one run share one trace, so a run is
 * found whole in every log by its trace ID. Read per tool call, since LangChain gives the
 * middleware no hook that holds a value for the length of a run; in this order:
 *
 * 1. the trace of the call the run is inside: a sub-agent's run inside the call its parent made
 *    to it (the tool that runs it continues that call's span: tool.ts), or a run an MCP server's
 *    handler started for a call it serves (guard/trace-scope.ts);
 * 2. the run's `configurable.aztp.traceparent`: the application's trace, a W3C traceparent
 *
 *      agent.invoke(input, { configurable: { aztp: { traceparent: "00-…-…-01" } } })
 *
 *    (one that is malformed is refused and noted in each entry: the run keeps a trace of its own);
 * 3. the OpenTelemetry span active when the call is made, in an application that traces;
 * 4. else the run's own trace, named after the person's message that started the turn (its
 *    message ID, which LangGraph gives every message): every call made for that message, a call
 *    resumed after an interrupt too, is in it, even across processes sharing a checkpointer.
 */
import { HumanMessage } from "@langchain/core/messages";
import { activeOtelTrace, traceScope } from "../guard/trace-scope.js";
import { carriedTrace, continuing, isTraceId, TRACE_FLAG_SAMPLED } from "../invocation/trace-context.js";
import type { TraceOrigin } from "../invocation/trace-context.js";
import { isJsonObject } from "../json/value.js";
import { sha256Hex } from "../sha256.js";

/** The trace the tool call of a run with `configurable` and these `messages` (its state's) joins. */
export function runTrace(configurable: unknown, messages: unknown): TraceOrigin {
  const inside = traceScope();
  if (inside !== undefined) return inside;
  const aztp = isJsonObject(configurable) && isJsonObject(configurable.aztp) ? configurable.aztp : undefined;
  const own = (): TraceOrigin | undefined => activeOtelTrace() ?? turnTrace(messages);
  if (aztp?.traceparent === undefined) return own() ?? {};
  return continuing(carriedTrace(aztp.traceparent, aztp.tracestate), own()) ?? {};
}

/**
 * The trace of the turn a person's message started: the first 128 bits of SHA-256 over its ID. A
 * trace ID needs to be unique, not secret, and the message ID is (a UUID).
 */
function turnTrace(messages: unknown): TraceOrigin | undefined {
  if (!Array.isArray(messages)) return undefined;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m: unknown = messages[i];
    if (!HumanMessage.isInstance(m)) continue;
    if (typeof m.id !== "string" || m.id.length === 0) return undefined;
    const traceId = sha256Hex(`aztp run trace\n${m.id}`).slice(0, 32);
    return isTraceId(traceId) ? { context: { traceId, flags: TRACE_FLAG_SAMPLED } } : undefined;
  }
  return undefined;
}
