/**
 * A LangChain fakeModel that can be rewound, for timing the same agent run again and again:
 * `steps` model turns of `perStep` calls to `toolName` with `args` each, then a final answer.
 * Each turn is a factory, so each run's tool-call ids are new (a signed call is good once).
 */
import { AIMessage } from "@langchain/core/messages";
import { type FakeBuiltModel, fakeModel } from "@langchain/core/testing";

let runs = 0;

export function scriptedModel(
  toolName: string,
  steps: number,
  perStep: number,
  args: Record<string, unknown>,
): { model: FakeBuiltModel; rewind: () => void } {
  const model = fakeModel();
  for (let s = 0; s < steps; s++) {
    model.respond(() => {
      const run = runs;
      return new AIMessage({
        content: "",
        tool_calls: Array.from({ length: perStep }, (_, i) => ({
          name: toolName,
          args,
          id: `call_${run}_${s}_${i}`,
          type: "tool_call" as const,
        })),
      });
    });
  }
  model.respond(new AIMessage("done"));
  // bindTools shares this state object with every bound copy, so rewinding it rewinds them all.
  // It is the fake model's private state: a change in @langchain/core makes this fail loudly.
  const state = (model as unknown as { _state: { callIndex: number; calls: unknown[] } })._state;
  if (state === undefined || !Array.isArray(state.calls))
    throw new Error("fakeModel's _state is not what the bench rewinds: update bench/helpers/scripted-model.ts");
  return {
    model,
    rewind: () => {
      runs++;
      state.callIndex = 0;
      state.calls.length = 0;
    },
  };
}
