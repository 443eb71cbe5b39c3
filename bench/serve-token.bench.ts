/**
 * `aztp serve` as an OAuth authorization server (bench/helpers/serve-replicas.ts: a real replica
 * process on PostgreSQL, a throwaway server with fsync on, or AZTP_BENCH_PG_URL).
 *
 * - serve_token_per_s: client-credentials access tokens from one replica over HTTPS, 32 requests
 *   in flight, each lane its own workload signing a fresh private_key_jwt with its SVID key (as
 *   the MCP SDK's PrivateKeyJwtProvider does) and sending no API key (as an unmodified OAuth
 *   client sends none). Each token is a form parse, the registry brought up to date, one ECDSA
 *   verification, the client's policy, the jti spent in the shared replay cache (one durable
 *   INSERT) and one ECDSA signature. Target >= 300.
 *
 * Without PostgreSQL (no initdb and no AZTP_BENCH_PG_URL) the module says so and gives no figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aztp } from "../src/client/aztp.js";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { JWT_BEARER_ASSERTION_TYPE, signClientAssertion } from "../src/oauth/client-assertion.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { round, type Figures } from "./harness.js";
import { startReplicas } from "./helpers/serve-replicas.js";

const TOKEN_TOTAL = 2000;
const IN_FLIGHT = 32;
const RESOURCE = "https://tools.bench.test/mcp";

export default async function serveTokenBench(): Promise<Figures> {
  let world;
  try {
    world = await startReplicas({ count: 1, trustDomain: "bench.token", refreshHintSeconds: 30 });
  } catch (e) {
    process.stderr.write(`serve-token.bench: skipped, no PostgreSQL (${(e as Error).message})\n`);
    return {};
  }
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-token-"));
  const replica = world.replicas[0]!;
  const client = new Aztp({ apiKey: world.apiKey, baseUrl: replica.url, trustBundle: world.bundleFile, home });
  // The OAuth client: HTTPS checked against the bundle, and no API key.
  let http: AuthorityHttp | undefined;
  try {
    const remote = await client.authority();
    const issuer = remote.oauthIssuer;
    const lanes = await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, i) => {
        const wk = await generateWorkloadKey();
        const { record } = await remote.issueIdentity(
          { name: `token-client-${i}`, trustDomain: "bench.token" },
          wk.csr,
        );
        return { id: record.spiffeId, key: wk.privateKey };
      }),
    );
    http = new AuthorityHttp({
      baseUrl: replica.url,
      roots: () => remote.bundle().toPem(),
      serverId: () => "spiffe://bench.token/aztp/serve",
    });
    const oauth = http;
    const token = (lane: (typeof lanes)[number]): Promise<unknown> =>
      oauth.postForm("oauth/token", {
        grant_type: "client_credentials",
        client_assertion_type: JWT_BEARER_ASSERTION_TYPE,
        client_assertion: signClientAssertion({ clientId: lane.id, audience: issuer, key: lane.key }),
        resource: RESOURCE,
        scope: "tools:read",
      });
    await Promise.all(lanes.map(token)); // warm: one connection per lane
    let next = 0;
    const started = performance.now();
    await Promise.all(
      lanes.map(async (lane) => {
        while (next++ < TOKEN_TOTAL) await token(lane);
      }),
    );
    const perS = TOKEN_TOTAL / ((performance.now() - started) / 1000);
    return { serve_token_per_s: round(perS, 1) };
  } finally {
    http?.close();
    await client.close().catch(() => undefined);
    await world.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
