/**
 * The registry of identities: who exists, who their parent is, what they link to, whether
 * they are revoked, and which certificate serials they were issued. Pure data and pure
 * functions over it; authority.ts persists it.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export type IdentityStatus = "active" | "revoked";
export type LinkType = "linked" | "parent";

export interface IdentityLink {
  /** The AZTP ID linked to. */
  target: string;
  type: LinkType;
  metadata: Record<string, unknown>;
  createdAt: string;
}

export interface PolicyEntry {
  code: string;
  policyName: string;
  policyStatement: unknown;
  attachedAt: string;
}

export interface IdentityRecord {
  name: string;
  aztpId: string;
  spiffeId: string;
  /** A stable UUID for the workload, kept across reissues. */
  workloadId: string;
  trustDomain: string;
  environment: string;
  method: string;
  isGlobalIdentity: boolean;
  parentIdentity: string | null;
  links: IdentityLink[];
  metadata: Record<string, unknown>;
  status: IdentityStatus;
  revokedAt?: string;
  revokeReason?: string;
  /** Serial (hex) of the newest SVID, and every serial ever issued, oldest first. */
  currentSerial?: string;
  serials: string[];
  notAfter?: string;
  policies: PolicyEntry[];
  createdAt: string;
  updatedAt: string;
}

export interface RevocationEntry {
  reason: string;
  at: string;
  /** For an identity revoked because an ancestor was: that ancestor's AZTP ID. */
  cascadeFrom?: string;
}

export interface RegistryState {
  version: 1;
  identities: Record<string, IdentityRecord>;
  revocations: {
    /** Bumped on every change, so verifiers can tell which list is newer. */
    sequence: number;
    identities: Record<string, RevocationEntry>;
    serials: Record<string, RevocationEntry & { spiffeId: string }>;
  };
}

export function emptyRegistry(): RegistryState {
  return { version: 1, identities: {}, revocations: { sequence: 0, identities: {}, serials: {} } };
}

/** Resolves an AZTP or SPIFFE ID string to the registry key (the spiffe:// form). */
export function registryKey(id: string): string {
  return SpiffeId.parse(id).toString();
}

export function getRecord(state: RegistryState, id: string): IdentityRecord {
  const rec = state.identities[registryKey(id)];
  if (rec === undefined) throw new AztpError(ErrorCodes.IDENTITY_NOT_FOUND, `no identity ${SpiffeId.parse(id).aztpId}`);
  return rec;
}

export function findRecord(state: RegistryState, id: string): IdentityRecord | undefined {
  try {
    return state.identities[registryKey(id)];
  } catch {
    return undefined;
  }
}

/** Every identity below `root` (children, grandchildren, ...), found by parent pointers. */
export function descendants(state: RegistryState, root: string): IdentityRecord[] {
  const rootAztp = SpiffeId.parse(root).aztpId;
  const out: IdentityRecord[] = [];
  const queue = [rootAztp];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const parent = queue.shift() as string;
    for (const rec of Object.values(state.identities)) {
      if (rec.parentIdentity === parent && !seen.has(rec.aztpId)) {
        seen.add(rec.aztpId);
        out.push(rec);
        queue.push(rec.aztpId);
      }
    }
  }
  return out;
}

/** Ancestors of `id`, nearest first. Cycles cannot be created (linkIdentities refuses them). */
export function ancestors(state: RegistryState, id: string): IdentityRecord[] {
  const out: IdentityRecord[] = [];
  let cur = findRecord(state, id)?.parentIdentity ?? null;
  const seen = new Set<string>();
  while (cur !== null && !seen.has(cur)) {
    seen.add(cur);
    const rec = findRecord(state, cur);
    if (rec === undefined) break;
    out.push(rec);
    cur = rec.parentIdentity;
  }
  return out;
}

/** Revokes `id` and every descendant; their SVID serials are revoked too. Returns the AZTP IDs revoked. */
export function revoke(state: RegistryState, id: string, reason: string, now: Date): string[] {
  const root = getRecord(state, id);
  const at = now.toISOString();
  const revoked: string[] = [];
  const mark = (rec: IdentityRecord, cascadeFrom?: string): void => {
    const entry: RevocationEntry = { reason, at, ...(cascadeFrom ? { cascadeFrom } : {}) };
    state.revocations.identities[rec.spiffeId] = entry;
    for (const serial of rec.serials) state.revocations.serials[serial] = { ...entry, spiffeId: rec.spiffeId };
    if (rec.status !== "revoked") revoked.push(rec.aztpId);
    rec.status = "revoked";
    rec.revokedAt = at;
    rec.revokeReason = cascadeFrom ? `parent revoked: ${reason}` : reason;
    rec.updatedAt = at;
  };
  mark(root);
  for (const child of descendants(state, root.spiffeId)) mark(child, root.aztpId);
  state.revocations.sequence++;
  return revoked;
}

/**
 * Restores a revoked identity (not its descendants: each is restored on its own). Its old
 * serials stay revoked: only the SVID issued next is good.
 */
export function restore(state: RegistryState, id: string, now: Date): IdentityRecord {
  const rec = getRecord(state, id);
  const revokedAncestor = ancestors(state, rec.spiffeId).find((a) => a.status === "revoked");
  if (revokedAncestor) {
    throw new AztpError(ErrorCodes.IDENTITY_REVOKED, `cannot reissue ${rec.aztpId}: its ancestor ${revokedAncestor.aztpId} is revoked`);
  }
  delete state.revocations.identities[rec.spiffeId];
  rec.status = "active";
  delete rec.revokedAt;
  delete rec.revokeReason;
  rec.updatedAt = now.toISOString();
  state.revocations.sequence++;
  return rec;
}

/** Adds or updates a link from `source` to `target`. A "parent" link makes target the parent of source. */
export function link(state: RegistryState, source: string, target: string, type: LinkType, metadata: Record<string, unknown>, now: Date): IdentityLink {
  if (type !== "linked" && type !== "parent") {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `link type must be "linked" or "parent", got ${JSON.stringify(type)}`);
  }
  const src = getRecord(state, source);
  const dst = getRecord(state, target);
  if (src.spiffeId === dst.spiffeId) throw new AztpError(ErrorCodes.INVALID_ARGUMENT, "an identity cannot link to itself");
  if (type === "parent") {
    if (ancestors(state, dst.spiffeId).some((a) => a.spiffeId === src.spiffeId)) {
      throw new AztpError(ErrorCodes.PARENT_INVALID, `${dst.aztpId} descends from ${src.aztpId}: a parent link would make a cycle`);
    }
    if (src.parentIdentity !== null && src.parentIdentity !== dst.aztpId) {
      throw new AztpError(ErrorCodes.PARENT_INVALID, `${src.aztpId} already has the parent ${src.parentIdentity}`);
    }
    src.parentIdentity = dst.aztpId;
  }
  const at = now.toISOString();
  const existing = src.links.find((l) => l.target === dst.aztpId && l.type === type);
  if (existing) {
    existing.metadata = { ...existing.metadata, ...metadata };
    src.updatedAt = at;
    return existing;
  }
  const l: IdentityLink = { target: dst.aztpId, type, metadata, createdAt: at };
  src.links.push(l);
  src.updatedAt = at;
  return l;
}

/** True if a and b are linked (either direction) or one is the other's parent. */
export function connected(state: RegistryState, a: string, b: string): boolean {
  const ra = findRecord(state, a);
  const rb = findRecord(state, b);
  if (!ra || !rb) return false;
  const links = (from: IdentityRecord, to: IdentityRecord): boolean => from.links.some((l) => l.target === to.aztpId);
  return links(ra, rb) || links(rb, ra) || ra.parentIdentity === rb.aztpId || rb.parentIdentity === ra.aztpId;
}
