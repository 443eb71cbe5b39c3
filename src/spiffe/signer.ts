/**
 * What signs with an SVID: the SPIFFE ID, the algorithm, the certificate chain to put in a
 * JWS `x5c` header, and a sign function. The private key stays behind the function, in the
 * object that made it (an AgentIdentity, a key file loaded by the CLI, a Workload API client).
 */
import type { JwsAlgorithm } from "./keys.js";
import type { SpiffeId } from "./spiffeid.js";

export interface SvidSigner {
  readonly id: SpiffeId;
  readonly alg: JwsAlgorithm;
  /** The SVID chain as base64 DER, leaf first (the JWS `x5c` header). */
  readonly x5c: readonly string[];
  sign(data: Uint8Array): Buffer;
}
