/**
 * The error codes' one naming scheme, and the renamed codes pinned: ErrorCodes has today's
 * names only, and the old values live in one legacy module (audit/legacy-codes.ts), so an audit
 * log written before the renaming still reads with today's codes.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { AztpError, ErrorCodes } from "../src/errors.js";
import { currentCode, LEGACY_CODES } from "../src/audit/legacy-codes.js";

/** Areas, longest first so `TRUST_DOMAIN` wins over a shorter prefix. */
const AREAS = [
  "REVOCATION_LIST",
  "WORKLOAD_API",
  "TRUST_DOMAIN",
  "INVOCATION",
  "DELEGATION",
  "AUTHORITY",
  "X509SVID",
  "SPIFFEID",
  "IDENTITY",
  "ARGUMENT",
  "RECEIPT",
  "BUNDLE",
  "CALLEE",
  "PARENT",
  "POLICY",
  "AGENT",
  "AUDIT",
  "PROOF",
  "CERT",
  "FILE",
  "JSON",
  "PEER",
  "TOOL",
  "JWT",
  "KEY",
  "MCP",
  "PEM",
  "SERVE",
  "OAUTH",
  "ON_BEHALF_OF",
  "PERSON",
  "TOKEN_EXCHANGE",
  "APPROVAL",
  "TRACE",
  "WORKLOAD",
].sort((a, b) => b.length - a.length);

/** What is wrong with the thing checked: the last word(s) of every code. */
const STATES = [
  "MISSING",
  "EMPTY",
  "MALFORMED",
  "INVALID",
  "MISMATCH",
  "NOT_ALLOWED",
  "NOT_AUTHORIZED",
  "UNTRUSTED",
  "EXPIRED",
  "NOT_YET_VALID",
  "REVOKED",
  "REPLAYED",
  "TOO_LONG",
  "TOO_MANY",
  "EXCEEDED",
  "EXISTS",
  "NOT_FOUND",
  "FAILED",
  "UNAVAILABLE",
  "CLOSED",
  "CORRUPT",
  "IN_USE",
  "DENIED",
  "UNSUPPORTED",
  "UNKNOWN",
  "NOT_CRITICAL",
  "NOT_INITIALIZED",
  "UNREPRESENTABLE",
  "UNSECURED",
  // ERR_APPROVAL_REQUIRED (the issue names it): the call lacks what policy requires of it, a person's approval
  "REQUIRED",
  "UNUSABLE",
  "SET",
  "LIMITED",
];

/** Every rename, old name to new: pinned here so the legacy map cannot lose or repoint one unnoticed. */
const PINNED: ReadonlyArray<readonly [string, string]> = [
  ["SPIFFEID_SCHEME", "SPIFFEID_SCHEME_INVALID"],
  ["SPIFFEID_TRUST_DOMAIN_CHAR", "SPIFFEID_TRUST_DOMAIN_CHAR_INVALID"],
  ["SPIFFEID_PATH_CHAR", "SPIFFEID_PATH_CHAR_INVALID"],
  ["SPIFFEID_PATH_EMPTY_SEGMENT", "SPIFFEID_PATH_SEGMENT_EMPTY"],
  ["SPIFFEID_PATH_DOT_SEGMENT", "SPIFFEID_PATH_DOT_SEGMENT_NOT_ALLOWED"],
  ["SPIFFEID_PATH_TRAILING_SLASH", "SPIFFEID_PATH_TRAILING_SLASH_NOT_ALLOWED"],
  ["SPIFFEID_PATH_NO_LEADING_SLASH", "SPIFFEID_PATH_LEADING_SLASH_MISSING"],
  ["SPIFFEID_ROOT_PATH", "SPIFFEID_ROOT_PATH_NOT_ALLOWED"],
  ["PEM_NO_BLOCKS", "PEM_BLOCKS_MISSING"],
  ["CERT_PARSE", "CERT_MALFORMED"],
  ["KEY_PARSE", "KEY_MALFORMED"],
  ["X509SVID_NO_CERTIFICATES", "X509SVID_CERTIFICATES_MISSING"],
  ["X509SVID_NO_URI_SAN", "X509SVID_URI_SAN_MISSING"],
  ["X509SVID_MULTIPLE_URI_SANS", "X509SVID_URI_SANS_TOO_MANY"],
  ["X509SVID_INVALID_SPIFFEID", "X509SVID_SPIFFEID_INVALID"],
  ["X509SVID_ROOT_PATH", "X509SVID_ROOT_PATH_NOT_ALLOWED"],
  ["X509SVID_LEAF_IS_CA", "X509SVID_LEAF_CA_FLAG_SET"],
  ["X509SVID_LEAF_NO_DIGITAL_SIGNATURE", "X509SVID_LEAF_DIGITAL_SIGNATURE_MISSING"],
  ["X509SVID_LEAF_KEY_CERT_SIGN", "X509SVID_LEAF_KEY_CERT_SIGN_SET"],
  ["X509SVID_LEAF_CRL_SIGN", "X509SVID_LEAF_CRL_SIGN_SET"],
  ["X509SVID_SIGNER_NOT_CA", "X509SVID_SIGNER_CA_FLAG_MISSING"],
  ["X509SVID_SIGNER_NO_KEY_CERT_SIGN", "X509SVID_SIGNER_KEY_CERT_SIGN_MISSING"],
  ["X509SVID_NO_BUNDLE", "X509SVID_BUNDLE_MISSING"],
  ["X509SVID_PATH_LENGTH", "X509SVID_PATH_LENGTH_EXCEEDED"],
  ["X509SVID_BAD_SIGNATURE", "X509SVID_SIGNATURE_INVALID"],
  ["X509SVID_UNKNOWN_CRITICAL_EXTENSION", "X509SVID_CRITICAL_EXTENSION_UNKNOWN"],
  ["BUNDLE_NO_KEYS", "BUNDLE_KEYS_MISSING"],
  ["BUNDLE_MISSING_KID", "BUNDLE_KID_MISSING"],
  ["BUNDLE_X509_ENTRY", "BUNDLE_X509_ENTRY_INVALID"],
  ["JWT_BAD_TYP", "JWT_TYP_INVALID"],
  ["JWT_MISSING_KID", "JWT_KID_MISSING"],
  ["JWT_UNKNOWN_KID", "JWT_KID_UNKNOWN"],
  ["JWT_SIGNATURE", "JWT_SIGNATURE_INVALID"],
  ["JWT_MISSING_CLAIM", "JWT_CLAIM_MISSING"],
  ["JWT_INVALID_SUBJECT", "JWT_SUBJECT_INVALID"],
  ["JWT_AUDIENCE", "JWT_AUDIENCE_MISMATCH"],
  ["JWT_NO_BUNDLE", "JWT_BUNDLE_MISSING"],
  ["AUTHORITY_STORE", "AUTHORITY_STORE_FAILED"],
  ["AUTHORITY_REMOTE", "AUTHORITY_REMOTE_UNAVAILABLE"],
  ["INVALID_ARGUMENT", "ARGUMENT_INVALID"],
  ["REQUEST_ID_IN_USE", "MCP_REQUEST_ID_IN_USE"],
  ["CHALLENGE_INVALID", "MCP_CHALLENGE_INVALID"],
  ["MESSAGE_INVALID", "MCP_MESSAGE_INVALID"],
  ["HOOK_FAILED", "MCP_HOOK_FAILED"],
  ["INVOCATION_ALG", "INVOCATION_ALG_NOT_ALLOWED"],
  ["INVOCATION_SIGNATURE", "INVOCATION_SIGNATURE_INVALID"],
  ["INVOCATION_AUDIENCE", "INVOCATION_AUDIENCE_MISMATCH"],
  ["INVOCATION_LIFETIME", "INVOCATION_LIFETIME_TOO_LONG"],
  ["INVOCATION_ACCESS_TOKEN", "INVOCATION_ACCESS_TOKEN_MISMATCH"],
  ["RECEIPT_STATUS", "RECEIPT_STATUS_MISMATCH"],
  ["JSON_PROTO_KEY", "JSON_PROTO_KEY_NOT_ALLOWED"],
  ["AUDIT_IO", "AUDIT_IO_FAILED"],
  ["UPSTREAM_FAILED", "MCP_UPSTREAM_FAILED"],
];

const current = Object.entries(ErrorCodes);

describe("error codes: one naming scheme", () => {
  it("every current code is ERR_ + its name", () => {
    for (const [name, value] of current) assert.equal(value, `ERR_${name}`, name);
  });

  const table: Array<[string, string]> = current.map(([name]) => [name, name]);
  for (const [name] of table) {
    if (name === "UNEXPECTED") continue; // the one code with no area: it has no rule to name
    it(`${name} is AREA_WHAT_STATE`, () => {
      const area = AREAS.find((a) => name === a || name.startsWith(`${a}_`));
      assert.ok(area !== undefined, `${name} starts with no known area (${AREAS.join(", ")})`);
      const rest = name.slice(area.length + 1);
      assert.ok(
        STATES.some((s) => rest === s || rest.endsWith(`_${s}`)),
        `${name} does not end with a state word (${STATES.join(", ")})`,
      );
      assert.doesNotMatch(
        rest,
        /^(NO|BAD|MISSING|INVALID|UNKNOWN|MULTIPLE)_/,
        `${name} puts its state first: name the thing, then the state`,
      );
    });
  }

  it("no two names share a value", () => {
    const values = current.map(([, v]) => v);
    assert.equal(new Set(values).size, values.length);
  });
});

describe("error codes: renamed codes", () => {
  it("ErrorCodes has no old name and no alias: every name is its value", () => {
    const codes = ErrorCodes as Readonly<Record<string, string>>;
    for (const [old] of PINNED) assert.equal(codes[old], undefined, `ErrorCodes.${old}`);
    const aliases = Object.entries(ErrorCodes).filter(([name, value]) => value !== `ERR_${name}`);
    assert.deepEqual(aliases, []);
  });

  it("LEGACY_CODES maps exactly the pinned old values to today's codes", () => {
    assert.deepEqual(
      Object.entries(LEGACY_CODES).sort(),
      PINNED.map(([old, now]) => [`ERR_${old}`, `ERR_${now}`]).sort(),
    );
    for (const [, now] of PINNED) assert.ok(Object.values(ErrorCodes).includes(`ERR_${now}` as never), now);
  });

  it("the library uses no old code outside the legacy module", () => {
    const src = join(import.meta.dirname, "..", "src");
    const files = (readdirSync(src, { recursive: true }) as string[]).filter(
      (f) => f.endsWith(".ts") && f !== join("audit", "legacy-codes.ts"),
    );
    const uses: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(src, f), "utf8");
      for (const [old] of PINNED) {
        if (new RegExp(`\\b(ErrorCodes\\.${old}|ERR_${old})\\b`).test(text)) uses.push(`${f}: ${old}`);
      }
    }
    assert.deepEqual(uses, []);
  });

  it("currentCode maps an old value to today's and leaves others alone", () => {
    assert.equal(currentCode("ERR_INVOCATION_AUDIENCE"), ErrorCodes.INVOCATION_AUDIENCE_MISMATCH);
    assert.equal(currentCode("ERR_REQUEST_ID_IN_USE"), "ERR_MCP_REQUEST_ID_IN_USE");
    assert.equal(currentCode(ErrorCodes.POLICY_DENIED), "ERR_POLICY_DENIED");
    assert.equal(currentCode("ERR_SOMETHING_ELSE"), "ERR_SOMETHING_ELSE");
    assert.equal(currentCode("toString"), "toString");
    assert.equal(currentCode("__proto__"), "__proto__");
  });
});

describe("AztpError.rule", () => {
  it("is carried and serialised when given, absent otherwise", () => {
    const e = new AztpError(ErrorCodes.DELEGATION_INVALID, "delegation: link 0 expired", { rule: "expired" });
    assert.equal(e.rule, "expired");
    assert.deepEqual(e.toJSON(), {
      code: "ERR_DELEGATION_INVALID",
      message: "delegation: link 0 expired",
      rule: "expired",
    });
    const plain = new AztpError(ErrorCodes.POLICY_DENIED, "no");
    assert.equal(plain.rule, undefined);
    assert.deepEqual(Object.keys(plain.toJSON()), ["code", "message"]);
  });
});
