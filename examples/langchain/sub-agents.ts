// Sub-agents, two levels deep: an orchestrator (lead-agent) → analyst → fetcher. Each is a LangChain agent with
// a child identity of the one above it, called through a tool (LangChain's sub-agent pattern),
// and acting under a delegation its parent signed, narrowed to the tools it needs. The tool a
// grandchild calls records "fetcher, on behalf of orchestrator → analyst".
//   npm run example:langchain-sub-agents
import { AIMessage, fakeModel, tool } from "langchain";
import { z } from "zod";
import aztp from "aztp-client";
import { queryAuditLog } from "aztp-client/audit";
import { createSecureAgent, servedToolName, subAgent } from "aztp-client/langchain";
import { join } from "node:path";

const startedAt = new Date();
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });
const short = (id: string) => id.slice(id.lastIndexOf("/") + 1);

const fetchPage = tool(async ({ url }: { url: string }) => `<h1>${url}</h1> 1,204 words`, {
  name: "fetch_page",
  description: "Fetch a web page",
  schema: z.object({ url: z.string() }),
});
const summarise = tool(async ({ text }: { text: string }) => `summary of ${text.length} characters`, {
  name: "summarise",
  description: "Summarise a text",
  schema: z.object({ text: z.string() }),
});

// The scripts: the orchestrator hands a task to the analyst, which hands the fetching to the
// fetcher, which fetches one page and then tries summarise, which its delegation leaves out.
const orchestratorModel = fakeModel()
  .respondWithTools([{ name: "analyst", args: { task: "Summarise example.org" }, id: "call_o_1" }])
  .respond(new AIMessage("The analyst summarised example.org."));
const analystModel = fakeModel()
  .respondWithTools([{ name: "fetcher", args: { task: "Fetch example.org" }, id: "call_a_1" }])
  .respondWithTools([{ name: "summarise", args: { text: "<h1>example.org</h1> 1,204 words" }, id: "call_a_2" }])
  .respond(new AIMessage("Summary: a short page."));
const fetcherModel = fakeModel()
  .respondWithTools([{ name: "fetch_page", args: { url: "example.org" }, id: "call_f_1" }])
  .respondWithTools([{ name: "summarise", args: { text: "anything" }, id: "call_f_2" }])
  .respond(new AIMessage("Fetched it."));

const orchestrator = await createSecureAgent({
  client,
  name: "lead-agent",
  model: orchestratorModel,
  tools: [
    subAgent({
      name: "analyst",
      description: "Analyses web pages",
      model: analystModel,
      tools: [
        summarise,
        // By default a sub-agent's delegation allows what its tools need; the scope narrows it
        // further: the fetcher has summarise too, but may call fetch_page alone.
        subAgent({
          name: "fetcher",
          description: "Fetches web pages",
          model: fetcherModel,
          tools: [fetchPage, summarise],
          scope: { tools: ["fetch_page"] },
        }),
      ],
    }),
  ],
});
const analyst = orchestrator.subAgents.analyst!;
const fetcher = analyst.subAgents.fetcher!;
for (const [who, agent] of [
  ["orchestrator", orchestrator],
  ["analyst", analyst],
  ["fetcher", fetcher],
] as const) {
  const parent = (await client.getIdentity(agent.identity.aztpId)).parentIdentity;
  console.log(`${who.padEnd(12)} ${agent.identity.aztpId}${parent ? `   (parent: ${short(parent)})` : ""}`);
}

const out = await orchestrator.invoke({ messages: [{ role: "user", content: "Summarise example.org" }] });
console.log(`\norchestrator's answer: ${out.messages[out.messages.length - 1]?.text}\n`);

// Where each call was recorded, and on whose behalf it was made.
const home = orchestrator.identity.home;
const logs = [
  "lead-agent",
  "analyst",
  "fetcher",
  servedToolName("analyst", "summarise"),
  servedToolName("fetcher", "fetch_page"),
  servedToolName("fetcher", "summarise"),
];
for (const name of logs) {
  for (const e of await queryAuditLog(join(home, "audit", `${name}.jsonl`), { since: startedAt })) {
    const behalf =
      e.delegation && e.delegation.length > 0 ? `, on behalf of ${e.delegation.map(short).join(" → ")}` : "";
    const verdict = e.reason ? `denied ${e.reason}` : e.outcome;
    console.log(
      `${`${name}.jsonl`.padEnd(31)} ${e.side.padEnd(6)} ${short(e.caller)}${behalf}: ${e.tool} → ${verdict}`,
    );
  }
}
await client.close();
