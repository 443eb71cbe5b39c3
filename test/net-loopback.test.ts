/**
 * The loopback predicate: the one rule for when plain HTTP is allowed, by `aztp serve` (the
 * address it listens on) and by the client (the host of its `baseUrl`). Every spelling of an
 * address is judged as the WHATWG URL parser reads it, since that is what the client connects
 * to; nothing that merely looks like loopback passes.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { ErrorCodes } from "../src/errors.js";
import { isLoopbackHost } from "../src/net/loopback.js";
import { rejectsWithCode } from "./helpers/authority-util.js";
import { startServe } from "./helpers/serve-util.js";

/**
 * Before there was one predicate, `aztp serve` and the client each had their own, and they
 * disagreed (`::ffff:127.1.2.3` was loopback to one and not the other; neither knew the
 * `[::ffff:7f00:1]` a URL makes of `[::ffff:127.0.0.1]`). The tables run over this list.
 */
const predicates: Array<[string, (host: string) => boolean]> = [["net/loopback", isLoopbackHost]];

/** [host, loopback?, why]: every form of address the predicate may be given. */
const FORMS: Array<[string, boolean, string]> = [
  ["127.0.0.1", true, "IPv4 loopback"],
  ["127.1.2.3", true, "all of 127.0.0.0/8"],
  ["127.255.255.255", true, "all of 127.0.0.0/8"],
  ["localhost", true, "the loopback name"],
  ["LOCALHOST", true, "host names are case-insensitive"],
  ["LocalHost", true, "host names are case-insensitive"],
  ["LOCALHOST.", false, "a trailing dot makes it a DNS name, which getaddrinfo sends to DNS"],
  ["localhost.", false, "a trailing dot makes it a DNS name, which getaddrinfo sends to DNS"],
  ["127.0.0.1.", false, "a trailing dot makes it a DNS name, which getaddrinfo sends to DNS"],
  ["[::1]", true, "IPv6 loopback, as a URL's hostname spells it"],
  ["::1", true, "IPv6 loopback, as --listen takes it"],
  ["0:0:0:0:0:0:0:1", true, "IPv6 loopback, uncompressed"],
  ["[0:0:0:0:0:0:0:1]", true, "IPv6 loopback, uncompressed, bracketed"],
  ["::0001", true, "IPv6 loopback with leading zeros"],
  ["::ffff:127.0.0.1", true, "IPv4-mapped loopback (how Node reports an IPv4 peer on a dual-stack socket)"],
  ["[::ffff:127.0.0.1]", true, "IPv4-mapped loopback, bracketed"],
  ["[::ffff:7f00:1]", true, "IPv4-mapped loopback as a URL's hostname spells it"],
  ["::ffff:7f00:1", true, "IPv4-mapped loopback in hex"],
  ["::ffff:127.1.2.3", true, "IPv4-mapped, all of 127.0.0.0/8"],
  ["[::FFFF:7F00:1]", true, "hex digits are case-insensitive"],
  ["::ffff:10.0.0.1", false, "IPv4-mapped, but not loopback"],
  ["[::ffff:a00:1]", false, "IPv4-mapped, but not loopback"],
  ["::ffff:128.0.0.1", false, "IPv4-mapped, just outside 127.0.0.0/8"],
  ["::127.0.0.1", false, "IPv4-compatible (deprecated): not routed to loopback"],
  ["64:ff9b::7f00:1", false, "NAT64: another machine translates it"],
  ["127.0.0.1.evil.com", false, "a DNS name that starts like an address"],
  ["127.0.0.1.nip.io", false, "a DNS name that resolves to loopback today and anything tomorrow"],
  ["localhost.evil", false, "a DNS name that starts like localhost"],
  ["evil.localhost", false, "a subdomain of localhost: resolved by DNS here"],
  ["localhost.example.com", false, "a DNS name"],
  ["0.0.0.0", false, "every interface"],
  ["[::]", false, "every interface"],
  ["::", false, "every interface"],
  ["10.0.0.1", false, "a private address: other machines reach it"],
  ["128.0.0.1", false, "just outside 127.0.0.0/8"],
  ["126.255.255.255", false, "just outside 127.0.0.0/8"],
  ["0177.0.0.1", true, "octal: the URL parser (and getaddrinfo) read 127.0.0.1"],
  ["2130706433", true, "one 32-bit number: the URL parser (and getaddrinfo) read 127.0.0.1"],
  ["0x7f.1", true, "hex and short form: the URL parser (and getaddrinfo) read 127.0.0.1"],
  ["127.1", true, "short form: the URL parser (and getaddrinfo) read 127.0.0.1"],
  ["0x80.0.0.1", false, "hex: the URL parser reads 128.0.0.1"],
  ["127.0.0.256", false, "not an address: the URL parser refuses it"],
  ["", false, "empty: Node listens on every interface"],
  ["::1%lo", false, "a zone id: no URL can carry it"],
  ["[::1%25lo]", false, "a zone id: no URL can carry it"],
  ["fe80::1%eth0", false, "a zone id on a link-local address"],
  ["127.0.0.1:80", false, "a host with a port is not a host"],
  ["[::1]:80", false, "a host with a port is not a host"],
  ["evil.com@127.0.0.1", false, "userinfo: not a host"],
  ["127.0.0.1/x", false, "a path: not a host"],
  ["127.0.0.1#x", false, "a fragment: not a host"],
  [" 127.0.0.1", false, "white space: not a host"],
  ["127.0.0.1\n", false, "white space: not a host"],
  ["１２７.0.0.1", false, "full-width digits: only ASCII spellings are judged"],
];

describe("the loopback predicate", () => {
  it("judges every form of address", () => {
    const wrong: string[] = [];
    for (const [host, want, why] of FORMS) {
      for (const [side, isLoopback] of predicates) {
        const got = isLoopback(host);
        if (got !== want) wrong.push(`${side}: ${JSON.stringify(host)} gave ${got}, want ${want} (${why})`);
      }
    }
    assert.deepEqual(wrong, []);
  });

  it("every IPv4 address, in every spelling the URL parser reads, is loopback exactly when it is in 127.0.0.0/8", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(fc.tuple(octet, octet, octet, octet), ([a, b, c, d]) => {
        const n = ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
        const hex = (x: number): string => x.toString(16);
        const spellings = [
          `${a}.${b}.${c}.${d}`,
          String(n),
          `0${a.toString(8)}.${b}.${c}.${d}`,
          `0x${hex(a)}.${b}.${c}.${d}`,
          `${a}.${(b << 16) | (c << 8) | d}`,
          `::ffff:${a}.${b}.${c}.${d}`,
          `[::ffff:${a}.${b}.${c}.${d}]`,
          `[::ffff:${hex((a << 8) | b)}:${hex((c << 8) | d)}]`,
        ];
        for (const host of spellings) {
          for (const [side, isLoopback] of predicates) assert.equal(isLoopback(host), a === 127, `${side}: ${host}`);
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a host is judged as a URL reads it: the predicate gives the same for the raw form and the URL's hostname", () => {
    const hostish = fc.oneof(
      fc.constantFrom(...FORMS.map(([h]) => h)),
      fc.stringMatching(/^[0-9a-fA-Fx.:[\]]{1,24}$/),
      fc.string({ maxLength: 24 }),
    );
    fc.assert(
      fc.property(hostish, (host) => {
        const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
        let hostname: string;
        try {
          hostname = new URL(`http://${bracketed}:8443/`).hostname;
        } catch {
          return; // no URL has this host
        }
        for (const [side, isLoopback] of predicates) {
          // A raw form may be refused where its URL reading is not (a trailing dot, userinfo):
          // never the other way round, and never differently for the URL's own hostname.
          if (isLoopback(host)) assert.equal(isLoopback(hostname), true, `${side}: ${host} -> ${hostname}`);
          assert.equal(isLoopback(hostname), isLoopback(new URL(`http://${hostname}/`).hostname), side);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("serve and client use it: an IPv4-mapped loopback address serves and is reached over plain HTTP, a mapped 10/8 one is refused by both", async (t) => {
    const s = await startServe(t, { insecureHttp: true, host: "::ffff:7f00:1" });
    const client = new AuthorityHttp({
      baseUrl: `http://[::ffff:127.0.0.1]:${s.running.port}`,
      roots: () => undefined,
      serverId: () => `spiffe://${s.trustDomain}/aztp/serve`,
    });
    t.after(() => client.close());
    assert.equal(client.baseUrl.hostname, "[::ffff:7f00:1]", "what the client judges is the URL parser's reading");
    assert.deepEqual(await client.get("healthz", { auth: false }), { status: "ok" });

    await rejectsWithCode(
      () => startServe(t, { insecureHttp: true, host: "::ffff:10.0.0.1" }),
      ErrorCodes.SERVE_INSECURE_HTTP_NOT_ALLOWED,
    );
    assert.throws(
      () => new AuthorityHttp({ baseUrl: "http://[::ffff:10.0.0.1]:1", roots: () => undefined, serverId: () => "x" }),
      (e: unknown) => (e as { code?: string }).code === ErrorCodes.AUTHORITY_REMOTE_HTTP_NOT_ALLOWED,
    );
  });
});
