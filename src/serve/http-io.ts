/**
 * Reading requests and writing answers, strictly: a body not sent as application/json is refused
 * (415) unread (the OAuth token endpoint alone reads a form, as strictly: readForm), a body over the limit is refused (413) as soon as its size is known, bodies must
 * be UTF-8 JSON objects, fields are checked by type
 * before anything uses them, and every answer is JSON with `Cache-Control` set.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject, type JsonObject } from "../json/value.js";

export type { JsonObject };

function invalid(message: string): AztpError {
  return new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}

function tooLong(limit: number): AztpError {
  return new AztpError(ErrorCodes.SERVE_BODY_TOO_LONG, `request body is over the limit of ${limit} bytes`);
}

function unsupportedType(message: string): AztpError {
  return new AztpError(ErrorCodes.SERVE_CONTENT_TYPE_UNSUPPORTED, message);
}

/**
 * Whether a Content-Type names JSON as this API reads it: `application/json` in any case, with
 * no charset or `utf-8` (quoted or not). Other parameters are ignored (application/json defines
 * none); anything else, `+json` types and lists included, is not.
 */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const [type, ...params] = value.split(";");
  if ((type ?? "").trim().toLowerCase() !== "application/json") return false;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0) {
      if (p.trim() === "") continue;
      return false;
    }
    if (p.slice(0, eq).trim().toLowerCase() !== "charset") continue;
    let charset = p.slice(eq + 1).trim();
    if (charset.length >= 2 && charset.startsWith('"') && charset.endsWith('"')) charset = charset.slice(1, -1);
    if (charset.toLowerCase() !== "utf-8") return false;
  }
  return true;
}

/**
 * Refuses (415) a body that is not JSON by its headers, before a byte of it is read. A missing
 * Content-Type is refused too: the requests a browser may send cross-origin without asking
 * first (text/plain, forms, multipart) cannot carry application/json, so a page elsewhere can
 * never get a body past this.
 */
function checkJsonHeaders(req: IncomingMessage): void {
  const type = req.headers["content-type"];
  if (!isJsonContentType(type)) {
    throw unsupportedType(
      type === undefined
        ? "request body has no Content-Type: send it as application/json"
        : `request body is ${JSON.stringify(type.slice(0, 100))}: send it as application/json (UTF-8)`,
    );
  }
  checkIdentityEncoding(req);
}

function checkIdentityEncoding(req: IncomingMessage): void {
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") {
    throw unsupportedType(
      `request body has Content-Encoding ${JSON.stringify(encoding.slice(0, 100))}: send it uncompressed`,
    );
  }
}

/**
 * The body as a JSON object. Its headers must say application/json (else 415, unread); a
 * declared Content-Length over `limit` is refused before reading;
 * a body that grows past it while streaming is refused at that point. What is left of an
 * oversize body is drained (up to 16 × limit, then the connection is cut) so the client reads
 * the 413 instead of a reset.
 */
export async function readJsonObject(req: IncomingMessage, limit: number): Promise<JsonObject> {
  const text = await readBody(req, limit, checkJsonHeaders);
  if (text.length === 0) throw invalid("request body is empty: expected a JSON object");
  if (nestingDepth(text) > MAX_DEPTH) throw invalid(`request body nests deeper than ${MAX_DEPTH} levels`);
  let value: unknown;
  try {
    value = JSON.parse(text, refuseProto);
  } catch (e) {
    if (e instanceof AztpError) throw e;
    throw invalid(`request body is not valid JSON: ${(e as Error).message.slice(0, 200)}`);
  }
  if (!isJsonObject(value)) throw invalid("request body must be a JSON object");
  return value;
}

/** The media type of an OAuth token request (RFC 6749 §4.4.2). */
export const FORM_CONTENT_TYPE = "application/x-www-form-urlencoded";

/**
 * Whether a Content-Type names an HTML form as the token endpoint reads it: the type in any
 * case, with no charset or `utf-8`; anything else is not.
 */
export function isFormContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const [type, ...params] = value.split(";");
  if ((type ?? "").trim().toLowerCase() !== FORM_CONTENT_TYPE) return false;
  return params.every((p) => {
    const eq = p.indexOf("=");
    if (eq < 0) return p.trim() === "";
    if (p.slice(0, eq).trim().toLowerCase() !== "charset") return true;
    let charset = p.slice(eq + 1).trim();
    if (charset.length >= 2 && charset.startsWith('"') && charset.endsWith('"')) charset = charset.slice(1, -1);
    return charset.toLowerCase() === "utf-8";
  });
}

/**
 * Parameters a form may repeat: RFC 8707's `resource` (one per target service, as RFC 8693's
 * token exchange sends them). Any other repeated parameter is refused as it always was.
 */
const REPEATABLE_FORM_PARAMS: ReadonlySet<string> = new Set(["resource"]);

/**
 * A token request's parameters. `get` reads a parameter given once; reading one that was
 * repeated that way refuses the request (RFC 6749 §3.2: never "the first one wins"), so a grant
 * that takes one `resource` still refuses two. `all` reads a repeatable one (`resource`).
 */
export class FormParams extends Map<string, string> {
  readonly #repeated = new Map<string, string[]>();

  /** Every value of `name`, in the order sent ([] when absent). */
  all(name: string): string[] {
    const many = this.#repeated.get(name);
    if (many !== undefined) return [...many];
    const one = super.get(name);
    return one === undefined ? [] : [one];
  }

  override get(name: string): string | undefined {
    if (this.#repeated.has(name))
      throw invalid(`parameter ${JSON.stringify(name.slice(0, 64))} is given more than once`);
    return super.get(name);
  }

  /** Adds one parameter as read from the body. */
  add(name: string, value: string): void {
    if (!super.has(name)) {
      super.set(name, value);
      return;
    }
    if (!REPEATABLE_FORM_PARAMS.has(name))
      throw invalid(`parameter ${JSON.stringify(name.slice(0, 64))} is given more than once`);
    const many = this.#repeated.get(name) ?? [super.get(name) as string];
    many.push(value);
    this.#repeated.set(name, many);
  }
}

/**
 * An `application/x-www-form-urlencoded` body (the OAuth token endpoint's, and only its), read
 * strictly: the media type (415 otherwise, unread), bounded like a JSON body, UTF-8, every
 * percent-escape well formed and decoding to valid UTF-8, and every parameter at most once
 * (RFC 6749 §3.2: a repeated parameter is invalid_request, never "the first one wins"), but for
 * `resource` (FormParams). A
 * browser may send a form cross-origin without asking; the one route that reads forms is
 * authenticated by what the form itself carries (a signed assertion), never by anything the
 * browser adds, so such a post gains nothing.
 */
export async function readForm(req: IncomingMessage, limit: number): Promise<FormParams> {
  const text = await readBody(req, limit, checkFormHeaders);
  const out = new FormParams();
  if (text.length === 0) return out;
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const name = formDecode(eq < 0 ? pair : pair.slice(0, eq));
    const value = formDecode(eq < 0 ? "" : pair.slice(eq + 1));
    if (name === "") throw invalid("request body has a parameter without a name");
    out.add(name, value);
  }
  return out;
}

function formDecode(part: string): string {
  if (/%(?![0-9A-Fa-f]{2})/.test(part)) throw invalid("request body has a malformed percent-escape");
  try {
    return decodeURIComponent(part.replace(/\+/g, " "));
  } catch {
    throw invalid("request body has a percent-escape that is not UTF-8");
  }
}

function checkFormHeaders(req: IncomingMessage): void {
  const type = req.headers["content-type"];
  if (!isFormContentType(type)) {
    throw unsupportedType(
      type === undefined
        ? `request body has no Content-Type: send it as ${FORM_CONTENT_TYPE}`
        : `request body is ${JSON.stringify(type.slice(0, 100))}: send it as ${FORM_CONTENT_TYPE}`,
    );
  }
  checkIdentityEncoding(req);
}

/**
 * The body as UTF-8 text, once `checkHeaders` has accepted the request's headers (else the body
 * is drained unread). Bounded: a declared Content-Length over `limit` is refused before reading,
 * a body that grows past it while streaming at that point.
 */
async function readBody(
  req: IncomingMessage,
  limit: number,
  checkHeaders: (req: IncomingMessage) => void,
): Promise<string> {
  try {
    checkHeaders(req);
  } catch (e) {
    drain(req, limit);
    throw e;
  }
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    drain(req, limit);
    throw tooLong(limit);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.off("end", onEnd);
        drain(req, limit);
        reject(tooLong(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => resolve();
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", (e) => reject(invalid(`request body could not be read: ${e.message}`)));
    // A client gone before the end of its body: settle, so nothing waits on it forever.
    req.on("close", () => reject(invalid("the request was closed before its body ended")));
  });
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw invalid("request body is not valid UTF-8");
  }
}

/** Deeper than this is no request of this API, and stored JSON is later walked recursively. */
const MAX_DEPTH = 64;

/** The deepest nesting of arrays and objects in JSON text (brackets inside strings skipped). */
function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/**
 * A `__proto__` member (however it is escaped: the reviver sees the decoded key) is refused:
 * copied with Object.assign somewhere downstream it would replace a prototype.
 */
function refuseProto(this: unknown, key: string, value: unknown): unknown {
  if (key === "__proto__")
    throw new AztpError(ErrorCodes.JSON_PROTO_KEY_NOT_ALLOWED, "request body has a __proto__ member");
  return value;
}

function drain(req: IncomingMessage, limit: number): void {
  let more = 0;
  req.on("data", (chunk: Buffer) => {
    more += chunk.length;
    if (more > 16 * limit) req.socket.destroy();
  });
  req.resume();
}

/** Writes a JSON answer. `cache` is the Cache-Control value (default: no-store). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(text);
}

/** Bytes as they are; `headers` names their content-type (and caching, encoding). */
export function sendBytes(res: ServerResponse, status: number, data: Buffer, headers: Record<string, string>): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, {
    "content-type": "application/octet-stream",
    "content-length": data.length,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(data);
}

// ---- field checks: each names the field and the rule, as ERR_ARGUMENT_INVALID ----

export function reqString(body: JsonObject, field: string, max = 64 * 1024): string {
  const v = body[field];
  if (typeof v !== "string" || v.length === 0) throw invalid(`${field} must be a non-empty string`);
  if (v.length > max) throw invalid(`${field} is longer than ${max} characters`);
  return v;
}

export function optString(body: JsonObject, field: string, max = 64 * 1024): string | undefined {
  if (body[field] === undefined || body[field] === null) return undefined;
  return reqString(body, field, max);
}

/** A string that may be empty (a revocation reason). */
export function optText(body: JsonObject, field: string, max = 2048): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${field} must be a string`);
  if (v.length > max) throw invalid(`${field} is longer than ${max} characters`);
  return v;
}

export function optPositiveInt(body: JsonObject, field: string, max = 10 * 365 * 24 * 3600): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0 || v > max)
    throw invalid(`${field} must be a positive integer of at most ${max}`);
  return v;
}

export function reqObject(body: JsonObject, field: string): JsonObject {
  const v = body[field];
  if (!isJsonObject(v)) throw invalid(`${field} must be a JSON object`);
  return v;
}

export function optObject(body: JsonObject, field: string): JsonObject | undefined {
  if (body[field] === undefined || body[field] === null) return undefined;
  return reqObject(body, field);
}

export function optStringArray(body: JsonObject, field: string, maxItems = 256): string[] | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (
    !Array.isArray(v) ||
    v.length > maxItems ||
    !v.every((s) => typeof s === "string" && s.length > 0 && s.length <= 4096)
  ) {
    throw invalid(`${field} must be an array of at most ${maxItems} non-empty strings`);
  }
  return v as string[];
}

/** A query parameter given at most once. */
export function queryParam(params: URLSearchParams, name: string): string | undefined {
  const all = params.getAll(name);
  if (all.length > 1) throw invalid(`query parameter ${name} is given more than once`);
  const v = all[0];
  return v === undefined || v === "" ? undefined : v;
}

export function queryInt(params: URLSearchParams, name: string, min: number, max: number, fallback: number): number {
  const v = queryParam(params, name);
  if (v === undefined) return fallback;
  if (!/^\d{1,15}$/.test(v)) throw invalid(`query parameter ${name} must be an integer from ${min} to ${max}`);
  const n = Number(v);
  if (n < min || n > max) throw invalid(`query parameter ${name} must be an integer from ${min} to ${max}`);
  return n;
}
