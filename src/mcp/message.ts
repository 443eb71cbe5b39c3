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
 *
 * Which request an answer answers is the SDK's rule too (PendingRequests, against the 1.x and
 * 2.x Clients as oracles in the same test), and whether the SDK takes a message at all is
 * asked of its own guards, once per answer of a tracked request and per tools/call (1 to 3 µs
 * each, measured here): those decide what reaches a tool or an application, so no mirror of
 * the schemas that could drift from them is trusted with it.
 */
import {
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCErrorResponse,
  type JSONRPCMessage,
  type JSONRPCNotification,
  type JSONRPCRequest,
  type JSONRPCResultResponse,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { isJsonObject } from "../json/value.js";

type Members = { [key: string]: unknown };

function isId(v: unknown): boolean {
  return typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}

/** A request: a method and an id (params, when present, an object). */
export function isRequest(m: JSONRPCMessage): m is JSONRPCRequest {
  const o = m as Members;
  return typeof o.method === "string" && isId(o.id) && (o.params === undefined || isJsonObject(o.params));
}

/** A notification: a method and no id. */
export function isNotification(m: JSONRPCMessage): m is JSONRPCNotification {
  const o = m as Members;
  return typeof o.method === "string" && !("id" in o) && (o.params === undefined || isJsonObject(o.params));
}

/** A successful response: an id and an object result. */
export function isResultResponse(m: JSONRPCMessage): m is JSONRPCResultResponse {
  const o = m as Members;
  return isId(o.id) && isJsonObject(o.result) && !("method" in o);
}

/** An error response: an error object with a numeric code (id may be absent for a parse error). */
export function isErrorResponse(m: JSONRPCMessage): m is JSONRPCErrorResponse {
  const o = m as Members;
  return (
    isJsonObject(o.error) && typeof o.error.code === "number" && typeof o.error.message === "string" && !("method" in o)
  );
}

/** A response of either kind (what answers a request by its id). */
export function isResponse(m: JSONRPCMessage): m is JSONRPCResultResponse | JSONRPCErrorResponse {
  return isResultResponse(m) || isErrorResponse(m);
}

/**
 * The key the MCP SDK's Protocol (1.x and 2.x alike) looks a response's request up by:
 * `Number(response.id)`, for an id its RequestIdSchema admits (a string, or a safe integer).
 * So `"1"`, `"1.0"`, `" 1"`, `"0x1"` and `"+1e0"` all answer request 1, and `""` answers 0.
 * Undefined for an id the SDK never takes as a response's (the message is dropped as unknown).
 */
export function sdkResponseKey(id: unknown): number | undefined {
  if (!isSdkRequestId(id)) return undefined;
  const key = Number(id);
  return Number.isNaN(key) ? undefined : key;
}

/** An id the SDK's RequestIdSchema admits: `z.union([z.string(), z.number().int()])` (zod's int is a safe integer). */
export function isSdkRequestId(id: unknown): id is RequestId {
  return typeof id === "string" || Number.isSafeInteger(id);
}

/**
 * The requests of one connection still waiting for an answer, matched to their answers the
 * way the SDK matches them. Keying by the raw id (as the hooks once did) let `"1"` answer
 * request 1 past them: the SDK took it, unchecked, as the answer of a call whose receipt was
 * never looked at. Two matchers exist in the SDKs, and `take` is the union of both: the exact
 * id (the 2.x client's server/discover probe and subscriptions/listen, string ids, are
 * matched so, and first), then Protocol's `Number(id)`, which only ever reaches a numeric id.
 */
export class PendingRequests<V> {
  readonly #byId = new Map<string | number, { id: RequestId; value: V }>();

  set(id: RequestId, value: V): void {
    this.#byId.set(id, { id, value });
  }

  has(id: RequestId): boolean {
    return this.#byId.has(id);
  }

  /** Forgets request `id` (by its own id, as sent), returning what was kept for it. */
  delete(id: unknown): V | undefined {
    if (typeof id !== "string" && typeof id !== "number") return undefined;
    const entry = this.#byId.get(id);
    if (entry === undefined) return undefined;
    this.#byId.delete(id);
    return entry.value;
  }

  /** The request a response with id `responseId` answers for the SDK, removed; undefined when it answers none. */
  take(responseId: unknown): { id: RequestId; value: V } | undefined {
    const entry = this.find(responseId);
    if (entry !== undefined) this.#byId.delete(entry.id);
    return entry;
  }

  /** The request a response with id `responseId` answers for the SDK, left in place. */
  find(responseId: unknown): { id: RequestId; value: V } | undefined {
    if (isSdkRequestId(responseId)) {
      const exact = this.#byId.get(responseId);
      if (exact !== undefined) return exact;
    }
    const key = sdkResponseKey(responseId);
    return key === undefined ? undefined : this.#byId.get(key);
  }

  values(): IterableIterator<{ id: RequestId; value: V }> {
    return this.#byId.values();
  }

  clear(): void {
    this.#byId.clear();
  }
}

/**
 * How an answer reads: a result, an error, or both members at once (JSON-RPC forbids it; the
 * SDK's strict schemas take it for neither, so no reading of it can be trusted to match).
 */
export function answerKind(m: JSONRPCResultResponse | JSONRPCErrorResponse): "result" | "error" | "ambiguous" {
  const hasResult = "result" in m;
  const hasError = "error" in m;
  if (hasResult && hasError) return "ambiguous";
  return hasResult ? "result" : "error";
}

/**
 * Whether the SDK takes `m` as a response at all. Its own guards, not ours: this decides what
 * the hooks deliver for a request they track, and a message the SDK then dropped would leave
 * its request waiting with the hooks' record of it gone, open to the next message with that id.
 * The 1.x schemas are the stricter (a result's `_meta` must hold a valid progressToken; 2.x
 * takes any object), so what passes here passes both. One zod parse per answer of a tracked
 * request, on a message whose tool content the schema does not descend into.
 */
export function sdkTakesAsResponse(m: JSONRPCMessage): boolean {
  return isJSONRPCResultResponse(m) || isJSONRPCErrorResponse(m);
}

/**
 * Whether the SDK's server dispatches `m` as a request: its own strict guard, asked only of a
 * tools/call about to be verified (the schema passes tool arguments through unparsed).
 */
export function sdkTakesAsRequest(m: JSONRPCMessage): boolean {
  return isJSONRPCRequest(m);
}
