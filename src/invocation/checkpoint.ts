/**
 * Audit checkpoints signed with an SVID. The audit log (audit/) takes any CheckpointSigner and
 * CheckpointVerifier (structural interfaces: no import between the two peer layers); these
 * back them with the writer's SVID key and the trust bundle, using the same token checks as
 * invocations (chain to the bundle, signature, iss = SVID ID).
 *
 * Token: header { alg, typ: "aztp-checkpoint+jwt", x5c }, claims { iss, iat, cp } where cp is
 * base64url(SHA-256(checkpoint payload bytes)).
 */
import { createHash } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { peekClaims } from "../spiffe/jws.js";
import { decodeSigned, signerOf, signWithHeader, type SignerLike } from "./invocation.js";
import type { Trust } from "./trust.js";

export const CHECKPOINT_TYP = "aztp-checkpoint+jwt";

/** Matches audit's CheckpointSigner. */
export interface SvidCheckpointSigner {
  readonly id: string;
  sign(payload: Buffer): string;
}

/** Matches audit's CheckpointVerifier. */
export interface SvidCheckpointVerifier {
  verify(sig: string, payload: Buffer): { signer: string };
}

const CODES = {
  missing: ErrorCodes.AUDIT_CORRUPT,
  malformed: ErrorCodes.AUDIT_CORRUPT,
  alg: ErrorCodes.AUDIT_CORRUPT,
  untrusted: ErrorCodes.AUDIT_CORRUPT,
  signature: ErrorCodes.AUDIT_CORRUPT,
  issuer: ErrorCodes.AUDIT_CORRUPT,
} as const;

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
      return signWithHeader(signer, CHECKPOINT_TYP, { iss: signer.id.toString(), iat: Math.floor(Date.now() / 1000), cp: digest(payload) });
    },
  };
}

/**
 * Verifies checkpoint signatures against `trust`. The signing SVID must chain to the bundle
 * at the checkpoint's own time (`iat`), so an old log still verifies after its SVIDs expired.
 * `signers`, if given, limits which SPIFFE IDs may sign.
 */
export function svidCheckpointVerifier(trust: Trust, options: { signers?: readonly string[] } = {}): SvidCheckpointVerifier {
  return {
    verify(sig: string, payload: Buffer): { signer: string } {
      // First pass only to read iat: decodeSigned checks the chain at the time given.
      const iat = readIat(sig);
      const { decoded, signer } = decodeSigned(sig, CHECKPOINT_TYP, trust, new Date(iat * 1000), CODES, "checkpoint signature");
      if (decoded.payload.cp !== digest(payload)) throw new AztpError(ErrorCodes.AUDIT_CORRUPT, "checkpoint signature covers other contents");
      if (options.signers && !options.signers.includes(signer.spiffeId)) {
        throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `checkpoint signed by ${signer.spiffeId}, which is not an accepted signer`);
      }
      return { signer: signer.spiffeId };
    },
  };
}

function readIat(token: string): number {
  const iat = peekClaims(token)?.iat;
  if (typeof iat === "number" && Number.isFinite(iat)) return iat;
  throw new AztpError(ErrorCodes.AUDIT_CORRUPT, "checkpoint signature has no readable iat");
}
