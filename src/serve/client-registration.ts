/**
 * The clients of the authorization code flow: who a `client_id` is, and where it may be sent back.
 *
 * Two kinds, as the MCP authorization spec (2025-11-25 onward) lets hosts choose:
 * - a **Client ID Metadata Document**: the `client_id` is an https URL and the document there is
 *   the client's metadata (oauth/client-metadata-document.ts fetches, checks and caches it);
 * - **dynamic registration** (RFC 7591, `POST /oauth/register`) for hosts that predate them.
 *   Registration keeps nothing: the `client_id` returned is itself the registration, a compact
 *   JWS (`typ: aztp-client+jwt`) signed with the trust domain's JWT key naming this issuer and
 *   the redirect URIs registered. Any replica reads it, a restart loses nothing, and a flood of
 *   registrations fills no table; a JWT key rotated out ends the registrations it signed (the
 *   host gets `invalid_client` and registers again, as the MCP SDK does by itself).
 *
 * Every client is public (`token_endpoint_auth_method: none`): a host on a person's machine
 * cannot keep a secret, and PKCE is its proof.
 */
import { randomUUID, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { ClientMetadataDocuments, isUrlClientId, type OAuthClient } from "../oauth/client-metadata-document.js";
import { redirectUriProblem } from "../oauth/redirect-uri.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { decodeCompact, signCompact, verifyDecoded } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import type { RouteAnswer } from "./routes.js";

export const REGISTERED_CLIENT_TYP = "aztp-client+jwt";

export interface ClientRegistry {
  /** The client `clientId` names; throws ERR_OAUTH_CLIENT_UNKNOWN or ERR_OAUTH_CLIENT_METADATA_*. */
  client(clientId: string): Promise<OAuthClient>;
  /** RFC 7591: registers a client from its metadata; the answer's body is the registration. */
  register(metadata: unknown): RouteAnswer;
}

export interface ClientRegistryDeps {
  /** This authorization server's issuer identifier (read live: set at start). */
  issuer(): string;
  trustDomain(): string;
  bundles: BundleSource;
  signingKey(trustDomain: string): { key: KeyObject; kid: string };
  documents: ClientMetadataDocuments;
}

function unknown(message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_CLIENT_UNKNOWN, message);
}

function metadataInvalid(rule: string, message: string): AztpError {
  return new AztpError(ErrorCodes.OAUTH_CLIENT_METADATA_INVALID, `client registration: ${message}`, { rule });
}

export function clientRegistry(d: ClientRegistryDeps): ClientRegistry {
  const registered = (clientId: string): OAuthClient => {
    let decoded;
    try {
      decoded = decodeCompact(clientId, DEFAULT_ALGORITHMS);
    } catch {
      throw unknown("client_id is neither a client this server registered nor an https URL (a metadata document)");
    }
    const { header, payload } = decoded;
    const td = d.trustDomain();
    const key =
      typeof header.kid === "string"
        ? d.bundles.getBundleForTrustDomain(td)?.jwtAuthorities.get(header.kid)
        : undefined;
    if (header.typ !== REGISTERED_CLIENT_TYP || key === undefined || !verifyDecoded(decoded, key))
      throw unknown("client_id is not a registration of this server (or its key was rotated out: register again)");
    if (payload.iss !== d.issuer()) throw unknown("client_id was registered at another authorization server");
    const uris = payload.redirect_uris;
    if (!Array.isArray(uris) || !uris.every((u) => typeof u === "string"))
      throw unknown("client_id names no redirect URIs");
    return {
      clientId,
      redirectUris: uris as string[],
      ...(typeof payload.client_name === "string" ? { clientName: payload.client_name } : {}),
      tokenEndpointAuthMethod: "none",
      kind: "registered",
    };
  };

  return {
    async client(clientId: string): Promise<OAuthClient> {
      if (typeof clientId !== "string" || clientId.length === 0 || clientId.length > 8192)
        throw unknown("client_id is required");
      return isUrlClientId(clientId) ? d.documents.client(clientId) : registered(clientId);
    },

    register(metadata: unknown): RouteAnswer {
      if (!isJsonObject(metadata)) throw metadataInvalid("document", "the body is a JSON object of client metadata");
      const uris = metadata.redirect_uris;
      if (!Array.isArray(uris) || uris.length === 0 || uris.length > 20)
        throw metadataInvalid("redirect_uris", "redirect_uris must list 1 to 20 redirect URIs");
      for (const u of uris) {
        const problem = redirectUriProblem(u);
        if (problem !== undefined)
          throw metadataInvalid("redirect_uris", `redirect URI ${JSON.stringify(u)?.slice(0, 120)} ${problem}`);
      }
      const grants = metadata.grant_types;
      if (grants !== undefined && (!Array.isArray(grants) || !grants.includes("authorization_code")))
        throw metadataInvalid(
          "grant_types",
          "grant_types, when given, includes authorization_code: this server registers hosts for people",
        );
      const name = typeof metadata.client_name === "string" ? metadata.client_name.slice(0, 200) : undefined;
      const td = d.trustDomain();
      const { key, kid } = d.signingKey(td);
      const iat = Math.floor(Date.now() / 1000);
      const clientId = signCompact(
        { typ: REGISTERED_CLIENT_TYP, kid },
        {
          iss: d.issuer(),
          redirect_uris: uris,
          ...(name !== undefined ? { client_name: name } : {}),
          iat,
          jti: randomUUID(),
        },
        key,
      );
      // RFC 7591 §3.2.1: the metadata as registered; the server's own choices replace the client's.
      return {
        status: 201,
        body: {
          client_id: clientId,
          client_id_issued_at: iat,
          redirect_uris: uris,
          ...(name !== undefined ? { client_name: name } : {}),
          token_endpoint_auth_method: "none",
          grant_types: ["authorization_code"],
          response_types: ["code"],
          ...(typeof metadata.scope === "string" ? { scope: metadata.scope.slice(0, 1000) } : {}),
        },
        headers: { pragma: "no-cache" },
      };
    },
  };
}

/** RFC 7591 §3.2.2's error answer for a registration refused. */
export function registrationErrorAnswer(e: AztpError): RouteAnswer | undefined {
  if (e.code !== ErrorCodes.OAUTH_CLIENT_METADATA_INVALID) return undefined;
  return {
    status: 400,
    body: {
      error: e.rule === "redirect_uris" ? "invalid_redirect_uri" : "invalid_client_metadata",
      error_description: e.message
        .replace(/["\\]/g, "'")
        .replace(/[^\x20-\x7e]/g, "?")
        .slice(0, 1000),
      code: e.code,
      ...(e.rule !== undefined ? { rule: e.rule } : {}),
    },
    headers: { pragma: "no-cache" },
  };
}
