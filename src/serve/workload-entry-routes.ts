/**
 * The Workload API's registration entries over the API (workload-api/entries.ts), as
 * `aztp workload register | list | delete --server` and `aztp workload-api --server` use them:
 *
 * - `GET    /v1/workload-entries` → `{ entries: WorkloadEntry[] }`, oldest first
 * - `GET    /v1/workload-entries/<entryId>` → `{ entry }`, or 404 ERR_WORKLOAD_ENTRY_NOT_FOUND
 * - `POST   /v1/workload-entries` `{ spiffeId, selectors, hint? }` → 201 `{ entry }`
 * - `DELETE /v1/workload-entries/<entryId>` → `{ entryId, deleted: true }`, or 404
 *
 * Scope: an entry is its SPIFFE ID. Creating one makes that ID an identity and lets whoever
 * matches its selectors get SVIDs for it, so it needs what issuing that ID needs: a key whose
 * scope covers the ID (requireInScope, as POST /v1/identities checks the ID it would register).
 * Reading and deleting are held to the same predicate: a key sees, and may delete, only the
 * entries whose ID it covers, so the key of a Workload API endpoint scoped to its own workloads'
 * IDs lists exactly the entries it serves. An entry outside the scope is answered as one that
 * does not exist (404): its ID is a random UUID, and a 403 would tell the key that it exists.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { requireInScope, scopeCovers, type ScopedKey } from "../store/api-key-scope.js";
import {
  checkNewWorkloadEntry,
  isWorkloadEntryId,
  registerWorkloadEntry,
  type WorkloadEntry,
} from "../workload-api/entries.js";
import type { Route, RouteContext, RouteSettings } from "./routes.js";

export function buildWorkloadEntryRoutes(s: RouteSettings): Route[] {
  const entries = s.backend.workloadEntries;
  /** The entry `c.params[0]` names, if it exists and the key covers its ID; else 404. */
  const entryOf = async (c: RouteContext): Promise<WorkloadEntry> => {
    const id = c.params[0] ?? "";
    const entry = isWorkloadEntryId(id) ? await entries.get(id) : undefined;
    if (entry === undefined || !covers(c.key, entry)) throw notFound(id);
    return entry;
  };
  return [
    {
      method: "GET",
      path: /^\/v1\/workload-entries$/,
      auth: true,
      handle: async (c) => {
        const all = await entries.list();
        return { status: 200, body: { entries: all.filter((e) => covers(c.key, e)) } };
      },
    },
    {
      method: "GET",
      path: /^\/v1\/workload-entries\/([^/]+)$/,
      auth: true,
      handle: async (c) => ({ status: 200, body: { entry: await entryOf(c) } }),
    },
    {
      method: "POST",
      path: /^\/v1\/workload-entries$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        // The scope first, whenever the ID can be read at all: a key learns nothing about an
        // entry outside its scope, not even which of its other members would have been refused.
        const named = spiffeIdOrUndefined(body.spiffeId);
        if (named !== undefined) requireInScope(c.key, named, "spiffeId");
        const checked = checkNewWorkloadEntry(body);
        requireInScope(c.key, checked.spiffeId, "spiffeId");
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        const entry = await registerWorkloadEntry(s.backend.authority, entries, checked);
        return { status: 201, body: { entry } };
      },
    },
    {
      method: "DELETE",
      path: /^\/v1\/workload-entries\/([^/]+)$/,
      auth: true,
      handle: async (c) => {
        const entry = await entryOf(c);
        // Deleted meanwhile (by another replica or client): not found, as for this request it was not.
        if (!(await entries.delete(entry.entryId))) throw notFound(entry.entryId);
        return { status: 200, body: { entryId: entry.entryId, deleted: true } };
      },
    },
  ];
}

function covers(key: ScopedKey, entry: WorkloadEntry): boolean {
  try {
    return scopeCovers(key.scope, entry.spiffeId);
  } catch {
    return false;
  }
}

function spiffeIdOrUndefined(value: unknown): SpiffeId | undefined {
  if (typeof value !== "string") return undefined;
  try {
    return SpiffeId.parse(value);
  } catch {
    return undefined;
  }
}

function notFound(entryId: string): AztpError {
  return new AztpError(
    ErrorCodes.WORKLOAD_ENTRY_NOT_FOUND,
    `no registration entry ${JSON.stringify(entryId.slice(0, 60))}`,
  );
}
