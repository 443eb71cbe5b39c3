/**
 * One version of the registry as the authority reads it: the registry state (deep-frozen) and
 * everything derived from it (the revocation indexes, the parsed policies), for exactly the
 * registry.json the `version` names. The authority holds one snapshot and swaps it whole when
 * the file changes, so no read can ever pair the state of one version with an index of
 * another, and there is nothing to invalidate piecemeal.
 *
 * The revocation indexes are built with the snapshot (a revocation check is on every call, so
 * it must find them ready); policies are parsed on first use, since most identities are never
 * asked for theirs, and kept for the snapshot's life: the same arrays come back, so evaluation
 * caches keyed on them hit.
 */
import { parsePolicy, type PolicyDocument } from "../policy/policy.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import * as registry from "./registry.js";
import type { IdentityRecord, RegistryState } from "./registry.js";

export class RegistrySnapshot {
  /** The file identity (HomeStore.version) this snapshot was read from; undefined: no file. */
  readonly version: string | undefined;
  readonly state: RegistryState;
  /** Revoked SPIFFE IDs, each revoked identity's descendants included. */
  readonly #revokedIds: ReadonlySet<string>;
  readonly #revokedSerials: ReadonlySet<string>;
  /** Parsed policies by `id \n code`: derived from the frozen state, so never stale. */
  readonly #policies = new Map<string, readonly PolicyDocument[]>();

  /** Takes ownership of `state` and freezes it: the caller must not change it afterwards. */
  constructor(state: RegistryState, version: string | undefined) {
    this.version = version;
    this.state = deepFreeze(state);
    this.#revokedIds = revokedClosure(state);
    this.#revokedSerials = new Set(Object.keys(state.revocations.serials));
    Object.freeze(this);
  }

  /** The identity `id`, any ancestor, or the SVID `serial` is revoked (an unparsable ID counts as revoked). */
  isRevoked(id: string, serial?: string): boolean {
    if (serial !== undefined && this.#revokedSerials.has(serial)) return true;
    if (this.#revokedIds.has(id)) return true;
    try {
      return this.#revokedIds.has(registry.registryKey(id));
    } catch {
      return true; // not an ID at all: never "not revoked"
    }
  }

  /** The validated policy documents attached to `id` (only the one with `code`, if given). */
  policiesOf(id: string, code?: string): readonly PolicyDocument[] {
    const key = `${id}\n${code ?? ""}`;
    let docs = this.#policies.get(key);
    if (docs === undefined) {
      const rec = registry.getRecord(this.state, id);
      docs = Object.freeze(
        rec.policies.filter((p) => code === undefined || p.code === code).map((p) => parsePolicy(p.policyStatement)),
      );
      this.#policies.set(key, docs);
    }
    return docs;
  }
}

/** Every revoked identity and all its descendants, in one pass over a child index (not one scan per revocation). */
function revokedClosure(state: RegistryState): Set<string> {
  const children = new Map<string, IdentityRecord[]>();
  for (const rec of Object.values(state.identities)) {
    if (rec.parentIdentity === null) continue;
    const list = children.get(rec.parentIdentity);
    if (list === undefined) children.set(rec.parentIdentity, [rec]);
    else list.push(rec);
  }
  const ids = new Set<string>();
  const queue: string[] = [];
  for (const spiffeId of Object.keys(state.revocations.identities)) {
    ids.add(spiffeId);
    queue.push(spiffeId);
  }
  while (queue.length > 0) {
    const cur = queue.pop() as string;
    let aztpId: string;
    try {
      aztpId = SpiffeId.parse(cur).aztpId;
    } catch {
      continue; // registry.json holds only IDs it wrote; a foreign key names no one's parent
    }
    for (const child of children.get(aztpId) ?? []) {
      if (ids.has(child.spiffeId)) continue;
      ids.add(child.spiffeId);
      queue.push(child.spiffeId);
    }
  }
  return ids;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
