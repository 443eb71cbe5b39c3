/**
 * The shared authority: `aztp serve` on PostgreSQL (bench/helpers/serve-replicas.ts starts two
 * replicas on a throwaway server, fsync on, or on AZTP_BENCH_PG_URL).
 *
 * - serve_issuance_per_s: CSR to SVID through HTTPS, 2 replicas on this machine, 32 requests
 *   in flight spread over both (keys and CSRs made beforehand). Target >= 100.
 * - serve_verify_p50_ms: p50 of POST /v1/verify (an identity's validity as the registry says
 *   it, fresh from PostgreSQL) through HTTPS, one at a time on a kept-alive connection. Target <= 5.
 * - remote_invocation_vs_embedded_ratio: p50 of a secured in-memory MCP tools/call whose two
 *   identities were issued by `aztp serve` (verification local, from the verified feeds), over
 *   the same call with identities from the embedded authority; the two alternate call for
 *   call. Default configuration on both (each side's audit log in its local home). Target <= 1.05.
 * - pg_audit_append_per_s: durable, batched appends to the many-writer PostgreSQL audit log
 *   (bench/pg-audit.ts). Target >= 5,000.
 *
 * Without PostgreSQL (no initdb and no AZTP_BENCH_PG_URL) the module says so and gives no figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { Aztp } from "../src/client/aztp.js";
import { AuthorityHttp } from "../src/client/authority-http.js";
import type { RemoteAuthority } from "../src/client/remote-authority.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { medianMicros, pairedMedianMicros, round, type Figures } from "./harness.js";
import { benchPgAudit } from "./pg-audit.js";
import { startReplicas } from "./helpers/serve-replicas.js";

const ISSUE_TOTAL = 400;
const ISSUE_IN_FLIGHT = 32;
const ARGS = { query: "zero trust", limit: 5 };

function toolServer(): McpServer {
  const s = new McpServer({ name: "bench", version: "1" });
  s.registerTool("search", { inputSchema: { query: z.string(), limit: z.number() } }, async ({ query }) => ({
    content: [{ type: "text", text: `results for ${query}` }],
  }));
  return s;
}

/** A secured in-memory client/server pair whose identities come from `client`. */
async function securedCall(
  client: Aztp,
  tag: string,
): Promise<{ call: () => Promise<unknown>; close: () => Promise<void> }> {
  const server = (await client.secureConnect({}, `bench-server-${tag}`)).identity;
  const caller = (await client.secureConnect({}, `bench-client-${tag}`)).identity;
  const trust = await client.trust();
  const c = await secureMcpClient(new Client({ name: tag, version: "1" }), { identity: caller, trust });
  const [ct, st] = InMemoryTransport.createLinkedPair();
  await (await secureMcpServer(toolServer(), { identity: server, trust })).connect(st);
  await c.connect(ct);
  const call = (): Promise<unknown> => c.callTool({ name: "search", arguments: ARGS });
  await call();
  return { call, close: () => c.close() };
}

export default async function serveBench(): Promise<Figures> {
  let world;
  try {
    world = await startReplicas({ count: 2, trustDomain: "bench.serve", refreshHintSeconds: 30 });
  } catch (e) {
    process.stderr.write(`serve.bench: skipped, no PostgreSQL (${(e as Error).message})\n`);
    return {};
  }
  const homes = mkdtempSync(join(tmpdir(), "aztp-bench-serve-"));
  const clients: Aztp[] = [];
  try {
    const [a, b] = world.replicas;
    const remoteOf = async (url: string, name: string): Promise<{ client: Aztp; remote: RemoteAuthority }> => {
      const client = new Aztp({
        apiKey: world.apiKey,
        baseUrl: url,
        trustBundle: world.bundleFile,
        home: join(homes, name),
      });
      clients.push(client);
      return { client, remote: (await client.authority()) as RemoteAuthority };
    };
    const onA = await remoteOf(a!.url, "a");
    const onB = await remoteOf(b!.url, "b");

    // Issuance: CSR to SVID, both replicas, ISSUE_IN_FLIGHT at a time.
    const csrs = await Promise.all(Array.from({ length: ISSUE_TOTAL }, async () => (await generateWorkloadKey()).csr));
    const req = (i: number) => ({ name: `issue-${i}`, trustDomain: "bench.serve" });
    await onA.remote.issueIdentity(req(-1), csrs[0]!); // warm both connections
    await onB.remote.issueIdentity(req(-2), csrs[1]!);
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: ISSUE_IN_FLIGHT }, async (_, lane) => {
        const via = lane % 2 === 0 ? onA.remote : onB.remote;
        for (let i = next++; i < ISSUE_TOTAL; i = next++) await via.issueIdentity(req(i), csrs[i]!);
      }),
    );
    const issuancePerS = ISSUE_TOTAL / ((performance.now() - started) / 1000);

    // Verification through HTTP: the service answers from the committed registry.
    const http = new AuthorityHttp({
      baseUrl: a!.url,
      apiKey: world.apiKey,
      roots: () => onA.remote.bundle().toPem(),
      serverId: () => "spiffe://bench.serve/aztp/serve",
    });
    const id = "spiffe://bench.serve/workload/production/node/issue-0";
    const verifyUs = await medianMicros(() => http.post("v1/verify", { id }), 400, 40);
    http.close();

    // The same secured call, identities from the service or from the embedded authority.
    const embedded = new Aztp({ home: join(homes, "embedded") });
    clients.push(embedded);
    const remoteCall = await securedCall(onA.client, "remote");
    const embeddedCall = await securedCall(embedded, "embedded");
    const remoteIn: number[] = [];
    const embeddedIn: number[] = [];
    for (let r = 0; r < 5; r++) {
      const [remote, local] = await pairedMedianMicros(remoteCall.call, embeddedCall.call, 600, 60);
      remoteIn.push(remote);
      embeddedIn.push(local);
    }
    await remoteCall.close();
    await embeddedCall.close();
    const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;

    const audit = await benchPgAudit(world.storeUrl);
    return {
      serve_issuance_per_s: round(issuancePerS, 1),
      serve_verify_p50_ms: round(verifyUs / 1000, 3),
      remote_invocation_p50_ms: round(median(remoteIn) / 1000, 3),
      embedded_invocation_p50_ms: round(median(embeddedIn) / 1000, 3),
      remote_invocation_vs_embedded_ratio: round(median(remoteIn) / median(embeddedIn), 3),
      pg_audit_append_per_s: round(audit.pg_audit_append_per_s, 0),
    };
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    await world.stop();
    rmSync(homes, { recursive: true, force: true });
  }
}
