/**
 * People at hosts, as the tests set them up: a REAL OpenID Provider on loopback
 * (examples/local-openid-provider.ts) with `aztp serve` registered at it as a relying party (a
 * client secret), `aztp serve` delegating people's logins to it (`--login-*`) and trusting it
 * for ID tokens issued to itself; and a secured MCP server ("ledger": `balance`, `transfer`)
 * whose authorization server is that `aztp serve`, every method needing a bearer token.
 */
import { join } from "node:path";
import type { TestContext } from "node:test";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../../examples/local-openid-provider.js";
import { AuditLog, queryAuditLog } from "../../src/audit/index.js";
import type { AuditEntry } from "../../src/audit/entry.js";
import type { EmbeddedAuthority } from "../../src/authority/authority.js";
import { Aztp } from "../../src/client/aztp.js";
import type { CalleeGuard } from "../../src/guard/callee.js";
import { secureMcpServer, serveMcpHttp } from "../../src/mcp/index.js";
import type { PolicyDocument } from "../../src/policy/index.js";
import { tempDir } from "./authority-util.js";
import { startServe, type StartedServe } from "./serve-util.js";

export const LOGIN_CLIENT = "aztp-serve";
export const LOGIN_SECRET = "a-secret-of-aztp-serve-at-the-provider-0123456789";

/** The provider and `aztp serve`, wired to each other. */
export async function peopleAtHosts(
  t: TestContext,
  options: { clientMetadataDocuments?: { allowLoopbackHttp: boolean } } = {},
): Promise<{ op: LocalOpenIdProvider; s: StartedServe }> {
  const op = await startLocalOpenIdProvider();
  t.after(() => op.close());
  const s = await startServe(t, {
    insecureHttp: true,
    trustDomain: "people.test",
    scopesSupported: ["mcp:tools"],
    // "groups": the local provider puts them in the ID token under that scope (policy reads aztp:person.groups).
    login: {
      issuer: op.issuer,
      clientId: LOGIN_CLIENT,
      clientSecret: LOGIN_SECRET,
      scope: "openid email profile groups",
    },
    ...(options.clientMetadataDocuments !== undefined
      ? { clientMetadataDocuments: options.clientMetadataDocuments }
      : {}),
  });
  // The trust domain trusts the provider for ID tokens issued to aztp serve.
  await (s.running.backend.authority as unknown as EmbeddedAuthority).addPersonIssuer({
    issuer: op.issuer,
    audiences: [LOGIN_CLIENT],
    recordEmail: true,
  });
  await op.addClient({
    client_id: LOGIN_CLIENT,
    client_secret: LOGIN_SECRET,
    redirect_uris: [`${s.url}/oauth/callback`],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  });
  return { op, s };
}

/** A secured MCP server taking `s`'s tokens, on a remote client of it; `policy` decides its calls. */
export async function ledgerServer(
  t: TestContext,
  s: StartedServe,
  policy?: PolicyDocument[],
): Promise<{ url: URL; audit(): Promise<AuditEntry[]> }> {
  const home = tempDir(t, "rs");
  const c = Aztp.initialize({ baseUrl: s.url, apiKey: s.apiKey, trustBundle: s.bundlePem, home });
  t.after(() => c.close());
  const { identity } = await c.secureConnect({}, "ledger");
  const auditPath = join(tempDir(t, "rs-audit"), "audit.jsonl");
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const guards: CalleeGuard[] = [];
  const http = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      const server = new McpServer({ name: "ledger", version: "1.0.0" });
      server.registerTool(
        "balance",
        { inputSchema: { account: z.string() } },
        async ({ account }) => ({ content: [{ type: "text", text: `${account}: 42` }] }) satisfies CallToolResult,
      );
      server.registerTool(
        "transfer",
        { inputSchema: { to: z.string(), amount: z.number() } },
        async ({ to, amount }) =>
          ({ content: [{ type: "text", text: `paid ${amount} to ${to}` }] }) satisfies CallToolResult,
      );
      const secured = await secureMcpServer(server, {
        client: c,
        identity,
        audit: log,
        mode: "enforce",
        ...(policy !== undefined ? { policy } : {}),
      });
      guards.push(secured.aztpGuard);
      await secured.connect(transport);
    },
    { client: c, authorizationServers: true, scopes: ["mcp:tools"], openMethods: [], guard: { identity, audit: log } },
  );
  t.after(async () => {
    await http.close();
    for (const g of guards) await g.flush();
    await log.close();
  });
  return {
    url: http.url,
    async audit(): Promise<AuditEntry[]> {
      for (const g of guards) await g.flush();
      return queryAuditLog(auditPath);
    },
  };
}
