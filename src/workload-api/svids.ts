/**
 * SVIDs and bundles in the Workload API's wire forms (messages.ts), as the standard fixes them:
 * an X.509-SVID's chain as DER certificates concatenated, leaf first; its key as unencrypted
 * PKCS#8 DER; a trust domain's X.509 bundle as its CA certificates' DER concatenated; its JWT
 * bundle as a JWK set (JSON bytes); bundle maps keyed by the trust domain's SPIFFE ID
 * (`spiffe://example.org`), as SPIRE's agent sends them.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import type { TrustBundle } from "../spiffe/bundle.js";
import type { Certificate } from "../spiffe/certificate.js";
import { samePublicKey } from "../spiffe/keys.js";
import { validateX509SvidLeaf } from "../spiffe/x509svid.js";
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
