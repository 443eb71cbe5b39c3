/**
 * The MCP proxy: a secured MCP server in front of an unmodified upstream server (spawned over
 * stdio, or reached over Streamable HTTP). It forwards JSON-RPC messages both ways, so every
 * MCP feature passes through untouched, but only tools/call requests that the one verifier
 * admitted reach the upstream; answers carry receipts, both outcomes are audited.
 *
 * Each downstream session gets its own upstream connection (MCP sessions are stateful), and
 * a spawned upstream gets only the environment it needs: the SDK's safe default set plus what
 * the operator names, never this process's own variables (keys, AZTP_*).
 *
 * An upstream that cannot serve is reported at start, not left to each caller to find out
 * (the proxy used to exit 0 without a word when its upstream exited at start):
 * - listening on stdio with a spawned upstream, there is exactly one upstream, spawned at
 *   start, and it is the one the client talks to: it is not spawned a second time to be
 *   probed (that could have side effects, and costs a start-up). It is watched instead: if it
 *   exits while the client is still connected, at any time, the proxy stops and `closed`
 *   resolves with ERR_MCP_UPSTREAM_FAILED saying how it ended, whether it had answered initialize
 *   yet, and the end of its stderr. No time window is involved.
 * - listening on HTTP, an upstream is made per session, so nothing would run until a client
 *   came: the proxy probes it at start (spawns it once, or reaches the URL, and completes an
 *   MCP initialize with it, then closes that session) and does not listen if that fails.
 * - an --upstream-url is probed the same way at start on stdio too (HTTP reaches nothing until
 *   the first request).
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, ProgressToken, RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { CalleeGuard, GuardMode } from "../guard/callee.js";
import type { AuditWriter } from "../audit/writer.js";
import type { PolicyDocument } from "../policy/policy.js";
import { serveMcpHttp, type McpHttpServer } from "./http.js";
import type { McpResourceServerOptions } from "./resource-gate.js";
import type { ProtectedResource } from "../oauth/protected-resource.js";
import { InterceptingTransport } from "./intercept.js";
import { isNotification, isRequest, isResponse, isResultResponse, PendingRequests } from "./message.js";
import { servingGuard } from "../guard/serving-guard.js";
import { serverHooks } from "./server.js";
import { UpstreamProcessTransport } from "./upstream-process.js";

export type Upstream =
  { command: string; args?: string[]; env?: Record<string, string>; cwd?: string } | { url: string };

/**
 * Listening on HTTP, the proxy can be an OAuth 2.1 resource server too (resource-gate.ts):
 * `authorizationServers`, `resource`, `scopes`, `openMethods`. Bearer tokens end at the proxy:
 * the upstream never sees one (the MCP authorization spec: a server must not pass tokens on).
 */
export interface McpProxyOptions extends McpResourceServerOptions {
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
  /**
   * How long the start-up probe waits for the upstream to answer initialize (default 60 s: `npx -y`
   * may download first).
   */
  upstreamStartTimeoutMs?: number;
}

export interface McpProxy {
  readonly identity: AgentIdentity;
  readonly guard: CalleeGuard;
  /** The log its calls are recorded in (undefined with `audit: false`). */
  readonly audit: AuditWriter | undefined;
  /** The HTTP endpoint when listening on HTTP. */
  readonly url: URL | undefined;
  /** As an OAuth resource server (listening on HTTP with `authorizationServers`): its metadata. */
  readonly protectedResource: ProtectedResource | undefined;
  /**
   * Resolves when the proxy has stopped (stdio: when either side closes): with
   * ERR_MCP_UPSTREAM_FAILED when its upstream ended it (exited while a stdio client was still
   * connected), with undefined when the client left or close() was called.
   */
  readonly closed: Promise<AztpError | undefined>;
  close(): Promise<void>;
}

/** A connection to the upstream; a spawned one's stderr goes on to ours unless it is a probe's. */
function upstreamTransport(
  upstream: Upstream,
  forwardStderr = true,
): StreamableHTTPClientTransport | UpstreamProcessTransport {
  if ("url" in upstream) return new StreamableHTTPClientTransport(new URL(upstream.url));
  return new UpstreamProcessTransport({
    command: upstream.command,
    args: upstream.args ?? [],
    env: upstream.env ?? {},
    ...(upstream.cwd ? { cwd: upstream.cwd } : {}),
    forwardStderr,
  });
}

/** How a spawned upstream ended, and what it printed last, for ERR_MCP_UPSTREAM_FAILED. */
function upstreamEnded(up: UpstreamProcessTransport, when: string): AztpError {
  const end = up.end;
  const how =
    end === undefined
      ? "closed its output"
      : end.signal
        ? `was killed by ${end.signal}`
        : `exited with code ${end.code}`;
  const tail = up.stderrTail().trimEnd();
  const printed = tail ? `; the end of its stderr:\n${tail}` : "; it wrote nothing to stderr";
  return new AztpError(
    ErrorCodes.MCP_UPSTREAM_FAILED,
    `the upstream MCP server (${up.commandLine}) ${how} ${when}${printed}`,
  );
}

/**
 * The start-up probe: connects to the upstream as an MCP client (initialize, initialized),
 * then closes that connection (for an HTTP upstream, its session too). Costs one start of a
 * spawned upstream, or one session on an HTTP one, once per proxy start.
 */
async function probeUpstream(upstream: Upstream, timeoutMs: number): Promise<void> {
  const transport = upstreamTransport(upstream, false);
  const client = new Client({ name: "aztp-proxy-probe", version: "1.0.0" });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it did not answer initialize within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    await Promise.race([client.connect(transport), late]);
  } catch (e) {
    if (e instanceof AztpError) throw e; // cannot be spawned: already says so
    if (transport instanceof UpstreamProcessTransport) {
      if (transport.end === undefined)
        await Promise.race([transport.ended, new Promise((r) => setTimeout(r, 2_000).unref())]);
      if (transport.end !== undefined) throw upstreamEnded(transport, "at start, before it answered initialize");
      const tail = transport.stderrTail().trimEnd();
      throw new AztpError(
        ErrorCodes.MCP_UPSTREAM_FAILED,
        `the upstream MCP server (${transport.commandLine}) failed at start: ${describeError(e)}${tail ? `; the end of its stderr:\n${tail}` : ""}`,
        { cause: e },
      );
    }
    throw new AztpError(
      ErrorCodes.MCP_UPSTREAM_FAILED,
      `the upstream MCP server at ${(upstream as { url: string }).url} cannot be reached: ${describeError(e)}`,
      { cause: e },
    );
  } finally {
    clearTimeout(timer);
    if (transport instanceof StreamableHTTPClientTransport) await transport.terminateSession().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

/** An error's message with its cause's code (fetch says only "fetch failed"; the cause says ECONNREFUSED). */
function describeError(e: unknown): string {
  const message = (e as Error)?.message ?? String(e);
  const cause = (e as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const detail =
    typeof cause?.code === "string" ? cause.code : typeof cause?.message === "string" ? cause.message : undefined;
  return detail && !message.includes(detail) ? `${message} (${detail})` : message;
}

/**
 * Joins a (guarded) downstream transport to an upstream one. A request the upstream cannot
 * take (it is gone) is answered with an error rather than left hanging, and so is every
 * request it had taken when it went away (it crashed mid-call, say): the caller gets a prompt
 * error with a receipt, and the audit log an error outcome, instead of a connection that just
 * closes (over HTTP, a client could wait out its whole request timeout for that).
 */
interface Pumped {
  /** Resolves once both sides are closed. */
  closed: Promise<void>;
  close: () => void;
  /** Whether the upstream has answered an initialize yet. */
  initialized: () => boolean;
}

async function pump(downstream: Transport, upstream: Transport): Promise<Pumped> {
  let done!: () => void;
  const closed = new Promise<void>((resolve) => (done = resolve));
  let initialized = false;
  /**
   * Requests forwarded upstream and not answered yet, matched to the upstream's answers as an
   * SDK client matches them (an upstream that answers "1" for 1 answers 1), and passed down
   * under the request's own id: the guard's hooks find the call by that id, so the answer gets
   * its receipt and audit entry instead of going down bare.
   */
  const pending = new PendingRequests<true>();
  const fail = (id: RequestId, why: string): Promise<void> =>
    downstream
      .send({ jsonrpc: "2.0", id, error: { code: -32603, message: `upstream unavailable: ${why}` } })
      .catch(() => undefined);
  let closing = false;
  const closeBoth = (upstreamGone: boolean): void => {
    if (closing) return;
    closing = true;
    const answered = upstreamGone
      ? Promise.allSettled([...pending.values()].map(({ id }) => fail(id, "it closed before answering")))
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
      if (request !== undefined && request.id !== message.id)
        message = { ...message, id: request.id } as JSONRPCMessage;
    }
    let related: RequestId | undefined;
    if (isNotification(message) && message.method === "notifications/progress")
      related = progress.get(message.params?.progressToken as ProgressToken);
    if (isResultResponse(message) && inits.delete(message.id) && typeof message.result.protocolVersion === "string") {
      initialized = true;
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
  return { closed, close: () => closeBoth(false), initialized: () => initialized };
}

export async function startMcpProxy(options: McpProxyOptions): Promise<McpProxy> {
  if (!options.upstream || (!("url" in options.upstream) && !options.upstream.command)) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "the proxy needs an upstream: { command, args } or { url }");
  }
  const listen = options.listen ?? "stdio";
  const stdio = listen === "stdio";
  if (
    stdio &&
    (options.authorizationServers !== undefined || options.resource !== undefined || options.scopes !== undefined)
  )
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "bearer tokens (authorizationServers, resource, scopes) are for a proxy listening on HTTP: over stdio a client is a local process (the MCP authorization spec does not apply), so sign its calls",
    );
  // See the top of this file: a spawned upstream on stdio is watched, everything else probed.
  if (!stdio || "url" in options.upstream)
    await probeUpstream(options.upstream, options.upstreamStartTimeoutMs ?? 60_000);
  const secured = await options.client.secureConnect({ proxy: options.name }, options.name);
  const identity = secured.identity;
  // Resolved here (not by servingGuard) because the proxy hands its log to whoever started it.
  const audit = await auditFor(identity, options.audit, "aztp mcp proxy");
  const guard = await servingGuard(identity, {
    trust: await options.client.trust(),
    authority: await options.client.authority(),
    policy: options.policy,
    mode: options.mode,
    audit: audit ?? false,
    side: "proxy",
    what: "aztp mcp proxy",
  });
  const guarded = (t: Transport): Transport =>
    new InterceptingTransport(
      t,
      serverHooks(guard, identity, { filterToolsByPolicy: options.filterToolsByPolicy, served: t }),
    );

  if (stdio) {
    const up = upstreamTransport(options.upstream);
    const joined = await pump(guarded(new StdioServerTransport()), up);
    // StdioServerTransport never notices its client leaving: stdin ending is that, and it must
    // stop the proxy and its upstream (else both run on until someone signals them).
    const clientGone = (): void => joined.close();
    process.stdin.once("end", clientGone);
    const closed = joined.closed.then(async () => {
      process.stdin.off("end", clientGone);
      await guard.flush();
      // The upstream failed if it exited before anyone closed it (it went first, or had gone
      // when the client left), or exited with an error code when it was closed: a client that
      // leaves at once (stdin at its end) must not hide an upstream that could not start.
      // Ended by our SIGTERM or SIGKILL after the grace time is not its failure.
      if (!(up instanceof UpstreamProcessTransport) || !(up.exitedOnItsOwn || (up.end?.code ?? 0) !== 0))
        return undefined;
      return upstreamEnded(
        up,
        joined.initialized() ? "while serving its client" : "before it answered initialize (at start)",
      );
    });
    return {
      identity,
      guard,
      audit,
      url: undefined,
      protectedResource: undefined,
      closed,
      async close() {
        joined.close();
        await closed;
      },
    };
  }

  const upstreams = new Set<Transport>();
  let stop!: () => void;
  const closed = new Promise<undefined>((resolve) => (stop = () => resolve(undefined)));
  const http: McpHttpServer = await serveMcpHttp(
    listen,
    async (transport) => {
      const up = upstreamTransport(options.upstream);
      upstreams.add(up);
      void (await pump(guarded(transport), up)).closed.then(() => upstreams.delete(up));
    },
    {
      ...(options.allowedHosts ? { allowedHosts: options.allowedHosts } : {}),
      client: options.client,
      authorizationServers: options.authorizationServers,
      resource: options.resource,
      scopes: options.scopes,
      openMethods: options.openMethods,
    },
  );
  return {
    identity,
    guard,
    audit,
    url: http.url,
    protectedResource: http.protectedResource,
    closed,
    async close() {
      await http.close();
      await Promise.allSettled([...upstreams].map((u) => u.close()));
      await guard.flush();
      stop();
    },
  };
}
