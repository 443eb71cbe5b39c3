/**
 * The CA store in a home folder: authority.json, and per trust domain its newest CA in
 * trust-domains/<td>/ (certificates 0644, private keys 0600) with older generations kept, until
 * they retire, in trust-domains/<td>/generations/<n>/. Every change happens under the home's
 * lock, after a fresh read, so two processes adding a trust domain at once agree on one CA.
 */
import type { CaKeyMaterial } from "./ca.js";
import type { AuthorityConfig, CaGeneration, CaStore } from "./ca-store.js";
import * as registry from "./registry.js";
import { HomeStore } from "./store.js";

interface GenerationFile {
  generation: number;
  createdAt: string;
  retireAfter?: string;
}

export class FileCaStore implements CaStore {
  readonly #store: HomeStore;

  constructor(home: string | HomeStore) {
    this.#store = typeof home === "string" ? new HomeStore(home) : home;
  }

  get location(): string {
    return this.#store.home;
  }

  async readConfig(): Promise<AuthorityConfig | undefined> {
    return this.#store.exists("authority.json") ? this.#store.readJson<AuthorityConfig>("authority.json") : undefined;
  }

  configVersion(): string | undefined {
    return this.#store.version("authority.json");
  }

  async create(config: AuthorityConfig, first: CaKeyMaterial): Promise<boolean> {
    return this.#store.withLock(() => {
      // Another process may have won the race: report it, write nothing.
      if (this.#store.exists("authority.json")) return false;
      this.#writeMaterial(["trust-domains", first.trustDomain], first, { generation: 1, createdAt: config.createdAt });
      if (!this.#store.exists("registry.json")) this.#store.writeJson(["registry.json"], registry.emptyRegistry());
      this.#store.writeJson(["authority.json"], config);
      return true;
    });
  }

  async addTrustDomain(trustDomain: string, material: () => Promise<CaKeyMaterial>): Promise<AuthorityConfig> {
    return this.#store.withLock(async () => {
      const config = this.#store.readJson<AuthorityConfig>("authority.json");
      if (!config.trustDomains.includes(trustDomain)) {
        this.#writeMaterial(["trust-domains", trustDomain], await material(), {
          generation: 1,
          createdAt: new Date().toISOString(),
        });
        config.trustDomains.push(trustDomain);
        this.#store.writeJson(["authority.json"], config);
      }
      return config;
    });
  }

  async updateConfig(change: (config: AuthorityConfig) => AuthorityConfig): Promise<AuthorityConfig> {
    return this.#store.withLock(async () => {
      const config = change(this.#store.readJson<AuthorityConfig>("authority.json"));
      this.#store.writeJson(["authority.json"], config);
      return config;
    });
  }

  async loadCa(trustDomain: string): Promise<CaGeneration[]> {
    const dir = ["trust-domains", trustDomain];
    if (!this.#store.exists(...dir, "root.pem")) return [];
    const newest = this.#readGeneration(dir, trustDomain, 1);
    const older: CaGeneration[] = [];
    for (let n = newest.generation - 1; n >= 1; n--) {
      const g = [...dir, "generations", String(n)];
      if (this.#store.exists(...g, "generation.json")) older.push(this.#readGeneration(g, trustDomain, n));
    }
    return [newest, ...older];
  }

  async rotate(trustDomain: string, material: CaKeyMaterial, retireAfter: Date): Promise<CaGeneration[]> {
    await this.#store.withLock(() => {
      const dir = ["trust-domains", trustDomain];
      const previous = this.#readGeneration(dir, trustDomain, 1);
      // The previous CA moves aside first: a crash between the two writes leaves it in both
      // places, never in neither.
      this.#writeMaterial([...dir, "generations", String(previous.generation)], previous.material, {
        generation: previous.generation,
        createdAt: previous.createdAt,
        retireAfter: retireAfter.toISOString(),
      });
      this.#writeMaterial(dir, material, { generation: previous.generation + 1, createdAt: new Date().toISOString() });
      const config = this.#store.readJson<AuthorityConfig>("authority.json");
      config.rotations = { ...config.rotations, [trustDomain]: previous.generation };
      this.#store.writeJson(["authority.json"], config);
    });
    return this.loadCa(trustDomain);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #writeMaterial(dir: string[], m: CaKeyMaterial, generation: GenerationFile): void {
    this.#store.writeText([...dir, "root.pem"], m.rootCertPem);
    this.#store.writeText([...dir, "intermediate.pem"], m.intermediateCertPem);
    this.#store.writeSecret([...dir, "root-key.pem"], m.rootKeyPem);
    this.#store.writeSecret([...dir, "intermediate-key.pem"], m.intermediateKeyPem);
    this.#store.writeSecret([...dir, "jwt-key.pem"], m.jwtKeyPem);
    this.#store.writeJson([...dir, "jwt.json"], { kid: m.jwtKid });
    this.#store.writeJson([...dir, "generation.json"], generation);
  }

  /** A home made before rotation existed has no generation.json: its one CA is generation 1. */
  #readGeneration(dir: string[], trustDomain: string, fallback: number): CaGeneration {
    const g = this.#store.exists(...dir, "generation.json")
      ? this.#store.readJson<GenerationFile>(...dir, "generation.json")
      : { generation: fallback, createdAt: new Date(0).toISOString() };
    return {
      generation: g.generation,
      createdAt: g.createdAt,
      ...(g.retireAfter !== undefined ? { retireAfter: g.retireAfter } : {}),
      material: {
        trustDomain,
        rootCertPem: this.#store.readText(...dir, "root.pem"),
        rootKeyPem: this.#store.readText(...dir, "root-key.pem"),
        intermediateCertPem: this.#store.readText(...dir, "intermediate.pem"),
        intermediateKeyPem: this.#store.readText(...dir, "intermediate-key.pem"),
        jwtKeyPem: this.#store.readText(...dir, "jwt-key.pem"),
        jwtKid: this.#store.readJson<{ kid: string }>(...dir, "jwt.json").kid,
      },
    };
  }
}
