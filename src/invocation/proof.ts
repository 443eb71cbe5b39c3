/**
 * Proof of possession of an SVID key, for a peer that is not (yet) making a call: an MCP
 * server answering `initialize` signs the client's fresh nonce, so the client learns the
 * server's SPIFFE ID (the audience of its later tokens) from a proof, not from a claim.
 *
 * Token: header { alg, typ: "aztp-pop+jwt", x5c }, claims { iss, iat, exp (≤ 60 s), nonce, [aud] }.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { toAuthorizer, type Authorizer } from "../spiffe/authorizer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { decodeSigned, signerOf, signWithHeader, type SignerLike } from "./invocation.js";
import type { Trust } from "./trust.js";

export const PROOF_TYP = "aztp-pop+jwt";
const PROOF_TTL_SECONDS = 60;

export function signPossessionProof(identity: SignerLike, options: { nonce: string; audience?: string }): string {
  if (typeof options.nonce !== "string" || options.nonce.length < 16 || options.nonce.length > 256) {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, "a possession proof needs a nonce of 16 to 256 characters");
  }
  const signer = signerOf(identity);
  const iat = Math.floor(Date.now() / 1000);
  return signWithHeader(signer, PROOF_TYP, {
    iss: signer.id.toString(),
    iat,
    exp: iat + PROOF_TTL_SECONDS,
    nonce: options.nonce,
    ...(options.audience ? { aud: SpiffeId.parse(options.audience).toString() } : {}),
  });
}

const CODES = {
  missing: ErrorCodes.PROOF_INVALID,
  malformed: ErrorCodes.PROOF_INVALID,
  alg: ErrorCodes.PROOF_INVALID,
  untrusted: ErrorCodes.PROOF_INVALID,
  signature: ErrorCodes.PROOF_INVALID,
  issuer: ErrorCodes.PROOF_INVALID,
} as const;

/**
 * Verifies a proof for `nonce` against `trust`, then asks `authorize` (an ID, a list, or an
 * Authorizer) whether the prover is acceptable. Returns the prover's SPIFFE ID.
 */
export function verifyPossessionProof(token: unknown, options: VerifyPossessionProofOptions): SpiffeId {
  return verifyPossessionProofSigner(token, options).id;
}

export interface VerifyPossessionProofOptions {
  nonce: string;
  trust: Trust;
  audience?: string;
  authorize?: string | SpiffeId | ReadonlyArray<string | SpiffeId> | Authorizer;
  now?: Date;
}

/** Like verifyPossessionProof, also returning the serial of the SVID that proved it (for later revocation checks). */
export function verifyPossessionProofSigner(token: unknown, options: VerifyPossessionProofOptions): { id: SpiffeId; serial: string } {
  const now = options.now ?? new Date();
  const { decoded, signer } = decodeSigned(token, PROOF_TYP, options.trust, now, CODES, "possession proof");
  const c = decoded.payload;
  if (c.nonce !== options.nonce) throw new AztpError(ErrorCodes.PROOF_INVALID, "possession proof: it answers another challenge (nonce differs)");
  const nowSec = now.getTime() / 1000;
  if (typeof c.exp !== "number" || typeof c.iat !== "number" || c.exp - c.iat > PROOF_TTL_SECONDS || nowSec > c.exp + 30 || c.iat > nowSec + 30) {
    throw new AztpError(ErrorCodes.PROOF_INVALID, "possession proof: outside its time window");
  }
  if (options.audience !== undefined && c.aud !== undefined && c.aud !== SpiffeId.parse(options.audience).toString()) {
    throw new AztpError(ErrorCodes.PROOF_INVALID, "possession proof: made for another peer");
  }
  if (options.trust.isRevoked(signer.spiffeId, signer.serial)) throw new AztpError(ErrorCodes.PROOF_INVALID, `possession proof: ${signer.spiffeId} is revoked`);
  const id = SpiffeId.parse(signer.spiffeId);
  toAuthorizer(options.authorize)(id);
  return { id, serial: signer.serial };
}
