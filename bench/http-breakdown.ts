/**
 * Where a secured Streamable HTTP call's time goes, beyond a plain one (not part of
 * `npm run bench`; run `npm run bench:http-breakdown`). Each line is a p50 against a plain call
 * measured in the same process, in alternating rounds:
 *
 * - padded: a plain call carrying a token-sized string in its request `_meta` and a
 *   receipt-sized one in its answer: the cost of the bytes alone.
 * - secured: the real thing.
 * - secured, stubbed signatures: both processes preload bench/helpers/stub-signatures.ts, so
 *   every check and every byte is as in `secured` but the four signature operations cost
 *   nothing. secured minus this is what the signatures cost on the call's path.
 *
 * The stubbed half runs in a child process of this script (the stub is process-wide).
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, sign, verify } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Aztp } from "../src/client/aztp.js";
import { secureMcpClient } from "../src/mcp/index.js";
import { medianMicros } from "./harness.js";
import { BENCH_ROOT, median, SEARCH_ARGS, startHttpServer, warm } from "./helpers/mcp-http-process.js";

const STUB = join(BENCH_ROOT, "bench/helpers/stub-signatures.ts");
const PADDING = "x".repeat(2400);
const ROUNDS = 11;
const stubbed = process.argv[2] === "--stubbed";

type Call = () => Promise<unknown>;

/** p50 of each call, in µs, over alternating rounds (so load from elsewhere hits all alike). */
async function measure(calls: Record<string, Call>): Promise<Record<string, number>> {
  for (const call of Object.values(calls)) await warm(call, 2500);
  const samples: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++)
    for (const [name, call] of Object.entries(calls)) (samples[name] ??= []).push(await medianMicros(call, 150, 15));
  return Object.fromEntries(Object.entries(samples).map(([name, v]) => [name, median(v)]));
}

async function run(): Promise<Record<string, number>> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-breakdown-"));
  const aztp = new Aztp({ home });
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const preload = stubbed ? [STUB] : [];
    const identity = (await aztp.secureConnect({}, "breakdown-client")).identity;
    const trust = await aztp.trust();
    const connect = async (kind: "plain" | "padded" | "secured"): Promise<Client> => {
      const server = await startHttpServer(kind, home, preload);
      const client =
        kind === "secured"
          ? await secureMcpClient(new Client({ name: kind, version: "1" }), { identity, trust })
          : new Client({ name: kind, version: "1" });
      await client.connect(new StreamableHTTPClientTransport(server.url));
      closers.push(() => client.close(), server.close);
      return client;
    };
    const plain = await connect("plain");
    const secured = await connect("secured");
    const calls: Record<string, Call> = {
      plain: () => plain.callTool({ name: "search", arguments: SEARCH_ARGS }),
      secured: () => secured.callTool({ name: "search", arguments: SEARCH_ARGS }),
    };
    if (!stubbed) {
      const padded = await connect("padded");
      calls.padded = () =>
        padded.callTool({ name: "search", arguments: SEARCH_ARGS, _meta: { "io.aztp/padding": PADDING } });
    }
    return await measure(calls);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** Four raw P-256 operations (two sign+verify pairs) over a token-sized input, in a tight loop. */
async function rawFour(): Promise<number> {
  const data = Buffer.alloc(2400, 0x61);
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return (
    2 *
    (await medianMicros(
      () =>
        verify(
          "sha256",
          data,
          { key: publicKey, dsaEncoding: "ieee-p1363" },
          sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" }),
        ),
      2000,
      200,
    ))
  );
}

if (stubbed) {
  process.stdout.write(`${JSON.stringify(await run())}\n`);
} else {
  const real = await run();
  const child = spawnSync(
    process.execPath,
    [
      "--disable-warning=MaxListenersExceededWarning",
      "--import",
      "tsx",
      "--import",
      STUB,
      fileURLToPath(import.meta.url),
      "--stubbed",
    ],
    { cwd: BENCH_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
  );
  const stub = JSON.parse(child.stdout.trim().split("\n").pop() ?? "{}") as Record<string, number>;
  const four = await rawFour();
  const ms = (us: number | undefined): string => ((us ?? Number.NaN) / 1000).toFixed(3);
  const line = (what: string, p50: number | undefined, plainP50: number | undefined): string => {
    const added = (p50 ?? 0) - (plainP50 ?? 0);
    return `${what.padEnd(34)} ${ms(p50)} ms   ${added < 0 ? "-" : "+"}${ms(Math.abs(added))} ms   x${((p50 ?? 0) / (plainP50 ?? 1)).toFixed(3)}`;
  };
  process.stdout.write(
    [
      `${"".padEnd(34)} p50        over plain   ratio`,
      line("plain", real.plain, real.plain),
      line("padded (2.4 KB each way)", real.padded, real.plain),
      line("secured", real.secured, real.plain),
      line("plain (stubbed process)", stub.plain, stub.plain),
      line("secured, stubbed signatures", stub.secured, stub.plain),
      "",
      `signatures on the call's path: ${ms((real.secured ?? 0) - (real.plain ?? 0) - ((stub.secured ?? 0) - (stub.plain ?? 0)))} ms; the same four in a tight loop: ${ms(four)} ms`,
      `a 1.3 ratio leaves ${ms(0.3 * (real.plain ?? 0))} ms for everything a secured call adds`,
      "",
    ].join("\n"),
  );
}
