/**
 * Every kind of token AZTP signs, as data for the one validator (validate.ts): its `typ`, its
 * time window, whether revocation applies, when its chain is checked, and the code each rule's
 * failure throws with. docs/protocol.md has the same numbers as one table ("Time rules"); a
 * test pins the two together.
 */
import { ErrorCodes, type ErrorCode } from "../errors.js";
import type { TokenKind, TokenRule } from "./validate.js";

export const INVOCATION_TYP = "aztp-invocation+jwt";
export const RECEIPT_TYP = "aztp-receipt+jwt";
export const DELEGATION_TYP = "aztp-delegation+jwt";
export const PROOF_TYP = "aztp-pop+jwt";
export const CHECKPOINT_TYP = "aztp-checkpoint+jwt";
export const APPROVAL_STATEMENT_TYP = "aztp-approval+jwt";

/** The longest an invocation may live: a captured token is useless after this. */
export const MAX_INVOCATION_LIFETIME_SECONDS = 60;
export const DEFAULT_INVOCATION_LEEWAY_SECONDS = 30;
/** A proof answers a fresh challenge: it lives as briefly as an invocation. */
export const PROOF_TTL_SECONDS = 60;
/**
 * The longest an approval statement may live: it answers one approval request, which the person
 * approves and the caller signs into its call at once, so minutes are plenty (and a stolen one
 * is still single-use: the request id is remembered).
 */
export const MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS = 300;
/** How old a receipt may be by default: receipts are verified as they arrive. */
export const DEFAULT_RECEIPT_MAX_AGE_SECONDS = 300;

/** Every rule to `code`, but for `except`: the kinds whose callers tell failures apart by rule, not by code. */
function oneCode(
  code: ErrorCode,
  except: Partial<Record<TokenRule, ErrorCode>> = {},
): Readonly<Record<TokenRule, ErrorCode>> {
  return {
    missing: code,
    malformed: code,
    alg: code,
    typ: code,
    chain: code,
    signature: code,
    issuer: code,
    signer: code,
    audience: code,
    revoked: code,
    claim_missing: code,
    claim_invalid: code,
    lifetime: code,
    expired: code,
    not_yet_valid: code,
    too_old: code,
    ...except,
  };
}

/** What most kinds do: refuse a revoked signer, check the chain at verification time. */
const LIVE = { revocation: true, chainAt: "now" } as const;

export const INVOCATION_KIND: TokenKind = {
  typ: INVOCATION_TYP,
  what: "invocation token",
  window: {
    leewaySeconds: DEFAULT_INVOCATION_LEEWAY_SECONDS,
    maxLifetimeSeconds: MAX_INVOCATION_LIFETIME_SECONDS,
    expRequired: true,
    iatRequired: true,
    integerDates: true,
  },
  ...LIVE,
  // Invocations keep one code per rule: integrations and their tests tell the failures apart by code.
  codes: oneCode(ErrorCodes.INVOCATION_MALFORMED, {
    missing: ErrorCodes.INVOCATION_MISSING,
    alg: ErrorCodes.INVOCATION_ALG_NOT_ALLOWED,
    chain: ErrorCodes.INVOCATION_UNTRUSTED,
    signature: ErrorCodes.INVOCATION_SIGNATURE_INVALID,
    issuer: ErrorCodes.INVOCATION_ISSUER_MISMATCH,
    revoked: ErrorCodes.INVOCATION_REVOKED,
    audience: ErrorCodes.INVOCATION_AUDIENCE_MISMATCH,
    lifetime: ErrorCodes.INVOCATION_LIFETIME_TOO_LONG,
    expired: ErrorCodes.INVOCATION_EXPIRED,
    too_old: ErrorCodes.INVOCATION_EXPIRED,
    not_yet_valid: ErrorCodes.INVOCATION_NOT_YET_VALID,
  }),
};

export const RECEIPT_KIND: TokenKind = {
  typ: RECEIPT_TYP,
  what: "receipt",
  // No exp: a receipt is checked once, as it arrives, so its age bounds it.
  window: {
    leewaySeconds: 60,
    maxAgeSeconds: DEFAULT_RECEIPT_MAX_AGE_SECONDS,
    expRequired: false,
    iatRequired: true,
    integerDates: true,
  },
  ...LIVE,
  codes: oneCode(ErrorCodes.RECEIPT_INVALID, {
    missing: ErrorCodes.RECEIPT_MISSING,
    revoked: ErrorCodes.CALLEE_REVOKED,
    audience: ErrorCodes.RECEIPT_MISMATCH,
  }),
};

export const DELEGATION_KIND: TokenKind = {
  typ: DELEGATION_TYP,
  what: "delegation link",
  // The leeway of the invocation the link rides in: a link is not stricter about the clock than
  // its token (before, a link had none on exp and 60 s on iat). No lifetime bound: the
  // delegator chooses it, and each later link and the invocation may only shorten it.
  window: {
    leewaySeconds: DEFAULT_INVOCATION_LEEWAY_SECONDS,
    expRequired: true,
    iatRequired: true,
    integerDates: true,
  },
  ...LIVE,
  codes: oneCode(ErrorCodes.DELEGATION_INVALID),
};

export const PROOF_KIND: TokenKind = {
  typ: PROOF_TYP,
  what: "possession proof",
  window: {
    leewaySeconds: DEFAULT_INVOCATION_LEEWAY_SECONDS,
    maxLifetimeSeconds: PROOF_TTL_SECONDS,
    expRequired: true,
    iatRequired: true,
    integerDates: true,
  },
  ...LIVE,
  codes: oneCode(ErrorCodes.PROOF_INVALID),
};

export const CHECKPOINT_KIND: TokenKind = {
  typ: CHECKPOINT_TYP,
  what: "checkpoint signature",
  // A checkpoint is read long after it was signed (`aztp audit verify` of last year's log):
  // only its iat's form is checked, never the clock, and its chain is checked as of that iat.
  window: {
    leewaySeconds: 0,
    expRequired: false,
    iatRequired: true,
    integerDates: true,
    dateOnly: true,
  },
  // Not revocation either: revoking a writer (say, its host was decommissioned, or its key
  // retired) must not turn every log it wrote into a corrupt one. A revocation says "trust
  // nothing this key signs from now on"; the log's hash chain and the checkpoints' chain
  // validity at iat already say what was signed before.
  revocation: false,
  chainAt: "iat",
  codes: oneCode(ErrorCodes.AUDIT_CORRUPT),
};

export const APPROVAL_STATEMENT_KIND: TokenKind = {
  typ: APPROVAL_STATEMENT_TYP,
  what: "approval statement",
  window: {
    leewaySeconds: DEFAULT_INVOCATION_LEEWAY_SECONDS,
    maxLifetimeSeconds: MAX_APPROVAL_STATEMENT_LIFETIME_SECONDS,
    expRequired: true,
    iatRequired: true,
    integerDates: true,
  },
  ...LIVE,
  // One code: the approval check (people/approval.ts) maps the rule onto its own.
  codes: oneCode(ErrorCodes.APPROVAL_INVALID),
};
