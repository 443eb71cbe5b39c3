/**
 * The seed API over a remote authority: `aztp.initialize({ apiKey, baseUrl, trustBundle })`
 * against the real `aztp serve` gives the same client, and a secured MCP server and client
 * built on it work unchanged (their calls verified on the feeds, no request per call).
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { AIMessage, fakeModel } from "langchain";
import { z } from "zod";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { Aztp } from "../src/client/aztp.js";
import { FileApiKeyStore } from "../src/store/api-keys.js";
import { ErrorCodes } from "../src/errors.js";
import { createSecureAgent, receiptOf, secureTool } from "../src/langchain/index.js";
import { secureMcpClient } from "../src/mcp/index.js";
import { tempDir } from "./helpers/authority-util.js";
import { linkInMemory } from "./helpers/mcp-util.js";
import { securedToolServer, toolAnswer } from "./helpers/mcp-tool-server.js";
import { client as serveClient, startServe } from "./helpers/serve-util.js";

const TD = "client-remote.test";

function remoteClient(t: TestContext, s: { url: string; apiKey: string; bundlePem: string }): Aztp {
  const c = Aztp.initialize({ apiKey: s.apiKey, baseUrl: s.url, trustBundle: s.bundlePem, home: tempDir(t, "client") });
  t.after(() => c.close());
  return c;
}

describe("aztp.initialize({ apiKey, baseUrl }) on aztp serve", () => {
  it("secureConnect, verify, get, discover, revoke: the seed calls, with a revocation seen by another client within the hint", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const c = remoteClient(t, s);
    const other = remoteClient(t, s);

    const agent = await c.secureConnect({ role: "planner" }, "seed-agent");
    assert.equal(agent.identity.trustDomain, TD);
    assert.equal(await c.verifyIdentity(agent), true);
    assert.equal((await c.getIdentity(agent)).status, "active");
    assert.equal((await c.getIdentity("seed-agent")).aztpId, agent.identity.aztpId);
    assert.ok((await c.discoverIdentity()).some((r) => r.aztpId === agent.identity.aztpId));
    assert.equal(await other.verifyIdentity(agent.identity.aztpId), true);

    await c.revokeIdentity(agent.identity.aztpId, "test");
    assert.equal(await c.verifyIdentity(agent), false, "this client sees its own revocation at once");
    const at = Date.now();
    while (await other.verifyIdentity(agent.identity.aztpId)) {
      assert.ok(Date.now() - at < 3_000, "the other client did not see the revocation within the hint plus slack");
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("a secured MCP server and client on the remote authority: a call is signed, verified and receipted as on the embedded one", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const c = remoteClient(t, s);
    const counter = { runs: 0 };
    const server = await securedToolServer(counter, { client: c, name: "tools" });
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), { client: c, name: "agent" });
    await linkInMemory(t, server, client);
    assert.deepEqual(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "hi" } })), {
      tool: "echo",
      value: "hi",
      runs: 1,
    });

    // With the service stopped, calls still verify: the path needs no request.
    await s.stop();
    assert.deepEqual(toolAnswer(await client.callTool({ name: "echo", arguments: { text: "again" } })), {
      tool: "echo",
      value: "again",
      runs: 2,
    });
    await assert.rejects(
      c.secureConnect({}, "new-one"),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
    );
  });
});

describe("the shared audit log of aztp serve", () => {
  it("a wrapper given sharedAuditLog() writes both sides of a call to the service's one log before the call is answered", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const c = remoteClient(t, s);
    const audit = await c.sharedAuditLog();
    const server = await securedToolServer({ runs: 0 }, { client: c, name: "tools", audit });
    const client = await secureMcpClient(new Client({ name: "agent", version: "1.0.0" }), {
      client: c,
      name: "agent",
      audit,
    });
    await linkInMemory(t, server, client);
    await client.callTool({ name: "echo", arguments: { text: "hi" } });
    // No flush: the answer came after both entries were acknowledged by the service.
    const page = await serveClient(s)("/v1/audit?afterSeq=0&limit=100");
    assert.equal(page.status, 200);
    const entries = (page.json as { entries: Array<{ side: string; tool: string; decision: string }> }).entries.filter(
      (e) => e.tool === "echo",
    );
    assert.deepEqual(entries.map((e) => e.side).sort(), ["callee", "caller"]);
    assert.ok(entries.every((e) => e.decision === "allow"));
  });

  it("the embedded authority has no shared log, and says so", async (t) => {
    const c = Aztp.initialize({ home: tempDir(t, "embedded") });
    t.after(() => c.close());
    await assert.rejects(
      c.sharedAuditLog(),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.ARGUMENT_INVALID,
    );
  });
});

describe("LangChain on the remote authority", () => {
  it("createSecureAgent and a secureTool with a policy, identities from aztp serve: the admitted call is signed, verified and receipted, the other refused before the tool runs", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const c = remoteClient(t, s);
    const runs: string[] = [];
    const vault = tool(
      async ({ key }: { key: string }) => {
        runs.push(key);
        return `secret of ${key}`;
      },
      { name: "vault", description: "reads a secret", schema: z.object({ key: z.string() }) },
    );
    const alice = `aztp://${TD}/workload/production/node/alice`;
    const secured = await secureTool(vault, {
      client: c,
      name: "vault",
      policy: [
        {
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Principal: alice, Action: "tool:call", Resource: "vault" }],
        },
      ],
    });
    const agent = (name: string, id: string) =>
      createSecureAgent({
        client: c,
        name,
        model: fakeModel()
          .respondWithTools([{ name: "vault", args: { key: "k1" }, id }])
          .respond(new AIMessage("done")),
        tools: [secured],
      });
    const ask = { messages: [{ role: "user", content: "open it" }] };

    const allowed = (await (await agent("alice", "a1")).invoke(ask)).messages.find(
      (m: unknown) => ToolMessage.isInstance(m) && m.tool_call_id === "a1",
    ) as ToolMessage;
    assert.equal(allowed.content, "secret of k1");
    assert.equal(receiptOf(allowed)?.status, "ok", "the answer carries the callee's signed receipt");
    const refused = (await (await agent("mallory", "m1")).invoke(ask)).messages.find(
      (m: unknown) => ToolMessage.isInstance(m) && m.tool_call_id === "m1",
    ) as ToolMessage;
    assert.match(String(refused.content), /ERR_POLICY_DENIED/);
    assert.deepEqual(runs, ["k1"], "the refused call never reached the tool");
  });
});

describe("a client whose service is not up yet", () => {
  it("fails with ERR_AUTHORITY_REMOTE_UNAVAILABLE, keeps nothing of the failure, and works once the service is up", async (t) => {
    const { createServer } = await import("node:net");
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => resolve(p));
      });
    });
    const home = tempDir(t, "store");
    await EmbeddedAuthority.init(home, TD);
    const { key } = await new FileApiKeyStore(home).create({ name: "early" });
    const c = Aztp.initialize({ apiKey: key, baseUrl: `http://127.0.0.1:${port}`, home: tempDir(t, "early") });
    t.after(() => c.close());
    const down = (e: unknown): boolean => (e as { code?: string }).code === ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE;
    await assert.rejects(c.secureConnect({}, "early"), down);
    await assert.rejects(c.trust(), down);

    await startServe(t, { store: home, port, insecureHttp: true, logLevel: "error" });
    // The same client, retried: the failed connect was not kept.
    assert.equal((await c.secureConnect({}, "early")).identity.trustDomain, TD);
    assert.ok(
      (await c.trust()).bundles.getBundleForTrustDomain(TD),
      "its trust is built afresh from the service's feeds",
    );
  });
});
