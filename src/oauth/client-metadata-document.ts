/**
 * OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, the way MCP
 * hosts identify themselves to an authorization server they have never met): the `client_id` is
 * an https URL, and the JSON document served there is the client's metadata.
 *
 * What the authorization server checks, as the draft asks:
 * - the URL: https, a path, no fragment, no credentials, no `.`/`..` segments (plain http only to
 *   loopback, and only when allowed: tests);
 * - the fetch: no redirects, a timeout, at most 5 KB (the draft's recommendation), HTTP 200 and
 *   JSON;
 * - the document: its `client_id` equals the URL exactly (else any page could speak for any
 *   client), `redirect_uris` a non-empty list of acceptable redirect URIs, no shared secret (a
 *   public document cannot hold one: `client_secret*` and `client_secret_*` auth methods are
 *   refused), `token_endpoint_auth_method` `none` (the default) or `private_key_jwt` with keys;
 * - cached by URL for the document's `Cache-Control: max-age` (bounded), a failure for a short
 *   while, so a client cannot have the server fetch on every request.
 *
 * A fetch goes where an anonymous request says: that is why http and loopback hosts are refused
 * by default (a server-side request forgery would otherwise reach the server's own machine).
 */
import { LRUCache } from "lru-cache";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { isLoopbackHost } from "../net/loopback.js";
import { redirectUriProblem } from "./redirect-uri.js";

/** The draft recommends documents of at most 5 KB. */
export const MAX_CLIENT_METADATA_BYTES = 5 * 1024;

/** A client as the authorization code flow needs it, from its document or its registration. */
export interface OAuthClient {
  clientId: string;
  redirectUris: readonly string[];
  clientName?: string;
  /** `none`: a public client (PKCE is its proof). */
  tokenEndpointAuthMethod: "none";
  /** Where it came from, for the log and the docs. */
  kind: "metadata-document" | "registered";
}

export interface ClientMetadataDocumentsOptions {
  /** A fetch of your own (a proxy, a private CA through an undici dispatcher). */
  fetch?: typeof fetch;
  timeoutMs?: number;
  /** Allow `http://` client IDs on loopback hosts (tests). Default false. */
  allowLoopbackHttp?: boolean;
  /** Longest a document is cached, whatever its headers say (default 3600 s); shortest is 60 s. */
  maxCacheSeconds?: number;
  /** Documents cached (default 1000). */
  maxEntries?: number;
}

function invalid(rule: string, message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_CLIENT_METADATA_INVALID, `client metadata document: ${message}`, { rule });
}

function unavailable(message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_CLIENT_METADATA_UNAVAILABLE, `client metadata document: ${message}`);
}

/** Whether a `client_id` is meant as a metadata document's URL (and so is checked as one). */
export function isUrlClientId(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId);
}

/** The draft's rules for a client_id URL; returns the parsed URL or throws ERR_OAUTH_CLIENT_METADATA_INVALID (rule url). */
export function checkClientIdUrl(clientId: string, allowLoopbackHttp = false): URL {
  let u: URL;
  try {
    u = new URL(clientId);
  } catch {
    throw invalid("url", `client_id ${JSON.stringify(clientId.slice(0, 100))} is not a URL`);
  }
  const loopback = isLoopbackHost(u.hostname);
  if (u.protocol !== "https:" && !(u.protocol === "http:" && allowLoopbackHttp && loopback))
    throw invalid("url", "a client_id URL is https");
  if (loopback && !allowLoopbackHttp) throw invalid("url", "a client_id URL on a loopback host is not fetched");
  if (u.pathname === "/" || u.pathname === "") throw invalid("url", "a client_id URL has a path");
  if (clientId.includes("#") || u.username !== "" || u.password !== "")
    throw invalid("url", "a client_id URL has no fragment and no credentials");
  if (/(^|\/)\.{1,2}(\/|$)/.test(clientId.slice(u.origin.length).split("?")[0] as string))
    throw invalid("url", "a client_id URL has no . or .. path segments");
  if (u.href !== clientId)
    throw invalid("url", "a client_id URL is written in its normal form (as the URL parser writes it)");
  return u;
}

/** The client a document describes, checked against the URL it was fetched from. */
export function clientFromDocument(url: string, doc: unknown): OAuthClient {
  if (!isJsonObject(doc)) throw invalid("document", "not a JSON object");
  if (doc.client_id !== url)
    throw invalid(
      "client_id",
      `its client_id ${JSON.stringify(doc.client_id)?.slice(0, 120)} is not the URL it is served at, ${url}`,
    );
  for (const k of ["client_secret", "client_secret_expires_at"])
    if (k in doc) throw invalid("auth_method", `a public document holds no ${k}`);
  const method = doc.token_endpoint_auth_method ?? "none";
  if (method !== "none")
    throw invalid(
      "auth_method",
      `token_endpoint_auth_method ${JSON.stringify(method)?.slice(0, 60)}: this server takes public clients (none, with PKCE)`,
    );
  const uris = doc.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > 20)
    throw invalid("document", "redirect_uris must list 1 to 20 redirect URIs");
  for (const u of uris) {
    const problem = redirectUriProblem(u);
    if (problem !== undefined)
      throw invalid("redirect_uris", `redirect URI ${JSON.stringify(u)?.slice(0, 120)} ${problem}`);
  }
  const grants = doc.grant_types;
  if (grants !== undefined && (!Array.isArray(grants) || !grants.includes("authorization_code")))
    throw invalid("document", "grant_types, when given, includes authorization_code");
  return {
    clientId: url,
    redirectUris: uris as string[],
    ...(typeof doc.client_name === "string" ? { clientName: doc.client_name.slice(0, 200) } : {}),
    tokenEndpointAuthMethod: "none",
    kind: "metadata-document",
  };
}

/** The seconds a document may be cached for, from its Cache-Control (bounded to [60, max]). */
function cacheSeconds(res: Response, max: number): number {
  const cc = res.headers.get("cache-control") ?? "";
  if (/no-store|no-cache/i.test(cc)) return 60;
  const m = /max-age=(\d{1,9})/i.exec(cc);
  return Math.min(max, Math.max(60, m ? Number(m[1]) : 300));
}

export class ClientMetadataDocuments {
  readonly #o: ClientMetadataDocumentsOptions;
  readonly #fetch: typeof fetch;
  readonly #cache: LRUCache<string, { client?: OAuthClient; error?: AztpError }>;
  readonly #inFlight = new Map<string, Promise<OAuthClient>>();

  constructor(options: ClientMetadataDocumentsOptions = {}) {
    this.#o = options;
    this.#fetch = options.fetch ?? fetch;
    this.#cache = new LRUCache({ max: options.maxEntries ?? 1000, ttlAutopurge: false });
  }

  /** The client `clientId` names, from its document (cached). Throws ERR_OAUTH_CLIENT_METADATA_*. */
  async client(clientId: string): Promise<OAuthClient> {
    const held = this.#cache.get(clientId);
    if (held?.client !== undefined) return held.client;
    if (held?.error !== undefined) throw held.error;
    let p = this.#inFlight.get(clientId);
    if (p === undefined) {
      p = this.#load(clientId).finally(() => this.#inFlight.delete(clientId));
      this.#inFlight.set(clientId, p);
    }
    return p;
  }

  async #load(clientId: string): Promise<OAuthClient> {
    const url = checkClientIdUrl(clientId, this.#o.allowLoopbackHttp === true);
    const max = this.#o.maxCacheSeconds ?? 3600;
    try {
      let res: Response;
      try {
        res = await this.#fetch(url, {
          headers: { accept: "application/json" },
          redirect: "error",
          signal: AbortSignal.timeout(this.#o.timeoutMs ?? 5000),
        });
      } catch (e) {
        throw unavailable(`${clientId}: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        throw unavailable(`${clientId}: HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get("content-length") ?? "0");
      if (declared > MAX_CLIENT_METADATA_BYTES) {
        await res.body?.cancel().catch(() => undefined);
        throw unavailable(`${clientId}: larger than ${MAX_CLIENT_METADATA_BYTES} bytes`);
      }
      const text = await readLimited(res, MAX_CLIENT_METADATA_BYTES, clientId);
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw invalid("document", `${clientId} is not JSON`);
      }
      const client = clientFromDocument(clientId, doc);
      this.#cache.set(clientId, { client }, { ttl: cacheSeconds(res, max) * 1000 });
      return client;
    } catch (e) {
      // A failure is remembered briefly: a client that keeps asking does not make us keep fetching.
      if (e instanceof AztpError) this.#cache.set(clientId, { error: e }, { ttl: 30_000 });
      throw e;
    }
  }
}

async function readLimited(res: Response, limit: number, what: string): Promise<string> {
  const reader = res.body?.getReader();
  if (reader === undefined) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw unavailable(`${what}: larger than ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}
