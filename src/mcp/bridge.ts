/**
 * The bridge: a host's signing stand-in. An MCP host that cannot sign (Claude Desktop, VS Code,
 * Cursor, the MCP Inspector) starts it as a stdio MCP server (or reaches it on a loopback HTTP
 * port); it forwards to a secured MCP server as a secured client of its own identity. It is the
 * proxy's mirror: the proxy joins a secured server side to an upstream, the bridge joins the
 * host's transport to a secured client side (`clientHooks`) on the upstream, message for
 * message (join.ts). So the server proves its identity at the host's initialize (the
 * challenge), every tools/call is signed as the bridge, every receipt is verified and the call
 * audited in the bridge's log, by the code `secureMcpClient` runs; everything else passes
 * through unchanged both ways, the server's requests to the host (sampling, elicitation,
 * roots) and the host's answers included.
 *
 * What the host sees of AZTP:
 * - a refused call (by the server: policy, revocation, ...; or by the bridge: a bad receipt, an
 *   unwritable audit log) is a tool result `{ content: [{ type: "text", text: "<CODE>: <reason>" }],
 *   isError: true }` under the call's id, which the model can read, not a JSON-RPC error the
 *   host would show as a failure of the server; an error without an AZTP code (an unknown tool,
 *   an unknown method) passes through as the protocol error it is;
 * - a call the server will not answer (it went away mid-call, or cannot be reached) gets such a
 *   result at once, ERR_MCP_UPSTREAM_FAILED, and is audited as unanswered; other requests get
 *   a JSON-RPC error;
 * - `_meta` keys of ours (`io.aztp/...`) in what the host sends are dropped: the bridge signs,
 *   and never forwards a token the host made as if it were its own.
 *
 * The server's identity: `expectedServer` when given; otherwise the bridge trusts on first use,
 * as SSH does: the first server it proves for an upstream is pinned in
 * `<home>/bridge/<name>.json` (per URL or command line) and every later connection must prove
 * the same ID (ERR_PEER_NOT_AUTHORIZED otherwise). Failing at start, as the proxy does: an
 * upstream URL is probed at start (reached, initialize, proof checked, pin learned, then its
 * session closed) before the host is read, so an unreachable or wrong server ends the bridge
 * with the reason; a spawned upstream is started once and watched (spawning it twice could have
 * side effects), and a proof it fails at the host's initialize ends the bridge the same way.
 *
 * A third-party server (one that does not speak AZTP: no proof at initialize, no receipts) is
 * refused, unless the bridge is told it is one (`unsecuredServer`, `--server-unsecured`), which
 * it says at start: then nothing is challenged or signed, no server is pinned, and every call is
 * still recorded in the bridge's audit log, with the receipt absent (client.ts). A server over
 * HTTP that asks for OAuth gets an access token (oauth-client.ts), secured or not: a secured one
 * that also takes bearer tokens sees the bridge's SPIFFE ID in both its signature and its token.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join as joinPath } from "node:path";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type {
  JSONRPCErrorResponse,
  JSONRPCMessage,
  JSONRPCResultResponse,
  RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import type { AuditWriter } from "../audit/writer.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { CallerGuard } from "../guard/caller.js";
import type { GuardMode } from "../guard/callee.js";
import { identify } from "../guard/identify.js";
import { Unanswered } from "../guard/recorder.js";
import { isJsonObject } from "../json/value.js";
import { makeDirs } from "../make-dirs.js";
import { isLoopbackHost } from "../net/loopback.js";
import type { Authorizer } from "../spiffe/authorizer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { clientHooks, ServerBinding } from "./client.js";
import { serveMcpHttp, type McpHttpServer } from "./http.js";
import { InterceptingTransport } from "./intercept.js";
import { join, reasonOf, UPSTREAM_CLOSED, type ForwardedRequest, type Joined } from "./join.js";
import { isErrorResponse, isNotification, isRequest, isResultResponse } from "./message.js";
import { aztpCodeOf, AZTP_REFUSED, META_PREFIX } from "./meta.js";
import {
  describeError,
  describeUpstream,
  probeUpstream,
  upstreamEnded,
  watchedUpstream,
  type Upstream,
  type WatchedUpstream,
} from "./upstream.js";
import { UpstreamProcessTransport } from "./upstream-process.js";
import { UpstreamOAuth, type UpstreamOAuthOptions } from "./oauth-client.js";

export interface McpBridgeOptions {
  client: Aztp;
  /** The bridge's identity name: the caller the server sees, and its audit log's name. */
  name: string;
  /** The secured MCP server: `{ url }` (Streamable HTTP) or `{ command, args, env }` (spawned, stdio). */
  upstream: Upstream;
  /**
   * The server's SPIFFE/AZTP ID. Default: the first server proven for this upstream, pinned in
   * `<home>/bridge/<name>.json`.
   */
  expectedServer?: string;
  /** "stdio" (default) or an http://host:port URL on a loopback address. */
  listen?: "stdio" | string;
  mode?: GuardMode;
  /**
   * Where each call is recorded before its answer goes to the host. Default:
   * `<home>/audit/<name>.jsonl`; `false` keeps none (said at start).
   */
  audit?: AuditOption;
  /** With `listen` on HTTP: the host names accepted in Host and Origin (default: the loopback names and the listen host). */
  allowedHosts?: string[];
  /** How long the upstream may take to answer initialize at start (default 60 s: `npx -y` may download first). */
  upstreamStartTimeoutMs?: number;
  /** Lines for people (the server proven, a pin learned, why the bridge stops); the CLI prints them on stderr. */
  log?: (line: string) => void;
  /**
   * The upstream is a third-party MCP server that proves no identity and signs no receipts: send
   * its calls unsigned and record them with the receipt absent (said at start). Without it, such
   * a server is refused at its first initialize. Excludes `expectedServer`.
   */
  unsecuredServer?: boolean;
  /**
   * How to authorize when an HTTP upstream asks for OAuth (a 401 naming its resource metadata):
   * by default with the bridge's SVID, its SPIFFE ID as client_id (oauth-client.ts); `false`:
   * never (such a server then refuses the bridge).
   */
  oauth?: UpstreamOAuthOptions | false;
}

export interface McpBridge {
  readonly identity: AgentIdentity;
  readonly guard: CallerGuard;
  /** The log its calls are recorded in (undefined with `audit: false`). */
  readonly audit: AuditWriter | undefined;
  /** The HTTP endpoint when listening on HTTP. */
  readonly url: URL | undefined;
  /** The server ID it holds the upstream to: given, pinned before, or learned; undefined until one is. */
  readonly server: string | undefined;
  /** Where learned pins are kept. */
  readonly pinFile: string;
  /** Whether the upstream was declared a third-party server that proves nothing (`unsecuredServer`). */
  readonly unsecuredServer: boolean;
  /**
   * Resolves when the bridge has stopped (stdio: when either side closes): with the error that
   * ended it (a spawned upstream that exited, a server refused at the host's initialize), or
   * undefined when the host left or close() was called.
   */
  readonly closed: Promise<AztpError | undefined>;
  close(): Promise<void>;
}

/** One pinned server: the ID it proved, and when it was first seen. */
interface Pin {
  server: string;
  learnedAt: string;
}

/** `<home>/bridge/<name>.json`: the servers this bridge has pinned, by upstream (URL or command line). */
interface PinFile {
  version: 1;
  pins: Record<string, Pin>;
}

function readPins(path: string): PinFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, pins: {} };
    throw new AztpError(ErrorCodes.MCP_BRIDGE_PIN_FILE_INVALID, `cannot read ${path}: ${describeError(e)}`);
  }
  const invalid = (why: string): AztpError =>
    new AztpError(
      ErrorCodes.MCP_BRIDGE_PIN_FILE_INVALID,
      `${path} is not a bridge pin file (${why}): fix or delete it (the bridge then learns the server again)`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid("not JSON");
  }
  if (!isJsonObject(parsed) || parsed.version !== 1 || !isJsonObject(parsed.pins)) throw invalid("no version 1 pins");
  for (const [upstream, pin] of Object.entries(parsed.pins)) {
    if (!isJsonObject(pin) || typeof pin.server !== "string" || typeof pin.learnedAt !== "string")
      throw invalid(`the pin of ${upstream} is not { server, learnedAt }`);
    try {
      SpiffeId.parse(pin.server);
    } catch {
      throw invalid(`the pin of ${upstream} is not a SPIFFE ID`);
    }
  }
  return parsed as unknown as PinFile;
}

/** Adds `pin` for `upstream`, written whole and renamed into place (a reader never sees half a file). */
function writePin(path: string, dir: string, upstream: string, pin: Pin): void {
  const file = readPins(path);
  file.pins[upstream] = pin;
  makeDirs(dir, 0o700);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** A tool result the model reads: the refusal's code and reason, with isError. */
function toolError(id: RequestId, code: ErrorCode, reason: string): JSONRPCMessage {
  return {
    jsonrpc: "2.0",
    id,
    result: { content: [{ type: "text", text: `${code}: ${reason}` }], isError: true },
  };
}

/**
 * The host's answer to its tools/call: an AZTP refusal (the server's, or the bridge's own
 * receipt check's) becomes a tool result the model reads; anything else goes as it is.
 */
function callAnswer(answer: JSONRPCResultResponse | JSONRPCErrorResponse, id: RequestId): JSONRPCMessage {
  if (!isErrorResponse(answer)) return answer;
  const code = aztpCodeOf(answer.error.data);
  if (code === undefined) return answer;
  const data = answer.error.data as { message?: unknown };
  return toolError(id, code, typeof data.message === "string" ? data.message : answer.error.message);
}

/** What the host's messages carry upstream: without any `_meta` key of ours (see the file comment). */
function withoutAztpMeta(message: JSONRPCMessage): JSONRPCMessage {
  if (!isRequest(message) && !isNotification(message)) return message;
  const meta = message.params?._meta;
  if (!isJsonObject(meta) || !Object.keys(meta).some((k) => k.startsWith(META_PREFIX))) return message;
  const kept = Object.fromEntries(Object.entries(meta).filter(([k]) => !k.startsWith(META_PREFIX)));
  const { _meta: _dropped, ...params } = message.params as Record<string, unknown>;
  return {
    ...message,
    params: Object.keys(kept).length > 0 ? { ...params, _meta: kept } : params,
  } as JSONRPCMessage;
}

/** A failed proof, with what to do when the server is a third-party one that cannot give any. */
function withUnsecuredHint(error: AztpError): AztpError {
  if (error.code !== ErrorCodes.PROOF_INVALID) return error;
  return new AztpError(
    error.code,
    `${error.message}; if this is a third-party MCP server that does not speak AZTP (it proves no identity and signs no receipts), run the bridge with --server-unsecured (unsecuredServer: true): its calls then go unsigned and are recorded with the receipt absent`,
    { cause: error, ...(error.rule !== undefined ? { rule: error.rule } : {}) },
  );
}

/** The listen URL, refused unless its host is this machine. */
function loopbackListen(listen: string): URL {
  let url: URL;
  try {
    url = new URL(listen);
  } catch {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `listen must be stdio or http://127.0.0.1:PORT, got ${listen}`);
  }
  if (url.protocol !== "http:")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `listen must be stdio or http://127.0.0.1:PORT, got ${listen}`);
  if (!isLoopbackHost(url.hostname))
    throw new AztpError(
      ErrorCodes.MCP_BRIDGE_LISTEN_NOT_ALLOWED,
      `the bridge listens on loopback only (127.0.0.1, [::1], localhost), not ${url.hostname}: whoever reaches it calls tools as its identity`,
    );
  return url;
}

export async function startMcpBridge(options: McpBridgeOptions): Promise<McpBridge> {
  const upstream = options.upstream;
  if (!upstream || (!("url" in upstream) && !upstream.command))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "the bridge needs an upstream: { command, args } or { url }");
  const listen = options.listen ?? "stdio";
  const stdio = listen === "stdio";
  const listenUrl = stdio ? undefined : loopbackListen(listen);
  const expected = options.expectedServer === undefined ? undefined : SpiffeId.parse(options.expectedServer);
  const declaredUnsecured = options.unsecuredServer === true;
  // For a person (authorization code), the caller the server sees is that person, by their
  // access token: a request names one caller (the guard refuses a signature of another beside
  // it, ERR_OAUTH_TOKEN_SUBJECT_MISMATCH), so the bridge sends their calls unsigned, as it
  // does to an unsecured server, and checks no identity or receipt of the server.
  const forPerson =
    options.oauth !== undefined && options.oauth !== false && options.oauth.flow === "authorization-code";
  if (forPerson && expected !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "expectedServer does not apply with the authorization code flow: the bridge sends a person's calls unsigned by their access token and checks no identity of the server",
    );
  const unsecured = declaredUnsecured || forPerson;
  if (unsecured && expected !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "expectedServer and unsecuredServer exclude each other: an unsecured server proves no identity to expect",
    );
  const overHttp = "url" in upstream;
  if (!overHttp && options.oauth !== undefined && options.oauth !== false)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth applies to an upstream reached over HTTP ({ url })");
  const log = options.log ?? ((): void => undefined);
  const where = describeUpstream(upstream);

  const { secured, trust } = await identify({}, { client: options.client, name: options.name }, "aztp mcp bridge");
  const identity = secured.identity;
  const audit = await auditFor(identity, options.audit, "aztp mcp bridge");
  const guard = new CallerGuard({ identity, trust, mode: options.mode ?? "enforce", ...(audit ? { audit } : {}) });

  // The pin: given, or the one this upstream has in the pin file, or none yet (learned below);
  // an unsecured server has none to hold.
  const pinDir = joinPath(identity.home, "bridge");
  const pinFile = joinPath(pinDir, `${identity.name}.json`);
  let pinned: Pin | undefined =
    expected !== undefined
      ? { server: expected.toString(), learnedAt: "" }
      : unsecured
        ? undefined
        : readPins(pinFile).pins[where];
  const authorize: Authorizer = (id) => {
    if (pinned === undefined || id.equals(SpiffeId.parse(pinned.server))) return;
    throw new AztpError(
      ErrorCodes.PEER_NOT_AUTHORIZED,
      expected !== undefined
        ? `the server proved ${id.toString()}, not ${pinned.server} (--expected-server)`
        : `the server proved ${id.toString()}, but ${pinned.server} is pinned for ${where} (first seen ${pinned.learnedAt}, in ${pinFile}): another server answers there; if that is expected, delete its entry or pass --expected-server`,
    );
  };
  /** After a proven handshake: the ID it proved is pinned if nothing was. */
  const proven = (binding: ServerBinding): void => {
    const id = binding.serverId?.toString();
    if (id === undefined || pinned !== undefined) return;
    pinned = { server: id, learnedAt: new Date().toISOString() };
    try {
      writePin(pinFile, pinDir, where, pinned);
    } catch (e) {
      // Held for this run all the same; said, so nobody believes the next run will hold it too.
      log(
        `server ${id} proven at first connect, but its pin cannot be kept (${describeError(e)}): it is held to it for this run only`,
      );
      return;
    }
    log(`server ${id} proven at first connect; pinned in ${pinFile}: a different server at ${where} will be refused`);
  };
  const hooks = (binding: ServerBinding) =>
    clientHooks(guard, binding, { trust, expectedServer: authorize, ...(unsecured ? { unsecuredServer: where } : {}) });
  const oauth =
    "url" in upstream && options.oauth !== false
      ? new UpstreamOAuth(options.oauth ?? {}, { identity, serverUrl: new URL(upstream.url), log })
      : undefined;

  if (forPerson && !declaredUnsecured)
    log(
      `acting for a person (authorization code): the server at ${where} sees that person as the caller, by their access token; the bridge does not sign their calls (a request names one caller), checks no identity or receipt of the server, and records each call in its audit log with the receipt absent`,
    );
  else if (unsecured)
    log(
      `the server at ${where} is unsecured (--server-unsecured): it proves no identity and signs no receipts, so calls go to it unsigned, nothing it answers is verified, and each call is recorded in the audit log with the receipt absent`,
    );
  // A person's authorization needs its loopback redirect URI before any request is made.
  await oauth?.start();
  if (oauth !== undefined && options.oauth !== undefined) log(oauth.describe());

  if (pinned !== undefined)
    log(
      expected !== undefined
        ? `the server must prove ${pinned.server} (--expected-server)`
        : `the server must prove ${pinned.server}, pinned for ${where} since ${pinned.learnedAt} (in ${pinFile})`,
    );
  // An upstream URL is probed at start (stdio and HTTP alike), a spawned one on HTTP only (see
  // the file comment): an unreachable or unproven server ends the start with its reason.
  if (!stdio || "url" in upstream) {
    const binding = new ServerBinding();
    try {
      await probeUpstream(
        upstream,
        options.upstreamStartTimeoutMs ?? 60_000,
        (t) => new InterceptingTransport(t, hooks(binding)),
        { oauth },
      );
    } catch (e) {
      await oauth?.close();
      throw e instanceof AztpError ? withUnsecuredHint(e) : e;
    }
    proven(binding);
  }

  /**
   * One host connection joined to a new upstream connection of its own, whose handshake the
   * host's initialize makes. `failed` hears of what makes this connection useless: the host's
   * initialize answered with an error (the server refused, or could not be reached).
   */
  const connect = async (
    host: Transport,
    failed: (error: AztpError) => void,
  ): Promise<{ joined: Joined; up: WatchedUpstream["transport"] }> => {
    const binding = new ServerBinding();
    const secured = hooks(binding);
    let joined: Joined | undefined;
    const watched = watchedUpstream(
      upstream,
      (id) => {
        if (joined === undefined || !joined.waiting(id)) return;
        if (!secured.abandon(id, Unanswered.CONNECTION_CLOSED)) return; // its answer came, and is being checked
        joined.abandon(
          id,
          new AztpError(
            ErrorCodes.MCP_UPSTREAM_FAILED,
            `the server at ${where} closed the stream of this request before answering it (it stopped, or the connection broke)`,
          ),
        );
      },
      oauth,
    );
    const up = watched.transport;
    joined = await join(host, new InterceptingTransport(up, secured), {
      toUpstream: withoutAztpMeta,
      ...(watched.sendOptions ? { sendOptions: watched.sendOptions } : {}),
      toDownstream: (answer, request) => {
        watched.answered(request.id);
        return request.method === "tools/call" ? callAnswer(answer, request.id) : answer;
      },
      unavailable: (request, why) => unavailable(request, why),
      relateToPending: true,
      initializeAnswered: (answer) => {
        if (isResultResponse(answer)) return proven(binding);
        if (!isErrorResponse(answer)) return;
        const code = aztpCodeOf(answer.error.data) ?? ErrorCodes.MCP_UPSTREAM_FAILED;
        const data = answer.error.data as { message?: unknown } | undefined;
        const why = typeof data?.message === "string" ? data.message : answer.error.message;
        failed(withUnsecuredHint(new AztpError(code, `the host's initialize was refused: ${why}`)));
      },
    });
    return { joined, up };
  };

  /**
   * The answer to a host request the server will not answer (see the file comment); a call's,
   * once its audit entry (unanswered, or refused before it left) is written.
   */
  const unavailable = async (request: ForwardedRequest, why: unknown): Promise<JSONRPCMessage> => {
    const error =
      why instanceof AztpError
        ? why
        : new AztpError(
            ErrorCodes.MCP_UPSTREAM_FAILED,
            why === UPSTREAM_CLOSED
              ? `the server (${where}) closed the connection before answering`
              : `the request to the server (${where}) failed: ${describeError(why)}`,
          );
    if (request.method === "tools/call") {
      await guard.flush();
      return toolError(request.id, error.code, error.message);
    }
    return {
      jsonrpc: "2.0",
      id: request.id,
      error: {
        code: why instanceof AztpError ? AZTP_REFUSED : -32603,
        message: `[${error.code}] ${reasonOf(error)}`,
        data: { code: error.code, message: error.message },
      },
    };
  };

  const bridge = (
    url: URL | undefined,
    closed: Promise<AztpError | undefined>,
    close: () => Promise<void>,
  ): McpBridge => ({
    identity,
    guard,
    audit,
    pinFile,
    unsecuredServer: declaredUnsecured,
    url,
    get server() {
      return pinned?.server;
    },
    closed,
    close,
  });

  if (stdio) {
    let failure: AztpError | undefined;
    let joined: Joined | undefined;
    const { joined: j, up } = await connect(new StdioServerTransport(), (error) => {
      failure ??= error;
      log(`stopping: ${error.message}`);
      // After the host has its answer (sent right after this), the bridge ends: it has nothing to serve.
      setImmediate(() => joined?.close());
    });
    joined = j;
    // StdioServerTransport never notices its host leaving: stdin ending is that, and it must
    // stop the bridge and a spawned upstream (else both run on until someone signals them).
    const hostGone = (): void => j.close();
    process.stdin.once("end", hostGone);
    const closed = j.closed.then(async () => {
      process.stdin.off("end", hostGone);
      await guard.flush();
      await oauth?.close();
      if (failure !== undefined) return failure;
      // A spawned upstream failed if it exited before anyone closed it, or with an error code when
      // closed (see proxy.ts): the host must hear of an upstream that could not start.
      if (!(up instanceof UpstreamProcessTransport) || !(up.exitedOnItsOwn || (up.end?.code ?? 0) !== 0))
        return undefined;
      return upstreamEnded(up, j.initialized() ? "while serving its host" : "before it answered initialize (at start)");
    });
    return bridge(undefined, closed, async () => {
      j.close();
      await closed;
    });
  }

  const sessions = new Set<Joined>();
  let stop!: () => void;
  const closed = new Promise<undefined>((resolve) => (stop = () => resolve(undefined)));
  const http: McpHttpServer = await serveMcpHttp(
    listenUrl as URL,
    async (transport) => {
      // Each host session gets its own upstream connection: MCP sessions are stateful, and the
      // server's requests to a host must reach that host.
      const { joined } = await connect(transport, (error) =>
        log(`a host session's initialize was refused: ${error.message}`),
      );
      sessions.add(joined);
      void joined.closed.then(() => sessions.delete(joined));
    },
    options.allowedHosts ? { allowedHosts: options.allowedHosts } : {},
  );
  return bridge(http.url, closed, async () => {
    await http.close();
    for (const s of [...sessions]) s.close();
    await Promise.allSettled([...sessions].map((s) => s.closed));
    await guard.flush();
    await oauth?.close();
    stop();
  });
}
