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
import { ClientAssertionVerifier, spendClientAssertion } from "../oauth/client-assertion.js";
import { grantScopes, parseResource, parseScopeParam } from "../oauth/token-request.js";
import { peekClaims } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS, algorithmForKey } from "../spiffe/keys.js";
import { requireInScope } from "../store/api-key-scope.js";
import { AUTHORIZATION_CODE_GRANT, type AuthorizationCodeFlow } from "./authorization-code.js";
import { registrationErrorAnswer, type ClientRegistry } from "./client-registration.js";
import { oauthErrorAnswer } from "./oauth-errors.js";
import type { TokenBuckets } from "./rate-limit.js";
import { takeOrRefuse, type Route, type RouteAnswer, type RouteSettings } from "./routes.js";
import { TOKEN_EXCHANGE_GRANT, tokenExchangeGrant } from "./token-exchange-grant.js";

/** Where the OAuth routes live, relative to the issuer (the service's public URL). */
export const OAUTH_PATHS = Object.freeze({
  metadata: "/.well-known/oauth-authorization-server",
  jwks: "/oauth/jwks",
  token: "/oauth/token",
  authorize: "/oauth/authorize",
});

export interface OAuthRouteSettings {
  /** `scopes_supported`: when given, a scope outside it is never granted, and it is the default of a request naming none. */
  scopesSupported?: readonly string[] | undefined;
  /** Token issuance per client (SPIFFE ID), per replica. */
  tokenBuckets: TokenBuckets;
  /** Lifetime of the access tokens minted (capped by the client's ancestors' SVIDs). */
  accessTokenTtlSeconds?: number | undefined;
  /** People at hosts (authorization code, login at an OpenID Provider): authorization-code.ts. */
  people?: { flow: AuthorizationCodeFlow; clients: ClientRegistry } | undefined;
}

const GRANT_TYPE = "client_credentials";

/** One form parameter: absent and empty are both "not given" (RFC 6749 §3.1). */
function param(form: ReadonlyMap<string, string>, name: string): string | undefined {
  const v = form.get(name);
  return v === undefined || v === "" ? undefined : v;
}

/** The RFC 8414 document of the authorization server whose issuer identifier is `issuer`. */
export function authorizationServerMetadata(
  issuer: string,
  options: Pick<OAuthRouteSettings, "scopesSupported" | "people"> = {},
): Record<string, unknown> {
  const doc: Record<string, unknown> = {
    issuer,
    token_endpoint: `${issuer}${OAUTH_PATHS.token}`,
    jwks_uri: `${issuer}${OAUTH_PATHS.jwks}`,
    // RFC 8414 lets a server without an interactive flow leave this out, but the MCP SDK's
    // metadata schema (1.x and 2.x) requires it: it names an endpoint that answers
    // unsupported_response_type, and response_types_supported says no flow runs there.
    authorization_endpoint: `${issuer}${OAUTH_PATHS.authorize}`,
    response_types_supported: [],
    grant_types_supported: ["client_credentials", TOKEN_EXCHANGE_GRANT],
    token_endpoint_auth_methods_supported: ["private_key_jwt"],
    token_endpoint_auth_signing_alg_values_supported: [...DEFAULT_ALGORITHMS],
  };
  if (options.scopesSupported !== undefined) doc.scopes_supported = [...options.scopesSupported];
  if (options.people !== undefined) {
    Object.assign(doc, options.people.flow.metadata(issuer));
    doc.grant_types_supported = [...(doc.grant_types_supported as string[]), AUTHORIZATION_CODE_GRANT];
    doc.token_endpoint_auth_methods_supported = [...(doc.token_endpoint_auth_methods_supported as string[]), "none"];
  }
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

export function buildOAuthRoutes(s: RouteSettings, o: OAuthRouteSettings): Route[] {
  const a = s.backend.authority;
  const cacheable = { "cache-control": `public, max-age=${Math.floor(s.refreshHintSeconds / 2)}` };
  const assertions = new ClientAssertionVerifier({
    bundles: a,
    trustDomains: () => a.trustDomains,
    clients: { client: (id) => a.heldRecord(id), isRevoked: (id, serial) => a.isRevoked(id, serial) },
    // RFC 7523bis asks for the issuer; RFC 7523 and the SPIFFE draft's example use the token endpoint.
    audiences: () => [a.oauthIssuer, `${a.oauthIssuer}${OAUTH_PATHS.token}`],
  });
  return [
    {
      method: "POST",
      path: /^\/oauth\/token$/,
      // An API key is optional: sent, it narrows which clients may obtain tokens through it.
      auth: "optional",
      errorAnswer,
      handle: async (c) => {
        const form = await c.form();
        const grantType = param(form, "grant_type");
        if (grantType === undefined)
          throw new AztpError(ErrorCodes.OAUTH_REQUEST_INVALID, "grant_type is required", { rule: "grant_type" });
        if (grantType === AUTHORIZATION_CODE_GRANT && o.people !== undefined) return o.people.flow.redeem(form);
        if (grantType === TOKEN_EXCHANGE_GRANT)
          return tokenExchangeGrant(c, form, { backend: s.backend, assertions, tokenBuckets: o.tokenBuckets });
        if (grantType !== GRANT_TYPE)
          throw new AztpError(
            ErrorCodes.OAUTH_GRANT_TYPE_UNSUPPORTED,
            `grant_type ${JSON.stringify(grantType.slice(0, 100))} is not supported: workloads use ${GRANT_TYPE} (or ${TOKEN_EXCHANGE_GRANT} to act for a person)`,
          );
        // Revocations, keys and policies as committed, whichever replica wrote them.
        await c.fresh();
        const client = assertions.verify({
          assertionType: param(form, "client_assertion_type"),
          assertion: param(form, "client_assertion"),
          clientId: param(form, "client_id"),
        });
        const id = client.clientId.toString();
        c.authenticatedClient(id);
        if (c.key.keyId !== "") requireInScope(c.key, id, "client_id");
        const resource = parseResource(param(form, "resource"));
        const scopes = grantScopes({
          clientId: id,
          resource,
          scopes: parseScopeParam(param(form, "scope")),
          policies: await a.policiesOf(id),
          relations: await a.relations(id),
          scopesSupported: o.scopesSupported,
        });
        takeOrRefuse(o.tokenBuckets, id, `client ${id} obtains tokens`);
        // Last: a request refused for any other reason leaves its assertion unspent.
        await spendClientAssertion(client, s.backend.replay);
        const now = new Date();
        const token = a.mintAccessToken(id, {
          resource,
          scopes,
          now,
          ...(o.accessTokenTtlSeconds !== undefined ? { ttlSeconds: o.accessTokenTtlSeconds } : {}),
        });
        const exp = peekClaims(token)?.exp as number;
        const body: Record<string, unknown> = {
          access_token: token,
          token_type: "Bearer",
          expires_in: Math.max(0, exp - Math.floor(now.getTime() / 1000)),
        };
        if (scopes.length > 0) body.scope = scopes.join(" ");
        return { status: 200, body, headers: { pragma: "no-cache" } };
      },
    },
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
    ...(o.people !== undefined ? peopleRoutes(o.people) : []),
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

/** The routes of people's hosts: the authorization endpoint, the provider's callback, registration. */
function peopleRoutes(p: { flow: AuthorizationCodeFlow; clients: ClientRegistry }): Route[] {
  return [
    // Errors before the redirect URI is known good are shown, as the service's JSON errors.
    { method: "GET", path: /^\/oauth\/authorize$/, auth: false, handle: (c) => p.flow.authorize(c) },
    { method: "GET", path: /^\/oauth\/callback$/, auth: false, handle: (c) => p.flow.callback(c) },
    {
      method: "POST",
      path: /^\/oauth\/register$/,
      auth: false,
      errorAnswer: (e) => registrationErrorAnswer(e) ?? errorAnswer(e),
      handle: async (c) => p.clients.register(await c.body()),
    },
  ];
}
