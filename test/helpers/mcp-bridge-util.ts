/**
 * Plumbing for the bridge tests: a secured HTTP server in this process for the bridge to stand
 * in front of, the bridge's command line, hosts (SDK clients) connected through a bridge
 * process, and the bridge's own audit log.
 */
import { join } from "node:path";
import type { TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { AuditLog } from "../../src/audit/index.js";
import type { AuditEntry } from "../../src/audit/entry.js";
import { serveMcpHttp, type McpHttpOptions } from "../../src/mcp/index.js";
import { ROOT } from "./authority-util.js";
import { BRIDGE_POLICY, bridgeToolServers } from "./mcp-bridge-server.js";
import { CLI, fixture, idOf, readAudits, runCommand, withTimeout, type Wrap } from "./mcp-util.js";

type AztpClient = ReturnType<typeof fixture>["aztp"];

/**
 * A secured HTTP server (enforce mode, the tests' policy) in this process, with its own audit log;
 * `http` adds options of its listener (an OAuth resource server's `authorizationServers`, ...).
 */
export async function securedHttpServer(
  t: TestContext,
  c: AztpClient,
  home: string,
  name = "tools",
  http: McpHttpOptions = {},
) {
  const auditPath = join(home, `${name}-server-audit.jsonl`);
  const log = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const servers = bridgeToolServers(c, name, { audit: log, policy: [BRIDGE_POLICY], mode: "enforce" });
  const server = await serveMcpHttp(
    "http://127.0.0.1:0",
    async (transport) => {
      await (await servers.make()).connect(transport);
    },
    // A resource server's gate records the calls it refuses as the sessions' identity, in their log.
    http.authorizationServers === undefined
      ? http
      : { guard: { identity: (await c.secureConnect({}, name)).identity, audit: log, mode: "enforce" }, ...http },
  );
  t.after(async () => {
    await server.close();
    await servers.flush();
    await log.close();
  });
  return {
    url: server.url.href,
    id: idOf(name),
    /** The server's open HTTP sessions. */
    sessions: () => server.sessions,
    async audit(atLeast = 0): Promise<AuditEntry[]> {
      await servers.flush();
      return readAudits([auditPath], atLeast);
    },
  };
}

/** The bridge's command line: `node --import tsx src/cli/main.ts --home H mcp bridge --name N ...`. */
export function bridgeArgs(home: string, name: string, extra: string[]): string[] {
  return ["--import", "tsx", CLI, "--home", home, "mcp", "bridge", "--name", name, ...extra];
}

/** An SDK Client (a host) connected to a new bridge process over stdio; its stderr kept. */
export async function hostThroughBridge(
  t: TestContext,
  home: string,
  name: string,
  extra: string[],
  options: { capabilities?: ConstructorParameters<typeof Client>[1]; wrap?: Wrap } = {},
) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: bridgeArgs(home, name, extra),
    cwd: ROOT,
    env: getDefaultEnvironment(),
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  const client = new Client({ name: "test-host", version: "1.0.0" }, options.capabilities ?? {});
  t.after(() => client.close().catch(() => undefined));
  try {
    await withTimeout(
      client.connect(options.wrap ? options.wrap(transport) : transport),
      30_000,
      "connect through the bridge",
    );
  } catch (e) {
    (e as Error).message += `\nbridge stderr: ${stderr}`;
    throw e;
  }
  return { client, transport, stderr: () => stderr };
}

export const textOf = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;

/** The bridge's own audit log (its default: <home>/audit/<name>.jsonl), once it holds `atLeast` entries. */
export function bridgeAudit(home: string, name: string, atLeast: number): Promise<AuditEntry[]> {
  return readAudits([join(home, "audit", `${name}.jsonl`)], atLeast);
}

export const BRIDGE_SERVER = join(ROOT, "test", "helpers", "mcp-bridge-server.ts");
export const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Runs a bridge to its end with nothing on its stdin (a host that sends nothing). */
export function bridgeRun(home: string, name: string, extra: string[]) {
  return runCommand(process.execPath, bridgeArgs(home, name, extra), {
    env: getDefaultEnvironment(),
    timeoutMs: 30_000,
  });
}
