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
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
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
import { join, reasonOf, type Joined } from "./join.js";
import { servingGuard } from "../guard/serving-guard.js";
import { serverHooks } from "./server.js";
import {
  describeUpstream,
  probeUpstream,
  upstreamEnded,
  watchedUpstream,
  type Upstream,
  type WatchedUpstream,
} from "./upstream.js";
import { UpstreamProcessTransport } from "./upstream-process.js";

export type { Upstream } from "./upstream.js";

/**
 * Listening on HTTP, the proxy can be an OAuth 2.1 resource server too (resource-gate.ts):
 * `authorizationServers`, `resource`, `scopes`, `openMethods`. Bearer tokens end at the proxy:
 * the upstream never sees one (the MCP authorization spec: a server must not pass tokens on).
 * The tools/call requests its gate refuses are recorded by the proxy's own guard.
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

/**
 * Joins a (guarded) downstream transport to a new connection to the upstream. A request the
 * upstream cannot answer (it exited, its HTTP event stream for the request ended unanswered, the
 * request could not be sent) gets the JSON-RPC error `upstream unavailable: <why>` at once,
 * which the downstream's hooks receipt and audit as an error outcome.
 */
async function pump(
  downstream: Transport,
  upstream: Upstream,
): Promise<{ joined: Joined; up: WatchedUpstream["transport"] }> {
  let joined: Joined | undefined;
  // Without this, a call whose HTTP upstream died under its event stream waited for ever: the
  // SDK's client transport says nothing when such a stream ends (join.ts answers only on close).
  const watched = watchedUpstream(upstream, (id) =>
    joined?.abandon(
      id,
      `the upstream at ${describeUpstream(upstream)} closed the stream of this request before answering it (it stopped, or the connection broke)`,
    ),
  );
  joined = await join(downstream, watched.transport, {
    ...(watched.sendOptions ? { sendOptions: watched.sendOptions } : {}),
    toDownstream: (answer, request) => {
      watched.answered(request.id);
      return answer;
    },
    unavailable: ({ id }, why): JSONRPCMessage => ({
      jsonrpc: "2.0",
      id,
      error: { code: -32603, message: `upstream unavailable: ${reasonOf(why)}` },
    }),
  });
  return { joined, up: watched.transport };
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
    const { joined, up } = await pump(guarded(new StdioServerTransport()), options.upstream);
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
      const { joined, up } = await pump(guarded(transport), options.upstream);
      upstreams.add(up);
      void joined.closed.then(() => upstreams.delete(up));
    },
    {
      ...(options.allowedHosts ? { allowedHosts: options.allowedHosts } : {}),
      client: options.client,
      // Its gate's refusals are the proxy's: recorded by its guard, in its log, side "proxy".
      guard,
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
