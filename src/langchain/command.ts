/**
 * A tool that returns a LangGraph `Command` changes the graph's state and may route it: the
 * messages it adds, the state keys it updates, the node it goes to next (`goto`, and `graph`:
 * `Command.PARENT` hands over to another agent of the parent graph, as supervisor and swarm
 * agents do). So a secured tool's receipt for a Command covers what the Command carries, in the
 * JSON form `commandResult` gives it:
 *
 *   { type: "command", graph?, update?, goto: [...], resume? }
 *
 * where each message (a LangChain BaseMessage anywhere in the update) is
 * `{ type, id?, name?, content, tool_call_id?, status?, tool_calls? }` (a ToolMessage's status
 * defaults to "success"; an AIMessage's tool calls are `{ id, name, args }`) and each `Send` in
 * `goto` is `{ send: node, args }`. Message artifacts and metadata are not covered, as a local
 * answer's artifact is not. The callee signs over it, the caller checks the Command it is handed
 * against it, so a Command changed between them (its update, its goto, a message) is refused.
 *
 * The receipt rides where any answer's does, in the artifact of the Command's ToolMessage for
 * the call; a Command without one carries it on itself, under a symbol no serialisation sees.
 */
import { ToolMessage, AIMessage, isBaseMessage, type BaseMessage } from "@langchain/core/messages";
import { Command, isCommand as isLangGraphCommand } from "@langchain/langgraph";
import { MAX_JSON_DEPTH } from "../invocation/canonical.js";
import { isPlainObject } from "../json/value.js";
import { receiptOf, withReceipt, type ReceiptArtifact } from "./receipt-artifact.js";

export type { Command } from "@langchain/langgraph";

/** The audit reason that says a call's result was a Command (on both sides' entries). */
export const COMMAND_REASON = "langgraph-command";

/** Whether a tool's output is a LangGraph Command (LangGraph's own test: by its `lg_name`, so any copy's). */
export function isCommand(value: unknown): value is Command {
  return isLangGraphCommand(value);
}

const RECEIPT = Symbol.for("aztp.commandReceipt");

/** A value with every message and Send in it in the form above; anything else as it is (the digest judges it). */
function project(value: unknown, depth: number): unknown {
  // Deeper than a digest goes: left as it is, for the digest to refuse.
  if (depth > MAX_JSON_DEPTH) return value;
  if (isBaseMessage(value)) return messageOf(value, depth);
  if (Array.isArray(value)) return value.map((v) => project(v, depth + 1));
  if (typeof value === "object" && value !== null && (value as { lg_name?: unknown }).lg_name === "Send") {
    const send = value as { node?: unknown; args?: unknown };
    return { send: send.node, args: project(send.args, depth + 1) };
  }
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      Object.defineProperty(out, k, { value: project(v, depth + 1), enumerable: true, writable: true });
    return out;
  }
  return value;
}

function messageOf(m: BaseMessage, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = { type: m.getType() };
  if (m.id !== undefined) out.id = m.id;
  if (m.name !== undefined) out.name = m.name;
  out.content = project(m.content, depth + 1);
  if (ToolMessage.isInstance(m)) {
    out.tool_call_id = m.tool_call_id;
    out.status = m.status ?? "success";
  }
  if (AIMessage.isInstance(m) && m.tool_calls !== undefined && m.tool_calls.length > 0)
    out.tool_calls = m.tool_calls.map((c) => ({ id: c.id ?? null, name: c.name, args: project(c.args, depth + 2) }));
  return out;
}

/** What a receipt for `command` covers (see the file comment). */
export function commandResult(command: Command): Record<string, unknown> {
  const c = command as { graph?: unknown; update?: unknown; goto?: unknown; resume?: unknown };
  return {
    type: "command",
    ...(c.graph !== undefined ? { graph: project(c.graph, 1) } : {}),
    ...(c.update !== undefined ? { update: project(c.update, 1) } : {}),
    goto: project(c.goto ?? [], 1),
    ...(c.resume !== undefined ? { resume: project(c.resume, 1) } : {}),
  };
}

/** The messages of a Command's update, when it has them as LangChain's agents do (`update.messages`). */
function messagesOf(command: Command): unknown[] | undefined {
  const update = (command as { update?: unknown }).update;
  return isPlainObject(update) && Array.isArray(update.messages) ? update.messages : undefined;
}

/** The Command's answer to the tool call `toolCallId`: its ToolMessage for that call, if it has one. */
export function commandAnswer(command: Command, toolCallId: string | undefined): ToolMessage | undefined {
  if (toolCallId === undefined) return undefined;
  return messagesOf(command)?.find((m): m is ToolMessage => ToolMessage.isInstance(m) && m.tool_call_id === toolCallId);
}

/**
 * Whether the Command answers its call with an error (its ToolMessage for the call says so): the
 * receipt's status must agree.
 */
export function commandIsError(command: Command, toolCallId: string | undefined): boolean {
  return commandAnswer(command, toolCallId)?.status === "error";
}

/** The receipt entry a Command carries for the call `toolCallId`. */
export function commandReceipt(command: Command, toolCallId: string | undefined): ReceiptArtifact | undefined {
  const answer = commandAnswer(command, toolCallId);
  if (answer !== undefined) return receiptOf(answer);
  return (command as { [RECEIPT]?: ReceiptArtifact })[RECEIPT];
}

/**
 * `command` with `entry` where the caller looks for it: in its ToolMessage for the call, else
 * on the Command itself. A new Command (and ToolMessage): the tool's own objects are not changed.
 */
export function receiptedCommand(command: Command, toolCallId: string | undefined, entry: ReceiptArtifact): Command {
  const c = command as { graph?: string; update?: unknown; goto?: Command["goto"]; resume?: unknown };
  const answer = commandAnswer(command, toolCallId);
  let update = c.update;
  if (answer !== undefined && isPlainObject(update)) {
    const fields = answer as ToolMessage;
    const receipted = new ToolMessage({
      content: fields.content,
      tool_call_id: fields.tool_call_id,
      ...(fields.name !== undefined ? { name: fields.name } : {}),
      ...(fields.status !== undefined ? { status: fields.status } : {}),
      ...(fields.id !== undefined ? { id: fields.id } : {}),
      additional_kwargs: fields.additional_kwargs,
      response_metadata: fields.response_metadata,
      artifact: withReceipt(fields.artifact, entry),
    });
    update = { ...update, messages: (update.messages as unknown[]).map((m) => (m === answer ? receipted : m)) };
  }
  const out = new Command({
    ...(c.graph !== undefined ? { graph: c.graph } : {}),
    ...(update !== undefined ? { update: update as Record<string, unknown> } : {}),
    ...(c.goto !== undefined ? { goto: c.goto } : {}),
    ...(c.resume !== undefined ? { resume: c.resume } : {}),
  });
  Object.defineProperty(out, RECEIPT, { value: entry });
  return out;
}
