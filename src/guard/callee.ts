/**
 * The callee's side of a tool call, shared by every server-side integration (MCP server, MCP
 * proxy, LangChain tools): verify the caller's token with the one verifier before the tool
 * runs, answer with a signed receipt whatever the outcome, and write an audit entry.
 *
 * Two phases, because a transport-level integration learns the result later than it admits
 * the call: `admit()` before the tool runs, `settle()` when its result (or error) is known.
 * `run()` does both around a function. `settle()` resolves once the call's audit entry is
 * written; the integration sends its answer only then, and sends `Settlement.error` instead
 * when it is set (the entry could not be written, or the result cannot be receipted).
 */
import { performance } from "node:perf_hooks";
import type { AuditEntryInput, AuditOutcome } from "../audit/entry.js";
import type { AuditWriter } from "../audit/writer.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalDigest } from "../invocation/canonical.js";
import { peekClaims } from "../spiffe/jws.js";
import { signerOf, type SignerLike } from "../invocation/codec.js";
import { decideInvocation, decideToolCall, requireToolCallAllowed } from "../invocation/decide.js";
import {
  MAX_TOOL_CALL_ID_LENGTH,
  verifyInvocation,
  type IdentityRelations,
  type VerifiedInvocation,
} from "../invocation/invocation.js";
import { createReceipt, type ReceiptStatus } from "../invocation/receipt.js";
import { MemoryReplayCache, type ReplayCache } from "../invocation/replay.js";
import {
  AuditRecorder,
  checkMode,
  sayIfAuditMode,
  traceFields,
  type GuardMode,
  type UnansweredReason,
} from "./recorder.js";
import { withTrace } from "./trace-scope.js";
import { calleeSpan, contextOf, type CallSpan } from "../invocation/trace-context.js";
import type { Trust } from "../invocation/trust.js";
import type { BearerCaller, PresentedCredential } from "../oauth/protected-resource.js";
import type { AuthMethod, PersonContext } from "../policy/context.js";
import type { CompiledPolicies } from "../policy/evaluate.js";
import type { PolicyDocument } from "../policy/policy.js";
import { verifyApproval } from "../people/approval.js";
import type { PersonIssuers } from "../people/person-issuers.js";

export type { GuardMode } from "./recorder.js";

/** Policy as a guard takes it: compiled, or documents it compiles. */
export type GuardPolicy = CompiledPolicies | readonly PolicyDocument[];

export interface CalleeGuardOptions {
  /** The callee's identity (an AgentIdentity or anything with a `signer`). */
  identity: SignerLike;
  trust: Trust;
  replay?: ReplayCache;
  /** Who may call which tool; a function is asked per call (so attached policies can change). */
  policy?:
    CompiledPolicies | readonly PolicyDocument[] | (() => GuardPolicy | undefined | Promise<GuardPolicy | undefined>);
  /**
   * Parent and links of a caller, for policy conditions. May answer with a promise (a remote
   * authority that has not seen the caller yet fetches it once); the guard awaits it before
   * deciding.
   */
  relations?: (spiffeId: string) => IdentityRelations | undefined | Promise<IdentityRelations | undefined>;
  /** enforce (default): refuse what fails. audit: let it through, record why. */
  mode?: GuardMode;
  /** Where each call is recorded before it is answered. Without it this guard keeps no audit log. */
  audit?: AuditWriter;
  /** Recorded in audit entries: "callee" for a server, "proxy" for the MCP proxy. */
  side?: "callee" | "proxy";
  /**
   * Called when an audit append fails (default: process warning); the call's answer then fails
   * closed in enforce mode.
   */
  onAuditError?: (error: unknown) => void;
  /**
   * The OpenID Providers this callee's trust domain trusts, asked only when policy requires an
   * approval and a call carries one (people/approval.ts): the approver's ID token is verified
   * with them. Without them no approval holds (ERR_APPROVAL_INVALID, rule issuer).
   * `servingGuard` fills it from the authority.
   */
  personIssuers?: () => PersonIssuers | undefined | Promise<PersonIssuers | undefined>;
}

/** What admit() decided. */
export interface Admission {
  readonly allowed: boolean;
  readonly tool: string;
  readonly args: unknown;
  readonly token: string | undefined;
  /** Present when the token verified (even if policy then denied the call: see `error`). */
  readonly verified: VerifiedInvocation | undefined;
  /** Why verification failed (also set in audit mode, where the call still runs). */
  readonly error: AztpError | undefined;
  /** The verified caller's ID or, when its token did not verify, the ID it claims ("unknown" if none). */
  readonly caller: string;
  /** Whether `caller` was verified (false: only claimed). */
  readonly callerVerified: boolean;
  /**
   * How `caller` was verified: its signed invocation, or a bearer access token (absent: not
   * verified). A call refused for its bearer token at the resource gate is recorded as `bearer`
   * whether or not the token verified (refuseCredential).
   */
  readonly authMethod?: AuthMethod | undefined;
  /** The verified access token the call carried (alone, or beside its invocation token). */
  readonly bearer?: BearerCaller | undefined;
  /**
   * The callee's span of the call: in the trace the caller signed (or, with nothing signed, the
   * one its `traceparent` carried, else a new one), its parent the caller's span.
   */
  readonly trace: CallSpan;
  readonly startedAt: number;
}

export interface Settlement {
  /** Signed receipt; absent when the caller is unknown (an unsigned call in audit mode). */
  receipt: string | undefined;
  /**
   * When set, the answer must be this error, not the result: the audit entry could not be
   * written (ERR_AUDIT_UNAVAILABLE, enforce mode), or the result cannot be canonicalised, so no
   * receipt can cover it (then `receipt` is the error receipt that says why).
   */
  error?: AztpError;
}

function asAztpError(
  e: unknown,
  code: (typeof ErrorCodes)[keyof typeof ErrorCodes] = ErrorCodes.INVOCATION_MALFORMED,
): AztpError {
  return e instanceof AztpError ? e : new AztpError(code, (e as Error)?.message ?? String(e), { cause: e });
}

/**
 * Who a token that did not verify claims to be, for the record only (never trusted); "unknown" when
 * it claims nobody.
 */
function claimedCaller(token: unknown): string {
  const iss = peekClaims(token)?.iss;
  return typeof iss === "string" && iss.length > 0 && iss.length <= 2048 ? iss : UNKNOWN_CALLER;
}

const UNKNOWN_CALLER = "unknown";

/** The W3C trace context a call carried beside its token (MCP: `traceparent`, `tracestate` of `_meta`). Unsigned. */
export interface CarriedTrace {
  traceparent?: unknown;
  tracestate?: unknown;
}

/**
 * The callee's span of a call: the trace its token signed (a verified token's, or the one a token
 * that did not verify claims, as its caller is only claimed), checked against what it carried
 * (invocation/trace-context.ts decides; the unsigned copy never overrules the signed one).
 */
function spanOf(v: VerifiedInvocation | undefined, token: unknown, carried: CarriedTrace): CallSpan {
  const claims = v !== undefined ? v.claims : peekClaims(token);
  return calleeSpan(claims === undefined ? undefined : { trace: claims.trace, span: claims.span }, carried);
}

/**
 * The person a verified call was made for, for its entry: who (issuer-qualified subject), the
 * agents that acted for them, and the e-mail only when the exchange let it travel (the
 * provider's configuration allows recording it).
 */
function personOf(
  v: VerifiedInvocation | undefined,
  bearer?: BearerCaller | undefined,
): { person?: string; personEmail?: string; actors?: string[] } {
  const obo = v?.onBehalfOf;
  if (obo === undefined) {
    // A person signed in at a host (authorization code): they are the caller, no agent acts between.
    const p = bearer?.person;
    if (p === undefined) return {};
    return { person: p.id, ...(p.claims.email !== undefined ? { personEmail: p.claims.email } : {}) };
  }
  return {
    person: obo.person.id,
    ...(obo.person.claims.email !== undefined ? { personEmail: obo.person.claims.email } : {}),
    actors: obo.actors,
  };
}

/**
 * The tool-call id for the entry: the signed one, or for a token that did not verify the one it
 * claims (like its caller, only claimed: the entry says callerVerified false), so a refused
 * call is found by its id on both sides too.
 */
function toolCallIdOf(v: VerifiedInvocation | undefined, token: string | undefined): { toolCallId?: string } {
  const id = v !== undefined ? v.claims.tcid : token !== undefined ? peekClaims(token)?.tcid : undefined;
  return typeof id === "string" && id.length > 0 && id.length <= MAX_TOOL_CALL_ID_LENGTH ? { toolCallId: id } : {};
}

export class CalleeGuard {
  readonly mode: GuardMode;
  readonly #o: CalleeGuardOptions;
  readonly #replay: ReplayCache;
  readonly #audit: AuditRecorder;

  constructor(options: CalleeGuardOptions) {
    this.mode = checkMode(options.mode);
    this.#o = options;
    this.#replay = options.replay ?? new MemoryReplayCache();
    this.#audit = new AuditRecorder(options.audit, this.mode, options.onAuditError);
    sayIfAuditMode(this.mode, this.id, "callee");
  }

  /** The log this guard records into (undefined: it keeps none). */
  get auditLog(): AuditWriter | undefined {
    return this.#audit.log;
  }

  /** My SPIFFE ID, as tokens must address it. */
  get id(): string {
    return signerOf(this.#o.identity).id.toString();
  }

  /**
   * Verifies the call. Never throws for a bad token: the decision is in the result.
   * `sourceIp`: the peer's address when the transport knows it (policy key `aztp:sourceIp`).
   * `bearer`: the access token the request carried, verified by the resource server
   * (oauth/protected-resource.ts): a signed call that carries one must name the same caller
   * in both, or it is refused (ERR_OAUTH_TOKEN_SUBJECT_MISMATCH); its compact form is the
   * access token an invocation's `ath` may bind.
   */
  async admit(
    call: {
      tool: string;
      args: unknown;
      token: unknown;
      accessToken?: string;
      bearer?: BearerCaller | undefined;
      sourceIp?: string | undefined;
    } & CarriedTrace,
  ): Promise<Admission> {
    const startedAt = performance.now();
    const bearer = call.bearer;
    const accessToken = bearer?.compact ?? call.accessToken;
    const token = typeof call.token === "string" ? call.token : undefined;
    const asked = typeof this.#o.policy === "function" ? this.#o.policy() : this.#o.policy;
    // A failure is read below when it matters; an early return must not leave it unhandled.
    if (asked instanceof Promise) asked.catch(() => undefined);
    // Fail closed first: a call that cannot be recorded is not run (nor its token's jti burnt).
    const down = this.#audit.unavailable();
    const unavailable = down === undefined ? undefined : await down;
    if (unavailable !== undefined) {
      return {
        allowed: false,
        tool: call.tool,
        args: call.args,
        token,
        verified: undefined,
        error: unavailable,
        caller: claimedCaller(call.token),
        callerVerified: false,
        bearer,
        trace: spanOf(undefined, call.token, call),
        startedAt,
      };
    }
    let verified: VerifiedInvocation;
    try {
      verified = await verifyInvocation(call.token, {
        audience: this.id,
        tool: call.tool,
        args: call.args,
        trust: this.#o.trust,
        replay: this.#replay,
        ...(accessToken !== undefined ? { accessToken } : {}),
      });
    } catch (e) {
      const error = asAztpError(e);
      return {
        allowed: this.mode === "audit",
        tool: call.tool,
        args: call.args,
        token,
        verified: undefined,
        error,
        caller: claimedCaller(call.token),
        callerVerified: false,
        bearer,
        trace: spanOf(undefined, call.token, call),
        startedAt,
      };
    }
    const caller = verified.caller.toString();
    const trace = spanOf(verified, undefined, call);
    // A verified caller refused at the policy step: audited as verified, admitted only in audit mode.
    const refusedByPolicy = (e: unknown): Admission => ({
      allowed: this.mode === "audit",
      tool: call.tool,
      args: call.args,
      token,
      verified,
      error: asAztpError(e),
      caller,
      callerVerified: true,
      authMethod: "signed",
      bearer,
      trace,
      startedAt,
    });
    // Two credentials, one caller: a request signed by one identity and carrying another's
    // token would let each vouch for what the other cannot (the token's scopes for the
    // signer's call), and leave audit with two answers to "who called".
    if (bearer !== undefined && bearer.caller !== caller)
      return refusedByPolicy(
        new AztpError(
          ErrorCodes.OAUTH_TOKEN_SUBJECT_MISMATCH,
          `the call is signed by ${caller} but its access token speaks for ${bearer.caller}: a request names one caller`,
        ),
      );
    let policy: GuardPolicy | undefined;
    let relations: ((id: string) => IdentityRelations | undefined) | undefined;
    try {
      // Awaited only when a source answers with a promise: the embedded authority never does.
      policy = asked instanceof Promise ? await asked : asked;
      if (policy !== undefined && this.#o.relations !== undefined) {
        const rel = this.#o.relations(caller);
        const held = rel instanceof Promise ? await rel : rel;
        relations = (id) => (id === caller ? held : undefined);
      }
    } catch (e) {
      // Policy that cannot be read is not "no policy": the call is refused (fail closed).
      return refusedByPolicy(e);
    }
    if (policy !== undefined) {
      // Policy last, separately: a denied caller is still a verified one, and is audited as such.
      try {
        verified.policy = decideInvocation(verified, { policy, args: call.args, relations, sourceIp: call.sourceIp });
      } catch (e) {
        return refusedByPolicy(e);
      }
      // An Allow that asks for a person's approval: of this very call, checked here, after the
      // decision that says whose approval counts (people/approval.ts).
      const required = verified.policy.approval;
      if (required !== undefined && required.length > 0) {
        try {
          const issuers = verified.claims.apr?.idt === undefined ? undefined : await this.#o.personIssuers?.();
          const approval = await verifyApproval(verified, required, {
            personIssuers: issuers,
            replay: this.#replay,
            trust: this.#o.trust,
          });
          verified.approval = {
            approvedBy: approval.approvedBy,
            approvedAt: approval.approvedAt,
            requestId: approval.requestId,
          };
        } catch (e) {
          return refusedByPolicy(e);
        }
      }
    }
    return {
      allowed: true,
      tool: call.tool,
      args: call.args,
      token,
      verified,
      error: undefined,
      caller,
      callerVerified: true,
      authMethod: "signed",
      bearer,
      trace,
      startedAt,
    };
  }

  /**
   * Admits a call authenticated by a bearer access token alone (no invocation token): the token
   * was verified by the resource server with the one access-token verifier; its caller is
   * decided by policy (`aztp:authMethod` = `bearer`, so a policy can require signed calls for
   * some tools), and the call is receipted and audited like a signed one. Never throws.
   */
  async admitBearer(
    call: {
      tool: string;
      args: unknown;
      bearer: BearerCaller;
      sourceIp?: string | undefined;
    } & CarriedTrace,
  ): Promise<Admission> {
    const startedAt = performance.now();
    // Nothing is signed: the traceparent the request carried is all there is.
    const trace = spanOf(undefined, undefined, call);
    const bearer = call.bearer;
    const caller = bearer.caller;
    const asked = typeof this.#o.policy === "function" ? this.#o.policy() : this.#o.policy;
    if (asked instanceof Promise) asked.catch(() => undefined);
    const admission = (error: AztpError | undefined): Admission => ({
      allowed: error === undefined || this.mode === "audit",
      tool: call.tool,
      args: call.args,
      token: undefined,
      verified: undefined,
      error,
      caller,
      callerVerified: true,
      authMethod: "bearer",
      bearer,
      trace,
      startedAt,
    });
    const down = this.#audit.unavailable();
    const unavailable = down === undefined ? undefined : await down;
    if (unavailable !== undefined) return admission(unavailable);
    try {
      const policy = asked instanceof Promise ? await asked : asked;
      if (policy === undefined) return admission(undefined);
      let relations: ((id: string) => IdentityRelations | undefined) | undefined;
      // Relations are a workload's (parent, links in the registry); another issuer's subject has none.
      if (this.#o.relations !== undefined && bearer.workload) {
        const rel = this.#o.relations(caller);
        const held = rel instanceof Promise ? await rel : rel;
        relations = (id) => (id === caller ? held : undefined);
      }
      const decision = requireToolCallAllowed(policy, {
        caller,
        callee: this.id,
        tool: call.tool,
        args: call.args,
        relations,
        sourceIp: call.sourceIp,
        authMethod: "bearer",
        ...(bearer.person !== undefined ? { person: bearer.person } : {}),
      });
      // An approval rides in a signed invocation (apr), bound to it by the caller's signature; a
      // bearer call has nothing to carry one in.
      if (decision.approval !== undefined && decision.approval.length > 0)
        return admission(
          new AztpError(
            ErrorCodes.APPROVAL_REQUIRED,
            `${call.tool} needs a person's approval of the call, which only a signed call can carry: sign the call (aztp-client's secured MCP client, or the bridge)`,
          ),
        );
      return admission(undefined);
    } catch (e) {
      // Policy that cannot be read is not "no policy": refused (fail closed), as admit does.
      return admission(asAztpError(e, ErrorCodes.POLICY_DENIED));
    }
  }

  /**
   * Refuses a call before verification (the transport binding does, e.g. for a request id
   * already in use): answered with a receipt and audited like any other refusal.
   */
  refuse(call: { tool: string; args: unknown; token: unknown } & CarriedTrace, error: AztpError): Promise<Settlement> {
    const token = typeof call.token === "string" ? call.token : undefined;
    return this.settleRefusal({
      allowed: false,
      tool: call.tool,
      args: call.args,
      token,
      verified: undefined,
      error,
      caller: claimedCaller(call.token),
      callerVerified: false,
      trace: spanOf(undefined, call.token, call),
      startedAt: performance.now(),
    });
  }

  /**
   * Records a call refused for its credential before it reached any session (the OAuth resource
   * gate's 401 no credential or invalid token, 403 insufficient scope, 503 an issuer it cannot
   * reach), so that it is on record like any other refused call: the refusal's code, the tool and
   * the argument digest, and the bearer token it presented, if any: `authMethod: "bearer"`, the
   * caller the token names (verified only when the token verified and lacked a scope) and its
   * jti, never the token. No receipt: the refusal is an HTTP answer, with nowhere to carry one,
   * and signing for requests that prove nothing would be work anyone could ask of the server.
   *
   * Resolves once the entry is written (the binding answers only then), with undefined, or with
   * ERR_AUDIT_UNAVAILABLE when it could not be (enforce mode): then the answer is that error.
   */
  async refuseCredential(
    call: { tool: string; args: unknown; token: unknown } & CarriedTrace,
    error: AztpError,
    presented: PresentedCredential | undefined,
  ): Promise<AztpError | undefined> {
    const down = this.#audit.unavailable();
    const unavailable = down === undefined ? undefined : await down;
    if (unavailable !== undefined) return unavailable;
    const token = typeof call.token === "string" ? call.token : undefined;
    const admission: Admission = {
      allowed: false,
      tool: call.tool,
      args: call.args,
      token,
      verified: undefined,
      error,
      caller: presented?.caller ?? claimedCaller(call.token),
      callerVerified: presented?.verified ?? false,
      ...(presented !== undefined ? { authMethod: "bearer" as const } : {}),
      trace: spanOf(undefined, call.token, call),
      startedAt: performance.now(),
    };
    return this.#record(
      admission,
      { status: "denied", result: error.toJSON(), code: error.code },
      undefined,
      undefined,
      presented?.jti,
    );
  }

  /** Settles a refused admission: status denied, the error (code and message) as its result. */
  settleRefusal(admission: Admission): Promise<Settlement> {
    const error = admission.error as AztpError;
    return this.settle(admission, { status: "denied", result: error.toJSON(), code: error.code });
  }

  /**
   * Settles an admitted call no answer will come for (cancelled by its caller, or its
   * connection closed first): status error, the reason as its code. The callee-side twin of
   * CallerGuard.unanswered.
   */
  unanswered(admission: Admission, reason: UnansweredReason, message: string): Promise<Settlement> {
    return this.settle(admission, { status: "error", result: { code: reason, message }, code: reason });
  }

  /**
   * Records the outcome: signs a receipt (ok, error, or denied for a refused call) bound to
   * the token and the result, and writes the audit entry; resolves once it is written. For a
   * refused call, `result` is the error object sent back.
   */
  async settle(
    admission: Admission,
    outcome: {
      status: ReceiptStatus;
      result: unknown;
      code?: string;
      /** For the audit entry alone, when there is no code: what kind of result it was (`langgraph-command`). */
      reason?: string;
    },
  ): Promise<Settlement> {
    const v = admission.verified;
    let receipt: string | undefined;
    let resultDigest: string | undefined;
    let replaced: AztpError | undefined;
    // A receipt needs an addressee: the verified caller (by its signature or its bearer token),
    // or the claimed one of a refused token (it can only check the receipt if it really is that
    // caller). Calls with neither get none.
    const bearerOnly = admission.authMethod === "bearer" ? admission.bearer : undefined;
    const addressee = v
      ? v.caller.toString()
      : bearerOnly !== undefined
        ? bearerOnly.caller
        : admission.caller !== UNKNOWN_CALLER
          ? admission.caller
          : undefined;
    const authenticated = v !== undefined || bearerOnly !== undefined;
    if (addressee !== undefined) {
      const sign = (o: { status: ReceiptStatus; result: unknown; code?: string }): void => {
        ({
          receipt,
          claims: { result_sha256: resultDigest },
        } = createReceipt(this.#o.identity, {
          caller: addressee,
          tool: admission.tool,
          ...(admission.token !== undefined ? { invocationToken: admission.token } : {}),
          ...(v ? { invocationJti: v.claims.jti } : {}),
          ...(bearerOnly !== undefined ? { accessToken: bearerOnly.compact } : {}),
          result: o.result,
          status: o.status,
          ...(o.code !== undefined ? { code: o.code } : {}),
        }));
      };
      try {
        sign(outcome);
      } catch (e) {
        receipt = undefined; // a claimed caller that is not a valid ID gets no receipt
        if (authenticated) {
          // The caller is verified, so the receipt failed on the result: one RFC 8785 cannot
          // represent (a lone surrogate, say). No receipt can cover it, so it is not sent:
          // the caller gets an error, with a receipt that says why, and the log records that.
          replaced = asAztpError(e, ErrorCodes.TOOL_FAILED);
          outcome = { status: "error", result: replaced.toJSON(), code: replaced.code };
          sign(outcome);
        }
      }
    }
    const unrecorded = await this.#record(admission, outcome, receipt, resultDigest);
    const error = unrecorded ?? replaced;
    return error !== undefined ? { receipt: unrecorded !== undefined ? undefined : receipt, error } : { receipt };
  }

  /**
   * Records an admitted call that the framework's control flow left before it gave a result (a
   * LangGraph `interrupt()` in the tool: the run pauses, and its resume calls the tool again
   * with a token of its own): outcome interrupted, `reason` naming the signal. There is no
   * result, so no receipt. Resolves once written, with ERR_AUDIT_UNAVAILABLE when it could not
   * be (enforce mode): then the binding answers with that error instead of letting the signal on.
   */
  async interrupted(admission: Admission, reason: string): Promise<AztpError | undefined> {
    return this.#record(admission, { status: "interrupted", result: undefined, reason }, undefined, undefined);
  }

  /** Admits, runs `fn` if allowed, settles. Throws the AztpError of a refused call. */
  async run<T>(
    call: { tool: string; args: unknown; token: unknown } & CarriedTrace,
    fn: () => Promise<T> | T,
  ): Promise<{ result: T; receipt: string | undefined; admission: Admission }> {
    const admission = await this.admit(call);
    if (!admission.allowed) {
      const settled = await this.settleRefusal(admission);
      throw Object.assign(settled.error ?? (admission.error as AztpError), { receipt: settled.receipt });
    }
    let result: T;
    try {
      // Whatever the tool calls continues this call's trace, under the callee's span.
      result = await withTrace(contextOf(admission.trace), fn);
    } catch (e) {
      // The tool's own failure, under its own code: the call was admitted and ran, so this is
      // no verification failure, even when what the tool threw was an AztpError of its own.
      const inner = e instanceof AztpError ? `[${e.code}] ${e.message}` : ((e as Error)?.message ?? String(e));
      const err = new AztpError(ErrorCodes.TOOL_FAILED, `the tool ${admission.tool} failed: ${inner}`, { cause: e });
      const settled = await this.settle(admission, {
        status: "error",
        result: { code: err.code, message: err.message },
        code: err.code,
      });
      if (settled.error !== undefined) throw Object.assign(settled.error, { receipt: settled.receipt });
      throw e;
    }
    const settled = await this.settle(admission, { status: "ok", result });
    if (settled.error !== undefined) throw Object.assign(settled.error, { receipt: settled.receipt });
    return { result, receipt: settled.receipt, admission };
  }

  #record(
    admission: Admission,
    outcome: { status: AuditOutcome; result: unknown; code?: string; reason?: string },
    receipt: string | undefined,
    signedDigest: string | undefined,
    presentedJti?: string,
  ): Promise<AztpError | undefined> {
    if (!this.#audit.enabled) return Promise.resolve(undefined);
    const accessTokenJti = admission.bearer?.token.jti ?? presentedJti;
    const v = admission.verified;
    let argsDigest: string;
    try {
      argsDigest = v?.claims.args_sha256 ?? canonicalDigest(admission.args, "args");
    } catch {
      argsDigest = "unencodable";
    }
    // The receipt already holds the result's digest; compute it only for an unsigned call.
    let resultDigest = signedDigest;
    if (resultDigest === undefined && outcome.result !== undefined) {
      try {
        resultDigest = canonicalDigest(outcome.result, "result");
      } catch {
        resultDigest = undefined;
      }
    }
    const entry: AuditEntryInput = {
      side: this.#o.side ?? "callee",
      caller: admission.caller,
      callerVerified: admission.callerVerified,
      ...(admission.authMethod !== undefined ? { authMethod: admission.authMethod } : {}),
      // The access token's jti, never the token: a bearer token is a credential anyone who
      // reads the log could replay until it expires.
      ...(accessTokenJti !== undefined ? { accessTokenJti } : {}),
      callee: this.id,
      tool: admission.tool,
      argsDigest,
      args: admission.args,
      decision: admission.error === undefined ? "allow" : admission.allowed ? "audit-only" : "deny",
      outcome: outcome.status,
      durationMs: Math.round((performance.now() - admission.startedAt) * 1000) / 1000,
      ...(admission.error
        ? { reason: admission.error.code }
        : outcome.code
          ? { reason: outcome.code }
          : outcome.reason
            ? { reason: outcome.reason }
            : {}),
      ...(resultDigest ? { resultDigest } : {}),
      ...(v ? { jti: v.claims.jti } : {}),
      ...traceFields(admission.trace),
      ...toolCallIdOf(v, admission.token),
      ...(v && v.delegation.length > 0 ? { delegation: v.delegation.map((d) => d.delegator) } : {}),
      ...personOf(v, admission.authMethod === "bearer" ? admission.bearer : undefined),
      ...(v?.approval !== undefined
        ? { approvedBy: v.approval.approvedBy, approvedAt: v.approval.approvedAt.toISOString() }
        : {}),
      ...(admission.token ? { token: admission.token } : {}),
      ...(receipt ? { receipt } : {}),
    };
    return this.#audit.record(entry);
  }

  /**
   * Whether policy lets a verified caller call `tool` (used to show a caller only the tools it
   * may call). Argument conditions cannot match without arguments, so such tools stay hidden.
   */
  toolVisible(
    caller: string,
    tool: string,
    peer: {
      sourceIp?: string | undefined;
      authMethod?: AuthMethod | undefined;
      /** The person the listing is for, and the agents acting for them (a listing made for a person). */
      person?: PersonContext | undefined;
      actors?: readonly string[] | undefined;
    } = {},
  ): boolean {
    const policy = typeof this.#o.policy === "function" ? this.#o.policy() : this.#o.policy;
    // Not known yet (a remote authority fetching it): hidden, the safe answer for a listing;
    // a call is still decided by admit(), which waits for the answer.
    if (policy instanceof Promise) {
      policy.catch(() => undefined);
      return false;
    }
    if (policy === undefined) return true;
    // A bearer caller of another issuer (`<iss>#<sub>`) is in no registry: it has no relations.
    const source = caller.startsWith("spiffe://") ? this.#o.relations : undefined;
    const relations =
      source === undefined
        ? undefined
        : (id: string) => {
            const rel = source(id);
            if (!(rel instanceof Promise)) return rel;
            rel.catch(() => undefined);
            return undefined;
          };
    return (
      decideToolCall(policy, {
        caller,
        callee: this.id,
        tool,
        relations,
        sourceIp: peer.sourceIp,
        authMethod: peer.authMethod,
        person: peer.person,
        actors: peer.actors,
      }).decision === "allow"
    );
  }

  /** Waits until every audit entry written so far is durable (or failed). */
  async flush(): Promise<void> {
    await this.#audit.flush();
  }
}
