/**
 * The certificate authority of one trust domain: a long-lived root, an intermediate that
 * signs X.509-SVIDs, and the JWT-SVID signing key. Certificates follow the X509-SVID profile
 * (DESIGN §3): exactly one URI SAN; leaf cA=false, key usage critical with digitalSignature
 * only, EKU serverAuth+clientAuth; CA certificates cA=true with keyCertSign+cRLSign.
 */
import { calculateJwkThumbprint } from "jose";
import { createPrivateKey, createPublicKey, KeyObject, randomBytes, type webcrypto } from "node:crypto";
import { isIP } from "node:net";
import { AztpError, ErrorCodes } from "../errors.js";
import { verifyCsr } from "../spiffe/csr.js";
import { encodePem } from "../spiffe/pem.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { EC_P256, subtle, x509 } from "../spiffe/x509lib.js";

const ROOT_TTL_SECONDS = 10 * 365 * 24 * 3600;
const INTERMEDIATE_TTL_SECONDS = 365 * 24 * 3600;
export const DEFAULT_SVID_TTL_SECONDS = 3600;
/** Certificates are back-dated a little so a verifier whose clock is slightly behind accepts them. */
const BACKDATE_MS = 60_000;

export interface CaKeyMaterial {
  trustDomain: string;
  rootCertPem: string;
  rootKeyPem: string;
  intermediateCertPem: string;
  intermediateKeyPem: string;
  jwtKeyPem: string;
  jwtKid: string;
}

/** A positive, random 128-bit serial (RFC 5280 §4.1.2.2 wants ≥ 64 random bits): unique without coordination. */
function newSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x10; // positive, and never a leading zero byte
  return b.toString("hex");
}

/** `O=AZTP, CN=<cn>` as a structured name, so no string escaping rules are involved. */
type CertName = NonNullable<x509.X509CertificateCreateParams["subject"]>;

function distinguishedName(commonName: string): x509.JsonName {
  return [{ "2.5.4.10": ["AZTP"] }, { "2.5.4.3": [commonName] }];
}

/** Imports an intermediate key once, as WebCrypto keys (what @peculiar/x509 signs with). */
async function importKeyPair(
  pkcs8Pem: string,
): Promise<{ privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey }> {
  const node = createPrivateKey(pkcs8Pem);
  return {
    privateKey: await subtle.importKey("pkcs8", node.export({ format: "der", type: "pkcs8" }), EC_P256, false, [
      "sign",
    ]),
    publicKey: await subtle.importKey(
      "spki",
      createPublicKey(node).export({ format: "der", type: "spki" }),
      EC_P256,
      true,
      ["verify"],
    ),
  };
}

async function exportPkcs8Pem(key: webcrypto.CryptoKey): Promise<string> {
  return encodePem("PRIVATE KEY", new Uint8Array(await subtle.exportKey("pkcs8", key)));
}

/**
 * Creates a fresh root, intermediate and JWT key for `trustDomain`; or, given the current
 * material (`rotateFrom`), a new intermediate under the same root and a new JWT key: CA
 * rotation that leaves every live SVID valid, since its chain still ends at the same root.
 */
export async function createCaKeyMaterial(
  trustDomain: string,
  now = new Date(),
  rotateFrom?: CaKeyMaterial,
): Promise<CaKeyMaterial> {
  const tdId = SpiffeId.parse(`spiffe://${trustDomain}`);
  if (rotateFrom !== undefined && rotateFrom.trustDomain !== trustDomain) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `cannot rotate the CA of ${rotateFrom.trustDomain} into ${trustDomain}`,
    );
  }
  const root =
    rotateFrom !== undefined
      ? await importKeyPair(rotateFrom.rootKeyPem)
      : ((await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair);
  const inter = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const jwt = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(now.getTime() - BACKDATE_MS);
  const rootName = distinguishedName(`${trustDomain} root CA`);
  const interName = distinguishedName(`${trustDomain} intermediate CA`);
  const caSan = new x509.SubjectAlternativeNameExtension([{ type: "url", value: tdId.toString() }], false);
  // Root (path length 1) and intermediate (0): CA certificates that differ only in who they
  // are, who signs them, how long they live and how many CAs may follow them.
  const caCertificate = async (c: {
    subject: CertName;
    issuer: CertName;
    ttlSeconds: number;
    key: webcrypto.CryptoKey;
    signer: webcrypto.CryptoKeyPair;
    pathLength: number;
  }) =>
    x509.X509CertificateGenerator.create({
      serialNumber: newSerial(),
      subject: c.subject,
      issuer: c.issuer,
      notBefore,
      notAfter: new Date(now.getTime() + c.ttlSeconds * 1000),
      signingAlgorithm: EC_P256,
      publicKey: c.key,
      signingKey: c.signer.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(true, c.pathLength, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        caSan,
        await x509.SubjectKeyIdentifierExtension.create(c.key),
        // A self-signed root needs no authority key identifier; the intermediate names the root's.
        ...(c.signer.publicKey === c.key
          ? []
          : [await x509.AuthorityKeyIdentifierExtension.create(c.signer.publicKey)]),
      ],
    });
  const rootCert =
    rotateFrom !== undefined
      ? new x509.X509Certificate(rotateFrom.rootCertPem)
      : await caCertificate({
          subject: rootName,
          issuer: rootName,
          ttlSeconds: ROOT_TTL_SECONDS,
          key: root.publicKey,
          signer: root,
          pathLength: 1,
        });
  const interCert = await caCertificate({
    subject: interName,
    issuer: rootCert.subjectName,
    ttlSeconds: INTERMEDIATE_TTL_SECONDS,
    key: inter.publicKey,
    signer: root,
    pathLength: 0,
  });
  return {
    trustDomain,
    rootCertPem: rotateFrom?.rootCertPem ?? rootCert.toString("pem") + "\n",
    rootKeyPem: rotateFrom?.rootKeyPem ?? (await exportPkcs8Pem(root.privateKey)),
    intermediateCertPem: interCert.toString("pem") + "\n",
    intermediateKeyPem: await exportPkcs8Pem(inter.privateKey),
    jwtKeyPem: await exportPkcs8Pem(jwt.privateKey),
    // The JWT key ID is the RFC 7638 thumbprint of the public key: stable and collision-free.
    jwtKid: await calculateJwkThumbprint(KeyObject.from(jwt.publicKey).export({ format: "jwk" })),
  };
}

/**
 * The lifetime an X.509-SVID asked for `ttlSeconds` gets before any cap (ERR_ARGUMENT_INVALID when
 * not a positive number).
 */
export function checkSvidTtl(ttlSeconds: number | undefined): number {
  const ttl = ttlSeconds ?? DEFAULT_SVID_TTL_SECONDS;
  if (typeof ttl !== "number" || !Number.isFinite(ttl) || ttl <= 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "ttl must be a positive number of seconds");
  return ttl;
}

/** An SVID whose capped lifetime (a parent's SVID, the CA) ends before it would start. */
export function lifetimeEnded(): AztpError {
  return new AztpError(ErrorCodes.PARENT_INVALID, "the capped lifetime has already ended (parent or CA expired)");
}

export interface IssuedSvid {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** PEM: the leaf, then the intermediate. */
  chainPem: string;
  /**
   * The leaf's public key as a JWK (RFC 7517): recorded with the identity (registry.recordSvid),
   * where the token endpoint finds it for a `private_key_jwt` assertion that names no key.
   */
  publicKeyJwk?: Record<string, unknown>;
}

/**
 * A loaded CA, ready to sign. Keys are imported once (importing costs ~0.5 ms each time).
 */
export class CertificateAuthority {
  readonly trustDomain: string;
  readonly rootCertPem: string;
  readonly intermediateCertPem: string;
  readonly jwtKid: string;
  readonly jwtKey: KeyObject;
  readonly intermediateNotAfter: Date;
  private readonly intermediate: x509.X509Certificate;
  private readonly intermediateKeys: { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey };
  private readonly authorityKeyId: x509.AuthorityKeyIdentifierExtension;

  private constructor(
    m: CaKeyMaterial,
    keys: { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey },
    aki: x509.AuthorityKeyIdentifierExtension,
  ) {
    this.trustDomain = m.trustDomain;
    this.rootCertPem = m.rootCertPem;
    this.intermediateCertPem = m.intermediateCertPem;
    this.jwtKid = m.jwtKid;
    this.jwtKey = createPrivateKey(m.jwtKeyPem);
    this.intermediate = new x509.X509Certificate(m.intermediateCertPem);
    this.intermediateNotAfter = this.intermediate.notAfter;
    this.intermediateKeys = keys;
    this.authorityKeyId = aki;
  }

  static async load(m: CaKeyMaterial): Promise<CertificateAuthority> {
    const keys = await importKeyPair(m.intermediateKeyPem);
    const aki = await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey);
    return new CertificateAuthority(m, keys, aki);
  }

  /**
   * Signs an X.509-SVID for `id` over the public key in `csr`, after checking the CSR's
   * self-signature. `notAfter` is capped by the intermediate's own expiry (and by the
   * caller's cap, e.g. a parent's SVID expiry).
   */
  async issueSvid(
    id: SpiffeId,
    csr: Buffer | string,
    options: {
      ttlSeconds?: number;
      notAfterCap?: Date;
      now?: Date;
      commonName?: string;
      /**
       * DNS names and IP addresses besides the SPIFFE ID (the X509-SVID standard allows other SAN
       * types): the names a service is reached under, for HTTPS clients that check host names.
       */
      hostNames?: readonly string[];
    } = {},
  ): Promise<IssuedSvid> {
    if (id.trustDomain !== this.trustDomain) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `this CA issues for ${this.trustDomain}, not ${id.trustDomain}`);
    }
    if (id.isTrustDomainId) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an X.509-SVID needs a non-root path");
    const { spki } = await verifyCsr(csr);
    const now = options.now ?? new Date();
    const ttl = checkSvidTtl(options.ttlSeconds);
    let notAfter = new Date(now.getTime() + ttl * 1000);
    if (options.notAfterCap && options.notAfterCap < notAfter) notAfter = options.notAfterCap;
    if (this.intermediateNotAfter < notAfter) notAfter = this.intermediateNotAfter;
    if (notAfter <= now) throw lifetimeEnded();
    const notBefore = new Date(now.getTime() - BACKDATE_MS);
    const serial = newSerial();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: distinguishedName(options.commonName ?? (id.path.split("/").pop() || id.trustDomain)),
      issuer: this.intermediate.subjectName,
      notBefore,
      notAfter,
      signingAlgorithm: EC_P256,
      publicKey: new Uint8Array(spki),
      signingKey: this.intermediateKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension(
          [
            { type: "url", value: id.toString() },
            ...(options.hostNames ?? []).map((h) => ({
              type: isIP(h) === 0 ? ("dns" as const) : ("ip" as const),
              value: h,
            })),
          ],
          false,
        ),
        this.authorityKeyId,
      ],
    });
    return {
      serial,
      notBefore,
      notAfter,
      chainPem: cert.toString("pem") + "\n" + this.intermediateCertPem,
      publicKeyJwk: createPublicKey({ key: spki, format: "der", type: "spki" }).export({ format: "jwk" }) as Record<
        string,
        unknown
      >,
    };
  }
}
