/**
 * The MCP binding tells JSON-RPC messages apart structurally (src/mcp/message.ts) instead of
 * with the SDK's zod guards. These tests hold it to the SDK: on every message the SDK itself
 * accepts, each guard answers exactly as the SDK's guard does (a table of the kinds, then
 * random messages); on any message, what the SDK's guard calls a request or a response ours
 * does too (else a call could bypass the verifier); no guard throws, and the secured client's and server's
 * hooks pass an odd message on untouched instead of failing on it.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  JSONRPCMessageSchema,
  type JSONRPCMessage,
} from "@modelcontextprotocol/sdk/types.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { clientHooks, ServerBinding } from "../src/mcp/client.js";
import { isErrorResponse, isNotification, isRequest, isResponse, isResultResponse } from "../src/mcp/message.js";
import { INVOCATION_META_KEY } from "../src/mcp/meta.js";
import { serverHooks } from "../src/mcp/server.js";
import { newWorld, type World } from "./helpers/invocation-fixtures.js";

const SEED = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);

type Kinds = { request: boolean; notification: boolean; result: boolean; error: boolean };

function ours(m: unknown): Kinds {
  const msg = m as JSONRPCMessage;
  return { request: isRequest(msg), notification: isNotification(msg), result: isResultResponse(msg), error: isErrorResponse(msg) };
}

function sdks(m: unknown): Kinds {
  return { request: isJSONRPCRequest(m), notification: isJSONRPCNotification(m), result: isJSONRPCResultResponse(m), error: isJSONRPCErrorResponse(m) };
}

describe("JSON-RPC message kinds: the same answers as the SDK", () => {
  const table: Array<[string, unknown, keyof Kinds]> = [
    ["request with params", { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "x", arguments: {} } }, "request"],
    ["request without params", { jsonrpc: "2.0", id: "a", method: "tools/list" }, "request"],
    ["request with id 0", { jsonrpc: "2.0", id: 0, method: "ping" }, "request"],
    ["notification", { jsonrpc: "2.0", method: "notifications/initialized" }, "notification"],
    ["notification with params", { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 0.5 } }, "notification"],
    ["result", { jsonrpc: "2.0", id: 1, result: { content: [] } }, "result"],
    ["empty result", { jsonrpc: "2.0", id: "x", result: {} }, "result"],
    ["error", { jsonrpc: "2.0", id: 1, error: { code: -32001, message: "refused", data: { code: "ERR_X" } } }, "error"],
    ["error without id (parse error)", { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" } }, "error"],
  ];
  for (const [name, message, kind] of table) {
    it(`${name}: ${kind}`, () => {
      assert.ok(JSONRPCMessageSchema.safeParse(message).success, "the SDK accepts the sample");
      const expected: Kinds = { request: false, notification: false, result: false, error: false, [kind]: true };
      assert.deepEqual(sdks(message), expected, "the SDK's own answer");
      assert.deepEqual(ours(message), expected);
      assert.equal(isResponse(message as JSONRPCMessage), kind === "result" || kind === "error");
    });
  }

  // Whatever the SDK's Protocol would dispatch as a request or take as a response, the hooks
  // must see as one too: a tools/call the guard did not recognise would run unverified, and a
  // result it did not recognise would reach the caller without its receipt checked. The other
  // way (the guard looks at something the SDK then drops) costs nothing.
  it("random messages: same kind as the SDK's guards on all it accepts, at least its kinds on the rest, never a throw", () => {
    const id = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.string({ maxLength: 4 }), fc.constant(null), fc.double(), fc.boolean());
    const value = fc.oneof(
      fc.constant(null),
      fc.string({ maxLength: 4 }),
      fc.integer(),
      fc.array(fc.integer(), { maxLength: 2 }),
      fc.dictionary(fc.constantFrom("name", "code", "message", "_meta", "content"), fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.constant(null)), { maxKeys: 3 }),
    );
    const obj = fc.dictionary(fc.constantFrom("name", "arguments", "_meta", "content", "progressToken"), fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.constant(null)), { maxKeys: 3 });
    // A well-formed message of each kind, then up to two edits (a key removed, or set to any
    // value): most stay valid, the rest are the near misses that matter.
    const base = fc.oneof(
      fc.record({ jsonrpc: fc.constant("2.0"), id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), method: fc.string({ maxLength: 12 }), params: obj }, { requiredKeys: ["jsonrpc", "id", "method"] }),
      fc.record({ jsonrpc: fc.constant("2.0"), method: fc.string({ maxLength: 12 }), params: obj }, { requiredKeys: ["jsonrpc", "method"] }),
      fc.record({ jsonrpc: fc.constant("2.0"), id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), result: obj }),
      fc.record({ jsonrpc: fc.constant("2.0"), id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), error: fc.record({ code: fc.integer(), message: fc.string({ maxLength: 4 }), data: value }, { requiredKeys: ["code", "message"] }) }, { requiredKeys: ["jsonrpc", "error"] }),
    );
    const edit = fc.tuple(fc.constantFrom("jsonrpc", "id", "method", "params", "result", "error"), fc.option(fc.oneof(value, id), { nil: undefined }));
    const message = fc.tuple(base, fc.array(edit, { maxLength: 2 })).map(([m, edits]) => {
      const out: Record<string, unknown> = { ...m };
      for (const [key, v] of edits) {
        if (v === undefined) delete out[key];
        else out[key] = v;
      }
      return out;
    });
    let accepted = 0;
    fc.assert(
      fc.property(message, (m) => {
        const mine = ours(m); // must not throw, whatever the shape
        const theirs = sdks(m);
        for (const kind of ["request", "notification", "result", "error"] as const) {
          if (theirs[kind]) assert.ok(mine[kind], `the SDK sees a ${kind}, the guard does not: ${JSON.stringify(m)}`);
        }
        if (!JSONRPCMessageSchema.safeParse(m).success) return;
        accepted++;
        assert.deepEqual(mine, theirs, JSON.stringify(m));
      }),
      { numRuns: 20_000, seed: SEED },
    );
    // The generator must reach the interesting part: messages the SDK accepts.
    assert.ok(accepted > 5_000, `only ${accepted} SDK-valid messages generated`);
  });
});

describe("hooks pass odd messages on untouched", () => {
  let w: World;
  before(async () => {
    w = await newWorld();
  });
  after(() => w.close());

  const odd: Array<[string, unknown]> = [
    ["result null", { jsonrpc: "2.0", id: 1, result: null }],
    ["result a string", { jsonrpc: "2.0", id: 1, result: "ok" }],
    ["result a list", { jsonrpc: "2.0", id: 1, result: [1] }],
    ["error null", { jsonrpc: "2.0", id: 1, error: null }],
    ["error without code", { jsonrpc: "2.0", id: 1, error: { message: "x" } }],
    ["params a list", { jsonrpc: "2.0", id: 1, method: "tools/call", params: ["x"] }],
    ["method a number", { jsonrpc: "2.0", id: 1, method: 7 }],
  ];

  for (const [name, message] of odd) {
    it(`client side: ${name}`, async () => {
      const guard = new CallerGuard({ identity: w.caller, trust: w.trust });
      const hooks = clientHooks(guard, new ServerBinding(w.serverA.spiffeId), { trust: w.trust });
      // A signed call with id 1 is pending, so a response with id 1 is looked at closely.
      const sent = await hooks.outgoing({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search", arguments: {} } }, undefined);
      assert.equal(typeof (sent as { params: { _meta: Record<string, unknown> } }).params._meta[INVOCATION_META_KEY], "string");
      const delivered: unknown[] = [];
      hooks.incoming(message as JSONRPCMessage, undefined, (m) => delivered.push(m), async () => undefined);
      assert.deepEqual(delivered, [message]);
      assert.equal(delivered[0], message, "the same object, unchanged");
    });

    it(`server side: ${name}`, async () => {
      const guard = new CalleeGuard({ identity: w.serverA, trust: w.trust });
      const hooks = serverHooks(guard, w.serverA);
      const delivered: unknown[] = [];
      const replies: unknown[] = [];
      hooks.incoming(message as JSONRPCMessage, undefined, (m) => delivered.push(m), async (m) => void replies.push(m));
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(replies, [], "no refusal: not a tools/call");
      assert.equal(delivered[0], message);
      assert.equal(await hooks.outgoing(message as JSONRPCMessage, undefined), message);
    });
  }
});
