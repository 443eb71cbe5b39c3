/**
 * Property tests (fast-check) for the invocation verifier: random mutations of valid tokens
 * (characters flipped, inserted or deleted in any segment; segments swapped between two valid
 * tokens; header or payload JSON re-encoded with random changes under the old signature;
 * delegation links and receipts mutated) are never accepted, and the verifier never throws
 * anything but an AztpError. Random tool arguments: whatever the key order or number
 * spelling the callee receives, the call passes exactly when the received arguments are the
 * same JSON value as the signed ones. Claims re-signed with the caller's real key are
 * accepted exactly when a small model of the rules says they are valid.
 *
 * Every verification uses a fresh replay cache, so a rejection is never "replayed" by accident:
 * it must come from the mutation itself.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import type { AgentIdentity } from "../src/client/identity.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import {
  canonicalDigest,
  canonicalJson,
  delegate,
  MemoryReplayCache,
  signInvocation,
  signReceipt,
  verifyReceipt,
  type VerifyInvocationOptions,
  type VerifyReceiptOptions,
} from "../src/invocation/index.js";
import {
  attempt,
  baseClaims,
  forge,
  newWorld,
  resign,
  segments,
  verifierFor,
  type World,
} from "./helpers/invocation-fixtures.js";

const TOOL = "search";
const ARGS = { query: "weather", limit: 5, filters: { region: "eu" } };
/** Characters a mutation may put in: the base64url alphabet and the usual suspects. */
const CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. \n\t\u00e9\u0000";
const SEED = Number(process.env.FC_SEED ?? Date.now() % 2 ** 31);
/** FC_SCALE=10 runs every property ten times as often (the default keeps the file under 20 s). */
const SCALE = Number(process.env.FC_SCALE ?? 1);
const settings = (numRuns: number) => ({ numRuns: Math.ceil(numRuns * SCALE), seed: SEED, includeErrorInReport: true });

/** A `__proto__` member anywhere in `v` (fast-check generates the key now and then, on purpose). */
function hasProtoKey(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(hasProtoKey);
  if (v === null || typeof v !== "object") return false;
  return Object.keys(v).some((k) => k === "__proto__" || hasProtoKey((v as Record<string, unknown>)[k]));
}
/**
 * JSON values that can be signed: a `__proto__` member is refused by design (ERR_JSON_PROTO_KEY_NOT_ALLOWED,
 * tested on its own below), so the properties about everything else leave it out.
 */
const signableJson = (constraints: Parameters<typeof fc.jsonValue>[0]) =>
  fc.jsonValue(constraints).filter((v) => !hasProtoKey(v));

let w: World;
let caller2: AgentIdentity;

before(async () => {
  w = await newWorld();
  caller2 = await w.identity("caller-2");
});
after(() => w.close());

function options(extra: Partial<VerifyInvocationOptions> = {}): VerifyInvocationOptions {
  return verifierFor(w, w.serverA, TOOL, ARGS, extra);
}

/** Asserts the token is refused with an AztpError other than "replayed", and the tool did not run. */
async function assertRefused(token: unknown, extra: Partial<VerifyInvocationOptions> = {}): Promise<string> {
  const r = await attempt(token, options(extra));
  assert.ok(r.error instanceof AztpError, `accepted, or not an AztpError: ${r.code}`);
  assert.notEqual(r.code, ErrorCodes.INVOCATION_REPLAYED);
  assert.equal(r.ran, 0);
  return r.code;
}

const run = <Ts extends [unknown, ...unknown[]]>(property: fc.IAsyncProperty<Ts>, numRuns: number) =>
  fc.assert(property, settings(numRuns));

type Op = { kind: "flip" | "insert"; pos: number; ch: string } | { kind: "delete"; pos: number };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constantFrom("flip" as const, "insert" as const),
    pos: fc.nat(),
    ch: fc.constantFrom(...CHARS),
  }),
  fc.record({ kind: fc.constant("delete" as const), pos: fc.nat() }),
);

function applyOps(text: string, ops: readonly Op[]): string {
  let s = text;
  for (const op of ops) {
    const at = s.length === 0 ? 0 : op.pos % (op.kind === "insert" ? s.length + 1 : s.length);
    if (op.kind === "flip") s = s.slice(0, at) + op.ch + s.slice(at + 1);
    else if (op.kind === "insert") s = s.slice(0, at) + op.ch + s.slice(at);
    else s = s.slice(0, at) + s.slice(at + 1);
  }
  return s;
}

/** Mutates part `part` (0 header, 1 payload, 2 signature, 3 the whole token) of `token`. */
function mutateToken(token: string, part: number, ops: readonly Op[]): string {
  if (part === 3) return applyOps(token, ops);
  const parts = token.split(".");
  parts[part] = applyOps(parts[part] ?? "", ops);
  return parts.join(".");
}

describe("mutated invocation tokens are never accepted", () => {
  it("characters flipped, inserted or deleted in any segment", async () => {
    const tokens = [
      signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS }),
      signInvocation(caller2, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS }),
    ];
    // The unmutated tokens pass: the property below is about the mutations only.
    for (const t of tokens) assert.equal((await attempt(t, options())).code, "ok");
    const codes = new Map<string, number>();
    await run(
      fc.asyncProperty(
        fc.nat(1),
        fc.nat(3),
        fc.array(opArb, { minLength: 1, maxLength: 4 }),
        async (which, part, ops) => {
          const original = tokens[which] as string;
          const mutated = mutateToken(original, part, ops);
          fc.pre(mutated !== original);
          const code = await assertRefused(mutated);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        },
      ),
      400,
    );
    assert.ok(codes.size >= 3, `the mutations reached several checks: ${[...codes.keys()].join(", ")}`);
  });

  it("segments swapped between two valid tokens (random callers, tools and arguments)", async () => {
    const signers = () => [w.caller, caller2, w.third];
    await run(
      fc.asyncProperty(
        fc.tuple(fc.nat(2), fc.nat(2)),
        fc.tuple(fc.constantFrom(TOOL, "fetch"), fc.constantFrom(TOOL, "fetch")),
        fc.tuple(signableJson({ maxDepth: 2 }), signableJson({ maxDepth: 2 })),
        fc.tuple(fc.nat(1), fc.nat(1), fc.nat(1)),
        async ([i, j], [toolA, toolB], [argsA, argsB], pick) => {
          const a = signInvocation(signers()[i] as AgentIdentity, {
            audience: w.serverA.spiffeId,
            tool: toolA,
            args: argsA,
          });
          const b = signInvocation(signers()[j] as AgentIdentity, {
            audience: w.serverA.spiffeId,
            tool: toolB,
            args: argsB,
          });
          const sa = a.split("."),
            sb = b.split(".");
          const mixed = pick.map((from, k) => (from === 0 ? sa : sb)[k]).join(".");
          fc.pre(mixed !== a && mixed !== b);
          // Verify against each original call: the mixed token must fit neither.
          await assertRefused(mixed, { tool: toolA, args: argsA });
          await assertRefused(mixed, { tool: toolB, args: argsB });
        },
      ),
      150,
    );
  });

  const claimKeys = [
    "iss",
    "sub",
    "aud",
    "iat",
    "exp",
    "jti",
    "tool",
    "args_sha256",
    "trace",
    "ath",
    "dlg",
    "nbf",
    "x",
  ];
  const headerKeys = ["alg", "typ", "x5c", "kid", "crit", "b64", "jwk", "x5u"];
  type Edit =
    | { kind: "set"; key: string; value: unknown }
    | { kind: "delete"; key: string }
    | { kind: "spacing"; indent: number }
    | { kind: "reorder" };
  const editArb = (keys: string[]): fc.Arbitrary<Edit> =>
    fc.oneof(
      fc.record({
        kind: fc.constant("set" as const),
        key: fc.oneof(fc.constantFrom(...keys), fc.string({ maxLength: 6 })),
        value: fc.jsonValue({ maxDepth: 2 }),
      }),
      fc.record({ kind: fc.constant("delete" as const), key: fc.constantFrom(...keys) }),
      fc.record({ kind: fc.constant("spacing" as const), indent: fc.integer({ min: 1, max: 4 }) }),
      fc.record({ kind: fc.constant("reorder" as const) }),
    );
  function reencode(value: Record<string, unknown>, edits: readonly Edit[]): string {
    let obj: Record<string, unknown> = { ...value };
    let indent = 0;
    for (const e of edits) {
      if (e.kind === "set") obj = JSON.parse(JSON.stringify({ ...obj, [e.key]: e.value })) as Record<string, unknown>;
      else if (e.kind === "delete") delete obj[e.key];
      else if (e.kind === "spacing") indent = e.indent;
      else obj = Object.fromEntries(Object.entries(obj).reverse());
    }
    return Buffer.from(JSON.stringify(obj, null, indent), "utf8").toString("base64url");
  }

  it("header or payload JSON re-encoded with random changes, old signature kept", async () => {
    const codes = new Set<string>();
    await run(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(editArb(claimKeys), { minLength: 1, maxLength: 3 }),
        fc.array(editArb(headerKeys), { minLength: 1, maxLength: 3 }),
        async (inHeader, pEdits, hEdits) => {
          const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS });
          const { h, p, s, header, payload } = segments(token);
          const mutated = inHeader ? `${reencode(header, hEdits)}.${p}.${s}` : `${h}.${reencode(payload, pEdits)}.${s}`;
          fc.pre(mutated !== token);
          codes.add(await assertRefused(mutated));
        },
      ),
      300,
    );
    assert.ok(codes.has(ErrorCodes.INVOCATION_SIGNATURE_INVALID), [...codes].join(", "));
  });

  it("a delegation link mutated at random (the invocation itself honestly signed)", async () => {
    const [root, leaf] = [await w.identity("p-root"), await w.identity("p-leaf")];
    const chain = delegate(root, w.caller.spiffeId, { depth: 1, tools: ["*"] });
    const full = delegate(w.caller, leaf.spiffeId, { tools: [TOOL] }, chain);
    const by = (links: string[]) =>
      signInvocation(leaf, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS, delegation: links });
    assert.equal((await attempt(by(full), options())).code, "ok");
    await run(
      fc.asyncProperty(
        fc.nat(1),
        fc.nat(2),
        fc.array(opArb, { minLength: 1, maxLength: 3 }),
        async (link, part, ops) => {
          const links = [...full];
          links[link] = mutateToken(full[link] as string, part, ops);
          fc.pre(links[link] !== full[link]);
          assert.equal(await assertRefused(by(links)), ErrorCodes.DELEGATION_INVALID);
        },
      ),
      150,
    );
  });
});

describe("claims re-signed with the caller's real key: accepted exactly when valid", () => {
  it("matches a model of the rules, and throws nothing but AztpError", async () => {
    const NOW = Math.floor(Date.now() / 1000); // one fixed second, so the model and the verifier see one clock
    const digest = canonicalDigest(ARGS);
    const anyJson = fc.jsonValue({ maxDepth: 1 });
    const time = fc.oneof(
      fc.integer({ min: NOW - 120, max: NOW + 120 }),
      fc.constantFrom(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0, -1, 8.64e12 + 1, NOW + 0.5),
      anyJson,
    );
    /** For each claim, what a mutation may put there (`undefined` removes the claim). */
    const values: Record<string, fc.Arbitrary<unknown>> = {
      iss: fc.oneof(
        fc.constantFrom(
          w.caller.spiffeId,
          w.caller.aztpId,
          w.third.spiffeId,
          w.caller.spiffeId.toUpperCase(),
          undefined,
        ),
        anyJson,
      ),
      sub: fc.oneof(fc.constantFrom(undefined, w.caller.spiffeId, w.third.spiffeId), anyJson),
      aud: fc.oneof(
        fc.constantFrom(w.serverA.spiffeId, w.serverA.aztpId, w.serverB.spiffeId, [w.serverA.spiffeId], undefined),
        anyJson,
      ),
      iat: fc.oneof(time, fc.constant(undefined)),
      // exp relative to iat (lifetime around the 60 s limit), or anything.
      exp: fc.oneof(
        fc.integer({ min: -5, max: 90 }).map((d) => ({ lifetime: d })),
        time,
        fc.constant(undefined),
      ),
      jti: fc.oneof(
        fc.string({ minLength: 20, maxLength: 24 }),
        fc.string({ minLength: 125, maxLength: 130 }),
        anyJson,
        fc.constant(undefined),
      ),
      tool: fc.oneof(fc.constantFrom(TOOL, "Search", "fetch", ` ${TOOL}`, undefined), anyJson),
      args_sha256: fc.oneof(
        fc.constantFrom(digest, canonicalDigest({ ...ARGS, limit: 6 }), digest.toUpperCase(), undefined),
        anyJson,
      ),
      trace: fc.oneof(
        fc.constantFrom("4bf92f3577b34da6a3ce929d0e0e4736", "0".repeat(32), "4BF92F3577B34DA6A3CE929D0E0E4736"),
        anyJson,
      ),
      span: fc.oneof(fc.constantFrom("00f067aa0ba902b7", "0".repeat(16)), anyJson),
      ath: anyJson,
      dlg: fc.oneof(fc.constant([]), fc.array(fc.string(), { maxLength: 2 }), anyJson),
      // nbf is honoured when present (whole seconds, at most now + leeway): around that edge, or anything.
      nbf: fc.oneof(time, anyJson),
      // Not a claim: moves iat and exp together, across the edges of the time window.
      shift: fc.integer({ min: -150, max: 150 }),
    };
    const changes = fc
      .subarray(Object.keys(values), { maxLength: 3 })
      .chain((keys) =>
        fc
          .tuple(...keys.map((k) => values[k] as fc.Arbitrary<unknown>))
          .map((vs) => keys.map((k, i) => [k, vs[i]] as const)),
      );
    const isDate = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
    const codes = new Map<string, number>();
    await run(
      fc.asyncProperty(changes, async (edits) => {
        const claims: Record<string, unknown> = { ...baseClaims(w.caller, w.serverA, TOOL, ARGS, NOW) };
        for (const [k, v] of edits) {
          if (k === "shift") {
            // Moves the dates that are numbers; an edit that made one something else keeps it.
            if (typeof claims.iat === "number") claims.iat += v as number;
            if (typeof claims.exp === "number") claims.exp += v as number;
          } else
            claims[k] =
              k === "exp" && v !== null && typeof v === "object" && "lifetime" in v
                ? (typeof claims.iat === "number" ? claims.iat : NOW) + (v as { lifetime: number }).lifetime
                : v;
        }
        const token = resign(w.caller.signer, claims);
        const c = JSON.parse(JSON.stringify(claims)) as Record<string, unknown>; // what the verifier sees
        const valid =
          c.iss === w.caller.spiffeId &&
          (c.sub === undefined || c.sub === c.iss) &&
          c.aud === w.serverA.spiffeId &&
          c.tool === TOOL &&
          c.args_sha256 === digest &&
          isDate(c.iat) &&
          isDate(c.exp) &&
          c.exp >= c.iat &&
          c.exp - c.iat <= 60 &&
          NOW - 30 < c.exp &&
          c.iat <= NOW + 30 &&
          (c.nbf === undefined || (isDate(c.nbf) && c.nbf <= NOW + 30)) &&
          typeof c.jti === "string" &&
          c.jti.length >= 22 &&
          c.jti.length <= 128 &&
          // W3C trace context IDs: lower-case hex of their length, not all zero.
          (c.trace === undefined ||
            (typeof c.trace === "string" && /^[0-9a-f]{32}$/.test(c.trace) && /[^0]/.test(c.trace))) &&
          (c.span === undefined ||
            (c.trace !== undefined &&
              typeof c.span === "string" &&
              /^[0-9a-f]{16}$/.test(c.span) &&
              /[^0]/.test(c.span))) &&
          // A token bound to an access token (ath) is refused when the call carries none, as here.
          c.ath === undefined &&
          c.dlg === undefined;
        const r = await attempt(
          token,
          options({ now: new Date(NOW * 1000), replay: new MemoryReplayCache({ now: () => NOW * 1000 }) }),
        );
        assert.ok(r.code === "ok" || r.error instanceof AztpError, r.code);
        assert.equal(
          r.code === "ok",
          valid,
          `model says ${valid ? "valid" : "invalid"}, verifier said ${r.code}: ${JSON.stringify(c)}`,
        );
        assert.equal(r.ran, r.code === "ok" ? 1 : 0);
        codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      }),
      400,
    );
    // The model is not vacuous: some tokens were valid, and many different rules refused the rest.
    assert.ok((codes.get("ok") ?? 0) > 0 && codes.size >= 7, JSON.stringify([...codes]));
  });
});

describe("canonical arguments", () => {
  /** JSON text of `value` with every object's keys in a random order (JSON.parse keeps __proto__ as a key). */
  function shuffledJson(value: unknown, seed: number): string {
    if (Array.isArray(value)) return `[${value.map((v, i) => shuffledJson(v, seed + i)).join(",")}]`;
    if (value !== null && typeof value === "object") {
      const keys = Object.keys(value);
      const rot = keys.length === 0 ? 0 : seed % keys.length;
      const order = [...keys.slice(rot), ...keys.slice(0, rot)];
      if (seed & 1) order.reverse();
      return `{${order.map((k, i) => `${JSON.stringify(k)}:${shuffledJson((value as Record<string, unknown>)[k], seed * 31 + i)}`).join(",")}}`;
    }
    if (typeof value === "number" && Number.isInteger(value) && Math.abs(value) < 1e15 && seed % 3 === 0)
      return `${value}.0`; // another spelling
    if (typeof value === "number" && Number.isInteger(value) && Math.abs(value) < 1e15 && seed % 3 === 1)
      return `${value}e0`;
    return JSON.stringify(value);
  }

  /** `value` with one random change at a random place: a leaf replaced, a key added or removed, an array changed. */
  function mutateJson(value: unknown, path: readonly number[], op: number, replacement: unknown, key: string): unknown {
    const [step, ...rest] = path;
    if (Array.isArray(value)) {
      if (step !== undefined && rest.length > 0 && value.length > 0) {
        const i = step % value.length;
        return value.map((v, k) => (k === i ? mutateJson(v, rest, op, replacement, key) : v));
      }
      if (op % 3 === 0) return [...value, replacement];
      if (op % 3 === 1 && value.length > 0) return value.slice(1);
      return value.length > 1 ? [...value.slice(1), value[0]] : [replacement];
    }
    if (value !== null && typeof value === "object") {
      const entries = Object.entries(value);
      if (step !== undefined && rest.length > 0 && entries.length > 0) {
        const i = step % entries.length;
        return JSON.parse(
          `{${entries.map(([k, v], n) => `${JSON.stringify(k)}:${JSON.stringify(n === i ? mutateJson(v, rest, op, replacement, key) : v)}`).join(",")}}`,
        );
      }
      if (op % 3 === 1 && entries.length > 0)
        return JSON.parse(
          `{${entries
            .slice(1)
            .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`)
            .join(",")}}`,
        );
      return JSON.parse(
        `{${[...entries, [key, replacement] as const].map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`,
      );
    }
    return replacement;
  }

  const argsArb = fc.oneof(
    fc.dictionary(fc.string({ maxLength: 8 }), signableJson({ maxDepth: 3 }), { maxKeys: 6 }),
    signableJson({ maxDepth: 3, stringUnit: "binary" }),
  );

  it("the same JSON value in another key order or number spelling passes; any other value is refused", async () => {
    await run(
      fc.asyncProperty(
        argsArb,
        fc.nat(),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.nat(),
        signableJson({ maxDepth: 1 }),
        fc.string({ maxLength: 4 }),
        async (args, seed, path, op, replacement, key) => {
          const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args });
          // Received as the wire delivers it, in another key order and number spelling: passes.
          const same = JSON.parse(shuffledJson(args, seed)) as unknown;
          assert.equal((await attempt(token, options({ args: same }))).code, "ok");
          // Received changed at random: passes only if it is still the same JSON value.
          const changed = mutateJson(args, path, op, replacement, key);
          const r = await attempt(token, options({ args: changed }));
          const equal = canonicalJson(changed) === canonicalJson(args);
          assert.equal(r.code, equal ? "ok" : ErrorCodes.INVOCATION_ARGS_MISMATCH, JSON.stringify({ args, changed }));
          assert.equal(r.ran, equal ? 1 : 0);
        },
      ),
      250,
    );
  });

  it("a __proto__ member put anywhere in signable arguments is refused by the signer and the verifier (ERR_JSON_PROTO_KEY_NOT_ALLOWED), never digested", async () => {
    await run(
      fc.asyncProperty(
        argsArb,
        fc.array(fc.nat(), { maxLength: 4 }),
        signableJson({ maxDepth: 1 }),
        async (args, path, value) => {
          // Put the member in at a random object (JSON.parse makes it an ordinary own member).
          const put = (v: unknown, at: readonly number[]): unknown => {
            const [step, ...rest] = at;
            if (Array.isArray(v) && v.length > 0 && step !== undefined)
              return v.map((x, k) => (k === step % v.length ? put(x, rest) : x));
            if (v !== null && typeof v === "object" && !Array.isArray(v)) {
              const entries = Object.entries(v);
              if (step !== undefined && rest.length > 0 && entries.length > 0) {
                const i = step % entries.length;
                return JSON.parse(
                  `{${entries.map(([k, x], n) => `${JSON.stringify(k)}:${JSON.stringify(n === i ? put(x, rest) : x)}`).join(",")}}`,
                );
              }
              return JSON.parse(
                `{"__proto__":${JSON.stringify(value)}${entries.map(([k, x]) => `,${JSON.stringify(k)}:${JSON.stringify(x)}`).join("")}}`,
              );
            }
            return JSON.parse(`{"__proto__":${JSON.stringify(value)},"v":${JSON.stringify(v)}}`);
          };
          const hostile = put(args, path);
          fc.pre(hasProtoKey(hostile));
          assert.throws(() => signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: hostile }), {
            code: ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED,
          });
          const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args });
          const r = await attempt(token, options({ args: hostile }));
          assert.equal(r.code, ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED);
          assert.equal(r.ran, 0);
        },
      ),
      150,
    );
  });

  it("canonical form ignores key order and number spelling, and nothing else", () => {
    fc.assert(
      fc.property(argsArb, fc.nat(), (args, seed) => {
        const text = canonicalJson(args);
        assert.equal(canonicalJson(JSON.parse(shuffledJson(args, seed))), text);
        assert.deepEqual(
          JSON.parse(text),
          JSON.parse(JSON.stringify(args)),
          "the canonical text is the same JSON value",
        );
      }),
      settings(300),
    );
  });
});

describe("receipts", () => {
  it("a mutated receipt, or a receipt checked against a changed result, is refused", async () => {
    const result = { answer: "sunny", temperature: 21, tags: ["a", "b"] };
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS });
    const receipt = signReceipt(w.serverA, {
      caller: w.caller.spiffeId,
      tool: TOOL,
      invocationToken: token,
      result,
      status: "ok",
    });
    const opts: VerifyReceiptOptions = {
      invocationToken: token,
      result,
      callee: w.serverA.spiffeId,
      caller: w.caller.spiffeId,
      trust: w.trust,
    };
    verifyReceipt(receipt, opts);
    const refused = (r: unknown, o = opts) => {
      try {
        verifyReceipt(r, o);
      } catch (e) {
        assert.ok(e instanceof AztpError, String(e));
        return e.code;
      }
      assert.fail("accepted");
    };
    fc.assert(
      fc.property(fc.nat(3), fc.array(opArb, { minLength: 1, maxLength: 3 }), (part, ops) => {
        const mutated = mutateToken(receipt, part, ops);
        fc.pre(mutated !== receipt);
        refused(mutated);
      }),
      settings(300),
    );
    fc.assert(
      fc.property(signableJson({ maxDepth: 2 }), (other) => {
        fc.pre(canonicalJson(other) !== canonicalJson(result));
        assert.equal(refused(receipt, { ...opts, result: other }), ErrorCodes.RECEIPT_MISMATCH);
      }),
      settings(200),
    );
  });

  it("a receipt forged over an honest one's claims by any other trusted key is refused", () => {
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS });
    const receipt = signReceipt(w.serverA, {
      caller: w.caller.spiffeId,
      tool: TOOL,
      invocationToken: token,
      result: 1,
      status: "ok",
    });
    const { payload } = segments(receipt);
    const opts = {
      invocationToken: token,
      result: 1,
      callee: w.serverA.spiffeId,
      caller: w.caller.spiffeId,
      trust: w.trust,
    };
    for (const who of [w.caller, w.serverB, w.third, caller2]) {
      assert.throws(() => verifyReceipt(resign(who.signer, payload, {}, "aztp-receipt+jwt"), opts), {
        code: ErrorCodes.RECEIPT_INVALID,
      });
      // The callee's x5c with another key's signature.
      const forged = forge({ alg: "ES256", typ: "aztp-receipt+jwt", x5c: w.serverA.signer.x5c }, payload, (i) =>
        who.signer.sign(i),
      );
      assert.throws(() => verifyReceipt(forged, opts), { code: ErrorCodes.RECEIPT_INVALID });
    }
  });
});

process.on("exit", (code) => {
  if (code !== 0) process.stderr.write(`fast-check seed: ${SEED} (rerun with FC_SEED=${SEED})\n`);
});
