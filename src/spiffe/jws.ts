/**
 * Compact JWS (RFC 7515) on node:crypto, for the per-call hot path.
 *
 * Strict on purpose: exactly three parts, canonical base64url (no padding, no whitespace, no
 * stray bits), header and payload JSON objects, `alg` from a caller-supplied allow-list and
 * matched to the key's type (no `none`, no HMAC, no EdDSA: algorithm confusion is refused
 * before any crypto runs), `crit` refused (we understand no extensions), `b64: false` refused.
 * jose is used in tests as an independent implementation to cross-check these tokens.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { b64uDecode, b64uEncode } from "./base64url.js";
import { algorithmForKey, isJwsAlgorithm, signRaw, verifyRaw, type JwsAlgorithm } from "./keys.js";

export interface JwsHeader {
  alg: JwsAlgorithm;
  typ?: string;
  kid?: string;
  x5c?: string[];
  [name: string]: unknown;
}

export interface DecodedJws<P = Record<string, unknown>> {
  header: JwsHeader;
  payload: P;
  /** `base64url(header) "." base64url(payload)`: the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

/** Tokens longer than this are refused before parsing (a DoS guard; an x5c chain of 3 P-256 certs is ~3 KB). */
export const MAX_TOKEN_LENGTH = 64 * 1024;

function malformed(rule: string): never {
  throw new AztpError(ErrorCodes.JWT_MALFORMED, `malformed JWS: ${rule}`);
}

function parseJsonObject(part: string, what: string): Record<string, unknown> {
  const bytes = b64uDecode(part);
  if (bytes === undefined) malformed(`${what} is not canonical base64url`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    malformed(`${what} is not JSON`);
  }
  if (!isJsonObject(value)) malformed(`${what} is not a JSON object`);
  return value;
}

/** Signs `payload` (an object, serialised as JSON) with `key`. `alg` defaults to the key's. */
export function signCompact(
  header: Omit<JwsHeader, "alg"> & { alg?: JwsAlgorithm },
  payload: object,
  key: KeyObject,
): string {
  const alg = header.alg ?? algorithmForKey(key);
  const h = b64uEncode(JSON.stringify({ ...header, alg }));
  const p = b64uEncode(JSON.stringify(payload));
  const signingInput = `${h}.${p}`;
  return `${signingInput}.${signRaw(alg, key, Buffer.from(signingInput, "ascii")).toString("base64url")}`;
}

/** The three segments of a compact JWS, checked for shape only. */
export function splitCompact(token: unknown): [string, string, string] {
  if (typeof token !== "string" || token.length === 0) malformed("token is empty or not a string");
  if (token.length > MAX_TOKEN_LENGTH) malformed(`token is longer than ${MAX_TOKEN_LENGTH} characters`);
  const first = token.indexOf(".");
  const second = first < 0 ? -1 : token.indexOf(".", first + 1);
  if (first < 0 || second < 0 || token.indexOf(".", second + 1) >= 0) malformed("expected three dot-separated parts");
  return [token.slice(0, first), token.slice(first + 1, second), token.slice(second + 1)];
}

/** Decodes a protected header segment; ERR_JWT_ALG_NOT_ALLOWED when `alg` is not in `algorithms`. */
export function decodeHeader(segment: string, algorithms: readonly JwsAlgorithm[]): JwsHeader {
  const header = parseJsonObject(segment, "header");
  const alg = header.alg;
  if (typeof alg !== "string") malformed("header has no alg");
  if (!isJwsAlgorithm(alg) || !algorithms.includes(alg)) {
    throw new AztpError(ErrorCodes.JWT_ALG_NOT_ALLOWED, `algorithm ${JSON.stringify(alg).slice(0, 40)} is not allowed`);
  }
  if (header.crit !== undefined) malformed("header has crit: no JWS extensions are understood");
  if (header.b64 !== undefined) malformed("header has b64: unencoded payloads are not accepted");
  if (header.kid !== undefined && typeof header.kid !== "string") malformed("kid is not a string");
  if (header.typ !== undefined && typeof header.typ !== "string") malformed("typ is not a string");
  return header as JwsHeader;
}

/** Decodes a payload segment (a JSON object), unverified: the caller checks the signature. */
export function decodePayload(segment: string): Record<string, unknown> {
  return parseJsonObject(segment, "payload");
}

/** Decodes a signature segment (canonical base64url, not empty). */
export function decodeSignature(segment: string): Buffer {
  if (segment.length === 0) malformed("signature is empty");
  const signature = b64uDecode(segment);
  if (signature === undefined) malformed("signature is not canonical base64url");
  return signature;
}

/** Decodes the payload and signature segments of a token whose header is already decoded. */
export function decodeRest<P = Record<string, unknown>>(
  header: JwsHeader,
  h: string,
  p: string,
  s: string,
): DecodedJws<P> {
  const payload = decodePayload(p) as P;
  return { header, payload, signingInput: `${h}.${p}`, signature: decodeSignature(s) };
}

/**
 * Splits and decodes a compact JWS without verifying it. Throws ERR_JWT_MALFORMED for any
 * structural defect and ERR_JWT_ALG_NOT_ALLOWED when `alg` is not in `algorithms`.
 */
export function decodeCompact<P = Record<string, unknown>>(
  token: unknown,
  algorithms: readonly JwsAlgorithm[],
): DecodedJws<P> {
  const [h, p, s] = splitCompact(token);
  return decodeRest<P>(decodeHeader(h, algorithms), h, p, s);
}

/** True if `decoded` was signed by `key` (whose type must fit the header's alg). */
export function verifyDecoded(decoded: DecodedJws<unknown>, key: KeyObject): boolean {
  return verifyRaw(decoded.header.alg, key, Buffer.from(decoded.signingInput, "ascii"), decoded.signature);
}

/**
 * The payload of a compact JWS, decoded WITHOUT any verification, or undefined. Only for what
 * must be read before or without trusting a token: a label in an audit record for a token that
 * failed, or the time to verify an old signature at. Never for a decision.
 */
export function peekClaims(token: unknown): Record<string, unknown> | undefined {
  if (typeof token !== "string" || token.length > MAX_TOKEN_LENGTH) return undefined;
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8"));
    return isJsonObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
