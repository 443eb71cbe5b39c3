/**
 * API keys of `aztp serve`: the interface every store implements, the key format and its
 * hashing, and the home-folder implementation.
 *
 * A key reads `aztp_<keyId>_<secret>`: keyId is 16 hex characters (so it has no `_` and the
 * split is unambiguous; base64url secrets may contain `_`), the secret 32 random bytes in
 * base64url. The store keeps keyId, name, scope and dates, and only sha256(secret): the secret
 * has 256 bits of entropy, so a slow password hash would buy nothing and cost every request.
 * The hash is compared in constant time. The key itself is shown once, by `create`.
 *
 * Other stores (PostgreSQL: postgres/api-keys.ts) implement ApiKeyStore with the
 * functions exported here, so every store accepts exactly the same keys.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { HomeStore } from "../authority/store.js";
import { sha256Hex } from "../sha256.js";
import { normaliseApiKeyScope, type ApiKeyScope } from "./api-key-scope.js";

/** A key as stores return it: never its hash, never its secret. */
export interface ApiKeyRecord {
  keyId: string;
  name: string;
  scope: ApiKeyScope;
  /** ISO 8601. */
  createdAt: string;
  /** ISO 8601; present once revoked. */
  revokedAt?: string;
}

export interface CreateApiKeyOptions {
  name?: string;
  scope?: ApiKeyScope;
}

export interface ApiKeyStore {
  /** Makes a key; `key` is the only time the secret is seen. */
  create(opts: CreateApiKeyOptions): Promise<{ key: string; record: ApiKeyRecord }>;
  /** Every key, revoked ones included, oldest first. */
  list(): Promise<ApiKeyRecord[]>;
  /** Marks the key revoked; false when there is no such key or it was already revoked. */
  revoke(keyId: string): Promise<boolean>;
  /** The record of a live key matching `presented`; throws ERR_SERVE_API_KEY_INVALID otherwise. */
  authenticate(presented: string): Promise<ApiKeyRecord>;
  close(): Promise<void>;
}

export const API_KEY_PREFIX = "aztp_";
const KEY_ID_RE = /^[0-9a-f]{16}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;
const NAME_MAX = 200;

/** A fresh key: its id, its secret, the string handed to the user, and the hash to store. */
export function generateApiKey(): { keyId: string; secret: string; key: string; secretHash: string } {
  const keyId = randomBytes(8).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { keyId, secret, key: `${API_KEY_PREFIX}${keyId}_${secret}`, secretHash: hashApiKeySecret(secret) };
}

/** Splits a presented key, or undefined when it is not of the format (no detail: it may be a secret). */
export function parseApiKey(presented: unknown): { keyId: string; secret: string } | undefined {
  if (typeof presented !== "string" || presented.length > 200 || !presented.startsWith(API_KEY_PREFIX))
    return undefined;
  const rest = presented.slice(API_KEY_PREFIX.length);
  const cut = rest.indexOf("_");
  if (cut < 0) return undefined;
  const keyId = rest.slice(0, cut);
  const secret = rest.slice(cut + 1);
  if (!KEY_ID_RE.test(keyId) || !SECRET_RE.test(secret)) return undefined;
  return { keyId, secret };
}

/** sha256 of the secret, hex. */
export function hashApiKeySecret(secret: string): string {
  return sha256Hex(secret);
}

/** Whether `secret` hashes to `storedHash`, compared in constant time. */
export function verifyApiKeySecret(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashApiKeySecret(secret), "hex");
  const b = Buffer.from(storedHash, "hex");
  // A stored hash of the wrong length is a corrupt record: compare against a itself so the
  // time spent does not depend on it, and refuse.
  if (b.length !== a.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

/** The error every failed authentication throws: one message, so it tells nothing about which check failed. */
export function invalidApiKey(): AztpError {
  return new AztpError(
    ErrorCodes.SERVE_API_KEY_INVALID,
    "API key missing, malformed, unknown or revoked (send Authorization: Bearer aztp_<keyId>_<secret>)",
  );
}

/** Validates and normalises a scope and name given to create (ERR_ARGUMENT_INVALID or the ID codes). */
export function normaliseCreateOptions(opts: CreateApiKeyOptions): { name: string; scope: ApiKeyScope } {
  if (opts === null || typeof opts !== "object")
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "api key options must be an object");
  const name = opts.name ?? "";
  if (typeof name !== "string" || name.length > NAME_MAX || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `api key name must be a string of at most ${NAME_MAX} characters without control characters`,
    );
  }
  const scope = normaliseApiKeyScope(opts.scope ?? {});
  return { name, scope };
}

/** A stored key: the record plus the hash of its secret. */
export interface StoredApiKey extends ApiKeyRecord {
  secretHash: string;
}

/**
 * A new key from create's options (validated and normalised first): what every store keeps,
 * and the key text, which is shown once and kept nowhere.
 */
export function newStoredApiKey(opts: CreateApiKeyOptions): { key: string; stored: StoredApiKey } {
  const { name, scope } = normaliseCreateOptions(opts);
  const made = generateApiKey();
  return {
    key: made.key,
    stored: { keyId: made.keyId, name, scope, createdAt: new Date().toISOString(), secretHash: made.secretHash },
  };
}

export function toRecord(stored: StoredApiKey): ApiKeyRecord {
  const record: ApiKeyRecord = {
    keyId: stored.keyId,
    name: stored.name,
    scope: { ...stored.scope },
    createdAt: stored.createdAt,
  };
  if (stored.revokedAt !== undefined) record.revokedAt = stored.revokedAt;
  return record;
}

interface ApiKeysFile {
  version: 1;
  keys: StoredApiKey[];
}

const FILE = "api-keys.json";

/**
 * Keys in `<home>/api-keys.json` (0600), replaced atomically under the home's lock as every
 * other file of the home. Reads are cached by the file's version (an fstat), so a key revoked by
 * `aztp apikey revoke` in another process is refused on the next request.
 */
export class FileApiKeyStore implements ApiKeyStore {
  private readonly store: HomeStore;
  private cache: { version: string | undefined; keys: StoredApiKey[] } | undefined;
  private closed = false;

  constructor(home: string) {
    this.store = new HomeStore(home);
  }

  async create(opts: CreateApiKeyOptions): Promise<{ key: string; record: ApiKeyRecord }> {
    this.open();
    const { key, stored } = newStoredApiKey(opts);
    await this.store.withLock(() => {
      const file = this.readFile();
      file.keys.push(stored);
      this.writeFile(file);
    });
    return { key, record: toRecord(stored) };
  }

  async list(): Promise<ApiKeyRecord[]> {
    this.open();
    return this.current().map(toRecord);
  }

  async revoke(keyId: string): Promise<boolean> {
    this.open();
    if (typeof keyId !== "string") return false;
    return this.store.withLock(() => {
      const file = this.readFile();
      const key = file.keys.find((k) => k.keyId === keyId);
      if (key === undefined || key.revokedAt !== undefined) return false;
      key.revokedAt = new Date().toISOString();
      this.writeFile(file);
      return true;
    });
  }

  async authenticate(presented: string): Promise<ApiKeyRecord> {
    this.open();
    const parsed = parseApiKey(presented);
    if (parsed === undefined) throw invalidApiKey();
    const key = this.current().find((k) => k.keyId === parsed.keyId);
    // Hash even when the id is unknown, so timing does not tell ids apart.
    const ok = verifyApiKeySecret(parsed.secret, key?.secretHash ?? "0".repeat(64));
    if (key === undefined || !ok || key.revokedAt !== undefined) throw invalidApiKey();
    return toRecord(key);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cache = undefined;
  }

  private open(): void {
    if (this.closed) throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, "the API key store is closed");
  }

  private current(): StoredApiKey[] {
    const version = this.store.version(FILE);
    if (this.cache !== undefined && version !== undefined && this.cache.version === version) return this.cache.keys;
    const keys = this.readFile().keys;
    this.cache = { version, keys };
    return keys;
  }

  private readFile(): ApiKeysFile {
    if (!this.store.exists(FILE)) return { version: 1, keys: [] };
    const file = this.store.readJson<ApiKeysFile>(FILE);
    if (file === null || typeof file !== "object" || file.version !== 1 || !Array.isArray(file.keys)) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_STORE_FAILED,
        `${this.store.path(FILE)} is not an API key file of version 1 (corrupted?)`,
      );
    }
    return file;
  }

  private writeFile(file: ApiKeysFile): void {
    this.store.writeJson([FILE], file, 0o600);
    this.cache = undefined;
  }
}
