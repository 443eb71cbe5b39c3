/**
 * A signed tool call verified on a RemoteAuthority's held state: the verifier's Trust is the
 * remote authority itself (bundles and revocations from the feeds), so a call is verified with
 * no request to the service (it goes on with the service stopped), and a revocation made
 * through another client refuses the caller's next call within the refresh hint.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { RemoteAuthority } from "../src/client/remote-authority.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { signInvocation, verifyInvocation } from "../src/invocation/invocation.js";
import { MemoryReplayCache } from "../src/invocation/replay.js";
import { Trust } from "../src/invocation/trust.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { algorithmForKey, signRaw } from "../src/spiffe/keys.js";
import type { SvidSigner } from "../src/spiffe/signer.js";
import { SpiffeId } from "../src/spiffe/spiffeid.js";
import { tempDir } from "./helpers/authority-util.js";
import { startServe } from "./helpers/serve-util.js";

const TD = "invoke.test";

async function identity(r: RemoteAuthority, name: string): Promise<{ spiffeId: string; signer: SvidSigner }> {
  const key = await generateWorkloadKey();
  const { record, svid } = await r.issueIdentity({ name }, key.csr, { ttlSeconds: 600 });
  const alg = algorithmForKey(key.privateKey);
  const x5c = Certificate.parsePem(svid.chainPem).map((c) => c.der.toString("base64"));
  return {
    spiffeId: record.spiffeId,
    signer: {
      id: SpiffeId.parse(record.spiffeId),
      alg,
      x5c,
      sign: (data: Uint8Array) => signRaw(alg, key.privateKey, data),
    },
  };
}

async function connect(
  t: TestContext,
  s: { url: string; apiKey: string; bundlePem: string },
): Promise<RemoteAuthority> {
  const r = await RemoteAuthority.connect({
    baseUrl: s.url,
    apiKey: s.apiKey,
    trustBundle: s.bundlePem,
    home: tempDir(t, "c"),
    refreshHintSeconds: 1,
    maxStalenessSeconds: 30,
    onWarning: () => undefined,
  });
  t.after(() => r.close());
  return r;
}

describe("a tool call verified on a remote authority's feeds", () => {
  it("verifies locally (also with the service stopped), and a caller revoked elsewhere is refused within the hint", async (t) => {
    const s = await startServe(t, { trustDomain: TD, refreshHintSeconds: 1, logLevel: "error" });
    const admin = await connect(t, s);
    const verifier = await connect(t, s);
    const caller = await identity(admin, "caller");
    const other = await identity(admin, "other");
    const callee = await identity(admin, "callee");
    const trust = new Trust(verifier, { revocation: verifier });
    const replay = new MemoryReplayCache();
    const call = (who: { signer: SvidSigner }) =>
      verifyInvocation(signInvocation(who.signer, { audience: callee.spiffeId, tool: "search", args: { q: "x" } }), {
        audience: callee.spiffeId,
        tool: "search",
        args: { q: "x" },
        trust,
        replay,
      });

    const ok = await call(caller);
    assert.equal(ok.caller.toString(), caller.spiffeId);

    await admin.revoke(caller.spiffeId, "compromised");
    const revokedAt = Date.now();
    for (;;) {
      try {
        await call(caller);
      } catch (e) {
        assert.ok(e instanceof AztpError, String(e));
        assert.equal(e.code, ErrorCodes.INVOCATION_REVOKED);
        break;
      }
      assert.ok(Date.now() - revokedAt < 3_000, "the revoked caller was still admitted after the hint plus slack");
      await new Promise((r) => setTimeout(r, 50));
    }

    // No request on a call's path: with the service gone, calls are still verified.
    await s.stop();
    assert.equal((await call(other)).caller.toString(), other.spiffeId);
    await assert.rejects(
      call(caller),
      (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.INVOCATION_REVOKED,
    );
  });
});
