/**
 * Two MCP transports joined message for message: what a client sends on the downstream one goes
 * out on the upstream one, and what comes back goes down. The proxy is a secured server side
 * (downstream) joined to an unmodified upstream; the bridge is the mirror, a host's transport
 * (downstream) joined to a secured client side on the upstream. Either side's AZTP hooks wrap
 * its transport; this file knows nothing of them, only of requests and their answers.
 *
 * A request the upstream cannot take (it is gone) is answered rather than left hanging, and so
 * is every request it had taken when it went away (it crashed mid-call, say): the client gets a
 * prompt answer, which the side's hooks receipt and audit, instead of a connection that just
 * closes (over HTTP, a client could wait out its whole request timeout for that).
 */
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCResultResponse,
  ProgressToken,
  RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { isNotification, isRequest, isResponse, isResultResponse, PendingRequests } from "./message.js";

/** A downstream request forwarded upstream: its own id and its method. */
export interface ForwardedRequest {
  readonly id: RequestId;
  readonly method: string;
}

/** Why the upstream will not answer a request: it closed first. */
export const UPSTREAM_CLOSED = "it closed before answering";

export interface JoinOptions {
  /** What goes upstream for a message from downstream (default: the message as it is). */
  toUpstream?(message: JSONRPCMessage): JSONRPCMessage;
  /** Options for sending a message upstream (default: none). */
  sendOptions?(message: JSONRPCMessage): TransportSendOptions | undefined;
  /**
   * What goes down for the upstream's answer to `request` (default: the answer as it is), under
   * the request's own id.
   */
  toDownstream?(answer: JSONRPCResultResponse | JSONRPCErrorResponse, request: ForwardedRequest): JSONRPCMessage;
  /**
   * The answer to `request` when the upstream will not give one: it could not be sent (`why` is
   * what the send threw), the upstream closed first (`why` is UPSTREAM_CLOSED), or the joined
   * side's owner gave it up (`abandon`, with its own `why`). A promise when the answer must wait
   * (for the call's audit entry to be written).
   */
  unavailable(request: ForwardedRequest, why: unknown): JSONRPCMessage | Promise<JSONRPCMessage>;
  /** An answer to an initialize went down (a result or an error). */
  initializeAnswered?(answer: JSONRPCMessage): void;
  /**
   * Send what the upstream sends of its own (its requests, its notifications) down related to
   * the latest downstream request still waiting, when there is one. A Streamable HTTP server
   * transport then puts it on that request's open stream; unrelated, it goes to the client's
   * standalone stream, and is dropped when the client has not opened one (yet). The upstream's
   * requests to the client come during a call (sampling, elicitation, roots), so that call's
   * stream is where the specification wants them; no transport says which call it was.
   */
  relateToPending?: boolean;
}

export interface Joined {
  /** Resolves once both sides are closed. */
  readonly closed: Promise<void>;
  close(): void;
  /** Whether the upstream has answered an initialize with a result yet. */
  initialized(): boolean;
  /** Whether downstream request `id` (its own id) is still waiting for the upstream's answer. */
  waiting(id: RequestId): boolean;
  /** Answers request `id` now with `unavailable(request, why)`; an answer the upstream sends later is dropped. */
  abandon(id: RequestId, why: unknown): void;
}

/** `why` as a sentence: an Error's message, or the string itself. */
export function reasonOf(why: unknown): string {
  return typeof why === "string" ? why : ((why as Error)?.message ?? String(why));
}

export async function join(downstream: Transport, upstream: Transport, options: JoinOptions): Promise<Joined> {
  let done!: () => void;
  const closed = new Promise<void>((resolve) => (done = resolve));
  let initialized = false;
  // The joined client side must send the negotiated version after initialize (an HTTP upstream
  // takes it from the MCP-Protocol-Version header), as the SDK's Client does.
  /**
   * Requests forwarded upstream and not answered yet, matched to the upstream's answers as an
   * SDK client matches them (an upstream that answers "1" for 1 answers 1), and passed down
   * under the request's own id: the hooks of either side find the call by that id, so the
   * answer gets its receipt and audit entry instead of going down bare. An answer that matches
   * none (a request answered already, given up, or never made) is dropped: the downstream has
   * no request for it, and a late one must not answer a request that reuses its id.
   */
  const pending = new PendingRequests<string>();
  const inits = new Set<RequestId>();
  /** Sends `message` down as the answer to `request` (an initialize's answer is told first). */
  const answerDown = (message: JSONRPCMessage, request: ForwardedRequest): Promise<void> => {
    if (inits.delete(request.id)) {
      if (isResultResponse(message) && typeof message.result.protocolVersion === "string") {
        initialized = true;
        upstream.setProtocolVersion?.(message.result.protocolVersion);
      }
      options.initializeAnswered?.(message);
    }
    return downstream.send(message, { relatedRequestId: request.id }).catch(() => undefined);
  };
  const answer = async (request: ForwardedRequest, why: unknown): Promise<void> =>
    answerDown(await options.unavailable(request, why), request);
  let closing = false;
  const closeBoth = (upstreamGone: boolean): void => {
    if (closing) return;
    closing = true;
    const answered = upstreamGone
      ? Promise.allSettled(
          [...pending.values()].map(({ id, value: method }) => answer({ id, method }, UPSTREAM_CLOSED)),
        )
      : Promise.resolve();
    pending.clear();
    void answered.then(() => Promise.allSettled([downstream.close(), upstream.close()])).then(() => done());
  };
  // Progress notifications answer a request: sent with its ID, a Streamable HTTP listener puts
  // them on that request's stream, in order before its result. Without it they went to the
  // standalone stream, where the last could arrive after the result (and be dropped by the
  // client), or nowhere if the client had no standalone stream open.
  const progress = new Map<ProgressToken, RequestId>();
  const tokenOf = new Map<RequestId, ProgressToken>();
  const forgetProgress = (id: RequestId): void => {
    const token = tokenOf.get(id);
    if (token === undefined) return;
    tokenOf.delete(id);
    progress.delete(token);
  };
  downstream.onmessage = (message: JSONRPCMessage) => {
    if (isRequest(message)) {
      if (message.method === "initialize") inits.add(message.id);
      const token = message.params?._meta?.progressToken;
      if (token !== undefined) {
        progress.set(token, message.id);
        tokenOf.set(message.id, token);
      }
      pending.set(message.id, message.method);
    } else if (isNotification(message) && message.method === "notifications/cancelled") {
      // A cancelled request may never be answered (the specification says not to): forget it.
      pending.delete(message.params?.requestId as RequestId);
    }
    const out = options.toUpstream ? options.toUpstream(message) : message;
    upstream.send(out, options.sendOptions?.(out)).catch((e: unknown) => {
      if (!isRequest(message)) return;
      const method = pending.delete(message.id);
      if (method === undefined) return;
      forgetProgress(message.id);
      void answer({ id: message.id, method }, e);
    });
  };
  upstream.onmessage = (received: JSONRPCMessage) => {
    let message = received;
    if (isResponse(message)) {
      const request = pending.take(message.id);
      if (request === undefined) return;
      forgetProgress(request.id);
      const forwarded = { id: request.id, method: request.value };
      const answer = (request.id !== message.id ? { ...message, id: request.id } : message) as
        JSONRPCResultResponse | JSONRPCErrorResponse;
      void answerDown(options.toDownstream ? options.toDownstream(answer, forwarded) : answer, forwarded);
      return;
    }
    let related: RequestId | undefined;
    if (isNotification(message) && message.method === "notifications/progress")
      related = progress.get(message.params?.progressToken as ProgressToken);
    if (related === undefined && options.relateToPending) for (const { id } of pending.values()) related = id;
    downstream.send(message, related !== undefined ? { relatedRequestId: related } : undefined).catch(() => undefined);
  };
  downstream.onclose = () => closeBoth(false);
  upstream.onclose = () => closeBoth(true);
  downstream.onerror = () => undefined;
  upstream.onerror = () => undefined;
  await upstream.start();
  await downstream.start();
  return {
    closed,
    close: () => closeBoth(false),
    initialized: () => initialized,
    waiting: (id) => pending.has(id),
    abandon(id, why) {
      const method = pending.delete(id);
      if (method === undefined) return;
      forgetProgress(id);
      void answer({ id, method }, why);
    },
  };
}
