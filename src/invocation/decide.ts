/**
 * The policy step of a tool call, built on the one policy request (policy/request.ts): action
 * `tool:call`, resource = the tool, principal = the caller, with the context keys of
 * policy/context.ts.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import type { AuthMethod, PersonContext } from "../policy/context.js";
import type { CompiledPolicies, PolicyDecision } from "../policy/evaluate.js";
import type { PolicyDocument } from "../policy/policy.js";
import { decidePolicy, TOOL_CALL_ACTION, type IdentityRelations } from "../policy/request.js";
import type { VerifiedInvocation } from "./invocation.js";

/**
 * The policy step of a call, for a token verifyInvocation accepted. Throws ERR_POLICY_DENIED;
 * returns the decision when allowed. A step of its own, after verification and never inside
 * it, so an integration tells "verified but denied" from "not verified" and audits the caller
 * it knows: `CalleeGuard.admit` runs it for every binding.
 */
export function decideInvocation(
  verified: VerifiedInvocation,
  options: {
    policy: CompiledPolicies | readonly PolicyDocument[];
    args?: unknown;
    relations?: ((spiffeId: string) => IdentityRelations | undefined) | undefined;
    sourceIp?: string | undefined;
    now?: Date | undefined;
  },
): PolicyDecision {
  return requireToolCallAllowed(options.policy, {
    caller: verified.caller.toString(),
    callee: verified.claims.aud,
    tool: verified.claims.tool,
    args: options.args ?? {},
    delegationDepth: verified.delegation.length,
    relations: options.relations,
    sourceIp: options.sourceIp,
    now: options.now,
    authMethod: "signed",
    ...(verified.onBehalfOf !== undefined
      ? { person: verified.onBehalfOf.person, actors: verified.onBehalfOf.actors }
      : {}),
  });
}

/**
 * decideToolCall for a call about to run: throws ERR_POLICY_DENIED unless allowed. A call
 * authenticated by a bearer token (no invocation to verify) is decided by this directly.
 */
export function requireToolCallAllowed(
  policy: CompiledPolicies | readonly PolicyDocument[],
  call: Parameters<typeof decideToolCall>[1],
): PolicyDecision {
  const decision = decideToolCall(policy, call);
  if (decision.decision !== "allow") {
    throw new AztpError(
      ErrorCodes.POLICY_DENIED,
      `policy denies ${call.caller} calling ${call.tool}${call.authMethod === "bearer" ? " with a bearer token" : ""} (${decision.reason}${decision.statement !== undefined ? `, statement ${decision.statement}` : ""})`,
    );
  }
  return decision;
}

/**
 * The one policy request for a tool call, and its decision (never throws for a deny).
 * decideInvocation uses it for a verified call; a server uses it to decide which tools a
 * verified caller may see (no arguments yet, so argument conditions do not hold).
 */
export function decideToolCall(
  policy: CompiledPolicies | readonly PolicyDocument[],
  call: {
    caller: string;
    callee: string;
    tool: string;
    args?: unknown;
    relations?: ((spiffeId: string) => IdentityRelations | undefined) | undefined;
    sourceIp?: string | undefined;
    now?: Date | undefined;
    delegationDepth?: number;
    /** How the caller was authenticated; absent for a listing decided without a call. */
    authMethod?: AuthMethod | undefined;
    person?: PersonContext | undefined;
    actors?: readonly string[] | undefined;
  },
): PolicyDecision {
  return decidePolicy(policy, {
    principal: call.caller,
    action: TOOL_CALL_ACTION,
    resource: call.tool,
    callee: call.callee,
    tool: call.tool,
    args: call.args,
    relations: call.relations,
    delegationDepth: call.delegationDepth,
    sourceIp: call.sourceIp,
    authMethod: call.authMethod,
    now: call.now,
    person: call.person,
    actors: call.actors,
  });
}
