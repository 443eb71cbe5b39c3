/**
 * The audit entry: one record per decision on each side of a tool call, hash-chained to the
 * entry before it.
 *
 * `hash` is the SHA-256 (lower-case hex) of the RFC 8785 canonical JSON of the entry without
 * its `hash` member, and `prev` is the `hash` of the entry before it (`GENESIS_HASH` for the
 * first). Because `prev` is inside what is hashed, changing, removing or reordering any entry
 * breaks the chain at that point; signed checkpoints (checkpoint.ts) then pin the chain's head
 * so the chain cannot simply be rewritten from the edit onwards.
 *
 * On disk an entry is one line of JSON: its canonical form with `"hash"` appended as the last
 * member. Readers never rely on that layout: they parse the line and recompute the canonical
 * form, so any JSON writer that keeps the values produces a verifiable log.
 */
import * as crypto from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { canonicalJson, canonicalObject } from "./canonical.js";
import type { JsonValue } from "./redact.js";

export const AUDIT_ENTRY_VERSION = 1;

/** The `prev` of the first entry of every log: no entry hashes to 64 zeros. */
export const GENESIS_HASH = "0".repeat(64);

export type AuditSide = "caller" | "callee" | "proxy";
export type AuditDecision = "allow" | "deny" | "audit-only";
export type AuditOutcome = "ok" | "error" | "denied";

export interface AuditEntry {
  readonly v: 1;
  /** 1 for the first entry of a log, then +1 per entry, with no gaps. */
  readonly seq: number;
  /** ISO 8601 timestamp of the decision. */
  readonly time: string;
  readonly side: AuditSide;
  /** The caller's SPIFFE ID (as verified; as claimed, or "unknown", when verification failed). */
  readonly caller: string;
  readonly callee: string;
  readonly tool: string;
  /** Digest of the canonical arguments, exactly as the invocation token carries it. */
  readonly argsDigest: string;
  /** The arguments themselves, only when the log was opened with `includeArgs`, redacted. */
  readonly args?: JsonValue;
  /** SPIFFE IDs of the delegation chain, outermost delegator first. */
  readonly delegation?: readonly string[];
  readonly decision: AuditDecision;
  /** The error code behind a deny (or behind an audit-only acceptance). */
  readonly reason?: string;
  readonly outcome?: AuditOutcome;
  readonly resultDigest?: string;
  readonly durationMs?: number;
  readonly jti?: string;
  readonly traceId?: string;
  /** The compact invocation token. */
  readonly token?: string;
  /** The compact receipt. */
  readonly receipt?: string;
  readonly prev: string;
  readonly hash: string;
}

/** What a caller supplies to `AuditLog.append`; the log assigns `v`, `seq`, `prev` and `hash`. */
export interface AuditEntryInput extends Omit<AuditEntry, "v" | "seq" | "prev" | "hash" | "time" | "args"> {
  /** Defaults to the time of the append. */
  readonly time?: string;
  /** Raw arguments: kept (redacted) only when the log was opened with `includeArgs`. */
  readonly args?: unknown;
}

/** An entry before it is sealed with its hash. */
export type UnsealedEntry = Omit<AuditEntry, "hash">;

/** SHA-256 hex of the canonical JSON of `entry` without `hash` (the value `hash` must hold). */
export function entryHash(entry: UnsealedEntry | AuditEntry): string {
  return sha256Hex(canonical(() => canonicalObject(entry as unknown as Record<string, unknown>, "hash")));
}

/** Computes `hash` and returns the sealed entry with the line that stores it (no newline). */
export function sealEntry(entry: UnsealedEntry): { entry: AuditEntry; line: string } {
  const body = canonical(() => canonicalJson(entry));
  const hash = sha256Hex(body);
  return { entry: { ...entry, hash }, line: `${body.slice(0, -1)},"hash":"${hash}"}` };
}

/** SHA-256 of the UTF-8 of `text`, hex. */
export const sha256Hex: (text: string) => string =
  // The one-shot crypto.hash (Node 20.12+) skips a Hash object per call: every entry pays this.
  typeof crypto.hash === "function"
    ? (text) => crypto.hash("sha256", text, "hex")
    : (text) => crypto.createHash("sha256").update(text, "utf8").digest("hex");

function canonical(serialise: () => string): string {
  try {
    return serialise();
  } catch (cause) {
    // Lone surrogates, NaN and the like: the value cannot be hashed stably.
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `audit entry cannot be canonicalised: ${(cause as Error).message}`, {
      cause,
    });
  }
}

// ---- validation -------------------------------------------------------------------------

const HEX64 = /^[0-9a-f]{64}$/;
// ISO 8601 as Date.prototype.toISOString writes it, with an optional offset instead of Z.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

const SIDES: ReadonlySet<string> = new Set<AuditSide>(["caller", "callee", "proxy"]);
const DECISIONS: ReadonlySet<string> = new Set<AuditDecision>(["allow", "deny", "audit-only"]);
const OUTCOMES: ReadonlySet<string> = new Set<AuditOutcome>(["ok", "error", "denied"]);

type Check = (value: unknown) => string | null; // null when valid, else what was expected

const nonEmptyString: Check = (v) => (typeof v === "string" && v.length > 0 ? null : "a non-empty string");
const oneOf =
  (set: ReadonlySet<string>): Check =>
  (v) =>
    typeof v === "string" && set.has(v) ? null : `one of ${[...set].join(", ")}`;

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

/** Fields a caller may supply; `required` ones must be present. */
const INPUT_FIELDS: readonly (readonly [string, FieldSpec])[] = [
  ["time", { required: false, check: isoTime }],
  ["side", { required: true, check: oneOf(SIDES) }],
  ["caller", { required: true, check: nonEmptyString }],
  ["callee", { required: true, check: nonEmptyString }],
  ["tool", { required: true, check: nonEmptyString }],
  ["argsDigest", { required: true, check: nonEmptyString }],
  ["args", { required: false, check: () => null }], // validated as JSON when it is kept
  [
    "delegation",
    {
      required: false,
      check: (v) =>
        Array.isArray(v) && v.every((id) => typeof id === "string" && id.length > 0) ? null : "an array of non-empty strings",
    },
  ],
  ["decision", { required: true, check: oneOf(DECISIONS) }],
  ["reason", { required: false, check: nonEmptyString }],
  ["outcome", { required: false, check: oneOf(OUTCOMES) }],
  ["resultDigest", { required: false, check: nonEmptyString }],
  [
    "durationMs",
    { required: false, check: (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? null : "a finite number >= 0") },
  ],
  ["jti", { required: false, check: nonEmptyString }],
  ["traceId", { required: false, check: nonEmptyString }],
  ["token", { required: false, check: nonEmptyString }],
  ["receipt", { required: false, check: nonEmptyString }],
];

const INPUT_TABLE = fieldTable(INPUT_FIELDS);

/** Fields of a stored entry: the input fields (time now required) plus what the log assigns. */
const STORED_TABLE = fieldTable([
  ["v", { required: true, check: (v) => (v === AUDIT_ENTRY_VERSION ? null : `version ${AUDIT_ENTRY_VERSION}`) }],
  ["seq", { required: true, check: (v) => (isPositiveSafeInteger(v) ? null : "a positive integer") }],
  ...INPUT_FIELDS.filter(([key]) => key !== "time"),
  ["time", { required: true, check: isoTime }],
  ["prev", { required: true, check: hex64 }],
  ["hash", { required: true, check: hex64 }],
]);

function checkFields(value: unknown, table: FieldTable, skipUndefined: boolean): string | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not a JSON object";
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const spec = table.specs.get(key);
    if (spec === undefined) return `unknown field "${key}"`;
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

/** Throws ERR_INVALID_ARGUMENT unless `input` is a well-formed `AuditEntryInput`. */
export function validateEntryInput(input: unknown): asserts input is AuditEntryInput {
  // Optional fields set to undefined are accepted, as object spreads produce them.
  const problem = checkFields(input, INPUT_TABLE, true);
  if (problem !== null) throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `audit entry: ${problem}`);
}

/** Returns why `value` (a parsed line) is not a well-formed stored entry, or null if it is. */
export function entryProblem(value: unknown): string | null {
  return checkFields(value, STORED_TABLE, false);
}

/** Validates a parsed line as a stored entry, throwing ERR_AUDIT_CORRUPT if it is not one. */
export function parseAuditEntry(value: unknown): AuditEntry {
  const problem = entryProblem(value);
  if (problem !== null) throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `malformed audit entry: ${problem}`);
  return value as AuditEntry;
}
