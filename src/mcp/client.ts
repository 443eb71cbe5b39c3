/**
 * A secured MCP client: an identity at creation; at `initialize` (or `server/discover` on MCP
 * 2026-07-28) it challenges the server to prove possession of its SVID key (checked against the
 * bundle and an optional expected ID, as go-spiffe's authorizers allow) and pins the proven ID as
 * the audience; every tools/call is signed (token in `params._meta`); every receipt is verified,
 * failing closed on a bad or missing one in enforce mode. Each token and receipt stands alone, so a
 * server that speaks the stateless MCP 2026-07-28 (no initialize) works when `serverId` is given.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCResultResponse,
  RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import type { Aztp, SecuredAgent } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { checkSubjectToken, OnBehalfOfTokens } from "../client/on-behalf-of-tokens.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import type { GuardMode } from "../guard/callee.js";
import { CallerGuard, type PreparedCall, type SentCall } from "../guard/caller.js";
import { Unanswered, type UnansweredReason } from "../guard/recorder.js";
import { actingCaller, type ActingCaller } from "../guard/acting-caller.js";
import { currentTrace } from "../guard/trace-scope.js";
import { carriedTrace, continuing, type TraceOrigin } from "../invocation/trace-context.js";
import { verifyPossessionProofSigner } from "../invocation/proof.js";
import type { ReceiptStatus } from "../invocation/receipt.js";
import type { Trust } from "../invocation/trust.js";
import type { Authorizer } from "../spiffe/authorizer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { InterceptingTransport, type MessageHooks } from "./intercept.js";
import { newChallenge } from "./challenge.js";
import {
  answerKind,
  isErrorResponse,
  isNotification,
  isRequest,
  isResponse,
  isResultResponse,
  PendingRequests,
  sdkTakesAsResponse,
} from "./message.js";
import {
  argumentsOf,
  aztpCodeOf,
  AZTP_REFUSED,
  CHALLENGE_META_KEY,
  HANDSHAKES,
  IDENTITY_META_KEY,
  APPROVAL_META_KEY,
  INVOCATION_META_KEY,
  RECEIPT_META_KEY,
  resultForDigest,
  TRACEPARENT_META_KEY,
  TRACESTATE_META_KEY,
  withMeta,
  withoutMeta,
  withTraceMeta,
} from "./meta.js";
import { canonicalDigest } from "../invocation/canonical.js";
import { approvalFits, type Approval } from "../people/approval.js";
import { identify } from "../guard/identify.js";

export interface SecureMcpClientOptions {
  client?: Aztp;
  name?: string;
  identity?: AgentIdentity;
  trust?: Trust;
  /** Which server IDs are acceptable (an ID, a list, or an Authorizer). Default: any trusted ID. */
  expectedServer?: string | ReadonlyArray<string> | Authorizer | undefined;
  /** The server's ID when it cannot prove it at initialize (stateless MCP); still checked by receipts. */
  serverId?: string;
  mode?: GuardMode;
  /**
   * Where each call is recorded before its result is handed on. Default: `<home>/audit/<name>.jsonl`
   * in the identity's home; `false` keeps none (said at start).
   */
  audit?: AuditOption;
  /** Also sign tools/list, so a server can show only the tools this client may call. Default true. */
  signToolsList?: boolean;
}

function errorResponse(id: RequestId, error: AztpError): JSONRPCMessage {
  return {
    jsonrpc: "2.0",
    id,
    error: {
      code: AZTP_REFUSED,
      message: `[${error.code}] ${error.message}`,
      data: { code: error.code, message: error.message },
    },
  };
}

/** The state a secured client keeps across connections: the server it proved. */
export class ServerBinding {
  serverId: SpiffeId | undefined;
  /** The serial of the server's SVID last seen (its proof, then its receipts), for revocation checks. */
  serial: string | undefined;
  /**
   * Why the server's last handshake proved no identity (audit mode lets it through): each call
   * then goes unsigned, and is recorded with this as the reason, as enforce mode would refuse it.
   */
  unproven: AztpError | undefined;
  constructor(serverId?: string) {
    this.serverId = serverId ? SpiffeId.parse(serverId) : undefined;
  }
}

/**
 * An answer for the request `id` that the SDK is sure to take: the SDK's strict schemas drop a
 * message with any member too many or a result `_meta` they do not accept, and a dropped answer
 * would leave its request waiting, no longer tracked by the hooks, for whatever comes next
 * with that id. So an answer is passed on rebuilt under the request's own id, and one the SDK
 * would not read becomes an error the caller sees.
 */
function sdkAnswer(
  id: RequestId,
  message: JSONRPCResultResponse | JSONRPCErrorResponse,
  what: string,
): { answer: JSONRPCMessage; invalid?: AztpError } {
  const answer = (
    "result" in message ? { jsonrpc: "2.0", id, result: message.result } : { jsonrpc: "2.0", id, error: message.error }
  ) as JSONRPCMessage;
  if (sdkTakesAsResponse(answer)) return { answer };
  const invalid = new AztpError(
    ErrorCodes.MCP_MESSAGE_INVALID,
    `the answer to ${what} is not one the MCP SDK reads as an answer (a result _meta or error it rejects), so it is refused`,
  );
  return { answer: errorResponse(id, invalid), invalid };
}

function ambiguous(what: string): AztpError {
  return new AztpError(
    ErrorCodes.MCP_MESSAGE_INVALID,
    `the answer to ${what} carries both a result and an error, which JSON-RPC forbids and which could be read either way`,
  );
}

/**
 * The approval to sign into a tools/call: the one the application put in its `_meta` (checked
 * when signed: prepare refuses and records one that is not `{ request, idToken }` or
 * `{ request, statement }`), else the
 * acting caller's, only for the call it was given for (same callee, tool and arguments).
 */
function approvalFor(
  given: unknown,
  acting: ActingCaller | undefined,
  audience: string,
  params: Record<string, unknown>,
): Approval | undefined {
  if (given !== undefined) return given as Approval;
  const approval = acting?.approval;
  if (approval === undefined) return undefined;
  let argsDigest: string;
  try {
    argsDigest = canonicalDigest(argumentsOf(params), "args");
  } catch {
    return undefined;
  }
  return approvalFits(approval, { tool: params.name as string, argsDigest, audience }) ? approval : undefined;
}

/**
 * The trace a tools/call continues: the `traceparent` its request carries (an application's, or the
 * host's through the bridge), else the trace the caller works in (an agent's run, the call a
 * server is serving, an active OpenTelemetry span), else none (a new trace). One that is malformed
 * is refused, noted in the entry, and never breaks the call.
 */
function traceOriginOf(params: Record<string, unknown>): TraceOrigin | undefined {
  const meta = isJsonObject(params._meta) ? params._meta : {};
  return continuing(carriedTrace(meta[TRACEPARENT_META_KEY], meta[TRACESTATE_META_KEY]), currentTrace());
}

/** The answer without the receipt in its result's `_meta` (and without a `_meta` left empty). */
function withoutReceipt(answer: JSONRPCMessage): JSONRPCMessage {
  if (!("result" in answer) || !isJsonObject(answer.result) || !isJsonObject(answer.result._meta)) return answer;
  const { [RECEIPT_META_KEY]: _receipt, ...meta } = answer.result._meta;
  const { _meta: _old, ...result } = answer.result;
  return { ...answer, result: Object.keys(meta).length > 0 ? { ...result, _meta: meta } : result } as JSONRPCMessage;
}

/**
 * A call this client sent, with the guard that signed it (the acting caller's, or its own): signed,
 * or unsigned to a server told to be unsecured (`unsecuredServer`).
 */
interface SignedCall {
  readonly prepared: SentCall;
  readonly guard: CallerGuard;
  readonly acting: ActingCaller | undefined;
}

/** A secured client side's hooks, and how its owner ends a request that will get no answer. */
export interface ClientHooks extends MessageHooks {
  /**
   * Request `id`, sent, will get no answer (the stream it was to come on closed first): a signed
   * call is audited as unanswered for `reason`, now. False when its answer has already come and
   * is being settled: that answer will still be handed on.
   */
  abandon(id: RequestId, reason: UnansweredReason): boolean;
}

export function clientHooks(
  ownGuard: CallerGuard,
  binding: ServerBinding,
  options: {
    trust: Trust;
    expectedServer?: SecureMcpClientOptions["expectedServer"];
    serverId?: string;
    signToolsList?: boolean;
    /**
     * The server is a third-party MCP server that proves no identity and signs no receipts, and
     * the owner said so (the bridge's `--server-unsecured`); the value names it in audit entries
     * (its URL or command line). Nothing is challenged or signed; every tools/call is still
     * recorded when its answer comes (CallerGuard.prepareUnsigned and settle: the receipt
     * absent, as audit mode records a missing one), and refused before it leaves when the
     * audit log cannot be written.
     */
    unsecuredServer?: string;
    /**
     * The on-behalf-of token the calls made in the current scope carry when no agent's acting
     * caller signs them (`actingFor` of a secured client): read per call.
     */
    onBehalfOf?: () => string | undefined;
  },
): ClientHooks {
  const unsecured = options.unsecuredServer;
  // Handshakes (the nonce each challenged) and calls still waiting for their answer, matched to
  // answers exactly as the SDK matches them (message.ts): an answer the SDK would take for one
  // of them must be the one the hooks check.
  const inits = new PendingRequests<string>();
  const calls = new PendingRequests<SignedCall>();
  // Calls whose answer came and is being settled (receipt checked, entry written) before it is
  // handed on. Until then the SDK still waits on the id, so a second answer under it (a
  // forgery right behind the genuine one) would reach the SDK first, unchecked: it is dropped.
  const settling = new PendingRequests<true>();
  // No answer will come for this call (cancelled, or never sent): audit it now, and forget it.
  const unanswered = (id: unknown, reason: UnansweredReason): void => {
    const call = calls.delete(id);
    if (call !== undefined) void call.guard.unanswered(call.prepared, reason);
  };

  /** What to pass on for the answer to the handshake that challenged with `nonce`. */
  const handshakeAnswer = (
    id: RequestId,
    nonce: string,
    message: JSONRPCResultResponse | JSONRPCErrorResponse,
  ): JSONRPCMessage => {
    if (answerKind(message) === "ambiguous") return errorResponse(id, ambiguous("initialize"));
    const { answer, invalid } = sdkAnswer(id, message, "initialize");
    if (invalid !== undefined || !isResultResponse(message)) return answer;
    const meta = isJsonObject(message.result._meta) ? message.result._meta : {};
    // A server that offers no proof at all, with serverId given: every token is addressed
    // to serverId and every receipt must be signed by it, so nothing rests on the handshake.
    if (meta[IDENTITY_META_KEY] === undefined && options.serverId !== undefined) return answer;
    // A proof of another ID than the serverId given is refused, not silently re-pinned.
    const authorize = options.expectedServer ?? options.serverId;
    try {
      const proven = verifyPossessionProofSigner(meta[IDENTITY_META_KEY], {
        nonce,
        trust: options.trust,
        audience: ownGuard.id,
        ...(authorize !== undefined ? { authorize } : {}),
      });
      binding.serverId = proven.id;
      binding.serial = proven.serial;
      binding.unproven = undefined;
    } catch (e) {
      const error = e instanceof AztpError ? e : new AztpError(ErrorCodes.PROOF_INVALID, String(e));
      const unproven = new AztpError(error.code, `server identity not proven at initialize: ${error.message}`);
      if (ownGuard.mode === "enforce") return errorResponse(id, unproven);
      binding.unproven = unproven;
    }
    return answer;
  };

  /**
   * What to pass on for the answer to a signed call: a result only with its receipt verified
   * (enforce mode), and whatever it is only once the call is on record (an answer whose entry
   * could not be written becomes ERR_AUDIT_UNAVAILABLE).
   */
  const callAnswer = async (
    id: RequestId,
    call: SignedCall,
    message: JSONRPCResultResponse | JSONRPCErrorResponse,
  ): Promise<JSONRPCMessage> => {
    const { prepared, guard, acting } = call;
    const what = `the call of ${prepared.tool}`;
    const tell = (status: ReceiptStatus, code: string | undefined, receipt: unknown, message?: string): void => {
      if (acting !== undefined) {
        acting.outcome = {
          audience: prepared.audience,
          tool: prepared.tool,
          status,
          ...(typeof receipt === "string" ? { receipt } : {}),
          ...(code !== undefined ? { code } : {}),
          ...(message !== undefined ? { message } : {}),
        };
      }
    };
    const failed = async (error: AztpError, answer: JSONRPCMessage): Promise<JSONRPCMessage> => {
      const unrecorded = await guard.fail(prepared, error);
      tell("denied", (unrecorded ?? error).code, undefined, (unrecorded ?? error).message);
      // The approval request a refusal carries goes to the agent as it came (a person must see it).
      if (acting !== undefined && unrecorded === undefined && error.code === ErrorCodes.APPROVAL_REQUIRED)
        acting.approvalRequest = error.detail;
      return unrecorded !== undefined ? errorResponse(id, unrecorded) : answer;
    };
    if (answerKind(message) === "ambiguous") {
      const error = ambiguous(what);
      return failed(error, errorResponse(id, error));
    }
    const { answer, invalid } = sdkAnswer(id, message, what);
    if (invalid !== undefined) return failed(invalid, answer);
    if (!("token" in prepared)) {
      // An unsecured server's answer, a result or an error: recorded with the receipt absent, then
      // passed on as it came (only an entry that cannot be written withholds it).
      const result = isResultResponse(message) ? (message.result as Record<string, unknown>) : undefined;
      try {
        await guard.settle(prepared, {
          result: result === undefined ? undefined : resultForDigest(result),
          receipt: undefined,
          isError: result === undefined || result.isError === true,
        });
      } catch (e) {
        const error = e instanceof AztpError ? e : new AztpError(ErrorCodes.AUDIT_UNAVAILABLE, String(e));
        tell("denied", error.code, undefined, error.message);
        return errorResponse(id, error);
      }
      tell(result === undefined || result.isError === true ? "error" : "ok", undefined, undefined);
      return answer;
    }
    if (isErrorResponse(message)) {
      // A refusal names its rule in data.code: audit it under that code, not as a lost receipt.
      const code = aztpCodeOf(message.error.data) ?? ErrorCodes.RECEIPT_MISSING;
      const data = message.error.data;
      const detail = isJsonObject(data) && isJsonObject(data.detail) ? data.detail : undefined;
      return failed(
        new AztpError(code, `the server answered with error ${message.error.code}: ${message.error.message}`, {
          ...(detail !== undefined ? { detail } : {}),
        }),
        answer,
      );
    }
    const result = message.result as Record<string, unknown>;
    const meta = isJsonObject(result._meta) ? result._meta : {};
    try {
      const verified = await guard.settle(prepared, {
        result: resultForDigest(result),
        receipt: meta[RECEIPT_META_KEY],
        isError: result.isError === true,
      });
      if (verified !== undefined) binding.serial = verified.serial;
      tell(
        verified?.claims.status ?? (result.isError === true ? "error" : "ok"),
        verified?.claims.code,
        meta[RECEIPT_META_KEY],
      );
      // An agent's call: the agent holds the receipt now (acting.outcome). Left in the result it
      // would reach the model, since the MCP adapters copy a result's _meta into its content.
      if (acting !== undefined) return withoutReceipt(answer);
    } catch (e) {
      const error = e instanceof AztpError ? e : new AztpError(ErrorCodes.RECEIPT_INVALID, String(e));
      tell("denied", error.code, undefined, error.message);
      return errorResponse(id, error);
    }
    return answer;
  };

  /**
   * Sends a tools/call unsigned, on record: to a server told to be unsecured, or (audit mode) to
   * one that proved no identity to address a token to (`unproven`, the reason its entry gives).
   * Recorded when its answer comes, as a signed call is (callAnswer, CallerGuard.settle), and
   * refused before it leaves when the log cannot record it (enforce mode).
   */
  const sendUnsigned = async (
    message: JSONRPCMessage & { id: RequestId },
    params: Record<string, unknown>,
    audience: string,
    sendOptions: unknown,
    unproven?: AztpError,
  ): Promise<JSONRPCMessage> => {
    const acting = actingCaller();
    const guard = acting?.guard ?? ownGuard;
    const trace = traceOriginOf(params);
    const prepared = await guard.prepareUnsigned({
      audience,
      tool: params.name as string,
      args: argumentsOf(params),
      ...(trace !== undefined ? { trace } : {}),
      ...(unproven !== undefined ? { unproven } : {}),
      ...(acting?.toolCallId !== undefined ? { toolCallId: acting.toolCallId } : {}),
    });
    calls.set(message.id, { prepared, guard, acting });
    // On its way, and this client records what comes of it: the agent's middleware must not
    // record it again as never signed.
    if (acting !== undefined) acting.outcome = { audience, tool: prepared.tool, status: "error" };
    const signal = (sendOptions as { requestSignal?: AbortSignal } | undefined)?.requestSignal;
    const id = message.id;
    signal?.addEventListener("abort", () => unanswered(id, Unanswered.CANCELLED), { once: true });
    // Unsigned, but traced: the server's work can still join the call's trace.
    return { ...message, params: withTraceMeta(params, prepared.trace) } as JSONRPCMessage;
  };

  return {
    async outgoing(message, sendOptions) {
      if (isNotification(message) && message.method === "notifications/cancelled") {
        unanswered(isJsonObject(message.params) ? message.params.requestId : undefined, Unanswered.CANCELLED);
        return message;
      }
      if (!isRequest(message)) return message;
      let params = isJsonObject(message.params) ? message.params : {};
      if (unsecured !== undefined) {
        if (message.method !== "tools/call" || typeof params.name !== "string") return message;
        return sendUnsigned(message, params, unsecured, sendOptions);
      }
      if (HANDSHAKES.has(message.method)) {
        const challenge = newChallenge(ownGuard.id);
        inits.set(message.id, challenge.nonce);
        return { ...message, params: withMeta(params, CHALLENGE_META_KEY, challenge) } as JSONRPCMessage;
      }
      // An approval the application gave for this call: signed into the invocation, never sent as is.
      const given = isJsonObject(params._meta) ? params._meta[APPROVAL_META_KEY] : undefined;
      if (given !== undefined) params = withoutMeta(params, APPROVAL_META_KEY);
      const isCall = message.method === "tools/call" && typeof params.name === "string";
      const isList = message.method === "tools/list" && options.signToolsList !== false;
      if (!isCall && !isList) return message;
      // An agent's tool call that reached this client signs as the agent (acting-caller.ts),
      // under its delegation and with its tool-call id; any other call as this client.
      const acting = actingCaller();
      const guard = acting?.guard ?? ownGuard;
      const trace = isCall ? traceOriginOf(params) : undefined;
      if (binding.serverId === undefined) {
        if (isList) return message; // nothing to address a token to
        const unaddressed = new AztpError(
          ErrorCodes.INVOCATION_AUDIENCE_MISMATCH,
          "the server has not proven an AZTP identity, so there is no audience to sign for: connect to a secured server, or pass serverId",
        );
        // Audit mode lets the call go, unsigned (there is no audience to sign for), and records it
        // with the reason enforce mode refuses for (the failed proof, else this): audit mode never
        // records less.
        if (guard.mode === "audit")
          return sendUnsigned(message, params, "unknown", sendOptions, binding.unproven ?? unaddressed);
        const refused = await guard.refuse(
          {
            tool: params.name as string,
            args: argumentsOf(params),
            ...(acting?.toolCallId !== undefined ? { toolCallId: acting.toolCallId } : {}),
            ...(trace !== undefined ? { trace } : {}),
          },
          unaddressed,
        );
        // Recorded here: the agent's middleware must not record it again as never signed.
        if (acting !== undefined)
          acting.outcome = {
            audience: "unknown",
            tool: params.name as string,
            status: "denied",
            code: refused.code,
            message: refused.message,
          };
        throw refused;
      }
      const audience = binding.serverId.toString();
      // The person: the acting agent's (its own token, bound to its key), else this client's scope's.
      // A listing made in a person's scope is signed for them too: a server filtering by policy
      // shows what that person's calls may reach.
      const onBehalfOf = acting !== undefined ? acting.onBehalfOf : options.onBehalfOf?.();
      // A call is refused before it leaves when the log cannot record it, or when the server has
      // been revoked since it proved itself (checked against the SVID it last showed: its proof,
      // then its receipts; with none seen yet, the identity alone).
      const approval = isCall ? approvalFor(given, acting, audience, params) : undefined;
      const alongside = {
        ...(acting?.delegation !== undefined ? { delegation: acting.delegation } : {}),
        ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
        ...(acting?.toolCallId !== undefined ? { toolCallId: acting.toolCallId } : {}),
        ...(approval !== undefined ? { approval } : {}),
        ...(trace !== undefined ? { trace } : {}),
      };
      let prepared: PreparedCall;
      try {
        prepared = isCall
          ? await guard.prepare({
              audience,
              tool: params.name as string,
              args: argumentsOf(params),
              ...alongside,
              ...(binding.serial !== undefined ? { calleeSerial: binding.serial } : {}),
            })
          : guard.sign({
              audience,
              tool: "tools/list",
              args: {},
              ...(acting?.delegation !== undefined ? { delegation: acting.delegation } : {}),
              ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
            });
      } catch (e) {
        if (isCall && acting !== undefined && e instanceof AztpError)
          acting.outcome = {
            audience,
            tool: params.name as string,
            status: "denied",
            code: e.code,
            message: e.message,
          };
        throw e;
      }
      if (isCall && acting?.argsDigest !== undefined && prepared.claims.args_sha256 !== acting.argsDigest) {
        const error = new AztpError(
          ErrorCodes.INVOCATION_ARGS_MISMATCH,
          `the arguments of ${prepared.tool} are not the ones the model asked for (changed inside the agent, after its secure middleware): the call is not sent`,
        );
        const unrecorded = await guard.fail(prepared, error);
        acting.outcome = {
          audience,
          tool: prepared.tool,
          status: "denied",
          code: (unrecorded ?? error).code,
          message: (unrecorded ?? error).message,
        };
        throw unrecorded ?? error;
      }
      if (isCall) {
        calls.set(message.id, { prepared, guard, acting });
        // Signed and on its way: this client records what comes of it (an answer, a cancel, a
        // closed connection), so the agent's middleware must not record it as never signed. An
        // error until its answer says otherwise (none may come).
        if (acting !== undefined) acting.outcome = { audience, tool: prepared.tool, status: "error" };
        // The 2.x SDK cancels a call on a per-request stream (MCP 2026-07-28 over HTTP) by
        // aborting its HTTP request, with no notifications/cancelled for this hook to see.
        const signal = (sendOptions as { requestSignal?: AbortSignal } | undefined)?.requestSignal;
        const id = message.id;
        signal?.addEventListener("abort", () => unanswered(id, Unanswered.CANCELLED), { once: true });
      }
      // A call names its span as the parent of the server's work, beside the token that signs it.
      const sent = isCall ? withTraceMeta(params, prepared.trace) : params;
      return { ...message, params: withMeta(sent, INVOCATION_META_KEY, prepared.token) } as JSONRPCMessage;
    },
    abandon(id, reason) {
      if (settling.find(id) !== undefined) return false;
      inits.delete(id);
      unanswered(id, reason);
      return true;
    },
    closed() {
      for (const { value } of calls.values()) void value.guard.unanswered(value.prepared, Unanswered.CONNECTION_CLOSED);
      calls.clear();
      inits.clear();
      settling.clear();
    },
    sendFailed(message) {
      if (!isRequest(message)) return;
      inits.delete(message.id);
      unanswered(message.id, Unanswered.SEND_FAILED);
    },
    incoming(message, _extra, deliver) {
      // isResponse takes at least every message the SDK's guards take as an answer
      // (test/mcp-message.test.ts), so nothing the SDK would match to a request escapes here.
      if (!isResponse(message)) return deliver(message);
      const init = inits.take(message.id);
      if (init !== undefined) return deliver(handshakeAnswer(init.id, init.value, message));
      if (settling.find(message.id) !== undefined) return; // the genuine answer is being settled
      const call = calls.take(message.id);
      if (call === undefined) return deliver(message);
      // Handed on only once settled: receipt checked, entry written.
      settling.set(call.id, true);
      void callAnswer(call.id, call.value, message)
        .catch((e: unknown) =>
          errorResponse(
            call.id,
            e instanceof AztpError
              ? e
              : new AztpError(
                  ErrorCodes.MCP_HOOK_FAILED,
                  `settling the answer failed: ${(e as Error)?.message ?? String(e)}`,
                ),
          ),
        )
        .then((answer) => {
          settling.delete(call.id);
          deliver(answer);
        });
    },
  };
}

export interface SecuredMcpClientExtras {
  readonly aztpGuard: CallerGuard;
  /** The server identity proven at initialize (or given as serverId). */
  readonly aztpServer: ServerBinding;
  /**
   * Runs `fn` with every tools/call this client signs in it made for a person (DESIGN §13):
   * `token` is their ID token or JWT access token (exchanged once for an on-behalf-of token bound
   * to this client's identity, kept until a key rotation or near expiry), or an on-behalf-of token
   * already exchanged for this identity (used as it is). The scope follows `fn` through every
   * await and nothing else, so concurrent scopes for different people never mix:
   *
   *   await client.actingFor(personToken, () => client.callTool({ name: "transfer", arguments }))
   *
   * Rejects, before `fn` runs, when the token cannot be exchanged (ERR_PERSON_ISSUER_UNTRUSTED,
   * ERR_PERSON_TOKEN_INVALID, ...). Inside an agent's tool call the agent signs, for its run's
   * person, and this scope is not read.
   */
  actingFor<T>(token: string, fn: () => T | Promise<T>): Promise<T>;
}

/**
 * Gives `client` an identity and secures every connection it makes. Call before `connect`.
 * Returns the client, passed through, with `.identity`.
 */
export async function secureMcpClient<C extends Client>(
  client: C,
  options: SecureMcpClientOptions,
): Promise<SecuredAgent<C> & SecuredMcpClientExtras> {
  const { secured, trust } = await identify(client, options, "secureMcpClient");
  const audit = await auditFor(secured.identity, options.audit, "secureMcpClient");
  const guard = new CallerGuard({
    identity: secured.identity,
    trust,
    mode: options.mode ?? "enforce",
    ...(audit ? { audit } : {}),
  });
  const binding = new ServerBinding(options.serverId);
  // Per client: a scope of another client (another identity) would carry a token bound to another key.
  const people = new OnBehalfOfTokens(secured.identity);
  const scope = new AsyncLocalStorage<string>();
  const onBehalfOf = (): string | undefined => scope.getStore();
  const actingFor = async <T>(token: string, fn: () => T | Promise<T>): Promise<T> => {
    const obo = await people.for(checkSubjectToken(token, "actingFor's token"));
    return scope.run(obo, fn);
  };
  const connect = client.connect.bind(client);
  client.connect = (transport: Transport, requestOptions?: Parameters<Client["connect"]>[1]) =>
    connect(
      new InterceptingTransport(transport, clientHooks(guard, binding, { trust, ...options, onBehalfOf })),
      requestOptions,
    );
  return Object.assign(secured, { aztpGuard: guard, aztpServer: binding, actingFor }) as SecuredAgent<C> &
    SecuredMcpClientExtras;
}
