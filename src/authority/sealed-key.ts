/**
 * CA private keys sealed under a key-encryption key (KEK), so a store shared by replicas
 * (PostgreSQL) never holds them in plaintext: a dump, a replica of the database or a backup
 * gives certificates and ciphertext, nothing that signs.
 *
 * Why a KEK rather than a key folder per replica: the CA keys then live where the rest of the
 * authority's state lives (created, rotated and backed up with it, by whichever replica does
 * it), and what each replica must be given is one 32-byte secret that never changes with a
 * rotation. A key folder would have to be copied to every replica again on each rotation and
 * each new trust domain, and a replica with a stale copy could not sign for the newest
 * generation.
 *
 * Format (version 1), one string per key:
 *
 *   aztp-sealed.v1.<kek id>.<nonce>.<ciphertext>.<tag>        (base64url parts)
 *
 * AES-256-GCM, a random 12-byte nonce per seal (never reused under one KEK: 2^-32 collision
 * odds only after about 2^32 seals, far beyond a CA's key count), and additional data binding
 * the trust domain, the generation and which key it is: a sealed key copied to another trust
 * domain, generation or role does not open. The KEK id (the first 8 bytes of a SHA-256 of the
 * KEK under a label) names which KEK sealed it, so a replica given the wrong one is told so
 * rather than "bad tag"; it reveals nothing usable about the KEK.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { AztpError, ErrorCodes } from "../errors.js";

export const KEK_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const PREFIX = "aztp-sealed.v1";

export type SealedKeyRole = "root" | "intermediate" | "jwt";

/** What a sealed key is bound to: it opens only for the same trust domain, generation and role. */
export interface SealedKeyContext {
  readonly trustDomain: string;
  readonly generation: number;
  readonly role: SealedKeyRole;
}

export class KeyEncryptionKey {
  readonly #key: Buffer;
  /** Names this KEK in sealed keys and messages (not secret). */
  readonly id: string;

  constructor(key: Buffer | Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== KEK_BYTES) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_KEK_INVALID,
        `the key-encryption key must be ${KEK_BYTES} bytes, got ${key instanceof Uint8Array ? key.length : typeof key}`,
      );
    }
    this.#key = Buffer.from(key); // a copy: the caller may zero or reuse its buffer
    this.id = createHash("sha256")
      .update("aztp kek id\n")
      .update(this.#key)
      .digest()
      .subarray(0, 8)
      .toString("base64url");
  }

  /** A fresh random KEK (for tests and `aztp serve` setup). */
  static generate(): KeyEncryptionKey {
    return new KeyEncryptionKey(randomBytes(KEK_BYTES));
  }

  seal(plaintext: string, context: SealedKeyContext): string {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(additionalData(context));
    const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [
      PREFIX,
      this.id,
      nonce.toString("base64url"),
      ct.toString("base64url"),
      cipher.getAuthTag().toString("base64url"),
    ].join(".");
  }

  /** Opens a sealed key; ERR_AUTHORITY_KEK_INVALID (naming the trust domain) when it does not open. */
  unseal(sealed: string, context: SealedKeyContext): string {
    const what = `the ${context.role} key of trust domain ${context.trustDomain} (CA generation ${context.generation})`;
    const parts = typeof sealed === "string" ? sealed.split(".") : [];
    if (parts.length !== 6 || `${parts[0]}.${parts[1]}` !== PREFIX) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_KEK_INVALID,
        `${what} is not a sealed key of a known format (expected ${PREFIX})`,
      );
    }
    const [, , kekId, nonceText, ctText, tagText] = parts as [string, string, string, string, string, string];
    if (kekId !== this.id) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_KEK_INVALID,
        `${what} was sealed under key-encryption key ${kekId}, but this process was given ${this.id}: give it the KEK the CA was created with`,
      );
    }
    const nonce = Buffer.from(nonceText, "base64url");
    const tag = Buffer.from(tagText, "base64url");
    try {
      if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw new Error("bad nonce or tag length");
      const decipher = createDecipheriv("aes-256-gcm", this.#key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(additionalData(context));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(Buffer.from(ctText, "base64url")), decipher.final()]).toString("utf8");
    } catch (cause) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_KEK_INVALID,
        `${what} does not open under key-encryption key ${this.id}: it was altered, or moved from another trust domain, generation or key`,
        { cause },
      );
    }
  }
}

function additionalData(c: SealedKeyContext): Buffer {
  // Length-prefixed by construction: a trust domain cannot contain "\n".
  return Buffer.from(`${PREFIX}\n${c.trustDomain}\n${c.generation}\n${c.role}`, "utf8");
}

export interface KekSource {
  /** The KEK itself (32 bytes). */
  readonly kek?: Buffer | Uint8Array | undefined;
  /** A file holding it: 32 raw bytes, or base64 / base64url text of them. */
  readonly kekFile?: string | undefined;
  /** Where to look for AZTP_KEK (base64) and AZTP_KEK_FILE; default process.env. */
  readonly env?: NodeJS.ProcessEnv | undefined;
}

/**
 * The KEK from, in order: `kek`, `kekFile`, AZTP_KEK, AZTP_KEK_FILE. Throws
 * ERR_AUTHORITY_KEK_MISSING naming what to give when there is none: a shared store never
 * falls back to plaintext keys.
 */
export function resolveKek(source: KekSource, where: string): KeyEncryptionKey {
  if (source.kek !== undefined) return new KeyEncryptionKey(source.kek);
  const env = source.env ?? process.env;
  const file = source.kekFile ?? env.AZTP_KEK_FILE;
  if (source.kekFile === undefined && env.AZTP_KEK !== undefined && env.AZTP_KEK !== "")
    return new KeyEncryptionKey(decodeKekText(env.AZTP_KEK, "AZTP_KEK"));
  if (file !== undefined && file !== "") {
    let raw: Buffer;
    try {
      raw = readFileSync(file);
    } catch (cause) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_KEK_MISSING,
        `cannot read the key-encryption key file ${file}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`,
        { cause },
      );
    }
    return new KeyEncryptionKey(raw.length === KEK_BYTES ? raw : decodeKekText(raw.toString("utf8"), file));
  }
  throw new AztpError(
    ErrorCodes.AUTHORITY_KEK_MISSING,
    `${where} keeps CA keys sealed under a key-encryption key, and none was given: set AZTP_KEK (${KEK_BYTES} bytes, base64) ` +
      "or AZTP_KEK_FILE (a file holding it) to the same value on every replica (make one with `openssl rand -base64 32`)",
  );
}

function decodeKekText(text: string, from: string): Buffer {
  const t = text.trim();
  const bytes = Buffer.from(t, /[-_]/.test(t) ? "base64url" : "base64");
  if (bytes.length !== KEK_BYTES || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    throw new AztpError(
      ErrorCodes.AUTHORITY_KEK_INVALID,
      `${from} must hold ${KEK_BYTES} bytes as base64 (got ${bytes.length} bytes)`,
    );
  }
  return bytes;
}
