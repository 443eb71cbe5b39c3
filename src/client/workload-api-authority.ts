/**
 * The `Authority` a client runs on when its identities come from a SPIFFE Workload API endpoint
 * (`aztp.initialize({ workloadApi })`, or SPIFFE_ENDPOINT_SOCKET): SPIRE's agent, or
 * `aztp workload-api`. Every wrapper types against `Authority`, so each works unchanged on it.
 *
 * What it does is what the Workload API offers: the workload's X.509-SVIDs (followed as they
 * rotate), JWT-SVIDs for any audience, and the bundles (federated ones included), all from the
 * endpoint's streams (workload-api/source.ts). What it cannot do is refused with
 * ERR_WORKLOAD_API_OPERATION_UNSUPPORTED naming the operation, never faked: issuing, renewing,
 * child identities, revocation, links, attached policies, access tokens, token exchange and the
 * person issuers belong to the authority that issued the identities (SPIRE's server, `aztp
 * serve`, a home folder).
 *
 * Revocation: the Workload API carries no revocation list (SPIRE relies on short SVID
 * lifetimes). `isRevoked` answers true only for an identity of this workload the endpoint has
 * stopped handing out (its entry deleted, or revoked at an `aztp workload-api`); any other
 * identity is as good as its SVID's lifetime. The client says so once, when it connects.
 */
import type { KeyObject } from "node:crypto";
import type {
  AccessTokenResult,
  Authority,
  AuthorityRelations,
  IdentityFilter,
  IssueResult,
} from "../authority/authority-api.js";
import type { IdentityLink, IdentityRecord, PolicyEntry } from "../authority/registry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { TokenExchangeResult } from "../people/token-exchange.js";
import type { PersonIssuerConfig } from "../people/person-issuers.js";
import type { PolicyDocument } from "../policy/policy.js";
import type { BundleSet, TrustBundle } from "../spiffe/bundle.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { ReceivedX509Svid } from "../workload-api/svids.js";
import { WorkloadApiSource, type WorkloadApiSourceOptions } from "../workload-api/source.js";

/** An SVID of this workload, as a secured agent binds it. */
export interface WorkloadSvid {
  readonly record: IdentityRecord;
  readonly key: KeyObject;
  readonly chainPem: string;
}

export class WorkloadApiAuthority implements Authority {
  readonly home: string;
  readonly #source: WorkloadApiSource;
  /** IDs of this workload the endpoint has handed out, and whether it still does. */
  readonly #seen = new Map<string, boolean>();
  readonly #created = new Map<string, string>();

  private constructor(source: WorkloadApiSource, home: string) {
    this.#source = source;
    this.home = home;
    this.#note(source.svids());
    source.on("svids", (svids) => this.#note(svids));
    // Failures are reported through the source's events; an unhandled "error" event would end the process.
    source.on("error", () => undefined);
  }

  /** Connects to the endpoint at `address` and waits for the workload's first SVIDs and bundles. */
  static async connect(
    address: string,
    home: string,
    options: WorkloadApiSourceOptions = {},
  ): Promise<WorkloadApiAuthority> {
    return new WorkloadApiAuthority(await WorkloadApiSource.open(address, options), home);
  }

  /** The endpoint's address (`unix:///...`). */
  get address(): string {
    return this.#source.address;
  }

  /** The source behind it: SVIDs and bundles as the endpoint sends them, and their events. */
  get source(): WorkloadApiSource {
    return this.#source;
  }

  /** The trust domain of the workload's first SVID (go-spiffe's default SVID). */
  get defaultTrustDomain(): string {
    const first = this.#source.svids()[0];
    return first?.id.trustDomain ?? [...this.#source.bundleSet()][0]?.trustDomain ?? "";
  }

  get trustDomains(): readonly string[] {
    return [...this.#source.bundleSet()].map((b) => b.trustDomain);
  }

  /** No token endpoint of its own: access tokens come from the issuing authority. */
  get oauthIssuer(): string {
    return "";
  }

  get version(): number {
    return this.#source.version;
  }

  /**
   * The SVID `name` selects: the one whose SPIFFE (or AZTP) ID or hint is `name`, or the only one
   * handed out. ERR_WORKLOAD_API_SVID_NOT_FOUND lists what there is otherwise.
   */
  select(name: string): WorkloadSvid {
    const svids = this.#source.svids();
    const byId = name.includes("://") ? SpiffeId.parse(name).toString() : undefined;
    const found =
      svids.find((s) => s.id.toString() === byId) ??
      svids.find((s) => s.hint !== "" && s.hint === name) ??
      (byId === undefined && svids.length === 1 ? svids[0] : undefined);
    if (found === undefined) {
      const offered = svids.map((s) => (s.hint === "" ? s.id.toString() : `${s.id.toString()} (hint ${s.hint})`));
      throw new AztpError(
        ErrorCodes.WORKLOAD_API_SVID_NOT_FOUND,
        `the Workload API at ${this.address} hands out no SVID named ${JSON.stringify(name)} by SPIFFE ID or hint; it hands out ${offered.length === 0 ? "none" : offered.join(", ")}`,
      );
    }
    return this.#svid(found);
  }

  /**
   * Calls `update` with the SVID of `spiffeId` each time the endpoint sends a new one (a rotation),
   * and `lost` when it stops handing it out. Returns the function that stops following.
   */
  follow(spiffeId: string, update: (svid: WorkloadSvid) => void, lost: () => void): () => void {
    const id = SpiffeId.parse(spiffeId).toString();
    let serial = this.#source.svids().find((s) => s.id.toString() === id)?.chain[0]?.serialNumber;
    const onSvids = (svids: readonly ReceivedX509Svid[]): void => {
      const now = svids.find((s) => s.id.toString() === id);
      if (now === undefined) {
        if (serial !== undefined) lost();
        serial = undefined;
        return;
      }
      const leaf = now.chain[0]?.serialNumber;
      if (leaf === serial) return;
      serial = leaf;
      update(this.#svid(now));
    };
    this.#source.on("svids", onSvids);
    return () => this.#source.off("svids", onSvids);
  }

  // ---- what the Workload API gives ----

  /** FetchJWTSVID. The endpoint sets the lifetime: asking for one is refused, not ignored. */
  mintJwtSvid(id: string, audience: string | string[], ttlSeconds?: number): Promise<string> {
    if (ttlSeconds !== undefined) return Promise.reject(unsupported("jwt-svid-ttl"));
    return this.#source.fetchJwtSvid(SpiffeId.parse(id).toString(), audience);
  }

  get(id: string): IdentityRecord {
    const rec = this.heldRecord(id);
    if (rec === undefined)
      throw new AztpError(
        ErrorCodes.IDENTITY_NOT_FOUND,
        `${SpiffeId.parse(id).aztpId} is not an identity of this workload: a Workload API source knows only its own`,
      );
    return rec;
  }

  find(id: string): IdentityRecord | undefined {
    return this.heldRecord(id);
  }

  findByName(name: string, trustDomain?: string): IdentityRecord | undefined {
    return this.list({ trustDomain }).find((r) => r.name === name);
  }

  list(filter: IdentityFilter = {}): IdentityRecord[] {
    return this.#source
      .svids()
      .map((s) => this.#record(s))
      .filter((r) => filter.trustDomain === undefined || r.trustDomain === filter.trustDomain)
      .filter((r) => filter.status === undefined || r.status === filter.status);
  }

  heldRecord(id: string): IdentityRecord | undefined {
    let key: string;
    try {
      key = SpiffeId.parse(id).toString();
    } catch {
      return undefined;
    }
    const svid = this.#source.svids().find((s) => s.id.toString() === key);
    return svid === undefined ? undefined : this.#record(svid);
  }

  /** Linked identities live at the issuing authority; none is known here. */
  connected(): boolean {
    return false;
  }

  isRevoked(id: string): boolean {
    let key: string;
    try {
      key = SpiffeId.parse(id).toString();
    } catch {
      return false;
    }
    return this.#seen.get(key) === false;
  }

  /** No policy is attached to an identity here: policies a server holds itself still apply. */
  policiesOf(): readonly PolicyDocument[] {
    return [];
  }

  relations(): AuthorityRelations | undefined {
    return undefined;
  }

  getBundleForTrustDomain(trustDomain: string): TrustBundle | undefined {
    return this.#source.getBundleForTrustDomain(trustDomain);
  }

  bundle(trustDomain = this.defaultTrustDomain): TrustBundle {
    const b = this.#source.getBundleForTrustDomain(trustDomain);
    if (b === undefined)
      throw new AztpError(
        ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
        `the Workload API at ${this.address} sends no bundle for ${trustDomain}`,
      );
    return b;
  }

  bundleSet(): BundleSet {
    return this.#source.bundleSet();
  }

  close(): Promise<void> {
    this.#source.close();
    return Promise.resolve();
  }

  // ---- what it cannot do: the issuing authority's ----

  issueIdentity(): Promise<IssueResult> {
    return Promise.reject(unsupported("issue"));
  }

  renewSvid(): Promise<IssueResult> {
    return Promise.reject(unsupported("renew"));
  }

  accessToken(): Promise<AccessTokenResult> {
    return Promise.reject(unsupported("access-token"));
  }

  exchangeToken(): Promise<TokenExchangeResult> {
    return Promise.reject(unsupported("token-exchange"));
  }

  personIssuers(): PersonIssuerConfig[] {
    throw unsupported("person-issuers");
  }

  addPersonIssuer(): Promise<PersonIssuerConfig> {
    return Promise.reject(unsupported("person-issuers"));
  }

  removePersonIssuer(): Promise<boolean> {
    return Promise.reject(unsupported("person-issuers"));
  }

  revoke(): Promise<string[]> {
    return Promise.reject(unsupported("revoke"));
  }

  reissue(): Promise<IdentityRecord> {
    return Promise.reject(unsupported("reissue"));
  }

  link(): Promise<IdentityLink> {
    return Promise.reject(unsupported("link"));
  }

  attachPolicy(): Promise<PolicyEntry> {
    return Promise.reject(unsupported("policy"));
  }

  detachPolicy(): Promise<boolean> {
    return Promise.reject(unsupported("policy"));
  }

  #note(svids: readonly ReceivedX509Svid[]): void {
    const now = new Set(svids.map((s) => s.id.toString()));
    for (const id of this.#seen.keys()) this.#seen.set(id, now.has(id));
    for (const id of now) this.#seen.set(id, true);
  }

  #svid(s: ReceivedX509Svid): WorkloadSvid {
    return { record: this.#record(s), key: s.privateKey, chainPem: s.chain.map((c) => c.toPem()).join("") };
  }

  /** A record for an SVID the endpoint hands out: what the Workload API tells, and no more. */
  #record(s: ReceivedX509Svid): IdentityRecord {
    const spiffeId = s.id.toString();
    const leaf = s.chain[0];
    let createdAt = this.#created.get(spiffeId);
    if (createdAt === undefined) {
      createdAt = new Date().toISOString();
      this.#created.set(spiffeId, createdAt);
    }
    const segments = s.id.path.split("/").filter((p) => p !== "");
    return {
      name: s.hint !== "" ? s.hint : (segments[segments.length - 1] ?? s.id.trustDomain),
      aztpId: s.id.aztpId,
      spiffeId,
      workloadId: spiffeId,
      trustDomain: s.id.trustDomain,
      environment: "workload-api",
      method: "workload-api",
      isGlobalIdentity: false,
      parentIdentity: null,
      links: [],
      metadata: { workloadApi: this.address, ...(s.hint !== "" ? { hint: s.hint } : {}) },
      status: "active",
      ...(leaf !== undefined ? { currentSerial: leaf.serialNumber, notAfter: leaf.notAfter.toISOString() } : {}),
      serials: leaf !== undefined ? [leaf.serialNumber] : [],
      policies: [],
      createdAt,
      updatedAt: createdAt,
    };
  }
}

/** What a Workload API source cannot do, by the `rule` its refusal carries, and whose it is instead. */
const UNSUPPORTED = {
  issue:
    "the endpoint issues this workload's identities itself; new ones (children included) are registered at the authority that issues them",
  renew: "the endpoint rotates SVIDs itself, and the client follows its stream",
  "jwt-svid-ttl": "a JWT-SVID's lifetime is the endpoint's to set",
  "access-token": "OAuth access tokens come from the issuing authority's token endpoint",
  "token-exchange": "on-behalf-of tokens come from the issuing authority's token endpoint",
  "person-issuers": "the OpenID Providers a trust domain trusts are the issuing authority's",
  revoke: "revocation is the issuing authority's (SPIRE: delete the entry; short SVID lifetimes do the rest)",
  reissue: "identities are the issuing authority's",
  link: "links between identities are kept by the issuing authority",
  policy: "policies attached to identities are kept by the issuing authority",
} as const;

function unsupported(rule: keyof typeof UNSUPPORTED): AztpError {
  return new AztpError(
    ErrorCodes.WORKLOAD_API_OPERATION_UNSUPPORTED,
    `a Workload API source cannot do this (${rule}): ${UNSUPPORTED[rule]}`,
    { rule },
  );
}
