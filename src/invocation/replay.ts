/**
 * Replay protection: each invocation token is accepted once. Keys are built from the claims
 * (issuer and jti), never from the token text: jose and node:crypto accept several spellings
 * of one signed token (the high-S twin of an ECDSA signature, for one), so a cache keyed on
 * the string would let a re-encoded replay through.
 */
import { AztpError, ErrorCodes } from "../errors.js";

export interface ReplayCache {
  /**
   * Records `key` until `expiresAtMs` and returns true, or returns false if it was already
   * recorded and has not yet expired. Must be atomic (check and set as one step).
   */
  checkAndRemember(key: string, expiresAtMs: number): boolean | Promise<boolean>;
}

export interface MemoryReplayCacheOptions {
  /** Upper bound on remembered tokens; when full and nothing has expired, new tokens are refused. */
  maxEntries?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * A bounded in-memory replay cache. Entries live until their token's expiry (plus leeway, as
 * given by the verifier), then are swept. Sweeping is amortised: expired entries are dropped
 * in insertion order, which is close to expiry order because token lifetimes are short and capped.
 */
export class MemoryReplayCache implements ReplayCache {
  readonly #seen = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;
  #sweptAt = -Infinity;

  constructor(options: MemoryReplayCacheOptions = {}) {
    this.#max = options.maxEntries ?? 1_000_000;
    this.#now = options.now ?? Date.now;
  }

  checkAndRemember(key: string, expiresAtMs: number): boolean {
    const now = this.#now();
    const prev = this.#seen.get(key);
    if (prev !== undefined && prev > now) return false;
    if (prev !== undefined) this.#seen.delete(key);
    // A full sweep costs a pass over every entry: at most one a second, not one per refusal.
    if (this.#seen.size >= this.#max && now - this.#sweptAt >= 1000) {
      this.#sweptAt = now;
      this.sweep(now);
    }
    if (this.#seen.size >= this.#max) {
      // Fail closed: forgetting a live entry would let its token be replayed.
      throw new AztpError(
        ErrorCodes.INVOCATION_REPLAYED,
        `replay cache is full (${this.#max} live tokens): refusing new tokens until some expire`,
      );
    }
    this.#seen.set(key, expiresAtMs);
    // Opportunistic sweep of the oldest few, so the map does not grow with dead entries.
    let n = 0;
    for (const [k, exp] of this.#seen) {
      if (exp > now || n++ >= 4) break;
      this.#seen.delete(k);
    }
    return true;
  }

  /** Drops every expired entry. */
  sweep(now = this.#now()): void {
    for (const [k, exp] of this.#seen) if (exp <= now) this.#seen.delete(k);
  }

  get size(): number {
    return this.#seen.size;
  }
}
