/**
 * MCP tools for LangChain agents through @langchain/mcp-adapters, signed by the agent that
 * calls them, not by the MCP client that carries the call.
 *
 *   - `loadMcpTools(serverName, securedClient)`: the adapters' own function over a client made
 *     with secureMcpClient; the tools it returns are marked so an agent's middleware knows the
 *     secured client will sign them as the agent (guard/acting-caller.ts).
 *   - `SecureMultiServerMCPClient`: takes MultiServerMCPClient's configuration unchanged and is
 *     one. That class builds and connects its SDK clients itself, and its hooks cannot set a
 *     request's `_meta`, so while it connects (and reconnects) each new SDK Client's transport is
 *     secured as it is handed to `connect`, in that scope only (`securingScope`). A client that
 *     escaped it (a fork with other headers, say) is not secured: its tools' calls go out
 *     unsigned, and the agent's middleware refuses their answers (ERR_TOOL_UNSECURED).
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { StructuredToolInterface } from "@langchain/core/tools";
import {
  loadMcpTools as loadAdapterTools,
  MultiServerMCPClient,
  type ClientConfig,
  type LoadMcpToolsOptions,
} from "@langchain/mcp-adapters";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { Aztp } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { CallerGuard } from "../guard/caller.js";
import type { GuardMode } from "../guard/recorder.js";
import type { Trust } from "../invocation/trust.js";
import { clientHooks, ServerBinding } from "../mcp/client.js";
import { InterceptingTransport } from "../mcp/intercept.js";
import { mark } from "./mcp-mark.js";
import type { Authorizer } from "../spiffe/authorizer.js";

function bindingOf(client: unknown): ServerBinding | undefined {
  const b = typeof client === "object" && client !== null ? (client as { aztpServer?: unknown }).aztpServer : undefined;
  return b instanceof ServerBinding ? b : undefined;
}

/**
 * The adapters' `loadMcpTools` over a client secured with `secureMcpClient` (refused otherwise:
 * its calls would go out unsigned). Call it after `connect`.
 */
export async function loadMcpTools(
  serverName: string,
  client: Client,
  options?: LoadMcpToolsOptions,
): Promise<StructuredToolInterface[]> {
  const binding = bindingOf(client);
  if (binding === undefined) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `loadMcpTools needs a client made with secureMcpClient (the client for ${serverName} is not): its tools' calls would go out unsigned`,
    );
  }
  const tools = await loadAdapterTools(serverName, client, options);
  return tools.map((t) => mark(t, binding));
}

// ---------------------------------------------------------------------------------------------

type Secure = (client: Client, transport: Transport) => Transport;

const securingScope = new AsyncLocalStorage<Secure>();
const SECURED_CLIENT = Symbol.for("aztp.securedMcpClient");

let patched = false;
/**
 * Installs, once, the hook that secures an SDK Client's transport when it connects inside a
 * securing scope. Outside a scope `connect` is untouched.
 */
function installConnectHook(): void {
  if (patched) return;
  patched = true;
  const original = Client.prototype.connect;
  Client.prototype.connect = function (this: Client, transport: Transport, options?: Parameters<Client["connect"]>[1]) {
    const secure = securingScope.getStore();
    return original.call(this, secure === undefined ? transport : secure(this, transport), options);
  };
}

/**
 * Where MultiServerMCPClient (1.1.x) connects a server, at start and on every reconnect or
 * restart; each takes the server's name first. A version without them is refused, not trusted.
 */
const CONNECTING_METHODS = [
  "_initializeStdioConnection",
  "_initializeStreamableHTTPConnection",
  "_initializeSSEConnection",
] as const;

export interface SecureMultiServerOptions {
  /** Issues the MCP client's own identity (used for what no agent asks: tools/list) under `name`... */
  client?: Aztp;
  name?: string;
  /** ...or takes one you hold. */
  identity?: AgentIdentity;
  trust?: Trust;
  /** Per server name: which server IDs are acceptable (as secureMcpClient's expectedServer). */
  expectedServers?: Readonly<Record<string, string | readonly string[] | Authorizer>>;
  mode?: GuardMode;
  audit?: AuditOption;
}

/**
 * MultiServerMCPClient with every connection secured: each server proves its SVID at
 * initialize, every tools/call is signed (by the calling agent, in a secured agent), every
 * receipt is checked. Build it with `SecureMultiServerMCPClient.create(config, options)`.
 */
export class SecureMultiServerMCPClient extends MultiServerMCPClient {
  readonly #servers: readonly string[];

  private constructor(config: ClientConfig) {
    super(config);
    this.#servers = Object.keys((this.config as { mcpServers: Record<string, unknown> }).mcpServers);
  }

  /** `config` is exactly what MultiServerMCPClient takes. */
  static async create(
    config: ClientConfig,
    options: SecureMultiServerOptions,
  ): Promise<SecureMultiServerMCPClient & { readonly identity: AgentIdentity }> {
    installConnectHook();
    const self = new SecureMultiServerMCPClient(config);
    let identity = options.identity;
    if (identity === undefined) {
      if (options.client === undefined)
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          "SecureMultiServerMCPClient needs { client, name } or { identity, trust }",
        );
      identity = (await options.client.secureConnect({}, options.name ?? "langchain-mcp-client")).identity;
    }
    const trust = options.trust ?? (await options.client?.trust());
    if (trust === undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "SecureMultiServerMCPClient needs a trust (or a client to take it from)",
      );
    const audit = await auditFor(identity, options.audit, "SecureMultiServerMCPClient");
    const guard = new CallerGuard({ identity, trust, mode: options.mode ?? "enforce", ...(audit ? { audit } : {}) });
    const secureFor =
      (serverName: string): Secure =>
      (client, transport) => {
        const binding = new ServerBinding();
        Object.defineProperty(client, SECURED_CLIENT, { value: binding, configurable: true });
        const expectedServer = options.expectedServers?.[serverName];
        return new InterceptingTransport(
          transport,
          clientHooks(guard, binding, { trust, ...(expectedServer !== undefined ? { expectedServer } : {}) }),
        );
      };
    const methods = self as unknown as Record<string, unknown>;
    for (const name of CONNECTING_METHODS) {
      const base = methods[name];
      if (typeof base !== "function") {
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          `this version of @langchain/mcp-adapters has no ${name}, so its connections cannot be secured: use 1.1.x, or loadMcpTools with secureMcpClient`,
        );
      }
      Object.defineProperty(self, name, {
        value: (serverName: string, ...rest: unknown[]) =>
          securingScope.run(secureFor(serverName), () =>
            (base as (...a: unknown[]) => unknown).call(self, serverName, ...rest),
          ),
      });
    }
    return Object.assign(self, { identity }) as SecureMultiServerMCPClient & { readonly identity: AgentIdentity };
  }

  /**
   * The tools of every server (or the ones named), each marked for the agent's middleware; a server
   * whose client is not secured is refused.
   */
  override async getTools(...args: unknown[]): Promise<Awaited<ReturnType<MultiServerMCPClient["getTools"]>>> {
    const names =
      args.length === 0 ? this.#servers : Array.isArray(args[0]) ? (args[0] as string[]) : (args as string[]);
    const out: Awaited<ReturnType<MultiServerMCPClient["getTools"]>> = [];
    for (const name of names) {
      const tools = await super.getTools(name);
      const client = await super.getClient(name);
      const binding =
        client === undefined ? undefined : (client as unknown as { [SECURED_CLIENT]?: ServerBinding })[SECURED_CLIENT];
      if (binding === undefined) {
        throw new AztpError(
          ErrorCodes.TOOL_UNSECURED,
          `the MCP client for ${name} was not secured when it connected, so its tools are not handed out`,
        );
      }
      for (const tool of tools) out.push(mark(tool, binding));
    }
    return out;
  }
}
