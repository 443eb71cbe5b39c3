/**
 * C2SP signed notes, checkpoints and cosignatures (src/audit/signed-note.ts, tlog-checkpoint.ts,
 * cosignature.ts): the specification's own example verifies, our ECDSA (type 0x02) and witness
 * cosignatures (type 0x04) round-trip, and every malformed note or altered signature is refused
 * with the rule it breaks. Go's golang.org/x/mod/sumdb/note reads the same notes in
 * audit-crosscheck.test.ts.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import {
  ecdsaNoteSignature,
  ecdsaVerifierKey,
  ecdsaVkey,
  formatSignedNote,
  joseToDerSignature,
  parseSignedNote,
  parseVerifierKey,
  verifyNote,
} from "../src/audit/signed-note.js";
import { formatCheckpointBody, parseCheckpointBody } from "../src/audit/tlog-checkpoint.js";
import { cosign, cosignatureTime, cosignerVerifierKey, parseCosignerVkey } from "../src/audit/cosignature.js";
import { sign, createPublicKey } from "node:crypto";

// c2sp.org/signed-note, "Verifier keys", Example: a vkey and a note it verifies.
const SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE =
  "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
const witness = generateKeyPairSync("ed25519");
const ORIGIN = "example.org/agent/a/audit/a";
const body = formatCheckpointBody({ origin: ORIGIN, size: 7, root: Buffer.alloc(32, 7) });

describe("C2SP signed notes", () => {
  it("verifies the specification's example, and refuses it altered", () => {
    const key = parseVerifierKey(SPEC_VKEY);
    const note = parseSignedNote(SPEC_NOTE);
    assert.equal(note.text, "This is an example message.\n");
    assert.equal(verifyNote(note, [key]).length, 1);
    const altered = parseSignedNote(SPEC_NOTE.replace("example message", "exemple message"));
    assert.throws(() => verifyNote(altered, [key]), { code: ErrorCodes.AUDIT_NOTE_INVALID, rule: "signature" });
  });

  it("signs a checkpoint with an ECDSA P-256 key (type 0x02) that only that key verifies", () => {
    const sig = ecdsaNoteSignature(ORIGIN, body, ec.privateKey);
    const text = formatSignedNote({ text: body, signatures: [sig] });
    assert.match(text, /^example\.org\/agent\/a\/audit\/a\n7\n/);
    const note = parseSignedNote(text);
    const key = ecdsaVerifierKey(ORIGIN, ec.publicKey);
    assert.equal(verifyNote(note, [key])[0], key);
    assert.equal(parseVerifierKey(ecdsaVkey(ORIGIN, ec.publicKey)).keyId, key.keyId, "the vkey round-trips");
    // Another key under the same name has another key ID: its signature is unknown, not accepted.
    assert.throws(() => verifyNote(note, [ecdsaVerifierKey(ORIGIN, other.publicKey)]), { rule: "unknown-key" });
    // The same key ID with a forged signature is refused.
    const forged = {
      ...note,
      signatures: [{ ...sig, signature: ecdsaNoteSignature(ORIGIN, body + "x\n", ec.privateKey).signature }],
    };
    assert.throws(() => verifyNote(forged, [key]), { rule: "signature" });
    // A JOSE (r || s) signature re-encoded as DER is the same signature.
    const raw = sign("sha256", Buffer.from(body), { key: ec.privateKey, dsaEncoding: "ieee-p1363" });
    const der = joseToDerSignature(raw);
    assert.ok(key.verify(Buffer.from(body), der));
    const cp = parseCheckpointBody(note.text);
    assert.deepEqual(cp, { origin: ORIGIN, size: 7, root: Buffer.alloc(32, 7) });
  });

  it("adds a witness's timestamped Ed25519 cosignature (type 0x04) beside the log's signature", () => {
    const logSig = ecdsaNoteSignature(ORIGIN, body, ec.privateKey);
    const co = cosign("witness.example/w1", body, witness.privateKey, 1_700_000_000);
    const note = parseSignedNote(formatSignedNote({ text: body, signatures: [logSig, co] }));
    const wkey = cosignerVerifierKey("witness.example/w1", witness.publicKey);
    assert.equal(verifyNote(note, [wkey]).length, 1);
    assert.equal(cosignatureTime(note.signatures[1]!), 1_700_000_000);
    assert.equal(parseCosignerVkey(wkey.vkey).keyId, wkey.keyId);
    // The time is signed: moving it breaks the signature.
    const moved = Buffer.from(co.signature);
    moved.writeBigUInt64BE(1_700_000_001n);
    assert.equal(wkey.verify(Buffer.from(body), moved), false);
    assert.equal(wkey.verify(Buffer.from(body), co.signature), true, "the honest twin");
    assert.equal(createPublicKey(witness.privateKey).asymmetricKeyType, "ed25519");
  });

  const malformed: [string, string, string][] = [
    ["no blank line", "text\n\u2014 a AAAAAAAA\n", "format"],
    ["no final newline", `${body}\n\u2014 a AAAAAAAA`, "format"],
    ["no signature", `${body}\n`, "format"],
    ["a control character", `te\u0007xt\n\n\u2014 a AAAAAAAA\n`, "control"],
    ["a lone surrogate", `te\ud800xt\n\n\u2014 a AAAAAAAA\n`, "utf8"],
    ["a plus in the key name", `${body}\n\u2014 a+b AAAAAAAA\n`, "key-name"],
    ["a hyphen for the em dash", `${body}\n- a AAAAAAAA\n`, "signature-line"],
    ["bad base64", `${body}\n\u2014 a AAAA*AAA\n`, "base64"],
    ["a key ID and nothing else", `${body}\n\u2014 a AAAAAA==\n`, "signature-length"],
    ["too many signatures", `${body}\n${"\u2014 a AAAAAAAA\n".repeat(65)}`, "too-many"],
  ];
  for (const [name, text, rule] of malformed) {
    it(`refuses a note with ${name} (rule ${rule})`, () => {
      assert.throws(() => parseSignedNote(text), { code: ErrorCodes.AUDIT_NOTE_INVALID, rule });
    });
  }

  const bodies: [string, string][] = [
    ["two lines", "o\n1\n"],
    ["a leading zero", `o\n07\n${Buffer.alloc(32).toString("base64")}\n`],
    ["a short root", `o\n7\n${Buffer.alloc(31).toString("base64")}\n`],
    ["an empty origin", `\n7\n${Buffer.alloc(32).toString("base64")}\n`],
    ["an empty extension line", `o\n7\n${Buffer.alloc(32).toString("base64")}\n\n`],
  ];
  for (const [name, text] of bodies) {
    it(`refuses a checkpoint body with ${name}`, () => {
      assert.throws(() => parseCheckpointBody(text), { code: ErrorCodes.AUDIT_NOTE_INVALID, rule: "checkpoint" });
    });
  }
});
