/**
 * The one validator (src/invocation/validate.ts), attacked kind by kind, go-spiffe style: one
 * table of attacks (expired, not yet valid, too long a lifetime, algorithm confusion, a forged
 * chain, the wrong signer, a revoked signer, another kind's token) run against every token
 * kind AZTP signs: invocation, receipt, delegation link, proof of possession, checkpoint. Each
 * refusal must carry the kind's code AND the validator's stable rule; each kind's honest
 * token passes, so a refusal is never an accident of a broken fixture.
 */
import assert from "node:assert/strict";
import { createHash, createHmac, X509Certificate } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import type { AgentIdentity } from "../src/client/identity.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import {
  APPROVAL_STATEMENT_KIND,
  CHECKPOINT_KIND,
  DELEGATION_KIND,
  INVOCATION_KIND,
  PROOF_KIND,
  RECEIPT_KIND,
  delegate,
  signInvocation,
  svidCheckpointVerifier,
  verifyDelegationChain,
  verifyPossessionProof,
  verifyReceipt,
  validateToken,
  type TokenKind,
} from "../src/invocation/index.js";
import { canonicalDigest, tokenHash } from "../src/invocation/canonical.js";
import { newJti } from "../src/invocation/nonce.js";
import {
  attempt,
  baseClaims,
  forge,
  newDomain,
  newWorld,
  resign,
  verifierFor,
  type Domain,
  type RawSigner,
  type World,
} from "./helpers/invocation-fixtures.js";

const TOOL = "search";
const ARGS = { q: "x" };
const RESULT = { content: [{ type: "text", text: "ok" }] };
const NONCE = "n".repeat(22);
const C = ErrorCodes;

let w: World;
let foreign: Domain;
before(async () => {
  [w, foreign] = await Promise.all([newWorld(), newDomain("intruder.test")]);
});
after(() => {
  w.close();
  foreign.client.close();
  rmSync(foreign.home, { recursive: true, force: true });
});

let impostors = 0;
const nowS = () => Math.floor(Date.now() / 1000);
const checkpointPayload = Buffer.from("checkpoint payload");

/** What a kind's test needs: the claims of an honest token by `who`, and the kind's own verifier. */
interface KindUnderTest {
  kind: TokenKind;
  claims(who: AgentIdentity): Record<string, unknown>;
  /** Verifies `token`, signed by (or claiming) `who`; throws what the kind's verifier throws. */
  verify(token: string, who: AgentIdentity): Promise<unknown> | unknown;
}

const kinds: KindUnderTest[] = [
  {
    kind: INVOCATION_KIND,
    claims: (who) => ({ ...baseClaims(who, w.serverA, TOOL, ARGS) }),
    verify: async (token) => {
      const r = await attempt(token, verifierFor(w, w.serverA, TOOL, ARGS));
      if (r.code !== "ok") throw r.error;
      assert.equal(r.ran, 1);
    },
  },
  {
    kind: RECEIPT_KIND,
    claims: (who) => ({
      iss: who.spiffeId,
      aud: w.caller.spiffeId,
      iat: nowS(),
      jti: newJti(),
      tool: TOOL,
      status: "ok",
      result_sha256: canonicalDigest(RESULT, "result"),
      ith: tokenHash("the-call"),
    }),
    verify: (token, who) =>
      verifyReceipt(token, {
        invocationToken: "the-call",
        result: RESULT,
        callee: who.spiffeId,
        caller: w.caller.spiffeId,
        trust: w.trust,
      }),
  },
  {
    kind: DELEGATION_KIND,
    claims: (who) => ({
      iss: who.spiffeId,
      sub: w.caller.spiffeId,
      iat: nowS(),
      exp: nowS() + 600,
      jti: newJti(),
      scope: { tools: ["*"], servers: ["*"], depth: 0 },
    }),
    verify: (token) =>
      verifyDelegationChain([token], {
        signer: w.caller.spiffeId,
        audience: w.serverA.spiffeId,
        tool: TOOL,
        exp: nowS() + 30,
        trust: w.trust,
        now: new Date(),
      }),
  },
  {
    kind: PROOF_KIND,
    claims: (who) => ({ iss: who.spiffeId, iat: nowS(), exp: nowS() + 60, nonce: NONCE }),
    verify: (token) => verifyPossessionProof(token, { nonce: NONCE, trust: w.trust }),
  },
  {
    kind: CHECKPOINT_KIND,
    claims: (who) => ({
      iss: who.spiffeId,
      iat: nowS(),
      cp: createHash("sha256").update(checkpointPayload).digest("base64url"),
    }),
    verify: (token) => svidCheckpointVerifier(w.trust).verify(token, checkpointPayload),
  },
  {
    // The validator's own rules, as the kind's data makes them (people/approval-statement.ts maps
    // them onto the approval check's rules; test/people-approval-statement.test.ts attacks that).
    kind: APPROVAL_STATEMENT_KIND,
    claims: (who) => ({
      iss: who.spiffeId,
      iat: nowS(),
      exp: nowS() + 60,
      jti: newJti(),
      nonce: "n".repeat(43),
      sub_id: { format: "iss_sub", iss: "https://login.example.com", sub: "alice" },
      auth_time: nowS(),
    }),
    verify: (token) => validateToken(token, APPROVAL_STATEMENT_KIND, w.trust),
  },
];

/** The outcome an attack must have on a kind: refused with the kind's code for `rule`, or accepted. */
type Expect = { rule: string } | "ok";

interface Attack {
  name: string;
  /** The token, signed as `who` (a fresh identity of the case's own, which it may revoke). */
  build(k: KindUnderTest, who: AgentIdentity): Promise<string> | string;
  expect(k: KindUnderTest): Expect | undefined;
}

const signAs = (
  who: AgentIdentity,
  k: KindUnderTest,
  change: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): string => resign(who.signer as RawSigner, { ...k.claims(who), ...change }, header, k.kind.typ);

const hs256 = (who: AgentIdentity, k: KindUnderTest): string => {
  const spki = new X509Certificate(Buffer.from(who.signer.x5c[0] ?? "", "base64")).publicKey
    .export({ format: "pem", type: "spki" })
    .toString();
  return forge({ alg: "HS256", typ: k.kind.typ, x5c: who.signer.x5c }, k.claims(who), (input) =>
    createHmac("sha256", spki).update(input).digest(),
  );
};

/** What the window of a kind says about a date attack: the rule, or ok when the kind's window does not apply. */
const windowed = (k: KindUnderTest, rule: string): Expect => (k.kind.window.dateOnly === true ? "ok" : { rule });

const attacks: Attack[] = [
  { name: "the honest token", build: (k, who) => signAs(who, k), expect: () => "ok" },
  {
    name: "expired (or, without exp, older than the maximum age)",
    build: (k, who) =>
      signAs(who, k, k.kind.window.expRequired ? { iat: nowS() - 3630, exp: nowS() - 3600 } : { iat: nowS() - 3600 }),
    // A checkpoint's clock is not checked, but its chain is, as of its iat: an hour ago, before
    // this fresh SVID was issued, so a back-dated checkpoint fails on the chain.
    expect: (k) =>
      k.kind.chainAt === "iat" ? { rule: "chain" } : windowed(k, k.kind.window.expRequired ? "expired" : "too_old"),
  },
  {
    name: "not yet valid: issued 10 minutes in the future",
    build: (k, who) =>
      signAs(who, k, k.kind.window.expRequired ? { iat: nowS() + 600, exp: nowS() + 630 } : { iat: nowS() + 600 }),
    expect: (k) => windowed(k, "not_yet_valid"),
  },
  {
    // An AZTP token need not carry nbf, but one that does is honoured (jose's rule), with the
    // kind's leeway: ignoring it would let a token signed for later be spent now.
    name: "nbf 10 minutes in the future",
    build: (k, who) => signAs(who, k, { nbf: nowS() + 600 }),
    expect: (k) => windowed(k, "not_yet_valid"),
  },
  {
    name: "nbf a few seconds ahead, within the leeway",
    build: (k, who) => signAs(who, k, { nbf: nowS() + Math.min(5, k.kind.window.leewaySeconds) }),
    expect: () => "ok",
  },
  {
    name: "nbf not a whole number of seconds",
    build: (k, who) => signAs(who, k, { nbf: nowS() - 0.5 }),
    expect: () => ({ rule: "claim_invalid" }),
  },
  {
    name: "a lifetime over the kind's maximum",
    build: (k, who) => signAs(who, k, { iat: nowS(), exp: nowS() + (k.kind.window.maxLifetimeSeconds ?? 0) + 1 }),
    expect: (k) => (k.kind.window.maxLifetimeSeconds === undefined ? undefined : { rule: "lifetime" }),
  },
  {
    name: "exp before iat",
    build: (k, who) => signAs(who, k, { iat: nowS(), exp: nowS() - 1 }),
    expect: (k) => (k.kind.window.maxLifetimeSeconds === undefined ? undefined : { rule: "lifetime" }),
  },
  {
    name: "iat not a whole number of seconds",
    build: (k, who) => signAs(who, k, { iat: nowS() + 0.5 }),
    expect: () => ({ rule: "claim_invalid" }),
  },
  { name: "no iat", build: (k, who) => signAs(who, k, { iat: undefined }), expect: () => ({ rule: "claim_missing" }) },
  {
    name: "alg confusion: HS256 keyed with the leaf's public key",
    build: (k, who) => hs256(who, k),
    expect: () => ({ rule: "alg" }),
  },
  {
    name: "alg: none, empty signature",
    build: (k, who) => forge({ alg: "none", typ: k.kind.typ, x5c: who.signer.x5c }, k.claims(who), () => ""),
    expect: () => ({ rule: "alg" }),
  },
  {
    name: "a forged chain: a look-alike authority's SVID for the same ID",
    build: async (k, who) => {
      const impostor = await foreign.identity(`impostor-${impostors++}`);
      return resign(impostor.signer as RawSigner, { ...k.claims(who) }, {}, k.kind.typ);
    },
    expect: () => ({ rule: "chain" }),
  },
  {
    name: "the wrong signer: another trusted identity's key under this x5c",
    build: (k, who) =>
      forge({ alg: "ES256", typ: k.kind.typ, x5c: who.signer.x5c }, k.claims(who), (input) =>
        w.third.signer.sign(input),
      ),
    expect: () => ({ rule: "signature" }),
  },
  {
    name: "iss is another identity",
    build: (k, who) => signAs(who, k, { iss: w.third.spiffeId }),
    expect: () => ({ rule: "issuer" }),
  },
  {
    name: "another kind's token (typ)",
    build: (k, who) =>
      signAs(who, k, {}, { typ: k.kind.typ === INVOCATION_KIND.typ ? RECEIPT_KIND.typ : INVOCATION_KIND.typ }),
    expect: () => ({ rule: "typ" }),
  },
  {
    name: "a revoked signer",
    build: async (k, who) => {
      const token = signAs(who, k);
      await k.verify(signAs(who, k), who); // the control: good before the revocation
      await w.authority.revoke(who.spiffeId, "compromised");
      return token;
    },
    // Checkpoints: revoking a writer must not make the logs it wrote corrupt (token-kinds.ts).
    expect: (k) => (k.kind.revocation ? { rule: "revoked" } : "ok"),
  },
];

describe("one validator, every token kind, every attack", () => {
  let n = 0;
  for (const k of kinds) {
    describe(k.kind.what, () => {
      for (const a of attacks) {
        const expect = a.expect(k);
        if (expect === undefined) continue;
        const label =
          expect === "ok" ? "accepted" : `${k.kind.codes[expect.rule as keyof TokenKind["codes"]]} / ${expect.rule}`;
        it(`${a.name}: ${label}`, async () => {
          const who = await w.identity(`v-${k.kind.typ.split("+")[0]}-${n++}`);
          const token = await a.build(k, who);
          let thrown: unknown;
          try {
            await k.verify(token, who);
          } catch (e) {
            thrown = e;
          }
          if (expect === "ok") {
            assert.equal(thrown, undefined, `accepted: ${String(thrown)}`);
            return;
          }
          assert.ok(thrown instanceof AztpError, `an AztpError: ${String(thrown)}`);
          const code: ErrorCode = k.kind.codes[expect.rule as keyof TokenKind["codes"]];
          assert.deepEqual([thrown.code, thrown.rule], [code, expect.rule], thrown.message);
        });
      }
    });
  }
});

describe("each kind keeps its codes", () => {
  it("invocations keep one code per rule; receipts' revoked is ERR_CALLEE_REVOKED; the rest one code each", () => {
    assert.equal(INVOCATION_KIND.codes.expired, C.INVOCATION_EXPIRED);
    assert.equal(INVOCATION_KIND.codes.not_yet_valid, C.INVOCATION_NOT_YET_VALID);
    assert.equal(INVOCATION_KIND.codes.lifetime, C.INVOCATION_LIFETIME_TOO_LONG);
    assert.equal(INVOCATION_KIND.codes.alg, C.INVOCATION_ALG_NOT_ALLOWED);
    assert.equal(INVOCATION_KIND.codes.chain, C.INVOCATION_UNTRUSTED);
    assert.equal(INVOCATION_KIND.codes.revoked, C.INVOCATION_REVOKED);
    assert.equal(RECEIPT_KIND.codes.revoked, C.CALLEE_REVOKED);
    for (const [kind, code] of [
      [DELEGATION_KIND, C.DELEGATION_INVALID],
      [PROOF_KIND, C.PROOF_INVALID],
      [CHECKPOINT_KIND, C.AUDIT_CORRUPT],
      [APPROVAL_STATEMENT_KIND, C.APPROVAL_INVALID],
    ] as const) {
      assert.deepEqual(new Set(Object.values(kind.codes)), new Set([code]), kind.what);
    }
  });
});

describe("docs/protocol.md has every kind's time rules, as the code has them", () => {
  it("one table row per kind, with the kind's numbers", () => {
    const all = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8");
    const doc = all.slice(all.indexOf("## Time rules"));
    assert.ok(all.includes("## Time rules"), "the section exists");
    for (const k of kinds) {
      const row = doc.split("\n").find((line) => line.startsWith("| ") && line.includes(`\`${k.kind.typ}\``));
      assert.ok(row, `a row for ${k.kind.typ}`);
      const cells = row.split("|").map((c) => c.trim());
      const wnd = k.kind.window;
      assert.equal(
        cells[3],
        wnd.dateOnly === true ? "none (not checked)" : `${wnd.leewaySeconds} s`,
        `${k.kind.what}: leeway`,
      );
      assert.equal(
        cells[4],
        wnd.maxLifetimeSeconds === undefined ? "none" : `${wnd.maxLifetimeSeconds} s`,
        `${k.kind.what}: max lifetime`,
      );
      assert.equal(cells[5], wnd.expRequired ? "yes" : "no", `${k.kind.what}: exp required`);
      assert.equal(
        cells[6],
        wnd.maxAgeSeconds === undefined ? "none" : `${wnd.maxAgeSeconds} s`,
        `${k.kind.what}: max age`,
      );
      assert.equal(cells[7], k.kind.chainAt === "iat" ? "its `iat`" : "now", `${k.kind.what}: chain checked at`);
      assert.equal(cells[8], k.kind.revocation ? "yes" : "no", `${k.kind.what}: revocation`);
    }
  });
});

describe("delegation scopes compare IDs as policy does (one normaliser)", () => {
  it("a scope naming aztp://AZTP.Local/... (trust domain in another case) covers a call to spiffe://aztp.local/...", async () => {
    const root = await w.identity("norm-root");
    const mixedCase = w.serverA.aztpId.replace("aztp://aztp.local/", "aztp://AZTP.Local/");
    assert.notEqual(mixedCase, w.serverA.aztpId);
    // Signed by delegate() ...
    const links = delegate(root, w.caller.spiffeId, { servers: [mixedCase] });
    const token = signInvocation(w.caller, { audience: w.serverA.spiffeId, tool: TOOL, args: ARGS, delegation: links });
    const r = await attempt(token, verifierFor(w, w.serverA, TOOL, ARGS));
    assert.equal(r.code, "ok", String(r.error));
    // ... and hand-signed, the pattern kept as written: the verifier folds it too.
    const claims = {
      iss: root.spiffeId,
      sub: w.caller.spiffeId,
      iat: nowS(),
      exp: nowS() + 600,
      jti: newJti(),
      scope: { tools: ["*"], servers: [mixedCase], depth: 0 },
    };
    const link = resign(root.signer as RawSigner, claims, {}, DELEGATION_KIND.typ);
    verifyDelegationChain([link], {
      signer: w.caller.spiffeId,
      audience: w.serverA.spiffeId,
      tool: TOOL,
      exp: nowS() + 30,
      trust: w.trust,
      now: new Date(),
    });
    // The control: another server is still outside the scope.
    assert.throws(
      () =>
        verifyDelegationChain([link], {
          signer: w.caller.spiffeId,
          audience: w.serverB.spiffeId,
          tool: TOOL,
          exp: nowS() + 30,
          trust: w.trust,
          now: new Date(),
        }),
      { code: C.DELEGATION_INVALID, rule: "server" },
    );
  });
});

describe("each kind's own rules name what failed (code and rule)", () => {
  const inv = (exp = nowS() + 30) => ({
    signer: w.caller.spiffeId,
    audience: w.serverA.spiffeId,
    tool: TOOL,
    exp,
    trust: w.trust,
    now: new Date(),
  });
  /** A hand-signed link by `by` to `to`, with `change` applied to its claims. */
  const link = (by: AgentIdentity, to: AgentIdentity, change: Record<string, unknown> = {}): string =>
    resign(
      by.signer as RawSigner,
      {
        iss: by.spiffeId,
        sub: to.spiffeId,
        iat: nowS(),
        exp: nowS() + 600,
        jti: newJti(),
        scope: { tools: ["*"], servers: ["*"], depth: 0 },
        ...change,
      },
      {},
      DELEGATION_KIND.typ,
    );
  const cases: Array<[string, string, () => unknown]> = [
    ["delegation: not a list", "links", () => verifyDelegationChain("x.y.z", inv())],
    [
      "delegation: a link's scope malformed",
      "claims",
      () => verifyDelegationChain([link(w.third, w.caller, { scope: { tools: "*" } })], inv()),
    ],
    [
      "delegation: the first link names a previous one",
      "binding",
      () => verifyDelegationChain([link(w.third, w.caller, { prev: "x" })], inv()),
    ],
    [
      "delegation: link 1 not signed by link 0's delegate",
      "delegator",
      () =>
        verifyDelegationChain(
          delegate(w.serverB, w.caller.spiffeId, {}, delegate(w.third, w.serverA.spiffeId, { depth: 1 })),
          inv(),
        ),
    ],
    [
      "delegation: link 1 not bound to link 0",
      "binding",
      () =>
        verifyDelegationChain(
          [
            delegate(w.third, w.serverA.spiffeId, { depth: 1 })[0] as string,
            link(w.serverA, w.caller, { prev: "not-the-hash" }),
          ],
          inv(),
        ),
    ],
    [
      "delegation: depth 0 delegated further",
      "depth",
      () =>
        verifyDelegationChain(
          delegate(w.serverA, w.caller.spiffeId, {}, delegate(w.third, w.serverA.spiffeId, { depth: 0 })),
          inv(),
        ),
    ],
    [
      "delegation: tools widened",
      "scope.tools",
      () =>
        verifyDelegationChain(
          delegate(
            w.serverA,
            w.caller.spiffeId,
            { tools: ["*"] },
            delegate(w.third, w.serverA.spiffeId, { depth: 1, tools: ["search"] }),
          ),
          inv(),
        ),
    ],
    [
      "delegation: servers widened",
      "scope.servers",
      () =>
        verifyDelegationChain(
          delegate(
            w.serverA,
            w.caller.spiffeId,
            { servers: ["*"] },
            delegate(w.third, w.serverA.spiffeId, { depth: 1, servers: [w.serverA.spiffeId] }),
          ),
          inv(),
        ),
    ],
    [
      "delegation: a link outlives its parent",
      "outlives",
      () =>
        verifyDelegationChain(
          delegate(
            w.serverA,
            w.caller.spiffeId,
            { ttlSeconds: 3600 },
            delegate(w.third, w.serverA.spiffeId, { depth: 1, ttlSeconds: 60 }),
          ),
          inv(),
        ),
    ],
    [
      "delegation: the last delegate is not the signer",
      "delegate",
      () => verifyDelegationChain(delegate(w.third, w.serverB.spiffeId), inv()),
    ],
    [
      "delegation: the tool is outside the scope",
      "tool",
      () => verifyDelegationChain(delegate(w.third, w.caller.spiffeId, { tools: ["other"] }), inv()),
    ],
    [
      "delegation: the server is outside the scope",
      "server",
      () => verifyDelegationChain(delegate(w.third, w.caller.spiffeId, { servers: [w.serverB.spiffeId] }), inv()),
    ],
    [
      "delegation: the invocation outlives it",
      "invocation_outlives",
      () => verifyDelegationChain(delegate(w.third, w.caller.spiffeId, { ttlSeconds: 10 }), inv(nowS() + 30)),
    ],
    [
      "proof: another nonce",
      "nonce",
      () =>
        verifyPossessionProof(
          resign(
            w.serverA.signer as RawSigner,
            { iss: w.serverA.spiffeId, iat: nowS(), exp: nowS() + 60, nonce: NONCE },
            {},
            PROOF_KIND.typ,
          ),
          { nonce: "m".repeat(22), trust: w.trust },
        ),
    ],
    [
      "proof: made for another peer",
      "audience",
      () =>
        verifyPossessionProof(
          resign(
            w.serverA.signer as RawSigner,
            { iss: w.serverA.spiffeId, iat: nowS(), exp: nowS() + 60, nonce: NONCE, aud: w.serverB.spiffeId },
            {},
            PROOF_KIND.typ,
          ),
          { nonce: NONCE, trust: w.trust, audience: w.caller.spiffeId },
        ),
    ],
    [
      "checkpoint: other contents",
      "digest",
      () => svidCheckpointVerifier(w.trust).verify(signAs(w.third, kinds[4] as KindUnderTest), Buffer.from("other")),
    ],
    [
      "checkpoint: not an accepted signer",
      "signer",
      () =>
        svidCheckpointVerifier(w.trust, { signers: [w.serverA.spiffeId] }).verify(
          signAs(w.third, kinds[4] as KindUnderTest),
          checkpointPayload,
        ),
    ],
  ];
  for (const [name, rule, run] of cases) {
    it(`${name}: rule ${rule}`, () => {
      const code = name.startsWith("delegation")
        ? C.DELEGATION_INVALID
        : name.startsWith("proof")
          ? C.PROOF_INVALID
          : C.AUDIT_CORRUPT;
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof AztpError, String(e));
        assert.deepEqual([e.code, e.rule], [code, rule], e.message);
        return true;
      });
    });
  }
});
