/**
 * The bridge's figure (issue 18): what `aztp mcp bridge` adds to a call an unmodified host
 * makes, over the same call made by a client built with this library.
 *
 * - bridge_added_p50_ms: p50 of a tools/call made by an unmodified SDK `Client` over stdio to a
 *   real `aztp mcp bridge` process (spawned as a host spawns it: the CLI, `--url`), which signs
 *   it, sends it over Streamable HTTP to a secured server in its own process, verifies the
 *   receipt and writes its audit entry; minus p50 of the same call made by `secureMcpClient`
 *   straight to that server over Streamable HTTP (signed, receipt verified, audited the same:
 *   each keeps its default log). The difference is the bridge's own work: the stdio hop both
 *   ways, its JSON-RPC join, a second process. Scaled to the reference raw pair (below).
 *   Target <= 0.5 ms.
 * - bridge_added_unscaled_p50_ms: the same difference as measured on this machine.
 * - bridge_raw_pair_us: one raw P-256 sign+verify pair of a token's size (node:crypto), timed in
 *   every round beside the calls; bridge_added_vs_raw_pair_ratio is the added p50 over it.
 * - bridge_p50_ms, bridge_direct_p50_ms: the two medians.
 *
 * Scaling: machines differ by up to 2x in raw P-256 speed (92 us on one, 177 us on another,
 * ../shared/DESIGN.md section 8), and a shared machine's speed moves between runs, so an
 * absolute time is comparable only against the same machine's raw pair measured in the same
 * run. The millisecond targets of the issues are set against DESIGN.md section 8, whose raw
 * pair runs at about 8,000/s: bridge_added_p50_ms = added / measured pair x 125 us, i.e. the
 * added time on a machine whose raw pair takes 125 us.
 *
 * Run alone: `npm run bench -- bridge`. The two calls are timed call for call in alternation
 * (pairedMedianMicros), in rounds with the raw pair, so load from elsewhere hits both alike.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { Aztp } from "../src/client/aztp.js";
import { signInvocation } from "../src/invocation/invocation.js";
import { secureMcpClient } from "../src/mcp/index.js";
import { pairedMedianMicros, round, type Figures } from "./harness.js";
import { BENCH_ROOT, median, rawPairTimer, SEARCH_ARGS, startHttpServer, warm } from "./helpers/mcp-http-process.js";

const ROUNDS = 5;
/** The raw pair of the machine the issues' millisecond targets are set against (DESIGN.md section 8: ~8,000 pairs/s). */
export const REFERENCE_RAW_PAIR_US = 125;

/** `call`, failing on a refused call: the bridge turns refusals into isError results, which must not be timed as calls. */
function checked(call: () => Promise<unknown>, what: string): () => Promise<unknown> {
  return async () => {
    const r = (await call()) as CallToolResult;
    if (r.isError === true) throw new Error(`${what}: the call was refused: ${JSON.stringify(r.content)}`);
    return r;
  };
}

export default async function bridgeBench(): Promise<Figures> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-bridge-"));
  const aztp = new Aztp({ home });
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const server = await startHttpServer("secured", home);
    closers.push(server.close);
    const identity = (await aztp.secureConnect({}, "bench-bridge-direct")).identity;
    const trust = await aztp.trust();

    const direct = await secureMcpClient(new Client({ name: "direct", version: "1" }), { identity, trust });
    await direct.connect(new StreamableHTTPClientTransport(server.url));
    // The host: an SDK Client that knows nothing of AZTP, starting the bridge as a host's
    // configuration does (`aztp mcp bridge --print-config` writes this command line).
    const host = new Client({ name: "host", version: "1" });
    await host.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [
          "--import",
          "tsx",
          join(BENCH_ROOT, "src/cli/main.ts"),
          "--home",
          home,
          "mcp",
          "bridge",
          "--name",
          "bench-bridge",
          "--url",
          server.url.href,
        ],
        env: getDefaultEnvironment(),
        stderr: "ignore",
        cwd: BENCH_ROOT,
      }),
    );
    closers.unshift(
      () => direct.close(),
      () => host.close(),
    );
    const callDirect = checked(() => direct.callTool({ name: "search", arguments: SEARCH_ARGS }), "direct");
    const callBridged = checked(() => host.callTool({ name: "search", arguments: SEARCH_ARGS }), "through the bridge");
    // HTTP stacks and the bridge's process take a few thousand calls to warm up (mcp.bench.ts).
    await warm(callDirect, 2500);
    await warm(callBridged, 2500);

    const token = signInvocation(identity, { audience: identity.spiffeId, tool: "search", args: SEARCH_ARGS });
    const rawPairRound = rawPairTimer(token.lastIndexOf("."));
    const directS: number[] = [];
    const bridgedS: number[] = [];
    const rawS: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const [d, b] = await pairedMedianMicros(callDirect, callBridged, 200, 20);
      directS.push(d);
      bridgedS.push(b);
      rawS.push(await rawPairRound());
    }
    const addedUs = median(bridgedS) - median(directS);
    const rawPair = median(rawS);
    return {
      bridge_direct_p50_ms: round(median(directS) / 1000, 3),
      bridge_p50_ms: round(median(bridgedS) / 1000, 3),
      bridge_raw_pair_us: round(rawPair, 1),
      bridge_added_unscaled_p50_ms: round(addedUs / 1000, 3),
      bridge_added_vs_raw_pair_ratio: round(addedUs / rawPair, 3),
      bridge_added_p50_ms: round(((addedUs / rawPair) * REFERENCE_RAW_PAIR_US) / 1000, 3),
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}
