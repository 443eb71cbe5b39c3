/**
 * A man in the middle on the transport of a secured client (below its AZTP layer), over
 * in-memory and Streamable HTTP on 127.0.0.1, in both directions: it re-spells ids (another
 * JSON type, other number spellings), edits results and `_meta`, renames methods, adds
 * members, swaps the answers of concurrent calls and tampers with the initialize challenge.
 * Every attack ends for the application in an error with its code (enforce mode), never in
 * a result the receipt check did not pass, and each test counts what the tool ran. A passing
 * twin of each attack shows the refusal is the attack's, not a broken fixture's.
 *
 * The MCP SDK matches an answer to its request by Number(id), so `"1"` answers request 1; the
 * hooks once keyed their maps by the raw id, and such an answer reached the application
 * unchecked. The SDK also drops an answer its strict schemas reject (a member too many, both
 * result and error), which let a checked answer be dropped and a forged one follow it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { McpError, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AuditEntry } from "../src/audit/entry.js";
import type { Aztp } from "../src/client/aztp.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import {
  InterceptingTransport,
  secureMcpClient,
  type MessageHooks,
  type SecureMcpClientOptions,
} from "../src/mcp/index.js";
import { CHALLENGE_META_KEY, IDENTITY_META_KEY, RECEIPT_META_KEY } from "../src/mcp/meta.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import {
  fixture,
  idOf,
  onWire,
  securedClient,
  rejectsWithData,
  startHarness,
  tap,
  withTimeout,
  type Harness,
  type TransportKind,
  type Wrap,
} from "./helpers/mcp-util.js";
import { securedToolServer, toolAnswer } from "./helpers/mcp-tool-server.js";
import { Client as ClientV2, ProtocolError } from "@modelcontextprotocol/client";

type Message = Record<string, unknown>;

/**
 * The man in the middle: sees each message going out (and may replace it) and each coming in,
 * which it may drop, replace, hold, or follow with others (`deliver` may be called any number
 * of times, now or later). It knows which ids were tools/call requests.
 */
interface Mitm {
  wrap: Wrap;
  /** Ids (as sent on the wire) of the tools/call requests that went out. */
  callIds: Set<unknown>;
}
function mitm(edit: {
  outgoing?: (m: Message) => Message;
  incoming?: (m: Message, deliver: (m: unknown) => void, isCallAnswer: boolean) => void;
}): Mitm {
  const callIds = new Set<unknown>();
  const wrap: Wrap = (inner) =>
    new InterceptingTransport(inner, {
      outgoing(message) {
        const out = edit.outgoing
          ? (edit.outgoing(message as unknown as Message) as unknown as JSONRPCMessage)
          : message;
        const o = out as unknown as Message;
        if (o.method === "tools/call") callIds.add(o.id);
        return out;
      },
      incoming(message, _extra, deliver) {
        const m = message as unknown as Message;
        const isCallAnswer = !("method" in m) && callIds.has(m.id);
        if (edit.incoming) edit.incoming(m, (x) => deliver(x as JSONRPCMessage), isCallAnswer);
        else deliver(message);
      },
    });
  return { wrap, callIds };
}

const FORGED = { content: [{ type: "text", text: JSON.stringify({ tool: "echo", value: "forged", runs: 0 }) }] };

function suite(kind: TransportKind): void {
  const harness = (t: TestContext, c: Aztp, home: string, audit = true): Promise<Harness> =>
    startHarness(t, kind, c, home, { name: "tools", ...(audit ? { audit: join(home, "server-audit.jsonl") } : {}) });

  /** An honest call's answer: its tool ran, and this is how many runs there have been. */
  const runsNow = async (client: Client): Promise<number> =>
    toolAnswer(await client.callTool({ name: "echo", arguments: { text: "count" } })).runs;

  describe("ids", () => {
    // Each is a string the SDK's Number(id) reads as the number of the request it answers.
    const spellings: Array<[string, (id: number) => string]> = [
      ['"1" (a string)', (id) => String(id)],
      ['"1.0"', (id) => `${id}.0`],
      ['" 1 " (white space)', (id) => ` ${id} `],
      ['"0x1" (hex)', (id) => `0x${id.toString(16)}`],
      ['"+1e0" (exponent)', (id) => `+${id}e0`],
    ];
    for (const [name, spell] of spellings) {
      it(`an answer re-spelled ${name} is matched as the SDK matches it: forged and without a receipt it is refused (ERR_RECEIPT_MISSING); genuine, it passes`, async (t) => {
        const { home, aztp: c } = fixture(t);
        const h = await harness(t, c, home, false);
        let forge = true;
        const wire = mitm({
          incoming(m, deliver, isCallAnswer) {
            if (!isCallAnswer) return deliver(m);
            const id = spell(m.id as number);
            deliver(forge ? { jsonrpc: "2.0", id, result: FORGED } : { ...m, id });
          },
        });
        const { client, audit } = await securedClient(t, c, home, "agent");
        await h.connect(client, wire.wrap);
        await rejectsWithData(
          client.callTool({ name: "echo", arguments: { text: "real" } }),
          ErrorCodes.RECEIPT_MISSING,
          "forged answer",
        );
        forge = false;
        const genuine = await client.callTool({ name: "echo", arguments: { text: "real" } });
        assert.deepEqual(
          toolAnswer(genuine),
          { tool: "echo", value: "real", runs: 2 },
          "the genuine answer under the re-spelled id, its receipt checked",
        );
        assert.deepEqual(
          (await audit()).map((e) => [e.decision, e.reason ?? null]),
          [
            ["deny", ErrorCodes.RECEIPT_MISSING],
            ["allow", null],
          ],
        );
      });
    }

    it('the initialize answer re-spelled "" (Number("") is 0, the id of initialize) is still the handshake: with its proof removed the connection is refused (ERR_PROOF_INVALID)', async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const strip = (m: Message): Message => {
        const result = { ...(m.result as Message) };
        const meta = { ...(result._meta as Message) };
        delete meta[IDENTITY_META_KEY];
        return { ...m, id: "", result: { ...result, _meta: meta } };
      };
      const bad = mitm({ incoming: (m, deliver) => deliver(m.id === 0 && "result" in m ? strip(m) : m) });
      const { client } = await securedClient(t, c, home, "agent");
      await rejectsWithData(
        withTimeout(h.connect(client, bad.wrap), 10_000, "connect"),
        ErrorCodes.PROOF_INVALID,
        "initialize without proof",
      );
      assert.equal(client.aztpServer.serverId, undefined, "nothing pinned");

      const twin = await securedClient(t, c, home, "agent-2");
      const respelled = mitm({ incoming: (m, deliver) => deliver(m.id === 0 && "result" in m ? { ...m, id: "" } : m) });
      await h.connect(twin.client, respelled.wrap);
      assert.equal(
        twin.client.aztpServer.serverId?.toString(),
        idOf("tools"),
        "the genuine proof under the re-spelled id is checked and pins the server",
      );
    });

    it('a request re-spelled on the way out ("1" for 1) is answered under that spelling: its answer is still checked, and without its receipt refused', async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      let strip = true;
      const wire = mitm({
        outgoing: (m) => (m.method === "tools/call" ? { ...m, id: String(m.id) } : m),
        incoming(m, deliver, isCallAnswer) {
          if (!isCallAnswer || !strip || !("result" in m)) return deliver(m);
          const { _meta: _gone, ...result } = m.result as Message;
          deliver({ ...m, result });
        },
      });
      const { client } = await securedClient(t, c, home, "agent");
      await h.connect(client, wire.wrap);
      await rejectsWithData(
        client.callTool({ name: "echo", arguments: { text: "x" } }),
        ErrorCodes.RECEIPT_MISSING,
        "receipt stripped",
      );
      strip = false;
      assert.equal(
        toolAnswer(await client.callTool({ name: "echo", arguments: { text: "y" } })).runs,
        2,
        "twin: the answer to the re-spelled request passes with its receipt",
      );
      assert.ok(
        [...wire.callIds].every((id) => typeof id === "string"),
        "the requests did go out re-spelled",
      );
    });
  });

  describe("members the SDK would not read", () => {
    // Each first answer is one the SDK's strict schemas drop; a forged answer follows under the
    // same id. The hooks once checked the first and let the SDK drop it, so the forgery was
    // the one the SDK took, unchecked.
    const firsts: Array<[string, (m: Message) => Message, ErrorCode | "genuine"]> = [
      [
        "both result and error",
        (m) => ({ ...m, error: { code: -32603, message: "and an error" } }),
        ErrorCodes.MCP_MESSAGE_INVALID,
      ],
      ["a member too many", (m) => ({ ...m, extra: true }), "genuine"],
      [
        "a result _meta the SDK rejects (progressToken 1.5)",
        (m) => ({
          ...m,
          result: {
            ...(m.result as Message),
            _meta: { ...((m.result as Message)._meta as Message), progressToken: 1.5 },
          },
        }),
        ErrorCodes.MCP_MESSAGE_INVALID,
      ],
      [
        "_meta a list",
        (m) => ({
          ...m,
          result: { ...(m.result as Message), _meta: [(m.result as { _meta: Message })._meta[RECEIPT_META_KEY]] },
        }),
        ErrorCodes.MCP_MESSAGE_INVALID,
      ],
      [
        "_meta a string",
        (m) => ({
          ...m,
          result: { ...(m.result as Message), _meta: (m.result as { _meta: Message })._meta[RECEIPT_META_KEY] },
        }),
        ErrorCodes.MCP_MESSAGE_INVALID,
      ],
      [
        "_meta null",
        (m) => ({ ...m, result: { ...(m.result as Message), _meta: null } }),
        ErrorCodes.MCP_MESSAGE_INVALID,
      ],
    ];
    for (const [name, edit, outcome] of firsts) {
      it(`${name}, then a forged answer under the same id: the application gets ${outcome === "genuine" ? "the genuine result" : outcome}, never the forgery`, async (t) => {
        const { home, aztp: c } = fixture(t);
        const h = await harness(t, c, home, false);
        let attack = true;
        const wire = mitm({
          incoming(m, deliver, isCallAnswer) {
            if (!isCallAnswer || !attack) return deliver(m);
            deliver(edit(m));
            deliver({ jsonrpc: "2.0", id: m.id, result: FORGED });
          },
        });
        const { client } = await securedClient(t, c, home, "agent");
        await h.connect(client, wire.wrap);
        const call = client.callTool({ name: "echo", arguments: { text: "real" } });
        if (outcome === "genuine")
          assert.deepEqual(toolAnswer(await withTimeout(call, 10_000, "call")), {
            tool: "echo",
            value: "real",
            runs: 1,
          });
        else await rejectsWithData(call, outcome, name);
        attack = false;
        assert.equal(await runsNow(client), 2, "the tool ran once per call");
      });
    }

    it("a method added to an answer makes it no answer, for the SDK and the hooks alike: the forgery that follows is checked as the call's answer and refused", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const wire = mitm({
        incoming(m, deliver, isCallAnswer) {
          if (!isCallAnswer) return deliver(m);
          deliver({ ...m, method: "tools/call" });
          deliver({ jsonrpc: "2.0", id: m.id, result: FORGED });
        },
      });
      const { client } = await securedClient(t, c, home, "agent");
      await h.connect(client, wire.wrap);
      await rejectsWithData(
        client.callTool({ name: "echo", arguments: { text: "real" } }),
        ErrorCodes.RECEIPT_MISSING,
        "forgery after a method-bearing answer",
      );
    });
  });

  describe("results and receipts", () => {
    const edits: Array<[string, (m: Message, earlier: string | undefined) => Message, ErrorCode | "an MCP error"]> = [
      [
        "the receipt removed",
        (m) => ({ ...m, result: { ...(m.result as Message), _meta: {} } }),
        ErrorCodes.RECEIPT_MISSING,
      ],
      [
        "the receipt replaced by an earlier call's",
        (m, earlier) => ({ ...m, result: { ...(m.result as Message), _meta: { [RECEIPT_META_KEY]: earlier } } }),
        ErrorCodes.RECEIPT_MISMATCH,
      ],
      [
        "the receipt replaced by garbage",
        (m) => ({ ...m, result: { ...(m.result as Message), _meta: { [RECEIPT_META_KEY]: "a.b.c" } } }),
        ErrorCodes.RECEIPT_INVALID,
      ],
      [
        "the content changed",
        (m) => ({ ...m, result: { ...(m.result as Message), content: FORGED.content } }),
        ErrorCodes.RECEIPT_MISMATCH,
      ],
      [
        "isError set",
        (m) => ({ ...m, result: { ...(m.result as Message), isError: true } }),
        ErrorCodes.RECEIPT_MISMATCH,
      ],
      [
        "the whole answer replaced by an error",
        (m) => ({ jsonrpc: "2.0", id: m.id, error: { code: -32603, message: "forged failure" } }),
        "an MCP error",
      ],
      // Hostile JSON on the way back (what JSON.parse makes of `\ud800`, `1e400`, a __proto__ member).
      [
        "a lone surrogate put in the content",
        (m) => ({ ...m, result: { ...(m.result as Message), content: [{ type: "text", text: "\ud800" }] } }),
        ErrorCodes.JSON_UNREPRESENTABLE,
      ],
      [
        "a non-finite number added",
        (m) => ({ ...m, result: { ...(m.result as Message), score: JSON.parse("1e400") as number } }),
        ErrorCodes.JSON_UNREPRESENTABLE,
      ],
      [
        "a __proto__ member added",
        (m) => ({
          ...m,
          result: Object.assign(JSON.parse('{"__proto__":{"isError":true}}') as Message, m.result as Message),
        }),
        ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED,
      ],
    ];
    for (const [name, edit, expected] of edits) {
      it(`${name}: refused (${expected}), the tool having run once`, async (t) => {
        const { home, aztp: c } = fixture(t);
        const h = await harness(t, c, home, false);
        let earlier: string | undefined;
        let attack = false;
        const wire = mitm({
          incoming(m, deliver, isCallAnswer) {
            if (!isCallAnswer) return deliver(m);
            if (!attack) {
              earlier = ((m.result as Message)._meta as Message)[RECEIPT_META_KEY] as string;
              return deliver(m);
            }
            deliver(edit(m, earlier));
          },
        });
        const { client } = await securedClient(t, c, home, "agent");
        await h.connect(client, wire.wrap);
        assert.equal(await runsNow(client), 1);
        attack = true;
        const attacked = client.callTool({ name: "echo", arguments: { text: "x" } });
        if (expected === "an MCP error") {
          await assert.rejects(
            withTimeout(attacked, 10_000, name),
            (e: unknown) => e instanceof McpError && e.code === -32603,
          );
        } else {
          await rejectsWithData(attacked, expected, name);
        }
        attack = false;
        assert.equal(await runsNow(client), 3, "the attacked call ran its tool once, as the honest ones");
      });
    }
  });

  describe("methods", () => {
    for (const method of ["tools/Call", "TOOLS/CALL", "tools/call ", "tools/call\u0000"]) {
      it(`a tools/call renamed ${JSON.stringify(method)} on the way out never runs the tool, and the call ends in an error`, async (t) => {
        const { home, aztp: c } = fixture(t);
        const h = await harness(t, c, home, false);
        let rename = true;
        const wire = mitm({ outgoing: (m) => (rename && m.method === "tools/call" ? { ...m, method } : m) });
        const { client } = await securedClient(t, c, home, "agent");
        await h.connect(client, wire.wrap);
        const failed = await withTimeout(
          client.callTool({ name: "echo", arguments: { text: "x" } }),
          10_000,
          "renamed call",
        ).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.ok(failed instanceof McpError, `an MCP error: ${String(failed)}`);
        rename = false;
        assert.equal(await runsNow(client), 1, "the renamed call did not run the tool");
      });
    }
  });

  describe("order", () => {
    it("the answers of two concurrent calls swapped (ids exchanged on the way back) are both refused (ERR_RECEIPT_MISMATCH)", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const held: Message[] = [];
      let attack = true;
      const wire = mitm({
        incoming(m, deliver, isCallAnswer) {
          if (!isCallAnswer || !attack) return deliver(m);
          held.push(m);
          if (held.length < 2) return;
          const [a, b] = held as [Message, Message];
          deliver({ ...a, id: b.id });
          deliver({ ...b, id: a.id });
        },
      });
      const { client } = await securedClient(t, c, home, "agent");
      await h.connect(client, wire.wrap);
      const calls = [
        client.callTool({ name: "echo", arguments: { text: "A" } }),
        client.callTool({ name: "echo", arguments: { text: "B" } }),
      ];
      await rejectsWithData(calls[0]!, ErrorCodes.RECEIPT_MISMATCH, "A got B's answer");
      await rejectsWithData(calls[1]!, ErrorCodes.RECEIPT_MISMATCH, "B got A's answer");
      attack = false;
      assert.equal(await runsNow(client), 3);
    });

    it("the two requests' ids exchanged on the way out: each answer comes back under the other call's id, and both are refused (ERR_RECEIPT_MISMATCH)", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const held: Message[] = [];
      let attack = true;
      let release: (m: Message) => void = () => undefined;
      const wrap: Wrap = (inner) => {
        const t2 = new InterceptingTransport(inner, {
          async outgoing(message) {
            const m = message as unknown as Message;
            if (!attack || m.method !== "tools/call") return message;
            held.push(m);
            if (held.length === 1)
              return new Promise<JSONRPCMessage>(
                (resolve) => (release = (x) => resolve(x as unknown as JSONRPCMessage)),
              );
            const [a, b] = held as [Message, Message];
            release({ ...a, id: b.id });
            return { ...b, id: a.id } as unknown as JSONRPCMessage;
          },
          incoming: (m, _e, deliver) => deliver(m),
        } satisfies MessageHooks);
        return t2;
      };
      const { client } = await securedClient(t, c, home, "agent");
      await h.connect(client, wrap);
      const calls = [
        client.callTool({ name: "echo", arguments: { text: "A" } }),
        client.callTool({ name: "echo", arguments: { text: "B" } }),
      ];
      await rejectsWithData(calls[0]!, ErrorCodes.RECEIPT_MISMATCH, "A");
      await rejectsWithData(calls[1]!, ErrorCodes.RECEIPT_MISMATCH, "B");
      attack = false;
      assert.equal(await runsNow(client), 3);
    });
  });

  describe("the initialize challenge (client to server)", () => {
    const challenges: Array<[string, unknown]> = [
      ["a nonce of 15 characters", { nonce: "a".repeat(15) }],
      ["a nonce of 257 characters", { nonce: "a".repeat(257) }],
      ["a nonce that is not base64url", { nonce: "!".repeat(22) }],
      ["a nonce that is a number", { nonce: 1234567890123456 }],
      ["no nonce", { client: idOf("agent") }],
      ["a client that is not an ID", { nonce: "a".repeat(22), client: "not an id" }],
      ["a client that is a number", { nonce: "a".repeat(22), client: 7 }],
      ["a challenge that is a string", "a".repeat(22)],
      ["a challenge that is a list", ["a".repeat(22)]],
      ["a challenge that is null", null],
    ];
    for (const [name, challenge] of challenges) {
      it(`${name}: the initialize is answered at once with ERR_MCP_CHALLENGE_INVALID, not left hanging`, async (t) => {
        const { home, aztp: c } = fixture(t);
        const h = await harness(t, c, home, false);
        const client = new Client({ name: "plain", version: "1.0.0" });
        t.after(() => client.close().catch(() => undefined));
        const inject = onWire({
          outgoing: (m) => {
            const o = m as unknown as Message;
            if (o.method !== "initialize") return m;
            const params = o.params as Message;
            return {
              ...o,
              params: { ...params, _meta: { [CHALLENGE_META_KEY]: challenge } },
            } as unknown as JSONRPCMessage;
          },
        });
        await rejectsWithData(
          withTimeout(h.connect(client, inject), 10_000, "initialize with a malformed challenge"),
          ErrorCodes.MCP_CHALLENGE_INVALID,
          name,
        );
      });
    }

    it("a secured client whose nonce is cut short on the way gets ERR_MCP_CHALLENGE_INVALID at once; its twin with a well-formed challenge is proven", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const cut = onWire({
        outgoing: (m) => {
          const o = m as unknown as { method?: string; params?: { _meta?: Record<string, { nonce: string }> } };
          const ch = o.params?._meta?.[CHALLENGE_META_KEY];
          if (o.method === "initialize" && ch) ch.nonce = ch.nonce.slice(0, 8);
          return m;
        },
      });
      const { client } = await securedClient(t, c, home, "agent");
      await rejectsWithData(
        withTimeout(h.connect(client, cut), 10_000, "connect"),
        ErrorCodes.MCP_CHALLENGE_INVALID,
        "short nonce",
      );
      const twin = await securedClient(t, c, home, "agent-2");
      await h.connect(twin.client);
      assert.equal(twin.client.aztpServer.serverId?.toString(), idOf("tools"));
    });

    it("a well-formed challenge without a client (the proof then has no audience) is answered with a proof", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home, false);
      const client = new Client({ name: "plain", version: "1.0.0" });
      t.after(() => client.close().catch(() => undefined));
      const wire = tap();
      const inject = onWire({
        outgoing: (m) => {
          const o = m as unknown as Message;
          if (o.method !== "initialize") return m;
          return {
            ...o,
            params: { ...(o.params as Message), _meta: { [CHALLENGE_META_KEY]: { nonce: "b".repeat(22) } } },
          } as unknown as JSONRPCMessage;
        },
      });
      await h.connect(client, (inner) => inject(wire.wrap(inner)));
      const init = wire.received.find((m) => "result" in m) as
        { result: { _meta: Record<string, unknown> } } | undefined;
      assert.equal(typeof init?.result._meta[IDENTITY_META_KEY], "string", "a signed proof");
    });
  });

  describe("revocation", () => {
    it("a server revoked mid-session gets no more calls (ERR_CALLEE_REVOKED): the call is refused before it is sent, and audited", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home);
      const wire = tap();
      const { client, audit } = await securedClient(t, c, home, "agent");
      await h.connect(client, wire.wrap);
      assert.equal(await runsNow(client), 1);
      await c.revokeIdentity(idOf("tools"), "compromised");
      const failed = await withTimeout(
        client.callTool({ name: "echo", arguments: { text: "after" } }),
        10_000,
        "call to a revoked server",
      ).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(
        failed instanceof AztpError && failed.code === ErrorCodes.CALLEE_REVOKED,
        `refused with ERR_CALLEE_REVOKED: ${String(failed)}`,
      );
      assert.equal(
        wire.sent.filter((m) => (m as Message).method === "tools/call").length,
        1,
        "the second call never went out",
      );
      assert.equal((await h.serverAudit(1)).length, 1, "the server saw one call");
      assert.deepEqual(
        (await audit()).map((e) => [e.decision, e.reason ?? null]),
        [
          ["allow", null],
          ["deny", ErrorCodes.CALLEE_REVOKED],
        ],
      );
    });

    it("in audit mode the call to a revoked server goes, and the revocation is recorded from its receipt", async (t) => {
      const { home, aztp: c } = fixture(t);
      const h = await harness(t, c, home);
      const { client, audit } = await securedClient(t, c, home, "agent", { mode: "audit" });
      await h.connect(client);
      assert.equal(await runsNow(client), 1);
      await c.revokeIdentity(idOf("tools"), "compromised");
      assert.equal(await runsNow(client), 2, "audit mode lets it through");
      assert.deepEqual(
        (await audit()).map((e) => [e.decision, e.reason ?? null]),
        [
          ["allow", null],
          ["audit-only", ErrorCodes.CALLEE_REVOKED],
        ],
      );
    });
  });
}

describe("man in the middle: in-memory", () => suite("memory"));

describe("man in the middle: the 2.x SDK's Client (which also matches by Number(id), and its handshake probe by the exact string id)", () => {
  it('a forged answer re-spelled "1" is refused (ERR_RECEIPT_MISSING); the genuine one re-spelled passes', async (t) => {
    const { aztp: c } = fixture(t);
    const counter = { runs: 0 };
    const server = await securedToolServer(counter, { client: c, name: "tools" });
    const [mine, theirs] = InMemoryTransport.createLinkedPair();
    await server.connect(theirs);
    let forge = true;
    const wire = mitm({
      incoming(m, deliver, isCallAnswer) {
        if (!isCallAnswer) return deliver(m);
        deliver(forge ? { jsonrpc: "2.0", id: String(m.id), result: FORGED } : { ...m, id: String(m.id) });
      },
    });
    const client = new ClientV2({ name: "agent-2x", version: "1.0.0" });
    t.after(async () => {
      await client.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    });
    const secured = await secureMcpClient(client as unknown as Client, { client: c, name: "agent-2x" });
    await withTimeout(client.connect(wire.wrap(mine) as never), 10_000, "2.x connect");
    assert.equal(secured.aztpServer.serverId?.toString(), idOf("tools"), "the server proved itself to the 2.x client");
    await rejectsWithData(
      client.callTool({ name: "echo", arguments: { text: "real" } }),
      ErrorCodes.RECEIPT_MISSING,
      "forged",
      ProtocolError,
    );
    forge = false;
    const genuine = await client.callTool({ name: "echo", arguments: { text: "real" } });
    assert.deepEqual(toolAnswer(genuine), { tool: "echo", value: "real", runs: 2 });
  });
});
describe("man in the middle: Streamable HTTP on 127.0.0.1", () => suite("http"));

describe("no silence: a hook that throws ends in an error answer", () => {
  /** A plain McpServer with `echo` (counting runs) behind hooks, and a plain client over memory. */
  async function pair(t: TestContext, serverHooks: Partial<MessageHooks>, clientHooks: Partial<MessageHooks> = {}) {
    const runs = { n: 0 };
    const server = new McpServer({ name: "hooked", version: "1.0.0" });
    server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => {
      runs.n++;
      return { content: [{ type: "text", text }] };
    });
    const [a, b] = InMemoryTransport.createLinkedPair();
    const pass: MessageHooks = { incoming: (m, _e, deliver) => deliver(m), outgoing: (m) => m };
    const errors: Error[] = [];
    const serverSide = new InterceptingTransport(b, { ...pass, ...serverHooks });
    await server.connect(serverSide as Transport);
    const prior = serverSide.onerror;
    serverSide.onerror = (e) => {
      errors.push(e);
      prior?.(e);
    };
    const client = new Client({ name: "plain", version: "1.0.0" });
    t.after(async () => {
      await client.close().catch(() => undefined);
      await server.close().catch(() => undefined);
    });
    await client.connect(new InterceptingTransport(a, { ...pass, ...clientHooks }));
    return { client, runs, errors };
  }
  const call = (client: Client) => client.callTool({ name: "echo", arguments: { text: "x" } });

  it("the server's incoming hook throws on a request: the caller gets ERR_MCP_HOOK_FAILED at once, the tool never runs", async (t) => {
    const { client, runs, errors } = await pair(t, {
      incoming(m, _e, deliver) {
        if ("method" in m && m.method === "tools/call") throw new Error("boom in incoming");
        deliver(m);
      },
    });
    const e = await rejectsWithData(call(client), ErrorCodes.MCP_HOOK_FAILED, "incoming throws");
    assert.match(e.message, /boom in incoming/);
    assert.equal(runs.n, 0);
    assert.ok(
      errors.some((x) => /boom in incoming/.test(x.message)),
      "and it is reported on onerror too",
    );
  });

  it("an AztpError thrown by a hook keeps its code in the answer", async (t) => {
    const { client } = await pair(t, {
      incoming(m, _e, deliver) {
        if ("method" in m && m.method === "tools/call") throw new AztpError(ErrorCodes.POLICY_DENIED, "not you");
        deliver(m);
      },
    });
    await rejectsWithData(call(client), ErrorCodes.POLICY_DENIED, "AztpError from incoming");
  });

  it("the server's outgoing hook throws on a response: an error answer goes out for that id instead", async (t) => {
    const { client, runs } = await pair(t, {
      outgoing(m) {
        if ("result" in m && Array.isArray((m.result as { content?: unknown }).content))
          throw new Error("boom in outgoing");
        return m;
      },
    });
    await rejectsWithData(call(client), ErrorCodes.MCP_HOOK_FAILED, "outgoing throws");
    assert.equal(runs.n, 1, "the tool ran; its answer could not go out, and an error did");
  });

  it("the client's incoming hook throws on a response: the application's request rejects with ERR_MCP_HOOK_FAILED", async (t) => {
    const { client } = await pair(
      t,
      {},
      {
        incoming(m, _e, deliver) {
          if ("result" in m && Array.isArray((m.result as { content?: unknown }).content))
            throw new Error("boom on the way back");
          deliver(m);
        },
      },
    );
    await rejectsWithData(call(client), ErrorCodes.MCP_HOOK_FAILED, "client incoming throws");
  });

  it("twin: hooks that do not throw answer normally", async (t) => {
    const { client, runs } = await pair(t, {});
    assert.deepEqual((await call(client)).content, [{ type: "text", text: "x" }]);
    assert.equal(runs.n, 1);
  });
});
