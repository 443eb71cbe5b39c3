/** PEM encoding and decoding (RFC 7468), strict enough to name what is wrong. */
import { AztpError, ErrorCodes } from "../errors.js";

export interface PemBlock {
  /** The label, e.g. `CERTIFICATE`, `PRIVATE KEY`, `EC PRIVATE KEY`. */
  type: string;
  der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order. Throws ERR_PEM_BLOCKS_MISSING when there are none. */
export function decodePem(text: string | Buffer): PemBlock[] {
  const s = typeof text === "string" ? text : text.toString("latin1");
  const out: PemBlock[] = [];
  for (const m of s.matchAll(BLOCK)) {
    const body = (m[2] ?? "").replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      // Let the caller's parser report it as a corrupt object of the right kind.
      out.push({ type: m[1] ?? "", der: Buffer.alloc(0) });
      continue;
    }
    out.push({ type: m[1] ?? "", der: Buffer.from(body, "base64") });
  }
  if (out.length === 0) throw new AztpError(ErrorCodes.PEM_BLOCKS_MISSING, "no PEM blocks found");
  return out;
}

export function encodePem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join("\n")}\n-----END ${type}-----\n`;
}

export function isPrivateKeyBlock(type: string): boolean {
  return type === "PRIVATE KEY" || type === "EC PRIVATE KEY" || type === "RSA PRIVATE KEY";
}
