/**
 * Telling JSON-RPC messages apart on the hot path.
 *
 * The SDK's `isJSONRPCRequest` / `isJSONRPCResultResponse` / ... each run a full zod parse of
 * the message, tool arguments and tool result included, and a failed parse (asking "is this a
 * result?" of a request) builds an issue list before answering no. A secured call asked
 * several per side; measured here, dropping them took an in-memory secured round trip from
 * 419 to 368 µs, a third of what the binding added beyond its four signature operations.
 *
 * The members that define each kind are enough, each type-checked where a hook goes on to
 * read it (an odd message is passed on untouched, never a TypeError). What matters for
 * safety is one direction: whatever the SDK's own guard calls a request or a response, so
 * will these (test/mcp-message.test.ts checks it on random messages), so nothing the SDK's
 * Protocol would dispatch as a tools/call, or take as its answer, escapes the hooks.
 */
import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCNotification,
  JSONRPCRequest,
  JSONRPCResultResponse,
} from "@modelcontextprotocol/sdk/types.js";

type Members = { [key: string]: unknown };

function isId(v: unknown): boolean {
  return typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}

function isPlainObject(v: unknown): v is Members {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A request: a method and an id (params, when present, an object). */
export function isRequest(m: JSONRPCMessage): m is JSONRPCRequest {
  const o = m as Members;
  return typeof o.method === "string" && isId(o.id) && (o.params === undefined || isPlainObject(o.params));
}

/** A notification: a method and no id. */
export function isNotification(m: JSONRPCMessage): m is JSONRPCNotification {
  const o = m as Members;
  return typeof o.method === "string" && !("id" in o) && (o.params === undefined || isPlainObject(o.params));
}

/** A successful response: an id and an object result. */
export function isResultResponse(m: JSONRPCMessage): m is JSONRPCResultResponse {
  const o = m as Members;
  return isId(o.id) && isPlainObject(o.result) && !("method" in o);
}

/** An error response: an error object with a numeric code (id may be absent for a parse error). */
export function isErrorResponse(m: JSONRPCMessage): m is JSONRPCErrorResponse {
  const o = m as Members;
  return isPlainObject(o.error) && typeof o.error.code === "number" && typeof o.error.message === "string" && !("method" in o);
}

/** A response of either kind (what answers a request by its id). */
export function isResponse(m: JSONRPCMessage): m is JSONRPCResultResponse | JSONRPCErrorResponse {
  return isResultResponse(m) || isErrorResponse(m);
}
