/**
 * The guard a callee serves under (servingGuard): one replay cache per SPIFFE ID per process.
 * A token is addressed to an identity, not to one object holding it, so two clients of one
 * process that serve the same ID (two `Aztp` instances on one home, say a library and the
 * application each initialising their own) must not each accept the same token once.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import aztp from "../src/index.js";
import { ErrorCodes } from "../src/errors.js";
import { signInvocation } from "../src/invocation/index.js";
import { INVOCATION_META_KEY } from "../src/mcp/meta.js";
import { tempDir } from "./helpers/authority-util.js";
import { idOf, linkInMemory, rejectsWithData } from "./helpers/mcp-util.js";
import { securedToolServer, toolAnswer, type RunCounter } from "./helpers/mcp-tool-server.js";

async function servedBy(t: TestContext, home: string, counter: RunCounter): Promise<Client> {
  const c = aztp.initialize({ home });
  t.after(() => c.close());
  const server = await securedToolServer(counter, { client: c, name: "shared-tools", audit: false });
  const raw = new Client({ name: "raw", version: "1.0.0" });
  await linkInMemory(t, server, raw);
  return raw;
}

describe("servingGuard", () => {
  it("two clients of one process serving one SPIFFE ID share its replay cache: a token runs once", async (t) => {
    const home = tempDir(t, "guard");
    const counter: RunCounter = { runs: 0 };
    const [one, two] = [await servedBy(t, home, counter), await servedBy(t, home, counter)];
    const caller = aztp.initialize({ home });
    t.after(() => caller.close());
    const me = (await caller.secureConnect({}, "caller")).identity;
    const sign = (text: string): string =>
      signInvocation(me, { audience: idOf("shared-tools"), tool: "echo", args: { text } });
    const call = (client: Client, text: string, token: string) =>
      client.callTool({ name: "echo", arguments: { text }, _meta: { [INVOCATION_META_KEY]: token } });

    const token = sign("a");
    assert.equal(toolAnswer(await call(one, "a", token)).runs, 1);
    await rejectsWithData(call(two, "a", token), ErrorCodes.INVOCATION_REPLAYED, "the same token at the other server");
    // The passing twin: a token of its own runs on the second server.
    assert.equal(toolAnswer(await call(two, "b", sign("b"))).runs, 2);
    assert.equal(counter.runs, 2, "the replayed token never reached a handler");
  });
});
