/**
 * Signed invocations against raw node:crypto (issue 3, item 6).
 *
 * - raw_pair_us: median of one P-256 sign plus verify (ieee-p1363, SHA-256) of a payload as long
 *   as our signing input (header with the x5c chain, plus claims), keys imported once.
 * - invocation_vs_raw_ratio: signInvocation + verifyInvocation (x5c chain cached, revocation
 *   checked against the embedded authority, replay cache on) over raw_pair_us. Target <= 1.5.
 * - mutual_round_vs_raw_ratio: sign + verify the token, sign + verify the receipt, over two raw
 *   pairs. Target <= 1.5. mutual_rounds_per_s: such rounds per second on one core.
 * - replay_cache_bytes_per_entry: heap growth per remembered token (key `iss \n jti` plus the
 *   Map entry), over 200,000 entries, around a forced GC. GC is exposed at run time (v8 flag)
 *   when node was not started with --expose-gc; without it the figure is best effort.
 *
 * The reference and the measured operations are timed in alternating rounds and each ratio is
 * the median of the per-round ratios, so load from other work on the machine hits both sides.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { rmSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { newJti } from "../src/invocation/nonce.js";
import {
  MemoryReplayCache,
  signInvocation,
  signReceipt,
  Trust,
  verifyInvocation,
  verifyReceipt,
} from "../src/invocation/index.js";
import { newDomain } from "../test/helpers/invocation-fixtures.js";
import { medianMicros, opsPerSecond, round } from "./harness.js";

const TOOL = "search_documents";
const ARGS = { query: "quarterly revenue by region", limit: 10, filters: { year: 2026, regions: ["emea", "apac"] } };
const RESULT = { matches: 3, documents: ["q1.pdf", "q2.pdf", "q3.pdf"] };
const ROUNDS = 7;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

function getGc(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  try {
    setFlagsFromString("--expose-gc");
    return runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
}

async function replayCacheBytesPerEntry(iss: string): Promise<number> {
  const gc = getGc();
  const N = 200_000;
  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      gc?.();
      await new Promise((r) => setImmediate(r));
    }
  };
  await settle();
  const before = process.memoryUsage().heapUsed;
  const cache = new MemoryReplayCache({ maxEntries: N + 1 });
  const exp = Date.now() + 600_000;
  for (let i = 0; i < N; i++) cache.checkAndRemember(`${iss}\n${newJti()}`, exp + (i % 60) * 1000);
  await settle();
  const after = process.memoryUsage().heapUsed;
  if (cache.size !== N) throw new Error("replay cache lost entries");
  return (after - before) / N;
}

export default async (): Promise<Record<string, number>> => {
  const d = await newDomain();
  try {
    const caller = await d.identity("bench-caller");
    const server = await d.identity("bench-server");
    const trust = new Trust(d.authority.bundleSet(), { revocation: d.authority });
    const replay = new MemoryReplayCache();
    const audience = server.spiffeId;

    // Reference: the same number of bytes through one raw sign and one raw verify.
    const sample = signInvocation(caller, { audience, tool: TOOL, args: ARGS });
    const data = Buffer.from(sample.slice(0, sample.lastIndexOf(".")), "ascii");
    const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const privateKey = createPrivateKey(pair.privateKey.export({ format: "pem", type: "pkcs8" }));
    const publicKey = createPublicKey(pair.publicKey.export({ format: "pem", type: "spki" }));
    const raw = () => {
      const sig = sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
      if (!verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig))
        throw new Error("raw verify failed");
    };

    const invocation = async () => {
      const token = signInvocation(caller, { audience, tool: TOOL, args: ARGS });
      await verifyInvocation(token, { audience, tool: TOOL, args: ARGS, trust, replay });
    };
    const mutual = async () => {
      const token = signInvocation(caller, { audience, tool: TOOL, args: ARGS });
      const v = await verifyInvocation(token, { audience, tool: TOOL, args: ARGS, trust, replay });
      const receipt = signReceipt(server, {
        caller: v.claims.iss,
        tool: TOOL,
        invocationToken: token,
        invocationJti: v.claims.jti,
        result: RESULT,
        status: "ok",
      });
      verifyReceipt(receipt, {
        invocationToken: token,
        result: RESULT,
        callee: audience,
        caller: caller.spiffeId,
        trust,
      });
    };
    await mutual(); // fails loudly if anything is wired wrong

    const raws: number[] = [],
      invs: number[] = [],
      muts: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      raws.push(await medianMicros(raw, 1000, 100));
      invs.push(await medianMicros(invocation, 1000, 100));
      muts.push(await medianMicros(mutual, 500, 50));
    }
    const rawPair = median(raws);
    const invRatio = median(invs.map((v, i) => v / (raws[i] as number)));
    const mutRatio = median(muts.map((v, i) => v / (2 * (raws[i] as number))));
    const roundsPerSecond = await opsPerSecond(mutual, 1500);
    const bytes = await replayCacheBytesPerEntry(caller.spiffeId);

    return {
      raw_pair_us: round(rawPair, 1),
      invocation_vs_raw_ratio: round(invRatio, 3),
      mutual_round_vs_raw_ratio: round(mutRatio, 3),
      mutual_rounds_per_s: round(roundsPerSecond, 0),
      replay_cache_bytes_per_entry: round(bytes, 0),
    };
  } finally {
    d.client.close();
    rmSync(d.home, { recursive: true, force: true });
  }
};
