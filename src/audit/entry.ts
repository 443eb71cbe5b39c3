/**
 * The audit entry: one record per decision on each side of a tool call, hash-chained to the
 * entry before it.
 *
 * `hash` is the SHA-256 (lower-case hex) of the RFC 8785 canonical JSON of the entry without its
 * `hash` member, and `prev` is the `hash` of the entry before it (`GENESIS_HASH` for the first: the
 * chain rule is chain.ts). Because `prev` is inside what is hashed, changing, removing or
 * reordering any entry breaks the chain at that point; signed checkpoints (checkpoint.ts) then pin
 * the chain's head so the chain cannot simply be rewritten from the edit onwards.
 *
 * On disk an entry is one line of JSON: its canonical form with `"hash"` appended as the last
 * member. Readers never rely on that layout: they parse the line and recompute the canonical
 * form, so any JSON writer that keeps the values produces a verifiable log.
 *
 * Versions: 2 (written now) records the caller as data: `caller` and `callerVerified`, and
 * says what the log could not keep (`argsOmitted`, `sanitized`). Version 1 entries are still
 * read and verified: their caller was a string that began with "unverified:" when it was only
 * claimed; readers see such an entry as version 2 would have written it (`readableEntry`),
 * and its hash is checked over the record as stored.
 *
 * Hostile content never makes an entry unwritable: `validateEntryInput` refuses programming
 * errors only (a missing field, a wrong type), and the writer makes every caller-supplied
 * string storable (`storableText`: lone surrogates replaced, length capped), saying so in
 * `sanitized`.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalJson, canonicalObject } from "../json/canonical.js";
import type { JsonValue } from "../json/value.js";
import { sha256Hex } from "../sha256.js";
import { currentCode } from "./legacy-codes.js";
import { OmissionNotes, redactArgs, replaceLoneSurrogates, truncateText, type RedactedArgs } from "./redact.js";

/** The version the writer writes. */
export const AUDIT_ENTRY_VERSION = 2;

/** Version 1 marked a caller that was only claimed with this prefix. */
const V1_UNVERIFIED_PREFIX = "unverified:";

export type AuditSide = "caller" | "callee" | "proxy";
export type AuditDecision = "allow" | "deny" | "audit-only";
/**
 * What came of a call: `ok`, `error` (the tool failed, or no answer came), `denied` (refused),
 * or `interrupted`: the framework's control flow (a LangGraph `interrupt()`, a handoff to a
 * parent graph) left the call before it gave a result, so there is none and no receipt; a
 * resumed call is a new call with entries of its own.
 */
export type AuditOutcome = "ok" | "error" | "denied" | "interrupted";
/**
 * How the callee authenticated its caller: `signed` (an invocation token) or `bearer` (an OAuth
 * access token, weaker: a stolen one works until it expires). Absent when the caller was not
 * authenticated (a refused or unsigned call), and in entries of the caller's side.
 */
export type AuditAuthMethod = "signed" | "bearer";

export interface AuditEntry {
  /** 2; an entry read from a version 1 log keeps 1 (its other fields are shown as in 2). */
  readonly v: 1 | 2;
  /** 1 for the first entry of a log, then +1 per entry, with no gaps. */
  readonly seq: number;
  /** ISO 8601 timestamp of the decision. */
  readonly time: string;
  readonly side: AuditSide;
  /**
   * The caller's SPIFFE ID: the verified one when `callerVerified`; otherwise the one it
   * claimed (the unverified token's issuer), or "unknown" when it claimed none.
   */
  readonly caller: string;
  /** True only when the caller's identity was verified (its token's signature and chain). */
  readonly callerVerified: boolean;
  /**
   * How the caller was authenticated (callee and proxy entries of a verified caller); also
   * `bearer` on a call refused at an OAuth resource server's door for the token it presented,
   * verified or not (`callerVerified` says which).
   */
  readonly authMethod?: AuditAuthMethod;
  /** The `jti` of the OAuth access token the call carried (never the token itself). */
  readonly accessTokenJti?: string;
  readonly callee: string;
  readonly tool: string;
  /**
   * Digest of the canonical arguments, exactly as the invocation token carries it; the
   * literal "unencodable" when the arguments have no canonical form.
   */
  readonly argsDigest: string;
  /** The arguments themselves, only when the log was opened with `includeArgs`, redacted. */
  readonly args?: JsonValue;
  /** Why parts of the arguments could not be kept in `args` (bounded notes, "args.a.b: ..."). */
  readonly argsOmitted?: readonly string[];
  /** Which caller-supplied fields the log had to alter to store them, and how. */
  readonly sanitized?: readonly string[];
  /** SPIFFE IDs of the delegation chain, outermost delegator first. */
  readonly delegation?: readonly string[];
  /**
   * The person the call was made for, `<issuer>#<subject>` (their OpenID Provider and their
   * `sub` there), as the on-behalf-of token the caller signed in said (verified on the callee's
   * side when `callerVerified`).
   */
  readonly person?: string;
  /** The person's e-mail, only when the log's configuration allows display claims. */
  readonly personEmail?: string;
  /** The agents that acted for the person, the first one first (the act chain). */
  readonly actors?: readonly string[];
  /** The person who approved this call (`<issuer>#<subject>`), when policy required an approval. */
  readonly approvedBy?: string;
  /** When they approved it (ISO 8601). */
  readonly approvedAt?: string;
  readonly decision: AuditDecision;
  /** The error code behind a deny (or behind an audit-only acceptance). */
  readonly reason?: string;
  readonly outcome?: AuditOutcome;
  readonly resultDigest?: string;
  readonly durationMs?: number;
  readonly jti?: string;
  /**
   * The W3C trace ID of the trace the call belongs to (32 lower-case hex digits): the same in
   * every entry of one call, on every side (caller, proxy, callee, bridge), and in every call of
   * one agent run. Logs written before trace context may hold other text here.
   */
  readonly traceId?: string;
  /** This side's span of the call (W3C span ID, 16 lower-case hex digits): its own, per side and hop. */
  readonly spanId?: string;
  /** The span this one continues: for a callee, the caller's `spanId`; for a caller, its run's or its application's span. */
  readonly parentSpanId?: string;
  /**
   * What was refused or overruled of the trace context the call came with: a malformed
   * `traceparent` (a new trace was started), or one that disagrees with the trace the caller
   * signed (the signed one is recorded).
   */
  readonly traceNote?: string;
  /**
   * The framework's tool-call id, as the invocation token signed it (`tcid`): the same in the
   * caller's entry and the callee's.
   */
  readonly toolCallId?: string;
  /** The compact invocation token. */
  readonly token?: string;
  /** The compact receipt. */
  readonly receipt?: string;
  readonly prev: string;
  readonly hash: string;
}

/**
 * What a caller supplies to `AuditLog.append`; the log assigns `v`, `seq`, `prev` and `hash`,
 * and `argsOmitted` and `sanitized` when it could not keep everything as given.
 */
export interface AuditEntryInput extends Omit<
  AuditEntry,
  "v" | "seq" | "prev" | "hash" | "time" | "args" | "argsOmitted" | "sanitized" | "reason"
> {
  /** An error code, or why the decision was made; absent (or undefined) for none. */
  readonly reason?: string | undefined;
  /** Defaults to the time of the append. */
  readonly time?: string;
  /** Raw arguments: kept (redacted) only when the log was opened with `includeArgs`. */
  readonly args?: unknown;
}

/** An entry as stored: version 1 entries have no `callerVerified` (see `readableEntry`). */
export type StoredAuditEntry = Omit<AuditEntry, "callerVerified"> & { readonly callerVerified?: boolean };

/** An entry before it is sealed with its hash. */
export type UnsealedEntry = Omit<AuditEntry, "hash">;

/**
 * SHA-256 hex of the canonical JSON of `entry` without `hash` (the value `hash` must hold).
 * `entry` is the record as stored: for a version 1 entry, not its `readableEntry` view.
 */
export function entryHash(entry: UnsealedEntry | StoredAuditEntry): string {
  return sha256Hex(canonical(entry, "hash"));
}

/** Computes `hash` and returns the sealed entry with the line that stores it (no newline). */
export function sealEntry(entry: UnsealedEntry): { entry: AuditEntry; line: string } {
  const body = canonical(entry);
  const hash = sha256Hex(body);
  return { entry: { ...entry, hash }, line: `${body.slice(0, -1)},"hash":"${hash}"}` };
}

/** The canonical form of `value` (without its member `omit`); no closure: every append and every verified entry comes here. */
function canonical(value: object, omit?: string): string {
  try {
    return omit === undefined ? canonicalJson(value) : canonicalObject(value as Record<string, unknown>, omit);
  } catch (cause) {
    // Lone surrogates, NaN and the like: the value cannot be hashed stably.
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `audit entry cannot be canonicalised: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

// ---- making caller-supplied text storable ------------------------------------------------

/** Characters kept per caller-supplied field: tokens and receipts carry x5c chains. */
export const ENTRY_TEXT_LIMITS = { text: 2048, token: 64 * 1024, delegation: 64 } as const;

/**
 * `value` as the log can store it: lone surrogates (which have no canonical form) replaced
 * with U+FFFD, and cut to `max` characters followed by its length and digest. What was done
 * is noted under `name`.
 */
export function storableText(name: string, value: string, max: number, notes: OmissionNotes): string {
  let out = value;
  const cut = truncateText(out, max);
  if (cut !== null) {
    notes.add(name, `${value.length} characters, cut to ${max}`);
    out = cut;
  }
  const fixed = replaceLoneSurrogates(out);
  if (fixed.replaced > 0) notes.add(name, `${fixed.replaced} lone surrogate(s) replaced with U+FFFD`);
  return fixed.text;
}

// ---- validation -------------------------------------------------------------------------

const HEX64 = /^[0-9a-f]{64}$/;
// ISO 8601 as Date.prototype.toISOString writes it, with an optional offset instead of Z.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

const SIDES: ReadonlySet<string> = new Set<AuditSide>(["caller", "callee", "proxy"]);
const DECISIONS: ReadonlySet<string> = new Set<AuditDecision>(["allow", "deny", "audit-only"]);
const OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(["ok", "error", "denied", "interrupted"]);
const AUTH_METHODS: ReadonlySet<string> = new Set<AuditAuthMethod>(["signed", "bearer"]);
/** Version 1 writers knew no interrupted calls. */
const V1_OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(["ok", "error", "denied"]);

type Check = (value: unknown) => string | null; // null when valid, else what was expected

const nonEmptyString: Check = (v) => (typeof v === "string" && v.length > 0 ? null : "a non-empty string");
// Caller-supplied text: any string, as hostile content must still be recorded.
const anyString: Check = (v) => (typeof v === "string" ? null : "a string");
const stringArray =
  (nonEmpty: boolean): Check =>
  (v) =>
    Array.isArray(v) && v.every((s) => typeof s === "string" && (!nonEmpty || s.length > 0))
      ? null
      : `an array of ${nonEmpty ? "non-empty " : ""}strings`;
const oneOf =
  (set: ReadonlySet<string>): Check =>
  (v) =>
    typeof v === "string" && set.has(v) ? null : `one of ${[...set].join(", ")}`;
const boolean: Check = (v) => (typeof v === "boolean" ? null : "true or false");

export function isIsoTime(v: unknown): v is string {
  return typeof v === "string" && ISO_TIME.test(v) && Number.isFinite(Date.parse(v));
}

export function isHex64(v: unknown): v is string {
  return typeof v === "string" && HEX64.test(v);
}

export function isPositiveSafeInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
}

interface FieldSpec {
  readonly required: boolean;
  readonly check: Check;
}

/** A field table, as a Map so that keys like "__proto__" or "toString" are just unknown fields. */
interface FieldTable {
  readonly specs: ReadonlyMap<string, FieldSpec>;
  readonly required: readonly string[];
}

function fieldTable(entries: readonly (readonly [string, FieldSpec])[]): FieldTable {
  const specs = new Map(entries);
  return { specs, required: [...specs].filter(([, spec]) => spec.required).map(([key]) => key) };
}

const isoTime: Check = (v) => (isIsoTime(v) ? null : "an ISO 8601 timestamp");
const hex64: Check = (v) => (isHex64(v) ? null : "64 lower-case hex digits");
const duration: Check = (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? null : "a finite number >= 0");
const field = (required: boolean, check: Check): FieldSpec => ({ required, check });

/**
 * Fields a caller may supply; `required` ones must be present. Text is any string: what a
 * hostile caller sent (an empty tool name, a lone surrogate, 10 MB) is made storable and
 * recorded, never refused.
 */
/** Text fields: any string (see above). */
const text = (required: boolean, ...keys: string[]): Array<readonly [string, FieldSpec]> =>
  keys.map((key) => [key, field(required, anyString)] as const);
const INPUT_FIELDS: readonly (readonly [string, FieldSpec])[] = [
  ["time", field(false, isoTime)],
  ["side", field(true, oneOf(SIDES))],
  ...text(true, "caller"),
  ["callerVerified", field(true, boolean)],
  ["authMethod", field(false, oneOf(AUTH_METHODS))],
  ...text(false, "accessTokenJti"),
  ...text(true, "callee", "tool", "argsDigest"),
  ["args", field(false, () => null)], // anything: made storable when it is kept
  ["delegation", field(false, stringArray(false))],
  ...text(false, "person", "personEmail", "approvedBy"),
  ["actors", field(false, stringArray(false))],
  ["approvedAt", field(false, isoTime)],
  ["decision", field(true, oneOf(DECISIONS))],
  ...text(false, "reason"),
  ["outcome", field(false, oneOf(OUTCOMES))],
  ...text(false, "resultDigest"),
  ["durationMs", field(false, duration)],
  ...text(false, "jti", "traceId", "spanId", "parentSpanId", "traceNote", "toolCallId", "token", "receipt"),
];

const INPUT_TABLE = fieldTable(INPUT_FIELDS);

/** A stored version 2 entry: the input fields (time now required) plus what the log assigns. */
const STORED_V2 = fieldTable([
  ["v", field(true, (v) => (v === 2 ? null : "version 2"))],
  ["seq", field(true, (v) => (isPositiveSafeInteger(v) ? null : "a positive integer"))],
  ...INPUT_FIELDS.filter(([key]) => key !== "time" && key !== "args"),
  ["args", field(false, () => null)], // any JSON
  ["argsOmitted", field(false, stringArray(true))],
  ["sanitized", field(false, stringArray(true))],
  ["time", field(true, isoTime)],
  ["prev", field(true, hex64)],
  ["hash", field(true, hex64)],
]);

/**
 * A stored version 1 entry, as the version 1 writer checked it: the input fields it knew (no
 * callerVerified, no toolCallId), with every text field non-empty and delegation checked
 * strictly, between the sequence and the chain fields.
 */
const V1_UNKNOWN = new Set([
  "time",
  "callerVerified",
  "toolCallId",
  "authMethod",
  "accessTokenJti",
  "person",
  "personEmail",
  "actors",
  "approvedBy",
  "approvedAt",
  "spanId",
  "parentSpanId",
  "traceNote",
]);
const STORED_V1 = fieldTable([
  ["v", field(true, (v) => (v === 1 ? null : "version 1"))],
  ["seq", field(true, (v) => (isPositiveSafeInteger(v) ? null : "a positive integer"))],
  ["time", field(true, isoTime)],
  ...INPUT_FIELDS.filter(([key]) => !V1_UNKNOWN.has(key)).map(([key, spec]): readonly [string, FieldSpec] => {
    if (key === "delegation") return [key, field(false, stringArray(true))];
    if (key === "outcome") return [key, field(false, oneOf(V1_OUTCOMES))];
    return [key, spec.check === anyString ? field(spec.required, nonEmptyString) : spec];
  }),
  ["prev", field(true, hex64)],
  ["hash", field(true, hex64)],
]);

function checkFields(value: unknown, table: FieldTable, skipUndefined: boolean): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const spec = table.specs.get(key);
    if (spec === undefined) return `unknown field "${key.length <= 64 ? key : `${key.slice(0, 64)}…`}"`;
    const v = record[key];
    if (v === undefined && skipUndefined) continue;
    const expected = spec.check(v);
    if (expected !== null) return `field "${key}" must be ${expected}`;
  }
  for (const key of table.required) {
    if (record[key] === undefined) return `missing field "${key}"`;
  }
  return null;
}

/**
 * Throws ERR_ARGUMENT_INVALID unless `input` is a well-formed `AuditEntryInput`: only for
 * programming errors (a missing field, a wrong type), never for what a caller sent.
 */
export function validateEntryInput(input: unknown): asserts input is AuditEntryInput {
  // Optional fields set to undefined are accepted, as object spreads produce them.
  const problem = checkFields(input, INPUT_TABLE, true);
  if (problem !== null) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `audit entry: ${problem}`);
}

/** Returns why `value` (a parsed line) is not a well-formed stored entry of version 1 or 2, or null. */
export function entryProblem(value: unknown): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const v = (value as { v?: unknown }).v;
  if (v === 2) return checkFields(value, STORED_V2, false);
  if (v === 1) return checkFields(value, STORED_V1, false);
  return `field "v" must be ${AUDIT_ENTRY_VERSION} (or 1, an older version)`;
}

/**
 * A stored entry as readers see it: a version 2 entry as it is; a version 1 entry with its
 * caller as data ("unverified:X" reads as caller X, not verified; "unknown" as not verified);
 * a `reason` written under a code's old name reads as its name today (legacy-codes.ts).
 * Hash checks use the stored record, never this view.
 */
export function readableEntry(stored: StoredAuditEntry): AuditEntry {
  const entry = stored.v === 1 ? readableV1(stored) : (stored as AuditEntry);
  if (entry.reason === undefined) return entry;
  const reason = currentCode(entry.reason);
  return reason === entry.reason ? entry : { ...entry, reason };
}

function readableV1(stored: StoredAuditEntry): AuditEntry {
  const caller = stored.caller;
  if (caller.startsWith(V1_UNVERIFIED_PREFIX))
    return { ...stored, caller: caller.slice(V1_UNVERIFIED_PREFIX.length), callerVerified: false };
  return { ...stored, callerVerified: caller !== "unknown" };
}

/**
 * Validates a parsed line as a stored entry (throwing ERR_AUDIT_CORRUPT if it is not one) and
 * returns its readable view.
 */
export function parseAuditEntry(value: unknown): AuditEntry {
  return readableEntry(parseStoredEntry(value));
}

/** Validates a parsed line as a stored entry, throwing ERR_AUDIT_CORRUPT if it is not one; returns it as stored. */
export function parseStoredEntry(value: unknown): StoredAuditEntry {
  const problem = entryProblem(value);
  if (problem !== null) throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `malformed audit entry: ${problem}`);
  return value as StoredAuditEntry;
}

/** What an entry records of the arguments: their digest always, the (redacted) values only when asked. */
export interface EntryArgsOptions {
  readonly includeArgs: boolean;
  readonly redactFields: readonly string[];
}

// Module functions rather than closures in entryFields: every append calls it.
function storedText(notes: OmissionNotes, name: string, value: string, max: number = ENTRY_TEXT_LIMITS.text): string {
  return storableText(name, value, max, notes);
}

function storedOptional(
  notes: OmissionNotes,
  name: string,
  value: string | undefined,
  max?: number,
): string | undefined {
  return value === undefined ? undefined : storableText(name, value, max ?? ENTRY_TEXT_LIMITS.text, notes);
}

/**
 * The entry every log stores for `input` (the file log, and PostgreSQL's many-writer log, so
 * an entry means the same whichever wrote it). Copied field by field: only known fields reach
 * the log, and nothing the caller mutates later. Every caller-supplied string is made storable
 * first (a lone surrogate has no canonical form, 10 MB do not belong in one line), and what was
 * changed is recorded in `sanitized`. With `link`, its place in the chain (`prev`, `seq`) is
 * set too; without it, the writer sets them once it holds the chain's head. Members are added
 * in RFC 8785 order, which lets the hash take its fast path.
 */
export function entryFields(
  input: AuditEntryInput,
  options: EntryArgsOptions,
  link: { prev: string; seq: number },
): UnsealedEntry;
export function entryFields(input: AuditEntryInput, options: EntryArgsOptions): Omit<UnsealedEntry, "seq" | "prev">;
export function entryFields(
  input: AuditEntryInput,
  options: EntryArgsOptions,
  link?: { prev: string; seq: number },
): Omit<UnsealedEntry, "seq" | "prev"> {
  const notes = new OmissionNotes();
  let args: RedactedArgs | undefined;
  if (options.includeArgs && input.args !== undefined) args = redactArgs(input.args, options.redactFields);
  const argsDigest = storedText(notes, "argsDigest", input.argsDigest);
  const callee = storedText(notes, "callee", input.callee);
  const caller = storedText(notes, "caller", input.caller);
  let delegation: string[] | undefined;
  if (input.delegation !== undefined) {
    const all = input.delegation;
    const max = ENTRY_TEXT_LIMITS.delegation;
    if (all.length > max) notes.add("delegation", `${all.length} IDs, the first ${max} kept`);
    delegation = all.slice(0, max).map((id, i) => storedText(notes, `delegation[${i}]`, id));
  }
  let actors: string[] | undefined;
  if (input.actors !== undefined) {
    const all = input.actors;
    const max = ENTRY_TEXT_LIMITS.delegation;
    if (all.length > max) notes.add("actors", `${all.length} IDs, the first ${max} kept`);
    actors = all.slice(0, max).map((id, i) => storedText(notes, `actors[${i}]`, id));
  }
  const person = storedOptional(notes, "person", input.person);
  const personEmail = storedOptional(notes, "personEmail", input.personEmail);
  const approvedBy = storedOptional(notes, "approvedBy", input.approvedBy);
  const jti = storedOptional(notes, "jti", input.jti);
  const accessTokenJti = storedOptional(notes, "accessTokenJti", input.accessTokenJti);
  const reason = storedOptional(notes, "reason", input.reason);
  const receipt = storedOptional(notes, "receipt", input.receipt, ENTRY_TEXT_LIMITS.token);
  const resultDigest = storedOptional(notes, "resultDigest", input.resultDigest);
  const token = storedOptional(notes, "token", input.token, ENTRY_TEXT_LIMITS.token);
  const tool = storedText(notes, "tool", input.tool);
  const traceId = storedOptional(notes, "traceId", input.traceId);
  const spanId = storedOptional(notes, "spanId", input.spanId);
  const parentSpanId = storedOptional(notes, "parentSpanId", input.parentSpanId);
  const traceNote = storedOptional(notes, "traceNote", input.traceNote);
  const toolCallId = storedOptional(notes, "toolCallId", input.toolCallId);
  const sanitized = notes.list();
  const e: { -readonly [K in keyof UnsealedEntry]?: UnsealedEntry[K] } = {};
  if (accessTokenJti !== undefined) e.accessTokenJti = accessTokenJti;
  if (actors !== undefined) e.actors = actors;
  if (input.approvedAt !== undefined) e.approvedAt = input.approvedAt;
  if (approvedBy !== undefined) e.approvedBy = approvedBy;
  if (args !== undefined) e.args = args.value;
  e.argsDigest = argsDigest;
  if (args !== undefined && args.omitted.length > 0) e.argsOmitted = args.omitted;
  if (input.authMethod !== undefined) e.authMethod = input.authMethod;
  e.callee = callee;
  e.caller = caller;
  e.callerVerified = input.callerVerified;
  e.decision = input.decision;
  if (delegation !== undefined) e.delegation = delegation;
  if (input.durationMs !== undefined) e.durationMs = input.durationMs;
  if (jti !== undefined) e.jti = jti;
  if (input.outcome !== undefined) e.outcome = input.outcome;
  if (parentSpanId !== undefined) e.parentSpanId = parentSpanId;
  if (person !== undefined) e.person = person;
  if (personEmail !== undefined) e.personEmail = personEmail;
  if (link !== undefined) e.prev = link.prev;
  if (reason !== undefined) e.reason = reason;
  if (receipt !== undefined) e.receipt = receipt;
  if (resultDigest !== undefined) e.resultDigest = resultDigest;
  if (sanitized.length > 0) e.sanitized = sanitized;
  if (link !== undefined) e.seq = link.seq;
  e.side = input.side;
  if (spanId !== undefined) e.spanId = spanId;
  e.time = input.time ?? new Date().toISOString();
  if (token !== undefined) e.token = token;
  e.tool = tool;
  if (toolCallId !== undefined) e.toolCallId = toolCallId;
  if (traceId !== undefined) e.traceId = traceId;
  if (traceNote !== undefined) e.traceNote = traceNote;
  e.v = AUDIT_ENTRY_VERSION;
  return e as UnsealedEntry;
}
