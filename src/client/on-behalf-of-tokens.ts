/**
 * The on-behalf-of tokens one identity holds for the people it acts for (DESIGN §13): a person's
 * token (or a parent agent's on-behalf-of token, to extend) exchanged once through
 * `AgentIdentity.actFor` and kept, so the calls of a run for that person each sign the same
 * token instead of asking the authority every time.
 *
 * Kept per exact subject token and per SVID key: a token is bound to the key it was exchanged
 * for (`cnf.jkt`), so after a rotation (`identity.signer` changes) it is exchanged again, and
 * again a minute before it expires (unless it already lasts as long as its subject token, which
 * caps it: exchanging again would give nothing longer). Concurrent asks for one subject wait on
 * one exchange. A failed exchange is not kept: the next call asks again, and is told why.
 *
 * Nothing here is a "current person": a caller names the subject token on every ask, and the
 * key of the cache is that token, so one run's person never answers another's ask.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { isOnBehalfOfToken } from "../invocation/on-behalf-of.js";
import type { TokenExchangeResult } from "../people/token-exchange.js";
import { peekClaims } from "../spiffe/jws.js";
import type { SvidSigner } from "../spiffe/signer.js";

/** What an identity needs to be for this: it exchanges, and its signer changes when its key does. */
export interface ActingIdentity {
  readonly spiffeId: string;
  readonly signer: SvidSigner;
  actFor(subjectToken: string): Promise<TokenExchangeResult>;
}

/** Renewed this long before it expires: it must outlive the invocation tokens signed with it. */
const RENEW_BEFORE_MS = 60_000;
/** How many subject tokens are kept at once (the oldest go first; expired ones before them). */
const MAX_HELD = 1024;

interface Held {
  readonly signer: SvidSigner;
  readonly token: Promise<string>;
  /** When to exchange again: a minute before expiry, or never (capped by the subject's own expiry). */
  renewAt: number;
  expiresAt: number;
}

/** A token a caller passed for a person: a non-empty string, or a clear error naming where it came from. */
export function checkSubjectToken(value: unknown, where: string): string {
  if (typeof value !== "string" || value.length === 0 || value.length > 16_384)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `${where} must be a person's token (an ID token or a JWT access token) or an on-behalf-of token, as a string`,
    );
  return value;
}

export class OnBehalfOfTokens {
  readonly #identity: ActingIdentity;
  readonly #held = new Map<string, Held>();

  constructor(identity: ActingIdentity) {
    this.#identity = identity;
  }

  /**
   * The token to sign a call for `token`'s person with: a person's token exchanged (once) for one
   * bound to this identity; an on-behalf-of token as it is (already exchanged for this identity:
   * its callee checks that it is bound to the key that signs, and refuses it otherwise).
   */
  for(token: string): Promise<string> {
    // A person's token held already is not read again (its header parsed) on each call.
    return this.#fresh(token) ?? (isOnBehalfOfToken(token) ? Promise.resolve(token) : this.exchange(token));
  }

  /** `subject` exchanged for a token bound to this identity's current key: kept until rotation or near expiry. */
  exchange(subject: string): Promise<string> {
    const fresh = this.#fresh(subject);
    if (fresh !== undefined) return fresh;
    const now = Date.now();
    const signer = this.#identity.signer;
    const token = this.#identity.actFor(subject).then((r) => {
      const entry = this.#held.get(subject);
      if (entry?.token === token) {
        const exp = r.expiresAt.getTime();
        const cap = subjectExpiry(subject);
        entry.expiresAt = exp;
        // Capped by its subject's expiry: a new exchange would end no later, so keep it to the end.
        entry.renewAt = cap !== undefined && exp >= cap ? exp : exp - RENEW_BEFORE_MS;
      }
      return r.token;
    });
    const entry: Held = { signer, token, renewAt: Infinity, expiresAt: Infinity };
    this.#held.delete(subject); // re-inserted last: the map's order is the eviction order
    this.#held.set(subject, entry);
    token.catch(() => {
      if (this.#held.get(subject) === entry) this.#held.delete(subject);
    });
    if (this.#held.size > MAX_HELD) this.#evict(now);
    return token;
  }

  #fresh(subject: string): Promise<string> | undefined {
    const held = this.#held.get(subject);
    if (held === undefined || held.signer !== this.#identity.signer) return undefined;
    const now = Date.now();
    return now < held.renewAt && now < held.expiresAt ? held.token : undefined;
  }

  #evict(now: number): void {
    for (const [k, v] of this.#held) if (v.expiresAt <= now) this.#held.delete(k);
    for (const k of this.#held.keys()) {
      if (this.#held.size <= MAX_HELD) break;
      this.#held.delete(k);
    }
  }
}

/** The subject token's own `exp` (ms), read without checking it: the exchange checks it. */
function subjectExpiry(token: string): number | undefined {
  const exp = peekClaims(token)?.exp;
  return typeof exp === "number" ? exp * 1000 : undefined;
}
