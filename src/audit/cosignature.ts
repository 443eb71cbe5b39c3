/**
 * Witness cosignatures (c2sp.org/tlog-cosignature, version 1, Ed25519, signature type 0x04): a
 * witness that has checked a checkpoint to be consistent with every earlier one it saw of the
 * same log adds its own signature line to the note. It signs
 *
 *   "cosignature/v1\n" || "time <POSIX seconds>\n" || the checkpoint's note text
 *
 * and its signature is the timestamp (8 bytes, big-endian) followed by the 64-byte Ed25519
 * signature. Its key ID is SHA-256(name || "\n" || 0x04 || public key)[:4]. An auditor who
 * trusts a witness's key then knows the log showed that witness this tree, not a fork of it.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import {
  ed25519Key,
  hex8,
  isKeyName,
  SIG_COSIGNATURE_V1,
  type NoteSignature,
  type NoteVerifierKey,
} from "./signed-note.js";

function invalid(rule: string, message: string): never {
  throw new AztpError(ErrorCodes.AUDIT_NOTE_INVALID, `cosignature: ${message}`, { rule });
}

function rawEd25519(publicKey: KeyObject): Buffer {
  if (publicKey.asymmetricKeyType !== "ed25519") invalid("key-type", "a cosigner key must be Ed25519");
  // The last 32 bytes of an Ed25519 SubjectPublicKeyInfo are the key itself (RFC 8410).
  return publicKey.export({ type: "spki", format: "der" }).subarray(-32);
}

/** The key ID of a cosigner: SHA-256(name || "\n" || 0x04 || key)[:4]. */
export function cosignerKeyId(name: string, publicKey: KeyObject): number {
  return createHash("sha256")
    .update(Buffer.concat([Buffer.from(`${name}\n`, "utf8"), Buffer.from([SIG_COSIGNATURE_V1]), rawEd25519(publicKey)]))
    .digest()
    .readUInt32BE(0);
}

/** The message a v1 cosignature signs. */
export function cosignedMessage(checkpointText: string, timestamp: number): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${timestamp}\n${checkpointText}`, "utf8");
}

/** Cosigns a checkpoint's note text at `timestamp` (POSIX seconds) with an Ed25519 private key. */
export function cosign(name: string, checkpointText: string, privateKey: KeyObject, timestamp: number): NoteSignature {
  if (!isKeyName(name)) invalid("key-name", `key name "${name}" is not allowed`);
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) invalid("time", "the timestamp must be whole seconds >= 0");
  const publicKey = createPublicKey(privateKey);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestamp));
  const sig = sign(null, cosignedMessage(checkpointText, timestamp), privateKey);
  return { name, keyId: cosignerKeyId(name, publicKey), signature: Buffer.concat([ts, sig]) };
}

/** A cosigner's key as a verifier key; `timestampOf` reads the time a good signature carries. */
export function cosignerVerifierKey(name: string, publicKey: KeyObject): NoteVerifierKey & { vkey: string } {
  if (!isKeyName(name)) invalid("key-name", `key name "${name}" is not allowed`);
  const keyId = cosignerKeyId(name, publicKey);
  const raw = rawEd25519(publicKey);
  return {
    name,
    keyId,
    vkey: `${name}+${hex8(keyId)}+${Buffer.concat([Buffer.from([SIG_COSIGNATURE_V1]), raw]).toString("base64")}`,
    verify(text: Buffer, signature: Buffer): boolean {
      if (signature.length !== 72) return false;
      const ts = signature.readBigUInt64BE(0);
      if (ts > BigInt(Number.MAX_SAFE_INTEGER)) return false;
      try {
        return verify(null, cosignedMessage(text.toString("utf8"), Number(ts)), publicKey, signature.subarray(8));
      } catch {
        return false;
      }
    },
  };
}

/** The timestamp a cosignature carries (POSIX seconds). */
export function cosignatureTime(signature: NoteSignature): number {
  if (signature.signature.length !== 72) invalid("signature-length", "a v1 cosignature is 72 bytes");
  return Number(signature.signature.readBigUInt64BE(0));
}

/** Reads a cosigner vkey (`name+keyid+base64(0x04 || key)`). */
export function parseCosignerVkey(vkey: string): NoteVerifierKey & { vkey: string } {
  // The key name and ID hold no "+"; the base64 after them may.
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  const parts = second < 0 ? [vkey] : [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  if (parts.length !== 3) invalid("vkey", `a verifier key is "<name>+<key ID>+<key>"`);
  const [name, idHex, b64] = parts as [string, string, string];
  const bytes = Buffer.from(b64, "base64");
  if (bytes.length !== 33 || bytes[0] !== SIG_COSIGNATURE_V1 || bytes.toString("base64") !== b64)
    invalid("vkey", "a cosigner key is base64(0x04 || 32-byte Ed25519 key)");
  const key = cosignerVerifierKey(name, ed25519Key(bytes.subarray(1)));
  if (hex8(key.keyId) !== idHex) invalid("vkey", `the key ID ${idHex} does not match the key (${hex8(key.keyId)})`);
  return key;
}

/** Reads an Ed25519 private key (PKCS#8 PEM) for a witness. */
export function readCosignerKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== "ed25519") invalid("key-type", "a cosigner key must be Ed25519");
  return key;
}
