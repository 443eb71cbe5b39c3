/**
 * `aztp serve` as a relying party of the OpenID Provider people sign in at (`--login-issuer`):
 * the half of the authorization code flow between this server and the provider. The host's half
 * (its client, its PKCE, its code) is authorization-code.ts.
 *
 * The provider is found by discovery (oauth/issuer-keys.ts: its `issuer` must be the configured
 * one); this server authenticates to it with a client secret (`client_secret_basic`) or with
 * `private_key_jwt` (RFC 7523, a key registered at the provider), and sends its own PKCE (S256),
 * `nonce` and `state` on every login. The ID token that comes back is verified by the one
 * verifier of a person's token (people/person-issuers.ts) with that nonce: the provider must be
 * one the trust domain trusts, and the login's client ID one of its audiences.
 */
import { createPrivateKey, randomBytes, randomUUID, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { IssuerKeys, type IssuerKeysOptions } from "../oauth/issuer-keys.js";
import { signCompact } from "../spiffe/jws.js";

export interface PersonLoginOptions {
  /** The OpenID Provider's issuer identifier; it must be a trusted person issuer of `trustDomain`. */
  issuer: string;
  /** This server's client ID at the provider (`--login-client-id`). */
  clientId: string;
  /** Its client secret (`--login-client-secret-file`): client_secret_basic. */
  clientSecret?: string | undefined;
  /** Or its private key (PEM, `--login-private-key`): private_key_jwt. */
  privateKey?: string | KeyObject | undefined;
  /** Registered at the provider; default `<public URL>/oauth/callback`. */
  redirectUri?: string | undefined;
  /** Default "openid email profile". */
  scope?: string | undefined;
  /** Whose trusted providers verify the ID token, and whose JWT key signs the tokens; default the authority's default. */
  trustDomain?: string | undefined;
  /** For discovery and the token request (a proxy, a private CA). */
  fetch?: typeof fetch | undefined;
  /** Discovery options (plain http is allowed to loopback, as everywhere). */
  issuerKeys?: Partial<IssuerKeysOptions> | undefined;
}

export const DEFAULT_LOGIN_SCOPE = "openid email profile";

function failed(message: string, cause?: unknown): AztpError {
  return new AztpError(ErrorCodes.OAUTH_LOGIN_FAILED, `login at the OpenID Provider: ${message}`, {
    ...(cause !== undefined ? { cause } : {}),
  });
}

/** What the server sends the provider for one login, and keeps to check its answer. */
export interface LoginStart {
  url: string;
  state: string;
  nonce: string;
  verifier: string;
}

export class PersonLogin {
  readonly issuer: string;
  readonly clientId: string;
  readonly #publicIssuer: () => string;
  readonly #o: PersonLoginOptions;
  readonly #keys: IssuerKeys;
  readonly #privateKey: KeyObject | undefined;
  readonly #fetch: typeof fetch;

  /** `publicIssuer`: this server's issuer identifier, read when needed (it is known once it listens). */
  constructor(options: PersonLoginOptions, publicIssuer: () => string) {
    if (typeof options.clientId !== "string" || options.clientId.length === 0)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "--login-client-id is required with --login-issuer");
    if ((options.clientSecret === undefined) === (options.privateKey === undefined))
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "the login needs exactly one of --login-client-secret-file and --login-private-key",
      );
    this.issuer = options.issuer;
    this.clientId = options.clientId;
    this.#publicIssuer = publicIssuer;
    this.#o = options;
    this.#fetch = options.fetch ?? fetch;
    this.#keys = new IssuerKeys({
      ...options.issuerKeys,
      issuer: options.issuer,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    });
    try {
      this.#privateKey =
        options.privateKey === undefined
          ? undefined
          : typeof options.privateKey === "string"
            ? createPrivateKey(options.privateKey)
            : options.privateKey;
    } catch (e) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `--login-private-key: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Where the provider sends the person back: `--login-redirect-uri`, else `<public URL>/oauth/callback`. */
  get redirectUri(): string {
    return this.#o.redirectUri ?? `${this.#publicIssuer()}/oauth/callback`;
  }

  async #endpoints(): Promise<{ authorization: string; token: string; issParameter: boolean }> {
    const m = await this.#keys.metadata().catch((e: unknown) => {
      throw failed(`discovery of ${this.issuer} failed: ${(e as Error).message}`, e);
    });
    if (typeof m.authorization_endpoint !== "string" || typeof m.token_endpoint !== "string")
      throw failed(`${this.issuer}'s metadata names no authorization_endpoint and token_endpoint`);
    return {
      authorization: m.authorization_endpoint,
      token: m.token_endpoint,
      issParameter: m.authorization_response_iss_parameter_supported === true,
    };
  }

  /** The provider's authorization URL for a new login, with fresh state, nonce and PKCE. */
  async start(challengeOf: (verifier: string) => string): Promise<LoginStart> {
    const { authorization } = await this.#endpoints();
    const state = randomBytes(32).toString("base64url");
    const nonce = randomBytes(24).toString("base64url");
    const verifier = randomBytes(32).toString("base64url");
    const url = new URL(authorization);
    for (const [k, v] of Object.entries({
      response_type: "code",
      client_id: this.clientId,
      redirect_uri: this.redirectUri,
      scope: this.#o.scope ?? DEFAULT_LOGIN_SCOPE,
      state,
      nonce,
      code_challenge: challengeOf(verifier),
      code_challenge_method: "S256",
    }))
      url.searchParams.set(k, v);
    return { url: url.href, state, nonce, verifier };
  }

  /**
   * Checks the provider's `iss` (RFC 9207: present when it says it sends one, and then this
   * provider's), so an answer from another provider cannot be taken for this one's.
   */
  async checkIss(iss: string | undefined): Promise<void> {
    const { issParameter } = await this.#endpoints();
    if (iss === undefined ? issParameter : iss !== this.issuer)
      throw failed(`the answer's iss ${JSON.stringify(iss ?? null)?.slice(0, 100)} is not ${this.issuer} (RFC 9207)`);
  }

  /** Redeems the provider's code for the ID token (verified by the caller, with the nonce). */
  async redeem(code: string, verifier: string): Promise<string> {
    const { token } = await this.#endpoints();
    const form = new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: this.redirectUri,
      code_verifier: verifier,
    });
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
    };
    if (this.#privateKey !== undefined) {
      const now = Math.floor(Date.now() / 1000);
      form.set("client_id", this.clientId);
      form.set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
      form.set(
        "client_assertion",
        signCompact(
          { typ: "JWT" },
          { iss: this.clientId, sub: this.clientId, aud: this.issuer, iat: now, exp: now + 60, jti: randomUUID() },
          this.#privateKey,
        ),
      );
    } else {
      const enc = (s: string): string => encodeURIComponent(s);
      headers.authorization = `Basic ${Buffer.from(`${enc(this.clientId)}:${enc(this.#o.clientSecret as string)}`).toString("base64")}`;
    }
    let res: Response;
    try {
      res = await this.#fetch(token, {
        method: "POST",
        headers,
        body: form,
        redirect: "error",
        signal: AbortSignal.timeout(10_000),
      });
    } catch (e) {
      throw failed(`its token endpoint could not be reached: ${(e as Error).message}`, e);
    }
    let body: Record<string, unknown> = {};
    try {
      body = (await res.json()) as Record<string, unknown>;
    } catch {
      // reported below
    }
    if (!res.ok)
      throw failed(
        `its token endpoint answered HTTP ${res.status} ${typeof body.error === "string" ? body.error.slice(0, 60) : ""}`,
      );
    if (typeof body.id_token !== "string") throw failed("its token endpoint returned no ID token");
    return body.id_token;
  }
}
