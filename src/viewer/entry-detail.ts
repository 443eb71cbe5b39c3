/**
 * One entry in full, for the page's detail view: read back from its place in the log, checked
 * again against the hash its verification saw (so the detail is the verified record, not what
 * the file holds now), with its invocation token and receipt decoded and their signatures checked
 * in place by the one validator (`invocation/validate.ts`) against the same trust source as the
 * log's checkpoints.
 *
 * A token is checked as of the entry's own time: the SVIDs that signed it have long expired when
 * an auditor looks, and the question is whether the token was good when the call was made.
 * Revocation is not checked (the trust source of `aztp audit verify` treats no signer as revoked:
 * a revocation after the call does not unmake it). What the entry says and what the signed token
 * says are then compared field by field: the caller, the callee, the tool, the argument digest,
 * the jti, the tool-call id; for a receipt, that it answers this token and the result and status
 * the entry records.
 */
import { entryHash, type StoredAuditEntry } from "../audit/entry.js";
import { AztpError } from "../errors.js";
import { tokenHash } from "../invocation/canonical.js";
import { INVOCATION_KIND, RECEIPT_KIND } from "../invocation/token-kinds.js";
import type { Trust } from "../invocation/trust.js";
import { validateToken, type TokenKind } from "../invocation/validate.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import { readLineAt } from "./log-tail.js";
import type { EntryState, IndexedEntry } from "./verified-log.js";

export interface SignatureCheck {
  /** False when no trust source was given (`--no-signatures`): nothing was checked. */
  readonly checked: boolean;
  readonly ok?: boolean;
  readonly code?: string;
  readonly rule?: string;
  readonly message?: string;
  /** The verified signer: its SPIFFE ID, its SVID's serial and expiry. */
  readonly signer?: { readonly id: string; readonly serial: string; readonly notAfter: string };
  /** The time it was checked at (the entry's). */
  readonly at?: string;
  readonly against?: string;
}

/** One field as the entry records it and as the signed token carries it. */
export interface Agreement {
  readonly what: string;
  readonly entry: string | null;
  readonly token: string | null;
  readonly agree: boolean;
}

export interface TokenView {
  readonly header: Record<string, unknown> | null;
  readonly claims: Record<string, unknown> | null;
  readonly decodeError?: string;
  /** Tokens inside the claims (delegation links, a person's on-behalf-of token), decoded only. */
  readonly nested: ReadonlyArray<{
    readonly label: string;
    readonly header: Record<string, unknown> | null;
    readonly claims: Record<string, unknown> | null;
  }>;
  readonly signature: SignatureCheck;
  readonly agreement: readonly Agreement[];
}

export interface EntryDetail {
  readonly log: { readonly id: number; readonly name: string; readonly path: string };
  readonly line: number;
  readonly seq: number;
  readonly state: EntryState;
  /** False when the line read back is not the one verified (the file changed since): nothing else is given. */
  readonly intact: boolean;
  readonly problem?: string;
  /** The stored record, without its token and receipt (shown decoded below). */
  readonly record?: Record<string, unknown>;
  /** A line that is not a well-formed entry: its text (cut to 4 KB) and why. */
  readonly raw?: string;
  readonly malformed?: string;
  readonly token?: TokenView;
  readonly receipt?: TokenView;
}

const RAW_LIMIT = 4096;

/** The detail of `entry`; `trust` checks its token and receipt (undefined: `--no-signatures`). */
export async function entryDetail(
  entry: IndexedEntry,
  trust: Trust | undefined,
  trustSource: string | undefined,
): Promise<EntryDetail> {
  const log = entry.log;
  const base = {
    log: { id: log.id, name: log.name, path: log.path },
    line: entry.line,
    seq: entry.seq,
    state: log.stateOf(entry),
  };
  const text = await readLineAt(log.path, entry.offset, entry.length);
  if (entry.malformed !== null) {
    return {
      ...base,
      intact: true,
      malformed: entry.malformed,
      raw: text.length > RAW_LIMIT ? `${text.slice(0, RAW_LIMIT)}… (${text.length} characters)` : text,
    };
  }
  let stored: StoredAuditEntry;
  try {
    stored = JSON.parse(text) as StoredAuditEntry;
    if (stored.hash !== entry.hash || entryHash(stored) !== entry.hash) throw new Error("hash differs");
  } catch {
    return {
      ...base,
      intact: false,
      problem: `line ${entry.line} of ${log.path} is no longer the entry that was verified (the file changed since): verify the log again`,
    };
  }
  const { token, receipt, ...record } = stored as StoredAuditEntry & { token?: string; receipt?: string };
  const when = new Date(stored.time);
  const out: { -readonly [K in keyof EntryDetail]: EntryDetail[K] } = { ...base, intact: true, record };
  if (typeof token === "string") {
    out.token = viewToken(token, INVOCATION_KIND, trust, trustSource, when, (claims) => [
      agreement("caller (iss)", stored.caller.replace(/^unverified:/, ""), claims.iss, ids),
      agreement("callee (aud)", stored.callee, claims.aud, ids),
      agreement("tool", stored.tool, claims.tool),
      agreement("argument digest (args_sha256)", stored.argsDigest, claims.args_sha256),
      ...(stored.jti !== undefined || claims.jti !== undefined ? [agreement("jti", stored.jti, claims.jti)] : []),
      ...(stored.toolCallId !== undefined || claims.tcid !== undefined
        ? [agreement("tool-call id (tcid)", stored.toolCallId, claims.tcid)]
        : []),
      ...(stored.traceId !== undefined && claims.trace !== undefined
        ? [agreement("trace", stored.traceId, claims.trace)]
        : []),
    ]);
  }
  if (typeof receipt === "string") {
    out.receipt = viewToken(receipt, RECEIPT_KIND, trust, trustSource, when, (claims) => [
      agreement("signed by the callee (iss)", stored.callee, claims.iss, ids),
      agreement("for the caller (aud)", stored.caller.replace(/^unverified:/, ""), claims.aud, ids),
      ...(typeof token === "string"
        ? [agreement("answers this entry's token (ith)", tokenHash(token), claims.ith)]
        : []),
      ...(stored.resultDigest !== undefined || claims.result_sha256 !== undefined
        ? [agreement("result digest (result_sha256)", stored.resultDigest, claims.result_sha256)]
        : []),
      ...(stored.outcome !== undefined ? [agreement("status", stored.outcome, claims.status)] : []),
    ]);
  }
  return out;
}

function viewToken(
  token: string,
  kind: TokenKind,
  trust: Trust | undefined,
  trustSource: string | undefined,
  when: Date,
  agreements: (claims: Record<string, unknown>) => Agreement[],
): TokenView {
  const decoded = decode(token);
  const nested: Array<{
    label: string;
    header: Record<string, unknown> | null;
    claims: Record<string, unknown> | null;
  }> = [];
  const claims = decoded.claims;
  if (claims !== null) {
    if (Array.isArray(claims.dlg))
      claims.dlg.forEach((link, i) => {
        if (typeof link === "string") nested.push({ label: `delegation link ${i + 1}`, ...decode(link) });
      });
    if (typeof claims.obo === "string") nested.push({ label: "on-behalf-of token (obo)", ...decode(claims.obo) });
  }
  let signature: SignatureCheck;
  if (trust === undefined) signature = { checked: false };
  else {
    try {
      const { signer } = validateToken(token, kind, trust, { now: when });
      signature = {
        checked: true,
        ok: true,
        signer: { id: signer.spiffeId, serial: signer.serial, notAfter: signer.notAfter.toISOString() },
        at: when.toISOString(),
        ...(trustSource !== undefined ? { against: trustSource } : {}),
      };
    } catch (cause) {
      const e = cause instanceof AztpError ? cause : undefined;
      signature = {
        checked: true,
        ok: false,
        ...(e !== undefined ? { code: e.code } : {}),
        ...(e?.rule !== undefined ? { rule: e.rule } : {}),
        message: (cause as Error).message,
        at: when.toISOString(),
        ...(trustSource !== undefined ? { against: trustSource } : {}),
      };
    }
  }
  return {
    header: decoded.header === null ? null : shortenX5c(decoded.header),
    claims: claims === null ? null : withoutNested(claims),
    ...(decoded.error !== undefined ? { decodeError: decoded.error } : {}),
    nested: nested.map((n) => ({
      label: n.label,
      header: n.header === null ? null : shortenX5c(n.header),
      claims: n.claims,
    })),
    signature,
    agreement: claims === null ? [] : agreements(claims),
  };
}

/** The header and claims of a compact JWS, decoded without any check (for display only). */
function decode(token: string): {
  header: Record<string, unknown> | null;
  claims: Record<string, unknown> | null;
  error?: string;
} {
  const parts = token.split(".");
  if (parts.length !== 3) return { header: null, claims: null, error: "not a compact JWS (three dot-separated parts)" };
  const json = (segment: string): Record<string, unknown> | null => {
    try {
      const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
      return typeof value === "object" && value !== null && !Array.isArray(value)
        ? (value as Record<string, unknown>)
        : null;
    } catch {
      return null;
    }
  };
  const header = json(parts[0] as string);
  const claims = json(parts[1] as string);
  return header === null || claims === null
    ? { header, claims, error: `the ${header === null ? "header" : "claims"} cannot be decoded` }
    : { header, claims };
}

/** The certificate chain, named by size: its content is what the signature check reports on. */
function shortenX5c(header: Record<string, unknown>): Record<string, unknown> {
  if (!Array.isArray(header.x5c)) return header;
  return {
    ...header,
    x5c: header.x5c.map((c, i) =>
      typeof c === "string" ? `certificate ${i + 1} (${Math.floor((c.length * 3) / 4)} bytes, base64)` : c,
    ),
  };
}

/** Nested tokens are shown decoded apart. */
function withoutNested(claims: Record<string, unknown>): Record<string, unknown> {
  const out = { ...claims };
  if (Array.isArray(out.dlg)) out.dlg = out.dlg.map((_, i) => `(delegation link ${i + 1}, below)`);
  if (typeof out.obo === "string") out.obo = "(on-behalf-of token, below)";
  return out;
}

/** IDs agree when they name the same workload (aztp:// and spiffe:// spellings alike). */
function ids(a: string, b: string): boolean {
  try {
    return SpiffeId.parse(a).toString() === SpiffeId.parse(b).toString();
  } catch {
    return a === b;
  }
}

function agreement(
  what: string,
  entry: unknown,
  token: unknown,
  same: (a: string, b: string) => boolean = (a, b) => a === b,
): Agreement {
  const e = typeof entry === "string" ? entry : entry === undefined ? null : JSON.stringify(entry);
  const t = typeof token === "string" ? token : token === undefined ? null : JSON.stringify(token);
  return { what, entry: e, token: t, agree: e !== null && t !== null && same(e, t) };
}
