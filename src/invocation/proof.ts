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
import { signerOf, signWithHeader, type SignerLike } from "./codec.js";
import { PROOF_KIND, PROOF_TTL_SECONDS, PROOF_TYP } from "./token-kinds.js";
import type { Trust } from "./trust.js";
import { validateToken } from "./validate.js";

export { PROOF_TYP } from "./token-kinds.js";

export function signPossessionProof(identity: SignerLike, options: { nonce: string; audience?: string }): string {
  if (typeof options.nonce !== "string" || options.nonce.length < 16 || options.nonce.length > 256) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "a possession proof needs a nonce of 16 to 256 characters");
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

function invalid(message: string, rule: string): never {
  throw new AztpError(ErrorCodes.PROOF_INVALID, `possession proof: ${message}`, { rule });
}

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
export function verifyPossessionProofSigner(
  token: unknown,
  options: VerifyPossessionProofOptions,
): { id: SpiffeId; serial: string } {
  const { claims: c, signer } = validateToken(token, PROOF_KIND, options.trust, { now: options.now });
  if (c.nonce !== options.nonce) invalid("it answers another challenge (nonce differs)", "nonce");
  if (options.audience !== undefined && c.aud !== undefined && c.aud !== SpiffeId.parse(options.audience).toString())
    invalid("made for another peer", "audience");
  // The verified leaf's ID object: no second parse of the string it was printed from.
  const id = signer.svid.id;
  // The authorizer throws its own code (ERR_PEER_NOT_AUTHORIZED), which callers act on.
  toAuthorizer(options.authorize)(id);
  return { id, serial: signer.serial };
}
