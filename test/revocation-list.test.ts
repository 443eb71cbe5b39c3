/**
 * The signed revocation list, end to end at its consumer: what the authority signs verifies
 * against the bundle alone, and the consumer refuses a tampered list, a list of another trust
 * domain or signed by another authority, and a JWS of another typ, each with
 * ERR_REVOCATION_LIST_INVALID naming the rule that failed.
 *
 * Its signed window (iat = thisUpdate, exp = nextUpdate), rule by rule with a passing twin at
 * each edge: past it (plus the tolerance) ERR_REVOCATION_LIST_EXPIRED, signed beyond the
 * tolerance in the future ERR_REVOCATION_LIST_NOT_YET_VALID, none (the old format)
 * ERR_REVOCATION_LIST_WINDOW_MISSING, a window moved by hand breaks the signature; jose reads
 * the same window. And the feed's rule for which list is newer: no rollback in sequence, nor
 * in time within one sequence.
 */
import assert from "node:assert/strict";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { jwtVerify } from "jose";
import {
  DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS,
  MAX_REVOCATION_LIST_VALIDITY_SECONDS,
  REVOCATION_LIST_TYP,
  signRevocationList,
  verifyRevocationList,
  type RevocationList,
} from "../src/authority/revocation-list.js";
import { AuthorityHttp } from "../src/client/authority-http.js";
import { RevocationFeed } from "../src/client/revocation-feed.js";
import { AztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { signCompact } from "../src/spiffe/jws.js";
import { tempDir } from "./helpers/authority-util.js";

function b64uJson(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}

function refused(token: string, source: EmbeddedAuthority, rule: RegExp, options: { trustDomain?: string } = {}): void {
  assert.throws(
    () => verifyRevocationList(token, source, options),
    (e: unknown) => {
      const err = e as { code?: string; message?: string };
      assert.equal(err.code, ErrorCodes.REVOCATION_LIST_INVALID);
      assert.match(err.message ?? "", rule);
      return true;
    },
  );
}

describe("signed revocation list", () => {
  it("verifies against the bundle; refuses tampered, foreign and wrong-typ lists", async (t) => {
    const home = tempDir(t);
    const a = await EmbeddedAuthority.init(home, "example.org");
    const ids: string[] = [];
    for (const name of ["bad", "good"])
      ids.push((await a.issueIdentity({ name }, (await generateWorkloadKey()).csr)).record.spiffeId);
    await a.revoke(ids[0] as string, "compromised");

    const token = a.signedRevocationList();
    const list = verifyRevocationList(token, a, { trustDomain: "example.org" });
    assert.equal(list.revoked(ids[0] as string), "identity");
    assert.equal(list.revoked(ids[1] as string), undefined);
    assert.equal(list.sequence, a.revocationSequence());

    // Tampered: the bad identity taken off the list, the signature kept.
    const [h, p, s] = token.split(".") as [string, string, string];
    const payload = b64uJson(p);
    const forgedPayload = Buffer.from(JSON.stringify({ ...payload, identities: [] })).toString("base64url");
    refused(`${h}.${forgedPayload}.${s}`, a, /signature does not verify/);

    // Another trust domain's list: no bundle for it, or not the one asked for.
    const td = await a.ensureTrustDomain("other.org");
    const other = a.signedRevocationList(td);
    refused(other, a, /not of example\.org/, { trustDomain: "example.org" });
    const b = await EmbeddedAuthority.init(tempDir(t), "elsewhere.org");
    refused(b.signedRevocationList(), a, /no bundle for trust domain elsewhere\.org/);

    // Another authority with the same trust domain name: its key is not in the bundle.
    const impostor = await EmbeddedAuthority.init(tempDir(t), "example.org");
    refused(impostor.signedRevocationList(), a, /holds no JWT key with kid/);

    // The right key, the right payload, another typ (a JWT-SVID's, say): not a revocation list.
    const key = createPrivateKey(readFileSync(join(home, "trust-domains", "example.org", "jwt-key.pem"), "utf8"));
    const kid = (
      JSON.parse(readFileSync(join(home, "trust-domains", "example.org", "jwt.json"), "utf8")) as { kid: string }
    ).kid;
    refused(
      signCompact({ typ: "JWT", kid }, payload, key),
      a,
      new RegExp(`typ must be ${REVOCATION_LIST_TYP.replace("+", "\\+")}`),
    );
    // ... and the same signer, through the list's own signing function, is accepted.
    assert.equal(
      verifyRevocationList(
        signRevocationList(
          { sequence: 7, identities: {}, serials: {} },
          { trustDomain: "example.org", kid, key, validitySeconds: 60 },
        ),
        a,
      ).sequence,
      7,
    );
  });

  describe("its signed window", () => {
    const TD = "window.test";
    const T0 = 1_800_000_000; // thisUpdate, in seconds
    const V = 600; // nextUpdate - thisUpdate
    let a: EmbeddedAuthority;
    let signer: { kid: string; key: KeyObject };
    const at = (seconds: number): Date => new Date(seconds * 1000);
    const signed = (payload: Record<string, unknown>): string =>
      signCompact({ typ: REVOCATION_LIST_TYP, ...{ kid: signer.kid } }, payload, signer.key);
    const base = (): Record<string, unknown> => ({
      iss: `spiffe://${TD}`,
      iat: T0,
      exp: T0 + V,
      sequence: 3,
      identities: [`spiffe://${TD}/revoked`],
      serials: [],
    });
    const { exp: _exp, ...oldFormat } = base();
    const moved = (token: string, change: Record<string, unknown>): string => {
      const [h, p, sig] = token.split(".") as [string, string, string];
      return `${h}.${Buffer.from(JSON.stringify({ ...b64uJson(p), ...change })).toString("base64url")}.${sig}`;
    };

    before(async () => {
      const home = mkdtempSync(join(tmpdir(), "aztp-window-"));
      after(() => rmSync(home, { recursive: true, force: true }));
      a = await EmbeddedAuthority.init(home, TD);
      const dir = join(home, "trust-domains", TD);
      signer = {
        key: createPrivateKey(readFileSync(join(dir, "jwt-key.pem"), "utf8")),
        kid: (JSON.parse(readFileSync(join(dir, "jwt.json"), "utf8")) as { kid: string }).kid,
      };
    });

    const L = DEFAULT_REVOCATION_LIST_LEEWAY_SECONDS;
    // [what, the token, checked at (s), leeway (s, default L), the code expected or "ok"]
    const cases: Array<[string, () => string, number, number | undefined, ErrorCode | "ok"]> = [
      ["inside the window", () => signed(base()), T0 + V / 2, undefined, "ok"],
      ["at thisUpdate", () => signed(base()), T0, 0, "ok"],
      ["past nextUpdate, within the tolerance", () => signed(base()), T0 + V + L - 1, undefined, "ok"],
      [
        "past nextUpdate and the tolerance",
        () => signed(base()),
        T0 + V + L,
        undefined,
        ErrorCodes.REVOCATION_LIST_EXPIRED,
      ],
      ["at nextUpdate, no tolerance", () => signed(base()), T0 + V, 0, ErrorCodes.REVOCATION_LIST_EXPIRED],
      ["a second before nextUpdate, no tolerance", () => signed(base()), T0 + V - 1, 0, "ok"],
      [
        "a day past it, checked however often",
        () => signed(base()),
        T0 + V + 86400,
        undefined,
        ErrorCodes.REVOCATION_LIST_EXPIRED,
      ],
      ["signed in the future, within the tolerance", () => signed(base()), T0 - L, undefined, "ok"],
      [
        "signed in the future, beyond the tolerance",
        () => signed(base()),
        T0 - L - 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_NOT_YET_VALID,
      ],
      [
        "signed a second in the future, no tolerance",
        () => signed(base()),
        T0 - 1,
        0,
        ErrorCodes.REVOCATION_LIST_NOT_YET_VALID,
      ],
      [
        "no window: the old format (iat, no exp)",
        () => signed(oldFormat),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_WINDOW_MISSING,
      ],
      [
        "no thisUpdate (exp, no iat)",
        () => signed({ ...base(), iat: undefined }),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_WINDOW_MISSING,
      ],
      [
        "nextUpdate before thisUpdate",
        () => signed({ ...base(), exp: T0 - 1 }),
        T0,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      [
        "a window over the longest allowed",
        () => signed({ ...base(), exp: T0 + MAX_REVOCATION_LIST_VALIDITY_SECONDS + 1 }),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      [
        "the longest window allowed",
        () => signed({ ...base(), exp: T0 + MAX_REVOCATION_LIST_VALIDITY_SECONDS }),
        T0 + 1,
        undefined,
        "ok",
      ],
      [
        "nextUpdate not a whole second",
        () => signed({ ...base(), exp: T0 + V + 0.5 }),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      [
        "nextUpdate a string",
        () => signed({ ...base(), exp: String(T0 + V) }),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      // Tampered: a stale list made to look current by moving its window, the signature kept.
      [
        "nextUpdate moved a year on by hand",
        () => moved(signed(base()), { exp: T0 + 365 * 86400 }),
        T0 + V + 86400,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      [
        "both dates moved on by hand",
        () => moved(signed(base()), { iat: T0 + 86400, exp: T0 + 86400 + V }),
        T0 + 86400 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
      [
        "an old-format list given a window by hand",
        () => moved(signed(oldFormat), { exp: T0 + V }),
        T0 + 1,
        undefined,
        ErrorCodes.REVOCATION_LIST_INVALID,
      ],
    ];
    for (const [what, token, now, leeway, expected] of cases) {
      it(`${what}: ${expected}`, () => {
        const run = (): RevocationList =>
          verifyRevocationList(token(), a, {
            trustDomain: TD,
            now: at(now),
            ...(leeway !== undefined ? { leewaySeconds: leeway } : {}),
          });
        if (expected === "ok") {
          const list = run();
          assert.equal(list.revoked(`spiffe://${TD}/revoked`), "identity");
          return;
        }
        assert.throws(run, (e: unknown) => {
          assert.ok(e instanceof AztpError, String(e));
          assert.equal(e.code, expected, e.message);
          if (expected === ErrorCodes.REVOCATION_LIST_INVALID && /by hand/.test(what))
            assert.match(e.message, /signature does not verify/);
          return true;
        });
      });
    }

    it("what the authority signs carries its window, and jose reads the same one", async () => {
      const now = new Date();
      const token = a.signedRevocationList(TD, { validitySeconds: 90, now });
      const list = verifyRevocationList(token, a, { trustDomain: TD, now });
      assert.equal(list.thisUpdate.getTime(), Math.floor(now.getTime() / 1000) * 1000);
      assert.equal(list.nextUpdate.getTime() - list.thisUpdate.getTime(), 90_000);
      const key = a.bundle(TD).jwtAuthorities.get(signer.kid);
      assert.ok(key);
      const { payload } = await jwtVerify(token, key, { typ: REVOCATION_LIST_TYP, currentDate: now });
      assert.equal(payload.exp, (payload.iat ?? 0) + 90);
      await assert.rejects(
        jwtVerify(token, key, { typ: REVOCATION_LIST_TYP, currentDate: new Date(now.getTime() + 91_000) }),
        /"exp" claim timestamp check failed/,
      );
      for (const bad of [0, -1, 1.5, MAX_REVOCATION_LIST_VALIDITY_SECONDS + 1, Number.NaN])
        assert.throws(
          () => a.signedRevocationList(TD, { validitySeconds: bad }),
          (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.ARGUMENT_INVALID,
          String(bad),
        );
    });

    it("which list the feed holds: no rollback in sequence, nor in time within a sequence; past its window it answers nothing", async (t) => {
      const http = new AuthorityHttp({ baseUrl: "http://127.0.0.1:9", roots: () => undefined, serverId: () => "" });
      t.after(() => http.close());
      const feed = new RevocationFeed(http, a, {
        trustDomains: [TD],
        clockToleranceSeconds: 0,
        onWarning: () => undefined,
      });
      const now = Math.floor(Date.now() / 1000);
      const list = (sequence: number, iat: number, exp = iat + V): RevocationList =>
        verifyRevocationList(signed({ ...base(), sequence, iat, exp }), a, { now: at(iat) });
      const held = feed.offer(list(5, now));
      // The same sequence signed earlier (another replica's, or a frozen feed's): not taken, quietly.
      assert.strictEqual(feed.offer(list(5, now - 10)), held);
      assert.strictEqual(feed.list(TD), held);
      // The same sequence signed later: a renewal, taken.
      const renewed = feed.offer(list(5, now + 1));
      assert.notStrictEqual(renewed, held);
      assert.equal(feed.list(TD)?.thisUpdate.getTime(), (now + 1) * 1000);
      // A lower sequence, however recently signed: an old state replayed.
      assert.throws(
        () => feed.offer(list(4, now + 2)),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_REPLAYED,
      );
      assert.strictEqual(feed.list(TD), renewed);
      // A higher sequence signed a little earlier (replicas' clocks): the newer state, taken.
      const next = feed.offer(list(6, now - 2));
      assert.equal(feed.sequence(TD), 6);
      assert.strictEqual(feed.list(TD), next);
      // A list already past its window is refused, and the held one stays.
      assert.throws(
        () => feed.offer(list(7, now - V - 5)),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED,
      );
      assert.equal(feed.sequence(TD), 6);
      assert.equal(feed.isRevoked(`spiffe://${TD}/other`), false);
      // One whose window ends within two seconds: it answers, then it fails closed.
      feed.offer(list(8, now - V + 2));
      assert.equal(feed.isRevoked(`spiffe://${TD}/revoked`), true);
      await new Promise((r) => setTimeout(r, 2_100));
      assert.throws(
        () => feed.isRevoked(`spiffe://${TD}/other`),
        (e: unknown) => e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED,
      );
    });
  });
});
