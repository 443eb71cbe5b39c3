/**
 * The secured MCP server the bridge tests put behind `aztp mcp bridge`: every MCP feature a
 * host uses, so each can be seen to pass through. Tools: `echo`; `secret` (which the tests'
 * policy denies); `count` (progress notifications); `ask`, `roots` and `confirm` (requests
 * to the host: sampling, roots, elicitation, made from inside the call); `slow` (answers after
 * `ms`, announcing on stderr that it started); `meta` (what its request's `_meta` held); a resource, a resource template with completion,
 * and a prompt.
 *
 * In-process (`bridgeToolServer`, with serveMcpHttp) or as its own process, to be killed:
 *
 *   node --import tsx test/helpers/mcp-bridge-server.ts --home DIR --name NAME
 *        [--listen http://127.0.0.1:0 | stdio] [--audit FILE] [--policy JSON]
 *
 * On HTTP it prints `LISTENING <url>` on stderr; on both, `PID <pid>` first.
 */
import { EventEmitter } from "node:events";
import { parseArgs } from "node:util";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  ListRootsResultSchema,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import aztp from "aztp-client";
import { AuditLog } from "../../src/audit/index.js";
import type { AgentIdentity } from "../../src/client/identity.js";
import { secureMcpServer, serveMcpHttp, type SecureMcpServerOptions } from "../../src/mcp/index.js";
import type { PolicyDocument } from "../../src/policy/policy.js";

const invokedDirectly = process.argv[1]?.endsWith("mcp-bridge-server.ts") === true;

/** In-process: `slow` emits "slow" here when it starts (as a process, it prints SLOW STARTED). */
export const toolEvents = new EventEmitter();

const text = (t: string): CallToolResult => ({ content: [{ type: "text", text: t }] });

/** A new McpServer with the tools, resources and prompt above (not yet secured). */
export function newBridgeToolServer(): McpServer {
  const server = new McpServer({ name: "bridge-test-server", version: "1.0.0" });
  server.registerTool("echo", { description: "echoes text", inputSchema: { text: z.string() } }, async ({ text: t }) =>
    text(t),
  );
  server.registerTool("secret", { description: "denied by the tests' policy", inputSchema: {} }, async () =>
    text("the secret"),
  );
  server.registerTool(
    "count",
    { description: "counts to n, with progress", inputSchema: { n: z.number() } },
    async ({ n }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= n; i++)
        if (token !== undefined)
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: i, total: n },
          });
      return text(`counted to ${n}`);
    },
  );
  server.registerTool(
    "ask",
    { description: "asks the host's model (sampling)", inputSchema: { question: z.string() } },
    async ({ question }, extra) => {
      const r = await extra.sendRequest(
        {
          method: "sampling/createMessage",
          params: { messages: [{ role: "user", content: { type: "text", text: question } }], maxTokens: 20 },
        },
        CreateMessageResultSchema,
      );
      return text(`the model said: ${(r.content as { text?: string }).text}`);
    },
  );
  server.registerTool("roots", { description: "lists the host's roots", inputSchema: {} }, async (_args, extra) => {
    const r = await extra.sendRequest({ method: "roots/list" }, ListRootsResultSchema);
    return text(`roots: ${r.roots.map((root) => root.uri).join(", ")}`);
  });
  server.registerTool("confirm", { description: "asks the user (elicitation)", inputSchema: {} }, async (_a, extra) => {
    const r = await extra.sendRequest(
      {
        method: "elicitation/create",
        params: {
          message: "proceed?",
          requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
        },
      },
      ElicitResultSchema,
    );
    return text(`the user: ${r.action} ${JSON.stringify(r.content ?? {})}`);
  });
  server.registerTool(
    "slow",
    { description: "answers after ms", inputSchema: { ms: z.number() } },
    async ({ ms }, extra) => {
      if (invokedDirectly) process.stderr.write(`SLOW STARTED\n`);
      toolEvents.emit("slow");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        extra.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
      });
      return text(`slept ${ms} ms`);
    },
  );
  server.registerTool(
    "meta",
    { description: "what its request's _meta held: the keys, and who signed the invocation", inputSchema: {} },
    async (_args, extra) => {
      const meta = (extra._meta ?? {}) as Record<string, unknown>;
      const token = meta["io.aztp/invocation"];
      const iss =
        typeof token === "string"
          ? (JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as { iss?: string }).iss
          : undefined;
      return text(JSON.stringify({ keys: Object.keys(meta).sort(), iss }));
    },
  );
  server.registerResource(
    "readme",
    "test://readme",
    { description: "a static resource", mimeType: "text/plain" },
    async (uri) => ({ contents: [{ uri: uri.href, text: "read me" }] }),
  );
  server.registerResource(
    "city",
    new ResourceTemplate("test://city/{name}", {
      list: undefined,
      complete: { name: (value) => ["Lisbon", "London", "Paris"].filter((c) => c.startsWith(value)) },
    }),
    { description: "a city" },
    async (uri, { name }) => ({ contents: [{ uri: uri.href, text: `city ${String(name)}` }] }),
  );
  server.registerPrompt("greet", { description: "a greeting", argsSchema: { who: z.string() } }, async ({ who }) => ({
    messages: [{ role: "user", content: { type: "text", text: `hello ${who}` } }],
  }));
  return server;
}

/** The tests' policy: every tool but `secret`. */
export const BRIDGE_POLICY: PolicyDocument = {
  Version: "2012-10-17",
  Statement: [
    { Effect: "Allow", Action: "tool:call", Resource: "*" },
    { Effect: "Deny", Action: "tool:call", Resource: "secret" },
  ],
} as PolicyDocument;

/**
 * A secured server factory: the first server is issued its identity by the client, the others
 * (one per HTTP session) serve under the same identity.
 */
export function bridgeToolServers(
  c: ReturnType<typeof aztp.initialize>,
  name: string,
  options: Omit<SecureMcpServerOptions, "client" | "name" | "identity" | "trust">,
): { make: () => Promise<McpServer>; identity: () => AgentIdentity | undefined; flush: () => Promise<void> } {
  let identity: AgentIdentity | undefined;
  const all: McpServer[] = [];
  return {
    async make() {
      const server = identity
        ? await secureMcpServer(newBridgeToolServer(), { identity, trust: await c.trust(), ...options })
        : await secureMcpServer(newBridgeToolServer(), { client: c, name, ...options });
      identity ??= (server as McpServer & { identity: AgentIdentity }).identity;
      all.push(server);
      return server;
    },
    identity: () => identity,
    async flush() {
      for (const s of all) await (s as { aztpGuard?: { flush(): Promise<void> } }).aztpGuard?.flush();
    },
  };
}

if (invokedDirectly) {
  const { values } = parseArgs({
    options: {
      home: { type: "string" },
      name: { type: "string" },
      listen: { type: "string", default: "http://127.0.0.1:0" },
      audit: { type: "string" },
      policy: { type: "string" },
    },
  });
  if (!values.home || !values.name) throw new Error("--home and --name are required");
  process.stderr.write(`PID ${process.pid}\n`);
  const client = aztp.initialize({ home: values.home });
  const audit = values.audit ? await AuditLog.open(values.audit, { batchWindowMs: 0 }) : undefined;
  const servers = bridgeToolServers(client, values.name, {
    ...(audit ? { audit } : {}),
    ...(values.policy ? { policy: [JSON.parse(values.policy) as PolicyDocument] } : {}),
  });
  if (values.listen === "stdio") {
    const server = await servers.make();
    process.stdin.on("end", () => process.exit(0));
    await server.connect(new StdioServerTransport());
  } else {
    const http = await serveMcpHttp(values.listen as string, async (transport) => {
      await (await servers.make()).connect(transport);
    });
    process.stderr.write(`LISTENING ${http.url.href}\n`);
  }
}
