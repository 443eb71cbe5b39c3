/**
 * The bridge as an OAuth 2.1 client: when the server it forwards to asks for OAuth (a 401 with
 * `WWW-Authenticate: Bearer resource_metadata=...`), the bridge obtains an access token with the
 * client credentials grant (the MCP `io.modelcontextprotocol/oauth-client-credentials`
 * extension) from the authorization server that the server's metadata names, and sends it as
 * `Authorization: Bearer`.
 *
 * Discovery and the flow are the MCP SDK's own: its Streamable HTTP client transport runs
 * `auth()` (`@modelcontextprotocol/sdk/client/auth.js`: RFC 9728 resource metadata, RFC 8414 /
 * OpenID discovery, the RFC 8707 `resource` checked against the URL dialled, the token request,
 * one retry after a 401, one scope step-up after a 403 `insufficient_scope`) on an
 * `OAuthClientProvider`. `UpstreamOAuth` is that provider; what it adds is what the SDK leaves
 * to the client:
 *
 * - **Who the bridge is to the authorization server.** By default its SPIFFE ID is its
 *   `client_id` and it authenticates with no secret: a `private_key_jwt` assertion (RFC 7523)
 *   signed by its SVID key, the X.509-SVID chain in `x5c` (`assertion: "private-key-jwt"`), or
 *   its JWT-SVID minted for the authorization server's issuer
 *   (draft-ietf-oauth-spiffe-client-auth, `assertion: "jwt-svid"`). The default is the signed
 *   assertion: it is made here, for each token request, by the key the bridge already holds (no
 *   round trip to the authority, which a JWT-SVID costs on `aztp serve`), it lives 60 s with a
 *   fresh `jti`, it is what the SDK's own client credentials extension sends, and an
 *   authorization server that trusts the trust domain's X.509 bundle verifies it through `x5c`
 *   (`aztp serve` does). An authorization server that registered the bridge otherwise gets
 *   `clientId` with a `privateKey` (private_key_jwt by the SDK's `createPrivateKeyJwtAuth`) or a
 *   `clientSecret` (client_secret_basic or _post, as its metadata says).
 * - **Which authorization server may have the credentials.** RFC 8414 §3.3: the metadata's
 *   `issuer` must be the URL it was discovered from, which the SDK does not check; otherwise an
 *   authorization server could have the bridge sign an assertion addressed to another and replay
 *   it there (ERR_OAUTH_ISSUER_METADATA_INVALID). `issuer` pins the one server credentials
 *   registered elsewhere belong to (ERR_OAUTH_ISSUER_MISMATCH), and is required with a client
 *   secret, which any server that received it could use. Without `issuer`, the client is bound
 *   to the first authorization server that gives it a token, for the life of the bridge.
 * - **Nothing in clear off this machine.** Every request the transport makes goes through
 *   `guard()`: metadata and token requests, and any request carrying credentials, go over https,
 *   or plain http to loopback only (ERR_OAUTH_INSECURE_HTTP_NOT_ALLOWED), checked before the
 *   request leaves.
 * - **Tokens cached and renewed before they expire**, once for all the bridge's connections
 *   (the start-up probe and every host session): a token is renewed when half its life, or its
 *   last minute, is left, on the next request that needs it.
 * - **The scope** (SEP-835: the challenge's `scope`, else the resource metadata's
 *   `scopes_supported`, else `scope`): the SDK computes it but passes a client credentials grant
 *   only its client metadata's scope, so the provider reads the challenges itself.
 *
 * Secrets and tokens never go into a message, a log line or an audit entry: lines name the
 * client ID, the authorization server and the method, errors the server's `error` code.
 */
import { createPrivateKey, randomBytes, randomUUID } from "node:crypto";
import {
  auth,
  extractWWWAuthenticateParams,
  UnauthorizedError,
  type AddClientAuthentication,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
} from "@modelcontextprotocol/sdk/client/auth.js";
import { createPrivateKeyJwtAuth } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { OAuthError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { signWithHeader } from "../invocation/codec.js";
import { isLoopbackHost } from "../net/loopback.js";
import { algorithmForKey } from "../spiffe/keys.js";
import { LoopbackRedirect, openInBrowser, type AuthorizeVia } from "./loopback-redirect.js";

/** RFC 7523 §2.2: a JWT authenticates the client (the SDK's private_key_jwt sends this type too). */
const JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** draft-ietf-oauth-spiffe-client-auth: the assertion is a JWT-SVID. */
const JWT_SPIFFE_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/** An assertion proves possession for one token request (and its retry): one minute. */
const ASSERTION_TTL_SECONDS = 60;
/** A token is renewed once this much of its life is left, or half of it, whichever is less. */
const RENEW_BEFORE_MS = 60_000;

/** How long a person has to complete an authorization, by default. */
const AUTHORIZATION_TIMEOUT_MS = 10 * 60_000;

/** The grant: the bridge as itself (client credentials), or for a person (authorization code with PKCE). */
export type OAuthFlow = "client-credentials" | "authorization-code";

/** How the bridge authenticates with its SVID: a JWT signed by its SVID key, or its JWT-SVID. */
export type OAuthAssertion = "private-key-jwt" | "jwt-svid";

/** How the bridge authorizes with a server that asks for OAuth (`startMcpBridge`'s `oauth`). */
export interface UpstreamOAuthOptions {
  /**
   * With its SPIFFE ID as `client_id` (the default): a `private_key_jwt` signed by its SVID key
   * (default), or its JWT-SVID for the authorization server's issuer.
   */
  assertion?: OAuthAssertion | undefined;
  /** A client ID the authorization server registered for the bridge (instead of its SPIFFE ID). */
  clientId?: string | undefined;
  /** With `clientId`: the private key registered for it (PEM), for `private_key_jwt`. */
  privateKey?: string | undefined;
  /** With `clientId`: its client secret (`client_secret_basic`, or `_post` as the server's metadata says). */
  clientSecret?: string | undefined;
  /**
   * The authorization server (its issuer identifier) whose tokens the bridge asks for; no other
   * gets its credentials. Required with `clientSecret`; default: the first that gives it a token.
   */
  issuer?: string | undefined;
  /** The scope to ask for when neither the server's challenge nor its metadata names one. */
  scope?: string | undefined;
  /**
   * `"client-credentials"` (default): the bridge as itself. `"authorization-code"`: for a
   * person, who signs in at the authorization server in their browser (PKCE, a loopback
   * redirect URI); the client is `clientId` (registered, with `clientSecret`, `privateKey` or
   * neither: a public client), else `clientMetadataUrl` where the server takes Client ID
   * Metadata Documents, else one registered dynamically (RFC 7591).
   */
  flow?: OAuthFlow | undefined;
  /** Authorization code: the https URL of the bridge's Client ID Metadata Document. */
  clientMetadataUrl?: string | undefined;
  /** Authorization code: the loopback port of the redirect URI (default: one the system picks). */
  redirectPort?: number | undefined;
  /**
   * Authorization code: how the authorization URL reaches the person: printed (default), also
   * opened in the browser (`"open"`), or, for tests and CI with an authorization server that asks
   * nothing of a person, followed by the bridge itself (`"headless"`).
   */
  authorizeVia?: AuthorizeVia | undefined;
  /** Authorization code: how long the person has to sign in (default 10 minutes). */
  authorizationTimeoutMs?: number | undefined;
}

/** The authorization server identifiers `a` and `b` as the SDK compares them: one trailing `/` aside. */
function sameIssuer(a: string, b: string): boolean {
  const strip = (s: string): string => s.replace(/\/$/, "");
  return strip(a) === strip(b);
}

function checkedUrl(value: string, what: string): URL {
  try {
    return new URL(value);
  } catch {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} must be an absolute URL, got ${JSON.stringify(value)}`);
  }
}

/** The request's URL, whatever the transport passed. */
function urlOf(input: string | URL): URL {
  return input instanceof URL ? input : new URL(input);
}

/** The endpoint a URL names, for comparison: origin and path, no query or fragment. */
function endpoint(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** A client's credentials as the options give them, checked. */
type Client =
  | { kind: "svid"; assertion: OAuthAssertion }
  | { kind: "registered-dynamically" }
  | { kind: "public"; clientId: string }
  | { kind: "key"; clientId: string; privateKeyPem: string; alg: string }
  | { kind: "secret"; clientId: string; clientSecret: string };

function clientOf(o: UpstreamOAuthOptions): Client {
  const named = o.clientId !== undefined;
  const person = o.flow === "authorization-code";
  if (o.flow !== undefined && o.flow !== "client-credentials" && !person)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `oauth: flow is "client-credentials" or "authorization-code", got ${JSON.stringify(o.flow)}`,
    );
  if (!person)
    for (const [name, value] of [
      ["clientMetadataUrl", o.clientMetadataUrl],
      ["redirectPort", o.redirectPort],
      ["authorizeVia", o.authorizeVia],
      ["authorizationTimeoutMs", o.authorizationTimeoutMs],
    ] as const)
      if (value !== undefined)
        throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `oauth: ${name} applies to the authorization code flow only`);
  if (person) {
    if (o.assertion !== undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "oauth: assertion is how the bridge authenticates as itself (client credentials); a person's authorization uses a client registered for it",
      );
    if (o.clientMetadataUrl !== undefined) {
      const url = checkedUrl(o.clientMetadataUrl, "oauth: clientMetadataUrl");
      if (url.protocol !== "https:" || url.pathname === "/")
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          "oauth: clientMetadataUrl must be an https URL with a path (a Client ID Metadata Document)",
        );
    }
    if (
      o.redirectPort !== undefined &&
      (!Number.isInteger(o.redirectPort) || o.redirectPort < 0 || o.redirectPort > 65535)
    )
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: redirectPort is a port number (0: any)");
    if (o.authorizeVia !== undefined && !["print", "open", "headless"].includes(o.authorizeVia))
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, 'oauth: authorizeVia is "print", "open" or "headless"');
    if (!named) {
      if (o.privateKey !== undefined || o.clientSecret !== undefined)
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          "oauth: privateKey and clientSecret are credentials of a clientId the authorization server registered: give clientId too",
        );
      return { kind: "registered-dynamically" };
    }
    if (typeof o.clientId !== "string" || o.clientId.length === 0)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: clientId must be a non-empty string");
    if (o.privateKey === undefined && o.clientSecret === undefined) return { kind: "public", clientId: o.clientId };
  }
  if (!named) {
    if (o.privateKey !== undefined || o.clientSecret !== undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "oauth: privateKey and clientSecret are credentials of a clientId the authorization server registered: give clientId too",
      );
    const assertion = o.assertion ?? "private-key-jwt";
    if (assertion !== "private-key-jwt" && assertion !== "jwt-svid")
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `oauth: assertion is "private-key-jwt" or "jwt-svid", got ${JSON.stringify(assertion)}`,
      );
    return { kind: "svid", assertion };
  }
  if (o.assertion !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "oauth: assertion applies to the bridge's SVID as its credential, not to a clientId registered otherwise",
    );
  if (o.privateKey !== undefined && o.clientSecret !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "oauth: a clientId goes with one credential: privateKey (private_key_jwt) or clientSecret",
    );
  if (typeof o.clientId !== "string" || o.clientId.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: clientId must be a non-empty string");
  if ((o.privateKey === undefined) === (o.clientSecret === undefined) && !person)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "oauth: a clientId goes with exactly one credential: privateKey (private_key_jwt) or clientSecret",
    );
  if (o.clientSecret !== undefined) {
    if (o.clientSecret.length === 0)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: the client secret is empty");
    if (o.issuer === undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "oauth: a client secret is sent only to the authorization server it belongs to: give its issuer",
      );
    return { kind: "secret", clientId: o.clientId, clientSecret: o.clientSecret };
  }
  let pem: string;
  let alg: string;
  try {
    // Any PEM private key Node reads, as the PKCS#8 the SDK's signer imports (an EC key is often SEC1).
    const key = createPrivateKey(o.privateKey as string);
    alg = algorithmForKey(key);
    pem = key.export({ type: "pkcs8", format: "pem" }).toString();
  } catch (e) {
    if (e instanceof AztpError) throw e;
    // The key's text is never repeated: only that it could not be read.
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: the private key is not a PEM private key Node can read");
  }
  return { kind: "key", clientId: o.clientId, privateKeyPem: pem, alg };
}

/** A token held, with when to renew it (undefined: it did not say how long it lives). */
interface HeldToken {
  readonly tokens: OAuthTokens;
  readonly renewAt: number | undefined;
  readonly expiresAt: number | undefined;
}

export interface UpstreamOAuthContext {
  /** The bridge's identity: its SPIFFE ID, its SVID key, its JWT-SVIDs. */
  identity: AgentIdentity;
  /** The MCP server's URL, as dialled. */
  serverUrl: URL;
  /** Lines for people (a token obtained: from where, as whom); never a secret or a token. */
  log?: ((line: string) => void) | undefined;
}

/**
 * The bridge's `OAuthClientProvider` for one upstream: every connection to it shares one, so a
 * token obtained once serves them all. See the file comment.
 */
export class UpstreamOAuth implements OAuthClientProvider {
  /** The grant the bridge uses. */
  readonly flow: OAuthFlow;
  /** How it authenticates at the token endpoint, as RFC 7591 names the methods. */
  readonly method: "private_key_jwt" | "client_secret_basic" | "none" | "as registered";
  readonly addClientAuthentication?: AddClientAuthentication;
  /** Authorization code: the https URL of the bridge's Client ID Metadata Document, when given. */
  readonly clientMetadataUrl?: string;
  readonly #client: Client;
  readonly #identity: AgentIdentity;
  readonly #serverUrl: URL;
  readonly #issuer: string | undefined;
  readonly #scope: string | undefined;
  readonly #log: (line: string) => void;
  /** What a renewal's requests go through: the global fetch, guarded. */
  readonly #fetch: FetchLike;
  /** The authorization server the client information is bound to (the SDK's stamp). */
  #boundTo: string | undefined;
  #held: HeldToken | undefined;
  #discovery: OAuthDiscoveryState | undefined;
  /** The scope the server's latest challenge named. */
  #challengeScope: string | undefined;
  #renewing: Promise<void> | undefined;
  /** Challenges (401, 403) seen from the server: a failure after one is the authorization's. */
  #challenges = 0;
  /** Authorization servers a token was obtained from, said once each. */
  readonly #said = new Set<string>();
  /** The `client_id` given, or the bridge's SPIFFE ID (undefined: registered dynamically). */
  readonly #givenClientId: string | undefined;
  /** Authorization code: the client information the authorization server registered (RFC 7591), or the CIMD URL. */
  #registered: OAuthClientInformationMixed | undefined;
  readonly #clientMetadataUrl: string | undefined;
  readonly #redirectPort: number;
  readonly #authorizeVia: AuthorizeVia;
  readonly #authorizationTimeoutMs: number;
  #redirect: LoopbackRedirect | undefined;
  /** The authorization under way: its state, its PKCE verifier, done when its code is exchanged. */
  #authorization: { state: string; verifier: string | undefined; done: Promise<void> | undefined } | undefined;
  /** Token sets saved so far: a request refused for authorization is retried once if one came meanwhile. */
  #saved = 0;

  constructor(options: UpstreamOAuthOptions, context: UpstreamOAuthContext) {
    this.#client = clientOf(options);
    this.#identity = context.identity;
    this.#serverUrl = context.serverUrl;
    this.#log = context.log ?? ((): void => undefined);
    if (options.issuer !== undefined) checkedUrl(options.issuer, "oauth: issuer");
    this.#issuer = options.issuer;
    this.#boundTo = options.issuer;
    this.#scope = options.scope;
    this.#fetch = this.guard(fetch);
    const client = this.#client;
    this.flow = options.flow ?? "client-credentials";
    this.#clientMetadataUrl = options.clientMetadataUrl;
    if (options.clientMetadataUrl !== undefined) this.clientMetadataUrl = options.clientMetadataUrl;
    this.#redirectPort = options.redirectPort ?? 0;
    this.#authorizeVia = options.authorizeVia ?? "print";
    this.#authorizationTimeoutMs = options.authorizationTimeoutMs ?? AUTHORIZATION_TIMEOUT_MS;
    this.#givenClientId =
      client.kind === "svid"
        ? context.identity.spiffeId
        : client.kind === "registered-dynamically"
          ? undefined
          : client.clientId;
    this.method =
      client.kind === "secret"
        ? "client_secret_basic"
        : client.kind === "public"
          ? "none"
          : client.kind === "registered-dynamically"
            ? "as registered"
            : "private_key_jwt";
    if (client.kind === "key")
      this.addClientAuthentication = createPrivateKeyJwtAuth({
        issuer: client.clientId,
        subject: client.clientId,
        privateKey: client.privateKeyPem,
        alg: client.alg,
        lifetimeSeconds: ASSERTION_TTL_SECONDS,
      });
    else if (client.kind === "svid")
      this.addClientAuthentication = (_headers, params, url, metadata) =>
        this.#svidAssertion(params, metadata?.issuer ?? String(url));
    // A client secret is applied by the SDK itself, by the method the server's metadata names.
  }

  /** The `client_id` the bridge uses: its SPIFFE ID, the one given, or the one registered ("" before). */
  get clientId(): string {
    return this.#givenClientId ?? (this.#registered?.client_id as string | undefined) ?? "";
  }

  /**
   * Authorization code: starts listening for the redirect (its URI must be known before any
   * authorization request or registration). Nothing to do for client credentials.
   */
  async start(): Promise<void> {
    if (this.flow === "authorization-code" && this.#redirect === undefined)
      this.#redirect = await LoopbackRedirect.start(this.#redirectPort);
  }

  /** Stops listening for redirects. */
  async close(): Promise<void> {
    await this.#redirect?.close();
  }

  /** What the bridge says at start about how it would authorize (never a secret). */
  describe(): string {
    if (this.flow === "authorization-code") {
      const client =
        this.#givenClientId !== undefined
          ? `as the client ${this.#givenClientId}${this.method === "none" ? " (public)" : ` (${this.method})`}`
          : this.#clientMetadataUrl !== undefined
            ? `as the client ${this.#clientMetadataUrl} where the authorization server takes Client ID Metadata Documents, else a client it registers`
            : "as a client the authorization server registers (RFC 7591)";
      const via =
        this.#authorizeVia === "headless"
          ? "followed by the bridge itself (--oauth-authorize-headless: only for an authorization server that asks nothing of a person)"
          : `printed here${this.#authorizeVia === "open" ? " and opened in the browser" : ""}: open it and sign in`;
      return `if the server asks for OAuth: a person signs in (authorization code with PKCE, ${client}); the authorization URL is ${via}; the redirect comes back to ${this.#redirect?.url ?? "a loopback port"}`;
    }
    const how =
      this.#client.kind === "svid"
        ? `its SVID (${this.#client.assertion === "jwt-svid" ? "its JWT-SVID as the assertion" : "private_key_jwt signed by its SVID key"})`
        : this.#client.kind === "key"
          ? "private_key_jwt with the key given"
          : this.#client.kind === "secret"
            ? "its client secret"
            : "no credential";
    const where =
      this.#issuer !== undefined
        ? `from ${this.#issuer} only`
        : "from the authorization server the server names (bound to the first that answers)";
    return `if the server asks for OAuth: client credentials as ${this.clientId}, authenticated by ${how}, ${where}`;
  }

  async #svidAssertion(params: URLSearchParams, audience: string): Promise<void> {
    const id = this.#identity.spiffeId;
    if (this.#client.kind === "svid" && this.#client.assertion === "jwt-svid") {
      params.set("client_assertion_type", JWT_SPIFFE_ASSERTION_TYPE);
      params.set("client_assertion", await this.#identity.jwtSvid(audience, ASSERTION_TTL_SECONDS));
      return;
    }
    const now = Math.floor(Date.now() / 1000);
    // The identity's signer: the key stays inside it, and its current SVID chain rides in x5c.
    const assertion = signWithHeader(this.#identity.signer, "JWT", {
      iss: id,
      sub: id,
      aud: audience,
      iat: now,
      exp: now + ASSERTION_TTL_SECONDS,
      jti: randomUUID(),
    });
    params.set("client_assertion_type", JWT_BEARER_ASSERTION_TYPE);
    params.set("client_assertion", assertion);
  }

  /** Client credentials: none (nothing interactive); authorization code: the loopback callback. */
  get redirectUrl(): string | undefined {
    if (this.flow === "client-credentials") return undefined;
    if (this.#redirect === undefined)
      throw new AztpError(
        ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
        "the bridge's redirect listener is not started (UpstreamOAuth.start)",
      );
    return this.#redirect.url;
  }

  get clientMetadata(): OAuthClientMetadata {
    const scope = this.#challengeScope ?? this.#discovery?.resourceMetadata?.scopes_supported?.join(" ") ?? this.#scope;
    if (this.flow === "authorization-code")
      return {
        client_name: "aztp mcp bridge",
        redirect_uris: [this.redirectUrl as string],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        // A native app keeps no secret it could protect (RFC 8252 §8.5); a server may still issue one.
        token_endpoint_auth_method: "none",
        ...(scope !== undefined && scope !== "" ? { scope } : {}),
      };
    return {
      client_name: "aztp mcp bridge",
      redirect_uris: [],
      grant_types: ["client_credentials"],
      token_endpoint_auth_method: this.method,
      ...(scope !== undefined && scope !== "" ? { scope } : {}),
    };
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    if (this.#client.kind === "registered-dynamically") return this.#registered;
    return {
      client_id: this.clientId,
      ...(this.#client.kind === "secret" ? { client_secret: this.#client.clientSecret } : {}),
      ...(this.#boundTo !== undefined ? { issuer: this.#boundTo } : {}),
    };
  }

  /** The SDK binds unbound client information to the first authorization server that accepts it. */
  saveClientInformation(info: OAuthClientInformationMixed): void {
    if (this.#client.kind === "registered-dynamically") {
      // Stamped by the SDK with the authorization server that registered it: its secret, if it
      // gave one, goes to no other.
      this.#registered = info;
      this.#log(
        `registered at ${typeof info.issuer === "string" ? info.issuer : "the authorization server"} as the client ${info.client_id}`,
      );
      return;
    }
    if (info.client_id === this.clientId && typeof info.issuer === "string") this.#boundTo = info.issuer;
  }

  /**
   * The token for the next request: the one held, renewed first once it is near its end (one
   * renewal for every request that asks meanwhile). A renewal that fails leaves the old token in
   * use while it lives, and fails the request once it has expired.
   */
  async tokens(): Promise<OAuthTokens | undefined> {
    const held = this.#held;
    if (held === undefined || held.renewAt === undefined || Date.now() < held.renewAt) return held?.tokens;
    this.#renewing ??= auth(this, { serverUrl: this.#serverUrl, fetchFn: this.#fetch })
      .then(() => undefined)
      .finally(() => (this.#renewing = undefined));
    try {
      await this.#renewing;
    } catch (e) {
      if (held.expiresAt !== undefined && Date.now() < held.expiresAt) return held.tokens;
      if (this.#held === held) this.#held = undefined;
      throw this.failure(e, -1);
    }
    return this.#held?.tokens;
  }

  saveTokens(tokens: OAuthTokens): void {
    const now = Date.now();
    const life = typeof tokens.expires_in === "number" && tokens.expires_in > 0 ? tokens.expires_in * 1000 : undefined;
    this.#saved += 1;
    // A person's token without a refresh token is not renewed ahead: that would ask them to
    // sign in again while it still serves; it is used until the server refuses it.
    const renewable = this.flow === "client-credentials" || tokens.refresh_token !== undefined;
    this.#held = {
      tokens,
      renewAt: life === undefined || !renewable ? undefined : now + life - Math.min(RENEW_BEFORE_MS, life / 2),
      expiresAt: life === undefined ? undefined : now + life,
    };
    const from = this.#discovery?.authorizationServerUrl ?? this.#boundTo ?? "the authorization server";
    if (!this.#said.has(from)) {
      this.#said.add(from);
      this.#log(
        this.flow === "authorization-code"
          ? `access token from ${from} for ${this.#serverUrl.href}, for the person who signed in, as the client ${this.clientId}${tokens.scope ? ` (scope ${tokens.scope})` : ""}; ${tokens.refresh_token !== undefined ? "renewed with its refresh token before it expires" : "no refresh token: once it expires, a new sign-in is asked for"}`
          : `access token from ${from} for ${this.#serverUrl.href} as ${this.clientId} (${this.method}${tokens.scope ? `, scope ${tokens.scope}` : ""}); renewed before it expires`,
      );
    }
  }

  /**
   * Authorization code: a fresh `state` for an authorization request (checked on the redirect);
   * while one is under way, its own (the SDK asking again waits for that one, below).
   */
  state(): string {
    const pending = this.#authorization;
    if (pending?.done !== undefined) return pending.state;
    const state = randomBytes(32).toString("base64url");
    this.#authorization = { state, verifier: undefined, done: undefined };
    return state;
  }

  /** The PKCE verifier of the authorization request being made (kept while one is under way). */
  saveCodeVerifier(verifier: string): void {
    const pending = this.#authorization;
    if (this.flow === "client-credentials" || pending === undefined || pending.done !== undefined) return;
    pending.verifier = verifier;
  }

  codeVerifier(): string {
    const verifier = this.#authorization?.verifier;
    if (this.flow === "client-credentials" || verifier === undefined)
      throw new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "no authorization code flow is under way");
    return verifier;
  }

  /**
   * Authorization code: the authorization URL to the person (see loopback-redirect.ts), the
   * code from the redirect with its `state` checked, exchanged for tokens (the SDK's `auth()`
   * with the code, the PKCE verifier and the client authentication as registered). Returns once
   * the tokens are saved, or throws; one authorization at a time: asked again meanwhile, it
   * waits for the one under way.
   */
  async redirectToAuthorization(url: URL): Promise<void> {
    if (this.flow === "client-credentials")
      throw new AztpError(
        ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
        "the bridge uses the client credentials grant (--oauth-flow client-credentials): it cannot send anyone to a login page",
      );
    const pending = this.#authorization;
    const redirect = this.#redirect;
    if (pending === undefined || pending.verifier === undefined || redirect === undefined)
      throw new AztpError(
        ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
        "an authorization request without its state and PKCE verifier",
      );
    if (pending.done !== undefined) return pending.done;
    if (url.searchParams.get("state") !== pending.state)
      throw new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "the authorization request does not carry its state");
    const run = async (): Promise<void> => {
      const metadata = this.#discovery?.authorizationServerMetadata;
      const code = redirect.expect(pending.state, this.#authorizationTimeoutMs, {
        issuer: metadata?.issuer ?? this.#discovery?.authorizationServerUrl,
        required:
          (metadata as { authorization_response_iss_parameter_supported?: unknown } | undefined)
            ?.authorization_response_iss_parameter_supported === true,
      });
      // The URL carries no secret (PKCE's challenge, not its verifier): it is for the person.
      this.#log(`sign in to authorize this bridge for ${this.#serverUrl.href}: open ${url.href}`);
      if (this.#authorizeVia === "open") openInBrowser(url.href, this.#log);
      if (this.#authorizeVia === "headless") await redirect.headless(url, this.#fetch);
      const authorizationCode = await code;
      const result = await auth(this, { serverUrl: this.#serverUrl, authorizationCode, fetchFn: this.#fetch });
      if (result !== "AUTHORIZED")
        throw new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "the authorization code was not exchanged");
    };
    pending.done = run().finally(() => {
      if (this.#authorization === pending) this.#authorization = undefined;
    });
    return pending.done;
  }

  /** Token sets saved so far (see `UpstreamHttpTransport`: a request is retried once after a new one). */
  savedTokens(): number {
    return this.#saved;
  }

  /** Client credentials: its grant; authorization code: the SDK's own request (undefined). */
  prepareTokenRequest(scope?: string): URLSearchParams | undefined {
    if (this.flow === "authorization-code") return undefined;
    const params = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) params.set("scope", scope);
    return params;
  }

  invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery"): void {
    if (scope === "all" || scope === "tokens") this.#held = undefined;
    if (scope === "all" || scope === "discovery") this.#discovery = undefined;
    if (scope === "all" || scope === "client") this.#boundTo = this.#issuer;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }

  /**
   * Called by the SDK once discovery is done, before any credential leaves: the checks of the
   * file comment on the authorization server the resource named, and its metadata.
   */
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    const named = state.authorizationServerUrl;
    if (this.#issuer !== undefined && !sameIssuer(named, this.#issuer))
      throw new AztpError(
        ErrorCodes.OAUTH_ISSUER_MISMATCH,
        `${this.#serverUrl.href} names the authorization server ${named}, but the bridge's credentials are for ${this.#issuer} (--oauth-issuer): nothing was sent to ${named}`,
      );
    const issuer = state.authorizationServerMetadata?.issuer;
    if (issuer !== undefined && !sameIssuer(issuer, named))
      throw new AztpError(
        ErrorCodes.OAUTH_ISSUER_METADATA_INVALID,
        `the authorization server ${named} publishes metadata for the issuer ${JSON.stringify(issuer).slice(0, 200)} (RFC 8414 §3.3: it must be its own URL); an assertion addressed to that issuer could be replayed there, so nothing was sent`,
      );
    this.#discovery = state;
  }

  /**
   * `base`, with the rules of the file comment on where OAuth requests may go, and an eye on the
   * server's challenges (their scope, and that an authorization is under way).
   */
  guard(base: FetchLike = fetch): FetchLike {
    const server = endpoint(this.#serverUrl);
    const guarded: FetchLike = async (input, init) => {
      const url = urlOf(input);
      const mcp = endpoint(url) === server;
      const credential = new Headers(init?.headers).has("authorization");
      if (
        url.protocol !== "https:" &&
        !(url.protocol === "http:" && isLoopbackHost(url.hostname)) &&
        (!mcp || credential)
      )
        throw new AztpError(
          ErrorCodes.OAUTH_INSECURE_HTTP_NOT_ALLOWED,
          `${mcp ? "a request with an access token" : "an OAuth request"} to ${url.origin} over ${url.protocol.replace(":", "")}: OAuth goes over https, or plain http to this machine only (nothing was sent)`,
        );
      const response = await base(input, init);
      if (mcp && (response.status === 401 || response.status === 403)) {
        this.#challenges += 1;
        const { scope } = extractWWWAuthenticateParams(response);
        if (scope !== undefined && scope !== "") this.#challengeScope = scope;
      }
      return response;
    };
    return guarded;
  }

  /** A mark to pass to `failure`: the challenges seen so far. */
  mark(): number {
    return this.#challenges;
  }

  /**
   * A request's failure as the bridge tells it: a failure of the authorization (the token
   * request refused, a fresh token refused again, a failure after the server challenged since
   * `mark`) is ERR_OAUTH_AUTHORIZATION_FAILED; an AztpError keeps its code; anything else is
   * returned as it is.
   */
  failure(e: unknown, mark: number): unknown {
    if (e instanceof AztpError) return e;
    const as = this.#discovery?.authorizationServerUrl ?? "the authorization server";
    let why: string | undefined;
    if (e instanceof OAuthError)
      why = `${as} refused the token request: ${e.errorCode}${e.message ? ` (${e.message.slice(0, 300)})` : ""}`;
    else if (e instanceof StreamableHTTPError && (e.code === 401 || e.code === 403))
      why = `${this.#serverUrl.href} refused the bridge's fresh access token (HTTP ${e.code}): ${e.message.slice(0, 300)}`;
    else if (e instanceof UnauthorizedError || mark < 0 || this.#challenges > mark)
      why = `no access token could be had from ${as}: ${(e as Error)?.message?.slice(0, 300) ?? String(e)}`;
    if (why === undefined) return e;
    return new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, why, { cause: e });
  }
}
