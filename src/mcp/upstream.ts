/**
 * The MCP server a proxy or a bridge forwards to, its upstream: spawned over stdio, or reached
 * over Streamable HTTP. How a connection to it is made, how its failures are told, and the
 * start-up probe that finds an upstream that cannot serve before any client does.
 */
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  type StreamableHTTPClientTransportOptions,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { FetchLike, Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, RequestId } from "@modelcontextprotocol/sdk/types.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isRequest } from "./message.js";
import { aztpCodeOf } from "./meta.js";
import type { UpstreamOAuth } from "./oauth-client.js";
import { commandLine, UpstreamProcessTransport } from "./upstream-process.js";

export type Upstream =
  { command: string; args?: string[]; env?: Record<string, string>; cwd?: string } | { url: string };

/** How long closing an HTTP upstream waits for its session's DELETE before it lets go. */
const TERMINATE_WAIT_MS = 2_000;

/** How to reach an HTTP upstream: the SDK transport's options, and the bridge's OAuth client when it has one. */
export interface UpstreamHttpOptions extends StreamableHTTPClientTransportOptions {
  /** Authorize when the upstream asks for OAuth (oauth-client.ts): its provider, its guarded fetch. */
  oauth?: UpstreamOAuth | undefined;
}

/**
 * A Streamable HTTP upstream that ends its session when it is closed (DELETE, as the
 * specification asks of a client that leaves): without it, every session a proxy or bridge
 * closed stayed open on the upstream until the upstream's own idle timeout. With `oauth`, the
 * SDK's own authorization runs on that provider, and a send that fails for the authorization
 * says so (ERR_OAUTH_*), not as a server that cannot be reached.
 */
export class UpstreamHttpTransport extends StreamableHTTPClientTransport {
  readonly #oauth: UpstreamOAuth | undefined;

  constructor(url: URL, options: UpstreamHttpOptions = {}) {
    const { oauth, ...rest } = options;
    super(url, oauth === undefined ? rest : { ...rest, authProvider: oauth, fetch: oauth.guard(rest.fetch ?? fetch) });
    this.#oauth = oauth;
  }

  override async send(
    message: JSONRPCMessage | JSONRPCMessage[],
    options?: Parameters<StreamableHTTPClientTransport["send"]>[1],
  ): Promise<void> {
    const oauth = this.#oauth;
    if (oauth === undefined) return super.send(message, options);
    const mark = oauth.mark();
    const saved = oauth.savedTokens();
    try {
      await super.send(message, options);
    } catch (e) {
      // A person's authorization (authorization code) completes inside the SDK's `auth()`, which
      // still answers "REDIRECT", so the transport gives up on this request: sent once more with
      // the token it now has.
      if (!(e instanceof UnauthorizedError) || oauth.savedTokens() === saved) throw oauth.failure(e, mark);
      try {
        await super.send(message, options);
      } catch (again) {
        throw oauth.failure(again, mark);
      }
    }
  }

  override async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.terminateSession().catch(() => undefined),
      new Promise((resolve) => (timer = setTimeout(resolve, TERMINATE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    await super.close();
  }
}

/**
 * A connection to the upstream; a spawned one's stderr goes on to ours unless `forwardStderr`
 * is false (a probe's). `http` adds options to an HTTP one (a fetch that watches its streams).
 */
export function upstreamTransport(
  upstream: Upstream,
  forwardStderr = true,
  http: UpstreamHttpOptions = {},
): UpstreamHttpTransport | UpstreamProcessTransport {
  if ("url" in upstream) return new UpstreamHttpTransport(new URL(upstream.url), http);
  return new UpstreamProcessTransport({
    command: upstream.command,
    args: upstream.args ?? [],
    env: upstream.env ?? {},
    ...(upstream.cwd ? { cwd: upstream.cwd } : {}),
    forwardStderr,
  });
}

/** The ids of the requests in a POST body as the SDK's client sends it (one message, or a batch). */
function requestIds(body: unknown): RequestId[] {
  if (typeof body !== "string") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return [];
  }
  const ids: RequestId[] = [];
  for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
    const o = m as { method?: unknown; id?: unknown };
    if (typeof o?.method === "string" && (typeof o.id === "string" || typeof o.id === "number")) ids.push(o.id);
  }
  return ids;
}

/**
 * A fetch for a Streamable HTTP upstream that tells when the event stream answering a POST of
 * requests has ended (the server closed it, or the connection broke), with those requests'
 * ids. The SDK's client transport says nothing then (it resumes a stream only when the server
 * gave its events ids), so a request whose server died mid-call would wait for ever; its owner
 * can now answer it at once. `ended` is called a turn later, once every event the stream held
 * has been handed on: an id whose answer came is answered by then.
 */
export function watchResponseStreams(ended: (ids: RequestId[]) => void, base: FetchLike = fetch): FetchLike {
  return async (url, init) => {
    const response = await base(url, init);
    const type = response.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
    if (init?.method !== "POST" || !response.ok || response.body === null || type !== "text/event-stream")
      return response;
    const ids = requestIds(init.body);
    if (ids.length === 0) return response;
    const reader = response.body.getReader();
    let told = false;
    const tell = (): void => {
      if (told) return;
      told = true;
      setImmediate(() => ended(ids));
    };
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            controller.close();
            tell();
          } else controller.enqueue(value);
        } catch (e) {
          controller.error(e);
          tell();
        }
      },
      cancel(reason) {
        told = true; // the transport itself let go (it is closing): nothing to tell
        return reader.cancel(reason);
      },
    });
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

/** A connection to the upstream whose requests are told of when their answer will never come (see `watchedUpstream`). */
export interface WatchedUpstream {
  readonly transport: UpstreamHttpTransport | UpstreamProcessTransport;
  /** For join's `sendOptions`: an HTTP request whose events carry ids is resumed by the SDK, and not told of. */
  readonly sendOptions?: (message: JSONRPCMessage) => TransportSendOptions | undefined;
  /** Request `id` has its answer: forget it. */
  answered(id: RequestId): void;
}

/**
 * A connection to the upstream for a proxy or a bridge, on which no request waits for ever:
 * a spawned upstream that exits closes the transport (join answers every pending request), and
 * an HTTP one tells `lost` of each request whose event stream ended unanswered
 * (`watchResponseStreams`), unless the SDK resumes that stream itself (its events had ids). The
 * owner answers `lost` requests that are still waiting (join's `abandon`).
 */
export function watchedUpstream(
  upstream: Upstream,
  lost: (id: RequestId) => void,
  oauth?: UpstreamOAuth,
): WatchedUpstream {
  if (!("url" in upstream)) return { transport: upstreamTransport(upstream), answered: () => undefined };
  const resumable = new Set<RequestId>();
  const ended = (ids: RequestId[]): void => {
    for (const id of ids) if (!resumable.delete(id)) lost(id);
  };
  return {
    transport: upstreamTransport(upstream, true, { fetch: watchResponseStreams(ended), oauth }),
    sendOptions: (m) => (isRequest(m) ? { onresumptiontoken: () => resumable.add(m.id) } : undefined),
    answered: (id) => resumable.delete(id),
  };
}

/** The upstream as people read it in messages: its URL, or its command line. */
export function describeUpstream(upstream: Upstream): string {
  if ("url" in upstream) return new URL(upstream.url).href;
  return commandLine(upstream.command, upstream.args);
}

/** How a spawned upstream ended, and what it printed last, for ERR_MCP_UPSTREAM_FAILED. */
export function upstreamEnded(up: UpstreamProcessTransport, when: string): AztpError {
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

/** An error's message with its cause's code (fetch says only "fetch failed"; the cause says ECONNREFUSED). */
export function describeError(e: unknown): string {
  const message = (e as Error)?.message ?? String(e);
  const cause = (e as { cause?: { code?: unknown; message?: unknown } })?.cause;
  const detail =
    typeof cause?.code === "string" ? cause.code : typeof cause?.message === "string" ? cause.message : undefined;
  return detail && !message.includes(detail) ? `${message} (${detail})` : message;
}

/**
 * The start-up probe: connects to the upstream as an MCP client (initialize, initialized),
 * then closes that connection (for an HTTP upstream, its session too). Costs one start of a
 * spawned upstream, or one session on an HTTP one, once per start. `wrap` puts a layer
 * between the probe's client and the upstream (the bridge's secured client side, which has the
 * server prove its identity): a refusal of that layer is thrown with its own code.
 */
export async function probeUpstream(
  upstream: Upstream,
  timeoutMs: number,
  wrap: (transport: Transport) => Transport = (t) => t,
  http: UpstreamHttpOptions = {},
): Promise<void> {
  const transport = upstreamTransport(upstream, false, http);
  const client = new Client({ name: "aztp-upstream-probe", version: "1.0.0" });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`it did not answer initialize within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  try {
    await Promise.race([client.connect(wrap(transport)), late]);
  } catch (e) {
    if (e instanceof AztpError) throw e; // cannot be spawned: already says so
    const data = (e as { data?: { message?: unknown } })?.data;
    const code = aztpCodeOf(data);
    if (code !== undefined)
      throw new AztpError(
        code,
        `the upstream MCP server (${describeUpstream(upstream)}) was refused at initialize: ${typeof data?.message === "string" ? data.message : describeError(e)}`,
      );
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
    await client.close().catch(() => undefined);
  }
}
