/**
 * The OpenID Providers a trust domain trusts to say who a person is (people/person-issuers.ts),
 * managed over the API as `aztp issuer` and `RemoteAuthority` do:
 *
 * - `GET  /v1/trust-domains/<td>/person-issuers` → `{ issuers: PersonIssuerConfig[] }`
 * - `POST /v1/trust-domains/<td>/person-issuers` `{ config }` → `{ issuer }` (added, or replacing
 *   the provider's earlier configuration)
 * - `POST /v1/trust-domains/<td>/person-issuers/remove` `{ issuer }` → `{ removed }`
 *
 * Trusting a provider lets it speak for every person acting through every agent of the trust
 * domain, so a change needs a key that covers the whole trust domain (as an unscoped key, or one
 * scoped to that trust domain alone); a key of a narrower prefix may read the list. The
 * configuration lives in the authority's config (`aztp_authority.config` on PostgreSQL), so
 * every replica sees a change after its next refresh.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { checkPersonIssuerConfig } from "../people/person-issuers.js";
import { requireInScope, requireTrustDomainInScope } from "../store/api-key-scope.js";
import { reqString } from "./http-io.js";
import { knownTrustDomain, trustDomainParam, type Route, type RouteContext, type RouteSettings } from "./routes.js";

export function buildPersonIssuerRoutes(s: RouteSettings): Route[] {
  const a = s.backend.authority;
  const trustDomainOf = (c: RouteContext): string => {
    const td = trustDomainParam(c.params[0] ?? "");
    knownTrustDomain(s, td);
    return td;
  };
  /** A change is trust-domain-wide: the key must cover spiffe://<td> itself, not only a part of it. */
  const requireWholeTrustDomain = (c: RouteContext, td: string): void => {
    requireInScope(c.key, `spiffe://${td}`, "trust domain");
  };
  return [
    {
      method: "GET",
      path: /^\/v1\/trust-domains\/([^/]+)\/person-issuers$/,
      auth: true,
      handle: async (c) => {
        const tdRaw = trustDomainParam(c.params[0] ?? "");
        // Before any lookup, so a 404 cannot tell a key what exists outside its scope.
        requireTrustDomainInScope(c.key, tdRaw);
        await c.fresh();
        const td = trustDomainOf(c);
        return { status: 200, body: { issuers: await a.personIssuers(td) } };
      },
    },
    {
      method: "POST",
      path: /^\/v1\/trust-domains\/([^/]+)\/person-issuers$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        requireWholeTrustDomain(c, trustDomainParam(c.params[0] ?? ""));
        const extra = Object.keys(body).filter((k) => k !== "config");
        if (extra.length > 0)
          throw new AztpError(
            ErrorCodes.ARGUMENT_INVALID,
            `request has unknown member(s): ${extra.slice(0, 5).join(", ")}`,
          );
        const config = checkPersonIssuerConfig(body.config);
        await c.fresh();
        const td = trustDomainOf(c);
        // A mutation reads the committed configuration under the store's lock itself.
        return { status: 200, body: { issuer: await a.addPersonIssuer(config, td) } };
      },
    },
    {
      method: "POST",
      path: /^\/v1\/trust-domains\/([^/]+)\/person-issuers\/remove$/,
      auth: true,
      handle: async (c) => {
        const body = await c.body();
        requireWholeTrustDomain(c, trustDomainParam(c.params[0] ?? ""));
        const issuer = reqString(body, "issuer", 2048);
        await c.fresh();
        const td = trustDomainOf(c);
        return { status: 200, body: { removed: await a.removePersonIssuer(issuer, td) } };
      },
    },
  ];
}
