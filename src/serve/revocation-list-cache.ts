/**
 * The signed revocation list the service hands out, one per trust domain per replica: signed
 * again when the revocations change (their sequence) or once the one held is a refresh hint
 * old, never per request. So a list served is at most a hint old, and valid for the window
 * from when it was signed: the window renews every hint even when nothing changed, which is
 * what lets a verifier tell a current list from one a cache or a man in the middle keeps
 * serving (authority/revocation-list.ts).
 */
import type { ServeAuthority } from "./open.js";

/** The window is this many refresh hints unless the operator says otherwise (docs/serve.md says why). */
export const REVOCATION_WINDOW_HINTS = 5;

interface Signed {
  sequence: number;
  /** The list's thisUpdate, in ms (whole seconds, as signed). */
  signedAt: number;
  token: string;
}

export class RevocationListCache {
  readonly #authority: Pick<ServeAuthority, "signedRevocationList" | "revocationSequence">;
  readonly #renewMs: number;
  readonly #validitySeconds: number;
  readonly #held = new Map<string, Signed>();

  constructor(
    authority: Pick<ServeAuthority, "signedRevocationList" | "revocationSequence">,
    options: { renewEverySeconds: number; validitySeconds: number },
  ) {
    this.#authority = authority;
    this.#renewMs = options.renewEverySeconds * 1000;
    this.#validitySeconds = options.validitySeconds;
  }

  /** The list of `trustDomain` as of the authority's current state (refresh it first), signed at most a hint ago. */
  async get(trustDomain: string): Promise<string> {
    const sequence = this.#authority.revocationSequence();
    const now = Date.now();
    const held = this.#held.get(trustDomain);
    if (held !== undefined && held.sequence === sequence && now < held.signedAt + this.#renewMs) return held.token;
    const token = await this.#authority.signedRevocationList(trustDomain, {
      validitySeconds: this.#validitySeconds,
      now: new Date(now),
    });
    this.#held.set(trustDomain, { sequence, signedAt: Math.floor(now / 1000) * 1000, token });
    return token;
  }
}
