/**
 * The `aztp` CLI as a user scripts it: every command with --json, run as a real process, and
 * its exit codes (0 success or valid, 1 a negative verdict or failed operation, 2 usage error).
 * Spawns cost ~0.5 s each, so independent ones run side by side.
 */
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import { TrustBundle } from "../src/spiffe/bundle.js";
import { Certificate } from "../src/spiffe/certificate.js";
import { signCompact } from "../src/spiffe/jws.js";
import { importPrivateKey, publicKeyOf, samePublicKey } from "../src/spiffe/keys.js";
import { aztpCli, assertExit, CLI, ROOT, runTs, tempDir, type CliResult } from "./helpers/authority-util.js";
import { runCommand } from "./helpers/mcp-util.js";

const TD = "example.org";
const idOf = (name: string): string => `aztp://${TD}/workload/production/node/${name}`;

/** A home with `aztp init` done. */
async function initHome(t: TestContext, td = TD): Promise<string> {
  const home = join(tempDir(t), "home");
  const r = await aztpCli(home, ["init", "--trust-domain", td]);
  assertExit(r, 0, "init");
  return home;
}

/** Asserts the `{"error": {"code", "message"}}` shape of a failure. */
function assertError(r: CliResult, exit: number, code: string, what: string): void {
  assertExit(r, exit, what);
  assert.ok(r.json && typeof r.json === "object", `${what}: JSON on stdout, got ${r.stdout}`);
  assert.deepEqual(Object.keys(r.json as object), ["error"], what);
  assert.equal(r.json.error.code, code, `${what}: ${r.json.error.message}`);
  assert.equal(typeof r.json.error.message, "string");
  assert.ok(r.json.error.message.length > 0);
}

describe("aztp init", () => {
  it("creates a trust domain and refuses a second init (exit 1, ERR_AUTHORITY_EXISTS)", async (t) => {
    const home = join(tempDir(t), "home");
    const first = await aztpCli(home, ["init", "--trust-domain", "Example.ORG"]);
    assertExit(first, 0);
    assert.deepEqual(first.json, { home, trustDomain: TD });
    const second = await aztpCli(home, ["init", "--trust-domain", "other.org"]);
    assertError(second, 1, ErrorCodes.AUTHORITY_EXISTS, "second init");
    assert.equal(JSON.parse(readFileSync(join(home, "authority.json"), "utf8")).defaultTrustDomain, TD);
  });

  it("commands on a home with no authority fail with ERR_AUTHORITY_NOT_INITIALIZED (exit 1)", async (t) => {
    const home = tempDir(t);
    const [issue, list] = await Promise.all([
      aztpCli(home, ["issue", "x", "--out", join(home, "o")]),
      aztpCli(home, ["list"]),
    ]);
    assertError(issue, 1, ErrorCodes.AUTHORITY_NOT_INITIALIZED, "issue");
    assertError(list, 1, ErrorCodes.AUTHORITY_NOT_INITIALIZED, "list");
  });
});

describe("aztp issue, verify x509, bundle", () => {
  it("issue writes svid.pem (leaf first), key.pem 0600, bundle.pem, bundle.json; verify x509 and bundle agree", async (t) => {
    const home = await initHome(t);
    const out = join(tempDir(t, "out"), "svid");
    const childOut = join(tempDir(t, "out"), "child");
    const issued = await aztpCli(home, ["issue", "orchestrator", "--ttl", "10m", "--out", out]);
    assertExit(issued, 0, "issue");
    assert.equal(issued.json.aztpId, idOf("orchestrator"));
    assert.equal(issued.json.spiffeId, `spiffe://${TD}/workload/production/node/orchestrator`);
    assert.equal(issued.json.dir, out);
    const expires = Date.parse(issued.json.expiresAt);
    assert.ok(Math.abs(expires - (Date.now() + 600_000)) < 15_000, "--ttl 10m honoured");

    // svid.pem: leaf, then the intermediate that signed it.
    const chain = Certificate.parsePem(readFileSync(join(out, "svid.pem")));
    assert.equal(chain.length, 2);
    const [leaf, inter] = chain as [Certificate, Certificate];
    assert.deepEqual(leaf.uriSans, [issued.json.spiffeId]);
    assert.ok(!leaf.isCA && inter.isCA && leaf.verifySignedBy(inter));
    assert.equal(leaf.serialNumber, issued.json.serial);
    // key.pem: the leaf's private key, owner-only.
    assert.equal(statSync(join(out, "key.pem")).mode & 0o777, 0o600);
    assert.ok(samePublicKey(publicKeyOf(importPrivateKey(readFileSync(join(out, "key.pem")))), leaf.publicKey));
    // bundle.pem: the root; bundle.json: the SPIFFE bundle format with both key uses.
    const roots = Certificate.parsePem(readFileSync(join(out, "bundle.pem")));
    assert.equal(roots.length, 1);
    assert.ok(roots[0]!.isCA && inter.verifySignedBy(roots[0]!));
    const doc = JSON.parse(readFileSync(join(out, "bundle.json"), "utf8")) as {
      keys: Array<Record<string, unknown>>;
      spiffe_sequence?: number;
    };
    assert.deepEqual(doc.keys.map((k) => k.use).sort(), ["jwt-svid", "x509-svid"]);
    const x509Key = doc.keys.find((k) => k.use === "x509-svid")!;
    assert.deepEqual(x509Key.x5c, [roots[0]!.der.toString("base64")]);
    assert.equal(x509Key.kty, "EC");
    const jwtKey = doc.keys.find((k) => k.use === "jwt-svid")!;
    assert.equal(typeof jwtKey.kid, "string");
    assert.ok(!("d" in jwtKey) && !("d" in x509Key), "no private key material in the bundle");
    assert.equal(typeof doc.spiffe_sequence, "number");
    assert.equal(TrustBundle.parseSpiffe(doc, TD).x509Authorities.length, 1, "our own parser reads it");

    const [child, spiffeBundle, pemBundle, viaJson, viaPem, expired, early] = await Promise.all([
      aztpCli(home, ["issue", "worker", "--parent", issued.json.aztpId, "--ttl", "2h", "--out", childOut]),
      aztpCli(home, ["bundle", "--format", "spiffe"]),
      aztpCli(home, ["bundle", "--format", "pem"]),
      aztpCli(home, ["verify", "x509", join(out, "svid.pem"), "--bundle", join(out, "bundle.json")]),
      aztpCli(home, ["verify", "x509", join(out, "svid.pem"), "--bundle", join(out, "bundle.pem")]),
      aztpCli(home, [
        "verify",
        "x509",
        join(out, "svid.pem"),
        "--bundle",
        join(out, "bundle.json"),
        "--time",
        new Date(Date.now() + 3600_000).toISOString(),
      ]),
      aztpCli(home, [
        "verify",
        "x509",
        join(out, "svid.pem"),
        "--bundle",
        join(out, "bundle.json"),
        "--time",
        "2001-01-01T00:00:00Z",
      ]),
    ]);
    // A child asking for 2 h gets at most its parent's 10 min.
    assertExit(child, 0, "issue --parent");
    assert.ok(Date.parse(child.json.expiresAt) <= expires, "child capped at the parent's expiry");
    assert.ok(
      Certificate.parsePem(readFileSync(join(childOut, "svid.pem")))[0]!.notAfter.getTime() <= leaf.notAfter.getTime(),
    );

    assertExit(spiffeBundle, 0, "bundle --format spiffe");
    assert.deepEqual(spiffeBundle.json, doc, "bundle prints what issue wrote");
    assertExit(pemBundle, 0, "bundle --format pem");
    assert.equal(pemBundle.stdout, readFileSync(join(out, "bundle.pem"), "utf8"));

    for (const [label, r] of [
      ["SPIFFE bundle", viaJson],
      ["PEM bundle", viaPem],
    ] as const) {
      assertExit(r, 0, `verify x509 with ${label}`);
      assert.equal(r.json.valid, true);
      assert.equal(r.json.spiffeId, issued.json.spiffeId);
      assert.equal(r.json.aztpId, issued.json.aztpId);
    }
    assertError(expired, 1, ErrorCodes.X509SVID_EXPIRED, "verify x509 --time after expiry");
    assertError(early, 1, ErrorCodes.X509SVID_NOT_YET_VALID, "verify x509 --time before issuance");

    // Re-issuing into the same folder (--force) over a world-readable key.pem leaves it 0600.
    writeFileSync(join(out, "key.pem"), "old", { mode: 0o644 });
    const reissued = await aztpCli(home, ["issue", "orchestrator", "--out", out, "--force"]);
    assertExit(reissued, 0, "issue again");
    assert.equal(reissued.json.aztpId, issued.json.aztpId, "same identity");
    assert.notEqual(reissued.json.serial, issued.json.serial);
    assert.equal(statSync(join(out, "key.pem")).mode & 0o777, 0o600);
  });

  it("verify x509 against another trust root fails (exit 1); garbage input fails with a code", async (t) => {
    const [home, otherHome] = await Promise.all([initHome(t), initHome(t)]);
    const out = tempDir(t, "out");
    assertExit(await aztpCli(home, ["issue", "agent", "--out", out]), 0, "issue");
    const other = await aztpCli(otherHome, ["bundle", "--format", "pem"]);
    const otherJson = await aztpCli(otherHome, ["bundle"]);
    writeFileSync(join(out, "other.pem"), other.stdout);
    writeFileSync(join(out, "other.json"), otherJson.stdout);
    writeFileSync(join(out, "garbage.pem"), "not a certificate\n");
    const [wrongPem, wrongJson, garbage, missing] = await Promise.all([
      aztpCli(home, ["verify", "x509", join(out, "svid.pem"), "--bundle", join(out, "other.pem")]),
      aztpCli(home, ["verify", "x509", join(out, "svid.pem"), "--bundle", join(out, "other.json")]),
      aztpCli(home, ["verify", "x509", join(out, "garbage.pem"), "--bundle", join(out, "bundle.pem")]),
      aztpCli(home, ["verify", "x509", join(out, "nope.pem"), "--bundle", join(out, "bundle.pem")]),
    ]);
    // Same trust domain, same CA names, different keys: found by name, refused by signature.
    for (const [label, r] of [
      ["another home's PEM bundle", wrongPem],
      ["another home's SPIFFE bundle", wrongJson],
    ] as const) {
      assertExit(r, 1, label);
      assert.match(r.json.error.code, /^ERR_X509SVID_(UNTRUSTED|SIGNATURE_INVALID)$/, label);
    }
    assertExit(garbage, 1, "not a certificate");
    assert.match(garbage.json.error.code, /^ERR_/);
    // A file that cannot be read is the command failing, not a usage error (it exited 2).
    assertError(missing, 1, ErrorCodes.FILE_UNUSABLE, "missing file");
    assert.match(missing.json.error.message, /ENOENT/);
    assert.ok(missing.json.error.message.includes(join(out, "nope.pem")), "names the file");
  });
});

describe("aztp verify x509 and revocations", () => {
  it("offline it says it did not check revocation (a revoked SVID is valid there); --home and an exported --revocations list refuse it with ERR_X509SVID_REVOKED", async (t) => {
    const [home, otherHome] = await Promise.all([initHome(t), initHome(t, "other.org")]);
    const out = tempDir(t, "out");
    for (const name of ["bad", "good"])
      assertExit(await aztpCli(home, ["issue", name, "--out", join(out, name)]), 0, `issue ${name}`);
    const before = await aztpCli(home, ["revocations", "export"]);
    assertExit(await aztpCli(home, ["revoke", "bad", "--reason", "key lost"]), 0, "revoke");
    const exported = await aztpCli(home, ["revocations", "export"]);
    assertExit(exported, 0, "revocations export");
    assert.equal(exported.json.trustDomain, TD);
    assert.ok(exported.json.sequence > before.json.sequence, "the sequence grew");
    const lists = {
      now: join(out, "revocations.jws"),
      before: join(out, "before.jws"),
      other: join(out, "other.jws"),
      forged: join(out, "forged.jws"),
      short: join(out, "short.jws"),
      unwindowed: join(out, "unwindowed.jws"),
    };
    // Every list carries its signed window: a day unless asked; --valid-for 60s for one that ends soon.
    assert.equal(Date.parse(exported.json.nextUpdate) - Date.parse(exported.json.thisUpdate), 86_400_000);
    const short = await aztpCli(home, ["revocations", "export", "--valid-for", "60s"]);
    assertExit(short, 0, "revocations export --valid-for 60s");
    assert.equal(Date.parse(short.json.nextUpdate) - Date.parse(short.json.thisUpdate), 60_000);
    writeFileSync(lists.short, short.json.revocations);
    const shortAt = (seconds: number): string =>
      new Date(Date.parse(short.json.thisUpdate) + seconds * 1000).toISOString();
    // The list as it was signed before it had a window (iat, no exp), with the authority's own key.
    const tdDir = join(home, "trust-domains", TD);
    const unwindowed = JSON.parse(Buffer.from(exported.json.revocations.split(".")[1], "base64url").toString());
    delete unwindowed.exp;
    writeFileSync(
      lists.unwindowed,
      signCompact(
        { typ: "aztp-revocations+jwt", kid: JSON.parse(readFileSync(join(tdDir, "jwt.json"), "utf8")).kid },
        unwindowed,
        createPrivateKey(readFileSync(join(tdDir, "jwt-key.pem"), "utf8")),
      ),
    );
    writeFileSync(lists.now, `${exported.json.revocations}\n`);
    writeFileSync(lists.before, before.json.revocations);
    writeFileSync(lists.other, (await aztpCli(otherHome, ["revocations", "export"])).json.revocations);
    const [h, p, sig] = (exported.json.revocations as string).split(".") as [string, string, string];
    const emptied = { ...JSON.parse(Buffer.from(p, "base64url").toString()), identities: [], serials: [] };
    writeFileSync(lists.forged, `${h}.${Buffer.from(JSON.stringify(emptied)).toString("base64url")}.${sig}`);
    const verify = (who: string, ...extra: string[]): string[] => [
      "verify",
      "x509",
      join(out, who, "svid.pem"),
      "--bundle",
      join(out, who, "bundle.json"),
      ...extra,
    ];

    // Offline, the bundle alone: valid, and it says revocation was not checked (JSON and text), and help says why.
    const offline = await aztpCli(undefined, verify("bad"));
    assertExit(offline, 0, "offline");
    assert.equal(offline.json.valid, true);
    assert.deepEqual(offline.json.revocation, {
      checked: false,
      why: "offline: pass --home DIR or --revocations FILE",
    });
    const text = await runTs(CLI, verify("bad"));
    assert.match(text.stdout, /^valid: .*revocation NOT checked \(offline: pass --home DIR or --revocations FILE\)$/m);
    assert.match((await aztpCli(undefined, ["verify", "x509", "--help"])).stdout, /cannot see revocations/);

    // Three CLIs at a time, with room for a loaded machine (nine at once took over 30 s under the full suite).
    const runs: Array<[string | undefined, string[]]> = [
      [home, verify("bad")],
      [home, verify("good")],
      [undefined, verify("bad", "--revocations", lists.now)],
      [undefined, verify("good", "--revocations", lists.now)],
      [undefined, verify("bad", "--revocations", lists.before)],
      [home, verify("good", "--revocations", lists.now)],
      [undefined, verify("bad", "--revocations", lists.forged)],
      [undefined, verify("bad", "--revocations", lists.other)],
      [otherHome, verify("bad")],
      // Ten minutes on, the 60 s list is past its window (and the 30 s tolerance): refused, not "not revoked".
      [undefined, verify("good", "--revocations", lists.short, "--time", shortAt(600))],
      // ... and checked as of a time within it, on purpose, it applies.
      [undefined, verify("bad", "--revocations", lists.short, "--time", shortAt(30))],
      [undefined, verify("good", "--revocations", lists.unwindowed)],
    ];
    const results: CliResult[] = [];
    for (let i = 0; i < runs.length; i += 3)
      results.push(
        ...(await Promise.all(runs.slice(i, i + 3).map(([h, args]) => aztpCli(h, args, { timeoutMs: 90_000 })))),
      );
    const [
      byHome,
      goodByHome,
      byList,
      goodByList,
      oldList,
      both,
      forged,
      otherList,
      otherHomeRun,
      expiredList,
      shortInWindow,
      unwindowedList,
    ] = results as CliResult[] as [
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
      CliResult,
    ];
    assertError(byHome, 1, ErrorCodes.X509SVID_REVOKED, "revoked, --home");
    assert.match(byHome.json.error.message, new RegExp(`according to the authority in ${home}`));
    assertExit(goodByHome, 0, "not revoked, --home");
    assert.equal(goodByHome.json.revocation.checked, true);
    assert.match(goodByHome.json.revocation.against, /the authority in/);
    assertError(byList, 1, ErrorCodes.X509SVID_REVOKED, "revoked, --revocations");
    assert.match(byList.json.error.message, new RegExp(`sequence ${exported.json.sequence}`));
    assertExit(goodByList, 0, "not revoked, --revocations");
    assert.equal(goodByList.json.revocation.sequence, exported.json.sequence);
    // A list from before the revocation does not know of it, and says how old it is.
    assertExit(oldList, 0, "a list from before the revocation");
    assert.equal(oldList.json.revocation.sequence, before.json.sequence);
    assert.equal(typeof oldList.json.revocation.listIssuedAt, "string");
    assertExit(both, 0, "both checks");
    assert.match(both.json.revocation.against, /the authority in .* and the revocation list/);
    // A list whose entries were removed, or another trust domain's list, is refused (not "not revoked").
    assertError(forged, 1, ErrorCodes.REVOCATION_LIST_INVALID, "a forged list");
    assert.match(forged.json.error.message, /signature does not verify/);
    assertError(otherList, 1, ErrorCodes.REVOCATION_LIST_INVALID, "another trust domain's list");
    // A home whose authority is not the SVID's cannot vouch for its revocation.
    assertError(otherHomeRun, 1, ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, "another authority's home");
    // Past its window a list is refused however it got here, and the message says what to do.
    assertError(expiredList, 1, ErrorCodes.REVOCATION_LIST_EXPIRED, "a list past its window");
    assert.match(expiredList.json.error.message, /aztp revocations export.*--time within its window/);
    assertError(shortInWindow, 1, ErrorCodes.X509SVID_REVOKED, "the same list, as of a time within its window");
    assert.equal(typeof oldList.json.revocation.listValidUntil, "string");
    // A list signed without a window is not silently taken as current.
    assertError(unwindowedList, 1, ErrorCodes.REVOCATION_LIST_WINDOW_MISSING, "a list without a window");
  });
});

describe("aztp jwt, verify jwt", () => {
  it("mints a JWT-SVID that verifies (exit 0); wrong audience, tampering, expiry or another bundle -> exit 1", async (t) => {
    const [home, otherHome] = await Promise.all([initHome(t), initHome(t, "other.org")]);
    const out = tempDir(t, "out");
    assertExit(await aztpCli(home, ["issue", "caller", "--out", out]), 0, "issue");
    const [jwt, byId, otherBundle] = await Promise.all([
      aztpCli(home, ["jwt", "caller", "--audience", "spiffe://example.org/tool", "other-aud"]),
      aztpCli(home, ["jwt", idOf("caller"), "--audience", "svc", "--ttl", "30s"]),
      aztpCli(otherHome, ["bundle"]),
    ]);
    assertExit(jwt, 0, "jwt");
    const token = jwt.json.token as string;
    assert.equal(jwt.json.spiffeId, `spiffe://${TD}/workload/production/node/caller`);
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    const header = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as {
      kid?: string;
      typ?: string;
      alg?: string;
    };
    assert.deepEqual([header.alg, header.typ], ["ES256", "JWT"]);
    const bundle = JSON.parse(readFileSync(join(out, "bundle.json"), "utf8")) as {
      keys: Array<{ use: string; kid?: string }>;
    };
    assert.equal(header.kid, bundle.keys.find((k) => k.use === "jwt-svid")?.kid, "kid is the bundle's JWT key");
    assertExit(byId, 0, "jwt by AZTP ID");
    const claims = JSON.parse(Buffer.from((byId.json.token as string).split(".")[1]!, "base64url").toString()) as {
      exp: number;
      iat: number;
    };
    assert.equal(claims.exp - claims.iat, 30, "--ttl honoured");

    writeFileSync(join(out, "other.json"), otherBundle.stdout);
    const [h, p, s] = token.split(".") as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, "base64url").toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: `spiffe://${TD}/admin` })).toString("base64url")}.${s}`;
    const sigFlipped = `${h}.${p}.${s.startsWith("A") ? `B${s.slice(1)}` : `A${s.slice(1)}`}`;
    const b = join(out, "bundle.json");
    const [valid, anyOf, viaStdin, wrongAud, tampered, badSig, late, foreign, notAToken] = await Promise.all([
      aztpCli(home, ["verify", "jwt", token, "--bundle", b, "--audience", "spiffe://example.org/tool"]),
      aztpCli(home, ["verify", "jwt", token, "--bundle", b, "--audience", "nobody", "other-aud"]),
      aztpCli(home, ["verify", "jwt", "-", "--bundle", b, "--audience", "other-aud"], { input: `${token}\n` }),
      aztpCli(home, ["verify", "jwt", token, "--bundle", b, "--audience", "spiffe://example.org/someone-else"]),
      aztpCli(home, ["verify", "jwt", forged, "--bundle", b, "--audience", "other-aud"]),
      aztpCli(home, ["verify", "jwt", sigFlipped, "--bundle", b, "--audience", "other-aud"]),
      aztpCli(home, [
        "verify",
        "jwt",
        token,
        "--bundle",
        b,
        "--audience",
        "other-aud",
        "--time",
        new Date(Date.now() + 3600_000).toISOString(),
      ]),
      aztpCli(home, ["verify", "jwt", token, "--bundle", join(out, "other.json"), "--audience", "other-aud"]),
      aztpCli(home, ["verify", "jwt", "hello", "--bundle", b, "--audience", "other-aud"]),
    ]);
    for (const [label, r] of [
      ["valid", valid],
      ["any-of audience", anyOf],
      ["token on stdin", viaStdin],
    ] as const) {
      assertExit(r, 0, label);
      assert.equal(r.json.valid, true);
      assert.equal(r.json.spiffeId, `spiffe://${TD}/workload/production/node/caller`);
      assert.equal(r.json.aztpId, idOf("caller"));
      assert.deepEqual(r.json.audience, ["spiffe://example.org/tool", "other-aud"]);
    }
    assertError(wrongAud, 1, ErrorCodes.JWT_AUDIENCE_MISMATCH, "wrong audience");
    assertError(tampered, 1, ErrorCodes.JWT_SIGNATURE_INVALID, "tampered claims");
    assertExit(badSig, 1, "tampered signature");
    assert.match(badSig.json.error.code, /^ERR_JWT_(SIGNATURE_INVALID|MALFORMED)$/);
    assertError(late, 1, ErrorCodes.JWT_EXPIRED, "--time after exp");
    assertExit(foreign, 1, "another trust domain's bundle");
    assert.match(foreign.json.error.code, /^ERR_(JWT_BUNDLE_MISSING|JWT_KID_UNKNOWN|BUNDLE_TRUST_DOMAIN_MISMATCH)$/);
    assertError(notAToken, 1, ErrorCodes.JWT_MALFORMED, "not a token");
  });
});

describe("aztp id", () => {
  it("normalises scheme and trust-domain case, keeps path case; invalid IDs exit 1 with the rule's code", async () => {
    const [upper, aztpForm, bad, badTd] = await Promise.all([
      aztpCli(undefined, ["id", "SPIFFE://Example.ORG/x"]),
      aztpCli(undefined, ["id", "aztp://example.org/workload/Prod/node/A"]),
      aztpCli(undefined, ["id", "https://example.org/x"]),
      aztpCli(undefined, ["id", "spiffe://exa mple.org/x"]),
    ]);
    assertExit(upper, 0, "id");
    assert.deepEqual(upper.json, {
      spiffeId: "spiffe://example.org/x",
      aztpId: "aztp://example.org/x",
      trustDomain: "example.org",
      path: "/x",
    });
    assertExit(aztpForm, 0, "id aztp://");
    assert.equal(aztpForm.json.spiffeId, "spiffe://example.org/workload/Prod/node/A");
    assertError(bad, 1, ErrorCodes.SPIFFEID_SCHEME_INVALID, "https scheme");
    assertError(badTd, 1, ErrorCodes.SPIFFEID_TRUST_DOMAIN_CHAR_INVALID, "space in trust domain");
  });
});

describe("aztp list, revoke, reissue, link, discover", () => {
  it("manages identities end to end", async (t) => {
    const home = await initHome(t);
    const out = tempDir(t, "out");
    assertExit(await aztpCli(home, ["issue", "boss", "--out", join(out, "boss")]), 0, "issue boss");
    const [worker, peer] = await Promise.all([
      aztpCli(home, ["issue", "worker", "--parent", idOf("boss"), "--out", join(out, "worker")]),
      aztpCli(home, ["issue", "peer", "--out", join(out, "peer")]),
    ]);
    assertExit(worker, 0, "issue worker");
    assertExit(peer, 0, "issue peer");

    const [link, cycle, badMeta, badType, list1] = await Promise.all([
      aztpCli(home, ["link", "peer", idOf("boss"), "--metadata", '{"why":"reports"}']),
      aztpCli(home, ["link", "boss", "worker", "--type", "parent"]),
      aztpCli(home, ["link", "peer", "boss", "--metadata", "[1,2]"]),
      aztpCli(home, ["link", "peer", "boss", "--type", "cousin"]),
      aztpCli(home, ["list"]),
    ]);
    assertExit(link, 0, "link");
    assert.deepEqual(
      { target: link.json.target, type: link.json.type, metadata: link.json.metadata },
      { target: idOf("boss"), type: "linked", metadata: { why: "reports" } },
    );
    assertError(cycle, 1, ErrorCodes.PARENT_INVALID, "parent link making a cycle");
    assertExit(badMeta, 2, "--metadata not an object");
    assertExit(badType, 2, "--type not a choice");
    assertExit(list1, 0, "list");
    const byName = (recs: Array<{ name: string }>) =>
      Object.fromEntries(recs.map((r) => [r.name, r])) as Record<string, any>;
    const l1 = byName(list1.json);
    assert.deepEqual(Object.keys(l1).sort(), ["boss", "peer", "worker"]);
    assert.equal(l1.worker.parentIdentity, idOf("boss"));
    assert.equal(l1.boss.status, "active");
    assert.ok(!JSON.stringify(list1.json).includes("PRIVATE KEY"));

    const revoke = await aztpCli(home, ["revoke", "boss", "--reason", "rotated out"]);
    assertExit(revoke, 0, "revoke");
    assert.deepEqual(new Set(revoke.json.revoked), new Set([idOf("boss"), idOf("worker")]), "cascades to the child");
    assert.equal(typeof revoke.json.sequence, "number");

    const [revokedList, discover1, reissueChild, jwtRevoked, revokeGhost] = await Promise.all([
      aztpCli(home, ["list", "--status", "revoked"]),
      aztpCli(home, ["discover"]),
      aztpCli(home, ["reissue", idOf("worker")]),
      aztpCli(home, ["jwt", "worker", "--audience", "x"]),
      aztpCli(home, ["revoke", "ghost"]),
    ]);
    assertExit(revokedList, 0, "list --status revoked");
    assert.deepEqual(revokedList.json.map((r: { name: string }) => r.name).sort(), ["boss", "worker"]);
    assert.equal(byName(revokedList.json).boss.revokeReason, "rotated out");
    assertExit(discover1, 0, "discover");
    assert.deepEqual(
      discover1.json.map((r: { aztpId: string }) => r.aztpId),
      [idOf("peer")],
      "only active identities are discoverable",
    );
    assertError(reissueChild, 1, ErrorCodes.IDENTITY_REVOKED, "reissue a child while its parent is revoked");
    assertError(jwtRevoked, 1, ErrorCodes.IDENTITY_REVOKED, "jwt for a revoked identity");
    assertError(revokeGhost, 1, ErrorCodes.IDENTITY_NOT_FOUND, "revoke an unknown name");

    const reissue = await aztpCli(home, ["reissue", "boss"]);
    assertExit(reissue, 0, "reissue");
    assert.equal(reissue.json.aztpId, idOf("boss"));
    assert.equal(reissue.json.status, "active");
    const [discover2, discoverTd, discoverOther, list2, listTd] = await Promise.all([
      aztpCli(home, ["discover"]),
      aztpCli(home, ["discover", "--trust-domain", "Example.ORG"]),
      aztpCli(home, ["discover", "--trust-domain", "nowhere.example"]),
      aztpCli(home, ["list", "--status", "active"]),
      aztpCli(home, ["list", "--trust-domain", "EXAMPLE.org"]),
    ]);
    assert.deepEqual(discover2.json.map((r: { aztpId: string }) => r.aztpId).sort(), [idOf("boss"), idOf("peer")]);
    assert.deepEqual(discoverTd.json, discover2.json, "--trust-domain is normalised like any trust domain");
    assert.deepEqual(discoverOther.json, []);
    assert.deepEqual(list2.json.map((r: { name: string }) => r.name).sort(), ["boss", "peer"]);
    assert.equal(listTd.json.length, 3);
  });
});

describe("a command that fails for any reason but usage exits 1 with its code", () => {
  // Every command group but `audit` (its own tests). Rows marked "was 2" exited 2, as a usage
  // error, because their code was ERR_ARGUMENT_INVALID (from the library, or a file that
  // could not be read). [label, args (after --home), code; home "fresh" = no authority]
  type Row = [string, (dir: string) => string[], string, ("fresh" | "home")?];
  const rows: Row[] = [
    ["init on an existing authority", () => ["init", "--trust-domain", "other.org"], ErrorCodes.AUTHORITY_EXISTS],
    [
      "issue --parent unknown",
      (d) => ["issue", "kid", "--parent", "spiffe://example.org/nobody", "--out", join(d, "kid")],
      ErrorCodes.IDENTITY_NOT_FOUND,
    ],
    [
      "issue a name too long for a SPIFFE ID (was 2)",
      (d) => ["issue", "n".repeat(2100), "--out", join(d, "long")],
      ErrorCodes.ARGUMENT_INVALID,
    ],
    ["issue over existing files", (d) => ["issue", "again", "--out", join(d, "worker")], ErrorCodes.FILE_EXISTS],
    ["jwt for nobody", () => ["jwt", "nobody", "--audience", "svc"], ErrorCodes.IDENTITY_NOT_FOUND],
    [
      "bundle of a trust domain it does not have",
      () => ["bundle", "--trust-domain", "other.org"],
      ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
    ],
    [
      "verify x509 of a missing file (was 2)",
      (d) => ["verify", "x509", join(d, "nope.pem"), "--bundle", join(d, "worker", "bundle.json")],
      ErrorCodes.FILE_UNUSABLE,
    ],
    [
      "verify jwt of a malformed token",
      (d) => ["verify", "jwt", "not-a-token", "--bundle", join(d, "worker", "bundle.json"), "--audience", "svc"],
      ErrorCodes.JWT_MALFORMED,
    ],
    [
      "verify jwt with a missing bundle (was 2)",
      (d) => ["verify", "jwt", "a.b.c", "--bundle", join(d, "nope.json"), "--audience", "svc"],
      ErrorCodes.FILE_UNUSABLE,
    ],
    ["id of a non-ID", () => ["id", "bogus"], ErrorCodes.SPIFFEID_SCHEME_INVALID],
    [
      "revocations export of a trust domain it does not have",
      () => ["revocations", "export", "--trust-domain", "other.org"],
      ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
    ],
    [
      "verify x509 with --revocations not a list",
      (d) => [
        "verify",
        "x509",
        join(d, "worker", "svid.pem"),
        "--bundle",
        join(d, "worker", "bundle.json"),
        "--revocations",
        join(d, "worker", "svid.pem"),
      ],
      ErrorCodes.REVOCATION_LIST_INVALID,
    ],
    ["list without an authority", () => ["list"], ErrorCodes.AUTHORITY_NOT_INITIALIZED, "fresh"],
    ["revoke nobody", () => ["revoke", "nobody"], ErrorCodes.IDENTITY_NOT_FOUND],
    ["reissue nobody", () => ["reissue", "nobody"], ErrorCodes.IDENTITY_NOT_FOUND],
    ["link an identity to itself (was 2)", () => ["link", "worker", "worker"], ErrorCodes.ARGUMENT_INVALID],
    ["discover without an authority", () => ["discover"], ErrorCodes.AUTHORITY_NOT_INITIALIZED, "fresh"],
    [
      "policy attach of an invalid policy",
      (d) => ["policy", "attach", "worker", join(d, "bad-policy.json")],
      ErrorCodes.POLICY_INVALID,
    ],
    [
      "policy attach of a missing file (was 2)",
      (d) => ["policy", "attach", "worker", join(d, "nope.json")],
      ErrorCodes.FILE_UNUSABLE,
    ],
    ["policy get nobody", () => ["policy", "get", "nobody"], ErrorCodes.IDENTITY_NOT_FOUND],
    [
      "mcp proxy with an invalid --policy",
      (d) => [
        "mcp",
        "proxy",
        "--name",
        "p",
        "--upstream-command",
        "sh -c 'exit 0'",
        "--policy",
        join(d, "bad-policy.json"),
      ],
      ErrorCodes.POLICY_INVALID,
    ],
    [
      "mcp proxy whose upstream exits at start",
      () => ["mcp", "proxy", "--name", "p", "--upstream-command", "sh -c 'exit 3'", "--listen", "http://127.0.0.1:0"],
      ErrorCodes.MCP_UPSTREAM_FAILED,
    ],
  ];

  it("table", async (t) => {
    const home = await initHome(t);
    const fresh = tempDir(t, "fresh");
    const dir = tempDir(t, "files");
    assertExit(await aztpCli(home, ["issue", "worker", "--out", join(dir, "worker")]), 0, "issue worker");
    writeFileSync(join(dir, "bad-policy.json"), JSON.stringify({ Version: "2025-01-01", Statement: "everything" }));
    const results: CliResult[] = [];
    for (let i = 0; i < rows.length; i += 4) {
      results.push(
        ...(await Promise.all(
          rows
            .slice(i, i + 4)
            .map(([, args, , where]) => aztpCli(where === "fresh" ? fresh : home, args(dir), { timeoutMs: 60_000 })),
        )),
      );
    }
    rows.forEach(([label, , code], i) => assertError(results[i]!, 1, code, label));
  });

  it("a negative verdict (policy check denied) exits 1 with the decision, not an error", async (t) => {
    const home = await initHome(t);
    assertExit(await aztpCli(home, ["issue", "worker", "--out", join(tempDir(t, "out"), "w")]), 0, "issue");
    const r = await aztpCli(home, ["policy", "check", "worker", "--action", "tool:call", "--resource", "read_file"]);
    assertExit(r, 1, "denied");
    assert.equal(r.json.decision, "deny");
  });
});

describe("usage errors exit 2", () => {
  // [label, args, and optionally what the error must name]
  const cases: Array<[string, string[], RegExp?]> = [
    ["unknown command", ["frobnicate"]],
    ["unknown option", ["list", "--colour"]],
    ["init without --trust-domain", ["init"]],
    ["issue without a name", ["issue"]],
    ["jwt without --audience", ["jwt", "someone"]],
    ["verify x509 without --bundle", ["verify", "x509", "svid.pem"]],
    ["verify jwt without --audience", ["verify", "jwt", "t", "--bundle", "b.json"]],
    ["verify without a kind", ["verify", "x509"]],
    ["bad --ttl", ["issue", "x", "--ttl", "forever"]],
    [
      "revocations export --valid-for over 31 days",
      ["revocations", "export", "--valid-for", "32d"],
      /--valid-for is 1s to 31d/,
    ],
    [
      "jwt --ttl over 24 h",
      ["jwt", "someone", "--audience", "svc", "--ttl", "48h"],
      /--ttl: a JWT-SVID lives at most 86400 s/,
    ],
    ["negative --ttl", ["issue", "x", "--ttl", "-5m"]],
    ["bad --time (x509)", ["verify", "x509", "svid.pem", "--bundle", "b.pem", "--time", "yesterday"]],
    ["bad --time (jwt)", ["verify", "jwt", "t", "--bundle", "b.json", "--audience", "a", "--time", "2026-13-45"]],
    ["bad --format", ["bundle", "--format", "der"]],
    ["bad --status", ["list", "--status", "maybe"]],
    ["no command at all", []],
    ["verify without a subcommand", ["verify"]],
    ["mcp without a subcommand", ["mcp"]],
    ["audit without a subcommand", ["audit"]],
    ["bad --since", ["audit", "query", "log.jsonl", "--since", "yesterday"], /--since must be an ISO 8601 date/],
    [
      "--allowed-host with stdio",
      ["mcp", "proxy", "--name", "p", "--upstream-url", "http://127.0.0.1:1/mcp", "--allowed-host", "tools.example"],
      /applies to --listen http/,
    ],
    [
      "--allowed-host with a port",
      [
        "mcp",
        "proxy",
        "--name",
        "p",
        "--upstream-url",
        "http://127.0.0.1:1/mcp",
        "--listen",
        "http://127.0.0.1:0",
        "--allowed-host",
        "tools.example:80",
      ],
      /takes a host name/,
    ],
    [
      "--allowed-host with a scheme",
      [
        "mcp",
        "proxy",
        "--name",
        "p",
        "--upstream-url",
        "http://127.0.0.1:1/mcp",
        "--listen",
        "http://127.0.0.1:0",
        "--allowed-host",
        "http://tools.example",
      ],
      /takes a host name/,
    ],
    ["bad --until", ["audit", "query", "log.jsonl", "--until", "2026-13-45"], /--until must be an ISO 8601 date/],
  ];
  it("table", async (t) => {
    const home = tempDir(t);
    // A few at a time: two dozen CLI processes at once took over 30 s each on a loaded machine.
    const results: CliResult[] = [];
    for (let i = 0; i < cases.length; i += 4)
      results.push(...(await Promise.all(cases.slice(i, i + 4).map(([, args]) => aztpCli(home, args)))));
    cases.forEach(([label, args, names], i) => {
      const r = results[i]!;
      assertExit(r, 2, `${label}: aztp ${args.join(" ")}`);
      assert.ok(r.stderr.length > 0 || r.json?.error, `${label}: says what is wrong`);
      if (names) assert.match(`${r.stderr}${r.stdout}`, names, `${label}: names the option`);
    });
  });

  it("--version prints the package's version (exit 0)", async (t) => {
    const home = tempDir(t);
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    for (const flag of ["--version", "-V"]) {
      const r = await aztpCli(home, [flag]);
      assertExit(r, 0, `aztp ${flag}`);
      assert.equal(r.stdout.trim(), version);
    }
  });

  it("the README's `npx aztp` runs the built CLI after npm install (its bin is executable)", async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    const r = await runCommand("npx", ["--no-install", "aztp", "--version"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `npx aztp --version: ${r.stderr}`);
    assert.equal(r.stdout.trim(), version);
  });

  it("asking for help is not an error: exit 0, help on stdout", async (t) => {
    const home = tempDir(t);
    for (const args of [["--help"], ["help"], ["mcp", "--help"], ["help", "audit"]]) {
      const r = await aztpCli(home, args);
      assertExit(r, 0, `aztp ${args.join(" ")}`);
      assert.match(r.stdout, /Usage: aztp/, `aztp ${args.join(" ")} prints the usage`);
    }
  });
});
