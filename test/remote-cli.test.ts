/**
 * The CLI's remote mode: with --server (or AZTP_SERVER), the registry and policy commands go
 * to `aztp serve` through RemoteAuthority, authenticated by AZTP_API_KEY and checked against
 * --trust-bundle; the local home is not touched.
 */
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { aztpCli, assertExit, tempDir } from "./helpers/authority-util.js";
import { startServe } from "./helpers/serve-util.js";

const TD = "cli-remote.test";

describe("aztp --server", () => {
  it("list, policy attach/get/check, link, revoke, reissue and discover go to the service; https without a bundle exits 1 saying what to pass", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const { apiKey } = s;
    const bundleFile = join(tempDir(t, "bundle"), "bundle.pem");
    writeFileSync(bundleFile, s.bundlePem);

    const admin = await RemoteAuthority.connect({
      baseUrl: s.url,
      apiKey,
      trustBundle: bundleFile,
      home: tempDir(t, "admin"),
      onWarning: () => undefined,
    });
    t.after(() => admin.close());
    const a = await admin.issueIdentity({ name: "agent-a" }, (await generateWorkloadKey()).csr);
    const b = await admin.issueIdentity({ name: "agent-b" }, (await generateWorkloadKey()).csr);

    // A home the CLI is pointed at but must not use (nor create) in remote mode.
    const localHome = join(tempDir(t, "local"), "never");
    const env = { AZTP_API_KEY: apiKey, AZTP_SERVER: undefined, AZTP_TRUST_BUNDLE: undefined };
    const cli = (args: string[], extraEnv: Record<string, string | undefined> = {}) =>
      aztpCli(localHome, ["--server", s.url, "--trust-bundle", bundleFile, ...args], { env: { ...env, ...extraEnv } });

    const list = await cli(["list"]);
    assertExit(list, 0, "list");
    assert.deepEqual((list.json as Array<{ name: string }>).map((r) => r.name).sort(), ["agent-a", "agent-b"]);

    const policyFile = join(tempDir(t, "policy"), "p.json");
    writeFileSync(
      policyFile,
      JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Sid: "calls", Effect: "Allow", Action: ["tool:call"], Resource: ["search"] }],
      }),
    );
    const attach = await cli(["policy", "attach", "agent-a", policyFile, "--name", "calls"]);
    assertExit(attach, 0, "policy attach");
    const got = await cli(["policy", "get", a.record.aztpId]);
    assertExit(got, 0, "policy get");
    assert.equal(got.json.data[0].policyName, "calls");
    const allowed = await cli(["policy", "check", "agent-a", "--action", "tool:call", "--resource", "search"]);
    assertExit(allowed, 0, "policy check (allowed)");
    const denied = await cli(["policy", "check", "agent-a", "--action", "tool:call", "--resource", "delete"]);
    assertExit(denied, 1, "policy check (denied)");

    const link = await cli(["link", "agent-b", "agent-a"]);
    assertExit(link, 0, "link");
    assert.equal(await admin.connected(a.record.aztpId, b.record.aztpId), true);

    // The key from the environment only, the server from AZTP_SERVER.
    const revoke = await aztpCli(localHome, ["--trust-bundle", bundleFile, "revoke", "agent-b", "--reason", "test"], {
      env: { ...env, AZTP_SERVER: s.url },
    });
    assertExit(revoke, 0, "revoke");
    assert.deepEqual(revoke.json.revoked, [b.record.aztpId]);
    assert.ok(revoke.json.sequence >= 1);
    await admin.revocationFeed.refresh(TD);
    assert.equal(admin.isRevoked(b.record.spiffeId), true);

    const discover = await cli(["discover"]);
    assertExit(discover, 0, "discover");
    assert.deepEqual(
      (discover.json as Array<{ name: string }>).map((r) => r.name),
      ["agent-a"],
    );
    const reissue = await cli(["reissue", b.record.aztpId]);
    assertExit(reissue, 0, "reissue");
    assert.equal(reissue.json.status, "active");

    assert.equal(existsSync(localHome), false, "remote mode never creates the local home");

    const noBundle = await aztpCli(localHome, ["--server", s.url, "list"], { env });
    assertExit(noBundle, 1, "list without a trust bundle");
    assert.match(noBundle.stderr + noBundle.stdout, /ERR_AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING/);
    assert.match(noBundle.stderr + noBundle.stdout, /--trust-bundle/);
    const secret = apiKey.slice(-32);
    assert.ok(
      !(noBundle.stderr + noBundle.stdout + list.stdout + list.stderr).includes(secret),
      "the API key's secret is never printed",
    );
  });
});
