/**
 * LangGraph's control flow, which a secured tool call must let through: `interrupt()` (human in
 * the loop), a Command for a parent graph raised from a subgraph (a handoff), a drained run.
 * LangGraph throws these as errors that "bubble up" to the graph, which pauses or reroutes the
 * run; a binding that turned one into an error ToolMessage would run on where a plain agent
 * pauses. So each place that makes a failure into an answer asks `isGraphBubbleUp` first, as
 * LangChain's own toolErrorMiddleware does, records the call as `interrupted` and rethrows.
 *
 * The function is LangGraph's own. `@langchain/langgraph` is a dependency of `langchain` 1.x
 * (`^1.4.13` in langchain 1.5.14), so it is installed wherever this entry point can load, and it
 * is declared an optional peer dependency of this package so that strict installs (pnpm
 * without hoisting, Yarn PnP) link it for us too. LangGraph tests the error by a property
 * (`is_bubble_up`), not by class, so a second copy of LangGraph in the tree is still recognised.
 */
import { isGraphBubbleUp } from "@langchain/langgraph";

/** Whether `e` is LangGraph control flow (to rethrow), not a failure (to answer with). */
export function isControlFlow(e: unknown): boolean {
  return isGraphBubbleUp(e as Error | undefined);
}

/** The audit reason of an interrupted call: the signal's name, e.g. `GraphInterrupt`, `ParentCommand`. */
export function controlFlowName(e: unknown): string {
  const name = (e as { name?: unknown } | null)?.name;
  return typeof name === "string" && /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name) ? name : "GraphBubbleUp";
}
