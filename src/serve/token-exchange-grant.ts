/**
 * The token endpoint's RFC 8693 grant (`urn:ietf:params:oauth:grant-type:token-exchange`): a
 * person's token (or an on-behalf-of token to extend to a sub-agent) for an on-behalf-of token
 * bound to the agent that asked (DESIGN §13). The rule is people/token-exchange.ts, the one the
 * embedded authority runs in-process; this file only reads the form and authenticates the actor.
 *
 * The actor authenticates with `actor_token` (type `urn:ietf:params:oauth:token-type:jwt`): a
 * private_key_jwt signed with its SVID key (`x5c`, or the key found from its registry record)
 * or its JWT-SVID, checked by the token endpoint's one client-assertion verifier and spent
 * (single-use) once the exchange has succeeded. The token is bound (`cnf.jkt`) to the key the
 * actor proved: the assertion's. A JWT-SVID proves no key of the agent's own (the trust domain
 * signed it), so the token is then bound to the newest unexpired X.509-SVID key of the actor's
 * registry record: only the process holding that SVID's key can use it.
 *
 * Client authentication is optional beside it: a `client_id` or `client_assertion` sent must
 * name the actor, so nobody presents another agent's actor token as their own.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import {
  JWT_BEARER_ASSERTION_TYPE,
  spendClientAssertion,
  type ClientAssertionVerifier,
} from "../oauth/client-assertion.js";
import { parseScopeParam } from "../oauth/token-request.js";
import { exchangeToken, TOKEN_TYPE } from "../people/token-exchange.js";
import { requireInScope } from "../store/api-key-scope.js";
import type { FormParams } from "./http-io.js";
import type { ServeBackend } from "./open.js";
import type { TokenBuckets } from "./rate-limit.js";
import { takeOrRefuse, type RouteAnswer, type RouteContext } from "./routes.js";

export { TOKEN_EXCHANGE_GRANT } from "../people/token-exchange.js";

export interface TokenExchangeGrantSettings {
  backend: ServeBackend;
  /** The token endpoint's verifier of client assertions (the one verifier). */
  assertions: ClientAssertionVerifier;
  /** Token issuance per client (SPIFFE ID), per replica: shared with client_credentials. */
  tokenBuckets: TokenBuckets;
}

/** One form parameter: absent and empty are both "not given" (RFC 6749 §3.1). */
function param(form: FormParams, name: string): string | undefined {
  const v = form.get(name);
  return v === undefined || v === "" ? undefined : v;
}

function missing(name: string, why: string): never {
  throw new AztpError(ErrorCodes.OAUTH_REQUEST_INVALID, `${name} is required: ${why}`, { rule: name });
}

/** The newest unexpired X.509-SVID key of the actor's record (svidKeys is kept newest first). */
function newestSvidKey(backend: ServeBackend, id: string, now: Date): KeyObject {
  const live = (backend.authority.heldRecord(id)?.svidKeys ?? []).filter((k) => Date.parse(k.notAfter) > now.getTime());
  for (const k of live) {
    try {
      return createPublicKey({ key: k.jwk as JsonWebKey, format: "jwk" });
    } catch {
      // An unreadable record entry binds nothing: the next one, else refused below.
    }
  }
  throw new AztpError(
    ErrorCodes.TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED,
    `${id} authenticated with a JWT-SVID but holds no unexpired X.509-SVID whose key the token could be bound to`,
    { rule: "key" },
  );
}

/** Answers one token-exchange request (RFC 8693 §2.2.1), or throws the AztpError the error table maps. */
export async function tokenExchangeGrant(
  c: RouteContext,
  form: FormParams,
  g: TokenExchangeGrantSettings,
): Promise<RouteAnswer> {
  const requested = param(form, "requested_token_type");
  if (requested !== undefined && requested !== TOKEN_TYPE.jwt)
    throw new AztpError(
      ErrorCodes.OAUTH_REQUEST_INVALID,
      `requested_token_type ${JSON.stringify(requested.slice(0, 100))} is not issued here: the on-behalf-of token is ${TOKEN_TYPE.jwt}`,
      { rule: "requested_token_type" },
    );
  const subjectToken = param(form, "subject_token") ?? missing("subject_token", "the person's token to exchange");
  const subjectTokenType =
    param(form, "subject_token_type") ?? missing("subject_token_type", "RFC 8693 §2.1 names the subject token's type");
  const actorToken =
    param(form, "actor_token") ??
    missing("actor_token", "the agent authenticates with a private_key_jwt signed by its SVID key, or its JWT-SVID");
  const actorTokenType = param(form, "actor_token_type") ?? missing("actor_token_type", `send ${TOKEN_TYPE.jwt}`);
  if (actorTokenType !== TOKEN_TYPE.jwt)
    throw new AztpError(
      ErrorCodes.OAUTH_REQUEST_INVALID,
      `actor_token_type ${JSON.stringify(actorTokenType.slice(0, 100))} is not ${TOKEN_TYPE.jwt}`,
      { rule: "actor_token_type" },
    );
  if (param(form, "audience") !== undefined)
    throw new AztpError(
      ErrorCodes.OAUTH_REQUEST_INVALID,
      "audience is not taken here: name the callees (SPIFFE IDs, or spiffe://<td>) with resource (RFC 8707)",
      { rule: "audience" },
    );
  const resources = form.all("resource");
  const scopes = parseScopeParam(param(form, "scope"));

  // Revocations, keys, parents and trusted providers as committed, whichever replica wrote them.
  await c.fresh();
  const now = new Date();
  const actor = g.assertions.verify(
    { assertionType: JWT_BEARER_ASSERTION_TYPE, assertion: actorToken, clientId: param(form, "client_id") },
    now,
  );
  const id = actor.clientId.toString();
  const clientAssertion = param(form, "client_assertion");
  const clientAssertionType = param(form, "client_assertion_type");
  let client: typeof actor | undefined;
  if (clientAssertion !== undefined || clientAssertionType !== undefined) {
    client = g.assertions.verify({ assertionType: clientAssertionType, assertion: clientAssertion }, now);
    if (client.clientId.toString() !== id)
      throw new AztpError(
        ErrorCodes.OAUTH_CLIENT_ID_MISMATCH,
        `the client ${client.clientId.toString()} presents the actor token of ${id}: an agent exchanges only as itself`,
        { rule: "actor_token" },
      );
  }
  c.authenticatedClient(id);
  if (c.key.keyId !== "") requireInScope(c.key, id, "actor_token");
  const key = actor.key ?? newestSvidKey(g.backend, id, now);
  takeOrRefuse(g.tokenBuckets, id, `client ${id} obtains tokens`);

  const result = await exchangeToken(
    { subjectToken, subjectTokenType, resources, scopes },
    { spiffeId: id, key },
    { ...g.backend.authority.exchangeDeps(), now },
  );
  // Last: a request refused for any other reason leaves its assertions unspent.
  await spendClientAssertion(actor, g.backend.replay);
  if (client !== undefined && client.jti !== actor.jti) await spendClientAssertion(client, g.backend.replay);

  const body: Record<string, unknown> = {
    access_token: result.token,
    issued_token_type: result.issuedTokenType,
    // RFC 8693 §2.2.1: not an OAuth access token to send as a Bearer; it rides in signed calls.
    token_type: "N_A",
    expires_in: Math.max(0, Math.floor((result.expiresAt.getTime() - now.getTime()) / 1000)),
  };
  if (result.scopes.length > 0) body.scope = result.scopes.join(" ");
  return { status: 200, body, headers: { pragma: "no-cache" } };
}
