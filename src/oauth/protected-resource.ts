/**
 * A server as an OAuth 2.0 protected resource, as the MCP authorization spec (2025-06-18 onward)
 * asks of an MCP server: its Protected Resource Metadata (RFC 9728), the `WWW-Authenticate`
 * challenges of RFC 6750 (with `resource_metadata` and `scope`), and the bearer credential of a
 * request, verified with the one verifier (access-token.ts) and turned into the caller it names.
 *
 * Checked against what the MCP SDK's client (1.x `client/auth.js`) does, since hosts run it:
 * - it finds the metadata through the 401's `resource_metadata`, else at
 *   `/.well-known/oauth-protected-resource` with the resource's path inserted (RFC 9728 §3.1),
 *   then at the root; all three are served;
 * - it reads the header's parameters with a regular expression that stops at the first `"`
 *   and takes the first `name=` it finds anywhere, so no value may hold `"`, `\` or `=` (an
 *   `error_description` naming a `scope=` would otherwise be read as the scope);
 * - it requires the metadata's `resource` to have the server URL's origin and a path prefix of
 *   it, and sends that `resource` to the authorization server, whose `aud` we then require.
 *
 * Who a token speaks for: a SPIFFE ID only when the token comes from an issuer that speaks for
 * that trust domain from the bundle (this library's authority); any other issuer's subject is
 * that issuer's, `<iss>#<sub>`, so a third-party identity provider cannot mint a workload's
 * identity by writing `spiffe://...` into `sub`.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import type { JsonObject } from "../json/value.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { peekClaims } from "../spiffe/jws.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import {
  isScopeToken,
  missingScopes,
  verifyAccessToken,
  VerifiedSignatures,
  type AccessToken,
  type TrustedIssuer,
} from "./access-token.js";
import { IssuerKeys, type IssuerKeysOptions } from "./issuer-keys.js";
import type { Person } from "../invocation/on-behalf-of.js";

/** RFC 9728 §3: the well-known URI suffix of Protected Resource Metadata. */
export const PROTECTED_RESOURCE_WELL_KNOWN = "/.well-known/oauth-protected-resource";

/** What a protected resource needs of this library's authority (an `Authority` is one). */
export interface ServingAuthority extends BundleSource {
  /** The `iss` of the tokens it mints: verified offline from its bundle. */
  readonly oauthIssuer: string;
  readonly trustDomains: readonly string[];
  /** Fails closed: throws when the revocation state it answers from is too old to trust. */
  isRevoked(id: string): boolean;
}

export interface ProtectedResourceOptions {
  /** The resource identifier (RFC 8707): the server's URL as its clients reach it, no fragment. */
  resource: string;
  /**
   * Issuer identifiers of the authorization servers whose tokens are accepted. One equal to
   * `authority.oauthIssuer` is checked offline from the bundle; any other through RFC 8414 or
   * OpenID Connect discovery and its JWKS (oauth/issuer-keys.ts).
   */
  authorizationServers: readonly string[];
  /** This library's authority, whose issuer and revocations apply. */
  authority?: ServingAuthority | undefined;
  /** Scopes every bearer request must carry (403 `insufficient_scope` when one is missing). */
  scopes?: readonly string[] | undefined;
  /** `resource_name` in the metadata. */
  resourceName?: string | undefined;
  /** For external issuers' discovery: a fetch of your own, timeouts, cache ages. */
  issuerKeys?: Omit<IssuerKeysOptions, "issuer" | "jwksUri"> | undefined;
}

/** A verified bearer credential and the caller it speaks for. */
export interface BearerCaller {
  readonly token: AccessToken;
  /**
   * The caller for policy (`aztp:caller`) and audit: the SPIFFE ID (`spiffe://` form) of a
   * token from an issuer that speaks for its trust domain, else `<iss>#<sub>`.
   */
  readonly caller: string;
  /** Whether `caller` is a SPIFFE ID (a workload the bundle vouches for). */
  readonly workload: boolean;
  /**
   * The person a token of the serving authority's issuer names (a person signed in through its
   * authorization code flow): `caller` is then their `<provider>#<sub>`, and policy reads
   * `aztp:person*` from it. Absent for workloads and for other issuers' subjects.
   */
  readonly person?: Person;
  /** The compact token, for an invocation's `ath` binding and the receipt's; never recorded. */
  readonly compact: string;
}

/**
 * What the bearer credential of a refused request says of its caller, for the audit entry that
 * records the refusal: never the token (whoever reads the log could replay it), only who it
 * speaks for and its `jti`.
 */
export interface PresentedCredential {
  /**
   * The caller as a verified token would name it (a SPIFFE ID, or `<iss>#<sub>`): verified when
   * the token verified and was refused only for a missing scope, else only claimed by it;
   * "unknown" when it names nobody readable.
   */
  readonly caller: string;
  readonly verified: boolean;
  /** Its `jti` (verified, or only read from an unverified token); undefined when none could be read. */
  readonly jti: string | undefined;
}

/**
 * A request's bearer credential checked: none (`bearer` undefined), a verified caller, or the
 * error that refuses it with what the token it presented said (`presented`).
 */
export type CredentialCheck =
  | { readonly bearer: BearerCaller | undefined; readonly error?: undefined; readonly presented?: undefined }
  | { readonly error: AztpError; readonly presented: PresentedCredential; readonly bearer?: undefined };

/** What a request with a credential problem is answered with (RFC 6750 §3). */
export interface Challenge {
  /** 401 (no credential, an invalid one), 403 (insufficient scope), 503 (cannot verify now). */
  readonly status: 401 | 403 | 503;
  /** The `WWW-Authenticate` value; absent for 503, where the client is not at fault. */
  readonly header: string | undefined;
  readonly error: AztpError;
}

// Bearer callers this module made: a binding accepts no other (an object shaped like one, from
// a framework's auth middleware, was never verified here).
const verified = new WeakSet<BearerCaller>();

/** Whether `value` is a BearerCaller this module verified. */
export function isVerifiedBearer(value: unknown): value is BearerCaller {
  return typeof value === "object" && value !== null && verified.has(value as BearerCaller);
}

/** The caller an external issuer's subject is: qualified by the issuer, which has no `#` (RFC 8414 §2). */
export function issuerQualifiedSubject(issuer: string, subject: string): string {
  return `${issuer}#${subject}`;
}

/** RFC 9728 §3.1: the well-known path for a resource, its path (if any) appended after the suffix. */
export function protectedResourceMetadataPath(resource: string | URL): string {
  const path = new URL(resource).pathname.replace(/\/+$/, "");
  return `${PROTECTED_RESOURCE_WELL_KNOWN}${path}`;
}

/** The metadata URL for a resource: its origin and the path-inserted well-known path. */
export function protectedResourceMetadataUrl(resource: string | URL): string {
  return new URL(protectedResourceMetadataPath(resource), new URL(resource).origin).href;
}

/** A header parameter value the SDK's regular expression and RFC 7230's quoted-string both read intact. */
function headerValue(value: string): string {
  return value.replace(/[^\x20-\x7E]|["\\=]/g, " ").slice(0, 300);
}

function checkedUrl(value: unknown, what: string): URL {
  let url: URL;
  try {
    url = new URL(value as string);
  } catch {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} must be an absolute URL, got ${JSON.stringify(value)}`);
  }
  if (url.hash !== "" || (value as string).includes("#"))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} has no fragment (RFC 8707 §2, RFC 8414 §2)`);
  return url;
}

export class ProtectedResource {
  readonly resource: string;
  readonly authorizationServers: readonly string[];
  readonly scopes: readonly string[];
  /** Where the metadata is advertised (`resource_metadata` of every challenge). */
  readonly metadataUrl: string;
  readonly #issuers: readonly TrustedIssuer[];
  readonly #authority: ServingAuthority | undefined;
  readonly #metadata: JsonObject;
  readonly #signatures = new VerifiedSignatures();

  constructor(options: ProtectedResourceOptions) {
    const resource = checkedUrl(options.resource, "the resource identifier");
    if (resource.protocol !== "https:" && resource.protocol !== "http:")
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `the resource identifier must be an http(s) URL, got ${resource.href}`,
      );
    if (!Array.isArray(options.authorizationServers) || options.authorizationServers.length === 0)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "a protected resource needs at least one authorization server (MCP: authorization_servers is required)",
      );
    const scopes = options.scopes ?? [];
    const bad = scopes.find((s) => !isScopeToken(s));
    if (bad !== undefined)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `not a scope token: ${JSON.stringify(bad).slice(0, 60)}`);
    // The identifier exactly as configured: it is what tokens' `aud` must hold, compared as a
    // string (a URL object would add a "/" to a bare origin, which the SDK sends without).
    this.resource = options.resource;
    this.authorizationServers = [...new Set(options.authorizationServers)];
    this.scopes = [...new Set(scopes)];
    this.metadataUrl = protectedResourceMetadataUrl(resource);
    this.#authority = options.authority;
    this.#issuers = this.authorizationServers.map((issuer) => this.#trusted(issuer, options));
    this.#metadata = {
      resource: this.resource,
      authorization_servers: [...this.authorizationServers],
      ...(this.scopes.length > 0 ? { scopes_supported: [...this.scopes] } : {}),
      bearer_methods_supported: ["header"],
      ...(options.resourceName !== undefined ? { resource_name: options.resourceName } : {}),
    };
  }

  #trusted(issuer: string, options: ProtectedResourceOptions): TrustedIssuer {
    checkedUrl(issuer, `authorization server ${JSON.stringify(issuer)}`);
    const authority = this.#authority;
    if (authority !== undefined && issuer === authority.oauthIssuer) {
      // Read live: a remote authority learns of more trust domains as it goes.
      return {
        issuer,
        bundles: authority,
        get trustDomains() {
          return authority.trustDomains;
        },
      };
    }
    return { issuer, keys: new IssuerKeys({ ...options.issuerKeys, issuer }) };
  }

  /** The RFC 9728 document (a copy). */
  metadata(): JsonObject {
    return structuredClone(this.#metadata);
  }

  /**
   * The paths the metadata is served at on a server whose endpoint is at `localPath`: the
   * resource's path inserted (RFC 9728 §3.1), the local endpoint's (behind a proxy that maps
   * paths), and the root (the MCP extension clients fall back to).
   */
  metadataPaths(localPath?: string): string[] {
    const paths = [protectedResourceMetadataPath(this.resource), PROTECTED_RESOURCE_WELL_KNOWN];
    if (localPath !== undefined) paths.push(protectedResourceMetadataPath(new URL(localPath, "http://x")));
    return [...new Set(paths)];
  }

  /**
   * The bearer credential of a request's `Authorization` header: undefined when it carries none
   * (no header, or another scheme); the verified caller; or a throw of the AztpError that says
   * why not (ERR_OAUTH_TOKEN_*, ERR_OAUTH_ISSUER_* when an issuer's keys cannot be had, or the
   * authority's own when its revocation state is too old to trust), which `challenge` answers.
   */
  async authenticate(authorization: string | undefined, now?: Date): Promise<BearerCaller | undefined> {
    const checked = await this.credential(authorization, now);
    if (checked.error !== undefined) throw checked.error;
    return checked.bearer;
  }

  /**
   * As `authenticate`, without throwing: a refusal comes with what the token it presented said
   * of its caller (`presented`), so that the refusal can be recorded as a refused call's caller is.
   */
  async credential(authorization: string | undefined, now?: Date): Promise<CredentialCheck> {
    if (authorization === undefined) return { bearer: undefined };
    const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+(.*))?$/.exec(authorization);
    if (m === null || (m[1] as string).toLowerCase() !== "bearer") return { bearer: undefined };
    const compact = (m[2] ?? "").trim();
    let token: AccessToken;
    try {
      // RFC 6750 §2.1 b64token; a JWS uses only its URL-safe subset.
      if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(compact))
        throw new AztpError(ErrorCodes.OAUTH_TOKEN_MALFORMED, "the Authorization header is not `Bearer <token>`", {
          rule: "format",
        });
      const authority = this.#authority;
      token = await verifyAccessToken(compact, {
        resource: this.resource,
        issuers: this.#issuers,
        signatures: this.#signatures,
        ...(authority !== undefined ? { isRevoked: (id: string) => this.#revoked(authority, id) } : {}),
        ...(now !== undefined ? { time: now } : {}),
      });
    } catch (e) {
      const error =
        e instanceof AztpError
          ? e
          : new AztpError(
              ErrorCodes.UNEXPECTED,
              `the access token could not be checked: ${(e as Error)?.message ?? String(e)}`,
              { cause: e },
            );
      return { error, presented: this.#claimed(compact) };
    }
    const fromBundle = this.#authority !== undefined && token.issuer === this.#authority.oauthIssuer;
    // Only the serving authority's issuer may name a person by their own provider: it verified
    // their ID token against the providers its trust domain trusts.
    const person = fromBundle ? token.person : undefined;
    const workload = fromBundle && person === undefined && token.spiffeId !== undefined;
    const caller =
      person !== undefined
        ? person.id
        : workload
          ? (token.spiffeId as SpiffeId).toString()
          : issuerQualifiedSubject(token.issuer, token.subject);
    const missing = missingScopes(token, this.scopes);
    if (missing.length > 0)
      return {
        error: new AztpError(
          ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING,
          `access token: the token lacks the scope${missing.length > 1 ? "s" : ""} ${missing.join(" ")} this resource requires`,
          { rule: "scope" },
        ),
        // Verified, but no BearerCaller: one that lacks a scope must not pass for one that has it.
        presented: { caller, verified: true, jti: token.jti },
      };
    const bearer: BearerCaller = Object.freeze({
      token,
      caller,
      workload,
      compact,
      ...(person !== undefined ? { person } : {}),
    });
    verified.add(bearer);
    return { bearer };
  }

  /**
   * Who a token that did not verify claims to be, by the rule a verified one is named by (a
   * SPIFFE ID only from the serving authority's issuer), and its jti: for the record only.
   */
  #claimed(compact: string): PresentedCredential {
    const claims = peekClaims(compact);
    const text = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);
    const iss = text(claims?.iss);
    const sub = text(claims?.sub);
    let caller = "unknown";
    if (iss !== undefined && sub !== undefined) {
      caller = issuerQualifiedSubject(iss, sub);
      const subId = claims?.sub_id as Record<string, unknown> | undefined;
      if (this.#authority !== undefined && iss === this.#authority.oauthIssuer && typeof subId?.iss === "string") {
        caller = issuerQualifiedSubject(subId.iss, sub);
      } else if (this.#authority !== undefined && iss === this.#authority.oauthIssuer) {
        try {
          caller = SpiffeId.parse(sub).toString();
        } catch {
          // not a workload's subject: kept issuer-qualified
        }
      }
    }
    return { caller, verified: false, jti: text(claims?.jti) };
  }

  /** A subject of a trust domain the authority serves is checked against its revocations; others it knows nothing of. */
  #revoked(authority: ServingAuthority, id: string): boolean {
    let td: string;
    try {
      td = SpiffeId.parse(id).trustDomain;
    } catch {
      return true;
    }
    return authority.trustDomains.includes(td) ? authority.isRevoked(id) : false;
  }

  /**
   * The answer to a request refused for its credential (RFC 6750 §3, MCP "Error Handling"):
   * no credential (`error` undefined, or ERR_OAUTH_TOKEN_MISSING): 401 naming the metadata and
   * the required scopes, no error code (§3.1: none when the request had no credential);
   * insufficient scope: 403 `insufficient_scope` with the scopes required; an invalid token:
   * 401 `invalid_token`; an issuer or revocation state that cannot be had: 503, no challenge.
   */
  challenge(error?: AztpError): Challenge {
    const scope = this.scopes.length > 0 ? `, scope="${headerValue(this.scopes.join(" "))}"` : "";
    const metadata = `resource_metadata="${headerValue(this.metadataUrl)}"`;
    if (error === undefined || error.code === ErrorCodes.OAUTH_TOKEN_MISSING) {
      return {
        status: 401,
        header: `Bearer ${metadata}${scope}`,
        error:
          error ??
          new AztpError(
            ErrorCodes.OAUTH_TOKEN_MISSING,
            `this request needs a credential: an access token for ${this.resource} (Authorization: Bearer, see ${this.metadataUrl}) or an AZTP-signed call`,
          ),
      };
    }
    const description = `, error_description="${headerValue(error.message)}"`;
    if (error.code === ErrorCodes.OAUTH_TOKEN_SCOPE_MISSING)
      return {
        status: 403,
        header: `Bearer error="insufficient_scope"${scope}, ${metadata}${description}`,
        error,
      };
    if (error.code.startsWith("ERR_OAUTH_TOKEN_"))
      return { status: 401, header: `Bearer error="invalid_token"${scope}, ${metadata}${description}`, error };
    return { status: 503, header: undefined, error };
  }
}
