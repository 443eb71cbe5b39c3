import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import canonicalize from "canonicalize";
import fc from "fast-check";
import {
  context,
  logs,
  ROOT_CONTEXT,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
  type Logger,
  type LoggerProvider,
  type LogRecord,
  type Span,
  type SpanContext,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import {
  AuditLog,
  auditStats,
  GENESIS_HASH,
  queryAuditLog,
  redact,
  redactArgs,
  verifyAuditLog,
  type AuditEntry,
  type AuditEntryInput,
  type AuditFault,
  type AuditLogOptions,
  type AuditWarning,
} from "../src/audit/index.js";
import { canonicalJson } from "../src/json/canonical.js";
import { JsonlSink } from "../src/audit/jsonl-sink.js";
import { isAztpError } from "../src/errors.js";
import { newTestKeys, testSigner, testVerifier, type TestKeys } from "./helpers/audit-signer.js";
import { ecdsaKeyId, parseVerifierKey } from "../src/audit/signed-note.js";
import { fillDisk, tinyDisk } from "./helpers/tiny-disk.js";

const dir = mkdtempSync(join(tmpdir(), "aztp-audit-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const newPath = (name = "audit"): string => join(dir, `${name}-${++fileNo}.jsonl`);

const writerKeys = newTestKeys("spiffe://example.org/audit-writer");
const verifier = testVerifier(writerKeys);

/** A callee-side entry with every optional field set, varied by `i`. */
function sample(i: number, overrides: Partial<AuditEntryInput> = {}): AuditEntryInput {
  return {
    side: i % 3 === 0 ? "caller" : "callee",
    caller: `spiffe://example.org/workload/production/node/agent-${i % 2}`,
    callerVerified: true,
    callee: "spiffe://example.org/workload/production/node/tools",
    tool: i % 2 === 0 ? "search" : "fetch",
    argsDigest: `args-digest-${i}`,
    args: { query: `q${i}`, password: "hunter2" },
    delegation: ["spiffe://example.org/workload/production/node/parent"],
    decision: i % 4 === 3 ? "deny" : "allow",
    reason: i % 4 === 3 ? "ERR_POLICY_DENIED" : "ERR_NONE",
    outcome: i % 4 === 3 ? "denied" : "ok",
    resultDigest: `result-digest-${i}`,
    durationMs: 1.5 + i,
    jti: `jti-${i}`,
    traceId: `trace-${i}`,
    token: `token.${i}.sig`,
    receipt: `receipt.${i}.sig`,
    ...overrides,
  };
}

const quiet = (warnings: AuditWarning[] = []): Pick<AuditLogOptions, "onWarning"> => ({
  onWarning: (w) => warnings.push(w),
});

/** Writes `n` entries with checkpoints every 5 and closes (which checkpoints the rest). */
async function writeLog(n: number, options: AuditLogOptions = {}): Promise<string> {
  const path = newPath();
  const log = await AuditLog.open(path, {
    signer: testSigner(writerKeys),
    checkpointEvery: 5,
    includeArgs: true,
    redactFields: ["password"],
    ...quiet(),
    ...options,
  });
  for (let i = 1; i <= n; i++) await log.append(sample(i));
  await log.close();
  return path;
}

const readLines = (path: string): string[] => readFileSync(path, "utf8").split("\n").slice(0, -1);
const writeLines = (path: string, lines: string[]): void => writeFileSync(path, lines.map((l) => `${l}\n`).join(""));
/** 1-based line number of the entry with `seq`. */
const lineOfSeq = (lines: string[], seq: number): number =>
  lines.findIndex((l) => {
    const v = JSON.parse(l) as { type?: string; seq: number };
    return v.type === undefined && v.seq === seq;
  }) + 1;
const isCheckpointLine = (line: string): boolean => (JSON.parse(line) as { type?: string }).type === "checkpoint";

async function expectBad(
  path: string,
  expected: { line: number; seq: number | null; reason: AuditFault },
  witnessPath?: string | false,
) {
  const result = await verifyAuditLog(path, { verifier, ...(witnessPath === undefined ? {} : { witnessPath }) });
  assert.equal(result.ok, false, "verification should fail");
  assert.ok(result.firstBad);
  assert.deepEqual(
    { line: result.firstBad.line, seq: result.firstBad.seq, reason: result.firstBad.reason },
    expected,
    result.firstBad.message,
  );
  assert.ok(result.firstBad.message.length > 0);
  return result;
}

describe("audit entry", () => {
  test("hash is SHA-256 over the RFC 8785 form without `hash`, and entries chain from the genesis value", async () => {
    const path = await writeLog(3, { signer: undefined });
    const entries = readLines(path).map((l) => JSON.parse(l) as AuditEntry & Record<string, unknown>);
    assert.equal(entries.length, 3);
    let prev = GENESIS_HASH;
    for (const [i, e] of entries.entries()) {
      const { hash, ...rest } = e;
      assert.equal(hash, createHash("sha256").update(canonicalize(rest)!, "utf8").digest("hex"));
      assert.equal(e.prev, prev);
      assert.equal(e.seq, i + 1);
      assert.equal(e.v, 2);
      assert.equal(e.callerVerified, true);
      prev = hash;
    }
  });

  test("append rejects malformed input with ERR_ARGUMENT_INVALID and assigns nothing", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    const bad: [string, Record<string, unknown>][] = [
      ["missing caller", { ...sample(1), caller: undefined }],
      ["missing callerVerified", { ...sample(1), callerVerified: undefined }],
      ["callerVerified not a boolean", { ...sample(1), callerVerified: "yes" }],
      ["tool not a string", { ...sample(1), tool: 7 }],
      ["reason not a string", { ...sample(1), reason: { code: "x" } }],
      ["bad decision", { ...sample(1), decision: "maybe" }],
      ["bad side", { ...sample(1), side: "server" }],
      ["bad outcome", { ...sample(1), outcome: "fine" }],
      ["negative duration", { ...sample(1), durationMs: -1 }],
      ["bad time", { ...sample(1), time: "yesterday" }],
      ["delegation not strings", { ...sample(1), delegation: [1] }],
      ["unknown field", { ...sample(1), verdict: "allow" }],
      ["a field named like a prototype member", { ...sample(1), constructor: "x" }],
      ["a field only the log assigns", { ...sample(1), argsOmitted: [] }],
    ];
    for (const [name, input] of bad) {
      await assert.rejects(
        log.append(input as unknown as AuditEntryInput),
        (e) => isAztpError(e, "ERR_ARGUMENT_INVALID"),
        name,
      );
    }
    const ok = await log.append(sample(1, { reason: undefined }));
    assert.equal(ok.seq, 1, "nothing refused was assigned a seq");
    assert.equal("reason" in ok, false);
    await log.close();
    assert.equal((await verifyAuditLog(path)).ok, true);
  });
});

describe("redaction", () => {
  const args = {
    user: { name: "ada", password: "p1", credentials: { token: "t1", kind: "bearer" } },
    items: [
      { secret: "s1", keep: 1 },
      { secret: "s2", keep: 2 },
    ],
    password: "p0",
    nested: [[{ password: "p2" }]],
    apiKey: "k",
  };

  const cases: [string, string[], unknown][] = [
    [
      "a bare name matches at any depth, in objects and arrays",
      ["password"],
      {
        user: { name: "ada", password: "[REDACTED]", credentials: { token: "t1", kind: "bearer" } },
        items: [
          { secret: "s1", keep: 1 },
          { secret: "s2", keep: 2 },
        ],
        password: "[REDACTED]",
        nested: [[{ password: "[REDACTED]" }]],
        apiKey: "k",
      },
    ],
    [
      "a dotted path is anchored at the root",
      ["user.credentials.token"],
      { ...args, user: { ...args.user, credentials: { token: "[REDACTED]", kind: "bearer" } } },
    ],
    [
      "arrays on a path are transparent",
      ["items.secret"],
      {
        ...args,
        items: [
          { secret: "[REDACTED]", keep: 1 },
          { secret: "[REDACTED]", keep: 2 },
        ],
      },
    ],
    [
      "a numeric segment selects one element",
      ["items.1.secret"],
      {
        ...args,
        items: [
          { secret: "s1", keep: 1 },
          { secret: "[REDACTED]", keep: 2 },
        ],
      },
    ],
    [
      "a whole subtree can be redacted",
      ["user.credentials"],
      { ...args, user: { ...args.user, credentials: "[REDACTED]" } },
    ],
    ["a path that does not match changes nothing", ["user.password.deeper", "nope"], args],
  ];
  for (const [name, fields, expected] of cases) {
    test(name, () => {
      const before = JSON.stringify(args);
      assert.deepEqual(redact(args, fields), expected);
      assert.equal(JSON.stringify(args), before, "the input is not mutated");
    });
  }

  test("refuses malformed field names (a programming error)", () => {
    for (const fields of [[""], ["a..b"], [".a"], [3], "password"] as unknown as string[][]) {
      assert.throws(
        () => redact({}, fields),
        (e) => isAztpError(e, "ERR_ARGUMENT_INVALID"),
      );
    }
  });

  test("arguments reach the log only with includeArgs, and redacted", async () => {
    const withArgs = newPath();
    let log = await AuditLog.open(withArgs, {
      includeArgs: true,
      redactFields: ["password", "user.credentials"],
      ...quiet(),
    });
    const entry = await log.append(sample(1, { args }));
    await log.close();
    assert.deepEqual(entry.args, redact(args, ["password", "user.credentials"]));
    const text = readFileSync(withArgs, "utf8");
    for (const secret of ["p0", "p1", "p2", "t1", "hunter2"]) assert.equal(text.includes(secret), false, secret);
    assert.ok(text.includes('"apiKey":"k"'));
    assert.equal((await verifyAuditLog(withArgs)).ok, true);

    const without = newPath();
    log = await AuditLog.open(without, quiet());
    const bare = await log.append(sample(1, { args }));
    await log.close();
    assert.equal(bare.args, undefined);
    // A quoted "ada" or its key: random base64 and hex in the entry cannot hold either.
    const bareText = readFileSync(without, "utf8");
    assert.equal(bareText.includes('"ada"'), false);
    assert.equal(bareText.includes('"args":'), false);
    assert.equal("args" in (JSON.parse(bareText) as object), false);
  });
});

/** A value nested `n` levels deep, built without recursion. */
function nested(n: number, kind: "array" | "object"): unknown {
  let v: unknown = "bottom";
  for (let i = 0; i < n; i++) v = kind === "array" ? [v] : { a: v };
  return v;
}

/** How deep a JSON value nests, measured without recursion. */
function depthOf(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    max = Math.max(max, d);
    if (typeof v === "object" && v !== null) for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

const sha256 = (text: string): string => createHash("sha256").update(text, "utf8").digest("hex");

/** Hostile argument values, each with a note `argsOmitted` must hold (or null when all is kept). */
function hostileArgs(): [string, unknown, RegExp | null][] {
  const cyclic: Record<string, unknown> = { keep: 1 };
  cyclic.self = cyclic;
  const shared = { x: 1 };
  class Widget {
    n = 1;
  }
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const manyKeys = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${String(i).padStart(4, "0")}`, i]));
  return [
    ["100,000-deep arrays", { a: nested(100_000, "array") }, /^args\.a(\[0\])+: nested deeper than 64 levels$/],
    ["100,000-deep objects", nested(100_000, "object"), /^args(\.a)+…?: nested deeper than 64 levels$|^args(\.a)+…$/],
    ["Infinity (1e400 parsed)", JSON.parse('{"x":1e400}'), /^args\.x: Infinity is not JSON$/],
    ["NaN and -Infinity", { n: Number.NaN, m: -Infinity }, /^args\.m: -Infinity is not JSON$/],
    ["a lone surrogate in a value", { s: "a\ud800b" }, /^args\.s: 1 lone surrogate\(s\) replaced with U\+FFFD$/],
    ["a lone surrogate in a key", { "k\udc00": 1 }, /lone surrogate\(s\) in the key replaced with U\+FFFD$/],
    ["keys equal once made storable", { "\ud800": 1, "\ufffd": 2 }, /dropped: its key equals another key/],
    [
      "a 10 MB string",
      { big: "x".repeat(10 * 1024 * 1024) },
      /^args\.big: a string of 10485760 characters, cut to 8192$/,
    ],
    ["a 1 MB key", { ["k".repeat(1 << 20)]: 1 }, /a key of 1048576 characters, cut to 256$/],
    [
      "5000 array items",
      { list: Array.from({ length: 5000 }, (_, i) => i) },
      /^args\.list: 4000 of 5000 items not kept \(over 1000 items\)$/,
    ],
    [
      "a sparse array of length 2^32-1",
      { holes: new Array(2 ** 32 - 1) },
      /^args\.holes: 4294966295 of 4294967295 items not kept/,
    ],
    ["5000 object members", { wide: manyKeys }, /^args\.wide: 4000 of 5000 members not kept \(over 1000 members\)$/],
    [
      "over the total budget",
      { parts: Array.from({ length: 100 }, () => "y".repeat(8000)) },
      /^args\.parts: \d+ of 100 items not kept \(over the size budget/,
    ],
    [
      "a Date, a Map, a class instance, bytes",
      { d: new Date(0), m: new Map([[1, 2]]), w: new Widget(), b: new Uint8Array(2) },
      /^args\.b: a Uint8Array, not a plain JSON object$/,
    ],
    ["a cycle", cyclic, /^args\.self: a circular reference$/],
    ["a function, a symbol, a bigint", { f: () => 1, s: Symbol("s"), n: 10n }, /^args\.f: a function is not JSON$/],
    [
      "a throwing getter",
      {
        get bad(): never {
          throw new Error("no");
        },
        ok: 1,
      },
      /^args\.bad: could not be read \(Error thrown\)$/,
    ],
    ["a revoked Proxy", { p: revoked }, /^args\.p: could not be read \(TypeError thrown\)$/],
    ["__proto__ as a key", JSON.parse('{"__proto__":{"polluted":true},"a":1}'), null],
    ["the same object twice (no cycle)", { a: shared, b: shared }, null],
  ];
}

describe("hostile arguments and fields are still audited", () => {
  test("redaction is total and bounded: what cannot be kept becomes a marker, and it says why", () => {
    for (const [name, value, note] of hostileArgs()) {
      const { value: kept, omitted } = redactArgs(value, ["password"]);
      assert.doesNotThrow(() => canonicalJson(kept), name);
      assert.ok(depthOf(kept) <= 65, `${name}: depth ${depthOf(kept)}`);
      assert.ok(JSON.stringify(kept).length < 600 * 1024, `${name}: ${JSON.stringify(kept).length} characters kept`);
      assert.ok(omitted.length <= 33 && omitted.every((n) => n.length <= 240), `${name}: bounded notes`);
      if (note === null) assert.deepEqual(omitted, [], name);
      else
        assert.ok(
          omitted.some((n) => note.test(n)),
          `${name}: ${JSON.stringify(omitted)}`,
        );
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "no prototype was polluted");
  });

  test("markers keep what they can: a cut string carries its length and digest, surrogates become U+FFFD", () => {
    const big = "é".repeat(20_000);
    const { value } = redactArgs({ big, s: "a\ud800b", k: { "x\udfff": true }, n: [1, Infinity, 3] }, []);
    const v = value as { big: string; s: string; k: Record<string, boolean>; n: unknown[] };
    assert.ok(v.big.startsWith("é".repeat(8192)));
    assert.ok(v.big.endsWith(`…[TRUNCATED: 20000 characters, sha256 ${sha256(big)}]`), v.big.slice(8192));
    assert.equal(v.s, "a\ufffdb");
    assert.deepEqual(v.k, { "x\ufffd": true });
    assert.deepEqual(v.n, [1, "[OMITTED: Infinity is not JSON]", 3]);
    // A surrogate pair is never split by a cut.
    const pairs = "😀".repeat(5000);
    const cut = (redactArgs(pairs, []).value as string).split("…")[0]!;
    assert.equal(cut.length, 8192);
    assert.doesNotMatch(cut, /\p{Cs}/u);
    // Redaction still applies next to what is omitted, and to hostile keys' neighbours.
    const r = redactArgs({ password: "hunter2", deep: nested(100, "object"), x: NaN }, ["password"]);
    assert.equal((r.value as Record<string, unknown>).password, "[REDACTED]");
  });

  test("with includeArgs, every hostile argument value leaves an entry that says what was not kept", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, { includeArgs: true, redactFields: ["password"], ...quiet() });
    const cases = hostileArgs();
    for (const [name, value, note] of cases) {
      const entry = await log.append(sample(1, { args: value }));
      if (note === null) assert.equal(entry.argsOmitted, undefined, name);
      else
        assert.ok(
          entry.argsOmitted?.some((n) => note.test(n)),
          `${name}: ${JSON.stringify(entry.argsOmitted)}`,
        );
    }
    await log.close();
    const lines = readLines(path);
    assert.equal(lines.length, cases.length);
    for (const line of lines) assert.ok(line.length < 700 * 1024, `a line of ${line.length} characters`);
    const result = await verifyAuditLog(path);
    assert.equal(result.ok, true, result.firstBad?.message);
    assert.equal(result.entries, cases.length);
    const stored = JSON.parse(lines[cases.findIndex(([n]) => n.startsWith("__proto__"))]!) as { args: object };
    assert.deepEqual(Object.keys(stored.args), ["__proto__", "a"], "__proto__ is stored as a key");
  });

  test("caller-supplied strings are made storable, never refused: lone surrogates, 10 MB, empty", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    const huge = "t".repeat(10 * 1024 * 1024);
    const cases: [string, Partial<AuditEntryInput>, RegExp][] = [
      [
        "a lone surrogate in the tool name",
        { tool: "se\ud800arch" },
        /^tool: 1 lone surrogate\(s\) replaced with U\+FFFD$/,
      ],
      ["a 10 MB tool name", { tool: huge }, /^tool: 10485760 characters, cut to 2048$/],
      [
        "a lone surrogate in the claimed caller",
        { caller: "spiffe://example.org/\udc00", callerVerified: false },
        /^caller: 1 lone surrogate/,
      ],
      ["a lone surrogate in the reason", { reason: "ERR_\ud800" }, /^reason: 1 lone surrogate/],
      ["a 10 MB token", { token: huge }, /^token: 10485760 characters, cut to 65536$/],
      [
        "a lone surrogate in the delegation",
        { delegation: ["spiffe://example.org/\ud800"] },
        /^delegation\[0\]: 1 lone surrogate/,
      ],
      [
        "100 delegators",
        { delegation: Array.from({ length: 100 }, (_, i) => `spiffe://example.org/d${i}`) },
        /^delegation: 100 IDs, the first 64 kept$/,
      ],
      [
        "lone surrogates in every digest",
        { argsDigest: "\ud800", resultDigest: "\ud800", jti: "\ud800", traceId: "\ud800", receipt: "\ud800" },
        /^traceId: /,
      ],
    ];
    for (const [name, overrides, note] of cases) {
      const entry = await log.append(sample(1, overrides));
      assert.ok(
        entry.sanitized?.some((n) => note.test(n)),
        `${name}: ${JSON.stringify(entry.sanitized)}`,
      );
      assert.doesNotMatch(JSON.stringify(entry), /\\ud[89a-f]/i, `${name}: no lone surrogate is stored`);
    }
    // Hostile content that needs no change is stored as it came.
    const empty = await log.append(
      sample(1, { tool: "", reason: "", argsDigest: "unencodable", caller: "unknown", callerVerified: false }),
    );
    assert.deepEqual([empty.tool, empty.reason, empty.argsDigest, empty.sanitized], ["", "", "unencodable", undefined]);
    await log.close();
    for (const line of readLines(path)) assert.ok(line.length < 200 * 1024, `a line of ${line.length} characters`);
    const result = await verifyAuditLog(path);
    assert.equal(result.ok, true, result.firstBad?.message);
    assert.equal(result.entries, cases.length + 1);
  });

  test("any value at all as arguments is recorded (generated)", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, { includeArgs: true, ...quiet() });
    const anything = fc.anything({
      withBigInt: true,
      withBoxedValues: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withNullPrototype: true,
      withObjectString: true,
      withSparseArray: true,
      withTypedArray: true,
      withUnicodeString: true,
      key: fc.string({ unit: "binary", maxLength: 6 }),
      values: [fc.string({ unit: "binary" }), fc.double(), fc.constant(-0), fc.constant(undefined)],
    });
    let appended = 0;
    await fc.assert(
      fc.asyncProperty(anything, fc.string({ unit: "binary", maxLength: 8 }), async (args, tool) => {
        await log.append(sample(1, { args, tool }));
        appended++;
      }),
      { numRuns: 200 },
    );
    await log.close();
    const result = await verifyAuditLog(path);
    assert.equal(result.ok, true, result.firstBad?.message);
    assert.equal(result.entries, appended);
  });

  test("a stored line nested 100,000 deep is refused as corrupt, never a stack overflow", async () => {
    const path = await writeLog(2, { signer: undefined });
    const last = JSON.parse(readLines(path).at(-1)!) as { hash: string };
    const n = 100_000;
    const line = `{"args":${"[".repeat(n)}${"]".repeat(n)},"argsDigest":"d","callee":"c","caller":"c","callerVerified":true,"decision":"allow","prev":"${last.hash}","seq":3,"side":"callee","time":"2026-01-01T00:00:00.000Z","tool":"t","v":2,"hash":"${"0".repeat(64)}"}`;
    appendFileSync(path, `${line}\n`);
    const result = await verifyAuditLog(path);
    assert.deepEqual([result.ok, result.firstBad?.reason, result.firstBad?.seq], [false, "malformed", 3]);
    assert.match(result.firstBad!.message, /nested deeper than 512 levels/);
    await assert.rejects(
      AuditLog.open(path, quiet()),
      (e) => isAztpError(e, "ERR_AUDIT_CORRUPT") && /nested deeper/.test((e as Error).message),
    );
  });
});

describe("verifyAuditLog", () => {
  test("a clean log verifies, with its checkpoints' signatures and the witness", async () => {
    const path = await writeLog(23);
    const result = await verifyAuditLog(path, { verifier });
    assert.deepEqual(result, {
      ok: true,
      entries: 23,
      checkpoints: 5,
      lastSeq: 23,
      head: result.head,
      uncovered: 0,
      signaturesChecked: true,
      witness: "checked",
      tree: {
        state: "proven",
        origin: result.tree.origin,
        size: 23,
        root: result.tree.root,
        provenCheckpoints: 5,
        predatingCheckpoints: 0,
        notesChecked: true,
        vkey: result.tree.vkey,
      },
    });
    // The vkey transparency-log tools take: <origin>+<key ID>+base64(0x02 || SPKI), of the writer's key.
    assert.equal(
      parseVerifierKey(result.tree.vkey ?? "").keyId,
      ecdsaKeyId(writerKeys.publicKey.export({ type: "spki", format: "der" })),
    );
    assert.match(result.tree.origin ?? "", /^example\.org\/audit-writer\/audit\/audit-\d+$/);
    assert.ok(existsSync(`${path}.witness`));
  });

  // Every field of one entry (line of seq 8), edited in place without fixing anything else.
  const edits: [string, (e: Record<string, unknown>) => void, AuditFault][] = [
    ["v", (e) => (e.v = 3), "malformed"],
    ["v, to the older version", (e) => (e.v = 1), "malformed"],
    ["callerVerified", (e) => (e.callerVerified = !e.callerVerified), "hash-mismatch"],
    ["seq", (e) => (e.seq = 9), "hash-mismatch"],
    ["time", (e) => (e.time = "2001-01-01T00:00:00.000Z"), "hash-mismatch"],
    ["side", (e) => (e.side = "proxy"), "hash-mismatch"],
    ["caller", (e) => (e.caller = "spiffe://example.org/workload/production/node/mallory"), "hash-mismatch"],
    ["callee", (e) => (e.callee += "x"), "hash-mismatch"],
    ["tool", (e) => (e.tool = "delete_everything"), "hash-mismatch"],
    ["argsDigest", (e) => (e.argsDigest += "x"), "hash-mismatch"],
    ["args", (e) => (e.args = { query: "other" }), "hash-mismatch"],
    ["delegation", (e) => (e.delegation = []), "hash-mismatch"],
    ["decision", (e) => (e.decision = e.decision === "allow" ? "deny" : "allow"), "hash-mismatch"],
    ["reason", (e) => (e.reason = "ERR_OTHER"), "hash-mismatch"],
    ["outcome", (e) => (e.outcome = "error"), "hash-mismatch"],
    ["resultDigest", (e) => (e.resultDigest += "x"), "hash-mismatch"],
    ["durationMs", (e) => (e.durationMs = 0), "hash-mismatch"],
    ["jti", (e) => (e.jti += "x"), "hash-mismatch"],
    ["traceId", (e) => (e.traceId += "x"), "hash-mismatch"],
    ["token", (e) => (e.token += "x"), "hash-mismatch"],
    ["receipt", (e) => (e.receipt += "x"), "hash-mismatch"],
    ["prev", (e) => (e.prev = "a".repeat(64)), "hash-mismatch"],
    ["hash", (e) => (e.hash = "b".repeat(64)), "hash-mismatch"],
    ["an optional field removed", (e) => delete e.receipt, "hash-mismatch"],
    ["a field added", (e) => (e.note = "hi"), "malformed"],
  ];
  let editedLog: string;
  test("edits of any field name the edited entry", async (t) => {
    editedLog = await writeLog(12);
    const lines = readLines(editedLog);
    const line = lineOfSeq(lines, 8);
    for (const [field, edit, reason] of edits) {
      await t.test(field, async () => {
        const copy = newPath("edited");
        const entry = JSON.parse(lines[line - 1]!) as Record<string, unknown>;
        edit(entry);
        writeLines(
          copy,
          lines.map((l, i) => (i === line - 1 ? JSON.stringify(entry) : l)),
        );
        await expectBad(
          copy,
          { line, seq: reason === "malformed" && field.startsWith("v") ? 8 : (entry.seq as number), reason },
          false,
        );
      });
    }
  });

  test("an edit with its hash recomputed breaks the chain at the next entry", async () => {
    const path = await writeLog(12);
    const lines = readLines(path);
    const line = lineOfSeq(lines, 3);
    const entry = JSON.parse(lines[line - 1]!) as Record<string, unknown>;
    entry.tool = "delete_everything";
    const { hash: _old, ...rest } = entry;
    entry.hash = createHash("sha256").update(canonicalize(rest)!).digest("hex");
    lines[line - 1] = JSON.stringify(entry);
    writeLines(path, lines);
    await expectBad(path, { line: lineOfSeq(lines, 4), seq: 4, reason: "chain" });
  });

  test("a deleted entry is named by the entry after the gap", async () => {
    const path = await writeLog(12);
    const lines = readLines(path);
    const line = lineOfSeq(lines, 7);
    lines.splice(line - 1, 1);
    writeLines(path, lines);
    await expectBad(path, { line, seq: 8, reason: "sequence" });
  });

  test("two reordered entries are detected at the first of them", async () => {
    const path = await writeLog(12);
    const lines = readLines(path);
    const a = lineOfSeq(lines, 8);
    [lines[a - 1], lines[a]] = [lines[a]!, lines[a - 1]!];
    writeLines(path, lines);
    await expectBad(path, { line: a, seq: 9, reason: "sequence" });
  });

  test("a cut tail that takes the trailing checkpoint with it is detected against the witness", async () => {
    const path = await writeLog(23); // checkpoints after 5, 10, 15, 20 and (on close) 23
    const lines = readLines(path);
    const cut = lineOfSeq(lines, 21); // entries 21..23 and checkpoint #5 go
    writeLines(path, lines.slice(0, cut - 1));
    await expectBad(path, { line: cut, seq: 21, reason: "truncated" });
    // Without the witness the shortened log is self-consistent: the witness is what catches it.
    assert.equal((await verifyAuditLog(path, { verifier, witnessPath: false })).ok, true);
  });

  test("a cut of just the trailing checkpoint is detected against the witness", async () => {
    const path = await writeLog(23);
    const lines = readLines(path);
    assert.ok(isCheckpointLine(lines.at(-1)!));
    writeLines(path, lines.slice(0, -1));
    await expectBad(path, { line: lines.length, seq: 5, reason: "truncated" });
  });

  test("a cut of entries that leaves the trailing checkpoint in place is detected in the log itself", async () => {
    const path = await writeLog(23);
    const lines = readLines(path);
    const last = lines.at(-1)!;
    const cut = lineOfSeq(lines, 22);
    writeLines(path, [...lines.slice(0, cut - 1), last]);
    await expectBad(path, { line: cut, seq: 5, reason: "checkpoint-head" }, false);
  });

  test("removing a checkpoint from the middle is detected", async () => {
    const path = await writeLog(12);
    const lines = readLines(path);
    const firstCheckpoint = lines.findIndex(isCheckpointLine);
    lines.splice(firstCheckpoint, 1);
    writeLines(path, lines);
    await expectBad(path, { line: lineOfSeq(lines, 10) + 1, seq: 2, reason: "checkpoint-sequence" });
  });

  test("documented limit: entries after the newest checkpoint can be cut undetected", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, { signer: testSigner(writerKeys), checkpointEvery: 5, ...quiet() });
    for (let i = 1; i <= 8; i++) await log.append(sample(i));
    await log.flush();
    // Simulate a writer that never closed: 3 entries are not yet covered by a checkpoint.
    const lines = readLines(path);
    const before = await verifyAuditLog(path, { verifier });
    assert.equal(before.uncovered, 3);
    writeLines(path, lines.slice(0, lineOfSeq(lines, 7)));
    const after = await verifyAuditLog(path, { verifier });
    assert.equal(after.ok, true);
    assert.equal(after.lastSeq, 7);
    writeLines(path, lines);
    await log.close();
  });

  test("a forged checkpoint signature is detected", async (t) => {
    const mallory: TestKeys = newTestKeys("spiffe://example.org/mallory");
    const path = await writeLog(12);
    const lines = readLines(path);
    const line = lines.findIndex(isCheckpointLine) + 1;
    const cp = JSON.parse(lines[line - 1]!) as Record<string, unknown>;
    const forgeries: [string, (c: Record<string, unknown>) => void][] = [
      [
        "signed by an untrusted key",
        (c) => (c.sig = testSigner({ ...mallory, id: writerKeys.id }).sign(Buffer.from("x"))),
      ],
      [
        "re-signed by an untrusted key over its real payload",
        (c) => {
          const { sig: _sig, ...unsigned } = c;
          c.sig = testSigner({ ...mallory, id: writerKeys.id }).sign(Buffer.from(canonicalize(unsigned)!));
        },
      ],
      ["signature bytes altered", (c) => (c.sig = `${(c.sig as string).slice(0, -4)}AAAA`)],
      ["signed fields altered", (c) => (c.time = "2001-01-01T00:00:00.000Z")],
      ["signer claimed by another ID", (c) => (c.signer = mallory.id)],
    ];
    for (const [name, forge] of forgeries) {
      await t.test(name, async () => {
        const copy = newPath("forged");
        const forged = { ...cp };
        forge(forged);
        writeLines(
          copy,
          lines.map((l, i) => (i === line - 1 ? JSON.stringify(forged) : l)),
        );
        await expectBad(copy, { line, seq: 1, reason: "checkpoint-signature" }, `${path}.witness`);
      });
    }
    await t.test("a witness with a forged signature", async () => {
      const witness = JSON.parse(readFileSync(`${path}.witness`, "utf8")) as Record<string, unknown>;
      witness.sig = testSigner({ ...mallory, id: writerKeys.id }).sign(Buffer.from("x"));
      const forgedWitness = newPath("forged-witness");
      writeFileSync(forgedWitness, JSON.stringify(witness));
      await expectBad(path, { line: 0, seq: witness.seq as number, reason: "witness-signature" }, forgedWitness);
    });
  });

  test("a witness that does not match the log's checkpoint is reported", async () => {
    const a = await writeLog(10);
    const b = await writeLog(10); // same shape, different times and hashes
    // b's witness holds checkpoint #2 over entry 10: a's entry 10 is not the one it covers.
    await expectBad(a, { line: lineOfSeq(readLines(a), 10), seq: 10, reason: "witness-mismatch" }, `${b}.witness`);
  });

  test("a missing witness is reported once the log has checkpoints", async () => {
    const path = await writeLog(6);
    rmSync(`${path}.witness`);
    await expectBad(path, { line: 0, seq: null, reason: "witness-missing" });
    assert.equal((await verifyAuditLog(path, { verifier, witnessPath: false })).ok, true);
  });

  test("garbage and a torn last line are reported", async () => {
    const path = await writeLog(4, { signer: undefined });
    const lines = readLines(path);
    writeFileSync(path, `${lines.join("\n")}\n{"seq":5,"v":1,"ti`);
    await expectBad(path, { line: 5, seq: null, reason: "torn-line" });
    writeLines(path, [...lines.slice(0, 2), "not json", ...lines.slice(2)]);
    await expectBad(path, { line: 3, seq: null, reason: "malformed" });
  });
});

describe("AuditLog writer", () => {
  test("append resolves only once the entry is durable, and concurrent appends share one write", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, { batchWindowMs: 60, ...quiet() });
    let settled = false;
    const first = log.append(sample(1)).then((e) => {
      settled = true;
      return e;
    });
    const rest = Array.from({ length: 99 }, (_, i) => log.append(sample(i + 2)));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false, "still inside the batch window");
    assert.equal(readFileSync(path, "utf8"), "", "nothing written yet");
    const entry = await first;
    // When the first promise resolves, the whole batch (all 100) is already in the file.
    const lines = readLines(path);
    assert.equal(lines.length, 100);
    assert.ok(lines[0]!.endsWith(`"hash":"${entry.hash}"}`));
    const all = await Promise.all(rest);
    assert.deepEqual(
      all.map((e) => e.seq),
      Array.from({ length: 99 }, (_, i) => i + 2),
    );
    await log.close();
  });

  test("the log's folder is created when missing", async () => {
    const path = join(dir, "new-folder", "nested", "audit.jsonl");
    const log = await AuditLog.open(path, quiet());
    await log.append(sample(1));
    await log.close();
    assert.equal(readLines(path).length, 1);
  });

  test("a batch reaching maxBatchEntries is written before its window ends", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, { batchWindowMs: 10_000, maxBatchEntries: 8, ...quiet() });
    const started = Date.now();
    await Promise.all(Array.from({ length: 8 }, (_, i) => log.append(sample(i))));
    assert.ok(Date.now() - started < 5_000);
    assert.equal(readLines(path).length, 8);
    await log.close();
  });

  test("reopening continues the chain; close checkpoints and updates the witness", async () => {
    const path = newPath();
    const options: AuditLogOptions = { signer: testSigner(writerKeys), checkpointEvery: 1000, ...quiet() };
    let log = await AuditLog.open(path, options);
    for (let i = 1; i <= 3; i++) await log.append(sample(i));
    assert.equal(log.lastCheckpoint, null);
    await log.close();
    log = await AuditLog.open(path, options);
    assert.equal(log.lastSeq, 3);
    assert.equal(log.lastCheckpoint?.upTo, 3);
    const cp = await log.checkpoint();
    assert.equal(cp?.seq, 1, "nothing new: the newest checkpoint is returned");
    const e4 = await log.append(sample(4));
    assert.equal(e4.seq, 4);
    const cp2 = await log.checkpoint();
    assert.deepEqual([cp2?.seq, cp2?.upTo, cp2?.head, cp2?.count], [2, 4, e4.hash, 1]);
    assert.equal(JSON.parse(readFileSync(`${path}.witness`, "utf8")).seq, 2);
    await log.close();
    await assert.rejects(log.append(sample(5)), (e) => isAztpError(e, "ERR_AUDIT_CLOSED"));
    const result = await verifyAuditLog(path, { verifier });
    assert.equal(result.ok, true);
    assert.equal(result.checkpoints, 2);
  });

  test("time-based checkpoints", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, {
      signer: testSigner(writerKeys),
      checkpointEvery: 0,
      checkpointIntervalMs: 30,
      ...quiet(),
    });
    await log.append(sample(1));
    // Poll: on a busy machine the tick, the write and the witness's rename take a while.
    const witnessUpTo = () =>
      existsSync(`${path}.witness`)
        ? (JSON.parse(readFileSync(`${path}.witness`, "utf8")) as { upTo: number }).upTo
        : 0;
    for (let waited = 0; witnessUpTo() !== 1 && waited < 5_000; waited += 20)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(log.lastCheckpoint?.upTo, 1);
    assert.equal(witnessUpTo(), 1);
    await log.close();
  });

  test("a failing signer does not stop auditing; it is reported", async () => {
    const path = newPath();
    const warnings: AuditWarning[] = [];
    const signer = {
      id: "broken",
      sign: (): string => {
        throw new Error("key unavailable");
      },
    };
    const log = await AuditLog.open(path, { signer, checkpointEvery: 2, ...quiet(warnings) });
    for (let i = 1; i <= 3; i++) await log.append(sample(i));
    await log.close();
    assert.ok(warnings.some((w) => w.code === "checkpoint-failed"));
    assert.equal((await verifyAuditLog(path)).entries, 3);
  });

  test("one writer per file: a second open fails, a stale lock of a dead process is broken", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    await assert.rejects(
      AuditLog.open(path, quiet()),
      (e) => isAztpError(e, "ERR_AUDIT_IO_FAILED") && /already open/.test((e as Error).message),
    );
    await log.close();
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: dead, host: hostname(), nonce: "stale" }));
    const reopened = await AuditLog.open(path, quiet());
    await reopened.close();
    assert.equal(existsSync(`${path}.lock`), false);
  });

  test("a torn last line is reported and repaired on open", async () => {
    const path = await writeLog(6);
    const intact = readFileSync(path);
    appendFileSync(path, '{"argsDigest":"x","callee":"spiffe://exa');
    const warnings: AuditWarning[] = [];
    const log = await AuditLog.open(path, { signer: testSigner(writerKeys), ...quiet(warnings) });
    assert.deepEqual(
      { ...log.recovered, discarded: log.recovered?.discarded.toString() },
      {
        tornBytes: 40,
        tornOffset: intact.length,
        discarded: '{"argsDigest":"x","callee":"spiffe://exa',
        lastSeq: 6,
        lastHash: log.head,
      },
    );
    assert.deepEqual(
      warnings.map((w) => w.code),
      ["torn-tail"],
    );
    assert.deepEqual(readFileSync(path), intact);
    const e = await log.append(sample(7));
    assert.equal(e.seq, 7);
    await log.close();
    assert.equal((await verifyAuditLog(path, { verifier })).ok, true);
  });

  test("the sink reads complete lines backwards across read chunks, multi-byte characters included", async () => {
    const path = newPath();
    const lines = ["{}", "é".repeat(9), "", "x", "€😀€".repeat(5), "last"];
    writeFileSync(path, lines.map((l) => `${l}\n`).join(""));
    const sink = await JsonlSink.open(path, {
      durability: "fsync",
      batchWindowMs: 1,
      maxBatchEntries: 10,
      maxBatchBytes: 1000,
    });
    try {
      for (const chunkSize of [1, 2, 3, 5, 7, 64, 1 << 16]) {
        const seen = [...sink.linesBackward(chunkSize)];
        assert.deepEqual(
          seen.map((l) => l.line),
          [...lines].reverse(),
          `chunk size ${chunkSize}`,
        );
        assert.equal(seen.at(-1)!.offset, 0);
        assert.equal(
          seen[0]!.offset,
          Buffer.byteLength(
            lines
              .slice(0, -1)
              .map((l) => `${l}\n`)
              .join(""),
          ),
        );
      }
    } finally {
      await sink.close();
    }
  });

  test("reopening scans back across many read chunks to the newest checkpoint", async () => {
    const path = newPath();
    const big = (i: number) => sample(i, { token: `${i}.`.padEnd(8000, "t") });
    let log = await AuditLog.open(path, { signer: testSigner(writerKeys), checkpointEvery: 10, ...quiet() });
    for (let i = 1; i <= 39; i++) await log.append(big(i));
    await log.close(); // checkpoints #1..#3 after 10, 20, 30, and #4 after 39 on close
    // Take away the final checkpoint and the witness: 9 entries (72 KB) follow checkpoint #3,
    // more than one 64 KB read chunk.
    writeLines(path, readLines(path).slice(0, -1));
    rmSync(`${path}.witness`);
    const warnings: AuditWarning[] = [];
    log = await AuditLog.open(path, { signer: testSigner(writerKeys), checkpointEvery: 10, ...quiet(warnings) });
    assert.equal(log.lastSeq, 39);
    assert.deepEqual([log.lastCheckpoint?.seq, log.lastCheckpoint?.upTo], [3, 30]);
    assert.deepEqual(
      warnings.map((w) => w.code),
      ["witness-missing"],
    );
    for (let i = 40; i <= 41; i++) await log.append(big(i));
    await log.close();
    const result = await verifyAuditLog(path, { verifier });
    assert.equal(result.ok, true, result.firstBad?.message);
    assert.deepEqual([result.entries, result.checkpoints], [41, 5]);
  });

  test("opening refuses a log that is behind its witness, or whose tail is corrupt", async () => {
    const path = await writeLog(12);
    const lines = readLines(path);
    writeLines(path, lines.slice(0, -4));
    await assert.rejects(
      AuditLog.open(path, quiet()),
      (e) => isAztpError(e, "ERR_AUDIT_CORRUPT") && /behind its witness/.test((e as Error).message),
    );
    const edited = await writeLog(3, { signer: undefined });
    const l = readLines(edited);
    writeLines(edited, [
      ...l.slice(0, -1),
      l
        .at(-1)!
        .replace('"decision":"allow"', '"decision":"deny"')
        .replace('"decision":"deny"', '"decision":"allow"')
        .replace("jti-3", "jti-4"),
    ]);
    await assert.rejects(AuditLog.open(edited, quiet()), (e) => isAztpError(e, "ERR_AUDIT_CORRUPT"));
    assert.equal(existsSync(`${edited}.lock`), false, "the lock is released after a failed open");
  });
});

describe("durability modes and group commit", () => {
  test('"write" (the default): appends of one synchronous run share one write(), none waits for fdatasync; checkpoints and close do sync', async () => {
    const path = newPath();
    const sink = await JsonlSink.open(path, {
      durability: "write",
      batchWindowMs: 0,
      maxBatchEntries: 1024,
      maxBatchBytes: 1 << 20,
    });
    try {
      await Promise.all(Array.from({ length: 10 }, (_, i) => sink.append(`{"n":${i}}`)));
      assert.deepEqual(sink.stats, { writes: 1, syncs: 0 });
      assert.equal(readLines(path).length, 10, "in the file (the page cache) once they resolved");
      await sink.append('{"n":10}');
      assert.deepEqual(sink.stats, { writes: 2, syncs: 0 });
      await sink.append('{"type":"checkpoint"}', { sync: true });
      assert.deepEqual(sink.stats, { writes: 3, syncs: 1 });
      await sink.append('{"n":11}');
    } finally {
      await sink.close();
    }
    assert.deepEqual(sink.stats, { writes: 4, syncs: 2 }, "close syncs what was only written");
  });

  test('"fsync": each write is fdatasync\'ed, and appends arriving while one is in flight share the next', async () => {
    const path = newPath();
    const sink = await JsonlSink.open(path, {
      durability: "fsync",
      batchWindowMs: 0,
      maxBatchEntries: 1024,
      maxBatchBytes: 1 << 20,
    });
    try {
      const first = sink.append('{"n":0}');
      await Promise.resolve(); // the writer took the first batch: its write is in flight now
      const rest = Array.from({ length: 20 }, (_, i) => sink.append(`{"n":${i + 1}}`));
      await first;
      await Promise.all(rest);
      assert.deepEqual(sink.stats, { writes: 2, syncs: 2 });
      assert.deepEqual(
        readLines(path).map((l) => (JSON.parse(l) as { n: number }).n),
        Array.from({ length: 21 }, (_, i) => i),
      );
    } finally {
      await sink.close();
    }
    assert.deepEqual(sink.stats, { writes: 2, syncs: 2 }, "nothing left to sync at close");
  });

  test("AuditLog takes durability and refuses an unknown one", async () => {
    for (const durability of ["write", "fsync"] as const) {
      const path = newPath();
      const log = await AuditLog.open(path, {
        durability,
        signer: testSigner(writerKeys),
        checkpointEvery: 3,
        ...quiet(),
      });
      const entries = await Promise.all(Array.from({ length: 7 }, (_, i) => log.append(sample(i))));
      assert.deepEqual(
        entries.map((e) => e.seq),
        [1, 2, 3, 4, 5, 6, 7],
      );
      await log.close();
      const result = await verifyAuditLog(path, { verifier });
      assert.equal(result.ok, true, result.firstBad?.message);
    }
    await assert.rejects(AuditLog.open(newPath(), { durability: "sometimes" as "write" }), (e) =>
      isAztpError(e, "ERR_ARGUMENT_INVALID"),
    );
  });
});

describe("failure and recovery", () => {
  test("a log that has not failed is writable and recover() says so; a closed one is not", async () => {
    const log = await AuditLog.open(newPath(), quiet());
    assert.equal(log.writable, true);
    assert.equal(await log.recover(), true);
    await log.close();
    assert.equal(log.writable, false);
    assert.equal(await log.recover(), false);
  });

  for (const durability of ["write", "fsync"] as const) {
    const disk = tinyDisk();
    after(disk.unmount);
    test(
      `a full disk (ENOSPC) mid-run: appends reject, writable is false, recover() brings it back once space is freed, and the chain verifies end to end (durability "${durability}")`,
      { skip: disk.skip, timeout: 30_000 },
      async () => {
        const path = join(disk.dir, "audit.jsonl");
        const warnings: AuditWarning[] = [];
        const log = await AuditLog.open(path, {
          durability,
          signer: testSigner(writerKeys),
          checkpointEvery: 4,
          ...quiet(warnings),
        });
        const acknowledged: number[] = [];
        const big = (i: number) => sample(i, { token: `${i}.`.padEnd(2000, "t") });
        for (let i = 1; i <= 6; i++) acknowledged.push((await log.append(big(i))).seq);

        const filler = fillDisk(disk.dir);
        let failure: unknown;
        for (let i = 0; i < 200 && failure === undefined; i++) {
          // Sequential: the page the log ends in may still take a line or two.
          await log.append(big(i)).then(
            (e) => acknowledged.push(e.seq),
            (e: unknown) => (failure = e),
          );
        }
        assert.ok(
          isAztpError(failure, "ERR_AUDIT_IO_FAILED"),
          `the write failed with ERR_AUDIT_IO_FAILED: ${String(failure)}`,
        );
        assert.match((failure as Error).message, /ENOSPC/);
        assert.equal(log.writable, false);
        const seqBefore = log.lastSeq;
        await assert.rejects(
          log.append(big(0)),
          (e) => isAztpError(e, "ERR_AUDIT_IO_FAILED"),
          "a failed log refuses appends",
        );
        assert.equal(log.lastSeq, seqBefore, "a refused append is assigned no seq");
        assert.ok(warnings.some((w) => w.code === "write-failed"));

        // Still full: one real attempt, shared by concurrent callers; another right after is not made.
        const first = log.recover();
        assert.equal(log.recover(), first, "concurrent callers share one attempt");
        assert.equal(await first, false);
        assert.equal(await log.recover(), false);
        assert.equal(warnings.filter((w) => w.code === "recover-failed").length, 1, "at most one attempt per interval");
        assert.match(warnings.find((w) => w.code === "recover-failed")!.message, /ENOSPC/);
        assert.equal(log.writable, false);

        rmSync(filler);
        const deadline = Date.now() + 10_000;
        while (!(await log.recover())) {
          assert.ok(Date.now() < deadline, "recover() within 10 s of freeing the disk");
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.equal(log.writable, true);
        assert.ok(warnings.some((w) => w.code === "recovered"));
        assert.equal(log.lastSeq, acknowledged.at(-1), "the chain continues after the last acknowledged entry");
        for (let i = 1; i <= 5; i++) acknowledged.push((await log.append(big(i))).seq);
        await log.close();

        assert.deepEqual(
          acknowledged,
          Array.from({ length: acknowledged.length }, (_, i) => i + 1),
          "acknowledged entries are numbered without gaps",
        );
        const result = await verifyAuditLog(path, { verifier });
        assert.equal(result.ok, true, result.firstBad?.message);
        assert.equal(result.entries, acknowledged.length, "exactly the acknowledged entries are in the log");
        assert.equal(result.uncovered, 0);
        const reopened = await AuditLog.open(path, quiet());
        assert.equal(reopened.recovered, null, "no torn line was left behind");
        await reopened.close();
      },
    );
  }
});

describe("query and stats", () => {
  test("an entry stored under a code's old name reads with today's code, its bytes and chain unchanged", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    await log.append(sample(1, { decision: "deny", reason: "ERR_INVOCATION_AUDIENCE" }));
    await log.append(sample(2, { decision: "deny", reason: "ERR_POLICY_DENIED" }));
    await log.close();
    assert.match(readFileSync(path, "utf8"), /"reason":"ERR_INVOCATION_AUDIENCE"/);
    assert.deepEqual(
      (await queryAuditLog(path)).map((e) => e.reason),
      ["ERR_INVOCATION_AUDIENCE_MISMATCH", "ERR_POLICY_DENIED"],
    );
    assert.equal((await verifyAuditLog(path)).ok, true);
  });

  test("filters by caller, callee, tool, decision and time, with a limit", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    const base = Date.parse("2026-01-01T00:00:00.000Z");
    for (let i = 1; i <= 12; i++) await log.append(sample(i, { time: new Date(base + i * 60_000).toISOString() }));
    await log.close();
    const seqs = (entries: AuditEntry[]) => entries.map((e) => e.seq);
    assert.deepEqual(seqs(await queryAuditLog(path, { tool: "search" })), [2, 4, 6, 8, 10, 12]);
    assert.deepEqual(seqs(await queryAuditLog(path, { decision: "deny" })), [3, 7, 11]);
    assert.deepEqual(
      seqs(
        await queryAuditLog(path, {
          caller: "spiffe://example.org/workload/production/node/agent-1",
          decision: "allow",
        }),
      ),
      [1, 5, 9],
    );
    assert.deepEqual(seqs(await queryAuditLog(path, { callee: "nobody" })), []);
    assert.deepEqual(
      seqs(
        await queryAuditLog(path, {
          since: new Date(base + 3 * 60_000),
          until: new Date(base + 6 * 60_000).toISOString(),
        }),
      ),
      [3, 4, 5],
    );
    assert.deepEqual(seqs(await queryAuditLog(path, { tool: "fetch", limit: 2 })), [1, 3]);
    await assert.rejects(queryAuditLog(path, { since: "not a time" }), (e) => isAztpError(e, "ERR_ARGUMENT_INVALID"));
  });

  test("stats count by decision, outcome and caller → callee / tool", async () => {
    const path = await writeLog(8);
    const stats = await auditStats(path);
    assert.equal(stats.entries, 8);
    assert.equal(stats.checkpoints, 2);
    assert.deepEqual(stats.decisions, { allow: 6, deny: 2, "audit-only": 0 });
    assert.deepEqual(stats.outcomes, { ok: 6, error: 0, denied: 2, interrupted: 0, none: 0 });
    assert.deepEqual(
      stats.calls.map((c) => [c.caller.slice(-7), c.tool, c.total, c.decisions.deny]),
      [
        ["agent-0", "search", 4, 0],
        ["agent-1", "fetch", 4, 2],
      ],
    );
  });

  test("callers are data: a query by caller finds verified and claimed calls, callerVerified narrows it, stats keep them apart", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    const ada = "spiffe://example.org/workload/production/node/ada";
    const rows: Partial<AuditEntryInput>[] = [
      { caller: ada, callerVerified: true, decision: "allow", outcome: "ok" },
      { caller: ada, callerVerified: true, decision: "deny", outcome: "denied", reason: "ERR_POLICY_DENIED" },
      {
        caller: ada,
        callerVerified: false,
        decision: "deny",
        outcome: "denied",
        reason: "ERR_INVOCATION_ARGS_MISMATCH",
      },
      // A forged token may name the ID in its other form: still a claim to be that ID.
      {
        caller: ada.replace("spiffe://", "aztp://"),
        callerVerified: false,
        decision: "deny",
        outcome: "denied",
        reason: "ERR_INVOCATION_REPLAYED",
      },
      {
        caller: "unknown",
        callerVerified: false,
        decision: "deny",
        outcome: "denied",
        reason: "ERR_INVOCATION_MISSING",
      },
      {
        caller: "spiffe://example.org/workload/production/node/bob",
        callerVerified: true,
        decision: "allow",
        outcome: "ok",
      },
    ];
    for (const row of rows) await log.append(sample(2, { ...row, tool: "search" }));
    await log.close();
    const seqs = (entries: AuditEntry[]) => entries.map((e) => e.seq);
    assert.deepEqual(seqs(await queryAuditLog(path, { caller: ada, decision: "deny" })), [2, 3, 4]);
    assert.deepEqual(seqs(await queryAuditLog(path, { caller: ada.replace("spiffe://", "aztp://") })), [1, 2, 3, 4]);
    assert.deepEqual(seqs(await queryAuditLog(path, { caller: ada, callerVerified: true })), [1, 2]);
    assert.deepEqual(seqs(await queryAuditLog(path, { caller: ada, callerVerified: false })), [3, 4]);
    assert.deepEqual(seqs(await queryAuditLog(path, { caller: "unknown" })), [5]);
    await assert.rejects(queryAuditLog(path, { callerVerified: "yes" as unknown as boolean }), (e) =>
      isAztpError(e, "ERR_ARGUMENT_INVALID"),
    );
    const stats = await auditStats(path);
    assert.deepEqual(stats.callers, { verified: 3, claimed: 3 });
    assert.deepEqual(
      stats.calls.map((c) => [
        c.caller.replace("/workload/production/node", ""),
        c.callerVerified,
        c.total,
        c.decisions.deny,
      ]),
      [
        ["spiffe://example.org/ada", true, 2, 1],
        ["aztp://example.org/ada", false, 1, 1], // as claimed
        ["spiffe://example.org/ada", false, 1, 1],
        ["spiffe://example.org/bob", true, 1, 0],
        ["unknown", false, 1, 1],
      ],
    );
  });

  test("an interrupted call is an outcome of its own: written, verified, found by outcome, counted apart; a version 1 entry cannot claim it", async () => {
    const path = newPath();
    const log = await AuditLog.open(path, quiet());
    // Paused before it gave a result: no result digest, no receipt.
    const {
      receipt: _receipt,
      resultDigest: _digest,
      ...paused
    } = sample(2, {
      outcome: "interrupted",
      reason: "GraphInterrupt",
    });
    await log.append(sample(1));
    await log.append(paused);
    await log.append(sample(4));
    await assert.rejects(
      log.append(sample(5, { outcome: "paused" as never })),
      (e) => isAztpError(e, "ERR_ARGUMENT_INVALID"),
      "an outcome the log does not know is refused",
    );
    await log.close();
    const verified = await verifyAuditLog(path);
    assert.deepEqual([verified.ok, verified.entries], [true, 3], verified.firstBad?.message);
    const found = await queryAuditLog(path, { outcome: "interrupted" });
    assert.deepEqual(
      found.map((e) => [e.seq, e.outcome, e.reason, e.receipt, e.resultDigest]),
      [[2, "interrupted", "GraphInterrupt", undefined, undefined]],
    );
    assert.deepEqual(
      (await queryAuditLog(path, { outcome: "ok" })).map((e) => e.seq),
      [1, 3],
    );
    assert.deepEqual((await auditStats(path)).outcomes, { ok: 2, error: 0, denied: 0, interrupted: 1, none: 0 });
    // Version 1 writers knew no interrupted calls: such an entry is malformed, not read.
    const v1: Record<string, unknown> = {
      v: 1,
      seq: 1,
      time: "2026-01-01T00:00:00.000Z",
      side: "callee",
      caller: "spiffe://example.org/ada",
      callee: "spiffe://example.org/tools",
      tool: "search",
      argsDigest: "d",
      decision: "allow",
      prev: GENESIS_HASH,
    };
    const v1Path = newPath("v1");
    for (const [outcome, ok] of [
      ["ok", true],
      ["interrupted", false],
    ] as const) {
      const entry = { ...v1, outcome };
      const hash = createHash("sha256").update(canonicalize(entry)!, "utf8").digest("hex");
      writeLines(v1Path, [JSON.stringify({ ...entry, hash })]);
      const r = await verifyAuditLog(v1Path);
      assert.equal(r.ok, ok, `a version 1 entry with outcome ${outcome}`);
      if (!ok) assert.equal(r.firstBad?.reason, "malformed");
    }
  });

  test('a version 1 log is still read and verified: an "unverified:X" caller reads as caller X, not verified', async () => {
    const path = newPath("v1");
    const ada = "spiffe://example.org/workload/production/node/ada";
    const v1 = [
      { caller: ada, decision: "allow", outcome: "ok" },
      { caller: `unverified:${ada}`, decision: "deny", outcome: "denied", reason: "ERR_INVOCATION_SIGNATURE_INVALID" },
      { caller: "unknown", decision: "deny", outcome: "denied", reason: "ERR_INVOCATION_MISSING" },
    ];
    let prev = GENESIS_HASH;
    const lines = v1.map((fields, i) => {
      const entry: Record<string, unknown> = {
        v: 1,
        seq: i + 1,
        time: "2026-01-01T00:00:00.000Z",
        side: "callee",
        callee: "spiffe://example.org/tools",
        tool: "search",
        argsDigest: "d",
        prev,
        ...fields,
      };
      const hash = createHash("sha256").update(canonicalize(entry)!, "utf8").digest("hex");
      prev = hash;
      return JSON.stringify({ ...entry, hash });
    });
    writeLines(path, lines);
    const verified = await verifyAuditLog(path);
    assert.equal(verified.ok, true, verified.firstBad?.message);
    const entries = await queryAuditLog(path, { caller: ada });
    assert.deepEqual(
      entries.map((e) => [e.seq, e.v, e.caller, e.callerVerified]),
      [
        [1, 1, ada, true],
        [2, 1, ada, false],
      ],
    );
    assert.equal(entries[1]!.hash, JSON.parse(lines[1]!).hash, "the stored hash, of the stored record");
    assert.deepEqual(
      (await queryAuditLog(path, { caller: "unknown" })).map((e) => e.callerVerified),
      [false],
    );
    assert.deepEqual((await auditStats(path)).callers, { verified: 1, claimed: 2 });
    // The writer continues a version 1 log with version 2 entries; the whole chain verifies.
    const log = await AuditLog.open(path, quiet());
    assert.equal(log.lastSeq, 3);
    const next = await log.append(sample(1));
    assert.deepEqual([next.seq, next.v, next.prev], [4, 2, prev]);
    await log.close();
    const again = await verifyAuditLog(path);
    assert.deepEqual([again.ok, again.entries], [true, 4]);
    // A version 1 entry cannot take fields of version 2.
    writeLines(path, [JSON.stringify({ ...JSON.parse(lines[0]!), callerVerified: true })]);
    assert.equal((await verifyAuditLog(path)).firstBad?.reason, "malformed");
  });
});

describe("OpenTelemetry export", () => {
  class RecordingSpan {
    attributes: Attributes = {};
    events: { name: string; attributes: Attributes }[] = [];
    ended = false;
    constructor(readonly name: string) {}
    spanContext(): SpanContext {
      return { traceId: "0af7651916cd43dd8448eb211c80319c", spanId: "b7ad6b7169203331", traceFlags: 1 };
    }
    setAttribute(key: string, value: Attributes[string]) {
      this.attributes[key] = value;
      return this;
    }
    setAttributes(attributes: Attributes) {
      Object.assign(this.attributes, attributes);
      return this;
    }
    addEvent(name: string, attributes?: unknown) {
      this.events.push({ name, attributes: attributes as Attributes });
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
      return !this.ended;
    }
    recordException() {}
  }

  test("each durable entry becomes a span (or an event on the active span) and a log record", async () => {
    const spans: RecordingSpan[] = [];
    const tracer = { startSpan: (name: string) => spans[spans.push(new RecordingSpan(name)) - 1] } as unknown as Tracer;
    const provider: TracerProvider = { getTracer: () => tracer };
    let current: Context = ROOT_CONTEXT;
    const manager = {
      active: () => current,
      with: (ctx: Context, fn: (...args: unknown[]) => unknown, thisArg?: unknown, ...args: unknown[]) => {
        const saved = current;
        current = ctx;
        try {
          return fn.call(thisArg, ...args);
        } finally {
          current = saved;
        }
      },
      bind: <T>(_ctx: Context, target: T) => target,
      enable() {
        return this;
      },
      disable() {
        return this;
      },
    } as unknown as ContextManager;
    const records: LogRecord[] = [];
    const logger: Logger = { emit: (r) => records.push(r), enabled: () => true };
    const loggerProvider: LoggerProvider = { getLogger: () => logger };
    assert.ok(trace.setGlobalTracerProvider(provider));
    assert.ok(context.setGlobalContextManager(manager));
    assert.ok(logs.setGlobalLoggerProvider(loggerProvider));
    try {
      const path = newPath();
      const log = await AuditLog.open(path, { otel: true, includeArgs: true, ...quiet() });
      const denied = await log.append(sample(3)); // no active span: a span of its own
      assert.equal(spans.length, 1);
      assert.equal(spans[0]!.name, "aztp.audit");
      assert.equal(spans[0]!.ended, true);
      assert.deepEqual(
        {
          seq: spans[0]!.attributes["aztp.audit.seq"],
          decision: spans[0]!.attributes["aztp.audit.decision"],
          reason: spans[0]!.attributes["aztp.audit.reason"],
          tool: spans[0]!.attributes["aztp.audit.tool"],
          hash: spans[0]!.attributes["aztp.audit.hash"],
        },
        { seq: 1, decision: "deny", reason: "ERR_POLICY_DENIED", tool: "fetch", hash: denied.hash },
      );
      for (const secret of ["aztp.audit.token", "aztp.audit.receipt", "aztp.audit.args"]) {
        assert.equal(secret in spans[0]!.attributes, false, `${secret} is not exported`);
      }
      // Inside an active recording span: an event on it, no new span.
      const parent = new RecordingSpan("tool call");
      await context.with(trace.setSpan(ROOT_CONTEXT, parent as unknown as Span), () => log.append(sample(2)));
      assert.equal(spans.length, 1);
      assert.equal(parent.events.length, 1);
      assert.equal(parent.events[0]!.name, "aztp.audit");
      assert.equal(parent.events[0]!.attributes["aztp.audit.seq"], 2);
      assert.equal(records.length, 2);
      assert.equal(records[0]!.eventName, "aztp.audit");
      assert.equal(records[0]!.attributes?.["aztp.audit.decision"], "deny");
      await log.close();
      // Off by default.
      const quietLog = await AuditLog.open(newPath(), quiet());
      await quietLog.append(sample(1));
      await quietLog.close();
      assert.equal(spans.length, 1);
      assert.equal(records.length, 2);
    } finally {
      trace.disable();
      context.disable();
      logs.disable();
    }
  });

  test("with no SDK registered, export is a no-op", async () => {
    const log = await AuditLog.open(newPath(), { otel: true, ...quiet() });
    const entry = await log.append(sample(1));
    assert.equal(entry.seq, 1);
    await log.close();
  });
});

describe("crash safety", () => {
  for (const durability of ["write", "fsync"] as const)
    test(
      `after SIGKILL under load, every acknowledged entry is present and the log verifies (durability "${durability}")`,
      { timeout: 30_000 },
      async () => {
        const path = newPath("crash");
        const helper = fileURLToPath(new URL("./helpers/audit-crash-writer.ts", import.meta.url));
        const child = spawn(process.execPath, ["--import", "tsx", helper, path], {
          env: {
            ...process.env,
            AUDIT_DURABILITY: durability,
            AUDIT_SIGNER_ID: writerKeys.id,
            AUDIT_SIGNER_KEY: writerKeys.privateKey.export({ type: "pkcs8", format: "pem" }) as string,
          },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let err = "";
        child.stderr.on("data", (d: Buffer) => (err += d.toString()));
        const exited = new Promise<NodeJS.Signals | null>((resolve) =>
          child.on("exit", (_code, signal) => resolve(signal)),
        );
        // Killed in the middle of the load: once a few hundred entries were acknowledged.
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (d: Buffer) => {
            out += d.toString();
            if (out.startsWith("ready\n") && out.split("\n").length > 400) resolve();
          });
          void exited.then(() => reject(new Error(`writer exited early: ${err}`)));
        });
        child.kill("SIGKILL");
        assert.equal(await exited, "SIGKILL");

        const printed = out.split("\n");
        printed.pop(); // a line being printed when the kill came is not a claim
        const acknowledged = printed.slice(1).map(Number);
        assert.ok(acknowledged.length > 100, `only ${acknowledged.length} acknowledged entries`);

        const raw = readFileSync(path);
        const tornBefore = raw.length > 0 && raw[raw.length - 1] !== 10;
        const warnings: AuditWarning[] = [];
        const log = await AuditLog.open(path, { signer: testSigner(writerKeys), ...quiet(warnings) });
        assert.equal(log.recovered !== null, tornBefore, "a torn line is reported exactly when there was one");
        if (tornBefore) assert.ok(warnings.some((w) => w.code === "torn-tail"));
        const present = new Set((await queryAuditLog(path)).map((e) => e.seq));
        const lost = acknowledged.filter((seq) => !present.has(seq));
        assert.deepEqual(lost, [], "acknowledged entries lost");
        assert.ok(log.lastSeq >= Math.max(...acknowledged));
        await log.append(sample(1));
        await log.close();
        const result = await verifyAuditLog(path, { verifier });
        assert.equal(result.ok, true, result.firstBad?.message);
        assert.equal(result.entries, log.lastSeq);
      },
    );
});
