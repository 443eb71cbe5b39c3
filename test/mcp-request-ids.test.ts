/**
 * Request ids and cancellation in the MCP binding. Answers are matched to requests by id, so a
 * caller that reuses the id of a call still in flight must not be able to run a tool without
 * its own receipt and audit entry (nor to give its call the other one's); and a call that is
 * never answered (its caller cancels it, its connection closes first, it cannot be sent) is
 * still audited, on each side that knows of it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { ErrorCodes } from "../src/errors.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { signInvocation, verifyReceipt } from "../src/invocation/index.js";
import { secureMcpClient, secureMcpServer, serverHooks } from "../src/mcp/index.js";
import { INVOCATION_META_KEY, RECEIPT_META_KEY, resultForDigest } from "../src/mcp/meta.js";
import { fixture, onWire, readAudits, until } from "./helpers/mcp-util.js";

/** A secured server with `echo` and a `slow` tool that waits until the test releases it. */
async function slowServer(t: TestContext, home: string, c: ReturnType<typeof fixture>["aztp"]) {
  const runs: string[] = [];
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const server = new McpServer({ name: "ids", version: "1.0.0" });
  server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => {
    runs.push(`echo:${text}`);
    return { content: [{ type: "text", text }] };
  });
  server.registerTool("slow", { inputSchema: { text: z.string() } }, async ({ text }) => {
    runs.push(`slow:${text}`);
    await gate;
    return { content: [{ type: "text", text }] };
  });
  const path = join(home, "server-audit.jsonl");
  const audit = await AuditLog.open(path, { batchWindowMs: 0 });
  const secured = await secureMcpServer(server, { client: c, name: "ids-server", audit });
  t.after(async () => {
    release();
    await secured.aztpGuard.flush();
    await audit.close();
  });
  const entries = async (atLeast: number): Promise<AuditEntry[]> => {
    await secured.aztpGuard.flush();
    return readAudits([path], atLeast);
  };
  return { server: secured, runs, release: () => release(), entries };
}

/**
 * A secured client named `name` with its own audit log, connected in memory to `server`
 * (through `wrap`, if given, below its AZTP layer), closed when the test ends.
 */
async function auditedClient(
  t: TestContext,
  c: ReturnType<typeof fixture>["aztp"],
  home: string,
  name: string,
  server: McpServer,
  wrap?: (t: Transport) => Transport,
) {
  const path = join(home, `${name}-audit.jsonl`);
  const audit = await AuditLog.open(path, { batchWindowMs: 0 });
  const client = await secureMcpClient(new Client({ name, version: "1.0.0" }), { client: c, name, audit });
  t.after(async () => {
    await client.close().catch(() => undefined);
    await client.aztpGuard.flush();
    await audit.close();
  });
  const entries = async (): Promise<AuditEntry[]> => {
    await client.aztpGuard.flush();
    return queryAuditLog(path);
  };
  const [mine, theirs] = InMemoryTransport.createLinkedPair();
  await server.connect(theirs);
  await client.connect(wrap ? wrap(mine) : mine);
  return { client, entries };
}

/** A raw client side of an in-memory link, initialised, collecting what the server sends. */
async function rawPeer(server: McpServer): Promise<{
  send: (m: JSONRPCMessage) => Promise<void>;
  got: JSONRPCMessage[];
  answer: (id: number | string, n?: number) => Promise<JSONRPCMessage[]>;
}> {
  const [mine, theirs] = InMemoryTransport.createLinkedPair();
  await server.connect(theirs);
  const got: JSONRPCMessage[] = [];
  mine.onmessage = (m) => got.push(m);
  await mine.start();
  await mine.send({
    jsonrpc: "2.0",
    id: 0,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
  });
  await mine.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  const answer = async (id: number | string, n = 1): Promise<JSONRPCMessage[]> => {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const found = got.filter((m) => (m as { id?: unknown }).id === id && ("result" in m || "error" in m));
      if (found.length >= n || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { send: (m) => mine.send(m), got, answer };
}

describe("MCP request ids and cancellation", () => {
  it("a tools/call reusing the id of a call in flight is refused with ERR_MCP_REQUEST_ID_IN_USE: the tool runs once, and each call has its own receipt and audit entry", async (t) => {
    const { home, aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "reuser")).identity;
    const s = await slowServer(t, home, c);
    const peer = await rawPeer(s.server);
    const call = (text: string) => {
      const args = { text };
      const token = signInvocation(caller, { audience: s.server.identity.spiffeId, tool: "slow", args });
      return {
        token,
        message: {
          jsonrpc: "2.0" as const,
          id: 7,
          method: "tools/call",
          params: { name: "slow", arguments: args, _meta: { [INVOCATION_META_KEY]: token } },
        },
      };
    };
    const a = call("A");
    const b = call("B");
    await peer.send(a.message);
    // A is admitted and running (held at the gate) before B arrives under the same id.
    await until(() => s.runs.length > 0, "call A to start");
    await peer.send(b.message);
    const [refused] = await peer.answer(7);
    assert.ok(refused && "error" in refused, "B is answered at once with an error");
    assert.equal((refused.error.data as { code?: string }).code, ErrorCodes.MCP_REQUEST_ID_IN_USE);
    // B's refusal carries a receipt bound to B's token, so its caller can prove it was refused.
    const bReceipt = (refused.error.data as Record<string, unknown>)[RECEIPT_META_KEY] as string;
    const data = refused.error.data as { code: string; message: string };
    const bClaims = verifyReceipt(bReceipt, {
      invocationToken: b.token,
      result: { code: data.code, message: data.message },
      isError: true,
      callee: s.server.identity.spiffeId,
      caller: caller.spiffeId,
      trust: await c.trust(),
    });
    assert.equal(bClaims.claims.status, "denied");

    s.release();
    const answers = await peer.answer(7, 2);
    const ok = answers.find((m) => "result" in m) as { result: Record<string, unknown> } | undefined;
    assert.ok(ok, "A is answered when its tool finishes");
    assert.deepEqual(s.runs, ["slow:A"], "the tool ran once, for A only");
    const receipt = verifyReceipt((ok.result._meta as Record<string, unknown>)[RECEIPT_META_KEY], {
      invocationToken: a.token,
      result: resultForDigest(ok.result),
      callee: s.server.identity.spiffeId,
      caller: caller.spiffeId,
      trust: await c.trust(),
    });
    assert.equal(receipt.claims.status, "ok");

    const entries = await s.entries(2);
    const allow = entries.filter((e) => e.decision === "allow");
    const deny = entries.filter((e) => e.decision === "deny");
    assert.equal(allow.length, 1);
    assert.equal(allow[0]?.token, a.token, "A's entry is A's, not B's");
    assert.equal(deny.length, 1);
    assert.equal(deny[0]?.reason, ErrorCodes.MCP_REQUEST_ID_IN_USE);
    assert.equal(deny[0]?.token, b.token);
  });

  it("an id may be used again once its request is answered", async (t) => {
    const { home, aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "sequential")).identity;
    const s = await slowServer(t, home, c);
    const peer = await rawPeer(s.server);
    for (const text of ["one", "two"]) {
      const args = { text };
      const token = signInvocation(caller, { audience: s.server.identity.spiffeId, tool: "echo", args });
      await peer.send({
        jsonrpc: "2.0",
        id: 9,
        method: "tools/call",
        params: { name: "echo", arguments: args, _meta: { [INVOCATION_META_KEY]: token } },
      });
      await until(() => s.runs.includes(`echo:${text}`), `echo ${text}`);
    }
    const answers = await peer.answer(9, 2);
    assert.equal(answers.filter((m) => "result" in m).length, 2, JSON.stringify(answers));
  });

  it("an id is in use while its call is still being verified, even if a cancellation for it comes first", async (t) => {
    const { aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "racer")).identity;
    const callee = (await c.secureConnect({}, "racee")).identity;
    const hooks = serverHooks(new CalleeGuard({ identity: callee, trust: await c.trust() }), callee);
    const delivered: JSONRPCMessage[] = [];
    const replies: JSONRPCMessage[] = [];
    const incoming = (m: JSONRPCMessage) =>
      hooks.incoming(
        m,
        undefined,
        (x) => delivered.push(x),
        async (x) => void replies.push(x),
      );
    const call = (text: string): JSONRPCMessage => {
      const args = { text };
      return {
        jsonrpc: "2.0",
        id: 3,
        method: "tools/call",
        params: {
          name: "echo",
          arguments: args,
          _meta: { [INVOCATION_META_KEY]: signInvocation(caller, { audience: callee.spiffeId, tool: "echo", args }) },
        },
      };
    };
    // All three arrive before A's verification (a promise) can finish.
    incoming(call("A"));
    incoming({
      jsonrpc: "2.0",
      method: "notifications/cancelled",
      params: { requestId: 3, reason: "changed my mind" },
    });
    incoming(call("B"));
    // B's refusal and A's delivery both wait on a verification: wait for both, then a little
    // longer so a wrong second reply or delivery would show.
    await until(
      () => replies.length > 0 && delivered.some((m) => "method" in m && m.method === "tools/call"),
      "B refused and A delivered",
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(replies.length, 1, JSON.stringify(replies));
    assert.equal(
      (replies[0] as { error: { data: { code: string } } }).error.data.code,
      ErrorCodes.MCP_REQUEST_ID_IN_USE,
    );
    const calls = delivered.filter((m) => "method" in m && m.method === "tools/call") as unknown as Array<{
      params: { arguments: { text: string } };
    }>;
    assert.deepEqual(
      calls.map((m) => m.params.arguments.text),
      ["A"],
      "only A reaches the server",
    );
  });

  it("a call whose connection closes while it is being verified never reaches the server, and is audited as connection-closed", async (t) => {
    const { home, aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "late-caller")).identity;
    const callee = (await c.secureConnect({}, "late-callee")).identity;
    const path = join(home, "hooks-audit.jsonl");
    const audit = await AuditLog.open(path, { batchWindowMs: 0 });
    t.after(() => audit.close());
    const guard = new CalleeGuard({ identity: callee, trust: await c.trust(), audit });
    const hooks = serverHooks(guard, callee);
    const delivered: JSONRPCMessage[] = [];
    const args = { text: "too late" };
    const token = signInvocation(caller, { audience: callee.spiffeId, tool: "echo", args });
    hooks.incoming(
      {
        jsonrpc: "2.0",
        id: 5,
        method: "tools/call",
        params: { name: "echo", arguments: args, _meta: { [INVOCATION_META_KEY]: token } },
      },
      undefined,
      (m) => delivered.push(m),
      async () => undefined,
    );
    hooks.closed?.(); // before the verification (a promise) can finish
    // The audit entry is written once the verification has finished: only then is "not
    // delivered" a finding rather than a race.
    const entries = await readAudits([path], 1);
    assert.deepEqual(delivered, [], "the call did not reach the server");
    assert.deepEqual(
      entries.map((e) => [e.decision, e.outcome, e.reason, e.token === token]),
      [["allow", "error", "connection-closed", true]],
    );
  });

  it("a call whose connection closes before its answer is audited on both sides as connection-closed", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await slowServer(t, home, c);
    const { client, entries } = await auditedClient(t, c, home, "closer", s.server);
    const pending = client.callTool({ name: "slow", arguments: { text: "cut" } });
    await until(() => s.runs.length > 0, "slow to start");
    await client.close();
    await assert.rejects(pending);
    const serverEntries = await s.entries(1);
    assert.deepEqual(
      serverEntries.map((e) => [e.decision, e.outcome, e.reason, e.tool]),
      [["allow", "error", "connection-closed", "slow"]],
    );
    assert.deepEqual(
      (await entries()).map((e) => [e.outcome, e.reason, e.tool]),
      [["error", "connection-closed", "slow"]],
    );
  });

  it("a call the transport fails to send is audited by its caller as send-failed", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await slowServer(t, home, c);
    const cut = onWire({
      outgoing: (m) => {
        if ("method" in m && m.method === "tools/call") throw new Error("the wire is cut");
        return m;
      },
    });
    const { client, entries } = await auditedClient(t, c, home, "unsent", s.server, cut);
    await assert.rejects(client.callTool({ name: "echo", arguments: { text: "lost" } }), /the wire is cut/);
    assert.deepEqual(s.runs, []);
    assert.deepEqual(
      (await entries()).map((e) => [e.outcome, e.reason, e.tool]),
      [["error", "send-failed", "echo"]],
    );
  });

  it("a call the caller cancels is audited on both sides as cancelled, and the client goes on working", async (t) => {
    const { home, aztp: c } = fixture(t);
    const s = await slowServer(t, home, c);
    const { client, entries } = await auditedClient(t, c, home, "canceller", s.server);

    const abort = new AbortController();
    const pending = client.callTool({ name: "slow", arguments: { text: "never" } }, undefined, {
      signal: abort.signal,
    });
    await until(() => s.runs.length > 0, "slow to start");
    abort.abort("the user gave up");
    await assert.rejects(pending);

    const serverEntries = await s.entries(1);
    assert.equal(serverEntries.length, 1);
    assert.equal(serverEntries[0]?.decision, "allow");
    assert.equal(serverEntries[0]?.outcome, "error");
    assert.equal(serverEntries[0]?.reason, "cancelled");

    const clientEntries = await entries();
    assert.deepEqual(
      clientEntries.map((e) => [e.tool, e.outcome, e.reason]),
      [["slow", "error", "cancelled"]],
    );

    // The tool finishing later sends nothing and records nothing more; the next call works.
    s.release();
    const r = await client.callTool({ name: "echo", arguments: { text: "after" } });
    assert.deepEqual(r.content, [{ type: "text", text: "after" }]);
    assert.equal((await s.entries(2)).length, 2);
  });

  it('a cancellation the SDK ignores (of request 0, of request "", with a reason that is not a string) does not end the call: its answer carries its receipt and it is audited as answered', async (t) => {
    const { home, aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "ignored-canceller")).identity;
    const cases: Array<[string, number | string, Record<string, unknown>]> = [
      ["request 0 (the 1.x SDK ignores a falsy requestId)", 0, {}],
      ['request "" (falsy too)', "", {}],
      ["a reason that is a number (the SDK's schema drops the notification)", 12, { reason: 5 }],
    ];
    for (const [name, id, extra] of cases) {
      const s = await slowServer(t, join(home, `case-${String(id) || "empty"}`), c);
      const peer = await rawPeer(s.server);
      // Id 0 was the initialize's: it may be used again once that is answered.
      const before = (await peer.answer(0)).length;
      const args = { text: name };
      const token = signInvocation(caller, { audience: s.server.identity.spiffeId, tool: "slow", args });
      await peer.send({
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: { name: "slow", arguments: args, _meta: { [INVOCATION_META_KEY]: token } },
      });
      await until(() => s.runs.length > 0, `${name}: slow to start`);
      await peer.send({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: id, ...extra },
      } as JSONRPCMessage);
      s.release();
      const answered = (await peer.answer(id, id === 0 ? before + 1 : 1)).at(-1);
      assert.ok(
        answered && "result" in answered && "content" in answered.result,
        `${name}: the server answered the call it did not cancel`,
      );
      assert.equal(
        typeof (answered.result._meta as Record<string, unknown> | undefined)?.[RECEIPT_META_KEY],
        "string",
        `${name}: with its receipt`,
      );
      const entries = await s.entries(1);
      assert.deepEqual(
        entries.map((e) => [e.decision, e.outcome, e.reason ?? null]),
        [["allow", "ok", null]],
        name,
      );
    }
  });

  it("a tools/call with members the SDK's schema rejects is refused at once (ERR_MCP_MESSAGE_INVALID), not admitted and left unanswered; its twin runs", async (t) => {
    const { home, aztp: c } = fixture(t);
    const caller = (await c.secureConnect({}, "odd-caller")).identity;
    const s = await slowServer(t, home, c);
    const peer = await rawPeer(s.server);
    const call = (
      id: number,
      text: string,
      edit: (m: Record<string, unknown>) => Record<string, unknown>,
    ): JSONRPCMessage => {
      const args = { text };
      const token = signInvocation(caller, { audience: s.server.identity.spiffeId, tool: "echo", args });
      return edit({
        jsonrpc: "2.0",
        id,
        method: "tools/call",
        params: { name: "echo", arguments: args, _meta: { [INVOCATION_META_KEY]: token } },
      }) as unknown as JSONRPCMessage;
    };
    const odd: Array<[string, (m: Record<string, unknown>) => Record<string, unknown>]> = [
      ["a member too many", (m) => ({ ...m, extra: true })],
      [
        "a progressToken that is not an integer",
        (m) => ({
          ...m,
          params: { ...(m.params as object), _meta: { ...(m.params as { _meta: object })._meta, progressToken: 1.5 } },
        }),
      ],
      ["a jsonrpc version other than 2.0", (m) => ({ ...m, jsonrpc: "1.0" })],
    ];
    let id = 20;
    for (const [name, edit] of odd) {
      await peer.send(call(++id, name, edit));
      const [refused] = await peer.answer(id);
      assert.ok(refused && "error" in refused, `${name}: answered at once with an error`);
      assert.equal((refused.error.data as { code?: string }).code, ErrorCodes.MCP_MESSAGE_INVALID, name);
    }
    assert.deepEqual(s.runs, [], "none ran");
    await peer.send(call(++id, "twin", (m) => m));
    const [ok] = await peer.answer(id);
    assert.ok(ok && "result" in ok);
    assert.deepEqual(s.runs, ["echo:twin"]);
    const entries = await s.entries(odd.length + 1);
    assert.deepEqual(
      entries.map((e) => [e.decision, e.reason ?? null]),
      [...odd.map(() => ["deny", ErrorCodes.MCP_MESSAGE_INVALID]), ["allow", null]],
    );
  });
});
