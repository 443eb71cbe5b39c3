/**
 * LangChain figures (issue 9, item 7), secured against plain measured in the same run, the
 * agents run by run in turn (interleavedMedianMicros) so load from elsewhere hits all alike:
 *
 * - langchain_agent_ratio: wall time of one agent run making 20 local tool calls, one per model
 *   step (20 steps of one call, then a final answer: 21 model turns), createSecureAgent over
 *   plain createAgent with the same tool and the same scripted fakeModel. Target <= 1.1.
 * - langchain_tool_call_added_vs_raw_ratio: what a secured run adds per tool call ((secured -
 *   plain) / 20) over two raw P-256 sign+verify pairs of the token's size, timed in every
 *   round (as mcp_inmemory_added_vs_raw_ratio). Target <= 2.0.
 * - langchain_mcp_agent_ratio: the same run with the 20 calls going to an MCP tool over
 *   InMemoryTransport: secureMcpServer + secureMcpClient + this package's loadMcpTools +
 *   createSecureAgent, over McpServer + Client + the adapters' loadMcpTools + createAgent.
 *   Reported, no target.
 * - langchain_agent_crypto_floor_ratio: a plain createAgent run whose tool also makes two raw
 *   P-256 sign+verify pairs per call, over the plain run: what a binding that did nothing but its
 *   four signature operations would measure in an agent. Reported, so a target below it shows as
 *   such; langchain_raw_pairs_in_agent_added_us is what those two pairs add per call there (in a
 *   tight loop they take 2 * langchain_raw_pair_us: between LangGraph steps they run colder).
 * - langchain_parallel_agent_ratio: one model step asking for the 20 local calls at once
 *   (ToolNode runs them concurrently), then the answer. Reported, for context.
 *
 * Audit is on as a user gets it (every side's default log in the home); each figure is also
 * given with `audit: false` on every secured side (`..._no_audit`), for what the entries cost.
 *
 * A fakeModel consumes its script, so each agent's model is rewound (its call index set back to
 * 0, its record of calls emptied) before every run, on both sides alike; every run's tool-call
 * ids are fresh, as a real model's are.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HumanMessage } from "@langchain/core/messages";
import { tool, type StructuredToolInterface } from "@langchain/core/tools";
import { loadMcpTools as loadAdapterTools } from "@langchain/mcp-adapters";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { createAgent } from "langchain";
import { z } from "zod";
import { Aztp } from "../src/client/aztp.js";
import { signInvocation } from "../src/invocation/invocation.js";
import { createSecureAgent } from "../src/langchain/index.js";
import { loadMcpTools } from "../src/langchain/mcp.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { interleavedMedianMicros, medianMicros, round, type Figures } from "./harness.js";
import { median } from "./helpers/mcp-http-process.js";
import { scriptedModel } from "./helpers/scripted-model.js";

const CALLS = 20;
const ROUNDS = 7;
const SAMPLES = 12;
const ARGS = { query: "quarterly revenue by region", limit: 10 };

function searchTool(): StructuredToolInterface {
  return tool(async ({ query, limit }) => `${limit} results for ${query}`, {
    name: "search",
    description: "searches the reports",
    schema: z.object({ query: z.string(), limit: z.number() }),
  });
}

function toolServer(): McpServer {
  const s = new McpServer({ name: "bench", version: "1.0.0" });
  s.registerTool(
    "search",
    { description: "searches the reports", inputSchema: { query: z.string(), limit: z.number() } },
    async ({ query, limit }) => ({
      content: [{ type: "text", text: `${limit} results for ${query}` }],
    }),
  );
  return s;
}

/** One raw P-256 sign+verify pair over `bytes` bytes (keys imported once). */
function rawPair(bytes: number): () => void {
  const data = Buffer.alloc(bytes, 0x61);
  const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const privateKey = createPrivateKey(pair.privateKey.export({ format: "pem", type: "pkcs8" }));
  const publicKey = createPublicKey(pair.publicKey.export({ format: "pem", type: "spki" }));
  return () => {
    const sig = sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
    verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig);
  };
}

/** The search tool, making two raw pairs per call besides: the signature operations alone. */
function rawPairsTool(pair: () => void): StructuredToolInterface {
  return tool(
    async ({ query, limit }) => {
      pair();
      pair();
      return `${limit} results for ${query}`;
    },
    { name: "search", description: "searches the reports", schema: z.object({ query: z.string(), limit: z.number() }) },
  );
}

interface Invocable {
  invoke(input: { messages: HumanMessage[] }, config?: { recursionLimit: number }): Promise<{ messages: unknown[] }>;
}

/** One run of `agent` on a rewound script; checks that every call came back as expected. */
function runner(agent: Invocable, rewind: () => void, expectOk: (messages: unknown[]) => void): () => Promise<void> {
  return async () => {
    rewind();
    const out = await agent.invoke({ messages: [new HumanMessage("revenue?")] }, { recursionLimit: 100 });
    expectOk(out.messages);
  };
}

/** The run made `CALLS` tool calls, each answered with the tool's result (not a refusal). */
function expectCalls(messages: unknown[]): void {
  const answers = messages.filter((m) => (m as { getType?: () => string }).getType?.() === "tool");
  const ok = answers.filter((m) => String((m as { content: unknown }).content).includes("results for"));
  if (answers.length !== CALLS || ok.length !== CALLS) {
    throw new Error(
      `expected ${CALLS} answered tool calls, got ${ok.length} of ${answers.length}: ${String((answers[0] as { content?: unknown })?.content)}`,
    );
  }
}

export default async function langchainBench(): Promise<Figures> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-lc-"));
  const aztp = new Aztp({ home });
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const trust = await aztp.trust();
    const serverIdentity = (await aztp.secureConnect({}, "lc-bench-server")).identity;
    const clientIdentity = (await aztp.secureConnect({}, "lc-bench-client")).identity;
    // The raw pair signs as much as a token does (its signing input), as in mcp.bench.ts.
    const token = signInvocation(clientIdentity, {
      audience: serverIdentity.spiffeId,
      tool: "search",
      args: ARGS,
      toolCallId: "call_0_0_0",
    });
    const pair = rawPair(token.lastIndexOf("."));
    const rawPairRound = () => medianMicros(pair, 300, 30);

    // Local tools: 20 steps of one call, and one step of 20 calls.
    const local = async (tag: string, steps: number, perStep: number) => {
      const plainScript = scriptedModel("search", steps, perStep, ARGS);
      const securedScript = scriptedModel("search", steps, perStep, ARGS);
      const bareScript = scriptedModel("search", steps, perStep, ARGS);
      const plain = createAgent({ model: plainScript.model, tools: [searchTool()] });
      const secured = await createSecureAgent({
        client: aztp,
        name: `lc-${tag}`,
        model: securedScript.model,
        tools: [searchTool()],
      });
      const bare = await createSecureAgent({
        client: aztp,
        name: `lc-${tag}-no-audit`,
        model: bareScript.model,
        tools: [searchTool()],
        audit: false,
      });
      return {
        plain: runner(plain as unknown as Invocable, plainScript.rewind, expectCalls),
        secured: runner(secured as unknown as Invocable, securedScript.rewind, expectCalls),
        bare: runner(bare as unknown as Invocable, bareScript.rewind, expectCalls),
      };
    };
    const serial = await local("serial", CALLS, 1);
    const parallel = await local("parallel", 1, CALLS);

    // MCP tools over InMemoryTransport.
    const mcpPlainClient = new Client({ name: "plain", version: "1" });
    const [pc, ps] = InMemoryTransport.createLinkedPair();
    await toolServer().connect(ps);
    await mcpPlainClient.connect(pc);
    closers.push(() => mcpPlainClient.close());
    const mcpSecured = async (tag: string, audit: false | undefined) => {
      const c = await secureMcpClient(new Client({ name: `secured-${tag}`, version: "1" }), {
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
      const script = scriptedModel("search", CALLS, 1, ARGS);
      const agent = await createSecureAgent({
        client: aztp,
        name: `lc-mcp-${tag}`,
        model: script.model,
        tools: await loadMcpTools("bench", c),
        ...(audit === false ? { audit } : {}),
      });
      return runner(agent as unknown as Invocable, script.rewind, expectCalls);
    };
    const mcpPlainScript = scriptedModel("search", CALLS, 1, ARGS);
    const mcpPlain = runner(
      createAgent({
        model: mcpPlainScript.model,
        tools: await loadAdapterTools("bench", mcpPlainClient),
      }) as unknown as Invocable,
      mcpPlainScript.rewind,
      expectCalls,
    );
    const mcpSecuredRun = await mcpSecured("audited", undefined);
    const mcpBare = await mcpSecured("no-audit", false);

    const floorScript = scriptedModel("search", CALLS, 1, ARGS);
    const floor = runner(
      createAgent({ model: floorScript.model, tools: [rawPairsTool(pair)] }) as unknown as Invocable,
      floorScript.rewind,
      expectCalls,
    );

    // Warm-up: every variant runs (and is checked) before anything is timed.
    for (const run of [
      floor,
      serial.plain,
      serial.secured,
      serial.bare,
      parallel.plain,
      parallel.secured,
      parallel.bare,
      mcpPlain,
      mcpSecuredRun,
      mcpBare,
    ]) {
      for (let i = 0; i < 3; i++) await run();
    }

    // Each round times every variant of a group run by run in turn, then the raw pair; every
    // figure is the median over the rounds of that round's ratio, so a change of load between
    // rounds (this machine is shared) moves numerator and denominator together.
    type Round = { runs: number[]; raw: number };
    const serialRounds: Round[] = [];
    const parallelRounds: Round[] = [];
    const mcpRounds: Round[] = [];
    const group = async (fns: Array<() => Promise<void>>, into: Round[]) => {
      const runs = await interleavedMedianMicros(fns, SAMPLES, 1);
      into.push({ runs, raw: await rawPairRound() });
    };
    for (let r = 0; r < ROUNDS; r++) {
      await group([serial.plain, serial.secured, serial.bare, floor], serialRounds);
      await group([parallel.plain, parallel.secured, parallel.bare], parallelRounds);
      await group([mcpPlain, mcpSecuredRun, mcpBare], mcpRounds);
    }
    const PLAIN = 0;
    const SECURED = 1;
    const BARE = 2;
    const FLOOR = 3;
    const of = (rounds: Round[], f: (r: Round) => number) => median(rounds.map(f));
    const ratio = (rounds: Round[], k: number) =>
      round(
        of(rounds, (r) => r.runs[k]! / r.runs[PLAIN]!),
        3,
      );
    const addedUs = (rounds: Round[], k: number) => of(rounds, (r) => (r.runs[k]! - r.runs[PLAIN]!) / CALLS);
    const perCallVsRaw = (rounds: Round[], k: number) =>
      round(
        of(rounds, (r) => (r.runs[k]! - r.runs[PLAIN]!) / CALLS / (2 * r.raw)),
        3,
      );
    const ms = (rounds: Round[], k: number) => round(of(rounds, (r) => r.runs[k]!) / 1000, 2);
    const all = [...serialRounds, ...parallelRounds, ...mcpRounds];
    return {
      langchain_agent_plain_ms: ms(serialRounds, PLAIN),
      langchain_agent_secured_ms: ms(serialRounds, SECURED),
      langchain_agent_ratio: ratio(serialRounds, SECURED),
      langchain_agent_ratio_no_audit: ratio(serialRounds, BARE),
      langchain_tool_call_added_us: round(addedUs(serialRounds, SECURED), 1),
      langchain_tool_call_added_us_no_audit: round(addedUs(serialRounds, BARE), 1),
      langchain_raw_pair_us: round(
        of(all, (r) => r.raw),
        1,
      ),
      langchain_tool_call_added_vs_raw_ratio: perCallVsRaw(serialRounds, SECURED),
      langchain_tool_call_added_vs_raw_ratio_no_audit: perCallVsRaw(serialRounds, BARE),
      langchain_agent_crypto_floor_ratio: ratio(serialRounds, FLOOR),
      langchain_raw_pairs_in_agent_added_us: round(addedUs(serialRounds, FLOOR), 1),
      langchain_parallel_agent_plain_ms: ms(parallelRounds, PLAIN),
      langchain_parallel_agent_ratio: ratio(parallelRounds, SECURED),
      langchain_parallel_agent_ratio_no_audit: ratio(parallelRounds, BARE),
      langchain_mcp_agent_plain_ms: ms(mcpRounds, PLAIN),
      langchain_mcp_agent_secured_ms: ms(mcpRounds, SECURED),
      langchain_mcp_agent_ratio: ratio(mcpRounds, SECURED),
      langchain_mcp_agent_ratio_no_audit: ratio(mcpRounds, BARE),
      langchain_mcp_tool_call_added_vs_raw_ratio: perCallVsRaw(mcpRounds, SECURED),
      langchain_mcp_tool_call_added_vs_raw_ratio_no_audit: perCallVsRaw(mcpRounds, BARE),
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}
