/**
 * Audit checkpoints signed with an SVID. The audit log (audit/) takes any CheckpointSigner and
 * CheckpointVerifier (structural interfaces: no import between the two peer layers); these
 * back them with the writer's SVID key and the trust bundle, using the same token checks as
 * invocations (chain to the bundle, signature, iss = SVID ID).
 *
 * Token: header { alg, typ: "aztp-checkpoint+jwt", x5c }, claims { iss, iat, cp } where cp is
 * base64url(SHA-256(checkpoint payload bytes)).
 */
import { createHash, X509Certificate } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { signerOf, signWithHeader, type SignerLike } from "./codec.js";
import { CHECKPOINT_KIND, CHECKPOINT_TYP } from "./token-kinds.js";
import type { Trust } from "./trust.js";
import { validateToken } from "./validate.js";

export { CHECKPOINT_TYP } from "./token-kinds.js";

/** Matches audit's CheckpointSigner. */
export interface SvidCheckpointSigner {
  readonly id: string;
  sign(payload: Buffer): string;
  signNote(text: Buffer): { spki: Buffer; signature: Buffer } | null;
}

/** Matches audit's CheckpointVerifier. */
export interface SvidCheckpointVerifier {
  verify(sig: string, payload: Buffer): { signer: string; publicKey: Buffer };
}

/** The SVID's public key (DER SubjectPublicKeyInfo), read once per signer from its leaf certificate. */
const spkiCache = new WeakMap<object, Buffer>();
function leafSpki(signer: { readonly x5c: readonly string[] }): Buffer {
  let spki = spkiCache.get(signer);
  if (spki === undefined) {
    const leaf = new X509Certificate(Buffer.from(signer.x5c[0] ?? "", "base64"));
    spki = leaf.publicKey.export({ type: "spki", format: "der" });
    spkiCache.set(signer, spki);
  }
  return spki;
}

function digest(payload: Buffer): string {
  return createHash("sha256").update(payload).digest("base64url");
}

/** Signs checkpoints with `identity`'s SVID key (the current one, after rotations too). */
export function svidCheckpointSigner(identity: SignerLike): SvidCheckpointSigner {
  return {
    get id() {
      return signerOf(identity).id.toString();
    },
    sign(payload: Buffer): string {
      const signer = signerOf(identity);
      return signWithHeader(signer, CHECKPOINT_TYP, {
        iss: signer.id.toString(),
        iat: Math.floor(Date.now() / 1000),
        cp: digest(payload),
      });
    },
    // A C2SP checkpoint note is signed by the same SVID key (type 0x02 is ECDSA over SHA-256),
    // so only a P-256 SVID (ES256, the default) can sign one; SPIRE's ES384 or RSA SVIDs cannot.
    signNote(text: Buffer): { spki: Buffer; signature: Buffer } | null {
      const signer = signerOf(identity);
      if (signer.alg !== "ES256") return null;
      return { spki: leafSpki(signer), signature: signer.sign(text) };
    },
  };
}

/**
 * Verifies checkpoint signatures against `trust`. The signing SVID must chain to the bundle
 * at the checkpoint's own time (`iat`), so an old log still verifies after its SVIDs expired.
 * `signers`, if given, limits which SPIFFE IDs may sign.
 */
export function svidCheckpointVerifier(
  trust: Trust,
  options: { signers?: readonly string[] } = {},
): SvidCheckpointVerifier {
  return {
    verify(sig: string, payload: Buffer): { signer: string; publicKey: Buffer } {
      // The kind checks the chain as of the checkpoint's own iat, and no revocation (token-kinds.ts says why).
      const { claims, signer } = validateToken(sig, CHECKPOINT_KIND, trust);
      if (claims.cp !== digest(payload))
        throw new AztpError(ErrorCodes.AUDIT_CORRUPT, "checkpoint signature covers other contents", { rule: "digest" });
      if (options.signers && !options.signers.includes(signer.spiffeId)) {
        throw new AztpError(
          ErrorCodes.AUDIT_CORRUPT,
          `checkpoint signed by ${signer.spiffeId}, which is not an accepted signer`,
          { rule: "signer" },
        );
      }
      return { signer: signer.spiffeId, publicKey: signer.key.export({ type: "spki", format: "der" }) };
    },
  };
}
