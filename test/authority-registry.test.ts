/**
 * The registry's record and lifetime rules as pure data, without a CA: creating and updating a
 * record, a revoked record refused, a child's credentials capped by its ancestors' SVIDs, and
 * the JWT-SVID lifetime bounds.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as registry from "../src/authority/registry.js";
import { ErrorCodes } from "../src/errors.js";

const NOW = new Date("2030-01-01T00:00:00Z");

function withFamily(): {
  state: registry.RegistryState;
  parent: registry.IdentityRecord;
  child: registry.IdentityRecord;
} {
  const state = registry.emptyRegistry();
  const parent = registry.register(
    state,
    registry.workloadSpiffeId("example.org", "production", "node", "parent"),
    "example.org",
    { name: "parent" },
    NOW,
  );
  const child = registry.register(
    state,
    registry.workloadSpiffeId("example.org", "production", "node", "child"),
    "example.org",
    { name: "child", parentIdentity: parent.aztpId, metadata: { a: 1 } },
    NOW,
  );
  return { state, parent, child };
}

describe("registry rules (no CA)", () => {
  it("creates a record once and merges updates into it, keeping its workload ID", () => {
    const { state, child } = withFamily();
    assert.equal(child.status, "active");
    assert.equal(child.parentIdentity, "aztp://example.org/workload/production/node/parent");
    const again = registry.register(
      state,
      registry.workloadSpiffeId("example.org", "production", "node", "child"),
      "example.org",
      { name: "child", metadata: { b: 2 } },
      NOW,
    );
    assert.equal(again, child);
    assert.deepEqual(again.metadata, { a: 1, b: 2 });
    assert.equal(Object.keys(state.identities).length, 2);
  });

  it("refuses to update a revoked record, and caps a child by its ancestor's SVID", () => {
    const { state, parent, child } = withFamily();
    assert.throws(
      () => registry.lifetimeCap(state, child),
      { code: ErrorCodes.PARENT_INVALID },
      "an ancestor without an SVID",
    );
    registry.recordSvid(parent, { serial: "10aa", notAfter: new Date(NOW.getTime() + 600_000) }, NOW);
    assert.deepEqual(registry.lifetimeCap(state, child), new Date(NOW.getTime() + 600_000));
    assert.equal(registry.lifetimeCap(state, parent), undefined);
    assert.equal(registry.jwtSvidTtl(state, child, 3600, NOW), 600, "a child's JWT-SVID ends with its parent's SVID");
    assert.equal(registry.jwtSvidTtl(state, parent, undefined, NOW), 300);
    assert.throws(() => registry.jwtSvidTtl(state, parent, registry.MAX_JWT_SVID_TTL_SECONDS + 1, NOW), {
      code: ErrorCodes.ARGUMENT_INVALID,
    });
    assert.throws(() => registry.jwtSvidTtl(state, child, 60, new Date(NOW.getTime() + 600_000)), {
      code: ErrorCodes.PARENT_INVALID,
    });
    registry.revoke(state, parent.spiffeId, "test", NOW);
    assert.throws(() => registry.lifetimeCap(state, child), { code: ErrorCodes.IDENTITY_REVOKED });
    assert.throws(
      () =>
        registry.register(
          state,
          registry.workloadSpiffeId("example.org", "production", "node", "child"),
          "example.org",
          { name: "child" },
          NOW,
        ),
      {
        code: ErrorCodes.IDENTITY_REVOKED,
      },
    );
  });
});

describe("the keys of an identity's SVIDs", () => {
  const jwk = (n: number): Record<string, unknown> => ({ kty: "EC", crv: "P-256", x: `x${n}`, y: `y${n}` });
  const at = (s: number): Date => new Date(NOW.getTime() + s * 1000);

  it("keeps the key of every unexpired SVID, newest first, and forgets the expired", () => {
    const { parent } = withFamily();
    registry.recordSvid(parent, { serial: "01", notAfter: at(3600), publicKeyJwk: jwk(1) }, NOW);
    registry.recordSvid(parent, { serial: "02", notAfter: at(5400), publicKeyJwk: jwk(2) }, at(1800));
    assert.deepEqual(
      parent.svidKeys?.map((k) => [k.serial, k.jwk]),
      [
        ["02", jwk(2)],
        ["01", jwk(1)],
      ],
      "a rotation at half-life keeps the previous key while its SVID lives",
    );
    registry.recordSvid(parent, { serial: "03", notAfter: at(7200), publicKeyJwk: jwk(3) }, at(3601));
    assert.deepEqual(
      parent.svidKeys?.map((k) => k.serial),
      ["03", "02"],
      "the first SVID has expired: its key is gone",
    );
    assert.equal(parent.svidKeys?.[0]?.notAfter, at(7200).toISOString());
  });

  it("keeps at most MAX_SVID_KEYS, and records none for an SVID given without its key", () => {
    const { parent, child } = withFamily();
    for (let i = 0; i < registry.MAX_SVID_KEYS + 3; i++)
      registry.recordSvid(parent, { serial: `s${i}`, notAfter: at(3600), publicKeyJwk: jwk(i) }, NOW);
    assert.equal(parent.svidKeys?.length, registry.MAX_SVID_KEYS);
    assert.equal(parent.svidKeys?.[0]?.serial, `s${registry.MAX_SVID_KEYS + 2}`);
    registry.recordSvid(child, { serial: "10", notAfter: at(3600) }, NOW);
    assert.equal(child.svidKeys, undefined);
  });
});

describe("registry snapshot", () => {
  it("is frozen, and indexes revoked identities with their descendants and serials", async () => {
    const { RegistrySnapshot } = await import("../src/authority/snapshot.js");
    const { state, parent, child } = withFamily();
    registry.recordSvid(child, { serial: "10bb", notAfter: new Date(NOW.getTime() + 600_000) }, NOW);
    const before = new RegistrySnapshot(structuredClone(state), "v1");
    assert.equal(before.isRevoked(child.spiffeId, "10bb"), false);
    registry.revoke(state, parent.aztpId, "test", NOW);
    const after = new RegistrySnapshot(state, "v2");
    assert.ok(Object.isFrozen(after) && Object.isFrozen(after.state.identities[child.spiffeId]));
    assert.throws(() => {
      (after.state.revocations as { sequence: number }).sequence = 0;
    }, TypeError);
    assert.equal(after.isRevoked(child.spiffeId), true, "a descendant of a revoked identity");
    assert.equal(after.isRevoked(child.aztpId), true, "by its AZTP ID too");
    assert.equal(after.isRevoked("spiffe://example.org/other", "10bb"), true, "a revoked serial");
    assert.equal(after.isRevoked("not an id"), true);
    assert.equal(after.isRevoked("spiffe://example.org/other"), false);
    assert.equal(before.isRevoked(child.spiffeId), false, "an older snapshot keeps its version's answer");
  });
});
