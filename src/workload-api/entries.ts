/**
 * Registration entries of the Workload API, as SPIRE's server keeps them: which SPIFFE ID a
 * caller gets when all of an entry's selectors match it (selectors.ts). The rules every store
 * applies (`checkNewWorkloadEntry`, one identity per entry), the `WorkloadEntryStore` interface,
 * and the home-folder store; PostgreSQL's is store/postgres/workload-entries.ts.
 *
 * An entry's SPIFFE ID is an identity of the authority's registry too (`registerWorkloadEntry`),
 * so `aztp revoke` ends it and the authority issues its SVIDs as for any identity.
 */
import { randomUUID } from "node:crypto";
import type { IdentityRecord } from "../authority/registry.js";
import { MAX_SPIFFE_ID_BYTES } from "../authority/registry.js";
import { HomeStore } from "../authority/store.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { sha256Hex } from "../sha256.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { formatSelector, parseSelector } from "./selectors.js";

export interface WorkloadEntry {
  /** A random UUID, as SPIRE's entry IDs are. */
  entryId: string;
  /** The spiffe:// form. */
  spiffeId: string;
  /** SPIRE's syntax, each formatted by formatSelector, sorted (their order means nothing: all must match). */
  selectors: string[];
  /** A free-form label the workload may choose its SVID by (SPIRE's `hint`: "internal", "external"). */
  hint?: string;
  /** ISO 8601. */
  createdAt: string;
}

export interface NewWorkloadEntry {
  spiffeId: string;
  selectors: readonly string[];
  hint?: string;
}

export interface WorkloadEntryStore {
  /** For messages: the folder, or the URL without its password. */
  readonly location: string;
  /** Stores a new entry (validated by checkNewWorkloadEntry); ERR_WORKLOAD_ENTRY_EXISTS for an identical one. */
  create(entry: NewWorkloadEntry): Promise<WorkloadEntry>;
  /** Every entry, oldest first. */
  list(): Promise<WorkloadEntry[]>;
  get(entryId: string): Promise<WorkloadEntry | undefined>;
  /** False when there was none. */
  delete(entryId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** SPIRE puts no number on it; a caller matched by more than this many facts is not a use case. */
export const MAX_WORKLOAD_ENTRY_SELECTORS = 32;
export const MAX_WORKLOAD_ENTRY_HINT = 256;
/** `unix:path:` and a path as long as PATH_MAX: no executable's path is longer. */
const MAX_SELECTOR_CHARS = "unix:path:".length + 4096;
const FIELDS = new Set(["spiffeId", "selectors", "hint"]);
/** Control, format, surrogate, private-use and unassigned characters, and line or paragraph separators. */
const UNPRINTABLE = /[\p{C}\p{Zl}\p{Zp}]/u;
const ENTRY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The entry as every store keeps it, or ERR_WORKLOAD_ENTRY_INVALID with the `rule` that failed:
 * `spiffe_id` (the spiffe:// form kept; `aztp://` accepted), `selectors`, `selector`, `hint`,
 * `field`. Members it does not know are refused, not dropped: a misspelt `hint` must not vanish.
 */
export function checkNewWorkloadEntry(e: unknown): NewWorkloadEntry {
  if (e === null || typeof e !== "object" || Array.isArray(e)) throw invalid("field", "an entry must be an object");
  const unknown = Object.keys(e).filter((k) => !FIELDS.has(k));
  if (unknown.length > 0)
    throw invalid("field", `an entry has no member ${unknown.map((k) => JSON.stringify(k).slice(0, 40)).join(", ")}`);
  const { spiffeId, selectors, hint } = e as Record<string, unknown>;

  let id: SpiffeId;
  try {
    id = SpiffeId.parse(spiffeId as string);
  } catch (cause) {
    const why = cause instanceof AztpError ? `${cause.message} [${cause.code}]` : String(cause);
    throw invalid("spiffe_id", `the entry's SPIFFE ID: ${why}`, cause);
  }
  if (id.path === "")
    throw invalid("spiffe_id", `${id.toString()} is the trust domain's own ID: a workload's SPIFFE ID has a path`);
  if (Buffer.byteLength(id.toString()) > MAX_SPIFFE_ID_BYTES)
    throw invalid(
      "spiffe_id",
      `the entry's SPIFFE ID is over the ${MAX_SPIFFE_ID_BYTES} bytes the SPIFFE ID spec allows`,
    );

  if (!Array.isArray(selectors) || selectors.length === 0)
    throw invalid("selectors", "an entry needs at least one selector (an entry with none would match nobody)");
  if (selectors.length > MAX_WORKLOAD_ENTRY_SELECTORS)
    throw invalid(
      "selectors",
      `an entry has at most ${MAX_WORKLOAD_ENTRY_SELECTORS} selectors, got ${selectors.length}`,
    );
  const formatted = new Set<string>();
  for (const raw of selectors as unknown[]) {
    if (typeof raw !== "string") throw invalid("selector", "a selector must be a string");
    if (raw.length > MAX_SELECTOR_CHARS)
      throw invalid("selector", `a selector has at most ${MAX_SELECTOR_CHARS} characters`);
    let text: string;
    try {
      text = formatSelector(parseSelector(raw));
    } catch (cause) {
      throw invalid("selector", (cause as Error).message, cause);
    }
    // Compared as formatted: the one spelling parseSelector accepts of each.
    if (formatted.has(text)) throw invalid("selector", `selector "${text}" is given twice`);
    formatted.add(text);
  }

  const out: NewWorkloadEntry = { spiffeId: id.toString(), selectors: [...formatted].sort() };
  if (hint !== undefined) {
    if (
      typeof hint !== "string" ||
      hint.length === 0 ||
      hint.length > MAX_WORKLOAD_ENTRY_HINT ||
      UNPRINTABLE.test(hint)
    )
      throw invalid(
        "hint",
        `a hint is a string of 1 to ${MAX_WORKLOAD_ENTRY_HINT} printable characters, got ${JSON.stringify(hint)?.slice(0, 80)}`,
      );
    out.hint = hint;
  }
  return out;
}

/**
 * What makes two entries the same one: the SPIFFE ID and the set of selectors (a checked entry's
 * selectors are sorted), hashed so a store can hold it under a unique constraint of any length.
 * The hint is left out, as SPIRE leaves it out of its similar-entry check.
 */
export function workloadEntryKey(entry: NewWorkloadEntry): string {
  return sha256Hex(JSON.stringify([entry.spiffeId, ...entry.selectors]));
}

/** A new entry of `checked` (checkNewWorkloadEntry's output): its ID and time. */
export function newWorkloadEntry(checked: NewWorkloadEntry, now = new Date()): WorkloadEntry {
  return {
    entryId: randomUUID(),
    spiffeId: checked.spiffeId,
    selectors: [...checked.selectors],
    ...(checked.hint !== undefined ? { hint: checked.hint } : {}),
    createdAt: now.toISOString(),
  };
}

/** Whether `id` has the form of an entry ID: anything else is no entry, without a look at the store. */
export function isWorkloadEntryId(id: unknown): id is string {
  return typeof id === "string" && ENTRY_ID.test(id);
}

/**
 * A stored entry read back, checked again as a new one is (a file edited by hand, a row written
 * by something else): undefined when it is not one, for the store to report as corrupt.
 */
export function storedWorkloadEntry(value: unknown): WorkloadEntry | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const { entryId, createdAt, spiffeId, selectors, hint } = value as Record<string, unknown>;
  if (!isWorkloadEntryId(entryId) || typeof createdAt !== "string" || Number.isNaN(Date.parse(createdAt)))
    return undefined;
  let checked: NewWorkloadEntry;
  try {
    checked = checkNewWorkloadEntry({
      spiffeId,
      selectors,
      ...(hint !== undefined && hint !== null ? { hint } : {}),
    });
  } catch {
    return undefined;
  }
  return {
    entryId,
    spiffeId: checked.spiffeId,
    selectors: [...checked.selectors],
    ...(checked.hint !== undefined ? { hint: checked.hint } : {}),
    createdAt,
  };
}

export function entryExists(entry: NewWorkloadEntry): AztpError {
  return new AztpError(
    ErrorCodes.WORKLOAD_ENTRY_EXISTS,
    `an entry for ${entry.spiffeId} with the selectors ${entry.selectors.join(", ")} is already registered`,
  );
}

function invalid(rule: string, message: string, cause?: unknown): AztpError {
  return new AztpError(ErrorCodes.WORKLOAD_ENTRY_INVALID, message, {
    rule,
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** What registerWorkloadEntry needs of an authority: EmbeddedAuthority has it. */
export interface WorkloadIdentityRegistrar {
  registerSpiffeId(spiffeId: string, options?: { metadata?: Record<string, unknown> }): Promise<IdentityRecord>;
}

/**
 * Registers a Workload API entry: validated, its SPIFFE ID made (or found) an identity of the
 * authority's registry in a trust domain it holds (ERR_TRUST_DOMAIN_NOT_ALLOWED otherwise; a
 * revoked identity is ERR_IDENTITY_REVOKED), then stored. An identical entry is refused before
 * the registry is touched, and again by the store itself, atomically, for one created meanwhile.
 *
 * Deleting an entry later does not revoke its identity: another entry may name the same ID, and
 * SVIDs already handed out stay valid until they expire or `aztp revoke` ends them.
 */
export async function registerWorkloadEntry(
  authority: WorkloadIdentityRegistrar,
  entries: WorkloadEntryStore,
  entry: NewWorkloadEntry,
): Promise<WorkloadEntry> {
  const checked = checkNewWorkloadEntry(entry);
  const key = workloadEntryKey(checked);
  if ((await entries.list()).some((e) => workloadEntryKey(e) === key)) throw entryExists(checked);
  await authority.registerSpiffeId(checked.spiffeId);
  return entries.create(checked);
}

interface EntriesFile {
  version: 1;
  entries: WorkloadEntry[];
}

const FILE = "workload-entries.json";

/**
 * Entries in `<home>/workload-entries.json`, replaced atomically under the home's lock as every
 * other file of the home. Reads are cached by the file's version (an fstat), so an entry another
 * process adds or deletes is seen on the next read.
 */
export class FileWorkloadEntryStore implements WorkloadEntryStore {
  readonly #store: HomeStore;
  #cache: { version: string | undefined; entries: WorkloadEntry[] } | undefined;
  #closed = false;

  constructor(home: string | HomeStore) {
    this.#store = typeof home === "string" ? new HomeStore(home) : home;
  }

  get location(): string {
    return this.#store.home;
  }

  async create(entry: NewWorkloadEntry): Promise<WorkloadEntry> {
    this.#open();
    const checked = checkNewWorkloadEntry(entry);
    const key = workloadEntryKey(checked);
    return this.#store.withLock(() => {
      const file = this.#readFile();
      if (file.entries.some((e) => workloadEntryKey(e) === key)) throw entryExists(checked);
      const made = newWorkloadEntry(checked);
      file.entries.push(made);
      this.#writeFile(file);
      return structuredClone(made);
    });
  }

  async list(): Promise<WorkloadEntry[]> {
    this.#open();
    return structuredClone(this.#current());
  }

  async get(entryId: string): Promise<WorkloadEntry | undefined> {
    this.#open();
    if (!isWorkloadEntryId(entryId)) return undefined;
    const found = this.#current().find((e) => e.entryId === entryId);
    return found === undefined ? undefined : structuredClone(found);
  }

  async delete(entryId: string): Promise<boolean> {
    this.#open();
    if (!isWorkloadEntryId(entryId)) return false;
    return this.#store.withLock(() => {
      const file = this.#readFile();
      const kept = file.entries.filter((e) => e.entryId !== entryId);
      if (kept.length === file.entries.length) return false;
      this.#writeFile({ version: 1, entries: kept });
      return true;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cache = undefined;
  }

  #open(): void {
    if (this.#closed) throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, "the Workload API entry store is closed");
  }

  #current(): WorkloadEntry[] {
    const version = this.#store.version(FILE);
    if (this.#cache !== undefined && version !== undefined && this.#cache.version === version)
      return this.#cache.entries;
    const entries = this.#readFile().entries;
    this.#cache = { version, entries };
    return entries;
  }

  #readFile(): EntriesFile {
    if (!this.#store.exists(FILE)) return { version: 1, entries: [] };
    const file = this.#store.readJson<{ version?: unknown; entries?: unknown }>(FILE);
    const corrupt = (why: string): AztpError =>
      new AztpError(
        ErrorCodes.AUTHORITY_STORE_FAILED,
        `${this.#store.path(FILE)} is not a Workload API entry file of version 1 (corrupted?): ${why}`,
      );
    if (file === null || typeof file !== "object" || file.version !== 1 || !Array.isArray(file.entries))
      throw corrupt("no version 1 and entries list");
    const entries: WorkloadEntry[] = [];
    for (const [i, raw] of (file.entries as unknown[]).entries()) {
      const entry = storedWorkloadEntry(raw);
      if (entry === undefined) throw corrupt(`entry ${i} is not a valid entry`);
      entries.push(entry);
    }
    return { version: 1, entries };
  }

  #writeFile(file: EntriesFile): void {
    this.#store.writeJson([FILE], file, 0o600);
    this.#cache = undefined;
  }
}
