/**
 * A secured MCP client: an identity at creation; at `initialize` (or `server/discover` on MCP
 * 2026-07-28) it challenges the server to prove possession of its SVID key (checked against the bundle and an optional expected ID,
 * as go-spiffe's authorizers allow) and pins the proven ID as the audience; every tools/call
 * is signed (token in `params._meta`); every receipt is verified, failing closed on a bad or
 * missing one in enforce mode. Each token and receipt stands alone, so a server that speaks
 * the stateless MCP 2026-07-28 (no initialize) works when `serverId` is given.
 */
import { randomBytes } from "node:crypto";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp, SecuredAgent } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { GuardMode } from "../guard/callee.js";
import { CallerGuard, type PreparedCall } from "../guard/caller.js";
import { Unanswered, type UnansweredReason } from "../guard/recorder.js";
import { verifyPossessionProof } from "../invocation/proof.js";
import type { Trust } from "../invocation/trust.js";
import type { Authorizer } from "../spiffe/authorizer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { InterceptingTransport, type MessageHooks } from "./intercept.js";
import { isErrorResponse, isNotification, isRequest, isResponse, isResultResponse } from "./message.js";
import { AZTP_REFUSED, CHALLENGE_META_KEY, IDENTITY_META_KEY, INVOCATION_META_KEY, isObject, RECEIPT_META_KEY, resultForDigest, withMeta } from "./meta.js";
import { identify } from "./identify.js";
import { HANDSHAKES } from "./server.js";

export interface SecureMcpClientOptions {
  client?: Aztp;
  name?: string;
  identity?: AgentIdentity;
  trust?: Trust;
  /** Which server IDs are acceptable (an ID, a list, or an Authorizer). Default: any trusted ID. */
  expectedServer?: string | ReadonlyArray<string> | Authorizer;
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

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

function errorResponse(id: RequestId, error: AztpError): JSONRPCMessage {
  return { jsonrpc: "2.0", id, error: { code: AZTP_REFUSED, message: `[${error.code}] ${error.message}`, data: { code: error.code, message: error.message } } };
}

/** The state a secured client keeps across connections: the server it proved. */
export class ServerBinding {
  serverId: SpiffeId | undefined;
  constructor(serverId?: string) {
    this.serverId = serverId ? SpiffeId.parse(serverId) : undefined;
  }
}

export function clientHooks(
  guard: CallerGuard,
  binding: ServerBinding,
  options: { trust: Trust; expectedServer?: SecureMcpClientOptions["expectedServer"]; serverId?: string; signToolsList?: boolean },
): MessageHooks {
  const inits = new Map<RequestId, string>();
  const calls = new Map<RequestId, PreparedCall>();
  // No answer will come for this call (cancelled, or never sent): audit it now, and forget it.
  const unanswered = (id: RequestId, reason: UnansweredReason): void => {
    const prepared = calls.get(id);
    if (prepared === undefined) return;
    calls.delete(id);
    void guard.unanswered(prepared, reason);
  };
  return {
    async outgoing(message, sendOptions) {
      if (isNotification(message) && message.method === "notifications/cancelled") {
        const rid = message.params?.requestId as RequestId | undefined;
        if (rid !== undefined) unanswered(rid, Unanswered.CANCELLED);
        return message;
      }
      if (!isRequest(message)) return message;
      const params = isObject(message.params) ? message.params : {};
      if (HANDSHAKES.has(message.method)) {
        const nonce = randomBytes(16).toString("base64url");
        inits.set(message.id, nonce);
        return { ...message, params: withMeta(params, CHALLENGE_META_KEY, { nonce, client: guard.id }) } as JSONRPCMessage;
      }
      const isCall = message.method === "tools/call" && typeof params.name === "string";
      const isList = message.method === "tools/list" && options.signToolsList !== false;
      if (!isCall && !isList) return message;
      if (binding.serverId === undefined) {
        if (isList || guard.mode === "audit") return message; // nothing to address a token to
        throw new AztpError(
          ErrorCodes.INVOCATION_AUDIENCE,
          "the server has not proven an AZTP identity, so there is no audience to sign for: connect to a secured server, or pass serverId",
        );
      }
      const audience = binding.serverId.toString();
      const prepared = isCall ? await guard.prepare({ audience, tool: params.name as string, args: params.arguments ?? {} }) : guard.sign({ audience, tool: "tools/list", args: {} });
      if (isCall) {
        calls.set(message.id, prepared);
        // The 2.x SDK cancels a call on a per-request stream (MCP 2026-07-28 over HTTP) by
        // aborting its HTTP request, with no notifications/cancelled for this hook to see.
        const signal = (sendOptions as { requestSignal?: AbortSignal } | undefined)?.requestSignal;
        const id = message.id;
        signal?.addEventListener("abort", () => unanswered(id, Unanswered.CANCELLED), { once: true });
      }
      return { ...message, params: withMeta(params, INVOCATION_META_KEY, prepared.token) } as JSONRPCMessage;
    },
    closed() {
      for (const prepared of calls.values()) void guard.unanswered(prepared, Unanswered.CONNECTION_CLOSED);
      calls.clear();
      inits.clear();
    },
    sendFailed(message) {
      if (!isRequest(message)) return;
      inits.delete(message.id);
      unanswered(message.id, Unanswered.SEND_FAILED);
    },
    incoming(message, _extra, deliver) {
      if (!isResponse(message)) return deliver(message);
      const id = message.id as RequestId;
      const nonce = inits.get(id);
      if (nonce !== undefined) {
        inits.delete(id);
        if (!isResultResponse(message)) return deliver(message);
        const meta = isObject(message.result._meta) ? message.result._meta : {};
        // A server that offers no proof at all, with serverId given: every token is addressed
        // to serverId and every receipt must be signed by it, so nothing rests on the handshake.
        if (meta[IDENTITY_META_KEY] === undefined && options.serverId !== undefined) return deliver(message);
        // A proof of another ID than the serverId given is refused, not silently re-pinned.
        const authorize = options.expectedServer ?? options.serverId;
        try {
          binding.serverId = verifyPossessionProof(meta[IDENTITY_META_KEY], {
            nonce,
            trust: options.trust,
            audience: guard.id,
            ...(authorize !== undefined ? { authorize } : {}),
          });
        } catch (e) {
          const error = e instanceof AztpError ? e : new AztpError(ErrorCodes.PROOF_INVALID, String(e));
          if (guard.mode === "enforce") return deliver(errorResponse(id, new AztpError(error.code, `server identity not proven at initialize: ${error.message}`)));
        }
        return deliver(message);
      }
      const prepared = calls.get(id);
      if (prepared === undefined) return deliver(message);
      calls.delete(id);
      if (isErrorResponse(message)) {
        // A refusal names its rule in data.code: audit it under that code, not as a lost receipt.
        const data = isObject(message.error.data) ? message.error.data : {};
        const code = KNOWN_CODES.has(data.code as string) ? (data.code as ErrorCode) : ErrorCodes.RECEIPT_MISSING;
        // Handed on once it is on record, like a result.
        void guard
          .fail(prepared, new AztpError(code, `the server answered with error ${message.error.code}: ${message.error.message}`))
          .then((unrecorded) => deliver(unrecorded !== undefined ? errorResponse(id, unrecorded) : message));
        return;
      }
      const result = message.result as Record<string, unknown>;
      const meta = isObject(result._meta) ? result._meta : {};
      // The application gets the result only once its receipt verified and the call is on record.
      void guard.settle(prepared, { result: resultForDigest(result), receipt: meta[RECEIPT_META_KEY], isError: result.isError === true }).then(
        () => deliver(message),
        (e: unknown) => deliver(errorResponse(id, e instanceof AztpError ? e : new AztpError(ErrorCodes.RECEIPT_INVALID, String(e)))),
      );
    },
  };
}

export interface SecuredMcpClientExtras {
  readonly aztpGuard: CallerGuard;
  /** The server identity proven at initialize (or given as serverId). */
  readonly aztpServer: ServerBinding;
}

/**
 * Gives `client` an identity and secures every connection it makes. Call before `connect`.
 * Returns the client, passed through, with `.identity`.
 */
export async function secureMcpClient<C extends Client>(client: C, options: SecureMcpClientOptions): Promise<SecuredAgent<C> & SecuredMcpClientExtras> {
  const { secured, trust } = await identify(client, options, "secureMcpClient");
  const audit = await auditFor(secured.identity, options.audit, "secureMcpClient");
  const guard = new CallerGuard({ identity: secured.identity, trust, mode: options.mode ?? "enforce", ...(audit ? { audit } : {}) });
  const binding = new ServerBinding(options.serverId);
  const connect = client.connect.bind(client);
  client.connect = (transport: Transport, requestOptions?: Parameters<Client["connect"]>[1]) =>
    connect(new InterceptingTransport(transport, clientHooks(guard, binding, { trust, ...options })), requestOptions);
  return Object.assign(secured, { aztpGuard: guard, aztpServer: binding }) as SecuredAgent<C> & SecuredMcpClientExtras;
}
