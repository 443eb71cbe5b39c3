// A revocation made by another process sharing the authority's home is applied by a running
// verifier at its very next check: no restart, no refresh interval, no window.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import aztp from "aztp-client";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { MemoryReplayCache, signInvocation, verifyInvocation } from "../src/invocation/index.js";

const cli = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));

/** A client on a fresh home, both gone when the test ends. */
function fixture(t: TestContext, prefix: string) {
  const home = mkdtempSync(join(tmpdir(), prefix));
  const client = aztp.initialize({ home });
  t.after(() => {
    client.close();
    rmSync(home, { recursive: true, force: true });
  });
  return { home, client };
}

test("a revocation by another process is refused at the next verification", async (t) => {
  const { home, client } = fixture(t, "aztp-xrev-");
  const caller = await client.secureConnect({}, "xrev-caller");
  const child = await client.secureConnect({}, "xrev-child", { parentIdentity: caller.identity.aztpId });
  const server = await client.secureConnect({}, "xrev-server");
  const trust = await client.trust();
  const replay = new MemoryReplayCache();
  const call = (who: typeof caller) =>
    verifyInvocation(signInvocation(who.identity, { audience: server.identity.aztpId, tool: "t", args: {} }), {
      audience: server.identity.aztpId,
      tool: "t",
      args: {},
      trust,
      replay,
    });

  await call(caller);
  await call(child);
  // Another process (the CLI) revokes the parent; this process has verified both moments ago.
  execFileSync(
    process.execPath,
    ["--import", "tsx", cli, "--home", home, "revoke", caller.identity.aztpId, "--reason", "test"],
    { stdio: "pipe" },
  );
  await assert.rejects(call(caller), (e: { code?: string }) => e.code === "ERR_INVOCATION_REVOKED");
  await assert.rejects(
    call(child),
    (e: { code?: string }) => e.code === "ERR_INVOCATION_REVOKED",
    "the child goes with its parent",
  );
  await call(server); // everyone else is unaffected
});

test("checks share a stat only within one run: a revocation acknowledged after a check is seen by the next one", async (t) => {
  const { home, client } = fixture(t, "aztp-xrev-run-");
  const agent = await client.secureConnect({}, "xrev-run-agent");
  const id = agent.identity.aztpId;
  // Two authorities over one home, as two processes would hold them: `reader` checks, `writer` revokes.
  const reader = await EmbeddedAuthority.open(home);
  const writer = await EmbeddedAuthority.open(home);
  assert.equal(reader.isRevoked(id), false);
  assert.equal(reader.isRevoked(id), false, "a second check in the same run");
  await writer.revoke(id, "test");
  assert.equal(reader.isRevoked(id), true, "the check after the revocation was acknowledged sees it");
  // And across a synchronous wait on another process, from a new turn on.
  const other = await client.secureConnect({}, "xrev-run-other");
  assert.equal(reader.isRevoked(other.identity.aztpId), false);
  await new Promise((r) => setImmediate(r));
  execFileSync(
    process.execPath,
    ["--import", "tsx", cli, "--home", home, "revoke", other.identity.aztpId, "--reason", "test"],
    { stdio: "pipe" },
  );
  await Promise.resolve();
  assert.equal(reader.isRevoked(other.identity.aztpId), true);
});
