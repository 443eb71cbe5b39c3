/**
 * Proof Key for Code Exchange (RFC 7636), as OAuth 2.1 and the MCP authorization spec require
 * it: `S256` only (`plain` would put the verifier itself in the browser's URL), a verifier of
 * 43 to 128 unreserved characters, compared by its SHA-256 in constant time. `aztp serve` checks
 * it as an authorization server (the host's proof) and makes it as a relying party (its own to
 * the person's OpenID Provider).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

export const PKCE_METHOD = "S256";

/** RFC 7636 §4.1: code_verifier = 43*128unreserved. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** The S256 challenge is the base64url of a SHA-256: 43 characters. */
const CHALLENGE = /^[A-Za-z0-9\-_]{43}$/;

export function isCodeVerifier(v: unknown): v is string {
  return typeof v === "string" && VERIFIER.test(v);
}

export function isCodeChallenge(v: unknown): v is string {
  return typeof v === "string" && CHALLENGE.test(v);
}

export function codeChallengeOf(verifier: string): string {
  return createHash("sha256").update(verifier, "ascii").digest("base64url");
}

/** A fresh verifier (32 random bytes, 43 characters) and its S256 challenge. */
export function newPkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: codeChallengeOf(verifier) };
}

/** Whether `verifier` is the one `challenge` (S256) was made from. */
export function pkceMatches(verifier: unknown, challenge: string): boolean {
  if (!isCodeVerifier(verifier)) return false;
  const a = Buffer.from(codeChallengeOf(verifier));
  const b = Buffer.from(challenge);
  return a.length === b.length && timingSafeEqual(a, b);
}
