/**
 * `createSecureAgent({ client, name, ...createAgent params })`: LangChain's createAgent with an
 * identity issued at creation and the secure middleware installed outermost, so every tool call
 * is signed as the agent, verified before the tool runs, receipted and audited on both sides.
 *
 * Tools handed to it are served as follows (see docs/langchain.md):
 *   - a `secureTool` keeps its own identity and policy;
 *   - an MCP tool from this package's `loadMcpTools` or `SecureMultiServerMCPClient` is signed
 *     by the agent through its secured MCP client;
 *   - any other tool is served under `<agent>.tools.<tool>`, a child identity of the agent that
 *     admits the agent alone;
 *   - `subAgent({...})` becomes a child agent (parent = this agent) reached through a tool, as
 *     LangChain documents sub-agents, acting under a delegation this agent signs, narrowed to
 *     the tools and servers the child (and its own sub-agents) need.
 */
import { AIMessage } from "@langchain/core/messages";
import type { StateDefinitionInit } from "@langchain/langgraph";
import { tool as makeTool, type DynamicStructuredTool, type StructuredToolInterface } from "@langchain/core/tools";
import { createAgent, type CreateAgentParams } from "langchain";
import { attachIdentity, type Aztp, type SecuredAgent } from "../client/aztp.js";
import type { AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { actingCaller } from "../guard/acting-caller.js";
import type { CallerGuard } from "../guard/caller.js";
import type { GuardMode } from "../guard/recorder.js";
import { DEFAULT_DELEGATION_TTL_SECONDS, delegate, MAX_DELEGATION_CHAIN } from "../invocation/delegation.js";
import { MAX_INVOCATION_LIFETIME_SECONDS } from "../invocation/invocation.js";
import { peekClaims } from "../spiffe/jws.js";
import { isMcpTool, mcpServerOf } from "./mcp-mark.js";
import { createSecureMiddleware, type DelegationSource } from "./middleware.js";
import { asSubAgent } from "./run-person.js";
import { isSecuredTool, secureTool, type SecuredTool } from "./tool.js";

/**
 * createAgent's parameters, any response format (or none), and any state schema: a tool that
 * returns a Command may update state keys of the agent's own (`stateSchema`).
 */
type AgentParams = Omit<
  CreateAgentParams<Record<string, unknown>, StateDefinitionInit | undefined>,
  "responseFormat"
> & {
  responseFormat?: CreateAgentParams["responseFormat"];
};
type Agent = ReturnType<typeof createAgent>;

/** What a tool list for createSecureAgent may hold: tools, and sub-agents to create under this one. */
export type SecureAgentTool = StructuredToolInterface | SubAgentSpec;

export interface SecureAgentOptions {
  client: Aztp;
  /** The agent's identity name (`aztp://<td>/workload/<env>/<method>/<name>`). */
  name: string;
  /** An identity you already hold for this agent (from `client.secureConnect`); default: issued now under `name`. */
  identity?: AgentIdentity;
  tools?: readonly SecureAgentTool[];
  mode?: GuardMode;
  /**
   * Where the agent's calls (and its served tools') are recorded. Default: its home's
   * `audit/<name>.jsonl`; `false`: none (said at start).
   */
  audit?: AuditOption;
}

export type SecureAgentParams = Omit<AgentParams, "tools" | "name"> & SecureAgentOptions;

export interface SecuredAgentExtras {
  /** The guard that signs the agent's calls (flush() waits until every entry is written). */
  readonly aztpGuard: CallerGuard;
  /** The sub-agents created under this one, by name. */
  readonly subAgents: Readonly<Record<string, SecureReactAgent>>;
}

export type SecureReactAgent = SecuredAgent<Agent> & SecuredAgentExtras;

const SPEC = Symbol.for("aztp.subAgent");

/** The shortest delegation link a sub-agent may be given: it is renewed a minute before it lapses. */
const MIN_SUB_AGENT_TTL_SECONDS = 60;

/** The narrowest delegation a sub-agent gets by default is what its tools need; this overrides it. */
export interface SubAgentScope {
  /** Tool name patterns the child may call. Default: the names of its tools (and its sub-agents' tools). */
  tools?: string[];
  /** Callee ID patterns the child may call. Default: the IDs its tools are served under or on. */
  servers?: string[];
  /** How long each delegation link lives before it is renewed. Default 3600 s; at least 60. */
  ttlSeconds?: number;
}

export interface SubAgentSpec {
  readonly [SPEC]: true;
  readonly name: string;
  readonly description: string;
  readonly params: Omit<SecureAgentParams, "client" | "name">;
  readonly scope: SubAgentScope | undefined;
}

/**
 * A sub-agent for createSecureAgent's tools: a child agent created with this agent's identity
 * as its parent, called through a tool named `name` that takes `{ task }` and answers with the
 * child's final message.
 */
export function subAgent(
  spec: { name: string; description: string; scope?: SubAgentScope } & Omit<SecureAgentParams, "client" | "name">,
): SubAgentSpec {
  const { name, description, scope, ...params } = spec;
  if (typeof name !== "string" || name.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "subAgent needs a name");
  if (typeof description !== "string")
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "subAgent needs a description (the orchestrator's model reads it)",
    );
  const ttl = scope?.ttlSeconds;
  if (ttl !== undefined && !(typeof ttl === "number" && ttl >= MIN_SUB_AGENT_TTL_SECONDS)) {
    // A shorter link would be outlived by the tokens signed under it (every call refused).
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `subAgent scope.ttlSeconds must be at least ${MIN_SUB_AGENT_TTL_SECONDS}: a link is renewed a minute before it lapses, and must outlive each call's token (up to ${MAX_INVOCATION_LIFETIME_SECONDS} s)`,
    );
  }
  return { [SPEC]: true, name, description, params, scope };
}

function isSpec(value: unknown): value is SubAgentSpec {
  return typeof value === "object" && value !== null && (value as { [SPEC]?: unknown })[SPEC] === true;
}

/** One agent of a tree being built: identities first, delegations signed top-down once all are known. */
interface Node {
  readonly identity: AgentIdentity;
  readonly needs: { tools: Set<string>; servers: Set<string> };
  readonly explicit: SubAgentScope | undefined;
  readonly children: Node[];
  /** Filled in by sign(): the chain this agent presents (empty for the root). */
  delegation: DelegationSource;
}

/** The remaining depth a node's link must allow: how many levels of sub-agents it has below it. */
function height(node: Node): number {
  return node.children.length === 0 ? 0 : 1 + Math.max(...node.children.map(height));
}

function lastLinkExp(chain: readonly string[]): number {
  const exp = peekClaims(chain[chain.length - 1])?.exp;
  return typeof exp === "number" ? exp : 0;
}

/** Signs the child's link under `parent` (renewed when it nears expiry), then its children's. */
function sign(node: Node, parent: { identity: AgentIdentity; delegation: DelegationSource }): void {
  const scope = {
    tools: node.explicit?.tools ?? [...node.needs.tools],
    servers: node.explicit?.servers ?? [...node.needs.servers],
    depth: height(node),
    ttlSeconds: node.explicit?.ttlSeconds ?? DEFAULT_DELEGATION_TTL_SECONDS,
  };
  if (scope.tools.length === 0) scope.tools = ["-none-"]; // a child with no tools may call nothing
  if (scope.servers.length === 0) scope.servers = ["-none-"];
  let chain: readonly string[] | undefined;
  let parentChain: readonly string[] | undefined;
  node.delegation = {
    chain() {
      const above = parent.delegation.chain() ?? NO_CHAIN;
      // Renewed a minute before it lapses, or when the parent's own link was renewed.
      if (chain === undefined || parentChain !== above || lastLinkExp(chain) - Date.now() / 1000 < 60) {
        // A link may not outlive the one above it (verifiers refuse the chain): one signed a
        // second or more after its parent's would, with the same TTL. So it is capped at what
        // remains of the parent's link, less a second for the clock to tick before it is signed.
        const remaining = above.length > 0 ? lastLinkExp(above) - Math.floor(Date.now() / 1000) - 1 : Infinity;
        chain = delegate(
          parent.identity,
          node.identity.aztpId,
          { ...scope, ttlSeconds: Math.min(scope.ttlSeconds, remaining) },
          above,
        );
        parentChain = above;
      }
      return chain;
    },
  };
  for (const child of node.children) sign(child, node);
}

const NO_CHAIN: readonly string[] = Object.freeze([]);
const ROOT: DelegationSource = { chain: () => undefined };

interface Built {
  readonly agent: SecureReactAgent;
  readonly node: Node;
}

async function build(params: SecureAgentParams, parentId: string | undefined, level: number): Promise<Built> {
  const { client, name, identity: given, tools = [], mode, audit, middleware = [], ...rest } = params;
  if (level >= MAX_DELEGATION_CHAIN)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `sub-agents nest at most ${MAX_DELEGATION_CHAIN - 1} levels deep`);
  if (client === undefined || typeof client.secureConnect !== "function")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "createSecureAgent needs { client } (from aztp.initialize())");
  if (!Array.isArray(tools)) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "tools must be an array");
  if (given !== undefined && given.name !== name)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `the identity given is ${given.aztpId}, not one named ${JSON.stringify(name)}`,
    );
  const identity =
    given ??
    (await client.secureConnect({}, name, parentId !== undefined ? { parentIdentity: parentId } : {})).identity;
  const node: Node = {
    identity,
    needs: { tools: new Set(), servers: new Set() },
    explicit: undefined,
    children: [],
    delegation: ROOT,
  };
  // The delegation is read per call, so the middleware can exist before it is signed.
  const delegation: DelegationSource = { chain: () => node.delegation.chain() };
  const secure = await createSecureMiddleware({
    identity,
    client,
    ...(mode ? { mode } : {}),
    ...(audit !== undefined ? { audit } : {}),
    delegation,
  });
  const served: StructuredToolInterface[] = [];
  const subAgents: Record<string, SecureReactAgent> = {};
  for (const t of tools) {
    if (isSpec(t)) {
      const child = await build(
        { ...t.params, client, name: t.name, ...(mode && t.params.mode === undefined ? { mode } : {}) },
        identity.aztpId,
        level + 1,
      );
      (child.node as { explicit: SubAgentScope | undefined }).explicit = t.scope;
      node.children.push(child.node);
      subAgents[t.name] = child.agent;
      const st = await subAgentTool(t, child.agent, identity, client, mode);
      served.push(st);
      node.needs.tools.add(st.name);
      node.needs.servers.add(st.aztpId);
      for (const x of child.node.explicit?.tools ?? child.node.needs.tools) node.needs.tools.add(x);
      for (const x of child.node.explicit?.servers ?? child.node.needs.servers) node.needs.servers.add(x);
      continue;
    }
    if (isSecuredTool(t)) {
      served.push(t);
      node.needs.servers.add(t.aztpId);
    } else if (isMcpTool(t)) {
      served.push(t);
      const server = mcpServerOf(t);
      if (server !== undefined) node.needs.servers.add(server);
    } else {
      const st = await secure.serve(t);
      served.push(st);
      node.needs.servers.add(st.aztpId);
    }
    node.needs.tools.add(t.name);
  }
  const agent = createAgent({
    ...rest,
    name,
    tools: served,
    middleware: [secure.middleware, ...middleware],
  } as Parameters<typeof createAgent>[0]);
  const secured = Object.assign(attachIdentity(agent, identity), {
    aztpGuard: secure.guard,
    subAgents,
  }) as SecureReactAgent;
  return { agent: secured, node };
}

/**
 * The tool an orchestrator calls its sub-agent through: served under the child's identity, callable
 * by the parent alone.
 */
async function subAgentTool(
  spec: SubAgentSpec,
  child: SecureReactAgent,
  parent: AgentIdentity,
  client: Aztp,
  mode: GuardMode | undefined,
): Promise<SecuredTool> {
  // A JSON-schema tool is always structured; the cast picks that member of tool()'s union
  // (its other member's zod types do not satisfy exactOptionalPropertyTypes).
  const run = makeTool(
    async (input: { task: string }, config) => {
      // The child's run continues the parent's call that reached this tool: for that call's
      // person (the token signed into it, extended to the child by its middleware), or for nobody.
      const acting = actingCaller();
      const onBehalfOf = acting?.local?.audience === child.identity.aztpId ? acting.onBehalfOf : undefined;
      const result = (await asSubAgent(child.identity.spiffeId, onBehalfOf, () =>
        child.invoke(
          { messages: [{ role: "user", content: input.task }] },
          { ...(config?.signal ? { signal: config.signal } : {}) },
        ),
      )) as { messages?: unknown[] };
      const last = result.messages?.[result.messages.length - 1];
      return AIMessage.isInstance(last)
        ? last.text
        : typeof last === "object" && last !== null && "content" in last
          ? String((last as { content: unknown }).content)
          : "";
    },
    {
      name: spec.name,
      description: spec.description,
      schema: {
        type: "object",
        properties: { task: { type: "string", description: "what the sub-agent should do" } },
        required: ["task"],
        additionalProperties: false,
      },
    },
  ) as DynamicStructuredTool;
  return secureTool(run, {
    client,
    identity: child.identity,
    policy: [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "called-by-its-parent",
            Effect: "Allow",
            Principal: parent.spiffeId,
            Action: "tool:call",
            Resource: spec.name,
          },
        ],
      },
    ],
    ...(mode ? { mode } : {}),
    ...(spec.params.audit !== undefined ? { audit: spec.params.audit } : {}),
  });
}

/**
 * createAgent with an identity and the secure middleware outermost. Returns the agent with
 * `.identity`, `.aztpGuard` and `.subAgents`.
 */
export async function createSecureAgent(params: SecureAgentParams): Promise<SecureReactAgent> {
  if (params === null || typeof params !== "object")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "createSecureAgent takes { client, name, model, tools, ... }");
  const { agent, node } = await build(params, undefined, 0);
  for (const child of node.children) sign(child, node);
  return agent;
}
