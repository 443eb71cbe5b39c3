/**
 * The connection pool every PostgreSQL store of one process shares, and how its failures are
 * reported: as ERR_AUTHORITY_STORE_FAILED naming what was being done and where (the URL
 * without its password). A query that fails is not retried here: a write that may or may not
 * have committed must not be repeated behind its caller's back, so the caller hears of it at
 * once, and the next call simply takes a new connection (the pool drops broken ones).
 */
import pg from "pg";
import { AztpError, ErrorCodes } from "../../errors.js";

export interface PgPoolOptions {
  /** Connections at most (default 10). */
  readonly max?: number | undefined;
  /** How long a query may wait for a connection (ms, default 10 s). */
  readonly connectionTimeoutMillis?: number | undefined;
}

export interface PgConnection {
  readonly pool: pg.Pool;
  /** The URL without its password, for messages. */
  readonly location: string;
  /** The connection settings (for a dedicated LISTEN client). */
  readonly config: pg.ClientConfig;
}

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** `url` without its password (and without query parameters, which may carry one). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    u.search = "";
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

export function createPool(url: string, options: PgPoolOptions = {}): PgConnection {
  const location = redactUrl(url);
  if (!isPostgresUrl(url)) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `not a PostgreSQL URL: ${location}`);
  const config: pg.ClientConfig = {
    connectionString: url,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
    application_name: "aztp",
  };
  const pool = new pg.Pool({ ...config, max: options.max ?? 10, idleTimeoutMillis: 30_000 });
  // An idle connection that breaks (PostgreSQL restarted, the network dropped) is reported
  // here; without a listener it would crash the process. The pool has already discarded it,
  // and the next query connects afresh, so there is nothing else to do.
  pool.on("error", () => undefined);
  return { pool, location, config };
}

/** ERR_AUTHORITY_STORE_FAILED for `what` failing on `location`, with PostgreSQL's reason. */
export function storeFailed(location: string, what: string, cause: unknown): AztpError {
  if (cause instanceof AztpError) return cause;
  const e = cause as { message?: string; code?: string };
  const reason =
    e?.code !== undefined && e.code !== ""
      ? `${e.message ?? String(cause)} (${e.code})`
      : (e?.message ?? String(cause));
  return new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `PostgreSQL store ${location}: cannot ${what}: ${reason}`, {
    cause,
  });
}

/** Runs `fn` on a connection of its own, mapping failures of PostgreSQL (not of `fn`'s own logic) to storeFailed. */
export async function withClient<T>(
  conn: PgConnection,
  what: string,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await conn.pool.connect();
  } catch (cause) {
    throw storeFailed(conn.location, `${what} (no connection)`, cause);
  }
  let broken = false;
  // A connection that breaks while checked out between two queries (PostgreSQL restarted, the
  // backend terminated) emits 'error' on the client, which the pool only listens for while it
  // is idle: unheard, it would crash the process. Heard, the next query fails and says so.
  const onError = (): void => {
    broken = true;
  };
  client.on("error", onError);
  try {
    return await fn(client);
  } catch (cause) {
    broken ||= isConnectionError(cause);
    throw cause;
  } finally {
    client.off("error", onError);
    client.release(broken); // a broken connection is discarded, not handed to the next caller
  }
}

/**
 * Runs `fn` in a transaction (BEGIN ... COMMIT), rolling back when it throws. Errors from
 * PostgreSQL become storeFailed; errors `fn` throws itself (a registry rule) pass unchanged.
 */
export async function transaction<T>(
  conn: PgConnection,
  what: string,
  fn: (client: pg.PoolClient) => Promise<T>,
  begin = "BEGIN",
): Promise<T> {
  return withClient(conn, what, async (client) => {
    await query(client, conn.location, what, begin);
    try {
      const result = await fn(client);
      await query(client, conn.location, `${what} (commit)`, "COMMIT");
      return result;
    } catch (cause) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw cause;
    }
  });
}

/** One query, its failure mapped to storeFailed naming `what`. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Pool | pg.PoolClient | pg.Client,
  location: string,
  what: string,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(text, values);
  } catch (cause) {
    throw storeFailed(location, what, cause);
  }
}

/**
 * Whether the connection may be unusable after `cause`: anything but an error of the caller's
 * own logic (an AztpError other than a store failure). Discarding a good connection costs a
 * reconnect; handing a broken one (or one mid-transaction) to the next caller costs a failure.
 */
function isConnectionError(cause: unknown): boolean {
  return !(cause instanceof AztpError) || cause.code === ErrorCodes.AUTHORITY_STORE_FAILED;
}

/** Advisory lock keys: one per serialised resource, the same in every replica. */
export const LOCKS = {
  migrations: 0x617a_7470_0001n,
  registry: 0x617a_7470_0002n,
  audit: 0x617a_7470_0003n,
  ca: 0x617a_7470_0004n,
} as const;
