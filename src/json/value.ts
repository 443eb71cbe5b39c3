/** JSON values, and the two tests of "is this a JSON object" every layer asks. */

/** JSON data: what JSON.parse returns and what a canonical form is taken of. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object whose members are not checked yet (a parsed body, a message's params). */
export type JsonObject = { [key: string]: unknown };

/**
 * Any object but null and arrays: what JSON.parse makes of `{...}`, and what the MCP SDK's
 * schemas accept as an object, so a binding reading a message sees what the SDK sees.
 */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A JSON object that is plain data: its prototype is Object.prototype or null, so it is not a
 * Date, a Map or a class instance whose members JSON would silently drop or misread.
 */
export function isPlainObject(value: unknown): value is JsonObject {
  if (!isJsonObject(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
