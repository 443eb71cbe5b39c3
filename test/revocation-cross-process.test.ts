// A revocation made by another process sharing the authority's home is applied by a running
// verifier at its very next check: no restart, no refresh interval, no window.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import aztp from "aztp-client";
import { MemoryReplayCache, signInvocation, verifyInvocation } from "../src/invocation/index.js";

const cli = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));

test("a revocation by another process is refused at the next verification", async (t) => {
  const home = mkdtempSync(join(tmpdir(), "aztp-xrev-"));
  const client = aztp.initialize({ home });
  t.after(() => {
    client.close();
    rmSync(home, { recursive: true, force: true });
  });
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
  execFileSync(process.execPath, ["--import", "tsx", cli, "--home", home, "revoke", caller.identity.aztpId, "--reason", "test"], { stdio: "pipe" });
  await assert.rejects(call(caller), (e: { code?: string }) => e.code === "ERR_INVOCATION_REVOKED");
  await assert.rejects(call(child), (e: { code?: string }) => e.code === "ERR_INVOCATION_REVOKED", "the child goes with its parent");
  await call(server); // everyone else is unaffected
});
