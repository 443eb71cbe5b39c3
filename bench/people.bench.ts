/**
 * People in the chain (issue 19): what a person's delegation adds to a call.
 *
 * - delegated_call_vs_direct_ratio: p50 of a secured tools/call made for a person (the client's
 *   `actingFor(personToken, ...)`: the on-behalf-of token signed into the invocation, verified by
 *   the server after the signature and the delegation, into policy and both audit entries) over
 *   p50 of the same secured call made for nobody, over InMemoryTransport, both sides keeping
 *   their default audit log as a user gets them. The person's token is exchanged once, on the
 *   first call (in the warm-up), and kept; every other check runs per call. Target <= 1.15.
 * - delegated_call_vs_direct_ratio_no_audit: the same with `audit: false` on both sides (the
 *   person's share of a smaller call). Reported.
 * - delegated_agent_run_vs_direct_ratio: a createSecureAgent run of 20 MCP tool calls given the
 *   person in `configurable.aztp.onBehalfOf`, over the same run for nobody. Reported.
 * - obo_exchange_us: one exchange (AgentIdentity.actFor on the embedded authority: the person's
 *   ID token verified against the provider's keys, the on-behalf-of token signed), which a run
 *   pays once per person token. Reported.
 *
 * The person logs in at a real OpenID Provider on loopback (examples/local-openid-provider.ts).
 * Secured-for-a-person and secured-for-nobody are sampled in alternation (interleavedMedianMicros).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HumanMessage } from "@langchain/core/messages";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { startLocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { Aztp } from "../src/client/aztp.js";
import { createSecureAgent } from "../src/langchain/index.js";
import { loadMcpTools } from "../src/langchain/mcp.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { interleavedMedianMicros, medianMicros, round, type Figures } from "./harness.js";
import { median } from "./helpers/mcp-http-process.js";
import { scriptedModel } from "./helpers/scripted-model.js";

const ROUNDS = 5;
const ARGS = { query: "quarterly revenue by region", limit: 10 };

function toolServer(): McpServer {
  const s = new McpServer({ name: "bench", version: "1.0.0" });
  s.registerTool("search", { inputSchema: { query: z.string(), limit: z.number() } }, async ({ query, limit }) => ({
    content: [{ type: "text", text: `${limit} results for ${query}` }],
  }));
  return s;
}

export default async function peopleBench(): Promise<Figures> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-people-"));
  const aztp = new Aztp({ home });
  const op = await startLocalOpenIdProvider();
  const closers: Array<() => Promise<unknown>> = [() => op.close()];
  try {
    await (await aztp.authority()).addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
    const trust = await aztp.trust();
    const serverIdentity = (await aztp.secureConnect({}, "people-bench-server")).identity;
    const clientIdentity = (await aztp.secureConnect({}, "people-bench-client")).identity;
    const { idToken: alice } = await op.login({ account: "alice" });

    const pair = async (audit: false | undefined) => {
      const c = await secureMcpClient(new Client({ name: "secured", version: "1" }), {
        identity: clientIdentity,
        trust,
        ...(audit === false ? { audit } : {}),
      });
      const [ct, st] = InMemoryTransport.createLinkedPair();
      await (
        await secureMcpServer(toolServer(), { identity: serverIdentity, trust, ...(audit === false ? { audit } : {}) })
      ).connect(st);
      await c.connect(ct);
      closers.push(() => c.close());
      const direct = () => c.callTool({ name: "search", arguments: ARGS });
      const delegated = () => c.actingFor(alice, direct);
      return { direct, delegated };
    };
    const audited = await pair(undefined);
    const bare = await pair(false);

    // An agent run of 20 MCP calls, for alice and for nobody.
    const agentRun = async (tag: string, person: string | undefined) => {
      const script = scriptedModel("search", 20, 1, ARGS);
      const c = await secureMcpClient(new Client({ name: `agent-${tag}`, version: "1" }), {
        identity: clientIdentity,
        trust,
      });
      const [ct, st] = InMemoryTransport.createLinkedPair();
      await (await secureMcpServer(toolServer(), { identity: serverIdentity, trust })).connect(st);
      await c.connect(ct);
      closers.push(() => c.close());
      const agent = await createSecureAgent({
        client: aztp,
        name: `people-bench-agent-${tag}`,
        model: script.model,
        tools: await loadMcpTools("bench", c),
      });
      const config = {
        recursionLimit: 100,
        ...(person !== undefined ? { configurable: { aztp: { onBehalfOf: person } } } : {}),
      };
      return async () => {
        script.rewind();
        const out = (await agent.invoke({ messages: [new HumanMessage("revenue?")] }, config)) as {
          messages: Array<{ getType(): string; content: unknown }>;
        };
        const ok = out.messages.filter((m) => m.getType() === "tool" && String(m.content).includes("results for"));
        if (ok.length !== 20) throw new Error(`expected 20 answered calls, got ${ok.length}`);
      };
    };
    const runDirect = await agentRun("direct", undefined);
    const runDelegated = await agentRun("delegated", alice);

    const ratios: number[] = [];
    const bareRatios: number[] = [];
    const runRatios: number[] = [];
    const directP50: number[] = [];
    const delegatedP50: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const [d, g] = await interleavedMedianMicros([audited.direct, audited.delegated], 600, 60);
      ratios.push((g as number) / (d as number));
      directP50.push(d as number);
      delegatedP50.push(g as number);
      const [bd, bg] = await interleavedMedianMicros([bare.direct, bare.delegated], 600, 60);
      bareRatios.push((bg as number) / (bd as number));
      const [rd, rg] = await interleavedMedianMicros([runDirect, runDelegated], 12, 2);
      runRatios.push((rg as number) / (rd as number));
    }
    const exchangeUs = await medianMicros(() => clientIdentity.actFor(alice), 100, 10);
    return {
      delegated_call_vs_direct_ratio: round(median(ratios), 3),
      delegated_call_vs_direct_ratio_no_audit: round(median(bareRatios), 3),
      delegated_agent_run_vs_direct_ratio: round(median(runRatios), 3),
      delegated_call_direct_p50_us: round(median(directP50), 1),
      delegated_call_p50_us: round(median(delegatedP50), 1),
      obo_exchange_us: round(exchangeUs, 1),
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}
