/**
 * An approval in a LangChain agent: the callee refuses a call its policy gates with
 * ERR_APPROVAL_REQUIRED, the secure middleware pauses the run with a LangGraph interrupt carrying
 * the approval request (as humanInTheLoopMiddleware pauses), a person approves at the REAL
 * OpenID Provider, and `new Command({ resume: { approval } })` makes the call again with the
 * approval: the tool runs once, and both sides' entries name the approver. A rejection comes
 * back to the model as an error ToolMessage, and the tool never runs.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import type { BaseMessage } from "@langchain/core/messages";
import { tool, type StructuredToolInterface } from "@langchain/core/tools";
import { Command, MemorySaver } from "@langchain/langgraph";
import { AIMessage, fakeModel } from "langchain";
import type { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import { APPROVAL_INTERRUPT, createSecureAgent, secureTool, type ApprovalInterrupt } from "../src/langchain/index.js";
import { parsePolicy } from "../src/policy/index.js";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { answerTo, auditOf, forCall, textOf } from "./helpers/langchain-util.js";
import { fixture } from "./helpers/mcp-util.js";

let op: LocalOpenIdProvider;
before(async () => {
  op = await startLocalOpenIdProvider();
});
after(() => op.close());

type Run = { messages: BaseMessage[]; __interrupt__?: Array<{ value: unknown }> };
const thread = { configurable: { thread_id: "t" } };
const ARGS = { to: "acct-9", amount: 2500 };

async function setUp(t: TestContext, name: string) {
  const { home, aztp: client } = fixture(t);
  await (await client.authority()).addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
  const runs: number[] = [];
  const transfer = tool(
    async (args: { to: string; amount: number }) => {
      runs.push(args.amount);
      return `sent ${args.amount} to ${args.to}`;
    },
    {
      name: "transfer",
      description: "moves money",
      schema: {
        type: "object",
        properties: { to: { type: "string" }, amount: { type: "number" } },
        required: ["to", "amount"],
      },
    },
  ) as unknown as StructuredToolInterface;
  const bank = await secureTool(transfer, {
    client,
    name: "bank",
    policy: [
      parsePolicy({
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "large-transfers",
            Effect: "Allow",
            Action: "tool:call",
            Resource: "transfer",
            Condition: { NumericGreaterThan: { "aztp:args.amount": 1000 } },
            Approval: { Approvers: [`${op.issuer}#alice`], Reason: "transfers above 1000" },
          },
        ],
      }),
    ],
  });
  const agent = await createSecureAgent({
    client: client as Aztp,
    name,
    model: fakeModel()
      .respondWithTools([{ name: "transfer", args: ARGS, id: "c1" }])
      .respond(new AIMessage("done")),
    tools: [bank],
    checkpointer: new MemorySaver(),
  });
  const invoke = async (input: unknown): Promise<Run> => (await agent.invoke(input as never, thread)) as Run;
  return { home, bank, runs, invoke };
}

describe("approvals in a LangChain agent", () => {
  it("pauses for the approval, and runs the call once when resumed with it", async (t) => {
    const { home, bank, runs, invoke } = await setUp(t, "treasurer");
    const paused = await invoke({ messages: [{ role: "user", content: "pay acct-9 2500" }] });
    const value = paused.__interrupt__?.[0]?.value as ApprovalInterrupt | undefined;
    assert.ok(value, "the run paused");
    assert.equal(value.type, APPROVAL_INTERRUPT);
    assert.equal(value.toolCallId, "c1");
    assert.equal(value.tool, "transfer");
    assert.equal(value.request.callee, bank.identity.spiffeId);
    assert.equal(value.request.reason, "transfers above 1000");
    assert.deepEqual(runs, []);

    const { idToken } = await op.login({ account: "alice", nonce: value.request.nonce });
    const done = await invoke(new Command({ resume: { approval: { request: value.request, idToken } } }));
    assert.equal(done.__interrupt__, undefined);
    const answer = answerTo(done, "c1");
    assert.equal(answer.status, "success", textOf(answer));
    assert.equal(textOf(answer), "sent 2500 to acct-9");
    assert.deepEqual(runs, [2500], "the tool ran once");

    await bank.aztpGuard.flush();
    const approvedBy = `${op.issuer}#alice`;
    for (const name of ["treasurer", "bank"]) {
      const entries = forCall(await auditOf(home, name), "c1");
      const approved = entries.filter((e) => e.approvedBy !== undefined);
      assert.equal(approved.length, 1, `${name}: one approved entry`);
      assert.equal(approved[0]?.approvedBy, approvedBy);
      assert.equal(approved[0]?.outcome, "ok");
      // One refusal before it, naming nobody: the run resumed makes the approved call only (the
      // middleware remembers the call it paused), not the refused attempt once more.
      const refused = entries.filter((e) => e.reason === ErrorCodes.APPROVAL_REQUIRED);
      assert.equal(refused.length, 1, `${name}: one refusal before the approval`);
      assert.ok(refused.every((e) => e.decision === "deny" && e.approvedBy === undefined));
    }
  });

  it("answers a rejection with an error ToolMessage, and the tool never runs", async (t) => {
    const { runs, invoke } = await setUp(t, "treasurer-2");
    const paused = await invoke({ messages: [{ role: "user", content: "pay acct-9 2500" }] });
    assert.ok(paused.__interrupt__?.[0]);
    const done = await invoke(new Command({ resume: { rejected: "not this month" } }));
    const answer = answerTo(done, "c1");
    assert.equal(answer.status, "error");
    assert.match(textOf(answer), new RegExp(`\\[${ErrorCodes.APPROVAL_REQUIRED}\\]`));
    assert.match(textOf(answer), /not this month/);
    assert.deepEqual(runs, []);
  });
});
