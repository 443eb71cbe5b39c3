/**
 * A throw-away certificate authority for tests, in the spirit of go-spiffe's internal/test/ca.go:
 * a root per trust domain, intermediates below it, and leaves (X.509-SVIDs) with knobs for every
 * defect the verifier must catch. Certificates are made with @peculiar/x509 over WebCrypto
 * (P-256 keys: fast to generate) and returned as the library's own `Certificate` objects.
 */
import assert from "node:assert/strict";
import { KeyObject, randomBytes, type webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";
import { AztpError, type ErrorCode } from "../../src/errors.js";
import { Certificate } from "../../src/spiffe/certificate.js";
import { TrustBundle } from "../../src/spiffe/bundle.js";
import { EC_P256, subtle, x509 } from "../../src/spiffe/x509lib.js";

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type CryptoKey = webcrypto.CryptoKey;

export const KU = x509.KeyUsageFlags;

/** Everything a test may want to get wrong about a certificate. */
export interface CertOptions {
  /** Subject DN, e.g. "CN=leaf"; "" for an empty subject. */
  subject?: string;
  uris?: string[];
  dnsNames?: string[];
  sanCritical?: boolean;
  /** BasicConstraints cA. Defaults: true for CAs, false for leaves. */
  isCA?: boolean;
  /** Leave BasicConstraints out entirely. */
  omitBasicConstraints?: boolean;
  pathLen?: number;
  /** KeyUsage flags; `null` leaves the extension out. */
  keyUsage?: number | null;
  keyUsageCritical?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  extraExtensions?: x509.Extension[];
  /** Forgery: sign with this key instead of the issuer's (the issuer name stays). */
  signWith?: CryptoKey;
  /** Forgery: claim this issuer name instead of the real issuer's subject. */
  issuerName?: string;
}

export interface TestSvid {
  /** Leaf, then every intermediate up to (not including) the root. */
  certificates: Certificate[];
  privateKey: KeyObject;
  /** The same chain as base64 DER, as a JWS x5c header carries it. */
  x5c: string[];
}

/** Whole seconds: X.509 times have no sub-second part, so tests compare exactly. */
export function seconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

const HOUR = 3600_000;

export async function generateKeys(): Promise<CryptoKeyPair> {
  return (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** Issues one certificate for `publicKey`, signed by `issuer` (or self-signed when absent). */
export async function issueCertificate(
  keys: CryptoKeyPair,
  defaults: { subject: string; isCA: boolean; keyUsage: number },
  options: CertOptions,
  issuer?: { name: string; keys: CryptoKeyPair },
): Promise<Certificate> {
  const now = seconds(new Date());
  const isCA = options.isCA ?? defaults.isCA;
  const extensions: x509.Extension[] = [];
  if (!options.omitBasicConstraints) extensions.push(new x509.BasicConstraintsExtension(isCA, options.pathLen, true));
  const keyUsage = options.keyUsage === undefined ? defaults.keyUsage : options.keyUsage;
  if (keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(keyUsage, options.keyUsageCritical ?? true));
  const names = [
    ...(options.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })),
    ...(options.uris ?? []).map((value) => ({ type: "url" as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, options.sanCritical ?? false));
  extensions.push(...(options.extraExtensions ?? []));
  const subject = options.subject ?? defaults.subject;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: `01${randomBytes(15).toString("hex")}`,
    subject,
    issuer: options.issuerName ?? issuer?.name ?? subject,
    notBefore: options.notBefore ?? new Date(now.getTime() - HOUR),
    notAfter: options.notAfter ?? new Date(now.getTime() + HOUR),
    publicKey: keys.publicKey,
    signingKey: options.signWith ?? (issuer ?? { keys }).keys.privateKey,
    signingAlgorithm: EC_P256,
    extensions,
  });
  return Certificate.fromDer(new Uint8Array(cert.rawData));
}

let caCounter = 0;

export class TestCA {
  readonly trustDomain: string;
  readonly cert: Certificate;
  readonly keys: CryptoKeyPair;
  /** The DN this CA signs as. */
  readonly name: string;
  readonly parent: TestCA | undefined;

  private constructor(trustDomain: string, cert: Certificate, keys: CryptoKeyPair, name: string, parent?: TestCA) {
    this.trustDomain = trustDomain;
    this.cert = cert;
    this.keys = keys;
    this.name = name;
    this.parent = parent;
  }

  /** A self-signed root: cA=TRUE, KU keyCertSign+cRLSign (critical), URI SAN spiffe://<td>. */
  static async create(trustDomain = "example.org", options: CertOptions = {}): Promise<TestCA> {
    const keys = await generateKeys();
    const name = options.subject ?? `O=SPIFFE, CN=${trustDomain} root ${++caCounter}`;
    const cert = await issueCertificate(
      keys,
      { subject: name, isCA: true, keyUsage: KU.keyCertSign | KU.cRLSign },
      { uris: [`spiffe://${trustDomain}`], ...options, subject: name },
    );
    return new TestCA(trustDomain, cert, keys, name);
  }

  /** An intermediate CA signed by this one (same defaults as the root). */
  async createCA(options: CertOptions = {}): Promise<TestCA> {
    const keys = await generateKeys();
    const name = options.subject ?? `O=SPIFFE, CN=${this.trustDomain} intermediate ${++caCounter}`;
    const cert = await issueCertificate(
      keys,
      { subject: name, isCA: true, keyUsage: KU.keyCertSign | KU.cRLSign },
      { uris: [`spiffe://${this.trustDomain}`], ...options, subject: name },
      this,
    );
    return new TestCA(this.trustDomain, cert, keys, name, this);
  }

  /**
   * A leaf for `id` (the default X509-SVID profile: cA=FALSE, KU digitalSignature critical,
   * one URI SAN), with this CA's intermediates appended. `options.uris` replaces the SAN.
   */
  async createX509Svid(id: string, options: CertOptions = {}): Promise<TestSvid> {
    const keys = await generateKeys();
    const leaf = await issueCertificate(
      keys,
      { subject: "O=SPIRE, CN=workload", isCA: false, keyUsage: KU.digitalSignature },
      { uris: [id], ...options },
      this,
    );
    const certificates = [leaf, ...this.intermediates()];
    return {
      certificates,
      privateKey: KeyObject.from(keys.privateKey),
      x5c: certificates.map((c) => c.der.toString("base64")),
    };
  }

  /** This CA and its ancestors, excluding the root: what a workload sends after its leaf. */
  intermediates(): Certificate[] {
    const out: Certificate[] = [];
    for (let ca: TestCA | undefined = this; ca?.parent !== undefined; ca = ca.parent) out.push(ca.cert);
    return out;
  }

  root(): TestCA {
    return this.parent === undefined ? this : this.parent.root();
  }

  /** A bundle holding just the root. */
  bundle(): TrustBundle {
    return new TrustBundle({ trustDomain: this.trustDomain, x509Authorities: [this.root().cert] });
  }
}

// Small helpers the SPIFFE tests share (kept here rather than in a new file, to stay within the
// files these tests own).

/** The text of a conformance fixture, read in place from ../shared (never copied in). */
export function conformance(relative: string): string {
  return readFileSync(new URL(`../../../shared/conformance/spiffe/${relative}`, import.meta.url), "utf8");
}

/** Runs `fn` and asserts it throws an AztpError with exactly `code`. */
export function expectCode(fn: () => unknown, code: ErrorCode): AztpError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof AztpError, `expected AztpError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}
