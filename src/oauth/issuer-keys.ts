/**
 * The signing keys of an external OAuth issuer (an authorization server or an OpenID Provider
 * that is not one of this library's authorities), found the standard way and kept fresh:
 * RFC 8414 metadata (`/.well-known/oauth-authorization-server`, path inserted), else OpenID
 * Connect Discovery (`/.well-known/openid-configuration`, path inserted, then appended: the
 * order the MCP authorization spec gives clients), then the `jwks_uri` it names.
 *
 * The metadata's `issuer` must equal the configured one exactly (RFC 8414 §3.3, OIDC Discovery
 * §4.3): otherwise a document on one host could name keys for another. Keys are cached; an
 * unknown `kid` fetches again at most once per `minRefreshSeconds` (a rotated-in key is found,
 * a token naming garbage cannot make us hammer the issuer), and the set is refreshed once it is
 * `maxAgeSeconds` old. Plain http is allowed only to a loopback host (tests, a local provider).
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject, type JsonObject } from "../json/value.js";
import { isLoopbackHost } from "../net/loopback.js";
import { keyMatchesAlgorithm, type JwsAlgorithm } from "../spiffe/keys.js";
import type { AccessTokenKeySource } from "./access-token.js";

/** Documents bigger than this are refused: metadata and key sets are a few kilobytes. */
const MAX_DOCUMENT_BYTES = 1024 * 1024;

export interface IssuerKeysOptions {
  /** The issuer identifier, exactly as its tokens' `iss` and its metadata's `issuer` write it. */
  issuer: string;
  /** Skip discovery: the key set's URL. */
  jwksUri?: string;
  /** Allow plain http off loopback (never do this outside a test network). */
  allowInsecureHttp?: boolean;
  /** A fetch of your own (a proxy, a private CA through an undici dispatcher). */
  fetch?: typeof fetch;
  timeoutMs?: number;
  minRefreshSeconds?: number;
  maxAgeSeconds?: number;
}

/** What this library reads of an issuer's metadata. */
export interface IssuerMetadata extends JsonObject {
  issuer: string;
  jwks_uri: string;
}

function unavailable(message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_ISSUER_UNAVAILABLE, message);
}

function invalid(message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_ISSUER_METADATA_INVALID, message);
}

/** The URLs discovery tries for `issuer`, in order. */
export function discoveryUrls(issuer: string): string[] {
  const u = new URL(issuer);
  const path = u.pathname === "/" ? "" : u.pathname.replace(/\/$/, "");
  return [
    `${u.origin}/.well-known/oauth-authorization-server${path}`,
    `${u.origin}/.well-known/openid-configuration${path}`,
    ...(path === "" ? [] : [`${u.origin}${path}/.well-known/openid-configuration`]),
  ];
}

export class IssuerKeys implements AccessTokenKeySource {
  readonly issuer: string;
  readonly #options: IssuerKeysOptions;
  readonly #fetch: typeof fetch;
  #keys = new Map<string, KeyObject>();
  #unnamed: KeyObject[] = [];
  #fetchedAt = 0;
  #inFlight: Promise<void> | undefined;
  #metadata: IssuerMetadata | undefined;

  constructor(options: IssuerKeysOptions) {
    let url: URL;
    try {
      url = new URL(options.issuer);
    } catch {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `issuer ${JSON.stringify(options.issuer)} is not a URL`);
    }
    if (url.search !== "" || url.hash !== "")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "an issuer identifier has no query or fragment (RFC 8414 §2)");
    this.issuer = options.issuer;
    this.#options = options;
    this.#fetch = options.fetch ?? fetch;
    this.#checkScheme(url);
  }

  #checkScheme(url: URL): void {
    if (url.protocol === "https:") return;
    if (url.protocol === "http:" && (isLoopbackHost(url.hostname) || this.#options.allowInsecureHttp === true)) return;
    throw new AztpError(
      ErrorCodes.OAUTH_ISSUER_UNAVAILABLE,
      `${url.href}: an issuer's documents are fetched over https (plain http only on loopback)`,
    );
  }

  async #getJson(href: string): Promise<JsonObject | undefined> {
    const url = new URL(href);
    this.#checkScheme(url);
    let res: Response;
    try {
      res = await this.#fetch(url, {
        headers: { accept: "application/json" },
        redirect: "error",
        signal: AbortSignal.timeout(this.#options.timeoutMs ?? 5000),
      });
    } catch (e) {
      throw unavailable(`${url.href}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (res.status === 404) return undefined;
    if (!res.ok) throw unavailable(`${url.href}: HTTP ${res.status}`);
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_DOCUMENT_BYTES)
      throw invalid(`${url.href}: document larger than ${MAX_DOCUMENT_BYTES} bytes`);
    let value: unknown;
    try {
      value = JSON.parse(body.toString("utf8"));
    } catch {
      throw invalid(`${url.href}: not JSON`);
    }
    if (!isJsonObject(value)) throw invalid(`${url.href}: not a JSON object`);
    return value;
  }

  /** The issuer's metadata, discovered once (RFC 8414, then OpenID Connect Discovery). */
  async metadata(): Promise<IssuerMetadata> {
    if (this.#metadata !== undefined) return this.#metadata;
    for (const href of discoveryUrls(this.issuer)) {
      const doc = await this.#getJson(href);
      if (doc === undefined) continue;
      if (doc.issuer !== this.issuer)
        throw invalid(`${href}: issuer ${JSON.stringify(doc.issuer)} is not ${JSON.stringify(this.issuer)}`);
      if (typeof doc.jwks_uri !== "string") throw invalid(`${href}: no jwks_uri`);
      this.#metadata = doc as IssuerMetadata;
      return this.#metadata;
    }
    throw unavailable(`no metadata for issuer ${this.issuer} at ${discoveryUrls(this.issuer).join(", ")}`);
  }

  async #refresh(): Promise<void> {
    const jwksUri = this.#options.jwksUri ?? (await this.metadata()).jwks_uri;
    const doc = await this.#getJson(jwksUri);
    if (doc === undefined) throw unavailable(`${jwksUri}: HTTP 404`);
    if (!Array.isArray(doc.keys)) throw invalid(`${jwksUri}: no keys array`);
    const keys = new Map<string, KeyObject>();
    const unnamed: KeyObject[] = [];
    for (const jwk of doc.keys) {
      // Only public signing keys: an encryption key or a private member has no place here.
      if (!isJsonObject(jwk) || (jwk.use !== undefined && jwk.use !== "sig")) continue;
      if ("d" in jwk || (jwk.kty !== "EC" && jwk.kty !== "RSA")) continue;
      let key: KeyObject;
      try {
        key = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
      } catch {
        continue;
      }
      if (typeof jwk.kid === "string" && jwk.kid.length > 0) keys.set(jwk.kid, key);
      else unnamed.push(key);
    }
    this.#keys = keys;
    this.#unnamed = unnamed;
    this.#fetchedAt = Date.now();
  }

  #load(): Promise<void> {
    this.#inFlight ??= this.#refresh().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  #find(kid: string | undefined, alg: JwsAlgorithm): KeyObject | undefined {
    if (kid !== undefined) return this.#keys.get(kid);
    // No kid: only an issuer with a single signing key of the token's type is unambiguous.
    const all = [...this.#keys.values(), ...this.#unnamed].filter((k) => keyMatchesAlgorithm(k, alg));
    return all.length === 1 ? all[0] : undefined;
  }

  async keyFor(kid: string | undefined, alg: JwsAlgorithm): Promise<KeyObject | undefined> {
    const age = (Date.now() - this.#fetchedAt) / 1000;
    if (this.#fetchedAt === 0 || age >= (this.#options.maxAgeSeconds ?? 600)) await this.#load();
    const found = this.#find(kid, alg);
    if (found !== undefined) return found;
    if ((Date.now() - this.#fetchedAt) / 1000 >= (this.#options.minRefreshSeconds ?? 30)) {
      await this.#load();
      return this.#find(kid, alg);
    }
    return undefined;
  }
}
