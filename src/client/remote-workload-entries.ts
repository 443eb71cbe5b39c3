/**
 * The Workload API's registration entries of a remote `aztp serve`, as a WorkloadEntryStore
 * (workload-api/entries.ts) over its `/v1/workload-entries` routes: what `aztp workload
 * register | list | delete --server` and `aztp workload-api --server` act on. Made by
 * `RemoteAuthority.workloadEntries()`, on that authority's transport (its TLS check, its key).
 *
 * The service applies the rules (checkNewWorkloadEntry, the identical entry, the key's scope);
 * an entry is checked here too before it is sent, so a bad one fails without a round trip, and
 * every entry answered is checked as a stored one is read back, so a service that answers
 * something else is ERR_AUTHORITY_REMOTE_ANSWER_INVALID, never an entry the endpoint matches
 * callers against.
 *
 * The key sees only the entries whose SPIFFE ID its scope covers (docs/serve.md): an endpoint's
 * key scoped to its node's workloads lists exactly those.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import {
  checkNewWorkloadEntry,
  isWorkloadEntryId,
  storedWorkloadEntry,
  type NewWorkloadEntry,
  type WorkloadEntry,
  type WorkloadEntryStore,
} from "../workload-api/entries.js";
import type { AuthorityHttp } from "./authority-http.js";

export interface RemoteWorkloadEntryStoreOptions {
  /**
   * list() answers from the list fetched less than this long ago (a failure too: it is not
   * asked again sooner). Default 0: every list() is a request. The Workload API endpoint reads
   * the entries every 250 ms; `aztp workload-api --server` sets its sync interval here, so a
   * node asks the service once per interval, not four times a second.
   */
  listMaxAgeMs?: number | undefined;
}

const PATH = "v1/workload-entries";

export class RemoteWorkloadEntryStore implements WorkloadEntryStore {
  readonly #http: AuthorityHttp;
  readonly #maxAgeMs: number;
  #cached: { at: number; entries: Promise<WorkloadEntry[]> } | undefined;
  #closed = false;

  constructor(http: AuthorityHttp, options: RemoteWorkloadEntryStoreOptions = {}) {
    const maxAge = options.listMaxAgeMs ?? 0;
    if (typeof maxAge !== "number" || !Number.isFinite(maxAge) || maxAge < 0)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `listMaxAgeMs must be a number of milliseconds, 0 or more, got ${String(maxAge)}`,
      );
    this.#http = http;
    this.#maxAgeMs = maxAge;
  }

  /** The service's URL (never the key). */
  get location(): string {
    return this.#http.baseUrl.href.replace(/\/+$/, "");
  }

  async create(entry: NewWorkloadEntry): Promise<WorkloadEntry> {
    this.#open();
    const checked = checkNewWorkloadEntry(entry);
    this.#cached = undefined;
    const answer = await this.#http.post<{ entry?: unknown }>(PATH, checked);
    return entryOf(answer.entry, `POST /${PATH}`);
  }

  async list(): Promise<WorkloadEntry[]> {
    this.#open();
    const now = Date.now();
    const held = this.#cached;
    if (held !== undefined && now - held.at < this.#maxAgeMs) return structuredClone(await held.entries);
    const entries = this.#fetchList();
    if (this.#maxAgeMs > 0) {
      this.#cached = { at: now, entries };
      entries.catch(() => undefined);
    }
    return structuredClone(await entries);
  }

  async get(entryId: string): Promise<WorkloadEntry | undefined> {
    this.#open();
    if (!isWorkloadEntryId(entryId)) return undefined;
    try {
      const answer = await this.#http.get<{ entry?: unknown }>(`${PATH}/${entryId}`);
      return entryOf(answer.entry, `GET /${PATH}/${entryId}`);
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.WORKLOAD_ENTRY_NOT_FOUND) return undefined;
      throw e;
    }
  }

  async delete(entryId: string): Promise<boolean> {
    this.#open();
    if (!isWorkloadEntryId(entryId)) return false;
    this.#cached = undefined;
    try {
      const answer = await this.#http.delete<{ deleted?: unknown }>(`${PATH}/${entryId}`);
      if (answer.deleted !== true) throw answerInvalid(`DELETE /${PATH}/${entryId}`, "deleted");
      return true;
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.WORKLOAD_ENTRY_NOT_FOUND) return false;
      throw e;
    }
  }

  /** Stops answering; the transport is the authority's, closed with it. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#cached = undefined;
  }

  async #fetchList(): Promise<WorkloadEntry[]> {
    const answer = await this.#http.get<{ entries?: unknown }>(PATH);
    if (!Array.isArray(answer.entries)) throw answerInvalid(`GET /${PATH}`, "entries");
    return answer.entries.map((e) => entryOf(e, `GET /${PATH}`));
  }

  #open(): void {
    if (this.#closed)
      throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `the Workload API entries of ${this.location} are closed`);
  }
}

function entryOf(value: unknown, where: string): WorkloadEntry {
  const entry = storedWorkloadEntry(value);
  if (entry === undefined) throw answerInvalid(where, "entry");
  return entry;
}

function answerInvalid(where: string, member: string): AztpError {
  return new AztpError(
    ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
    `${where}: the answer's "${member}" is missing or not a registration entry`,
    { rule: "shape" },
  );
}
