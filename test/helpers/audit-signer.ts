/**
 * A minimal checkpoint signer and verifier for the audit tests: ES256 detached compact JWS
 * (RFC 7515 Appendix F) with node:crypto P-256 keys. The identity layer provides the real ones,
 * backed by the writer's SVID.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import type { CheckpointSigner, CheckpointVerifier } from "../../src/audit/index.js";

const b64u = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

export interface TestKeys {
  readonly id: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export function newTestKeys(id = "spiffe://example.org/audit-writer"): TestKeys {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { id, privateKey, publicKey };
}

/** Rebuilds keys from a PKCS#8 PEM (to hand them to a child process). */
export function testKeysFromPem(id: string, pem: string): TestKeys {
  const privateKey = createPrivateKey(pem);
  return { id, privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * `legacy: true` makes a signer as they were before logs kept a Merkle tree (no `signNote`): its
 * checkpoints carry no note, as in a log written before this change.
 */
export function testSigner(keys: TestKeys, options: { legacy?: boolean } = {}): CheckpointSigner {
  const signNote = (text: Buffer) => ({
    spki: keys.publicKey.export({ type: "spki", format: "der" }),
    signature: sign("sha256", text, { key: keys.privateKey, dsaEncoding: "ieee-p1363" }),
  });
  return {
    id: keys.id,
    ...(options.legacy === true ? {} : { signNote }),
    sign(payload: Buffer): string {
      const header = b64u(JSON.stringify({ alg: "ES256", kid: keys.id }));
      const sig = sign("sha256", Buffer.from(`${header}.${b64u(payload)}`), {
        key: keys.privateKey,
        dsaEncoding: "ieee-p1363",
      });
      return `${header}..${b64u(sig)}`;
    },
  };
}

/** Trusts exactly the given keys, by their IDs. */
export function testVerifier(...trusted: TestKeys[]): CheckpointVerifier {
  const byId = new Map(trusted.map((k) => [k.id, k.publicKey]));
  return {
    verify(jws: string, payload: Buffer): { signer: string; publicKey: Buffer } {
      const [header, body, sig, ...rest] = jws.split(".");
      if (header === undefined || body !== "" || sig === undefined || rest.length > 0)
        throw new Error("not a detached compact JWS");
      const h = JSON.parse(Buffer.from(header, "base64url").toString("utf8")) as { alg?: unknown; kid?: unknown };
      if (h.alg !== "ES256") throw new Error("algorithm not allowed");
      const key = typeof h.kid === "string" ? byId.get(h.kid) : undefined;
      if (key === undefined) throw new Error("unknown signer");
      const ok = verify(
        "sha256",
        Buffer.from(`${header}.${b64u(payload)}`),
        { key, dsaEncoding: "ieee-p1363" },
        Buffer.from(sig, "base64url"),
      );
      if (!ok) throw new Error("bad signature");
      return { signer: h.kid as string, publicKey: key.export({ type: "spki", format: "der" }) };
    },
  };
}
