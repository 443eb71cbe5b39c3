/**
 * Who may read the viewer: the one browser that opened the URL `aztp audit view` printed.
 *
 * The URL carries a one-time token (256 random bits). Its first use is exchanged for a session
 * cookie (HttpOnly, so no script reads it; SameSite=Strict, so no other site's page sends it)
 * and a redirect that takes the token out of the address bar and the history; a second use is
 * refused, so a token copied from a terminal's scrollback or a process list later is worth
 * nothing. Every other request needs the cookie.
 *
 * The Host header must name this server as it listens (loopback, this port): a page of another
 * site whose name an attacker points at 127.0.0.1 (DNS rebinding) is same-origin with nothing
 * here, and its requests carry its own host name. A request that says where it comes from
 * (`Origin`, `Sec-Fetch-Site`) must come from this origin.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

export type Admission =
  { readonly ok: true } | { readonly ok: false; readonly status: 401 | 403; readonly message: string };

export type Exchange =
  | { readonly ok: true; readonly cookie: string }
  | { readonly ok: false; readonly status: 403; readonly message: string };

export class ViewerSession {
  /** The one-time token the printed URL carries. */
  readonly token: string;
  readonly cookieName: string;
  readonly #hosts: ReadonlySet<string>;
  readonly #origins: ReadonlySet<string>;
  #tokenUsed = false;
  #session: Buffer | null = null;

  /**
   * `hosts`: every `host:port` this server is reached at (`127.0.0.1:8080`, `localhost:8080`);
   * the cookie's name carries the port, as cookies do not tell ports apart.
   */
  constructor(hosts: readonly string[], port: number) {
    this.token = randomBytes(32).toString("base64url");
    this.cookieName = `aztp_view_${port}`;
    this.#hosts = new Set(hosts.map((h) => h.toLowerCase()));
    this.#origins = new Set(hosts.map((h) => `http://${h.toLowerCase()}`));
  }

  /** Whether the request is addressed to this server, from a page of it (or from no page at all). */
  checkTarget(req: IncomingMessage): Admission {
    const host = req.headers.host?.toLowerCase();
    if (host === undefined || !this.#hosts.has(host))
      return { ok: false, status: 403, message: "this server answers only to its own loopback address (Host header)" };
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== "null" && !this.#origins.has(origin.toLowerCase()))
      return { ok: false, status: 403, message: "cross-origin requests are refused" };
    if (origin === "null") return { ok: false, status: 403, message: "cross-origin requests are refused" };
    const site = req.headers["sec-fetch-site"];
    if (site !== undefined && site !== "same-origin" && site !== "none")
      return { ok: false, status: 403, message: "cross-site requests are refused" };
    return { ok: true };
  }

  /** Exchanges the one-time token for the session cookie, once. */
  exchange(token: string): Exchange {
    if (!equal(token, this.token))
      return { ok: false, status: 403, message: "this is not the link aztp audit view printed" };
    if (this.#tokenUsed)
      return {
        ok: false,
        status: 403,
        message:
          "this link was already used: it opens one browser session only; start aztp audit view again for a new one",
      };
    this.#tokenUsed = true;
    this.#session = randomBytes(32);
    return {
      ok: true,
      cookie: `${this.cookieName}=${this.#session.toString("base64url")}; HttpOnly; SameSite=Strict; Path=/`,
    };
  }

  /** Whether the request carries the session cookie. */
  admit(req: IncomingMessage): Admission {
    const value = cookie(req.headers.cookie, this.cookieName);
    if (value === undefined || this.#session === null)
      return {
        ok: false,
        status: 401,
        message: "open the URL aztp audit view printed: it carries a one-time token that opens a session",
      };
    if (!equal(value, this.#session.toString("base64url")))
      return { ok: false, status: 403, message: "this session is not the one the printed link opened" };
    return { ok: true };
  }
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
