/**
 * The signing side of AZTP's compact JWS: who signs (SignerLike), and the protected header
 * ({ alg, typ, x5c }) encoded once per signer and typ, so signing a token costs one signature.
 * Verifying is validate.ts.
 */
import type { SvidSigner } from "../spiffe/signer.js";
import { b64uEncode } from "../spiffe/base64url.js";

/** Anything that can sign: an AgentIdentity (has `.signer`) or an SvidSigner itself. */
export type SignerLike = SvidSigner | { readonly signer: SvidSigner };

export function signerOf(s: SignerLike): SvidSigner {
  return "signer" in s ? s.signer : s;
}

/** The encoded protected header, computed once per signer (it carries the whole x5c chain). */
const headerCache = new WeakMap<SvidSigner, Map<string, string>>();

export function encodedHeader(signer: SvidSigner, typ: string): string {
  let byTyp = headerCache.get(signer);
  if (byTyp === undefined) {
    byTyp = new Map();
    headerCache.set(signer, byTyp);
  }
  let h = byTyp.get(typ);
  if (h === undefined) {
    h = b64uEncode(JSON.stringify({ alg: signer.alg, typ, x5c: signer.x5c }));
    byTyp.set(typ, h);
  }
  return h;
}

/** Signs `payload` under the signer's cached header: the whole cost is one signature. */
export function signWithHeader(signer: SvidSigner, typ: string, payload: object): string {
  const input = `${encodedHeader(signer, typ)}.${b64uEncode(JSON.stringify(payload))}`;
  return `${input}.${signer.sign(Buffer.from(input, "ascii")).toString("base64url")}`;
}
