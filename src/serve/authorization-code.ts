/**
 * People at unmodified hosts: the authorization code flow of `aztp serve` (OAuth 2.1 with PKCE,
 * as the MCP authorization spec asks of an authorization server), the person's login delegated
 * to their OpenID Provider (person-login.ts).
 *
 * ```
 * host ── GET /oauth/authorize (client_id, redirect_uri, S256 code_challenge, state, resource) ─▶
 *        client checked (registered, or its metadata document), redirect_uri exact (a loopback port may vary)
 *      ◀─ 302 to the provider (this server's own state, nonce, PKCE) + a cookie binding the browser
 * provider: the person signs in ─▶ GET /oauth/callback (code, state, iss)
 *        state and cookie matched, iss checked (RFC 9207), code redeemed, ID token verified with the nonce
 *      ◀─ 302 to the host's redirect_uri (code, the host's state, iss)
 * host ── POST /oauth/token grant_type=authorization_code (code, code_verifier, redirect_uri, client_id, resource) ─▶
 *      ◀─ an RFC 9068 access token: sub/sub_id the person, client_id the host's client, aud the resource
 * ```
 *
 * Errors before the redirect URI is known good are shown, never redirected (an open redirector
 * otherwise); after, they go back to the client as `error` with its `state` and `iss`.
 *
 * The logins in progress (10 minutes) and the codes (60 s, single use) are held by the replica
 * that made them: with several replicas, route one browser's /oauth/authorize, /oauth/callback
 * and the code's redemption to the same one (sticky sessions).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { LRUCache } from "lru-cache";
import { AztpError, ErrorCodes } from "../errors.js";
import type { Person } from "../invocation/on-behalf-of.js";
import { mintAccessToken } from "../oauth/access-token.js";
import type { OAuthClient } from "../oauth/client-metadata-document.js";
import { codeChallengeOf, isCodeChallenge, pkceMatches, PKCE_METHOD } from "../oauth/pkce.js";
import { redirectUriMatches } from "../oauth/redirect-uri.js";
import { parseResource, parseScopeParam } from "../oauth/token-request.js";
import type { PersonIssuers } from "../people/person-issuers.js";
import type { KeyObject } from "node:crypto";
import { peekClaims } from "../spiffe/jws.js";
import type { ClientRegistry } from "./client-registration.js";
import type { PersonLogin } from "./person-login.js";
import type { RouteAnswer, RouteContext } from "./routes.js";

export const AUTHORIZATION_CODE_GRANT = "authorization_code";
const LOGIN_TTL_MS = 10 * 60_000;
const CODE_TTL_MS = 60_000;
const COOKIE_PREFIX = "aztp-login-";

interface PendingLogin {
  client: OAuthClient;
  redirectUri: string;
  clientState: string | undefined;
  codeChallenge: string;
  resource: string;
  scopes: string[];
  nonce: string;
  verifier: string;
  /** SHA-256 of the browser's binding cookie. */
  binding: string;
}

interface IssuedCode {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  resource: string;
  scopes: string[];
  person: Person;
  personExpiresAt: Date;
  expiresAt: number;
}

export interface AuthorizationCodeDeps {
  login: PersonLogin;
  clients: ClientRegistry;
  issuer(): string;
  trustDomain(): string;
  personIssuers(trustDomain: string): PersonIssuers;
  signingKey(trustDomain: string): { key: KeyObject; kid: string };
  scopesSupported?: readonly string[] | undefined;
  accessTokenTtlSeconds?: number | undefined;
  /** Codes redeemed per client, per replica (the token endpoint's buckets). */
  take(clientId: string): void;
}

function param(q: URLSearchParams | Map<string, string>, name: string): string | undefined {
  if (q instanceof URLSearchParams) {
    const all = q.getAll(name);
    if (all.length > 1)
      throw new AztpError(ErrorCodes.OAUTH_REQUEST_INVALID, `parameter ${name} is given more than once`, {
        rule: name,
      });
    const v = all[0];
    return v === undefined || v === "" ? undefined : v;
  }
  const v = q.get(name);
  return v === undefined || v === "" ? undefined : v;
}

/** RFC 6749's error_description: printable ASCII without `"` and `\`. */
function description(e: AztpError): string {
  return `${e.code}: ${e.message}`
    .replace(/"/g, "'")
    .replace(/\\/g, "/")
    .replace(/[^\x20-\x7e]/g, "?")
    .slice(0, 500);
}

/** The OAuth `error` an authorization response carries for a refusal after the redirect URI is known good. */
function authorizationError(e: AztpError): string {
  switch (e.code) {
    case ErrorCodes.OAUTH_RESOURCE_INVALID:
    case ErrorCodes.OAUTH_RESOURCE_DENIED:
      return "invalid_target";
    case ErrorCodes.OAUTH_SCOPE_INVALID:
    case ErrorCodes.OAUTH_SCOPE_DENIED:
      return "invalid_scope";
    case ErrorCodes.OAUTH_RESPONSE_TYPE_UNSUPPORTED:
      return "unsupported_response_type";
    case ErrorCodes.OAUTH_REQUEST_INVALID:
    case ErrorCodes.OAUTH_PKCE_INVALID:
      return "invalid_request";
    case ErrorCodes.OAUTH_ISSUER_UNAVAILABLE:
    case ErrorCodes.OAUTH_CLIENT_METADATA_UNAVAILABLE:
      return "temporarily_unavailable";
    default:
      // The person's login did not give a person this server trusts (or they refused).
      return "access_denied";
  }
}

function redirect(location: string, extra: Record<string, string> = {}): RouteAnswer {
  return {
    status: 302,
    body: { redirect: location },
    // The code and state are in the URL: no page it lands on may learn them through Referer.
    headers: { location, "referrer-policy": "no-referrer", ...extra },
  };
}

function withParams(uri: string, params: Record<string, string | undefined>): string {
  const u = new URL(uri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}

function cookieOf(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class AuthorizationCodeFlow {
  readonly #d: AuthorizationCodeDeps;
  readonly #pending = new LRUCache<string, PendingLogin>({ max: 10_000, ttl: LOGIN_TTL_MS });
  readonly #codes = new LRUCache<string, IssuedCode>({ max: 10_000, ttl: CODE_TTL_MS });
  /** Codes redeemed, kept past their lifetime so a second redemption is told apart from an unknown code. */
  readonly #spent = new LRUCache<string, true>({ max: 10_000, ttl: 2 * CODE_TTL_MS });

  constructor(deps: AuthorizationCodeDeps) {
    this.#d = deps;
  }

  /** What the RFC 8414 document adds for this flow. */
  metadata(issuer: string): Record<string, unknown> {
    return {
      response_types_supported: ["code"],
      response_modes_supported: ["query"],
      code_challenge_methods_supported: [PKCE_METHOD],
      registration_endpoint: `${issuer}/oauth/register`,
      client_id_metadata_document_supported: true,
      authorization_response_iss_parameter_supported: true,
    };
  }

  /** GET /oauth/authorize: checks the host's request, then sends the browser to the person's provider. */
  async authorize(c: RouteContext): Promise<RouteAnswer> {
    const q = c.url.searchParams;
    const shown = (m: string, cause?: AztpError): AztpError =>
      new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_REQUEST_INVALID, cause ? `${m}: ${cause.message}` : m, {
        ...(cause !== undefined ? { cause, rule: cause.rule ?? cause.code } : {}),
      });
    const clientId = param(q, "client_id");
    if (clientId === undefined) throw shown("client_id is required");
    let client: OAuthClient;
    try {
      client = await this.#d.clients.client(clientId);
    } catch (e) {
      if (e instanceof AztpError) throw shown("the client cannot be identified", e);
      throw e;
    }
    const asked = param(q, "redirect_uri");
    let redirectUri: string;
    if (asked === undefined) {
      if (client.redirectUris.length !== 1) throw shown("redirect_uri is required: the client registered several");
      redirectUri = client.redirectUris[0] as string;
    } else {
      if (!client.redirectUris.some((r) => redirectUriMatches(asked, r)))
        throw shown(`redirect_uri ${JSON.stringify(asked.slice(0, 200))} is not one the client registered`);
      redirectUri = asked;
    }
    const clientState = param(q, "state");
    const issuer = this.#d.issuer();
    try {
      if (param(q, "response_type") !== "code")
        throw new AztpError(ErrorCodes.OAUTH_RESPONSE_TYPE_UNSUPPORTED, "response_type must be code");
      const challenge = param(q, "code_challenge");
      const method = param(q, "code_challenge_method");
      if (!isCodeChallenge(challenge) || method !== PKCE_METHOD)
        throw new AztpError(
          ErrorCodes.OAUTH_PKCE_INVALID,
          "a code_challenge (S256, RFC 7636) is required; plain is not accepted",
          { rule: "challenge" },
        );
      // MCP: clients send the resource (RFC 8707) in both requests; every token names one.
      const resource = parseResource(param(q, "resource"));
      const scopes = this.#scopes(parseScopeParam(param(q, "scope")));
      const start = await this.#d.login.start(codeChallengeOf);
      const binding = randomBytes(32).toString("base64url");
      this.#pending.set(start.state, {
        client,
        redirectUri,
        clientState,
        codeChallenge: challenge,
        resource,
        scopes,
        nonce: start.nonce,
        verifier: start.verifier,
        binding: sha256(binding),
      });
      const secure = issuer.startsWith("https:") ? "; Secure" : "";
      return redirect(start.url, {
        "set-cookie": `${COOKIE_PREFIX}${start.state.slice(0, 16)}=${binding}; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=${LOGIN_TTL_MS / 1000}${secure}`,
      });
    } catch (e) {
      if (!(e instanceof AztpError)) throw e;
      return redirect(
        withParams(redirectUri, {
          error: authorizationError(e),
          error_description: description(e),
          state: clientState,
          iss: issuer,
        }),
      );
    }
  }

  /** GET /oauth/callback: the provider's answer; the host's redirect with a code for the person. */
  async callback(c: RouteContext): Promise<RouteAnswer> {
    const q = c.url.searchParams;
    const state = param(q, "state");
    const pending = state === undefined ? undefined : this.#pending.get(state);
    if (state === undefined || pending === undefined)
      throw new AztpError(
        ErrorCodes.OAUTH_LOGIN_STATE_INVALID,
        "no login of this server is waiting for this state (unknown, expired, already used, or started at another replica)",
        { rule: "state" },
      );
    // Spent whatever follows: an answer is used once.
    this.#pending.delete(state);
    const cookie = cookieOf(c.req.headers.cookie, `${COOKIE_PREFIX}${state.slice(0, 16)}`);
    if (cookie === undefined || !sameText(sha256(cookie), pending.binding))
      throw new AztpError(
        ErrorCodes.OAUTH_LOGIN_STATE_INVALID,
        "this login was started in another browser (its binding cookie is missing or different)",
        { rule: "browser" },
      );
    const issuer = this.#d.issuer();
    const clear = {
      "set-cookie": `${COOKIE_PREFIX}${state.slice(0, 16)}=; Path=/oauth/callback; HttpOnly; SameSite=Lax; Max-Age=0`,
    };
    const back = (params: Record<string, string | undefined>): RouteAnswer =>
      redirect(withParams(pending.redirectUri, { ...params, state: pending.clientState, iss: issuer }), clear);
    try {
      await this.#d.login.checkIss(param(q, "iss"));
      const error = param(q, "error");
      if (error !== undefined)
        throw new AztpError(
          ErrorCodes.OAUTH_LOGIN_FAILED,
          `the OpenID Provider answered ${error.slice(0, 60)}${param(q, "error_description") ? `: ${param(q, "error_description")?.slice(0, 200)}` : ""}`,
        );
      const code = param(q, "code");
      if (code === undefined)
        throw new AztpError(ErrorCodes.OAUTH_LOGIN_FAILED, "the OpenID Provider's answer has no code");
      const idToken = await this.#d.login.redeem(code, pending.verifier);
      const td = this.#d.trustDomain();
      const verified = await this.#d.personIssuers(td).verify(idToken, { nonce: pending.nonce });
      if (verified.person.issuer !== this.#d.login.issuer)
        throw new AztpError(ErrorCodes.OAUTH_LOGIN_FAILED, "the ID token is not from the provider the login went to");
      const person: Person = verified.recordEmail
        ? verified.person
        : { ...verified.person, claims: withoutEmail(verified.person.claims) };
      const ours = randomBytes(32).toString("base64url");
      this.#codes.set(ours, {
        clientId: pending.client.clientId,
        redirectUri: pending.redirectUri,
        codeChallenge: pending.codeChallenge,
        resource: pending.resource,
        scopes: pending.scopes,
        person,
        personExpiresAt: verified.expiresAt,
        expiresAt: Date.now() + CODE_TTL_MS,
      });
      return back({ code: ours });
    } catch (e) {
      if (!(e instanceof AztpError)) throw e;
      return back({ error: authorizationError(e), error_description: description(e) });
    }
  }

  /** grant_type=authorization_code at the token endpoint. */
  async redeem(form: Map<string, string>): Promise<RouteAnswer> {
    const code = param(form, "code");
    const clientId = param(form, "client_id");
    if (code === undefined || clientId === undefined)
      throw new AztpError(ErrorCodes.OAUTH_REQUEST_INVALID, "code and client_id are required", { rule: "code" });
    if (form.has("client_secret") || form.has("client_assertion"))
      throw new AztpError(
        ErrorCodes.OAUTH_CLIENT_AUTH_MISSING,
        "clients of the authorization code flow are public (token_endpoint_auth_method none): PKCE is their proof",
      );
    const invalid = (rule: string, m: string): AztpError =>
      new AztpError(ErrorCodes.OAUTH_CODE_INVALID, `authorization code: ${m}`, { rule });
    const issued = this.#codes.get(code);
    if (issued === undefined) {
      throw this.#spent.has(sha256(code))
        ? invalid("replayed", "already redeemed: a code is good once")
        : invalid("unknown", "unknown or expired");
    }
    // Spent at the first attempt, right or wrong: a guessed verifier gets one try.
    this.#codes.delete(code);
    this.#spent.set(sha256(code), true);
    if (issued.expiresAt <= Date.now()) throw invalid("expired", "expired");
    if (issued.clientId !== clientId) throw invalid("client", "it was issued to another client");
    if (param(form, "redirect_uri") !== issued.redirectUri)
      throw invalid("redirect_uri", "redirect_uri is not the one of the authorization request");
    const resource = param(form, "resource");
    if (resource !== undefined && resource !== issued.resource)
      throw invalid("resource", `it was issued for the resource ${issued.resource}`);
    if (!pkceMatches(param(form, "code_verifier"), issued.codeChallenge))
      throw new AztpError(
        ErrorCodes.OAUTH_PKCE_INVALID,
        "the code_verifier is missing, malformed, or not the one the code_challenge was made from",
        { rule: "verifier" },
      );
    this.#d.take(clientId);
    const td = this.#d.trustDomain();
    const { key, kid } = this.#d.signingKey(td);
    const now = new Date();
    const token = mintAccessToken({
      issuer: this.#d.issuer(),
      subject: { issuer: issued.person.issuer, subject: issued.person.subject, claims: issued.person.claims },
      clientId,
      audience: issued.resource,
      scopes: issued.scopes,
      key,
      kid,
      ...(this.#d.accessTokenTtlSeconds !== undefined ? { ttlSeconds: this.#d.accessTokenTtlSeconds } : {}),
      // Never longer than the login it comes from.
      notAfter: issued.personExpiresAt,
      now,
    });
    const exp = peekClaims(token)?.exp as number;
    const body: Record<string, unknown> = {
      access_token: token,
      token_type: "Bearer",
      expires_in: Math.max(0, exp - Math.floor(now.getTime() / 1000)),
    };
    if (issued.scopes.length > 0) body.scope = issued.scopes.join(" ");
    return { status: 200, body, headers: { pragma: "no-cache" } };
  }

  /** The scopes granted a person's host: those asked that the server offers (all offered when none is asked). */
  #scopes(asked: string[]): string[] {
    const supported = this.#d.scopesSupported;
    if (supported === undefined) return asked;
    if (asked.length === 0) return [...supported];
    const granted = asked.filter((s) => supported.includes(s));
    if (granted.length === 0)
      throw new AztpError(
        ErrorCodes.OAUTH_SCOPE_DENIED,
        `none of the scopes asked is offered (${supported.join(" ")})`,
      );
    return granted;
  }
}

function withoutEmail(claims: Person["claims"]): Person["claims"] {
  const { email: _email, ...rest } = claims;
  return rest;
}
