/**
 * The caller's side of a tool call, shared by every client-side integration (MCP client,
 * LangChain agent): sign the call before it leaves, verify the callee's receipt when the
 * answer comes back (failing closed in enforce mode), and write an audit entry before the
 * result is handed to the application.
 */
import { performance } from "node:perf_hooks";
import type { AuditDecision, AuditOutcome } from "../audit/entry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { AuditWriter } from "../audit/writer.js";
import { canonicalDigest } from "../invocation/canonical.js";
import { peekClaims } from "../spiffe/jws.js";
import { signerOf, type SignerLike } from "../invocation/codec.js";
import { createInvocation, MAX_TOOL_CALL_ID_LENGTH, type InvocationClaims } from "../invocation/invocation.js";
import { actorsOf, personId } from "../invocation/on-behalf-of.js";
import { verifyReceipt, type VerifiedReceipt } from "../invocation/receipt.js";
import type { Trust } from "../invocation/trust.js";
import { startSpan, type CallSpan, type TraceOrigin } from "../invocation/trace-context.js";
import { approvalClaim, type Approval } from "../people/approval.js";
import {
  AuditRecorder,
  checkMode,
  sayIfAuditMode,
  traceFields,
  type GuardMode,
  type UnansweredReason,
} from "./recorder.js";
import { currentTrace } from "./trace-scope.js";

export interface CallerGuardOptions {
  identity: SignerLike;
  trust: Trust;
  mode?: GuardMode;
  /** Where each call is recorded before its result is used. Without it this guard keeps no audit log. */
  audit?: AuditWriter;
  onAuditError?: (error: unknown) => void;
}

/** What a caller signs: the callee, the tool and its arguments, and what rides along. */
export interface CallToSign {
  audience: string;
  tool: string;
  args: unknown;
  /** The delegation chain the caller acts under (root first). */
  delegation?: readonly string[];
  /** The on-behalf-of token of the person the call is made for (bound to this caller's key). */
  onBehalfOf?: string;
  /** A person's approval of this call (people/approval.ts), signed in as `apr`. */
  approval?: Approval;
  /**
   * The trace the call continues (W3C trace context: a traceparent the request carried, an
   * agent's run): the call gets a span of its own in it, signed as `trace` and `span`. Default:
   * the current trace (trace-scope.ts), else a new one.
   */
  trace?: TraceOrigin;
  /** The framework's tool-call id (LangChain's), signed so both audit entries carry it. */
  toolCallId?: string;
}

/** A call as it was asked for, when nothing was signed for it (refused, or left before). */
export interface UnsignedCall {
  audience?: string;
  tool: string;
  args: unknown;
  toolCallId?: string;
  /** The trace it would have continued (default: the current one). */
  trace?: TraceOrigin;
}

export interface PreparedCall {
  readonly audience: string;
  readonly tool: string;
  readonly args: unknown;
  readonly token: string;
  readonly claims: InvocationClaims;
  /** The caller's span of the call (its trace and span IDs are signed in `claims`). */
  readonly trace: CallSpan;
  readonly startedAt: number;
}

/**
 * A call sent without a signature to a server that can check none and signs no receipt (a
 * third-party MCP server that a bridge was told is unsecured): what its audit entry needs.
 * `audience` names the server as well as it can be named (its URL, or its command line).
 */
export interface UnsignedSentCall {
  readonly audience: string;
  readonly tool: string;
  readonly args: unknown;
  /** The digest of the canonical arguments, or "unencodable". */
  readonly argsDigest: string;
  readonly startedAt: number;
  /**
   * Why a server expected to prove itself got the call unsigned (audit mode only: its proof
   * failed at initialize, or it gave none and no serverId was given): recorded as the reason,
   * the code enforce mode would have refused with.
   */
  readonly unproven?: AztpError;
  readonly toolCallId?: string;
  /** The caller's span of the call (nothing is signed: the traceparent it carries is all). */
  readonly trace: CallSpan;
}

/** A call that left: signed, or sent unsigned to an unsecured server. */
export type SentCall = PreparedCall | UnsignedSentCall;

function validToolCallId(id: unknown): id is string {
  return typeof id === "string" && id.length > 0 && id.length <= MAX_TOOL_CALL_ID_LENGTH;
}

type PersonFields = { person?: string; personEmail?: string; actors?: readonly string[] };

/**
 * The person a signed call was made for, from the on-behalf-of token it carries (this caller's
 * own, as the exchange returned it: read, not verified again), for the caller's entry.
 */
function personOf(obo: string): PersonFields {
  const c = peekClaims(obo);
  const subId = c?.sub_id as { iss?: unknown; sub?: unknown } | undefined;
  if (c === undefined || typeof subId?.iss !== "string" || typeof c.sub !== "string") return {};
  const actors = actorsOf(c.act);
  return {
    person: personId(subId.iss, c.sub),
    ...(typeof c.email === "string" ? { personEmail: c.email } : {}),
    ...(actors !== undefined ? { actors } : {}),
  };
}

/**
 * Who approved a call and when, from the approval it carries (its approver's ID token, or the
 * approval service's statement naming them in `sub_id`; read, not verified: the callee verified
 * it, and its receipt says it admitted the call).
 */
function approvalOf(claims: InvocationClaims): { approvedBy?: string; approvedAt?: string } {
  if (claims.apr === undefined) return {};
  const c = peekClaims(claims.apr.idt ?? claims.apr.stm);
  if (typeof c?.iat !== "number") return {};
  const subId = c.sub_id as Record<string, unknown> | undefined;
  const [iss, sub] = claims.apr.stm !== undefined ? [subId?.iss, subId?.sub] : [c.iss, c.sub];
  if (typeof iss !== "string" || typeof sub !== "string") return {};
  const at = new Date(c.iat * 1000);
  return Number.isNaN(at.getTime()) ? {} : { approvedBy: personId(iss, sub), approvedAt: at.toISOString() };
}

function isSigned(call: SentCall): call is PreparedCall {
  return "token" in call;
}

export class CallerGuard {
  readonly mode: GuardMode;
  readonly #o: CallerGuardOptions;
  readonly #audit: AuditRecorder;
  /** The last on-behalf-of token read for an entry: a run signs the same one into each of its calls. */
  #person: { obo: string; fields: PersonFields } | undefined;

  constructor(options: CallerGuardOptions) {
    this.mode = checkMode(options.mode);
    this.#o = options;
    this.#audit = new AuditRecorder(options.audit, this.mode, options.onAuditError);
    sayIfAuditMode(this.mode, this.id, "caller");
  }

  get id(): string {
    return signerOf(this.#o.identity).id.toString();
  }

  /**
   * Signs a tool call for `audience`. Fails closed first: when the audit log cannot be written
   * it throws ERR_AUDIT_UNAVAILABLE (enforce mode), so no call is sent that could not be
   * recorded. A call whose arguments cannot be signed (RFC 8785 cannot represent them) is
   * recorded as refused before the error is thrown: no input leaves a call unaudited.
   *
   * A callee that has been revoked gets no call (enforce mode): its tool would run, and only
   * its receipt would be refused. Checked with the same trust as the receipts, against the
   * callee's identity (and its ancestors) and, when known, the serial of the SVID it last
   * showed (`calleeSerial`). In audit mode the call goes, and its receipt's check records it.
   */
  async prepare(call: CallToSign & { calleeSerial?: string }): Promise<PreparedCall> {
    const down = this.#audit.unavailable();
    const unavailable = down === undefined ? undefined : await down;
    if (unavailable !== undefined) throw unavailable;
    let prepared: PreparedCall;
    try {
      prepared = this.sign(call);
    } catch (e) {
      throw await this.refuse(
        call,
        e instanceof AztpError ? e : new AztpError(ErrorCodes.ARGUMENT_INVALID, (e as Error)?.message ?? String(e)),
      );
    }
    if (this.mode === "enforce" && this.#o.trust.isRevoked(this.id, "")) {
      // A revoked caller (or one whose parent was revoked: the cascade) sends nothing: its
      // callee would refuse the token anyway, but the refusal is known here, at once.
      const error = new AztpError(
        ErrorCodes.INVOCATION_REVOKED,
        `the caller ${this.id} (or an ancestor) is revoked: the call of ${call.tool} is not sent`,
      );
      const unrecorded = await this.fail(prepared, error);
      throw unrecorded ?? error;
    }
    if (this.mode === "enforce" && this.#o.trust.isRevoked(call.audience, call.calleeSerial ?? "")) {
      const error = new AztpError(
        ErrorCodes.CALLEE_REVOKED,
        `the callee ${call.audience} (or an ancestor, or its SVID) is revoked: the call of ${call.tool} is not sent`,
      );
      const unrecorded = await this.fail(prepared, error);
      throw unrecorded ?? error;
    }
    return prepared;
  }

  /**
   * Prepares a call to a server that verifies no signature and signs no receipt (the bridge's
   * `--server-unsecured`): nothing is signed (there is no identity to address a token to, and
   * a token nobody checks proves nothing), but the call fails closed as a signed one does when
   * the audit log cannot be written (ERR_AUDIT_UNAVAILABLE, enforce mode), so no call leaves
   * that could not be recorded. Arguments RFC 8785 cannot represent are sent all the same (the
   * server reads JSON, not a digest) and recorded as "unencodable".
   */
  async prepareUnsigned(call: {
    audience: string;
    tool: string;
    args: unknown;
    unproven?: AztpError;
    toolCallId?: string;
    trace?: TraceOrigin;
  }): Promise<UnsignedSentCall> {
    const down = this.#audit.unavailable();
    const unavailable = down === undefined ? undefined : await down;
    if (unavailable !== undefined) throw unavailable;
    let argsDigest = "unencodable";
    try {
      argsDigest = canonicalDigest(call.args, "args");
    } catch {
      // recorded as such: the call itself goes as the host sent it
    }
    return {
      audience: call.audience,
      tool: call.tool,
      args: call.args,
      argsDigest,
      trace: startSpan(call.trace ?? currentTrace()),
      startedAt: performance.now(),
      ...(call.unproven !== undefined ? { unproven: call.unproven } : {}),
      ...(validToolCallId(call.toolCallId) ? { toolCallId: call.toolCallId } : {}),
    };
  }

  /**
   * Records a call refused before it could be signed (arguments RFC 8785 cannot represent, no
   * audience to address it to) and returns the error to throw: `error`, or ERR_AUDIT_UNAVAILABLE
   * when even the refusal could not be recorded (enforce mode).
   */
  async refuse(call: UnsignedCall, error: AztpError): Promise<AztpError> {
    return (await this.#recordUnsigned(call, { decision: "deny", outcome: "denied", reason: error.code })) ?? error;
  }

  /**
   * Records a call that the framework's control flow left before any answer (a LangGraph
   * `interrupt()` in the tool, or in a middleware before it ran: the run pauses, and its resume
   * calls the tool again as a new signed call): outcome interrupted, `reason` naming the signal,
   * no result and so no receipt. `call` is the prepared call, or for one left before it was
   * signed what it would have been. Resolves once written, with ERR_AUDIT_UNAVAILABLE when it
   * could not be (enforce mode).
   */
  interrupted(call: PreparedCall | UnsignedCall, reason: string): Promise<AztpError | undefined> {
    if ("token" in call)
      return this.#record(call, { result: undefined, receipt: undefined }, undefined, undefined, reason, "interrupted");
    return this.#recordUnsigned(call, { decision: "allow", outcome: "interrupted", reason });
  }

  #recordUnsigned(
    call: UnsignedCall,
    what: { decision: AuditDecision; outcome: AuditOutcome; reason: string },
  ): Promise<AztpError | undefined> {
    if (!this.#audit.enabled) return Promise.resolve(undefined);
    let argsDigest = "unencodable";
    try {
      argsDigest = canonicalDigest(call.args, "args");
    } catch {
      // the usual reason for the refusal: the digest of what cannot be represented is no digest
    }
    return this.#audit.record({
      side: "caller",
      caller: this.id,
      callerVerified: true, // the writer's own identity
      callee: call.audience ?? "unknown",
      tool: call.tool,
      argsDigest,
      args: call.args,
      decision: what.decision,
      outcome: what.outcome,
      reason: what.reason,
      ...traceFields(startSpan(call.trace ?? currentTrace())),
      ...(validToolCallId(call.toolCallId) ? { toolCallId: call.toolCallId } : {}),
    });
  }

  /** Signs a request that is not itself a tool call (tools/list, to be shown the callable tools): not audited. */
  sign(call: CallToSign): PreparedCall {
    const trace = startSpan(call.trace ?? currentTrace());
    const { token, claims } = createInvocation(this.#o.identity, {
      audience: call.audience,
      tool: call.tool,
      args: call.args,
      ...(call.delegation ? { delegation: call.delegation } : {}),
      ...(call.onBehalfOf !== undefined ? { onBehalfOf: call.onBehalfOf } : {}),
      ...(call.approval !== undefined ? { approval: approvalClaim(call.approval) } : {}),
      traceId: trace.traceId,
      spanId: trace.spanId,
      ...(call.toolCallId !== undefined ? { toolCallId: call.toolCallId } : {}),
    });
    return {
      audience: call.audience,
      tool: call.tool,
      args: call.args,
      token,
      claims,
      trace,
      startedAt: performance.now(),
    };
  }

  /**
   * Checks the receipt for `result` and records the call; resolves once the entry is written.
   * In enforce mode a missing or bad receipt rejects (the result must not be used), and so
   * does an entry that could not be written (ERR_AUDIT_UNAVAILABLE); in audit mode both are
   * recorded or warned about and the result stands.
   *
   * An unsigned call (`prepareUnsigned`) has no receipt to check, by configuration: it is
   * recorded as audit mode records a call whose receipt is missing (decision `audit-only`,
   * reason ERR_RECEIPT_MISSING, no receipt), with the outcome as the server answered it, and
   * the result stands; only an entry that could not be written rejects (enforce mode). One sent
   * unsigned because the server failed its proof (audit mode, `unproven`) is recorded the same
   * way, with the proof's failure code as the reason: what enforce mode would have refused.
   */
  async settle(
    prepared: SentCall,
    answer: { result: unknown; receipt: unknown; isError?: boolean; reason?: string },
  ): Promise<VerifiedReceipt | undefined> {
    if (!isSigned(prepared)) {
      const missing =
        prepared.unproven ??
        new AztpError(
          ErrorCodes.RECEIPT_MISSING,
          `${prepared.audience} is an unsecured server: it signs no receipt for ${prepared.tool}`,
        );
      const outcome = answer.isError === true ? "error" : "ok";
      const unrecorded = await this.#record(prepared, answer, undefined, missing, undefined, outcome, "audit-only");
      if (unrecorded !== undefined) throw unrecorded;
      return undefined;
    }
    let verified: VerifiedReceipt | undefined;
    let error: AztpError | undefined;
    try {
      if (answer.receipt === undefined || answer.receipt === null || answer.receipt === "") {
        throw new AztpError(
          ErrorCodes.RECEIPT_MISSING,
          `the callee ${prepared.audience} sent no receipt for ${prepared.tool}`,
        );
      }
      verified = verifyReceipt(answer.receipt, {
        invocationToken: prepared.token,
        result: answer.result,
        callee: prepared.audience,
        caller: this.id,
        trust: this.#o.trust,
        isError: answer.isError === true,
      });
    } catch (e) {
      error =
        e instanceof AztpError ? e : new AztpError(ErrorCodes.RECEIPT_INVALID, (e as Error)?.message ?? String(e));
    }
    const unrecorded = await this.#record(prepared, answer, verified, error, answer.reason);
    if (error && this.mode === "enforce") throw error;
    if (unrecorded !== undefined) throw unrecorded;
    return verified;
  }

  /**
   * Records a call that failed before any answer (transport error, refused by the callee);
   * resolves once written, with the ERR_AUDIT_UNAVAILABLE error if it could not be (enforce).
   */
  fail(prepared: SentCall, error: unknown): Promise<AztpError | undefined> {
    const err =
      error instanceof AztpError
        ? error
        : new AztpError(ErrorCodes.RECEIPT_MISSING, (error as Error)?.message ?? String(error));
    return this.#record(prepared, { result: undefined, receipt: undefined, isError: true }, undefined, err);
  }

  /**
   * Records a call no answer will come for (cancelled, connection closed, send failed): nothing to
   * check, nothing used.
   */
  unanswered(prepared: SentCall, reason: UnansweredReason): Promise<AztpError | undefined> {
    return this.#record(
      prepared,
      { result: undefined, receipt: undefined, isError: true },
      undefined,
      undefined,
      reason,
    );
  }

  #record(
    prepared: SentCall,
    answer: { result: unknown; receipt: unknown; isError?: boolean },
    verified: VerifiedReceipt | undefined,
    error: AztpError | undefined,
    reason?: string,
    outcome?: AuditOutcome,
    decision?: AuditDecision,
  ): Promise<AztpError | undefined> {
    if (!this.#audit.enabled) return Promise.resolve(undefined);
    const signed = isSigned(prepared) ? prepared : undefined;
    const unsignedToolCallId = signed === undefined ? (prepared as UnsignedSentCall).toolCallId : undefined;
    // A verified receipt holds the digest of this very result; compute it only otherwise.
    let resultDigest = verified?.claims.result_sha256;
    if (resultDigest === undefined && answer.result !== undefined) {
      try {
        resultDigest = canonicalDigest(answer.result, "result");
      } catch {
        resultDigest = undefined;
      }
    }
    const status = outcome ?? verified?.claims.status ?? (answer.isError ? "error" : error ? "error" : "ok");
    const entryDecision =
      decision ??
      (error
        ? this.mode === "audit"
          ? "audit-only"
          : "deny"
        : verified?.claims.status === "denied"
          ? "deny"
          : "allow");
    return this.#audit.record({
      side: "caller",
      caller: this.id,
      callerVerified: true, // the writer's own identity
      callee: prepared.audience,
      tool: prepared.tool,
      argsDigest: signed?.claims.args_sha256 ?? (prepared as UnsignedSentCall).argsDigest,
      args: prepared.args,
      // A receipt that says the callee refused is a refusal on this side too, as an MCP error answer is.
      decision: entryDecision,
      outcome: status,
      durationMs: Math.round((performance.now() - prepared.startedAt) * 1000) / 1000,
      ...(error
        ? { reason: error.code }
        : verified?.claims.code
          ? { reason: verified.claims.code }
          : reason
            ? { reason }
            : {}),
      ...(resultDigest ? { resultDigest } : {}),
      ...traceFields(prepared.trace),
      ...(signed
        ? {
            jti: signed.claims.jti,
            ...(signed.claims.dlg
              ? { delegation: signed.claims.dlg.map((link) => String(peekClaims(link)?.iss ?? "unknown")) }
              : {}),
            ...this.#personOf(signed.claims.obo),
            // Only on a call the callee admitted: a refused approval approved nothing.
            ...(entryDecision === "allow" && verified !== undefined ? approvalOf(signed.claims) : {}),
            ...(signed.claims.tcid ? { toolCallId: signed.claims.tcid } : {}),
            token: signed.token,
          }
        : unsignedToolCallId !== undefined
          ? { toolCallId: unsignedToolCallId }
          : {}),
      ...(typeof answer.receipt === "string" ? { receipt: answer.receipt } : {}),
    });
  }

  #personOf(obo: string | undefined): PersonFields {
    if (obo === undefined) return {};
    if (this.#person?.obo !== obo) this.#person = { obo, fields: personOf(obo) };
    return this.#person.fields;
  }

  async flush(): Promise<void> {
    await this.#audit.flush();
  }
}
