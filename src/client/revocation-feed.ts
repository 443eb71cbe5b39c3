/**
 * The revocations of a remote authority, checked on every call from a list held in memory:
 * GET /v1/revocations/TD gives the signed, sequenced list (authority/revocation-list.ts),
 * verified against the bundle feed's bundle of TD before it is believed.
 *
 * - Freshness comes from the signer, never from the fetch: a list is current only within its
 *   signed window (thisUpdate to nextUpdate, plus the clock tolerance), which the service
 *   renews every refresh hint even when nothing changed. Past it, isRevoked throws
 *   ERR_REVOCATION_LIST_EXPIRED (fails closed) however often a list is fetched: a cache or a
 *   man in the middle that keeps serving the list it saw first can delay a revocation by at
 *   most the window, never hide it. The first current list that gets through recovers by itself.
 * - Newer: a list replaces the held one only if it has a higher sequence, or the same sequence
 *   signed later (a renewal). A lower sequence is an old list replayed, refused with
 *   ERR_REVOCATION_LIST_REPLAYED while the held one stays, so a revocation once seen can never
 *   be un-seen; the same sequence signed no later is not taken either (no rollback in time),
 *   but quietly: replicas renew each on its own, so one may hand out an older signature of the
 *   same list, and that renews nothing.
 * - maxStalenessSeconds is the client's own bound, tighter than the window: a list signed
 *   (thisUpdate) longer ago than that is expired too. It also counts from the signed time.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import {
  DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS,
  verifyRevocationList,
  type RevocationList,
} from "../authority/revocation-list.js";
import type { RevocationChecker } from "../invocation/trust.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import type { AuthorityHttp } from "./authority-http.js";
import {
  DEFAULT_REFRESH_HINT_SECONDS,
  defaultWarning,
  FailureWarnings,
  RefreshLoop,
  type FeedWarning,
} from "./bundle-feed.js";

export interface RevocationFeedOptions {
  trustDomains: Iterable<string>;
  refreshHintSeconds?: number;
  /**
   * A bound of this client's, tighter than the lists' signed window: a list signed (its
   * thisUpdate) longer ago than this is expired too. Default: none, the window alone.
   */
  maxStalenessSeconds?: number | undefined;
  /** Clock skew tolerated between the service and this process, on either side of a list's window (default 30 s). */
  clockToleranceSeconds?: number | undefined;
  onWarning?: FeedWarning;
  /**
   * Called when a list does not verify against the bundle held (after a CA rotation it is
   * signed with a JWT key the held bundle may not have yet): refreshes the bundle, and the
   * list is checked once more against it.
   */
  refreshBundle?: (trustDomain: string) => Promise<unknown>;
}

interface Held {
  list: RevocationList;
  /**
   * Date.now() from which the list answers nothing: its nextUpdate (or thisUpdate + maxStaleness)
   * plus the tolerance.
   */
  deadAt: number;
}

export class RevocationFeed implements RevocationChecker {
  readonly #http: AuthorityHttp;
  readonly #bundles: BundleSource;
  readonly #trustDomains = new Set<string>();
  readonly #held = new Map<string, Held>();
  readonly #warnings: FailureWarnings;
  readonly #loop: RefreshLoop;
  #hint: number;
  readonly #maxStaleness: number | undefined;
  readonly #leeway: number;
  readonly #refreshBundle: ((trustDomain: string) => Promise<unknown>) | undefined;
  /** One fetch per trust domain at a time: a revoke's refresh and the loop's share it. */
  readonly #inflight = new Map<string, Promise<RevocationList>>();

  constructor(http: AuthorityHttp, bundles: BundleSource, options: RevocationFeedOptions) {
    this.#http = http;
    this.#bundles = bundles;
    for (const td of options.trustDomains) this.#trustDomains.add(TrustDomain.parse(td).name);
    this.#hint = options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
    this.#maxStaleness = nonNegative("maxStalenessSeconds", options.maxStalenessSeconds);
    this.#leeway =
      nonNegative("clockToleranceSeconds", options.clockToleranceSeconds) ?? DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS;
    this.#warnings = new FailureWarnings(options.onWarning ?? defaultWarning);
    this.#refreshBundle = options.refreshBundle;
    this.#loop = new RefreshLoop(
      () => this.#interval(),
      () => this.refreshAll().catch(() => undefined),
    );
  }

  /**
   * The hint, or half the time a held list has left if that is sooner: a client whose hint is
   * longer than the service's window still renews its lists before they end.
   */
  #interval(): number {
    let seconds = this.#hint;
    const now = Date.now();
    for (const h of this.#held.values()) {
      const left = (h.deadAt - now) / 1000;
      if (left > 0) seconds = Math.min(seconds, left / 2);
    }
    return seconds;
  }

  get refreshHintSeconds(): number {
    return this.#hint;
  }

  set refreshHintSeconds(seconds: number) {
    this.#hint = seconds;
  }

  /** The client's own bound on a list's age (by its signed thisUpdate), if it set one. */
  get maxStalenessSeconds(): number | undefined {
    return this.#maxStaleness;
  }

  /** Clock skew tolerated on either side of a list's window. */
  get clockToleranceSeconds(): number {
    return this.#leeway;
  }

  get trustDomains(): string[] {
    return [...this.#trustDomains];
  }

  addTrustDomain(trustDomain: string): void {
    this.#trustDomains.add(TrustDomain.parse(trustDomain).name);
  }

  /** The held list's sequence for `trustDomain`, if one is held. */
  sequence(trustDomain: string): number | undefined {
    return this.#held.get(TrustDomain.parse(trustDomain).name)?.list.sequence;
  }

  /** The held list of `trustDomain`, if any (however old). */
  list(trustDomain: string): RevocationList | undefined {
    return this.#held.get(TrustDomain.parse(trustDomain).name)?.list;
  }

  /**
   * Fetches, verifies and (if newer) holds `trustDomain`'s list; returns the list now held.
   * Rejects with ERR_REVOCATION_LIST_INVALID (signature, issuer, shape),
   * ERR_REVOCATION_LIST_EXPIRED (past its window: a stale list served again),
   * ERR_REVOCATION_LIST_NOT_YET_VALID, ERR_REVOCATION_LIST_WINDOW_MISSING,
   * ERR_REVOCATION_LIST_REPLAYED (lower sequence) or the transport's errors; in every such
   * case the held list stays, and so does the end of its window.
   */
  refresh(trustDomain: string): Promise<RevocationList> {
    const td = TrustDomain.parse(trustDomain).name;
    const running = this.#inflight.get(td);
    if (running !== undefined) return running;
    const p = this.#fetch(td).finally(() => this.#inflight.delete(td));
    this.#inflight.set(td, p);
    return p;
  }

  /** Like refresh, but always a new fetch started after this call (a revoke must see its own effect). */
  async refreshAfterWrite(trustDomain: string): Promise<RevocationList> {
    const td = TrustDomain.parse(trustDomain).name;
    await this.#inflight.get(td)?.catch(() => undefined);
    return this.refresh(td);
  }

  async #fetch(td: string): Promise<RevocationList> {
    const answer = await this.#http.get<{ list?: unknown }>(`v1/revocations/${encodeURIComponent(td)}`, {
      auth: false,
    });
    if (typeof answer.list !== "string") {
      throw new AztpError(
        ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
        `GET /v1/revocations/${td}: the answer has no "list" string`,
        { rule: "shape" },
      );
    }
    const options = { trustDomain: td, leewaySeconds: this.#leeway };
    let list: RevocationList;
    try {
      list = verifyRevocationList(answer.list, this.#bundles, options);
    } catch (e) {
      if (
        this.#refreshBundle === undefined ||
        !(e instanceof AztpError) ||
        e.code !== ErrorCodes.REVOCATION_LIST_INVALID
      )
        throw e;
      // The bundle comes over the authenticated channel (or the loopback one), so fetching it
      // anew cannot be steered by the list; a forged list still fails the second check.
      await this.#refreshBundle(td).catch(() => undefined);
      list = verifyRevocationList(answer.list, this.#bundles, options);
    }
    return this.offer(list);
  }

  /**
   * Holds a verified `list` if it is current and newer than the one held (see the module's
   * comment); returns the list now held. ERR_REVOCATION_LIST_EXPIRED for a list past its
   * window (or past maxStalenessSeconds), ERR_REVOCATION_LIST_REPLAYED for a lower sequence.
   */
  offer(list: RevocationList): RevocationList {
    const deadAt = this.#deadAt(list);
    if (Date.now() >= deadAt) throw this.#expired(list, deadAt);
    const held = this.#held.get(list.trustDomain);
    if (held !== undefined) {
      if (list.sequence < held.list.sequence) {
        throw new AztpError(
          ErrorCodes.REVOCATION_LIST_REPLAYED,
          `the revocation list of ${list.trustDomain} fetched has sequence ${list.sequence}, lower than the ${held.list.sequence} held: an old list replayed, refused (the held one stays)`,
        );
      }
      // The same list signed no later renews nothing (and is what a frozen feed serves).
      if (list.sequence === held.list.sequence && list.thisUpdate.getTime() <= held.list.thisUpdate.getTime())
        return held.list;
    }
    // A higher sequence is taken even if signed earlier (replicas' clocks differ by a little):
    // it is the newer state, and its own window still bounds it.
    this.#held.set(list.trustDomain, { list, deadAt });
    this.#trustDomains.add(list.trustDomain);
    return list;
  }

  #deadAt(list: RevocationList): number {
    const leeway = this.#leeway * 1000;
    const end = list.nextUpdate.getTime() + leeway;
    return this.#maxStaleness === undefined
      ? end
      : Math.min(end, list.thisUpdate.getTime() + this.#maxStaleness * 1000 + leeway);
  }

  #expired(list: RevocationList, deadAt: number): AztpError {
    const bound =
      deadAt < list.nextUpdate.getTime() + this.#leeway * 1000
        ? `it was signed at ${list.thisUpdate.toISOString()}, longer ago than the ${this.#maxStaleness} s this client allows (maxStalenessSeconds)`
        : `it was valid from ${list.thisUpdate.toISOString()} until ${list.nextUpdate.toISOString()} (its signed window)`;
    return new AztpError(
      ErrorCodes.REVOCATION_LIST_EXPIRED,
      `the revocation list of ${list.trustDomain} (sequence ${list.sequence}) is expired: ${bound}, with ${this.#leeway} s of clock tolerance. ` +
        "Revocation checks fail closed until a list the authority signed since arrives; fetching this one again does not make it fresh",
      { rule: "expired" },
    );
  }

  /** Refreshes every trust domain's list; failures are warned about and the first rethrown. */
  async refreshAll(): Promise<void> {
    let first: unknown;
    await Promise.all(
      [...this.#trustDomains].map(async (td) => {
        try {
          await this.refresh(td);
          this.#warnings.succeeded(td);
        } catch (e) {
          first ??= e;
          this.#warnings.failed(td, e, "revocation refresh");
        }
      }),
    );
    if (first !== undefined) throw first;
  }

  /**
   * The identity `id` or the SVID `serial` is on its trust domain's list (a revoked
   * identity's descendants are on it too). Throws ERR_REVOCATION_LIST_MISSING when no list is
   * held for the trust domain, ERR_REVOCATION_LIST_EXPIRED when the held one is past its window.
   */
  isRevoked(id: string, serial?: string): boolean {
    let parsed: SpiffeId;
    try {
      parsed = SpiffeId.parse(id);
    } catch {
      return true; // not an ID at all: never "not revoked"
    }
    return this.isRevokedParsed(parsed.toString(), parsed.trustDomain, serial);
  }

  /**
   * isRevoked for an ID already in its normalised spiffe:// form `key`, of trust domain `td`:
   * two set lookups, for callers that parse each ID once (the check is on every call).
   */
  isRevokedParsed(key: string, td: string, serial?: string): boolean {
    const id = key;
    const held = this.#held.get(td);
    if (held === undefined) {
      throw new AztpError(
        ErrorCodes.REVOCATION_LIST_MISSING,
        `no revocation list is held for trust domain ${td}, so ${id} cannot be checked (the remote authority serves ${[...this.#trustDomains].join(", ") || "none"})`,
      );
    }
    if (Date.now() >= held.deadAt) throw this.#expired(held.list, held.deadAt);
    return (serial !== undefined && held.list.serials.has(serial)) || held.list.identities.has(key);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): void {
    this.#loop.stop();
  }
}

function nonNegative(name: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `${name} must be a number of seconds, 0 or more, got ${String(v)}`,
    );
  return v;
}
