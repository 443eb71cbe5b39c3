/**
 * PKCS#10 certificate signing requests: how a workload asks for an X.509-SVID without ever
 * showing its private key to the authority.
 */
import { KeyObject, randomUUID, type webcrypto } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { EC_P256, subtle, x509 } from "./x509lib.js";

export interface WorkloadKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** DER PKCS#10 CSR proving possession of privateKey. */
  csr: Buffer;
}

/** Makes a fresh P-256 key pair and a CSR signed with it. The key stays with the caller. */
export async function generateWorkloadKey(): Promise<WorkloadKey> {
  const keys = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    // The authority ignores the CSR's names: the SPIFFE ID comes from its registry.
    name: [{ "2.5.4.10": ["AZTP"] }, { "2.5.4.3": [randomUUID()] }],
    keys,
    signingAlgorithm: EC_P256,
  });
  return {
    privateKey: KeyObject.from(keys.privateKey),
    publicKey: KeyObject.from(keys.publicKey),
    csr: Buffer.from(csr.rawData),
  };
}

/**
 * Parses a CSR (DER or PEM) and checks its self-signature: proof the requester holds the key.
 * Returns the requested public key as SPKI DER. Only the key is taken from a CSR; names in it
 * are ignored because the authority's registry decides the SPIFFE ID.
 */
export async function verifyCsr(csr: Buffer | string): Promise<{ spki: Buffer }> {
  let req: x509.Pkcs10CertificateRequest;
  try {
    req = new x509.Pkcs10CertificateRequest(typeof csr === "string" ? csr : new Uint8Array(csr));
  } catch (e) {
    throw new AztpError(ErrorCodes.AUTHORITY_CSR_INVALID, "cannot parse the certificate signing request", { cause: e });
  }
  let ok = false;
  try {
    ok = await req.verify();
  } catch (e) {
    throw new AztpError(ErrorCodes.AUTHORITY_CSR_INVALID, "the CSR's key or signature algorithm is not supported", {
      cause: e,
    });
  }
  if (!ok)
    throw new AztpError(
      ErrorCodes.AUTHORITY_CSR_INVALID,
      "the CSR's signature does not verify: no proof of possession",
    );
  return { spki: Buffer.from(req.publicKey.rawData) };
}
