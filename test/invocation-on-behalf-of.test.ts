/**
 * A person's delegation riding in a signed call (invocation/on-behalf-of.ts, DESIGN §13): the
 * callee checks it offline against the bundle, bound to the signer's key, its act chain the
 * exact path of agents the call came through. Every attack is refused with its rule, and each
 * has a passing twin; the exchange that extends a delegation to a sub-agent only narrows.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync, X509Certificate } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import type { AgentIdentity } from "../src/client/identity.js";
import {
  decideInvocation,
  delegate,
  MemoryReplayCache,
  mintOnBehalfOf,
  signInvocation,
  verifyInvocation,
  type VerifiedInvocation,
} from "../src/invocation/index.js";
import { parsePolicy } from "../src/policy/index.js";
import { signCompact } from "../src/spiffe/jws.js";
import { TOKEN_TYPE } from "../src/people/token-exchange.js";
import { newDomain, newWorld, type Domain, type World } from "./helpers/invocation-fixtures.js";

const OP = "https://login.example.com";
const ALICE = { issuer: OP, subject: "alice-1234", claims: { groups: ["finance"], amr: ["pwd", "mfa"] } };
const ARGS = { amount: 10 };

let w: World;
let lookalike: Domain;
let orchestrator: AgentIdentity;
let researcher: AgentIdentity;

before(async () => {
  [w, lookalike] = await Promise.all([newWorld(), newDomain()]);
  orchestrator = await w.identity("orchestrator");
  researcher = await w.identity("researcher", { parentIdentity: orchestrator.aztpId });
});
after(() => {
  w.close();
  lookalike.client.close();
});

/** The public key of an identity's current SVID, as a callee sees it in the x5c. */
function keyOf(identity: AgentIdentity) {
  return new X509Certificate(Buffer.from(identity.signer.x5c[0] as string, "base64")).publicKey;
}

/** An on-behalf-of token as the authority's exchange makes it, with `over` changed. */
function obo(
  actors: AgentIdentity[],
  over: { bound?: AgentIdentity; audience?: string[]; notAfter?: Date; now?: Date; domain?: Domain } = {},
): string {
  const authority = (over.domain ?? w).authority;
  const { key, kid } = authority.exchangeDeps().signingKey(authority.defaultTrustDomain);
  return mintOnBehalfOf({
    trustDomain: authority.defaultTrustDomain,
    key,
    kid,
    person: ALICE,
    actors: actors.map((a) => a.spiffeId),
    actorKey: keyOf(over.bound ?? (actors[actors.length - 1] as AgentIdentity)),
    ...(over.audience !== undefined ? { audience: over.audience } : {}),
    notAfter: over.notAfter ?? new Date(Date.now() + 600_000),
    ...(over.now !== undefined ? { now: over.now } : {}),
  });
}

function call(signer: AgentIdentity, onBehalfOf: string, delegation?: readonly string[]): Promise<VerifiedInvocation> {
  const token = signInvocation(signer, {
    audience: w.serverA.spiffeId,
    tool: "transfer",
    args: ARGS,
    onBehalfOf,
    ...(delegation !== undefined ? { delegation } : {}),
  });
  return verifyInvocation(token, {
    audience: w.serverA.spiffeId,
    tool: "transfer",
    args: ARGS,
    trust: w.trust,
    replay: new MemoryReplayCache(),
  });
}

async function refused(p: Promise<unknown>, rule: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    const err = e as { code?: string; rule?: string; message?: string };
    assert.equal(err.code, ErrorCodes.ON_BEHALF_OF_INVALID, err.message);
    assert.equal(err.rule, rule, err.message);
    return true;
  });
}

describe("a call made for a person", () => {
  it("carries the person and the act chain to the callee, and into its policy", async () => {
    const v = await call(orchestrator, obo([orchestrator]));
    assert.equal(v.onBehalfOf?.person.id, `${OP}#alice-1234`);
    assert.deepEqual(v.onBehalfOf?.actors, [orchestrator.spiffeId]);
    assert.deepEqual(v.onBehalfOf?.person.claims.groups, ["finance"]);
    const financeOnly = parsePolicy({
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Action: "tool:call",
          Resource: "transfer",
          Condition: { "ForAnyValue:StringEquals": { "aztp:person.groups": "finance" } },
        },
      ],
    });
    assert.equal(decideInvocation(v, { policy: [financeOnly], args: ARGS }).decision, "allow");
    const plain = await verifyInvocation(
      signInvocation(orchestrator, { audience: w.serverA.spiffeId, tool: "transfer", args: ARGS }),
      { audience: w.serverA.spiffeId, tool: "transfer", args: ARGS, trust: w.trust, replay: new MemoryReplayCache() },
    );
    assert.equal(plain.onBehalfOf, undefined);
    assert.throws(() => decideInvocation(plain, { policy: [financeOnly], args: ARGS }), {
      code: ErrorCodes.POLICY_DENIED,
    });
  });

  it("refuses a delegation lifted by another agent (bound to the key that signs)", async () => {
    await refused(call(w.third, obo([orchestrator])), "binding");
    // Naming the thief in act does not help: the key is still the orchestrator's.
    await refused(call(w.third, obo([w.third], { bound: orchestrator })), "binding");
  });

  it("checks the act chain against the delegation links: no hop skipped, added or reordered", async () => {
    const link = delegate(orchestrator, researcher.spiffeId, { tools: ["transfer"], servers: ["*"] });
    // The honest twin: person → orchestrator → researcher, the call signed by the researcher.
    const v = await call(researcher, obo([orchestrator, researcher]), link);
    assert.deepEqual(v.onBehalfOf?.actors, [orchestrator.spiffeId, researcher.spiffeId]);
    await refused(call(researcher, obo([researcher]), link), "act"); // skips the orchestrator
    await refused(call(researcher, obo([orchestrator, researcher])), "act"); // a hop no link shows
    await refused(call(researcher, obo([w.third, researcher]), link), "act"); // another first hop
    await refused(call(researcher, obo([researcher, orchestrator], { bound: researcher }), link), "act");
  });

  it("refuses an expired delegation, one for other callees, and one from another CA", async () => {
    const now = Date.now();
    await refused(
      call(orchestrator, obo([orchestrator], { now: new Date(now - 600_000), notAfter: new Date(now - 120_000) })),
      "expired",
    );
    await refused(call(orchestrator, obo([orchestrator], { audience: [w.serverB.spiffeId] })), "audience");
    const ok = await call(orchestrator, obo([orchestrator], { audience: [w.serverA.spiffeId] }));
    assert.ok(ok.onBehalfOf);
    // Same trust domain name, another authority's key: its kid is not in our bundle.
    await refused(call(orchestrator, obo([orchestrator], { domain: lookalike })), "kid");
  });

  it("refuses forgeries: tampered claims, HMAC with the public key, no algorithm, another kind", async () => {
    const good = obo([orchestrator]);
    const [h, p, s] = good.split(".");
    const claims = JSON.parse(Buffer.from(p as string, "base64url").toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: "mallory" })).toString("base64url")}.${s}`;
    await refused(call(orchestrator, tampered), "signature");
    const header = JSON.parse(Buffer.from(h as string, "base64url").toString());
    const none = `${Buffer.from(JSON.stringify({ ...header, alg: "none" })).toString("base64url")}.${p}.`;
    await refused(call(orchestrator, none), "alg");
    const hs = `${Buffer.from(JSON.stringify({ ...header, alg: "HS256" })).toString("base64url")}.${p}.${s}`;
    await refused(call(orchestrator, hs), "alg");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const otherKind = signCompact({ typ: "at+jwt", kid: header.kid }, claims, privateKey);
    await refused(call(orchestrator, otherKind), "typ");
  });

  it("checks a token's signature once per key, and every other rule on every call: a checked token stays good for its own binding and path only, and a copy with another signature is checked afresh", async () => {
    const good = obo([orchestrator]);
    for (let i = 0; i < 3; i++) assert.ok((await call(orchestrator, good)).onBehalfOf);
    // The same token, its signature known good: still bound to the orchestrator's key, still its path.
    await refused(call(w.third, good), "binding");
    const link = delegate(orchestrator, researcher.spiffeId, { tools: ["transfer"], servers: ["*"] });
    await refused(call(researcher, good, link), "binding");
    const researchers = obo([researcher]);
    assert.ok((await call(researcher, researchers)).onBehalfOf, "good for a direct call by the researcher");
    await refused(call(researcher, researchers, link), "act"); // not the path of a call under the link
    // The same header and claims under another signature are not the checked token.
    const [h, p, s] = good.split(".");
    const flipped = `${(s as string)[0] === "A" ? "B" : "A"}${(s as string).slice(1)}`;
    await refused(call(orchestrator, `${h}.${p}.${flipped}`), "signature");
  });
});

describe("extending a delegation to a sub-agent (RFC 8693 with an on-behalf-of subject token)", () => {
  it("extends to a child of the holder only, and never widens", async () => {
    const first = obo([orchestrator], { audience: [w.serverA.spiffeId] });
    const extended = await researcher.actFor(first);
    assert.deepEqual(extended.actors, [orchestrator.spiffeId, researcher.spiffeId]);
    assert.equal(extended.person.id, `${OP}#alice-1234`);
    assert.deepEqual(extended.audience, [w.serverA.spiffeId]);
    const link = delegate(orchestrator, researcher.spiffeId, { tools: ["transfer"], servers: ["*"] });
    const v = await call(researcher, extended.token, link);
    assert.deepEqual(v.onBehalfOf?.actors, [orchestrator.spiffeId, researcher.spiffeId]);

    await assert.rejects(w.third.actFor(first), { code: ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED });
    await assert.rejects(researcher.actFor(first, { resources: [w.serverB.spiffeId] }), {
      code: ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
    });
    // A subject token the authority did not sign and no trusted provider issued.
    await assert.rejects(researcher.actFor(obo([orchestrator], { domain: lookalike })), {
      code: ErrorCodes.ON_BEHALF_OF_INVALID,
    });
    await assert.rejects(
      w.authority.exchangeToken(
        researcher.spiffeId,
        { subjectToken: first, subjectTokenType: TOKEN_TYPE.jwt },
        { key: keyOf(w.third) },
      ),
      { code: ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED },
    );
  });
});
