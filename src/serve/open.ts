/**
 * The ONE place the service builds what it runs on from `--store`: the authority, the API key
 * store, the audit store, and how it issues its own TLS SVID. Everything else in serve/ sees
 * only the ServeBackend interface.
 *
 * Today: a home folder (EmbeddedAuthority.open). PostgreSQL (`postgres://…`) comes through
 * src/store/open-stores.ts and EmbeddedAuthority.fromStores (the lead wires it here).
 */
import { resolve } from "node:path";
import { EmbeddedAuthority } from "../authority/authority.js";
import type { Authority } from "../authority/authority-api.js";
import { CertificateAuthority, type CaKeyMaterial, type IssuedSvid } from "../authority/ca.js";
import { HomeStore } from "../authority/store.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { FileApiKeyStore, type ApiKeyStore } from "./api-key-store.js";
import { openFileAuditStore, type ServeAuditStore } from "./audit-store.js";

/** What the routes call: the client API of an authority, plus the feeds. */
export type ServeAuthority = Pick<
  Authority,
  | "defaultTrustDomain"
  | "trustDomains"
  | "issueIdentity"
  | "renewSvid"
  | "mintJwtSvid"
  | "get"
  | "find"
  | "findByName"
  | "list"
  | "connected"
  | "revoke"
  | "reissue"
  | "link"
  | "attachPolicy"
  | "detachPolicy"
  | "isRevoked"
  | "bundle"
  | "bundleSet"
> & {
  /** The signed, sequenced revocation list of `trustDomain` (compact JWS). */
  signedRevocationList(trustDomain?: string): string | Promise<string>;
  /**
   * Brings this replica's view up to the committed state of the store (a store-backed authority
   * caches); called before every answer that depends on registry or revocation state.
   */
  refresh?(): Promise<void>;
  close?(): Promise<void>;
};

export interface ServeBackend {
  /** For messages: a folder or a URL without password. */
  readonly location: string;
  readonly authority: ServeAuthority;
  readonly apiKeys: ApiKeyStore;
  readonly audit: ServeAuditStore;
  /**
   * The service's own X.509-SVID (spiffe://<defaultTD>/aztp/serve), signed by the CA directly
   * and not registered: the registry holds workloads only, and a serve SVID lives for an hour
   * and is replaced at half-life.
   */
  issueServiceSvid(csr: Buffer, ttlSeconds: number): Promise<IssuedSvid>;
  /** Resolves when the store answers and the CA is loaded; rejects saying why not. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenBackendOptions {
  /** The key-encryption key of the CA keys in PostgreSQL (--kek-file). */
  kek?: Buffer | undefined;
}

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

export async function openServeBackend(location: string, options: OpenBackendOptions = {}): Promise<ServeBackend> {
  if (isPostgresUrl(location)) {
    void options.kek;
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "PostgreSQL stores are not wired into aztp serve on this build yet (src/serve/open.ts, via src/store/open-stores.ts); pass a home folder",
    );
  }
  return openHomeBackend(resolve(location));
}

async function openHomeBackend(home: string): Promise<ServeBackend> {
  const authority = await EmbeddedAuthority.open(home);
  const apiKeys = new FileApiKeyStore(home);
  let audit: ServeAuditStore;
  try {
    audit = await openFileAuditStore(home);
  } catch (e) {
    await apiKeys.close();
    throw e;
  }
  const store = new HomeStore(home);
  let ca: { td: string; ca: CertificateAuthority } | undefined;
  return {
    location: home,
    authority,
    apiKeys,
    audit,
    async issueServiceSvid(csr, ttlSeconds) {
      const td = authority.defaultTrustDomain;
      if (ca?.td !== td) ca = { td, ca: await CertificateAuthority.load(readCaMaterial(store, td)) };
      return ca.ca.issueSvid(SpiffeId.fromSegments(td, "aztp", "serve"), csr, { ttlSeconds, commonName: "aztp-serve" });
    },
    async ready() {
      if (!store.exists("authority.json")) throw new AztpError(ErrorCodes.AUTHORITY_NOT_INITIALIZED, `no authority in ${home}`);
      store.readJson("authority.json");
      authority.bundle();
      if (!audit.writable) throw new AztpError(ErrorCodes.AUDIT_UNAVAILABLE, "the audit log cannot be written");
    },
    async close() {
      await Promise.allSettled([audit.close(), apiKeys.close()]);
    },
  };
}

/** The CA files of a home (authority.ts's layout). */
function readCaMaterial(store: HomeStore, td: string): CaKeyMaterial {
  const dir = ["trust-domains", td];
  return {
    trustDomain: td,
    rootCertPem: store.readText(...dir, "root.pem"),
    rootKeyPem: store.readText(...dir, "root-key.pem"),
    intermediateCertPem: store.readText(...dir, "intermediate.pem"),
    intermediateKeyPem: store.readText(...dir, "intermediate-key.pem"),
    jwtKeyPem: store.readText(...dir, "jwt-key.pem"),
    jwtKid: store.readJson<{ kid: string }>(...dir, "jwt.json").kid,
  };
}

/** The API key store alone (`aztp apikey`), on the same store location `aztp serve --store` takes. */
export async function openApiKeyStore(location: string, options: OpenBackendOptions = {}): Promise<ApiKeyStore> {
  if (isPostgresUrl(location)) {
    void options.kek;
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "PostgreSQL API keys are not wired into aztp apikey on this build yet (src/serve/open.ts); pass a home folder");
  }
  const home = resolve(location);
  if (!new HomeStore(home).exists("authority.json")) {
    throw new AztpError(ErrorCodes.AUTHORITY_NOT_INITIALIZED, `no authority in ${home}: run \`aztp init --trust-domain TD --home ${home}\` first`);
  }
  return new FileApiKeyStore(home);
}
