/**
 * Whether a redirect URI in an authorization request is one the client registered, by OAuth
 * 2.1's rule: exact string match, except that the port of a loopback redirect (`http` to
 * 127.0.0.1, [::1] or localhost) may differ, since a native app such as a desktop host listens
 * on whatever port is free (RFC 8252 §7.3; `localhost` too, which MCP hosts use although RFC 8252
 * prefers the IP literal). Nothing else is normalised: a trailing slash, a case or a query that
 * differs is another URI.
 */

const LOOPBACK_NAMES = new Set(["127.0.0.1", "[::1]", "localhost"]);

/** A loopback redirect without its port, for comparison; undefined for any other URI. */
function loopbackWithoutPort(uri: string): string | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return undefined;
  }
  if (u.protocol !== "http:" || !LOOPBACK_NAMES.has(u.hostname) || u.username !== "" || u.password !== "")
    return undefined;
  // Rebuilt from its parts as written: the URL parser would normalise what exact match must not.
  const m = /^http:\/\/([^/?#]+?)(?::\d{1,5})?([/?#].*)?$/i.exec(uri);
  if (m === null) return undefined;
  return `http://${(m[1] as string).toLowerCase()}${m[2] ?? ""}`;
}

/** Whether `requested` is `registered`, exactly, or but for a loopback redirect's port. */
export function redirectUriMatches(requested: string, registered: string): boolean {
  if (requested === registered) return true;
  const a = loopbackWithoutPort(requested);
  return a !== undefined && a === loopbackWithoutPort(registered);
}

/**
 * A redirect URI a client may register: an absolute URI without fragment (RFC 6749 §3.1.2),
 * https, or http to loopback, or a private-use scheme of a native app (`com.example.app:/cb`).
 * Never `javascript:`, `data:` and the like, which a browser would run rather than leave to.
 */
export function redirectUriProblem(uri: unknown): string | undefined {
  if (typeof uri !== "string" || uri.length === 0 || uri.length > 2048)
    return "is not a URI of at most 2048 characters";
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return "is not an absolute URI";
  }
  if (uri.includes("#")) return "has a fragment";
  if (u.protocol === "https:") return undefined;
  if (u.protocol === "http:")
    return loopbackWithoutPort(uri) !== undefined ? undefined : "is http to a host that is not loopback";
  if (["javascript:", "data:", "file:", "blob:", "vbscript:", "about:", "ftp:", "ws:", "wss:"].includes(u.protocol))
    return `uses the ${u.protocol} scheme`;
  // RFC 8252 §7.1: a private-use scheme is a reverse domain name (it has a dot).
  return u.protocol.includes(".")
    ? undefined
    : "uses a scheme that is neither https, loopback http nor a reverse-domain private-use scheme";
}
