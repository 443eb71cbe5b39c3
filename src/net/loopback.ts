/**
 * The loopback predicate: whether a host is this machine and no other, which decides when plain
 * HTTP is allowed (`aztp serve --insecure-http` on the address it listens on; a client's
 * `baseUrl`), so an API key or an SVID never crosses a network in clear by a spelling mistake.
 *
 * A host is judged as the WHATWG URL parser reads it, because that is what the client connects
 * to: `new URL(baseUrl).hostname` is already normalised, so `http://[::ffff:127.0.0.1]/` has
 * the hostname `[::ffff:7f00:1]`, and `http://0177.0.0.1/` and `http://2130706433/` have
 * `127.0.0.1`. The same raw spellings given to `--listen` are read the same way by getaddrinfo
 * (inet_aton's octal, hex and short forms), so the predicate and the socket agree on them too.
 *
 * Loopback: `localhost` (any case), 127.0.0.0/8 in any spelling the URL parser reads, `::1` in
 * any spelling, and IPv4-mapped 127.0.0.0/8 (`::ffff:127.x.y.z`, how Node reports an IPv4 peer
 * on a dual-stack socket). Not loopback, on purpose:
 *
 * - a trailing dot (`localhost.`, `127.0.0.1.`): the URL parser drops it from an IPv4 address,
 *   but getaddrinfo then asks DNS, which nothing promises answers with this machine;
 * - names under or around localhost (`evil.localhost`, `localhost.evil`, `127.0.0.1.nip.io`):
 *   DNS answers for them;
 * - `0.0.0.0`, `::` and the empty host (every interface), IPv4-compatible `::127.0.0.1` and
 *   NAT64 `64:ff9b::7f00:1` (routed elsewhere);
 * - zone ids (`::1%lo`, `fe80::1%eth0`): no URL can carry one, so no client could use it;
 * - anything that is not a bare host (a port, userinfo, a path, white space) and anything not
 *   ASCII: the URL parser would read a host out of `evil@127.0.0.1` or map full-width digits,
 *   and what the predicate accepts must be exactly what it was given.
 */

/** What a bare host may hold: an IPv6 literal in brackets, or letters, digits, dots and hyphens. */
const BARE_HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.\-_]+)$/;
/** The URL parser writes every IPv4 address as four decimal octets. */
const IPV4_LOOPBACK = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;
/** ...and every IPv6 address compressed, lower case, an IPv4-mapped one as ::ffff:XXXX:XXXX. */
const MAPPED_LOOPBACK = /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/;

/**
 * True when `host` (a URL's hostname, or a listen address, IPv6 with or without brackets) is
 * this machine: see the file comment for every form.
 */
export function isLoopbackHost(host: string): boolean {
  const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  if (!BARE_HOST.test(bracketed) || bracketed.endsWith(".")) return false;
  let hostname: string;
  try {
    hostname = new URL(`http://${bracketed}/`).hostname;
  } catch {
    return false;
  }
  return (
    hostname === "localhost" || IPV4_LOOPBACK.test(hostname) || hostname === "[::1]" || MAPPED_LOOPBACK.test(hostname)
  );
}
