/**
 * The bridge as an OAuth client, in front of servers that ask for OAuth: a third-party MCP server
 * (an unmodified SDK McpServer behind the SDK's requireBearerAuth, with an authorization server
 * that checks the bridge's assertions with jose and node:crypto, not with this library), the MCP
 * conformance suite's client-credentials scenarios, and a secured server that also takes bearer
 * tokens. Real bridge processes, driven by unmodified SDK clients over stdio, real HTTP on
 * loopback. Every refusal has a passing twin.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { ErrorCodes } from "../src/errors.js";
import type { EmbeddedAuthority } from "../src/authority/authority.js";
import {
  startTestAuthorizationServer,
  startTestResourceServer,
  type TestAuthorizationServer,
} from "./helpers/oauth-third-party.js";
import { bridgeAudit, bridgeRun, hostThroughBridge, textOf } from "./helpers/mcp-bridge-util.js";
import { fixture, idOf, withTimeout } from "./helpers/mcp-util.js";

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
