/**
 * `aztp serve` as an OAuth 2.1 authorization server for workloads (the MCP authorization spec's
 * `io.modelcontextprotocol/oauth-client-credentials` extension): RFC 8414 metadata, the JWKS of
 * the trust domains' JWT keys, and a token endpoint for `client_credentials` where the client
 * authenticates with its SVID (oauth/client-assertion.ts) and never with a secret.
 *
 * The routes use the service's plumbing (routes.ts' Route, one log line per request) but answer
 * their errors as RFC 6749 error JSON (oauth-errors.ts), since OAuth libraries read those.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { DEFAULT_ALGORITHMS, algorithmForKey } from "../spiffe/keys.js";
import { oauthErrorAnswer } from "./oauth-errors.js";
import type { Route, RouteAnswer, RouteSettings } from "./routes.js";

/** Where the OAuth routes live, relative to the issuer (the service's public URL). */
export const OAUTH_PATHS = Object.freeze({
  metadata: "/.well-known/oauth-authorization-server",
  jwks: "/oauth/jwks",
  token: "/oauth/token",
  authorize: "/oauth/authorize",
});

export interface OAuthRouteSettings {
  /** `scopes_supported`: when given, a scope outside it is never granted. */
  scopesSupported?: readonly string[] | undefined;
}

/** The RFC 8414 document of the authorization server whose issuer identifier is `issuer`. */
export function authorizationServerMetadata(issuer: string, options: OAuthRouteSettings = {}): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    issuer,
    token_endpoint: `${issuer}${OAUTH_PATHS.token}`,
    jwks_uri: `${issuer}${OAUTH_PATHS.jwks}`,
    // RFC 8414 lets a server without an interactive flow leave this out, but the MCP SDK's
    // metadata schema (1.x and 2.x) requires it: it names an endpoint that answers
    // unsupported_response_type, and response_types_supported says no flow runs there.
    authorization_endpoint: `${issuer}${OAUTH_PATHS.authorize}`,
    response_types_supported: [],
    grant_types_supported: ["client_credentials"],
    token_endpoint_auth_methods_supported: ["private_key_jwt"],
    token_endpoint_auth_signing_alg_values_supported: [...DEFAULT_ALGORITHMS],
  };
  if (options.scopesSupported !== undefined) doc.scopes_supported = [...options.scopesSupported];
  return doc;
}

/** The JWK of a trust domain's JWT key as RFC 7517 publishes it for verifiers of access tokens. */
function publishedJwk(kid: string, key: KeyObject): Record<string, unknown> {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return { ...(pub.export({ format: "jwk" }) as Record<string, unknown>), kid, use: "sig", alg: algorithmForKey(pub) };
}

function errorAnswer(e: AztpError): RouteAnswer {
  const a = oauthErrorAnswer(e);
  return { status: a.status, body: a.body, headers: a.headers };
}

export function buildOAuthRoutes(s: RouteSettings, o: OAuthRouteSettings = {}): Route[] {
  const a = s.backend.authority;
  const cacheable = { "cache-control": `public, max-age=${Math.floor(s.refreshHintSeconds / 2)}` };
  return [
    {
      method: "GET",
      // RFC 8414 §3: for an issuer with a path, the path follows the well-known suffix.
      path: /^\/\.well-known\/oauth-authorization-server(\/.*)?$/,
      auth: false,
      errorAnswer,
      handle: async (c) => {
        const issuer = a.oauthIssuer;
        const suffix = c.params[0] ?? "";
        const path = new URL(issuer).pathname.replace(/\/$/, "");
        if (suffix !== "" && suffix !== path)
          throw new AztpError(ErrorCodes.SERVE_ROUTE_NOT_FOUND, `no authorization server at ${suffix.slice(0, 200)}`);
        return { status: 200, body: authorizationServerMetadata(issuer, o), headers: cacheable };
      },
    },
    {
      method: "GET",
      path: /^\/oauth\/jwks$/,
      auth: false,
      errorAnswer,
      handle: async (c) => {
        // As the bundle endpoint: while the store is unreachable the keys held are still the keys.
        await c.fresh().catch((e: unknown) => {
          if (!(e instanceof AztpError && e.code === ErrorCodes.AUTHORITY_STORE_FAILED)) throw e;
        });
        const keys: Array<Record<string, unknown>> = [];
        for (const td of a.trustDomains)
          for (const [kid, key] of a.bundle(td).jwtAuthorities) keys.push(publishedJwk(kid, key));
        return { status: 200, body: { keys }, headers: cacheable };
      },
    },
    {
      method: "GET",
      path: /^\/oauth\/authorize$/,
      auth: false,
      errorAnswer,
      handle: async () => {
        throw new AztpError(
          ErrorCodes.OAUTH_RESPONSE_TYPE_UNSUPPORTED,
          "this authorization server runs no interactive flow: workloads obtain tokens at the token endpoint with grant_type=client_credentials",
        );
      },
    },
  ];
}
