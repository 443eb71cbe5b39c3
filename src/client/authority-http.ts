/**
 * The transport to a remote `aztp serve`: JSON over HTTPS, the server checked against the
 * trust bundle this process already holds, never against the system's web PKI.
 *
 * - TLS: the chain must reach one of the bundle's X.509 roots (the `ca` option, nothing else),
 *   and the leaf's URI SAN must be the expected server ID (spiffe://TD/aztp/serve, or
 *   `serverId`). SVIDs carry no DNS name, so there is no hostname check: the SPIFFE ID is
 *   what names the server.
 * - Plain http only to loopback or with `allowInsecureHttp`: an API key sent in the clear to
 *   another host is a leaked key.
 * - Every request has a timeout and every answer a size limit; a JSON error body comes back as
 *   an AztpError with the server's code and rule, so callers switch on the same codes as with
 *   the embedded authority. A connection that fails (refused, reset, timed out) is
 *   ERR_AUTHORITY_REMOTE_UNAVAILABLE naming the URL and the cause.
 * - Idempotent GETs are retried once on a connection failure other than a timeout (a
 *   keep-alive socket the server closed meanwhile is the usual cause); POSTs and DELETEs never
 *   are, since the first may have landed.
 */
import http from "node:http";
import https from "node:https";
import type { PeerCertificate } from "node:tls";
import { AztpError, ErrorCodes, type ErrorCode } from "../errors.js";
import { isLoopbackHost } from "../net/loopback.js";

export const DEFAULT_TIMEOUT_MS = 10_000;
/** Answers are records, lists and bundles: 8 MiB holds a list of some 10,000 identities. */
export const DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024;

export interface AuthorityHttpOptions {
  baseUrl: string;
  apiKey?: string | undefined;
  /** Plain http to a host that is not loopback (behind a TLS-terminating proxy you trust). */
  allowInsecureHttp?: boolean | undefined;
  /**
   * The X.509 roots (PEM) the server's chain must reach, asked for on every new connection (the
   * bundle feed may have replaced them).
   */
  roots: () => string | undefined;
  /** The URI SAN the server's leaf must carry, asked for on every new connection. */
  serverId: () => string;
  timeoutMs?: number | undefined;
  maxAnswerBytes?: number | undefined;
}

export interface RequestOptions {
  /** Send the API key (every /v1 route but the feeds). Default true. */
  auth?: boolean;
  /** Per-request timeout (default: the transport's). */
  timeoutMs?: number;
}

/** Connection-level failures: the service is not there (or went away mid-request). */
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "ENOTFOUND",
  "ECONNABORTED",
  "UND_ERR_SOCKET",
]);

/** OpenSSL's chain-verification failures, as Node names them: the server is not one the bundle vouches for. */
const TLS_TRUST_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "INVALID_CA",
  "INVALID_PURPOSE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
  "ERR_AZTP_SERVER_ID",
]);

export class AuthorityHttp {
  readonly baseUrl: URL;
  readonly #apiKey: string | undefined;
  readonly #options: AuthorityHttpOptions;
  readonly #agent: http.Agent;
  readonly #timeoutMs: number;
  readonly #maxAnswer: number;
  readonly #secure: boolean;

  constructor(options: AuthorityHttpOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `baseUrl ${JSON.stringify(options.baseUrl)} is not a URL (expected https://HOST:PORT)`,
      );
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `baseUrl ${url.origin} must be https:// (or http:// to loopback)`,
      );
    }
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname) && options.allowInsecureHttp !== true) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_REMOTE_HTTP_NOT_ALLOWED,
        `baseUrl ${url.origin} is plain http to a host that is not loopback: the API key and every answer would travel unprotected. Use https:// (aztp serve's default), or pass allowInsecureHttp: true only behind a TLS-terminating proxy you trust`,
      );
    }
    if (options.apiKey !== undefined && (typeof options.apiKey !== "string" || /[\r\n]/.test(options.apiKey))) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "apiKey must be a string of one line");
    }
    // Paths are appended to the base (a service mounted under /aztp/ keeps its prefix).
    if (!url.pathname.endsWith("/")) url.pathname += "/";
    this.baseUrl = url;
    this.#secure = url.protocol === "https:";
    this.#apiKey = options.apiKey;
    this.#options = options;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxAnswer = options.maxAnswerBytes ?? DEFAULT_MAX_ANSWER_BYTES;
    this.#agent = this.#secure
      ? new https.Agent({ keepAlive: true, maxSockets: 64 })
      : new http.Agent({ keepAlive: true, maxSockets: 64 });
  }

  get secure(): boolean {
    return this.#secure;
  }

  /** GET `path` (relative to the base URL) and parse its JSON; retried once on a connection failure. */
  async get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    try {
      return await this.#once<T>("GET", path, undefined, options);
    } catch (e) {
      // A dropped or refused connection is worth one more try (a keep-alive socket the server
      // closed meanwhile); a timeout is not: it would only double the wait.
      const cause = e instanceof AztpError ? (e.cause as NodeJS.ErrnoException | undefined) : undefined;
      if (e instanceof AztpError && e.code === ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE && cause?.code !== "ETIMEDOUT")
        return this.#once<T>("GET", path, undefined, options);
      throw e;
    }
  }

  /** POST `body` as JSON; never retried here (it may have been applied): the caller decides. */
  post<T>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.#once<T>("POST", path, { json: body }, options);
  }

  /**
   * DELETE `path`; never retried here: a first request that landed would make the second's
   * "not found" look like a failure.
   */
  delete<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.#once<T>("DELETE", path, undefined, options);
  }

  /**
   * POST `params` as an HTML form (the OAuth token endpoint's media type); never retried. An
   * OAuth error answer (`{ error, error_description, code }`) comes back as the AztpError of its
   * `code`. A list value sends its parameter once per value (RFC 8707's repeated `resource`).
   */
  postForm<T>(path: string, params: Readonly<Record<string, FormValue>>, options: RequestOptions = {}): Promise<T> {
    return this.#once<T>("POST", path, { form: params }, options);
  }

  /** Closes idle keep-alive sockets and refuses none in flight (they end on their own). */
  close(): void {
    this.#agent.destroy();
  }

  #once<T>(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body: { json: unknown } | { form: Readonly<Record<string, FormValue>> } | undefined,
    options: RequestOptions,
  ): Promise<T> {
    const url = new URL(path.replace(/^\//, ""), this.baseUrl);
    const where = `${method} ${url.origin}${url.pathname}`;
    const payload =
      body === undefined
        ? undefined
        : Buffer.from("json" in body ? JSON.stringify(body.json) : formText(body.form), "utf8");
    const headers: Record<string, string> = { accept: "application/json" };
    if (payload !== undefined) {
      headers["content-type"] =
        body !== undefined && "form" in body ? "application/x-www-form-urlencoded" : "application/json";
      headers["content-length"] = String(payload.length);
    }
    if (options.auth !== false && this.#apiKey !== undefined) headers.authorization = `Bearer ${this.#apiKey}`;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;

    return new Promise<T>((resolvePromise, rejectPromise) => {
      let settled = false;
      const fail = (e: AztpError): void => {
        if (settled) return;
        settled = true;
        rejectPromise(e);
      };
      const common: http.RequestOptions = { method, headers, agent: this.#agent, timeout: timeoutMs };
      let req: http.ClientRequest;
      if (this.#secure) {
        const roots = this.#options.roots();
        if (roots === undefined || roots.trim() === "") {
          fail(
            new AztpError(
              ErrorCodes.AUTHORITY_REMOTE_TRUST_BUNDLE_MISSING,
              `no trust bundle to check ${url.origin} against: pass trustBundle (a PEM or SPIFFE bundle file), --trust-bundle FILE, or AZTP_TRUST_BUNDLE`,
            ),
          );
          return;
        }
        const expected = this.#options.serverId();
        req = https.request(url, {
          ...common,
          ca: roots,
          rejectUnauthorized: true,
          // The server is named by its SPIFFE ID, not a DNS name (an SVID has none).
          checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerId(cert, expected),
        });
      } else {
        req = http.request(url, common);
      }
      // A deadline for the whole exchange, not only for idle sockets.
      const deadline = setTimeout(() => {
        req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: "ETIMEDOUT" }));
      }, timeoutMs);
      deadline.unref();
      req.on("timeout", () =>
        req.destroy(Object.assign(new Error(`socket idle for ${timeoutMs} ms`), { code: "ETIMEDOUT" })),
      );
      req.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(deadline);
        fail(transportError(e, where));
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > this.#maxAnswer) {
            clearTimeout(deadline);
            fail(
              new AztpError(
                ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
                `${where}: the answer is over ${this.#maxAnswer} bytes`,
                { rule: "too-large" },
              ),
            );
            res.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (e: NodeJS.ErrnoException) => {
          clearTimeout(deadline);
          fail(transportError(e, where));
        });
        res.on("end", () => {
          clearTimeout(deadline);
          if (settled) return;
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = text === "" ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) {
            if (parsed === undefined || typeof parsed !== "object" || parsed === null) {
              fail(
                new AztpError(
                  ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
                  `${where}: HTTP ${status} with a body that is not a JSON object`,
                  { rule: "not-json" },
                ),
              );
              return;
            }
            settled = true;
            resolvePromise(parsed as T);
            return;
          }
          fail(errorFromAnswer(status, parsed, where, res.headers["retry-after"]));
        });
      });
      req.end(payload);
    });
  }
}

/** checkServerIdentity: the leaf's one URI SAN must be `expected`. */
function checkServerId(cert: PeerCertificate, expected: string): Error | undefined {
  const uris = (cert.subjectaltname ?? "")
    .split(/,\s*/)
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
  if (uris.length === 1 && uris[0] === expected) return undefined;
  const e = new Error(
    `the server's certificate names ${uris.length === 0 ? "no SPIFFE ID" : uris.join(", ")}, not ${expected}`,
  );
  return Object.assign(e, { code: "ERR_AZTP_SERVER_ID" });
}

function transportError(e: NodeJS.ErrnoException, where: string): AztpError {
  if (e instanceof AztpError) return e;
  const code = e.code ?? "";
  if (TLS_TRUST_CODES.has(code)) {
    return new AztpError(
      ErrorCodes.AUTHORITY_REMOTE_UNTRUSTED,
      `${where}: the server is not the one the trust bundle vouches for (${code}: ${e.message}); pass that service's bundle (trustBundle / --trust-bundle / AZTP_TRUST_BUNDLE), and serverId if it serves under another ID`,
      { cause: e, rule: code === "ERR_AZTP_SERVER_ID" ? "server-id" : "chain" },
    );
  }
  if (UNAVAILABLE_CODES.has(code) || /socket hang up|ECONNRESET/i.test(e.message)) {
    return new AztpError(
      ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
      `${where}: the remote authority cannot be reached (${code || "error"}: ${e.message})`,
      { cause: e },
    );
  }
  // Anything else on the wire (a TLS alert, a protocol error) is as good as no service.
  return new AztpError(
    ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
    `${where}: the request failed (${code || "error"}: ${e.message})`,
    { cause: e },
  );
}

/**
 * The server's `{ error: { code, message, rule? } }` as the AztpError it was on the server; an
 * OAuth route's RFC 6749 answer `{ error, error_description, code, rule? }` likewise.
 */
function errorFromAnswer(status: number, parsed: unknown, where: string, retryAfter: string | undefined): AztpError {
  const top = typeof parsed === "object" && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
  const body =
    typeof top?.error === "string" && typeof top.code === "string"
      ? { code: top.code, message: top.error_description ?? top.error, rule: top.rule }
      : top?.error;
  if (typeof body === "object" && body !== null) {
    const { code, message, rule } = body as { code?: unknown; message?: unknown; rule?: unknown };
    if (typeof code === "string" && /^ERR_[A-Z0-9_]+$/.test(code)) {
      const text = `${typeof message === "string" ? message.slice(0, 2000) : "(no message)"}${retryAfter !== undefined ? ` (retry after ${retryAfter} s)` : ""}`;
      // The server's code as it sent it, even one this version does not know: callers of a
      // newer service switch on its codes.
      return new AztpError(code as ErrorCode, text, typeof rule === "string" ? { rule } : undefined);
    }
  }
  if (status === 502 || status === 503 || status === 504) {
    return new AztpError(
      ErrorCodes.AUTHORITY_REMOTE_UNAVAILABLE,
      `${where}: HTTP ${status} from the remote authority (or a proxy in front of it)`,
    );
  }
  return new AztpError(
    ErrorCodes.AUTHORITY_REMOTE_ANSWER_INVALID,
    `${where}: HTTP ${status} without the API's JSON error body`,
    { rule: "status" },
  );
}

/** A form parameter's value: one, or a list sent as the parameter repeated. */
export type FormValue = string | readonly string[];

function formText(form: Readonly<Record<string, FormValue>>): string {
  const out = new URLSearchParams();
  for (const [name, value] of Object.entries(form)) {
    if (typeof value === "string") out.append(name, value);
    else for (const v of value) out.append(name, v);
  }
  return out.toString();
}
