/**
 * The routes of `aztp serve` (docs/serve.md lists them with their bodies): each checks the API
 * key's scope on every identity it names (requireInScope, store/api-key-scope.ts: the one
 * predicate), checks its input by type, and calls the authority exactly as the embedded client
 * would, so answers and error codes are the library's.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { RegisterRequest } from "../authority/registry.js";
import {
  pickByName,
  recordInvalidity,
  workloadSpiffeId,
  DEFAULT_ENVIRONMENT,
  DEFAULT_METHOD,
} from "../authority/registry.js";
import type { IssueResult } from "../authority/authority-api.js";
import { validateEntryInput, type AuditEntryInput, type StoredAuditEntry } from "../audit/entry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { TrustBundle } from "../spiffe/bundle.js";
import { Certificate } from "../spiffe/certificate.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { verifyX509Svid } from "../spiffe/x509svid.js";
import {
  anyInScope,
  isScoped,
  requireAnyInScope,
  requireInScope,
  requireTrustDomainInScope,
  scopeCovers,
} from "../store/api-key-scope.js";
import type { ApiKeyRecord } from "../store/api-keys.js";
import {
  optObject,
  optPositiveInt,
  optString,
  optStringArray,
  optText,
  queryInt,
  queryParam,
  reqObject,
  reqString,
  type FormParams,
  type JsonObject,
} from "./http-io.js";
import type { ServeBackend } from "./open.js";
import type { TokenBuckets } from "./rate-limit.js";
import { RevocationListCache } from "./revocation-list-cache.js";

export interface RouteContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly params: readonly string[];
  /** The authenticated key (routes with `auth`). */
  readonly key: ApiKeyRecord;
  body(): Promise<JsonObject>;
  /** The body as an HTML form (the OAuth token endpoint's media type, readForm in http-io.ts). */
  form(): Promise<FormParams>;
  /**
   * The authority brought up to the store's committed state (authority.refresh), at most once
   * per request. (Started alongside the key check it was slower on PostgreSQL here, 2.9 ms
   * against 1.9 ms for the two in turn, so it runs after it.)
   */
  fresh(): Promise<void>;
  /** Names the OAuth client the request authenticated, for its log line (never a token or an assertion). */
  authenticatedClient(spiffeId: string): void;
}

export interface RouteAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Bytes answered as they are (their content-type in `headers`) instead of `body` as JSON. */
  raw?: Buffer;
}

export interface Route {
  method: "GET" | "POST" | "DELETE";
  /** Matched against the whole path; groups become `params`. */
  path: RegExp;
  /**
   * Needs a Bearer API key; "optional": checked when one is sent (`key` is then the key, else a
   * key with no ID and no scope).
   */
  auth: boolean | "optional";
  /** Counts against the key's issuance bucket. */
  rateLimited?: boolean;
  handle(ctx: RouteContext): Promise<RouteAnswer>;
  /** This route's own error format (the OAuth routes answer RFC 6749 error JSON); default errorBody. */
  errorAnswer?(e: AztpError): RouteAnswer;
}

export interface RouteSettings {
  backend: ServeBackend;
  refreshHintSeconds: number;
  /** The signed window of a revocation list (renewed every refresh hint). */
  revocationWindowSeconds: number;
  issueBuckets: TokenBuckets;
  maxBodyBytes: number;
  /** Not ready: shutting down, or the store is down (readyz answers 503). */
  readiness(): Promise<{ ready: true } | { ready: false; why: string }>;
}

const MAX_AUDIT_BATCH = 1000;
const MAX_AUDIT_PAGE = 1000;
const MAX_JWT_TTL = 24 * 3600;

function ok(body: unknown, status = 200, headers?: Record<string, string>): RouteAnswer {
  return headers === undefined ? { status, body } : { status, body, headers };
}

function svidJson(r: IssueResult): unknown {
  return {
    record: r.record,
    svid: {
      serial: r.svid.serial,
      notBefore: r.svid.notBefore.toISOString(),
      notAfter: r.svid.notAfter.toISOString(),
      chainPem: r.svid.chainPem,
    },
  };
}

function registerRequest(o: JsonObject): RegisterRequest {
  const req: RegisterRequest = { name: reqString(o, "name", 1024) };
  const td = optString(o, "trustDomain", 255);
  if (td !== undefined) req.trustDomain = td;
  const env = optString(o, "environment", 255);
  if (env !== undefined) req.environment = env;
  const method = optString(o, "method", 255);
  if (method !== undefined) req.method = method;
  if (o.parentIdentity !== undefined) {
    if (o.parentIdentity !== null && typeof o.parentIdentity !== "string")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "request.parentIdentity must be a string or null");
    req.parentIdentity = o.parentIdentity as string | null;
  }
  const linkTo = optStringArray(o, "linkTo");
  if (linkTo !== undefined) req.linkTo = linkTo;
  const metadata = optObject(o, "metadata");
  if (metadata !== undefined) req.metadata = metadata;
  if (o.isGlobalIdentity !== undefined) {
    if (typeof o.isGlobalIdentity !== "boolean")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "request.isGlobalIdentity must be a boolean");
    req.isGlobalIdentity = o.isGlobalIdentity;
  }
  const known = new Set([
    "name",
    "trustDomain",
    "environment",
    "method",
    "parentIdentity",
    "linkTo",
    "metadata",
    "isGlobalIdentity",
  ]);
  const extra = Object.keys(o).filter((k) => !known.has(k));
  if (extra.length > 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `request has unknown member(s): ${extra.slice(0, 5).join(", ")}`);
  return req;
}

function rateLimited(s: RouteSettings, key: ApiKeyRecord): void {
  takeOrRefuse(s.issueBuckets, key.keyId, `API key ${key.keyId} issues`);
}

/**
 * Takes a token from `bucket`'s bucket, or throws ERR_SERVE_RATE_LIMITED with the Retry-After
 * the answer carries; `who` starts the message ("API key X issues").
 */
export function takeOrRefuse(buckets: TokenBuckets, bucket: string, who: string): void {
  const wait = buckets.take(bucket);
  if (wait > 0) {
    const e = new AztpError(
      ErrorCodes.SERVE_RATE_LIMITED,
      `${who} faster than ${buckets.rate}/s (burst ${buckets.burst}) on this replica: retry in ${wait} s`,
    );
    (e as AztpError & { retryAfter?: number }).retryAfter = wait;
    throw e;
  }
}

/** The Retry-After of a rate-limit error (set by rateLimited). */
export function retryAfterOf(e: AztpError): number | undefined {
  return (e as AztpError & { retryAfter?: number }).retryAfter;
}

export function trustDomainParam(raw: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "trust domain in the path is not valid percent-encoding");
  }
  return TrustDomain.parse(decoded).name;
}

export function knownTrustDomain(s: RouteSettings, td: string): void {
  if (!s.backend.authority.trustDomains.includes(td)) {
    throw new AztpError(ErrorCodes.SERVE_ROUTE_NOT_FOUND, `this authority has no trust domain ${td}`);
  }
}

function auditEntryNames(e: AuditEntryInput): string[] {
  return [e.caller, e.callee].filter((v): v is string => typeof v === "string");
}

export function buildRoutes(s: RouteSettings): Route[] {
  const a = s.backend.authority;
  const revocationLists = new RevocationListCache(a, {
    renewEverySeconds: s.refreshHintSeconds,
    validitySeconds: s.revocationWindowSeconds,
  });
  const bundleAnswer = async (c: RouteContext, tdRaw: string | undefined): Promise<RouteAnswer> => {
    // The bundle changes only when a CA does: while the store is unreachable, the bundle this
    // replica holds is still the right one to hand out (verifiers keep verifying). Not so the
    // revocation list, which is signed "as of now" and so is refused (503) instead.
    await c.fresh().catch((e: unknown) => {
      if (!(e instanceof AztpError && e.code === ErrorCodes.AUTHORITY_STORE_FAILED)) throw e;
    });
    const td = tdRaw === undefined ? a.defaultTrustDomain : trustDomainParam(tdRaw);
    knownTrustDomain(s, td);
    const b = a.bundle(td);
    const published = new TrustBundle({
      trustDomain: b.trustDomain,
      x509Authorities: b.x509Authorities,
      jwtAuthorities: b.jwtAuthorities,
      sequence: b.sequence ?? 1,
      refreshHint: s.refreshHintSeconds,
    });
    // Caches may hold it for half the hint: a consumer refreshing on the hint still sees a change within it.
    return ok(published.toSpiffe(), 200, {
      "cache-control": `public, max-age=${Math.floor(s.refreshHintSeconds / 2)}`,
    });
  };

  return [
    {
      method: "GET",
      path: /^\/healthz$/,
      auth: false,
      handle: async () => ok({ status: "ok" }),
    },
    {
      method: "GET",
      path: /^\/readyz$/,
      auth: false,
      handle: async () => {
        const r = await s.readiness();
        return r.ready ? ok({ status: "ready" }) : ok({ status: "not-ready", why: r.why }, 503);
      },
    },
    { method: "GET", path: /^\/\.well-known\/spiffe\/bundle$/, auth: false, handle: (c) => bundleAnswer(c, undefined) },
    {
      method: "GET",
      path: /^\/\.well-known\/spiffe\/bundle\/([^/]+)$/,
      auth: false,
      handle: (c) => bundleAnswer(c, c.params[0]),
    },
    {
      method: "GET",
      path: /^\/v1\/revocations\/([^/]+)$/,
      auth: false,
      handle: async (c) => {
        await c.fresh();
        const td = trustDomainParam(c.params[0] ?? "");
        knownTrustDomain(s, td);
        const list = await revocationLists.get(td);
        // A verifier judges freshness by the list's signed window, not by this header: a cache
        // that ignores it can delay a revocation by at most the window. no-cache keeps honest
        // caches from adding even that.
        return ok({ list }, 200, { "cache-control": "no-cache" });
      },
    },
    {
      method: "GET",
      path: /^\/v1\/authority$/,
      auth: true,
      handle: async (c) => {
        await c.fresh();
        return ok({
          defaultTrustDomain: a.defaultTrustDomain,
          trustDomains: [...a.trustDomains],
          refreshHintSeconds: s.refreshHintSeconds,
        });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities$/,
      auth: true,
      rateLimited: true,
      handle: async (c) => {
        const body = await c.body();
        const req = registerRequest(reqObject(body, "request"));
        const csr = reqString(body, "csr");
        const ttlSeconds = optPositiveInt(body, "ttlSeconds");
        // The ID this request will register, checked against the scope before anything is written.
        const id = workloadSpiffeId(
          TrustDomain.parse(req.trustDomain ?? a.defaultTrustDomain).name,
          req.environment ?? DEFAULT_ENVIRONMENT,
          req.method ?? DEFAULT_METHOD,
          req.name,
        );
        requireInScope(c.key, id.toString());
        if (typeof req.parentIdentity === "string") requireInScope(c.key, req.parentIdentity, "parentIdentity");
        for (const l of req.linkTo ?? []) requireInScope(c.key, l, "linkTo");
        rateLimited(s, c.key);
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        const r = await a.issueIdentity(req, csr, ttlSeconds === undefined ? {} : { ttlSeconds });
        return ok(svidJson(r), 201);
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities\/register$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const extra = Object.keys(body).filter((k) => k !== "spiffeId" && k !== "metadata");
        if (extra.length > 0)
          throw new AztpError(
            ErrorCodes.ARGUMENT_INVALID,
            `request has unknown member(s): ${extra.slice(0, 5).join(", ")}`,
          );
        const id = requireInScope(c.key, reqString(body, "spiffeId", 4096), "spiffeId");
        const metadata = optObject(body, "metadata");
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        const record = await a.registerSpiffeId(id.toString(), metadata === undefined ? {} : { metadata });
        return ok({ record });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities\/renew$/,
      auth: true,
      rateLimited: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        const csr = reqString(body, "csr");
        const ttlSeconds = optPositiveInt(body, "ttlSeconds");
        rateLimited(s, c.key);
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        const r = await a.renewSvid(id.toString(), csr, ttlSeconds === undefined ? {} : { ttlSeconds });
        return ok(svidJson(r));
      },
    },
    {
      method: "GET",
      path: /^\/v1\/identities$/,
      auth: true,
      handle: async (c) => {
        const q = c.url.searchParams;
        const id = queryParam(q, "id");
        const name = queryParam(q, "name");
        const trustDomain = queryParam(q, "trustDomain");
        const status = queryParam(q, "status");
        await c.fresh();
        if (id !== undefined) {
          if (name !== undefined || status !== undefined)
            throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "id cannot be combined with name or status");
          const parsed = requireInScope(c.key, id);
          return ok({ record: await a.get(parsed.toString()) });
        }
        const td = trustDomain === undefined ? undefined : TrustDomain.parse(trustDomain).name;
        // Before any lookup, so a 404 cannot tell a key what exists outside its scope.
        if (td !== undefined) requireTrustDomainInScope(c.key, td);
        if (name !== undefined) {
          if (status !== undefined)
            throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "name cannot be combined with status");
          // A scoped key without a trust domain looks only among what it may see (the default
          // trust domain's first, as findByName does): a 404 against a 403 would otherwise tell it
          // whether a name exists elsewhere.
          const rec =
            td === undefined && isScoped(c.key.scope)
              ? pickByName(
                  (await a.list({})).filter((r) => r.name === name && scopeCovers(c.key.scope, r.spiffeId)),
                  a.defaultTrustDomain,
                )
              : await a.findByName(name, td);
          if (rec === undefined)
            throw new AztpError(
              ErrorCodes.IDENTITY_NOT_FOUND,
              `no identity named ${JSON.stringify(name.slice(0, 200))}${td ? ` in ${td}` : ""}`,
            );
          requireInScope(c.key, rec.spiffeId);
          return ok({ record: rec });
        }
        if (status !== undefined && status !== "active" && status !== "revoked")
          throw new AztpError(ErrorCodes.ARGUMENT_INVALID, 'status must be "active" or "revoked"');
        const all = await a.list({
          ...(td !== undefined ? { trustDomain: td } : {}),
          ...(status !== undefined ? { status } : {}),
        });
        return ok({ identities: all.filter((r) => scopeCovers(c.key.scope, r.spiffeId)) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/verify$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const idText = optString(body, "id", 4096);
        const chainPem = optString(body, "chainPem", 256 * 1024);
        if ((idText === undefined) === (chainPem === undefined))
          throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "give exactly one of id and chainPem");
        await c.fresh();
        if (idText !== undefined) {
          const id = requireInScope(c.key, idText);
          const rec = await a.find(id.toString());
          if (rec === undefined) return ok({ valid: false, id: id.toString(), reason: ErrorCodes.IDENTITY_NOT_FOUND });
          const reason = recordInvalidity(rec, (sid) => a.isRevoked(sid));
          return ok(
            reason === undefined ? { valid: true, id: rec.spiffeId } : { valid: false, id: rec.spiffeId, reason },
          );
        }
        const chain = Certificate.parsePem(chainPem ?? "");
        let verified: ReturnType<typeof verifyX509Svid>;
        try {
          verified = verifyX509Svid(chain, a.bundleSet());
        } catch (e) {
          if (e instanceof AztpError) {
            const leafId = leafIdOf(chain);
            return ok({ valid: false, ...(leafId !== undefined ? { id: leafId } : {}), reason: e.code });
          }
          throw e;
        }
        const id = requireInScope(c.key, verified.id.toString());
        const serial = (chain[0] as Certificate).serialNumber;
        if (a.isRevoked(id.toString(), serial))
          return ok({ valid: false, id: id.toString(), reason: ErrorCodes.X509SVID_REVOKED });
        return ok({ valid: true, id: id.toString() });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities\/revoke$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        const reason = optText(body, "reason") ?? "unspecified";
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        return ok({ revoked: await a.revoke(id.toString(), reason) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities\/reissue$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        return ok({ record: await a.reissue(id.toString()) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/identities\/jwt-svid$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        const aud = body.audience;
        let audience: string | string[];
        if (typeof aud === "string" && aud.length > 0 && aud.length <= 4096) audience = aud;
        else {
          const list = optStringArray(body, "audience", 32);
          if (list === undefined || list.length === 0)
            throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "audience must be a non-empty string or array of strings");
          audience = list;
        }
        const ttlSeconds = optPositiveInt(body, "ttlSeconds", MAX_JWT_TTL);
        await c.fresh();
        return ok({ token: await a.mintJwtSvid(id.toString(), audience, ttlSeconds) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/links$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const source = requireInScope(c.key, reqString(body, "source", 4096), "source");
        const target = requireInScope(c.key, reqString(body, "target", 4096), "target");
        const type = reqString(body, "type", 32);
        if (type !== "linked" && type !== "parent")
          throw new AztpError(ErrorCodes.ARGUMENT_INVALID, 'type must be "linked" or "parent"');
        const metadata = optObject(body, "metadata");
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        return ok({ link: await a.link(source.toString(), target.toString(), type, metadata ?? {}) });
      },
    },
    {
      method: "GET",
      path: /^\/v1\/connected$/,
      auth: true,
      handle: async (c) => {
        const q = c.url.searchParams;
        const aId = queryParam(q, "a");
        const bId = queryParam(q, "b");
        if (aId === undefined || bId === undefined)
          throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "query parameters a and b are both required");
        const pa = requireInScope(c.key, aId, "a");
        const pb = requireInScope(c.key, bId, "b");
        await c.fresh();
        return ok({ connected: await a.connected(pa.toString(), pb.toString()) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/policies$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        if (body.document === undefined)
          throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "document is required (a policy document)");
        const policyName = optString(body, "policyName", 1024);
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        return ok({ policy: await a.attachPolicy(id.toString(), body.document, policyName) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/policies\/detach$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const id = requireInScope(c.key, reqString(body, "id", 4096));
        const code = reqString(body, "code", 1024);
        // A mutation reads the committed state under the store's lock itself: no refresh first.
        return ok({ detached: await a.detachPolicy(id.toString(), code) });
      },
    },
    {
      method: "POST",
      path: /^\/v1\/audit$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        const entries = body.entries;
        if (!Array.isArray(entries) || entries.length === 0 || entries.length > MAX_AUDIT_BATCH) {
          throw new AztpError(
            ErrorCodes.ARGUMENT_INVALID,
            `entries must be an array of 1 to ${MAX_AUDIT_BATCH} audit entries`,
          );
        }
        // All checked before any is appended: a bad batch writes nothing.
        entries.forEach((e: unknown, i) => {
          try {
            validateEntryInput(e);
          } catch (cause) {
            const msg = cause instanceof Error ? cause.message : String(cause);
            throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `entries[${i}]: ${msg}`, { cause });
          }
          if (isScoped(c.key.scope))
            requireAnyInScope(
              c.key,
              auditEntryNames(e as AuditEntryInput),
              `entries[${i}] (neither its caller nor its callee)`,
            );
        });
        const n = await s.backend.audit.appendBatch(entries as AuditEntryInput[]);
        return ok({ appended: n });
      },
    },
    {
      method: "GET",
      path: /^\/v1\/audit$/,
      auth: true,
      handle: async (c) => {
        const q = c.url.searchParams;
        const afterSeq = queryInt(q, "afterSeq", 0, Number.MAX_SAFE_INTEGER, 0);
        const limit = queryInt(q, "limit", 1, MAX_AUDIT_PAGE, 100);
        // A scoped key's page is filled from further pages (at most 20 reads), and
        // `nextAfterSeq` says where to go on: an empty filtered page is not the end of the log.
        const out: StoredAuditEntry[] = [];
        const scoped = isScoped(c.key.scope);
        let cursor = afterSeq;
        for (let reads = 0; reads < 20 && out.length < limit; reads++) {
          const page = await s.backend.audit.query({ afterSeq: cursor, limit });
          for (const e of page) {
            cursor = e.seq;
            if (scoped && !anyInScope(c.key.scope, [e.caller, e.callee])) continue;
            out.push(e);
            if (out.length >= limit) break;
          }
          if (page.length < limit) break;
        }
        return ok({ entries: out, nextAfterSeq: cursor });
      },
    },
  ];
}

function leafIdOf(chain: readonly Certificate[]): string | undefined {
  try {
    const uri = (chain[0] as Certificate | undefined)?.uriSans?.[0];
    return uri === undefined ? undefined : SpiffeId.parse(uri).toString();
  } catch {
    return undefined;
  }
}
