/**
 * A secured MCP server over HTTP as an OAuth 2.1 resource server (the MCP authorization spec,
 * 2025-06-18 onward): which requests need a credential, and what answers one that has none.
 *
 * A request passes the gate when it carries a valid bearer access token (verified by
 * oauth/protected-resource.ts, then handed to the server's hooks as the SDK's `authInfo`), or
 * an AZTP proof (a signed tools/call or tools/list, which the guard verifies; the challenge at
 * initialize, which makes the server prove itself), or when every request in it is of an open
 * method (`openMethods`: by default `initialize`, `server/discover` and `tools/list`, what an
 * enforcing server answered anyone before it accepted bearers). Notifications and responses
 * are never refused here (they answer nothing and reach no tool). GET and DELETE carry no
 * JSON-RPC; they need a session, which only an admitted initialize makes, and a bearer token
 * they carry must be valid.
 *
 * Everything else gets 401 with `WWW-Authenticate: Bearer resource_metadata="...", scope="..."`;
 * an invalid token 401 `invalid_token`; a token without a required scope 403
 * `insufficient_scope`; the body is a JSON-RPC error carrying the library's code (`data.code`),
 * as the HTTP server's other refusals (http.ts).
 *
 * The gate says who the token speaks for; it decides nothing about tools. A tools/call with a
 * bearer token is admitted by the guard (CalleeGuard.admitBearer: policy with
 * `aztp:authMethod` = `bearer`, a receipt, audit), and a signed one that also carries a token
 * must name the same caller in both.
 *
 * A tools/call the gate refuses is a refused call all the same (no input goes unaudited), though
 * no session or guard of a session ever sees it: the gate holds the serving identity's guard,
 * records each tools/call of a refused request with it (CalleeGuard.refuseCredential: the code,
 * the tool, the argument digest, the bearer token's caller and jti, never the token), and
 * answers only once those entries are written; when they cannot be (enforce mode), with 503
 * ERR_AUDIT_UNAVAILABLE instead. A gate cannot be made without that guard. Other requests it
 * refuses (initialize with `openMethods: []`, resources/read, GET, ...) are no tool calls, which
 * is what the audit log records: they are answered and reach nothing.
 */
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../client/aztp.js";
import type { AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { CalleeGuard, type GuardMode } from "../guard/callee.js";
import { servingGuard } from "../guard/serving-guard.js";
import type { Trust } from "../invocation/trust.js";
import { isJsonObject, type JsonObject } from "../json/value.js";
import {
  isVerifiedBearer,
  ProtectedResource,
  type BearerCaller,
  type Challenge,
  type PresentedCredential,
  type ProtectedResourceOptions,
} from "../oauth/protected-resource.js";
import { isRequest } from "./message.js";
import {
  argumentsOf,
  AZTP_REFUSED,
  carriedTraceOf,
  CHALLENGE_META_KEY,
  HANDSHAKES,
  INVOCATION_META_KEY,
} from "./meta.js";

/** The key of `AuthInfo.extra` under which the verified bearer caller reaches the server's hooks. */
export const BEARER_AUTH_KEY = "io.aztp/bearer";

/** What a client with no credential at all may still ask, unless told otherwise. */
export const DEFAULT_OPEN_METHODS: readonly string[] = Object.freeze(["initialize", "server/discover", "tools/list"]);

/** A server's options as an OAuth resource server (serveMcpHttp, the proxy, mcpResourceGate). */
export interface McpResourceServerOptions {
  /**
   * Accept OAuth bearer access tokens from these authorization servers (issuer identifiers).
   * `true` or `[]`: the serving authority's own issuer (`Authority.oauthIssuer`: `aztp serve`'s
   * URL, or `spiffe://<td>` for tokens the embedded authority mints). Absent: no bearer tokens,
   * no gate (the server behaves as before).
   */
  authorizationServers?: readonly string[] | true | undefined;
  /**
   * The resource identifier (RFC 8707): the URL clients reach the MCP endpoint at, which tokens'
   * `aud` must name. Default: the server's own endpoint URL as it listens.
   */
  resource?: string | undefined;
  /** Scopes every bearer request must carry (`scopes_supported`, and the challenges' `scope`). */
  scopes?: readonly string[] | undefined;
  /**
   * The JSON-RPC methods a client with no credential at all may call (default
   * DEFAULT_OPEN_METHODS). `[]` sends every such request a 401, so OAuth clients authorize at
   * connect; signing clients still get in (their initialize carries a challenge, their
   * tools/list and tools/call are signed).
   */
  openMethods?: readonly string[] | undefined;
}

/**
 * Who records the tools/call requests a resource gate refuses: the guard of the identity the
 * server serves as (a `CalleeGuard`: the proxy passes its own), or that identity, whose serving
 * guard is then made as a secured server makes its own: `audit` and `mode` as `secureMcpServer`
 * takes them (give its sessions' own, so that the refusals land in the log their calls do;
 * default the identity's log in its home), `trust` by default the client's.
 */
export type ResourceGuardOption =
  | CalleeGuard
  | {
      identity: AgentIdentity;
      audit?: AuditOption | undefined;
      mode?: GuardMode | undefined;
      trust?: Trust | undefined;
    };

/** What the gate made of a request: let it through (with its verified bearer), or answer it. */
export type GateDecision =
  | { readonly pass: true; readonly bearer: BearerCaller | undefined }
  | {
      readonly pass: false;
      readonly challenge: Challenge;
      /** The bearer token the request presented, as the refusal's entry records it; undefined when none. */
      readonly presented: PresentedCredential | undefined;
    };

/** An HTTP answer to write. */
export interface GateAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** The verified bearer caller the gate put in a request's AuthInfo, if any. */
export function bearerOf(authInfo: AuthInfo | undefined): BearerCaller | undefined {
  const value = authInfo?.extra?.[BEARER_AUTH_KEY];
  return isVerifiedBearer(value) ? value : undefined;
}

/** The SDK's AuthInfo for a verified bearer caller (handlers see it as `extra.authInfo`). */
export function authInfoOf(bearer: BearerCaller, resource: string): AuthInfo {
  return {
    token: bearer.compact,
    clientId: bearer.token.clientId,
    scopes: [...bearer.token.scopes],
    expiresAt: Math.floor(bearer.token.expiry.getTime() / 1000),
    resource: new URL(resource),
    extra: { [BEARER_AUTH_KEY]: bearer },
  };
}

function messagesOf(body: unknown): unknown[] {
  return Array.isArray(body) ? body : [body];
}

// The transports serveMcpHttp hands to sessions behind a gate, each with the gate's guard.
const gatedTransports = new WeakMap<object, CalleeGuard>();

/** Marks `transport` as a session's behind a gate recording with `guard` (see checkServingGuard). */
export function behindGate(transport: object, guard: CalleeGuard): void {
  gatedTransports.set(transport, guard);
}

/**
 * Throws ERR_MCP_RESOURCE_GUARD_MISMATCH when a secured server about to serve `transport` (a
 * session behind a gate) records with a guard of another identity, or into another log, than
 * the gate does: its refusals at the door would be recorded as someone else, or somewhere no one
 * looks for that server's calls. Checked when the server connects, so a misconfigured server
 * fails at its first session, loudly, instead of splitting its record.
 */
export function checkServingGuard(transport: object | undefined, guard: CalleeGuard): void {
  const gate = transport === undefined ? undefined : gatedTransports.get(transport);
  if (gate === undefined || gate === guard || (gate.id === guard.id && gate.auditLog === guard.auditLog)) return;
  const where = (g: CalleeGuard): string => (g.auditLog === undefined ? "no log" : g.auditLog.path);
  throw new AztpError(
    ErrorCodes.MCP_RESOURCE_GUARD_MISMATCH,
    `the resource gate records the calls it refuses as ${gate.id} into ${where(gate)}, but this session's secured server records its calls as ${guard.id} into ${where(guard)}: give serveMcpHttp's guard the identity and the audit option (the same log) its sessions are secured with`,
  );
}

/** A tools/call request of a body, as the guard records it; undefined for any other message. */
function toolCallOf(
  message: unknown,
): ({ tool: string; args: unknown; token: unknown } & ReturnType<typeof carriedTraceOf>) | undefined {
  if (!isJsonObject(message) || !isRequest(message as JSONRPCMessage) || message.method !== "tools/call")
    return undefined;
  const params: JsonObject = isJsonObject(message.params) ? message.params : {};
  const meta = isJsonObject(params._meta) ? params._meta : {};
  // A name that is no string is recorded as "": the call is refused all the same.
  return {
    tool: typeof params.name === "string" ? params.name : "",
    args: argumentsOf(params),
    token: meta[INVOCATION_META_KEY],
    ...carriedTraceOf(meta),
  };
}

const GUARD_MISSING =
  "a server that accepts bearer tokens (authorizationServers) refuses tools/call requests at its gate, before any session sees them, and each refusal is recorded: pass guard: { identity } (the identity its sessions serve as, with the audit option they take) or that identity's CalleeGuard";

export class McpResourceGate {
  readonly protectedResource: ProtectedResource;
  readonly openMethods: ReadonlySet<string>;
  /** The serving identity's guard, which records each tools/call this gate refuses. */
  readonly guard: CalleeGuard;

  constructor(
    protectedResource: ProtectedResource,
    options: { guard: CalleeGuard; openMethods?: readonly string[] | undefined },
  ) {
    if (!(options?.guard instanceof CalleeGuard))
      throw new AztpError(ErrorCodes.MCP_RESOURCE_GUARD_MISSING, GUARD_MISSING);
    const openMethods = options.openMethods ?? DEFAULT_OPEN_METHODS;
    if (!Array.isArray(openMethods) || !openMethods.every((m) => typeof m === "string"))
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "openMethods must be a list of JSON-RPC method names");
    this.protectedResource = protectedResource;
    this.guard = options.guard;
    this.openMethods = new Set(openMethods);
  }

  /** Whether `message` is a request that may not be made without a credential. */
  needsCredential(message: unknown): boolean {
    if (!isJsonObject(message) || !isRequest(message as JSONRPCMessage)) return false;
    const method = message.method as string;
    if (this.openMethods.has(method)) return false;
    const params = isJsonObject(message.params) ? message.params : {};
    const meta = isJsonObject(params._meta) ? params._meta : {};
    if (HANDSHAKES.has(method) && meta[CHALLENGE_META_KEY] !== undefined) return false;
    // Verified by the guard before the server sees it (server.ts): a bad signature is refused there.
    if ((method === "tools/call" || method === "tools/list") && meta[INVOCATION_META_KEY] !== undefined) return false;
    return true;
  }

  /**
   * Decides a request: `authorization` is its Authorization header, `body` its parsed JSON-RPC
   * (undefined for GET and DELETE, which carry none).
   */
  async check(authorization: string | undefined, body: unknown): Promise<GateDecision> {
    const checked = await this.protectedResource.credential(authorization);
    if (checked.error !== undefined)
      return {
        pass: false,
        challenge: this.protectedResource.challenge(checked.error),
        presented: checked.presented,
      };
    const bearer = checked.bearer;
    if (bearer !== undefined || body === undefined) return { pass: true, bearer };
    if (messagesOf(body).some((m) => this.needsCredential(m)))
      return { pass: false, challenge: this.protectedResource.challenge(), presented: undefined };
    return { pass: true, bearer: undefined };
  }

  /**
   * The answer to a refused request (`body` its parsed JSON-RPC, undefined for GET and DELETE),
   * once each tools/call in it is on record: the challenge; or, when an entry could not be
   * written (enforce mode), 503 ERR_AUDIT_UNAVAILABLE, as the guard answers any call it cannot
   * record.
   */
  async refuse(decision: GateDecision & { pass: false }, body: unknown): Promise<GateAnswer> {
    const { challenge, presented } = decision;
    const calls = body === undefined ? [] : messagesOf(body).flatMap((m) => toolCallOf(m) ?? []);
    // Appended in the body's order, written together (group commit); answered once all are.
    const unrecorded = (
      await Promise.all(calls.map((call) => this.guard.refuseCredential(call, challenge.error, presented)))
    ).find((e) => e !== undefined);
    return this.answer(unrecorded === undefined ? challenge : { status: 503, header: undefined, error: unrecorded });
  }

  /** The HTTP answer to a refused request: the challenge, and a JSON-RPC error carrying the code. */
  answer(challenge: Challenge): GateAnswer {
    const { error } = challenge;
    return {
      status: challenge.status,
      headers: {
        "content-type": "application/json",
        ...(challenge.header !== undefined ? { "www-authenticate": challenge.header } : {}),
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        error: {
          code: AZTP_REFUSED,
          message: `AZTP refused the request [${error.code}]: ${error.message}`,
          data: { code: error.code, message: error.message },
        },
        id: null,
      }),
    };
  }

  /** The Protected Resource Metadata document, as served. */
  metadataAnswer(): GateAnswer {
    return {
      status: 200,
      headers: {
        "content-type": "application/json",
        // Public, and fetched cross-origin by browser-based clients (the SDK retries without
        // headers on a CORS failure, but a document it cannot read at all is no help).
        "access-control-allow-origin": "*",
        "cache-control": "max-age=300",
      },
      body: JSON.stringify(this.protectedResource.metadata()),
    };
  }

  /**
   * The gate for a fetch-style handler (the SDK 2.x `createMcpHandler`, a stateless server):
   * answers the metadata and refused requests with a Response; otherwise gives the AuthInfo
   * to pass on as `handler.fetch(request, { authInfo })` (undefined when it had no bearer).
   */
  async handle(request: Request): Promise<Response | { authInfo: AuthInfo | undefined }> {
    const url = new URL(request.url);
    if (request.method === "GET" && this.protectedResource.metadataPaths(url.pathname).includes(url.pathname)) {
      const m = this.metadataAnswer();
      return new Response(m.body, { status: m.status, headers: m.headers });
    }
    let body: unknown;
    if (request.method === "POST") {
      try {
        body = JSON.parse(await request.clone().text());
      } catch {
        body = null; // the handler answers a body that is not JSON
      }
    }
    const decision = await this.check(request.headers.get("authorization") ?? undefined, body);
    if (!decision.pass) {
      const a = await this.refuse(decision, body);
      return new Response(a.body, { status: a.status, headers: a.headers });
    }
    return {
      authInfo:
        decision.bearer === undefined ? undefined : authInfoOf(decision.bearer, this.protectedResource.resource),
    };
  }
}

/** The authorization servers `option` names, `true` and `[]` meaning the serving authority's own. */
export function authorizationServersOf(
  option: readonly string[] | true,
  authority: { oauthIssuer: string } | undefined,
): string[] {
  if (option !== true && option.length > 0) return [...option];
  if (authority === undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "authorizationServers: true (or []) means the serving authority's own issuer: pass the aztp client too",
    );
  return [authority.oauthIssuer];
}

/** The guard `option` names: the one given, or the serving guard of the identity given. */
async function guardOf(
  option: ResourceGuardOption,
  client: Aztp | undefined,
  authority: Awaited<ReturnType<Aztp["authority"]>> | undefined,
  what: string,
): Promise<CalleeGuard> {
  if (option instanceof CalleeGuard) return option;
  if (!isJsonObject(option) || option.identity === undefined)
    throw new AztpError(ErrorCodes.MCP_RESOURCE_GUARD_MISSING, GUARD_MISSING);
  const trust = option.trust ?? (client !== undefined ? await client.trust() : undefined);
  if (trust === undefined)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what}: guard: { identity } needs a trust (or the client)`);
  return servingGuard(option.identity, {
    trust,
    authority,
    audit: option.audit,
    mode: option.mode,
    what,
  });
}

/**
 * The gate of a server with `options` (undefined when it accepts no bearer tokens), for the
 * resource `defaultResource` unless `options.resource` names another; `what` names the server
 * in what its guard says at start.
 */
export async function resourceGateFor(
  options: McpResourceServerOptions & { client?: Aztp | undefined; guard?: ResourceGuardOption | undefined },
  defaultResource: string,
  what: string,
  extra: Pick<ProtectedResourceOptions, "issuerKeys" | "resourceName"> = {},
): Promise<McpResourceGate | undefined> {
  if (options.authorizationServers === undefined) {
    if (options.resource !== undefined || options.scopes !== undefined || options.openMethods !== undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "resource, scopes and openMethods apply to a server that accepts bearer tokens: give authorizationServers too",
      );
    return undefined;
  }
  // Before anything is built: a resource server that could not record its refusals does not start.
  if (options.guard === undefined) throw new AztpError(ErrorCodes.MCP_RESOURCE_GUARD_MISSING, GUARD_MISSING);
  const authority = options.client === undefined ? undefined : await options.client.authority();
  const resource = new ProtectedResource({
    resource: options.resource ?? defaultResource,
    authorizationServers: authorizationServersOf(options.authorizationServers, authority),
    authority,
    scopes: options.scopes,
    ...extra,
  });
  const guard = await guardOf(options.guard, options.client, authority, what);
  return new McpResourceGate(resource, { guard, openMethods: options.openMethods });
}

/**
 * A resource-server gate for a fetch-style MCP handler (a stateless server on the SDK 2.x
 * `createMcpHandler`): `resource` is required here, as there is no listen URL to default to, and
 * so is `guard`, which records the tools/call requests the gate refuses.
 */
export function mcpResourceGate(
  options: McpResourceServerOptions & {
    authorizationServers: readonly string[] | true;
    resource: string;
    guard: ResourceGuardOption;
    client?: Aztp | undefined;
  },
): Promise<McpResourceGate> {
  return resourceGateFor(options, options.resource, "mcpResourceGate") as Promise<McpResourceGate>;
}
