/**
 * API keys: the format (aztp_<keyId>_<secret>), the stored hash (sha256 of the secret, never
 * the secret), scope checks, and the home-folder store under concurrent writers.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { scopeCovers, scopeCoversTrustDomain, type ApiKeyScope } from "../src/store/api-key-scope.js";
import {
  FileApiKeyStore,
  generateApiKey,
  hashApiKeySecret,
  normaliseCreateOptions,
  parseApiKey,
  verifyApiKeySecret,
} from "../src/store/api-keys.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";

describe("API key format and hashing", () => {
  it("a generated key parses back to its id and secret; the hash verifies only that secret", () => {
    const k = generateApiKey();
    assert.match(k.key, /^aztp_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(parseApiKey(k.key), { keyId: k.keyId, secret: k.secret });
    assert.equal(k.secretHash, hashApiKeySecret(k.secret));
    assert.ok(verifyApiKeySecret(k.secret, k.secretHash));
    assert.ok(
      !verifyApiKeySecret(
        `${k.secret.slice(0, -1)}A` === k.secret ? `${k.secret.slice(0, -1)}B` : `${k.secret.slice(0, -1)}A`,
        k.secretHash,
      ),
    );
    assert.ok(!verifyApiKeySecret(k.secret, "abcd"), "a corrupt stored hash refuses");
    assert.ok(!k.secretHash.includes(k.secret));
  });

  it("malformed keys do not parse", () => {
    const good = generateApiKey();
    for (const bad of [
      "",
      "aztp_",
      "aztp__x",
      `AZTP_${good.key.slice(5)}`,
      `aztp_${good.keyId.toUpperCase()}_${good.secret}`,
      `aztp_${good.keyId}_${good.secret}x`,
      `aztp_${good.keyId}_${good.secret.slice(1)}`,
      `${good.key} `,
      "x".repeat(1000),
      5,
      null,
    ]) {
      assert.equal(parseApiKey(bad), undefined, String(bad));
    }
  });

  it("scopes: trust domain, ID prefix (normalised from aztp:// and upper case), both", () => {
    const table: Array<[Parameters<typeof normaliseCreateOptions>[0]["scope"], string, boolean]> = [
      [{}, "spiffe://a.test/x", true],
      [{ trustDomain: "A.test" }, "aztp://a.test/x", true],
      [{ trustDomain: "a.test" }, "spiffe://b.test/x", false],
      [{ idPrefix: "aztp://A.TEST/team" }, "spiffe://a.test/team/x", true],
      [{ idPrefix: "spiffe://a.test/team/" }, "spiffe://a.test/teammate", false],
      [{ idPrefix: "spiffe://a.test/team" }, "spiffe://b.test/team", false],
      [{ trustDomain: "a.test", idPrefix: "spiffe://a.test/t" }, "spiffe://a.test/t/1", true],
    ];
    for (const [scope, id, want] of table) {
      const n = normaliseCreateOptions({ scope: scope ?? {} }).scope;
      assert.equal(scopeCovers(n, id), want, `${JSON.stringify(scope)} ${id}`);
    }
    assert.throws(
      () => normaliseCreateOptions({ scope: { trustDomain: "a.test", idPrefix: "spiffe://b.test/" } }),
      /outside its trustDomain/,
    );
    assert.throws(() => normaliseCreateOptions({ scope: { idPrefix: "http://a.test/" } }), /must start with spiffe/);
    assert.throws(() => normaliseCreateOptions({ name: "a\nb" }), /control characters/);
    assert.equal(scopeCoversTrustDomain({ idPrefix: "spiffe://a.test/x" }, "a.test"), true);
    assert.equal(scopeCoversTrustDomain({ idPrefix: "spiffe://a.test/x" }, "b.test"), false);
  });

  // The trust domain is matched exactly, the path on segment boundaries; only a key made with
  // partialSegment lets its last segment match a longer one. Each refusal has a covered twin.
  const TD_LOOKALIKES = ["td.evil", "tdx", "td.", "xn--td-8ka", "t", "evil.td", "td-", "td_"];
  const scopeCases: Array<{
    scope: Parameters<typeof normaliseCreateOptions>[0]["scope"];
    covers: string[];
    refuses: string[];
  }> = [
    {
      scope: { trustDomain: "td" },
      covers: ["spiffe://td/a", "aztp://TD/a/b", "spiffe://td"],
      refuses: TD_LOOKALIKES.map((td) => `spiffe://${td}/a`),
    },
    {
      scope: { trustDomain: "TD" },
      covers: ["spiffe://td/a", "SPIFFE://Td/a"],
      refuses: TD_LOOKALIKES.map((td) => `spiffe://${td}/a`),
    },
    {
      // The scope escape of issue 17: a prefix without a path covered td.evil, tdx, td. ...
      scope: { idPrefix: "spiffe://td" },
      covers: ["spiffe://td/a", "aztp://td/workload/production/node/x", "spiffe://TD/a", "spiffe://td"],
      refuses: TD_LOOKALIKES.map((td) => `spiffe://${td}/a`).concat([
        "aztp://td.evil/workload/production/node/escaped",
      ]),
    },
    {
      scope: { idPrefix: "aztp://TD/" },
      covers: ["spiffe://td/a", "spiffe://td/a/b"],
      refuses: TD_LOOKALIKES.map((td) => `spiffe://${td}/a`).concat(["spiffe://td"]),
    },
    {
      scope: { idPrefix: "spiffe://td/team" },
      covers: ["spiffe://td/team", "spiffe://td/team/x", "aztp://TD/team/x/y"],
      refuses: [
        "spiffe://td/team-a",
        "spiffe://td/teammate",
        "spiffe://td/tea",
        "spiffe://td/Team",
        "spiffe://td",
        "spiffe://td/other/team",
        "spiffe://td.evil/team",
        "spiffe://tdx/team",
        "spiffe://td./team",
        "spiffe://xn--td-8ka/team",
      ],
    },
    {
      scope: { idPrefix: "spiffe://td/team/" },
      covers: ["spiffe://td/team/x", "spiffe://td/team/x/y"],
      refuses: ["spiffe://td/team", "spiffe://td/teammate", "spiffe://td/team-a/x", "spiffe://td.evil/team/x"],
    },
    {
      scope: { idPrefix: "spiffe://td/w/team", partialSegment: true },
      covers: ["spiffe://td/w/team", "spiffe://td/w/team-a", "spiffe://td/w/teammate", "spiffe://td/w/team/x"],
      refuses: [
        "spiffe://td/w/tea",
        "spiffe://td/w",
        "spiffe://td/wx/team",
        "spiffe://td/w/Team",
        "spiffe://td.evil/w/team",
        "spiffe://tdx/w/team-a",
        "spiffe://td./w/team",
      ],
    },
    {
      scope: { trustDomain: "td", idPrefix: "spiffe://td/w" },
      covers: ["spiffe://td/w", "spiffe://td/w/x"],
      refuses: ["spiffe://td/wx", "spiffe://td/x/w", "spiffe://td.evil/w"],
    },
  ];
  for (const { scope, covers, refuses } of scopeCases) {
    it(`scope ${JSON.stringify(scope)}: the trust domain exactly, the path on segment boundaries`, () => {
      const n = normaliseCreateOptions({ scope: scope ?? {} }).scope;
      for (const id of covers) assert.equal(scopeCovers(n, id), true, `${JSON.stringify(n)} must cover ${id}`);
      for (const id of refuses) assert.equal(scopeCovers(n, id), false, `${JSON.stringify(n)} must not cover ${id}`);
      const td = normaliseCreateOptions({ scope: scope ?? {} }).scope.trustDomain ?? "td";
      assert.equal(scopeCoversTrustDomain(n, td), true);
      for (const other of TD_LOOKALIKES) assert.equal(scopeCoversTrustDomain(n, other), false, other);
    });
  }

  it("a stored scope is read with the strict meaning: a key stored before partialSegment existed is matched on segments", () => {
    // As stored by every earlier version: normalised, no partialSegment member.
    const stored = { idPrefix: "spiffe://serve.example" };
    assert.equal(scopeCovers(stored, "aztp://serve.example/workload/production/node/ok"), true);
    assert.equal(scopeCovers(stored, "aztp://serve.example.evil/workload/production/node/escaped"), false);
    assert.equal(scopeCoversTrustDomain(stored, "serve.example.evil"), false);
    const storedPath = { idPrefix: "spiffe://serve.example/workload/production/node/team-a" };
    assert.equal(scopeCovers(storedPath, "spiffe://serve.example/workload/production/node/team-a"), true);
    assert.equal(scopeCovers(storedPath, "spiffe://serve.example/workload/production/node/team-a-bot"), false);
    // Stored scopes this version cannot read cover nothing (fail closed).
    for (const odd of [
      { idPrefix: "https://serve.example/" },
      { idPrefix: "spiffe://serve.example/x", trustDomain: "other.example" },
      { idPrefix: 5 as unknown as string },
      { trustDomain: 7 as unknown as string },
      { partialSegment: true },
    ]) {
      assert.equal(scopeCovers(odd, "spiffe://serve.example/x"), false, JSON.stringify(odd));
      assert.equal(scopeCoversTrustDomain(odd, "serve.example"), false, JSON.stringify(odd));
    }
  });

  it("creating a scope: the prefix's path must be a valid SPIFFE path (a trailing / allowed); partialSegment needs a last segment to extend", () => {
    const ok = normaliseCreateOptions({ scope: { idPrefix: "aztp://TD/w/team", partialSegment: true } }).scope;
    assert.deepEqual(ok, { idPrefix: "spiffe://td/w/team", partialSegment: true });
    assert.deepEqual(normaliseCreateOptions({ scope: { idPrefix: "spiffe://td/w", partialSegment: false } }).scope, {
      idPrefix: "spiffe://td/w",
    });
    assert.deepEqual(normaliseCreateOptions({ scope: { idPrefix: "spiffe://td/w/" } }).scope, {
      idPrefix: "spiffe://td/w/",
    });
    const refused: Array<[unknown, string]> = [
      [{ idPrefix: "spiffe://td", partialSegment: true }, "ERR_ARGUMENT_INVALID"],
      [{ idPrefix: "spiffe://td/", partialSegment: true }, "ERR_ARGUMENT_INVALID"],
      [{ idPrefix: "spiffe://td/w/", partialSegment: true }, "ERR_ARGUMENT_INVALID"],
      [{ trustDomain: "td", partialSegment: true }, "ERR_ARGUMENT_INVALID"],
      [{ idPrefix: "spiffe://td/w", partialSegment: "yes" }, "ERR_ARGUMENT_INVALID"],
      [{ idPrefix: "spiffe://td/a//b" }, "ERR_SPIFFEID_PATH_SEGMENT_EMPTY"],
      [{ idPrefix: "spiffe://td/a/../b" }, "ERR_SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED"],
      [{ idPrefix: "spiffe://td/a b" }, "ERR_SPIFFEID_PATH_CHAR_INVALID"],
      [{ idPrefix: "spiffe://td//" }, "ERR_SPIFFEID_PATH_SEGMENT_EMPTY"],
      [{ idPrefix: "spiffe://tdé/a" }, "ERR_SPIFFEID_TRUST_DOMAIN_CHAR_INVALID"],
      [{ idPrefix: "spiffe:///a" }, "ERR_SPIFFEID_TRUST_DOMAIN_MISSING"],
    ];
    for (const [scope, code] of refused) {
      assert.throws(
        () => normaliseCreateOptions({ scope: scope as ApiKeyScope }),
        (e: unknown) => (e as { code?: string }).code === code,
        `${JSON.stringify(scope)} -> ${code}`,
      );
    }
  });
});

describe("FileApiKeyStore", () => {
  it("creates, lists without hashes, authenticates, revokes; the file is 0600 and holds no secret", async (t) => {
    const home = tempDir(t, "keys");
    const store = new FileApiKeyStore(home);
    const { key, record } = await store.create({ name: "ci", scope: { trustDomain: "a.test" } });
    assert.deepEqual(Object.keys(record).sort(), ["createdAt", "keyId", "name", "scope"]);
    assert.deepEqual(await store.authenticate(key), record);
    const [listed] = await store.list();
    assert.deepEqual(listed, record);
    const file = join(home, "api-keys.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const text = readFileSync(file, "utf8");
    const secret = parseApiKey(key)?.secret as string;
    assert.ok(!text.includes(secret), "the secret is not stored");
    assert.ok(text.includes(hashApiKeySecret(secret)));
    await rejectsWithCode(
      () => store.authenticate(key.replace(/.$/, (c) => (c === "A" ? "B" : "A"))),
      "ERR_SERVE_API_KEY_INVALID",
    );
    assert.equal(await store.revoke(record.keyId), true);
    assert.equal(await store.revoke(record.keyId), false);
    assert.equal(await store.revoke("nope"), false);
    await rejectsWithCode(() => store.authenticate(key), "ERR_SERVE_API_KEY_INVALID");
    assert.ok((await store.list())[0]?.revokedAt);
    await store.close();
    await rejectsWithCode(() => store.list(), "ERR_AUTHORITY_STORE_FAILED");
  });

  it("two stores on one home creating at once lose no key, and each sees the other's revocation", async (t) => {
    const home = tempDir(t, "keys");
    const a = new FileApiKeyStore(home);
    const b = new FileApiKeyStore(home);
    const made = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).create({ name: `k${i}` })));
    assert.equal((await a.list()).length, 10);
    for (const m of made) assert.equal((await b.authenticate(m.key)).keyId, m.record.keyId);
    await a.revoke(made[0]!.record.keyId);
    await rejectsWithCode(() => b.authenticate(made[0]!.key), "ERR_SERVE_API_KEY_INVALID");
  });

  it("a corrupted file is ERR_AUTHORITY_STORE_FAILED, not a crash", async (t) => {
    const home = tempDir(t, "keys");
    writeFileSync(join(home, "api-keys.json"), "{not json");
    await rejectsWithCode(() => new FileApiKeyStore(home).list(), "ERR_AUTHORITY_STORE_FAILED");
    writeFileSync(join(home, "api-keys.json"), JSON.stringify({ version: 9, keys: [] }));
    await rejectsWithCode(
      () => new FileApiKeyStore(home).authenticate(generateApiKey().key),
      "ERR_AUTHORITY_STORE_FAILED",
    );
  });
});
