/**
 * `aztp issuer add | list | remove` (cli/commands/issuer.ts): the OpenID Providers a trust domain
 * trusts, on a home and through `aztp serve`, a provider checked by discovery when added (a real
 * oidc-provider on loopback), and on PostgreSQL one replica's change seen by the other.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { ErrorCodes } from "../src/errors.js";
import { TOKEN_EXCHANGE_GRANT, TOKEN_TYPE } from "../src/people/token-exchange.js";
import { aztpCli, assertExit, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { sdkAssertion, startServe, tokenRequest, workload } from "./helpers/serve-util.js";

let op: LocalOpenIdProvider;
before(async () => {
  op = await startLocalOpenIdProvider();
});
after(() => op.close());

describe("aztp issuer", () => {
  it("on a home: add checks discovery (unreachable, another issuer: exit 1 saying why; --no-check adds it), list, remove", async (t) => {
    const home = tempDir(t, "issuer-home");
    await EmbeddedAuthority.init(home, "issuer.test");
    const cli = (args: string[]) => aztpCli(home, ["issuer", ...args]);

    const added = await cli([
      "add",
      op.issuer,
      "--audience",
      "local-app",
      "--audience",
      "cli-app",
      "--claims-map",
      "groups=roles",
      "--record-email",
    ]);
    assertExit(added, 0, "issuer add");
    assert.deepEqual(added.json.issuer, {
      issuer: op.issuer,
      audiences: ["local-app", "cli-app"],
      claimsMap: { groups: "roles" },
      recordEmail: true,
    });
    assert.equal(added.json.checked, true);

    // Nothing listens on port 9; "localhost" reaches the same provider, whose metadata names 127.0.0.1.
    const down = await cli(["add", "http://127.0.0.1:9", "--audience", "x"]);
    assertExit(down, 1, "issuer add (unreachable)");
    assert.equal(down.json.error.code, ErrorCodes.OAUTH_ISSUER_UNAVAILABLE);
    assert.match(down.json.error.message, /--no-check/);
    const lookalike = op.issuer.replace("127.0.0.1", "localhost");
    const other = await cli(["add", lookalike, "--audience", "x"]);
    assertExit(other, 1, "issuer add (another issuer)");
    assert.equal(other.json.error.code, ErrorCodes.OAUTH_ISSUER_METADATA_INVALID);
    const unchecked = await cli(["add", "http://127.0.0.1:9", "--audience", "x", "--no-check"]);
    assertExit(unchecked, 0, "issuer add --no-check");
    assert.equal(unchecked.json.checked, false);
    const badMap = await cli(["add", op.issuer, "--audience", "x", "--claims-map", "name=nick"]);
    assertExit(badMap, 2, "issuer add (a claim that cannot be mapped)");

    const list = await cli(["list"]);
    assertExit(list, 0, "issuer list");
    assert.deepEqual(
      (list.json.issuers as Array<{ issuer: string }>).map((i) => i.issuer),
      [op.issuer, "http://127.0.0.1:9"],
    );
    const embedded = await EmbeddedAuthority.open(home);
    assert.deepEqual(embedded.personIssuers()[0]?.audiences, ["local-app", "cli-app"]);

    assertExit(await cli(["remove", "http://127.0.0.1:9"]), 0, "issuer remove");
    const again = await cli(["remove", "http://127.0.0.1:9"]);
    assertExit(again, 1, "issuer remove (not trusted)");
    assert.equal(again.json.error.code, ErrorCodes.PERSON_ISSUER_UNTRUSTED);
    assert.equal((await cli(["list"])).json.issuers.length, 1);
  });

  it("through aztp serve: add, list, remove; a key narrower than the trust domain may list but not change", async (t) => {
    const s = await startServe(t, { trustDomain: "issuer-serve.test", logLevel: "error" });
    const bundleFile = join(tempDir(t, "bundle"), "bundle.pem");
    writeFileSync(bundleFile, s.bundlePem);
    const narrow = await s.newKey({ idPrefix: "spiffe://issuer-serve.test/workload/default/team" }, "team");
    const localHome = join(tempDir(t, "local"), "never");
    const cli = (args: string[], key = s.apiKey) =>
      aztpCli(localHome, ["--server", s.url, "--trust-bundle", bundleFile, "issuer", ...args], {
        env: { AZTP_API_KEY: key, AZTP_SERVER: undefined, AZTP_TRUST_BUNDLE: undefined },
      });

    const added = await cli(["add", op.issuer, "--audience", "local-app"]);
    assertExit(added, 0, "issuer add --server");
    const denied = await cli(["add", op.issuer, "--audience", "local-app", "--no-check"], narrow.key);
    assertExit(denied, 1, "issuer add with a narrow key");
    assert.equal(denied.json.error.code, ErrorCodes.SERVE_API_KEY_SCOPE_DENIED);
    const listed = await cli(["list"], narrow.key);
    assertExit(listed, 0, "issuer list with a narrow key");
    assert.deepEqual(listed.json.issuers, [{ issuer: op.issuer, audiences: ["local-app"] }]);
    assertExit(await cli(["remove", op.issuer], narrow.key), 1, "issuer remove with a narrow key");
    assertExit(await cli(["remove", op.issuer]), 0, "issuer remove --server");
    assert.deepEqual((await cli(["list"])).json.issuers, []);
  });

  it("on PostgreSQL: an issuer added through one replica is trusted by the other at its next request", async (t) => {
    if (skipWithoutPg(t)) return;
    const url = (await pgDatabase(t)) as string;
    const kek = randomBytes(32);
    const td = "issuer-pg.test";
    const [a, b] = await Promise.all([
      startServe(t, { store: url, kek, trustDomain: td, logLevel: "error" }),
      startServe(t, { store: url, kek, trustDomain: td, logLevel: "error" }),
    ]);
    const bundleFile = join(tempDir(t, "bundle"), "bundle.pem");
    writeFileSync(bundleFile, a.bundlePem);
    const agent = await workload(b.url, b.bundlePem, b.apiKey, "pg-agent");
    const alice = await op.login({ account: "alice" });
    const exchangeAtB = async () =>
      tokenRequest(
        b.url,
        {
          grant_type: TOKEN_EXCHANGE_GRANT,
          subject_token: alice.idToken,
          subject_token_type: TOKEN_TYPE.idToken,
          actor_token: await sdkAssertion(agent, b.url),
          actor_token_type: TOKEN_TYPE.jwt,
        },
        { ca: b.bundlePem },
      );
    const before = await exchangeAtB();
    assert.equal(before.json.code, ErrorCodes.PERSON_ISSUER_UNTRUSTED, before.text);

    const added = await aztpCli(
      join(tempDir(t, "local"), "never"),
      ["--server", a.url, "--trust-bundle", bundleFile, "issuer", "add", op.issuer, "--audience", "local-app"],
      { env: { AZTP_API_KEY: a.apiKey, AZTP_SERVER: undefined, AZTP_TRUST_BUNDLE: undefined } },
    );
    assertExit(added, 0, "issuer add on replica A");

    const atB = await RemoteAuthority.connect({
      baseUrl: b.url,
      apiKey: b.apiKey,
      trustBundle: b.bundlePem,
      home: tempDir(t, "b"),
      onWarning: () => undefined,
    });
    t.after(() => atB.close());
    assert.deepEqual(await atB.personIssuers(), [{ issuer: op.issuer, audiences: ["local-app"] }]);
    const granted = await exchangeAtB();
    assert.equal(granted.status, 200, granted.text);

    assert.equal(await atB.removePersonIssuer(op.issuer), true);
    const gone = await RemoteAuthority.connect({
      baseUrl: a.url,
      apiKey: a.apiKey,
      trustBundle: a.bundlePem,
      home: tempDir(t, "a"),
      onWarning: () => undefined,
    });
    t.after(() => gone.close());
    assert.deepEqual(await gone.personIssuers(), []);
  });
});
