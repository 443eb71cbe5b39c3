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
  Client as ClientV2,
  InMemoryTransport as InMemoryTransportV2,
  isJSONRPCErrorResponse as isErrorResponseV2,
  isJSONRPCNotification as isNotificationV2,
  isJSONRPCRequest as isRequestV2,
  isJSONRPCResultResponse as isResultResponseV2,
} from "@modelcontextprotocol/client";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  EmptyResultSchema,
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  JSONRPCMessageSchema,
  type JSONRPCMessage,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { clientHooks, ServerBinding } from "../src/mcp/client.js";
import {
  isErrorResponse,
  isNotification,
  isRequest,
  isResponse,
  isResultResponse,
  PendingRequests,
  sdkResponseKey,
  sdkTakesAsResponse,
} from "../src/mcp/message.js";
import { INVOCATION_META_KEY } from "../src/mcp/meta.js";
import { serverHooks } from "../src/mcp/server.js";
import { newWorld, type World } from "./helpers/invocation-fixtures.js";
import { until } from "./helpers/mcp-util.js";

const SEED = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);

type Kinds = { request: boolean; notification: boolean; result: boolean; error: boolean };

function ours(m: unknown): Kinds {
  const msg = m as JSONRPCMessage;
  return {
    request: isRequest(msg),
    notification: isNotification(msg),
    result: isResultResponse(msg),
    error: isErrorResponse(msg),
  };
}

function sdks(m: unknown): Kinds {
  return {
    request: isJSONRPCRequest(m),
    notification: isJSONRPCNotification(m),
    result: isJSONRPCResultResponse(m),
    error: isJSONRPCErrorResponse(m),
  };
}

/** The 2.x SDK's guards (@modelcontextprotocol/client), which a 2.x client behind the hooks uses. */
function sdks2(m: unknown): Kinds {
  return {
    request: isRequestV2(m),
    notification: isNotificationV2(m),
    result: isResultResponseV2(m),
    error: isErrorResponseV2(m),
  };
}

describe("JSON-RPC message kinds: the same answers as the SDK", () => {
  const table: Array<[string, unknown, keyof Kinds]> = [
    [
      "request with params",
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "x", arguments: {} } },
      "request",
    ],
    ["request without params", { jsonrpc: "2.0", id: "a", method: "tools/list" }, "request"],
    ["request with id 0", { jsonrpc: "2.0", id: 0, method: "ping" }, "request"],
    ["notification", { jsonrpc: "2.0", method: "notifications/initialized" }, "notification"],
    [
      "notification with params",
      { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 0.5 } },
      "notification",
    ],
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
    const id = fc.oneof(
      fc.integer({ min: -5, max: 5 }),
      fc.string({ maxLength: 4 }),
      fc.constant(null),
      fc.double(),
      fc.boolean(),
    );
    const value = fc.oneof(
      fc.constant(null),
      fc.string({ maxLength: 4 }),
      fc.integer(),
      fc.array(fc.integer(), { maxLength: 2 }),
      fc.dictionary(
        fc.constantFrom("name", "code", "message", "_meta", "content"),
        fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.constant(null)),
        { maxKeys: 3 },
      ),
    );
    const obj = fc.dictionary(
      fc.constantFrom("name", "arguments", "_meta", "content", "progressToken"),
      fc.oneof(fc.string({ maxLength: 3 }), fc.integer(), fc.constant(null)),
      { maxKeys: 3 },
    );
    // A well-formed message of each kind, then up to two edits (a key removed, or set to any
    // value): most stay valid, the rest are the near misses that matter.
    const base = fc.oneof(
      fc.record(
        {
          jsonrpc: fc.constant("2.0"),
          id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })),
          method: fc.string({ maxLength: 12 }),
          params: obj,
        },
        { requiredKeys: ["jsonrpc", "id", "method"] },
      ),
      fc.record(
        { jsonrpc: fc.constant("2.0"), method: fc.string({ maxLength: 12 }), params: obj },
        { requiredKeys: ["jsonrpc", "method"] },
      ),
      fc.record({ jsonrpc: fc.constant("2.0"), id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })), result: obj }),
      fc.record(
        {
          jsonrpc: fc.constant("2.0"),
          id: fc.oneof(fc.integer(), fc.string({ maxLength: 4 })),
          error: fc.record(
            { code: fc.integer(), message: fc.string({ maxLength: 4 }), data: value },
            { requiredKeys: ["code", "message"] },
          ),
        },
        { requiredKeys: ["jsonrpc", "error"] },
      ),
    );
    const edit = fc.tuple(
      fc.constantFrom("jsonrpc", "id", "method", "params", "result", "error"),
      fc.option(fc.oneof(value, id), { nil: undefined }),
    );
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
        const theirs2 = sdks2(m);
        for (const kind of ["request", "notification", "result", "error"] as const) {
          if (theirs[kind]) assert.ok(mine[kind], `the SDK sees a ${kind}, the guard does not: ${JSON.stringify(m)}`);
          if (theirs2[kind])
            assert.ok(mine[kind], `the 2.x SDK sees a ${kind}, the guard does not: ${JSON.stringify(m)}`);
        }
        // What the hooks pass on as an answer (checked with sdkTakesAsResponse) both SDKs take.
        if (sdkTakesAsResponse(m as JSONRPCMessage))
          assert.ok(theirs2.result || theirs2.error, `1.x takes it as an answer, 2.x does not: ${JSON.stringify(m)}`);
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

/**
 * A real SDK Client (1.x or 2.x) over an in-memory link to a scripted peer, with requests in
 * flight: the oracle of which request an answer with a given id settles. The peer answers the
 * handshake itself and records each ping's id; the in-memory transports deliver synchronously,
 * so one setImmediate after an answer is enough to see what it settled.
 */
async function sdkMatcher(sdk: "1.x" | "2.x") {
  const [mine, theirs]: [Transport, Transport] =
    sdk === "1.x"
      ? InMemoryTransport.createLinkedPair()
      : (InMemoryTransportV2.createLinkedPair() as unknown as [Transport, Transport]);
  const pings: RequestId[] = [];
  theirs.onmessage = (m: JSONRPCMessage) => {
    const o = m as { id?: RequestId; method?: string; params?: { protocolVersion?: string } };
    if (o.method === "initialize")
      void theirs.send({
        jsonrpc: "2.0",
        id: o.id as RequestId,
        result: {
          protocolVersion: o.params?.protocolVersion ?? "2025-06-18",
          capabilities: {},
          serverInfo: { name: "peer", version: "1" },
        },
      });
    else if (o.method === "server/discover")
      void theirs.send({ jsonrpc: "2.0", id: o.id as RequestId, error: { code: -32601, message: "Method not found" } });
    else if (o.method === "ping") pings.push(o.id as RequestId);
  };
  await theirs.start();
  const v1 = sdk === "1.x" ? new Client({ name: "oracle", version: "1" }) : undefined;
  const v2 = sdk === "2.x" ? new ClientV2({ name: "oracle", version: "1" }) : undefined;
  const client = (v1 ?? v2) as { onerror?: (e: Error) => void; close(): Promise<void> };
  client.onerror = () => undefined; // "a response for an unknown message ID": expected here
  if (v1) await v1.connect(mine);
  else await v2!.connect(mine as never);
  const settled = new Set<RequestId>();
  return {
    /** Sends one more ping; resolves with its id. */
    async request(): Promise<RequestId> {
      const before = pings.length;
      const p = v1 ? v1.request({ method: "ping" }, EmptyResultSchema) : v2!.request({ method: "ping" });
      await until(() => pings.length > before, "the ping to go out");
      const id = pings[before] as RequestId;
      void (p as Promise<unknown>).then(
        () => settled.add(id),
        () => settled.add(id),
      );
      return id;
    },
    /** Sends an answer with `id`; resolves with the id of the request it settled, if any. */
    async answer(id: unknown): Promise<RequestId | undefined> {
      const before = new Set(settled);
      await theirs.send({ jsonrpc: "2.0", id, result: {} } as unknown as JSONRPCMessage);
      await new Promise((r) => setImmediate(r));
      const now = [...settled].filter((x) => !before.has(x));
      assert.ok(now.length <= 1, `one answer settled ${now.length} requests`);
      return now[0];
    },
    close: () => client.close(),
  };
}

describe("answers are matched to requests as the SDK matches them (PendingRequests)", () => {
  // Ids an attacker on the wire might answer with: every spelling Number() reads, and more.
  const numberish = fc.stringMatching(
    /^[ \t\n]{0,2}[+-]?(0x|0b|0o)?[0-9a-fA-F]{0,3}(\.[0-9]{0,2})?([eE][+-]?[0-9])?[ \t\n]{0,2}$/,
  );
  const anyId = fc.oneof(
    fc.integer({ min: -2, max: 12 }),
    numberish,
    fc.constantFrom("", " ", "\n", "-0", "0.0", "1e0", "Infinity", "NaN", "1_0", "١", "0x", "1n", "1.", ".1e1"),
    fc.double({ noNaN: false }),
    fc.constantFrom(2 ** 53, -0, null, true, false, undefined),
    fc.string({ maxLength: 3 }),
  );
  // Half the answers re-spell the id of a request in flight (or one just answered), so they hit.
  const spellings: Array<(n: number) => unknown> = [
    (n) => n,
    (n) => String(n),
    (n) => `${n}.0`,
    (n) => ` ${n}\t`,
    (n) => `0x${n.toString(16)}`,
    (n) => `0b${n.toString(2)}`,
    (n) => `+${n}e0`,
    (n) => `${n * 10}e-1`,
    (n) => `${n}.5`,
    (n) => n + 0.5,
    (n) => `${n}x`,
    (n) => [n],
  ];
  const answerId = fc.oneof(
    anyId.map((id) => ({ id })),
    fc.tuple(fc.nat(5), fc.nat(spellings.length - 1)).map(([pick, form]) => ({ pick, form })),
  );
  for (const sdk of ["1.x", "2.x"] as const) {
    it(`${sdk}: on 1,500 random answer ids, take() picks exactly the request the SDK's Client settles (or none)`, async () => {
      const oracle = await sdkMatcher(sdk);
      try {
        const model = new PendingRequests<null>();
        const inFlight: number[] = [];
        for (let i = 0; i < 4; i++) {
          const id = await oracle.request();
          model.set(id, null);
          inFlight.push(id as number);
        }
        let matched = 0;
        for (const a of fc.sample(answerId, { numRuns: 1_500, seed: SEED })) {
          const id =
            "id" in a ? a.id : spellings[a.form]!(inFlight[a.pick % inFlight.length]! + (a.pick >= 4 ? -1 : 0));
          const theirs = await oracle.answer(id);
          const mine = model.take(id)?.id;
          assert.equal(
            mine,
            theirs,
            `answer id ${JSON.stringify(id)}: the SDK settled ${String(theirs)}, take() picked ${String(mine)}`,
          );
          if (theirs !== undefined) {
            matched++;
            inFlight.splice(inFlight.indexOf(theirs as number), 1);
            const next = await oracle.request();
            model.set(next, null);
            inFlight.push(next as number);
          }
        }
        assert.ok(matched > 100, `only ${matched} answers matched a request: the sample misses the point`);
      } finally {
        await oracle.close();
      }
    });
  }

  it("sdkResponseKey is Number(id) for the ids the SDK's schema admits, and undefined for the rest", () => {
    const cases: Array<[unknown, number | undefined]> = [
      [1, 1],
      ["1", 1],
      ["1.0", 1],
      [" 1 ", 1],
      ["0x1", 1],
      ["+1e0", 1],
      ["", 0],
      ["-0", -0],
      ["abc", undefined],
      [1.5, undefined],
      [2 ** 53, undefined],
      [null, undefined],
      [true, undefined],
      [undefined, undefined],
    ];
    for (const [id, key] of cases) assert.equal(sdkResponseKey(id), key, JSON.stringify(id));
  });

  it("a string request id (the 2.x client's server/discover probe) is matched exactly, first, and never by Number", () => {
    const pending = new PendingRequests<string>();
    pending.set("server-discover-probe-1", "probe");
    pending.set(1, "call");
    pending.set("1", "string one");
    assert.equal(pending.take("server-discover-probe-1")?.value, "probe");
    assert.equal(pending.take("server-discover-probe-1"), undefined, "taken once");
    assert.equal(
      pending.take("1")?.value,
      "string one",
      "an exact string match first, as the 2.x listen and probe windows do",
    );
    assert.equal(pending.take(" 1")?.value, "call", "then Number(id), as Protocol does");
    assert.equal(pending.take(1), undefined);
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
      const sent = await hooks.outgoing(
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search", arguments: {} } },
        undefined,
      );
      assert.equal(
        typeof (sent as { params: { _meta: Record<string, unknown> } }).params._meta[INVOCATION_META_KEY],
        "string",
      );
      const delivered: unknown[] = [];
      hooks.incoming(
        message as JSONRPCMessage,
        undefined,
        (m) => delivered.push(m),
        async () => undefined,
      );
      assert.deepEqual(delivered, [message]);
      assert.equal(delivered[0], message, "the same object, unchanged");
    });

    it(`server side: ${name}`, async () => {
      const guard = new CalleeGuard({ identity: w.serverA, trust: w.trust });
      const hooks = serverHooks(guard, w.serverA);
      const delivered: unknown[] = [];
      const replies: unknown[] = [];
      hooks.incoming(
        message as JSONRPCMessage,
        undefined,
        (m) => delivered.push(m),
        async (m) => void replies.push(m),
      );
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(replies, [], "no refusal: not a tools/call");
      assert.equal(delivered[0], message);
      assert.equal(await hooks.outgoing(message as JSONRPCMessage, undefined), message);
    });
  }
});
