/**
 * A Transport that wraps another and lets AZTP see every JSON-RPC message in both directions.
 * Working at the transport, not inside the SDK's server or client, is what makes one binding
 * serve stdio, Streamable HTTP and in-memory alike, serve McpServer and the low-level Server,
 * guard tools registered before or after wrapping, and put a proxy in front of any upstream.
 */
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, MessageExtraInfo, RequestId } from "@modelcontextprotocol/sdk/types.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isRequest, isResponse, isSdkRequestId } from "./message.js";
import { AZTP_REFUSED } from "./meta.js";

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * The error answer for request `id` when a hook threw on its way: an AztpError keeps its code
 * (as every AZTP refusal carries it, in `data.code`); anything else is an internal error
 * marked ERR_MCP_HOOK_FAILED.
 */
export function hookFailure(id: RequestId, error: unknown): JSONRPCMessage {
  if (error instanceof AztpError) {
    return {
      jsonrpc: "2.0",
      id,
      error: {
        code: AZTP_REFUSED,
        message: `AZTP refused [${error.code}]: ${error.message}`,
        data: { code: error.code, message: error.message },
      },
    };
  }
  const message = asError(error).message;
  return {
    jsonrpc: "2.0",
    id,
    error: {
      code: -32603,
      message: `internal error in an AZTP hook: ${message}`,
      data: { code: ErrorCodes.MCP_HOOK_FAILED, message },
    },
  };
}

export interface MessageHooks {
  /**
   * An incoming message. Call `deliver(message)` to pass it on (possibly changed, possibly
   * later), or `reply(message)` to answer the peer directly without passing it on.
   */
  incoming(
    message: JSONRPCMessage,
    extra: MessageExtraInfo | undefined,
    deliver: (m: JSONRPCMessage) => void,
    reply: (m: JSONRPCMessage) => Promise<void>,
  ): void;
  /** An outgoing message; returns what to send instead (may be the same object). */
  outgoing(
    message: JSONRPCMessage,
    options: TransportSendOptions | undefined,
  ): JSONRPCMessage | Promise<JSONRPCMessage>;
  /** The connection closed: requests still unanswered never will be. */
  closed?(): void;
  /** `message` (as `outgoing` returned it) could not be sent: the transport threw. */
  sendFailed?(message: JSONRPCMessage, error: unknown): void;
}

export class InterceptingTransport implements Transport {
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage, extra?: MessageExtraInfo) => void) | undefined;

  readonly inner: Transport;
  readonly #hooks: MessageHooks;

  constructor(inner: Transport, hooks: MessageHooks) {
    this.inner = inner;
    this.#hooks = hooks;
    inner.onclose = () => {
      try {
        this.#hooks.closed?.();
      } catch (error) {
        this.onerror?.(error instanceof Error ? error : new Error(String(error)));
      }
      this.onclose?.();
    };
    inner.onerror = (error) => this.onerror?.(error);
    inner.onmessage = (message, extra) => {
      try {
        this.#hooks.incoming(
          message,
          extra,
          (m) => this.onmessage?.(m, extra),
          (m) =>
            this.inner.send(
              m,
              "id" in message && message.id !== undefined ? { relatedRequestId: message.id } : undefined,
            ),
        );
      } catch (error) {
        // A throw must end in an answer, never only in a log line: the peer's request, or the
        // local caller waiting for this response, would otherwise wait for ever.
        this.onerror?.(asError(error));
        if (isRequest(message)) {
          void this.inner.send(hookFailure(message.id, error), { relatedRequestId: message.id }).catch(() => undefined);
        } else if (isResponse(message) && isSdkRequestId(message.id)) {
          this.onmessage?.(hookFailure(message.id, error), extra);
        }
      }
    };
  }

  get sessionId(): string | undefined {
    return this.inner.sessionId;
  }

  setProtocolVersion(version: string): void {
    this.inner.setProtocolVersion?.(version);
  }

  // Two optional members of the 2.x SDK's Transport (MCP 2026-07-28), absent from 1.x's type and
  // forwarded as they are. A client cancels a call on a transport with per-request streams
  // (Streamable HTTP) by aborting that call's HTTP request; hidden behind this wrapper, it would
  // send notifications/cancelled instead, which a stateless server gets on a new request and a
  // new instance, so the call it meant to cancel would run on to the end.
  get hasPerRequestStream(): boolean | undefined {
    return (this.inner as { hasPerRequestStream?: boolean }).hasPerRequestStream;
  }

  setSupportedProtocolVersions(versions: string[]): void {
    (this.inner as { setSupportedProtocolVersions?: (versions: string[]) => void }).setSupportedProtocolVersions?.(
      versions,
    );
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    let out: JSONRPCMessage;
    try {
      out = await this.#hooks.outgoing(message, options);
    } catch (error) {
      // A request or notification that cannot go out rejects its sender, which is an answer.
      // A response that cannot is replaced by an error for the same id: dropping it would
      // leave the peer waiting for an answer that never comes.
      if (!isResponse(message) || !isSdkRequestId(message.id)) throw error;
      this.onerror?.(asError(error));
      out = hookFailure(message.id, error);
    }
    try {
      await this.inner.send(out, options);
    } catch (error) {
      this.#hooks.sendFailed?.(out, error);
      throw error;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
