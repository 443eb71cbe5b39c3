/**
 * Issuance rate limit: one token bucket per API key, in this process. Replicas do not share
 * buckets (that would put a store round trip on every issuance), so N replicas allow up to N
 * times the rate in total; docs/serve.md says so.
 */
export interface RateLimitOptions {
  /** Tokens added per second. */
  rate: number;
  /** Bucket size: how many requests may come at once after a quiet spell. */
  burst: number;
  now?: () => number;
}

/** Above this many keys, buckets that are full again (idle keys) are dropped. */
const MAX_BUCKETS = 10_000;

export class TokenBuckets {
  readonly rate: number;
  readonly burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: RateLimitOptions) {
    this.rate = options.rate;
    this.burst = options.burst;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Takes a token for `key`: 0 when allowed, else the seconds to wait (≥ 1, for Retry-After). */
  take(key: string): number {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      if (this.#buckets.size >= MAX_BUCKETS) this.#sweep(now);
      b = { tokens: this.burst, at: now };
      this.#buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }

  #sweep(now: number): void {
    for (const [k, b] of this.#buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.#buckets.delete(k);
    }
    // Still full of busy keys: forget the oldest half rather than grow without bound.
    if (this.#buckets.size >= MAX_BUCKETS) {
      let n = Math.floor(this.#buckets.size / 2);
      for (const k of this.#buckets.keys()) {
        if (n-- <= 0) break;
        this.#buckets.delete(k);
      }
    }
  }
}
