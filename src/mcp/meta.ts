/**
 * The MCP binding's names. MCP reserves `_meta` prefixes whose second label is
 * `modelcontextprotocol` or `mcp`; ours is `io.aztp/`.
 */
import { ErrorCodes, type ErrorCode } from "../errors.js";
import { formatTraceparent } from "../invocation/trace-context.js";
import { isJsonObject, type JsonObject } from "../json/value.js";

export const META_PREFIX = "io.aztp/";
/** params._meta of tools/call (and tools/list): the caller's invocation token. */
export const INVOCATION_META_KEY = "io.aztp/invocation";
/** result._meta of tools/call (or error.data of a refused call): the callee's receipt. */
export const RECEIPT_META_KEY = "io.aztp/receipt";
/**
 * params._meta of tools/call as an application gives it to a secured client: a person's
 * approval of this call, `{ request, idToken }` or `{ request, statement }` (people/approval.ts). The client signs it into
 * the invocation (`apr`) and takes it out of `_meta` before the request leaves.
 */
export const APPROVAL_META_KEY = "io.aztp/approval";
/**
 * params._meta of a request: W3C trace context (`traceparent`, `tracestate`). MCP 2026-07-28
 * reserves these unprefixed keys for OpenTelemetry trace context, an exception to its prefix
 * rule (basic/index.mdx, "General fields: _meta", from SEP-414, "Document OpenTelemetry Trace
 * Context Propagation Conventions"); their values follow W3C Trace Context. A secured client
 * sets them to its span of each call, a secured server (and the proxy) passes on its own span
 * of the call to what serves it; the trace ID they carry is also signed in the invocation
 * (invocation/trace-context.ts), and only the signed one is believed.
 */
export const TRACEPARENT_META_KEY = "traceparent";
export const TRACESTATE_META_KEY = "tracestate";

/** params._meta of initialize: { nonce, client } for the server to prove its identity on. */
export const CHALLENGE_META_KEY = "io.aztp/challenge";
/** result._meta of initialize: the server's possession proof, or { id } when not challenged. */
export const IDENTITY_META_KEY = "io.aztp/identity";

/**
 * Where a server proves its identity: `initialize` (MCP up to 2025-11-25) and `server/discover`
 * (MCP 2026-07-28, which has no initialize). Either may carry our challenge.
 */
export const HANDSHAKES: ReadonlySet<string> = new Set(["initialize", "server/discover"]);

/** JSON-RPC error code of a call refused by AZTP; `error.data.code` holds the AztpError code. */
export const AZTP_REFUSED = -32001;

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/**
 * The AZTP code a JSON-RPC error's `data` names (`data.code`, as every AZTP refusal carries
 * it), or undefined when it names none this library knows: another server's `data.code` is
 * not taken for one of ours.
 */
export function aztpCodeOf(data: unknown): ErrorCode | undefined {
  const code = isJsonObject(data) ? data.code : undefined;
  return typeof code === "string" && KNOWN_CODES.has(code) ? (code as ErrorCode) : undefined;
}

/**
 * A result as the receipt's digest covers it: everything but our receipt key (a receipt cannot
 * cover itself); a `_meta` left empty by that is dropped. Both sides normalise the same way.
 */
export function resultForDigest(result: unknown): unknown {
  if (!isJsonObject(result) || !isJsonObject(result._meta) || !(RECEIPT_META_KEY in result._meta)) return result;
  const { [RECEIPT_META_KEY]: _receipt, ...meta } = result._meta;
  const { _meta: _old, ...rest } = result;
  return Object.keys(meta).length > 0 ? { ...rest, _meta: meta } : rest;
}

/**
 * The arguments of a tools/call as both sides sign and verify them: absent means `{}` (no
 * arguments), anything else is taken as it is, so a `null` or a list is digested as sent and
 * never mistaken for `{}` (the SDK rejects those; they must not verify as an empty call).
 */
export function argumentsOf(params: JsonObject): unknown {
  return params.arguments === undefined ? {} : params.arguments;
}

/** `value` without `key` in its `_meta` (and without a `_meta` left empty). */
export function withoutMeta(value: JsonObject, key: string): JsonObject {
  if (!isJsonObject(value._meta) || !(key in value._meta)) return value;
  const { [key]: _gone, ...meta } = value._meta;
  const { _meta: _old, ...rest } = value;
  return Object.keys(meta).length > 0 ? { ...rest, _meta: meta } : rest;
}

export function withMeta(value: unknown, key: string, entry: unknown): JsonObject {
  const obj = isJsonObject(value) ? value : {};
  const meta = isJsonObject(obj._meta) ? obj._meta : {};
  return { ...obj, _meta: { ...meta, [key]: entry } };
}

/** The trace context a request's `_meta` carries (unsigned: checked against the invocation's). */
export function carriedTraceOf(meta: JsonObject): { traceparent?: unknown; tracestate?: unknown } {
  return {
    ...(meta[TRACEPARENT_META_KEY] !== undefined ? { traceparent: meta[TRACEPARENT_META_KEY] } : {}),
    ...(meta[TRACESTATE_META_KEY] !== undefined ? { tracestate: meta[TRACESTATE_META_KEY] } : {}),
  };
}

/**
 * `params` sending the trace context that names `span` as the parent of what serves the request:
 * its `traceparent`, and its `tracestate` (or none: a tracestate that came with a refused or
 * overruled context is not passed on).
 */
export function withTraceMeta(
  params: JsonObject,
  span: { traceId: string; spanId: string; flags: number; tracestate?: string | undefined },
): JsonObject {
  const meta = isJsonObject(params._meta) ? params._meta : {};
  const { [TRACESTATE_META_KEY]: _state, ...rest } = meta;
  return {
    ...params,
    _meta: {
      ...rest,
      [TRACEPARENT_META_KEY]: formatTraceparent(span),
      ...(span.tracestate !== undefined ? { [TRACESTATE_META_KEY]: span.tracestate } : {}),
    },
  };
}

/** How to sign, for the error a signing-unaware client gets from an enforcing server. */
export const HOW_TO_SIGN =
  `sign each tools/call with an AZTP invocation token in params._meta["${INVOCATION_META_KEY}"] ` +
  "(aztp-client's secureMcpClient does this; the format is in docs/protocol.md)";
