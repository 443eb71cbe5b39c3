/**
 * The one policy request: every decision the library makes (a tool call at the verifier, which
 * tools a caller may list, an identity connection, the scopes of an OAuth token, a permission
 * check, `aztp policy check`) is
 * built here, so a context key is set the same way everywhere or nowhere.
 *
 * Request: principal = the caller, action, resource, and the context keys of context.ts built
 * from what the caller of this function established (verified IDs, the registry's relations,
 * the transport's peer address).
 */
import { buildPolicyContext, type AuthMethod, type PersonContext } from "./context.js";
import { CompiledPolicies, evaluatePolicies, type PolicyDecision, type PolicyRequest } from "./evaluate.js";
import type { PolicyDocument } from "./policy.js";

/** The policy action every tool call is evaluated as; Resource is the tool name. */
export const TOOL_CALL_ACTION = "tool:call";
/** The policy action of `verifyIdentityConnection`; Resource is the target's ID. */
export const CONNECT_ACTION = "identity:connect";
/**
 * The policy action of an OAuth token request: may the principal (the client itself, whose
 * policies are asked) obtain a token for Resource (the RFC 8707 resource), with the scope in
 * `aztp:scope`? One request per scope asked (oauth/token-request.ts).
 */
export const TOKEN_ACTION = "oauth:token";

/** Who the caller's identity relates to, for policy conditions (from a registry, if any). */
export interface IdentityRelations {
  parent?: string | undefined;
  links?: string[] | undefined;
}

export interface PolicyRequestInput {
  /** The caller (a verified ID, `aztp://` or `spiffe://`). */
  principal: string;
  action: string;
  resource: string;
  /** The called workload's ID (`aztp:callee`), when there is one. */
  callee?: string | undefined;
  /** The tool's name (`aztp:tool`), when the request is about a tool. */
  tool?: string | undefined;
  /** The arguments as received; absent when there are none yet (tools/list). */
  args?: unknown;
  /** The principal's parent and links; a function is asked for the principal. */
  relations?: IdentityRelations | ((spiffeId: string) => IdentityRelations | undefined) | undefined;
  delegationDepth?: number | undefined;
  /** The peer's IP address as the transport saw it (`aztp:sourceIp`); see normalizeSourceIp. */
  sourceIp?: string | undefined;
  /** How the caller was authenticated (`aztp:authMethod`), for a tool call's decision. */
  authMethod?: AuthMethod | undefined;
  /** The OAuth scope a token request asks for (`aztp:scope`, action TOKEN_ACTION). */
  scope?: string | undefined;
  /** The person the call is made for (verified), and the agents acting for them. */
  person?: PersonContext | undefined;
  actors?: readonly string[] | undefined;
  /** Decision time; defaults to now. */
  now?: Date | undefined;
  /**
   * More context keys: the application's own, or (for `aztp policy check --context`) an
   * `aztp:` key to simulate, such as `aztp:sourceIp`. They never replace a key built from the
   * fields above: those are facts the caller of this function established.
   */
  extra?: Readonly<Record<string, unknown>> | undefined;
}

export function policyRequest(input: PolicyRequestInput): PolicyRequest {
  const rel = typeof input.relations === "function" ? input.relations(input.principal) : input.relations;
  const context = buildPolicyContext({
    caller: input.principal,
    callerParent: rel?.parent,
    callerLinks: rel?.links,
    callee: input.callee,
    tool: input.tool,
    ...(input.args !== undefined ? { args: input.args } : {}),
    time: input.now ?? new Date(),
    delegationDepth: input.delegationDepth ?? 0,
    sourceIp: input.sourceIp,
    authMethod: input.authMethod,
    scope: input.scope,
    person: input.person,
    actors: input.actors,
  });
  if (input.extra !== undefined) {
    for (const [k, v] of Object.entries(input.extra)) if (!(k in context)) context[k] = v;
  }
  return { principal: input.principal, action: input.action, resource: input.resource, context };
}

/** Decides `input` against `policies` (never throws for a deny). A plain list is compiled once and cached. */
export function decidePolicy(
  policies: CompiledPolicies | readonly PolicyDocument[],
  input: PolicyRequestInput,
): PolicyDecision {
  const request = policyRequest(input);
  return policies instanceof CompiledPolicies ? policies.evaluate(request) : evaluatePolicies(policies, request);
}

/**
 * A peer address in the one form policies compare: an IPv4 peer on a dual-stack socket is
 * reported by Node as `::ffff:127.0.0.1`, which an `IpAddress` condition on `127.0.0.0/8`
 * would otherwise not match. Undefined stays undefined (a transport without addresses).
 */
export function normalizeSourceIp(address: string | undefined): string | undefined {
  if (address === undefined || address === "") return undefined;
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return m ? (m[1] as string) : address.toLowerCase();
}
