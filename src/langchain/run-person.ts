/**
 * The person an agent's run acts for (DESIGN §13). One agent serves many people at once, so the
 * person is per run, never per agent:
 *
 *   agent.invoke(input, { configurable: { aztp: { onBehalfOf: personToken } } })
 *
 * The middleware reads it from the run's config on each tool call (LangChain hands it to
 * `wrapToolCall` as `request.runtime.configurable`), exchanges a person's token once for an
 * on-behalf-of token bound to the agent's key (client/on-behalf-of-tokens.ts, kept until a
 * rotation or near expiry), and signs it into every call of that run. An on-behalf-of token
 * already exchanged for this agent may be passed instead and is used as it is.
 *
 * A sub-agent's run continues its parent's call, and so its parent's person: the tool a parent
 * calls its sub-agent through runs the child inside `asSubAgent`, with the on-behalf-of token
 * of the very call it serves, and the child's middleware extends that token to itself (a
 * further hop of the exchange: person → parent → child, which the callee checks against the
 * delegation links). That scope is an AsyncLocalStorage entry naming the child, so it reaches
 * the child's calls and no others; the configurable the child inherits from its parent's run
 * (LangChain passes it down) is not read there, since its token is the parent's first hop.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { checkSubjectToken, type OnBehalfOfTokens } from "../client/on-behalf-of-tokens.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";

/** What `configurable.aztp` of a run may hold. */
export interface AztpRunConfig {
  /**
   * The person this run acts for: their ID token or JWT access token from an OpenID Provider the
   * agent's trust domain trusts (exchanged once for an on-behalf-of token bound to the agent),
   * or an on-behalf-of token already exchanged for this agent (used as it is). Absent: the run
   * acts for nobody.
   */
  onBehalfOf?: string;
  /**
   * The W3C trace context the run's tool calls join (run-trace.ts): the application's
   * `traceparent`, and its `tracestate` if any. Absent: the run has a trace of its own.
   */
  traceparent?: string;
  tracestate?: string;
}

/** A sub-agent's run inside its parent's call: the child it is for, and the parent's token for the person. */
interface SubAgentRun {
  readonly agent: string;
  readonly onBehalfOf: string | undefined;
}

const subAgentRuns = new AsyncLocalStorage<SubAgentRun>();

/** Runs `fn` (the sub-agent `agent`'s run) as a continuation of the parent's call made for `onBehalfOf`'s person, or for nobody. */
export function asSubAgent<T>(agent: string, onBehalfOf: string | undefined, fn: () => T): T {
  return subAgentRuns.run({ agent, onBehalfOf }, fn);
}

/** The run's `configurable.aztp`, checked: an error names what is wrong with it. */
export function runConfigOf(configurable: unknown): AztpRunConfig | undefined {
  const aztp = isJsonObject(configurable) ? configurable.aztp : undefined;
  if (aztp === undefined || aztp === null) return undefined;
  if (!isJsonObject(aztp))
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "configurable.aztp must be an object ({ onBehalfOf, traceparent })",
    );
  const known = new Set(["onBehalfOf", "traceparent", "tracestate"]);
  const unknown = Object.keys(aztp).find((k) => !known.has(k));
  if (unknown !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `configurable.aztp has an unknown member ${JSON.stringify(unknown)}`,
    );
  if (aztp.onBehalfOf === undefined) return {};
  return { onBehalfOf: checkSubjectToken(aztp.onBehalfOf, "configurable.aztp.onBehalfOf") };
}

/**
 * The on-behalf-of token `agent`'s call signs, for the run it is made in: extended from the
 * parent's when the run is a sub-agent's, else from the run's configurable; undefined when the
 * run acts for nobody. Rejects with the exchange's error (an untrusted provider, an expired or
 * forged token, an actor the delegation cannot be extended to).
 */
export function onBehalfOfForCall(
  agent: string,
  tokens: OnBehalfOfTokens,
  configurable: unknown,
): Promise<string | undefined> | undefined {
  const sub = subAgentRuns.getStore();
  if (sub !== undefined && sub.agent === agent) {
    return sub.onBehalfOf === undefined ? undefined : tokens.exchange(sub.onBehalfOf);
  }
  const given = runConfigOf(configurable)?.onBehalfOf;
  return given === undefined ? undefined : tokens.for(given);
}
