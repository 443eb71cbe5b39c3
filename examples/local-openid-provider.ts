/**
 * A real OpenID Provider on loopback, for the demo and the tests: panva's `oidc-provider` (an
 * OpenID-certified OP), configured the way a production provider publishes itself (discovery at
 * `/.well-known/openid-configuration`, a JWKS, authorization code with PKCE, RFC 8707 resource
 * indicators with RFC 9068 JWT access tokens), with fresh keys per start and a few test accounts.
 *
 * `login()` is a person signing in through a browser, without the browser: it walks the real
 * HTTP flow with `fetch` (cookies kept by hand, redirects followed by hand) from `/auth`
 * through the provider's interactions (login, then consent) to the client's redirect, and
 * redeems the code at `/token` with its PKCE verifier. The only shortcut is the login page:
 * the interaction routes mounted here accept "I am alice, by password and a second factor" in
 * a POST, and complete it with oidc-provider's documented `interactionDetails` /
 * `interactionResult`, as an application's own login page would after checking a password.
 *
 * Nothing here imports a test runner: the demo uses it as it is.
 */
import { createHash, generateKeyPair, randomBytes, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import type { ClientMetadata, InteractionResults, KoaContext, Provider } from "oidc-provider";

export type { ClientMetadata } from "oidc-provider";

/** A person the provider knows. `sub` is also the name `login({ account })` takes. */
export interface LocalAccount {
  sub: string;
  email?: string;
  email_verified?: boolean;
  groups?: string[];
  name?: string;
}

export interface LocalOpenIdProviderOptions {
  /** The people who can sign in (default: alice in finance, bob in support). */
  accounts?: LocalAccount[];
  /** More clients (relying parties) beside the default public one. */
  clients?: ClientMetadata[];
  /** The port on 127.0.0.1 (default 0: any free one). */
  port?: number;
  idTokenTtlSeconds?: number;
  accessTokenTtlSeconds?: number;
  /** How ID tokens and JWT access tokens are signed unless a client says otherwise (default ES256). */
  signingAlg?: "ES256" | "RS256";
  /** The scopes a resource server (any `resource` asked for) grants (default "read write"). */
  resourceScopes?: string;
}

export interface LoginOptions {
  /** The account's `sub`. */
  account: string;
  /** The client signing the person in (default: the provider's default public client). */
  clientId?: string;
  /** One of the client's redirect URIs (default: its first). */
  redirectUri?: string;
  /** The nonce to send (default: a fresh random one); `false` sends none. */
  nonce?: string | false;
  /** How the person authenticated, as the login page reports it (e.g. ["pwd"] or ["pwd", "mfa"]). */
  amr?: string[];
  acr?: string;
  /** Default "openid email profile groups"; add "offline_access" for a refresh token. */
  scope?: string;
  /** An RFC 8707 resource indicator: the access token is then a JWT (`at+jwt`) for it. */
  resource?: string;
  /** `max_age` of the authorization request. */
  maxAge?: number;
}

/** A person at a browser, for `authorize()`: who signs in, and how they say they did. */
export interface AuthorizeOptions {
  account: string;
  amr?: string[];
  acr?: string;
  /** Stop at the first redirect to this prefix (default: the first redirect leaving the provider). */
  redirectUri?: string;
}

export interface LoginResult {
  idToken: string;
  accessToken: string;
  refreshToken?: string;
  /** The access token's lifetime in seconds, as the token response gives it. */
  expiresIn: number;
  /** The nonce sent (undefined when none was). */
  nonce?: string;
  /** The ID token's payload, decoded and NOT verified (a convenience for asserting). */
  claims: Record<string, unknown>;
}

export interface LocalOpenIdProvider {
  /** `http://127.0.0.1:PORT`, exactly as tokens' `iss` and the discovery document's `issuer`. */
  readonly issuer: string;
  /** The default public client (PKCE, `token_endpoint_auth_method: none`). */
  readonly defaultClientId: string;
  /** Its redirect URI: nothing listens there, the code is read from the Location header. */
  readonly defaultRedirectUri: string;
  readonly accounts: readonly LocalAccount[];
  /** The oidc-provider instance, for what this wrapper does not cover. */
  readonly provider: Provider;
  /**
   * The whole sign-in as the default client (or `clientId`, if it is public or has a secret):
   * authorization code with PKCE through login and consent, then the code redeemed at /token.
   */
  login(options: LoginOptions): Promise<LoginResult>;
  /**
   * A browser for a relying party's own flow: starts at `url` (an authorization request to this
   * provider, or a relying party's URL that redirects to one), signs the person in, consents,
   * and returns the redirect back to the relying party (with `code`, `state`, `iss`, or `error`)
   * without following it. Cookies are kept for this one call.
   */
  authorize(url: string | URL, options: AuthorizeOptions): Promise<URL>;
  /** Registers (or replaces) a client while running; its metadata is validated now. */
  addClient(metadata: ClientMetadata): Promise<void>;
  close(): Promise<void>;
}

export const DEFAULT_ACCOUNTS: readonly LocalAccount[] = [
  { sub: "alice", name: "Alice", email: "alice@example.com", email_verified: true, groups: ["finance"] },
  { sub: "bob", name: "Bob", email: "bob@example.com", email_verified: true, groups: ["support"] },
];

const DEFAULT_CLIENT_ID = "local-app";
const DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback";
const DEFAULT_SCOPE = "openid email profile groups";

// ---------------------------------------------------------------------------------------------
// Loading oidc-provider

let loaded: Promise<typeof import("oidc-provider")> | undefined;

/**
 * oidc-provider v9 prints "Unsupported runtime" on Node 20 (it supports 22+ only, yet runs on 20
 * as far as this project uses it) with `console.warn` while its module evaluates. That one line
 * is dropped while the module loads; every other warning passes through.
 */
function loadOidcProvider(): Promise<typeof import("oidc-provider")> {
  loaded ??= (async () => {
    const original = console.warn;
    const filter = (...args: unknown[]): void => {
      if (typeof args[0] === "string" && args[0].includes("oidc-provider WARNING: Unsupported runtime.")) return;
      original.apply(console, args);
    };
    console.warn = filter;
    try {
      return await import("oidc-provider");
    } finally {
      if (console.warn === filter) console.warn = original;
    }
  })();
  return loaded;
}

// ---------------------------------------------------------------------------------------------
// Storage: one in-memory store per provider (oidc-provider's own development adapter is shared
// by every instance in the process, and announces itself as not for production).

interface Stored {
  payload: Record<string, unknown>;
  expiresAt: number;
}

class MemoryStore {
  readonly #models = new Map<string, Map<string, Stored>>();

  model(name: string): Map<string, Stored> {
    let m = this.#models.get(name);
    if (m === undefined) this.#models.set(name, (m = new Map()));
    return m;
  }

  all(): Iterable<[string, Map<string, Stored>]> {
    return this.#models.entries();
  }
}

function adapterFor(store: MemoryStore) {
  return class LocalAdapter {
    readonly #items: Map<string, Stored>;
    constructor(name: string) {
      this.#items = store.model(name);
    }
    #get(id: string): Record<string, unknown> | undefined {
      const item = this.#items.get(id);
      if (item === undefined) return undefined;
      if (item.expiresAt <= Date.now()) {
        this.#items.delete(id);
        return undefined;
      }
      return item.payload;
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void> {
      const expiresAt = typeof expiresIn === "number" ? Date.now() + expiresIn * 1000 : Infinity;
      this.#items.set(id, { payload: structuredClone(payload), expiresAt });
    }
    async find(id: string): Promise<Record<string, unknown> | undefined> {
      return this.#get(id);
    }
    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      for (const id of this.#items.keys()) {
        const payload = this.#get(id);
        if (payload?.uid === uid) return payload;
      }
      return undefined;
    }
    async findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined> {
      for (const id of this.#items.keys()) {
        const payload = this.#get(id);
        if (payload?.userCode === userCode) return payload;
      }
      return undefined;
    }
    async consume(id: string): Promise<void> {
      const payload = this.#get(id);
      if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string): Promise<void> {
      this.#items.delete(id);
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const [, items] of store.all())
        for (const [id, item] of items) if (item.payload.grantId === grantId) items.delete(id);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Keys

async function signingKeys(): Promise<Record<string, unknown>[]> {
  const gen = promisify(generateKeyPair);
  const ec = (await gen("ec", { namedCurve: "P-256" })).privateKey as KeyObject;
  const rsa = (await gen("rsa", { modulusLength: 2048 })).privateKey as KeyObject;
  const kid = () => randomBytes(8).toString("base64url");
  return [
    { ...ec.export({ format: "jwk" }), kid: kid(), alg: "ES256", use: "sig" },
    { ...rsa.export({ format: "jwk" }), kid: kid(), alg: "RS256", use: "sig" },
  ];
}

// ---------------------------------------------------------------------------------------------
// The interaction routes: the provider's login and consent pages, without pages.

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error("interaction body too large");
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text === "") return {};
  const value: unknown = JSON.parse(text);
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function interactionRoutes(provider: Provider, accounts: Map<string, LocalAccount>) {
  return async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    const m = /^\/interaction\/([^/]+)(?:\/(login|consent))?$/.exec(ctx.path);
    if (m === null) return next();
    ctx.set("cache-control", "no-store");
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const action = m[2];
    if (ctx.method === "GET" && action === undefined) {
      // What a login or consent page would render, as data.
      ctx.body = { uid: details.uid, prompt: details.prompt.name, reasons: details.prompt.reasons };
      return;
    }
    if (ctx.method !== "POST" || action !== details.prompt.name) {
      ctx.status = 400;
      ctx.body = { error: "invalid_request", error_description: `this interaction is at ${details.prompt.name}` };
      return;
    }
    const body = await readBody(ctx.req);
    let result: InteractionResults;
    if (action === "login") {
      const account = typeof body.account === "string" ? accounts.get(body.account) : undefined;
      if (account === undefined) {
        result = { error: "access_denied", error_description: "unknown account" };
      } else {
        const amr = Array.isArray(body.amr) ? body.amr.filter((v): v is string => typeof v === "string") : undefined;
        result = {
          login: {
            accountId: account.sub,
            remember: false,
            ...(amr !== undefined ? { amr } : {}),
            ...(typeof body.acr === "string" ? { acr: body.acr } : {}),
          },
        };
      }
    } else {
      // Consent to everything asked: a first-party login page for test people.
      const accountId = details.session?.accountId;
      const clientId = details.params.client_id;
      if (typeof accountId !== "string" || typeof clientId !== "string") throw new Error("consent without a login");
      const grant =
        (details.grantId !== undefined ? await provider.Grant.find(details.grantId) : undefined) ??
        new provider.Grant({ accountId, clientId });
      const missing = details.prompt.details;
      if (Array.isArray(missing.missingOIDCScope)) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
      if (Array.isArray(missing.missingOIDCClaims)) grant.addOIDCClaims(missing.missingOIDCClaims as string[]);
      if (typeof missing.missingResourceScopes === "object" && missing.missingResourceScopes !== null)
        for (const [resource, scopes] of Object.entries(missing.missingResourceScopes as Record<string, string[]>))
          grant.addResourceScope(resource, scopes.join(" "));
      result = { consent: { grantId: await grant.save() } };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: action !== "login",
    });
    ctx.status = 303;
    ctx.set("location", returnTo);
    ctx.body = "";
  };
}

// ---------------------------------------------------------------------------------------------
// A cookie jar just big enough for one browser session (host-only cookies, by origin and path).

class CookieJar {
  readonly #cookies = new Map<string, { origin: string; name: string; value: string; path: string }>();

  store(url: URL, res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = "", ...attrs] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = "/";
      let expired = value === "";
      for (const attr of attrs) {
        const [k = "", v = ""] = attr.split("=");
        const key = k.toLowerCase();
        if (key === "path") path = v;
        else if (key === "max-age" && Number(v) <= 0) expired = true;
        else if (key === "expires" && Date.parse(v) <= Date.now()) expired = true;
      }
      const id = `${url.origin}\0${name}\0${path}`;
      if (expired) this.#cookies.delete(id);
      else this.#cookies.set(id, { origin: url.origin, name, value, path });
    }
  }

  header(url: URL): string {
    return [...this.#cookies.values()]
      .filter((c) => c.origin === url.origin)
      .filter((c) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
  }
}

/** oidc-provider's errors keep the useful part in `error_description`. */
function described(e: unknown): unknown {
  const description = (e as { error_description?: unknown } | null)?.error_description;
  return e instanceof Error && typeof description === "string"
    ? new Error(`${e.message}: ${description}`, { cause: e })
    : e;
}

const base64url = (b: Buffer): string => b.toString("base64url");

function decodePayload(jwt: string): Record<string, unknown> {
  const part = jwt.split(".")[1];
  if (part === undefined) throw new Error("not a JWT");
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------

export async function startLocalOpenIdProvider(options: LocalOpenIdProviderOptions = {}): Promise<LocalOpenIdProvider> {
  const { Provider } = await loadOidcProvider();
  const accountList = options.accounts ?? DEFAULT_ACCOUNTS;
  const accounts = new Map(accountList.map((a) => [a.sub, a]));
  const signingAlg = options.signingAlg ?? "ES256";
  const idTokenTtl = options.idTokenTtlSeconds ?? 3600;
  const accessTokenTtl = options.accessTokenTtlSeconds ?? 3600;
  const resourceScopes = options.resourceScopes ?? "read write";
  const store = new MemoryStore();

  // The issuer names its port, so the port is taken before the provider exists.
  let handler: ((req: IncomingMessage, res: import("node:http").ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (handler === undefined) {
      res.statusCode = 503;
      res.end();
    } else handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const staticClients: ClientMetadata[] = [
    {
      client_id: DEFAULT_CLIENT_ID,
      application_type: "native",
      token_endpoint_auth_method: "none",
      redirect_uris: [DEFAULT_REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
    },
    ...(options.clients ?? []),
  ];

  const config = {
    adapter: adapterFor(store),
    clients: staticClients,
    clientDefaults: {
      grant_types: ["authorization_code"],
      id_token_signed_response_alg: signingAlg,
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    async findAccount(ctx: { oidc?: { client?: { clientId?: string } } }, sub: string) {
      const account = accounts.get(sub);
      if (account === undefined) return undefined;
      const azp = ctx.oidc?.client?.clientId;
      return {
        accountId: sub,
        // `azp` (the client the ID token was issued to) as Keycloak and Google write it; oidc-provider
        // leaves it out, and the verifier's azp check needs a provider that writes it.
        async claims(use: string) {
          return { ...account, ...(use === "id_token" && azp !== undefined ? { azp } : {}) };
        },
      };
    },
    claims: {
      // How and when the person authenticated travel with every ID token, as policy reads them.
      openid: ["sub", "azp", "acr", "amr", "auth_time"],
      email: ["email", "email_verified"],
      profile: ["name"],
      groups: ["groups"],
      sid: null,
    },
    responseTypes: ["code"],
    acrValues: ["urn:example:acr:password", "urn:example:acr:mfa"],
    // Put the person's claims in the ID token itself (as most providers do with these scopes),
    // not only at the userinfo endpoint: the ID token is what the callee verifies.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string[]) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => ({
          scope: resourceScopes,
          audience: resource,
          accessTokenTTL: accessTokenTtl,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: signingAlg } },
        }),
      },
    },
    interactions: { url: async (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      ClientCredentials: accessTokenTtl,
      IdToken: idTokenTtl,
      Interaction: 600,
      RefreshToken: 24 * 3600,
      Session: 3600,
      Grant: 3600,
    },
    clientBasedCORS: () => false,
    async renderError(ctx: KoaContext, out: Record<string, unknown>) {
      ctx.set("content-type", "application/json");
      ctx.body = JSON.stringify(out);
    },
  };
  let provider: Provider;
  try {
    provider = new Provider(issuer, { ...config, jwks: { keys: await signingKeys() } });
    // oidc-provider checks configured clients on first use; a typo should fail here, not mid-login.
    for (const client of staticClients) await provider.Client.validate(client);
  } catch (e) {
    // A configuration oidc-provider refuses leaves no listener behind.
    server.close();
    throw described(e);
  }
  provider.use(interactionRoutes(provider, accounts));
  handler = provider.callback();

  const clientMetadata = new Map(staticClients.map((c) => [c.client_id, c]));

  async function authorize(start: string | URL, o: AuthorizeOptions): Promise<URL> {
    // A fresh browser each time: no session survives from an earlier sign-in.
    const jar = new CookieJar();
    const send = async (url: URL, init: RequestInit = {}): Promise<Response> => {
      const headers = new Headers(init.headers);
      const cookie = jar.header(url);
      if (cookie !== "") headers.set("cookie", cookie);
      const res = await fetch(url, { ...init, headers, redirect: "manual" });
      jar.store(url, res);
      return res;
    };
    const op = new URL(issuer).origin;
    let url = new URL(start);
    let visitedOp = false;
    for (let hop = 0; hop < 16; hop++) {
      visitedOp ||= url.origin === op;
      let res = await send(url);
      if (url.origin === op && url.pathname.startsWith("/interaction/")) {
        const text = await res.text();
        let prompt: unknown;
        try {
          prompt = (JSON.parse(text) as { prompt?: unknown }).prompt;
        } catch {
          throw new Error(`${url.pathname}: HTTP ${res.status} ${text.slice(0, 200)}`);
        }
        if (prompt !== "login" && prompt !== "consent")
          throw new Error(`the provider asks for ${String(prompt)}, which this harness does not answer`);
        const form = prompt === "login" ? { account: o.account, amr: o.amr, acr: o.acr } : {};
        res = await send(new URL(`${url.pathname}/${prompt}`, url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(form),
        });
      }
      const body = await res.text();
      const location = res.headers.get("location");
      if (res.status < 300 || res.status >= 400 || location === null)
        throw new Error(`${url.href}: expected a redirect, got HTTP ${res.status} ${body.slice(0, 200)}`);
      const next = new URL(location, url);
      const done = o.redirectUri !== undefined ? next.href.startsWith(o.redirectUri) : visitedOp && next.origin !== op;
      if (done) return next;
      url = next;
    }
    throw new Error("too many redirects before reaching the client's redirect URI");
  }

  async function login(o: LoginOptions): Promise<LoginResult> {
    const clientId = o.clientId ?? DEFAULT_CLIENT_ID;
    const client = clientMetadata.get(clientId);
    if (client === undefined) throw new Error(`unknown client ${clientId}`);
    const redirectUri = o.redirectUri ?? client.redirect_uris?.[0];
    if (redirectUri === undefined) throw new Error(`client ${clientId} has no redirect URI`);
    const verifier = base64url(randomBytes(32));
    const state = base64url(randomBytes(16));
    const nonce = o.nonce === false ? undefined : (o.nonce ?? base64url(randomBytes(16)));
    const auth = new URL("/auth", issuer);
    const params: Record<string, string | undefined> = {
      client_id: clientId,
      redirect_uri: redirectUri,
      response_type: "code",
      scope: o.scope ?? DEFAULT_SCOPE,
      state,
      nonce,
      code_challenge: base64url(createHash("sha256").update(verifier).digest()),
      code_challenge_method: "S256",
      resource: o.resource,
      max_age: o.maxAge?.toString(),
      // A refresh token is only issued when consent is asked for explicitly (OIDC Core §11).
      prompt: (o.scope ?? DEFAULT_SCOPE).split(" ").includes("offline_access") ? "consent" : undefined,
    };
    for (const [k, v] of Object.entries(params)) if (v !== undefined) auth.searchParams.set(k, v);

    const back = await authorize(auth, {
      account: o.account,
      redirectUri,
      ...(o.amr !== undefined ? { amr: o.amr } : {}),
      ...(o.acr !== undefined ? { acr: o.acr } : {}),
    });
    const error = back.searchParams.get("error");
    if (error !== null)
      throw new Error(`the provider refused the login: ${error} (${back.searchParams.get("error_description")})`);
    if (back.searchParams.get("state") !== state) throw new Error("state mismatch in the redirect");
    if (back.searchParams.get("iss") !== issuer) throw new Error("iss missing or wrong in the redirect (RFC 9207)");
    const code = back.searchParams.get("code");
    if (code === null) throw new Error("no code in the redirect");

    const form = new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    });
    if (o.resource !== undefined) form.set("resource", o.resource);
    const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
    const method = client.token_endpoint_auth_method ?? "client_secret_basic";
    if (method === "none") form.set("client_id", clientId);
    else if (method === "client_secret_post" && client.client_secret !== undefined) {
      form.set("client_id", clientId);
      form.set("client_secret", client.client_secret);
    } else if (method === "client_secret_basic" && client.client_secret !== undefined) {
      const enc = (s: string) => encodeURIComponent(s);
      headers.authorization = `Basic ${Buffer.from(`${enc(clientId)}:${enc(client.client_secret)}`).toString("base64")}`;
    } else throw new Error(`login() cannot authenticate client ${clientId} (${method}) at the token endpoint`);
    const res = await fetch(new URL("/token", issuer), { method: "POST", headers, body: form });
    const body = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`token endpoint: HTTP ${res.status} ${JSON.stringify(body)}`);
    const { id_token: idToken, access_token: accessToken, refresh_token: refreshToken, expires_in } = body;
    if (typeof idToken !== "string" || typeof accessToken !== "string")
      throw new Error(`token endpoint: no ID token or access token in ${JSON.stringify(body)}`);
    return {
      idToken,
      accessToken,
      ...(typeof refreshToken === "string" ? { refreshToken } : {}),
      expiresIn: typeof expires_in === "number" ? expires_in : 0,
      ...(nonce !== undefined ? { nonce } : {}),
      claims: decodePayload(idToken),
    };
  }

  async function addClient(metadata: ClientMetadata): Promise<void> {
    if (clientMetadata.has(metadata.client_id) && staticClients.some((c) => c.client_id === metadata.client_id))
      throw new Error(`client ${metadata.client_id} was configured at start and cannot be replaced`);
    await provider.Client.validate(metadata).catch((e: unknown) => {
      throw described(e);
    });
    // Clients not configured at start are looked up in the adapter, as dynamically registered ones are.
    store.model("Client").set(metadata.client_id, { payload: structuredClone(metadata), expiresAt: Infinity });
    clientMetadata.set(metadata.client_id, metadata);
  }

  let closed: Promise<void> | undefined;
  return {
    issuer,
    defaultClientId: DEFAULT_CLIENT_ID,
    defaultRedirectUri: DEFAULT_REDIRECT_URI,
    accounts: accountList,
    provider,
    login,
    authorize,
    addClient,
    close() {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err === undefined ? resolve() : reject(err)));
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
