/**
 * The X.509-SVIDs the Workload API endpoint holds for its registration entries, as SPIRE's agent
 * holds them: one per entry, over a key made for that entry alone (never reused across entries,
 * and never seen by the authority: it signs a CSR), issued when a workload first needs it,
 * renewed at half-life, and dropped when the entry is deleted or its identity revoked.
 *
 * Several workloads matching one entry share its SVID, as under SPIRE: the entry is the unit of
 * identity, and whoever matches its selectors is that identity.
 */
import type { KeyObject } from "node:crypto";
import type { Authority } from "../authority/authority-api.js";
import { Certificate } from "../spiffe/certificate.js";
import { generateWorkloadKey } from "../spiffe/csr.js";

/** What the endpoint needs of a registration entry (the entry store's records have it). */
export interface EntryLike {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly selectors: readonly string[];
  readonly hint?: string | undefined;
}

export interface EntrySvid {
  readonly entryId: string;
  readonly spiffeId: string;
  readonly hint: string;
  /** Leaf first, then the intermediate that signed it. */
  readonly chain: readonly Certificate[];
  readonly key: KeyObject;
  readonly serial: string;
  readonly notAfter: Date;
  /** When it is renewed: half its lifetime, as SPIRE's agent does. */
  readonly renewAt: number;
}

export interface EntrySvidsOptions {
  /** Lifetime of the X.509-SVIDs asked for (default: the authority's). */
  ttlSeconds?: number | undefined;
}

export class EntrySvids {
  readonly #authority: Authority;
  readonly #ttlSeconds: number | undefined;
  readonly #held = new Map<string, EntrySvid>();
  /** One issuance at a time per entry: callers arriving meanwhile share it. */
  readonly #issuing = new Map<string, Promise<EntrySvid>>();

  constructor(authority: Authority, options: EntrySvidsOptions = {}) {
    this.#authority = authority;
    this.#ttlSeconds = options.ttlSeconds;
  }

  /** The entry's SVID as held now, if any (it may be due for renewal). */
  held(entryId: string): EntrySvid | undefined {
    return this.#held.get(entryId);
  }

  /**
   * The entry's SVID, issued first if none is held or the one held is past half-life, or
   * undefined when its identity is revoked. Rejects with the authority's error when issuance
   * fails.
   */
  async get(entry: EntryLike, now = Date.now()): Promise<EntrySvid | undefined> {
    if (this.revoked(entry.spiffeId)) {
      this.#held.delete(entry.entryId);
      return undefined;
    }
    const held = this.#held.get(entry.entryId);
    if (held !== undefined && held.spiffeId === entry.spiffeId && now < held.renewAt) return held;
    return this.#issue(entry);
  }

  /**
   * Drops what no longer stands: SVIDs of entries gone, or of revoked identities. Returns
   * whether anything was dropped.
   */
  prune(entries: ReadonlyMap<string, EntryLike>): boolean {
    let dropped = false;
    for (const [entryId, svid] of this.#held) {
      const entry = entries.get(entryId);
      if (entry === undefined || entry.spiffeId !== svid.spiffeId || this.revoked(svid.spiffeId)) {
        this.#held.delete(entryId);
        dropped = true;
      }
    }
    return dropped;
  }

  /** Entries whose SVID is due for renewal now. */
  due(now = Date.now()): string[] {
    return [...this.#held.values()].filter((s) => now >= s.renewAt).map((s) => s.entryId);
  }

  /**
   * Whether the identity is revoked, as the authority says now. An authority that cannot say
   * (a remote one whose revocation list is too old) counts as revoked: fail closed.
   */
  revoked(spiffeId: string): boolean {
    try {
      return this.#authority.isRevoked(spiffeId);
    } catch {
      return true;
    }
  }

  #issue(entry: EntryLike): Promise<EntrySvid> {
    const running = this.#issuing.get(entry.entryId);
    if (running !== undefined) return running;
    const issuing = (async (): Promise<EntrySvid> => {
      const issuedAt = Date.now();
      const key = await generateWorkloadKey();
      const { svid } = await this.#authority.renewSvid(
        entry.spiffeId,
        key.csr,
        this.#ttlSeconds !== undefined ? { ttlSeconds: this.#ttlSeconds } : {},
      );
      // Half of the lifetime left from when it was asked for: a certificate's notBefore is
      // backdated for clock skew, so half-life from it would come early (at once, for a short TTL).
      const notAfter = svid.notAfter.getTime();
      const held: EntrySvid = {
        entryId: entry.entryId,
        spiffeId: entry.spiffeId,
        hint: entry.hint ?? "",
        chain: Certificate.parsePem(svid.chainPem),
        key: key.privateKey,
        serial: svid.serial,
        notAfter: svid.notAfter,
        renewAt: issuedAt + (notAfter - issuedAt) / 2,
      };
      this.#held.set(entry.entryId, held);
      return held;
    })();
    this.#issuing.set(entry.entryId, issuing);
    const clear = (): void => {
      if (this.#issuing.get(entry.entryId) === issuing) this.#issuing.delete(entry.entryId);
    };
    issuing.then(clear, clear);
    return issuing;
  }
}
