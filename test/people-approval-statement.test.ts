/**
 * The second form of an approval (people/approval-statement.ts): an approval service, a workload
 * the policy names in `ApproverIdentities`, authenticated the person itself and signs that they
 * approved the request (`apr: { req, stm }`). Every attack is refused with ERR_APPROVAL_INVALID
 * and its rule, and has a passing twin: the same request then approved by a sound statement of
 * the named service admits the call (a refused approval burns nothing). The ID token form keeps
 * working beside it, and a policy without ApproverIdentities accepts no statement.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import type { AgentIdentity } from "../src/client/identity.js";
import { ErrorCodes } from "../src/errors.js";
import { CalleeGuard, type Admission } from "../src/guard/callee.js";
import { MemoryReplayCache, signInvocation } from "../src/invocation/index.js";
import {
  approvalClaim,
  signApprovalStatement,
  type Approval,
  type ApprovalRequestDetail,
} from "../src/people/approval.js";
import { parsePolicy, type PolicyDocument } from "../src/policy/index.js";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { b64json, forge, newWorld, resign, type RawSigner, type World } from "./helpers/invocation-fixtures.js";

const PEOPLE = "https://login.example.com";
const LARGE = { to: "acct-9", amount: 2500 };

let op: LocalOpenIdProvider;
let w: World;
let dir: string;
let auditPath: string;
let audit: AuditLog;
/** The approval service the policy names, a second one under the same pattern (revoked in a test). */
let service: AgentIdentity;
let backup: AgentIdentity;
/** Under the policy with ApproverIdentities; under the same policy without them. */
let guard: CalleeGuard;
let plain: CalleeGuard;

function approvalPolicy(identities: boolean): PolicyDocument {
  return parsePolicy({
    Version: "2012-10-17",
    Statement: [
      { Sid: "any-amount", Effect: "Allow", Action: "tool:call", Resource: "transfer" },
      {
        Sid: "large-transfers",
        Effect: "Allow",
        Action: "tool:call",
        Resource: "transfer",
        Condition: { NumericGreaterThan: { "aztp:args.amount": 1000 } },
        Approval: {
          Approvers: [`${PEOPLE}#*`, `${op.issuer}#*`],
          ApproverGroups: ["finance"],
          MaxAgeSeconds: 120,
          ...(identities ? { ApproverIdentities: [service.spiffeId.replace(/approvals$/, "approvals*")] } : {}),
        },
      },
    ],
  });
}

before(async () => {
  [op, w] = await Promise.all([startLocalOpenIdProvider(), newWorld()]);
  await w.authority.addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
  service = await w.identity("approvals");
  backup = await w.identity("approvals-backup");
  dir = mkdtempSync(join(tmpdir(), "aztp-approval-stm-"));
  auditPath = join(dir, "callee.jsonl");
  audit = await AuditLog.open(auditPath, { batchWindowMs: 0 });
  const guardOf = (identity: AgentIdentity, policy: PolicyDocument): CalleeGuard =>
    new CalleeGuard({
      identity,
      trust: w.trust,
      policy: [policy],
      replay: new MemoryReplayCache(),
      audit,
      personIssuers: () => w.authority.personIssuerVerifier(w.authority.defaultTrustDomain),
    });
  guard = guardOf(w.serverA, approvalPolicy(true));
  plain = guardOf(w.serverB, approvalPolicy(false));
});

after(async () => {
  await audit?.close();
  await op?.close();
  w?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function admit(g: CalleeGuard, approval?: Approval, token?: string): Promise<Admission> {
  const t =
    token ??
    signInvocation(w.caller, {
      audience: g.id,
      tool: "transfer",
      args: LARGE,
      ...(approval !== undefined ? { approval: approvalClaim(approval) } : {}),
    });
  const a = await g.admit({ tool: "transfer", args: LARGE, token: t });
  await g.settle(a, a.allowed ? { status: "ok", result: { done: true } } : { status: "denied", result: null });
  return a;
}

async function requestFor(g: CalleeGuard = guard): Promise<ApprovalRequestDetail> {
  const a = await admit(g);
  assert.equal(a.error?.code, ErrorCodes.APPROVAL_REQUIRED, a.error?.message);
  return a.error?.detail as unknown as ApprovalRequestDetail;
}

interface StatementOptions {
  signer?: AgentIdentity;
  subject?: string;
  groups?: string[];
  authAgo?: number;
  now?: Date;
  request?: ApprovalRequestDetail;
}

function statement(request: ApprovalRequestDetail, o: StatementOptions = {}): Approval {
  const now = o.now ?? new Date();
  return {
    request,
    statement: signApprovalStatement(o.signer ?? service, {
      request: o.request ?? request,
      person: { issuer: PEOPLE, subject: o.subject ?? "alice" },
      authTime: new Date(now.getTime() - (o.authAgo ?? 5) * 1000),
      claims: { groups: o.groups ?? ["finance"], amr: ["mfa"] },
      now,
    }),
  };
}

function assertRefused(a: Admission, rule: string): void {
  assert.equal(a.allowed, false, "must be refused");
  assert.equal(a.error?.code, ErrorCodes.APPROVAL_INVALID, a.error?.message);
  assert.equal(a.error?.rule, rule, a.error?.message);
}

function assertApproved(a: Admission, by = `${PEOPLE}#alice`): void {
  assert.equal(a.error, undefined, a.error?.message);
  assert.equal(a.allowed, true);
  assert.equal(a.verified?.approval?.approvedBy, by);
}

/** A statement signed by `signer`'s key but presenting `as`'s certificate chain. */
function forged(request: ApprovalRequestDetail, signer: AgentIdentity, as: AgentIdentity): Approval {
  const honest = statement(request, { signer: as }).statement as string;
  const claims = JSON.parse(Buffer.from(honest.split(".")[1] as string, "base64url").toString("utf8")) as object;
  const s = signer.signer as unknown as RawSigner;
  return {
    request,
    statement: forge({ alg: s.alg, typ: "aztp-approval+jwt", x5c: as.signer.x5c }, claims, (input) => s.sign(input)),
  };
}

describe("approval statements: an approval service the policy names vouches for the person", () => {
  it("admits the call approved by the named service, and records the person as the approver", async () => {
    const request = await requestFor();
    assert.deepEqual(request.approverIdentities, [service.spiffeId.replace(/approvals$/, "approvals*")]);
    const a = await admit(guard, statement(request));
    assertApproved(a);
    const approvedAt = a.verified?.approval?.approvedAt as Date;
    assert.ok(Math.abs(approvedAt.getTime() - Date.now()) < 10_000);
    await audit.flush();
    const entry = (await queryAuditLog(auditPath)).find((e) => e.jti === a.verified?.claims.jti);
    assert.equal(entry?.decision, "allow");
    assert.equal(entry?.approvedBy, `${PEOPLE}#alice`);
    assert.equal(entry?.approvedAt, approvedAt.toISOString());
  });

  // Each attack's approval is refused for its rule; then a sound statement admits the same request.
  const attacks: Array<{
    name: string;
    rule: string;
    approval(r: ApprovalRequestDetail): Promise<Approval> | Approval;
  }> = [
    {
      name: "a workload the policy does not name signs it",
      rule: "approver_identity",
      approval: (r) => statement(r, { signer: w.third }),
    },
    {
      name: "one service signs with another's x5c (forged)",
      rule: "signature",
      approval: (r) => forged(r, w.third, service),
    },
    {
      name: "it approves another request (nonce)",
      rule: "nonce",
      approval: async (r) => {
        const other = await requestFor();
        return { request: r, statement: statement(other).statement as string };
      },
    },
    {
      name: "the service authenticated the person too long ago (auth_time)",
      rule: "auth_time",
      approval: (r) => statement(r, { authAgo: 600 }),
    },
    {
      name: "the person is not one Approvers/ApproverGroups allow",
      rule: "approver",
      approval: (r) => statement(r, { subject: "bob", groups: ["support"] }),
    },
    {
      name: "the statement expired",
      rule: "expired",
      approval: (r) => statement(r, { now: new Date(Date.now() - 400_000), authAgo: 0 }),
    },
  ];
  for (const { name, rule, approval } of attacks) {
    it(`refuses it when ${name} (rule ${rule}); a sound statement admits the same request`, async () => {
      const request = await requestFor();
      assertRefused(await admit(guard, await approval(request)), rule);
      assertApproved(await admit(guard, statement(request)));
    });
  }

  it("refuses a statement by a revoked service (rule revoked); the service the policy names is the twin", async () => {
    const request = await requestFor();
    // Before its revocation the backup service is named by the same pattern, and its statement holds.
    assertApproved(await admit(guard, statement(await requestFor(), { signer: backup })));
    await w.authority.revoke(backup.spiffeId, "compromised");
    assertRefused(await admit(guard, statement(request, { signer: backup })), "revoked");
    assertApproved(await admit(guard, statement(request)));
  });

  it("refuses a statement used twice (replayed); its first use is the twin", async () => {
    const approval = statement(await requestFor());
    assertApproved(await admit(guard, approval));
    assertRefused(await admit(guard, approval), "replayed");
  });

  it("refuses an apr carrying both an ID token and a statement (malformed)", async () => {
    const request = await requestFor();
    const login = await op.login({ account: "alice", nonce: request.nonce });
    const approval = statement(request);
    const honest = signInvocation(w.caller, {
      audience: guard.id,
      tool: "transfer",
      args: LARGE,
      approval: approvalClaim(approval),
    });
    const claims = JSON.parse(Buffer.from(honest.split(".")[1] as string, "base64url").toString("utf8")) as Record<
      string,
      Record<string, unknown>
    >;
    const both = { ...claims, jti: `${String(claims.jti)}x`, apr: { ...claims.apr, idt: login.idToken } };
    assert.notEqual(b64json(both), honest.split(".")[1]);
    assertRefused(await admit(guard, undefined, resign(w.caller.signer as unknown as RawSigner, both)), "malformed");
    assert.throws(
      () => approvalClaim({ request, idToken: login.idToken, statement: approval.statement } as unknown as Approval),
      (e: { code?: string }) => e.code === ErrorCodes.ARGUMENT_INVALID,
    );
    assertApproved(await admit(guard, approval));
  });

  it("keeps the ID token form working under a policy that names approval services", async () => {
    const request = await requestFor();
    const login = await op.login({ account: "alice", nonce: request.nonce });
    assertApproved(await admit(guard, { request, idToken: login.idToken }), `${op.issuer}#alice`);
  });

  it("refuses every statement under a policy without ApproverIdentities; the ID token form is the twin", async () => {
    const request = await requestFor(plain);
    assert.equal(request.approverIdentities, undefined);
    assertRefused(await admit(plain, statement(request)), "approver_identity");
    const login = await op.login({ account: "alice", nonce: request.nonce });
    assertApproved(await admit(plain, { request, idToken: login.idToken }), `${op.issuer}#alice`);
  });
});

describe("ApproverIdentities in a policy document", () => {
  const doc = (identities: unknown): unknown => ({
    Version: "2012-10-17",
    Statement: [
      {
        Effect: "Allow",
        Action: "tool:call",
        Resource: "transfer",
        Approval: { Approvers: ["$person"], ApproverIdentities: identities },
      },
    ],
  });
  for (const bad of ["*", "https://login.example.com#bot", "spiffe://*/approvals", [], "spiffe://td/a b"]) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(
        () => parsePolicy(doc(bad)),
        (e: { code?: string }) => e.code === ErrorCodes.POLICY_INVALID,
      );
    });
  }
  for (const good of ["spiffe://td/workload/*/approvals", ["aztp://td/approvals", "spiffe://td/x"]]) {
    it(`accepts ${JSON.stringify(good)}`, () => {
      assert.doesNotThrow(() => parsePolicy(doc(good)));
    });
  }
});
