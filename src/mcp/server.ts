/**
 * A secured MCP server: an identity at creation, and every tools/call verified with the one
 * verifier before the handler runs. A refused call never reaches the server and gets a
 * JSON-RPC error whose `data.code` is the AztpError code; an admitted one gets a signed
 * receipt in `result._meta`. Both are audited. Works for McpServer and the low-level Server,
 * for tools registered before or after wrapping, over any transport (see intercept.ts).
 */
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  CancelledNotificationSchema,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import type { Aztp, SecuredAgent } from "../client/aztp.js";
import type { AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { CalleeGuard, type Admission, type GuardMode, type Settlement } from "../guard/callee.js";
import { identify } from "../guard/identify.js";
import { servingGuard } from "../guard/serving-guard.js";
import { Unanswered } from "../guard/recorder.js";
import { describeClaim } from "../invocation/invocation.js";
import { signPossessionProof } from "../invocation/proof.js";
import type { Trust } from "../invocation/trust.js";
import type { CompiledPolicies } from "../policy/evaluate.js";
import type { PolicyDocument } from "../policy/policy.js";
import { parseChallenge, type Challenge } from "./challenge.js";
import { hookFailure, InterceptingTransport, type MessageHooks } from "./intercept.js";
import {
  isErrorResponse,
  isNotification,
  isRequest,
  isResponse,
  isResultResponse,
  sdkTakesAsRequest,
} from "./message.js";
import { outsideActing } from "../guard/acting-caller.js";
import { outsideTrace, withTrace } from "../guard/trace-scope.js";
import { contextOf } from "../invocation/trace-context.js";
import { requestSourceIp } from "./peer.js";
import { bearerOf, checkServingGuard } from "./resource-gate.js";
import type { AuthMethod, PersonContext } from "../policy/context.js";
import {
  argumentsOf,
  AZTP_REFUSED,
  carriedTraceOf,
  CHALLENGE_META_KEY,
  HANDSHAKES,
  HOW_TO_SIGN,
  IDENTITY_META_KEY,
  INVOCATION_META_KEY,
  RECEIPT_META_KEY,
  resultForDigest,
  withMeta,
  withTraceMeta,
} from "./meta.js";

export interface SecureMcpServerOptions {
  /** The aztp client that issues the server's identity (with `name`), unless `identity` is given. */
  client?: Aztp;
  name?: string;
  identity?: AgentIdentity;
  /** Who may call which tool. Default: the policies attached to the server's identity. */
  policy?:
    CompiledPolicies | readonly PolicyDocument[] | (() => CompiledPolicies | readonly PolicyDocument[] | undefined);
  mode?: GuardMode;
  /**
   * Where each call (admitted, refused or unanswered) is recorded before it is answered.
   * Default: `<home>/audit/<name>.jsonl` in the identity's home; `false` keeps none (said at start).
   */
  audit?: AuditOption;
  /** Show an authenticated caller only the tools its policy allows. Default false. */
  filterToolsByPolicy?: boolean;
  /**
   * Where a person approves a call policy lets run only with an approval: the URL of your
   * approval page for a request (ERR_APPROVAL_REQUIRED's `detail`). A client that declared URL
   * mode elicitation (`capabilities.elicitation.url`) is then asked, by the MCP way for it
   * (error -32042, URL elicitation required), to send its user there; others get the refusal
   * with the request as before. The page signs the approver in with the request's `nonce` (or
   * has an approval service sign a statement) and hands the approval to the caller's
   * application, which calls again with it.
   */
  approvalUrl?: ApprovalUrl;
  /** Default: the client's trust (its authority's bundles and revocations). */
  trust?: Trust;
}

/** The answer to a refused call, once settled: the refusal, or why it could not be recorded. */
function settledRefusal(id: RequestId, error: AztpError, settled: Settlement): JSONRPCMessage & { id: RequestId } {
  return refusal(id, settled.error ?? error, settled.receipt);
}

function refusal(id: RequestId, error: AztpError, receipt: string | undefined): JSONRPCMessage & { id: RequestId } {
  const hint = error.code === ErrorCodes.INVOCATION_MISSING ? `: ${HOW_TO_SIGN}` : "";
  return {
    jsonrpc: "2.0",
    id,
    error: {
      code: AZTP_REFUSED,
      message: `AZTP refused the call [${error.code}]: ${error.message}${hint}`,
      // `detail`: what the caller needs to act on it (ERR_APPROVAL_REQUIRED's approval request).
      data: {
        code: error.code,
        message: error.message,
        ...(error.detail !== undefined ? { detail: error.detail } : {}),
        ...(receipt ? { [RECEIPT_META_KEY]: receipt } : {}),
      },
    },
  };
}

/** The answer to a handshake whose challenge is malformed: at once, never silence. */
function handshakeRefusal(id: RequestId, method: string, error: AztpError): JSONRPCMessage & { id: RequestId } {
  return {
    jsonrpc: "2.0",
    id,
    error: {
      code: AZTP_REFUSED,
      message: `AZTP cannot answer this ${method} [${error.code}]: ${error.message}`,
      data: { code: error.code, message: error.message },
    },
  };
}

/**
 * The request a notifications/cancelled makes the SDK's server abort, or undefined when it
 * would not act on it. The 1.x Protocol parses it with CancelledNotificationSchema (a bad
 * `reason` and the whole notification is dropped) and then ignores a falsy requestId (0 or
 * ""); the 2.x one ignores only an absent requestId. Counted as cancelled only when both would
 * abort: a cancellation of request 0 that a 2.x server does act on leaves its call recorded as
 * unanswered when the connection closes, which is late but true; the other way round, a tool
 * that went on to answer would have been recorded as cancelled, and its answer left without
 * a receipt.
 */
function sdkCancels(message: JSONRPCMessage): RequestId | undefined {
  if (!CancelledNotificationSchema.safeParse(message).success) return undefined;
  const rid = (message as { params: { requestId?: RequestId } }).params.requestId;
  return rid ? rid : undefined;
}

/** The approval page of a request (see `SecureMcpServerOptions.approvalUrl`). */
export type ApprovalUrl = (request: Readonly<Record<string, unknown>>) => string | URL;

/** JSON-RPC error of MCP 2025-11-25: the request needs the user to complete a URL mode elicitation first. */
export const URL_ELICITATION_REQUIRED = -32042;

export interface ServerHooksOptions {
  filterToolsByPolicy?: boolean | undefined;
  /** See SecureMcpServerOptions.approvalUrl. */
  approvalUrl?: ApprovalUrl | undefined;
  /**
   * The transport these hooks wrap. When it serves HTTP (serveMcpHttp), the peer of the request
   * a message came in on is the caller's `aztp:sourceIp` (peer.ts); without it, or on any
   * other transport, the key is absent.
   */
  served?: Transport | undefined;
}

/**
 * A request of one connection not answered yet, by what its answer needs. `delivered`: the
 * server has it (false while the guard is still verifying it); only then may an answer or a
 * cancellation settle it.
 * - call: a tools/call; its admission once admitted, for the answer's receipt and audit entry.
 * - handshake: initialize or server/discover; the challenge the answer's proof must meet.
 * - list: a tools/list to filter by policy; the verified caller it is for, and its address.
 * - request: any other request, tracked so that its id is not reused while it is in flight.
 */
type Pending =
  | { kind: "call"; delivered: boolean; admission: Admission | undefined }
  | { kind: "handshake"; delivered: true; challenge: Challenge | null }
  | {
      kind: "list";
      delivered: boolean;
      caller: string | undefined;
      sourceIp: string | undefined;
      authMethod: AuthMethod | undefined;
      /** The person the listing is for (its signed on-behalf-of token, or the bearer's), if any. */
      person?: PersonContext | undefined;
      actors?: readonly string[] | undefined;
    }
  | { kind: "request"; delivered: true };

/**
 * The message hooks of one connection of a secured server side (also used by the proxy): its
 * requests in flight, in one map by request id. Request IDs are per connection, so is this.
 *
 * An answer is matched to its request by id alone, as the SDK's server sends it (the request's
 * own id): a second request reusing the id of one in flight would take that one's receipt and
 * audit entry, and its own tool run would go unrecorded. JSON-RPC forbids the reuse; it is
 * refused before it reaches the server.
 */
class ServerConnection implements MessageHooks {
  readonly #guard: CalleeGuard;
  readonly #identity: { signer: AgentIdentity["signer"] };
  readonly #options: ServerHooksOptions;
  readonly #pending = new Map<RequestId, Pending>();
  // Once the connection is closed, a call whose verification finishes afterwards must not
  // reach the server: it would run the tool with nowhere to send the answer, unaudited.
  #open = true;

  /** Whether the client declared URL mode elicitation at initialize (MCP 2025-11-25). */
  #urlElicitation = false;

  constructor(guard: CalleeGuard, identity: { signer: AgentIdentity["signer"] }, options: ServerHooksOptions) {
    this.#guard = guard;
    this.#identity = identity;
    this.#options = options;
  }

  /**
   * A refused call's answer. ERR_APPROVAL_REQUIRED, to a client that can show a URL to its user
   * (it declared URL mode elicitation) on a server that names its approval page, is asked as MCP
   * asks for it: error -32042 with the elicitation (the request's id as its `elicitationId`), and
   * the same data as every refusal (the code, the request in `detail`, the receipt).
   */
  #callRefusal(id: RequestId, error: AztpError, settled: Settlement): JSONRPCMessage & { id: RequestId } {
    const answer = settledRefusal(id, error, settled);
    const approvalUrl = this.#options.approvalUrl;
    const detail = error.detail;
    if (
      settled.error !== undefined ||
      error.code !== ErrorCodes.APPROVAL_REQUIRED ||
      approvalUrl === undefined ||
      !this.#urlElicitation ||
      detail === undefined ||
      !("error" in answer)
    )
      return answer;
    let url: string;
    try {
      url = new URL(approvalUrl(detail)).href;
    } catch {
      return answer; // no page for it: the refusal with the request, as to any client
    }
    const reason = typeof detail.reason === "string" ? detail.reason : "this call needs a person's approval";
    return {
      ...answer,
      error: {
        code: URL_ELICITATION_REQUIRED,
        message: `${answer.error.message} (approve it at the URL)`,
        data: {
          ...(answer.error.data as Record<string, unknown>),
          elicitations: [
            {
              mode: "url",
              elicitationId: String(detail.requestId ?? id),
              url,
              message: `Approve ${String(detail.tool)} for ${String(detail.caller)}: ${reason}`,
            },
          ],
        },
      },
    };
  }

  incoming(
    message: JSONRPCMessage,
    extra: MessageExtraInfo | undefined,
    deliver: (m: JSONRPCMessage) => void,
    reply: (m: JSONRPCMessage) => Promise<void>,
  ): void {
    // A throw on a request still ends in an answer, and frees its id on this connection.
    try {
      // The server's work for this message (its hooks, the SDK, the tool's handler) is its
      // own, whichever agent's context an in-memory transport carried it in with.
      // Nor its trace: a call it admits runs in the span it starts for it.
      outsideActing(() => outsideTrace(() => this.#incoming(message, extra, deliver, reply)));
    } catch (e) {
      if (!isRequest(message)) throw e;
      this.#internalError(reply, message.id, e);
    }
  }

  closed(): void {
    this.#open = false;
    // The SDK aborts the handlers of a closed connection and sends nothing more: an admitted
    // call (its tool may have run) is audited now, or never. A handshake or list still shapes
    // an answer that goes out after all.
    for (const [id, p] of this.#pending) {
      if (p.kind === "handshake" || p.kind === "list") continue;
      if (p.kind === "call" && p.delivered && p.admission !== undefined)
        void this.#guard.unanswered(
          p.admission,
          Unanswered.CONNECTION_CLOSED,
          "the connection closed before the call was answered",
        );
      this.#pending.delete(id);
    }
  }

  outgoing(message: JSONRPCMessage): JSONRPCMessage | Promise<JSONRPCMessage> {
    if (!isResponse(message)) return message;
    const id = message.id as RequestId;
    const p = this.#pending.get(id);
    // The server cannot answer a request it has not been given: one still being verified is not this answer's.
    if (p === undefined || !p.delivered) return message;
    this.#pending.delete(id);
    switch (p.kind) {
      case "handshake": {
        if (!isResultResponse(message)) return message;
        const ch = p.challenge;
        const value = ch
          ? signPossessionProof(this.#identity, { nonce: ch.nonce, ...(ch.client ? { audience: ch.client } : {}) })
          : { id: this.#identity.signer.id.toString() };
        return { ...message, result: withMeta(message.result, IDENTITY_META_KEY, value) } as JSONRPCMessage;
      }
      case "call":
        return p.admission === undefined ? message : answerCall(this.#guard, p.admission, id, message);
      case "list": {
        const caller = p.caller;
        if (
          caller !== undefined &&
          isResultResponse(message) &&
          isJsonObject(message.result) &&
          Array.isArray(message.result.tools)
        ) {
          const tools = (message.result.tools as Array<{ name?: unknown }>).filter(
            (t) => typeof t.name === "string" && this.#guard.toolVisible(caller, t.name, p),
          );
          return { ...message, result: { ...message.result, tools } } as JSONRPCMessage;
        }
        return message;
      }
      default:
        return message;
    }
  }

  #incoming(
    message: JSONRPCMessage,
    extra: MessageExtraInfo | undefined,
    deliver: (m: JSONRPCMessage) => void,
    reply: (m: JSONRPCMessage) => Promise<void>,
  ): void {
    const guard = this.#guard;
    if (isNotification(message) && message.method === "notifications/cancelled") {
      // The server sends no answer to a request it has and is told is cancelled, so
      // `outgoing` will never settle it: the call is audited here, as an error the caller
      // ended. One still being verified has not reached the server, which will answer it.
      // Only a cancellation the SDK acts on counts (sdkCancels): one it ignores leaves the
      // tool running to an answer that must still get its receipt and audit entry.
      const rid = sdkCancels(message);
      const p = rid === undefined ? undefined : this.#pending.get(rid);
      if (p !== undefined && p.delivered) {
        this.#pending.delete(rid as RequestId);
        if (p.kind === "call" && p.admission !== undefined)
          void guard.unanswered(
            p.admission,
            Unanswered.CANCELLED,
            typeof message.params?.reason === "string" ? message.params.reason : "cancelled by the caller",
          );
      }
      return deliver(message);
    }
    if (!isRequest(message)) return deliver(message);
    const id = message.id;
    const params = isJsonObject(message.params) ? message.params : {};
    const meta = isJsonObject(params._meta) ? params._meta : {};
    const carried = carriedTraceOf(meta);
    if (this.#pending.has(id)) {
      const error = new AztpError(
        ErrorCodes.MCP_REQUEST_ID_IN_USE,
        `request id ${describeClaim(id, 64)} is already in use by a request in flight on this connection`,
      );
      // Not through #answer(): the request in flight under this id is still waiting for its own.
      if (message.method === "tools/call" && typeof params.name === "string") {
        void guard
          .refuse({ tool: params.name, args: argumentsOf(params), token: meta[INVOCATION_META_KEY], ...carried }, error)
          .then((settled) => reply(settledRefusal(id, error, settled)))
          .catch(() => undefined);
      } else {
        void reply(refusal(id, error, undefined)).catch(() => undefined);
      }
      return;
    }
    if (HANDSHAKES.has(message.method)) {
      // Checked now, not when the answer goes out: a challenge the proof cannot be signed
      // for would then throw there, and the handshake would never be answered.
      const ch = meta[CHALLENGE_META_KEY];
      let challenge: Challenge | null = null;
      try {
        if (ch !== undefined) challenge = parseChallenge(ch);
      } catch (e) {
        void reply(handshakeRefusal(id, message.method, e as AztpError)).catch(() => undefined);
        return;
      }
      if (message.method === "initialize") {
        const capabilities = isJsonObject(params.capabilities) ? params.capabilities : {};
        const elicitation = isJsonObject(capabilities.elicitation) ? capabilities.elicitation : {};
        this.#urlElicitation = isJsonObject(elicitation.url);
      }
      this.#pending.set(id, { kind: "handshake", delivered: true, challenge });
      return deliver(message);
    }
    // The request's own authentication decides what a tools/list shows, never the session's
    // (a stateless server has none): its signature, else its bearer token.
    const bearer = bearerOf(extra?.authInfo);
    if (message.method === "tools/list" && meta[INVOCATION_META_KEY] !== undefined) {
      const list: Pending & { kind: "list" } = {
        kind: "list",
        delivered: false,
        caller: undefined,
        sourceIp: requestSourceIp(this.#options.served),
        authMethod: "signed",
      };
      this.#pending.set(id, list);
      // Verified whether or not the list is filtered: a signed list is an AZTP proof (a
      // resource server lets it in without a bearer token), so a signature that does not
      // verify, or names another caller than the request's token, is refused in enforce mode.
      // Policy on the tool "tools/list" is no part of it: what the caller may see is decided
      // tool by tool.
      void guard
        .admit({ tool: "tools/list", args: {}, token: meta[INVOCATION_META_KEY], sourceIp: list.sourceIp, bearer })
        .then((a) => {
          if (!this.#open) return;
          const mismatch = a.error?.code === ErrorCodes.OAUTH_TOKEN_SUBJECT_MISMATCH;
          if ((a.verified === undefined || mismatch) && guard.mode === "enforce" && a.error !== undefined) {
            this.#answer(reply, refusal(id, a.error, undefined));
            return;
          }
          if (a.verified !== undefined && !mismatch && this.#options.filterToolsByPolicy) {
            list.caller = a.caller;
            // A listing made for a person shows what that person's calls may reach.
            list.person = a.verified.onBehalfOf?.person;
            list.actors = a.verified.onBehalfOf?.actors;
          }
          list.delivered = true;
          deliver(message);
        })
        .catch((e: unknown) => this.#internalError(reply, id, e));
      return;
    }
    if (message.method === "tools/list" && bearer !== undefined && this.#options.filterToolsByPolicy) {
      this.#pending.set(id, {
        kind: "list",
        delivered: true,
        caller: bearer.caller,
        sourceIp: requestSourceIp(this.#options.served),
        authMethod: "bearer",
        person: bearer.person,
      });
      return deliver(message);
    }
    if (message.method !== "tools/call" || typeof params.name !== "string") {
      this.#pending.set(id, { kind: "request", delivered: true });
      return deliver(message);
    }
    const call: Pending & { kind: "call" } = { kind: "call", delivered: false, admission: undefined };
    this.#pending.set(id, call);
    // A call the SDK would drop unread (a member too many, a _meta its schema rejects) must
    // not be admitted: its token would be used up, the call audited as allowed and left
    // unanswered, its caller waiting. It is refused at once instead.
    if (!sdkTakesAsRequest(message)) {
      const error = new AztpError(
        ErrorCodes.MCP_MESSAGE_INVALID,
        "this tools/call has members the MCP SDK rejects (an unknown member, or a _meta its schema does not accept), so the server would never run or answer it",
      );
      void guard
        .refuse({ tool: params.name, args: argumentsOf(params), token: meta[INVOCATION_META_KEY], ...carried }, error)
        .then((settled) => this.#answer(reply, settledRefusal(id, error, settled)))
        .catch((e: unknown) => this.#internalError(reply, id, e));
      return;
    }
    // The MCP access token (Authorization bearer), which a token's `ath` may bind.
    const accessToken = extra?.authInfo?.token;
    const sourceIp = requestSourceIp(this.#options.served);
    // A call with a bearer token and no signature is the token's caller's; one with both must
    // name one caller (CalleeGuard.admit).
    const admitted =
      bearer !== undefined && meta[INVOCATION_META_KEY] === undefined
        ? guard.admitBearer({ tool: params.name, args: argumentsOf(params), bearer, sourceIp, ...carried })
        : guard.admit({
            tool: params.name,
            args: argumentsOf(params),
            token: meta[INVOCATION_META_KEY],
            sourceIp,
            bearer,
            ...carried,
            ...(accessToken ? { accessToken } : {}),
          });
    void admitted
      .then(async (admission) => {
        if (!admission.allowed) {
          // The refusal leaves once it is on record, as every answer does.
          const error = admission.error as AztpError;
          this.#answer(reply, this.#callRefusal(id, error, await guard.settleRefusal(admission)));
          return;
        }
        if (!this.#open) {
          void guard.unanswered(
            admission,
            Unanswered.CONNECTION_CLOSED,
            "the connection closed while the call was being verified",
          );
          return;
        }
        call.admission = admission;
        call.delivered = true;
        // What serves the call (the tool's handler; the proxy's upstream) continues its trace
        // under this side's span: told so in the request's _meta, and for a handler in this
        // process by the trace scope its calls are signed in.
        const traced = { ...message, params: withTraceMeta(params, admission.trace) } as JSONRPCMessage;
        withTrace(contextOf(admission.trace), () => deliver(traced));
      })
      .catch((e: unknown) => this.#internalError(reply, id, e));
  }

  /** Answers sent directly (a refusal, an internal error) bypass `outgoing`: they end the request here. */
  #answer(reply: (m: JSONRPCMessage) => Promise<void>, m: JSONRPCMessage & { id: RequestId }): void {
    this.#pending.delete(m.id);
    void reply(m).catch(() => undefined);
  }

  /** Whatever goes wrong after a request was taken, its caller gets an answer, never silence. */
  #internalError(reply: (m: JSONRPCMessage) => Promise<void>, id: RequestId, e: unknown): void {
    this.#answer(reply, hookFailure(id, e) as JSONRPCMessage & { id: RequestId });
  }
}

/** The message hooks of a secured server side (also used by the proxy): one per connection. */
export function serverHooks(
  guard: CalleeGuard,
  identity: { signer: AgentIdentity["signer"] },
  options: ServerHooksOptions = {},
): MessageHooks {
  checkServingGuard(options.served, guard);
  return new ServerConnection(guard, identity, options);
}

/**
 * The answer to an admitted call, with its receipt, sent only once the call's audit entry is
 * written (a process killed right after answering has lost no entry). When the entry cannot be
 * written, or the result cannot be receipted, the caller gets that error instead of the result.
 */
async function answerCall(
  guard: CalleeGuard,
  admission: Admission,
  id: RequestId,
  message: JSONRPCMessage,
): Promise<JSONRPCMessage> {
  if (isResultResponse(message)) {
    const result = message.result as Record<string, unknown>;
    const failed = result.isError === true;
    const settled = await guard.settle(admission, {
      status: failed ? "error" : "ok",
      result: resultForDigest(result),
      ...(failed ? { code: ErrorCodes.TOOL_FAILED } : {}),
    });
    if (settled.error !== undefined) return refusal(id, settled.error, settled.receipt);
    return settled.receipt
      ? ({ ...message, result: withMeta(result, RECEIPT_META_KEY, settled.receipt) } as JSONRPCMessage)
      : message;
  }
  if (!isErrorResponse(message)) return message;
  const err = message.error;
  const settled = await guard.settle(admission, {
    status: "error",
    result: { code: err.code, message: err.message },
    code: String(err.code),
  });
  if (settled.error !== undefined) return refusal(id, settled.error, settled.receipt);
  return settled.receipt
    ? ({
        ...message,
        error: { ...err, data: { ...(isJsonObject(err.data) ? err.data : {}), [RECEIPT_META_KEY]: settled.receipt } },
      } as JSONRPCMessage)
    : message;
}

/** Wraps the server's `connect` so every transport it serves passes through the guard. */
function guardConnect(server: Server, wrap: (t: Transport) => Transport): void {
  const connect = server.connect.bind(server);
  server.connect = (transport: Transport) => connect(wrap(transport));
}

export interface SecuredMcpServerExtras {
  readonly aztpGuard: CalleeGuard;
}

/**
 * Gives `server` (an McpServer or a low-level Server) an identity and guards every
 * tools/call it will serve. Call before `connect`. Returns the server, passed through, with
 * `.identity` (and `.aztpGuard` for flushing audit entries).
 */
export async function secureMcpServer<S extends McpServer | Server>(
  server: S,
  options: SecureMcpServerOptions,
): Promise<SecuredAgent<S> & SecuredMcpServerExtras> {
  const { secured, trust, authority } = await identify(server, options, "secureMcpServer");
  const identity = secured.identity;
  const guard = await servingGuard(identity, {
    trust,
    authority,
    policy: options.policy,
    mode: options.mode,
    audit: options.audit,
    what: "secureMcpServer",
  });
  const low: Server =
    "server" in server && typeof (server as McpServer).server?.connect === "function"
      ? (server as McpServer).server
      : (server as Server);
  guardConnect(
    low,
    (t) =>
      new InterceptingTransport(
        t,
        serverHooks(guard, identity, {
          filterToolsByPolicy: options.filterToolsByPolicy,
          approvalUrl: options.approvalUrl,
          served: t,
        }),
      ),
  );
  return Object.assign(secured, { aztpGuard: guard }) as SecuredAgent<S> & SecuredMcpServerExtras;
}
