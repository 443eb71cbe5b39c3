/**
 * Signed tool invocations: the caller signs, the callee verifies before the tool runs.
 *
 * Token: compact JWS, header { alg, typ: "aztp-invocation+jwt", x5c: caller's SVID chain },
 * claims { iss = sub = caller SPIFFE ID, aud = callee SPIFFE ID, iat, exp (≤ 60 s after iat),
 * jti (128 random bits), tool, args_sha256 = b64url(SHA-256(JCS(args))), [ath], [trace, span],
 * [dlg: delegation chain] }. See docs/protocol.md.
 *
 * One verifier for every integration (LangChain, MCP server, client, proxy): none of them
 * re-implements a check that lives here.
 */
import { newJti } from "./nonce.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { PolicyDecision } from "../policy/evaluate.js";
import { canonicalDigest, tokenHash } from "./canonical.js";
import { signerOf, signWithHeader, type SignerLike } from "./codec.js";
import { describeClaim } from "./describe.js";
import { verifyDelegationChain, type VerifiedDelegation } from "./delegation.js";
import { verifyOnBehalfOf, type VerifiedOnBehalfOf } from "./on-behalf-of.js";
import { isSpanId, isTraceId } from "./trace-context.js";
import type { ReplayCache } from "./replay.js";
import {
  DEFAULT_INVOCATION_LEEWAY_SECONDS,
  INVOCATION_KIND,
  INVOCATION_TYP,
  MAX_INVOCATION_LIFETIME_SECONDS,
} from "./token-kinds.js";
import type { Trust } from "./trust.js";
import { TOKEN_ALGORITHMS, validateToken } from "./validate.js";

export { DEFAULT_INVOCATION_LEEWAY_SECONDS, INVOCATION_TYP, MAX_INVOCATION_LIFETIME_SECONDS } from "./token-kinds.js";
export const DEFAULT_INVOCATION_TTL_SECONDS = 30;
/** What verifiers accept: P-256 by default, and the chains SPIRE may issue (ES384, RSA). */
export const INVOCATION_ALGORITHMS = TOKEN_ALGORITHMS;
export { TOOL_CALL_ACTION, type IdentityRelations } from "../policy/request.js";
// The codec and the message helpers have their own files; these names stay importable from
// here, where they lived before. The policy step (decide.ts) is not re-exported: it imports
// this file's types, and this file must not import it back.
export { encodedHeader, signerOf, signWithHeader, type SignerLike } from "./codec.js";
export { describeClaim, describeTime } from "./describe.js";
/**
 * Tool-call ids are framework-made (the providers' run about 30 to 40 characters); this bounds what
 * a token and an entry carry.
 */
export const MAX_TOOL_CALL_ID_LENGTH = 1024;

export interface InvocationClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  tool: string;
  args_sha256: string;
  /** SHA-256 of an access token sent with the call (WIMSE `ath`). */
  ath?: string;
  /**
   * The W3C trace ID of the trace the call belongs to (trace-context.ts): signed, so that nobody on
   * the transport can move the call into another trace; the `traceparent` in the request's
   * `_meta` is only its copy on the wire.
   */
  trace?: string;
  /** The caller's span of this call (a W3C span ID, with `trace`): the parent of the callee's. */
  span?: string;
  /**
   * The framework's id for this tool call (a LangChain tool-call id): signed, so both sides'
   * audit entries carry the same id and one query finds the call in the caller's log and the
   * callee's.
   */
  tcid?: string;
  /** Delegation chain, root first (compact JWS each). */
  dlg?: string[];
  /**
   * The person this call is made for: an on-behalf-of token (on-behalf-of.ts) bound to the
   * signer's key, whose act chain is the path of agents the call came through.
   */
  obo?: string;
  /**
   * A person's approval of this very call: the approval request they approved (`req`) and
   * either the ID token they signed in with to approve it (`idt`) or an approval statement an
   * approval service the policy names signed for them (`stm`), whose nonce is the request's digest.
   * Signed with the rest, so it cannot be moved to another call; checked by the callee when its
   * policy asks for an approval (people/approval.ts).
   */
  apr?: ApprovalClaim;
}

/** The `apr` claim: what was approved, and the proof of who approved it and when. */
export type ApprovalClaim =
  | { req: Record<string, unknown>; idt: string; stm?: undefined }
  | { req: Record<string, unknown>; stm: string; idt?: undefined };

/** What the callee found of a verified approval, for its policy step's record. */
export interface VerifiedApprovalSummary {
  /** The approver, `<issuer>#<subject>`. */
  approvedBy: string;
  /** When the approval was given (the ID token's `iat`, or the approval statement's). */
  approvedAt: Date;
  requestId: string;
}

export interface SignInvocationOptions {
  /** The callee's SPIFFE or AZTP ID. */
  audience: string;
  tool: string;
  args?: unknown;
  delegation?: readonly string[];
  /** The on-behalf-of token of the person the call is made for, signed in as `obo`. */
  onBehalfOf?: string;
  /** A person's approval of this call, signed in as `apr`. */
  approval?: ApprovalClaim;
  /** The W3C trace ID the call belongs to (32 lower-case hex digits), signed as `trace`. */
  traceId?: string;
  /** The caller's span of the call (16 lower-case hex digits), signed as `span`; needs `traceId`. */
  spanId?: string;
  /** The framework's tool-call id (a LangChain ToolCall's `id`), signed as `tcid`. */
  toolCallId?: string;
  accessTokenHash?: string;
  ttlSeconds?: number;
  now?: Date;
}

/** Signs a tool invocation for `options.audience`. Returns the compact token. */
export function signInvocation(identity: SignerLike, options: SignInvocationOptions): string {
  return createInvocation(identity, options).token;
}

/** Like signInvocation, also returning the claims signed (for audit records). */
export function createInvocation(
  identity: SignerLike,
  options: SignInvocationOptions,
): { token: string; claims: InvocationClaims } {
  const signer = signerOf(identity);
  if (typeof options.tool !== "string" || options.tool.length === 0) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "signInvocation needs a tool name");
  }
  const aud = SpiffeId.parse(options.audience).toString();
  const ttl = options.ttlSeconds ?? DEFAULT_INVOCATION_TTL_SECONDS;
  if (!(ttl > 0 && ttl <= MAX_INVOCATION_LIFETIME_SECONDS)) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `ttlSeconds must be in (0, ${MAX_INVOCATION_LIFETIME_SECONDS}]`);
  }
  const iat = Math.floor((options.now?.getTime() ?? Date.now()) / 1000);
  const iss = signer.id.toString();
  const claims: InvocationClaims = {
    iss,
    sub: iss,
    aud,
    iat,
    exp: iat + Math.floor(ttl),
    jti: newJti(),
    tool: options.tool,
    args_sha256: canonicalDigest(options.args, "args"),
  };
  if (options.accessTokenHash !== undefined) claims.ath = options.accessTokenHash;
  if (options.traceId !== undefined) {
    if (!isTraceId(options.traceId))
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "traceId must be a W3C trace-id: 32 lower-case hex digits, not all zero",
      );
    claims.trace = options.traceId;
  }
  if (options.spanId !== undefined) {
    if (options.traceId === undefined || !isSpanId(options.spanId))
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "spanId must be a W3C span ID (16 lower-case hex digits, not all zero), with a traceId",
      );
    claims.span = options.spanId;
  }
  if (options.toolCallId !== undefined) {
    if (
      typeof options.toolCallId !== "string" ||
      options.toolCallId.length === 0 ||
      options.toolCallId.length > MAX_TOOL_CALL_ID_LENGTH
    ) {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `toolCallId must be a string of 1 to ${MAX_TOOL_CALL_ID_LENGTH} characters`,
      );
    }
    claims.tcid = options.toolCallId;
  }
  if (options.delegation !== undefined && options.delegation.length > 0) claims.dlg = [...options.delegation];
  if (options.onBehalfOf !== undefined) {
    if (typeof options.onBehalfOf !== "string" || options.onBehalfOf.length === 0)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "onBehalfOf must be an on-behalf-of token");
    claims.obo = options.onBehalfOf;
  }
  if (options.approval !== undefined) {
    const a = options.approval as { req?: unknown; idt?: unknown; stm?: unknown } | null;
    if (
      typeof a !== "object" ||
      a === null ||
      typeof a.req !== "object" ||
      a.req === null ||
      (typeof a.idt === "string") === (typeof a.stm === "string") ||
      (a.idt !== undefined && typeof a.idt !== "string") ||
      (a.stm !== undefined && typeof a.stm !== "string")
    )
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "approval must be { req: the approval request, idt: an ID token } or { req, stm: an approval statement }",
      );
    const req = a.req as Record<string, unknown>;
    claims.apr = typeof a.idt === "string" ? { req, idt: a.idt } : { req, stm: a.stm as string };
  }
  return { token: signWithHeader(signer, INVOCATION_TYP, claims), claims };
}

export interface VerifyInvocationOptions {
  /** My SPIFFE or AZTP ID: the token must be addressed to it. */
  audience: string;
  /** The tool actually being called and the arguments actually received. */
  tool: string;
  args?: unknown;
  trust: Trust;
  replay: ReplayCache;
  /**
   * The OAuth access token that came with the call (MCP: the Authorization bearer). A token
   * that carries `ath` (the caller bound it) is accepted only with this exact access token.
   */
  accessToken?: string;
  now?: Date;
  leewaySeconds?: number;
}

export interface VerifiedInvocation {
  caller: SpiffeId;
  /** The serial of the caller's SVID. */
  serial: string;
  claims: InvocationClaims;
  delegation: VerifiedDelegation[];
  /** The person the call is made for, and the agents that acted for them (verified). */
  onBehalfOf?: VerifiedOnBehalfOf;
  /**
   * The policy step's decision, set by whoever runs it after verification (`CalleeGuard.admit`
   * runs `decideInvocation`), so a caller refused by policy is still known as verified.
   */
  policy?: PolicyDecision;
  /** The approval the policy step asked for and verified (set by `CalleeGuard.admit`). */
  approval?: VerifiedApprovalSummary;
  /** The token exactly as received (receipts bind its hash). */
  token: string;
}

function reject(code: ErrorCode, message: string, rule: string, cause?: unknown): never {
  throw new AztpError(code, message, cause === undefined ? { rule } : { cause, rule });
}

function audienceOf(audience: string): string {
  try {
    return SpiffeId.parse(audience).toString();
  } catch (e) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "verifyInvocation: audience is not a valid SPIFFE/AZTP ID", {
      cause: e,
    });
  }
}

/**
 * Verifies an invocation token against the call actually being made. Stops at the first
 * failure, in this order: parse and algorithm → x5c chain to the bundle → iss is the SVID's
 * ID → not revoked → aud is me → tool → argument digest → time window → jti unseen →
 * delegation chain. Throws AztpError; the tool must not run unless this resolves, and then
 * only after the policy step (`decideInvocation`, decide.ts), which `CalleeGuard.admit` runs.
 */
export async function verifyInvocation(token: unknown, options: VerifyInvocationOptions): Promise<VerifiedInvocation> {
  const now = options.now ?? new Date();
  const leeway = options.leewaySeconds ?? DEFAULT_INVOCATION_LEEWAY_SECONDS;
  const me = audienceOf(options.audience);
  const { claims: payload, signer } = validateToken(token, INVOCATION_KIND, options.trust, {
    now,
    audience: me,
    window: options.leewaySeconds === undefined ? undefined : { leewaySeconds: leeway },
  });
  // The validator checked the dates; the rest of the claims are this kind's own.
  const c = payload as Partial<InvocationClaims> & { iat: number; exp: number };
  if (c.sub !== undefined && c.sub !== c.iss)
    reject(ErrorCodes.INVOCATION_ISSUER_MISMATCH, "invocation token: sub differs from iss", "sub");

  if (typeof c.tool !== "string" || c.tool !== options.tool) {
    reject(
      ErrorCodes.INVOCATION_TOOL_MISMATCH,
      `invocation token was signed for tool ${describeClaim(c.tool, 80)}, but ${describeClaim(options.tool, 80)} is being called`,
      "tool",
    );
  }
  let digest: string;
  try {
    digest = canonicalDigest(options.args, "args");
  } catch (e) {
    // Arguments JCS cannot represent (a lone surrogate, `1e400` parsed as Infinity, nesting
    // past the limit, a __proto__ member) keep the canonical code: they were never signable.
    if (e instanceof AztpError) throw e;
    reject(
      ErrorCodes.JSON_UNREPRESENTABLE,
      `the received arguments cannot be canonicalised: ${(e as Error)?.message ?? String(e)}`,
      "args",
      e,
    );
  }
  if (c.args_sha256 !== digest) {
    reject(
      ErrorCodes.INVOCATION_ARGS_MISMATCH,
      "the arguments received are not the arguments the caller signed",
      "args",
    );
  }

  if (typeof c.jti !== "string" || c.jti.length < 22 || c.jti.length > 128) {
    reject(ErrorCodes.INVOCATION_MALFORMED, "invocation token needs a jti of at least 128 bits", "jti");
  }
  if (c.trace !== undefined && !isTraceId(c.trace))
    reject(
      ErrorCodes.INVOCATION_MALFORMED,
      "trace must be a W3C trace-id (32 lower-case hex digits, not all zero)",
      "trace",
    );
  if (c.span !== undefined && (c.trace === undefined || !isSpanId(c.span)))
    reject(
      ErrorCodes.INVOCATION_MALFORMED,
      "span must be a W3C span ID (16 lower-case hex digits, not all zero), with a trace",
      "span",
    );
  if (
    c.tcid !== undefined &&
    (typeof c.tcid !== "string" || c.tcid.length === 0 || c.tcid.length > MAX_TOOL_CALL_ID_LENGTH)
  ) {
    reject(
      ErrorCodes.INVOCATION_MALFORMED,
      `tcid must be a string of 1 to ${MAX_TOOL_CALL_ID_LENGTH} characters`,
      "tcid",
    );
  }
  if (c.ath !== undefined && typeof c.ath !== "string")
    reject(ErrorCodes.INVOCATION_MALFORMED, "ath must be a string", "ath");

  // The access token this call came with, when the token binds one (WIMSE `ath`): a token
  // lifted from one OAuth session cannot ride along with another.
  if (c.ath !== undefined) {
    if (options.accessToken === undefined)
      reject(
        ErrorCodes.INVOCATION_ACCESS_TOKEN_MISMATCH,
        "the token is bound to an access token (ath), but the call carried none",
        "access_token",
      );
    if (c.ath !== tokenHash(options.accessToken))
      reject(
        ErrorCodes.INVOCATION_ACCESS_TOKEN_MISMATCH,
        "the call's access token is not the one the token is bound to (ath)",
        "access_token",
      );
  }

  // Remember the token only once its signature, identity, binding and time checked out, so a
  // forged or misdirected token cannot burn a caller's jti; the key is the claims, never the
  // token text (see replay.ts). Delegation and policy come after (DESIGN §4), so a token
  // refused by them is used up: its caller signs a new one.
  const remembered = options.replay.checkAndRemember(`${c.iss}\n${c.jti}`, (c.exp + leeway) * 1000);
  // The in-memory cache answers at once: no await (a microtask) unless a shared cache needs one.
  const fresh = typeof remembered === "boolean" ? remembered : await remembered;
  if (!fresh) reject(ErrorCodes.INVOCATION_REPLAYED, `invocation token ${c.jti} was already used`, "replayed");

  let delegation: VerifiedDelegation[] = [];
  if (c.dlg !== undefined) {
    delegation = verifyDelegationChain(c.dlg, {
      signer: signer.spiffeId,
      audience: me,
      tool: c.tool,
      exp: c.exp,
      trust: options.trust,
      now,
    });
  }

  // The person, last: their token rides in the signed claims, and is bound to the key that
  // signed them, so it proves nothing until the signature, the caller and the delegation
  // links it must match are known.
  let onBehalfOf: VerifiedOnBehalfOf | undefined;
  if (c.obo !== undefined) {
    onBehalfOf = verifyOnBehalfOf(c.obo, {
      trust: options.trust,
      signer: { spiffeId: signer.spiffeId, key: signer.key },
      delegation,
      audience: me,
      now,
    });
  }

  return {
    caller: signer.svid.id,
    serial: signer.serial,
    claims: c as InvocationClaims,
    delegation,
    ...(onBehalfOf !== undefined ? { onBehalfOf } : {}),
    token: token as string,
  };
}
