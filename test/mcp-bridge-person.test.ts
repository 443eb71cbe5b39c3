/**
 * The bridge for a person (`aztp mcp bridge --oauth-flow authorization-code`): an unmodified
 * stdio host reaches a secured MCP server as the person who signed in. The authorization server
 * is `aztp serve`, the person's login delegated to a REAL OpenID Provider (oidc-provider on
 * loopback, examples/local-openid-provider.ts), as in test/serve-authorization-code.test.ts. The
 * bridge prints the authorization URL on stderr; the test plays the person's browser with the
 * provider harness's `authorize(url, { account: "alice" })` and delivers the redirect to the
 * bridge's loopback callback. Real bridge process, real SDK client, real HTTP on loopback.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { AuditEntry } from "../src/audit/entry.js";
import { Aztp } from "../src/client/aztp.js";
import { ErrorCodes } from "../src/errors.js";
import { ROOT } from "./helpers/authority-util.js";
import { bridgeArgs, bridgeAudit, textOf } from "./helpers/mcp-bridge-util.js";
import { fixture, until, withTimeout } from "./helpers/mcp-util.js";
import { ledgerServer, peopleAtHosts } from "./helpers/people-hosts.js";
import type { StartedServe } from "./helpers/serve-util.js";

const scene = (t: TestContext) => peopleAtHosts(t);
/** A secured MCP server whose authorization server is aztp serve; every method needs a bearer token. */
const securedServer = (t: TestContext, s: StartedServe) => ledgerServer(t, s);

/** An unmodified SDK host starting the bridge over stdio; its connect waits for the bridge's start (and so the sign-in). */
function hostStarting(t: TestContext, home: string, name: string, extra: string[]) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: bridgeArgs(home, name, extra),
    cwd: ROOT,
    env: getDefaultEnvironment(),
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
  const client = new Client({ name: "stdio-host", version: "1.0.0" });
  t.after(() => client.close().catch(() => undefined));
  const connected = client.connect(transport);
  connected.catch(() => undefined); // awaited by the test
  return { client, connected, stderr: () => stderr };
}

const URL_LINE = /sign in to authorize this bridge for \S+: open (\S+)/;

describe("aztp mcp bridge --oauth-flow authorization-code: a person at a stdio host, signed in at aztp serve through a real OpenID Provider", () => {
  it(
    "alice signs in (the URL printed on stderr), the host calls through the bridge, and the server's audit names alice",
    { timeout: 120_000 },
    async (t) => {
      const { op, s } = await scene(t);
      const rs = await securedServer(t, s);
      const { home } = fixture(t);
      const host = hostStarting(t, home, "desk", ["--url", rs.url.href, "--oauth-flow", "authorization-code"]);

      await until(() => URL_LINE.test(host.stderr()), "the authorization URL on the bridge's stderr", 30_000);
      const url = new URL((URL_LINE.exec(host.stderr()) as RegExpExecArray)[1] as string);
      assert.equal(url.origin, new URL(s.url).origin, "the authorization server is aztp serve");
      assert.equal(url.searchParams.get("code_challenge_method"), "S256");
      assert.equal(url.searchParams.get("resource"), rs.url.href, "RFC 8707: the token is for this server");
      const redirectUri = url.searchParams.get("redirect_uri") as string;
      assert.match(redirectUri, /^http:\/\/127\.0\.0\.1:\d+\/callback$/, "RFC 8252 loopback redirect");

      // The person's browser: signs alice in at the provider, comes back to aztp serve, which redirects to the bridge.
      const back = await op.authorize(url, { account: "alice", redirectUri });
      assert.equal(`${back.origin}${back.pathname}`, redirectUri);
      assert.equal(back.searchParams.get("state"), url.searchParams.get("state"));

      // A forged callback (another state) is answered 400 and changes nothing; then the real one.
      const forged = new URL(back);
      forged.searchParams.set("state", "not-the-state");
      assert.equal((await fetch(forged)).status, 400);
      const delivered = await fetch(back);
      assert.equal(delivered.status, 200, await delivered.text());

      await withTimeout(host.connected, 30_000, `the host's connect: ${host.stderr()}`);
      const r = (await host.client.callTool({ name: "balance", arguments: { account: "ops" } })) as CallToolResult;
      assert.notEqual(r.isError, true, JSON.stringify(r));
      assert.equal(textOf(r), "ops: 42");

      const entries = (await rs.audit()).filter((e) => e.tool === "balance");
      assert.equal(entries.length, 1);
      const e = entries[0] as AuditEntry;
      assert.equal(e.person, `${op.issuer}#alice`, "the server's entry names alice");
      assert.equal(e.caller, `${op.issuer}#alice`, "alice is the caller: the bridge signs nothing beside her token");
      assert.equal(e.authMethod, "bearer");
      assert.equal(e.decision, "allow");

      // The bridge's own log: the call, unsigned, with the receipt absent; no token on its stderr.
      const [mine] = (await bridgeAudit(home, "desk", 1)).filter((x) => x.tool === "balance");
      assert.equal(mine?.reason, ErrorCodes.RECEIPT_MISSING);
      assert.equal(mine?.outcome, "ok");
      assert.ok(!host.stderr().includes(back.searchParams.get("code") as string), "the code is never printed");
      assert.match(host.stderr(), /acting for a person \(authorization code\)/);
    },
  );

  for (const [what, iss] of [
    ["another authorization server's name (a mix-up)", "http://127.0.0.1:9/"],
    ["no iss, which aztp serve says it sends", undefined],
  ] as const)
    it(
      `an authorization response with the right state but ${what} is refused (RFC 9207); the code is never redeemed (passing twin: alice above)`,
      { timeout: 60_000 },
      async (t) => {
        const { s } = await scene(t);
        const rs = await securedServer(t, s);
        const { home } = fixture(t);
        const { startMcpBridge } = await import("../src/mcp/bridge.js");
        const c = Aztp.initialize({ home });
        t.after(() => c.close());
        const lines: string[] = [];
        const started = startMcpBridge({
          client: c,
          name: "desk",
          upstream: { url: rs.url.href },
          listen: "http://127.0.0.1:0",
          oauth: { flow: "authorization-code" },
          log: (l) => lines.push(l),
        });
        started.catch(() => undefined);
        await until(() => lines.some((l) => URL_LINE.test(l)), "the authorization URL", 30_000);
        const url = new URL(
          (URL_LINE.exec(lines.find((l) => URL_LINE.test(l)) as string) as RegExpExecArray)[1] as string,
        );
        const back = new URL(url.searchParams.get("redirect_uri") as string);
        back.searchParams.set("state", url.searchParams.get("state") as string);
        back.searchParams.set("code", "a-code-from-elsewhere");
        if (iss !== undefined) back.searchParams.set("iss", iss);
        assert.equal((await fetch(back)).status, 400);
        await assert.rejects(
          started,
          (e: Error & { code?: string }) =>
            e.code === ErrorCodes.OAUTH_AUTHORIZATION_FAILED && /RFC 9207/.test(e.message),
        );
      },
    );

  it(
    "nobody signs in: the bridge gives up after its timeout and its start fails with the reason (passing twin above)",
    { timeout: 60_000 },
    async (t) => {
      const { s } = await scene(t);
      const rs = await securedServer(t, s);
      const { home } = fixture(t);
      // The library's option, not a flag: a short wait for the test.
      const { startMcpBridge } = await import("../src/mcp/bridge.js");
      const c = Aztp.initialize({ home });
      t.after(() => c.close());
      const lines: string[] = [];
      await assert.rejects(
        startMcpBridge({
          client: c,
          name: "desk",
          upstream: { url: rs.url.href },
          listen: "http://127.0.0.1:0",
          oauth: { flow: "authorization-code", authorizationTimeoutMs: 1_500 },
          log: (l) => lines.push(l),
        }),
        (e: Error & { code?: string }) =>
          e.code === ErrorCodes.OAUTH_AUTHORIZATION_FAILED && /nobody completed/.test(e.message),
      );
      assert.ok(
        lines.some((l) => URL_LINE.test(l)),
        lines.join("\n"),
      );
    },
  );
});

describe("UpstreamOAuth's authorization code options, checked before anything is sent", () => {
  it("refuses what does not fit a person's authorization, and takes what does (passing twins)", async (t) => {
    const { UpstreamOAuth } = await import("../src/mcp/oauth-client.js");
    const { aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "desk");
    const context = { identity, serverUrl: new URL("http://127.0.0.1:9/mcp") };
    for (const [options, said] of [
      [{ flow: "authorization-code", assertion: "jwt-svid" }, /assertion is how the bridge authenticates as itself/],
      [{ flow: "authorization-code", clientMetadataUrl: "http://example.com/client.json" }, /https URL with a path/],
      [{ flow: "authorization-code", clientMetadataUrl: "https://example.com/" }, /https URL with a path/],
      [{ flow: "authorization-code", clientSecret: "s" }, /give clientId too/],
      [{ flow: "authorization-code", clientId: "a", clientSecret: "s" }, /give its issuer/],
      [{ flow: "authorization-code", redirectPort: 70000 }, /port number/],
      [{ flow: "device-code" }, /flow is "client-credentials" or "authorization-code"/],
      [{ authorizeVia: "headless" }, /authorization code flow only/],
    ] as const)
      assert.throws(
        () => new UpstreamOAuth(options as never, context),
        (e: Error & { code?: string }) => e.code === ErrorCodes.ARGUMENT_INVALID && said.test(e.message),
        JSON.stringify(options),
      );
    for (const [options, method, clientId] of [
      [{ flow: "authorization-code" }, "as registered", ""],
      [{ flow: "authorization-code", clientId: "pre" }, "none", "pre"],
      [
        { flow: "authorization-code", clientId: "pre", clientSecret: "s", issuer: "https://as.example" },
        "client_secret_basic",
        "pre",
      ],
      [{ flow: "authorization-code", clientMetadataUrl: "https://example.com/client.json" }, "as registered", ""],
    ] as const) {
      const o = new UpstreamOAuth(options, context);
      await o.start();
      t.after(() => o.close());
      assert.equal(o.method, method);
      assert.equal(o.clientId, clientId);
      assert.match(o.redirectUrl as string, /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
      assert.deepEqual(o.clientMetadata.redirect_uris, [o.redirectUrl]);
      assert.equal(o.prepareTokenRequest(), undefined, "the SDK's own authorization_code request");
    }
  });
});
