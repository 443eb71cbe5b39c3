/**
 * The revocations of a remote authority, checked on every call from a list held in memory:
 * GET /v1/revocations/TD gives the signed, sequenced list (authority/revocation-list.ts),
 * verified against the bundle feed's bundle of TD before it is believed.
 *
 * - Sequence: a list replaces the held one only with a higher sequence. An equal one is the
 *   same list (kept, and it counts as a refresh); a lower one is an old list replayed, refused
 *   with ERR_REVOCATION_LIST_REPLAYED while the held one stays, so a revocation once seen can
 *   never be un-seen by serving an older list.
 * - Staleness: while the service is down the held list goes on answering, until it has not
 *   been refreshed for `maxStalenessSeconds` (default 10 refresh hints); then isRevoked throws
 *   ERR_REVOCATION_LIST_EXPIRED (fails closed: a revocation made meanwhile would be missed).
 *   The next refresh that gets through recovers by itself.
 * - Freshness counts from when this process last fetched and verified a list (its own clock),
 *   not from the list's iat: a server whose clock is off, or that signs a list once per
 *   sequence, cannot make a fresh list look stale or a stale one fresh.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { verifyRevocationList, type RevocationList } from "../authority/revocation-list.js";
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
  /** How long a list may go unrefreshed before isRevoked fails closed (default 10 refresh hints). */
  maxStalenessSeconds?: number;
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
  /** Date.now() when a list of at least this sequence was last fetched and verified. */
  refreshedAt: number;
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
  readonly #refreshBundle: ((trustDomain: string) => Promise<unknown>) | undefined;
  /** One fetch per trust domain at a time: a revoke's refresh and the loop's share it. */
  readonly #inflight = new Map<string, Promise<RevocationList>>();

  constructor(http: AuthorityHttp, bundles: BundleSource, options: RevocationFeedOptions) {
    this.#http = http;
    this.#bundles = bundles;
    for (const td of options.trustDomains) this.#trustDomains.add(TrustDomain.parse(td).name);
    this.#hint = options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
    this.#maxStaleness = options.maxStalenessSeconds;
    this.#warnings = new FailureWarnings(options.onWarning ?? defaultWarning);
    this.#refreshBundle = options.refreshBundle;
    this.#loop = new RefreshLoop(
      () => this.#hint,
      () => this.refreshAll().catch(() => undefined),
    );
  }

  get refreshHintSeconds(): number {
    return this.#hint;
  }

  set refreshHintSeconds(seconds: number) {
    this.#hint = seconds;
  }

  /** How long a held list answers without a refresh. */
  get maxStalenessSeconds(): number {
    return this.#maxStaleness ?? 10 * Math.max(1, this.#hint);
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
   * Rejects with ERR_REVOCATION_LIST_INVALID (signature, issuer, shape), ERR_REVOCATION_LIST_REPLAYED
   * (lower sequence) or the transport's errors; in every such case the held list stays and
   * its age goes on growing.
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
    const startedAt = Date.now();
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
    let list: RevocationList;
    try {
      list = verifyRevocationList(answer.list, this.#bundles, { trustDomain: td });
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
      list = verifyRevocationList(answer.list, this.#bundles, { trustDomain: td });
    }
    return this.offer(list, startedAt);
  }

  /** Holds a verified `list` under the sequence rule; `fetchedAt` is when its fetch began. */
  offer(list: RevocationList, fetchedAt = Date.now()): RevocationList {
    const held = this.#held.get(list.trustDomain);
    if (held !== undefined && list.sequence < held.list.sequence) {
      throw new AztpError(
        ErrorCodes.REVOCATION_LIST_REPLAYED,
        `the revocation list of ${list.trustDomain} fetched has sequence ${list.sequence}, lower than the ${held.list.sequence} held: an old list replayed, refused (the held one stays)`,
      );
    }
    // Equal: the same list; only its freshness moves (never backwards, with fetches racing).
    const keep = held !== undefined && list.sequence === held.list.sequence ? held.list : list;
    this.#held.set(list.trustDomain, { list: keep, refreshedAt: Math.max(fetchedAt, held?.refreshedAt ?? 0) });
    this.#trustDomains.add(list.trustDomain);
    return keep;
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
   * held for the trust domain, ERR_REVOCATION_LIST_EXPIRED when the held one is too old.
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
    const age = (Date.now() - held.refreshedAt) / 1000;
    if (age > this.maxStalenessSeconds) {
      throw new AztpError(
        ErrorCodes.REVOCATION_LIST_EXPIRED,
        `the revocation list of ${td} (sequence ${held.list.sequence}) was last refreshed ${Math.round(age)} s ago, over the ${this.maxStalenessSeconds} s allowed: revocation checks fail closed until the remote authority answers again`,
      );
    }
    return (serial !== undefined && held.list.serials.has(serial)) || held.list.identities.has(key);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): void {
    this.#loop.stop();
  }
}
