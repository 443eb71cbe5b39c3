// secureTool: a LangChain tool with an identity and a policy of its own, shared by two agents.
// It verifies every call before it runs, whoever calls it, answers with a receipt and keeps its
// own audit log. One agent is made with createSecureAgent; the other is a plain createAgent
// with the secure middleware (createSecureMiddleware) installed first.
//   npm run example:langchain-secure-tool
import { join } from "node:path";
import { AIMessage, createAgent, fakeModel, tool, ToolMessage, type BaseMessage } from "langchain";
import { z } from "zod";
import aztp from "aztp-client";
import { queryAuditLog } from "aztp-client/audit";
import { createSecureAgent, createSecureMiddleware, receiptOf, secureTool } from "aztp-client/langchain";

const startedAt = new Date();
const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY });
const td = (await client.authority()).defaultTrustDomain;
const agentId = (name: string) => `aztp://${td}/workload/production/node/${name}`;

let runs = 0;
const lookup = tool(
  async ({ customer }: { customer: string }) => {
    runs++;
    return `${customer}: premium plan, 2 open tickets`;
  },
  { name: "lookup_customer", description: "Look up a customer's account", schema: z.object({ customer: z.string() }) },
);

// The tool's own identity and policy: the support and billing agents may call it, nobody else.
const crm = await secureTool(lookup, {
  client,
  name: "crm-tool",
  policy: [
    {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "SupportAndBilling",
          Effect: "Allow",
          Principal: [agentId("support-agent"), agentId("billing-agent")],
          Action: "tool:call",
          Resource: "lookup_customer",
        },
      ],
    },
  ],
});
console.log(`shared tool ${crm.name}: ${crm.aztpId}\n`);

const asks = (customer: string, id: string) =>
  fakeModel()
    .respondWithTools([{ name: "lookup_customer", args: { customer }, id }])
    .respond(new AIMessage("done"));
const show = (who: string, out: { messages: BaseMessage[] }) => {
  for (const m of out.messages.filter((x) => ToolMessage.isInstance(x))) {
    const r = receiptOf(m);
    console.log(
      `${who.padEnd(14)} → ${m.name}: ${m.status === "error" ? `REFUSED ${r?.code}` : `ALLOWED "${m.content}" (receipt signed by ${r?.callee})`}`,
    );
  }
};
const ask = { messages: [{ role: "user", content: "How is ACME doing?" }] };

// 1. createSecureAgent: one line.
const support = await createSecureAgent({
  client,
  name: "support-agent",
  model: asks("ACME", "call_support_1"),
  tools: [crm],
});
show("support-agent", (await support.invoke(ask)) as { messages: BaseMessage[] });

// 2. A plain createAgent, secured by the middleware (first in the list: it wraps all the others).
const billingIdentity = (await client.secureConnect({}, "billing-agent")).identity;
const secure = await createSecureMiddleware({ identity: billingIdentity, client });
const billing = createAgent({ model: asks("ACME", "call_billing_1"), tools: [crm], middleware: [secure.middleware] });
show("billing-agent", (await billing.invoke(ask)) as { messages: BaseMessage[] });

// 3. A third secured agent the tool's policy does not name.
const intern = await createSecureAgent({
  client,
  name: "intern-agent",
  model: asks("ACME", "call_intern_1"),
  tools: [crm],
});
show("intern-agent", (await intern.invoke(ask)) as { messages: BaseMessage[] });

// 4. Called directly, by no agent at all: an unsigned call.
try {
  await crm.invoke({ customer: "ACME" });
} catch (e) {
  console.log(`${"(no agent)".padEnd(14)} → lookup_customer: REFUSED ${(e as { code?: string }).code}`);
}
console.log(`\nthe tool ran ${runs} times (the two allowed calls only)\n`);

// The tool's own log: each caller, verified or not, and the decision.
for (const e of await queryAuditLog(join(crm.identity.home, "audit", "crm-tool.jsonl"), { since: startedAt })) {
  console.log(
    `crm-tool.jsonl: ${e.caller.slice(e.caller.lastIndexOf("/") + 1).padEnd(14)} ${e.callerVerified ? "verified" : "unverified"}  ${e.reason ? `denied ${e.reason}` : e.outcome}`,
  );
}
await client.close();
