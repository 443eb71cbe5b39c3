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
  SPIFFEID_SCHEME: "ERR_SPIFFEID_SCHEME",
  SPIFFEID_TRUST_DOMAIN_MISSING: "ERR_SPIFFEID_TRUST_DOMAIN_MISSING",
  SPIFFEID_TRUST_DOMAIN_CHAR: "ERR_SPIFFEID_TRUST_DOMAIN_CHAR",
  SPIFFEID_PATH_CHAR: "ERR_SPIFFEID_PATH_CHAR",
  SPIFFEID_PATH_EMPTY_SEGMENT: "ERR_SPIFFEID_PATH_EMPTY_SEGMENT",
  SPIFFEID_PATH_DOT_SEGMENT: "ERR_SPIFFEID_PATH_DOT_SEGMENT",
  SPIFFEID_PATH_TRAILING_SLASH: "ERR_SPIFFEID_PATH_TRAILING_SLASH",
  SPIFFEID_PATH_NO_LEADING_SLASH: "ERR_SPIFFEID_PATH_NO_LEADING_SLASH",
  SPIFFEID_ROOT_PATH: "ERR_SPIFFEID_ROOT_PATH",

  // PEM, keys and certificates (spiffe/pem.ts, spiffe/keys.ts)
  PEM_NO_BLOCKS: "ERR_PEM_NO_BLOCKS",
  CERT_PARSE: "ERR_CERT_PARSE",
  KEY_PARSE: "ERR_KEY_PARSE",
  KEY_MISSING: "ERR_KEY_MISSING",
  KEY_MISMATCH: "ERR_KEY_MISMATCH",
  KEY_UNSUPPORTED: "ERR_KEY_UNSUPPORTED",

  // X.509-SVIDs (spiffe/x509svid.ts)
  X509SVID_NO_CERTIFICATES: "ERR_X509SVID_NO_CERTIFICATES",
  X509SVID_NO_URI_SAN: "ERR_X509SVID_NO_URI_SAN",
  X509SVID_MULTIPLE_URI_SANS: "ERR_X509SVID_MULTIPLE_URI_SANS",
  X509SVID_INVALID_SPIFFEID: "ERR_X509SVID_INVALID_SPIFFEID",
  X509SVID_ROOT_PATH: "ERR_X509SVID_ROOT_PATH",
  X509SVID_SAN_NOT_CRITICAL: "ERR_X509SVID_SAN_NOT_CRITICAL",
  X509SVID_LEAF_IS_CA: "ERR_X509SVID_LEAF_IS_CA",
  X509SVID_LEAF_KEY_USAGE_MISSING: "ERR_X509SVID_LEAF_KEY_USAGE_MISSING",
  X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL: "ERR_X509SVID_LEAF_KEY_USAGE_NOT_CRITICAL",
  X509SVID_LEAF_NO_DIGITAL_SIGNATURE: "ERR_X509SVID_LEAF_NO_DIGITAL_SIGNATURE",
  X509SVID_LEAF_KEY_CERT_SIGN: "ERR_X509SVID_LEAF_KEY_CERT_SIGN",
  X509SVID_LEAF_CRL_SIGN: "ERR_X509SVID_LEAF_CRL_SIGN",
  X509SVID_SIGNER_NOT_CA: "ERR_X509SVID_SIGNER_NOT_CA",
  X509SVID_SIGNER_NO_KEY_CERT_SIGN: "ERR_X509SVID_SIGNER_NO_KEY_CERT_SIGN",
  X509SVID_NO_BUNDLE: "ERR_X509SVID_NO_BUNDLE",
  X509SVID_UNTRUSTED: "ERR_X509SVID_UNTRUSTED",
  X509SVID_EXPIRED: "ERR_X509SVID_EXPIRED",
  X509SVID_NOT_YET_VALID: "ERR_X509SVID_NOT_YET_VALID",
  X509SVID_PATH_LENGTH: "ERR_X509SVID_PATH_LENGTH",
  X509SVID_BAD_SIGNATURE: "ERR_X509SVID_BAD_SIGNATURE",
  X509SVID_UNKNOWN_CRITICAL_EXTENSION: "ERR_X509SVID_UNKNOWN_CRITICAL_EXTENSION",
  /** The SVID verified, but its identity (or an ancestor's) or its serial is revoked, per the authority or its signed revocation list. */
  X509SVID_REVOKED: "ERR_X509SVID_REVOKED",

  // Trust bundles (spiffe/bundle.ts)
  BUNDLE_MALFORMED: "ERR_BUNDLE_MALFORMED",
  BUNDLE_NO_KEYS: "ERR_BUNDLE_NO_KEYS",
  BUNDLE_MISSING_KID: "ERR_BUNDLE_MISSING_KID",
  BUNDLE_X509_ENTRY: "ERR_BUNDLE_X509_ENTRY",
  BUNDLE_TRUST_DOMAIN_MISMATCH: "ERR_BUNDLE_TRUST_DOMAIN_MISMATCH",

  // JWS and JWT-SVIDs (spiffe/jws.ts, spiffe/jwtsvid.ts)
  JWT_MALFORMED: "ERR_JWT_MALFORMED",
  JWT_ALG_NOT_ALLOWED: "ERR_JWT_ALG_NOT_ALLOWED",
  JWT_BAD_TYP: "ERR_JWT_BAD_TYP",
  JWT_MISSING_KID: "ERR_JWT_MISSING_KID",
  JWT_UNKNOWN_KID: "ERR_JWT_UNKNOWN_KID",
  JWT_SIGNATURE: "ERR_JWT_SIGNATURE",
  JWT_MISSING_CLAIM: "ERR_JWT_MISSING_CLAIM",
  JWT_INVALID_SUBJECT: "ERR_JWT_INVALID_SUBJECT",
  JWT_EXPIRED: "ERR_JWT_EXPIRED",
  JWT_NOT_YET_VALID: "ERR_JWT_NOT_YET_VALID",
  JWT_AUDIENCE: "ERR_JWT_AUDIENCE",
  JWT_NO_BUNDLE: "ERR_JWT_NO_BUNDLE",

  // Authority and registry (authority/)
  AUTHORITY_NOT_INITIALIZED: "ERR_AUTHORITY_NOT_INITIALIZED",
  AUTHORITY_EXISTS: "ERR_AUTHORITY_EXISTS",
  AUTHORITY_CSR_INVALID: "ERR_AUTHORITY_CSR_INVALID",
  AUTHORITY_STORE: "ERR_AUTHORITY_STORE",
  AUTHORITY_REMOTE: "ERR_AUTHORITY_REMOTE",
  /** A signed revocation list is malformed or does not verify against the trust bundle (typ, issuer, kid, signature). */
  REVOCATION_LIST_INVALID: "ERR_REVOCATION_LIST_INVALID",
  IDENTITY_NOT_FOUND: "ERR_IDENTITY_NOT_FOUND",
  IDENTITY_REVOKED: "ERR_IDENTITY_REVOKED",
  IDENTITY_EXISTS: "ERR_IDENTITY_EXISTS",
  PARENT_INVALID: "ERR_PARENT_INVALID",
  TRUST_DOMAIN_NOT_ALLOWED: "ERR_TRUST_DOMAIN_NOT_ALLOWED",
  INVALID_ARGUMENT: "ERR_INVALID_ARGUMENT",
  PEER_NOT_AUTHORIZED: "ERR_PEER_NOT_AUTHORIZED",
  PROOF_INVALID: "ERR_PROOF_INVALID",
  /** An MCP request reused the id of a request still in flight on its connection. */
  REQUEST_ID_IN_USE: "ERR_REQUEST_ID_IN_USE",
  /** An `io.aztp/challenge` at initialize that is not `{ nonce: 16 to 256 base64url characters, client?: a SPIFFE/AZTP ID }`. */
  CHALLENGE_INVALID: "ERR_CHALLENGE_INVALID",
  /** An MCP message the binding and the MCP SDK could read differently: an answer with both `result` and `error`, or a request or answer with members the SDK's strict schemas drop. */
  MESSAGE_INVALID: "ERR_MESSAGE_INVALID",
  /** A hook of the MCP binding threw; the request was answered with this error instead of being left unanswered. */
  HOOK_FAILED: "ERR_HOOK_FAILED",

  // Signed invocations and receipts (invocation/)
  INVOCATION_MISSING: "ERR_INVOCATION_MISSING",
  INVOCATION_MALFORMED: "ERR_INVOCATION_MALFORMED",
  INVOCATION_ALG: "ERR_INVOCATION_ALG",
  INVOCATION_UNTRUSTED: "ERR_INVOCATION_UNTRUSTED",
  INVOCATION_SIGNATURE: "ERR_INVOCATION_SIGNATURE",
  INVOCATION_ISSUER_MISMATCH: "ERR_INVOCATION_ISSUER_MISMATCH",
  INVOCATION_REVOKED: "ERR_INVOCATION_REVOKED",
  INVOCATION_AUDIENCE: "ERR_INVOCATION_AUDIENCE",
  INVOCATION_TOOL_MISMATCH: "ERR_INVOCATION_TOOL_MISMATCH",
  INVOCATION_ARGS_MISMATCH: "ERR_INVOCATION_ARGS_MISMATCH",
  INVOCATION_EXPIRED: "ERR_INVOCATION_EXPIRED",
  INVOCATION_NOT_YET_VALID: "ERR_INVOCATION_NOT_YET_VALID",
  INVOCATION_LIFETIME: "ERR_INVOCATION_LIFETIME",
  INVOCATION_REPLAYED: "ERR_INVOCATION_REPLAYED",
  INVOCATION_ACCESS_TOKEN: "ERR_INVOCATION_ACCESS_TOKEN",
  DELEGATION_INVALID: "ERR_DELEGATION_INVALID",
  POLICY_DENIED: "ERR_POLICY_DENIED",
  POLICY_INVALID: "ERR_POLICY_INVALID",
  RECEIPT_MISSING: "ERR_RECEIPT_MISSING",
  RECEIPT_INVALID: "ERR_RECEIPT_INVALID",
  RECEIPT_MISMATCH: "ERR_RECEIPT_MISMATCH",
  /** The tool itself failed (threw, or answered with an error): the call was admitted and ran. */
  TOOL_FAILED: "ERR_TOOL_FAILED",
  /** The receipt's status disagrees with the answer: `ok` on an error, or `error`/`denied` on a success result. */
  RECEIPT_STATUS: "ERR_RECEIPT_STATUS",
  /** The callee a call is addressed to is revoked (its identity, an ancestor, or the SVID that signed its receipt). */
  CALLEE_REVOKED: "ERR_CALLEE_REVOKED",
  /** A value RFC 8785 (JCS) cannot represent: a lone surrogate, a non-finite number, a non-JSON type, or nesting too deep. */
  JSON_UNREPRESENTABLE: "ERR_JSON_UNREPRESENTABLE",
  /** A `__proto__` member in signed JSON: the MCP SDK's parse drops it, so what is signed would not be what is used. */
  JSON_PROTO_KEY: "ERR_JSON_PROTO_KEY",

  // LangChain wrappers (langchain/)
  /** A LangChain agent made by createAgent was handed to secureConnect: its tool calls would go unsigned, so it is refused (use createSecureAgent). */
  AGENT_UNSECURED: "ERR_AGENT_UNSECURED",
  /** A tool the agent's middleware cannot sign for: it has no identity and the middleware has no client to give it one. */
  TOOL_UNSECURED: "ERR_TOOL_UNSECURED",
  /** The model asked for a tool the agent does not have. */
  TOOL_UNKNOWN: "ERR_TOOL_UNKNOWN",

  // Audit log (audit/)
  /** The log file could not be written or read (a full disk, permissions); `recover()` retries. */
  AUDIT_IO: "ERR_AUDIT_IO",
  /** The log or its witness does not hold what was written (edited, cut, malformed). */
  AUDIT_CORRUPT: "ERR_AUDIT_CORRUPT",
  /** An append or checkpoint after `close()`. */
  AUDIT_CLOSED: "ERR_AUDIT_CLOSED",
  /** A call refused because its audit entry cannot be written (the log failed or is closed): nothing runs unaudited. */
  AUDIT_UNAVAILABLE: "ERR_AUDIT_UNAVAILABLE",

  // MCP proxy (mcp/proxy.ts)
  /** The proxy's upstream MCP server could not be started or reached, or exited while a stdio client was still connected; the message says how it ended and what it printed. */
  UPSTREAM_FAILED: "ERR_UPSTREAM_FAILED",

  // The aztp command line (cli/)
  /** A path given to a command cannot be read, created or written: the message names the path and the OS's reason. */
  FILE_UNUSABLE: "ERR_FILE_UNUSABLE",
  /** A command would overwrite an existing file (such as a key.pem); it does only with --force. */
  FILE_EXISTS: "ERR_FILE_EXISTS",
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

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; rule?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options?.rule !== undefined) this.rule = options.rule;
  }

  toJSON(): { code: ErrorCode; message: string; rule?: string } {
    return this.rule === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, rule: this.rule };
  }
}

export function isAztpError(value: unknown, code?: ErrorCode): value is AztpError {
  return value instanceof AztpError && (code === undefined || value.code === code);
}
