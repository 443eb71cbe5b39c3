/**
 * Approvals bound to the exact call (people/approval.ts), checked by the callee's guard after
 * the policy step, with a REAL OpenID Provider (examples/local-openid-provider.ts): the approver
 * signs in with the nonce of the approval request, and the call is signed again carrying it.
 * Every attack is refused with ERR_APPROVAL_INVALID and its rule, and has a passing twin: where
 * the approval itself is sound, the very approval that was refused for the wrong call then
 * admits the call it was made for (a refused approval burns nothing).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AgentIdentity } from "../src/client/identity.js";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { CalleeGuard, type Admission } from "../src/guard/callee.js";
import {
  decideInvocation,
  MemoryReplayCache,
  signInvocation,
  verifyInvocation,
  canonicalDigest,
} from "../src/invocation/index.js";
import {
  approvalClaim,
  approvalNonce,
  verifyApproval,
  type Approval,
  type ApprovalRequestDetail,
} from "../src/people/approval.js";
import { parsePolicy, type PolicyDocument } from "../src/policy/index.js";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { newWorld, type World } from "./helpers/invocation-fixtures.js";

let op: LocalOpenIdProvider;
let untrusted: LocalOpenIdProvider;
let w: World;
let dir: string;
let auditPath: string;
let audit: AuditLog;
let guardA: CalleeGuard;
let guardB: CalleeGuard;
let policy: PolicyDocument;

const LARGE = { to: "acct-9", amount: 2500 };

function approvalPolicy(issuer: string): PolicyDocument {
  return parsePolicy({
    Version: "2012-10-17",
    Statement: [
      // Anyone may move money: the statement below still asks for an approval above 1000.
      { Sid: "any-amount", Effect: "Allow", Action: "tool:call", Resource: ["transfer", "refund"] },
      {
        Sid: "large-transfers",
        Effect: "Allow",
        Action: "tool:call",
        Resource: ["transfer", "refund"],
        Condition: { NumericGreaterThan: { "aztp:args.amount": 1000 } },
        Approval: {
          Approvers: [`${issuer}#*`],
          ApproverGroups: ["finance"],
          MaxAgeSeconds: 120,
          Reason: "transfers above 1000",
        },
      },
    ],
  });
}

before(async () => {
  [op, untrusted, w] = await Promise.all([startLocalOpenIdProvider(), startLocalOpenIdProvider(), newWorld()]);
  await w.authority.addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
  policy = approvalPolicy(op.issuer);
  dir = mkdtempSync(join(tmpdir(), "aztp-approval-"));
  auditPath = join(dir, "callee.jsonl");
  audit = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const guardFor = (identity: AgentIdentity): CalleeGuard =>
    new CalleeGuard({
      identity,
      trust: w.trust,
      policy: [policy],
      replay: new MemoryReplayCache(),
      audit,
      personIssuers: () => w.authority.personIssuerVerifier(w.authority.defaultTrustDomain),
    });
  guardA = guardFor(w.serverA);
  guardB = guardFor(w.serverB);
});

after(async () => {
  await audit?.close();
  await Promise.all([op?.close(), untrusted?.close()]);
  w?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Call {
  signer?: AgentIdentity;
  guard?: CalleeGuard;
  tool?: string;
  args?: unknown;
  approval?: Approval;
}

/** Signs a call as the caller (or `signer`) for the guard's callee and admits it there. */
async function admit(c: Call = {}): Promise<Admission> {
  const guard = c.guard ?? guardA;
  const tool = c.tool ?? "transfer";
  const args = c.args ?? LARGE;
  const token = signInvocation(c.signer ?? w.caller, {
    audience: guard.id,
    tool,
    args,
    ...(c.approval !== undefined ? { approval: approvalClaim(c.approval) } : {}),
  });
  const admission = await guard.admit({ tool, args, token });
  await guard.settle(admission, admission.allowed ? { status: "ok", result: { done: true } } : refusal(admission));
  return admission;
}

function refusal(a: Admission): { status: "denied"; result: unknown; code: string } {
  const e = a.error as AztpError;
  return { status: "denied", result: e.toJSON(), code: e.code };
}

/** The approval request a call without one is refused with. */
async function requestFor(c: Call = {}): Promise<ApprovalRequestDetail> {
  const a = await admit(c);
  assert.equal(a.allowed, false);
  assert.equal(a.error?.code, ErrorCodes.APPROVAL_REQUIRED, a.error?.message);
  return a.error?.detail as unknown as ApprovalRequestDetail;
}

/** A person signs in at the provider to approve `request` (with its nonce, unless told another). */
async function approve(
  request: ApprovalRequestDetail,
  o: { account?: string; nonce?: string; provider?: LocalOpenIdProvider } = {},
): Promise<Approval & { idToken: string }> {
  const login = await (o.provider ?? op).login({ account: o.account ?? "alice", nonce: o.nonce ?? request.nonce });
  return { request, idToken: login.idToken };
}

function assertRefused(a: Admission, rule: string): void {
  assert.equal(a.allowed, false, "must be refused");
  assert.equal(a.error?.code, ErrorCodes.APPROVAL_INVALID, a.error?.message);
  assert.equal(a.error?.rule, rule, a.error?.message);
}

function assertApproved(a: Admission): void {
  assert.equal(a.error, undefined, a.error?.message);
  assert.equal(a.allowed, true);
  assert.equal(a.verified?.approval?.approvedBy, `${op.issuer}#alice`);
}

describe("approvals bound to the exact call", () => {
  it("lets a call no Approval statement matches run without one (the twin of every refusal)", async () => {
    const a = await admit({ args: { to: "acct-9", amount: 10 } });
    assert.equal(a.allowed, true, a.error?.message);
    assert.equal(a.verified?.approval, undefined);
  });

  it("refuses a call that needs an approval with the request any client can show and sign", async () => {
    const detail = await requestFor();
    assert.equal(detail.callee, w.serverA.spiffeId);
    assert.equal(detail.tool, "transfer");
    assert.equal(detail.argsDigest, canonicalDigest(LARGE, "args"));
    assert.equal(detail.caller, w.caller.spiffeId);
    assert.equal(detail.reason, "transfers above 1000");
    assert.deepEqual(detail.approvers, [`${op.issuer}#*`]);
    assert.deepEqual(detail.approverGroups, ["finance"]);
    assert.equal(detail.maxAgeSeconds, 120);
    assert.deepEqual(detail.statements, ["large-transfers"]);
    assert.match(detail.requestId, /^[A-Za-z0-9_-]{22,}$/);
    const ttl = Date.parse(detail.expiresAt) - Date.now();
    assert.ok(ttl > 100_000 && ttl <= 120_000, `expires in ${ttl} ms`);
    assert.equal(detail.nonce, approvalNonce(detail));
  });

  it("admits the call once a person the policy names approved it, and records who and when", async () => {
    const approval = await approve(await requestFor());
    const a = await admit({ approval });
    assertApproved(a);
    const approvedAt = a.verified?.approval?.approvedAt as Date;
    assert.ok(Math.abs(approvedAt.getTime() - Date.now()) < 10_000);
    await audit.flush();
    const entries = await queryAuditLog(auditPath);
    const entry = entries.find((e) => e.jti === a.verified?.claims.jti);
    assert.equal(entry?.decision, "allow");
    assert.equal(entry?.approvedBy, `${op.issuer}#alice`);
    assert.equal(entry?.approvedAt, approvedAt.toISOString());
    // The refusal before it is on record with its code, and names no approver.
    const refused = entries.filter((e) => e.reason === ErrorCodes.APPROVAL_REQUIRED);
    assert.ok(refused.length > 0);
    assert.ok(refused.every((e) => e.decision === "deny" && e.approvedBy === undefined));
  });

  // Each approval here is sound, but for another call: refused there, then admitted for its own.
  const misuses: Array<{ name: string; misuse: Call }> = [
    { name: "other arguments", misuse: { args: { ...LARGE, amount: 9000 } } },
    { name: "another tool", misuse: { tool: "refund" } },
    { name: "another callee", misuse: {} /* guard set in the test: B */ },
    { name: "another caller", misuse: {} /* signer set in the test: third */ },
  ];
  for (const { name, misuse } of misuses) {
    it(`refuses an approval used for ${name} (rule call), and admits it for its own call`, async () => {
      const approval = await approve(await requestFor());
      const wrong: Call = { ...misuse, approval };
      if (name === "another callee") wrong.guard = guardB;
      if (name === "another caller") wrong.signer = w.third;
      assertRefused(await admit(wrong), "call");
      assertApproved(await admit({ approval }));
    });
  }

  it("refuses an approval used twice (replayed); its first use is the twin", async () => {
    const approval = await approve(await requestFor());
    assertApproved(await admit({ approval }));
    assertRefused(await admit({ approval }), "replayed");
  });

  it("refuses an approval request that has expired, even freshly signed", async () => {
    const fresh = await requestFor();
    const stale = { ...fresh, expiresAt: new Date(Math.floor(Date.now() / 1000 - 120) * 1000).toISOString() };
    stale.nonce = approvalNonce(stale);
    assertRefused(await admit({ approval: await approve(stale) }), "expired");
    assertApproved(await admit({ approval: await approve(fresh) }));
  });

  it("refuses an approver the policy does not allow (bob is not in finance)", async () => {
    const request = await requestFor();
    assertRefused(await admit({ approval: await approve(request, { account: "bob" }) }), "approver");
    assertApproved(await admit({ approval: await approve(request, { account: "alice" }) }));
  });

  it("refuses an ID token signed in with another nonce (the approver did not approve this request)", async () => {
    const request = await requestFor();
    const other = await requestFor({ args: { ...LARGE, amount: 7777 } });
    assertRefused(await admit({ approval: await approve(request, { nonce: other.nonce }) }), "nonce");
    assertRefused(await admit({ approval: { request, idToken: (await approve(other)).idToken } }), "nonce");
    assertApproved(await admit({ approval: await approve(request) }));
  });

  it("refuses an ID token from a provider the trust domain does not trust", async () => {
    const request = await requestFor();
    assertRefused(await admit({ approval: await approve(request, { provider: untrusted }) }), "issuer");
    assertApproved(await admit({ approval: await approve(request) }));
  });

  it("refuses a stale sign-in: an approval signed in advance is no approval at the time of the call", async () => {
    // The request expires later than the policy's 120 s would let a fresh one run (a caller may
    // choose expiresAt), but alice signed in 600 s before the call: too long ago for MaxAgeSeconds.
    const later = new Date(Date.now() + 600_000);
    const detail = await requestFor();
    const ahead = { ...detail, expiresAt: new Date(Math.floor(later.getTime() / 1000 + 60) * 1000).toISOString() };
    ahead.nonce = approvalNonce(ahead);
    const approval = await approve(ahead);
    const at = async (now: Date) => {
      const token = signInvocation(w.caller, {
        audience: w.serverA.spiffeId,
        tool: "transfer",
        args: LARGE,
        approval: approvalClaim(approval),
        now,
      });
      const v = await verifyInvocation(token, {
        audience: w.serverA.spiffeId,
        tool: "transfer",
        args: LARGE,
        trust: w.trust,
        replay: new MemoryReplayCache(),
        now,
      });
      const decision = decideInvocation(v, { policy: [policy], args: LARGE, now });
      return verifyApproval(v, decision.approval ?? [], {
        personIssuers: w.authority.personIssuerVerifier(w.authority.defaultTrustDomain),
        replay: new MemoryReplayCache(),
        now,
      });
    };
    await assert.rejects(at(later), (e: unknown) => {
      assert.equal((e as AztpError).code, ErrorCodes.APPROVAL_INVALID);
      assert.equal((e as AztpError).rule, "auth_time", (e as Error).message);
      return true;
    });
    // The twin: the request expires too far ahead for a call made now (expired: holds too long),
    // so the same check runs on a fresh request at the time of its call.
    const fresh = await approve(await requestFor());
    const token = signInvocation(w.caller, {
      audience: w.serverA.spiffeId,
      tool: "transfer",
      args: LARGE,
      approval: approvalClaim(fresh),
    });
    const v = await verifyInvocation(token, {
      audience: w.serverA.spiffeId,
      tool: "transfer",
      args: LARGE,
      trust: w.trust,
      replay: new MemoryReplayCache(),
    });
    const ok = await verifyApproval(v, decideInvocation(v, { policy: [policy], args: LARGE }).approval ?? [], {
      personIssuers: w.authority.personIssuerVerifier(w.authority.defaultTrustDomain),
      replay: new MemoryReplayCache(),
    });
    assert.equal(ok.approvedBy, `${op.issuer}#alice`);
  });

  it("refuses a request whose terms were edited (another reason shown to the approver)", async () => {
    const request = await requestFor();
    const edited = { ...request, reason: "routine" };
    edited.nonce = approvalNonce(edited);
    assertRefused(await admit({ approval: await approve(edited) }), "call");
    assertApproved(await admit({ approval: await approve(request) }));
  });
});
