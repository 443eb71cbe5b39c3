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
import { createPrivateKey, randomUUID } from "node:crypto";
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

/** RFC 7523 §2.2: a JWT authenticates the client (the SDK's private_key_jwt sends this type too). */
const JWT_BEARER_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** draft-ietf-oauth-spiffe-client-auth: the assertion is a JWT-SVID. */
const JWT_SPIFFE_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/** An assertion proves possession for one token request (and its retry): one minute. */
const ASSERTION_TTL_SECONDS = 60;
/** A token is renewed once this much of its life is left, or half of it, whichever is less. */
const RENEW_BEFORE_MS = 60_000;

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
  | { kind: "key"; clientId: string; privateKeyPem: string; alg: string }
  | { kind: "secret"; clientId: string; clientSecret: string };

function clientOf(o: UpstreamOAuthOptions): Client {
  const named = o.clientId !== undefined;
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
  if (typeof o.clientId !== "string" || o.clientId.length === 0)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "oauth: clientId must be a non-empty string");
  if ((o.privateKey === undefined) === (o.clientSecret === undefined))
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
  /** The `client_id` the bridge uses: its SPIFFE ID, or the one given. */
  readonly clientId: string;
  /** How it authenticates at the token endpoint, as RFC 7591 names the methods. */
  readonly method: "private_key_jwt" | "client_secret_basic";
  readonly addClientAuthentication?: AddClientAuthentication;
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
    this.clientId = client.kind === "svid" ? context.identity.spiffeId : client.clientId;
    this.method = client.kind === "secret" ? "client_secret_basic" : "private_key_jwt";
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

  /** What the bridge says at start about how it would authorize (never a secret). */
  describe(): string {
    const how =
      this.#client.kind === "svid"
        ? `its SVID (${this.#client.assertion === "jwt-svid" ? "its JWT-SVID as the assertion" : "private_key_jwt signed by its SVID key"})`
        : this.#client.kind === "key"
          ? "private_key_jwt with the key given"
          : "its client secret";
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

  get redirectUrl(): undefined {
    return undefined; // client credentials: nothing interactive
  }

  get clientMetadata(): OAuthClientMetadata {
    const scope = this.#challengeScope ?? this.#discovery?.resourceMetadata?.scopes_supported?.join(" ") ?? this.#scope;
    return {
      client_name: "aztp mcp bridge",
      redirect_uris: [],
      grant_types: ["client_credentials"],
      token_endpoint_auth_method: this.method,
      ...(scope !== undefined && scope !== "" ? { scope } : {}),
    };
  }

  clientInformation(): OAuthClientInformationMixed {
    return {
      client_id: this.clientId,
      ...(this.#client.kind === "secret" ? { client_secret: this.#client.clientSecret } : {}),
      ...(this.#boundTo !== undefined ? { issuer: this.#boundTo } : {}),
    };
  }

  /** The SDK binds unbound client information to the first authorization server that accepts it. */
  saveClientInformation(info: OAuthClientInformationMixed): void {
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
    this.#held = {
      tokens,
      renewAt: life === undefined ? undefined : now + life - Math.min(RENEW_BEFORE_MS, life / 2),
      expiresAt: life === undefined ? undefined : now + life,
    };
    const from = this.#discovery?.authorizationServerUrl ?? this.#boundTo ?? "the authorization server";
    if (!this.#said.has(from)) {
      this.#said.add(from);
      this.#log(
        `access token from ${from} for ${this.#serverUrl.href} as ${this.clientId} (${this.method}${tokens.scope ? `, scope ${tokens.scope}` : ""}); renewed before it expires`,
      );
    }
  }

  redirectToAuthorization(): never {
    throw new AztpError(
      ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
      "the bridge uses the client credentials grant only: it cannot send anyone to a login page",
    );
  }

  saveCodeVerifier(): void {
    // client credentials: no PKCE
  }

  codeVerifier(): never {
    throw new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "the bridge uses the client credentials grant only");
  }

  prepareTokenRequest(scope?: string): URLSearchParams {
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
