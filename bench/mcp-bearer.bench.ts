/**
 * MCP authorization figures (issue 18), measured against a plain call in the same run:
 *
 * - mcp_http_bearer_added_vs_plain_ratio: p50 of a tools/call made by an unmodified SDK Client
 *   sending `Authorization: Bearer <access token>` to a secured server that is an OAuth
 *   resource server (token verified offline from the bundle, policy, signed receipt, audit
 *   entry written before the answer), over p50 of the same call on a plain McpServer; both
 *   over Streamable HTTP on loopback, each server in its own process as deployed
 *   (bench/helpers/mcp-http-server.ts). Target <= 1.3.
 * - mcp_http_bearer_p50_ms, mcp_http_bearer_plain_p50_ms, mcp_http_bearer_added_p50_ms: the
 *   two medians and their difference.
 *
 * Run alone: `npm run bench -- bearer`. Plain and bearer are sampled in alternating rounds, so
 * load from elsewhere hits both.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { EmbeddedAuthority } from "../src/authority/authority.js";
import { Aztp } from "../src/client/aztp.js";
import { medianMicros, round, type Figures } from "./harness.js";
import { median, SEARCH_ARGS, startHttpServer, warm } from "./helpers/mcp-http-process.js";

const ROUNDS = 5;

export default async function mcpBearerBench(): Promise<Figures> {
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-bearer-"));
  const aztp = new Aztp({ home });
  const closers: Array<() => Promise<unknown>> = [];
  try {
    const agent = (await aztp.secureConnect({}, "bench-bearer-agent")).identity;
    const plainHttp = await startHttpServer("plain", home);
    const bearerHttp = await startHttpServer("bearer", home);
    closers.push(plainHttp.close, bearerHttp.close);
    // Long enough for the whole run: the benchmark measures calls, not token refreshes.
    const token = ((await aztp.authority()) as EmbeddedAuthority).mintAccessToken(agent.spiffeId, {
      resource: bearerHttp.url.href,
      ttlSeconds: 3600,
    });
    const plain = new Client({ name: "plain-http", version: "1" });
    await plain.connect(new StreamableHTTPClientTransport(plainHttp.url));
    const bearer = new Client({ name: "bearer-http", version: "1" });
    await bearer.connect(
      new StreamableHTTPClientTransport(bearerHttp.url, {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    closers.unshift(
      () => plain.close(),
      () => bearer.close(),
    );
    const callPlain = () => plain.callTool({ name: "search", arguments: SEARCH_ARGS });
    const callBearer = async () => {
      const r = await bearer.callTool({ name: "search", arguments: SEARCH_ARGS });
      if (r.isError === true) throw new Error(`the bearer call was refused: ${JSON.stringify(r.content)}`);
      return r;
    };
    // HTTP stacks take a few thousand calls to warm up (bench/mcp.bench.ts).
    await warm(callPlain, 2500);
    await warm(callBearer, 2500);
    const plainH: number[] = [];
    const bearerH: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      plainH.push(await medianMicros(callPlain, 200, 20));
      bearerH.push(await medianMicros(callBearer, 200, 20));
    }
    return {
      mcp_http_bearer_plain_p50_ms: round(median(plainH) / 1000, 3),
      mcp_http_bearer_p50_ms: round(median(bearerH) / 1000, 3),
      mcp_http_bearer_added_p50_ms: round((median(bearerH) - median(plainH)) / 1000, 3),
      mcp_http_bearer_added_vs_plain_ratio: round(median(bearerH) / median(plainH), 3),
    };
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    aztp.close();
    rmSync(home, { recursive: true, force: true });
  }
}
