/**
 * The registry of identities: who exists, who their parent is, what they link to, whether
 * they are revoked, which certificate serials they were issued, and the rules every record and
 * credential obeys (how a record is created or updated, how long a credential of it may live).
 * Pure data and pure functions over it, testable without a CA; authority.ts persists it and
 * signs what these rules allow.
 */
import { randomUUID } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { DEFAULT_JWT_SVID_TTL_SECONDS } from "../spiffe/jwtsvid.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export const DEFAULT_ENVIRONMENT = "production";
export const DEFAULT_METHOD = "node";

/**
 * The SPIFFE ID spec (§2.3): implementations must accept IDs up to 2048 bytes and should not
 * generate longer ones, so an authority that issued one would hand out an SVID other verifiers
 * may refuse.
 */
export const MAX_SPIFFE_ID_BYTES = 2048;

/** The longest JWT-SVID the authority mints: SPIRE caps its JWT-SVIDs at its CA TTL, one day by default. */
export const MAX_JWT_SVID_TTL_SECONDS = 24 * 3600;

export interface RegisterRequest {
  name: string;
  trustDomain?: string;
  environment?: string;
  method?: string;
  parentIdentity?: string | null;
  linkTo?: string[];
  metadata?: Record<string, unknown>;
  isGlobalIdentity?: boolean;
}

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
  /**
   * The public keys of its X.509-SVIDs that had not expired when the newest was issued, newest
   * first (at most MAX_SVID_KEYS): how the token endpoint finds the key of a `private_key_jwt`
   * assertion, which names none (the MCP SDK's carries no kid and no x5c).
   */
  svidKeys?: SvidKey[];
  policies: PolicyEntry[];
  createdAt: string;
  updatedAt: string;
}

/** The public key of one X.509-SVID of an identity. */
export interface SvidKey {
  serial: string;
  notAfter: string;
  /** RFC 7517 public JWK (no private member). */
  jwk: Record<string, unknown>;
}

/**
 * Keys of unexpired SVIDs kept per identity. More than the current one: a rotation at half-life
 * must not break a client mid-way, and processes holding one identity each hold their own key.
 * Each of them is a key whose SVID an `x5c` header would be accepted with too.
 */
export const MAX_SVID_KEYS = 8;

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
    throw new AztpError(
      ErrorCodes.IDENTITY_REVOKED,
      `cannot reissue ${rec.aztpId}: its ancestor ${revokedAncestor.aztpId} is revoked`,
    );
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
export function link(
  state: RegistryState,
  source: string,
  target: string,
  type: LinkType,
  metadata: Record<string, unknown>,
  now: Date,
): IdentityLink {
  if (type !== "linked" && type !== "parent") {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `link type must be "linked" or "parent", got ${JSON.stringify(type)}`,
    );
  }
  const src = getRecord(state, source);
  const dst = getRecord(state, target);
  if (src.spiffeId === dst.spiffeId)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an identity cannot link to itself");
  if (type === "parent") {
    if (ancestors(state, dst.spiffeId).some((a) => a.spiffeId === src.spiffeId)) {
      throw new AztpError(
        ErrorCodes.PARENT_INVALID,
        `${dst.aztpId} descends from ${src.aztpId}: a parent link would make a cycle`,
      );
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

/** A name must be one SPIFFE path segment: letters, digits, dot, dash, underscore. */
function checkSegment(what: string, value: unknown): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9._-]+$/.test(value) || value === "." || value === "..") {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `${what} must be a non-empty string of letters, digits, ".", "-" or "_" (it becomes a SPIFFE ID path segment), got ${JSON.stringify(value)?.slice(0, 80)}`,
    );
  }
  return value;
}

export function workloadSpiffeId(trustDomain: string, environment: string, method: string, name: string): SpiffeId {
  const id = SpiffeId.fromSegments(
    trustDomain,
    "workload",
    checkSegment("environment", environment),
    checkSegment("method", method),
    checkSegment("name", name),
  );
  const bytes = Buffer.byteLength(id.toString());
  if (bytes > MAX_SPIFFE_ID_BYTES) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `the SPIFFE ID for this name would be ${bytes} bytes, over the ${MAX_SPIFFE_ID_BYTES} the SPIFFE ID spec allows: use a shorter name`,
    );
  }
  return id;
}

/** Refuses metadata that is not a plain object (it is merged into the record's). */
export function checkMetadata(metadata: unknown): void {
  if (metadata !== undefined && (metadata === null || typeof metadata !== "object" || Array.isArray(metadata))) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "metadata must be an object");
  }
}

/**
 * Registers `req` as `id` (trust domain `trustDomain`), or updates the record that exists:
 * same AZTP ID and workload ID, metadata merged, a revoked record refused (it is reissued
 * first). Then applies its parent and links. Returns the record, in `state`.
 */
export function register(
  state: RegistryState,
  id: SpiffeId,
  trustDomain: string,
  req: RegisterRequest,
  now: Date,
): IdentityRecord {
  const at = now.toISOString();
  let rec = state.identities[id.toString()];
  const parentId = req.parentIdentity ? SpiffeId.parse(req.parentIdentity).aztpId : null;
  if (rec === undefined) {
    rec = {
      name: req.name,
      aztpId: id.aztpId,
      spiffeId: id.toString(),
      workloadId: randomUUID(),
      trustDomain,
      environment: req.environment ?? DEFAULT_ENVIRONMENT,
      method: req.method ?? DEFAULT_METHOD,
      isGlobalIdentity: req.isGlobalIdentity ?? false,
      parentIdentity: null,
      links: [],
      metadata: { ...req.metadata },
      status: "active",
      serials: [],
      policies: [],
      createdAt: at,
      updatedAt: at,
    };
    state.identities[rec.spiffeId] = rec;
  } else {
    if (rec.status === "revoked") {
      throw new AztpError(
        ErrorCodes.IDENTITY_REVOKED,
        `${rec.aztpId} is revoked (${rec.revokeReason ?? "no reason"}): reissue it first`,
      );
    }
    rec.metadata = { ...rec.metadata, ...req.metadata };
    if (req.isGlobalIdentity !== undefined) rec.isGlobalIdentity = req.isGlobalIdentity;
    rec.updatedAt = at;
  }
  if (parentId !== null && rec.parentIdentity !== parentId) link(state, rec.spiffeId, parentId, "parent", {}, now);
  for (const target of req.linkTo ?? []) link(state, rec.spiffeId, target, "linked", {}, now);
  return rec;
}

/** The environment and method of an identity registered by its SPIFFE ID for a Workload API entry. */
export const WORKLOAD_API_ENVIRONMENT = "workload-api";
/** Such a workload is attested by the kernel's word on its Unix socket peer (workload-api/selectors.ts). */
export const WORKLOAD_API_METHOD = "unix";

/**
 * Registers `id` as it is, any path of a trust domain (a Workload API entry names any SPIFFE ID,
 * as SPIRE's entries do, not only `workload/<env>/<method>/<name>`), or finds the active record
 * that exists (metadata merged; a revoked one refused, as `register` refuses it). Its name is
 * the ID's last path segment. The trust domain's own ID is refused: it names the CA, no workload.
 */
export function registerSpiffeId(
  state: RegistryState,
  id: SpiffeId,
  metadata: Record<string, unknown> | undefined,
  now: Date,
): IdentityRecord {
  if (id.path === "")
    throw new AztpError(
      ErrorCodes.SPIFFEID_ROOT_PATH_NOT_ALLOWED,
      `${id.toString()} is the trust domain's own ID: a workload's ID has a path`,
    );
  const bytes = Buffer.byteLength(id.toString());
  if (bytes > MAX_SPIFFE_ID_BYTES)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `${id.toString().slice(0, 80)}… is ${bytes} bytes, over the ${MAX_SPIFFE_ID_BYTES} the SPIFFE ID spec allows`,
    );
  checkMetadata(metadata);
  const name = id.path.slice(id.path.lastIndexOf("/") + 1);
  return register(
    state,
    id,
    id.trustDomain,
    {
      name,
      environment: WORKLOAD_API_ENVIRONMENT,
      method: WORKLOAD_API_METHOD,
      ...(metadata !== undefined ? { metadata } : {}),
    },
    now,
  );
}

/**
 * The rules for any credential of `rec`: it is active, every ancestor is active and holds an
 * SVID, and the credential may not outlive the earliest of those SVIDs (a child's lifetime
 * never exceeds its parent's). Returns that cap, if `rec` has ancestors.
 */
export function lifetimeCap(state: RegistryState, rec: IdentityRecord): Date | undefined {
  if (rec.status !== "active") throw new AztpError(ErrorCodes.IDENTITY_REVOKED, `${rec.aztpId} is revoked`);
  let cap: Date | undefined;
  for (const a of ancestors(state, rec.spiffeId)) {
    if (a.status !== "active")
      throw new AztpError(ErrorCodes.PARENT_INVALID, `ancestor ${a.aztpId} of ${rec.aztpId} is revoked`);
    if (a.notAfter === undefined)
      throw new AztpError(ErrorCodes.PARENT_INVALID, `ancestor ${a.aztpId} holds no SVID yet`);
    const na = new Date(a.notAfter);
    if (cap === undefined || na < cap) cap = na;
  }
  return cap;
}

/**
 * Records an X.509-SVID issued to `rec`: its serial (current, and in the history), expiry and
 * public key (with those of its SVIDs still unexpired).
 */
export function recordSvid(
  rec: IdentityRecord,
  svid: { serial: string; notAfter: Date; publicKeyJwk?: Record<string, unknown> | undefined },
  now: Date,
): void {
  rec.currentSerial = svid.serial;
  rec.serials.push(svid.serial);
  rec.notAfter = svid.notAfter.toISOString();
  rec.updatedAt = now.toISOString();
  if (svid.publicKeyJwk !== undefined) {
    const live = (rec.svidKeys ?? []).filter((k) => Date.parse(k.notAfter) > now.getTime() && k.serial !== svid.serial);
    rec.svidKeys = [{ serial: svid.serial, notAfter: rec.notAfter, jwk: svid.publicKeyJwk }, ...live].slice(
      0,
      MAX_SVID_KEYS,
    );
  }
}

/**
 * The lifetime (s) of a JWT-SVID for `rec` asked for `ttlSeconds`: 5 minutes by default, at
 * most MAX_JWT_SVID_TTL_SECONDS, and for a child never past an ancestor's SVID. A JWT-SVID
 * cannot be recalled once handed out (a verifier holding only the bundle accepts it until
 * `exp`), so its lifetime is bounded here rather than left to the caller.
 */
export function jwtSvidTtl(
  state: RegistryState,
  rec: IdentityRecord,
  ttlSeconds: number | undefined,
  now: Date,
): number {
  if (
    ttlSeconds !== undefined &&
    !(Number.isFinite(ttlSeconds) && ttlSeconds > 0 && ttlSeconds <= MAX_JWT_SVID_TTL_SECONDS)
  ) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `a JWT-SVID lives more than 0 and at most ${MAX_JWT_SVID_TTL_SECONDS} s (24 h), got ${ttlSeconds}`,
    );
  }
  let ttl = ttlSeconds ?? DEFAULT_JWT_SVID_TTL_SECONDS;
  const cap = lifetimeCap(state, rec);
  if (cap !== undefined) {
    // In whole seconds as the token counts them (iat and exp are floors), so exp lands on the cap.
    const left = Math.floor(cap.getTime() / 1000) - Math.floor(now.getTime() / 1000);
    if (left <= 0)
      throw new AztpError(
        ErrorCodes.PARENT_INVALID,
        `an ancestor's SVID of ${rec.aztpId} has expired (${cap.toISOString()}): no JWT-SVID can be minted under it`,
      );
    ttl = Math.min(ttl, left);
  }
  return ttl;
}

/** Attaches `entry` to `id`, replacing a policy with the same code. */
export function attachPolicy(state: RegistryState, id: string, entry: PolicyEntry): PolicyEntry {
  const rec = getRecord(state, id);
  rec.policies = [...rec.policies.filter((p) => p.code !== entry.code), entry];
  rec.updatedAt = entry.attachedAt;
  return entry;
}

/** Detaches the policy `code` from `id`; false if it had none. */
export function detachPolicy(state: RegistryState, id: string, code: string): boolean {
  const rec = getRecord(state, id);
  const before = rec.policies.length;
  rec.policies = rec.policies.filter((p) => p.code !== code);
  return rec.policies.length !== before;
}

/**
 * Why `rec` is not valid now, or undefined when it is: the one rule behind the client's
 * verifyIdentity(id) and the service's POST /v1/verify. Active, not revoked (itself or an
 * ancestor: `isRevoked`), and holding an SVID that has not expired.
 */
export function recordInvalidity(
  rec: IdentityRecord,
  isRevoked: (spiffeId: string) => boolean,
  now = Date.now(),
): string | undefined {
  if (rec.status !== "active" || isRevoked(rec.spiffeId)) return ErrorCodes.IDENTITY_REVOKED;
  if (rec.notAfter === undefined || Date.parse(rec.notAfter) <= now) return ErrorCodes.X509SVID_EXPIRED;
  return undefined;
}

/**
 * The identity a name means among `records` (each named so): the one in `defaultTrustDomain`,
 * else the first. One rule for a lookup by name, whoever narrows the records first.
 */
export function pickByName(records: readonly IdentityRecord[], defaultTrustDomain: string): IdentityRecord | undefined {
  return records.find((r) => r.trustDomain === defaultTrustDomain) ?? records[0];
}
