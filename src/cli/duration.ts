/** Parses `90`, `90s`, `15m`, `1h`, `7d` into seconds. */
import { AztpError, ErrorCodes } from "../errors.js";

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([smhd]?)$/.exec(text.trim());
  const n = m ? Number(m[1]) * (UNITS[m[2] || "s"] ?? 1) : NaN;
  if (!m || !Number.isFinite(n) || n <= 0) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `invalid duration ${JSON.stringify(text)}: use e.g. 90s, 15m, 1h or 7d`,
    );
  }
  return Math.floor(n);
}
