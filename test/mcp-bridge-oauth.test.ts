/**
 * The bridge as an OAuth client, in front of servers that ask for OAuth: a third-party MCP server
 * (an unmodified SDK McpServer behind the SDK's requireBearerAuth, with an authorization server
 * that checks the bridge's assertions with jose and node:crypto, not with this library), the MCP
 * conformance suite's client-credentials scenarios, and a secured server that also takes bearer
 * tokens. Real bridge processes, driven by unmodified SDK clients over stdio, real HTTP on
 * loopback. Every refusal has a passing twin.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
} from "@modelcontextprotocol/sdk/types.js";
import { decodeJwt } from "jose";
import type { AuditEntryInput } from "../src/audit/entry.js";
import type { AuditWriter } from "../src/audit/writer.js";
import { CallerGuard } from "../src/guard/caller.js";
import { clientHooks, InterceptingTransport, ServerBinding } from "../src/mcp/index.js";
import { ErrorCodes } from "../src/errors.js";
import type { EmbeddedAuthority } from "../src/authority/authority.js";
import {
  startTestAuthorizationServer,
  startTestResourceServer,
  type TestAuthorizationServer,
} from "./helpers/oauth-third-party.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";
import { CONFORMANCE_VERSION, conformanceRuntimeOr, savedResults } from "./helpers/conformance.js";
import { bridgeAudit, bridgeRun, hostThroughBridge, securedHttpServer, textOf } from "./helpers/mcp-bridge-util.js";
import { fixture, idOf, runCommand } from "./helpers/mcp-util.js";

type AztpClient = ReturnType<typeof fixture>["aztp"];

/** An authorization server that trusts the bridge's trust domain: its X.509 roots and JWT keys. */
async function trustingAs(t: TestContext, c: AztpClient, o: { expiresIn?: number } = {}) {
  const bundle = (await c.authority()).bundle();
  return startTestAuthorizationServer(t, {
    x509Roots: bundle.x509Authorities.map((cert) => cert.der),
    jwtKeys: bundle.jwtAuthorities,
    ...o,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The command the conformance suite runs for a client scenario, with the server URL appended. */
const CONFORMANCE_CLIENT = `${process.execPath} --import tsx ${join(ROOT, "test", "helpers", "conformance-bridge-client.ts")}`;

describe("the MCP conformance suite's client-credentials scenarios, through the bridge", () => {
  for (const scenario of ["auth/client-credentials-jwt", "auth/client-credentials-basic"]) {
    it(
      `${scenario} (${CONFORMANCE_VERSION}, on Node 22): an unmodified SDK Client through the bridge passes every check`,
      { timeout: 240_000 },
      async (t) => {
        const runtime = await conformanceRuntimeOr(t);
        if (runtime === undefined) return;
        const out = tempDir(t, "conformance");
        const r = await runCommand(
          runtime.node,
          [
            runtime.cli,
            "client",
            "--command",
            CONFORMANCE_CLIENT,
            "--scenario",
            scenario,
            "--timeout",
            "120000",
            "-o",
            out,
          ],
          { env: getDefaultEnvironment(), timeoutMs: 200_000 },
        );
        const [saved, ...more] = savedResults(out);
        assert.ok(
          saved !== undefined && more.length === 0,
          `one result: ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`,
        );
        // INFO entries are the suite's log of the traffic; the checks are the rest, as its "Passed: x/y" counts them.
        const checks = saved.checks.filter((c) => c.status !== "INFO");
        t.diagnostic(
          `${scenario}: ${checks.filter((c) => c.status === "SUCCESS").length}/${checks.length} checks passed`,
        );
        const failed = checks.filter((c) => c.status !== "SUCCESS");
        assert.deepEqual(failed, [], `every check succeeds; the client said: ${saved.stdout} ${saved.stderr}`);
        for (const id of [
          scenario.endsWith("jwt") ? "client-credentials-jwt-verified" : "client-credentials-basic-auth",
          "valid-bearer-token",
        ])
          assert.ok(
            saved.checks.some((c) => c.id === id && c.status === "SUCCESS"),
            `${id} checked and passed`,
          );
        assert.equal(r.code, 0, `the suite's verdict: ${r.stderr.slice(-1500)}`);
        // What the client script saw: the tool called through the bridge, recorded with the receipt absent, no credential leaked.
        const report = JSON.parse(saved.stdout.trim().split("\n").at(-1) ?? "{}") as {
          called?: string;
          isError?: boolean;
          credentialLeaked?: boolean;
          audited?: Array<{ tool: string; decision: string; reason: string; outcome: string }>;
        };
        assert.equal(report.called, "test-tool");
        assert.equal(report.isError, false);
        assert.equal(report.credentialLeaked, false);
        assert.deepEqual(
          report.audited?.map((e) => [e.tool, e.decision, e.reason, e.outcome]),
          [["test-tool", "audit-only", ErrorCodes.RECEIPT_MISSING, "ok"]],
        );
      },
    );
  }
});

/** The bridge for a person: `--oauth-flow authorization-code --oauth-authorize-headless` (see the client script). */
const CONFORMANCE_PERSON_CLIENT = `${CONFORMANCE_CLIENT} --authorization-code`;

/**
 * The suite's client scenarios of the authorization code flow (`conformance list`, 0.1.16):
 * every one passes every check, but one, refused by the bridge on purpose (below).
 */
const AUTHORIZATION_CODE_SCENARIOS = [
  "auth/metadata-default",
  "auth/metadata-var1",
  "auth/metadata-var2",
  "auth/metadata-var3",
  "auth/basic-cimd",
  "auth/scope-from-www-authenticate",
  "auth/scope-from-scopes-supported",
  "auth/scope-omitted-when-undefined",
  "auth/scope-step-up",
  "auth/scope-retry-limit",
  "auth/token-endpoint-auth-basic",
  "auth/token-endpoint-auth-post",
  "auth/token-endpoint-auth-none",
  "auth/pre-registration",
  "auth/2025-03-26-oauth-endpoint-fallback",
  "auth/resource-mismatch",
  "auth/offline-access-scope",
  "auth/offline-access-not-supported",
];

/** Runs one client scenario with `command`; its checks (INFO aside), what the client script saw, and the suite's exit code. */
async function conformanceScenario(t: TestContext, scenario: string, command: string) {
  const runtime = await conformanceRuntimeOr(t);
  if (runtime === undefined) return undefined;
  const out = tempDir(t, "conformance");
  const r = await runCommand(
    runtime.node,
    [runtime.cli, "client", "--command", command, "--scenario", scenario, "--timeout", "120000", "-o", out],
    { env: getDefaultEnvironment(), timeoutMs: 200_000 },
  );
  const [saved, ...more] = savedResults(out);
  assert.ok(saved !== undefined && more.length === 0, `one result: ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`);
  // INFO entries are the suite's log of the traffic; the checks are the rest, as its "Passed: x/y" counts them.
  const checks = saved.checks.filter((c) => c.status !== "INFO");
  t.diagnostic(`${scenario}: ${checks.filter((c) => c.status === "SUCCESS").length}/${checks.length} checks passed`);
  const report = JSON.parse(saved.stdout.trim().split("\n").at(-1) || "{}") as {
    called?: string;
    isError?: boolean;
    credentialLeaked?: boolean;
    bridgeStderr?: string;
  };
  return { checks, saved, report, code: r.code, stderr: r.stderr };
}

describe("the MCP conformance suite's authorization code scenarios, through the bridge for a person", () => {
  for (const scenario of AUTHORIZATION_CODE_SCENARIOS)
    it(
      `${scenario} (${CONFORMANCE_VERSION}): --oauth-flow authorization-code, the redirect followed headlessly, passes every check`,
      { timeout: 240_000 },
      async (t) => {
        const run = await conformanceScenario(t, scenario, CONFORMANCE_PERSON_CLIENT);
        if (run === undefined) return;
        const { checks, saved, report } = run;
        assert.deepEqual(
          checks.filter((c) => c.status !== "SUCCESS"),
          [],
          `every check succeeds (no warning either); the client said: ${saved.stdout} ${saved.stderr}`,
        );
        assert.equal(run.code, 0, `the suite's verdict: ${run.stderr.slice(-1500)}`);
        if (scenario === "auth/resource-mismatch") {
          // The server's metadata names another resource: the bridge must not authorize at all.
          assert.ok(!checks.some((c) => c.id === "authorization-request"), "no authorization request was made");
          return;
        }
        if (scenario === "auth/scope-retry-limit") {
          // The server refuses every token it is given: the bridge stops asking, and says why.
          assert.match(saved.stderr, /ERR_OAUTH_AUTHORIZATION_FAILED/);
          assert.equal(report.called, undefined);
          return;
        }
        for (const id of ["authorization-request", "token-request", "valid-bearer-token"])
          assert.ok(
            checks.some((c) => c.id === id && c.status === "SUCCESS"),
            `${id} checked and passed`,
          );
        if (scenario !== "auth/2025-03-26-oauth-endpoint-fallback")
          // (that scenario's legacy authorization server does not check PKCE)
          assert.ok(checks.some((c) => c.id === "pkce-verifier-matches-challenge" && c.status === "SUCCESS"));
        if (scenario === "auth/basic-cimd")
          assert.ok(checks.some((c) => c.id === "cimd-client-id-used" && c.status === "SUCCESS"));
        if (scenario === "auth/pre-registration")
          assert.ok(checks.some((c) => c.id === "pre-registration-auth" && c.status === "SUCCESS"));
        assert.equal(report.called, "test-tool");
        assert.equal(report.isError, false);
        assert.equal(report.credentialLeaked, false);
        assert.match(report.bridgeStderr ?? "", /sign in to authorize this bridge for .*: open http/);
      },
    );

  it(
    "auth/2025-03-26-oauth-metadata-backcompat: refused on purpose, the metadata's issuer is not the URL it was found at (RFC 8414 §3.3)",
    { timeout: 240_000 },
    async (t) => {
      // The suite's legacy authorization server (the MCP server's origin) publishes the issuer
      // <origin>/oauth at <origin>/.well-known/oauth-authorization-server: a mix-up the bridge
      // refuses before anything is sent (ERR_OAUTH_ISSUER_METADATA_INVALID), so the suite misses
      // its registration, authorization and token checks. Its twin, the endpoint fallback of the
      // same spec version with a consistent issuer, passes above.
      const run = await conformanceScenario(t, "auth/2025-03-26-oauth-metadata-backcompat", CONFORMANCE_PERSON_CLIENT);
      if (run === undefined) return;
      assert.deepEqual(
        run.checks
          .filter((c) => c.status !== "SUCCESS")
          .map((c) => c.id)
          .sort(),
        ["authorization-request", "client-registration", "token-request"],
      );
      assert.ok(run.checks.some((c) => c.id === "authorization-server-metadata" && c.status === "SUCCESS"));
      assert.match(run.saved.stderr, /ERR_OAUTH_ISSUER_METADATA_INVALID/);
    },
  );
});

describe("aztp mcp bridge in front of a third-party MCP server that asks for OAuth", () => {
  it("gets a token with a private_key_jwt signed by its SVID key (client_id = its SPIFFE ID), sends it, and audits each call with the receipt absent", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as);
    const { client, stderr } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.deepEqual((await client.listTools()).tools.map((x) => x.name).sort(), ["echo", "whoami"]);
    const r = (await client.callTool({ name: "whoami", arguments: {} })) as CallToolResult;
    assert.notEqual(r.isError, true);
    assert.equal(textOf(r), idOf("desk"), "the server's token names the bridge's SPIFFE ID");
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "hi" } })), "hi");

    // One token for the start-up probe and the host's session: cached, not asked for per request.
    assert.equal(as.issued.length, 1, JSON.stringify(as.refused));
    const [issued] = as.issued;
    assert.equal(issued?.method, "x5c", "the SVID chain rides in x5c and reaches the bundle's root");
    assert.equal(issued?.clientId, idOf("desk"));
    assert.equal(issued?.claims?.iss, idOf("desk"));
    assert.equal(issued?.claims?.aud, as.url, "addressed to the authorization server's issuer");
    assert.ok((issued?.claims?.exp as number) - (issued?.claims?.iat as number) <= 60, "a one-minute assertion");
    assert.equal(issued?.resource, rs.url, "RFC 8707: the token is asked for this resource");
    assert.ok(rs.challenges.length >= 1 && rs.challenges.every((ch) => ch.status === 401));
    assert.deepEqual(
      rs.calls.map((x) => [x.tool, x.clientId]),
      [
        ["whoami", idOf("desk")],
        ["echo", idOf("desk")],
      ],
    );

    assert.match(stderr(), /is unsecured \(--server-unsecured\): it proves no identity and signs no receipts/);
    assert.match(
      stderr(),
      new RegExp(`access token from ${as.url} for ${rs.url} as ${idOf("desk")} \\(private_key_jwt`),
    );
    const own = await bridgeAudit(home, "desk", 2);
    assert.deepEqual(
      own.map((e) => [e.side, e.caller, e.callee, e.tool, e.decision, e.reason, e.outcome, e.receipt, e.token, e.jti]),
      [
        [
          "caller",
          idOf("desk"),
          rs.url,
          "whoami",
          "audit-only",
          ErrorCodes.RECEIPT_MISSING,
          "ok",
          undefined,
          undefined,
          undefined,
        ],
        [
          "caller",
          idOf("desk"),
          rs.url,
          "echo",
          "audit-only",
          ErrorCodes.RECEIPT_MISSING,
          "ok",
          undefined,
          undefined,
          undefined,
        ],
      ],
      "recorded as audit mode records a missing receipt: unsigned, the outcome as answered",
    );
    assert.ok(own.every((e) => typeof e.resultDigest === "string"));
  });
});

describe("the bridge's tokens: cached, renewed before they expire, one fresh token after a 401, one step-up after a 403", () => {
  it("a token about to expire is renewed before the request that needs it: no 401 on the way", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c, { expiresIn: 4 });
    const rs = await startTestResourceServer(t, as);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "one" } })), "one");
    const challenged = rs.challenges.length;
    const issued = as.issued.length;
    await sleep(2_300); // past half of its 4 s life
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "two" } })), "two");
    assert.equal(rs.challenges.length, challenged, "renewed ahead of time, not after the server refused it");
    assert.equal(as.issued.length, issued + 1, "one new token");
    assert.notEqual(rs.tokensSeen.at(-1), rs.tokensSeen[0], "the call went with the new token");
  });

  it("a token the server stops accepting mid-session (401 invalid_token) gets one fresh token and the request is retried", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "before" } })), "before");
    for (const jti of rs.tokensSeen) rs.revoked.add(jti);
    const issued = as.issued.length;
    const r = (await client.callTool({ name: "echo", arguments: { text: "after" } })) as CallToolResult;
    assert.notEqual(r.isError, true, JSON.stringify(r));
    assert.equal(textOf(r), "after");
    assert.equal(
      as.issued.length,
      issued + 1,
      JSON.stringify({ ch: rs.challenges, seen: rs.tokensSeen, calls: rs.calls }),
    );
    assert.match(rs.challenges.at(-1)?.header ?? "", /error="invalid_token"/);

    // Its refusing twin: a server that refuses every token gets exactly one fresh one, then the
    // call is answered as a refusal the model reads (no loop), and audited.
    rs.rejectAll = true;
    const before = as.issued.length;
    const refused = (await client.callTool({ name: "echo", arguments: { text: "never" } })) as CallToolResult;
    assert.equal(refused.isError, true);
    assert.match(
      textOf(refused),
      new RegExp(`^${ErrorCodes.OAUTH_AUTHORIZATION_FAILED}: .*refused the bridge's fresh access token \\(HTTP 401\\)`),
    );
    assert.equal(as.issued.length, before + 1, `one fresh token, one retry: ${JSON.stringify(rs.challenges)}`);
    assert.deepEqual(
      rs.calls.map((x) => x.tool),
      ["echo", "echo"],
      "the refused call never ran",
    );
    const own = await bridgeAudit(home, "desk", 3);
    assert.deepEqual(
      own.map((e) => [e.tool, e.outcome, e.reason]),
      [
        ["echo", "ok", ErrorCodes.RECEIPT_MISSING],
        ["echo", "ok", ErrorCodes.RECEIPT_MISSING],
        ["echo", "error", "send-failed"],
      ],
    );
  });

  it("a 403 insufficient_scope gets a token with the scope it names, once: the call goes through; a scope never granted ends as a refusal after one try", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await startTestAuthorizationServer(t, {
      x509Roots: (await c.authority()).bundle().x509Authorities.map((cert) => cert.der),
      grantable: ["mcp:basic", "mcp:tools"],
    });
    const rs = await startTestResourceServer(t, as, { scopes: ["mcp:basic"], callScopes: ["mcp:tools"] });
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.deepEqual(
      as.issued.map((x) => x.scope),
      ["mcp:basic"],
      "the challenge's scope (SEP-835), not more",
    );
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "up" } })), "up");
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "again" } })), "again");
    assert.deepEqual(
      as.issued.map((x) => x.scope),
      ["mcp:basic", "mcp:basic mcp:tools"],
      "stepped up once, for the scopes the 403 named; the next call has them",
    );
    assert.deepEqual(
      rs.challenges.filter((ch) => ch.status === 403).map((ch) => /scope="([^"]*)"/.exec(ch.header ?? "")?.[1]),
      ["mcp:basic mcp:tools"],
    );

    // Its refusing twin: a scope the authorization server never grants is asked for once.
    const as2 = await startTestAuthorizationServer(t, {
      x509Roots: (await c.authority()).bundle().x509Authorities.map((cert) => cert.der),
      grantable: ["mcp:basic"],
    });
    const rs2 = await startTestResourceServer(t, as2, { scopes: ["mcp:basic"], callScopes: ["mcp:admin"] });
    const { client: host2 } = await hostThroughBridge(t, home, "desk", ["--url", rs2.url, "--server-unsecured"]);
    const refused = (await host2.callTool({ name: "echo", arguments: { text: "no" } })) as CallToolResult;
    assert.equal(refused.isError, true);
    assert.match(textOf(refused), new RegExp(`^${ErrorCodes.OAUTH_AUTHORIZATION_FAILED}: .*HTTP 403`));
    assert.deepEqual(
      as2.issued.map((x) => x.scope),
      ["mcp:basic", "mcp:basic mcp:admin"],
      "one step-up, no loop",
    );
    assert.deepEqual(rs2.calls, []);
  });
});

describe("the bridge's credentials, each way an authorization server may know it", () => {
  it("--oauth-assertion jwt-svid: its JWT-SVID for the authorization server's issuer is the assertion (draft-ietf-oauth-spiffe-client-auth)", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as);
    const { client, stderr } = await hostThroughBridge(t, home, "desk", [
      "--url",
      rs.url,
      "--server-unsecured",
      "--oauth-assertion",
      "jwt-svid",
    ]);
    assert.equal(textOf(await client.callTool({ name: "whoami", arguments: {} })), idOf("desk"));
    assert.deepEqual(
      as.issued.map((x) => [x.method, x.clientId, x.claims?.aud]),
      [["jwt-svid", idOf("desk"), as.url]],
    );
    assert.match(stderr(), /authenticated by its SVID \(its JWT-SVID as the assertion\)/);
  });

  it("--oauth-client-id with --oauth-private-key: private_key_jwt with the key the authorization server registered (a SEC1 EC key is read too)", async (t) => {
    const { home } = fixture(t);
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const keyFile = join(home, "registered.pem");
    writeFileSync(keyFile, privateKey.export({ type: "sec1", format: "pem" }), { mode: 0o600 });
    const as = await startTestAuthorizationServer(t, { registered: { clientId: "bridge-42", publicKey } });
    const rs = await startTestResourceServer(t, as);
    const { client } = await hostThroughBridge(t, home, "desk", [
      "--url",
      rs.url,
      "--server-unsecured",
      "--oauth-client-id",
      "bridge-42",
      "--oauth-private-key",
      keyFile,
    ]);
    assert.equal(textOf(await client.callTool({ name: "whoami", arguments: {} })), "bridge-42");
    assert.deepEqual(
      as.issued.map((x) => [x.method, x.clientId, x.claims?.iss]),
      [["registered-key", "bridge-42", "bridge-42"]],
    );
  });

  it("--oauth-client-secret-file: the secret goes to --oauth-issuer only, never onto stderr, the audit log or a host's configuration", async (t) => {
    const { home } = fixture(t);
    const secret = `s3cr3t-${randomUUID()}`;
    const secretFile = join(home, "client-secret");
    writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
    const as = await startTestAuthorizationServer(t, { registered: { clientId: "bridge-7", secret } });
    const rs = await startTestResourceServer(t, as);
    const flags = [
      "--url",
      rs.url,
      "--server-unsecured",
      "--oauth-client-id",
      "bridge-7",
      "--oauth-client-secret-file",
    ];
    const { client, stderr } = await hostThroughBridge(t, home, "desk", [
      ...flags,
      secretFile,
      "--oauth-issuer",
      as.url,
    ]);
    assert.equal(textOf(await client.callTool({ name: "whoami", arguments: {} })), "bridge-7");
    assert.deepEqual(
      as.issued.map((x) => [x.method, x.clientId]),
      [["client_secret_basic", "bridge-7"]],
    );
    await client.close();
    const audit = readFileSync(join(home, "audit", "desk.jsonl"), "utf8");
    assert.ok(audit.includes("whoami"));
    assert.ok(!audit.includes(secret), "the audit log holds no secret");
    assert.ok(!stderr().includes(secret), "stderr holds no secret");
    const printed = await bridgeRun(home, "desk", [
      ...flags,
      secretFile,
      "--oauth-issuer",
      as.url,
      "--print-config",
      "claude",
    ]);
    assert.equal(printed.code, 0, printed.stderr);
    assert.ok(
      printed.stdout.includes(secretFile) && !printed.stdout.includes(secret),
      "the configuration names the file",
    );

    // Its refusing twins. A wrong secret: the bridge stops at start with the server's error code,
    // and still says nothing of the secret.
    const wrongFile = join(home, "wrong-secret");
    const wrong = `wrong-${randomUUID()}`;
    writeFileSync(wrongFile, wrong, { mode: 0o600 });
    const refused = await bridgeRun(home, "desk", [...flags, wrongFile, "--oauth-issuer", as.url]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${ErrorCodes.OAUTH_AUTHORIZATION_FAILED}.*invalid_client`));
    assert.ok(!refused.stderr.includes(wrong) && !refused.stdout.includes(wrong));
    // A server that names another authorization server than the one the secret is for: nothing goes there.
    const other = await startTestAuthorizationServer(t, { registered: { clientId: "bridge-7", secret } });
    const elsewhere = await startTestResourceServer(t, other);
    const mismatch = await bridgeRun(home, "desk", [
      "--url",
      elsewhere.url,
      "--server-unsecured",
      "--oauth-client-id",
      "bridge-7",
      "--oauth-client-secret-file",
      secretFile,
      "--oauth-issuer",
      as.url,
    ]);
    assert.equal(mismatch.code, 1, mismatch.stderr);
    assert.match(mismatch.stderr, new RegExp(ErrorCodes.OAUTH_ISSUER_MISMATCH));
    assert.ok(!other.requests.includes("POST /token"), "no token request, so no secret, went to the other server");
    // Without --oauth-issuer a secret is not used at all (a usage error, exit 2).
    const unpinned = await bridgeRun(home, "desk", [...flags, secretFile]);
    assert.equal(unpinned.code, 2);
    assert.match(unpinned.stderr, /--oauth-client-secret-file needs --oauth-issuer/);
  });
});

describe("attacks on the bridge's OAuth client", () => {
  it("an authorization server whose metadata names another issuer gets no assertion (RFC 8414 3.3); its honest twin gets one", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    as.metadataIssuer = "https://as.example.com";
    const rs = await startTestResourceServer(t, as);
    const r = await bridgeRun(home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${ErrorCodes.OAUTH_ISSUER_METADATA_INVALID}.*https://as\\.example\\.com`));
    assert.ok(!as.requests.includes("POST /token"), "no assertion was sent");
    as.metadataIssuer = undefined;
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(textOf(await client.callTool({ name: "whoami", arguments: {} })), idOf("desk"));
  });

  it("an authorization server over plain http on another host is refused before anything is sent; over loopback it is used", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as, { authorizationServers: ["http://as.invalid:8080"] });
    const r = await bridgeRun(home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${ErrorCodes.OAUTH_INSECURE_HTTP_NOT_ALLOWED}.*http://as\\.invalid:8080`));
    // The twin on loopback: the first test of this file.
  });

  it("resource metadata naming another resource than the URL dialled gets no token request (the SDK's RFC 8707 check, told as the bridge's code)", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as, { resource: "https://evil.example.com/mcp" });
    const r = await bridgeRun(home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${ErrorCodes.OAUTH_AUTHORIZATION_FAILED}.*evil\\.example\\.com`));
    assert.ok(!as.requests.includes("POST /token"));
  });

  it("a third-party server without --server-unsecured is refused at start, saying what to pass; with it, it is served", async (t) => {
    const { home, aztp: c } = fixture(t);
    const as = await trustingAs(t, c);
    const rs = await startTestResourceServer(t, as);
    const r = await bridgeRun(home, "desk", ["--url", rs.url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`${ErrorCodes.PROOF_INVALID}.*run the bridge with --server-unsecured`));
    assert.deepEqual(rs.calls, []);
    const { client } = await hostThroughBridge(t, home, "desk", ["--url", rs.url, "--server-unsecured"]);
    assert.equal(textOf(await client.callTool({ name: "echo", arguments: { text: "ok" } })), "ok");
  });

  it("flags that contradict each other are usage errors (exit 2)", async (t) => {
    const { home } = fixture(t);
    for (const [args, said] of [
      [["--url", "http://127.0.0.1:9/mcp", "--server-unsecured", "--expected-server", idOf("x")], /exclude each other/],
      [["--command", "node x.js", "--oauth-assertion", "jwt-svid"], /OAuth applies to a server reached with --url/],
      [["--url", "http://127.0.0.1:9/mcp", "--oauth-private-key", "k.pem"], /credentials of an --oauth-client-id/],
      [["--url", "http://127.0.0.1:9/mcp", "--oauth-client-id", "a"], /exactly one of/],
      [["--url", "http://127.0.0.1:9/mcp", "--no-oauth", "--oauth-issuer", "https://as"], /--no-oauth excludes/],
      [["--url", "http://127.0.0.1:9/mcp", "--oauth-client-id", "a", "--oauth-private-key", "-"], /takes a file/],
      [["--url", "http://127.0.0.1:9/mcp", "--oauth-authorize-headless"], /with --oauth-flow authorization-code/],
      [["--url", "http://127.0.0.1:9/mcp", "--oauth-redirect-port", "8000"], /with --oauth-flow authorization-code/],
      [
        ["--url", "http://127.0.0.1:9/mcp", "--oauth-flow", "authorization-code", "--expected-server", idOf("x")],
        /does not apply with --oauth-flow authorization-code/,
      ],
      [
        ["--url", "http://127.0.0.1:9/mcp", "--oauth-flow", "authorization-code", "--oauth-assertion", "jwt-svid"],
        /--oauth-assertion is how the bridge authenticates as itself/,
      ],
      [
        [
          "--url",
          "http://127.0.0.1:9/mcp",
          "--oauth-flow",
          "authorization-code",
          "--oauth-open-browser",
          "--oauth-authorize-headless",
        ],
        /exclude each other/,
      ],
      [
        ["--url", "http://127.0.0.1:9/mcp", "--oauth-flow", "authorization-code", "--oauth-redirect-port", "x"],
        /takes a port number/,
      ],
    ] as const) {
      const r = await bridgeRun(home, "desk", [...args]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, said);
    }
  });
});

describe("aztp mcp bridge in front of a secured server that also asks for OAuth (a resource server with no open methods)", () => {
  it("signs its calls and sends a bearer token naming the same caller: the server audits the bridge, authenticated by its signature, with the token's jti", async (t) => {
    const { home, aztp: c } = fixture(t);
    const authority = (await c.authority()) as EmbeddedAuthority;
    const minted: string[] = [];
    // A token endpoint the server trusts: it checks the bridge's assertion (jose, x5c to the
    // bundle), then mints with this authority, as aztp serve's endpoint does.
    const as = await startTestAuthorizationServer(t, {
      x509Roots: authority.bundle().x509Authorities.map((cert) => cert.der),
      mint: (request) => {
        const token = authority.mintAccessToken(request.clientId, {
          resource: request.resource as string,
          scopes: request.scope?.split(" ") ?? [],
        });
        minted.push(decodeJwt(token).jti as string);
        return token;
      },
    });
    authority.setOAuthIssuer(as.url);
    const server = await securedHttpServer(t, c, home, "tools", {
      client: c,
      authorizationServers: true,
      openMethods: [],
    });
    const { client, stderr } = await hostThroughBridge(t, home, "desk", ["--url", server.url]);
    // initialize carried the challenge, tools/list a signature: AZTP proofs pass the gate, no token yet.
    assert.ok((await client.listTools()).tools.length > 0);
    assert.equal(as.issued.length, 0, "no token while every request was signed");
    // ping is neither signed nor open: the server's 401 sends the bridge to the authorization server.
    assert.deepEqual(await client.ping(), {});
    assert.deepEqual(
      as.issued.map((x) => [x.method, x.clientId, x.resource]),
      [["x5c", idOf("desk"), server.url]],
    );
    const r = (await client.callTool({ name: "echo", arguments: { text: "both" } })) as CallToolResult;
    assert.equal(textOf(r), "both");
    assert.equal(typeof r._meta?.["io.aztp/receipt"], "string", "a secured server's receipt, verified by the bridge");
    const served = await server.audit(1);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.callerVerified, e.authMethod, e.accessTokenJti, e.decision]),
      [["echo", idOf("desk"), true, "signed", minted[0], "allow"]],
      "one caller in both credentials; the signature authenticates, the token's jti is recorded",
    );
    const own = await bridgeAudit(home, "desk", 1);
    assert.deepEqual(
      own.map((e) => [e.tool, e.callee, e.decision, e.outcome, typeof e.receipt]),
      [["echo", server.id, "allow", "ok", "string"]],
    );
    assert.doesNotMatch(stderr(), /unsecured/);

    // Its twin without OAuth (--no-oauth): the same server refuses the unsigned ping, and still
    // admits the signed call (a signature needs no token).
    const { client: bare } = await hostThroughBridge(t, home, "desk2", ["--url", server.url, "--no-oauth"]);
    await assert.rejects(bare.ping(), new RegExp(ErrorCodes.OAUTH_TOKEN_MISSING));
    assert.equal(textOf(await bare.callTool({ name: "echo", arguments: { text: "signed only" } })), "signed only");
    const last = (await server.audit(2)).at(-1);
    assert.deepEqual([last?.caller, last?.authMethod, last?.accessTokenJti], [idOf("desk2"), "signed", undefined]);
    assert.equal(as.issued.length, 1);
  });
});

describe("an unsecured server's calls and the audit log (clientHooks with unsecuredServer, in process)", () => {
  /** A third-party SDK server in memory, reached through a client with the bridge's unsecured hooks. */
  async function unsecuredPair(t: TestContext, audit: AuditWriter) {
    const { aztp: c } = fixture(t);
    const { identity } = await c.secureConnect({}, "desk");
    const guard = new CallerGuard({ identity, trust: await c.trust(), mode: "enforce", audit });
    const runs: string[] = [];
    // The low-level SDK Server, so an unknown tool is a JSON-RPC error (McpServer makes it a result).
    const server = new Server({ name: "third-party", version: "1.0.0" }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: [{ name: "echo", inputSchema: { type: "object" } }],
    }));
    server.setRequestHandler(CallToolRequestSchema, async (request) => {
      if (request.params.name !== "echo")
        throw new McpError(ErrorCode.InvalidParams, `unknown tool ${request.params.name}`);
      const text = String(request.params.arguments?.text);
      runs.push(text);
      return { content: [{ type: "text", text }] };
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: "host", version: "1.0.0" });
    const hooks = clientHooks(guard, new ServerBinding(), {
      trust: await c.trust(),
      unsecuredServer: "memory://third-party",
    });
    await client.connect(new InterceptingTransport(clientSide, hooks));
    t.after(() => client.close());
    return { client, runs, guard };
  }

  it("a call leaves only once it can be recorded: an unwritable log refuses it (ERR_AUDIT_UNAVAILABLE) and the tool never runs; a writable one records it", async (t) => {
    const down: AuditWriter = {
      path: "/nowhere/audit.jsonl",
      writable: false,
      recover: async () => false,
      append: async () => {
        throw new Error("disk gone");
      },
      flush: async () => undefined,
    };
    const refused = await unsecuredPair(t, down);
    await assert.rejects(refused.client.callTool({ name: "echo", arguments: { text: "unrecorded" } }), {
      code: ErrorCodes.AUDIT_UNAVAILABLE,
    });
    assert.deepEqual(refused.runs, [], "nothing was sent");

    const entries: AuditEntryInput[] = [];
    const up: AuditWriter = { path: "memory", append: async (e) => entries.push(e), flush: async () => undefined };
    const recorded = await unsecuredPair(t, up);
    const r = (await recorded.client.callTool({ name: "echo", arguments: { text: "recorded" } })) as CallToolResult;
    assert.equal(textOf(r), "recorded");
    assert.deepEqual(
      entries.map((e) => [e.callee, e.tool, e.decision, e.reason, e.outcome, e.token, e.jti]),
      [["memory://third-party", "echo", "audit-only", ErrorCodes.RECEIPT_MISSING, "ok", undefined, undefined]],
    );
    // The server's own error answer is recorded as such, and reaches the host unchanged.
    await assert.rejects(recorded.client.callTool({ name: "nope", arguments: {} }), /unknown tool nope/);
    assert.deepEqual(
      entries.slice(1).map((e) => [e.tool, e.decision, e.outcome]),
      [["nope", "audit-only", "error"]],
    );
  });
});
