/**
 * API keys of `aztp serve` on PostgreSQL, with the format, hashing and checks of
 * store/api-keys.ts, so every store accepts exactly the same keys. Only sha256 of each
 * secret is stored. Every authentication reads the row, so a key revoked through one replica
 * is refused by all of them on their next request.
 */
import {
  invalidApiKey,
  newStoredApiKey,
  parseApiKey,
  toRecord,
  verifyApiKeySecret,
  type ApiKeyRecord,
  type ApiKeyStore,
  type CreateApiKeyOptions,
  type StoredApiKey,
} from "../api-keys.js";
import type { ApiKeyScope } from "../api-key-scope.js";
import { query, type PgConnection } from "./pool.js";

interface ApiKeyRow {
  key_id: string;
  secret_hash: string;
  name: string;
  scope: ApiKeyScope;
  created_at: string;
  revoked_at: string | null;
}

export class PgApiKeyStore implements ApiKeyStore {
  readonly #conn: PgConnection;

  constructor(conn: PgConnection) {
    this.#conn = conn;
  }

  async create(opts: CreateApiKeyOptions): Promise<{ key: string; record: ApiKeyRecord }> {
    const { key, stored } = newStoredApiKey(opts);
    await query(
      this.#conn.pool,
      this.#conn.location,
      "create an API key",
      "INSERT INTO aztp_api_keys (key_id, secret_hash, name, scope, created_at) VALUES ($1, $2, $3, $4, $5)",
      [stored.keyId, stored.secretHash, stored.name, JSON.stringify(stored.scope), stored.createdAt],
    );
    return { key, record: toRecord(stored) };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const { rows } = await query<ApiKeyRow>(
      this.#conn.pool,
      this.#conn.location,
      "list API keys",
      "SELECT * FROM aztp_api_keys ORDER BY created_at, key_id",
    );
    return rows.map((r) => toRecord(fromRow(r)));
  }

  async revoke(keyId: string): Promise<boolean> {
    if (typeof keyId !== "string") return false;
    const { rowCount } = await query(
      this.#conn.pool,
      this.#conn.location,
      "revoke an API key",
      "UPDATE aztp_api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
      [keyId, new Date().toISOString()],
    );
    return rowCount === 1;
  }

  async authenticate(presented: string): Promise<ApiKeyRecord> {
    const parsed = parseApiKey(presented);
    if (parsed === undefined) throw invalidApiKey();
    const { rows } = await query<ApiKeyRow>(
      this.#conn.pool,
      this.#conn.location,
      "look up an API key",
      "SELECT * FROM aztp_api_keys WHERE key_id = $1",
      [parsed.keyId],
    );
    const row = rows[0];
    // Hash even when the id is unknown, so timing does not tell ids apart.
    const ok = verifyApiKeySecret(parsed.secret, row?.secret_hash ?? "0".repeat(64));
    if (row === undefined || !ok || row.revoked_at !== null) throw invalidApiKey();
    return toRecord(fromRow(row));
  }

  /** The pool belongs to openPostgresStores, which closes it. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function fromRow(r: ApiKeyRow): StoredApiKey {
  const stored: StoredApiKey = {
    keyId: r.key_id,
    name: r.name,
    scope: r.scope,
    createdAt: r.created_at,
    secretHash: r.secret_hash,
  };
  if (r.revoked_at !== null) stored.revokedAt = r.revoked_at;
  return stored;
}
