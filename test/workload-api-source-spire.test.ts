/**
 * The Workload API source against an endpoint that is not ours: a fake SPIRE agent built from the
 * official workload.proto with its own CA and JWT key (test/helpers/fake-spire-agent.ts). The
 * client and every wrapper run on SPIRE-style identities with no authority of this library in
 * sight: what it proves is that the source depends on the Workload API alone.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AIMessage, fakeModel } from "langchain";
import { forecastOverMcp } from "./helpers/workload-api-mcp.js";
import { Aztp } from "../src/client/aztp.js";
import type { AgentIdentity } from "../src/client/identity.js";
import { ErrorCodes } from "../src/errors.js";
import { createSecureAgent, secureTool } from "../src/langchain/index.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { startFakeSpireAgent, type FakeSpireAgent } from "./helpers/fake-spire-agent.js";
import { adder, answerTo, assertReceipted } from "./helpers/langchain-util.js";

const TOOLS = "spiffe://spire.example/ns/tools/sa/weather";
const AGENT = "spiffe://spire.example/ns/agents/sa/planner";

async function until(done: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const removal of ["empty-update", "permission-denied"] as const) {
  describe(`a client on a SPIRE-like agent (its own CA; identities removed by ${removal})`, () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-spire-src-"));
    let spire: FakeSpireAgent;
    const clients: Aztp[] = [];
    const client = (): Aztp => {
      const c = new Aztp({ workloadApi: `unix://${join(dir, "agent.sock")}`, home: join(dir, "client-home") });
      clients.push(c);
      return c;
    };

    before(async () => {
      spire = await startFakeSpireAgent({
        socketPath: join(dir, "agent.sock"),
        trustDomain: "spire.example",
        identities: [
          { spiffeId: TOOLS, hint: "weather" },
          { spiffeId: AGENT, hint: "planner" },
        ],
        federated: [{ trustDomain: "partner.example" }],
        intermediate: removal === "permission-denied",
        whenIdentitiesRemoved: removal,
      });
    });
    after(async () => {
      for (const c of clients) await (await c.authority()).close?.();
      await spire?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("binds SPIRE's SVID by hint and verifies it against SPIRE's bundle; the federated bundle is there too", async () => {
      const c = client();
      const agent = await c.secureConnect({}, "planner");
      assert.equal(agent.identity.spiffeId, AGENT);
      assert.equal(agent.identity.trustDomain, "spire.example");
      assert.equal(await agent.identity.verify(), true);
      const authority = await c.authority();
      assert.equal(authority.defaultTrustDomain, "spire.example");
      assert.ok((authority.getBundleForTrustDomain("partner.example")?.x509Authorities.length ?? 0) > 0);
      assert.equal(authority.getBundleForTrustDomain("aztp.local"), undefined, "nothing of this library's authority");
    });

    it("an MCP server and client on SPIRE's identities sign, verify and receipt a tool call", async () => {
      const { serverId, content } = await forecastOverMcp(client(), client(), "Bergen");
      assert.equal(serverId, TOOLS);
      assert.deepEqual(content, [{ type: "text", text: "forecast for Bergen" }]);
    });

    it("a LangChain agent on SPIRE's identity calls a tool secured on another: signed, verified, receipted; tools of its own would need issuing, refused with the code", async () => {
      const c = client();
      const add = adder();
      const tool = await secureTool(add.tool, { client: client(), name: "weather" });
      const model = fakeModel()
        .respondWithTools([{ name: "add", args: { a: 2, b: 3 }, id: "call_1" }])
        .respond(new AIMessage("done"));
      const agent = await createSecureAgent({ client: c, name: "planner", model, tools: [tool] });
      assert.equal(agent.identity.spiffeId, AGENT);
      const result = await agent.invoke({ messages: [{ role: "user", content: "2+3" }] });
      assert.deepEqual(add.runs, [{ a: 2, b: 3 }]);
      const m = answerTo(result, "call_1");
      assert.equal(m.content, "5");
      assertReceipted(m, SpiffeId.parse(TOOLS).aztpId);
      await assert.rejects(
        createSecureAgent({ client: c, name: "planner", model: fakeModel(), tools: [adder("own").tool] }),
        { code: ErrorCodes.WORKLOAD_API_OPERATION_UNSUPPORTED },
      );
    });

    it("follows SPIRE's pushes: a rotation (new key), a new JWT key, and identities taken away", async () => {
      const c = client();
      const agent = await c.secureConnect({}, "planner");
      const identity: AgentIdentity = agent.identity;
      const before = identity.serial;
      const rotated = new Promise<string>((resolve) => identity.once("rotated", (e) => resolve(e.serial)));
      await spire.rotate();
      assert.notEqual(await rotated, before);
      assert.equal(await identity.verify(), true);

      const authority = await c.authority();
      const version = authority.version ?? 0;
      await spire.rotateJwtKey();
      await until(() => (authority.version ?? 0) !== version, "the new JWT key");
      const token = await identity.jwtSvid("spiffe://spire.example/ledger");
      assert.equal(
        validateJwtSvid(token, authority.bundleSet(), { audience: "spiffe://spire.example/ledger" }).id.toString(),
        AGENT,
      );

      await spire.setIdentities([]);
      await until(() => identity.status === "revoked", "the identity taken away");
      assert.equal(identity.valid, false);
      await spire.setIdentities([
        { spiffeId: TOOLS, hint: "weather" },
        { spiffeId: AGENT, hint: "planner" },
      ]);
      await until(() => identity.status === "active", "the identity given back", 10_000);
      assert.equal(identity.valid, true);
    });
  });
}
