/**
 * Where the authorization server sends a person's browser back to the bridge: a loopback
 * redirect URI (RFC 8252 §7.3, `http://127.0.0.1:<port>/callback`), the native-app way, for the
 * authorization code flow the bridge runs when it acts for a person (oauth-client.ts).
 *
 * It listens on 127.0.0.1 only, for the one authorization under way: a request to the callback
 * whose `state` is not that authorization's is answered 400 and changes nothing (anything on
 * this machine can reach the port; only the browser that was given the URL knows the state), so
 * a stray or forged request can neither finish nor cancel the person's login. The code is never
 * logged.
 *
 * How the authorization URL reaches the person: printed (always), opened with the platform's
 * opener (`open`), or, for tests and CI only, fetched by the bridge itself (`headless`): a GET
 * with `redirect: "manual"` whose `Location` must be this callback. That works only with an
 * authorization server that asks nothing of a person (the MCP conformance suite's mock one, or
 * a test provider already signed in); a real one answers with its login page, and the bridge
 * says so.
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import { AztpError, ErrorCodes } from "../errors.js";

/** How the authorization URL is given to the person. */
export type AuthorizeVia = "print" | "open" | "headless";

const CALLBACK_PATH = "/callback";

const PAGE = (text: string): string =>
  `<!doctype html><meta charset="utf-8"><title>aztp mcp bridge</title><p>${text}</p>`;

/** RFC 9207: the issuer the authorization response must name, and whether it must name one. */
export interface ExpectedIssuer {
  issuer: string | undefined;
  required: boolean;
}

interface Waiting {
  state: string;
  issuer: ExpectedIssuer;
  resolve: (code: string) => void;
  reject: (e: Error) => void;
}

/** The loopback listener for authorization responses. */
export class LoopbackRedirect {
  readonly #server: Server;
  #waiting: Waiting | undefined;
  #url: string | undefined;

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Listens on 127.0.0.1:`port` (0: one the system picks). */
  static async start(port = 0): Promise<LoopbackRedirect> {
    const server = createServer();
    const redirect = new LoopbackRedirect(server);
    server.on("request", (req, res) => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      if (req.method !== "GET" || url.pathname !== CALLBACK_PATH) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      const answer = redirect.#deliver(url.searchParams);
      res
        .writeHead(answer.status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" })
        .end(PAGE(answer.text));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) =>
        reject(
          new AztpError(
            ErrorCodes.ARGUMENT_INVALID,
            `the bridge cannot listen for the authorization redirect on 127.0.0.1:${port}: ${e.message}`,
          ),
        ),
      );
      server.listen(port, "127.0.0.1", () => resolve());
    });
    server.unref();
    redirect.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CALLBACK_PATH}`;
    return redirect;
  }

  /** The redirect URI: `http://127.0.0.1:<port>/callback`. */
  get url(): string {
    return this.#url as string;
  }

  #deliver(params: URLSearchParams): { status: number; text: string } {
    const waiting = this.#waiting;
    if (waiting === undefined || params.get("state") !== waiting.state)
      return { status: 400, text: "No authorization with this state is under way here. Nothing was done." };
    this.#waiting = undefined;
    // RFC 9207: an answer naming another authorization server is a mix-up (the person was sent
    // to one, the code would be redeemed at another): refused, the authorization fails.
    const iss = params.get("iss");
    const expected = waiting.issuer;
    if ((iss === null && expected.required) || (iss !== null && !sameIssuer(iss, expected.issuer))) {
      waiting.reject(
        new AztpError(
          ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
          iss === null
            ? `the authorization response carries no iss, which ${expected.issuer ?? "the authorization server"} says it sends (RFC 9207): refused`
            : `the authorization response names the issuer ${JSON.stringify(iss.slice(0, 200))}, not ${expected.issuer ?? "the authorization server asked"} (RFC 9207, a mix-up): the code was not redeemed`,
        ),
      );
      return {
        status: 400,
        text: "The authorization came back from another server than the one asked. Nothing was done.",
      };
    }
    const error = params.get("error");
    const code = params.get("code");
    if (error !== null || code === null || code === "") {
      const why = error ?? "no code";
      const described = params.get("error_description");
      waiting.reject(
        new AztpError(
          ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
          `the authorization server answered the authorization request with ${JSON.stringify(why.slice(0, 100))}${described ? ` (${described.slice(0, 300)})` : ""}`,
        ),
      );
      return { status: 400, text: "The authorization was not given. You can close this window." };
    }
    waiting.resolve(code);
    return { status: 200, text: "Signed in: the bridge has the authorization. You can close this window." };
  }

  /**
   * The code of the authorization whose request carried `state`, once the browser comes back
   * (within `timeoutMs`). One authorization at a time.
   */
  expect(state: string, timeoutMs: number, issuer: ExpectedIssuer): Promise<string> {
    if (this.#waiting !== undefined)
      throw new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "another authorization is already under way");
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#waiting?.state !== state) return;
        this.#waiting = undefined;
        reject(
          new AztpError(
            ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
            `nobody completed the authorization within ${Math.round(timeoutMs / 1000)} s (the URL printed above)`,
          ),
        );
      }, timeoutMs);
      timer.unref();
      this.#waiting = {
        state,
        issuer,
        resolve: (code) => (clearTimeout(timer), resolve(code)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  /**
   * Tests and CI only: follows the authorization URL without a browser, and delivers the
   * redirect to this callback. See the file comment for why only an authorization server that
   * asks nothing of a person can be passed this way.
   */
  async headless(authorizationUrl: URL, fetchFn: FetchLike): Promise<void> {
    let location: string | null = null;
    let at = authorizationUrl;
    // A few hops inside the authorization server (e.g. /authorize → /resume), never outside it.
    for (let hop = 0; hop < 5; hop++) {
      const response = await fetchFn(at, { redirect: "manual" });
      await response.body?.cancel().catch(() => undefined);
      location = response.headers.get("location");
      if (response.status < 300 || response.status >= 400 || location === null)
        throw new AztpError(
          ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
          `--oauth-authorize-headless: the authorization server answered HTTP ${response.status} without a redirect: it wants a person (a login page); headless authorization works only with an authorization server that asks nothing of one`,
        );
      const next = new URL(location, at);
      if (`${next.origin}${next.pathname}` === this.url) {
        const delivered = await fetch(next);
        await delivered.body?.cancel().catch(() => undefined);
        return;
      }
      if (next.origin !== authorizationUrl.origin)
        throw new AztpError(
          ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
          `--oauth-authorize-headless: the authorization server redirects to ${next.origin}, neither itself nor this bridge's callback: it wants a person (a login page elsewhere)`,
        );
      at = next;
    }
    throw new AztpError(
      ErrorCodes.OAUTH_AUTHORIZATION_FAILED,
      "--oauth-authorize-headless: too many redirects inside the authorization server",
    );
  }

  /** Ends the listener (and an authorization still waiting). */
  async close(): Promise<void> {
    this.#waiting?.reject(new AztpError(ErrorCodes.OAUTH_AUTHORIZATION_FAILED, "the bridge stopped"));
    this.#waiting = undefined;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function sameIssuer(a: string, b: string | undefined): boolean {
  return b !== undefined && a.replace(/\/$/, "") === b.replace(/\/$/, "");
}

/** Opens `url` with the platform's opener (no shell: the URL is one argument). */
export function openInBrowser(url: string, log: (line: string) => void): void {
  const [command, args] =
    process.platform === "darwin"
      ? ["open", [url]]
      : process.platform === "win32"
        ? ["rundll32", ["url.dll,FileProtocolHandler", url]]
        : ["xdg-open", [url]];
  try {
    const child = spawn(command, args, { stdio: "ignore", detached: true });
    child.on("error", (e) => log(`could not open a browser (${command}: ${e.message}): open the URL above yourself`));
    child.unref();
  } catch (e) {
    log(`could not open a browser (${command}: ${(e as Error).message}): open the URL above yourself`);
  }
}
