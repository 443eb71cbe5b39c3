/**
 * `aztp serve`'s token endpoint as an RFC 8693 token exchange (bench/helpers/serve-replicas.ts:
 * a real replica process on PostgreSQL, a throwaway server with fsync on, or AZTP_BENCH_PG_URL).
 *
 * - serve_token_exchange_per_s: on-behalf-of tokens from one replica over HTTPS, 32 requests in
 *   flight, each lane its own agent signing a fresh private_key_jwt actor token with its SVID key
 *   and exchanging alice's ID token from a real OpenID Provider on loopback
 *   (examples/local-openid-provider.ts, oidc-provider), whose keys the replica found by
 *   discovery once and caches. Each token is a form parse, the registry brought up to date, the
 *   actor's ECDSA verification, the person token's ECDSA verification, the actor's jti spent in
 *   the shared replay cache (one durable INSERT) and one ECDSA signature. Target >= 200.
 *
 * Without PostgreSQL (no initdb and no AZTP_BENCH_PG_URL) the module says so and gives no figures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { Aztp } from "../src/client/aztp.js";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { signClientAssertion } from "../src/oauth/client-assertion.js";
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPE } from "../src/people/token-exchange.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { round, type Figures } from "./harness.js";
import { startReplicas } from "./helpers/serve-replicas.js";

const EXCHANGE_TOTAL = 2000;
const IN_FLIGHT = 32;

export default async function serveTokenExchangeBench(): Promise<Figures> {
  let world;
  try {
    world = await startReplicas({ count: 1, trustDomain: "bench.exchange", refreshHintSeconds: 30 });
  } catch (e) {
    process.stderr.write(`serve-token-exchange.bench: skipped, no PostgreSQL (${(e as Error).message})\n`);
    return {};
  }
  const op = await startLocalOpenIdProvider();
  const home = mkdtempSync(join(tmpdir(), "aztp-bench-exchange-"));
  const replica = world.replicas[0]!;
  const client = new Aztp({ apiKey: world.apiKey, baseUrl: replica.url, trustBundle: world.bundleFile, home });
  let http: AuthorityHttp | undefined;
  try {
    const remote = await client.authority();
    await remote.addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
    const issuer = remote.oauthIssuer;
    const alice = await op.login({ account: "alice" });
    const lanes = await Promise.all(
      Array.from({ length: IN_FLIGHT }, async (_, i) => {
        const wk = await generateWorkloadKey();
        const { record } = await remote.issueIdentity(
          { name: `exchange-agent-${i}`, trustDomain: "bench.exchange" },
          wk.csr,
        );
        return { id: record.spiffeId, key: wk.privateKey };
      }),
    );
    // The agents' side: HTTPS checked against the bundle, and no API key.
    http = new AuthorityHttp({
      baseUrl: replica.url,
      roots: () => remote.bundle().toPem(),
      serverId: () => "spiffe://bench.exchange/aztp/serve",
    });
    const oauth = http;
    const exchange = (lane: (typeof lanes)[number]): Promise<unknown> =>
      oauth.postForm("oauth/token", {
        grant_type: TOKEN_EXCHANGE_GRANT,
        subject_token: alice.idToken,
        subject_token_type: TOKEN_TYPE.idToken,
        actor_token: signClientAssertion({ clientId: lane.id, audience: issuer, key: lane.key }),
        actor_token_type: TOKEN_TYPE.jwt,
        resource: "spiffe://bench.exchange",
      });
    await Promise.all(lanes.map(exchange)); // warm: one connection per lane, the provider's keys fetched
    let next = 0;
    const started = performance.now();
    await Promise.all(
      lanes.map(async (lane) => {
        while (next++ < EXCHANGE_TOTAL) await exchange(lane);
      }),
    );
    const perS = EXCHANGE_TOTAL / ((performance.now() - started) / 1000);
    return { serve_token_exchange_per_s: round(perS, 1) };
  } finally {
    http?.close();
    await client.close().catch(() => undefined);
    await world.stop();
    await op.close();
    rmSync(home, { recursive: true, force: true });
  }
}
