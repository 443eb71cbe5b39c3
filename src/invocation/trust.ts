/**
 * What a verifier trusts: a bundle source (the roots and JWT keys of each trust domain) and
 * a revocation check. Holds the caches that keep the per-call cost near one signature check:
 * x5c chains are path-validated once per distinct chain (X509SvidVerifier), and a token's
 * protected header (which carries the chain) is decoded once per distinct header text.
 *
 * The sources, like go-spiffe's: an embedded authority, a remote one, a static bundle file;
 * the verifier never cares which.
 */
import { LRUCache } from "lru-cache";
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import type { BundleSource, TrustBundle } from "../spiffe/bundle.js";
import { decodeHeader, type JwsHeader } from "../spiffe/jws.js";
import type { JwsAlgorithm } from "../spiffe/keys.js";
import { X509SvidVerifier, type VerifiedX509Svid } from "../spiffe/x509svid.js";

export interface RevocationChecker {
  /** True if the identity (or an ancestor of it), or the certificate with `serial`, is revoked. */
  isRevoked(spiffeId: string, serial: string): boolean;
}

export interface TrustOptions {
  revocation?: RevocationChecker;
  /** Distinct chains remembered (default 10,000). */
  cacheSize?: number;
}

/** A verified signer: who it is, by which certificate, with which key. */
export interface VerifiedSigner {
  spiffeId: string;
  serial: string;
  key: KeyObject;
  notAfter: Date;
  svid: VerifiedX509Svid;
  /** The bundle object the chain was validated against: a replaced bundle invalidates caches. */
  bundle: TrustBundle | undefined;
}

/** A decoded header and its verified signer, or (when the x5c chain failed) why it failed. */
export type ResolvedHeader =
  | { header: JwsHeader; signer: VerifiedSigner; chainError?: undefined }
  | { header: JwsHeader; signer?: undefined; chainError: unknown };

interface CachedHeader {
  /** The full header text: a hit must match it exactly (the map key is only a short digest). */
  segment: string;
  header: JwsHeader;
  signer: VerifiedSigner;
}

/**
 * A short map key for a header segment. Hashing a ~2 KB string for every lookup costs more
 * than the rest of the lookup; the tail of the segment holds the end of the x5c chain (the
 * last certificate's signature), so length + tail spreads keys well, and an exact comparison
 * of the full text on every hit keeps a crafted collision from ever matching.
 */
function headerKey(segment: string): string {
  return segment.length <= 96 ? segment : `${segment.length}:${segment.slice(-80)}`;
}

export class Trust {
  readonly bundles: BundleSource;
  readonly #revocation: RevocationChecker | undefined;
  readonly #x509: X509SvidVerifier;
  readonly #byX5c: LRUCache<string, VerifiedSigner>;
  readonly #byHeader: LRUCache<string, CachedHeader>;

  constructor(bundles: BundleSource, options: TrustOptions = {}) {
    this.bundles = bundles;
    this.#revocation = options.revocation;
    this.#x509 = new X509SvidVerifier(bundles, { cacheSize: options.cacheSize ?? 10_000 });
    this.#byX5c = new LRUCache({ max: options.cacheSize ?? 10_000 });
    this.#byHeader = new LRUCache({ max: options.cacheSize ?? 10_000 });
  }

  /**
   * Decodes a token's protected header and validates the x5c chain it carries, once per
   * distinct header text. A signer's header never changes between its tokens, so on the hot
   * path this replaces a 3 KB base64 decode, a JSON parse and the chain lookup by one map
   * lookup plus the checks that can change: the bundle is still the same object, and the
   * chain is inside its validity window. Throws the decoder's errors (ERR_JWT_*) for a bad
   * header and the X.509 errors (ERR_X509SVID_*, ERR_CERT_MALFORMED, ...) for a bad chain; the
   * caller maps them to its own codes.
   */
  resolveHeader(segment: string, algorithms: readonly JwsAlgorithm[], time: Date): ResolvedHeader {
    const key = headerKey(segment);
    const hit = this.#byHeader.get(key);
    if (hit !== undefined && hit.segment === segment && algorithms.includes(hit.header.alg)) {
      const { signer } = hit;
      if (
        this.bundles.getBundleForTrustDomain(signer.svid.id.trustDomain) === signer.bundle &&
        time >= signer.svid.notBefore &&
        time <= signer.svid.notAfter
      ) {
        return hit;
      }
    }
    const header = decodeHeader(segment, algorithms);
    let signer: VerifiedSigner;
    try {
      signer = this.verifyChain(header.x5c, time);
    } catch (chainError) {
      return { header, chainError };
    }
    this.#byHeader.set(key, { segment, header, signer });
    return { header, signer };
  }

  /**
   * Validates an `x5c` chain (base64 DER, leaf first) to a bundle root at `time`. The result
   * is cached by the exact x5c text; the X509SvidVerifier re-checks the bundle and the
   * validity window on every call, so a cached chain still expires on time.
   */
  verifyChain(x5c: unknown, time: Date): VerifiedSigner {
    if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > 8 || !x5c.every((c) => typeof c === "string")) {
      throw new AztpError(
        ErrorCodes.INVOCATION_UNTRUSTED,
        "x5c must be a non-empty array of at most 8 base64 certificates",
      );
    }
    const key = (x5c as string[]).join(".");
    const svid = this.#x509.verify(x5c as string[], { time });
    const hit = this.#byX5c.get(key);
    if (hit !== undefined && hit.svid === svid) return hit;
    const leaf = svid.chain[0];
    if (leaf === undefined) throw new AztpError(ErrorCodes.INVOCATION_UNTRUSTED, "empty verified chain");
    const signer: VerifiedSigner = {
      spiffeId: svid.id.toString(),
      serial: leaf.serialNumber,
      key: svid.leafKey,
      notAfter: svid.notAfter,
      svid,
      bundle: this.bundles.getBundleForTrustDomain(svid.id.trustDomain),
    };
    this.#byX5c.set(key, signer);
    return signer;
  }

  isRevoked(spiffeId: string, serial: string): boolean {
    return this.#revocation?.isRevoked(spiffeId, serial) ?? false;
  }
}
