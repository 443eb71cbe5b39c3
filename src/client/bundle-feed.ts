/**
 * The trust bundles of a remote authority, as a BundleSource verifiers hold: fetched from its
 * SPIFFE bundle endpoint (/.well-known/spiffe/bundle/TD), refreshed every spiffe_refresh_hint
 * seconds in the background, and answered from memory on every check (no network on a call).
 *
 * A fetched bundle replaces the held one only if its spiffe_sequence is not lower: a lower one
 * is an old bundle replayed (by a cache or someone in the path) and is refused with a warning,
 * so trust never rolls back to keys the authority has since retired. Over https the fetch
 * itself is checked against the bundle held (the transport's `roots`), so the first bundle,
 * the one given as trustBundle, anchors every later one.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, TrustBundle, type BundleSource, type SpiffeBundleDocument } from "../spiffe/bundle.js";
import { TrustDomain } from "../spiffe/spiffeid.js";
import type { AuthorityHttp } from "./authority-http.js";

/** Where a feed reports what it refused or could not fetch (default: process.emitWarning). */
export type FeedWarning = (error: AztpError) => void;

export const DEFAULT_REFRESH_HINT_SECONDS = 30;

export function defaultWarning(error: AztpError): void {
  process.emitWarning(error.message, { type: "AztpFeedWarning", code: error.code });
}

/**
 * Warns about a trust domain's failed refreshes once per kind of failure, not once per hint:
 * an outage of an hour at a 1 s hint is one warning, and a success makes the next failure
 * worth saying again.
 */
export class FailureWarnings {
  readonly #warn: FeedWarning;
  readonly #last = new Map<string, string>();

  constructor(warn: FeedWarning) {
    this.#warn = warn;
  }

  failed(trustDomain: string, e: unknown, what: string): void {
    const error =
      e instanceof AztpError
        ? e
        : new AztpError(ErrorCodes.UNEXPECTED, `${what} of ${trustDomain}: ${(e as Error)?.message ?? String(e)}`, {
            cause: e,
          });
    if (this.#last.get(trustDomain) === error.code) return;
    this.#last.set(trustDomain, error.code);
    this.#warn(error);
  }

  succeeded(trustDomain: string): void {
    this.#last.delete(trustDomain);
  }
}

/** A timer loop that runs `tick` every `seconds()` (never overlapping itself), unref'd. */
export class RefreshLoop {
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  readonly #seconds: () => number;
  readonly #tick: () => Promise<void>;

  constructor(seconds: () => number, tick: () => Promise<void>) {
    this.#seconds = seconds;
    this.#tick = tick;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(): void {
    if (this.#stopped) return;
    // At least a second apart whatever the hint says: a hint of 0 must not become a busy loop.
    this.#timer = setTimeout(
      () => {
        this.#tick().finally(() => this.#arm());
      },
      Math.max(1, this.#seconds()) * 1000,
    );
    // A verifier's refresh must never keep a process alive that would otherwise exit.
    this.#timer.unref();
  }
}

export interface BundleFeedOptions {
  /** The bundles trusted before the first fetch (from trustBundle): they anchor the TLS check. */
  initial?: Iterable<TrustBundle>;
  /** Used when a bundle carries no spiffe_refresh_hint. */
  refreshHintSeconds?: number;
  /** The hint set by the caller: wins over the bundles' own. */
  fixedRefreshHintSeconds?: number | undefined;
  onWarning?: FeedWarning;
}

export class BundleFeed implements BundleSource {
  readonly #http: AuthorityHttp;
  readonly #set = new BundleSet();
  readonly #trustDomains = new Set<string>();
  readonly #warnings: FailureWarnings;
  #fallbackHint: number;
  readonly #fixedHint: number | undefined;
  readonly #loop: RefreshLoop;

  constructor(http: AuthorityHttp, options: BundleFeedOptions = {}) {
    this.#http = http;
    for (const b of options.initial ?? []) {
      this.#set.add(b);
      this.#trustDomains.add(b.trustDomain);
    }
    this.#fallbackHint = options.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
    this.#fixedHint = options.fixedRefreshHintSeconds;
    this.#warnings = new FailureWarnings(options.onWarning ?? defaultWarning);
    this.#loop = new RefreshLoop(
      () => this.refreshHintSeconds,
      () => this.refreshAll().catch(() => undefined),
    );
  }

  /** The trust domains this feed fetches. */
  get trustDomains(): string[] {
    return [...this.#trustDomains];
  }

  addTrustDomain(trustDomain: string): void {
    this.#trustDomains.add(TrustDomain.parse(trustDomain).name);
  }

  set fallbackRefreshHintSeconds(seconds: number) {
    this.#fallbackHint = seconds;
  }

  /** The shortest hint any held bundle asks for (else the fallback): how often the loop runs. */
  get refreshHintSeconds(): number {
    if (this.#fixedHint !== undefined) return this.#fixedHint;
    let hint: number | undefined;
    for (const b of this.#set)
      if (b.refreshHint !== undefined && b.refreshHint > 0) hint = Math.min(hint ?? Infinity, b.refreshHint);
    return hint ?? this.#fallbackHint;
  }

  /** Changes whenever a held bundle is replaced (BundleSource contract: verifier caches key on it). */
  get version(): number {
    return this.#set.version;
  }

  getBundleForTrustDomain(td: string): TrustBundle | undefined {
    return this.#set.getBundleForTrustDomain(td);
  }

  bundleSet(): BundleSet {
    return this.#set;
  }

  /**
   * Fetches `trustDomain`'s bundle and holds it if its sequence is not lower than the held
   * one's. Returns true when the held bundle was replaced. A lower sequence is
   * ERR_BUNDLE_REPLAYED (the held bundle stays); a malformed bundle is the parser's error.
   */
  async refresh(trustDomain: string): Promise<boolean> {
    const td = TrustDomain.parse(trustDomain).name;
    const doc = await this.#http.get<SpiffeBundleDocument>(`.well-known/spiffe/bundle/${encodeURIComponent(td)}`, {
      auth: false,
    });
    const fetched = TrustBundle.parseSpiffe(doc, td);
    return this.offer(fetched);
  }

  /** Holds `bundle` under the sequence rule (see refresh); exposed for bundles that come another way. */
  offer(bundle: TrustBundle): boolean {
    const held = this.#set.getBundleForTrustDomain(bundle.trustDomain);
    this.#trustDomains.add(bundle.trustDomain);
    if (held !== undefined && held.sequence !== undefined) {
      const seq = bundle.sequence ?? -1;
      if (seq < held.sequence) {
        throw new AztpError(
          ErrorCodes.BUNDLE_REPLAYED,
          `the bundle of ${bundle.trustDomain} fetched has spiffe_sequence ${bundle.sequence ?? "(none)"}, lower than the ${held.sequence} held: an old bundle replayed, refused (the held one stays)`,
        );
      }
      // The same bundle again: keep the held object, so verifier caches keyed on it stay warm.
      if (seq === held.sequence && sameBundle(held, bundle)) return false;
    } else if (held !== undefined && sameBundle(held, bundle)) {
      return false;
    }
    this.#set.add(bundle);
    return true;
  }

  /** Refreshes every trust domain; failures are warned about (and the first rethrown), the held bundles stay. */
  async refreshAll(): Promise<void> {
    let first: unknown;
    for (const td of this.#trustDomains) {
      try {
        await this.refresh(td);
        this.#warnings.succeeded(td);
      } catch (e) {
        first ??= e;
        this.#warnings.failed(td, e, "bundle refresh");
      }
    }
    if (first !== undefined) throw first;
  }

  start(): void {
    this.#loop.start();
  }

  stop(): void {
    this.#loop.stop();
  }
}

function sameBundle(a: TrustBundle, b: TrustBundle): boolean {
  const keys = (t: TrustBundle): string =>
    JSON.stringify({
      x: t.x509Authorities.map((c) => c.fingerprint).sort(),
      j: [...t.jwtAuthorities.keys()].sort(),
      h: t.refreshHint ?? null,
    });
  // JWT keys are compared by kid and by key: a kid reused for another key is a change.
  if (keys(a) !== keys(b)) return false;
  for (const [kid, key] of a.jwtAuthorities) {
    const other = b.jwtAuthorities.get(kid);
    if (other === undefined || !key.equals(other)) return false;
  }
  return true;
}
