/**
 * Reading the values of options and arguments: each malformed one is a usage error (exit 2)
 * naming the option, except an identity that is not there, which the command fails on (exit 1).
 */
import type { EmbeddedAuthority } from "../authority/authority.js";
import type { IdentityRecord } from "../authority/registry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { parseDuration } from "./duration.js";
import { usage } from "./exit.js";

/** An identity given by AZTP/SPIFFE ID or by name. */
export function resolveIdentity(authority: EmbeddedAuthority, ref: string): IdentityRecord {
  if (ref.includes("://")) return authority.get(ref);
  const rec = authority.findByName(ref);
  if (!rec) throw new AztpError(ErrorCodes.IDENTITY_NOT_FOUND, `no identity named ${JSON.stringify(ref)}`);
  return rec;
}

/** An option that must hold a JSON object; anything else is a usage error (exit 2). */
export function jsonObjectOption(name: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw usage(`${name} must be a JSON object`);
  return value as Record<string, unknown>;
}

export function parseTime(text: string | undefined, option = "--time"): Date | undefined {
  if (text === undefined) return undefined;
  const t = new Date(text);
  if (Number.isNaN(t.getTime())) throw usage(`${option} must be an ISO 8601 date, got ${JSON.stringify(text)}`);
  return t;
}

/** A duration option (90s, 15m, 1h, 7d) in seconds; a malformed one is a usage error. */
export function durationOption(option: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw usage(`${option}: ${(e as Error).message}`);
  }
}
