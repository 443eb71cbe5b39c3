/**
 * The remote client's transport against servers that misbehave (loopback plain http stubs):
 * the server's error codes and rules come back unchanged, answers are bounded in size and
 * time, an idempotent GET is retried once after a dropped connection and a POST never is.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it, type TestContext } from "node:test";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { isLoopbackHost } from "../src/net/loopback.js";
import { ErrorCodes } from "../src/errors.js";
import { rejectsWithCode } from "./helpers/authority-util.js";

async function stub(t: TestContext, handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function transport(
  t: TestContext,
  baseUrl: string,
  extra: { timeoutMs?: number; maxAnswerBytes?: number } = {},
): AuthorityHttp {
  const h = new AuthorityHttp({
    baseUrl,
    apiKey: "aztp_k_s",
    roots: () => undefined,
    serverId: () => "spiffe://x/aztp/serve",
    ...extra,
  });
  t.after(() => h.close());
  return h;
}

describe("remote transport", () => {
  const errors: Array<[string, number, unknown, string, string | undefined]> = [
    [
      "a library code with a rule",
      403,
      { error: { code: "ERR_DELEGATION_INVALID", message: "no", rule: "scope.tools" } },
      "ERR_DELEGATION_INVALID",
      "scope.tools",
    ],
    [
      "a serve code",
      429,
      { error: { code: "ERR_SERVE_RATE_LIMITED", message: "slow down" } },
      "ERR_SERVE_RATE_LIMITED",
      undefined,
    ],
    [
      "a code this version does not know",
      409,
      { error: { code: "ERR_FUTURE_THING_INVALID", message: "new" } },
      "ERR_FUTURE_THING_INVALID",
      undefined,
    ],
    ["a 503 without a JSON body", 503, "down", ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE, undefined],
    ["a 500 without a JSON body", 500, "<html>", ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID, "status"],
    [
      "a code that is not one",
      400,
      { error: { code: "drop table", message: "x" } },
      ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
      "status",
    ],
  ];
  for (const [what, status, body, code, rule] of errors) {
    it(`an error answer: ${what} -> ${code}`, async (t) => {
      const url = await stub(t, (_req, res) => {
        res
          .writeHead(status, { "content-type": "application/json", "retry-after": "2" })
          .end(typeof body === "string" ? body : JSON.stringify(body));
      });
      const e = await rejectsWithCode(() => transport(t, url).post("v1/x", {}), code);
      assert.equal(e.rule, rule);
    });
  }

  it("sends the API key as a Bearer token on /v1 routes and not on the feeds", async (t) => {
    const seen: Array<string | undefined> = [];
    const url = await stub(t, (req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200).end("{}");
    });
    const h = transport(t, url);
    await h.get("v1/authority");
    await h.get(".well-known/spiffe/bundle", { auth: false });
    assert.deepEqual(seen, ["Bearer aztp_k_s", undefined]);
  });

  it("a POST body goes as Content-Type: application/json, which aztp serve requires (415 otherwise)", async (t) => {
    const seen: Array<[string | undefined, string | undefined]> = [];
    const url = await stub(t, (req, res) => {
      seen.push([req.method, req.headers["content-type"]]);
      req.resume();
      req.on("end", () => res.writeHead(200).end("{}"));
    });
    const h = transport(t, url);
    await h.post("v1/identities/revoke", { id: "spiffe://x/a", reason: "r" });
    await h.get("v1/authority");
    assert.deepEqual(seen, [
      ["POST", "application/json"],
      ["GET", undefined],
    ]);
  });

  it("an answer over the size limit is refused (ERR_AUTHORITY_REMOTE_ANSWER_INVALID), not buffered", async (t) => {
    const url = await stub(t, (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(`{"x":"${"a".repeat(64 * 1024)}"}`);
    });
    const e = await rejectsWithCode(
      () => transport(t, url, { maxAnswerBytes: 1024 }).get("v1/x"),
      ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
    );
    assert.equal(e.rule, "too-large");
  });

  it("a success that is not JSON is ERR_AUTHORITY_REMOTE_ANSWER_INVALID", async (t) => {
    const url = await stub(t, (_req, res) => res.writeHead(200).end("ok"));
    await rejectsWithCode(() => transport(t, url).get("v1/x"), ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID);
  });

  it("a server that never answers: ERR_AUTHORITY_REMOTE_UNAVAILABLE after the timeout, not a hang (and a GET is not retried after one)", async (t) => {
    let requests = 0;
    const url = await stub(t, () => {
      requests++;
    });
    const h = transport(t, url, { timeoutMs: 300 });
    const started = Date.now();
    const e = await rejectsWithCode(() => h.post("v1/x", {}), ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE);
    assert.match(e.message, /ETIMEDOUT/);
    await rejectsWithCode(() => h.get("v1/x"), ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE);
    assert.ok(Date.now() - started < 3_000);
    assert.equal(requests, 2);
  });

  it("a dropped connection: a GET is retried once and succeeds, a POST is not retried", async (t) => {
    let gets = 0;
    let posts = 0;
    const url = await stub(t, (req, res) => {
      if (req.method === "GET" && ++gets === 1) return req.socket.destroy();
      if (req.method === "POST") {
        posts++;
        return req.socket.destroy();
      }
      res.writeHead(200).end('{"ok":true}');
    });
    const h = transport(t, url);
    assert.deepEqual(await h.get("v1/x"), { ok: true });
    assert.equal(gets, 2);
    await rejectsWithCode(() => h.post("v1/y", {}), ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE);
    assert.equal(posts, 1, "a POST may have landed: never sent twice by the transport");
  });

  it("loopback is 127.0.0.0/8, ::1 and localhost, nothing that merely looks like it", () => {
    const table: Array<[string, boolean]> = [
      ["127.0.0.1", true],
      ["127.1.2.3", true],
      ["[::1]", true],
      ["localhost", true],
      ["LOCALHOST", true],
      ["127.0.0.1.nip.io", false],
      ["evil.localhost", false],
      ["10.0.0.1", false],
      ["0.0.0.0", false],
      ["[::]", false],
      ["localhost.example.com", false],
    ];
    for (const [host, loopback] of table) assert.equal(isLoopbackHost(host), loopback, host);
  });

  it("an apiKey with a line break is refused (it would split the header)", () => {
    assert.throws(
      () =>
        new AuthorityHttp({
          baseUrl: "http://127.0.0.1:1",
          apiKey: "a\r\nX-Evil: 1",
          roots: () => undefined,
          serverId: () => "x",
        }),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.ARGUMENT_INVALID,
    );
  });
});
