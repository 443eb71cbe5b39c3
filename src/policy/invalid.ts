/** How policy validation reports a bad field: one code, and the path of the field in the message. */
import { AztpError, ErrorCodes } from "../errors.js";

/** Throws ERR_POLICY_INVALID naming the field, e.g. `Statement[2].Effect must be "Allow" or "Deny"`. */
export function invalid(path: string, rule: string): never {
  throw new AztpError(ErrorCodes.POLICY_INVALID, `invalid policy: ${path} ${rule}`);
}

/** `base.key`, or `base["key"]` when the key is not a plain identifier (`aztp:caller`, `a.b`). */
export function fieldPath(base: string, key: string): string {
  const step = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  return base === "" ? step.replace(/^\./, "") : `${base}${step}`;
}

/** Text for a value in an error message, clipped so a huge or hostile value stays readable. */
export function shown(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}
