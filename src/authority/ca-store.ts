/**
 * Where an authority keeps its configuration (trust domains) and its CA key material, by
 * generation: a CA is rotated by adding a generation (a new intermediate under the same root,
 * and a new JWT key) while the previous one stays in the bundle until every SVID and JWT-SVID
 * it signed has expired.
 *
 * The home folder keeps keys in 0600 files; PostgreSQL keeps them sealed under a
 * key-encryption key each replica is given (store/postgres/ca.ts, authority/sealed-key.ts),
 * never in plaintext.
 */
import type { PersonIssuerConfig } from "../people/person-issuers.js";
import type { CaKeyMaterial } from "./ca.js";

export interface AuthorityConfig {
  version: 1;
  defaultTrustDomain: string;
  trustDomains: string[];
  createdAt: string;
  /** CA rotations so far, by trust domain: a change other processes see as a new config version. */
  rotations?: Record<string, number> | undefined;
  /**
   * The OpenID Providers each trust domain trusts to say who a person is (people/person-issuers.ts),
   * by trust domain: configuration every replica must see, so it lives with the trust domains.
   */
  personIssuers?: Record<string, PersonIssuerConfig[]> | undefined;
}

export interface CaGeneration {
  /** 1 for the first CA of a trust domain, then one more per rotation. */
  generation: number;
  material: CaKeyMaterial;
  createdAt: string;
  /**
   * Set on every generation but the newest: when it leaves the bundle (the latest expiry of
   * anything it signed). Until then its JWT key stays in the bundle next to the new one.
   */
  retireAfter?: string | undefined;
}

export interface CaStore {
  /** Where it is, for messages: a folder, or a PostgreSQL URL without its password. */
  readonly location: string;
  /** The configuration, or undefined when no authority was created there yet. */
  readConfig(): Promise<AuthorityConfig | undefined>;
  /**
   * A cheap token that changes whenever a trust domain or a CA generation is added. May be
   * synchronous (a file's version) or not (a query).
   */
  configVersion(): string | undefined | Promise<string | undefined>;
  /**
   * Creates the authority with its first trust domain, atomically. Resolves false, writing
   * nothing, when one already exists (created before, or concurrently by another process).
   */
  create(config: AuthorityConfig, first: CaKeyMaterial): Promise<boolean>;
  /**
   * Adds `trustDomain` with the CA `material()` makes, unless it is there already (another
   * process may add it at the same moment: one wins and both then load its CA). Resolves
   * with the configuration after the change.
   */
  addTrustDomain(trustDomain: string, material: () => Promise<CaKeyMaterial>): Promise<AuthorityConfig>;
  /**
   * Changes the configuration's settings (not its trust domains or CA generations) under the
   * store's lock, so two processes changing it at once both land. Resolves with the new one.
   */
  updateConfig(change: (config: AuthorityConfig) => AuthorityConfig): Promise<AuthorityConfig>;
  /** The CA generations of `trustDomain`, newest first (empty when it has none). */
  loadCa(trustDomain: string): Promise<CaGeneration[]>;
  /**
   * Rotation: `material` becomes the newest generation; the one before gets `retireAfter`.
   * Resolves with the generations after the change, newest first.
   */
  rotate(trustDomain: string, material: CaKeyMaterial, retireAfter: Date): Promise<CaGeneration[]>;
  close(): Promise<void>;
}
