/**
 * API keys: the format (aztp_<keyId>_<secret>), the stored hash (sha256 of the secret, never
 * the secret), scope checks, and the home-folder store under concurrent writers.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { scopeCovers, scopeCoversTrustDomain } from "../src/store/api-key-scope.js";
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
      [{ trustDomain: "a.test", idPrefix: "spiffe://a.test/t" }, "spiffe://a.test/t1", true],
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
