/**
 * One parsed X.509 certificate, parsed once and then shared.
 *
 * Two parsers, each for what it does best: @peculiar/x509 reads the structure (extensions with
 * their criticality, SANs, names), which node:crypto does not expose; node:crypto's
 * X509Certificate gives the public key as a KeyObject and checks signatures natively (about
 * 20-80 µs against ~0.5-0.8 ms for a @peculiar/x509 parse). Because a peculiar parse costs so
 * much more than a signature check, `Certificate.fromDer` keeps a bounded module-level cache
 * keyed by the SHA-256 of the DER: a chain seen before is never parsed again, on any path.
 *
 * Instances are immutable (fields are readonly, arrays frozen), which is what makes sharing
 * them through the cache safe.
 */
import { X509Certificate as NodeX509Certificate, type KeyObject } from "node:crypto";
import { LRUCache } from "lru-cache";
import { AztpError, ErrorCodes } from "../errors.js";
import { sha256Hex } from "../sha256.js";
import { decodePem, encodePem } from "./pem.js";
import { x509 } from "./x509lib.js";

/** The nine RFC 5280 key usage bits, plus whether the extension is there at all and critical. */
export interface KeyUsage {
  readonly present: boolean;
  readonly critical: boolean;
  readonly digitalSignature: boolean;
  readonly nonRepudiation: boolean;
  readonly keyEncipherment: boolean;
  readonly dataEncipherment: boolean;
  readonly keyAgreement: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
  readonly encipherOnly: boolean;
  readonly decipherOnly: boolean;
}

/** Extension OIDs whose content this library reads or may safely ignore. */
export const ExtensionOids = {
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  extKeyUsage: "2.5.29.37",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  crlDistributionPoints: "2.5.29.31",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
} as const;

/**
 * Extensions that, when marked critical, we still "recognise" in the RFC 5280 §4.2 sense.
 * BasicConstraints, KeyUsage and SAN are enforced; EKU is deliberately not enforced (go-spiffe
 * verifies with ExtKeyUsageAny); key identifiers, CRL distribution points and AIA carry no
 * constraint on the path. Anything else critical (name constraints, policy constraints,
 * certificate policies, ...) is a constraint we do not evaluate, so a path through it must be
 * rejected rather than silently accepted.
 */
const RECOGNISED = new Set<string>(Object.values(ExtensionOids));

const EMPTY_NAME = Buffer.from([0x30, 0x00]);

export class Certificate {
  /** The exact DER bytes (a private copy: callers cannot mutate a cached certificate). */
  readonly der: Buffer;
  /** Lower-case hex SHA-256 of `der`: the identity used by every cache in this library. */
  readonly fingerprint: string;
  /**
   * The serial as lower-case hex of its unsigned value, without leading zeros ("0" for zero):
   * the same text Go's `big.Int.Text(16)` gives, so `00:8f:01` in DER (the 00 is only DER's
   * sign padding) and a revocation list entry written as `8f01` compare equal as strings.
   * Negative serials (forbidden by RFC 5280 §4.1.2.2, rejected by Go) fail the parse.
   */
  readonly serialNumber: string;
  /** Display form of the names (e.g. `C=US, O=SPIFFE`); "" when the name is empty. */
  readonly subject: string;
  readonly issuer: string;
  /** DER of the subject and issuer Names. Chaining compares these bytes, as Go does. */
  readonly rawSubject: Buffer;
  readonly rawIssuer: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly basicConstraintsPresent: boolean;
  readonly basicConstraintsCritical: boolean;
  /** True only if BasicConstraints is present with cA=TRUE. */
  readonly isCA: boolean;
  readonly pathLenConstraint?: number;
  readonly keyUsage: KeyUsage;
  readonly sanPresent: boolean;
  readonly sanCritical: boolean;
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** OIDs of critical extensions this library does not recognise (see RECOGNISED). */
  readonly unknownCriticalExtensions: readonly string[];
  readonly publicKey: KeyObject;

  readonly #node: NodeX509Certificate;

  private constructor(der: Buffer, fingerprint: string) {
    this.der = der;
    this.fingerprint = fingerprint;
    let parsed: x509.X509Certificate;
    try {
      this.#node = new NodeX509Certificate(der);
      parsed = new x509.X509Certificate(new Uint8Array(der));
    } catch (e) {
      throw new AztpError(ErrorCodes.CERT_MALFORMED, `cannot parse certificate: ${(e as Error).message}`, { cause: e });
    }
    const tbs = readTbsFields(der);
    this.serialNumber = tbs.serialNumber;
    this.rawSubject = tbs.subject;
    this.rawIssuer = tbs.issuer;
    this.subject = parsed.subject;
    this.issuer = parsed.issuer;
    this.notBefore = parsed.notBefore;
    this.notAfter = parsed.notAfter;
    this.publicKey = this.#node.publicKey;

    let extensions: x509.Extension[];
    try {
      extensions = parsed.extensions;
    } catch (e) {
      throw new AztpError(ErrorCodes.CERT_MALFORMED, `cannot parse certificate extensions: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const seen = new Set<string>();
    const unknownCritical: string[] = [];
    let bc: x509.BasicConstraintsExtension | undefined;
    let ku: x509.KeyUsagesExtension | undefined;
    let san: x509.SubjectAlternativeNameExtension | undefined;
    for (const ext of extensions) {
      // RFC 5280 §4.2: an extension MUST NOT appear more than once; two BasicConstraints
      // would let two readers of one certificate disagree about whether it is a CA.
      if (seen.has(ext.type))
        throw new AztpError(ErrorCodes.CERT_MALFORMED, `cannot parse certificate: duplicate extension ${ext.type}`);
      seen.add(ext.type);
      if (ext.critical && !RECOGNISED.has(ext.type)) unknownCritical.push(ext.type);
      if (ext.type === ExtensionOids.basicConstraints) bc = ext as x509.BasicConstraintsExtension;
      else if (ext.type === ExtensionOids.keyUsage) ku = ext as x509.KeyUsagesExtension;
      else if (ext.type === ExtensionOids.subjectAltName) san = ext as x509.SubjectAlternativeNameExtension;
    }
    this.unknownCriticalExtensions = Object.freeze(unknownCritical);

    this.basicConstraintsPresent = bc !== undefined;
    this.basicConstraintsCritical = bc?.critical ?? false;
    this.isCA = bc?.ca ?? false;
    if (bc?.ca && bc.pathLength !== undefined) this.pathLenConstraint = bc.pathLength;

    this.keyUsage = Object.freeze(keyUsageOf(ku));

    this.sanPresent = san !== undefined;
    this.sanCritical = san?.critical ?? false;
    const uris: string[] = [];
    const dns: string[] = [];
    for (const name of san?.names.items ?? []) {
      if (name.type === "url") uris.push(name.value);
      else if (name.type === "dns") dns.push(name.value);
    }
    this.uriSans = Object.freeze(uris);
    this.dnsSans = Object.freeze(dns);
    Object.freeze(this);
  }

  /**
   * Parses one DER certificate, or returns the cached instance for these exact bytes.
   * Throws ERR_CERT_MALFORMED for anything that is not a well-formed certificate.
   */
  static fromDer(der: Uint8Array): Certificate {
    const fingerprint = sha256Hex(der);
    const hit = cache.get(fingerprint);
    if (hit !== undefined) return hit;
    const cert = new Certificate(Buffer.from(der), fingerprint);
    cache.set(fingerprint, cert);
    return cert;
  }

  /**
   * Every CERTIFICATE block in `text`, in order; other block types (keys) are skipped, so a
   * combined cert+key file works. Returns [] when there are blocks but none is a certificate
   * (callers decide whether that is an error). Throws ERR_PEM_BLOCKS_MISSING when the text has no
   * PEM block at all and ERR_CERT_MALFORMED for a corrupt certificate block.
   */
  static parsePem(text: string | Buffer): Certificate[] {
    return decodePem(text)
      .filter((block) => block.type === "CERTIFICATE")
      .map((block) => Certificate.fromDer(block.der));
  }

  toPem(): string {
    return encodePem("CERTIFICATE", this.der);
  }

  /** True when subject and issuer are the same name (RFC 5280 "self-issued"; not necessarily self-signed). */
  get isSelfIssued(): boolean {
    return this.rawSubject.equals(this.rawIssuer);
  }

  /** True for an empty subject DN, where X509-SVID requires the URI SAN to be critical. */
  get hasEmptySubject(): boolean {
    return this.rawSubject.equals(EMPTY_NAME);
  }

  /**
   * True if `issuer`'s public key verifies this certificate's signature. Only the signature:
   * names, CA bits and dates are the path validator's business. Never throws.
   */
  verifySignedBy(issuer: Certificate): boolean {
    try {
      return this.#node.verify(issuer.publicKey);
    } catch {
      return false;
    }
  }

  /** Inclusive on both ends, as RFC 5280 §4.1.2.5 and Go's verifier are. */
  isValidAt(time: Date): boolean {
    const t = time.getTime();
    return t >= this.notBefore.getTime() && t <= this.notAfter.getTime();
  }
}

/**
 * Bounded so that a peer sending endless fresh certificates cannot grow memory without limit;
 * 4,096 entries is far more than the distinct chains one process normally talks to.
 */
const cache = new LRUCache<string, Certificate>({ max: 4096 });

function keyUsageOf(ext: x509.KeyUsagesExtension | undefined): KeyUsage {
  const bits = ext?.usages ?? 0;
  const has = (flag: x509.KeyUsageFlags): boolean => (bits & flag) !== 0;
  return {
    present: ext !== undefined,
    critical: ext?.critical ?? false,
    digitalSignature: has(x509.KeyUsageFlags.digitalSignature),
    nonRepudiation: has(x509.KeyUsageFlags.nonRepudiation),
    keyEncipherment: has(x509.KeyUsageFlags.keyEncipherment),
    dataEncipherment: has(x509.KeyUsageFlags.dataEncipherment),
    keyAgreement: has(x509.KeyUsageFlags.keyAgreement),
    keyCertSign: has(x509.KeyUsageFlags.keyCertSign),
    cRLSign: has(x509.KeyUsageFlags.cRLSign),
    encipherOnly: has(x509.KeyUsageFlags.encipherOnly),
    decipherOnly: has(x509.KeyUsageFlags.decipherOnly),
  };
}

/**
 * The raw serial, issuer and subject, read straight from the TBSCertificate DER.
 *
 * Why not from @peculiar/x509: it re-encodes names (so chaining would compare our encoding,
 * not the issuer's bytes) and strips the sign byte of the serial, which loses the difference
 * between a positive and a negative serial. The walk is tiny because both parsers above have
 * already accepted the structure; any surprise is still reported as ERR_CERT_MALFORMED.
 * It also owns the one structural rule they skip: nothing may follow the certificate.
 */
function readTbsFields(der: Buffer): { serialNumber: string; issuer: Buffer; subject: Buffer } {
  const bad = (why: string): never => {
    throw new AztpError(ErrorCodes.CERT_MALFORMED, `cannot parse certificate: ${why}`);
  };
  const cert = readTlv(der, 0) ?? bad("not a DER SEQUENCE");
  // Both parsers above ignore bytes after the certificate; Go (and we) call that malformed,
  // since two different byte strings would otherwise be "the same" certificate.
  if (cert.tag !== 0x30 || cert.end !== der.length) bad("trailing data after the certificate");
  const tbs = readTlv(der, cert.contentStart) ?? bad("no TBSCertificate");
  let pos = tbs.contentStart;
  let field = readTlv(der, pos) ?? bad("truncated TBSCertificate");
  if (field.tag === 0xa0) {
    pos = field.end; // [0] EXPLICIT version
    field = readTlv(der, pos) ?? bad("truncated TBSCertificate");
  }
  if (field.tag !== 0x02) bad("serial number is not an INTEGER");
  const serial = der.subarray(field.contentStart, field.end);
  if (serial.length === 0 || (serial[0]! & 0x80) !== 0) bad("serial number must be positive (RFC 5280 §4.1.2.2)");
  const serialNumber = BigInt(`0x${serial.toString("hex")}`).toString(16);
  const sigAlg = readTlv(der, field.end) ?? bad("truncated TBSCertificate");
  const issuer = readTlv(der, sigAlg.end) ?? bad("truncated TBSCertificate");
  const validity = readTlv(der, issuer.end) ?? bad("truncated TBSCertificate");
  const subject = readTlv(der, validity.end) ?? bad("truncated TBSCertificate");
  if (issuer.tag !== 0x30 || subject.tag !== 0x30) bad("issuer or subject is not a Name");
  return {
    serialNumber,
    issuer: der.subarray(issuer.start, issuer.end),
    subject: der.subarray(subject.start, subject.end),
  };
}

interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** One DER tag-length-value at `pos` (single-byte tags only, which is all X.509 uses here). */
function readTlv(buf: Buffer, pos: number): Tlv | undefined {
  if (pos + 2 > buf.length) return undefined;
  const tag = buf[pos]!;
  let len = buf[pos + 1]!;
  let contentStart = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || contentStart + n > buf.length) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[contentStart + i]!;
    contentStart += n;
  }
  const end = contentStart + len;
  if (end > buf.length) return undefined;
  return { tag, start: pos, contentStart, end };
}
