/**
 * X.509-SVIDs: parsing (go-spiffe `x509svid.Parse`) and verification against trust bundles
 * (go-spiffe `x509svid.Verify` plus full RFC 5280 path validation), and a caching verifier for
 * the per-call hot path.
 *
 * Where we are stricter than go-spiffe, on purpose (X509-SVID standard §3-§4):
 * - the leaf's key usage extension must be present and critical (go only reads the bits);
 * - when the leaf's subject is empty its URI SAN must be critical (RFC 5280 §4.2.1.6);
 * - the URI SAN must use the `spiffe` scheme (an `aztp://` alias is an API convenience, not
 *   something a certificate may carry);
 * - verification applies the leaf rules of Parse too (non-root path, digitalSignature), which
 *   go's Verify leaves to Parse;
 * - bundle roots must be CA certificates (cA=TRUE), and, if they have a key usage extension,
 *   must have keyCertSign; a critical extension we do not evaluate rejects the path.
 */
import type { KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { sha256Hex } from "../sha256.js";
import type { BundleSource, TrustBundle } from "./bundle.js";
import { Certificate } from "./certificate.js";
import { importPrivateKey, samePublicKey } from "./keys.js";
import { decodePem, encodePem, isPrivateKeyBlock } from "./pem.js";
import { SpiffeId } from "./spiffeid.js";

export interface ParsedX509Svid {
  id: SpiffeId;
  /** Leaf first, then the intermediates as given. */
  certificates: Certificate[];
  /** Present when a key PEM was given. */
  privateKey?: KeyObject;
}

export interface VerifiedX509Svid {
  readonly id: SpiffeId;
  /** The verified path: leaf, intermediates, and the bundle authority it ends at. */
  readonly chain: readonly Certificate[];
  /** The earliest notAfter on the path: after it, this verification no longer holds. */
  readonly notAfter: Date;
  /** The latest notBefore on the path: before it, this verification does not hold yet. */
  readonly notBefore: Date;
  /** The leaf's public key: what the peer proved possession of (or will sign with). */
  readonly leafKey: KeyObject;
}

export interface VerifyX509SvidOptions {
  /** The time to validate at; default now. */
  time?: Date;
}

function fail(code: ErrorCode, message: string): never {
  throw new AztpError(code, `x509svid: ${message}`);
}

/**
 * Parses an X.509-SVID from PEM: the certificates (leaf first) and, if `keyPem` is given, the
 * private key, which may live in the same text. Structural checks only, as go-spiffe's Parse:
 * no dates, no signatures, no bundle. Use verifyX509Svid to decide whether to trust it.
 *
 * Order of failures (go-spiffe's, with our strict rules slotted in where they belong):
 * certificate PEM (ERR_PEM_BLOCKS_MISSING, ERR_CERT_MALFORMED) -> key PEM (ERR_PEM_BLOCKS_MISSING,
 * ERR_KEY_MALFORMED) -> no certificates -> leaf rules (validateX509SvidLeaf) -> each signing
 * certificate is a CA with keyCertSign -> key present (ERR_KEY_MISSING) -> key matches the
 * leaf (ERR_KEY_MISMATCH).
 */
export function parseX509Svid(certsPem: string | Buffer, keyPem?: string | Buffer): ParsedX509Svid {
  const certificates = Certificate.parsePem(certsPem);
  const privateKey = keyPem === undefined ? undefined : parsePrivateKeyPem(keyPem);
  const id = validateX509SvidChainStructure(certificates);
  if (keyPem !== undefined) {
    if (privateKey === undefined) fail(ErrorCodes.KEY_MISSING, "private key validation failed: no private key found");
    if (!samePublicKey(privateKey, certificates[0]!.publicKey)) {
      fail(ErrorCodes.KEY_MISMATCH, "private key validation failed: leaf certificate does not match private key");
    }
    return { id, certificates, privateKey };
  }
  return { id, certificates };
}

/** The first private key block in `pem` (other blocks skipped), or undefined if there is none. */
function parsePrivateKeyPem(pem: string | Buffer): KeyObject | undefined {
  const block = decodePem(pem).find((b) => isPrivateKeyBlock(b.type));
  if (block === undefined) return undefined;
  return importPrivateKey(encodePem(block.type, block.der));
}

/** Parse's certificate rules: non-empty, a valid SVID leaf, then CA+keyCertSign on every signer. */
function validateX509SvidChainStructure(certificates: readonly Certificate[]): SpiffeId {
  const leaf = certificates[0];
  if (leaf === undefined)
    fail(ErrorCodes.X509SVID_CERTIFICATES_MISSING, "certificate validation failed: no certificates found");
  const id = validateX509SvidLeaf(leaf);
  for (const signer of certificates.slice(1)) {
    if (!signer.isCA)
      fail(
        ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
        "certificate validation failed: signing certificate must have CA flag set to true",
      );
    // As in go-spiffe's Parse, a signer without a key usage extension has no keyCertSign.
    if (!signer.keyUsage.keyCertSign) {
      fail(
        ErrorCodes.X509SVID_SIGNER_KEY_CERT_SIGN_MISSING,
        "certificate validation failed: signing certificate must have 'keyCertSign' set as key usage",
      );
    }
  }
  return id;
}

/**
 * The leaf rules of the X509-SVID standard, first failure wins, in go-spiffe's order with our
 * strict rules where they fit: exactly one URI SAN -> it is a SPIFFE ID -> with a non-root path
 * -> critical SAN if the subject is empty -> not a CA -> key usage present and critical ->
 * digitalSignature -> no keyCertSign -> no cRLSign. Returns the leaf's SPIFFE ID.
 */
export function validateX509SvidLeaf(leaf: Certificate): SpiffeId {
  const prefix = "certificate validation failed";
  if (leaf.uriSans.length === 0) {
    fail(
      ErrorCodes.X509SVID_URI_SAN_MISSING,
      `${prefix}: cannot get leaf certificate SPIFFE ID: certificate contains no URI SAN`,
    );
  }
  if (leaf.uriSans.length > 1) {
    fail(
      ErrorCodes.X509SVID_URI_SANS_TOO_MANY,
      `${prefix}: cannot get leaf certificate SPIFFE ID: certificate contains more than one URI SAN`,
    );
  }
  const uri = leaf.uriSans[0]!;
  if (!/^spiffe:\/\//i.test(uri)) {
    fail(
      ErrorCodes.X509SVID_SPIFFEID_INVALID,
      `${prefix}: leaf certificate URI SAN ${JSON.stringify(uri.slice(0, 120))} is not a spiffe:// ID`,
    );
  }
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(uri);
  } catch (e) {
    fail(
      ErrorCodes.X509SVID_SPIFFEID_INVALID,
      `${prefix}: leaf certificate URI SAN is not a valid SPIFFE ID: ${(e as Error).message}`,
    );
  }
  if (id.isTrustDomainId)
    fail(
      ErrorCodes.X509SVID_ROOT_PATH_NOT_ALLOWED,
      `${prefix}: leaf certificate SPIFFE ID ${id} has no path (the trust domain's own ID)`,
    );
  if (leaf.hasEmptySubject && !leaf.sanCritical) {
    fail(
      ErrorCodes.X509SVID_SAN_NOT_CRITICAL,
      `${prefix}: leaf certificate has an empty subject, so its URI SAN must be critical`,
    );
  }
  if (leaf.isCA)
    fail(ErrorCodes.X509SVID_LEAF_CA_FLAG_SET, `${prefix}: leaf certificate must not have CA flag set to true`);
  if (!leaf.keyUsage.present)
    fail(ErrorCodes.X509SVID_LEAF_KEY_USAGE_MISSING, `${prefix}: leaf certificate key usage extension is missing`);
  if (!leaf.keyUsage.critical)
    fail(
      ErrorCodes.X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL,
      `${prefix}: leaf certificate key usage extension must be critical`,
    );
  if (!leaf.keyUsage.digitalSignature) {
    fail(
      ErrorCodes.X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING,
      `${prefix}: leaf certificate must have 'digitalSignature' set as key usage`,
    );
  }
  if (leaf.keyUsage.keyCertSign)
    fail(
      ErrorCodes.X509SVID_LEAF_KEY_CERT_SIGN_SET,
      `${prefix}: leaf certificate must not have 'keyCertSign' set as key usage`,
    );
  if (leaf.keyUsage.cRLSign)
    fail(ErrorCodes.X509SVID_LEAF_CRL_SIGN_SET, `${prefix}: leaf certificate must not have 'cRLSign' set as key usage`);
  return id;
}

/**
 * Verifies an X.509-SVID chain (leaf first, then intermediates in order; the root may be
 * included or not) against the bundle of the leaf's trust domain.
 *
 * Checks, in this order, first failure wins:
 * 1. the leaf rules (validateX509SvidLeaf);
 * 2. a bundle exists for the leaf's trust domain (ERR_X509SVID_BUNDLE_MISSING) and has X.509
 *    authorities (ERR_X509SVID_UNTRUSTED otherwise);
 * 3. the path: from the leaf, each certificate is either issued by a bundle authority (name
 *    and signature) and the path ends there, or issued by the next certificate given, whose
 *    subject must be its issuer name (ERR_X509SVID_UNTRUSTED) and whose key must verify its
 *    signature (ERR_X509SVID_SIGNATURE_INVALID); running out of certificates is
 *    ERR_X509SVID_UNTRUSTED ("signed by unknown authority");
 * 4. for every certificate on the path: no unrecognised critical extension; for every signer
 *    (intermediates and the authority): cA=TRUE, keyCertSign if key usage is present, and its
 *    pathLenConstraint not exceeded by the non-self-issued intermediates below it;
 * 5. the time is inside every certificate's validity, the authority's included
 *    (ERR_X509SVID_EXPIRED, ERR_X509SVID_NOT_YET_VALID).
 *
 * Everything before step 5 is independent of the time, including which authority ends the
 * path (see findAuthority), which is what lets X509SvidVerifier cache steps 1-4.
 */
export function verifyX509Svid(
  chain: readonly Certificate[],
  source: BundleSource,
  options: VerifyX509SvidOptions = {},
): VerifiedX509Svid {
  const { result } = verifyPath(chain, source);
  checkTime(result.chain, options.time ?? new Date());
  return result;
}

function verifyPath(
  chain: readonly Certificate[],
  source: BundleSource,
): { result: VerifiedX509Svid; bundle: TrustBundle } {
  if (source === null || typeof source !== "object" || typeof source.getBundleForTrustDomain !== "function") {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "x509svid: a bundle source is required");
  }
  const leaf = chain[0];
  if (leaf === undefined) fail(ErrorCodes.X509SVID_CERTIFICATES_MISSING, "empty certificates chain");
  const id = validateX509SvidLeaf(leaf);
  const bundle = source.getBundleForTrustDomain(id.trustDomain);
  if (bundle === undefined)
    fail(
      ErrorCodes.X509SVID_BUNDLE_MISSING,
      `could not get X509 bundle: no bundle for trust domain "${id.trustDomain}"`,
    );
  if (bundle.trustDomain !== id.trustDomain) {
    throw new AztpError(
      ErrorCodes.BUNDLE_TRUST_DOMAIN_MISMATCH,
      `x509svid: bundle source returned the bundle of "${bundle.trustDomain}" for trust domain "${id.trustDomain}"`,
    );
  }
  if (bundle.x509Authorities.length === 0) {
    fail(
      ErrorCodes.X509SVID_UNTRUSTED,
      `could not verify leaf certificate: bundle for "${id.trustDomain}" has no X.509 authorities`,
    );
  }

  const path: Certificate[] = [leaf];
  let current = leaf;
  for (let next = 1; ; next++) {
    const authority = findAuthority(bundle, current);
    if (authority === "bad-signature" && next >= chain.length) {
      fail(
        ErrorCodes.X509SVID_SIGNATURE_INVALID,
        `${describe(current, path.length - 1)} names a bundle authority as issuer, but no authority's key verifies its signature`,
      );
    }
    if (authority instanceof Certificate) {
      path.push(authority);
      break;
    }
    const issuer = chain[next];
    if (issuer === undefined) {
      fail(
        ErrorCodes.X509SVID_UNTRUSTED,
        `could not verify leaf certificate: certificate signed by unknown authority (${describe(current, path.length - 1)}, issuer "${current.issuer}")`,
      );
    }
    if (!issuer.rawSubject.equals(current.rawIssuer)) {
      fail(
        ErrorCodes.X509SVID_UNTRUSTED,
        `${describe(current, path.length - 1)} has issuer "${current.issuer}" but the next certificate given is "${issuer.subject}" (chain out of order or incomplete)`,
      );
    }
    if (!current.verifySignedBy(issuer)) {
      fail(
        ErrorCodes.X509SVID_SIGNATURE_INVALID,
        `${describe(current, path.length - 1)} is not signed by the key of the next certificate ("${issuer.subject}")`,
      );
    }
    path.push(issuer);
    current = issuer;
  }

  checkPathConstraints(path);
  let notAfter = leaf.notAfter;
  let notBefore = leaf.notBefore;
  for (const cert of path) {
    if (cert.notAfter < notAfter) notAfter = cert.notAfter;
    if (cert.notBefore > notBefore) notBefore = cert.notBefore;
  }
  const result: VerifiedX509Svid = Object.freeze({
    id,
    chain: Object.freeze(path),
    notAfter,
    notBefore,
    leafKey: leaf.publicKey,
  });
  return { result, bundle };
}

/**
 * The bundle authority that issued `cert`, if any. Several authorities may share a name (a
 * root re-issued for rotation): among those whose key verifies the signature we take the one
 * with the latest notAfter, and never look at the clock, so the choice is the same at any
 * validation time and a cached result stays exactly what a fresh validation would return.
 * "bad-signature" means some authority had the right name but none had the right key.
 */
function findAuthority(bundle: TrustBundle, cert: Certificate): Certificate | "bad-signature" | undefined {
  // A certificate that is itself an authority (an intermediate pinned in the bundle) is only
  // reached as `issuer` of the one below it, so only issuers are looked up here.
  const named = bundle.x509AuthoritiesNamed(cert.rawIssuer);
  let best: Certificate | undefined;
  for (const candidate of named) {
    if (best !== undefined && candidate.notAfter <= best.notAfter) continue;
    if (cert.verifySignedBy(candidate)) best = candidate;
  }
  if (best !== undefined) return best;
  return named.length > 0 ? "bad-signature" : undefined;
}

/** RFC 5280 §6.1.4 basic checks on every signer, and the critical-extension rule on every hop. */
function checkPathConstraints(path: readonly Certificate[]): void {
  path.forEach((cert, i) => {
    if (cert.unknownCriticalExtensions.length > 0) {
      fail(
        ErrorCodes.X509SVID_CRITICAL_EXTENSION_UNKNOWN,
        `${describe(cert, i)} has unhandled critical extension(s) ${cert.unknownCriticalExtensions.join(", ")}`,
      );
    }
    if (i === 0) return;
    if (!cert.isCA)
      fail(
        ErrorCodes.X509SVID_SIGNER_CA_FLAG_MISSING,
        `${describe(cert, i)} signs certificates but is not a CA (basicConstraints cA=TRUE missing)`,
      );
    if (cert.keyUsage.present && !cert.keyUsage.keyCertSign) {
      fail(
        ErrorCodes.X509SVID_SIGNER_KEY_CERT_SIGN_MISSING,
        `${describe(cert, i)} signs certificates but its key usage lacks keyCertSign`,
      );
    }
    if (cert.pathLenConstraint !== undefined) {
      // Intermediates strictly between this signer and the leaf; self-issued ones (key
      // rollover certificates) do not count (RFC 5280 §4.2.1.9).
      const below = path.slice(1, i).filter((c) => !c.isSelfIssued).length;
      if (below > cert.pathLenConstraint) {
        fail(
          ErrorCodes.X509SVID_PATH_LENGTH_EXCEEDED,
          `${describe(cert, i)} allows ${cert.pathLenConstraint} intermediate(s) below it; the path has ${below}`,
        );
      }
    }
  });
}

function checkTime(path: readonly Certificate[], time: Date): void {
  path.forEach((cert, i) => {
    if (time < cert.notBefore) {
      fail(
        ErrorCodes.X509SVID_NOT_YET_VALID,
        `${describe(cert, i)} is not valid yet: current time ${time.toISOString()} is before ${cert.notBefore.toISOString()}`,
      );
    }
    if (time > cert.notAfter) {
      fail(
        ErrorCodes.X509SVID_EXPIRED,
        `${describe(cert, i)} has expired: current time ${time.toISOString()} is after ${cert.notAfter.toISOString()}`,
      );
    }
  });
}

function describe(cert: Certificate, index: number): string {
  const role = index === 0 ? "leaf certificate" : `certificate #${index}`;
  return `${role} (subject "${cert.subject}", serial ${cert.serialNumber})`;
}

export interface X509SvidVerifierOptions {
  /** How many verified chains to remember (LRU); default 1,000. */
  cacheSize?: number;
}

interface CachedVerification {
  result: VerifiedX509Svid;
  /** The bundle object the path was validated against (bundles are immutable). */
  bundle: TrustBundle;
}

/**
 * Verifies X.509-SVID chains as they arrive on the wire (DER buffers, or base64 DER as in a JWS
 * `x5c` header), remembering successful path validations.
 *
 * Cache semantics:
 * - The key is the source's `version` (when it has one) plus the SHA-256 fingerprints of the
 *   presented certificates, in order. The same certificates in another order, or with the root
 *   appended, are another key: each presented chain is validated once on its own.
 * - What is cached is a chain that passed every check that does not depend on the clock:
 *   the leaf rules, the bundle authority chosen, signatures, CA bits, key usage, path length
 *   and critical extensions. Path selection never looks at the clock (see findAuthority), so a cached
 *   result is exactly what a fresh validation would produce, apart from the time check.
 * - A hit re-checks only (a) that the source still returns the very bundle object the chain
 *   was validated against (this catches sources without a `version`, and a BundleSet whose
 *   bundle was replaced) and (b) the time window [latest notBefore, earliest notAfter] of
 *   the path. A chain outside its window fails with ERR_X509SVID_EXPIRED or
 *   ERR_X509SVID_NOT_YET_VALID and stays cached (it may be asked about at another time).
 * - Chains failing those checks are not cached: a bad chain costs a full validation each time, which is no more
 *   than an uncached verifier would spend, and a fix (new bundle) takes effect at once.
 * - Revocation is not this class's concern: apply the revocation list to the result.
 */
export class X509SvidVerifier {
  readonly #source: BundleSource;
  readonly #cache: LRUCache<string, CachedVerification>;

  constructor(source: BundleSource, options: X509SvidVerifierOptions = {}) {
    this.#source = source;
    this.#cache = new LRUCache({ max: options.cacheSize ?? 1000 });
  }

  verify(chain: ReadonlyArray<Uint8Array | string>, options: VerifyX509SvidOptions = {}): VerifiedX509Svid {
    const time = options.time ?? new Date();
    if (chain.length === 0) fail(ErrorCodes.X509SVID_CERTIFICATES_MISSING, "empty certificates chain");
    const ders = chain.map(toDer);
    const key = `${this.#source.version ?? ""}|${ders.map(sha256Hex).join(",")}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined && this.#source.getBundleForTrustDomain(hit.result.id.trustDomain) === hit.bundle) {
      if (time < hit.result.notBefore)
        fail(
          ErrorCodes.X509SVID_NOT_YET_VALID,
          `certificate chain is not valid until ${hit.result.notBefore.toISOString()}`,
        );
      if (time > hit.result.notAfter)
        fail(ErrorCodes.X509SVID_EXPIRED, `certificate chain expired at ${hit.result.notAfter.toISOString()}`);
      return hit.result;
    }
    const certs = ders.map((der) => Certificate.fromDer(der));
    const { result, bundle } = verifyPath(certs, this.#source);
    this.#cache.set(key, { result, bundle });
    checkTime(result.chain, time);
    return result;
  }

  /** Forgets every cached verification. */
  clear(): void {
    this.#cache.clear();
  }

  get cacheSize(): number {
    return this.#cache.size;
  }
}

/** DER from a buffer, or from base64 text as in `x5c` (RFC 7515 §4.1.6: standard base64, padded). */
function toDer(item: Uint8Array | string): Uint8Array {
  if (typeof item !== "string") return item;
  const der = Buffer.from(item, "base64");
  if (der.length === 0 || der.toString("base64") !== item) {
    throw new AztpError(ErrorCodes.CERT_MALFORMED, "x509svid: certificate is not canonical base64 DER");
  }
  return der;
}
