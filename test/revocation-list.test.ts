/**
 * The signed revocation list, end to end at its consumer: what the authority signs verifies
 * against the bundle alone, and the consumer refuses a tampered list, a list of another trust
 * domain or signed by another authority, and a JWS of another typ, each with
 * ERR_REVOCATION_LIST_INVALID naming the rule that failed.
 */
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { REVOCATION_LIST_TYP, signRevocationList, verifyRevocationList } from "../src/authority/revocation-list.js";
import { ErrorCodes } from "../src/errors.js";
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
        signRevocationList({ sequence: 7, identities: {}, serials: {} }, { trustDomain: "example.org", kid, key }),
        a,
      ).sequence,
      7,
    );
  });
});
