/**
 * The real `aztp serve` process: it starts (HTTPS, its URL in the first log line), answers,
 * and on SIGTERM stops accepting, lets a slow request in flight finish with 200 and exits 0; a
 * second signal exits at once; a failure at start exits non-zero saying why. `aztp apikey`
 * makes, lists and revokes the keys it accepts.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { request as httpsRequest } from "node:https";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { aztpCli, assertExit, CLI, ROOT, tempDir } from "./helpers/authority-util.js";
import { serveRequest, spiffeServerCheck } from "./helpers/serve-util.js";

interface ServeProcess {
  child: ChildProcessWithoutNullStreams;
  url: string;
  lines: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

async function homeWithKey(t: TestContext): Promise<{ home: string; key: string; bundlePem: string }> {
  const home = tempDir(t, "serve-proc");
  const authority = await EmbeddedAuthority.init(home, "proc.test");
  const r = await aztpCli(undefined, ["apikey", "create", "--store", home, "--name", "ci"]);
  assertExit(r, 0, "apikey create");
  return { home, key: r.json.key as string, bundlePem: authority.bundle().toPem() };
}

function spawnServe(t: TestContext, args: string[]): Promise<ServeProcess> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "serve", ...args], {
    cwd: ROOT,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = "";
  let buffered = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`aztp serve did not start in 30 s; stderr: ${stderr}`)), 30_000);
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      buffered += c;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          lines.push(obj);
          if (obj.msg === "started") {
            clearTimeout(timer);
            resolve({ child, url: String(obj.url), lines, exited, stderr: () => stderr });
          }
        } catch {
          // not a log line
        }
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`aztp serve exited ${code} before starting: ${stderr}`), { code, stderr }));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A POST /v1/audit whose body is sent in two halves, `gapMs` apart: a request in flight. */
function slowAuditPost(
  url: string,
  key: string,
  bundlePem: string,
): { sendRest(): void; answer: Promise<{ status: number; body: string }> } {
  const body = JSON.stringify({
    entries: [
      {
        side: "callee",
        caller: "spiffe://proc.test/a",
        callerVerified: true,
        callee: "spiffe://proc.test/b",
        tool: "t",
        argsDigest: "slow",
        decision: "allow",
      },
    ],
  });
  const cut = Math.floor(body.length / 2);
  const u = new URL("/v1/audit", url);
  const req = httpsRequest(u, {
    method: "POST",
    ca: bundlePem,
    checkServerIdentity: spiffeServerCheck("spiffe://proc.test/aztp/serve"),
    agent: false,
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(body)),
    },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
  });
  req.write(body.slice(0, cut));
  return { sendRest: () => req.end(body.slice(cut)), answer };
}

describe("aztp serve, the process", () => {
  it("SIGTERM: new connections are refused, the slow request in flight completes with 200, then exit 0", async (t) => {
    const { home, key, bundlePem } = await homeWithKey(t);
    const p = await spawnServe(t, ["--store", home, "--listen", "127.0.0.1:0"]);
    assert.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await serveRequest(p.url, "/readyz", { ca: bundlePem })).status, 200);

    const slow = slowAuditPost(p.url, key, bundlePem);
    await sleep(500); // the server has the headers and half the body
    p.child.kill("SIGTERM");
    await sleep(500);
    await assert.rejects(
      serveRequest(p.url, "/healthz", { ca: bundlePem, timeoutMs: 3000 }),
      "no new connections once stopping",
    );
    slow.sendRest();
    const answer = await slow.answer;
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(JSON.parse(answer.body), { appended: 1 });
    const exit = await p.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, p.stderr());
    const msgs = p.lines.map((l) => l.msg);
    assert.ok(msgs.includes("stopping") && msgs.includes("stopped"), msgs.join(","));
    const req = p.lines.find((l) => l.msg === "request" && l.path === "/v1/audit");
    assert.equal(req?.status, 200);
    assert.equal(req?.method, "POST");
    for (const l of p.lines) assert.ok(typeof l.ts === "string" && typeof l.level === "string", JSON.stringify(l));
    // The entry answered before the stop is in the log.
    const after = await aztpCli(undefined, ["audit", "query", `${home}/audit/serve.jsonl`]);
    assert.match(after.stdout, /slow/);
  });

  it("a second signal exits at once, with a request still in flight", async (t) => {
    const { home, key, bundlePem } = await homeWithKey(t);
    const p = await spawnServe(t, ["--store", home, "--listen", "127.0.0.1:0", "--shutdown-timeout", "60000"]);
    const slow = slowAuditPost(p.url, key, bundlePem);
    slow.answer.catch(() => undefined);
    await sleep(500);
    p.child.kill("SIGTERM");
    await sleep(300);
    const t0 = Date.now();
    p.child.kill("SIGINT");
    const exit = await p.exited;
    assert.equal(exit.code, 1, p.stderr());
    assert.ok(Date.now() - t0 < 5000, "at once, not after the shutdown timeout");
  });

  it("failures at start exit non-zero and say why: no authority, plain HTTP off loopback, a bad --listen, a revocation window shorter than two hints", async (t) => {
    const empty = tempDir(t, "empty");
    const cases: Array<[string[], number, RegExp]> = [
      [["--store", empty, "--listen", "127.0.0.1:0"], 1, /ERR_AUTHORITY_NOT_INITIALIZED/],
      [["--store", empty, "--listen", "0.0.0.0:0", "--insecure-http"], 1, /ERR_SERVE_INSECURE_HTTP_NOT_ALLOWED/],
      [["--store", empty, "--listen", "nonsense"], 2, /--listen/],
      [["--store", empty, "--issue-rate", "-1"], 2, /--issue-rate/],
      [["--store", empty, "--tls", "--insecure-http"], 2, /not both/],
      [
        ["--store", empty, "--refresh-hint", "30", "--revocation-window", "40"],
        1,
        /--revocation-window\) must be at least two refresh hints/,
      ],
    ];
    for (const [args, code, why] of cases) {
      const r = await aztpCli(undefined, ["serve", ...args], { timeoutMs: 30_000 });
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stdout} ${r.stderr}`);
      assert.match(r.stdout + r.stderr, why, args.join(" "));
    }
  });

  it("--trust-domain creates the authority in an empty store, and the service serves its SVID from it", async (t) => {
    const home = tempDir(t, "serve-create");
    const p = await spawnServe(t, ["--store", home, "--trust-domain", "made.test", "--listen", "127.0.0.1:0"]);
    assert.equal(p.lines.find((l) => l.msg === "started")?.serverId, "spiffe://made.test/aztp/serve");
    const bundlePem = (await EmbeddedAuthority.open(home)).bundle().toPem();
    assert.equal(
      (await serveRequest(p.url, "/readyz", { ca: bundlePem, serverId: "spiffe://made.test/aztp/serve" })).status,
      200,
    );
    p.child.kill("SIGTERM");
    assert.equal((await p.exited).code, 0);
  });

  it("aztp apikey create | list | revoke: the key is printed once, listed without its secret, refused once revoked", async (t) => {
    const { home, key, bundlePem } = await homeWithKey(t);
    const scoped = await aztpCli(undefined, [
      "apikey",
      "create",
      "--store",
      home,
      "--name",
      "team a",
      "--id-prefix",
      "aztp://proc.test/workload/production/team-a",
    ]);
    assertExit(scoped, 0, "create scoped");
    assert.equal(scoped.json.record.scope.idPrefix, "spiffe://proc.test/workload/production/team-a");
    const human = await aztpCli(undefined, ["apikey", "create", "--store", home], {});
    assert.match(human.stdout, /"key": "aztp_[0-9a-f]{16}_/);
    const listed = await aztpCli(undefined, ["apikey", "list", "--store", home]);
    assertExit(listed, 0, "list");
    assert.equal(listed.json.keys.length, 3);
    assert.doesNotMatch(listed.stdout, new RegExp(key.slice(22).replace(/[-]/g, "\\-")), "no secret in the list");
    assert.doesNotMatch(listed.stdout, /secretHash|hash/);
    const bad = await aztpCli(undefined, ["apikey", "create", "--store", home, "--trust-domain", "Not Valid"]);
    assert.equal(bad.code, 1);
    assert.equal(bad.json.error.code, "ERR_SPIFFEID_TRUST_DOMAIN_CHAR_INVALID");

    const p = await spawnServe(t, ["--store", home, "--listen", "127.0.0.1:0"]);
    assert.equal((await serveRequest(p.url, "/v1/authority", { ca: bundlePem, key })).status, 200);
    const keyId = key.split("_")[1] as string;
    assertExit(await aztpCli(undefined, ["apikey", "revoke", keyId, "--store", home]), 0, "revoke");
    assert.equal(
      (await serveRequest(p.url, "/v1/authority", { ca: bundlePem, key })).status,
      401,
      "a running service refuses it on the next request",
    );
    const again = await aztpCli(undefined, ["apikey", "revoke", keyId, "--store", home]);
    assert.equal(again.code, 1, "revoking twice is a negative verdict");
    assert.equal(again.json.revoked, false);
    const listedAfter = await aztpCli(undefined, ["apikey", "list", "--store", home]);
    assert.ok(listedAfter.json.keys.find((k: { keyId: string; revokedAt?: string }) => k.keyId === keyId)?.revokedAt);
    p.child.kill("SIGTERM");
    assert.equal((await p.exited).code, 0);
  });
});
