/**
 * Where a secured LangChain agent's time goes, beyond a plain one (not part of `npm run bench`;
 * run `npm run bench:langchain-breakdown`). The agents are those of bench/langchain.bench.ts:
 * 20 model steps of one local tool call each, scripted with a rewound fakeModel. Every variant
 * runs in this one process, run by run in turn (so load from elsewhere hits all alike):
 *
 * - plain: createAgent.
 * - floor: createAgent whose tool also makes two raw P-256 sign+verify pairs per call: what the
 *   four signature operations of a call cost inside an agent run by themselves.
 * - secured, secured (audit: false): createSecureAgent.
 * - the same two with the signature operations stubbed (node:crypto's one-shot sign returns a
 *   fixed value and verify says yes, for those runs only): real minus stubbed is what the
 *   signatures cost on the call's path.
 * - secured, hollow guards: every guard step returns at once (no signing, verifying, policy or
 *   audit): what is left is the binding's structure (the middleware, the acting-caller context,
 *   the served tool's ToolMessage and artifact).
 *
 * For each secured variant it prints, per tool call, the wall time of each guard step
 * (prototype methods wrapped with a timer; the calls are sequential, so a step's wall time is
 * its own work): CallerGuard.prepare (sign the token, revocation checks), CalleeGuard.admit
 * (verify the token, replay, policy), CalleeGuard.settle (sign the receipt, record),
 * CallerGuard.settle (verify the receipt, record), and within them AuditLog.append (until
 * written), Trust.isRevoked and the registry's stat (fs.statSync), with how many a call makes.
 * "Outside the guard steps" is the added time less those steps.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HumanMessage } from "@langchain/core/messages";
import { tool, type StructuredToolInterface } from "@langchain/core/tools";
import { createAgent } from "langchain";
import { z } from "zod";
import { AuditLog } from "../src/audit/log.js";
import { Aztp } from "../src/client/aztp.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { Trust } from "../src/invocation/trust.js";
import { createSecureAgent } from "../src/langchain/index.js";
import { interleavedMedianMicros, medianMicros } from "./harness.js";
import { median } from "./helpers/mcp-http-process.js";
import { scriptedModel } from "./helpers/scripted-model.js";

const CALLS = 20;
const ROUNDS = 7;
const SAMPLES = 8;
const ARGS = { query: "quarterly revenue by region", limit: 10 };

const VARIANTS = [
  "plain",
  "floor",
  "secured",
  "secured, signatures stubbed",
  "secured, hollow guards",
  "audit: false",
  "audit: false, signatures stubbed",
] as const;
type Variant = (typeof VARIANTS)[number];
const STEPS = [
  "raw pairs (in the tool)",
  "CallerGuard.prepare",
  "CalleeGuard.admit",
  "CalleeGuard.settle",
  "CallerGuard.settle",
  "AuditLog.append",
  "Trust.isRevoked",
  "fs.statSync",
] as const;
type Step = (typeof STEPS)[number];

let current: Variant = "plain";
const mode = { stubSignatures: false, hollow: false };
const spent = Object.fromEntries(
  VARIANTS.map((v) => [v, Object.fromEntries(STEPS.map((s) => [s, { ms: 0, n: 0 }]))]),
) as Record<Variant, Record<Step, { ms: number; n: number }>>;

function add(step: Step, since: number): void {
  const s = spent[current][step];
  s.ms += performance.now() - since;
  s.n++;
}

/** Wraps `holder[name]` with a timer for `step`, and with `hollow` in place of it while mode.hollow is on. */
function timed(holder: Record<string, unknown>, name: string, step: Step, hollow?: (...a: never[]) => unknown): void {
  const original = holder[name] as (...a: unknown[]) => unknown;
  holder[name] = function (this: unknown, ...a: unknown[]) {
    const t = performance.now();
    let r: unknown;
    try {
      r = mode.hollow && hollow ? hollow(...(a as never[])) : original.apply(this, a);
    } catch (e) {
      add(step, t);
      throw e;
    }
    if (r instanceof Promise) return r.finally(() => add(step, t));
    add(step, t);
    return r;
  };
}
type Call = { audience: string; tool: string; args: unknown; token?: unknown };
timed(CallerGuard.prototype as never, "prepare", "CallerGuard.prepare", async (call: Call) => ({
  audience: call.audience,
  tool: call.tool,
  args: call.args,
  token: "t",
  claims: { jti: "j" },
  startedAt: 0,
}));
timed(CallerGuard.prototype as never, "settle", "CallerGuard.settle", async () => undefined);
timed(CalleeGuard.prototype as never, "admit", "CalleeGuard.admit", async (call: Call) => ({
  allowed: true,
  tool: call.tool,
  args: call.args,
  token: call.token,
  verified: undefined,
  error: undefined,
  caller: "c",
  callerVerified: true,
  startedAt: 0,
}));
timed(CalleeGuard.prototype as never, "settle", "CalleeGuard.settle", async () => ({ receipt: "r" }));
timed(AuditLog.prototype as never, "append", "AuditLog.append");
timed(Trust.prototype as never, "isRevoked", "Trust.isRevoked");
// node:fs's and node:crypto's exports, replaced in place (syncBuiltinESMExports updates the
// bindings every module imported): the registry's stat (authority/store.ts version()) is
// counted, and the signature operations are stubbed for the runs that ask it.
const require = createRequire(import.meta.url);
timed(require("node:fs") as never, "statSync", "fs.statSync");
const nodeCrypto = require("node:crypto") as {
  sign: (...a: unknown[]) => unknown;
  verify: (...a: unknown[]) => unknown;
};
const realSign = nodeCrypto.sign;
const realVerify = nodeCrypto.verify;
const fixedSignature = Buffer.alloc(64, 1);
nodeCrypto.sign = (...a: unknown[]) => (mode.stubSignatures ? fixedSignature : realSign(...a));
nodeCrypto.verify = (...a: unknown[]) => (mode.stubSignatures ? true : realVerify(...a));
syncBuiltinESMExports();

const scripted = (): ReturnType<typeof scriptedModel> => scriptedModel("search", CALLS, 1, ARGS);

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
    add("raw pairs (in the tool)", t);
  };
}

interface Invocable {
  invoke(input: { messages: HumanMessage[] }, config?: { recursionLimit: number }): Promise<{ messages: unknown[] }>;
}

const home = mkdtempSync(join(tmpdir(), "aztp-bench-lc-breakdown-"));
const aztp = new Aztp({ home });
try {
  const agents = {
    plain: scripted(),
    floor: scripted(),
    secured: scripted(),
    bare: scripted(),
  };
  const plain = createAgent({ model: agents.plain.model, tools: [searchTool()] }) as unknown as Invocable;
  const floor = createAgent({ model: agents.floor.model, tools: [searchTool(rawPairs())] }) as unknown as Invocable;
  const secured = (await createSecureAgent({
    client: aztp,
    name: "breakdown",
    model: agents.secured.model,
    tools: [searchTool()],
  })) as unknown as Invocable;
  const bare = (await createSecureAgent({
    client: aztp,
    name: "breakdown-no-audit",
    model: agents.bare.model,
    tools: [searchTool()],
    audit: false,
  })) as unknown as Invocable;
  const runner =
    (
      variant: Variant,
      agent: Invocable,
      script: { rewind: () => void },
      flags: { stubSignatures?: boolean; hollow?: boolean } = {},
    ) =>
    async () => {
      script.rewind();
      current = variant;
      mode.stubSignatures = flags.stubSignatures === true;
      mode.hollow = flags.hollow === true;
      try {
        const out = await agent.invoke({ messages: [new HumanMessage("revenue?")] }, { recursionLimit: 100 });
        const ok = out.messages.filter((m) =>
          String((m as { content?: unknown }).content).includes("results for"),
        ).length;
        if (ok !== CALLS) throw new Error(`${variant}: ${ok} of ${CALLS} calls answered`);
      } finally {
        mode.stubSignatures = false;
        mode.hollow = false;
      }
    };
  const runners: Record<Variant, () => Promise<void>> = {
    plain: runner("plain", plain, agents.plain),
    floor: runner("floor", floor, agents.floor),
    secured: runner("secured", secured, agents.secured),
    "secured, signatures stubbed": runner("secured, signatures stubbed", secured, agents.secured, {
      stubSignatures: true,
    }),
    "secured, hollow guards": runner("secured, hollow guards", secured, agents.secured, { hollow: true }),
    "audit: false": runner("audit: false", bare, agents.bare),
    "audit: false, signatures stubbed": runner("audit: false, signatures stubbed", bare, agents.bare, {
      stubSignatures: true,
    }),
  };
  const fns = VARIANTS.map((v) => runners[v]);
  for (let i = 0; i < 3; i++) for (const fn of fns) await fn();
  for (const v of VARIANTS) for (const s of STEPS) spent[v][s] = { ms: 0, n: 0 };
  const added = Object.fromEntries(VARIANTS.map((v) => [v, [] as number[]])) as Record<Variant, number[]>;
  for (let round = 0; round < ROUNDS; round++) {
    // One warm-up run each: interleavedMedianMicros times SAMPLES, the steps count both.
    const m = await interleavedMedianMicros(fns, SAMPLES, 1);
    VARIANTS.forEach((v, k) => added[v].push((m[k]! - m[0]!) / CALLS));
  }
  const calls = ROUNDS * (SAMPLES + 1) * CALLS;
  current = "plain";
  const tight = await medianMicros(rawPairs(), 300, 30);

  const f = (x: number) => x.toFixed(0).padStart(6);
  const addedUs = (v: Variant) => median(added[v]);
  const step = (v: Variant, s: Step) => ({ us: (spent[v][s].ms * 1000) / calls, n: spent[v][s].n / calls });
  process.stdout.write(
    `µs per tool call, added over a plain createAgent run (${CALLS} steps of one call), medians of ${ROUNDS} rounds:\n\n`,
  );
  const inTool = step("floor", "raw pairs (in the tool)").us;
  process.stdout.write(
    `floor (two raw pairs in a plain agent's tool)  ${f(addedUs("floor"))}   the pairs timed in the tool: ${inTool.toFixed(0)}; in a tight loop: ${tight.toFixed(0)}\n`,
  );
  for (const v of VARIANTS.slice(2)) {
    process.stdout.write(`\n${v.padEnd(46)} ${f(addedUs(v))}\n`);
    let inGuards = 0;
    for (const s of STEPS) {
      const { us, n } = step(v, s);
      if (n === 0 || s === "raw pairs (in the tool)") continue;
      const top = s.startsWith("CallerGuard") || s.startsWith("CalleeGuard");
      if (top) inGuards += us;
      process.stdout.write(
        `  ${top ? "" : "  of which "}${s.padEnd(top ? 44 : 34)} ${f(us)}   (${n.toFixed(1)} a call)\n`,
      );
    }
    process.stdout.write(`  outside the guard steps${" ".repeat(21)} ${f(addedUs(v) - inGuards)}\n`);
  }
} finally {
  aztp.close();
  rmSync(home, { recursive: true, force: true });
}
