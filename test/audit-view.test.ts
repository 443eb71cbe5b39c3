/**
 * `aztp audit view` in a real browser (Debian's Chromium through playwright-core): the demo's
 * logs (examples/demo.ts, run into a fresh home), a tampered copy of them, a log written here with
 * hostile strings and then grown while the page is open, the token and the headers that keep the
 * page to one browser on this machine, and the command line's failures at start. Real processes,
 * real logs, real signatures; screenshots under test-artifacts/.
 */
import assert from "node:assert/strict";
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import type { Browser, Page } from "playwright-core";
import aztp from "aztp-client";
import { AuditLog } from "../src/audit/index.js";
import { svidCheckpointSigner } from "../src/invocation/index.js";
import { CONTENT_SECURITY_POLICY } from "../src/viewer/server.js";
import { PgAuditLog } from "../src/store/postgres/audit-log.js";
import { migrate } from "../src/store/postgres/migrations.js";
import { createPool } from "../src/store/postgres/pool.js";
import { assertExit, aztpCli, ROOT, runTs, tempDir } from "./helpers/authority-util.js";
import { launchChromium, skipWithoutChromium } from "./helpers/chromium.js";
import { CLI, spawnNode, type Child } from "./helpers/mcp-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";

const ARTIFACTS = join(ROOT, "test-artifacts");
const HOSTILE_TOOLS = ["<script>window.__pwned=1</script>", '<img src=x onerror="window.__pwned=2">'];
const HOSTILE_CALLER = '"><svg onload="window.__pwned=3">';

interface Viewer {
  readonly url: string;
  readonly origin: string;
  readonly child: Child;
}

/**
 * `aztp audit view ARGS` as a user runs it; resolves once it says it is ready (the URL is stdout's
 * first line). It is stopped when `owner` ends (a test, or the suite's `after`).
 */
async function startView(owner: Pick<TestContext, "after">, args: string[]): Promise<Viewer> {
  const child = spawnNode(owner as TestContext, ["--import", "tsx", CLI, ...args]);
  await child.waitFor(/aztp audit view: ready/, 90_000);
  const url = child.stdout().split("\n")[0] as string;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{43}$/, "the first line on stdout is the URL");
  return { url, origin: new URL(url).origin, child };
}

/** Opens the viewer in a fresh browser context (its own cookies) and waits for the first rows. */
async function open(browser: Browser, v: Viewer): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1100 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  (page as Page & { errors?: string[] }).errors = errors;
  const response = await page.goto(v.url);
  assert.equal(response?.status(), 200);
  assert.equal(new URL(page.url()).search, "", "the token is taken out of the address");
  await page.waitForSelector("tbody tr[data-call]", { timeout: 30_000 });
  return page;
}

async function rows(page: Page): Promise<Array<{ state: string; text: string }>> {
  return (await page.evaluate(
    "[...document.querySelectorAll('tbody tr[data-call]')].map((tr) => ({ state: tr.getAttribute('data-state') || '', text: tr.innerText }))",
  )) as Array<{ state: string; text: string }>;
}

// The page's own globals, as the functions below see them there: they run in the page, and are
// functions because the page's CSP refuses to evaluate strings (playwright's string predicates).
declare const document: {
  querySelectorAll(selector: string): { readonly length: number };
  querySelector(selector: string): { readonly textContent: string | null } | null;
};

/** Waits until the page shows `n` rows (in `state`, if given). */
async function rowCount(page: Page, n: number, state?: string): Promise<void> {
  const selector = state === undefined ? "tbody tr[data-call]" : `tbody tr[data-state="${state}"]`;
  await page.waitForFunction(
    ([n, selector]) => document.querySelectorAll(selector).length === n,
    [n, selector] as const,
    {
      timeout: 15_000,
    },
  );
}

/** Waits until the table shows `text`. */
async function shows(page: Page, text: string): Promise<void> {
  await page.waitForFunction((text) => document.querySelector("tbody")?.textContent?.includes(text) === true, text, {
    timeout: 20_000,
  });
}

/** What the page's script left in window.__pwned (a hostile string that ran would set it). */
async function pwned(page: Page): Promise<unknown> {
  return page.evaluate("window.__pwned");
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.evaluate("window.scrollTo(0, 0)");
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
}

/** A GET as another program would send it (no browser): status, headers, body. */
function get(
  origin: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const u = new URL(path, origin);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { host: u.host, ...headers } },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("aztp audit view, in Chromium", { skip: skipWithoutChromium(), timeout: 300_000 }, () => {
  let browser: Browser;
  let work: string;
  let home: string;
  let demo: Viewer | undefined;
  let demoPage: Page | undefined;
  // The first test's viewer serves the second too.
  const suiteEnd: Array<() => unknown> = [];
  const suite = { after: (fn: () => unknown) => suiteEnd.push(fn) };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "aztp-view-test-"));
    home = join(work, "home");
    const [launched, ran] = await Promise.all([
      launchChromium(),
      runTs(join(ROOT, "examples/demo.ts"), [], {
        env: { AZTP_HOME: home, AZTP_API_KEY: undefined, AZTP_TRUST_DOMAIN: undefined },
        timeoutMs: 240_000,
      }),
    ]);
    browser = launched;
    assert.equal(ran.code, 0, `the demo: ${ran.stdout}\n${ran.stderr}`);
  });

  after(async () => {
    for (const fn of suiteEnd) await fn();
    await browser?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("shows each log's verdict, then one row per call joined across the demo's logs, with who, what, where, decision, outcome and duration; a filter narrows the rows; a call's detail has its token and receipt checked", async (t) => {
    demo = await startView(suite, ["--home", home, "audit", "view"]);
    const page = await open(browser, demo);
    demoPage = page;
    // Five logs, each verified against the authority in the home.
    const cards = await page.locator("#verdicts article").allInnerTexts();
    assert.equal(cards.length, 5, cards.join("\n---\n"));
    for (const card of cards) {
      assert.match(card, /VERIFIED/);
      assert.doesNotMatch(card, /FAILS|NOT CHECKED/);
      // Each log with a checkpoint shows its Merkle tree as signed (the mcp-client's log is empty).
      assert.match(
        card,
        /Merkle tree of \d+ entr(y|ies) signed as a C2SP checkpoint \(aztp\.local\/[^)]+\/audit\/[a-z-]+\), its note's signature checked|No checkpoint yet/,
      );
      assert.match(
        card,
        new RegExp(
          `checkpoint signatures checked against the authority in ${home.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`,
        ),
      );
    }
    assert.match(await page.innerText("#status"), /15 calls in 5 logs, every log verified/);

    const all = await rows(page);
    assert.equal(all.length, 15, all.map((r) => r.text).join("\n"));
    assert.ok(
      all.every((r) => r.state === "signed"),
      "every entry of a closed, checkpointed log is signed",
    );
    const find = (re: RegExp): { state: string; text: string } => {
      const found = all.filter((r) => re.test(r.text));
      assert.equal(found.length, 1, `one row matches ${re}: ${found.map((f) => f.text).join("\n")}`);
      return found[0] as { state: string; text: string };
    };
    // A call both sides saw is one row naming both logs.
    const denied = find(/delete_doc[\s\S]*ERR_POLICY_DENIED/);
    assert.match(denied.text, /orchestrator/);
    assert.match(denied.text, /callee: docs-server #2/);
    assert.match(denied.text, /caller: orchestrator #4/);
    // The replayed token reached only the callee: a row of its own, saying so.
    const replayed = find(/ERR_INVOCATION_REPLAYED/);
    assert.match(replayed.text, /claimed only/);
    assert.match(replayed.text, /only the callee side/);
    // The tampered arguments: the callee saw a claim it refused, the caller its own call.
    const tampered = find(/ERR_INVOCATION_ARGS_MISMATCH/);
    assert.match(tampered.text, /callee: docs-server #5[\s\S]*caller: orchestrator #6/);
    // The person, the chain and the approval.
    const approved = find(/approved by alice/);
    assert.match(approved.text, /for alice/);
    assert.match(approved.text, /transfer/);
    assert.match(approved.text, /allow/);
    const delegated = find(/call_r_alice_search/);
    assert.match(delegated.text, /on behalf of orchestrator/);
    assert.match(delegated.text, /for alice/);
    await shot(page, "audit-view-demo.png");

    // A filter: the rows narrow to delete_doc's two calls, on the server.
    await page.fill("#f-tool", "delete_doc");
    await page.press("#f-tool", "Enter");
    await rowCount(page, 2);
    const narrowed = await rows(page);
    assert.ok(
      narrowed.every((r) => /delete_doc/.test(r.text)),
      narrowed.map((r) => r.text).join("\n"),
    );
    assert.match(await page.innerText("#count"), /Calls 1–2 of 2/);
    assert.match(await page.innerText("#chart-tools"), /^delete_doc\s+2 \(2 denied\)$/m);
    await shot(page, "audit-view-filter.png");
    await page.selectOption("#f-decision", "deny");
    await page.fill("#f-tool", "");
    await page.press("#f-tool", "Enter");
    await rowCount(page, 7);
    assert.ok((await rows(page)).every((r) => /\bdeny\b/.test(r.text)));
    await page.click("#clear");
    await rowCount(page, 15);

    // The approved transfer's detail: both entries, each token and receipt verified in place.
    await page.click("tbody tr[data-call]:has-text('approved by alice')");
    await page.waitForSelector("#detail section.entry");
    const detail = await page.innerText("#detail");
    assert.equal((detail.match(/✓ Signature and certificate chain verified/g) ?? []).length, 4, detail);
    assert.doesNotMatch(detail, /✗/);
    assert.match(detail, /answers this entry's token \(ith\)/);
    assert.match(detail, /on-behalf-of token \(obo\)/);
    await shot(page, "audit-view-detail.png");
    assert.deepEqual((page as Page & { errors?: string[] }).errors, [], "no script error on the page");
  });

  it("refuses every request without the session: no cookie (401), the token used again (403), a wrong token, another Host or Origin; the page carries the CSP and the other headers", async () => {
    assert.ok(demo && demoPage, "the viewer of the first test");
    const cookies = await demoPage.context().cookies(demo.origin);
    assert.equal(cookies.length, 1);
    const cookie = cookies[0] as { name: string; value: string; httpOnly: boolean; sameSite: string };
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    const session = `${cookie.name}=${cookie.value}`;
    const path = new URL(demo.url).pathname + new URL(demo.url).search;
    const [page, noCookie, apiNoCookie, reused, wrong, badCookie, otherHost, otherOrigin, crossSite, api] =
      await Promise.all([
        get(demo.origin, "/", { cookie: session }),
        get(demo.origin, "/"),
        get(demo.origin, "/api/calls"),
        get(demo.origin, path),
        get(demo.origin, "/?token=" + "A".repeat(43)),
        get(demo.origin, "/api/calls", { cookie: `${cookie.name}=${"B".repeat(43)}` }),
        get(demo.origin, "/api/calls", { cookie: session, host: `rebound.example:${new URL(demo.origin).port}` }),
        get(demo.origin, "/api/calls", { cookie: session, origin: "http://evil.example" }),
        get(demo.origin, "/api/calls", { cookie: session, "sec-fetch-site": "cross-site" }),
        get(demo.origin, "/api/calls?tool=take_note", { cookie: session, origin: demo.origin }),
      ]);
    // The passing twins: the same session, as the page sends it.
    assert.equal(page.status, 200);
    assert.equal(api.status, 200);
    assert.equal((JSON.parse(api.body) as { total: number }).total, 1);
    assert.equal(noCookie.status, 401);
    assert.match(noCookie.body, /one-time token/);
    assert.equal(apiNoCookie.status, 401);
    assert.equal(reused.status, 403, "the token opens one session only");
    assert.match(reused.body, /already used/);
    assert.equal(wrong.status, 403);
    assert.equal(badCookie.status, 403);
    assert.equal(otherHost.status, 403, "DNS rebinding: another Host is refused");
    assert.equal(otherOrigin.status, 403);
    assert.equal(crossSite.status, 403);
    for (const r of [page, noCookie, reused, otherHost]) {
      assert.equal(r.headers["content-security-policy"], CONTENT_SECURITY_POLICY);
      assert.equal(r.headers["x-content-type-options"], "nosniff");
      assert.equal(r.headers["referrer-policy"], "no-referrer");
      assert.equal(r.headers["cache-control"], "no-store");
    }
    assert.equal(
      CONTENT_SECURITY_POLICY,
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    assert.doesNotMatch(page.body, /<script>|\sstyle=|\son\w+=/i, "nothing inline in the page");
    assert.doesNotMatch(page.body, /https?:\/\//, "nothing fetched from elsewhere");
  });

  it("marks a tampered copy: the right entry flagged as the first bad one, every later entry of that log unverified, the other logs still verified", async (t) => {
    const copy = join(work, "tampered");
    cpSync(join(home, "audit"), copy, { recursive: true });
    const file = join(copy, "docs-server.jsonl");
    const lines = readFileSync(file, "utf8").split("\n");
    assert.match(lines[2] as string, /"seq":3,/);
    lines[2] = (lines[2] as string).replace('"tool":"search_docs"', '"tool":"search_all"');
    writeFileSync(file, lines.join("\n"));
    const v = await startView(t, ["--home", home, "audit", "view", copy]);
    const page = await open(browser, v);
    const card = await page.innerText("#verdicts article[data-log='1']");
    assert.match(card, /^docs-server/);
    assert.match(card, /FAILS VERIFICATION/);
    assert.match(card, /First bad: line 3 \(entry 3\): hash-mismatch/);
    const others = await page.locator("#verdicts article:not([data-log='1'])").allInnerTexts();
    assert.ok(
      others.every((c) => /VERIFIED/.test(c) && !/FAILS/.test(c)),
      others.join("\n"),
    );
    assert.match(await page.innerText("#status"), /SOME LOGS FAIL VERIFICATION/);

    const all = await rows(page);
    const bad = all.filter((r) => r.state === "bad");
    assert.equal(bad.length, 1, all.map((r) => `${r.state} ${r.text}`).join("\n"));
    assert.match((bad[0] as { text: string }).text, /search_all[\s\S]*call_r_search_1_/);
    assert.match((bad[0] as { text: string }).text, /FIRST BAD ENTRY/);
    // docs-server's entries 4 to 7 come after it: each of their calls is marked unverified.
    const unverified = all.filter((r) => r.state === "unverified");
    assert.equal(unverified.length, 4, unverified.map((r) => r.text).join("\n"));
    for (const r of unverified) assert.match(r.text, /UNVERIFIED[\s\S]*callee: docs-server #[4-7]/);
    // Those before it chain, but the checkpoint that would cover them comes after the bad line:
    // chained only, neither bad nor signed.
    const before = all.filter((r) => /callee: docs-server #[1-2]\n/.test(r.text));
    assert.equal(before.length, 2);
    assert.ok(
      before.every((r) => r.state === "uncovered" && /chained only/.test(r.text)),
      before.map((r) => `${r.state} ${r.text}`).join("\n"),
    );
    await shot(page, "audit-view-tampered.png");
    await page.click("#verdicts article[data-log='1'] button:has-text('Show the first bad entry')");
    await rowCount(page, 1);
    assert.equal((await rows(page))[0]?.state, "bad");
  });

  it("renders hostile strings as text, and shows entries appended while the page is open: checked from the verified head, then covered by their checkpoint; an appended forgery is flagged", async (t) => {
    const dir = join(work, "hostile");
    mkdirSync(dir);
    const client = aztp.initialize({ home });
    t.after(() => client.close());
    const writer = await client.secureConnect({}, "hostile-writer");
    const path = join(dir, "hostile.jsonl");
    const log = await AuditLog.open(path, { signer: svidCheckpointSigner(writer.identity), checkpointEvery: 2 });
    const entry = (tool: string, caller = "spiffe://aztp.local/workload/production/node/agent") => ({
      side: "callee" as const,
      caller,
      callerVerified: false,
      callee: writer.identity.spiffeId,
      tool,
      argsDigest: "<b>digest</b>",
      decision: "deny" as const,
      reason: "<i>ERR_X</i>",
      outcome: "denied" as const,
    });
    for (const tool of HOSTILE_TOOLS) await log.append(entry(tool, HOSTILE_CALLER));
    const v = await startView(t, ["--home", home, "audit", "view", dir]);
    const page = await open(browser, v);
    const text = await page.innerText("tbody");
    for (const tool of HOSTILE_TOOLS) assert.ok(text.includes(tool), `${tool} is shown as text`);
    assert.ok(text.includes("<i>ERR_X</i>"));
    assert.equal(await page.locator("tbody img, tbody script, tbody svg, tbody b, tbody i").count(), 0);
    await page.click("tbody tr[data-call]");
    await page.waitForSelector("#detail section.entry");
    assert.ok((await page.innerText("#detail")).includes(HOSTILE_CALLER));
    assert.equal(await pwned(page), undefined);

    // Appended: shown once checked, "not yet signed" until a checkpoint covers it.
    await log.append(entry("grown_1"));
    await shows(page, "grown_1");
    const grown = (await rows(page)).find((r) => r.text.includes("grown_1"));
    assert.equal(grown?.state, "uncovered", "no signature covers it yet");
    await log.append(entry("grown_2")); // the second since the last checkpoint: one is signed now
    await rowCount(page, 4, "signed");
    assert.match(await page.innerText("#verdicts"), /2 appended entries and 1 checkpoint checked as they arrived/);
    await log.close();
    // A forged line appended by someone without the key: its hash is not its content's.
    const last = readFileSync(path, "utf8")
      .trimEnd()
      .split("\n")
      .filter((l) => !l.includes('"checkpoint"'))
      .pop() as string;
    const forged = JSON.parse(last) as Record<string, unknown>;
    forged.seq = (forged.seq as number) + 1;
    forged.prev = forged.hash;
    forged.tool = "forged_tool";
    appendFileSync(path, `${JSON.stringify(forged)}\n`);
    await shows(page, "forged_tool");
    const forgedRow = (await rows(page)).find((r) => r.text.includes("forged_tool"));
    assert.equal(forgedRow?.state, "bad");
    assert.match(
      await page.innerText("#verdicts"),
      /FAILS VERIFICATION[\s\S]*First bad \(appended\): line \d+: hash-mismatch/,
    );
    await shot(page, "audit-view-live.png");
    assert.equal(await pwned(page), undefined);
    assert.deepEqual((page as Page & { errors?: string[] }).errors, []);
  });

  it("fails at start, before any URL, on a missing log, a non-loopback host, a bad port or no trust source (exit 2 saying what to pass); --no-signatures and --bundle start, and the page says which; SIGINT and SIGTERM end it with 0", async (t) => {
    const empty = tempDir(t, "empty-home");
    const logs = join(home, "audit");
    const [missing, wide, port, noTrust, both] = await Promise.all([
      aztpCli(home, ["audit", "view", join(work, "nope.jsonl")]),
      aztpCli(home, ["audit", "view", logs, "--host", "0.0.0.0"]),
      aztpCli(home, ["audit", "view", logs, "--port", "99999"]),
      aztpCli(empty, ["audit", "view", logs]),
      aztpCli(empty, ["audit", "view", logs, "--no-signatures", "--bundle", "b.json"]),
    ]);
    assertExit(missing, 1, "a missing log");
    assert.match(missing.stdout, /ERR_AUDIT_IO_FAILED/);
    assert.match(missing.stdout, /no audit log at/);
    assertExit(wide, 2, "--host 0.0.0.0");
    assert.match(wide.stderr, /loopback/);
    assertExit(port, 2, "--port 99999");
    assertExit(noTrust, 2, "no trust source");
    assert.match(noTrust.stderr, /--bundle FILE[\s\S]*--home DIR[\s\S]*--no-signatures/);
    assertExit(both, 2, "--bundle with --no-signatures");
    for (const r of [missing, wide, port, noTrust, both]) assert.doesNotMatch(r.stdout, /^http:/, "no URL is printed");

    const bundle = join(work, "bundle.json");
    const exported = await aztpCli(home, ["bundle"]);
    assertExit(exported, 0, "bundle");
    writeFileSync(bundle, exported.stdout);
    const [unsigned, byBundle] = await Promise.all([
      startView(t, ["--home", empty, "audit", "view", logs, "--no-signatures"]),
      startView(t, ["--home", empty, "audit", "view", logs, "--bundle", bundle]),
    ]);
    const page = await open(browser, unsigned);
    const cards = await page.locator("#verdicts article").allInnerTexts();
    assert.ok(
      cards.every((c) => /SIGNATURES NOT CHECKED/.test(c) && /NOT checked \(--no-signatures\)/.test(c)),
      cards.join("\n"),
    );
    assert.ok(
      (await rows(page)).every((r) => r.state === "checkpointed"),
      "chained, never shown as signed",
    );
    const signedPage = await open(browser, byBundle);
    const signedCards = await signedPage.innerText("#verdicts");
    assert.match(signedCards, new RegExp(`checked against bundle ${bundle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    assert.doesNotMatch(signedCards, /NOT CHECKED|FAILS/);
    for (const [v, signal] of [
      [unsigned, "SIGINT"],
      [byBundle, "SIGTERM"],
    ] as const) {
      v.child.process.kill(signal);
      const end = await v.child.exit;
      assert.deepEqual(end, { code: 0, signal: null }, `${signal} ends it with exit 0`);
    }
  });

  it("--store: a PostgreSQL store's shared log, through its export, verified and shown, and taken again as it grows", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const conn = createPool(url);
    t.after(() => conn.pool.end());
    await migrate(conn);
    const writer = new PgAuditLog(conn);
    const entry = (i: number) => ({
      side: "callee" as const,
      caller: "spiffe://example.org/agent",
      callerVerified: true,
      callee: "spiffe://example.org/tools",
      tool: `pg_tool_${i}`,
      argsDigest: `d${i}`,
      decision: "allow" as const,
      outcome: "ok" as const,
    });
    for (let i = 0; i < 5; i++) await writer.append(entry(i));
    const v = await startView(t, ["audit", "view", "--store", url, "--no-signatures"]);
    const page = await open(browser, v);
    assert.equal((await rows(page)).length, 5);
    assert.match(await page.innerText("#verdicts"), /\(audit\)[\s\S]*VERIFIED/);
    await writer.append(entry(5));
    await writer.close();
    await shows(page, "pg_tool_5");
  });
});
