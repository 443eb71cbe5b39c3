/**
 * One error class for the whole library, with a stable machine-readable `code`.
 *
 * Codes never change meaning once released: callers switch on them, the CLI prints them,
 * MCP error responses carry them. Messages are for people and may be reworded; they must
 * name the rule that failed and must never contain key material or whole tokens.
 */
export const ErrorCodes = {
  // SPIFFE IDs and trust domains (spiffe/spiffeid.ts)
  SPIFFEID_EMPTY: "ERR_SPIFFEID_EMPTY",
  SPIFFEID_SCHEME_INVALID: "ERR_SPIFFEID_SCHEME_INVALID",
  SPIFFEID_TRUST_DOMAIN_MISSING: "ERR_SPIFFEID_TRUST_DOMAIN_MISSING",
  SPIFFEID_TRUST_DOMAIN_CHAR_INVALID: "ERR_SPIFFEID_TRUST_DOMAIN_CHAR_INVALID",
  SPIFFEID_PATH_CHAR_INVALID: "ERR_SPIFFEID_PATH_CHAR_INVALID",
  SPIFFEID_PATH_SEGMENT_EMPTY: "ERR_SPIFFEID_PATH_SEGMENT_EMPTY",
  SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED: "ERR_SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED",
  SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED: "ERR_SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED",
  SPIFFEID_PATH_LEADING_SLASH_MISSING: "ERR_SPIFFEID_PATH_LEADING_SLASH_MISSING",
  SPIFFEID_ROOT_PATH_NOT_ALLOWED: "ERR_SPIFFEID_ROOT_PATH_NOT_ALLOWED",

  // PEM, keys and certificates (spiffe/pem.ts, spiffe/keys.ts)
  PEM_BLOCKS_MISSING: "ERR_PEM_BLOCKS_MISSING",
  CERT_MALFORMED: "ERR_CERT_MALFORMED",
  KEY_MALFORMED: "ERR_KEY_MALFORMED",
  KEY_MISSING: "ERR_KEY_MISSING",
  KEY_MISMATCH: "ERR_KEY_MISMATCH",
  KEY_UNSUPPORTED: "ERR_KEY_UNSUPPORTED",

  // X.509-SVIDs (spiffe/x509svid.ts)
  X509SVID_CERTIFICATES_MISSING: "ERR_X509SVID_CERTIFICATES_MISSING",
  X509SVID_URI_SAN_MISSING: "ERR_X509SVID_URI_SAN_MISSING",
  X509SVID_URI_SANS_TOO_MANY: "ERR_X509SVID_URI_SANS_TOO_MANY",
  X509SVID_SPIFFEID_INVALID: "ERR_X509SVID_SPIFFEID_INVALID",
  X509SVID_ROOT_PATH_NOT_ALLOWED: "ERR_X509SVID_ROOT_PATH_NOT_ALLOWED",
  X509SVID_SAN_NOT_CRITICAL: "ERR_X509SVID_SAN_NOT_CRITICAL",
  X509SVID_LEAF_CA_FLAG_SET: "ERR_X509SVID_LEAF_CA_FLAG_SET",
  X509SVID_LEAF_KEY_USAGE_MISSING: "ERR_X509SVID_LEAF_KEY_USAGE_MISSING",
  X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL: "ERR_X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL",
  X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING: "ERR_X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING",
  X509SVID_LEAF_KEY_CERT_SIGN_SET: "ERR_X509SVID_LEAF_KEY_CERT_SIGN_SET",
  X509SVID_LEAF_CRL_SIGN_SET: "ERR_X509SVID_LEAF_CRL_SIGN_SET",
  X509SVID_SIGNER_CA_FLAG_MISSING: "ERR_X509SVID_SIGNER_CA_FLAG_MISSING",
  X509SVID_SIGNER_KEY_CERT_SIGN_MISSING: "ERR_X509SVID_SIGNER_KEY_CERT_SIGN_MISSING",
  X509SVID_BUNDLE_MISSING: "ERR_X509SVID_BUNDLE_MISSING",
  X509SVID_UNTRUSTED: "ERR_X509SVID_UNTRUSTED",
  X509SVID_EXPIRED: "ERR_X509SVID_EXPIRED",
  X509SVID_NOT_YET_VALID: "ERR_X509SVID_NOT_YET_VALID",
  X509SVID_PATH_LENGTH_EXCEEDED: "ERR_X509SVID_PATH_LENGTH_EXCEEDED",
  X509SVID_SIGNATURE_INVALID: "ERR_X509SVID_SIGNATURE_INVALID",
  X509SVID_CRITICAL_EXTENSION_UNKNOWN: "ERR_X509SVID_CRITICAL_EXTENSION_UNKNOWN",
  /**
   * The SVID verified, but its identity (or an ancestor's) or its serial is revoked, per the
   * authority or its signed revocation list.
   */
  X509SVID_REVOKED: "ERR_X509SVID_REVOKED",

  // Trust bundles (spiffe/bundle.ts)
  BUNDLE_MALFORMED: "ERR_BUNDLE_MALFORMED",
  BUNDLE_KEYS_MISSING: "ERR_BUNDLE_KEYS_MISSING",
  BUNDLE_KID_MISSING: "ERR_BUNDLE_KID_MISSING",
  BUNDLE_X509_ENTRY_INVALID: "ERR_BUNDLE_X509_ENTRY_INVALID",
  BUNDLE_TRUST_DOMAIN_MISMATCH: "ERR_BUNDLE_TRUST_DOMAIN_MISMATCH",

  // JWS and JWT-SVIDs (spiffe/jws.ts, spiffe/jwtsvid.ts)
  JWT_MALFORMED: "ERR_JWT_MALFORMED",
  JWT_ALG_NOT_ALLOWED: "ERR_JWT_ALG_NOT_ALLOWED",
  JWT_TYP_INVALID: "ERR_JWT_TYP_INVALID",
  JWT_KID_MISSING: "ERR_JWT_KID_MISSING",
  JWT_KID_UNKNOWN: "ERR_JWT_KID_UNKNOWN",
  JWT_SIGNATURE_INVALID: "ERR_JWT_SIGNATURE_INVALID",
  JWT_CLAIM_MISSING: "ERR_JWT_CLAIM_MISSING",
  JWT_SUBJECT_INVALID: "ERR_JWT_SUBJECT_INVALID",
  JWT_EXPIRED: "ERR_JWT_EXPIRED",
  JWT_NOT_YET_VALID: "ERR_JWT_NOT_YET_VALID",
  JWT_AUDIENCE_MISMATCH: "ERR_JWT_AUDIENCE_MISMATCH",
  JWT_BUNDLE_MISSING: "ERR_JWT_BUNDLE_MISSING",

  // Authority and registry (authority/)
  AUTHORITY_NOT_INITIALIZED: "ERR_AUTHORITY_NOT_INITIALIZED",
  AUTHORITY_EXISTS: "ERR_AUTHORITY_EXISTS",
  AUTHORITY_CSR_INVALID: "ERR_AUTHORITY_CSR_INVALID",
  AUTHORITY_STORE_FAILED: "ERR_AUTHORITY_STORE_FAILED",
  AUTHORITY_REMOTE_UNAVAILABLE: "ERR_AUTHORITY_REMOTE_UNAVAILABLE",
  /** A PostgreSQL store was opened without the key-encryption key that seals its CA keys. */
  AUTHORITY_KEK_MISSING: "ERR_AUTHORITY_KEK_MISSING",
  /** The key-encryption key is malformed (not 32 bytes), or is not the one the stored CA keys were sealed under. */
  AUTHORITY_KEK_INVALID: "ERR_AUTHORITY_KEK_INVALID",
  /**
   * A signed revocation list is malformed or does not verify against the trust bundle (typ, issuer,
   * kid, signature).
   */
  REVOCATION_LIST_INVALID: "ERR_REVOCATION_LIST_INVALID",
  // The remote authority client and its feeds (client/remote-authority.ts, authority-http.ts,
  // bundle-feed.ts, revocation-feed.ts)
  /** The server's TLS certificate does not chain to the trust bundle, or its URI SAN is not the expected server ID. */
  AUTHORITY_REMOTE_UNTRUSTED: "ERR_AUTHORITY_REMOTE_UNTRUSTED",
  /**
   * A plain-http baseUrl whose host is not loopback, without allowInsecureHttp: the API key and
   * every answer would travel unprotected.
   */
  AUTHORITY_REMOTE_HTTP_NOT_ALLOWED: "ERR_AUTHORITY_REMOTE_HTTP_NOT_ALLOWED",
  /**
   * An https baseUrl with no trust bundle to check the server against (no trustBundle option, no
   * AZTP_TRUST_BUNDLE).
   */
  AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING: "ERR_AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING",
  /**
   * The remote authority answered with something that is not the API's JSON (not JSON, too large, a
   * member missing).
   */
  AUTHORITY_REMOTE_ANSWER_INVALID: "ERR_AUTHORITY_REMOTE_ANSWER_INVALID",
  /**
   * A revocation list is past its signed nextUpdate (exp, plus the clock tolerance): revocation
   * checks fail closed until a list signed since arrives.
   */
  REVOCATION_LIST_EXPIRED: "ERR_REVOCATION_LIST_EXPIRED",
  /**
   * A revocation list was signed without a validity window (iat and exp): nothing says it is
   * current, so it is refused.
   */
  REVOCATION_LIST_WINDOW_MISSING: "ERR_REVOCATION_LIST_WINDOW_MISSING",
  /**
   * A revocation list's thisUpdate (iat) is later than now plus the clock tolerance: the signer's
   * clock or this one is wrong.
   */
  REVOCATION_LIST_NOT_YET_VALID: "ERR_REVOCATION_LIST_NOT_YET_VALID",
  /**
   * A fetched revocation list has a lower sequence than the one held (an old list replayed):
   * refused, the held one kept.
   */
  REVOCATION_LIST_REPLAYED: "ERR_REVOCATION_LIST_REPLAYED",
  /** No revocation list is held for the trust domain an identity belongs to, so its revocation cannot be checked. */
  REVOCATION_LIST_MISSING: "ERR_REVOCATION_LIST_MISSING",
  /**
   * A fetched trust bundle has a lower spiffe_sequence than the one held (an old bundle replayed):
   * refused, the held one kept.
   */
  BUNDLE_REPLAYED: "ERR_BUNDLE_REPLAYED",
  IDENTITY_NOT_FOUND: "ERR_IDENTITY_NOT_FOUND",
  IDENTITY_REVOKED: "ERR_IDENTITY_REVOKED",
  IDENTITY_EXISTS: "ERR_IDENTITY_EXISTS",
  PARENT_INVALID: "ERR_PARENT_INVALID",
  TRUST_DOMAIN_NOT_ALLOWED: "ERR_TRUST_DOMAIN_NOT_ALLOWED",

  // Peers (spiffe/authorizer.ts)
  /** A peer proved an identity, but the authorizer (an expected ID, a list, a trust domain) does not accept it. */
  PEER_NOT_AUTHORIZED: "ERR_PEER_NOT_AUTHORIZED",

  // Signed invocations, receipts, delegations and proofs (invocation/)
  /** A proof of possession (MCP initialize) failed; `rule` says which check. */
  PROOF_INVALID: "ERR_PROOF_INVALID",
  INVOCATION_MISSING: "ERR_INVOCATION_MISSING",
  INVOCATION_MALFORMED: "ERR_INVOCATION_MALFORMED",
  INVOCATION_ALG_NOT_ALLOWED: "ERR_INVOCATION_ALG_NOT_ALLOWED",
  INVOCATION_UNTRUSTED: "ERR_INVOCATION_UNTRUSTED",
  INVOCATION_SIGNATURE_INVALID: "ERR_INVOCATION_SIGNATURE_INVALID",
  INVOCATION_ISSUER_MISMATCH: "ERR_INVOCATION_ISSUER_MISMATCH",
  INVOCATION_REVOKED: "ERR_INVOCATION_REVOKED",
  INVOCATION_AUDIENCE_MISMATCH: "ERR_INVOCATION_AUDIENCE_MISMATCH",
  INVOCATION_TOOL_MISMATCH: "ERR_INVOCATION_TOOL_MISMATCH",
  INVOCATION_ARGS_MISMATCH: "ERR_INVOCATION_ARGS_MISMATCH",
  INVOCATION_EXPIRED: "ERR_INVOCATION_EXPIRED",
  INVOCATION_NOT_YET_VALID: "ERR_INVOCATION_NOT_YET_VALID",
  INVOCATION_LIFETIME_TOO_LONG: "ERR_INVOCATION_LIFETIME_TOO_LONG",
  INVOCATION_REPLAYED: "ERR_INVOCATION_REPLAYED",
  INVOCATION_ACCESS_TOKEN_MISMATCH: "ERR_INVOCATION_ACCESS_TOKEN_MISMATCH",
  /**
   * A W3C `traceparent` handed over is not well formed (invocation/trace-context.ts); `rule` says
   * which part. One that comes with a call never fails it: the call starts a new trace, noted.
   */
  TRACE_CONTEXT_INVALID: "ERR_TRACE_CONTEXT_INVALID",
  DELEGATION_INVALID: "ERR_DELEGATION_INVALID",
  POLICY_DENIED: "ERR_POLICY_DENIED",
  POLICY_INVALID: "ERR_POLICY_INVALID",
  RECEIPT_MISSING: "ERR_RECEIPT_MISSING",
  RECEIPT_INVALID: "ERR_RECEIPT_INVALID",
  RECEIPT_MISMATCH: "ERR_RECEIPT_MISMATCH",
  /** The tool itself failed (threw, or answered with an error): the call was admitted and ran. */
  TOOL_FAILED: "ERR_TOOL_FAILED",
  /** The receipt's status disagrees with the answer: `ok` on an error, or `error`/`denied` on a success result. */
  RECEIPT_STATUS_MISMATCH: "ERR_RECEIPT_STATUS_MISMATCH",
  /** The callee a call is addressed to is revoked (its identity, an ancestor, or the SVID that signed its receipt). */
  CALLEE_REVOKED: "ERR_CALLEE_REVOKED",
  /**
   * A value RFC 8785 (JCS) cannot represent: a lone surrogate, a non-finite number, a non-JSON
   * type, or nesting too deep.
   */
  JSON_UNREPRESENTABLE: "ERR_JSON_UNREPRESENTABLE",
  /** A `__proto__` member in signed JSON: the MCP SDK's parse drops it, so what is signed would not be what is used. */
  JSON_PROTO_KEY_NOT_ALLOWED: "ERR_JSON_PROTO_KEY_NOT_ALLOWED",

  // LangChain wrappers (langchain/)
  /**
   * A LangChain agent made by createAgent was handed to secureConnect: its tool calls would go
   * unsigned, so it is refused (use createSecureAgent).
   */
  AGENT_UNSECURED: "ERR_AGENT_UNSECURED",
  /**
   * A tool the agent's middleware cannot sign for: it has no identity and the middleware has no
   * client to give it one.
   */
  TOOL_UNSECURED: "ERR_TOOL_UNSECURED",
  /** The model asked for a tool the agent does not have. */
  TOOL_UNKNOWN: "ERR_TOOL_UNKNOWN",

  // Audit log (audit/)
  /** The log file could not be written or read (a full disk, permissions); `recover()` retries. */
  AUDIT_IO_FAILED: "ERR_AUDIT_IO_FAILED",
  /** The log or its witness does not hold what was written (edited, cut, malformed). */
  AUDIT_CORRUPT: "ERR_AUDIT_CORRUPT",
  /** An append or checkpoint after `close()`. */
  AUDIT_CLOSED: "ERR_AUDIT_CLOSED",
  /** A call refused because its audit entry cannot be written (the log failed or is closed): nothing runs unaudited. */
  AUDIT_UNAVAILABLE: "ERR_AUDIT_UNAVAILABLE",
  /**
   * A C2SP signed note (a checkpoint of the log's Merkle tree, a cosignature, a verifier key) that
   * breaks the format (`rule` names which part), or whose signature by a known key fails.
   */
  AUDIT_NOTE_INVALID: "ERR_AUDIT_NOTE_INVALID",
  /** An inclusion or consistency proof that does not hold, or that is not a proof (`rule` says which). */
  AUDIT_PROOF_INVALID: "ERR_AUDIT_PROOF_INVALID",

  // The MCP binding and proxy (mcp/)
  /** An MCP request reused the id of a request still in flight on its connection. */
  MCP_REQUEST_ID_IN_USE: "ERR_MCP_REQUEST_ID_IN_USE",
  /**
   * An `io.aztp/challenge` at initialize that is not `{ nonce: 16 to 256 base64url characters,
   * client?: a SPIFFE/AZTP ID }`.
   */
  MCP_CHALLENGE_INVALID: "ERR_MCP_CHALLENGE_INVALID",
  /**
   * An MCP message the binding and the MCP SDK could read differently: an answer with both `result`
   * and `error`, or a request or answer with members the SDK's strict schemas drop.
   */
  MCP_MESSAGE_INVALID: "ERR_MCP_MESSAGE_INVALID",
  /** A hook of the MCP binding threw; the request was answered with this error instead of being left unanswered. */
  MCP_HOOK_FAILED: "ERR_MCP_HOOK_FAILED",
  /**
   * The MCP server a proxy or bridge forwards to could not be started or reached, exited while a
   * stdio client was still connected, or went away before answering a request; the message says
   * how it ended and what it printed.
   */
  MCP_UPSTREAM_FAILED: "ERR_MCP_UPSTREAM_FAILED",
  /**
   * A server given `authorizationServers` (an OAuth resource server) without a guard to record the
   * tools/call requests its gate refuses (the `guard` option): every refused call is audited, so
   * it does not start without one.
   */
  MCP_RESOURCE_GUARD_MISSING: "ERR_MCP_RESOURCE_GUARD_MISSING",
  /**
   * A secured server connected to a session of a resource server whose gate records its refusals
   * as another identity, or into another log, than the server records its calls: one identity's
   * calls, admitted or refused at the door, belong in one log.
   */
  MCP_RESOURCE_GUARD_MISMATCH: "ERR_MCP_RESOURCE_GUARD_MISMATCH",
  /** `aztp mcp bridge --listen` on an address that is not loopback: the bridge signs as its identity for whoever reaches it. */
  MCP_BRIDGE_LISTEN_NOT_ALLOWED: "ERR_MCP_BRIDGE_LISTEN_NOT_ALLOWED",
  /** The bridge's pin file (`<home>/bridge/<name>.json`) cannot be read or is not what the bridge writes. */
  MCP_BRIDGE_PIN_FILE_INVALID: "ERR_MCP_BRIDGE_PIN_FILE_INVALID",

  // The aztp command line (cli/)
  /** A path given to a command cannot be read, created or written: the message names the path and the OS's reason. */
  FILE_UNUSABLE: "ERR_FILE_UNUSABLE",
  /** A command would overwrite an existing file (such as a key.pem); it does only with --force. */
  FILE_EXISTS: "ERR_FILE_EXISTS",

  // The HTTP service, aztp serve (serve/)
  /**
   * A request to an `aztp serve` /v1 route without a Bearer API key, or with one that is unknown,
   * malformed or revoked (HTTP 401).
   */
  SERVE_API_KEY_INVALID: "ERR_SERVE_API_KEY_INVALID",
  /**
   * The API key is valid but its scope (trust domain, ID prefix) does not cover the identity the
   * request names (HTTP 403).
   */
  SERVE_API_KEY_SCOPE_DENIED: "ERR_SERVE_API_KEY_SCOPE_DENIED",
  /**
   * The API key issued faster than its rate allows on this replica; the Retry-After header says
   * when to try again (HTTP 429).
   */
  SERVE_RATE_LIMITED: "ERR_SERVE_RATE_LIMITED",
  /** The service cannot answer now: it is shutting down, or its store or CA is not ready (HTTP 503). */
  SERVE_UNAVAILABLE: "ERR_SERVE_UNAVAILABLE",
  /**
   * A request failed for a reason the service has no code for (a bug); the log has the detail, the
   * answer does not (HTTP 500).
   */
  SERVE_INTERNAL_FAILED: "ERR_SERVE_INTERNAL_FAILED",
  /** No route of the service has this path (HTTP 404). */
  SERVE_ROUTE_NOT_FOUND: "ERR_SERVE_ROUTE_NOT_FOUND",
  /** The route exists but not for this method; the Allow header lists those it takes (HTTP 405). */
  SERVE_METHOD_NOT_ALLOWED: "ERR_SERVE_METHOD_NOT_ALLOWED",
  /** A request body over the service's size limit (HTTP 413). */
  SERVE_BODY_TOO_LONG: "ERR_SERVE_BODY_TOO_LONG",
  /** A JSON route was sent a body that is not `application/json` (UTF-8, uncompressed), or none at all (HTTP 415). */
  SERVE_CONTENT_TYPE_UNSUPPORTED: "ERR_SERVE_CONTENT_TYPE_UNSUPPORTED",
  /** `aztp serve --insecure-http` on an address that is not loopback, without --allow-insecure-non-loopback. */
  SERVE_INSECURE_HTTP_NOT_ALLOWED: "ERR_SERVE_INSECURE_HTTP_NOT_ALLOWED",
  /**
   * An entry bundle of the published audit log (C2SP tlog-tiles) holds an entry longer than its
   * 16-bit length can frame (65535 bytes), so it cannot be served (HTTP 501).
   */
  SERVE_TLOG_ENTRY_TOO_LONG: "ERR_SERVE_TLOG_ENTRY_TOO_LONG",

  // OAuth 2.1 access tokens and issuers (oauth/): the MCP authorization spec's bearer tokens
  /** A request to an OAuth-protected resource carried no credential at all (HTTP 401). */
  OAUTH_TOKEN_MISSING: "ERR_OAUTH_TOKEN_MISSING",
  OAUTH_TOKEN_MALFORMED: "ERR_OAUTH_TOKEN_MALFORMED",
  OAUTH_TOKEN_ALG_NOT_ALLOWED: "ERR_OAUTH_TOKEN_ALG_NOT_ALLOWED",
  OAUTH_TOKEN_TYP_INVALID: "ERR_OAUTH_TOKEN_TYP_INVALID",
  OAUTH_TOKEN_ISSUER_UNTRUSTED: "ERR_OAUTH_TOKEN_ISSUER_UNTRUSTED",
  OAUTH_TOKEN_KID_UNKNOWN: "ERR_OAUTH_TOKEN_KID_UNKNOWN",
  OAUTH_TOKEN_SIGNATURE_INVALID: "ERR_OAUTH_TOKEN_SIGNATURE_INVALID",
  OAUTH_TOKEN_CLAIM_MISSING: "ERR_OAUTH_TOKEN_CLAIM_MISSING",
  OAUTH_TOKEN_CLAIM_INVALID: "ERR_OAUTH_TOKEN_CLAIM_INVALID",
  OAUTH_TOKEN_EXPIRED: "ERR_OAUTH_TOKEN_EXPIRED",
  OAUTH_TOKEN_NOT_YET_VALID: "ERR_OAUTH_TOKEN_NOT_YET_VALID",
  OAUTH_TOKEN_AUDIENCE_MISMATCH: "ERR_OAUTH_TOKEN_AUDIENCE_MISMATCH",
  OAUTH_TOKEN_REVOKED: "ERR_OAUTH_TOKEN_REVOKED",
  /** The token is valid but lacks a scope the resource requires (HTTP 403 insufficient_scope). */
  OAUTH_TOKEN_SCOPE_MISSING: "ERR_OAUTH_TOKEN_SCOPE_MISSING",
  /** A call both signed and carrying an access token, whose signer and token subject are not the same caller. */
  OAUTH_TOKEN_SUBJECT_MISMATCH: "ERR_OAUTH_TOKEN_SUBJECT_MISMATCH",
  OAUTH_ISSUER_UNAVAILABLE: "ERR_OAUTH_ISSUER_UNAVAILABLE",
  OAUTH_ISSUER_METADATA_INVALID: "ERR_OAUTH_ISSUER_METADATA_INVALID",
  // The bridge as an OAuth client (mcp/oauth-client.ts)
  /**
   * The bridge could not get an access token the server accepts: the authorization server refused
   * the token request (its `error` in the message), discovery failed, or the server refused a
   * fresh token again.
   */
  OAUTH_AUTHORIZATION_FAILED: "ERR_OAUTH_AUTHORIZATION_FAILED",
  /** The server names an authorization server other than the one the bridge's credentials are for (`--oauth-issuer`). */
  OAUTH_ISSUER_MISMATCH: "ERR_OAUTH_ISSUER_MISMATCH",
  /**
   * An OAuth request (metadata, a token request, or a request carrying an access token) would go
   * over plain http to a host that is not this machine; it was not sent.
   */
  OAUTH_INSECURE_HTTP_NOT_ALLOWED: "ERR_OAUTH_INSECURE_HTTP_NOT_ALLOWED",

  // OAuth 2.1 authorization server (aztp serve's token endpoint, oauth/client-assertion.ts): each
  // is answered as RFC 6749 error JSON (serve/oauth-errors.ts says which `error` and status)
  /** The token request is malformed: not a form, a parameter repeated or missing (invalid_request). */
  OAUTH_REQUEST_INVALID: "ERR_OAUTH_REQUEST_INVALID",
  /** A grant_type other than client_credentials (unsupported_grant_type). */
  OAUTH_GRANT_TYPE_UNSUPPORTED: "ERR_OAUTH_GRANT_TYPE_UNSUPPORTED",
  /** The authorization endpoint: this server runs no interactive flow (unsupported_response_type). */
  OAUTH_RESPONSE_TYPE_UNSUPPORTED: "ERR_OAUTH_RESPONSE_TYPE_UNSUPPORTED",
  /** `resource` missing, repeated or not an absolute URI without a fragment (invalid_target, RFC 8707). */
  OAUTH_RESOURCE_INVALID: "ERR_OAUTH_RESOURCE_INVALID",
  /** The client's policies allow it no token for this resource (invalid_target). */
  OAUTH_RESOURCE_DENIED: "ERR_OAUTH_RESOURCE_DENIED",
  /** `scope` is not a space-separated list of scope tokens (invalid_scope). */
  OAUTH_SCOPE_INVALID: "ERR_OAUTH_SCOPE_INVALID",
  /** None of the scopes asked for is supported and allowed to this client (invalid_scope). */
  OAUTH_SCOPE_DENIED: "ERR_OAUTH_SCOPE_DENIED",
  /** The token request carries no client authentication: no client_assertion (invalid_client). */
  OAUTH_CLIENT_AUTH_MISSING: "ERR_OAUTH_CLIENT_AUTH_MISSING",
  /** A client_assertion_type other than jwt-bearer (RFC 7523) or jwt-spiffe (SPIFFE client auth). */
  OAUTH_ASSERTION_TYPE_UNSUPPORTED: "ERR_OAUTH_ASSERTION_TYPE_UNSUPPORTED",
  OAUTH_ASSERTION_MALFORMED: "ERR_OAUTH_ASSERTION_MALFORMED",
  OAUTH_ASSERTION_ALG_NOT_ALLOWED: "ERR_OAUTH_ASSERTION_ALG_NOT_ALLOWED",
  /** No key of the client verifies the assertion (`rule`: key, signature). */
  OAUTH_ASSERTION_SIGNATURE_INVALID: "ERR_OAUTH_ASSERTION_SIGNATURE_INVALID",
  /** The assertion's JWT-SVID or x5c chain is not one the trust bundles of this service vouch for. */
  OAUTH_ASSERTION_UNTRUSTED: "ERR_OAUTH_ASSERTION_UNTRUSTED",
  OAUTH_ASSERTION_CLAIM_MISSING: "ERR_OAUTH_ASSERTION_CLAIM_MISSING",
  OAUTH_ASSERTION_CLAIM_INVALID: "ERR_OAUTH_ASSERTION_CLAIM_INVALID",
  OAUTH_ASSERTION_AUDIENCE_MISMATCH: "ERR_OAUTH_ASSERTION_AUDIENCE_MISMATCH",
  /** Past its exp, or (rule `lifetime`) living longer than an assertion may. */
  OAUTH_ASSERTION_EXPIRED: "ERR_OAUTH_ASSERTION_EXPIRED",
  OAUTH_ASSERTION_NOT_YET_VALID: "ERR_OAUTH_ASSERTION_NOT_YET_VALID",
  /** The assertion's jti was already spent: assertions are single-use, across replicas. */
  OAUTH_ASSERTION_REPLAYED: "ERR_OAUTH_ASSERTION_REPLAYED",
  /** The client_id sent is not the assertion's subject. */
  OAUTH_CLIENT_ID_MISMATCH: "ERR_OAUTH_CLIENT_ID_MISMATCH",
  /** The assertion's subject is no identity of this authority. */
  OAUTH_CLIENT_UNKNOWN: "ERR_OAUTH_CLIENT_UNKNOWN",
  /** The client (or an ancestor, or the SVID that signed) is revoked. */
  OAUTH_CLIENT_REVOKED: "ERR_OAUTH_CLIENT_REVOKED",

  // People at unmodified hosts: authorization code + PKCE, the login at an OpenID Provider (serve/authorization-code.ts)
  /** An authorization request `aztp serve` cannot send back to the client (unknown client, redirect_uri not registered): shown, never redirected. */
  OAUTH_AUTHORIZATION_REQUEST_INVALID: "ERR_OAUTH_AUTHORIZATION_REQUEST_INVALID",
  /** An authorization code that is unknown, expired, already redeemed, or redeemed by another client, redirect_uri or resource (`invalid_grant`). */
  OAUTH_CODE_INVALID: "ERR_OAUTH_CODE_INVALID",
  /** The code_verifier is missing, malformed, or not the one the code_challenge was made from (`invalid_grant`). */
  OAUTH_PKCE_INVALID: "ERR_OAUTH_PKCE_INVALID",
  /** A client's metadata (a Client ID Metadata Document, or a registration request) is not acceptable (`rule` says why). */
  OAUTH_CLIENT_METADATA_INVALID: "ERR_OAUTH_CLIENT_METADATA_INVALID",
  /** A Client ID Metadata Document could not be fetched (unreachable, not 200, too big, too slow). */
  OAUTH_CLIENT_METADATA_UNAVAILABLE: "ERR_OAUTH_CLIENT_METADATA_UNAVAILABLE",
  /** The OpenID Provider's answer to the login cannot be matched to a login this server started (unknown or spent state, another browser). */
  OAUTH_LOGIN_STATE_INVALID: "ERR_OAUTH_LOGIN_STATE_INVALID",
  /** The login at the OpenID Provider failed: it answered an error, or its code could not be redeemed. */
  OAUTH_LOGIN_FAILED: "ERR_OAUTH_LOGIN_FAILED",

  // People in the chain (invocation/on-behalf-of.ts, people/, DESIGN §13)
  /** An on-behalf-of token does not verify (`rule`: signature, kid, expired, audience, binding, act, revoked, ...). */
  ON_BEHALF_OF_INVALID: "ERR_ON_BEHALF_OF_INVALID",
  /** A person's token comes from an OpenID Provider no trust domain here trusts. */
  PERSON_ISSUER_UNTRUSTED: "ERR_PERSON_ISSUER_UNTRUSTED",
  /** A person's token (an ID token or a JWT access token) does not verify (`rule`: signature, aud, azp, nonce, expired, ...). */
  PERSON_TOKEN_INVALID: "ERR_PERSON_TOKEN_INVALID",
  /** A token exchange names an actor that may not act for the subject token's holder (`rule` says why). */
  TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED: "ERR_TOKEN_EXCHANGE_ACTOR_NOT_ALLOWED",
  /** Policy lets this call run only with a person's approval, and it carries none; `detail` is what must be approved. */
  APPROVAL_REQUIRED: "ERR_APPROVAL_REQUIRED",
  /** The approval the call carries does not hold for it (`rule`: another call, expired, approver, signature, replayed, ...). */
  APPROVAL_INVALID: "ERR_APPROVAL_INVALID",

  // Registration entries of the SPIFFE Workload API (workload-api/entries.ts)
  /** A registration entry is not acceptable (`rule`: spiffe_id, selectors, selector, hint, field). */
  WORKLOAD_ENTRY_INVALID: "ERR_WORKLOAD_ENTRY_INVALID",
  /** An entry with the same SPIFFE ID and the same set of selectors is already registered. */
  WORKLOAD_ENTRY_EXISTS: "ERR_WORKLOAD_ENTRY_EXISTS",
  /** No registration entry has the ID given. */
  WORKLOAD_ENTRY_NOT_FOUND: "ERR_WORKLOAD_ENTRY_NOT_FOUND",
  // The SPIFFE Workload API: attestation by the socket peer's credentials (workload-api/peer-credentials.ts)
  /** The socket peer's credentials cannot be read on this install: the addon was not built, or this is not Linux. */
  WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE: "ERR_WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE",
  /** The socket is not a connected Unix socket with a peer (`rule`: `fd` destroyed or closed, `unix` another family, `peer` no peer). */
  WORKLOAD_API_PEER_SOCKET_INVALID: "ERR_WORKLOAD_API_PEER_SOCKET_INVALID",
  /** The kernel refused to give a Unix socket peer's credentials (the message has its error). */
  WORKLOAD_API_PEER_CREDENTIALS_FAILED: "ERR_WORKLOAD_API_PEER_CREDENTIALS_FAILED",
  // The SPIFFE Workload API as a source of identities (workload-api/client.ts, source.ts; client/workload-api-authority.ts)
  /** The Workload API endpoint cannot be reached, or failed the call (UNAVAILABLE and the like; the endpoint's words kept). */
  WORKLOAD_API_ENDPOINT_UNAVAILABLE: "ERR_WORKLOAD_API_ENDPOINT_UNAVAILABLE",
  /** The endpoint refused the call as malformed (INVALID_ARGUMENT): not retried. */
  WORKLOAD_API_REQUEST_INVALID: "ERR_WORKLOAD_API_REQUEST_INVALID",
  /** The endpoint has no identity for this workload (PERMISSION_DENIED): no registration entry matches it. */
  WORKLOAD_API_PERMISSION_DENIED: "ERR_WORKLOAD_API_PERMISSION_DENIED",
  /** The endpoint hands out no SVID that the name given selects (by SPIFFE ID or hint). */
  WORKLOAD_API_SVID_NOT_FOUND: "ERR_WORKLOAD_API_SVID_NOT_FOUND",
  /** What a Workload API source cannot do (issue children, revoke, attach policies, ...): `rule` names the operation. */
  WORKLOAD_API_OPERATION_UNSUPPORTED: "ERR_WORKLOAD_API_OPERATION_UNSUPPORTED",

  // Any layer
  /** An argument to a function or an option is not what it must be; the message names it and the rule. */
  ARGUMENT_INVALID: "ERR_ARGUMENT_INVALID",
  /** A failure that has no code of its own (a bug, or an error from a dependency); the message says what happened. */
  UNEXPECTED: "ERR_UNEXPECTED",
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class AztpError extends Error {
  override readonly name = "AztpError";
  readonly code: ErrorCode;
  /**
   * Which rule of a multi-rule check failed, when one code covers several (as jose's `claim`
   * and `reason`): e.g. `expired`, `signature`, `scope.tools` for ERR_DELEGATION_INVALID. Stable
   * like the code; docs/protocol.md lists each token kind's rules.
   */
  readonly rule?: string;
  /**
   * What a caller needs to act on the refusal, as JSON: for ERR_APPROVAL_REQUIRED, the approval
   * request (callee, tool, argument digest, reason). Never key material or whole tokens.
   */
  readonly detail?: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; rule?: string; detail?: Readonly<Record<string, unknown>> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.rule !== undefined) this.rule = options.rule;
    if (options?.detail !== undefined) this.detail = options.detail;
  }

  toJSON(): { code: ErrorCode; message: string; rule?: string; detail?: Readonly<Record<string, unknown>> } {
    return {
      code: this.code,
      message: this.message,
      ...(this.rule !== undefined ? { rule: this.rule } : {}),
      ...(this.detail !== undefined ? { detail: this.detail } : {}),
    };
  }
}

export function isAztpError(value: unknown, code?: ErrorCode): value is AztpError {
  return value instanceof AztpError && (code === undefined || value.code === code);
}
