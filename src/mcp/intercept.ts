/**
 * A Transport that wraps another and lets AZTP see every JSON-RPC message in both directions.
 * Working at the transport, not inside the SDK's server or client, is what makes one binding
 * serve stdio, Streamable HTTP and in-memory alike, serve McpServer and the low-level Server,
 * guard tools registered before or after wrapping, and put a proxy in front of any upstream.
 */
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, MessageExtraInfo } from "@modelcontextprotocol/sdk/types.js";

export interface MessageHooks {
  /**
   * An incoming message. Call `deliver(message)` to pass it on (possibly changed, possibly
   * later), or `reply(message)` to answer the peer directly without passing it on.
   */
  incoming(message: JSONRPCMessage, extra: MessageExtraInfo | undefined, deliver: (m: JSONRPCMessage) => void, reply: (m: JSONRPCMessage) => Promise<void>): void;
  /** An outgoing message; returns what to send instead (may be the same object). */
  outgoing(message: JSONRPCMessage, options: TransportSendOptions | undefined): JSONRPCMessage | Promise<JSONRPCMessage>;
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
          (m) => this.inner.send(m, "id" in message && message.id !== undefined ? { relatedRequestId: message.id } : undefined),
        );
      } catch (error) {
        this.onerror?.(error instanceof Error ? error : new Error(String(error)));
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
    (this.inner as { setSupportedProtocolVersions?: (versions: string[]) => void }).setSupportedProtocolVersions?.(versions);
  }

  start(): Promise<void> {
    return this.inner.start();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const out = await this.#hooks.outgoing(message, options);
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
