/**
 * Fixtures for the invocation tests, property tests and benchmark: a world of identities on
 * a throw-away embedded authority, hand-built tokens (any header, any claims, signed by a
 * real SVID key or by none), re-encodings of a token, and a guarded tool whose body may run
 * only after verification resolved.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import aztp from "aztp-client";
import type { EmbeddedAuthority } from "../../src/authority/authority.js";
import type { Aztp, SecureConnectOptions } from "../../src/client/aztp.js";
import type { AgentIdentity } from "../../src/client/identity.js";
import { AztpError } from "../../src/errors.js";
import {
  MemoryReplayCache,
  Trust,
  verifyInvocation,
  type InvocationClaims,
  type VerifiedInvocation,
  type VerifyInvocationOptions,
} from "../../src/invocation/index.js";
import { canonicalDigest } from "../../src/invocation/canonical.js";
import { newJti } from "../../src/invocation/nonce.js";

/** The order of the P-256 group: s and n - s are both valid ECDSA signature halves. */
export const P256_N = BigInt("0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");

export interface Domain {
  client: Aztp;
  authority: EmbeddedAuthority;
  home: string;
  /** A fresh identity named `name` (secureConnect), e.g. for a test that revokes it. */
  identity(name: string, options?: SecureConnectOptions): Promise<AgentIdentity>;
}

/** An embedded authority in a fresh home, optionally with its own default trust domain. */
export async function newDomain(trustDomain?: string): Promise<Domain> {
  const home = mkdtempSync(join(tmpdir(), "aztp-inv-"));
  const client = aztp.initialize(trustDomain === undefined ? { home } : { home, trustDomain });
  const authority = (await client.authority()) as EmbeddedAuthority; // a home folder: the embedded authority
  return {
    client,
    authority,
    home,
    identity: async (name, options = {}) => (await client.secureConnect({}, name, options)).identity,
  };
}

export interface World extends Domain {
  caller: AgentIdentity;
  serverA: AgentIdentity;
  serverB: AgentIdentity;
  /** A trusted identity that is neither caller nor callee. */
  third: AgentIdentity;
  /** The verifier's trust: the authority's bundles, the authority as revocation checker. */
  trust: Trust;
  close(): void;
}

export async function newWorld(): Promise<World> {
  const d = await newDomain();
  const [caller, serverA, serverB, third] = [
    await d.identity("caller"),
    await d.identity("server-a"),
    await d.identity("server-b"),
    await d.identity("third"),
  ];
  return {
    ...d,
    caller,
    serverA,
    serverB,
    third,
    trust: new Trust(d.authority.bundleSet(), { revocation: d.authority }),
    close: () => {
      d.client.close();
      rmSync(d.home, { recursive: true, force: true });
    },
  };
}

/** Anything with the SVID signer shape (an identity's signer, or a forged one). */
export interface RawSigner {
  alg: string;
  x5c: readonly string[];
  sign(data: Uint8Array): Buffer;
}

export const b64json = (value: unknown): string => Buffer.from(JSON.stringify(value), "utf8").toString("base64url");

/** A compact JWS with exactly this header and payload, signed by `sign` over the usual input. */
export function forge(header: object, payload: object, sign: (input: Buffer) => Buffer | string): string {
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = sign(Buffer.from(input, "ascii"));
  return `${input}.${typeof sig === "string" ? sig : sig.toString("base64url")}`;
}

/** A token signed by `signer`'s real key, with its usual header (overridable) and `claims` as given. */
export function resign(
  signer: RawSigner,
  claims: object,
  header: Record<string, unknown> = {},
  typ = "aztp-invocation+jwt",
): string {
  return forge({ alg: signer.alg, typ, x5c: signer.x5c, ...header }, claims, (input) => signer.sign(input));
}

/** Like `resign`, but the payload is given as JSON text (for JSON that JSON.stringify cannot write). */
export function resignText(signer: RawSigner, payloadJson: string, typ = "aztp-invocation+jwt"): string {
  const input = `${b64json({ alg: signer.alg, typ, x5c: signer.x5c })}.${Buffer.from(payloadJson, "utf8").toString("base64url")}`;
  return `${input}.${signer.sign(Buffer.from(input, "ascii")).toString("base64url")}`;
}

/** Claims exactly as signInvocation makes them, to be altered by a test and re-signed. */
export function baseClaims(
  caller: AgentIdentity,
  audience: AgentIdentity,
  tool: string,
  args: unknown,
  nowSec = Math.floor(Date.now() / 1000),
): InvocationClaims {
  return {
    iss: caller.spiffeId,
    sub: caller.spiffeId,
    aud: audience.spiffeId,
    iat: nowSec,
    exp: nowSec + 30,
    jti: newJti(),
    tool,
    args_sha256: canonicalDigest(args, "args"),
  };
}

export function segments(token: string): {
  h: string;
  p: string;
  s: string;
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
} {
  const [h = "", p = "", s = ""] = token.split(".");
  return {
    h,
    p,
    s,
    header: JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Record<string, unknown>,
  };
}

/** The same ES256 token with s replaced by n - s: a second valid signature over the same input. */
export function highSTwin(token: string): string {
  const { h, p, s } = segments(token);
  const sig = Buffer.from(s, "base64url");
  if (sig.length !== 64) throw new Error("highSTwin expects an ES256 (P1363, 64-byte) signature");
  const sv = BigInt(`0x${sig.subarray(32).toString("hex")}`);
  const twin = Buffer.concat([sig.subarray(0, 32), Buffer.from((P256_N - sv).toString(16).padStart(64, "0"), "hex")]);
  return `${h}.${p}.${twin.toString("base64url")}`;
}

/** `segment` with the base64 padding its length calls for (none if it is a multiple of 4). */
export function padded(segment: string): string {
  return segment + "=".repeat((4 - (segment.length % 4)) % 4);
}

/** The leaf certificate of `x5c` as PEM (for jose.importX509). */
export function leafPem(x5c: readonly string[]): string {
  return `-----BEGIN CERTIFICATE-----\n${(x5c[0] ?? "").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----\n`;
}

export const sha256 = (data: string | Buffer): Buffer => createHash("sha256").update(data).digest();

/**
 * A tool behind the verifier, as every wrapper must place it: the body runs only after
 * verifyInvocation resolved. `calls` counts how often the body really ran.
 */
export class GuardedTool {
  calls = 0;
  readonly #body: (args: unknown) => unknown;

  constructor(body: (args: unknown) => unknown = (args) => ({ echoed: args })) {
    this.#body = body;
  }

  async call(
    token: unknown,
    options: VerifyInvocationOptions,
  ): Promise<{ verified: VerifiedInvocation; result: unknown }> {
    const verified = await verifyInvocation(token, options);
    this.calls++;
    return { verified, result: this.#body(options.args) };
  }
}

/** Outcome of one guarded call: the AztpError code (or "ok"), and whether the body ran. */
export async function attempt(
  token: unknown,
  options: VerifyInvocationOptions,
): Promise<{ code: string; ran: number; error?: unknown; verified?: VerifiedInvocation }> {
  const tool = new GuardedTool();
  try {
    const { verified } = await tool.call(token, options);
    return { code: "ok", ran: tool.calls, verified };
  } catch (error) {
    return {
      code: error instanceof AztpError ? error.code : `not an AztpError: ${String(error)}`,
      ran: tool.calls,
      error,
    };
  }
}

/** Fresh verifier options: `audience` is the server, a new replay cache unless one is given. */
export function verifierFor(
  world: { trust: Trust },
  server: AgentIdentity,
  tool: string,
  args: unknown,
  extra: Partial<VerifyInvocationOptions> = {},
): VerifyInvocationOptions {
  return { audience: server.spiffeId, tool, args, trust: world.trust, replay: new MemoryReplayCache(), ...extra };
}
