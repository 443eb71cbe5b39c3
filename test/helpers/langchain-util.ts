/**
 * Plumbing for the LangChain tests: tools that count their runs, the ToolMessages of a run,
 * each identity's default audit log (`<home>/audit/<name>.jsonl`), and the checks every test
 * makes of a receipted answer (the receipt rides in the artifact, never in what the model reads).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ToolMessage, type BaseMessage } from "@langchain/core/messages";
import { tool, type StructuredToolInterface } from "@langchain/core/tools";
import type { AuditEntry } from "../../src/audit/entry.js";
import { queryAuditLog } from "../../src/audit/index.js";
import { receiptOf } from "../../src/langchain/index.js";
import { SpiffeId } from "../../src/spiffe/spiffeid.js";

/** The AZTP ID the tests' client gives `name` (default trust domain, environment and method). */
export const aztpIdOf = (name: string): string => `aztp://aztp.local/workload/production/node/${name}`;
/** The same identity as audit entries and policies name it. */
export const spiffeOf = (name: string): string => SpiffeId.parse(aztpIdOf(name)).toString();

/** A JSON-schema tool whose body counts its runs and keeps the arguments of each. */
export interface Counted<A> {
  readonly tool: StructuredToolInterface;
  readonly runs: A[];
}

export function counted<A extends Record<string, unknown>>(
  name: string,
  properties: Record<string, { type: string }>,
  body: (args: A, signal: AbortSignal | undefined) => string | Promise<string>,
): Counted<A> {
  const runs: A[] = [];
  const t = tool(
    async (args: A, config) => {
      runs.push(args);
      return body(args, config?.signal);
    },
    {
      name,
      description: `${name} (test tool)`,
      schema: { type: "object", properties, required: Object.keys(properties), additionalProperties: false },
    },
  );
  return { tool: t as unknown as StructuredToolInterface, runs };
}

/** `add({a, b})` answering with the sum as text. */
export const adder = (name = "add"): Counted<{ a: number; b: number }> =>
  counted(name, { a: { type: "number" }, b: { type: "number" } }, ({ a, b }) => String(a + b));

/** The ToolMessages of an agent run's result, by tool-call id. */
export function toolMessages(result: { messages?: BaseMessage[] } | unknown): Map<string, ToolMessage> {
  const out = new Map<string, ToolMessage>();
  for (const m of (result as { messages?: BaseMessage[] }).messages ?? [])
    if (ToolMessage.isInstance(m)) out.set(m.tool_call_id, m);
  return out;
}

/** The one ToolMessage answering `id`. */
export function answerTo(result: unknown, id: string): ToolMessage {
  const m = toolMessages(result).get(id);
  assert.ok(m, `no ToolMessage answers ${id}`);
  return m;
}

/** The ToolMessages a fake model was shown, over all its invocations, by tool-call id (the last one seen). */
export function seenByModel(model: { calls: ReadonlyArray<{ messages: BaseMessage[] }> }): Map<string, ToolMessage> {
  const out = new Map<string, ToolMessage>();
  for (const call of model.calls)
    for (const m of call.messages) if (ToolMessage.isInstance(m)) out.set(m.tool_call_id, m);
  return out;
}

export const textOf = (m: ToolMessage): string =>
  typeof m.content === "string" ? m.content : JSON.stringify(m.content);

/** The default audit log of the identity `name` in `home`. */
export const logOf = (home: string, name: string): string => join(home, "audit", `${name}.jsonl`);

/** Every entry of `name`'s default log (none when it does not exist). */
export async function auditOf(home: string, name: string): Promise<AuditEntry[]> {
  const path = logOf(home, name);
  return existsSync(path) ? queryAuditLog(path) : [];
}

/** The entries of `entries` for one tool call. */
export const forCall = (entries: readonly AuditEntry[], toolCallId: string): AuditEntry[] =>
  entries.filter((e) => e.toolCallId === toolCallId);

/** The one entry of `entries` for `toolCallId` (asserting there is exactly one). */
export function oneFor(entries: readonly AuditEntry[], toolCallId: string, what: string): AuditEntry {
  const found = forCall(entries, toolCallId);
  assert.equal(
    found.length,
    1,
    `${what}: expected one entry for ${toolCallId}, got ${found.length}: ${JSON.stringify(found.map((e) => [e.side, e.decision, e.reason]))}`,
  );
  return found[0] as AuditEntry;
}

/** Reads `read()` until `done` holds of it, or `ms` pass (then returns what it last read). */
export async function pollFor<T>(read: () => Promise<T>, done: (value: T) => boolean, ms = 5_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A receipted answer as the model must get it: the receipt entry in the artifact, from
 * `callee` (its aztp:// form, the spiffe:// one beside it), and the receipt itself nowhere in the content. Returns the entry.
 */
export function assertReceipted(
  m: ToolMessage,
  callee: string,
  status: "ok" | "error" | "denied" = "ok",
): NonNullable<ReturnType<typeof receiptOf>> {
  const entry = receiptOf(m);
  assert.ok(entry, `${m.tool_call_id}: no receipt entry in the artifact (${JSON.stringify(m.artifact)})`);
  assert.equal(entry.callee, callee, `${m.tool_call_id}: receipt from another callee`);
  assert.equal(
    entry.calleeSpiffeId,
    SpiffeId.parse(callee).toString(),
    `${m.tool_call_id}: the callee's spiffe:// form`,
  );
  assert.equal(entry.status, status, `${m.tool_call_id}: receipt status (content: ${textOf(m)})`);
  if (status !== "denied") assert.equal(typeof entry.receipt, "string", `${m.tool_call_id}: no receipt`);
  if (entry.receipt !== undefined)
    assert.ok(!textOf(m).includes(entry.receipt), `${m.tool_call_id}: the receipt is in the content the model reads`);
  assert.ok(
    !/aztp_receipt|eyJhbGciOi/.test(textOf(m)),
    `${m.tool_call_id}: a token or receipt is in the content: ${textOf(m)}`,
  );
  return entry;
}

/** An error ToolMessage whose content starts with `Error [code]`, as the model must be told. */
export function assertRefused(m: ToolMessage, code: string): void {
  assert.equal(m.status, "error", `${m.tool_call_id}: expected an error answer, got ${textOf(m)}`);
  assert.ok(textOf(m).startsWith(`Error [${code}]`), `${m.tool_call_id}: expected Error [${code}], got ${textOf(m)}`);
  assert.equal(receiptOf(m)?.code, code, `${m.tool_call_id}: the receipt entry's code`);
}

/** The default logs of several identities, in order (a tuple: `const [a, b] = await auditsOf(home, "a", "b")`). */
export async function auditsOf<const N extends readonly string[]>(
  home: string,
  ...names: N
): Promise<{ -readonly [K in keyof N]: AuditEntry[] }> {
  return (await Promise.all(names.map((n) => auditOf(home, n)))) as { -readonly [K in keyof N]: AuditEntry[] };
}

/** The answer to `id` the fake model was shown (asserting it was shown one). */
export function shownTo(model: { calls: ReadonlyArray<{ messages: BaseMessage[] }> }, id: string): ToolMessage {
  const m = seenByModel(model).get(id);
  assert.ok(m, `the model was never shown an answer to ${id}`);
  return m;
}
