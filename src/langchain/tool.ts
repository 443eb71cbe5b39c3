/**
 * A LangChain tool with an identity of its own: `secureTool(tool, { client, name })`. Every call
 * is verified by the one verifier (guard/, invocation/) before the tool runs, decided by policy,
 * answered with a signed receipt and audited, whoever calls it: a tool shared by several agents
 * trusts none of them more than its policy says.
 *
 * The token reaches the tool through the acting-caller context (guard/acting-caller.ts) that the
 * calling agent's middleware sets: LangChain hands a tool only its arguments and config, and a
 * token smuggled into either would be visible to every other middleware and callback. A call
 * with no token addressed to this tool is an unsigned call: refused in enforce mode, run and
 * recorded as such in audit mode, as an MCP server does.
 *
 * What the receipt covers is the ToolMessage's `content`, exactly as the model will see it, or
 * for a tool that returns a LangGraph Command what the Command carries (command.ts); the receipt
 * travels in the `artifact`, which the model is not shown (receipt-artifact.ts).
 *
 * LangGraph's control flow is let through, never answered as a failure: a tool that calls
 * `interrupt()` pauses the run as it would in a plain agent, and is recorded as interrupted
 * (control-flow.ts).
 */
import { ToolMessage } from "@langchain/core/messages";
import type { ToolCall } from "@langchain/core/messages/tool";
import type { RunnableConfig } from "@langchain/core/runnables";
import { StructuredTool, type StructuredToolInterface } from "@langchain/core/tools";
import type { Aztp } from "../client/aztp.js";
import type { AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { actingCaller } from "../guard/acting-caller.js";
import { withTrace } from "../guard/trace-scope.js";
import { contextOf } from "../invocation/trace-context.js";
import { CalleeGuard, type Admission, type Settlement } from "../guard/callee.js";
import type { GuardMode } from "../guard/recorder.js";
import type { ReceiptStatus } from "../invocation/receipt.js";
import type { Trust } from "../invocation/trust.js";
import { servingGuard } from "../guard/serving-guard.js";
import type { CompiledPolicies } from "../policy/evaluate.js";
import type { PolicyDocument } from "../policy/policy.js";
import {
  commandAnswer,
  commandIsError,
  commandResult,
  COMMAND_REASON,
  isCommand,
  receiptedCommand,
  type Command,
} from "./command.js";
import { controlFlowName, isControlFlow } from "./control-flow.js";
import { receiptEntry, withReceipt } from "./receipt-artifact.js";

/** What a refused or failed call tells the model: the code first, so a model (and a person) can act on it. */
export function refusalText(code: string, message: string): string {
  return `Error [${code}]: ${message}`;
}

/** A LangChain ToolCall as tools receive it (`{ ..., type: "tool_call" }`). */
function isToolCall(value: unknown): value is ToolCall {
  return (
    typeof value === "object" && value !== null && (value as { type?: unknown }).type === "tool_call" && "args" in value
  );
}

/** What ToolNode makes of a tool's output when the tool returned no ToolMessage. */
function contentOf(output: unknown): {
  content: ToolMessage["content"];
  artifact?: unknown;
  status?: "success" | "error";
} {
  if (ToolMessage.isInstance(output)) {
    return {
      content: output.content,
      ...(output.artifact !== undefined ? { artifact: output.artifact } : {}),
      ...(output.status ? { status: output.status } : {}),
    };
  }
  return { content: typeof output === "string" ? output : (JSON.stringify(output) ?? "") };
}

/**
 * What a tool's own failure tells the model: under ERR_TOOL_FAILED, as an MCP tool's failure reads,
 * with the tool's message (the model may fix its arguments from it).
 */
function errorText(tool: string, e: unknown): string {
  const inner = e instanceof AztpError ? `[${e.code}] ${e.message}` : `${(e as Error)?.message ?? String(e)}`;
  return refusalText(ErrorCodes.TOOL_FAILED, `the tool ${tool} failed: ${inner}`);
}

const SECURED = Symbol.for("aztp.securedTool");

export interface SecureToolOptions {
  /** Issue the tool's identity from this client under `name`... */
  client?: Aztp;
  name?: string;
  /** ...or serve it under an identity you hold (with `trust`, or a client to take it from). */
  identity?: AgentIdentity;
  trust?: Trust;
  /** The tool's parent identity when it is issued (an agent serving its own tools). */
  parentIdentity?: string;
  /**
   * Who may call which tool (action "tool:call", resource the tool name). Default: the
   * policies attached to the tool's identity; with none, any verified caller (said at start).
   */
  policy?: CompiledPolicies | readonly PolicyDocument[];
  mode?: GuardMode;
  /** Where each call is recorded. Default `<home>/audit/<name>.jsonl`; `false` keeps none (said at start). */
  audit?: AuditOption;
}

/**
 * A tool that verifies each call before it runs. Its `invoke` takes what any LangChain tool
 * takes (a ToolCall or bare arguments): with a ToolCall it always answers with a ToolMessage
 * (an error one for a refusal, so an agent's run goes on), with bare arguments it returns the
 * content or throws the refusal's AztpError.
 */
export class SecuredTool extends StructuredTool {
  readonly name: string;
  readonly description: string;
  readonly schema: StructuredToolInterface["schema"];
  override responseFormat = "content_and_artifact";
  readonly identity: AgentIdentity;
  readonly aztpGuard: CalleeGuard;
  readonly #inner: StructuredToolInterface;
  readonly [SECURED] = true;

  constructor(inner: StructuredToolInterface, identity: AgentIdentity, guard: CalleeGuard) {
    const metadata = (inner as { metadata?: Record<string, unknown> }).metadata;
    super(metadata ? { metadata } : {});
    this.name = inner.name;
    this.description = inner.description;
    this.schema = inner.schema;
    this.returnDirect = inner.returnDirect;
    this.identity = identity;
    this.aztpGuard = guard;
    this.#inner = inner;
  }

  /** The ID tokens for this tool are addressed to. */
  get aztpId(): string {
    return this.identity.aztpId;
  }

  protected async _call(): Promise<never> {
    // invoke() below is the only way in; StructuredTool's call path would skip the guard.
    throw new AztpError(ErrorCodes.UNEXPECTED, "SecuredTool runs only through invoke()");
  }

  override async invoke(input: unknown, config?: RunnableConfig): Promise<unknown> {
    const toolCall = isToolCall(input) ? input : (config as { toolCall?: ToolCall } | undefined)?.toolCall;
    const args: unknown = isToolCall(input) ? input.args : input;
    const acting = actingCaller();
    // Only a token addressed to this tool, for this very tool call, is this call's token.
    const local = acting?.local;
    const token =
      local !== undefined &&
      local.audience === this.aztpId &&
      (toolCall?.id === undefined || acting?.toolCallId === toolCall.id)
        ? local.token
        : undefined;
    const admission = await this.aztpGuard.admit({ tool: this.name, args, token });
    if (!admission.allowed) return this.#refuse(admission, toolCall);

    let output: unknown;
    try {
      // What the tool calls (a sub-agent's run, an MCP server) continues this call's trace, under its span.
      output = await withTrace(contextOf(admission.trace), () =>
        this.#inner.invoke((toolCall ? { ...toolCall, args } : args) as never, config),
      );
    } catch (e) {
      if (isControlFlow(e)) {
        // LangGraph pauses (or reroutes) the run here: no result, so no receipt; recorded, then let through.
        const unrecorded = await this.aztpGuard.interrupted(admission, controlFlowName(e));
        if (unrecorded === undefined) throw e;
        return this.#give(toolCall, { content: "" }, "error", undefined, { receipt: undefined, error: unrecorded });
      }
      const text = errorText(this.name, e);
      return this.#answer(admission, toolCall, { content: text, status: "error" }, "error", ErrorCodes.TOOL_FAILED, e);
    }
    if (isCommand(output)) return this.#command(admission, toolCall, output);
    const out = contentOf(output);
    const failed = out.status === "error";
    return this.#answer(admission, toolCall, out, failed ? "error" : "ok", failed ? ErrorCodes.TOOL_FAILED : undefined);
  }

  async #refuse(admission: Admission, toolCall: ToolCall | undefined): Promise<unknown> {
    const error = admission.error as AztpError;
    // The agent that signed this call asks a person for the approval (approval-interrupt.ts).
    const acting = actingCaller();
    if (error.code === ErrorCodes.APPROVAL_REQUIRED && acting?.local?.audience === this.aztpId)
      acting.approvalRequest = error.detail;
    return this.#answer(
      admission,
      toolCall,
      { content: refusalText(error.code, error.message), status: "error" },
      "denied",
      error.code,
      error,
    );
  }

  /**
   * A Command: receipted over what it carries (command.ts), recorded as one, and given with the
   * receipt in its ToolMessage for the call. One no receipt can cover (a value JSON cannot
   * carry) is not given: the caller gets the error instead, as for any such result.
   */
  async #command(admission: Admission, toolCall: ToolCall | undefined, command: Command): Promise<unknown> {
    const failed = commandIsError(command, toolCall?.id);
    const settled = await this.aztpGuard.settle(admission, {
      status: failed ? "error" : "ok",
      result: commandResult(command),
      ...(failed ? { code: ErrorCodes.TOOL_FAILED } : {}),
      reason: COMMAND_REASON,
    });
    if (settled.error !== undefined) {
      const own = commandAnswer(command, toolCall?.id);
      return this.#give(
        toolCall,
        { content: "", ...(own ? { artifact: own.artifact } : {}) },
        "error",
        undefined,
        settled,
      );
    }
    const entry = receiptEntry(this.aztpId, {
      receipt: settled.receipt,
      status: failed ? "error" : "ok",
      code: failed ? ErrorCodes.TOOL_FAILED : undefined,
    });
    return receiptedCommand(command, toolCall?.id, entry);
  }

  /** Receipts and records the answer, then gives it in the shape the caller asked in. */
  async #answer(
    admission: Admission,
    toolCall: ToolCall | undefined,
    out: { content: ToolMessage["content"]; artifact?: unknown; status?: "success" | "error" },
    status: ReceiptStatus,
    code: string | undefined,
    thrown?: unknown,
  ): Promise<unknown> {
    const settled = await this.aztpGuard.settle(admission, {
      status,
      result: out.content,
      ...(code !== undefined ? { code } : {}),
    });
    return this.#give(toolCall, out, status, code, settled, thrown);
  }

  /** Gives a settled answer in the shape the caller asked in: `settled.error`, when set, instead of the result. */
  #give(
    toolCall: ToolCall | undefined,
    out: { content: ToolMessage["content"]; artifact?: unknown; status?: "success" | "error" },
    status: ReceiptStatus,
    code: string | undefined,
    settled: Settlement,
    thrown?: unknown,
  ): unknown {
    let content = out.content;
    let finalStatus = status;
    let finalCode = code;
    if (settled.error !== undefined) {
      // Not recorded (enforce mode), or a result no receipt can cover: the caller gets that error instead.
      content = refusalText(settled.error.code, settled.error.message);
      finalStatus = "error";
      finalCode = settled.error.code;
    }
    const entry = receiptEntry(this.aztpId, { receipt: settled.receipt, status: finalStatus, code: finalCode });
    if (toolCall !== undefined) {
      return new ToolMessage({
        content,
        tool_call_id: toolCall.id ?? "",
        name: this.name,
        status: finalStatus === "ok" ? "success" : "error",
        artifact: withReceipt(out.artifact, entry),
      });
    }
    if (finalStatus === "ok") return content;
    const error =
      settled.error ??
      (thrown instanceof AztpError
        ? thrown
        : new AztpError(
            (finalCode as AztpError["code"]) ?? ErrorCodes.TOOL_FAILED,
            typeof content === "string" ? content : "the tool failed",
            { cause: thrown },
          ));
    throw Object.assign(error, { receipt: settled.receipt });
  }
}

export function isSecuredTool(value: unknown): value is SecuredTool {
  return typeof value === "object" && value !== null && (value as { [SECURED]?: unknown })[SECURED] === true;
}

/**
 * Gives `tool` an identity of its own (issued from `{ client, name }`, or `{ identity }`) and
 * returns it secured. Its callers must be secured agents (createSecureAgent, or the middleware).
 */
export async function secureTool(tool: StructuredToolInterface, options: SecureToolOptions): Promise<SecuredTool> {
  if (tool === null || typeof tool !== "object" || typeof tool.invoke !== "function" || typeof tool.name !== "string") {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "secureTool needs a LangChain tool (a StructuredTool, or what tool() returns)",
    );
  }
  if (isSecuredTool(tool))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `the tool ${tool.name} is already secured (as ${tool.aztpId})`);
  let identity = options.identity;
  if (identity === undefined) {
    if (options.client === undefined || options.name === undefined)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "secureTool needs { client, name } or { identity }");
    identity = (
      await options.client.secureConnect(
        {},
        options.name,
        options.parentIdentity !== undefined ? { parentIdentity: options.parentIdentity } : {},
      )
    ).identity;
  }
  const trust = options.trust ?? (await options.client?.trust());
  if (trust === undefined)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "secureTool needs a trust (or a client to take it from)");
  const guard = await servingGuard(identity, {
    trust,
    authority: options.client !== undefined ? await options.client.authority() : undefined,
    ...(options.policy !== undefined ? { policy: options.policy } : {}),
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(options.audit !== undefined ? { audit: options.audit } : {}),
    what: "secureTool",
  });
  return new SecuredTool(tool, identity, guard);
}
