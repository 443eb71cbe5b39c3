/**
 * SVIDs and bundles in the Workload API's wire forms (messages.ts), as the standard fixes them:
 * an X.509-SVID's chain as DER certificates concatenated, leaf first; its key as unencrypted
 * PKCS#8 DER; a trust domain's X.509 bundle as its CA certificates' DER concatenated; its JWT
 * bundle as a JWK set (JSON bytes); bundle maps keyed by the trust domain's SPIFFE ID
 * (`spiffe://example.org`), as SPIRE's agent sends them.
 */
import { createPrivateKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, TrustBundle } from "../spiffe/bundle.js";
import { Certificate } from "../spiffe/certificate.js";
import { samePublicKey } from "../spiffe/keys.js";
import { TrustDomain, type SpiffeId } from "../spiffe/spiffeid.js";
import { validateX509SvidLeaf, verifyX509Svid } from "../spiffe/x509svid.js";
import type { X509Svid } from "./messages.js";

/**
 * The X509SVID message for a workload's chain (leaf first) and key, with the bundle of its trust
 * domain. Throws ERR_ARGUMENT_INVALID when the leaf is no X.509-SVID, when the key is not the
 * leaf's, or when the bundle is another trust domain's: a workload must never be handed an
 * SVID it cannot use, or a bundle that does not verify it.
 */
export function x509SvidMessage(
  chain: readonly Certificate[],
  privateKey: KeyObject,
  bundle: TrustBundle,
  hint = "",
): X509Svid {
  const leaf = chain[0];
  if (leaf === undefined) throw invalid("an X.509-SVID needs at least its leaf certificate");
  const id = validateX509SvidLeaf(leaf);
  if (privateKey.type !== "private") throw invalid("the SVID's key must be a private key");
  if (!samePublicKey(leaf.publicKey, privateKey))
    throw invalid(`the key given for ${id.toString()} is not the key its certificate certifies`);
  if (id.trustDomain !== bundle.trustDomain)
    throw invalid(`the bundle of ${bundle.trustDomain} cannot verify ${id.toString()}`);
  return {
    spiffeId: id.toString(),
    x509Svid: Buffer.concat(chain.map((c) => c.der)),
    x509SvidKey: privateKey.export({ type: "pkcs8", format: "der" }),
    bundle: x509BundleBytes(bundle),
    hint,
  };
}

/** A trust domain's X.509 authorities, DER concatenated. */
export function x509BundleBytes(bundle: TrustBundle): Buffer {
  return Buffer.concat(bundle.x509Authorities.map((c) => c.der));
}

/** A trust domain's JWT authorities as a JWK set (the SPIFFE bundle's `jwt-svid` keys), JSON bytes. */
export function jwtBundleBytes(bundle: TrustBundle): Buffer {
  const keys = bundle.toSpiffe().keys.filter((k) => k.use === "jwt-svid");
  return Buffer.from(JSON.stringify({ keys }), "utf8");
}

/** Bundles keyed by trust domain ID, in the form `kind` names. */
export function bundleMap(bundles: Iterable<TrustBundle>, kind: "x509" | "jwt"): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const bundle of bundles)
    out[`spiffe://${bundle.trustDomain}`] = kind === "x509" ? x509BundleBytes(bundle) : jwtBundleBytes(bundle);
  return out;
}

function invalid(message: string): AztpError {
  return new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}

/**
 * An SVID as a workload reads it from an endpoint (ours or SPIRE's): its chain, its key and the
 * bundle of its trust domain, checked as go-spiffe checks them before a workload uses them (the
 * leaf an X.509-SVID, the key the leaf's, the chain verifying against the bundle sent with it).
 */
export interface ReceivedX509Svid {
  readonly id: SpiffeId;
  readonly chain: readonly Certificate[];
  readonly privateKey: KeyObject;
  readonly bundle: TrustBundle;
  readonly hint: string;
}

/** Reads an X509SVID message; throws ERR_ARGUMENT_INVALID (or the verifier's code) naming what is wrong. */
export function readX509Svid(message: X509Svid, time = new Date()): ReceivedX509Svid {
  const chain = splitDerCertificates(message.x509Svid, "x509_svid");
  const leaf = chain[0];
  if (leaf === undefined) throw invalid("an X509SVID message has no certificate");
  const id = validateX509SvidLeaf(leaf);
  if (message.spiffeId !== id.toString())
    throw invalid(`an X509SVID message names ${message.spiffeId.slice(0, 200)} but its leaf is ${id.toString()}`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(message.x509SvidKey), format: "der", type: "pkcs8" });
  } catch (e) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `the key of ${id.toString()} is no PKCS#8 DER private key`, {
      cause: e,
    });
  }
  if (!samePublicKey(leaf.publicKey, privateKey))
    throw invalid(`the key sent for ${id.toString()} is not the key its certificate certifies`);
  const bundle = new TrustBundle({
    trustDomain: id.trustDomain,
    x509Authorities: splitDerCertificates(message.bundle, "bundle"),
  });
  verifyX509Svid(chain, new BundleSet([bundle]), { time });
  return { id, chain, privateKey, bundle, hint: message.hint };
}

/** Bundles keyed by trust domain ID, read back: X.509 authorities (DER) or JWK sets (JSON). */
export function readBundleMap(map: Record<string, Uint8Array>, kind: "x509" | "jwt"): TrustBundle[] {
  return Object.entries(map).map(([key, bytes]) => {
    let td: string;
    try {
      td = TrustDomain.parse(key).name;
    } catch (e) {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `a bundle is keyed ${JSON.stringify(key.slice(0, 200))}, no trust domain ID`,
        {
          cause: e,
        },
      );
    }
    if (kind === "x509")
      return new TrustBundle({ trustDomain: td, x509Authorities: splitDerCertificates(bytes, `the bundle of ${td}`) });
    let json: unknown;
    try {
      json = JSON.parse(Buffer.from(bytes).toString("utf8"));
    } catch (e) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `the JWT bundle of ${td} is not JSON`, { cause: e });
    }
    return TrustBundle.parseJwks(json as object, td);
  });
}

/**
 * Concatenated DER certificates, one by one: each a SEQUENCE with a definite length (DER has no
 * other kind). Bytes that are not that, or that run past the end, are refused, never guessed at.
 */
export function splitDerCertificates(bytes: Uint8Array, what: string): Certificate[] {
  const out: Certificate[] = [];
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] !== 0x30 || i + 1 >= bytes.length) throw invalid(`${what}: no DER certificate at byte ${i}`);
    const first = bytes[i + 1] as number;
    let length: number;
    let head: number;
    if (first < 0x80) {
      length = first;
      head = 2;
    } else {
      const n = first & 0x7f;
      if (n === 0 || n > 4 || i + 2 + n > bytes.length)
        throw invalid(`${what}: a DER length at byte ${i} is not definite`);
      length = 0;
      for (let j = 0; j < n; j++) length = length * 256 + (bytes[i + 2 + j] as number);
      head = 2 + n;
    }
    if (i + head + length > bytes.length) throw invalid(`${what}: a certificate at byte ${i} runs past the end`);
    out.push(Certificate.fromDer(bytes.subarray(i, i + head + length)));
    i += head + length;
  }
  return out;
}
