/**
 * A workload identity held by this process: its private key (which never leaves this object),
 * its current X.509-SVID, and rotation at half-life in the background.
 */
import { EventEmitter } from "node:events";
import { createPublicKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import type { AccessTokenRequest, AccessTokenResult, Authority } from "../authority/authority-api.js";
import { signClientAssertion } from "../oauth/client-assertion.js";
import { subjectTokenTypeOf, type TokenExchangeResult } from "../people/token-exchange.js";
import type { IdentityRecord } from "../authority/registry.js";
import { Certificate } from "../spiffe/certificate.js";
import { generateWorkloadKey } from "../spiffe/csr.js";
import { algorithmForKey, signRaw } from "../spiffe/keys.js";
import type { SvidSigner } from "../spiffe/signer.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { verifyX509Svid } from "../spiffe/x509svid.js";

export interface IdentityEvents {
  rotated: [{ aztpId: string; serial: string; expiresAt: Date }];
  "rotation-failed": [{ aztpId: string; error: AztpError | Error }];
}

/** Timers longer than this overflow setTimeout (2^31-1 ms); re-arm instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class AgentIdentity extends EventEmitter<IdentityEvents> {
  readonly aztpId: string;
  readonly spiffeId: string;
  readonly workloadId: string;
  readonly name: string;
  readonly trustDomain: string;
  readonly id: SpiffeId;

  #authority: Authority;
  readonly #parentIdentity: string | null;
  #key: KeyObject;
  #chain: Certificate[];
  #chainPem: string;
  #x5c: string[];
  #timer: NodeJS.Timeout | undefined;
  #ttlSeconds: number | undefined;
  #closed = false;
  #signer: SvidSigner;
  /** When the current SVID arrived: its notBefore is back-dated, so half-life counts from here. */
  #installedAt = Date.now();

  /**
   * Who renews the SVID: this object at half-life ("renew", through the authority), or whoever
   * pushes new ones with installSvid ("pushed": a Workload API endpoint's stream).
   */
  readonly #rotation: "renew" | "pushed";

  /** @internal created by the client after issuance. */
  constructor(
    authority: Authority,
    record: IdentityRecord,
    key: KeyObject,
    chainPem: string,
    ttlSeconds?: number,
    rotation: "renew" | "pushed" = "renew",
  ) {
    super();
    this.#authority = authority;
    this.#parentIdentity = record.parentIdentity;
    this.aztpId = record.aztpId;
    this.spiffeId = record.spiffeId;
    this.workloadId = record.workloadId;
    this.name = record.name;
    this.trustDomain = record.trustDomain;
    this.id = SpiffeId.parse(record.spiffeId);
    this.#ttlSeconds = ttlSeconds;
    this.#rotation = rotation;
    this.#key = key;
    this.#chain = Certificate.parsePem(chainPem);
    this.#chainPem = chainPem;
    this.#x5c = this.#chain.map((c) => c.der.toString("base64"));
    this.#signer = this.#makeSigner();
    this.#schedule();
  }

  #makeSigner(): SvidSigner {
    const key = this.#key;
    const alg = algorithmForKey(key);
    return Object.freeze({
      id: this.id,
      alg,
      x5c: Object.freeze([...this.#x5c]),
      sign: (data: Uint8Array) => signRaw(alg, key, data),
    });
  }

  /** The home folder of the authority that issued this identity (where its default audit log lives). */
  get home(): string {
    return this.#authority.home;
  }

  /**
   * "active" or "revoked", as the authority's revocations say now (this identity or an
   * ancestor): the registry itself for the embedded authority, the verified revocation feed
   * for a remote one.
   */
  get status(): "active" | "revoked" {
    return this.#authority.isRevoked(this.spiffeId) ? "revoked" : "active";
  }

  /** Its parent, as the authority says now (a link of type "parent" can set one later). */
  get parentIdentity(): string | null {
    return this.#authority.heldRecord(this.spiffeId)?.parentIdentity ?? this.#parentIdentity;
  }

  /** The current SVID's expiry. */
  get expiresAt(): Date {
    return this.#chain[0]?.notAfter ?? new Date(0);
  }

  get serial(): string {
    return this.#chain[0]?.serialNumber ?? "";
  }

  /** True while the identity is active, unrevoked and its SVID unexpired. */
  get valid(): boolean {
    if (this.#closed) return false;
    const now = Date.now();
    return now < this.expiresAt.getTime() && !this.#authority.isRevoked(this.spiffeId, this.serial);
  }

  /** The X.509-SVID chain as PEM: leaf, then intermediate. */
  get certificate(): string {
    return this.#chainPem;
  }

  /** The trust bundle (root CA) of this identity's trust domain, as PEM. */
  get caCertificate(): string {
    return this.#authority.bundle(this.trustDomain).toPem();
  }

  /** What invocation signing needs, with the key kept inside. Changes on rotation. */
  get signer(): SvidSigner {
    return this.#signer;
  }

  /**
   * An OAuth access token (RFC 9068) for `resource`, with the scopes this identity's policies
   * allow: from `aztp serve`'s token endpoint, authenticated by a private_key_jwt signed with
   * this identity's SVID key (a remote authority), or minted in this process by the same rule
   * (the embedded authority).
   */
  async accessToken(request: AccessTokenRequest): Promise<AccessTokenResult> {
    const key = this.#key;
    return this.#authority.accessToken(this.spiffeId, request, (audience) =>
      signClientAssertion({ clientId: this.spiffeId, audience, key }),
    );
  }

  /**
   * This agent acting for a person (DESIGN §13): exchanges the person's token (an ID token or a
   * JWT access token of a provider its trust domain trusts), or a parent agent's on-behalf-of
   * token to extend, for an on-behalf-of token bound to this identity's current SVID key (RFC
   * 8693 with `act` and `cnf`). Sign calls with it (`onBehalfOf`); after a rotation, exchange
   * again (the new key is another binding).
   */
  async actFor(
    subjectToken: string,
    options: { resources?: readonly string[]; scopes?: readonly string[]; ttlSeconds?: number } = {},
  ): Promise<TokenExchangeResult> {
    const key = this.#key;
    return this.#authority.exchangeToken(
      this.spiffeId,
      {
        subjectToken,
        subjectTokenType: subjectTokenTypeOf(subjectToken),
        ...(options.resources !== undefined ? { resources: options.resources } : {}),
        ...(options.scopes !== undefined ? { scopes: options.scopes } : {}),
        ...(options.ttlSeconds !== undefined ? { ttlSeconds: options.ttlSeconds } : {}),
      },
      {
        key: createPublicKey(key),
        assertion: (audience) => signClientAssertion({ clientId: this.spiffeId, audience, key }),
      },
    );
  }

  /** A JWT-SVID for `audience`, minted by the trust domain's authority. */
  async jwtSvid(audience: string | string[], ttlSeconds?: number): Promise<string> {
    return this.#authority.mintJwtSvid(this.spiffeId, audience, ttlSeconds);
  }

  /**
   * Verifies this identity's SVID for real: the chain to the bundle, the X509-SVID rules,
   * the validity window, and revocation (of the identity, an ancestor, or the serial).
   */
  async verify(time = new Date()): Promise<boolean> {
    if (this.#closed) return false;
    try {
      verifyX509Svid(this.#chain, this.#authority.bundleSet(), { time });
    } catch {
      return false;
    }
    return !this.#authority.isRevoked(this.spiffeId, this.serial);
  }

  /** Gets a new key and SVID now (rotation does this at half-life on its own). */
  async rotate(): Promise<void> {
    const wk = await generateWorkloadKey();
    const { svid } = await this.#authority.renewSvid(
      this.spiffeId,
      wk.csr,
      this.#ttlSeconds !== undefined ? { ttlSeconds: this.#ttlSeconds } : {},
    );
    this.installSvid(wk.privateKey, svid.chainPem);
  }

  /** @internal Swaps in a new key and SVID (after rotation, or when secureConnect re-issues). */
  installSvid(key: KeyObject, chainPem: string): void {
    const chain = Certificate.parsePem(chainPem);
    const leaf = chain[0];
    if (leaf === undefined || !leaf.uriSans.includes(this.spiffeId)) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `the new SVID is not for ${this.spiffeId}`);
    }
    this.#key = key;
    this.#chain = chain;
    this.#chainPem = chainPem;
    this.#x5c = chain.map((c) => c.der.toString("base64"));
    this.#signer = this.#makeSigner();
    this.#installedAt = Date.now();
    this.#closed = false;
    this.#schedule();
    this.emit("rotated", { aztpId: this.aztpId, serial: leaf.serialNumber, expiresAt: leaf.notAfter });
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed || this.#rotation === "pushed") return;
    const leaf = this.#chain[0];
    if (!leaf) return;
    // The authority back-dates notBefore (clock skew); measuring from it would put half-life
    // too early, and for short TTLs in the past (rotating every second).
    const start = Math.max(leaf.notBefore.getTime(), this.#installedAt);
    const half = start + (leaf.notAfter.getTime() - start) / 2;
    const delay = Math.max(1000, half - Date.now());
    this.#timer = setTimeout(
      () => {
        if (Date.now() + 1000 < half) return this.#schedule(); // re-armed after a clamp
        this.rotate().catch((error: unknown) => {
          this.emit("rotation-failed", {
            aztpId: this.aztpId,
            error: error instanceof Error ? error : new Error(String(error)),
          });
          // Try again later, but never in a tight loop.
          clearTimeout(this.#timer);
          this.#timer = setTimeout(() => this.#schedule(), 30_000);
          this.#timer.unref();
        });
      },
      Math.min(delay, MAX_TIMER_MS),
    );
    // Rotation must never keep a process alive that would otherwise exit.
    this.#timer.unref();
  }

  /** Stops rotation. The identity stays registered; this object stops being valid. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  toJSON(): Record<string, unknown> {
    return {
      aztpId: this.aztpId,
      spiffeId: this.spiffeId,
      workloadId: this.workloadId,
      name: this.name,
      trustDomain: this.trustDomain,
      parentIdentity: this.parentIdentity,
      status: this.status,
      valid: this.valid,
      expiresAt: this.expiresAt.toISOString(),
      certificate: this.certificate,
    };
  }

  /** console.log shows the public fields, never the key. */
  [Symbol.for("nodejs.util.inspect.custom")](): Record<string, unknown> {
    return { ...this.toJSON(), certificate: `<${this.#chain.length} certificates, serial ${this.serial}>` };
  }
}
