/**
 * src/viewer/ without a browser (test/audit-view.test.ts drives the page in Chromium): the join
 * of both sides of a call, the filters, each entry's state as the logs are verified and grow,
 * an entry's detail read back, the one-time token and the session, and the server's refusals.
 * Real logs (AuditLog, signed checkpoints), real files changed under the reader.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Script } from "node:vm";
import { describe, it, type TestContext } from "node:test";
import { AuditLog, type AuditEntryInput } from "../src/audit/index.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { CallIndex, intParam, parseFilter, type CallFilter } from "../src/viewer/call-index.js";
import { entryDetail } from "../src/viewer/entry-detail.js";
import { PAGE_HTML } from "../src/viewer/page/html.js";
import { PAGE_SCRIPT } from "../src/viewer/page/script.js";
import { PAGE_STYLE } from "../src/viewer/page/style.js";
import { startAuditViewer } from "../src/viewer/server.js";
import { ViewerSession } from "../src/viewer/session.js";
import { VerifiedLog, type EntryState } from "../src/viewer/verified-log.js";
import { LogWatcher } from "../src/viewer/watcher.js";
import { newTestKeys, testSigner, testVerifier, type TestKeys } from "./helpers/audit-signer.js";
import { tempDir } from "./helpers/authority-util.js";

const AGENT = "spiffe://example.org/workload/production/node/agent";
const TOOLS = "spiffe://example.org/workload/production/node/tools";
const T0 = Date.parse("2026-12-01T10:00:00.000Z");

function call(
  side: "caller" | "callee",
  n: number,
  extra: Partial<AuditEntryInput> = {},
): AuditEntryInput & { time: string } {
  return {
    time: new Date(T0 + n * 1000 + (side === "callee" ? 5 : 0)).toISOString(),
    side,
    caller: AGENT,
    callerVerified: true,
    callee: TOOLS,
    tool: "search",
    argsDigest: `digest-${n}`,
    decision: "allow",
    outcome: "ok",
    ...extra,
  };
}

async function writeLog(
  path: string,
  entries: readonly AuditEntryInput[],
  keys: TestKeys,
  checkpointEvery = 100,
): Promise<void> {
  const log = await AuditLog.open(path, { signer: testSigner(keys), checkpointEvery, onWarning: () => undefined });
  for (const e of entries) await log.append(e);
  await log.close();
}

async function loaded(path: string, id: number, keys?: TestKeys): Promise<VerifiedLog> {
  const log = new VerifiedLog({ id, path, ...(keys ? { verifier: testVerifier(keys) } : {}) });
  await log.load();
  return log;
}

function states(log: VerifiedLog): EntryState[] {
  return log.entries.map((e) => log.stateOf(e));
}

/** Each call as its entries, "<log>#<seq>", sorted: comparable whatever the ids. */
function calls(index: CallIndex, filter: CallFilter = {}): string[][] {
  return index
    .query(filter, 0, 500)
    .rows.map((r) => r.sides.map((s) => `${s.logName}#${s.seq}`).sort())
    .sort((a, b) => a.join().localeCompare(b.join()));
}

/** A caller's log and a callee's: a call seen by both, one the callee refused before trusting its jti, a replay, and a tool-call id reused by another jti. */
async function twoSides(t: TestContext): Promise<{ caller: string; callee: string; keys: TestKeys }> {
  const dir = tempDir(t, "viewer");
  const keys = newTestKeys();
  const caller = join(dir, "agent.jsonl");
  const callee = join(dir, "tools.jsonl");
  await writeLog(
    caller,
    [
      call("caller", 1, { jti: "jti-1", toolCallId: "tc-1", durationMs: 12 }),
      call("caller", 2, { jti: "jti-2", toolCallId: "tc-2", decision: "deny", outcome: "error" }),
      call("caller", 3, { jti: "jti-3", toolCallId: "tc-3" }),
    ],
    keys,
  );
  await writeLog(
    callee,
    [
      call("callee", 1, { jti: "jti-1", toolCallId: "tc-1", durationMs: 3 }),
      // Refused before its token was trusted: no jti recorded, the tool-call id it carried.
      call("callee", 2, {
        toolCallId: "tc-2",
        callerVerified: false,
        decision: "deny",
        reason: "ERR_INVOCATION_ARGS_MISMATCH",
        outcome: "denied",
      }),
      // The first token sent again.
      call("callee", 4, {
        jti: "jti-1",
        toolCallId: "tc-1",
        callerVerified: false,
        decision: "deny",
        reason: "ERR_INVOCATION_REPLAYED",
        outcome: "denied",
      }),
      // Another call carrying tc-3 with another jti: not the caller's third call.
      call("callee", 5, { jti: "jti-9", toolCallId: "tc-3", person: "https://op.example#alice" }),
    ],
    keys,
  );
  return { caller, callee, keys };
}

describe("the call index", () => {
  it("joins both sides on the jti, falls back to the tool-call id where no jti contradicts it, keeps a replay apart, and gives the same calls whatever the order of the logs", async (t) => {
    const { caller, callee, keys } = await twoSides(t);
    const expected = [["agent#1", "tools#1"], ["agent#2", "tools#2"], ["agent#3"], ["tools#3"], ["tools#4"]];
    for (const order of [
      [caller, callee],
      [callee, caller],
    ]) {
      const logs = await Promise.all(order.map((path, i) => loaded(path as string, i + 1, keys)));
      const index = new CallIndex();
      index.rebuild(logs.flatMap((l) => l.entries));
      assert.deepEqual(calls(index), expected, `logs in the order ${order.join(", ")}`);
      const page = index.query({}, 0, 10);
      assert.equal(page.total, 5);
      // Newest first; the call both saw is decided by the callee, timed by the caller.
      const first = page.rows.find((r) => r.jti === "jti-1" && r.sides.length === 2);
      assert.equal(first?.durationMs, 12);
      assert.equal(first?.state, "signed");
      const refused = page.rows.find((r) => r.toolCallId === "tc-2");
      assert.equal(refused?.decision, "deny");
      assert.equal(refused?.reason, "ERR_INVOCATION_ARGS_MISMATCH");
      assert.equal(refused?.callerVerified, false, "the callee's view of the caller");
      assert.deepEqual(
        page.rows.map((r) => r.time),
        [...page.rows.map((r) => r.time)].sort().reverse(),
      );
    }
  });

  it("joins a client's entry with a proxy's (and a bridge's, a caller side in its own log) and lets the proxy decide", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const [client, proxy, bridge] = ["client", "proxy", "bridge"].map((n) => join(dir, `${n}.jsonl`)) as [
      string,
      string,
      string,
    ];
    await writeLog(client, [call("caller", 1, { jti: "jti-p", outcome: "error" })], keys);
    await writeLog(
      proxy,
      [
        {
          ...call("callee", 1, { jti: "jti-p", decision: "deny", reason: "ERR_POLICY_DENIED", outcome: "denied" }),
          side: "proxy",
        },
        { ...call("callee", 2, { jti: "jti-b" }), side: "proxy" },
      ],
      keys,
    );
    await writeLog(bridge, [call("caller", 2, { jti: "jti-b", durationMs: 7 })], keys);
    const logs = await Promise.all([client, proxy, bridge].map((p, i) => loaded(p, i + 1, keys)));
    const index = new CallIndex();
    index.rebuild(logs.flatMap((l) => l.entries));
    assert.deepEqual(calls(index), [
      ["bridge#1", "proxy#2"],
      ["client#1", "proxy#1"],
    ]);
    const denied = index.query({ decision: "deny" }, 0, 10).rows;
    assert.equal(denied.length, 1);
    assert.equal(denied[0]?.reason, "ERR_POLICY_DENIED");
    assert.equal(index.query({ decision: "allow" }, 0, 10).rows[0]?.durationMs, 7);
  });

  it("filters on an ID in either spelling or part of one, a person by subject, a code on any side, the decision, free text, a time range, the verification state and the log; refuses values that are none", async (t) => {
    const { caller, callee, keys } = await twoSides(t);
    const logs = [await loaded(caller, 1, keys), await loaded(callee, 2, keys)];
    const index = new CallIndex();
    index.rebuild(logs.flatMap((l) => l.entries));
    const count = (f: CallFilter): number => index.query(f, 0, 0).total;
    assert.equal(count({ caller: "aztp://example.org/workload/production/node/agent" }), 5);
    assert.equal(count({ caller: "AGENT" }), 5, "part of an ID, any case");
    assert.equal(count({ caller: "spiffe://example.org/workload/production/node/other" }), 0);
    assert.equal(count({ person: "alice" }), 1);
    assert.equal(count({ person: "https://op.example#alice" }), 1);
    assert.equal(count({ person: "bob" }), 0);
    assert.equal(count({ code: "ERR_INVOCATION_REPLAYED" }), 1);
    assert.equal(count({ decision: "deny" }), 2);
    assert.equal(count({ decision: "allow" }), 3);
    assert.equal(count({ toolCallId: "tc-1" }), 2, "the call and its replay");
    assert.equal(count({ q: "args_mismatch" }), 1);
    assert.equal(count({ since: T0 + 2000, until: T0 + 4000 }), 2);
    assert.equal(count({ log: 1 }), 3);
    assert.equal(count({ state: "signed" }), 5);
    assert.equal(count({ state: "problems" }), 0);
    const charts = index.charts({});
    assert.equal(charts.total, 5);
    assert.deepEqual(charts.reasons, ["ERR_INVOCATION_ARGS_MISMATCH", "ERR_INVOCATION_REPLAYED"]);
    assert.equal(
      charts.buckets.reduce((n, b) => n + b.total, 0),
      5,
    );
    assert.deepEqual(
      charts.callers.map((c) => [c.name, c.calls]),
      [
        [AGENT, 3],
        [`${AGENT} (claimed)`, 2],
      ],
    );

    // Each refusal has its passing twin.
    for (const [query, ok] of [
      ["decision=drop", "decision=deny"],
      ["state=fine", "state=problems"],
      ["since=yesterday", "since=2026-12-01T10:00:00Z"],
      ["until=1e3", "until=1000"],
      ["log=first", "log=1"],
      ["outcome=great", "outcome=ok"],
    ] as const) {
      assert.throws(
        () => parseFilter(new URLSearchParams(query)),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.ARGUMENT_INVALID,
        query,
      );
      parseFilter(new URLSearchParams(ok));
    }
    assert.throws(() => intParam(new URLSearchParams("offset=-1"), "offset", 0), AztpError);
    assert.equal(intParam(new URLSearchParams("offset=50"), "offset", 0), 50);
  });
});

describe("a verified log", () => {
  it("says of each entry what is established: signed under a checked checkpoint, chained only after it, then appended lines checked from the head, and a forgery the first bad line with everything after it unverified", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const path = join(dir, "live.jsonl");
    const writer = await AuditLog.open(path, { signer: testSigner(keys), checkpointEvery: 2, onWarning: () => {} });
    for (let i = 1; i <= 3; i++) await writer.append(call("callee", i));
    await writer.flush();
    const log = await loaded(path, 1, keys);
    assert.deepEqual(states(log), ["signed", "signed", "uncovered"]);
    assert.equal(log.ok, true);

    await writer.append(call("callee", 4)); // the second since the checkpoint: the next one covers 3 and 4
    await writer.close();
    assert.equal(await log.poll(), "appended");
    assert.deepEqual(states(log), ["signed", "signed", "signed", "signed"]);
    assert.deepEqual(
      { entries: log.live.entries, checkpoints: log.live.checkpoints, fault: log.live.fault },
      { entries: 1, checkpoints: 1, fault: undefined },
    );
    assert.equal(await log.poll(), "unchanged");

    // Someone without the key appends an entry that chains but whose content is not its hash's.
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    const last = JSON.parse(lines.filter((l) => !l.includes('"checkpoint"')).at(-1) as string) as Record<
      string,
      unknown
    >;
    const forged = { ...last, seq: (last.seq as number) + 1, prev: last.hash, tool: "forged" };
    appendFileSync(path, `${JSON.stringify(forged)}\n${JSON.stringify({ ...forged, seq: 6 })}\n`);
    assert.equal(await log.poll(), "appended");
    assert.deepEqual(states(log), ["signed", "signed", "signed", "signed", "bad", "unverified"]);
    assert.equal(log.ok, false);
    assert.equal(log.live.fault?.reason, "hash-mismatch");

    // Cut back: the file no longer holds what was read; read and verified again, it holds.
    writeFileSync(path, `${lines.join("\n")}\n`);
    assert.equal(await log.poll(), "rewritten");
    await log.load();
    assert.deepEqual(states(log), ["signed", "signed", "signed", "signed"]);
    assert.equal(log.ok, true);
  });

  it("checks appended checkpoints as verification does, their Merkle tree and note included", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const other = newTestKeys();
    const path = join(dir, "tree.jsonl");
    const honest = await AuditLog.open(path, { signer: testSigner(keys), checkpointEvery: 2, onWarning: () => {} });
    for (let i = 1; i <= 2; i++) await honest.append(call("callee", i));
    await honest.close();
    const log = await loaded(path, 1, keys);
    assert.equal(log.ok, true);
    // The writer reopens the log with a signer whose note is signed by another key than its JWS:
    // every chain rule holds, only the note does not.
    const split = { ...testSigner(keys), signNote: testSigner(other).signNote! };
    const writer = await AuditLog.open(path, { signer: split, checkpointEvery: 2, onWarning: () => {} });
    for (let i = 3; i <= 4; i++) await writer.append(call("callee", i));
    await writer.close();
    assert.equal(await log.poll(), "appended");
    assert.equal(log.ok, false);
    assert.equal(log.live.fault?.reason, "checkpoint-tree");
    assert.equal(log.live.fault?.kind, "checkpoint");
  });

  it("marks the first bad line from the verdict: before it chained only when no checked checkpoint precedes it, after it unverified; a checkpoint signed by a key not trusted is not a signature", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const path = join(dir, "tampered.jsonl");
    await writeLog(
      path,
      Array.from({ length: 6 }, (_, i) => call("callee", i + 1)),
      keys,
      2,
    );
    const good = await loaded(path, 1, keys);
    assert.deepEqual(states(good), ["signed", "signed", "signed", "signed", "signed", "signed"]);
    const untrusted = await loaded(path, 1, newTestKeys());
    assert.equal(untrusted.verdict?.result.firstBad?.reason, "checkpoint-signature");
    assert.deepEqual(states(untrusted), [
      "uncovered",
      "uncovered",
      "unverified",
      "unverified",
      "unverified",
      "unverified",
    ]);
    const unsigned = await loaded(path, 1);
    assert.deepEqual(states(unsigned), Array(6).fill("checkpointed"), "--no-signatures: never shown as signed");

    // Entry 4 (line 5: entries 1, 2, checkpoint, 3, 4) edited in place.
    const lines = readFileSync(path, "utf8").split("\n");
    assert.match(lines[4] as string, /"seq":4,/);
    lines[4] = (lines[4] as string).replace('"tool":"search"', '"tool":"delete"');
    writeFileSync(path, lines.join("\n"));
    const tampered = await loaded(path, 1, keys);
    assert.equal(tampered.verdict?.result.firstBad?.line, 5);
    assert.equal(tampered.badLine, 5);
    assert.deepEqual(states(tampered), ["signed", "signed", "uncovered", "bad", "unverified", "unverified"]);
  });

  it("gives an entry's detail read back from its line, and refuses it once the line is no longer the one verified", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const path = join(dir, "detail.jsonl");
    await writeLog(path, [call("callee", 1, { jti: "jti-1", reason: "<script>x</script>" })], keys);
    const log = await loaded(path, 1, keys);
    const entry = log.entries[0];
    assert.ok(entry);
    const detail = await entryDetail(entry, undefined, undefined);
    assert.equal(detail.intact, true);
    assert.equal(detail.record?.reason, "<script>x</script>");
    assert.equal(detail.state, "signed");
    const text = readFileSync(path, "utf8");
    writeFileSync(path, text.replace('"tool":"search"', '"tool":"Search"'));
    const changed = await entryDetail(entry, undefined, undefined);
    assert.equal(changed.intact, false);
    assert.equal(changed.record, undefined, "nothing of it is shown");
    assert.match(changed.problem ?? "", /no longer the entry that was verified/);
  });
});

describe("the watcher", () => {
  it("shows a last line being written only once it is complete, then verifies the log again in full", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const whole = join(dir, "whole.jsonl");
    await writeLog(
      whole,
      [1, 2, 3].map((n) => call("callee", n)),
      keys,
      2,
    );
    // entry 1, entry 2, checkpoint 1, entry 3, checkpoint 2: the watched copy stops in the middle of entry 3.
    const text = readFileSync(whole, "utf8");
    const cut = text.indexOf('"seq":3,');
    const path = join(dir, "growing.jsonl");
    writeFileSync(path, text.slice(0, cut));
    const watcher = new LogWatcher({
      files: [path],
      trustFor: async () => ({ verifier: testVerifier(keys) }),
      witness: false,
      intervalMs: 50,
    });
    t.after(() => watcher.close());
    await watcher.start();
    const log = watcher.logs[0] as VerifiedLog;
    assert.equal(log.verdict?.result.firstBad?.reason, "torn-line");
    assert.equal(log.ok, false);
    assert.deepEqual(states(log), ["signed", "signed"], "what is complete is shown; the torn line is not");
    assert.equal(watcher.index.size, 2);
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    appendFileSync(path, text.slice(cut));
    const deadline = Date.now() + 10_000;
    while (!log.ok && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(log.ok, true, JSON.stringify(log.verdict?.result));
    assert.equal(log.verdict?.result.entries, 3);
    assert.deepEqual(states(log), ["signed", "signed", "signed"]);
    assert.equal(watcher.index.size, 3);
  });
});

describe("the session", () => {
  const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;

  it("exchanges the one-time token once for an HttpOnly, SameSite=Strict cookie; admits only that cookie", () => {
    const s = new ViewerSession(["127.0.0.1:8080", "localhost:8080"], 8080);
    assert.match(s.token, /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(s.admit(req({})), {
      ok: false,
      status: 401,
      message: "open the URL aztp audit view printed: it carries a one-time token that opens a session",
    });
    assert.equal(s.exchange("A".repeat(43)).ok, false);
    assert.equal(s.exchange(`${s.token}x`).ok, false);
    const first = s.exchange(s.token);
    assert.ok(first.ok);
    assert.match(first.cookie, /^aztp_view_8080=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/);
    const again = s.exchange(s.token);
    assert.equal(again.ok, false);
    assert.equal(!again.ok && again.status, 403);
    const cookie = first.cookie.split(";")[0] as string;
    assert.deepEqual(s.admit(req({ cookie: `other=1; ${cookie}` })), { ok: true });
    // Its last character changed (to another one: an "A" replaced by "A" would be the cookie itself).
    assert.equal(s.admit(req({ cookie: `${cookie.slice(0, -1)}${cookie.endsWith("A") ? "B" : "A"}` })).ok, false);
    assert.equal(s.admit(req({ cookie: cookie.replace("aztp_view_8080", "aztp_view_8081") })).ok, false);
  });

  it("answers only requests addressed to it (Host) from its own pages (Origin, Sec-Fetch-Site)", () => {
    const s = new ViewerSession(["127.0.0.1:8080", "localhost:8080"], 8080);
    const target = (headers: Record<string, string>): boolean => s.checkTarget(req(headers)).ok;
    assert.equal(target({ host: "127.0.0.1:8080" }), true);
    assert.equal(target({ host: "LOCALHOST:8080" }), true);
    assert.equal(
      target({ host: "127.0.0.1:8080", origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-origin" }),
      true,
    );
    assert.equal(target({ host: "127.0.0.1:8080", "sec-fetch-site": "none" }), true);
    assert.equal(target({}), false);
    assert.equal(target({ host: "attacker.example:8080" }), false, "DNS rebinding");
    assert.equal(target({ host: "127.0.0.1:8081" }), false);
    assert.equal(target({ host: "127.0.0.1:8080", origin: "http://attacker.example" }), false);
    assert.equal(target({ host: "127.0.0.1:8080", origin: "null" }), false);
    assert.equal(target({ host: "127.0.0.1:8080", "sec-fetch-site": "cross-site" }), false);
    assert.equal(target({ host: "127.0.0.1:8080", "sec-fetch-site": "same-site" }), false);
  });
});

describe("the page", () => {
  it("puts data in as text only, and loads nothing from elsewhere", () => {
    // What could turn a string into markup or code: none of it, anywhere in the script.
    for (const sink of [
      "innerHTML",
      "outerHTML",
      "insertAdjacentHTML",
      "document.write",
      "eval(",
      "new Function",
      'setAttribute("on',
      "srcdoc",
      "javascript:",
    ])
      assert.ok(!PAGE_SCRIPT.includes(sink), `the page script uses ${sink}`);
    new Script(PAGE_SCRIPT); // it parses
    for (const text of [PAGE_HTML, PAGE_SCRIPT, PAGE_STYLE])
      assert.doesNotMatch(text, /(?:src|href)="?(?:https?:)?\/\/|@import|url\(/, "no external resource");
    assert.doesNotMatch(PAGE_HTML, /<script>|<style|\sstyle=|\son\w+=/i, "nothing inline");
  });
});

describe("the server", () => {
  it("listens on loopback only; refuses a filter value that is none with 400, and answers its passing twin", async (t) => {
    const dir = tempDir(t, "viewer");
    const keys = newTestKeys();
    const path = join(dir, "tools.jsonl");
    await writeLog(path, [call("callee", 1), call("callee", 2, { decision: "deny", reason: "ERR_X" })], keys);
    for (const host of ["0.0.0.0", "192.168.1.10", "::", "localhost."])
      await assert.rejects(
        startAuditViewer({ files: [path], trustFor: async () => null, host }),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.ARGUMENT_INVALID,
        host,
      );
    const viewer = await startAuditViewer({ files: [path], trustFor: async () => ({ verifier: testVerifier(keys) }) });
    t.after(() => viewer.close());
    await viewer.ready;
    const origin = new URL(viewer.url).origin;
    const exchanged = await fetch(viewer.url, { redirect: "manual" });
    assert.equal(exchanged.status, 303);
    assert.equal(exchanged.headers.get("location"), "/");
    const cookie = (exchanged.headers.get("set-cookie") ?? "").split(";")[0] as string;
    const get = (path: string) => fetch(`${origin}${path}`, { headers: { cookie } });
    const bad = await get("/api/calls?decision=drop");
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, ErrorCodes.ARGUMENT_INVALID);
    const ok = await get("/api/calls?decision=deny");
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { total: number }).total, 1);
    const state = (await (await get("/api/state")).json()) as {
      ready: boolean;
      logs: Array<{ ok: boolean; signatures: string; verdict: { entries: number } }>;
    };
    assert.equal(state.ready, true);
    assert.deepEqual(
      state.logs.map((l) => [l.ok, l.signatures, l.verdict.entries]),
      [[true, "checked", 2]],
    );
    assert.equal((await get("/nope")).status, 404);
    assert.equal((await fetch(`${origin}/api/reverify`, { method: "POST", headers: { cookie } })).status, 200);
    assert.equal((await fetch(`${origin}/api/reverify`, { headers: { cookie } })).status, 405);
  });
});
