/**
 * A Workload API source, as go-spiffe's `workloadapi.X509Source` and `JWTSource` are: the
 * workload's X.509-SVIDs and every bundle it trusts, kept current from the endpoint's streams
 * (FetchX509SVID, FetchJWTBundles), behind the `BundleSource` interface every verifier of this
 * library takes. Whether the endpoint is SPIRE's agent or `aztp workload-api` makes no
 * difference: nothing here knows an authority.
 *
 * - An update is checked before it is taken (svids.ts: each SVID's leaf, key and chain against
 *   the bundle sent with it); an update that fails the check is reported and the last good state
 *   kept.
 * - Bundles: a trust domain's X.509 authorities come from the X509SVID stream (its own bundle
 *   and the federated ones), its JWT authorities from the JWT bundles stream; `version` changes
 *   whenever either does, so verifiers' caches follow.
 * - An empty update (the workload lost every identity) is taken: `svids()` is then empty, and
 *   the wrappers holding one of them see it as gone.
 */
import { EventEmitter } from "node:events";
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, TrustBundle } from "../spiffe/bundle.js";
import type { Certificate } from "../spiffe/certificate.js";
import { WorkloadApiClient } from "./client.js";
import type { JwtBundlesResponse, X509SvidResponse } from "./messages.js";
import { readBundleMap, readX509Svid, type ReceivedX509Svid } from "./svids.js";

export interface WorkloadApiSourceEvents {
  /** The SVIDs changed (a rotation, an identity gained or lost). */
  svids: [readonly ReceivedX509Svid[]];
  /** The bundles changed. */
  bundles: [];
  /** A stream failed or sent what could not be taken; the source goes on with what it holds. */
  error: [AztpError];
}

export interface WorkloadApiSourceOptions {
  /** How long `open` waits for the first SVIDs and bundles (default 10 s). */
  timeoutMs?: number | undefined;
}

export class WorkloadApiSource extends EventEmitter<WorkloadApiSourceEvents> {
  readonly address: string;
  readonly #client: WorkloadApiClient;
  #svids: readonly ReceivedX509Svid[] = [];
  #x509 = new Map<string, readonly Certificate[]>();
  #jwt = new Map<string, TrustBundle>();
  #bundles = new BundleSet();
  #version = 0;
  #closed = false;

  private constructor(address: string) {
    super();
    this.address = address;
    this.#client = new WorkloadApiClient(address);
  }

  /**
   * Connects and waits for the first X.509-SVIDs and JWT bundles. Rejects with
   * ERR_WORKLOAD_API_PERMISSION_DENIED when the endpoint has no identity for this process,
   * ERR_WORKLOAD_API_ENDPOINT_UNAVAILABLE when it does not answer in time.
   */
  static async open(address: string, options: WorkloadApiSourceOptions = {}): Promise<WorkloadApiSource> {
    const source = new WorkloadApiSource(address);
    const timeoutMs = options.timeoutMs ?? 10_000;
    let lastError: AztpError | undefined;
    const ready = Promise.all([
      new Promise<void>((resolve, reject) => {
        source.#client.watch("FetchX509SVID", {
          update: (m) => {
            if (source.#takeSvids(m)) resolve();
          },
          error: (e, final) => {
            lastError = e;
            // No identity at the start is an answer, not a blip to wait out.
            if (final || e.code === ErrorCodes.WORKLOAD_API_PERMISSION_DENIED) reject(e);
            else source.#report(e);
            // Later, SPIRE's agent ends the stream this way when the workload's last entry goes
            // (an empty update is the other way): either way the workload holds no identity now.
            if (e.code === ErrorCodes.WORKLOAD_API_PERMISSION_DENIED) source.#lose();
          },
        });
      }),
      new Promise<void>((resolve, reject) => {
        source.#client.watch("FetchJWTBundles", {
          update: (m) => {
            source.#takeJwtBundles(m);
            resolve();
          },
          error: (e, final) => {
            lastError = e;
            if (final || e.code === ErrorCodes.WORKLOAD_API_PERMISSION_DENIED) reject(e);
            else source.#report(e);
          },
        });
      }),
    ]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AztpError(
              ErrorCodes.WORKLOAD_API_ENDPOINT_UNAVAILABLE,
              `the Workload API at ${address} sent no SVID within ${timeoutMs} ms${lastError ? `: ${lastError.message}` : ""}`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([ready, timeout]);
    } catch (e) {
      source.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return source;
  }

  /** The X.509-SVIDs the endpoint hands out now, as sent (the first is the default, as in go-spiffe). */
  svids(): readonly ReceivedX509Svid[] {
    return this.#svids;
  }

  getBundleForTrustDomain(trustDomain: string): TrustBundle | undefined {
    return this.#bundles.getBundleForTrustDomain(trustDomain);
  }

  /** Changes whenever a bundle does (the BundleSource contract). */
  get version(): number {
    return this.#version;
  }

  /** Every bundle held: what a verifier on this source trusts. */
  bundleSet(): BundleSet {
    return this.#bundles;
  }

  /** FetchJWTSVID for one of this workload's identities. */
  async fetchJwtSvid(spiffeId: string, audience: string | readonly string[]): Promise<string> {
    const aud = typeof audience === "string" ? [audience] : [...audience];
    const svids = await this.#client.fetchJwtSvids(aud, spiffeId);
    const svid = svids.find((s) => s.spiffeId === spiffeId);
    if (svid === undefined)
      throw new AztpError(
        ErrorCodes.WORKLOAD_API_SVID_NOT_FOUND,
        `the Workload API at ${this.address} sent no JWT-SVID for ${spiffeId}`,
      );
    return svid.svid;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.close();
  }

  /** The workload holds no identity any more: as an empty update. */
  #lose(): void {
    if (this.#svids.length === 0) return;
    this.#svids = [];
    this.emit("svids", this.#svids);
  }

  /** Tells the listeners of "error", if any: a failure the source survives must not end the process. */
  #report(e: AztpError): void {
    if (this.listenerCount("error") > 0) this.emit("error", e);
  }

  /** Takes an X509SVID update if every SVID in it checks; returns whether it was taken. */
  #takeSvids(m: X509SvidResponse): boolean {
    let svids: ReceivedX509Svid[];
    let federated: TrustBundle[];
    try {
      svids = m.svids.map((s) => readX509Svid(s));
      federated = readBundleMap(m.federatedBundles, "x509");
    } catch (e) {
      this.#report(
        new AztpError(
          ErrorCodes.WORKLOAD_API_ENDPOINT_UNAVAILABLE,
          `the Workload API at ${this.address} sent an X.509-SVID update that does not check: ${(e as Error).message}`,
          { cause: e },
        ),
      );
      return false;
    }
    const x509 = new Map<string, readonly Certificate[]>();
    for (const b of federated) x509.set(b.trustDomain, b.x509Authorities);
    for (const s of svids) x509.set(s.bundle.trustDomain, s.bundle.x509Authorities);
    this.#svids = svids;
    // An empty update carries no bundle: the workload keeps trusting what it trusted.
    if (svids.length > 0) this.#x509 = x509;
    this.#rebuild();
    this.emit("svids", svids);
    return true;
  }

  #takeJwtBundles(m: JwtBundlesResponse): void {
    let bundles: TrustBundle[];
    try {
      bundles = readBundleMap(m.bundles, "jwt");
    } catch (e) {
      this.#report(
        new AztpError(
          ErrorCodes.WORKLOAD_API_ENDPOINT_UNAVAILABLE,
          `the Workload API at ${this.address} sent JWT bundles that do not parse: ${(e as Error).message}`,
          { cause: e },
        ),
      );
      return;
    }
    this.#jwt = new Map(bundles.map((b) => [b.trustDomain, b]));
    this.#rebuild();
  }

  /** One TrustBundle per trust domain: its X.509 authorities and its JWT authorities. */
  #rebuild(): void {
    const set = new BundleSet();
    for (const td of new Set([...this.#x509.keys(), ...this.#jwt.keys()])) {
      set.add(
        new TrustBundle({
          trustDomain: td,
          x509Authorities: this.#x509.get(td) ?? [],
          jwtAuthorities: this.#jwt.get(td)?.jwtAuthorities ?? new Map(),
        }),
      );
    }
    if (!sameBundles(this.#bundles, set)) {
      this.#bundles = set;
      this.#version++;
      this.emit("bundles");
    }
  }
}

function sameBundles(a: BundleSet, b: BundleSet): boolean {
  if (a.size !== b.size) return false;
  for (const x of b) {
    const y = a.getBundleForTrustDomain(x.trustDomain);
    if (y === undefined) return false;
    const fx = x.x509Authorities.map((c) => c.fingerprint).join();
    const fy = y.x509Authorities.map((c) => c.fingerprint).join();
    if (fx !== fy || [...x.jwtAuthorities.keys()].join() !== [...y.jwtAuthorities.keys()].join()) return false;
  }
  return true;
}
