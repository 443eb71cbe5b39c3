/**
 * C2SP signed notes (c2sp.org/signed-note): a text ending in a newline, a blank line, then one
 * signature line per key, `— <key name> base64(key ID || signature)`. Checkpoints of the log's
 * Merkle tree are signed notes, so any transparency-log client can read and check them.
 *
 * Two signature types are made and checked here:
 * - `0x02`, ECDSA as the transparency-dev witness and Sigstore's Rekor define it (the type the
 *   specification assigns, and the one an SVID's P-256 key can make): an ASN.1 DER ECDSA
 *   signature over SHA-256 of the text; the key ID is the first four bytes of SHA-256 over the
 *   key's DER SubjectPublicKeyInfo (the name does not enter it).
 * - `0x01`, Ed25519, only to verify (the specification's own example, and vkeys people hold).
 * Timestamped Ed25519 cosignatures (`0x04`) are in cosignature.ts.
 *
 * Parsing is strict (the specification's rules, each failure naming it): valid UTF-8, no control
 * characters but newline, key names without spaces or "+", base64 that decodes to at least five
 * bytes, at most MAX_SIGNATURES signature lines. A verifier ignores signatures by keys it does not
 * know (by name and key ID), and a note none of whose known signatures verifies is refused.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";

/** Signature type bytes (c2sp.org/signed-note, "Signature types"). */
export const SIG_ED25519 = 0x01;
export const SIG_ECDSA = 0x02;
export const SIG_COSIGNATURE_V1 = 0x04;

/** The specification asks verifiers to take at least 16; more than this is refused as malformed. */
export const MAX_SIGNATURES = 64;

export interface NoteSignature {
  readonly name: string;
  /** The uint32 key ID (big-endian, the signature's first four bytes). */
  readonly keyId: number;
  /** The signature bytes after the key ID. */
  readonly signature: Buffer;
}

export interface SignedNote {
  /** The signed text, with its final newline. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
}

/** A key a verifier knows: its name, key ID, and how to check a signature by it. */
export interface NoteVerifierKey {
  readonly name: string;
  readonly keyId: number;
  /** True when `signature` is this key's over `text`. Never throws. */
  verify(text: Buffer, signature: Buffer): boolean;
}

function malformed(rule: string, message: string): never {
  throw new AztpError(ErrorCodes.AUDIT_NOTE_INVALID, `signed note: ${message}`, { rule });
}

const EM_DASH = "\u2014";
const STRICT_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Whether `name` may be a key name: non-empty, no Unicode space, no "+". */
export function isKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u.test(name);
}

function checkText(text: string, what: string): void {
  // Control characters below U+0020 other than newline are refused, so are lone surrogates
  // (not UTF-8): a note is read the same by every implementation or not at all.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) malformed("control", `${what} holds a control character`);
  if (!(text as string & { isWellFormed(): boolean }).isWellFormed())
    malformed("utf8", `${what} is not valid UTF-8 (a lone surrogate)`);
}

function decodeBase64(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !STRICT_BASE64.test(text)) return null;
  const bytes = Buffer.from(text, "base64");
  // Non-canonical padding bits would give two spellings of one signature.
  return bytes.toString("base64") === text ? bytes : null;
}

/** Parses a signed note; throws ERR_AUDIT_NOTE_INVALID naming the rule it breaks. */
export function parseSignedNote(note: string): SignedNote {
  if (typeof note !== "string") malformed("type", "is not a string");
  checkText(note, "the note");
  if (!note.endsWith("\n")) malformed("format", "does not end in a newline");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) malformed("format", "has no blank line before its signatures");
  const text = note.slice(0, split + 1);
  if (text.length === 0) malformed("format", "has no text");
  const lines = note.slice(split + 2, -1).split("\n");
  if (lines.length === 0 || lines[0] === "") malformed("format", "has no signature lines");
  if (lines.length > MAX_SIGNATURES)
    malformed("too-many", `has ${lines.length} signatures (at most ${MAX_SIGNATURES})`);
  const signatures = lines.map((line, i) => {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
    if (m === null) malformed("signature-line", `signature line ${i + 1} is not "${EM_DASH} <name> <base64>"`);
    const name = m[1] as string;
    if (!isKeyName(name)) malformed("key-name", `signature line ${i + 1}: key name "${name}" is not allowed`);
    const bytes = decodeBase64(m[2] as string);
    if (bytes === null) malformed("base64", `signature line ${i + 1} is not standard base64`);
    if (bytes.length < 5)
      malformed("signature-length", `signature line ${i + 1} is shorter than a key ID and a signature`);
    return { name, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(4) };
  });
  return { text, signatures };
}

/** Writes a signed note: `text` (ending in a newline), a blank line, its signature lines. */
export function formatSignedNote(note: SignedNote): string {
  checkText(note.text, "the text");
  if (!note.text.endsWith("\n")) malformed("format", "the text must end in a newline");
  if (note.signatures.length === 0) malformed("format", "a note needs a signature");
  const lines = note.signatures.map((s) => {
    if (!isKeyName(s.name)) malformed("key-name", `key name "${s.name}" is not allowed`);
    const id = Buffer.alloc(4);
    id.writeUInt32BE(s.keyId >>> 0);
    return `${EM_DASH} ${s.name} ${Buffer.concat([id, s.signature]).toString("base64")}\n`;
  });
  return `${note.text}\n${lines.join("")}`;
}

/**
 * The signatures of `note` that `keys` know and that verify; throws ERR_AUDIT_NOTE_INVALID when a
 * known key's signature fails (rule "signature"), or when no known key signed it ("unknown-key").
 */
export function verifyNote(note: SignedNote, keys: readonly NoteVerifierKey[]): NoteVerifierKey[] {
  const text = Buffer.from(note.text, "utf8");
  const good: NoteVerifierKey[] = [];
  for (const sig of note.signatures) {
    const key = keys.find((k) => k.name === sig.name && k.keyId === sig.keyId);
    if (key === undefined) continue; // unknown keys are ignored, as the specification requires
    if (!key.verify(text, sig.signature)) malformed("signature", `the signature by ${sig.name} does not verify`);
    if (!good.includes(key)) good.push(key);
  }
  if (good.length === 0) {
    const names = keys.map((k) => `${k.name}+${hex8(k.keyId)}`).join(", ") || "none";
    malformed("unknown-key", `no signature by a known key (known: ${names})`);
  }
  return good;
}

export function hex8(keyId: number): string {
  return (keyId >>> 0).toString(16).padStart(8, "0");
}

/** The key ID of an ECDSA key (type 0x02): SHA-256 of its DER SubjectPublicKeyInfo, first four bytes. */
export function ecdsaKeyId(spki: Uint8Array): number {
  return createHash("sha256").update(spki).digest().readUInt32BE(0);
}

function spkiOf(key: KeyObject): Buffer {
  return key.export({ type: "spki", format: "der" });
}

/** A verifier key for type 0x02 signatures by `publicKey` (an EC key) under `name`. */
export function ecdsaVerifierKey(name: string, publicKey: KeyObject | Uint8Array): NoteVerifierKey & { spki: Buffer } {
  if (!isKeyName(name)) malformed("key-name", `key name "${name}" is not allowed`);
  const key =
    publicKey instanceof Uint8Array
      ? createPublicKey({ key: Buffer.from(publicKey), format: "der", type: "spki" })
      : publicKey;
  if (key.asymmetricKeyType !== "ec")
    malformed("key-type", `an ECDSA note key must be an EC key, not ${key.asymmetricKeyType ?? "unknown"}`);
  const spki = spkiOf(key);
  return {
    name,
    keyId: ecdsaKeyId(spki),
    spki,
    verify(text: Buffer, signature: Buffer): boolean {
      try {
        return verify("sha256", text, { key, dsaEncoding: "der" }, signature);
      } catch {
        return false;
      }
    },
  };
}

/** Signs `text` with an ECDSA private key as type 0x02 (DER over SHA-256), for `name`. */
export function ecdsaNoteSignature(name: string, text: string, privateKey: KeyObject): NoteSignature {
  const spki = spkiOf(createPublicKey(privateKey));
  return {
    name,
    keyId: ecdsaKeyId(spki),
    signature: sign("sha256", Buffer.from(text, "utf8"), { key: privateKey, dsaEncoding: "der" }),
  };
}

/**
 * An ECDSA signature in JOSE's form (r || s, RFC 7518 §3.4) as ASN.1 DER, the form type 0x02
 * carries: an SVID signer signs for JWS, and its signature over the note text is the same
 * signature, encoded as the note expects.
 */
export function joseToDerSignature(raw: Uint8Array): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0)
    malformed("signature-length", "a JOSE ECDSA signature has two halves of equal length");
  const half = raw.length / 2;
  const integer = (bytes: Uint8Array): Buffer => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let v = Buffer.from(bytes.subarray(i));
    if ((v[0] as number) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
    return Buffer.concat([Buffer.from([0x02]), derLength(v.length), v]);
  };
  const body = Buffer.concat([integer(raw.subarray(0, half)), integer(raw.subarray(half))]);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

function derLength(n: number): Buffer {
  return n < 0x80 ? Buffer.from([n]) : Buffer.from([0x81, n]);
}

/** Reads a vkey (`<name>+<hex key ID>+<base64(type || key)>`) of type 0x01 (Ed25519) or 0x02 (ECDSA). */
export function parseVerifierKey(vkey: string): NoteVerifierKey {
  // The key name and ID hold no "+"; the base64 after them may.
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  const parts = second < 0 ? [vkey] : [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  if (parts.length !== 3) malformed("vkey", `a verifier key is "<name>+<key ID>+<key>"`);
  const [name, idHex, b64] = parts as [string, string, string];
  if (!isKeyName(name)) malformed("key-name", `key name "${name}" is not allowed`);
  if (!/^[0-9a-f]{8}$/.test(idHex)) malformed("vkey", "the key ID must be 8 lower-case hex digits");
  const bytes = decodeBase64(b64);
  if (bytes === null || bytes.length < 2) malformed("vkey", "the key is not standard base64");
  const keyId = Number.parseInt(idHex, 16);
  const type = bytes[0];
  const material = bytes.subarray(1);
  let key: NoteVerifierKey;
  if (type === SIG_ECDSA) {
    key = ecdsaVerifierKey(name, material);
  } else if (type === SIG_ED25519 || type === SIG_COSIGNATURE_V1) {
    if (material.length !== 32) malformed("vkey", "an Ed25519 key is 32 bytes");
    const expected = createHash("sha256")
      .update(Buffer.concat([Buffer.from(`${name}\n`, "utf8"), Buffer.from([type]), material]))
      .digest()
      .readUInt32BE(0);
    if (type === SIG_COSIGNATURE_V1) malformed("vkey", "a cosignature key (type 0x04) is read by cosignature.ts");
    const publicKey = ed25519Key(material);
    key = {
      name,
      keyId: expected,
      verify: (text, signature) => {
        try {
          return signature.length === 64 && verify(null, text, publicKey, signature);
        } catch {
          return false;
        }
      },
    };
  } else {
    malformed("vkey", `signature type 0x${(type ?? 0).toString(16).padStart(2, "0")} is not supported`);
  }
  if (key.keyId !== keyId) malformed("vkey", `the key ID ${idHex} does not match the key (${hex8(key.keyId)})`);
  return key;
}

/** An Ed25519 public key from its 32 bytes (RFC 8410's SubjectPublicKeyInfo prefix). */
export function ed25519Key(raw: Uint8Array): KeyObject {
  const prefix = Buffer.from("302a300506032b6570032100", "hex");
  return createPublicKey({ key: Buffer.concat([prefix, raw]), format: "der", type: "spki" });
}

/** The vkey of an ECDSA note key. */
export function ecdsaVkey(name: string, publicKey: KeyObject | Uint8Array): string {
  const key = ecdsaVerifierKey(name, publicKey);
  return `${name}+${hex8(key.keyId)}+${Buffer.concat([Buffer.from([SIG_ECDSA]), key.spki]).toString("base64")}`;
}
