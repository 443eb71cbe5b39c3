/**
 * One trace per call (DESIGN §14): W3C trace context (invocation/trace-context.ts) parsed and
 * checked as the spec reads it, the callee's rule for the signed trace against the unsigned
 * `traceparent` in `_meta`, and one call's entries on every side sharing one trace, over real
 * transports: a secured client and server (in-memory and Streamable HTTP), the proxy, the bridge,
 * a LangChain agent's run; the OpenTelemetry export joining an entry to its call's trace; and
 * `--trace-id` finding a call in every log.
 */
import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import {
  context,
  ROOT_CONTEXT,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanContext,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import { AIMessage, fakeModel } from "langchain";
import { z } from "zod";
import type { AuditEntry } from "../src/audit/entry.js";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { currentTrace, withTrace } from "../src/guard/trace-scope.js";
import {
  calleeSpan,
  carriedTrace,
  formatTraceparent,
  parseTraceparent,
  startSpan,
} from "../src/invocation/trace-context.js";
import { createSecureAgent } from "../src/langchain/index.js";
import { secureMcpClient, secureMcpServer, serveMcpHttp, startMcpBridge, startMcpProxy } from "../src/mcp/index.js";
import { aztpIdOf, adder, auditOf } from "./helpers/langchain-util.js";
import { securedHttpServer } from "./helpers/mcp-bridge-util.js";
import {
  fixture,
  idOf,
  linkInMemory,
  onWire,
  securedClient,
  startHarness,
  tap,
  withTimeout,
} from "./helpers/mcp-util.js";
import { aztpCli, assertExit, CLI, rejectsWithCode, runTs } from "./helpers/authority-util.js";

const T = "4bf92f3577b34da6a3ce929d0e0e4736";
const P = "00f067aa0ba902b7";
const OTHER_T = "0af7651916cd43dd8448eb211c80319c";
const OTHER_P = "b7ad6b7169203331";
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** Malformed traceparents, each with the rule it breaks. */
const MALFORMED: ReadonlyArray<{ name: string; value: unknown; rule: string }> = [
  { name: "not a string", value: 42, rule: "format" },
  { name: "empty", value: "", rule: "format" },
  { name: "version 00 with a field too many", value: `00-${T}-${P}-01-extra`, rule: "format" },
  { name: "flags of one digit", value: `00-${T}-${P}-1`, rule: "format" },
  { name: "upper-case trace-id", value: `00-${T.toUpperCase()}-${P}-01`, rule: "format" },
  { name: "upper-case version", value: `0A-${T}-${P}-01`, rule: "format" },
  { name: "trace-id of 31 digits", value: `00-${T.slice(1)}-${P}-01`, rule: "format" },
  { name: "underscores for dashes", value: `00_${T}_${P}_01`, rule: "format" },
  { name: "a leading space", value: ` 00-${T}-${P}-01`, rule: "format" },
  { name: "a later version whose fields run on", value: `cc-${T}-${P}-01extra`, rule: "format" },
  { name: "version ff", value: `ff-${T}-${P}-01`, rule: "version" },
  { name: "all-zero trace-id", value: `00-${"0".repeat(32)}-${P}-01`, rule: "trace-id" },
  { name: "all-zero parent-id", value: `00-${T}-${"0".repeat(16)}-01`, rule: "parent-id" },
];

describe("W3C traceparent", () => {
  const valid: ReadonlyArray<{ name: string; value: string; flags: number }> = [
    { name: "version 00, sampled", value: `00-${T}-${P}-01`, flags: 1 },
    { name: "version 00, not sampled", value: `00-${T}-${P}-00`, flags: 0 },
    { name: "unknown flags are not kept", value: `00-${T}-${P}-fe`, flags: 0 },
    { name: "a later version, 55 characters", value: `01-${T}-${P}-01`, flags: 1 },
    { name: "a later version with more fields", value: `cc-${T}-${P}-01-what-the-future-holds`, flags: 1 },
  ];
  for (const c of valid)
    it(`accepted: ${c.name}`, () => {
      assert.deepEqual(parseTraceparent(c.value), { traceId: T, parentId: P, flags: c.flags });
    });
  for (const c of MALFORMED)
    it(`refused: ${c.name} (rule ${c.rule})`, () => {
      assert.throws(
        () => parseTraceparent(c.value),
        (e: unknown) =>
          (e as { code?: string }).code === ErrorCodes.TRACE_CONTEXT_INVALID &&
          (e as { rule?: string }).rule === c.rule,
      );
      // Never thrown where a call carries it: refused, and said.
      const carried = carriedTrace(c.value, undefined);
      assert.equal(carried.context, undefined);
      assert.match(
        carried.note ?? "",
        new RegExp(`traceparent refused \\(ERR_TRACE_CONTEXT_INVALID, rule ${c.rule}\\)`),
      );
    });

  it("formats version 00 with the sampled bit alone, and reads back what it wrote", () => {
    assert.equal(formatTraceparent({ traceId: T, spanId: P, flags: 1 }), `00-${T}-${P}-01`);
    assert.equal(formatTraceparent({ traceId: T, spanId: P, flags: 0xfe }), `00-${T}-${P}-00`);
    for (let i = 0; i < 50; i++) {
      const span = startSpan();
      assert.match(span.traceId, HEX32);
      assert.match(span.spanId, HEX16);
      const back = parseTraceparent(formatTraceparent(span));
      assert.deepEqual([back.traceId, back.parentId], [span.traceId, span.spanId]);
    }
  });

  it("a tracestate is passed on only when well formed; a malformed one is dropped, never the traceparent", () => {
    const tp = `00-${T}-${P}-01`;
    assert.equal(
      carriedTrace(tp, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").context?.tracestate,
      "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    );
    assert.equal(carriedTrace(tp, " a=1 ,\tb@vendor=2 ").context?.tracestate, "a=1,b@vendor=2");
    const bad: ReadonlyArray<[string, unknown]> = [
      ["an upper-case key", "Rojo=1"],
      ["no value", "rojo"],
      ["a key twice", "a=1,a=2"],
      ["33 members", Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(",")],
      ["over 512 characters", `a=${"x".repeat(250)},b=${"y".repeat(250)},c=${"z".repeat(20)}`],
      ["not a string", ["a=1"]],
    ];
    for (const [what, state] of bad) {
      const carried = carriedTrace(tp, state);
      assert.equal(carried.context?.traceId, T, `${what}: the traceparent stands`);
      assert.equal(carried.context?.tracestate, undefined, `${what}: the tracestate is dropped`);
      assert.match(carried.note ?? "", /tracestate not passed on/, what);
    }
  });
});

describe("the callee's span: the signed trace, never overruled by the unsigned copy", () => {
  const cases: ReadonlyArray<{
    name: string;
    signed?: { trace?: unknown; span?: unknown };
    traceparent?: unknown;
    trace: string | "new";
    parent?: string;
    note?: RegExp;
  }> = [
    { name: "both agree", signed: { trace: T, span: P }, traceparent: `00-${T}-${P}-01`, trace: T, parent: P },
    { name: "signed, nothing carried", signed: { trace: T, span: P }, trace: T, parent: P },
    {
      name: "carried moved to another trace",
      signed: { trace: T, span: P },
      traceparent: `00-${OTHER_T}-${OTHER_P}-01`,
      trace: T,
      parent: P,
      note: /disagrees with the signed trace .* the signed one is recorded/,
    },
    {
      name: "carried names another parent in the same trace",
      signed: { trace: T, span: P },
      traceparent: `00-${T}-${OTHER_P}-01`,
      trace: T,
      parent: P,
      note: /disagrees/,
    },
    {
      name: "carried malformed",
      signed: { trace: T, span: P },
      traceparent: `00-${T}-${P}`,
      trace: T,
      parent: P,
      note: /traceparent refused/,
    },
    {
      name: "a signed trace without a span takes the carried parent",
      signed: { trace: T },
      traceparent: `00-${T}-${OTHER_P}-01`,
      trace: T,
      parent: OTHER_P,
    },
    {
      name: "nothing signed: the carried context",
      traceparent: `00-${OTHER_T}-${OTHER_P}-01`,
      trace: OTHER_T,
      parent: OTHER_P,
    },
    {
      name: "a claimed trace that is no W3C one counts as none",
      signed: { trace: "trace-1", span: P },
      traceparent: `00-${OTHER_T}-${OTHER_P}-01`,
      trace: OTHER_T,
      parent: OTHER_P,
    },
    {
      name: "nothing signed, malformed carried: a new trace",
      traceparent: "garbage",
      trace: "new",
      note: /refused.*a new trace was started/,
    },
    { name: "nothing at all: a new trace, nothing to say", trace: "new" },
  ];
  for (const c of cases)
    it(c.name, () => {
      const span = calleeSpan(c.signed, c.traceparent === undefined ? {} : { traceparent: c.traceparent });
      if (c.trace === "new") {
        assert.match(span.traceId, HEX32);
        assert.notEqual(span.traceId, T);
        assert.equal(span.parentSpanId, undefined);
      } else {
        assert.equal(span.traceId, c.trace);
        assert.equal(span.parentSpanId, c.parent);
      }
      assert.match(span.spanId, HEX16);
      assert.notEqual(span.spanId, c.parent, "a span of its own");
      if (c.note === undefined) assert.equal(span.note, undefined);
      else assert.match(span.note ?? "", c.note);
    });
});

describe("the trace scope", () => {
  it("withTrace takes a traceparent, a context or an origin, and refuses a malformed one", async () => {
    assert.equal(currentTrace(), undefined);
    await withTrace(`00-${T}-${P}-01`, async () => {
      await new Promise((r) => setTimeout(r, 1));
      assert.deepEqual(currentTrace()?.context, { traceId: T, parentId: P, flags: 1 });
    });
    withTrace({ traceId: T, flags: 1 }, () => assert.equal(currentTrace()?.context?.traceId, T));
    withTrace({ note: "said" }, () => assert.equal(currentTrace()?.note, "said"));
    assert.throws(() => withTrace("00-zz", () => undefined), { code: ErrorCodes.TRACE_CONTEXT_INVALID });
    assert.throws(() => withTrace({ traceId: T, parentId: "x", flags: 1 }, () => undefined), {
      code: ErrorCodes.TRACE_CONTEXT_INVALID,
    });
    assert.equal(currentTrace(), undefined);
  });
});

/** The tools/call requests a tap saw, with their _meta. */
function callsOnWire(wire: ReturnType<typeof tap>): Array<Record<string, unknown>> {
  return wire.sent
    .filter((m) => (m as { method?: string }).method === "tools/call")
    .map(
      (m) => ((m as { params?: { _meta?: Record<string, unknown> } }).params?._meta ?? {}) as Record<string, unknown>,
    );
}

/** Asserts `caller` and `callee` are one call's two sides: one trace, two spans, the callee under the caller. */
function assertOneCall(caller: AuditEntry, callee: AuditEntry): void {
  assert.match(caller.traceId ?? "", HEX32, "the caller's entry has a W3C trace ID");
  assert.match(caller.spanId ?? "", HEX16, "the caller's entry has a span");
  assert.match(callee.spanId ?? "", HEX16, "the callee's entry has a span");
  assert.equal(callee.traceId, caller.traceId, "one trace on both sides");
  assert.notEqual(callee.spanId, caller.spanId, "a span per side");
  assert.equal(callee.parentSpanId, caller.spanId, "the callee's span continues the caller's");
  assert.equal(callee.jti, caller.jti, "the same call");
}

for (const kind of ["memory", "http"] as const) {
  describe(`one trace per call, secured client and server over ${kind === "memory" ? "an in-memory transport" : "Streamable HTTP"}`, () => {
    async function scene(t: TestContext, options: { mode?: "enforce" | "audit" } = {}) {
      const { home, aztp: c } = fixture(t);
      const serverAudit = join(home, "server-audit.jsonl");
      const h = await startHarness(t, kind, c, home, { name: "tools", audit: serverAudit, ...options });
      return { home, c, h };
    }

    it("caller and callee entries share the trace, each side has its own span, the callee's parent is the caller's; the wire carries it", async (t) => {
      const { home, c, h } = await scene(t);
      const { client, audit } = await securedClient(t, c, home, "agent");
      const wire = tap();
      await h.connect(client, wire.wrap);
      await client.callTool({ name: "echo", arguments: { text: "one" } });
      await client.callTool({ name: "echo", arguments: { text: "two" } });
      const mine = await audit();
      const theirs = await h.serverAudit(2);
      assert.equal(mine.length, 2);
      for (let i = 0; i < 2; i++) {
        assertOneCall(mine[i]!, theirs[i]!);
        assert.equal(mine[i]!.parentSpanId, undefined, "a call made outside any trace starts one");
        assert.equal(mine[i]!.traceNote, undefined);
        assert.equal(theirs[i]!.traceNote, undefined);
        assert.equal(callsOnWire(wire)[i]!.traceparent, `00-${mine[i]!.traceId}-${mine[i]!.spanId}-01`);
      }
      assert.notEqual(mine[0]!.traceId, mine[1]!.traceId, "two calls outside any trace: two traces");
    });

    it("a traceparent the application puts in _meta is continued: its trace, its span as the caller's parent, its tracestate passed on", async (t) => {
      const { home, c, h } = await scene(t);
      const { client, audit } = await securedClient(t, c, home, "agent");
      const wire = tap();
      await h.connect(client, wire.wrap);
      await client.callTool({
        name: "echo",
        arguments: { text: "traced" },
        _meta: { traceparent: `00-${T}-${P}-01`, tracestate: "vendor=opaque" },
      });
      const [mine] = await audit();
      const [theirs] = await h.serverAudit(1);
      assert.equal(mine!.traceId, T);
      assert.equal(mine!.parentSpanId, P, "the application's span is the caller's parent");
      assertOneCall(mine!, theirs!);
      const sent = callsOnWire(wire)[0]!;
      assert.equal(sent.traceparent, `00-${T}-${mine!.spanId}-01`, "the caller's own span goes on the wire");
      assert.equal(sent.tracestate, "vendor=opaque");
    });

    it("a traceparent moved to another trace on the wire is overruled by the signed one and noted; left alone, nothing is noted", async (t) => {
      const { home, c, h } = await scene(t);
      const forged = `00-${OTHER_T}-${OTHER_P}-01`;
      const retrace = onWire({
        outgoing: (m) => {
          const r = m as { method?: string; params?: { _meta?: Record<string, unknown> } };
          if (r.method !== "tools/call" || r.params?._meta === undefined) return m;
          return {
            ...r,
            params: { ...r.params, _meta: { ...r.params._meta, traceparent: forged } },
          } as unknown as JSONRPCMessage;
        },
      });
      const attacked = await securedClient(t, c, home, "attacked");
      await h.connect(attacked.client, retrace);
      const r = await attacked.client.callTool({ name: "echo", arguments: { text: "moved" } });
      assert.equal(r.isError, undefined, "the call still runs: a trace is no credential");
      const honest = await securedClient(t, c, home, "honest");
      await h.connect(honest.client);
      await honest.client.callTool({ name: "echo", arguments: { text: "left alone" } });

      const [mine] = await attacked.audit();
      const [twin] = await honest.audit();
      const theirs = await h.serverAudit(2);
      const byJti = (jti: string | undefined) => theirs.find((e) => e.jti === jti)!;
      const tampered = byJti(mine!.jti);
      assertOneCall(mine!, tampered);
      assert.notEqual(tampered.traceId, OTHER_T, "the unsigned trace is not recorded");
      assert.match(
        tampered.traceNote ?? "",
        new RegExp(
          `traceparent carried, "${forged}", disagrees with the signed trace ${mine!.traceId} and span ${mine!.spanId}: the signed one is recorded`,
        ),
      );
      const untouched = byJti(twin!.jti);
      assertOneCall(twin!, untouched);
      assert.equal(untouched.traceNote, undefined, "the passing twin: nothing to note");
    });

    it("a malformed traceparent from the application never breaks the call: a new trace, noted in the caller's entry", async (t) => {
      const { home, c, h } = await scene(t);
      const { client, audit } = await securedClient(t, c, home, "agent");
      await h.connect(client);
      for (const bad of MALFORMED) {
        const r = await client.callTool({
          name: "echo",
          arguments: { text: bad.name },
          _meta: { traceparent: bad.value },
        });
        assert.equal(r.isError, undefined, `${bad.name}: the call ran`);
      }
      const mine = await audit();
      const theirs = await h.serverAudit(MALFORMED.length);
      assert.equal(mine.length, MALFORMED.length);
      const traces = new Set<string>();
      mine.forEach((e, i) => {
        const bad = MALFORMED[i]!;
        assert.equal(e.outcome, "ok", bad.name);
        assert.match(e.traceNote ?? "", new RegExp(`rule ${bad.rule}\\).*a new trace was started`), bad.name);
        assert.equal(e.parentSpanId, undefined, `${bad.name}: no parent`);
        const other = theirs.find((x) => x.jti === e.jti)!;
        assertOneCall(e, other);
        assert.equal(
          other.traceNote,
          undefined,
          `${bad.name}: the callee got the caller's own, well-formed traceparent`,
        );
        traces.add(e.traceId!);
      });
      assert.equal(traces.size, MALFORMED.length, "each a new trace");
    });

    it("an unsigned caller's traceparent is all the callee has: taken when well formed, a new trace noted when not (audit mode runs both)", async (t) => {
      const { h } = await scene(t, { mode: "audit" });
      const plain = new Client({ name: "plain", version: "1.0.0" });
      t.after(() => plain.close().catch(() => undefined));
      await h.connect(plain);
      await plain.callTool({ name: "echo", arguments: { text: "a" }, _meta: { traceparent: `00-${T}-${P}-01` } });
      const r = await plain.callTool({
        name: "echo",
        arguments: { text: "b" },
        _meta: { traceparent: `00-${T}-${P}` },
      });
      assert.equal(r.isError, undefined);
      const [taken, renewed] = await h.serverAudit(2);
      assert.deepEqual([taken!.traceId, taken!.parentSpanId, taken!.callerVerified], [T, P, false]);
      assert.match(renewed!.traceId ?? "", HEX32);
      assert.notEqual(renewed!.traceId, T);
      assert.match(renewed!.traceNote ?? "", /traceparent refused .*rule format.*a new trace was started/);
    });
  });
}

describe("a server whose tool calls another server", () => {
  it("front's handler calls back's tool with a secured client: three entries on one trace, each under the span it was made in", async (t) => {
    const { home, aztp: c } = fixture(t);
    const logs = new Map<string, string>();
    const open = async (name: string): Promise<AuditLog> => {
      const path = join(home, `${name}.jsonl`);
      logs.set(name, path);
      const log = await AuditLog.open(path, { batchWindowMs: 0 });
      t.after(() => log.close());
      return log;
    };
    const back = await secureMcpServer(new McpServer({ name: "back", version: "1.0.0" }), {
      client: c,
      name: "back",
      audit: await open("back"),
    });
    back.registerTool("leaf", { description: "leaf", inputSchema: {} }, async () => ({
      content: [{ type: "text", text: "leaf" }],
    }));
    // front's handler calls back through a secured client of its own identity.
    const onward = await secureMcpClient(new Client({ name: "front-client", version: "1.0.0" }), {
      client: c,
      name: "front-client",
      audit: await open("front-client"),
    });
    await linkInMemory(t, back, onward);
    const front = await secureMcpServer(new McpServer({ name: "front", version: "1.0.0" }), {
      client: c,
      name: "front",
      audit: await open("front"),
    });
    front.registerTool("relay", { description: "relay", inputSchema: {} }, async () => {
      const r = await onward.callTool({ name: "leaf", arguments: {} });
      return { content: [{ type: "text", text: `relayed ${JSON.stringify(r.content)}` }] };
    });
    const { client, audit } = await securedClient(t, c, home, "agent");
    await linkInMemory(t, front, client);
    await client.callTool({ name: "relay", arguments: {} });
    for (const s of [front, back]) await s.aztpGuard.flush();
    await onward.aztpGuard.flush();
    const [agent] = await audit();
    const [atFront] = await queryAuditLog(logs.get("front")!);
    const [relayed] = await queryAuditLog(logs.get("front-client")!);
    const [atBack] = await queryAuditLog(logs.get("back")!);
    assertOneCall(agent!, atFront!);
    assertOneCall(relayed!, atBack!);
    assert.equal(relayed!.traceId, agent!.traceId, "the onward call is in the agent's trace");
    assert.equal(relayed!.parentSpanId, atFront!.spanId, "made inside front's span of the call it serves");
  });
});

describe("through the proxy: the trace continues, a new span per hop", () => {
  it("client → proxy → upstream: the proxy's entry is in the client's trace under its span, and the upstream is told the proxy's span", async (t) => {
    const { home, aztp: c } = fixture(t);
    // The upstream: an unmodified MCP server that says what trace context each call brought it.
    const seen: unknown[] = [];
    const upstream = await serveMcpHttp("http://127.0.0.1:0", async (transport) => {
      const server = new McpServer({ name: "plain-upstream", version: "1.0.0" });
      server.registerTool(
        "echo",
        { description: "echo", inputSchema: { text: z.string() } },
        async ({ text }, extra) => {
          seen.push(extra._meta?.traceparent);
          return { content: [{ type: "text", text }] };
        },
      );
      await server.connect(transport);
    });
    t.after(() => upstream.close());
    const proxy = await startMcpProxy({
      client: c,
      name: "trace-proxy",
      upstream: { url: upstream.url.href },
      listen: "http://127.0.0.1:0",
    });
    t.after(() => proxy.close());
    const { client, audit } = await securedClient(t, c, home, "agent");
    await withTimeout(client.connect(new StreamableHTTPClientTransport(proxy.url!)), 30_000, "connect to the proxy");
    await client.callTool({ name: "echo", arguments: { text: "via" }, _meta: { traceparent: `00-${T}-${P}-01` } });
    await proxy.guard.flush();
    const [mine] = await audit();
    const [hop] = await queryAuditLog(join(home, "audit", "trace-proxy.jsonl"));
    assert.equal(hop!.side, "proxy");
    assert.equal(mine!.traceId, T);
    assertOneCall(mine!, hop!);
    assert.deepEqual(seen, [`00-${T}-${hop!.spanId}-01`], "the upstream continues the proxy's span");
  });
});

describe("through the bridge: a host's trace continues to the secured server", () => {
  it("host (unsigned, with a traceparent) → bridge → secured server: the bridge's entry continues the host's span, the server's the bridge's", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const bridge = await startMcpBridge({
      client: c,
      name: "desk",
      upstream: { url: server.url },
      listen: "http://127.0.0.1:0",
      log: () => undefined,
    });
    t.after(() => bridge.close());
    const host = new Client({ name: "host", version: "1.0.0" });
    t.after(() => host.close().catch(() => undefined));
    await withTimeout(host.connect(new StreamableHTTPClientTransport(bridge.url!)), 30_000, "connect to the bridge");
    await host.callTool({ name: "echo", arguments: { text: "hi" }, _meta: { traceparent: `00-${T}-${P}-01` } });
    // A host's malformed traceparent: the call goes, in a new trace, noted.
    await host.callTool({ name: "echo", arguments: { text: "ho" }, _meta: { traceparent: "00-nope" } });
    await bridge.guard.flush();
    const own = await queryAuditLog(join(home, "audit", "desk.jsonl"));
    const served = await server.audit(2);
    assert.equal(own.length, 2);
    assert.equal(own[0]!.traceId, T);
    assert.equal(own[0]!.parentSpanId, P, "the host's span is the bridge's parent");
    assertOneCall(
      own[0]!,
      served.find((e) => e.jti === own[0]!.jti)!,
    );
    assert.match(own[1]!.traceNote ?? "", /traceparent refused.*a new trace was started/);
    assertOneCall(
      own[1]!,
      served.find((e) => e.jti === own[1]!.jti)!,
    );
    assert.equal(served.find((e) => e.jti === own[1]!.jti)!.traceNote, undefined);
  });
});

describe("a LangChain agent's run: one trace, a span per tool call", () => {
  const twoCalls = () =>
    fakeModel()
      .respondWithTools([{ name: "add", args: { a: 1, b: 2 }, id: "call_1" }])
      .respondWithTools([{ name: "add", args: { a: 3, b: 4 }, id: "call_2" }])
      .respond(new AIMessage("done"));

  async function run(t: TestContext, configurable?: Record<string, unknown>) {
    const { home, aztp: client } = fixture(t);
    const add = adder();
    const agent = await createSecureAgent({ client, name: "calc", model: twoCalls(), tools: [add.tool] });
    await agent.invoke({ messages: [{ role: "user", content: "sums" }] }, configurable ? { configurable } : {});
    await agent.aztpGuard.flush();
    const tools = (agent as unknown as { options: { tools: Array<{ aztpGuard?: { flush(): Promise<void> } }> } })
      .options.tools;
    for (const x of tools) await x.aztpGuard?.flush();
    const callerLog = await auditOf(home, "calc");
    const calleeLog = await auditOf(home, "calc.tools.add");
    assert.equal(callerLog.length, 2);
    for (const e of callerLog)
      assertOneCall(
        e,
        calleeLog.find((x) => x.jti === e.jti)!,
      );
    return { agent, callerLog, calleeLog };
  }

  it("two tool calls of one run: one trace, two spans", async (t) => {
    const { callerLog } = await run(t);
    assert.equal(callerLog[0]!.traceId, callerLog[1]!.traceId, "one trace for the run");
    assert.notEqual(callerLog[0]!.spanId, callerLog[1]!.spanId, "a span per call");
    assert.deepEqual(
      callerLog.map((e) => [e.toolCallId, e.parentSpanId, e.traceNote]),
      [
        ["call_1", undefined, undefined],
        ["call_2", undefined, undefined],
      ],
    );
  });

  it("two runs: two traces", async (t) => {
    const { home, aztp: client } = fixture(t);
    const add = adder();
    const model = fakeModel()
      .respondWithTools([{ name: "add", args: { a: 1, b: 2 }, id: "call_1" }])
      .respond(new AIMessage("one"))
      .respondWithTools([{ name: "add", args: { a: 3, b: 4 }, id: "call_2" }])
      .respond(new AIMessage("two"));
    const agent = await createSecureAgent({ client, name: "calc", model, tools: [add.tool] });
    await agent.invoke({ messages: [{ role: "user", content: "first" }] });
    await agent.invoke({ messages: [{ role: "user", content: "second" }] });
    await agent.aztpGuard.flush();
    const log = await auditOf(home, "calc");
    assert.equal(log.length, 2);
    assert.notEqual(log[0]!.traceId, log[1]!.traceId);
  });

  it("configurable.aztp.traceparent: the run's calls join the application's trace, under its span", async (t) => {
    const { callerLog } = await run(t, { aztp: { traceparent: `00-${T}-${P}-01` } });
    assert.deepEqual(
      callerLog.map((e) => [e.traceId, e.parentSpanId]),
      [
        [T, P],
        [T, P],
      ],
    );
  });

  it("a malformed configurable.aztp.traceparent breaks no call: the run keeps a trace of its own, and each entry says so", async (t) => {
    const { callerLog } = await run(t, { aztp: { traceparent: `00-${T}-${P}-1` } });
    assert.equal(callerLog[0]!.traceId, callerLog[1]!.traceId, "still one trace for the run");
    assert.notEqual(callerLog[0]!.traceId, T);
    for (const e of callerLog) {
      assert.equal(e.outcome, "ok");
      assert.match(e.traceNote ?? "", /traceparent refused \(ERR_TRACE_CONTEXT_INVALID, rule format\)/);
    }
  });

  it("an active OpenTelemetry span is the run's trace when nothing else is given", async (t) => {
    const restore = registerOtel();
    t.after(restore.disable);
    const parent = restore.span(T, P);
    const { callerLog } = await context.with(trace.setSpan(ROOT_CONTEXT, parent), () => run(t));
    assert.deepEqual(
      callerLog.map((e) => [e.traceId, e.parentSpanId]),
      [
        [T, P],
        [T, P],
      ],
    );
  });
});

/** A span standing in for an SDK's: its context, and what the export put on it. */
class RecordedSpan {
  attributes: Attributes = {};
  events: string[] = [];
  ended = false;
  constructor(
    readonly name: string,
    readonly context: SpanContext,
    readonly parent: SpanContext | undefined,
    readonly options: SpanOptions,
    readonly recording = true,
  ) {}
  spanContext(): SpanContext {
    return this.context;
  }
  setAttribute(key: string, value: Attributes[string]) {
    this.attributes[key] = value;
    return this;
  }
  setAttributes(a: Attributes) {
    Object.assign(this.attributes, a);
    return this;
  }
  addEvent(name: string) {
    this.events.push(name);
    return this;
  }
  addLink() {
    return this;
  }
  addLinks() {
    return this;
  }
  setStatus() {
    return this;
  }
  updateName() {
    return this;
  }
  end() {
    this.ended = true;
  }
  isRecording() {
    return this.recording && !this.ended;
  }
  recordException() {}
}

/**
 * A tracer provider and an AsyncLocalStorage context manager registered on the global API, as an
 * SDK registers them (no SDK package is installed here: `@opentelemetry/sdk-trace-base` would be
 * the real thing). Spans are children of the context they are started in.
 */
function registerOtel() {
  const als = new AsyncLocalStorage<Context>();
  const started: RecordedSpan[] = [];
  let n = 0;
  const tracer = {
    startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
      const parent = trace.getSpanContext(ctx);
      const spanContext = {
        traceId: parent?.traceId ?? OTHER_T,
        spanId: (++n).toString(16).padStart(16, "0"),
        traceFlags: 1,
      };
      const span = new RecordedSpan(name, spanContext, parent, options);
      started.push(span);
      return span as unknown as Span;
    },
  } as unknown as Tracer;
  const provider: TracerProvider = { getTracer: () => tracer };
  const manager = {
    active: () => als.getStore() ?? ROOT_CONTEXT,
    with: (ctx: Context, fn: (...args: unknown[]) => unknown, thisArg?: unknown, ...args: unknown[]) =>
      als.run(ctx, () => fn.call(thisArg, ...args)),
    bind: <T>(_ctx: Context, target: T) => target,
    enable() {
      return this;
    },
    disable() {
      als.disable();
      return this;
    },
  };
  assert.ok(trace.setGlobalTracerProvider(provider));
  assert.ok(context.setGlobalContextManager(manager as never));
  return {
    started,
    /** An application's span, active where it is set. */
    span: (traceId: string, spanId: string, recording = false): Span =>
      new RecordedSpan("app", { traceId, spanId, traceFlags: 1 }, undefined, {}, recording) as unknown as Span,
    disable() {
      trace.disable();
      context.disable();
    },
  };
}

describe("the OpenTelemetry export joins each entry to its call's trace", () => {
  it("an entry's span is a child of its side's span of the call, carries the span IDs, and links the application's span of another trace", async (t) => {
    const otel = registerOtel();
    t.after(otel.disable);
    const { home } = fixture(t);
    const log = await AuditLog.open(join(home, "otel.jsonl"), { otel: true, batchWindowMs: 0 });
    t.after(() => log.close());
    const entry = {
      side: "callee" as const,
      caller: idOf("agent"),
      callerVerified: true,
      callee: idOf("tools"),
      tool: "echo",
      argsDigest: "x",
      decision: "allow" as const,
      traceId: T,
      spanId: P,
      parentSpanId: OTHER_P,
    };
    // Appended inside an application span of another trace (a server's HTTP span, say).
    const app = otel.span(OTHER_T, "1111111111111111");
    await context.with(trace.setSpan(ROOT_CONTEXT, app), () => log.append(entry));
    const [exported] = otel.started;
    assert.ok(exported, "one span exported");
    assert.equal(exported.name, "aztp.audit");
    assert.deepEqual(
      { traceId: exported.parent?.traceId, spanId: exported.parent?.spanId, remote: exported.parent?.isRemote },
      { traceId: T, spanId: P, remote: true },
      "under the entry's span, in the call's trace",
    );
    assert.equal(exported.context.traceId, T);
    assert.deepEqual(
      exported.options.links?.map((l) => l.context.spanId),
      ["1111111111111111"],
    );
    assert.deepEqual(
      [
        exported.attributes["aztp.audit.trace_id"],
        exported.attributes["aztp.audit.span_id"],
        exported.attributes["aztp.audit.parent_span_id"],
      ],
      [T, P, OTHER_P],
    );

    // Inside a recording span of the same trace: an event on it, as before.
    const same = otel.span(T, "2222222222222222", true) as unknown as RecordedSpan;
    await context.with(trace.setSpan(ROOT_CONTEXT, same as unknown as Span), () => log.append(entry));
    assert.equal(otel.started.length, 1, "no new span");
    assert.deepEqual(same.events, ["aztp.audit"]);

    // An entry without trace IDs (an older writer's): under the active context, as before.
    const { traceId: _t, spanId: _s, parentSpanId: _p, ...untraced } = entry;
    await log.append(untraced);
    assert.equal(otel.started.length, 2);
    assert.equal(otel.started[1]!.parent, undefined);
  });
});

describe("--trace-id finds one call in every log", () => {
  it("queryAuditLog and aztp audit query, over the caller's and the callee's logs", async (t) => {
    const { home, aztp: c } = fixture(t);
    const serverAudit = join(home, "server-audit.jsonl");
    const h = await startHarness(t, "memory", c, home, { name: "tools", audit: serverAudit });
    const { client, audit } = await securedClient(t, c, home, "agent");
    await h.connect(client);
    await client.callTool({ name: "echo", arguments: { text: "wanted" }, _meta: { traceparent: `00-${T}-${P}-01` } });
    await client.callTool({ name: "echo", arguments: { text: "another" } });
    await audit();
    await h.serverAudit(2);
    const callerLog = join(home, "agent-audit.jsonl");
    for (const path of [callerLog, serverAudit]) {
      const found = await queryAuditLog(path, { traceId: T });
      assert.equal(found.length, 1, path);
      assert.equal(found[0]!.traceId, T);
    }
    const r = await aztpCli(home, ["audit", "query", callerLog, serverAudit, "--trace-id", T.toUpperCase()]);
    assertExit(r, 0, "audit query --trace-id");
    const rows = r.json as Array<AuditEntry & { file: string }>;
    assert.deepEqual(
      rows.map((e) => [e.file, e.side, e.traceId]),
      [
        [callerLog, "caller", T],
        [serverAudit, "callee", T],
      ],
    );
    const text = await runTs(CLI, ["--home", home, "audit", "query", callerLog, "--trace-id", T]);
    assertExit(text, 0, "human");
    assert.match(text.stdout, new RegExp(`\\[trace ${T} span [0-9a-f]{16}\\]`));
    const bad = await runTs(CLI, ["--home", home, "audit", "query", callerLog, "--trace-id", "not-a-trace"]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--trace-id must be a W3C trace ID/);
  });
});

// The signer refuses what the verifier would: a trace that is no W3C trace ID never leaves.
describe("signing", () => {
  it("a CallToSign trace must be W3C trace context", async (t) => {
    const { aztp: c } = fixture(t);
    const id = (await c.secureConnect({}, "signer")).identity;
    const { createInvocation } = await import("../src/invocation/invocation.js");
    await rejectsWithCode(
      () => createInvocation(id, { audience: aztpIdOf("x"), tool: "t", traceId: "trace-1" }),
      ErrorCodes.ARGUMENT_INVALID,
    );
    await rejectsWithCode(
      () => createInvocation(id, { audience: aztpIdOf("x"), tool: "t", spanId: P }),
      ErrorCodes.ARGUMENT_INVALID,
    );
    const ok = createInvocation(id, { audience: aztpIdOf("x"), tool: "t", traceId: T, spanId: P });
    assert.deepEqual([ok.claims.trace, ok.claims.span], [T, P]);
  });
});
