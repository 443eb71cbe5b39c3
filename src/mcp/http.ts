/**
 * Serving MCP over Streamable HTTP on node:http, one transport per session, with the DNS
 * rebinding defence of the SDK's createMcpExpressApp: the Host header must name an allowed
 * host (by default the loopback names), and a browser's Origin, when sent, must too.
 *
 * Sessions are bounded. A client that goes away without DELETE (a crash, a dropped laptop)
 * would otherwise leave its session, and the server connected to it, in memory for good, and
 * anyone who can reach the port could open sessions until memory ran out. So a session with no
 * request or stream open for `sessionIdleMs` is closed, and at `maxSessions` a new one takes the
 * place of the longest-idle one, or is refused with 503 if every session is in use. The MCP
 * specification allows a server to end a session at any time: the client's next request gets
 * 404, which the specification tells it to answer by starting a new session.
 *
 * Each request is handled in a scope that names its peer's address, which the secured server's
 * hooks (and the proxy's) put in the policy context as `aztp:sourceIp` (peer.ts).
 *
 * With `authorizationServers` it is an OAuth 2.1 resource server as well (resource-gate.ts): its
 * Protected Resource Metadata at `/.well-known/oauth-protected-resource` plus the resource's
 * path (and at the root), bearer access tokens checked on every request that carries one, and
 * 401 with `WWW-Authenticate` for a request that needs a credential and carries none. Each
 * tools/call it refuses so is recorded first by the serving identity's guard (`guard`), which it
 * does not start without.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../client/aztp.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { ProtectedResource } from "../oauth/protected-resource.js";
import { servingRequest } from "./peer.js";
import {
  authInfoOf,
  behindGate,
  resourceGateFor,
  type GateAnswer,
  type McpResourceGate,
  type McpResourceServerOptions,
  type ResourceGuardOption,
} from "./resource-gate.js";

/**
 * With `authorizationServers`, the server is also an OAuth 2.1 resource server (resource-gate.ts):
 * it serves its Protected Resource Metadata, accepts bearer access tokens as its callers'
 * authentication, and answers a request with no credential where one is needed with 401.
 */
export interface McpHttpOptions extends McpResourceServerOptions {
  /**
   * The aztp client whose authority's tokens are checked offline from its bundle, and whose
   * revocations apply to their subjects (needed for `authorizationServers: true`).
   */
  client?: Aztp | undefined;
  /**
   * With `authorizationServers`, required: who records the tools/call requests the gate refuses
   * (401, 403) before any session sees them. `{ identity }`: the identity the sessions serve as,
   * with `audit` (and `mode`) as its secured servers take them, so that the refusals are in the
   * log their calls are; or that identity's `CalleeGuard`. Without it the server does not start
   * (ERR_MCP_RESOURCE_GUARD_MISSING).
   */
  guard?: ResourceGuardOption | undefined;
  /** Host names accepted in Host and Origin (default: localhost, 127.0.0.1, [::1] and the listen host). */
  allowedHosts?: string[];
  /** Path served (default /mcp). */
  path?: string;
  /** Largest request body accepted (default 4 MiB). */
  maxBodyBytes?: number;
  /** A session with nothing open for this long is closed (default 30 minutes). */
  sessionIdleMs?: number;
  /** Most sessions at once (default 1,000). */
  maxSessions?: number;
}

interface Session {
  readonly transport: StreamableHTTPServerTransport;
  /** Requests and streams of this session still open (an SSE GET stream stays open). */
  open: number;
  /** When the last of them opened or closed. */
  lastSeen: number;
}

const DEFAULT_SESSION_IDLE_MS = 30 * 60 * 1000;
const DEFAULT_MAX_SESSIONS = 1000;

export interface McpHttpServer {
  readonly url: URL;
  /** As an OAuth resource server (with `authorizationServers`): its resource and metadata. */
  readonly protectedResource: ProtectedResource | undefined;
  readonly sessions: number;
  /** Sessions with no request or stream open: the ones closed when idle too long, or replaced. */
  readonly idleSessions: number;
  close(): Promise<void>;
}

/**
 * The SDK's own default Host names (its createMcpExpressApp's): an allow-list compared by name,
 * against DNS rebinding, and not the loopback predicate (net/loopback.ts), which decides where
 * plain HTTP may go and reads every spelling of an address.
 */
const LOOPBACK = ["localhost", "127.0.0.1", "[::1]"];

/** The host names accepted when none are given: the loopback names and the listen host. */
export function defaultAllowedHosts(listen: URL | string): string[] {
  return [...new Set([...LOOPBACK, new URL(listen).hostname])];
}

function write(res: ServerResponse, answer: GateAnswer): void {
  if (res.headersSent) return;
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

function send(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return;
  res
    .writeHead(status, { "content-type": "application/json" })
    .end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32000, message }, id: null }));
}

function hostAllowed(value: string | undefined, allowed: readonly string[], withScheme: boolean): boolean {
  // No Host is refused; no Origin is a non-browser client, which DNS rebinding cannot drive.
  if (value === undefined) return withScheme;
  try {
    const url = new URL(withScheme ? value : `http://${value}`);
    if (withScheme && url.protocol !== "http:" && url.protocol !== "https:") return false;
    return allowed.includes(url.hostname);
  } catch {
    return false;
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** `transport` handles one request, whose messages its hooks see as from the request's peer (peer.ts). */
function serve(
  transport: StreamableHTTPServerTransport,
  req: IncomingMessage,
  res: ServerResponse,
  body?: unknown,
): Promise<void> {
  return servingRequest(transport, req.socket.remoteAddress, () => transport.handleRequest(req, res, body));
}

/**
 * Listens on `listen` (an http://host:port URL; port 0 picks one) and, for each new MCP
 * session, gives `onSession` a fresh server transport to connect (a secured McpServer, or the
 * proxy's pump). Sessions end when their transport closes.
 */
export async function serveMcpHttp(
  listen: URL | string,
  onSession: (transport: StreamableHTTPServerTransport) => Promise<void>,
  options: McpHttpOptions = {},
): Promise<McpHttpServer> {
  const url = new URL(listen);
  if (url.protocol !== "http:")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `listen URL must be http://host:port, got ${url.href}`);
  const path = options.path ?? (url.pathname === "/" ? "/mcp" : url.pathname);
  const allowed = options.allowedHosts ?? defaultAllowedHosts(url);
  const limit = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const idleMs = options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS;
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  if (!(idleMs > 0) || !Number.isInteger(maxSessions) || maxSessions < 1) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "sessionIdleMs must be positive and maxSessions a whole number of at least 1",
    );
  }
  const sessions = new Map<string, Session>();
  let starting = 0; // initialize requests admitted whose session is not in `sessions` yet

  /** Counts `res` as open on `session` until it closes (for a stream, when the client leaves). */
  const track = (session: Session, res: ServerResponse): void => {
    session.open++;
    session.lastSeen = Date.now();
    res.once("close", () => {
      session.open--;
      session.lastSeen = Date.now();
    });
  };

  /**
   * Reserves a place for one more session, closing the one idle longest if all are taken;
   * false if every session is in use. The place is taken before any await, so concurrent
   * initializes cannot overshoot the limit.
   */
  const reserve = async (): Promise<boolean> => {
    if (sessions.size + starting < maxSessions) {
      starting++;
      return true;
    }
    let victim: Session | undefined;
    for (const s of sessions.values())
      if (s.open === 0 && (victim === undefined || s.lastSeen < victim.lastSeen)) victim = s;
    if (victim === undefined) return false;
    starting++;
    if (victim.transport.sessionId) sessions.delete(victim.transport.sessionId);
    await victim.transport.close().catch(() => undefined);
    return true;
  };

  const sweep = (): void => {
    const now = Date.now();
    for (const s of [...sessions.values()])
      if (s.open === 0 && now - s.lastSeen >= idleMs) void s.transport.close().catch(() => undefined);
  };
  // Unref'd: an idle sweep must not keep a process alive that has nothing else to do.
  const sweeper = setInterval(sweep, Math.max(10, Math.min(idleMs / 2, 60_000)));
  sweeper.unref();

  let gate: McpResourceGate | undefined;
  let metadataPaths: ReadonlySet<string> = new Set();

  /**
   * Whether the request may go on as far as its credential goes (resource-gate.ts); if not, it
   * has been answered, once the tools/call requests in it were recorded. A verified bearer token
   * goes to the transport as the request's `auth`, which the SDK hands to the hooks with each
   * message (`extra.authInfo`).
   */
  const admitted = async (g: McpResourceGate, req: IncomingMessage, res: ServerResponse, body: unknown) => {
    const decision = await g.check(req.headers.authorization, body);
    if (!decision.pass) {
      write(res, await g.refuse(decision, body));
      return false;
    }
    if (decision.bearer !== undefined)
      (req as IncomingMessage & { auth?: AuthInfo }).auth = authInfoOf(decision.bearer, g.protectedResource.resource);
    return true;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!hostAllowed(req.headers.host, allowed, false))
      return send(res, 403, `Invalid Host: ${String(req.headers.host)}`);
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    // Public metadata, read by browser-based clients too: served whatever the Origin.
    if (gate !== undefined && (req.method === "GET" || req.method === "HEAD") && metadataPaths.has(pathname))
      return write(res, gate.metadataAnswer());
    if (!hostAllowed(req.headers.origin, allowed, true))
      return send(res, 403, `Invalid Origin: ${String(req.headers.origin)}`);
    if (pathname !== path) return send(res, 404, "Not found");
    const sid = req.headers["mcp-session-id"];
    const existing = typeof sid === "string" ? sessions.get(sid) : undefined;
    if (existing) track(existing, res); // from the start, so the body upload counts as activity
    if (req.method !== "POST") {
      if (!existing)
        return send(
          res,
          typeof sid === "string" ? 404 : 400,
          typeof sid === "string" ? "Session not found" : "Missing session ID",
        );
      if (gate !== undefined && !(await admitted(gate, req, res, undefined))) return;
      return serve(existing.transport, req, res);
    }
    let body: unknown;
    try {
      body = await readBody(req, limit);
    } catch (e) {
      return send(
        res,
        e instanceof AztpError ? 413 : 400,
        e instanceof AztpError ? e.message : "Parse error: body is not JSON",
      );
    }
    if (gate !== undefined && !(await admitted(gate, req, res, body))) return;
    if (existing) return serve(existing.transport, req, res, body);
    if (typeof sid === "string") return send(res, 404, "Session not found");
    if (!isInitializeRequest(body))
      return send(res, 400, "Bad Request: no valid session ID, and not an initialize request");
    if (!(await reserve())) {
      res.setHeader("retry-after", "5");
      return send(res, 503, `Too many sessions: all ${maxSessions} are in use`);
    }
    let reserved = true;
    const release = (): void => {
      if (reserved) starting--;
      reserved = false;
    };
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        release();
        const session: Session = { transport, open: 0, lastSeen: Date.now() };
        sessions.set(id, session);
        track(session, res);
      },
    });
    // A secured server that connects to it must record as the gate's guard does (resource-gate.ts).
    if (gate !== undefined) behindGate(transport, gate.guard);
    try {
      await onSession(transport);
      // After onSession: connecting installs the transport's onclose (an InterceptingTransport
      // replaces it outright), so a handler set before would be lost and sessions never dropped.
      const closed = transport.onclose;
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
        closed?.();
      };
      await serve(transport, req, res, body);
    } finally {
      release(); // an initialize that never made a session (refused, failed) frees its place
    }
  };

  const server: HttpServer = createServer((req, res) => {
    handle(req, res).catch((e: unknown) =>
      send(
        res,
        500,
        e instanceof AztpError
          ? `Internal error [${e.code}]: ${e.message}`
          : `Internal error: ${(e as Error)?.message ?? String(e)}`,
      ),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(url.port || 0), url.hostname.replace(/^\[|\]$/g, ""), () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const bound = new URL(`http://${url.hostname}:${port}${path}`);
  try {
    // Built once the port is known: the resource is, by default, this endpoint's URL.
    gate = await resourceGateFor(options, bound.href, "serveMcpHttp");
  } catch (e) {
    clearInterval(sweeper);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw e;
  }
  if (gate !== undefined) metadataPaths = new Set(gate.protectedResource.metadataPaths(path));
  return {
    url: bound,
    protectedResource: gate?.protectedResource,
    get sessions() {
      return sessions.size;
    },
    get idleSessions() {
      let n = 0;
      for (const s of sessions.values()) if (s.open === 0) n++;
      return n;
    },
    async close() {
      clearInterval(sweeper);
      for (const s of [...sessions.values()]) await s.transport.close().catch(() => undefined);
      sessions.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await gate?.guard.flush();
    },
  };
}
