/**
 * What signs the checkpoints of the service's audit log: the service's own identity,
 * spiffe://<default trust domain>/aztp/serve, with an X.509-SVID of its own issued by the CA at
 * start (ServeBackend's serviceSvidIssuer) over a P-256 key made here and never written
 * anywhere, and replaced at half its lifetime. The TLS SVID is not used: a service behind a
 * TLS-terminating proxy (--insecure-http) or with its organisation's certificate (--tls-cert)
 * has none, and its log is signed all the same.
 *
 * Each replica has its own key (and a new one every half-life): a checkpoint's JWS carries its
 * SVID chain (x5c), which is how a verifier holding the bundle knows the note's key is the
 * service's (svidCheckpointVerifier in invocation/checkpoint.ts returns that key).
 */
import type { CheckpointSigner } from "../audit/checkpoint.js";
import type { IssuedSvid } from "../authority/ca.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { svidCheckpointSigner } from "../invocation/checkpoint.js";
import { Certificate } from "../spiffe/certificate.js";
import { generateWorkloadKey } from "../spiffe/csr.js";
import { algorithmForKey, signRaw } from "../spiffe/keys.js";
import type { SvidSigner } from "../spiffe/signer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

/** Issues the service's SVID for a CSR (ServeBackend.issueServiceSvid, or serviceSvidIssuer in open.ts). */
export type ServiceSvidIssuer = (csr: Buffer, ttlSeconds: number) => Promise<IssuedSvid>;

const RETRY_MS = 30_000;

interface Held {
  readonly signer: SvidSigner;
  readonly issuedAt: number;
  readonly notAfter: number;
}

export class ServiceAuditSigner implements CheckpointSigner {
  readonly #issue: ServiceSvidIssuer;
  readonly #id: SpiffeId;
  readonly #ttlSeconds: number;
  readonly #onRotationFailure: (cause: unknown) => void;
  readonly #checkpoints: CheckpointSigner;
  #held: Held;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  private constructor(
    issue: ServiceSvidIssuer,
    id: SpiffeId,
    ttlSeconds: number,
    first: Held,
    onRotationFailure: (cause: unknown) => void,
  ) {
    this.#issue = issue;
    this.#id = id;
    this.#ttlSeconds = ttlSeconds;
    this.#held = first;
    this.#onRotationFailure = onRotationFailure;
    const self = this;
    this.#checkpoints = svidCheckpointSigner({
      get signer(): SvidSigner {
        return self.#current();
      },
    });
    this.#schedule(this.#halfLife());
  }

  /** Issues the first SVID (a failure is the service's failure to start) and rotates it at half-life. */
  static async start(
    issue: ServiceSvidIssuer,
    id: string,
    ttlSeconds: number,
    onRotationFailure: (cause: unknown) => void = () => undefined,
  ): Promise<ServiceAuditSigner> {
    const spiffeId = SpiffeId.parse(id);
    return new ServiceAuditSigner(
      issue,
      spiffeId,
      ttlSeconds,
      await issueHeld(issue, spiffeId, ttlSeconds),
      onRotationFailure,
    );
  }

  get id(): string {
    return this.#id.toString();
  }

  sign(payload: Buffer): string {
    return this.#checkpoints.sign(payload);
  }

  signNote(text: Buffer): { spki: Buffer; signature: Buffer } | null {
    return this.#checkpoints.signNote?.(text) ?? null;
  }

  /** Stops rotating (the service is stopping). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }

  /** The current SVID's signer; refuses once it expired (a rotation kept failing): such a signature would not verify. */
  #current(): SvidSigner {
    if (Date.now() >= this.#held.notAfter)
      throw new AztpError(
        ErrorCodes.AUDIT_IO_FAILED,
        `the service's audit-signing SVID expired at ${new Date(this.#held.notAfter).toISOString()} and could not be renewed`,
      );
    return this.#held.signer;
  }

  #halfLife(): number {
    const h = this.#held;
    return (h.notAfter - h.issuedAt) / 2 - (Date.now() - h.issuedAt);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#rotate(), Math.max(1000, ms));
    this.#timer.unref();
  }

  #rotate(): void {
    issueHeld(this.#issue, this.#id, this.#ttlSeconds).then(
      (next) => {
        if (this.#stopped) return;
        this.#held = next;
        this.#schedule(this.#halfLife());
      },
      (cause: unknown) => {
        this.#onRotationFailure(cause);
        this.#schedule(RETRY_MS);
      },
    );
  }
}

async function issueHeld(issue: ServiceSvidIssuer, id: SpiffeId, ttlSeconds: number): Promise<Held> {
  const issuedAt = Date.now();
  const key = await generateWorkloadKey();
  const svid = await issue(key.csr, ttlSeconds);
  const chain = Certificate.parsePem(svid.chainPem);
  const alg = algorithmForKey(key.privateKey);
  const privateKey = key.privateKey;
  const signer: SvidSigner = Object.freeze({
    id,
    alg,
    x5c: Object.freeze(chain.map((c) => c.der.toString("base64"))),
    sign: (data: Uint8Array) => signRaw(alg, privateKey, data),
  });
  return { signer, issuedAt, notAfter: svid.notAfter.getTime() };
}
