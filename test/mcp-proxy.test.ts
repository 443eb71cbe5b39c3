/**
 * `aztp mcp proxy` as a real process in front of unmodified third-party MCP servers from npm
 * (@modelcontextprotocol/server-everything and server-filesystem), listening on stdio and on
 * Streamable HTTP, with stdio and HTTP upstreams: signed calls with receipts, unsigned callers
 * refused (enforce) or recorded (audit), a policy file, the upstream's environment, and the
 * HTTP listener's Host / Origin checks.
 */
import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../src/client/aztp.js";
import { queryAuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { secureMcpClient, serveMcpHttp } from "../src/mcp/index.js";
import { RECEIPT_META_KEY } from "../src/mcp/meta.js";
import { UpstreamProcessTransport } from "../src/mcp/upstream-process.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";
import {
  CLI,
  EVERYTHING,
  FILESYSTEM,
  fixture,
  rejectsWithData,
  spawnNode,
  startEverythingHttp,
  withTimeout,
} from "./helpers/mcp-util.js";

const idOf = (name: string): string => SpiffeId.parse(`aztp://aztp.local/workload/production/node/${name}`).toString();
/** Variables the proxy has and its upstream must not see. */
const SECRET_ENV = { AZTP_SECRET_TEST: "leak-me" };

const everythingCommand = `"${process.execPath}" "${EVERYTHING}" stdio`;
const filesystemCommand = (root: string): string => `"${process.execPath}" "${FILESYSTEM}" "${root}"`;

/** `node --import tsx src/cli/main.ts --home H mcp proxy --name N ...`. */
function proxyArgs(home: string, name: string, extra: string[]): string[] {
  return ["--import", "tsx", CLI, "--home", home, "mcp", "proxy", "--name", name, ...extra];
}

/** The proxy's own environment: ours, plus a secret and AZTP_HOME, which must not reach the upstream. */
function proxyEnv(home: string): Record<string, string> {
  return { ...getDefaultEnvironment(), ...SECRET_ENV, AZTP_HOME: home };
}

/** A stdio transport to a new proxy process (its stderr kept for failure messages). */
function stdioProxy(
  home: string,
  name: string,
  extra: string[],
): { transport: StdioClientTransport; stderr: () => string } {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: proxyArgs(home, name, extra),
    cwd: ROOT,
    env: proxyEnv(home),
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  return { transport, stderr: () => stderr };
}

/** An HTTP-listening proxy process; resolves with its URL once it listens. */
async function httpProxy(t: TestContext, home: string, name: string, extra: string[]) {
  const child = spawnNode(t, proxyArgs(home, name, ["--listen", "http://127.0.0.1:0", ...extra]), {
    env: proxyEnv(home),
  });
  const m = await child.waitFor(/listening on (http:\/\/\S+)/);
  return { url: new URL(m[1] as string), child };
}

async function connect(t: TestContext, client: Client, transport: Transport, what: string): Promise<void> {
  t.after(() => client.close().catch(() => undefined));
  await withTimeout(client.connect(transport), 30_000, `${what}: connect`);
}

async function securedClient(t: TestContext, c: Aztp, name: string) {
  return secureMcpClient(new Client({ name, version: "1.0.0" }), { client: c, name, expectedServer: undefined });
}

const text = (r: unknown): string => ((r as CallToolResult).content[0] as { text: string }).text;
const receiptOf = (r: unknown): unknown => (r as CallToolResult)._meta?.[RECEIPT_META_KEY];

/** A raw HTTP request with the headers given as they are (fetch would not let us set Host). */
function rawPost(url: URL, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const body = JSON.stringify({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: url.port,
        path: url.pathname,
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      },
      (res) => {
        let data = "";
        res.setEncoding("utf8").on("data", (d: string) => (data += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("raw request timed out")));
    req.end(body);
  });
}

describe("aztp mcp proxy in front of an upstream that re-spells ids", () => {
  it('an answer under "1" for request 1 goes down under the request\'s own id, with its receipt and audit entry', async (t) => {
    const { home, aztp: c } = fixture(t);
    const upstream = `"${process.execPath}" --import tsx "${join(ROOT, "test", "helpers", "mcp-respelling-upstream.ts")}"`;
    const proxy = stdioProxy(home, "respelling-proxy", ["--upstream-command", upstream]);
    const client = await securedClient(t, c, "agent");
    await connect(t, client, proxy.transport, `proxy (stderr: ${proxy.stderr()})`);
    const echo = await client.callTool({ name: "echo", arguments: { text: "re-spelled" } });
    assert.equal(text(echo), "re-spelled");
    assert.equal(typeof receiptOf(echo), "string", "the proxy's receipt");
    await client.close();
    const entries = await queryAuditLog(join(home, "audit", "respelling-proxy.jsonl"));
    assert.deepEqual(
      entries.map((e) => [e.side, e.tool, e.decision, e.outcome]),
      [["proxy", "echo", "allow", "ok"]],
      "audited when answered, not at close",
    );
  });
});

describe("aztp mcp proxy in front of server-everything (stdio upstream)", () => {
  it("listening on stdio: a secured client lists tools and calls echo with a receipt; the upstream sees none of the proxy's environment; an unsigned client is refused", async (t) => {
    const { home, aztp: c } = fixture(t);
    const auditPath = join(home, "proxy-audit.jsonl");
    const proxy = stdioProxy(home, "everything-proxy", [
      "--upstream-command",
      everythingCommand,
      "--audit-log",
      auditPath,
    ]);
    const client = await securedClient(t, c, "agent");
    await connect(t, client, proxy.transport, `proxy (stderr: ${proxy.stderr()})`);
    assert.equal(client.aztpServer.serverId?.toString(), idOf("everything-proxy"), "the proxy proved its identity");

    const tools = (await client.listTools()).tools.map((x) => x.name);
    for (const name of ["echo", "get-env", "get-sum"])
      assert.ok(tools.includes(name), `${name} in ${tools.join(", ")}`);
    const echo = await client.callTool({ name: "echo", arguments: { message: "through the proxy" } });
    assert.match(text(echo), /through the proxy/);
    assert.equal(typeof receiptOf(echo), "string", "the proxy's receipt");
    const sum = await client.callTool({ name: "get-sum", arguments: { a: 2, b: 40 } });
    assert.match(text(sum), /42/);

    const env = JSON.parse(text(await client.callTool({ name: "get-env", arguments: {} }))) as Record<string, string>;
    assert.ok(Object.keys(env).length > 0, "get-env shows the upstream's environment");
    assert.equal(env.AZTP_SECRET_TEST, undefined, "the proxy's secret leaked to the upstream");
    assert.equal(env.AZTP_HOME, undefined, "AZTP_HOME leaked to the upstream");
    assert.deepEqual(
      Object.keys(env).filter((k) => k.startsWith("AZTP")),
      [],
    );
    assert.ok(
      !JSON.stringify(env).includes("leak-me") && !JSON.stringify(env).includes(home),
      "no value of ours under another name",
    );

    // An unmodified SDK client, on its own proxy process: it initialises and lists tools, its call is refused.
    const other = stdioProxy(home, "everything-proxy", ["--upstream-command", everythingCommand]);
    const plain = new Client({ name: "plain", version: "1.0.0" });
    await connect(t, plain, other.transport, "plain client");
    assert.ok((await plain.listTools()).tools.some((x) => x.name === "echo"));
    const refused = await rejectsWithData(
      plain.callTool({ name: "echo", arguments: { message: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned call",
    );
    assert.match(refused.message, /sign each tools\/call/);

    await client.close();
    await plain.close();
    const entries = await queryAuditLog(auditPath);
    assert.deepEqual(
      entries.map((e) => [e.side, e.tool, e.decision, e.outcome, e.caller, e.callee]),
      ["echo", "get-sum", "get-env"].map((tool) => [
        "proxy",
        tool,
        "allow",
        "ok",
        client.identity.spiffeId,
        idOf("everything-proxy"),
      ]),
    );
  });

  it("listening on stdio, the proxy stops by itself when its client closes stdin", async (t) => {
    const { home } = fixture(t);
    const child = spawnNode(t, proxyArgs(home, "everything-proxy", ["--upstream-command", everythingCommand]), {
      env: proxyEnv(home),
    });
    await child.waitFor(/on stdio/);
    // Audit is on by default, in the home, and said at start.
    assert.equal((await child.waitFor(/audit log (\S+)\n/))[1], join(home, "audit", "everything-proxy.jsonl"));
    child.process.stdin?.end();
    const { code, signal } = await withTimeout(child.exit, 10_000, "proxy exit after stdin closed");
    assert.deepEqual({ code, signal }, { code: 0, signal: null });
  });

  it("listening on HTTP in audit mode: unsigned calls go through and are recorded, signed ones get receipts; Host and Origin are checked", async (t) => {
    const { home, aztp: c } = fixture(t);
    const auditPath = join(home, "proxy-audit.jsonl");
    const { url, child } = await httpProxy(t, home, "http-proxy", [
      "--upstream-command",
      everythingCommand,
      "--mode",
      "audit",
      "--audit-log",
      auditPath,
    ]);
    assert.equal((await child.waitFor(/audit log (\S+)\n/))[1], auditPath, "the proxy names its audit log at start");

    const plain = new Client({ name: "plain", version: "1.0.0" });
    await connect(t, plain, new StreamableHTTPClientTransport(url), "plain client");
    const r = await plain.callTool({ name: "echo", arguments: { message: "unsigned" } });
    assert.match(text(r), /unsigned/);
    assert.equal(receiptOf(r), undefined);

    const client = await securedClient(t, c, "agent");
    await connect(t, client, new StreamableHTTPClientTransport(url), "secured client");
    const s = await client.callTool({ name: "echo", arguments: { message: "signed" } });
    assert.match(text(s), /signed/);
    assert.equal(typeof receiptOf(s), "string");

    // DNS rebinding defence: a foreign Host or Origin is refused before anything else happens.
    const port = url.port;
    assert.equal((await rawPost(url, { host: "evil.example" })).status, 403);
    assert.equal((await rawPost(url, { host: `evil.example:${port}` })).status, 403);
    assert.equal((await rawPost(url, { host: `127.0.0.1:${port}`, origin: "http://evil.example" })).status, 403);
    assert.equal(
      (await rawPost(url, { host: `127.0.0.1:${port}`, origin: `http://localhost.evil.example:${port}` })).status,
      403,
    );
    assert.equal((await rawPost(url, { host: `127.0.0.1:${port}`, origin: "null" })).status, 403);
    const good: Array<Record<string, string>> = [
      { host: `127.0.0.1:${port}` },
      { host: `localhost:${port}` },
      { host: `localhost:${port}`, origin: `http://localhost:${port}` },
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` },
    ];
    for (const headers of good) {
      const ok = await rawPost(url, headers);
      assert.equal(ok.status, 200, `${JSON.stringify(headers)}: ${ok.body}`);
    }
    assert.equal((await rawPost(url, { host: `tools.example:${port}` })).status, 403, "a name not allowed");

    await plain.close();
    await client.close();
    await child.stop();
    const entries = await queryAuditLog(auditPath);
    assert.deepEqual(
      entries.map((e) => [e.side, e.tool, e.decision, e.reason ?? null]),
      [
        ["proxy", "echo", "audit-only", ErrorCodes.INVOCATION_MISSING],
        ["proxy", "echo", "allow", null],
      ],
    );
  });

  it("--allowed-host adds a name to the loopback names Host and Origin may carry", async (t) => {
    const { home } = fixture(t);
    const { url } = await httpProxy(t, home, "named-proxy", [
      "--upstream-command",
      everythingCommand,
      "--mode",
      "audit",
      "--allowed-host",
      "Tools.Example",
    ]);
    const port = url.port;
    assert.equal(
      (await rawPost(url, { host: `tools.example:${port}` })).status,
      200,
      "the allowed name (case-insensitive)",
    );
    assert.equal(
      (await rawPost(url, { host: `tools.example:${port}`, origin: `https://tools.example` })).status,
      200,
      "and as an Origin",
    );
    assert.equal((await rawPost(url, { host: `127.0.0.1:${port}` })).status, 200, "loopback still works");
    assert.equal(
      (await rawPost(url, { host: `tools.example.evil:${port}` })).status,
      403,
      "not a suffix or prefix match",
    );
    assert.equal((await rawPost(url, { host: `tools.example:${port}`, origin: "http://evil.example" })).status, 403);
  });
});

describe("aztp mcp proxy in front of server-filesystem (stdio upstream)", () => {
  it("a policy file denies one tool (ERR_POLICY_DENIED, the file is not written) and allows the others, which return receipts", async (t) => {
    const { home, aztp: c } = fixture(t);
    const root = tempDir(t, "fsroot");
    mkdirSync(join(root, "docs"));
    writeFileSync(join(root, "docs", "hello.txt"), "hello from the filesystem\n");
    const policyPath = join(home, "policy.json");
    writeFileSync(
      policyPath,
      JSON.stringify({
        Version: "2012-10-17",
        Statement: [
          { Sid: "Everything", Effect: "Allow", Action: "tool:call", Resource: "*" },
          { Sid: "NoWrites", Effect: "Deny", Action: "tool:call", Resource: "write_file" },
        ],
      }),
    );
    const proxy = stdioProxy(home, "fs-proxy", ["--upstream-command", filesystemCommand(root), "--policy", policyPath]);
    const client = await securedClient(t, c, "agent");
    await connect(t, client, proxy.transport, `proxy (stderr: ${proxy.stderr()})`);

    const tools = (await client.listTools()).tools.map((x) => x.name);
    for (const name of ["read_text_file", "write_file", "list_directory"])
      assert.ok(tools.includes(name), `${name} in ${tools.join(", ")}`);
    const read = await client.callTool({
      name: "read_text_file",
      arguments: { path: join(root, "docs", "hello.txt") },
    });
    assert.equal(text(read), "hello from the filesystem\n");
    assert.equal(typeof receiptOf(read), "string");
    const list = await client.callTool({ name: "list_directory", arguments: { path: join(root, "docs") } });
    assert.match(text(list), /hello\.txt/);
    assert.equal(typeof receiptOf(list), "string");

    const denied = await rejectsWithData(
      client.callTool({ name: "write_file", arguments: { path: join(root, "docs", "new.txt"), content: "no" } }),
      ErrorCodes.POLICY_DENIED,
      "write_file",
    );
    assert.equal(denied.code, -32001);
    assert.equal(existsSync(join(root, "docs", "new.txt")), false, "a denied call never reached the upstream");
    // Outside its root the upstream itself refuses: an ordinary tool error, still with a receipt.
    const outside = await client.callTool({ name: "read_text_file", arguments: { path: join(home, "policy.json") } });
    assert.equal(outside.isError, true);
    assert.equal(typeof receiptOf(outside), "string");
  });
});

describe("aztp mcp proxy in front of an HTTP upstream", () => {
  it("server-everything over Streamable HTTP behind the proxy: listed, called with receipts, unsigned refused", async (t) => {
    const { home, aztp: c } = fixture(t);
    const upstream = await startEverythingHttp(t);
    const { url } = await httpProxy(t, home, "http-upstream-proxy", ["--upstream-url", upstream.url]);

    const client = await securedClient(t, c, "agent");
    await connect(t, client, new StreamableHTTPClientTransport(url), "secured client");
    assert.ok((await client.listTools()).tools.some((x) => x.name === "echo"));
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => client.callTool({ name: "echo", arguments: { message: `n${i}` } })),
    );
    results.forEach((r, i) => assert.match(text(r), new RegExp(`n${i}`)));
    assert.equal(new Set(results.map(receiptOf)).size, 8);

    // Progress notifications reach the caller in order, all before the result (they travel on
    // the call's own stream, as they do without the proxy).
    const seen: number[] = [];
    const long = await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 0.4, steps: 4 } },
      undefined,
      { onprogress: (p) => seen.push(p.progress) },
    );
    assert.match(text(long), /completed/);
    assert.equal(typeof receiptOf(long), "string");
    assert.deepEqual(seen, [1, 2, 3, 4]);

    const plain = new Client({ name: "plain", version: "1.0.0" });
    await connect(t, plain, new StreamableHTTPClientTransport(url), "plain client");
    await rejectsWithData(
      plain.callTool({ name: "echo", arguments: { message: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned call",
    );
  });

  it("the proxy speaks to its HTTP upstream as a client should: the negotiated MCP-Protocol-Version on every request after initialize", async (t) => {
    const { home } = fixture(t);
    // An unmodified in-process upstream whose tool reports the header it was called with.
    const upstream = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
      const server = new McpServer({ name: "header-echo", version: "1.0.0" });
      server.registerTool(
        "protocol-version",
        { description: "the MCP-Protocol-Version header of this call" },
        async (extra) => ({
          content: [{ type: "text", text: String(extra.requestInfo?.headers["mcp-protocol-version"]) }],
        }),
      );
      await server.connect(transport);
    });
    t.after(() => upstream.close());
    const { url } = await httpProxy(t, home, "version-proxy", ["--upstream-url", upstream.url.href, "--mode", "audit"]);

    const direct = new Client({ name: "direct", version: "1.0.0" });
    const directTransport = new StreamableHTTPClientTransport(upstream.url);
    await connect(t, direct, directTransport, "direct");
    const proxied = new Client({ name: "proxied", version: "1.0.0" });
    await connect(t, proxied, new StreamableHTTPClientTransport(url), "proxied");
    const negotiated = directTransport.protocolVersion;
    assert.ok(negotiated, "the SDK client negotiated a version");
    assert.equal(text(await direct.callTool({ name: "protocol-version", arguments: {} })), negotiated);
    assert.equal(text(await proxied.callTool({ name: "protocol-version", arguments: {} })), negotiated);
  });
});

describe("aztp mcp proxy when its upstream crashes mid-call", () => {
  const crashingCommand = `"${process.execPath}" --import tsx "${join(ROOT, "test", "helpers", "mcp-crashing-upstream.ts")}"`;

  for (const listen of ["stdio", "http"] as const) {
    it(`listening on ${listen}: the call in flight fails at once with "upstream unavailable", and the proxy audits it as an error`, async (t) => {
      const { home, aztp: c } = fixture(t);
      const auditPath = join(home, `crash-${listen}.jsonl`);
      const extra = ["--upstream-command", crashingCommand, "--audit-log", auditPath];
      const client = await securedClient(t, c, "agent");
      let stop: () => Promise<void>;
      if (listen === "stdio") {
        const proxy = stdioProxy(home, "crash-proxy", extra);
        await connect(t, client, proxy.transport, `proxy (stderr: ${proxy.stderr()})`);
        stop = () => client.close();
      } else {
        const { url, child } = await httpProxy(t, home, "crash-proxy", extra);
        await connect(t, client, new StreamableHTTPClientTransport(url), "secured client");
        stop = () => child.stop();
      }
      assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "alive" } })), "alive");

      // Before: over stdio the proxy closed and the client saw only "Connection closed"; over
      // HTTP the client waited out its request timeout (60 s). The proxy audited the call only
      // as cut off (connection-closed), with no answer to show for it.
      const started = Date.now();
      await assert.rejects(
        withTimeout(client.callTool({ name: "exit", arguments: {} }), 10_000, "the call to a crashing upstream"),
        /upstream unavailable: it closed before answering/,
      );
      assert.ok(Date.now() - started < 5_000, `failed promptly (${Date.now() - started} ms)`);

      await stop();
      const entries = await withTimeout(
        (async () => {
          for (;;) {
            const all = await queryAuditLog(auditPath).catch(() => []);
            if (all.some((e) => e.tool === "exit")) return all;
            await new Promise((r) => setTimeout(r, 50));
          }
        })(),
        10_000,
        "the proxy's audit entry for the crashed call",
      );
      const crashed = entries.filter((e) => e.tool === "exit");
      // An answered error (the JSON-RPC code as reason, a signed receipt), not "connection-closed".
      assert.deepEqual(
        crashed.map((e) => [e.decision, e.outcome, e.reason, typeof e.receipt]),
        [["allow", "error", "-32603", "string"]],
      );
    });
  }
});

describe("aztp mcp proxy when its HTTP upstream dies mid-call", () => {
  const crashing = join(ROOT, "test", "helpers", "mcp-crashing-upstream.ts");

  for (const listen of ["stdio", "http"] as const) {
    it(`listening on ${listen}: the call whose event stream breaks is answered at once with "upstream unavailable", and audited`, async (t) => {
      const { home, aztp: c } = fixture(t);
      const upstream = spawnNode(t, ["--import", "tsx", crashing, "--http"], { env: getDefaultEnvironment() });
      const upstreamUrl = (await upstream.waitFor(/LISTENING (\S+)/))[1] as string;
      const auditPath = join(home, `http-crash-${listen}.jsonl`);
      const extra = ["--upstream-url", upstreamUrl, "--audit-log", auditPath];
      const client = await securedClient(t, c, "agent");
      if (listen === "stdio") {
        const proxy = stdioProxy(home, "http-crash-proxy", extra);
        await connect(t, client, proxy.transport, `proxy (stderr: ${proxy.stderr()})`);
      } else {
        const { url } = await httpProxy(t, home, "http-crash-proxy", extra);
        await connect(t, client, new StreamableHTTPClientTransport(url), "secured client");
      }
      assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "alive" } })), "alive");

      // The upstream's event stream for the call has begun (a progress event came through) when
      // it dies. Before: the SDK's client transport said nothing of a stream that ended without
      // the answer, so the proxy kept the call pending and the client waited out its timeout.
      const progress: number[] = [];
      const started = Date.now();
      await assert.rejects(
        withTimeout(
          client.callTool({ name: "exit", arguments: {} }, undefined, { onprogress: (p) => progress.push(p.progress) }),
          10_000,
          "the call to an upstream that dies",
        ),
        new RegExp(
          `upstream unavailable: the upstream at ${upstreamUrl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} closed the stream of this request before answering it`,
        ),
      );
      assert.ok(Date.now() - started < 5_000, `failed promptly (${Date.now() - started} ms)`);
      assert.deepEqual(progress, [1], "the stream had begun");
      // Nobody there any more: the next call fails at once too.
      await assert.rejects(
        withTimeout(client.callTool({ name: "echo", arguments: { text: "anyone?" } }), 10_000, "the next call"),
        /upstream unavailable/,
      );

      const entries = await withTimeout(
        (async () => {
          for (;;) {
            const all = await queryAuditLog(auditPath).catch(() => []);
            if (all.length >= 3) return all;
            await new Promise((r) => setTimeout(r, 50));
          }
        })(),
        10_000,
        "the proxy's audit entries",
      );
      // Answered errors, as a spawned upstream's crash is: the JSON-RPC code as reason, a signed receipt.
      assert.deepEqual(
        entries.map((e) => [e.tool, e.decision, e.outcome, e.reason, typeof e.receipt]),
        [
          ["echo", "allow", "ok", undefined, "string"],
          ["exit", "allow", "error", "-32603", "string"],
          ["echo", "allow", "error", "-32603", "string"],
        ],
      );
    });
  }
});

describe("aztp mcp proxy when its upstream cannot serve at start", () => {
  /** A loopback port nobody listens on (taken, then given back). */
  async function closedPort(): Promise<number> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  // [label, upstream options, what stderr must say besides ERR_MCP_UPSTREAM_FAILED]
  const cases = (missing: string, port: number): Array<[string, string[], RegExp[]]> => [
    // The README's own example, run as printed (server-filesystem is a devDependency, so npx
    // finds it in node_modules/.bin), with a folder that does not exist.
    [
      "server-filesystem on a missing folder (npx)",
      ["--upstream-command", `npx @modelcontextprotocol/server-filesystem ${missing}`],
      [
        /exited with code 1/,
        new RegExp(`Cannot access directory ${missing}`),
        /None of the specified directories are accessible/,
      ],
    ],
    [
      "sh -c 'exit 3', after printing",
      ["--upstream-command", "sh -c 'echo boom: no config >&2; exit 3'"],
      [/exited with code 3/, /boom: no config/],
    ],
    [
      "sh -c 'exit 3', silent",
      ["--upstream-command", "sh -c 'exit 3'"],
      [/exited with code 3/, /wrote nothing to stderr/],
    ],
    [
      "a command that does not exist",
      ["--upstream-command", "/nonexistent/mcp-server --flag"],
      [/cannot start the upstream \/nonexistent\/mcp-server/, /ENOENT/],
    ],
    [
      "an unreachable --upstream-url",
      ["--upstream-url", `http://127.0.0.1:${port}/mcp`],
      [new RegExp(`http://127\\.0\\.0\\.1:${port}/mcp cannot be reached`), /ECONNREFUSED/],
    ],
  ];

  for (const listen of ["stdio", "http://127.0.0.1:0"]) {
    it(`listening on ${listen}: says the upstream failed, shows what it printed, exits 1 (it exited 0 without a word)`, async (t) => {
      const { home } = fixture(t);
      const missing = join(tempDir(t, "gone"), "data");
      for (const [label, upstream, says] of cases(missing, await closedPort())) {
        const child = spawnNode(t, proxyArgs(home, "failing-proxy", ["--listen", listen, ...upstream]), {
          env: proxyEnv(home),
        });
        // stdin stays open: the client is still there when the upstream goes.
        const { code, signal } = await withTimeout(child.exit, 90_000, `${label}: proxy exit`);
        const stderr = child.stderr();
        assert.deepEqual({ code, signal }, { code: 1, signal: null }, `${label}: stderr ${stderr}`);
        assert.match(stderr, /error \[ERR_MCP_UPSTREAM_FAILED\]: /, label);
        for (const re of says) assert.match(stderr, re, `${label}: ${stderr}`);
        if (listen !== "stdio")
          assert.doesNotMatch(stderr, /listening on/, `${label}: a proxy whose upstream cannot serve does not listen`);
        if (upstream[0] === "--upstream-command" && listen === "stdio" && !/ENOENT/.test(String(says)))
          assert.match(stderr, /before it answered initialize/, label);
      }
    });
  }

  it("--json: the failure is on stdout in the usual error shape", async (t) => {
    const { home } = fixture(t);
    const child = spawnNode(
      t,
      [
        "--import",
        "tsx",
        CLI,
        "--home",
        home,
        "--json",
        "mcp",
        "proxy",
        "--name",
        "failing-proxy",
        "--upstream-command",
        "sh -c 'echo oops >&2; exit 3'",
      ],
      { env: proxyEnv(home) },
    );
    const { code } = await withTimeout(child.exit, 60_000, "proxy exit");
    assert.equal(code, 1);
    const { error } = JSON.parse(child.stdout()) as { error: { code: string; message: string } };
    assert.equal(error.code, ErrorCodes.MCP_UPSTREAM_FAILED);
    assert.match(error.message, /exited with code 3[^]*oops/);
  });

  it("listening on stdio, an upstream that exits while serving its client ends the proxy with exit 1, saying so", async (t) => {
    const { home, aztp: c } = fixture(t);
    const crashingCommand = `"${process.execPath}" --import tsx "${join(ROOT, "test", "helpers", "mcp-crashing-upstream.ts")}"`;
    // The proxy as a child whose exit status and stderr the test keeps (the proxy's own upstream transport, used here as a client's).
    const proxy = new UpstreamProcessTransport({
      command: process.execPath,
      args: proxyArgs(home, "crash-proxy", ["--upstream-command", crashingCommand]),
      env: proxyEnv(home),
      cwd: ROOT,
      forwardStderr: false,
    });
    const client = await securedClient(t, c, "agent");
    await connect(t, client, proxy, `proxy (stderr: ${proxy.stderrTail()})`);
    assert.equal(text(await client.callTool({ name: "echo", arguments: { text: "alive" } })), "alive");
    await assert.rejects(
      withTimeout(client.callTool({ name: "exit", arguments: {} }), 10_000, "the crashing call"),
      /upstream unavailable/,
    );
    const { code } = await withTimeout(proxy.ended, 20_000, "proxy exit");
    assert.equal(code, 1, proxy.stderrTail());
    assert.match(
      proxy.stderrTail(),
      /ERR_MCP_UPSTREAM_FAILED\]: the upstream MCP server \(.*\) exited with code 3 while serving its client/,
    );
  });
});
