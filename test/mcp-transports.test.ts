/**
 * A secured McpServer and a secured Client end to end over each MCP transport: in-memory
 * (InMemoryTransport.createLinkedPair), stdio (a server process sharing the test's AZTP home)
 * and Streamable HTTP (serveMcpHttp, a new secured McpServer per session). Every behaviour is
 * checked on all three: signed calls and receipts, tools registered after wrapping, 32 calls
 * in flight, tampered and replayed calls, reconnects and server restarts, the server's proof
 * of identity, bad receipts, audit entries on both sides, the stateless path, unmodified SDK
 * clients, and tools/list filtered by policy.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError, type CallToolResult, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import type { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import { signInvocation, verifyReceipt } from "../src/invocation/index.js";
import { secureMcpClient, type SecureMcpClientOptions } from "../src/mcp/index.js";
import { IDENTITY_META_KEY, INVOCATION_META_KEY, RECEIPT_META_KEY, resultForDigest } from "../src/mcp/meta.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import {
  fixture,
  idOf,
  securedClient,
  type Secured,
  httpServerOf,
  onWire,
  rejectsWithData,
  servedIdentity,
  startHarness,
  tap,
  TRANSPORTS,
  withTimeout,
  type Harness,
  type HarnessOptions,
  type TransportKind,
} from "./helpers/mcp-util.js";
import { toolAnswer } from "./helpers/mcp-tool-server.js";

/** The SPIFFE ID the home's authority gives the identity named `name`. */

/** An unmodified SDK Client, closed when the test ends. */
function plainClient(t: TestContext, name = "plain"): Client {
  const client = new Client({ name, version: "1.0.0" });
  t.after(() => client.close().catch(() => undefined));
  return client;
}

const receiptOf = (r: unknown): string | undefined =>
  (r as CallToolResult)._meta?.[RECEIPT_META_KEY] as string | undefined;

/** The raw tools/call request and response with JSON-RPC id `id` seen on a tap. */
function exchange(
  wire: ReturnType<typeof tap>,
  tool: string,
): Array<{ token: string; response: { result: Record<string, unknown> } }> {
  const out: Array<{ token: string; response: { result: Record<string, unknown> } }> = [];
  for (const m of wire.sent) {
    const req = m as { id?: unknown; method?: string; params?: { name?: string; _meta?: Record<string, unknown> } };
    if (req.method !== "tools/call" || req.params?.name !== tool) continue;
    const response = wire.received.find((r) => (r as { id?: unknown }).id === req.id && "result" in r) as
      { result: Record<string, unknown> } | undefined;
    if (response) out.push({ token: req.params._meta?.[INVOCATION_META_KEY] as string, response });
  }
  return out;
}

function suite(kind: TransportKind): void {
  const harness = (t: TestContext, c: Aztp, home: string, options: Partial<HarnessOptions> = {}): Promise<Harness> =>
    startHarness(t, kind, c, home, { name: "tools", ...options });

  it("a signed call succeeds with a receipt the client verified, tools registered after wrapping are guarded too, and each side audits every call", async (t) => {
    const { home, aztp: c } = fixture(t);
    const serverAudit = join(home, "server-audit.jsonl");
    const h = await harness(t, c, home, { audit: serverAudit });
    const { client, audit } = await securedClient(t, c, home, "agent");
    const wire = tap();
    await h.connect(client, wire.wrap);
    assert.equal(client.aztpServer.serverId?.toString(), idOf("tools"), "the server proved its identity at initialize");

    const echo = await client.callTool({ name: "echo", arguments: { text: "hi" } });
    assert.deepEqual(toolAnswer(echo), { tool: "echo", value: "hi", runs: 1 });
    const late = await client.callTool({ name: "late", arguments: { n: 21 } });
    assert.deepEqual(toolAnswer(late), { tool: "late", value: 42, runs: 2 });

    // Each receipt checks out independently against the token that went on the wire.
    const trust = await c.trust();
    for (const tool of ["echo", "late"]) {
      const [x] = exchange(wire, tool);
      assert.ok(x, `a ${tool} exchange on the wire`);
      assert.ok(typeof x.token === "string" && x.token.split(".").length === 3, "the call carried a token");
      const receipt = (x.response.result._meta as Record<string, unknown>)[RECEIPT_META_KEY];
      const v = verifyReceipt(receipt, {
        invocationToken: x.token,
        result: resultForDigest(x.response.result),
        callee: idOf("tools"),
        caller: client.identity.spiffeId,
        trust,
      });
      assert.equal(v.claims.status, "ok");
      assert.equal(v.claims.tool, tool);
    }
    assert.ok(receiptOf(echo) && receiptOf(late));

    // One entry per call on each side, both "allow".
    const mine = await audit();
    assert.deepEqual(
      mine.map((e) => [e.side, e.tool, e.decision, e.outcome, e.callee]),
      [
        ["caller", "echo", "allow", "ok", idOf("tools")],
        ["caller", "late", "allow", "ok", idOf("tools")],
      ],
    );
    const theirs = await h.serverAudit(2);
    assert.deepEqual(
      theirs.map((e) => [e.side, e.tool, e.decision, e.outcome, e.caller]),
      [
        ["callee", "echo", "allow", "ok", client.identity.spiffeId],
        ["callee", "late", "allow", "ok", client.identity.spiffeId],
      ],
    );
    assert.ok(
      theirs.every((e) => typeof e.receipt === "string" && typeof e.jti === "string" && e.reason === undefined),
    );
  });

  it("32 calls in flight at once all succeed with distinct receipts", async (t) => {
    const { home, aztp: c } = fixture(t);
    const h = await harness(t, c, home);
    const { client } = await securedClient(t, c, home, "agent");
    await h.connect(client);
    const results = await withTimeout(
      Promise.all(
        Array.from({ length: 32 }, (_, i) =>
          i % 2 === 0
            ? client.callTool({ name: "echo", arguments: { text: `m${i}` } })
            : client.callTool({ name: "late", arguments: { n: i } }),
        ),
      ),
      20_000,
      "32 concurrent calls",
    );
    const answers = results.map(toolAnswer);
    answers.forEach((a, i) => assert.deepEqual(a.value, i % 2 === 0 ? `m${i}` : i * 2));
    assert.deepEqual(
      answers.map((a) => a.runs).sort((a, b) => a - b),
      Array.from({ length: 32 }, (_, i) => i + 1),
    );
    assert.equal(new Set(results.map(receiptOf)).size, 32);
    assert.ok(results.every((r) => typeof receiptOf(r) === "string"));
  });

  it("a tampered call (a token for other arguments, another tool, another server, a replay, none) is refused with its code and never reaches a handler", async (t) => {
    const { home, aztp: c } = fixture(t);
    const serverAudit = join(home, "server-audit.jsonl");
    const h = await harness(t, c, home, { audit: serverAudit });
    const raw = plainClient(t, "raw");
    const wire = tap();
    await h.connect(raw, wire.wrap);
    const serverId = servedIdentity(wire.received);
    assert.equal(serverId, idOf("tools"), "an unchallenged client is still told the server's ID");
    const caller = (await c.secureConnect({}, "raw-caller")).identity;
    const sign = (tool: string, args: unknown, audience = idOf("tools")): string =>
      signInvocation(caller, { audience, tool, args });
    const call = (name: string, args: Record<string, unknown>, token?: string) =>
      raw.callTool({
        name,
        arguments: args,
        ...(token !== undefined ? { _meta: { [INVOCATION_META_KEY]: token } } : {}),
      });

    const token = sign("echo", { text: "a" });
    const ok = await call("echo", { text: "a" }, token);
    assert.equal(toolAnswer(ok).runs, 1);
    assert.ok(receiptOf(ok));

    const replayed = await rejectsWithData(
      call("echo", { text: "a" }, token),
      ErrorCodes.INVOCATION_REPLAYED,
      "replay",
    );
    assert.equal(replayed.code, -32001);
    const args = await rejectsWithData(
      call("echo", { text: "b" }, sign("echo", { text: "a" })),
      ErrorCodes.INVOCATION_ARGS_MISMATCH,
      "other args",
    );
    assert.ok(
      typeof (args.data as Record<string, unknown>)[RECEIPT_META_KEY] === "string",
      "a refused signed call gets a 'denied' receipt",
    );
    await rejectsWithData(
      call("late", { n: 1 }, sign("echo", { n: 1 })),
      ErrorCodes.INVOCATION_TOOL_MISMATCH,
      "other tool",
    );
    await rejectsWithData(
      call("late", { n: 1 }, sign("late", { n: 1 }, idOf("another-server"))),
      ErrorCodes.INVOCATION_AUDIENCE_MISMATCH,
      "other server",
    );
    await rejectsWithData(call("late", { n: 1 }), ErrorCodes.INVOCATION_MISSING, "unsigned");
    await rejectsWithData(call("late", { n: 1 }, "not.a.token"), ErrorCodes.INVOCATION_MALFORMED, "garbage");

    // Nothing refused ran: the next handler run is the second.
    assert.equal(toolAnswer(await call("late", { n: 2 }, sign("late", { n: 2 }))).runs, 2);

    if (kind !== "stdio") {
      // A replay over a new connection (HTTP: a new session, served by a new McpServer) is
      // refused too: the replay cache belongs to the server identity, not to one connection.
      const other = plainClient(t, "raw-2");
      await h.connect(other);
      await rejectsWithData(
        other.callTool({ name: "echo", arguments: { text: "a" }, _meta: { [INVOCATION_META_KEY]: token } }),
        ErrorCodes.INVOCATION_REPLAYED,
        "replay on another connection",
      );
    }

    const entries = await h.serverAudit(8);
    assert.deepEqual(
      entries.slice(0, 8).map((e) => [e.tool, e.decision, e.reason ?? null]),
      [
        ["echo", "allow", null],
        ["echo", "deny", ErrorCodes.INVOCATION_REPLAYED],
        ["echo", "deny", ErrorCodes.INVOCATION_ARGS_MISMATCH],
        ["late", "deny", ErrorCodes.INVOCATION_TOOL_MISMATCH],
        ["late", "deny", ErrorCodes.INVOCATION_AUDIENCE_MISMATCH],
        ["late", "deny", ErrorCodes.INVOCATION_MISSING],
        ["late", "deny", ErrorCodes.INVOCATION_MALFORMED],
        ["late", "allow", null],
      ],
    );
  });

  it("a client reconnects and keeps working, and after a server restart its next call fails cleanly and a reconnect works again", async (t) => {
    const { home, aztp: c } = fixture(t);
    const h = await harness(t, c, home);
    const { client, audit } = await securedClient(t, c, home, "agent");
    await h.connect(client);
    assert.equal(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "1" } })).value, "1");

    await client.close();
    await h.connect(client);
    assert.equal(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "2" } })).value, "2");
    if (kind === "http") {
      // Closing the client does not end its HTTP session; terminating it does, and the server forgets it.
      const sessions = httpServerOf(h).sessions;
      await (client.transport as unknown as { inner: { terminateSession(): Promise<void> } }).inner.terminateSession();
      assert.equal(httpServerOf(h).sessions, sessions - 1, "a terminated session is dropped by serveMcpHttp");
      await client.close();
      await h.connect(client);
    }

    // The server goes away under a live session: the next call fails, promptly, not by timing out.
    await h.restart();
    let failed: unknown;
    try {
      await withTimeout(client.callTool({ name: "echo", arguments: { text: "3" } }), 10_000, "call after restart");
    } catch (e) {
      failed = e;
    }
    assert.ok(failed instanceof Error, "the call after the restart fails");
    assert.doesNotMatch(failed.message, /no answer within/, "it fails cleanly rather than hanging");

    await client.close();
    await h.connect(client);
    const after = await client.callTool({ name: "echo", arguments: { text: "4" } });
    assert.equal(toolAnswer(after).value, "4");
    assert.ok(receiptOf(after));
    const entries = await audit();
    assert.deepEqual(
      entries.filter((e) => e.outcome === "ok").map((e) => [e.decision, e.tool]),
      [
        ["allow", "echo"],
        ["allow", "echo"],
        ["allow", "echo"],
      ],
    );
    // The call after the restart is on record when it reached the transport: over HTTP its
    // request failed (send-failed); in memory and over stdio the SDK refused it first (not connected).
    assert.deepEqual(
      entries.filter((e) => e.outcome !== "ok").map((e) => [e.tool, e.reason]),
      kind === "http" ? [["echo", "send-failed"]] : [],
    );
  });

  it("the client refuses a server that cannot prove an identity, and one that proves another ID than expected", async (t) => {
    const { home, aztp: c } = fixture(t);
    const plain = await harness(t, c, home, { name: "plain-server", unsecured: true });
    const { client: a } = await securedClient(t, c, home, "agent-a");
    await assert.rejects(withTimeout(plain.connect(a), 20_000, "connect"), (e: unknown) => {
      assert.ok(e instanceof McpError, String(e));
      assert.equal((e.data as { code?: string }).code, ErrorCodes.PROOF_INVALID);
      assert.match(e.message, /server identity not proven at initialize/);
      return true;
    });

    const h = await harness(t, c, home);
    const { client: b } = await securedClient(t, c, home, "agent-b", { expectedServer: idOf("someone-else") });
    await assert.rejects(withTimeout(h.connect(b), 20_000, "connect"), (e: unknown) => {
      assert.match(String((e as Error).message), /ERR_PEER_NOT_AUTHORIZED/);
      assert.equal(((e as McpError).data as { code?: string }).code, ErrorCodes.PEER_NOT_AUTHORIZED);
      return true;
    });

    const { client: d } = await securedClient(t, c, home, "agent-d", {
      expectedServer: [idOf("someone-else"), idOf("tools")],
    });
    await h.connect(d);
    assert.equal(toolAnswer(await d.callTool({ name: "echo", arguments: { text: "ok" } })).value, "ok");
  });

  it("a missing, forged or misapplied receipt fails the call in enforce mode and is only recorded in audit mode", async (t) => {
    const { home, aztp: c } = fixture(t);
    const h = await harness(t, c, home);
    // The man in the middle: edits tools/call answers on their way to the client.
    let edit: "none" | "strip" | "forge" | "reuse" | "result" = "none";
    let saved: string | undefined;
    const mitm = onWire({
      incoming(m) {
        const res = m as { result?: CallToolResult };
        if (!res.result || !("content" in res.result)) return m;
        const meta = { ...(res.result._meta ?? {}) };
        const receipt = meta[RECEIPT_META_KEY] as string;
        if (edit === "none") saved = receipt;
        if (edit === "strip") delete meta[RECEIPT_META_KEY];
        if (edit === "forge")
          meta[RECEIPT_META_KEY] = receipt.slice(0, -4) + (receipt.endsWith("AAAA") ? "BBBB" : "AAAA");
        if (edit === "reuse") meta[RECEIPT_META_KEY] = saved;
        const content =
          edit === "result"
            ? [{ type: "text", text: JSON.stringify({ tool: "echo", value: "forged", runs: 0 }) }]
            : res.result.content;
        return { ...m, result: { ...res.result, content, _meta: meta } } as JSONRPCMessage;
      },
    });
    const { client: strict, audit: strictAudit } = await securedClient(t, c, home, "strict");
    await h.connect(strict, mitm);
    const { client: lax, audit: laxAudit } = await securedClient(t, c, home, "lax", { mode: "audit" });
    await h.connect(lax, mitm);

    const echo = (client: Secured, text: string) => client.callTool({ name: "echo", arguments: { text } });
    await echo(strict, "first");
    const cases = [
      ["strip", ErrorCodes.RECEIPT_MISSING],
      ["forge", ErrorCodes.RECEIPT_INVALID],
      ["reuse", ErrorCodes.RECEIPT_MISMATCH],
      ["result", ErrorCodes.RECEIPT_MISMATCH],
    ] as const;
    for (const [how, code] of cases) {
      edit = how;
      await rejectsWithData(echo(strict, how), code, `enforce, ${how}`);
      edit = "none";
      await echo(lax, "warm-up"); // keeps `saved` a receipt for another call
      edit = how;
      const passed = await withTimeout(echo(lax, how), 10_000, `audit, ${how}`);
      assert.equal(toolAnswer(passed).value, how === "result" ? "forged" : how, "audit mode hands the result over");
      edit = "none";
    }
    const strictEntries = await strictAudit();
    assert.deepEqual(
      strictEntries.map((e) => [e.decision, e.reason ?? null]),
      [["allow", null], ...cases.map(([, code]) => ["deny", code])],
    );
    const laxEntries = (await laxAudit()).filter((e) => e.decision !== "allow");
    assert.deepEqual(
      laxEntries.map((e) => [e.decision, e.reason]),
      cases.map(([, code]) => ["audit-only", code]),
    );
  });

  it("audit mode, a server that fails its proof at initialize: each call still goes, and is recorded audit-only with the proof's failure code before its answer is handed on", async (t) => {
    const { home, aztp: c } = fixture(t);
    const secured = await harness(t, c, home);
    const plain = await harness(t, c, home, { name: "plain", unsecured: true, mode: "audit" });

    // A secured server proving another ID than expected: the unsigned call reaches it and it
    // refuses it (no token); the refusal is on record, with why nothing was signed.
    const { client: wrong, audit: wrongAudit } = await securedClient(t, c, home, "wrong", {
      mode: "audit",
      expectedServer: idOf("someone-else"),
    });
    await withTimeout(secured.connect(wrong), 20_000, "connect");
    await rejectsWithData(
      wrong.callTool({ name: "echo", arguments: { text: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned call",
    );
    assert.deepEqual(
      (await wrongAudit()).map((e) => [e.tool, e.decision, e.reason, e.outcome, e.callee]),
      [["echo", "audit-only", ErrorCodes.PEER_NOT_AUTHORIZED, "error", "unknown"]],
    );

    // A plain MCP server proving nothing: its answer is handed on, recorded as unproven.
    const { client: blind, audit: blindAudit } = await securedClient(t, c, home, "blind", { mode: "audit" });
    await withTimeout(plain.connect(blind), 20_000, "connect");
    assert.equal(toolAnswer(await blind.callTool({ name: "echo", arguments: { text: "y" } })).value, "y");
    assert.deepEqual(
      (await blindAudit()).map((e) => [e.tool, e.decision, e.reason, e.outcome, e.callee, e.jti ?? null]),
      [["echo", "audit-only", ErrorCodes.PROOF_INVALID, "ok", "unknown", null]],
    );

    // The passing twin: the right ID in audit mode is signed and allowed.
    const { client: right, audit: rightAudit } = await securedClient(t, c, home, "right", {
      mode: "audit",
      expectedServer: idOf("tools"),
    });
    await secured.connect(right);
    assert.equal(toolAnswer(await right.callTool({ name: "echo", arguments: { text: "z" } })).value, "z");
    assert.deepEqual(
      (await rightAudit()).map((e) => [e.decision, e.reason ?? null, e.callee]),
      [["allow", null, idOf("tools")]],
    );
  });

  it("stateless use (MCP 2026-07-28): with serverId given, a server whose initialize carries no proof is still called with signed tokens and checked receipts", async (t) => {
    // MCP 2026-07-28 drops initialize and sessions, so a client there never gets the proof of
    // possession: it must be told the server's ID (serverId) and rely on each call's token
    // (addressed to that ID) and receipt (signed by it), which stand on their own. Stripping the
    // proof from the initialize answer stands in for that path on the 1.x SDK.
    const { home, aztp: c } = fixture(t);
    const h = await harness(t, c, home);
    const stripProof = onWire({
      incoming(m) {
        const res = m as { result?: { _meta?: Record<string, unknown> } };
        if (!res.result?._meta || !(IDENTITY_META_KEY in res.result._meta)) return m;
        const { [IDENTITY_META_KEY]: _gone, ...meta } = res.result._meta;
        return { ...m, result: { ...res.result, _meta: meta } } as JSONRPCMessage;
      },
    });
    const { client, audit } = await securedClient(t, c, home, "stateless", { serverId: idOf("tools") });
    const wire = tap();
    await h.connect(client, (inner) => wire.wrap(stripProof(inner)));
    const r = await client.callTool({ name: "echo", arguments: { text: "stateless" } });
    assert.equal(toolAnswer(r).value, "stateless");
    assert.ok(receiptOf(r));
    assert.equal(exchange(wire, "echo").length, 1, "the call went out signed");
    assert.deepEqual(
      (await audit()).map((e) => [e.decision, e.callee]),
      [["allow", idOf("tools")]],
    );

    // serverId is a pin: tokens addressed to another server are refused by this one, and a
    // server that does prove an identity must prove that one.
    const { client: wrong } = await securedClient(t, c, home, "stateless-wrong", { serverId: idOf("someone-else") });
    await h.connect(wrong, stripProof);
    await rejectsWithData(
      wrong.callTool({ name: "echo", arguments: { text: "x" } }),
      ErrorCodes.INVOCATION_AUDIENCE_MISMATCH,
      "token for another server",
    );
    const { client: pinned } = await securedClient(t, c, home, "stateless-pinned", { serverId: idOf("someone-else") });
    await assert.rejects(withTimeout(h.connect(pinned), 20_000, "connect"), /ERR_PEER_NOT_AUTHORIZED/);

    // Without serverId there is nothing to address a token to: an enforcing client refuses.
    const { client: blind } = await securedClient(t, c, home, "blind");
    await assert.rejects(withTimeout(h.connect(blind, stripProof), 20_000, "connect"), /ERR_PROOF_INVALID/);
  });

  it("an unmodified SDK Client initialises and lists tools; enforce refuses its calls saying how to sign, audit lets them through and records them unsigned", async (t) => {
    const { home, aztp: c } = fixture(t);
    const serverAudit = join(home, "server-audit.jsonl");
    const enforce = await harness(t, c, home);
    const a = plainClient(t);
    await enforce.connect(a);
    assert.deepEqual((await a.listTools()).tools.map((x) => x.name).sort(), ["echo", "late"]);
    const refused = await rejectsWithData(
      a.callTool({ name: "echo", arguments: { text: "x" } }),
      ErrorCodes.INVOCATION_MISSING,
      "unsigned call",
    );
    assert.equal(refused.code, -32001);
    assert.match(refused.message, /ERR_INVOCATION_MISSING/);
    assert.match(
      refused.message,
      /sign each tools\/call with an AZTP invocation token in params\._meta\["io\.aztp\/invocation"\]/,
    );
    assert.match(refused.message, /secureMcpClient/);

    const audit = await harness(t, c, home, { name: "tools-audit", mode: "audit", audit: serverAudit });
    const b = plainClient(t, "plain-b");
    await audit.connect(b);
    assert.deepEqual((await b.listTools()).tools.map((x) => x.name).sort(), ["echo", "late"]);
    const r = await b.callTool({ name: "late", arguments: { n: 4 } });
    assert.deepEqual(toolAnswer(r), { tool: "late", value: 8, runs: 1 });
    assert.equal(receiptOf(r), undefined, "an unsigned caller has no identity to address a receipt to");
    const entries = await audit.serverAudit(1);
    assert.deepEqual(
      entries.map((e) => [e.tool, e.decision, e.reason, e.outcome, e.caller]),
      [["late", "audit-only", ErrorCodes.INVOCATION_MISSING, "ok", "unknown"]],
    );
  });

  it("filterToolsByPolicy shows a signed caller only the tools its policy allows", async (t) => {
    const { home, aztp: c } = fixture(t);
    const policy = [
      { Version: "2012-10-17", Statement: [{ Effect: "Allow" as const, Action: "tool:call", Resource: "echo" }] },
    ];
    const h = await harness(t, c, home, { policy, filter: true });
    const { client } = await securedClient(t, c, home, "agent");
    await h.connect(client);
    assert.deepEqual(
      (await client.listTools()).tools.map((x) => x.name),
      ["echo"],
    );
    assert.equal(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "seen" } })).value, "seen");
    await rejectsWithData(
      client.callTool({ name: "late", arguments: { n: 1 } }),
      ErrorCodes.POLICY_DENIED,
      "hidden tool",
    );
    // An unauthenticated caller is not filtered (it cannot call anything in enforce mode anyway).
    const plain = plainClient(t);
    await h.connect(plain);
    assert.deepEqual((await plain.listTools()).tools.map((x) => x.name).sort(), ["echo", "late"]);
  });
}

// The stdio tests mostly wait on server processes starting: run them a few at a time.
for (const kind of TRANSPORTS)
  describe(`secured MCP over ${kind}`, { concurrency: kind === "stdio" ? 3 : 1 }, () => suite(kind));
