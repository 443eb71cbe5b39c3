/**
 * SHA-256 as lower-case hex: audit entry hashes, certificate fingerprints, the digest a cut
 * string or a policy is named by. One copy, below every layer, so every layer spells a digest
 * the same way (text as its UTF-8).
 */
import { hash } from "node:crypto";

/** SHA-256 of `data` (a string is hashed as its UTF-8), as 64 lower-case hex digits. */
export function sha256Hex(data: string | Uint8Array): string {
  // The one-shot crypto.hash (Node 20.12+, the package's floor) skips a Hash object per call:
  // every audit entry pays this.
  return hash("sha256", data, "hex");
}
