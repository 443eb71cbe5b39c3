/**
 * Signed tool invocations: the caller signs, the callee verifies before the tool runs.
 *
 * Token: compact JWS, header { alg, typ: "aztp-invocation+jwt", x5c: caller's SVID chain },
 * claims { iss = sub = caller SPIFFE ID, aud = callee SPIFFE ID, iat, exp (≤ 60 s after iat),
 * jti (128 random bits), tool, args_sha256 = b64url(SHA-256(JCS(args))), [ath], [trace],
 * [dlg: delegation chain] }. See docs/protocol.md.
 *
 * One verifier for every integration (LangChain, MCP server, client, proxy): none of them
 * re-implements a check that lives here.
 */
import { newJti } from "./nonce.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import type { SvidSigner as IdentitySigner } from "../spiffe/signer.js";
import { b64uEncode } from "../spiffe/base64url.js";
import { decodeRest, splitCompact, verifyDecoded, type DecodedJws } from "../spiffe/jws.js";
import type { JwsAlgorithm } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { CompiledPolicies, PolicyDecision } from "../policy/evaluate.js";
import { decidePolicy, TOOL_CALL_ACTION, type IdentityRelations } from "../policy/request.js";
import type { PolicyDocument } from "../policy/policy.js";
import { canonicalDigest, tokenHash } from "./canonical.js";
import { verifyDelegationChain, type VerifiedDelegation } from "./delegation.js";
import type { ReplayCache } from "./replay.js";
import type { ResolvedHeader, Trust, VerifiedSigner } from "./trust.js";

export const INVOCATION_TYP = "aztp-invocation+jwt";
/** The longest a token may live: a captured token is useless after this. */
export const MAX_INVOCATION_LIFETIME_SECONDS = 60;
export const DEFAULT_INVOCATION_TTL_SECONDS = 30;
export const DEFAULT_INVOCATION_LEEWAY_SECONDS = 30;
/** What verifiers accept: P-256 by default, and the chains SPIRE may issue (ES384, RSA). */
export const INVOCATION_ALGORITHMS: readonly JwsAlgorithm[] = ["ES256", "ES384", "RS256", "PS256"];
export { TOOL_CALL_ACTION, type IdentityRelations } from "../policy/request.js";
/** Tool-call ids are framework-made (the providers' run about 30 to 40 characters); this bounds what a token and an entry carry. */
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
  trace?: string;
  /**
   * The framework's id for this tool call (a LangChain tool-call id): signed, so both sides'
   * audit entries carry the same id and one query finds the call in the caller's log and the
   * callee's.
   */
  tcid?: string;
  /** Delegation chain, root first (compact JWS each). */
  dlg?: string[];
}

/** Anything that can sign: an AgentIdentity (has `.signer`) or an IdentitySigner itself. */
export type SignerLike = IdentitySigner | { readonly signer: IdentitySigner };

export function signerOf(s: SignerLike): IdentitySigner {
  return "signer" in s ? s.signer : s;
}

export interface SignInvocationOptions {
  /** The callee's SPIFFE or AZTP ID. */
  audience: string;
  tool: string;
  args?: unknown;
  delegation?: readonly string[];
  traceId?: string;
  /** The framework's tool-call id (a LangChain ToolCall's `id`), signed as `tcid`. */
  toolCallId?: string;
  accessTokenHash?: string;
  ttlSeconds?: number;
  now?: Date;
}

/** The encoded protected header, computed once per signer (it carries the whole x5c chain). */
const headerCache = new WeakMap<IdentitySigner, Map<string, string>>();

export function encodedHeader(signer: IdentitySigner, typ: string): string {
  let byTyp = headerCache.get(signer);
  if (byTyp === undefined) {
    byTyp = new Map();
    headerCache.set(signer, byTyp);
  }
  let h = byTyp.get(typ);
  if (h === undefined) {
    h = b64uEncode(JSON.stringify({ alg: signer.alg, typ, x5c: signer.x5c }));
    byTyp.set(typ, h);
  }
  return h;
}

/** Signs `payload` under the signer's cached header: the whole cost is one signature. */
export function signWithHeader(signer: IdentitySigner, typ: string, payload: object): string {
  const input = `${encodedHeader(signer, typ)}.${b64uEncode(JSON.stringify(payload))}`;
  return `${input}.${signer.sign(Buffer.from(input, "ascii")).toString("base64url")}`;
}

/** Signs a tool invocation for `options.audience`. Returns the compact token. */
export function signInvocation(identity: SignerLike, options: SignInvocationOptions): string {
  return createInvocation(identity, options).token;
}

/** Like signInvocation, also returning the claims signed (for audit records). */
export function createInvocation(identity: SignerLike, options: SignInvocationOptions): { token: string; claims: InvocationClaims } {
  const signer = signerOf(identity);
  if (typeof options.tool !== "string" || options.tool.length === 0) {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, "signInvocation needs a tool name");
  }
  const aud = SpiffeId.parse(options.audience).toString();
  const ttl = options.ttlSeconds ?? DEFAULT_INVOCATION_TTL_SECONDS;
  if (!(ttl > 0 && ttl <= MAX_INVOCATION_LIFETIME_SECONDS)) {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `ttlSeconds must be in (0, ${MAX_INVOCATION_LIFETIME_SECONDS}]`);
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
  if (options.traceId !== undefined) claims.trace = options.traceId;
  if (options.toolCallId !== undefined) {
    if (typeof options.toolCallId !== "string" || options.toolCallId.length === 0 || options.toolCallId.length > MAX_TOOL_CALL_ID_LENGTH) {
      throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `toolCallId must be a string of 1 to ${MAX_TOOL_CALL_ID_LENGTH} characters`);
    }
    claims.tcid = options.toolCallId;
  }
  if (options.delegation !== undefined && options.delegation.length > 0) claims.dlg = [...options.delegation];
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
  /** Policies to decide the call (explicit Deny wins, default deny). Absent: no policy step. */
  policy?: CompiledPolicies | readonly PolicyDocument[];
  /** Parent and links of a caller, for policy conditions. */
  relations?: (spiffeId: string) => IdentityRelations | undefined;
  /**
   * The OAuth access token that came with the call (MCP: the Authorization bearer). A token
   * that carries `ath` (the caller bound it) is accepted only with this exact access token.
   */
  accessToken?: string;
  /** The peer's IP address, when the transport knows it: the policy step's `aztp:sourceIp`. */
  sourceIp?: string | undefined;
  now?: Date;
  leewaySeconds?: number;
}

export interface VerifiedInvocation {
  caller: SpiffeId;
  /** The serial of the caller's SVID. */
  serial: string;
  claims: InvocationClaims;
  delegation: VerifiedDelegation[];
  policy?: PolicyDecision;
  /** The token exactly as received (receipts bind its hash). */
  token: string;
}

function reject(code: ErrorCode, message: string, cause?: unknown): never {
  throw new AztpError(code, message, cause === undefined ? undefined : { cause });
}

function isNumericDate(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * A NumericDate for an error message. Any safe integer is a valid NumericDate, but Date only
 * spans ±8.64e12 s: toISOString() would throw a RangeError (not an AztpError) for the rest.
 */
export function describeTime(seconds: number): string {
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? `${seconds} s after the epoch` : d.toISOString();
}

/**
 * A claim value for an error message: a string quoted and cut to `max`, anything else named by
 * its kind. Never JSON.stringify a claim: on a list nested a few thousand deep (which JSON.parse
 * accepts) it overflows the stack and a RangeError, not an AztpError, would leave the verifier.
 */
export function describeClaim(value: unknown, max = 120): string {
  if (typeof value === "string") return JSON.stringify(value.length > max ? `${value.slice(0, max)}...` : value);
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "a list" : "an object";
}

/**
 * The policy step of verification, for a token that passed every other check: action
 * `tool:call`, resource = the tool, principal = the verified caller, with the context keys of
 * policy/context.ts. Throws ERR_POLICY_DENIED; returns the decision when allowed. Exported so
 * an integration that must tell "verified but denied" from "not verified" (to audit the
 * caller it knows) can run the same step itself after verifyInvocation without a policy.
 */
export function decideInvocation(
  verified: VerifiedInvocation,
  options: { policy: CompiledPolicies | readonly PolicyDocument[]; args?: unknown; relations?: (spiffeId: string) => IdentityRelations | undefined; sourceIp?: string | undefined; now?: Date },
): PolicyDecision {
  const caller = verified.caller.toString();
  const decision = decideToolCall(options.policy, {
    caller,
    callee: verified.claims.aud,
    tool: verified.claims.tool,
    args: options.args ?? {},
    delegationDepth: verified.delegation.length,
    relations: options.relations,
    sourceIp: options.sourceIp,
    now: options.now,
  });
  if (decision.decision !== "allow") {
    throw new AztpError(
      ErrorCodes.POLICY_DENIED,
      `policy denies ${caller} calling ${verified.claims.tool} (${decision.reason}${decision.statement !== undefined ? `, statement ${decision.statement}` : ""})`,
    );
  }
  return decision;
}

/**
 * The one policy request for a tool call, and its decision (never throws for a deny): action
 * `tool:call`, resource = the tool, principal = the caller, with the context keys of
 * policy/context.ts. decideInvocation uses it for a verified call; a server uses it to decide
 * which tools a verified caller may see (no arguments yet, so argument conditions do not hold).
 */
export function decideToolCall(
  policy: CompiledPolicies | readonly PolicyDocument[],
  call: {
    caller: string;
    callee: string;
    tool: string;
    args?: unknown;
    relations?: ((spiffeId: string) => IdentityRelations | undefined) | undefined;
    sourceIp?: string | undefined;
    now?: Date | undefined;
    delegationDepth?: number;
  },
): PolicyDecision {
  return decidePolicy(policy, {
    principal: call.caller,
    action: TOOL_CALL_ACTION,
    resource: call.tool,
    callee: call.callee,
    tool: call.tool,
    args: call.args,
    relations: call.relations,
    delegationDepth: call.delegationDepth,
    sourceIp: call.sourceIp,
    now: call.now,
  });
}

/** Decoding and chain checks shared by invocation, receipt and delegation tokens. */
export function decodeSigned(
  token: unknown,
  typ: string,
  trust: Trust,
  time: Date,
  codes: { missing: ErrorCode; malformed: ErrorCode; alg: ErrorCode; untrusted: ErrorCode; signature: ErrorCode; issuer: ErrorCode },
  what: string,
): { decoded: DecodedJws; signer: VerifiedSigner } {
  if (token === undefined || token === null || token === "") reject(codes.missing, `no ${what} was presented`);
  let decoded: DecodedJws;
  let resolved: ResolvedHeader;
  try {
    const [h, p, s] = splitCompact(token);
    resolved = trust.resolveHeader(h, INVOCATION_ALGORITHMS, time);
    decoded = decodeRest(resolved.header, h, p, s);
  } catch (e) {
    if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED) reject(codes.alg, `${what}: ${e.message} (allowed: ${INVOCATION_ALGORITHMS.join(", ")})`, e);
    reject(codes.malformed, `${what}: ${(e as Error).message}`, e);
  }
  if (decoded.header.typ !== typ) reject(codes.malformed, `${what}: typ must be ${typ}`);
  const signer = resolved.signer;
  if (signer === undefined) {
    reject(codes.untrusted, `${what}: the signer's certificate chain is not trusted: ${(resolved.chainError as Error)?.message ?? String(resolved.chainError)}`, resolved.chainError);
  }
  if (!verifyDecoded(decoded, signer.key)) reject(codes.signature, `${what}: signature does not verify with the key of the presented SVID`);
  const iss = decoded.payload.iss;
  if (typeof iss !== "string" || iss !== signer.spiffeId) {
    reject(codes.issuer, `${what}: iss ${describeClaim(iss)} is not the SVID's SPIFFE ID ${signer.spiffeId}`);
  }
  return { decoded, signer };
}

const INVOCATION_CODES = {
  missing: ErrorCodes.INVOCATION_MISSING,
  malformed: ErrorCodes.INVOCATION_MALFORMED,
  alg: ErrorCodes.INVOCATION_ALG,
  untrusted: ErrorCodes.INVOCATION_UNTRUSTED,
  signature: ErrorCodes.INVOCATION_SIGNATURE,
  issuer: ErrorCodes.INVOCATION_ISSUER_MISMATCH,
} as const;

/**
 * Verifies an invocation token against the call actually being made. Stops at the first
 * failure, in this order: parse and algorithm → x5c chain to the bundle → iss is the SVID's
 * ID → not revoked → aud is me → tool → argument digest → time window → jti unseen →
 * delegation chain → policy. Throws AztpError; the tool must not run unless this resolves.
 */
export async function verifyInvocation(token: unknown, options: VerifyInvocationOptions): Promise<VerifiedInvocation> {
  const now = options.now ?? new Date();
  const nowSec = now.getTime() / 1000;
  const leeway = options.leewaySeconds ?? DEFAULT_INVOCATION_LEEWAY_SECONDS;
  const { decoded, signer } = decodeSigned(token, INVOCATION_TYP, options.trust, now, INVOCATION_CODES, "invocation token");
  const c = decoded.payload as Partial<InvocationClaims> & Record<string, unknown>;
  if (c.sub !== undefined && c.sub !== c.iss) reject(ErrorCodes.INVOCATION_ISSUER_MISMATCH, "invocation token: sub differs from iss");

  if (options.trust.isRevoked(signer.spiffeId, signer.serial)) {
    reject(ErrorCodes.INVOCATION_REVOKED, `caller ${signer.spiffeId} (or an ancestor, or this SVID) is revoked`);
  }

  let me: string;
  try {
    me = SpiffeId.parse(options.audience).toString();
  } catch (e) {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, "verifyInvocation: audience is not a valid SPIFFE/AZTP ID", { cause: e });
  }
  if (typeof c.aud !== "string" || c.aud !== me) {
    reject(ErrorCodes.INVOCATION_AUDIENCE, `invocation token is for ${describeClaim(c.aud)}, not for ${me}`);
  }
  if (typeof c.tool !== "string" || c.tool !== options.tool) {
    reject(ErrorCodes.INVOCATION_TOOL_MISMATCH, `invocation token was signed for tool ${describeClaim(c.tool, 80)}, but ${describeClaim(options.tool, 80)} is being called`);
  }
  let digest: string;
  try {
    digest = canonicalDigest(options.args, "args");
  } catch (e) {
    // Arguments JCS cannot represent (a lone surrogate, `1e400` parsed as Infinity, nesting
    // past the limit, a __proto__ member) keep the canonical code: they were never signable.
    if (e instanceof AztpError) throw e;
    reject(ErrorCodes.JSON_UNREPRESENTABLE, `the received arguments cannot be canonicalised: ${(e as Error)?.message ?? String(e)}`, e);
  }
  if (c.args_sha256 !== digest) {
    reject(ErrorCodes.INVOCATION_ARGS_MISMATCH, "the arguments received are not the arguments the caller signed");
  }

  if (!isNumericDate(c.iat) || !isNumericDate(c.exp)) reject(ErrorCodes.INVOCATION_MALFORMED, "invocation token needs integer iat and exp");
  if (c.exp - c.iat > MAX_INVOCATION_LIFETIME_SECONDS || c.exp < c.iat) {
    reject(ErrorCodes.INVOCATION_LIFETIME, `invocation token lives ${c.exp - c.iat} s; at most ${MAX_INVOCATION_LIFETIME_SECONDS} s is accepted`);
  }
  if (nowSec - leeway >= c.exp) reject(ErrorCodes.INVOCATION_EXPIRED, `invocation token expired at ${describeTime(c.exp)}`);
  if (c.iat > nowSec + leeway) reject(ErrorCodes.INVOCATION_NOT_YET_VALID, `invocation token was issued in the future (${describeTime(c.iat)})`);
  if (typeof c.jti !== "string" || c.jti.length < 22 || c.jti.length > 128) {
    reject(ErrorCodes.INVOCATION_MALFORMED, "invocation token needs a jti of at least 128 bits");
  }
  if (c.trace !== undefined && typeof c.trace !== "string") reject(ErrorCodes.INVOCATION_MALFORMED, "trace must be a string");
  if (c.tcid !== undefined && (typeof c.tcid !== "string" || c.tcid.length === 0 || c.tcid.length > MAX_TOOL_CALL_ID_LENGTH)) {
    reject(ErrorCodes.INVOCATION_MALFORMED, `tcid must be a string of 1 to ${MAX_TOOL_CALL_ID_LENGTH} characters`);
  }
  if (c.ath !== undefined && typeof c.ath !== "string") reject(ErrorCodes.INVOCATION_MALFORMED, "ath must be a string");

  // The access token this call came with, when the token binds one (WIMSE `ath`): a token
  // lifted from one OAuth session cannot ride along with another.
  if (c.ath !== undefined) {
    if (options.accessToken === undefined) reject(ErrorCodes.INVOCATION_ACCESS_TOKEN, "the token is bound to an access token (ath), but the call carried none");
    if (c.ath !== tokenHash(options.accessToken)) reject(ErrorCodes.INVOCATION_ACCESS_TOKEN, "the call's access token is not the one the token is bound to (ath)");
  }

  // Remember the token only once its signature, identity, binding and time checked out, so a
  // forged or misdirected token cannot burn a caller's jti; the key is the claims, never the
  // token text (see replay.ts). Delegation and policy come after (DESIGN §4), so a token
  // refused by them is used up: its caller signs a new one.
  const fresh = await options.replay.checkAndRemember(`${c.iss}\n${c.jti}`, (c.exp + leeway) * 1000);
  if (!fresh) reject(ErrorCodes.INVOCATION_REPLAYED, `invocation token ${c.jti} was already used`);

  let delegation: VerifiedDelegation[] = [];
  if (c.dlg !== undefined) {
    delegation = verifyDelegationChain(c.dlg, { signer: signer.spiffeId, audience: me, tool: c.tool, exp: c.exp, trust: options.trust, now });
  }

  const claims = c as InvocationClaims;
  const result: VerifiedInvocation = { caller: signer.svid.id, serial: signer.serial, claims, delegation, token: token as string };
  if (options.policy !== undefined) {
    result.policy = decideInvocation(result, { policy: options.policy, args: options.args, now, relations: options.relations, sourceIp: options.sourceIp });
  }
  return result;
}
