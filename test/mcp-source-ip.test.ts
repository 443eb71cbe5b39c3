/**
 * `aztp:sourceIp` is the peer's address of the HTTP request a call came in on: set by the MCP
 * Streamable HTTP server (serveMcpHttp) and by the proxy listening on HTTP, for tools/call and
 * for tools/list filtered by policy. Over stdio and in-memory there is no address: the key is
 * absent, so a policy that conditions on it does not allow.
 *
 * The policy: echo only from `echoFrom`, late from anywhere. A refused echo never runs: the next
 * late reports run number 1.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import { secureMcpClient, secureMcpServer, serveMcpHttp, startMcpProxy } from "../src/mcp/index.js";
import type { PolicyDocument } from "../src/policy/policy.js";
import {
  fixture,
  rejectsWithData,
  securedClient,
  startHarness,
  withTimeout,
  type TransportKind,
} from "./helpers/mcp-util.js";
import { newToolServer, registerLate, toolAnswer, type RunCounter } from "./helpers/mcp-tool-server.js";

const LOOPBACK = "127.0.0.0/8";
const ELSEWHERE = "10.0.0.0/8";

function echoOnlyFrom(range: string): PolicyDocument[] {
  return [
    {
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Action: "tool:call",
          Resource: "echo",
          Condition: { IpAddress: { "aztp:sourceIp": range } },
        },
        { Effect: "Allow", Action: "tool:call", Resource: "late" },
      ],
    },
  ];
}

async function harnessClient(t: TestContext, kind: TransportKind, range: string) {
  const { home, aztp: c } = fixture(t);
  const h = await startHarness(t, kind, c, home, { name: "tools", policy: echoOnlyFrom(range), filter: true });
  const { client } = await securedClient(t, c, home, "agent");
  await h.connect(client);
  return client;
}

/** A proxy listening on HTTP in front of an unsecured in-process upstream with echo and late. */
async function proxyClient(t: TestContext, c: Aztp, range: string) {
  const counter: RunCounter = { runs: 0 };
  const upstream = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
    const server = newToolServer(counter);
    registerLate(server, counter);
    await server.connect(transport);
  });
  t.after(() => upstream.close());
  const proxy = await startMcpProxy({
    client: c,
    name: "ip-proxy",
    upstream: { url: upstream.url.href },
    listen: "http://127.0.0.1:0",
    policy: echoOnlyFrom(range),
    audit: false,
    filterToolsByPolicy: true,
  });
  t.after(() => proxy.close());
  const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
    client: c,
    name: "agent",
    audit: false,
  });
  t.after(() => client.close().catch(() => undefined));
  await withTimeout(
    client.connect(new StreamableHTTPClientTransport(proxy.url as URL)),
    20_000,
    "connect to the proxy",
  );
  return client;
}

type Connected = Awaited<ReturnType<typeof harnessClient>>;

async function allowedFromLoopback(client: Connected): Promise<void> {
  assert.deepEqual(
    (await client.listTools()).tools.map((x) => x.name).sort(),
    ["echo", "late"],
    "echo listed: its policy names this address",
  );
  assert.deepEqual(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "hi" } })), {
    tool: "echo",
    value: "hi",
    runs: 1,
  });
}

async function refused(client: Connected, what: string): Promise<void> {
  assert.deepEqual(
    (await client.listTools()).tools.map((x) => x.name),
    ["late"],
    `echo hidden: ${what}`,
  );
  await rejectsWithData(
    client.callTool({ name: "echo", arguments: { text: "hi" } }),
    ErrorCodes.POLICY_DENIED,
    `echo ${what}`,
  );
  assert.equal(
    toolAnswer(await client.callTool({ name: "late", arguments: { n: 1 } })).runs,
    1,
    "the refused echo never ran",
  );
}

describe("aztp:sourceIp", () => {
  it("over HTTP it is the peer's address: a policy on 127.0.0.0/8 allows a call from loopback, and lists the tool", async (t) => {
    await allowedFromLoopback(await harnessClient(t, "http", LOOPBACK));
  });

  it("over HTTP a policy on 10.0.0.0/8 refuses a call from loopback (ERR_POLICY_DENIED, the tool does not run), and hides the tool", async (t) => {
    await refused(await harnessClient(t, "http", ELSEWHERE), "from outside 10.0.0.0/8");
  });

  it("through the proxy listening on HTTP: allowed from 127.0.0.0/8, refused and hidden for 10.0.0.0/8", async (t) => {
    const { aztp: c } = fixture(t);
    await allowedFromLoopback(await proxyClient(t, c, LOOPBACK));
    const { aztp: c2 } = fixture(t);
    await refused(await proxyClient(t, c2, ELSEWHERE), "through the proxy, from outside 10.0.0.0/8");
  });

  for (const kind of ["memory", "stdio"] as const) {
    it(`over ${kind} there is no address: a policy on 127.0.0.0/8 does not allow (the key is absent)`, async (t) => {
      await refused(await harnessClient(t, kind, LOOPBACK), `over ${kind}, with no address`);
    });
  }

  it("is the address of the request's own transport only: a server in the same process that an HTTP tool handler calls over in-memory sees none", async (t) => {
    const { aztp: c } = fixture(t);
    const counter: RunCounter = { runs: 0 };
    // The inner server allows echo only from loopback; its caller (the outer handler) has no address.
    const inner = await secureMcpServer(newToolServer(counter), {
      client: c,
      name: "inner",
      policy: echoOnlyFrom(LOOPBACK),
      audit: false,
    });
    registerLate(inner, counter);
    const relay = await secureMcpClient(new Client({ name: "relay", version: "1.0.0" }), {
      client: c,
      name: "relay",
      audit: false,
    });
    const [a, b] = InMemoryTransport.createLinkedPair();
    await inner.connect(b);
    await relay.connect(a);
    t.after(() => relay.close().catch(() => undefined));
    // One session, so one outer server: relay allowed only from loopback, which this client is.
    const outerPolicy: PolicyDocument[] = [
      {
        Version: "2012-10-17",
        Statement: [
          {
            Effect: "Allow",
            Action: "tool:call",
            Resource: "relay",
            Condition: { IpAddress: { "aztp:sourceIp": LOOPBACK } },
          },
        ],
      },
    ];
    const outer = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
      const server = new McpServer({ name: "outer", version: "1.0.0" });
      server.registerTool("relay", { description: "calls inner's echo" }, async () => {
        const r = await relay.callTool({ name: "echo", arguments: { text: "relayed" } }).then(
          () => "allowed",
          (e: { data?: { code?: string } }) => String(e.data?.code),
        );
        return { content: [{ type: "text", text: r }] };
      });
      await (
        await secureMcpServer(server, { client: c, name: "outer", audit: false, policy: outerPolicy })
      ).connect(transport);
    });
    t.after(() => outer.close());
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
      client: c,
      name: "agent",
      audit: false,
    });
    t.after(() => client.close().catch(() => undefined));
    await withTimeout(client.connect(new StreamableHTTPClientTransport(outer.url)), 20_000, "connect to outer");
    const answer = (await client.callTool({ name: "relay", arguments: {} })) as CallToolResult;
    assert.equal(
      (answer.content[0] as { text: string }).text,
      ErrorCodes.POLICY_DENIED,
      "the outer call was allowed from loopback; the inner one, with no address, was not",
    );
    assert.equal(counter.runs, 0);
  });
});
