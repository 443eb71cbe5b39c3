/**
 * Signatures already checked: a caller presents the same token (a bearer access token, a
 * person's on-behalf-of token) with every request for its lifetime, and a signature is a pure
 * function of the token's bytes and the key, so checking it again proves nothing new (measured:
 * about a sixth of a bearer call's added time over HTTP, and most of what a person's delegation
 * adds to a call). Keyed by the whole compact token (its signature included) and remembered with
 * the exact key object it verified under: a key rotated out, or another key for the same kid, is
 * checked afresh. Every other check (issuer, time window, audience, claims, revocation) still
 * runs on every request; only tokens that verified get in, so nobody can fill it with forgeries.
 */
import type { KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";

export class VerifiedSignatures {
  readonly #cache: LRUCache<string, KeyObject>;
  constructor(max = 1024) {
    this.#cache = new LRUCache({ max });
  }
  has(token: string, key: KeyObject): boolean {
    return this.#cache.get(token) === key;
  }
  add(token: string, key: KeyObject): void {
    this.#cache.set(token, key);
  }
}
