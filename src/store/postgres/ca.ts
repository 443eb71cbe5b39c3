/**
 * The authority's configuration and CA generations on PostgreSQL. Certificates are stored in
 * the clear (they are public: the bundle publishes them); the root, intermediate and JWT
 * private keys only sealed under the key-encryption key every replica is given
 * (authority/sealed-key.ts), each bound to its trust domain, generation and role.
 *
 * Races between replicas are settled by the database: `create` inserts the one configuration
 * row with ON CONFLICT DO NOTHING (one wins, the other is told false and loads the winner's
 * CA); `addTrustDomain` and `rotate` lock that row (SELECT ... FOR UPDATE) for their change.
 */
import type { CaKeyMaterial } from "../../authority/ca.js";
import type { AuthorityConfig, CaGeneration, CaStore } from "../../authority/ca-store.js";
import type { KeyEncryptionKey, SealedKeyRole } from "../../authority/sealed-key.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { query, transaction, type PgConnection } from "./pool.js";
import type pg from "pg";

interface GenerationRow {
  trust_domain: string;
  generation: number;
  created_at: string;
  retire_after: string | null;
  root_cert_pem: string;
  intermediate_cert_pem: string;
  jwt_kid: string;
  root_key_sealed: string;
  intermediate_key_sealed: string;
  jwt_key_sealed: string;
}

export class PgCaStore implements CaStore {
  readonly #conn: PgConnection;
  readonly #kek: KeyEncryptionKey;

  constructor(conn: PgConnection, kek: KeyEncryptionKey) {
    this.#conn = conn;
    this.#kek = kek;
  }

  get location(): string {
    return this.#conn.location;
  }

  async readConfig(): Promise<AuthorityConfig | undefined> {
    const { rows } = await query<{ config: AuthorityConfig }>(
      this.#conn.pool,
      this.location,
      "read the authority configuration",
      "SELECT config FROM aztp_authority WHERE id = 1",
    );
    return rows[0]?.config;
  }

  async configVersion(): Promise<string | undefined> {
    const { rows } = await query<{ version: string }>(
      this.#conn.pool,
      this.location,
      "read the authority version",
      "SELECT version FROM aztp_authority WHERE id = 1",
    );
    return rows[0]?.version;
  }

  create(config: AuthorityConfig, first: CaKeyMaterial): Promise<boolean> {
    return transaction(this.#conn, "create the authority", async (client) => {
      const inserted = await query(
        client,
        this.location,
        "create the authority",
        "INSERT INTO aztp_authority (id, config, version) VALUES (1, $1, 1) ON CONFLICT (id) DO NOTHING RETURNING id",
        [JSON.stringify(config)],
      );
      if (inserted.rowCount !== 1) return false; // another replica created it first: keep theirs
      await this.#insertGeneration(client, first, 1, config.createdAt, null);
      return true;
    });
  }

  async addTrustDomain(trustDomain: string, material: () => Promise<CaKeyMaterial>): Promise<AuthorityConfig> {
    const config = await this.readConfig();
    if (config === undefined) throw notInitialized(this.location);
    if (config.trustDomains.includes(trustDomain)) return config;
    // Keys are made outside the transaction (they take a while); if another replica adds the
    // trust domain meanwhile, these are dropped and its CA is the one.
    const made = await material();
    if (made.trustDomain !== trustDomain)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `CA material is for ${made.trustDomain}, not ${trustDomain}`);
    return transaction(this.#conn, `add trust domain ${trustDomain}`, async (client) => {
      const locked = await this.#lockConfig(client);
      if (locked.trustDomains.includes(trustDomain)) return locked;
      const next: AuthorityConfig = { ...locked, trustDomains: [...locked.trustDomains, trustDomain] };
      await this.#insertGeneration(client, made, 1, new Date().toISOString(), null);
      await query(
        client,
        this.location,
        `add trust domain ${trustDomain}`,
        "UPDATE aztp_authority SET config = $1, version = version + 1 WHERE id = 1",
        [JSON.stringify(next)],
      );
      return next;
    });
  }

  async loadCa(trustDomain: string): Promise<CaGeneration[]> {
    const { rows } = await query<GenerationRow>(
      this.#conn.pool,
      this.location,
      `load the CA of ${trustDomain}`,
      "SELECT * FROM aztp_ca_generations WHERE trust_domain = $1 ORDER BY generation DESC",
      [trustDomain],
    );
    return rows.map((r) => this.#generation(r));
  }

  async updateConfig(change: (config: AuthorityConfig) => AuthorityConfig): Promise<AuthorityConfig> {
    return transaction(this.#conn, "update the authority's configuration", async (client) => {
      const next = change(await this.#lockConfig(client));
      await query(
        client,
        this.location,
        "update the authority's configuration",
        "UPDATE aztp_authority SET config = $1, version = version + 1 WHERE id = 1",
        [JSON.stringify(next)],
      );
      return next;
    });
  }

  async rotate(trustDomain: string, material: CaKeyMaterial, retireAfter: Date): Promise<CaGeneration[]> {
    if (material.trustDomain !== trustDomain)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `CA material is for ${material.trustDomain}, not ${trustDomain}`,
      );
    const what = `rotate the CA of ${trustDomain}`;
    await transaction(this.#conn, what, async (client) => {
      const config = await this.#lockConfig(client);
      if (!config.trustDomains.includes(trustDomain)) {
        throw new AztpError(
          ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
          `the authority at ${this.location} has no CA for trust domain ${trustDomain}`,
        );
      }
      const { rows } = await query<{ generation: number }>(
        client,
        this.location,
        what,
        "SELECT max(generation) AS generation FROM aztp_ca_generations WHERE trust_domain = $1",
        [trustDomain],
      );
      const newest = rows[0]?.generation ?? 0;
      await query(
        client,
        this.location,
        what,
        "UPDATE aztp_ca_generations SET retire_after = $3 WHERE trust_domain = $1 AND generation = $2",
        [trustDomain, newest, retireAfter.toISOString()],
      );
      await this.#insertGeneration(client, material, newest + 1, new Date().toISOString(), null);
      // The count of rotations is in the configuration, as the home folder keeps it: an
      // authority that sees it change reloads its CAs.
      const next: AuthorityConfig = { ...config, rotations: { ...config.rotations, [trustDomain]: newest } };
      await query(
        client,
        this.location,
        what,
        "UPDATE aztp_authority SET config = $1, version = version + 1 WHERE id = 1",
        [JSON.stringify(next)],
      );
    });
    return this.loadCa(trustDomain);
  }

  /** The pool belongs to openPostgresStores, which closes it. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  async #lockConfig(client: pg.PoolClient): Promise<AuthorityConfig> {
    const { rows } = await query<{ config: AuthorityConfig }>(
      client,
      this.location,
      "lock the authority configuration",
      "SELECT config FROM aztp_authority WHERE id = 1 FOR UPDATE",
    );
    const config = rows[0]?.config;
    if (config === undefined) throw notInitialized(this.location);
    return config;
  }

  async #insertGeneration(
    client: pg.PoolClient,
    m: CaKeyMaterial,
    generation: number,
    createdAt: string,
    retireAfter: string | null,
  ): Promise<void> {
    const seal = (pem: string, role: SealedKeyRole): string =>
      this.#kek.seal(pem, { trustDomain: m.trustDomain, generation, role });
    await query(
      client,
      this.location,
      `store CA generation ${generation} of ${m.trustDomain}`,
      `INSERT INTO aztp_ca_generations (trust_domain, generation, created_at, retire_after, root_cert_pem, intermediate_cert_pem, jwt_kid,
         root_key_sealed, intermediate_key_sealed, jwt_key_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        m.trustDomain,
        generation,
        createdAt,
        retireAfter,
        m.rootCertPem,
        m.intermediateCertPem,
        m.jwtKid,
        seal(m.rootKeyPem, "root"),
        seal(m.intermediateKeyPem, "intermediate"),
        seal(m.jwtKeyPem, "jwt"),
      ],
    );
  }

  #generation(r: GenerationRow): CaGeneration {
    const ctx = (role: SealedKeyRole) => ({ trustDomain: r.trust_domain, generation: r.generation, role });
    const material: CaKeyMaterial = {
      trustDomain: r.trust_domain,
      rootCertPem: r.root_cert_pem,
      rootKeyPem: this.#kek.unseal(r.root_key_sealed, ctx("root")),
      intermediateCertPem: r.intermediate_cert_pem,
      intermediateKeyPem: this.#kek.unseal(r.intermediate_key_sealed, ctx("intermediate")),
      jwtKeyPem: this.#kek.unseal(r.jwt_key_sealed, ctx("jwt")),
      jwtKid: r.jwt_kid,
    };
    const gen: CaGeneration = { generation: r.generation, material, createdAt: r.created_at };
    if (r.retire_after !== null) gen.retireAfter = r.retire_after;
    return gen;
  }
}

function notInitialized(location: string): AztpError {
  return new AztpError(
    ErrorCodes.AUTHORITY_NOT_INITIALIZED,
    `no authority in the PostgreSQL store ${location} yet: create it first (aztp init --store URL)`,
  );
}
