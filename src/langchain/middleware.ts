/**
 * The agent side of every tool call: a LangChain middleware (`wrapToolCall`) bound to the
 * agent's identity when it is built (LangChain's runtime carries no identity). For each call
 * the model asks for it
 *
 *   - signs the call as the agent (CallerGuard: fails closed on an unwritable log, never
 *     addresses a revoked callee), with the LangChain tool-call id as the signed `tcid` and the
 *     agent's delegation chain when it is a sub-agent;
 *   - hands the token to the callee: a secured local tool reads it from the acting-caller
 *     context; for an MCP tool the secured MCP client signs the request as this agent from the
 *     same context (guard/acting-caller.ts);
 *   - checks the receipt that comes back against what the model will be shown, and records the
 *     call before the model sees anything.
 *
 * A call that is refused anywhere comes back to the model as an error ToolMessage that starts
 * with the code, and the run goes on: throwing from wrapToolCall would end the whole run. What
 * is let through is LangGraph's control flow (an `interrupt()`, a handoff to a parent graph),
 * recorded as interrupted, so a secured agent pauses where a plain one pauses.
 * Nothing is re-checked here that invocation/ owns: this file only moves tokens and receipts.
 */
import { ToolMessage } from "@langchain/core/messages";
import type { ToolCall } from "@langchain/core/messages/tool";
import type { StructuredToolInterface } from "@langchain/core/tools";
import { createMiddleware, type AgentMiddleware } from "langchain";
import type { Aztp } from "../client/aztp.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { OnBehalfOfTokens } from "../client/on-behalf-of-tokens.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { actAs, type ActingCaller } from "../guard/acting-caller.js";
import { CallerGuard, type PreparedCall } from "../guard/caller.js";
import type { GuardMode } from "../guard/recorder.js";
import { withTrace } from "../guard/trace-scope.js";
import { canonicalDigest } from "../invocation/canonical.js";
import type { Trust } from "../invocation/trust.js";
import { commandIsError, commandReceipt, commandResult, COMMAND_REASON, isCommand, type Command } from "./command.js";
import { PendingApprovals, withApprovalInterrupt, type ApprovalAsk } from "./approval-interrupt.js";
import { controlFlowName, isControlFlow } from "./control-flow.js";
import { isMcpTool, mcpServerOf } from "./mcp-mark.js";
import { receiptEntry, receiptOf, withReceipt, type ReceiptArtifact } from "./receipt-artifact.js";
import { onBehalfOfForCall } from "./run-person.js";
import { runTrace } from "./run-trace.js";
import { isSecuredTool, refusalText, secureTool, type SecuredTool } from "./tool.js";

/** How a tool that has no identity of its own is named when the middleware serves it under one. */
export function servedToolName(agentName: string, toolName: string): string {
  return `${agentName}.tools.${toolName}`;
}

/** The delegation an agent acts under (a sub-agent's), read per call: it is renewed before it expires. */
export interface DelegationSource {
  chain(): readonly string[] | undefined;
}

export interface SecureMiddlewareOptions {
  /** The agent's identity: every call is signed with it. */
  identity: AgentIdentity;
  /**
   * Gives a tool without an identity one of its own (named `<agent>.tools.<tool>`, a child of the
   * agent, callable by the agent alone). Without it such a tool is refused (ERR_TOOL_UNSECURED).
   */
  client?: Aztp;
  trust?: Trust;
  mode?: GuardMode;
  /**
   * Where the agent's side of each call is recorded. Default `<home>/audit/<agent>.jsonl`; `false`
   * keeps none (said at start).
   */
  audit?: AuditOption;
  /** The delegation chain the agent presents (a sub-agent's, from its parent). */
  delegation?: DelegationSource | readonly string[];
}

export interface SecureMiddleware {
  readonly middleware: AgentMiddleware;
  readonly guard: CallerGuard;
  /** Gives `tool` its served identity now (createSecureAgent does this at creation). */
  serve(tool: StructuredToolInterface): Promise<SecuredTool>;
}

function toolMessage(
  call: ToolCall,
  content: ToolMessage["content"],
  entry: ReceiptArtifact,
  artifact?: unknown,
): ToolMessage {
  return new ToolMessage({
    content,
    tool_call_id: call.id ?? "",
    name: call.name,
    status: entry.status === "ok" ? "success" : "error",
    artifact: withReceipt(artifact, entry),
  });
}

function refusal(call: ToolCall, callee: string, error: AztpError, receipt?: string): ToolMessage {
  return toolMessage(
    call,
    refusalText(error.code, error.message),
    receiptEntry(callee, { status: "denied", code: error.code, receipt }),
  );
}

function asError(e: unknown, code: ErrorCode): AztpError {
  return e instanceof AztpError ? e : new AztpError(code, (e as Error)?.message ?? String(e), { cause: e });
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/** Whether `shown` is the answer a tool gave (`given`): the same content and status. */
function sameAnswer(given: unknown, shown: ToolMessage): boolean {
  if (given === shown) return true;
  if (!ToolMessage.isInstance(given) || (given.status ?? "success") !== (shown.status ?? "success")) return false;
  try {
    return canonicalDigest(given.content, "content") === canonicalDigest(shown.content, "content");
  } catch {
    return false;
  }
}

export async function createSecureMiddleware(options: SecureMiddlewareOptions): Promise<SecureMiddleware> {
  const { identity, client } = options;
  const trust = options.trust ?? (await client?.trust());
  if (trust === undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "the secure middleware needs a trust (or a client to take it from)",
    );
  const audit = await auditFor(identity, options.audit, "secureAgent");
  const guard = new CallerGuard({ identity, trust, mode: options.mode ?? "enforce", ...(audit ? { audit } : {}) });
  const delegation: DelegationSource | undefined = Array.isArray(options.delegation)
    ? { chain: () => options.delegation as readonly string[] }
    : (options.delegation as DelegationSource | undefined);

  // Tools given an identity by this middleware, once each (by tool object).
  const served = new WeakMap<object, Promise<SecuredTool>>();
  const serve = (tool: StructuredToolInterface): Promise<SecuredTool> => {
    if (client === undefined) {
      return Promise.reject(
        new AztpError(
          ErrorCodes.TOOL_UNSECURED,
          `the tool ${tool.name} has no AZTP identity and this middleware has no client to give it one: wrap it with secureTool, or use createSecureAgent`,
        ),
      );
    }
    let p = served.get(tool);
    if (p === undefined) {
      p = secureTool(tool, {
        client,
        trust,
        name: servedToolName(identity.name, tool.name),
        parentIdentity: identity.aztpId,
        // Served for this agent alone: no other caller is admitted.
        policy: [
          {
            Version: "2012-10-17",
            Statement: [
              {
                Sid: "served-for-its-agent",
                Effect: "Allow",
                Principal: identity.spiffeId,
                Action: "tool:call",
                Resource: "*",
              },
            ],
          },
        ],
        mode: options.mode ?? "enforce",
        ...(options.audit !== undefined ? { audit: options.audit } : {}),
      });
      served.set(tool, p);
      p.catch(() => served.delete(tool));
    }
    return p;
  };

  // The people this agent acts for, each person's token exchanged once (run-person.ts).
  const people = new OnBehalfOfTokens(identity);
  // The calls paused for a person's approval, so a resumed run makes the approved call only.
  const pendingApprovals = new PendingApprovals();

  const sign = (
    call: ToolCall,
    audience: string,
    onBehalfOf: string | undefined,
    ask?: ApprovalAsk,
  ): Promise<PreparedCall> => {
    const chain = delegation?.chain();
    return guard.prepare({
      audience,
      tool: call.name,
      args: call.args,
      ...(ask?.approval !== undefined ? { approval: ask.approval } : {}),
      ...(call.id ? { toolCallId: call.id } : {}),
      ...(chain && chain.length > 0 ? { delegation: chain } : {}),
      ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
    });
  };

  /**
   * A local secured tool: sign for it, run it with the token in context, check its receipt. A
   * Command it returns is checked as one (command.ts) and given on; LangGraph's control flow
   * (an interrupt in the tool or in a middleware inside this one) is recorded and let through.
   */
  const callLocal = async (
    call: ToolCall,
    tool: SecuredTool,
    onBehalfOf: string | undefined,
    run: (tool: SecuredTool) => Promise<unknown>,
    ask: ApprovalAsk,
  ): Promise<ToolMessage | Command> => {
    let prepared: PreparedCall;
    try {
      prepared = await sign(call, tool.identity.spiffeId, onBehalfOf, ask);
    } catch (e) {
      return refusal(call, tool.aztpId, asError(e, ErrorCodes.ARGUMENT_INVALID));
    }
    const acting: ActingCaller = {
      guard,
      toolCallId: call.id ?? "",
      local: { audience: tool.aztpId, token: prepared.token },
      ...(prepared.claims.dlg ? { delegation: prepared.claims.dlg } : {}),
      // A sub-agent served by this tool continues the call for this person (agent.ts, run-person.ts).
      ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
    };
    let answer: unknown;
    try {
      answer = await actAs(acting, () => run(tool));
      ask.request = acting.approvalRequest;
    } catch (e) {
      if (isControlFlow(e)) {
        // The run pauses (or is rerouted) here, as in a plain agent; a resume signs the call anew.
        const unrecorded = await guard.interrupted(prepared, controlFlowName(e));
        if (unrecorded === undefined) throw e;
        return refusal(call, tool.aztpId, unrecorded);
      }
      const error = asError(e, ErrorCodes.TOOL_FAILED);
      const unrecorded = await guard.fail(prepared, error);
      return refusal(call, tool.aztpId, unrecorded ?? error);
    }
    if (isCommand(answer)) {
      // Checked against what the Command carries now: one changed after its receipt was signed is refused.
      try {
        await guard.settle(prepared, {
          result: commandResult(answer),
          receipt: commandReceipt(answer, call.id)?.receipt,
          isError: commandIsError(answer, call.id),
          reason: COMMAND_REASON,
        });
      } catch (e) {
        return refusal(call, tool.aztpId, asError(e, ErrorCodes.RECEIPT_INVALID));
      }
      return answer;
    }
    if (!ToolMessage.isInstance(answer)) {
      const error = new AztpError(
        ErrorCodes.RECEIPT_MISSING,
        `the tool ${call.name} answered with no ToolMessage, so no receipt came back (a middleware inside replaced its answer?)`,
      );
      const unrecorded = await guard.fail(prepared, error);
      return refusal(call, tool.aztpId, unrecorded ?? error);
    }
    const entry = receiptOf(answer);
    if (
      entry?.receipt === undefined &&
      entry?.code !== undefined &&
      KNOWN_CODES.has(entry.code) &&
      guard.mode === "enforce"
    ) {
      // The callee answered with an error it could not receipt (its log failed): record that code.
      const error = new AztpError(
        entry.code as ErrorCode,
        typeof answer.content === "string" ? answer.content : `the callee refused with ${entry.code}`,
      );
      const unrecorded = await guard.fail(prepared, error);
      return refusal(call, tool.aztpId, unrecorded ?? error);
    }
    try {
      await guard.settle(prepared, {
        result: answer.content,
        receipt: entry?.receipt,
        isError: answer.status === "error",
      });
    } catch (e) {
      return refusal(call, tool.aztpId, asError(e, ErrorCodes.RECEIPT_INVALID));
    }
    return answer;
  };

  /** An MCP tool: the secured MCP client signs as this agent from the context and checks the receipt. */
  const callMcp = async (
    call: ToolCall,
    server: string | undefined,
    onBehalfOf: string | undefined,
    run: () => Promise<unknown>,
    ask: ApprovalAsk,
  ): Promise<ToolMessage> => {
    const chain = delegation?.chain();
    let argsDigest: string | undefined;
    try {
      argsDigest = canonicalDigest(call.args, "args");
    } catch {
      argsDigest = undefined; // the client's signer refuses such arguments, and records it
    }
    const acting: ActingCaller = {
      guard,
      toolCallId: call.id ?? "",
      ...(argsDigest !== undefined ? { argsDigest } : {}),
      ...(chain && chain.length > 0 ? { delegation: chain } : {}),
      ...(ask.approval !== undefined ? { approval: ask.approval } : {}),
      ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
    };
    let answer: unknown;
    let thrown: unknown;
    try {
      answer = await actAs(acting, run);
    } catch (e) {
      thrown = e;
    }
    ask.request = acting.approvalRequest;
    const outcome = acting.outcome;
    if (thrown !== undefined && isControlFlow(thrown)) {
      // LangGraph's control flow (an interrupt in a middleware inside this one) is let through. A
      // call already sent is on record as what came of it; one left before it was signed is
      // recorded here as interrupted.
      if (outcome !== undefined) throw thrown;
      const unrecorded = await guard.interrupted(
        {
          ...(server !== undefined ? { audience: server } : {}),
          tool: call.name,
          args: call.args,
          ...(call.id ? { toolCallId: call.id } : {}),
        },
        controlFlowName(thrown),
      );
      if (unrecorded === undefined) throw thrown;
      return refusal(call, server ?? "unknown", unrecorded);
    }
    if (outcome === undefined) {
      // Nothing was signed for this call: it is still recorded, as refused, and its answer is not
      // used. A tool that threw failed before sending (arguments its schema refuses, a closed
      // connection): ERR_TOOL_FAILED, as a local tool's would be. One that answered with nothing
      // signed went through a client that is not a secured one: ERR_TOOL_UNSECURED.
      const error =
        thrown !== undefined
          ? new AztpError(
              ErrorCodes.TOOL_FAILED,
              `the MCP tool ${call.name} failed before sending its call: ${(thrown as Error)?.message ?? String(thrown)}`,
            )
          : new AztpError(
              ErrorCodes.TOOL_UNSECURED,
              `the MCP tool ${call.name} sent no signed call (its client is not a secured MCP client)`,
            );
      return refusal(
        call,
        server ?? "unknown",
        await guard.refuse(
          {
            ...(server !== undefined ? { audience: server } : {}),
            tool: call.name,
            args: call.args,
            ...(call.id ? { toolCallId: call.id } : {}),
          },
          error,
        ),
      );
    }
    const entry = (status: ReceiptArtifact["status"], code?: string): ReceiptArtifact =>
      receiptEntry(outcome.audience, { receipt: outcome.receipt, status, code });
    if (thrown !== undefined || !ToolMessage.isInstance(answer)) {
      const code = outcome.code ?? ErrorCodes.TOOL_FAILED;
      const text =
        thrown !== undefined
          ? ((thrown as Error)?.message ?? String(thrown))
          : `the MCP tool ${call.name} gave no ToolMessage`;
      return toolMessage(
        call,
        refusalText(code, outcome.message ?? text),
        entry(outcome.status === "ok" ? "error" : outcome.status, code),
      );
    }
    if (guard.mode === "enforce" && !sameAnswer(acting.answered, answer)) {
      // The server's receipt was checked against its result, which the tool turned into the
      // answer it gave; this is not that answer (a middleware inside this one changed it).
      // (In audit mode the answer stands, as it does after any failed check there.)
      const error = new AztpError(
        ErrorCodes.RECEIPT_MISMATCH,
        `the answer of the MCP tool ${call.name} is not the one the tool gave (changed on its way back by a middleware inside the secure one?): its receipt does not cover it`,
      );
      const recorded = await guard.refuse(
        { audience: outcome.audience, tool: call.name, args: call.args, ...(call.id ? { toolCallId: call.id } : {}) },
        error,
      );
      return refusal(call, outcome.audience, recorded);
    }
    return toolMessage(
      call,
      answer.content,
      entry(answer.status === "error" ? "error" : outcome.status, outcome.code),
      answer.artifact,
    );
  };

  const middleware = createMiddleware({
    name: "aztp",
    // A call the callee lets run only with a person's approval pauses the run (an interrupt) and
    // is made again with the approval it resumes with (approval-interrupt.ts).
    // Each call is a span in its run's trace (run-trace.ts): signed here for a local tool, by the
    // secured MCP client for an MCP tool, both reading it from the trace scope.
    wrapToolCall: async (request, handler) =>
      withTrace(runTrace(request.runtime?.configurable, (request.state as { messages?: unknown }).messages), () =>
        withApprovalInterrupt(
          request.toolCall,
          (ask) => dispatch(request, handler, ask),
          async (error) => {
            const call = request.toolCall;
            const args = { tool: call.name, args: call.args, ...(call.id ? { toolCallId: call.id } : {}) };
            return refusal(call, "unknown", await guard.refuse(args, error));
          },
          pendingApprovals,
        ),
      ),
  });

  const dispatch = async (
    request: Parameters<NonNullable<AgentMiddleware["wrapToolCall"]>>[0],
    handler: Parameters<NonNullable<AgentMiddleware["wrapToolCall"]>>[1],
    ask: ApprovalAsk,
  ): Promise<ToolMessage | Command> => {
    const call = request.toolCall;
    const tool = request.tool as StructuredToolInterface | undefined;
    if (tool === undefined) {
      // Nothing to address a token to: recorded as refused, and the model is told.
      const error = new AztpError(ErrorCodes.TOOL_UNKNOWN, `there is no tool named ${JSON.stringify(call.name)}`);
      return refusal(
        call,
        "unknown",
        await guard.refuse({ tool: call.name, args: call.args, ...(call.id ? { toolCallId: call.id } : {}) }, error),
      );
    }
    // The person this run acts for, if any: exchanged (once per person token and key) before
    // anything is signed. A token that cannot be exchanged (an untrusted provider, expired,
    // forged) refuses the call, on record, and the model is told why.
    let onBehalfOf: string | undefined;
    try {
      onBehalfOf = await onBehalfOfForCall(identity.spiffeId, people, request.runtime?.configurable);
    } catch (e) {
      const error = asError(e, ErrorCodes.ARGUMENT_INVALID);
      const audience = isSecuredTool(tool) ? tool.aztpId : isMcpTool(tool) ? mcpServerOf(tool) : undefined;
      return refusal(
        call,
        audience ?? "unknown",
        await guard.refuse(
          {
            ...(audience !== undefined ? { audience } : {}),
            tool: call.name,
            args: call.args,
            ...(call.id ? { toolCallId: call.id } : {}),
          },
          error,
        ),
      );
    }
    if (isSecuredTool(tool)) return callLocal(call, tool, onBehalfOf, async () => handler(request), ask);
    if (isMcpTool(tool)) return callMcp(call, mcpServerOf(tool), onBehalfOf, async () => handler(request), ask);
    let securedTool: SecuredTool;
    try {
      securedTool = await serve(tool);
    } catch (e) {
      const error = asError(e, ErrorCodes.TOOL_UNSECURED);
      return refusal(
        call,
        "unknown",
        await guard.refuse({ tool: call.name, args: call.args, ...(call.id ? { toolCallId: call.id } : {}) }, error),
      );
    }
    return callLocal(call, securedTool, onBehalfOf, async (t) => handler({ ...request, tool: t }), ask);
  };
  return { middleware, guard, serve };
}
