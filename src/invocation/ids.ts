/**
 * SPIFFE IDs in their one spelling (spiffe://, as signed into tokens), parsed once per
 * distinct text: a verifier compares against the same few IDs (its own, its peers') on every
 * call, and SpiffeId.parse is a measurable share of a call. Only IDs that parse are kept; the
 * map is cleared when it grows past a bound, so a caller passing ever new IDs costs a parse
 * each, never unbounded memory.
 */
import { SpiffeId } from "../spiffe/spiffeid.js";

const MAX_CACHED_IDS = 1024;
const canonical = new Map<string, string>();

/** `SpiffeId.parse(id).toString()`, cached. Throws what SpiffeId.parse throws. */
export function canonicalId(id: string): string {
  let hit = canonical.get(id);
  if (hit === undefined) {
    hit = SpiffeId.parse(id).toString();
    if (canonical.size >= MAX_CACHED_IDS) canonical.clear();
    canonical.set(id, hit);
  }
  return hit;
}
