/**
 * The public entry points (package.json "exports") export what users need and none of the
 * internal plumbing: the guards' audit recorder and mode check, the certificate parse cache,
 * the audit chain's internals.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";

const ENTRIES = [
  "index",
  "spiffe/index",
  "invocation/index",
  "policy/index",
  "audit/index",
  "authority/index",
  "mcp/index",
  "guard/index",
] as const;

/** Names that are plumbing: never part of any public entry. */
const PLUMBING = [
  "AuditRecorder",
  "checkMode",
  "sayIfAuditMode",
  "clearCertificateCache",
  "assertIdentity",
  "stepFault",
  "sealFault",
  "linkFault",
  "nextLink",
  "RegistrySnapshot",
  "newSerial",
];

async function load(entry: string): Promise<Record<string, unknown>> {
  return (await import(`../src/${entry}.js`)) as Record<string, unknown>;
}

describe("public surface", () => {
  for (const entry of ENTRIES) {
    it(`${entry} exports no plumbing`, async () => {
      const exported = Object.keys(await load(entry));
      assert.deepEqual(
        PLUMBING.filter((name) => exported.includes(name)),
        [],
      );
    });
  }

  it("exports what users need", async () => {
    const main = await load("index");
    assert.equal(main.CONNECT_ACTION, "identity:connect");
    const policy = await load("policy/index");
    for (const name of ["CONNECT_ACTION", "TOOL_CALL_ACTION", "decidePolicy", "policyRequest", "normalizeSourceIp"])
      assert.ok(name in policy, `aztp-client/policy exports ${name}`);
    const audit = await load("audit/index");
    for (const name of ["parseCheckpoint", "checkpointPayload", "GENESIS_HASH", "verifyAuditLog"])
      assert.ok(name in audit, `aztp-client/audit exports ${name}`);
    const mcp = await load("mcp/index");
    for (const name of ["startMcpProxy", "startMcpBridge", "serveMcpHttp", "secureMcpClient", "secureMcpServer"])
      assert.ok(name in mcp, `aztp-client/mcp exports ${name}`);
    const client = await import("../src/client/aztp.js");
    assert.equal(client.CONNECT_ACTION, main.CONNECT_ACTION, "one CONNECT_ACTION");
  });
});
