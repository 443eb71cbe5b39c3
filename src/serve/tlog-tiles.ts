/**
 * The shared audit log published read-only as a C2SP tiled transparency log (tlog-tiles), so any
 * C2SP client can fetch it and check it against the checkpoint:
 *
 *   GET <prefix>/checkpoint                    the newest signed checkpoint (a C2SP note), text/plain
 *   GET <prefix>/tile/<L>/<N>[.p/<W>]          hash tiles: 256 (or W) hashes of level 8L of the tree
 *   GET <prefix>/tile/entries/<N>[.p/<W>]      entry bundles: each entry as uint16 BE length + bytes
 *
 * with <prefix> = /v1/audit/tlog. N is written in the spec's zero-padded 3-digit elements, all
 * but the last with an `x` (1234067 is x001/x234/067). An entry's bytes are its line as stored,
 * the very bytes the tree's leaf hashes (merkle.ts), so a client's leaf hashes equal ours.
 *
 * ONLY WHAT THE NEWEST SIGNED CHECKPOINT COVERS is served: a tile or bundle reaching past its
 * size is 404, so nothing is shown that no signature commits to. A request past the checkpoint
 * this process knows re-reads the newest one first (another replica may have cut it).
 *
 * Cheap to serve: one MerkleTree per process (64 bytes per entry), extended from the table by
 * the leaf hashes of the entries after the size it already holds, never rebuilt; a tile is a
 * slice of one level of it. Full tiles and bundles never change (Cache-Control immutable);
 * partial ones are short-lived, the checkpoint barely cached. The audit log holds tokens and
 * receipts, so every resource needs an unscoped API key (a scoped key may read only its own
 * entries, through GET /v1/audit): the caches it allows are private.
 */
import { gzipSync } from "node:zlib";
import { MerkleTree, leafHashOfText } from "../audit/merkle.js";
import { parseSignedNote } from "../audit/signed-note.js";
import { parseCheckpointBody } from "../audit/tlog-checkpoint.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { describeScope, isScoped } from "../store/api-key-scope.js";
import type { SignedTreeHead } from "../store/postgres/index.js";
import type { PublishedAuditLog } from "./audit-store.js";
import type { Route, RouteAnswer, RouteContext } from "./routes.js";

export const TLOG_PREFIX = "/v1/audit/tlog";

const TILE_WIDTH = 256;
/** The longest entry the spec's framing can carry (a 16-bit length). */
const MAX_ENTRY_BYTES = 0xffff;
/** How long a checkpoint read from the table is used before it is read again (per process). */
const HEAD_TTL_MS = 1000;

const CACHE_FULL = "private, max-age=31536000, immutable";
const CACHE_PARTIAL = "private, max-age=60";
const CACHE_CHECKPOINT = "private, max-age=1";

/** The tree of the published log, kept in this process and extended as checkpoints grow. */
export class TlogTiles {
  readonly #log: PublishedAuditLog;
  readonly #tree = new MerkleTree();
  #head: SignedTreeHead | null = null;
  #headAt = -Infinity;
  #reading: Promise<SignedTreeHead | null> | null = null;
  #extending: Promise<void> = Promise.resolve();

  constructor(log: PublishedAuditLog) {
    this.#log = log;
  }

  /**
   * The newest signed checkpoint, re-read when older than a second (or `fresh`), with the tree
   * extended to its size. Null while the log has no checkpoint with a tree.
   */
  async head(fresh = false): Promise<SignedTreeHead | null> {
    if (fresh || performance.now() - this.#headAt > HEAD_TTL_MS) {
      this.#reading ??= this.#log.signedTreeHead().finally(() => (this.#reading = null));
      const head = await this.#reading;
      // Checkpoints only grow; a replica reading an older one than this process holds keeps the newer.
      if (head !== null && (this.#head === null || head.size >= this.#head.size)) this.#head = head;
      this.#headAt = performance.now();
    }
    const head = this.#head;
    if (head !== null) {
      await this.#extendTo(head.size);
      // Served tiles must be the tree the checkpoint signs: stored leaf hashes changed under it
      // (or a bug here) would otherwise reach clients as tiles inconsistent with the note.
      const signed = parseCheckpointBody(parseSignedNote(head.note).text);
      if (!this.#tree.root(head.size).equals(signed.root))
        throw new AztpError(
          ErrorCodes.AUDIT_CORRUPT,
          `the audit log's stored leaf hashes are not the tree its checkpoint of ${head.size} entries signs`,
        );
    }
    return head;
  }

  /** The hashes of tile (level, index) of `width` (256: full), or null when the newest checkpoint does not cover it. */
  async tile(level: number, index: number, width: number): Promise<Buffer | null> {
    const head = await this.#covering(level, index, width);
    if (head === null) return null;
    const out = Buffer.allocUnsafe(width * 32);
    for (let i = 0; i < width; i++) this.#tree.hashAt(level * 8, index * TILE_WIDTH + i).copy(out, i * 32);
    return out;
  }

  /**
   * Entry bundle `index` of `width` entries, or null when not covered. Each line is checked
   * against the tree's leaf before it is served: a row changed under the tree is refused.
   */
  async bundle(index: number, width: number): Promise<Buffer | null> {
    const head = await this.#covering(0, index, width);
    if (head === null) return null;
    const first = index * TILE_WIDTH;
    const lines = await this.#log.entryLines(first, width);
    const parts: Buffer[] = [];
    lines.forEach((line, i) => {
      if (!leafHashOfText(line).equals(this.#tree.hashAt(0, first + i)))
        throw new AztpError(
          ErrorCodes.AUDIT_CORRUPT,
          `audit entry ${first + i + 1} is not the entry the signed tree holds: the table was changed`,
        );
      const bytes = Buffer.from(line, "utf8");
      if (bytes.length > MAX_ENTRY_BYTES)
        throw new AztpError(
          ErrorCodes.SERVE_TLOG_ENTRY_TOO_LONG,
          `audit entry ${first + i + 1} is ${bytes.length} bytes, more than an entry bundle's 16-bit length can frame: ` +
            "its bundle cannot be served (its hash tiles can; GET /v1/audit gives the entry)",
        );
      const length = Buffer.allocUnsafe(2);
      length.writeUInt16BE(bytes.length);
      parts.push(length, bytes);
    });
    if (lines.length !== width)
      throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `audit entries ${first + 1}..${first + width} are not all there`);
    return Buffer.concat(parts);
  }

  /** The newest checkpoint when it covers tile (level, index, width), reading a newer one once if this process's does not. */
  async #covering(level: number, index: number, width: number): Promise<SignedTreeHead | null> {
    // Tile hashes at level l are subtrees of 256^l entries: the tile needs (index*256 + width) of them.
    const needed = (index * TILE_WIDTH + width) * TILE_WIDTH ** level;
    if (!Number.isSafeInteger(needed)) return null;
    let head = await this.head();
    if (head === null || head.size < needed) head = await this.head(true);
    return head !== null && head.size >= needed ? head : null;
  }

  /** Extends the tree to `size` leaves, one extension at a time, reading only the leaves it lacks. */
  #extendTo(size: number): Promise<void> {
    const next = this.#extending
      .catch(() => undefined)
      .then(async () => {
        while (this.#tree.size < size) {
          const leaves = await this.#log.leafHashes(this.#tree.size, size);
          if (leaves.length === 0)
            throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `the audit log holds fewer entries than its checkpoint`);
          for (const leaf of leaves) this.#tree.push(leaf);
        }
      });
    this.#extending = next;
    return next;
  }
}

/**
 * A tile index in the spec's path form: 3-digit elements, all but the last prefixed by `x`,
 * without leading zero elements (the one encoding of each index); null for anything else.
 */
export function parseTileIndex(path: string): number | null {
  const parts = path.split("/");
  if (parts.length === 0 || parts.length > 6) return null;
  let n = 0;
  for (const [i, part] of parts.entries()) {
    const last = i === parts.length - 1;
    const m = (last ? /^(\d{3})$/ : /^x(\d{3})$/).exec(part);
    if (m === null) return null;
    if (i === 0 && parts.length > 1 && m[1] === "000") return null;
    n = n * 1000 + Number(m[1]);
  }
  return Number.isSafeInteger(n) ? n : null;
}

/** The path form of a tile index (1234067 → x001/x234/067). */
export function formatTileIndex(n: number): string {
  let s = String(n % 1000).padStart(3, "0");
  for (n = Math.floor(n / 1000); n > 0; n = Math.floor(n / 1000)) s = `x${String(n % 1000).padStart(3, "0")}/${s}`;
  return s;
}

/** `.p/<W>`: a decimal width 1..255 without leading zeros; 256 (a full tile) when absent, null when malformed. */
function parseWidth(raw: string | undefined): number | null {
  if (raw === undefined || raw === "") return TILE_WIDTH;
  if (!/^[1-9]\d{0,2}$/.test(raw)) return null;
  const w = Number(raw);
  return w < TILE_WIDTH ? w : null;
}

function notFound(path: string, why: string): AztpError {
  return new AztpError(ErrorCodes.SERVE_ROUTE_NOT_FOUND, `${path.slice(0, 200)}: ${why}`);
}

function bytes(
  data: Buffer,
  contentType: string,
  cacheControl: string,
  extra: Record<string, string> = {},
): RouteAnswer {
  return {
    status: 200,
    body: null,
    raw: data,
    headers: { "content-type": contentType, "cache-control": cacheControl, ...extra },
  };
}

/** The audit log holds every call's token and receipt: its tiles are for keys that may see every entry. */
function requireUnscoped(c: RouteContext): void {
  if (isScoped(c.key.scope))
    throw new AztpError(
      ErrorCodes.SERVE_API_KEY_SCOPE_DENIED,
      `API key ${c.key.keyId} is limited to ${describeScope(c.key.scope)}: the published audit log holds every entry, ` +
        "so it needs an unscoped key (GET /v1/audit gives a scoped key its own entries)",
    );
}

const TILE_PATH = new RegExp(`^${TLOG_PREFIX}/tile/(0|[1-9]\\d?)/((?:x\\d{3}/){0,5}\\d{3})(?:\\.p/(\\d+))?$`);
const BUNDLE_PATH = new RegExp(`^${TLOG_PREFIX}/tile/entries/((?:x\\d{3}/){0,5}\\d{3})(?:\\.p/(\\d+))?$`);

/** The routes of the published log; on a store without one (a home folder) they say so with 404. */
export function buildTlogRoutes(log: PublishedAuditLog | undefined): Route[] {
  const tiles = log === undefined ? undefined : new TlogTiles(log);
  const published = (c: RouteContext): TlogTiles => {
    requireUnscoped(c);
    if (tiles === undefined)
      throw notFound(c.url.pathname, "the audit log is published as tiles on a PostgreSQL store only");
    return tiles;
  };
  return [
    {
      method: "GET",
      path: new RegExp(`^${TLOG_PREFIX}/checkpoint$`),
      auth: true,
      handle: async (c) => {
        const head = await published(c).head();
        if (head === null) throw notFound(c.url.pathname, "the audit log has no checkpoint with a tree yet");
        return bytes(Buffer.from(head.note, "utf8"), "text/plain; charset=utf-8", CACHE_CHECKPOINT);
      },
    },
    {
      method: "GET",
      path: BUNDLE_PATH,
      auth: true,
      handle: async (c) => {
        const t = published(c);
        const index = parseTileIndex(c.params[0] ?? "");
        const width = parseWidth(c.params[1]);
        if (index === null || width === null) throw notFound(c.url.pathname, "not an entry bundle's path");
        const data = await t.bundle(index, width);
        if (data === null) throw notFound(c.url.pathname, "beyond the newest signed checkpoint");
        const cache = width === TILE_WIDTH ? CACHE_FULL : CACHE_PARTIAL;
        const accepts = String(c.req.headers["accept-encoding"] ?? "");
        // Entry bundles SHOULD be compressed at the HTTP layer (C2SP tlog-tiles): gzip when asked for.
        if (/\bgzip\b/i.test(accepts) && !/\bgzip\s*;\s*q=0(\.0*)?\b/i.test(accepts))
          return bytes(gzipSync(data), "application/octet-stream", cache, {
            "content-encoding": "gzip",
            vary: "accept-encoding",
          });
        return bytes(data, "application/octet-stream", cache, { vary: "accept-encoding" });
      },
    },
    {
      method: "GET",
      path: TILE_PATH,
      auth: true,
      handle: async (c) => {
        const t = published(c);
        const level = Number(c.params[0]);
        const index = parseTileIndex(c.params[1] ?? "");
        const width = parseWidth(c.params[2]);
        if (level > 63 || index === null || width === null) throw notFound(c.url.pathname, "not a tile's path");
        const data = await t.tile(level, index, width);
        if (data === null) throw notFound(c.url.pathname, "beyond the newest signed checkpoint");
        return bytes(data, "application/octet-stream", width === TILE_WIDTH ? CACHE_FULL : CACHE_PARTIAL);
      },
    },
  ];
}
