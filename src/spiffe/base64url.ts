/**
 * Strict base64url (RFC 4648 §5, no padding, no whitespace), as RFC 7515 requires.
 * Node's decoder silently skips bad characters and padding; a verifier that keyed anything
 * on the token text would then see two spellings of one token. We refuse the second spelling.
 */
const STRICT = /^[A-Za-z0-9_-]*$/;

export function b64uEncode(data: Uint8Array | string): string {
  return (typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data)).toString("base64url");
}

/** Returns undefined on any non-canonical input (bad characters, padding, length 1 mod 4, stray bits). */
export function b64uDecode(text: string): Buffer | undefined {
  if (!STRICT.test(text) || text.length % 4 === 1) return undefined;
  const buf = Buffer.from(text, "base64url");
  // Non-zero trailing bits give a second spelling of the same bytes: reject it.
  if (buf.toString("base64url") !== text) return undefined;
  return buf;
}
