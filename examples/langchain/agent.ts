// createSecureAgent: a LangChain agent whose every tool call is signed with its own identity,
// verified before the tool runs, answered with a receipt and audited on both sides.
//   npm run example:langchain-agent
// Offline: the model is scripted (fakeModel). Its tools are plain LangChain tools: each is served
// under `<agent>.tools.<tool>`, a child identity of the agent that only the agent may call.
import { AIMessage, createAgent, fakeModel, tool, ToolMessage, type BaseMessage } from "langchain";
import { z } from "zod";
import aztp from "aztp-client";
import { queryAuditLog } from "aztp-client/audit";
import { createSecureAgent, receiptOf, servedToolName } from "aztp-client/langchain";
import { join } from "node:path";

const startedAt = new Date();
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY }); // the embedded authority in AZTP_HOME, else ./.aztp

const add = tool(async ({ a, b }: { a: number; b: number }) => String(a + b), {
  name: "add",
  description: "Add two numbers",
  schema: z.object({ a: z.number(), b: z.number() }),
});
const weather = tool(async ({ city }: { city: string }) => `${city}: sunny, 24 °C`, {
  name: "weather",
  description: "Today's weather in a city",
  schema: z.object({ city: z.string() }),
});

// The model asks for three calls in one step, the last of a tool that does not exist.
const model = fakeModel()
  .respondWithTools([
    { name: "add", args: { a: 2, b: 3 }, id: "call_add" },
    { name: "weather", args: { city: "Lisbon" }, id: "call_weather" },
    { name: "send_email", args: { to: "boss@example.com" }, id: "call_email" },
  ])
  .respond(new AIMessage("2 + 3 = 5, and Lisbon is sunny."));

// The one line: createAgent's parameters, plus { client, name }.
const agent = await createSecureAgent({ client, name: "assistant", model, tools: [add, weather] });
console.log(`agent identity: ${agent.identity.aztpId}`);
console.log(
  `its tools are served as: ${servedToolName("assistant", "add")}, ${servedToolName("assistant", "weather")}\n`,
);

const out = (await agent.invoke({
  messages: [{ role: "user", content: "What is 2 + 3, and the weather in Lisbon?" }],
})) as { messages: BaseMessage[] };
for (const m of out.messages.filter((x) => ToolMessage.isInstance(x))) {
  const r = receiptOf(m);
  const verdict =
    m.status === "error"
      ? `REFUSED  ${r?.code}`
      : `ALLOWED  "${m.content}"  receipt from ${r?.callee} (${r?.receipt ? "signed" : "none"})`;
  console.log(`${String(m.name).padEnd(10)} ${verdict}`);
}
console.log(`model's answer: ${out.messages[out.messages.length - 1]?.text}\n`);

// Both sides recorded each call, under the LangChain tool-call id.
await agent.aztpGuard.flush();
const logOf = (name: string) => join(agent.identity.home, "audit", `${name}.jsonl`); // <home>/audit/<identity name>.jsonl
for (const name of ["assistant", servedToolName("assistant", "add")]) {
  for (const e of await queryAuditLog(logOf(name), { toolCallId: "call_add", since: startedAt })) {
    console.log(
      `audit ${name}.jsonl: ${e.side} ${e.tool} ${e.reason ? `denied ${e.reason}` : e.outcome} (tool-call id ${e.toolCallId})`,
    );
  }
}
const [unknown] = await queryAuditLog(logOf("assistant"), { toolCallId: "call_email", since: startedAt });
console.log(
  `audit assistant.jsonl: caller ${unknown?.tool} denied ${unknown?.reason} (the unknown tool: nothing ran, the call is still recorded)\n`,
);

// An agent made by plain createAgent cannot be secured after the fact: its calls would go unsigned.
try {
  await client.secureConnect(createAgent({ model, tools: [add] }), "after-the-fact");
} catch (e) {
  console.log(`secureConnect(createAgent(...)): ${(e as { code?: string }).code}`);
}
await client.close();
