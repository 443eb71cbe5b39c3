/**
 * The MCP proxy: a secured MCP server in front of an unmodified upstream server (spawned over
 * stdio, or reached over Streamable HTTP). It forwards JSON-RPC messages both ways, so every
 * MCP feature passes through untouched, but only tools/call requests that the one verifier
 * admitted reach the upstream; answers carry receipts, both outcomes are audited.
 *
 * Each downstream session gets its own upstream connection (MCP sessions are stateful), and
 * a spawned upstream gets only the environment it needs: the SDK's safe default set plus what
 * the operator names, never this process's own variables (keys, AZTP_*).
 */
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, ProgressToken, RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { CalleeGuard, type GuardMode } from "../guard/callee.js";
import type { AuditWriter } from "../guard/recorder.js";
import type { PolicyDocument } from "../policy/policy.js";
import { serveMcpHttp, type McpHttpServer } from "./http.js";
import { InterceptingTransport } from "./intercept.js";
import { isNotification, isRequest, isResponse, isResultResponse, PendingRequests } from "./message.js";
import { sayIfOpen, serverHooks } from "./server.js";

export type Upstream = { command: string; args?: string[]; env?: Record<string, string>; cwd?: string } | { url: string };

export interface McpProxyOptions {
  client: Aztp;
  /** The proxy's identity name (the server its callers address). */
  name: string;
  upstream: Upstream;
  /** "stdio" (default) or an http://host:port URL. */
  listen?: "stdio" | string;
  /** Who may call which tool; default: the policies attached to the proxy's identity. */
  policy?: readonly PolicyDocument[];
  mode?: GuardMode;
  /**
   * Where each call is recorded before it is answered. Default: `<home>/audit/<name>.jsonl` in
   * the client's home; `false` keeps none (said at start).
   */
  audit?: AuditOption;
  filterToolsByPolicy?: boolean;
  allowedHosts?: string[];
}

export interface McpProxy {
  readonly identity: AgentIdentity;
  readonly guard: CalleeGuard;
  /** The log its calls are recorded in (undefined with `audit: false`). */
  readonly audit: AuditWriter | undefined;
  /** The HTTP endpoint when listening on HTTP. */
  readonly url: URL | undefined;
  /** Resolves when the proxy has stopped (stdio: when either side closes). */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

function upstreamTransport(upstream: Upstream): Transport {
  if ("url" in upstream) return new StreamableHTTPClientTransport(new URL(upstream.url));
  return new StdioClientTransport({
    command: upstream.command,
    args: upstream.args ?? [],
    env: { ...getDefaultEnvironment(), ...upstream.env },
    ...(upstream.cwd ? { cwd: upstream.cwd } : {}),
    stderr: "inherit",
  });
}

/**
 * Joins a (guarded) downstream transport to an upstream one. A request the upstream cannot
 * take (it is gone) is answered with an error rather than left hanging, and so is every
 * request it had taken when it went away (it crashed mid-call, say): the caller gets a prompt
 * error with a receipt, and the audit log an error outcome, instead of a connection that just
 * closes (over HTTP, a client could wait out its whole request timeout for that).
 */
async function pump(downstream: Transport, upstream: Transport): Promise<{ closed: Promise<void>; close: () => void }> {
  let done!: () => void;
  const closed = new Promise<void>((resolve) => (done = resolve));
  /**
   * Requests forwarded upstream and not answered yet, matched to the upstream's answers as an
   * SDK client matches them (an upstream that answers "1" for 1 answers 1), and passed down
   * under the request's own id: the guard's hooks find the call by that id, so the answer gets
   * its receipt and audit entry instead of going down bare.
   */
  const pending = new PendingRequests<true>();
  const fail = (id: RequestId, why: string): Promise<void> =>
    downstream.send({ jsonrpc: "2.0", id, error: { code: -32603, message: `upstream unavailable: ${why}` } }).catch(() => undefined);
  let closing = false;
  const closeBoth = (upstreamGone: boolean): void => {
    if (closing) return;
    closing = true;
    const answered = upstreamGone ? Promise.allSettled([...pending.values()].map(({ id }) => fail(id, "it closed before answering"))) : Promise.resolve();
    pending.clear();
    void answered.then(() => Promise.allSettled([downstream.close(), upstream.close()])).then(() => done());
  };
  // Progress notifications answer a request: sent with its ID, a Streamable HTTP listener puts
  // them on that request's stream, in order before its result. Without it they went to the
  // standalone stream, where the last could arrive after the result (and be dropped by the
  // client), or nowhere if the client had no standalone stream open.
  const progress = new Map<ProgressToken, RequestId>();
  const tokenOf = new Map<RequestId, ProgressToken>();
  // The proxy is the upstream's client: after initialize it must send the negotiated version
  // (an HTTP upstream takes it from the MCP-Protocol-Version header), as the SDK's Client does.
  const inits = new Set<RequestId>();
  downstream.onmessage = (message: JSONRPCMessage) => {
    if (isRequest(message)) {
      if (message.method === "initialize") inits.add(message.id);
      const token = message.params?._meta?.progressToken;
      if (token !== undefined) {
        progress.set(token, message.id);
        tokenOf.set(message.id, token);
      }
      pending.set(message.id, true);
    } else if (isNotification(message) && message.method === "notifications/cancelled") {
      // A cancelled request may never be answered (the specification says not to): forget it.
      pending.delete(message.params?.requestId as RequestId);
    }
    upstream.send(message).catch((e: unknown) => {
      if (isRequest(message) && pending.delete(message.id)) void fail(message.id, (e as Error)?.message ?? String(e));
    });
  };
  upstream.onmessage = (received: JSONRPCMessage) => {
    let message = received;
    if (isResponse(message)) {
      const request = pending.take(message.id);
      if (request !== undefined && request.id !== message.id) message = { ...message, id: request.id } as JSONRPCMessage;
    }
    let related: RequestId | undefined;
    if (isNotification(message) && message.method === "notifications/progress") related = progress.get(message.params?.progressToken as ProgressToken);
    if (isResultResponse(message) && inits.delete(message.id) && typeof message.result.protocolVersion === "string") {
      upstream.setProtocolVersion?.(message.result.protocolVersion);
    }
    if (isResponse(message)) {
      const token = message.id === undefined ? undefined : tokenOf.get(message.id);
      if (token !== undefined && message.id !== undefined) {
        tokenOf.delete(message.id);
        progress.delete(token);
      }
    }
    downstream.send(message, related !== undefined ? { relatedRequestId: related } : undefined).catch(() => undefined);
  };
  downstream.onclose = () => closeBoth(false);
  upstream.onclose = () => closeBoth(true);
  downstream.onerror = () => undefined;
  upstream.onerror = () => undefined;
  await upstream.start();
  await downstream.start();
  return { closed, close: () => closeBoth(false) };
}

export async function startMcpProxy(options: McpProxyOptions): Promise<McpProxy> {
  if (!options.upstream || (!("url" in options.upstream) && !options.upstream.command)) {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, "the proxy needs an upstream: { command, args } or { url }");
  }
  const secured = await options.client.secureConnect({ proxy: options.name }, options.name);
  const identity = secured.identity;
  const authority = await options.client.authority();
  const audit = await auditFor(identity, options.audit, "aztp mcp proxy");
  const attached = (): readonly PolicyDocument[] | undefined => {
    const docs = authority.policiesOf(identity.spiffeId);
    return docs.length > 0 ? docs : undefined;
  };
  if (options.policy === undefined) sayIfOpen(identity, attached() === undefined);
  const guard = new CalleeGuard({
    identity,
    trust: await options.client.trust(),
    mode: options.mode ?? "enforce",
    side: "proxy",
    ...(audit ? { audit } : {}),
    policy: options.policy ?? attached,
    relations: (id) => authority.relations(id),
  });
  const guarded = (t: Transport): Transport => new InterceptingTransport(t, serverHooks(guard, identity, options));

  if (options.listen === undefined || options.listen === "stdio") {
    const joined = await pump(guarded(new StdioServerTransport()), upstreamTransport(options.upstream));
    // StdioServerTransport never notices its client leaving: stdin ending is that, and it must
    // stop the proxy and its upstream (else both run on until someone signals them).
    const clientGone = (): void => joined.close();
    process.stdin.once("end", clientGone);
    void joined.closed.then(() => process.stdin.off("end", clientGone));
    return {
      identity,
      guard,
      audit,
      url: undefined,
      closed: joined.closed,
      async close() {
        joined.close();
        await joined.closed;
        await guard.flush();
      },
    };
  }

  const upstreams = new Set<Transport>();
  let stop!: () => void;
  const closed = new Promise<void>((resolve) => (stop = resolve));
  const http: McpHttpServer = await serveMcpHttp(
    options.listen,
    async (transport) => {
      const up = upstreamTransport(options.upstream);
      upstreams.add(up);
      void (await pump(guarded(transport), up)).closed.then(() => upstreams.delete(up));
    },
    options.allowedHosts ? { allowedHosts: options.allowedHosts } : {},
  );
  return {
    identity,
    guard,
    audit,
    url: http.url,
    closed,
    async close() {
      await http.close();
      await Promise.allSettled([...upstreams].map((u) => u.close()));
      await guard.flush();
      stop();
    },
  };
}
