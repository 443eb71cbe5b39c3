/**
 * `aztp workload register | list | delete` through the real CLI, on a home folder, on
 * PostgreSQL (`--store postgres://… --kek-file`; skipped, saying so, without AZTP_TEST_PG_URL)
 * and against a real `aztp serve` (`--server`, a scoped key too):
 * register, the identical entry refused, list (--json and the table), delete, delete again
 * refused with its code; the entry's SPIFFE ID is an identity `aztp list` shows and `aztp
 * revoke` revokes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { openPostgresStores } from "../src/store/postgres/index.js";
import { aztpCli, assertExit, runTs, CLI, tempDir } from "./helpers/authority-util.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { startServe } from "./helpers/serve-util.js";

const WEB = "spiffe://example.org/ns/default/sa/web";

/** The flow on a store: `store` is the arguments naming it (`--store …`, or none for --home). */
async function flow(home: string, store: string[]): Promise<void> {
  const made = await aztpCli(home, [
    "workload",
    "register",
    ...store,
    "--spiffe-id",
    "aztp://example.org/ns/default/sa/web",
    "--selector",
    "unix:uid:1000",
    "--selector",
    "unix:path:/usr/bin/python3",
    "--hint",
    "internal",
  ]);
  assertExit(made, 0, "register");
  const entry = made.json.entry;
  assert.equal(entry.spiffeId, WEB);
  assert.deepEqual(entry.selectors, ["unix:path:/usr/bin/python3", "unix:uid:1000"]);
  assert.equal(entry.hint, "internal");

  const again = await aztpCli(home, [
    "workload",
    "register",
    ...store,
    "--spiffe-id",
    WEB,
    "--selector",
    "unix:path:/usr/bin/python3",
    "--selector",
    "unix:uid:1000",
  ]);
  assertExit(again, 1, "the identical entry");
  assert.equal(again.json.error.code, "ERR_WORKLOAD_ENTRY_EXISTS");
  const foreign = await aztpCli(home, [
    "workload",
    "register",
    ...store,
    "--spiffe-id",
    "spiffe://other.example/web",
    "--selector",
    "unix:uid:1000",
  ]);
  assertExit(foreign, 1, "a trust domain the authority does not hold");
  assert.equal(foreign.json.error.code, "ERR_TRUST_DOMAIN_NOT_ALLOWED");

  const listed = await aztpCli(home, ["workload", "list", ...store]);
  assertExit(listed, 0, "list --json");
  assert.deepEqual(listed.json.entries, [entry]);
  const table = await runTs(CLI, [...(store.length === 0 ? ["--home", home] : []), "workload", "list", ...store]);
  assertExit(table, 0, "list");
  assert.match(table.stdout, /^ENTRY ID +SPIFFE ID +SELECTORS +HINT\n/);
  assert.ok(table.stdout.includes(`${entry.entryId}  ${WEB}  unix:path:/usr/bin/python3,unix:uid:1000  internal`));

  // `aztp list` and `aztp revoke` act on the home (or --server); the PostgreSQL half checks the registry itself.
  if (store.length === 0) {
    const identities = await aztpCli(home, ["list"]);
    assertExit(identities, 0, "aztp list");
    assert.deepEqual(
      identities.json.map((r: { spiffeId: string }) => r.spiffeId),
      [WEB],
    );
    assertExit(await aztpCli(home, ["revoke", "aztp://example.org/ns/default/sa/web"]), 0, "aztp revoke");
  }

  const deleted = await aztpCli(home, ["workload", "delete", entry.entryId, ...store]);
  assertExit(deleted, 0, "delete");
  assert.deepEqual(deleted.json, { entryId: entry.entryId, deleted: true });
  const twice = await aztpCli(home, ["workload", "delete", entry.entryId, ...store]);
  assertExit(twice, 1, "delete again");
  assert.equal(twice.json.error.code, "ERR_WORKLOAD_ENTRY_NOT_FOUND");
  const empty = await aztpCli(home, ["workload", "list", ...store]);
  assert.deepEqual(empty.json.entries, []);
}

describe("aztp workload", () => {
  it("register → the identical entry refused → list (--json, table) → delete → delete again fails, on a home folder", async (t) => {
    const home = join(tempDir(t), "home");
    assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0, "init");
    await flow(home, []);
  });

  it("the same on PostgreSQL (--store URL --kek-file)", async (t: TestContext) => {
    if (skipWithoutPg(t)) return;
    const url = await pgDatabase(t);
    if (url === undefined) return;
    const kek = randomBytes(32);
    const kekFile = join(tempDir(t, "kek"), "kek");
    writeFileSync(kekFile, kek.toString("hex"), { mode: 0o600 });
    const s = await openPostgresStores(url, { kek });
    try {
      await EmbeddedAuthority.fromStores(
        { registry: s.registry, ca: s.ca },
        { create: true, trustDomain: "example.org", home: tempDir(t, "own") },
      );
    } finally {
      await s.close();
    }
    await flow(tempDir(t, "own"), ["--store", url, "--kek-file", kekFile]);
    const again = await openPostgresStores(url, { kek });
    try {
      const a = await EmbeddedAuthority.fromStores(
        { registry: again.registry, ca: again.ca },
        { home: tempDir(t, "own") },
      );
      assert.equal(a.get(WEB).environment, "workload-api", "the entry's identity is in the shared registry");
    } finally {
      await again.close();
    }
  });

  it("the same against aztp serve (--server URL --api-key K --trust-bundle F): the service's entries and codes; a scoped key refused outside its scope", async (t) => {
    const s = await startServe(t, { trustDomain: "example.org", logLevel: "error" });
    const bundle = join(tempDir(t, "bundle"), "bundle.pem");
    writeFileSync(bundle, s.bundlePem);
    // A home the CLI is pointed at but must not use in remote mode.
    const localHome = join(tempDir(t, "local"), "never");
    const server = ["--server", s.url, "--trust-bundle", bundle, "--api-key", s.apiKey];
    await flow(localHome, server);
    assert.equal(existsSync(localHome), false, "the local home is not touched");

    const { key } = await s.newKey({ idPrefix: "spiffe://example.org/node-a" }, "node-a");
    const scoped = ["--server", s.url, "--trust-bundle", bundle, "--api-key", key];
    const register = (id: string) =>
      aztpCli(localHome, ["workload", "register", ...scoped, "--spiffe-id", id, "--selector", "unix:uid:7"]);
    const outside = await register("spiffe://example.org/node-b/web");
    assertExit(outside, 1, "an ID outside the key's scope");
    assert.equal(outside.json.error.code, "ERR_SERVE_API_KEY_SCOPE_DENIED");
    const inside = await register("spiffe://example.org/node-a/web");
    assertExit(inside, 0, "the twin in scope");
    const listed = await aztpCli(localHome, ["workload", "list", ...scoped]);
    assertExit(listed, 0, "list");
    assert.deepEqual(listed.json.entries, [inside.json.entry]);
  });

  it("usage errors exit 2: no --selector; --kek-file with --server", async (t) => {
    const home = tempDir(t);
    const none = await aztpCli(home, ["workload", "register", "--spiffe-id", WEB]);
    assertExit(none, 2, "no --selector");
    const remote = await aztpCli(home, ["--server", "https://127.0.0.1:1", "workload", "list", "--kek-file", "k"]);
    assertExit(remote, 2, "--kek-file with --server");
    assert.match(remote.json.error.message, /--kek-file/);
  });

  it("a folder without an authority is refused, naming it", async (t) => {
    const home = tempDir(t);
    const r = await aztpCli(home, ["workload", "list"]);
    assertExit(r, 1, "no authority");
    assert.equal(r.json.error.code, "ERR_AUTHORITY_NOT_INITIALIZED");
  });
});

describe("aztp workload-api refuses what it cannot serve, before making a socket (usage: exit 2)", () => {
  const cases: Array<[string, string[], Record<string, string | undefined>, RegExp]> = [
    ["no socket at all", [], { SPIFFE_ENDPOINT_SOCKET: undefined }, /give --socket PATH/],
    ["a TCP address", ["--socket", "tcp://127.0.0.1:8081"], {}, /only a Unix socket can be served/],
    [
      "TCP in SPIFFE_ENDPOINT_SOCKET",
      [],
      { SPIFFE_ENDPOINT_SOCKET: "tcp://127.0.0.1:8081" },
      /SPIFFE_ENDPOINT_SOCKET: only a Unix socket/,
    ],
    ["a unix URL with a host", ["--socket", "unix://host/tmp/agent.sock"], {}, /unix:\/\/\/absolute\/path/],
    [
      "socket permissions that are not octal",
      ["--socket", "/tmp/x.sock", "--socket-mode", "rw-rw-rw-"],
      {},
      /--socket-mode is octal/,
    ],
    [
      "a sync interval without --server",
      ["--socket", "/tmp/x.sock", "--sync-interval", "1s"],
      {},
      /--sync-interval is for --server/,
    ],
  ];
  for (const [what, args, env, message] of cases) {
    it(`${what}: exit 2, saying why`, async (t) => {
      const home = tempDir(t);
      const r = await aztpCli(home, ["workload-api", ...args], { env });
      assertExit(r, 2, what);
      assert.match(r.stderr, message);
    });
  }
});
