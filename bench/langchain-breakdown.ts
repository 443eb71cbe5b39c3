/**
 * Where a secured LangChain agent's time goes, beyond a plain one (not part of `npm run bench`;
 * run `npm run bench:langchain-breakdown`). The agents are those of bench/langchain.bench.ts:
 * 20 model steps of one local tool call each, scripted with a rewound fakeModel, plain
 * createAgent, createSecureAgent (audit on) and createSecureAgent with `audit: false`, timed
 * run by run in turn.
 *
 * For each secured agent it prints, per tool call: what the run adds over the plain one, and
 * the wall time spent in each guard step (prototype methods wrapped with a timer; each call is
 * sequential, so a step's wall time is its own work): CallerGuard.prepare (sign the token,
 * revocation checks), CalleeGuard.admit (verify the token, replay, policy), CalleeGuard.settle
 * (sign the receipt, record), CallerGuard.settle (verify the receipt, record), and within them
 * AuditLog.append (until written), Trust.isRevoked, and the registry stats
 * (fs.statSync, counted). What is left is outside the guards: the middleware, the acting-caller
 * context, the ToolMessages, LangGraph.
 *
 * The same runs again in a child process with bench/helpers/stub-signatures.ts preloaded (the
 * four signature operations cost nothing), so real minus stubbed is what the signatures cost
 * inside an agent run; and a plain agent whose tool makes two raw P-256 pairs per call shows
 * what those four operations cost there by themselves.
 */
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AIMessage, HumanMessage } from "@langchain/core/messages";
import { fakeModel } from "@langchain/core/testing";
import { tool, type StructuredToolInterface } from "@langchain/core/tools";
import { createAgent } from "langchain";
import { z } from "zod";
import { AuditLog } from "../src/audit/log.js";
import { Aztp } from "../src/client/aztp.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { Trust } from "../src/invocation/trust.js";
import { createSecureAgent } from "../src/langchain/index.js";
import { medianMicros } from "./harness.js";
import { BENCH_ROOT, median } from "./helpers/mcp-http-process.js";

const STUB = join(BENCH_ROOT, "bench/helpers/stub-signatures.ts");
const CALLS = 20;
const ROUNDS = 7;
const SAMPLES = 10;
const ARGS = { query: "quarterly revenue by region", limit: 10 };
const stubbed = process.argv[2] === "--stubbed";

type Variant = "plain" | "floor" | "secured" | "no-audit";
const STEPS = ["raw pairs (in the tool)", "CallerGuard.prepare", "CalleeGuard.admit", "CalleeGuard.settle", "CallerGuard.settle", "AuditLog.append", "Trust.isRevoked", "fs.statSync"] as const;
type Step = (typeof STEPS)[number];

let current: Variant = "plain";
const spent: Record<Variant, Record<Step, { ms: number; n: number }>> = {} as never;
for (const v of ["plain", "floor", "secured", "no-audit"] as const) spent[v] = Object.fromEntries(STEPS.map((s) => [s, { ms: 0, n: 0 }])) as never;

/** Wraps `holder[name]` with a timer that adds to `step` of the variant being run. */
function timed(holder: Record<string, unknown>, name: string, step: Step): void {
  const original = holder[name] as (...a: unknown[]) => unknown;
  holder[name] = function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    const add = () => {
      const s = spent[current][step];
      s.ms += performance.now() - t;
      s.n++;
    };
    let r: unknown;
    try {
      r = original.apply(this, a);
    } catch (e) {
      add();
      throw e;
    }
    if (r instanceof Promise) return r.finally(add);
    add();
    return r;
  };
}
timed(CallerGuard.prototype as never, "prepare", "CallerGuard.prepare");
timed(CallerGuard.prototype as never, "settle", "CallerGuard.settle");
timed(CalleeGuard.prototype as never, "admit", "CalleeGuard.admit");
timed(CalleeGuard.prototype as never, "settle", "CalleeGuard.settle");
timed(AuditLog.prototype as never, "append", "AuditLog.append");
timed(Trust.prototype as never, "isRevoked", "Trust.isRevoked");
// The registry's stat (authority/store.ts version()): node:fs's export, updated in place.
timed(createRequire(import.meta.url)("node:fs") as never, "statSync", "fs.statSync");
syncBuiltinESMExports();

let runs = 0;
function scripted(): { model: ReturnType<typeof fakeModel>; rewind: () => void } {
  const model = fakeModel();
  for (let s = 0; s < CALLS; s++) {
    model.respond(() => new AIMessage({ content: "", tool_calls: [{ name: "search", args: ARGS, id: `call_${runs}_${s}`, type: "tool_call" }] }));
  }
  model.respond(new AIMessage("done"));
  const state = (model as unknown as { _state: { callIndex: number; calls: unknown[] } })._state;
  return {
    model,
    rewind: () => {
      runs++;
      state.callIndex = 0;
      state.calls.length = 0;
    },
  };
}

function searchTool(extra?: () => void): StructuredToolInterface {
  return tool(
    async ({ query, limit }) => {
      extra?.();
      return `${limit} results for ${query}`;
    },
    { name: "search", description: "searches the reports", schema: z.object({ query: z.string(), limit: z.number() }) },
  );
}

function rawPairs(): () => void {
  const data = Buffer.alloc(900, 0x61);
  const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const privateKey = createPrivateKey(pair.privateKey.export({ format: "pem", type: "pkcs8" }));
  const publicKey = createPublicKey(pair.publicKey.export({ format: "pem", type: "spki" }));
  return () => {
    const t = performance.now();
    for (let i = 0; i < 2; i++) {
      const sig = sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
      verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig);
    }
    const s = spent[current]["raw pairs (in the tool)"];
    s.ms += performance.now() - t;
    s.n++;
  };
}

interface Invocable {
  invoke(input: { messages: HumanMessage[] }, config?: { recursionLimit: number }): Promise<{ messages: unknown[] }>;
}

type Result = { tightPairsUs: number; addedUs: Record<Variant, number>; perCall: Record<Variant, Record<Step, { us: number; n: number }>> };

async function run(): Promise<Result> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-lc-breakdown-"));
  const aztp = new Aztp({ home });
  try {
    const make = async (variant: Variant): Promise<() => Promise<number>> => {
      const s = scripted();
      const agent = (
        variant === "plain"
          ? createAgent({ model: s.model, tools: [searchTool()] })
          : variant === "floor"
            ? createAgent({ model: s.model, tools: [searchTool(rawPairs())] })
            : await createSecureAgent({ client: aztp, name: `breakdown-${variant}`, model: s.model, tools: [searchTool()], ...(variant === "no-audit" ? { audit: false as const } : {}) })
      ) as unknown as Invocable;
      return async () => {
        s.rewind();
        current = variant;
        const t = performance.now();
        const out = await agent.invoke({ messages: [new HumanMessage("revenue?")] }, { recursionLimit: 100 });
        const us = (performance.now() - t) * 1000;
        const ok = out.messages.filter((m) => String((m as { content?: unknown }).content).includes("results for")).length;
        if (ok !== CALLS) throw new Error(`${variant}: ${ok} of ${CALLS} calls answered`);
        return us;
      };
    };
    const variants = ["plain", "floor", "secured", "no-audit"] as const;
    const runners = await Promise.all(variants.map(make));
    for (let i = 0; i < 3; i++) for (const r of runners) await r();
    for (const v of variants) for (const s of STEPS) spent[v][s] = { ms: 0, n: 0 };
    const added: Record<Variant, number[]> = { plain: [], floor: [], secured: [], "no-audit": [] };
    let timedRuns = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const t: number[][] = variants.map(() => []);
      for (let i = 0; i < SAMPLES; i++) for (let k = 0; k < runners.length; k++) t[k]!.push(await runners[k]!());
      timedRuns += SAMPLES;
      const m = t.map(median);
      variants.forEach((v, k) => added[v].push((m[k]! - m[0]!) / CALLS));
    }
    const calls = timedRuns * CALLS;
    const perCall = Object.fromEntries(
      variants.map((v) => [v, Object.fromEntries(STEPS.map((s) => [s, { us: (spent[v][s].ms * 1000) / calls, n: spent[v][s].n / calls }]))]),
    ) as Result["perCall"];
    const pairs = rawPairs();
    current = "plain";
    const tightPairsUs = await medianMicros(pairs, 300, 30);
    return { tightPairsUs, addedUs: Object.fromEntries(variants.map((v) => [v, median(added[v])])) as Result["addedUs"], perCall };
  } finally {
    aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (stubbed) {
  process.stdout.write(`\n${JSON.stringify(await run())}\n`);
} else {
  const real = await run();
  const child = spawnSync(process.execPath, ["--import", "tsx", "--import", STUB, fileURLToPath(import.meta.url), "--stubbed"], { cwd: BENCH_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const stub = JSON.parse(child.stdout.trim().split("\n").pop() ?? "{}") as Result;
  const f = (x: number) => x.toFixed(0).padStart(7);
  process.stdout.write(`µs per tool call, over a plain createAgent run (${CALLS} steps of one call); real | signatures stubbed\n`);
  const inTool = real.perCall.floor["raw pairs (in the tool)"].us;
  process.stdout.write(`  plain agent + two raw P-256 pairs in its tool ${f(real.addedUs.floor)} | ${f(stub.addedUs.floor)}   (the pairs themselves, timed in the tool: ${inTool.toFixed(0)}; outside them ${(real.addedUs.floor - inTool).toFixed(0)}; in a tight loop: ${real.tightPairsUs.toFixed(0)})\n`);
  for (const v of ["secured", "no-audit"] as const) {
    process.stdout.write(`\ncreateSecureAgent${v === "no-audit" ? " (audit: false)" : ""}: added ${f(real.addedUs[v])} | ${f(stub.addedUs[v])}\n`);
    let inGuards = 0;
    let inGuardsStub = 0;
    for (const s of STEPS) {
      const r = real.perCall[v][s];
      const st = stub.perCall[v][s];
      if (r.n === 0) continue;
      const top = s.startsWith("CallerGuard") || s.startsWith("CalleeGuard");
      if (top) {
        inGuards += r.us;
        inGuardsStub += st.us;
      }
      process.stdout.write(`  ${top ? "" : "  of which "}${s.padEnd(top ? 30 : 21)} ${f(r.us)} | ${f(st.us)}   (${r.n.toFixed(1)} a call)\n`);
    }
    process.stdout.write(`  outside the guard steps          ${f(real.addedUs[v] - inGuards)} | ${f(stub.addedUs[v] - inGuardsStub)}\n`);
  }
}
