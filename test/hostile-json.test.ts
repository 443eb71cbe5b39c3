/**
 * Hostile JSON through the signer, the verifier, a secured MCP server and the MCP proxy:
 * lone surrogates (in strings and keys), non-finite numbers (`1e400` sent as raw JSON text over
 * HTTP, which JSON.parse turns into Infinity), 100,000-deep nesting, huge strings, duplicate
 * keys, `__proto__` members, non-JSON types. What RFC 8785 cannot represent is refused on each
 * side with ERR_JSON_UNREPRESENTABLE (never a plain Error, never a RangeError), a `__proto__`
 * member with ERR_JSON_PROTO_KEY_NOT_ALLOWED; the tool never runs on what was refused; the passing twin of
 * each case runs it.
 */
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import { after, before, describe, it, type TestContext } from "node:test";
import canonicalize from "canonicalize";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import type { Aztp } from "../src/client/aztp.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import {
  canonicalDigest,
  canonicalJson,
  MemoryReplayCache,
  signInvocation,
  signReceipt,
  verifyInvocation,
  verifyReceipt,
} from "../src/invocation/index.js";
import { MAX_JSON_DEPTH } from "../src/invocation/canonical.js";
import { secureMcpClient, secureMcpServer, startMcpProxy } from "../src/mcp/index.js";
import { INVOCATION_META_KEY } from "../src/mcp/meta.js";
import { baseClaims, newWorld, resign, type World } from "./helpers/invocation-fixtures.js";
import {
  fixture,
  httpServerOf,
  linkInMemory,
  rejectsWithData,
  startHarness,
  STDIO_SERVER,
  withTimeout,
} from "./helpers/mcp-util.js";
import { ROOT } from "./helpers/authority-util.js";
import { toolAnswer } from "./helpers/mcp-tool-server.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";

const U = ErrorCodes.JSON_UNREPRESENTABLE;
const P = ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED;

function deepArray(levels: number): unknown {
  let v: unknown = "bottom";
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}
function deepObject(levels: number): unknown {
  let v: unknown = "bottom";
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}
const cyclic = (): unknown => {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
};
class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

/** Values JCS cannot carry (or that would not be read as signed), each with its code and where the message must point. */
const HOSTILE: Array<[string, () => unknown, ErrorCode, RegExp]> = [
  ["a lone high surrogate", () => ({ q: "ab\ud800c" }), U, /args\.q holds a lone surrogate/],
  ["a lone low surrogate", () => ({ q: ["ok", "\udc00"] }), U, /args\.q\[1\] holds a lone surrogate/],
  ["a lone surrogate in a key", () => ({ ["k\ud83d"]: 1 }), U, /is a key with a lone surrogate/],
  ["NaN", () => ({ n: Number.NaN }), U, /args\.n is NaN/],
  ["Infinity (what 1e400 parses as)", () => JSON.parse('{"n":1e400}'), U, /args\.n is Infinity/],
  ["-Infinity", () => ({ n: { m: -Infinity } }), U, /args\.n\.m is -Infinity/],
  ["a BigInt", () => ({ n: 1n }), U, /is a bigint/],
  ["a symbol", () => ({ s: Symbol("x") }), U, /is a symbol/],
  ["a function", () => ({ f: () => 1 }), U, /is a function/],
  ["a Map", () => ({ m: new Map([["a", 1]]) }), U, /is a Map, not plain JSON/],
  ["a class instance", () => ({ p: new Point(1, 2) }), U, /is a Point, not plain JSON/],
  ["100,000-deep lists", () => ({ d: deepArray(100_000) }), U, /nested more than 64 levels deep/],
  ["100,000-deep objects", () => deepObject(100_000), U, /nested more than 64 levels deep/],
  [`${MAX_JSON_DEPTH + 1} levels`, () => deepArray(MAX_JSON_DEPTH + 1), U, /nested more than 64/],
  ["a cycle", cyclic, U, /nested more than 64 levels deep/],
  ["a toJSON returning Infinity", () => ({ t: { toJSON: () => Infinity } }), U, /args\.t\.toJSON\(\) is Infinity/],
  ["a toJSON returning 100,000 levels", () => ({ t: { toJSON: () => deepArray(100_000) } }), U, /nested more than 64/],
  [
    "a toJSON that throws",
    () => ({
      t: {
        toJSON: () => {
          throw new Error("nope");
        },
      },
    }),
    U,
    /has a toJSON that threw: nope/,
  ],
  [
    "a __proto__ member (as JSON.parse makes one)",
    () => JSON.parse('{"__proto__":{"admin":true},"q":"x"}'),
    P,
    /__proto__ member/,
  ],
  [
    "a nested __proto__ member",
    () => JSON.parse('{"q":{"r":[{"__proto__":{}}]}}'),
    P,
    /args\.q\.r\[0\]\.__proto__ is a __proto__ member/,
  ],
];

/** Values right at the edge that JCS carries: each must verify. */
const TWINS: Array<[string, () => unknown]> = [
  ["a surrogate pair (an emoji)", () => ({ q: "\ud83d\ude00", ["\ud83d\ude00"]: 1 })],
  [`${MAX_JSON_DEPTH} levels`, () => deepArray(MAX_JSON_DEPTH)],
  ["a Date (toJSON)", () => ({ at: new Date(0) })],
  ["-0, 1e308, 5e-324", () => ({ a: -0, b: 1e308, c: 5e-324 })],
  ["a member called toJSON that is not a function", () => JSON.parse('{"toJSON":"x"}')],
  ["an object literal's __proto__ (sets the prototype, is no member)", () => ({ __proto__: null, q: 1 })],
  ["undefined members and slots (as JSON drops and nulls them)", () => ({ a: undefined, b: [undefined, 1] })],
];

let w: World;
before(async () => {
  w = await newWorld();
});
after(() => w.close());

const TOOL = "search";

function expectCode(fn: () => unknown, code: ErrorCode, message: RegExp | undefined, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AztpError, `${what}: an AztpError, not ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    if (message) assert.match(e.message, message, what);
    return true;
  });
}

async function expectCodeAsync(p: Promise<unknown>, code: ErrorCode, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AztpError, `${what}: an AztpError, not ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

/** A token over `args` as a signer that skips our checks would make it (digest by the canonicalize package alone). */
function rawToken(args: unknown, tool = TOOL, audience = w.serverA): string {
  const claims = {
    ...baseClaims(w.caller, audience, tool, {}),
    args_sha256: hash("sha256", canonicalize(args) as string, "base64url"),
  };
  return resign(w.caller.signer, claims);
}

describe("hostile JSON through the signer and the verifier", () => {
  for (const [name, make, code, message] of HOSTILE) {
    it(`${name}: ${code} from canonicalJson, signInvocation, verifyInvocation, signReceipt and verifyReceipt`, async () => {
      expectCode(() => canonicalJson(make(), "args"), code, message, "canonicalJson");
      expectCode(() => canonicalDigest(make(), "args"), code, message, "canonicalDigest");
      expectCode(
        () => signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: make() }),
        code,
        message,
        "signInvocation",
      );
      // The verifier gets the hostile arguments with a token signed for others: the canonical
      // code, not ERR_INVOCATION_ARGS_MISMATCH (they could never have been signed).
      const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: { q: "x" } });
      await expectCodeAsync(
        verifyInvocation(token, {
          audience: w.serverA.spiffeId,
          tool: TOOL,
          args: make(),
          trust: w.trust,
          replay: new MemoryReplayCache(),
        }),
        code,
        "verifyInvocation",
      );
      expectCode(
        () =>
          signReceipt(w.serverA, {
            caller: w.caller.spiffeId,
            tool: TOOL,
            invocationToken: token,
            result: make(),
            status: "ok",
          }),
        code,
        undefined,
        "signReceipt",
      );
      const receipt = signReceipt(w.serverA, {
        caller: w.caller.spiffeId,
        tool: TOOL,
        invocationToken: token,
        result: { ok: 1 },
        status: "ok",
      });
      expectCode(
        () =>
          verifyReceipt(receipt, {
            invocationToken: token,
            result: make(),
            callee: w.serverA.spiffeId,
            caller: w.caller.spiffeId,
            trust: w.trust,
            isError: false,
          }),
        code,
        undefined,
        "verifyReceipt",
      );
    });
  }

  for (const [name, make] of TWINS) {
    it(`twin: ${name} signs and verifies`, async () => {
      const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: make() });
      const v = await verifyInvocation(token, {
        audience: w.serverA.spiffeId,
        tool: TOOL,
        args: make(),
        trust: w.trust,
        replay: new MemoryReplayCache(),
      });
      assert.equal(v.claims.tool, TOOL);
    });
  }

  it("a __proto__ member signed by a signer that skips our checks is still refused by the verifier (the SDK would hand the tool the arguments without it)", async () => {
    const args = JSON.parse('{"__proto__":{"path":"/etc/shadow"},"path":"/tmp/x"}');
    await expectCodeAsync(
      verifyInvocation(rawToken(args), {
        audience: w.serverA.spiffeId,
        tool: TOOL,
        args,
        trust: w.trust,
        replay: new MemoryReplayCache(),
      }),
      P,
      "hand-signed __proto__",
    );
  });

  it("duplicate keys: JSON.parse keeps the last, for the verifier and the SDK alike, so a token for the first is refused and one for the last verifies", async () => {
    const args = JSON.parse('{"q":"first","q":"last"}');
    const replay = new MemoryReplayCache();
    const forFirst = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: { q: "first" } });
    await expectCodeAsync(
      verifyInvocation(forFirst, { audience: w.serverA.spiffeId, tool: TOOL, args, trust: w.trust, replay }),
      ErrorCodes.INVOCATION_ARGS_MISMATCH,
      "token for the first",
    );
    const forLast = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: { q: "last" } });
    await verifyInvocation(forLast, { audience: w.serverA.spiffeId, tool: TOOL, args, trust: w.trust, replay });
  });

  it("a 10 MB string signs and verifies, in time linear in its size (measured)", async () => {
    const big = { blob: "x".repeat(10 * 1024 * 1024) };
    const t0 = performance.now();
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: big });
    const t1 = performance.now();
    await verifyInvocation(token, {
      audience: w.serverA.spiffeId,
      tool: TOOL,
      args: big,
      trust: w.trust,
      replay: new MemoryReplayCache(),
    });
    const t2 = performance.now();
    process.stdout.write(`# 10 MB string: sign ${(t1 - t0).toFixed(1)} ms, verify ${(t2 - t1).toFixed(1)} ms\n`);
    // And one lone surrogate at its very end is still found.
    expectCode(
      () => canonicalDigest({ blob: `${big.blob}\ud800` }, "args"),
      U,
      /args\.blob holds a lone surrogate/,
      "10 MB with a lone surrogate at the end",
    );
  });
});

/**
 * Secured McpServers (one identity, a tool `take` counting its runs across all of them), each
 * connected over memory to the client given: a plain SDK Client, or a secured one.
 */
async function memoryServers(t: TestContext, c: Aztp) {
  const runs = { n: 0 };
  const { identity } = await c.secureConnect({}, "hostile-server");
  const trust = await c.trust();
  const connect = async (client: Client): Promise<void> => {
    const server = new McpServer({ name: "hostile", version: "1.0.0" });
    server.registerTool("take", { inputSchema: { v: z.unknown().optional(), q: z.string().optional() } }, async () => {
      runs.n++;
      return { content: [{ type: "text", text: "taken" }] };
    });
    const secured = await secureMcpServer(server, { identity, trust });
    await linkInMemory(t, secured, client);
  };
  return { serverId: identity.spiffeId, runs, connect };
}

describe("hostile JSON through a secured MCP server and client (in-memory)", () => {
  for (const [name, make, code] of HOSTILE) {
    it(`${name}: the server refuses it with ${code} and the tool never runs; a secured client refuses to sign it`, async (t) => {
      const { aztp: c } = fixture(t);
      const s = await memoryServers(t, c);
      const plain = new Client({ name: "raw", version: "1.0.0" });
      await s.connect(plain);
      const caller = (await c.secureConnect({}, "raw-caller")).identity;
      const token = signInvocation(caller, { audience: s.serverId, tool: "take", args: { v: 1 } });
      await rejectsWithData(
        plain.callTool({
          name: "take",
          arguments: make() as Record<string, unknown>,
          _meta: { [INVOCATION_META_KEY]: token },
        }),
        code,
        `${name} at the server`,
      );
      assert.equal(s.runs.n, 0, "the tool never ran");

      // The same arguments from a secured client: refused before anything is sent.
      const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
        client: c,
        name: "agent",
      });
      await s.connect(client);
      await expectCodeAsync(
        withTimeout(
          client.callTool({ name: "take", arguments: make() as Record<string, unknown> }),
          10_000,
          "secured call",
        ),
        code,
        `${name} at the signer`,
      );
      assert.equal(s.runs.n, 0);
      await client.callTool({ name: "take", arguments: { v: 1 } });
      assert.equal(s.runs.n, 1, "twin: an honest call runs the tool");
    });
  }

  it("arguments null (or a list) are digested as sent, never as {}: a token for {} is refused for them (ERR_INVOCATION_ARGS_MISMATCH); absent arguments are {}", async (t) => {
    const { aztp: c } = fixture(t);
    const s = await memoryServers(t, c);
    const plain = new Client({ name: "raw", version: "1.0.0" });
    await s.connect(plain);
    const caller = (await c.secureConnect({}, "raw-caller")).identity;
    const forEmpty = () => signInvocation(caller, { audience: s.serverId, tool: "take", args: {} });
    for (const args of [null, []]) {
      await rejectsWithData(
        plain.callTool({
          name: "take",
          arguments: args as unknown as Record<string, unknown>,
          _meta: { [INVOCATION_META_KEY]: forEmpty() },
        }),
        ErrorCodes.INVOCATION_ARGS_MISMATCH,
        JSON.stringify(args),
      );
    }
    assert.equal(s.runs.n, 0);
    await plain.callTool({ name: "take", arguments: {}, _meta: { [INVOCATION_META_KEY]: forEmpty() } });
    assert.equal(s.runs.n, 1, "twin: {} for {}");
  });

  it("a 10 MB string argument goes through signed, verified and run, once", async (t) => {
    const { aztp: c } = fixture(t);
    const s = await memoryServers(t, c);
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), { client: c, name: "agent" });
    await s.connect(client);
    const started = performance.now();
    await client.callTool({ name: "take", arguments: { v: "y".repeat(10 * 1024 * 1024) } });
    process.stdout.write(
      `# 10 MB argument, in-memory secured round trip: ${(performance.now() - started).toFixed(0)} ms\n`,
    );
    assert.equal(s.runs.n, 1);
  });
});

/** One raw MCP session over HTTP: every body is sent as the JSON text given, not re-encoded. */
async function rawHttpSession(url: URL) {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
  };
  const post = async (text: string): Promise<{ status: number; messages: Array<Record<string, unknown>> }> => {
    const res = await fetch(url, { method: "POST", headers, body: text, signal: AbortSignal.timeout(20_000) });
    const sid = res.headers.get("mcp-session-id");
    if (sid) headers["mcp-session-id"] = sid;
    const body = await res.text();
    const type = res.headers.get("content-type") ?? "";
    const messages = type.includes("text/event-stream")
      ? body
          .split("\n")
          .filter((l) => l.startsWith("data: "))
          .map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>)
      : body.trim()
        ? [JSON.parse(body) as Record<string, unknown>]
        : [];
    return { status: res.status, messages };
  };
  const init = await post(
    JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw-http", version: "1" } },
    }),
  );
  assert.equal(init.status, 200, JSON.stringify(init.messages));
  headers["mcp-protocol-version"] = "2025-06-18";
  await post(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
  let id = 1;
  return {
    /** A tools/call whose `arguments` are the raw JSON text given; resolves with its answer. */
    async call(tool: string, argumentsText: string, token: string): Promise<Record<string, unknown>> {
      const n = id++;
      const text = `{"jsonrpc":"2.0","id":${n},"method":"tools/call","params":{"name":${JSON.stringify(tool)},"arguments":${argumentsText},"_meta":{${JSON.stringify(INVOCATION_META_KEY)}:${JSON.stringify(token)}}}}`;
      const r = await post(text);
      const answer = r.messages.find((m) => m.id === n);
      assert.ok(answer, `an answer to ${n} (HTTP ${r.status}): ${JSON.stringify(r.messages).slice(0, 300)}`);
      return answer;
    },
  };
}

const codeOf = (answer: Record<string, unknown>): unknown =>
  (answer.error as { data?: { code?: unknown } } | undefined)?.data?.code;

/** Raw JSON texts for `late` (n: number) and `echo` (text: string), each with the arguments a token is signed over. */
const RAW: Array<[string, string, string, unknown, ErrorCode | "ok"]> = [
  ["1e400 (JSON.parse makes it Infinity)", "late", '{"n":1e400}', { n: 1 }, U],
  ["-1e400", "late", '{"n":-1e400}', { n: 1 }, U],
  ["twin: 1e2 is 100 (JCS)", "late", '{"n":1e2}', { n: 100 }, "ok"],
  ["a lone surrogate escape", "echo", '{"text":"\\ud800"}', { text: "x" }, U],
  ["twin: an escaped surrogate pair", "echo", '{"text":"\\ud83d\\ude00"}', { text: "\ud83d\ude00" }, "ok"],
  [
    "100,000-deep nesting",
    "echo",
    `{"text":"x","deep":${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
    { text: "x" },
    U,
  ],
  [
    "duplicate keys, the token for the first",
    "echo",
    '{"text":"signed","text":"evil"}',
    { text: "signed" },
    ErrorCodes.INVOCATION_ARGS_MISMATCH,
  ],
  [
    "twin: duplicate keys, the token for the last (what the tool gets)",
    "echo",
    '{"text":"signed","text":"evil"}',
    { text: "evil" },
    "ok",
  ],
  ["a __proto__ member", "echo", '{"__proto__":{"text":"evil"},"text":"ok"}', { text: "ok" }, P],
];

describe("hostile JSON as raw text over Streamable HTTP on 127.0.0.1", () => {
  it("to a secured server: each refused with its code and never run, each twin run once", async (t) => {
    const { home, aztp: c } = fixture(t);
    const h = await startHarness(t, "http", c, home, { name: "tools" });
    const session = await rawHttpSession(httpServerOf(h).url);
    const caller = (await c.secureConnect({}, "raw-caller")).identity;
    const serverId = SpiffeId.parse("aztp://aztp.local/workload/production/node/tools").toString();
    let runs = 0;
    for (const [name, tool, text, signed, expected] of RAW) {
      const answer = await session.call(tool, text, signInvocation(caller, { audience: serverId, tool, args: signed }));
      if (expected === "ok") {
        runs++;
        assert.equal(toolAnswer(answer.result).runs, runs, `${name}: ran`);
      } else {
        assert.equal(codeOf(answer), expected, `${name}: ${JSON.stringify(answer).slice(0, 300)}`);
      }
    }
    // The tool never ran for a refused call: the next honest call is run number runs + 1.
    const last = await session.call(
      "echo",
      '{"text":"last"}',
      signInvocation(caller, { audience: serverId, tool: "echo", args: { text: "last" } }),
    );
    assert.equal(toolAnswer(last.result).runs, runs + 1);
  });

  it("to the MCP proxy: each refused with its code before the upstream, each twin forwarded once", async (t) => {
    const { home, aztp: c } = fixture(t);
    const proxy = await startMcpProxy({
      client: c,
      name: "hostile-proxy",
      upstream: {
        command: process.execPath,
        args: ["--import", "tsx", STDIO_SERVER, "--home", home, "--name", "upstream", "--unsecured"],
        cwd: ROOT,
      },
      listen: "http://127.0.0.1:0",
    });
    t.after(() => proxy.close());
    const session = await withTimeout(rawHttpSession(proxy.url as URL), 30_000, "proxy session");
    const caller = (await c.secureConnect({}, "raw-caller")).identity;
    let runs = 0;
    for (const [name, tool, text, signed, expected] of RAW) {
      const answer = await session.call(
        tool,
        text,
        signInvocation(caller, { audience: proxy.identity.spiffeId, tool, args: signed }),
      );
      if (expected === "ok") {
        runs++;
        assert.equal(toolAnswer(answer.result).runs, runs, `${name}: forwarded and run`);
      } else {
        assert.equal(codeOf(answer), expected, `${name}: ${JSON.stringify(answer).slice(0, 300)}`);
      }
    }
    const last = await session.call(
      "echo",
      '{"text":"last"}',
      signInvocation(caller, { audience: proxy.identity.spiffeId, tool: "echo", args: { text: "last" } }),
    );
    assert.equal(toolAnswer(last.result).runs, runs + 1, "the upstream ran only the admitted calls");
  });

  it("a 10 MB string is over the listener's 4 MiB body limit: refused (HTTP 413) before any verification, the tool never runs", async (t) => {
    const { home, aztp: c } = fixture(t);
    const h = await startHarness(t, "http", c, home, { name: "tools" });
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), { client: c, name: "agent" });
    t.after(() => client.close().catch(() => undefined));
    await h.connect(client);
    const failed = await withTimeout(
      client.callTool({ name: "echo", arguments: { text: "z".repeat(10 * 1024 * 1024) } }),
      20_000,
      "10 MB call",
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(failed instanceof Error, `an error: ${String(failed)}`);
    assert.match(String((failed as Error).message), /413|over 4194304 bytes/);
    assert.equal(
      toolAnswer(await client.callTool({ name: "echo", arguments: { text: "small" } })).runs,
      1,
      "the big call never ran the tool",
    );
  });
});
