/**
 * Trust bundles: the keys one trust domain's SVIDs are checked against, and the sources that
 * hand them out.
 *
 * Formats read and written (go-spiffe's x509bundle, jwtbundle and spiffebundle in one type):
 * - the SPIFFE bundle format (SPIFFE Trust Domain and Bundle standard §4): a JWKS whose entries
 *   carry `use: "x509-svid"` (exactly one certificate in `x5c`) or `use: "jwt-svid"` (a `kid`
 *   is required), plus `spiffe_sequence` and `spiffe_refresh_hint`. Entries with a `use` or
 *   `kty` we do not know are ignored, as the standard asks, so newer bundles (WIT-SVID keys,
 *   say) still load;
 * - a plain JWKS (jwtbundle): every key is a JWT authority and needs a `kid`;
 * - PEM (x509bundle): concatenated CERTIFICATE blocks, every one an X.509 authority.
 *
 * A TrustBundle is immutable. Changing trust means building a new bundle and putting it into a
 * BundleSet, whose `version` then moves: that is what lets verifiers cache their results
 * safely (see X509SvidVerifier).
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { Certificate } from "./certificate.js";
import { samePublicKey } from "./keys.js";
import { decodePem } from "./pem.js";
import { TrustDomain } from "./spiffeid.js";

/** Where verifiers get bundles from: a static set, the embedded authority, SPIRE, federation. */
export interface BundleSource {
  /** The bundle of trust domain `td` (a normalised name such as `example.org`), if known. */
  getBundleForTrustDomain(td: string): TrustBundle | undefined;
  /**
   * Optional: a number that changes whenever any bundle this source returns changes. Verifiers
   * fold it into their cache keys; a source without it is still safe (they also compare the
   * bundle object they validated against), just with less precise cache invalidation.
   */
  readonly version?: number;
}

/** One JWK of a SPIFFE bundle, as it appears in JSON. */
export interface SpiffeBundleKey {
  use?: string;
  kty?: string;
  kid?: string;
  x5c?: string[];
  [member: string]: unknown;
}

/** A SPIFFE bundle document (JWKS plus the SPIFFE members). */
export interface SpiffeBundleDocument {
  keys: SpiffeBundleKey[];
  spiffe_sequence?: number;
  spiffe_refresh_hint?: number;
}

export interface TrustBundleInit {
  trustDomain: string | TrustDomain;
  x509Authorities?: Iterable<Certificate> | undefined;
  jwtAuthorities?: Iterable<readonly [string, KeyObject]> | undefined;
  sequence?: number | undefined;
  refreshHint?: number | undefined;
}

const X509_SVID_USE = "x509-svid";
const JWT_SVID_USE = "jwt-svid";
/** Key types node:crypto imports from JWK. Anything else is skipped, not an error. */
const KNOWN_KTY = new Set(["EC", "RSA", "OKP"]);

export class TrustBundle {
  /** Normalised trust domain name, e.g. `example.org`. */
  readonly trustDomain: string;
  readonly x509Authorities: readonly Certificate[];
  /** JWT-SVID signing keys by key ID. */
  readonly jwtAuthorities: ReadonlyMap<string, KeyObject>;
  /** `spiffe_sequence`: increases with every change the trust domain publishes. */
  readonly sequence?: number;
  /** `spiffe_refresh_hint`, in seconds: how often a consumer should re-fetch. */
  readonly refreshHint?: number;

  /** X.509 authorities by DER subject (hex), so path building finds issuers without a scan. */
  readonly #bySubject = new Map<string, Certificate[]>();
  readonly #fingerprints = new Set<string>();

  constructor(init: TrustBundleInit) {
    this.trustDomain =
      typeof init.trustDomain === "string" ? TrustDomain.parse(init.trustDomain).name : init.trustDomain.name;
    // Drop exact duplicates: a bundle listing one root twice is the same bundle.
    const roots: Certificate[] = [];
    for (const cert of init.x509Authorities ?? []) {
      if (this.#fingerprints.has(cert.fingerprint)) continue;
      this.#fingerprints.add(cert.fingerprint);
      roots.push(cert);
      const key = cert.rawSubject.toString("hex");
      const list = this.#bySubject.get(key);
      if (list) list.push(cert);
      else this.#bySubject.set(key, [cert]);
    }
    this.x509Authorities = Object.freeze(roots);
    this.jwtAuthorities = new Map(init.jwtAuthorities ?? []);
    if (init.sequence !== undefined) this.sequence = checkNonNegativeInteger(init.sequence, "spiffe_sequence");
    if (init.refreshHint !== undefined)
      this.refreshHint = checkNonNegativeInteger(init.refreshHint, "spiffe_refresh_hint");
  }

  /**
   * Parses a SPIFFE bundle document (JSON text or the already-parsed object).
   * Errors: ERR_BUNDLE_MALFORMED (not JSON, wrong member types, bad key material),
   * ERR_BUNDLE_KEYS_MISSING (no `keys` member), ERR_BUNDLE_X509_ENTRY_INVALID (an x509-svid entry without
   * exactly one certificate, or whose JWK is not its certificate's key), ERR_BUNDLE_KID_MISSING.
   */
  static parseSpiffe(json: string | object, trustDomain: string | TrustDomain): TrustBundle {
    const doc = readJwks(json);
    const x509Authorities: Certificate[] = [];
    const jwtAuthorities: Array<[string, KeyObject]> = [];
    doc.keys.forEach((entry, i) => {
      if (!KNOWN_KTY.has(String(entry.kty))) return;
      if (entry.use === X509_SVID_USE) x509Authorities.push(x509Entry(entry, i));
      else if (entry.use === JWT_SVID_USE) jwtAuthorities.push(jwtEntry(entry, i));
    });
    return new TrustBundle({
      trustDomain,
      x509Authorities,
      jwtAuthorities: uniqueKids(jwtAuthorities),
      sequence: optionalNumber(doc.spiffe_sequence, "spiffe_sequence"),
      refreshHint: optionalNumber(doc.spiffe_refresh_hint, "spiffe_refresh_hint"),
    });
  }

  /** Parses a plain JWKS of JWT authorities (go-spiffe jwtbundle): every key needs a `kid`. */
  static parseJwks(json: string | object, trustDomain: string | TrustDomain): TrustBundle {
    const doc = readJwks(json);
    const jwtAuthorities: Array<[string, KeyObject]> = [];
    doc.keys.forEach((entry, i) => {
      if (!KNOWN_KTY.has(String(entry.kty))) return;
      jwtAuthorities.push(jwtEntry(entry, i));
    });
    return new TrustBundle({ trustDomain, jwtAuthorities: uniqueKids(jwtAuthorities) });
  }

  /**
   * Parses concatenated PEM certificates (go-spiffe x509bundle). Empty text is an empty bundle;
   * text with no PEM block is ERR_PEM_BLOCKS_MISSING, as is text whose blocks are none of them
   * certificates (a key file given by mistake); a corrupt certificate is ERR_CERT_MALFORMED.
   */
  static fromPem(trustDomain: string | TrustDomain, pem: string | Buffer): TrustBundle {
    return new TrustBundle({ trustDomain, x509Authorities: parsePemAuthorities(pem) });
  }

  /** The SPIFFE bundle document for this bundle (JSON.stringify it to publish). */
  toSpiffe(): SpiffeBundleDocument {
    const keys: SpiffeBundleKey[] = [];
    for (const cert of this.x509Authorities) {
      keys.push({ use: X509_SVID_USE, ...publicJwk(cert.publicKey), x5c: [cert.der.toString("base64")] });
    }
    for (const [kid, key] of this.jwtAuthorities) {
      keys.push({ use: JWT_SVID_USE, kid, ...publicJwk(key) });
    }
    const doc: SpiffeBundleDocument = { keys };
    if (this.sequence !== undefined) doc.spiffe_sequence = this.sequence;
    if (this.refreshHint !== undefined) doc.spiffe_refresh_hint = this.refreshHint;
    return doc;
  }

  /** The X.509 authorities as concatenated PEM (x509bundle form; JWT keys are not included). */
  toPem(): string {
    return this.x509Authorities.map((cert) => cert.toPem()).join("");
  }

  /** True if this exact certificate (by DER fingerprint) is one of the X.509 authorities. */
  hasX509Authority(cert: Certificate): boolean {
    return this.#fingerprints.has(cert.fingerprint);
  }

  /** Authorities whose subject is `cert`'s issuer name: the candidates that may have signed it. */
  x509AuthoritiesNamed(rawName: Buffer): readonly Certificate[] {
    return this.#bySubject.get(rawName.toString("hex")) ?? [];
  }
}

/**
 * A mutable set of bundles, one per trust domain: the simplest BundleSource.
 * `version` increases on every change, so a verifier cache keyed on it never serves a result
 * computed against trust that has since been replaced or removed.
 */
export class BundleSet implements BundleSource {
  readonly #bundles = new Map<string, TrustBundle>();
  #version = 0;

  constructor(bundles: Iterable<TrustBundle> = []) {
    for (const bundle of bundles) this.#bundles.set(bundle.trustDomain, bundle);
  }

  get version(): number {
    return this.#version;
  }

  /** Adds `bundle`, replacing any bundle of the same trust domain. */
  add(bundle: TrustBundle): void {
    this.#bundles.set(bundle.trustDomain, bundle);
    this.#version++;
  }

  /** Removes the trust domain's bundle; returns whether there was one. */
  remove(trustDomain: string): boolean {
    const removed = this.#bundles.delete(normaliseName(trustDomain));
    if (removed) this.#version++;
    return removed;
  }

  getBundleForTrustDomain(td: string): TrustBundle | undefined {
    return this.#bundles.get(td) ?? this.#bundles.get(normaliseName(td));
  }

  has(trustDomain: string): boolean {
    return this.getBundleForTrustDomain(trustDomain) !== undefined;
  }

  get size(): number {
    return this.#bundles.size;
  }

  [Symbol.iterator](): IterableIterator<TrustBundle> {
    return this.#bundles.values();
  }
}

/**
 * Loads a bundle file that may be either a SPIFFE bundle (JSON) or PEM certificates.
 *
 * Neither format names its trust domain inside the data, so when `trustDomain` is not given it
 * is read from the `spiffe://<td>` URI SAN of the X.509 authorities (SPIRE puts one on its CAs).
 * Authorities naming different trust domains are ERR_BUNDLE_TRUST_DOMAIN_MISMATCH; none naming
 * any is ERR_ARGUMENT_INVALID (the caller must say which trust domain the file is for).
 */
export function loadBundleFile(text: string | Buffer, trustDomain?: string | TrustDomain): TrustBundle {
  const s = typeof text === "string" ? text : text.toString("utf8");
  const isJson = s.trimStart().startsWith("{");
  if (trustDomain !== undefined) {
    return isJson ? TrustBundle.parseSpiffe(s, trustDomain) : TrustBundle.fromPem(trustDomain, s);
  }
  // Parse under a placeholder domain first: the data is the only place the real one can come from.
  const probe = isJson
    ? TrustBundle.parseSpiffe(s, "placeholder.invalid")
    : TrustBundle.fromPem("placeholder.invalid", s);
  const inferred = inferTrustDomain(probe.x509Authorities);
  return new TrustBundle({
    trustDomain: inferred,
    x509Authorities: probe.x509Authorities,
    jwtAuthorities: probe.jwtAuthorities,
    sequence: probe.sequence,
    refreshHint: probe.refreshHint,
  });
}

function inferTrustDomain(authorities: readonly Certificate[]): string {
  const found = new Set<string>();
  for (const cert of authorities) {
    for (const uri of cert.uriSans) {
      if (!/^spiffe:\/\//i.test(uri)) continue;
      try {
        found.add(TrustDomain.parse(uri).name);
      } catch {
        // A malformed URI SAN on a CA says nothing reliable about the trust domain.
      }
    }
  }
  if (found.size > 1) {
    throw new AztpError(
      ErrorCodes.BUNDLE_TRUST_DOMAIN_MISMATCH,
      `bundle authorities name different trust domains (${[...found].sort().join(", ")}); give the trust domain explicitly`,
    );
  }
  const [only] = found;
  if (only === undefined) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "cannot infer the bundle's trust domain: no authority has a spiffe:// URI SAN; give the trust domain explicitly",
    );
  }
  return only;
}

function parsePemAuthorities(pem: string | Buffer): Certificate[] {
  const text = typeof pem === "string" ? pem : pem.toString("latin1");
  // An empty file is an empty bundle (go-spiffe x509bundle: empty.pem -> 0 authorities).
  if (text.trim() === "") return [];
  const blocks = decodePem(text);
  const certs = blocks.filter((b) => b.type === "CERTIFICATE");
  if (certs.length === 0) {
    const types = [...new Set(blocks.map((b) => b.type))].join(", ");
    throw new AztpError(ErrorCodes.PEM_BLOCKS_MISSING, `no CERTIFICATE PEM blocks found (found ${types})`);
  }
  return certs.map((b) => Certificate.fromDer(b.der));
}

function readJwks(json: string | object): {
  keys: SpiffeBundleKey[];
  spiffe_sequence?: unknown;
  spiffe_refresh_hint?: unknown;
} {
  let doc: unknown = json;
  if (typeof json === "string") {
    try {
      doc = JSON.parse(json);
    } catch (e) {
      throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, `bundle is not valid JSON: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, "bundle must be a JSON object");
  }
  const record = doc as Record<string, unknown>;
  if (!("keys" in record) || record.keys === undefined || record.keys === null) {
    throw new AztpError(ErrorCodes.BUNDLE_KEYS_MISSING, "bundle has no `keys` member");
  }
  if (!Array.isArray(record.keys)) throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, "bundle `keys` must be an array");
  record.keys.forEach((entry: unknown, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, `bundle key ${i} is not a JSON object`);
    }
  });
  return record as { keys: SpiffeBundleKey[] };
}

function x509Entry(entry: SpiffeBundleKey, i: number): Certificate {
  const x5c = entry.x5c;
  if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== "string") {
    const n = Array.isArray(x5c) ? x5c.length : 0;
    throw new AztpError(
      ErrorCodes.BUNDLE_X509_ENTRY_INVALID,
      `bundle key ${i} (x509-svid) must hold exactly one certificate in x5c; got ${n}`,
    );
  }
  const der = Buffer.from(x5c[0], "base64");
  // x5c is standard base64 (RFC 7517 §4.7); refuse sloppy spellings instead of guessing.
  if (der.toString("base64") !== x5c[0]) {
    throw new AztpError(
      ErrorCodes.BUNDLE_X509_ENTRY_INVALID,
      `bundle key ${i} (x509-svid): x5c is not canonical base64`,
    );
  }
  const cert = Certificate.fromDer(der);
  // The JWK members and the certificate must describe one key, or two readers of one bundle
  // (one trusting the JWK, one the certificate) would trust different things.
  if (!samePublicKey(importJwk(entry, i), cert.publicKey)) {
    throw new AztpError(
      ErrorCodes.BUNDLE_X509_ENTRY_INVALID,
      `bundle key ${i} (x509-svid): JWK does not match its certificate's public key`,
    );
  }
  return cert;
}

function jwtEntry(entry: SpiffeBundleKey, i: number): [string, KeyObject] {
  if (typeof entry.kid !== "string" || entry.kid === "") {
    throw new AztpError(ErrorCodes.BUNDLE_KID_MISSING, `bundle key ${i} (jwt-svid) has no kid`);
  }
  return [entry.kid, importJwk(entry, i)];
}

/**
 * A kid names one key. go-spiffe lets a later duplicate win silently; we refuse, because which
 * key verifies a token must never depend on entry order.
 */
function uniqueKids(entries: Array<[string, KeyObject]>): Array<[string, KeyObject]> {
  const seen = new Set<string>();
  for (const [kid] of entries) {
    if (seen.has(kid))
      throw new AztpError(
        ErrorCodes.BUNDLE_MALFORMED,
        `bundle has two JWT authorities with kid ${JSON.stringify(kid)}`,
      );
    seen.add(kid);
  }
  return entries;
}

function importJwk(entry: SpiffeBundleKey, i: number): KeyObject {
  // A private member in a published bundle means a key has leaked; never accept it as trust.
  if ("d" in entry || "p" in entry || "q" in entry) {
    throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, `bundle key ${i} contains private key material`);
  }
  try {
    return createPublicKey({ key: entry as JsonWebKey, format: "jwk" });
  } catch (e) {
    throw new AztpError(
      ErrorCodes.BUNDLE_MALFORMED,
      `bundle key ${i} is not a valid public JWK: ${(e as Error).message}`,
      { cause: e },
    );
  }
}

function publicJwk(key: KeyObject): Record<string, unknown> {
  return key.export({ format: "jwk" }) as Record<string, unknown>;
}

function optionalNumber(value: unknown, member: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  return checkNonNegativeInteger(value, member);
}

function checkNonNegativeInteger(value: unknown, member: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new AztpError(ErrorCodes.BUNDLE_MALFORMED, `bundle ${member} must be a non-negative integer`);
  }
  return value;
}

function normaliseName(td: string): string {
  try {
    return TrustDomain.parse(td).name;
  } catch {
    return td;
  }
}
