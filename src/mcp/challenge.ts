/**
 * The challenge a secured client puts in `initialize` (or `server/discover`) under
 * `io.aztp/challenge`: a fresh nonce for the server to sign, and the client's ID as the proof's
 * audience. The server checks it the moment it arrives: a malformed one used to reach
 * signPossessionProof only when the answer was on its way out, where the throw left the
 * initialize unanswered and the client waiting for ever. Now it is answered at once, with
 * ERR_MCP_CHALLENGE_INVALID.
 */
import { randomBytes } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export interface Challenge {
  /** 16 to 256 base64url characters (a possession proof's nonce). */
  nonce: string;
  /** The challenger's SPIFFE/AZTP ID: the proof's audience. */
  client?: string;
}

/** The nonce a possession proof may sign: what signPossessionProof accepts, in base64url. */
const NONCE = /^[A-Za-z0-9_-]{16,256}$/;

/** A fresh challenge: 128 random bits (22 base64url characters). */
export function newChallenge(client: string): Challenge {
  return { nonce: randomBytes(16).toString("base64url"), client };
}

function invalid(why: string): never {
  throw new AztpError(
    ErrorCodes.MCP_CHALLENGE_INVALID,
    `the ${"io.aztp/challenge"} of this handshake ${why}: send { nonce: 16 to 256 base64url characters, client: your SPIFFE ID }`,
  );
}

/** The challenge `value` holds, or ERR_MCP_CHALLENGE_INVALID naming what is wrong with it. */
export function parseChallenge(value: unknown): Challenge {
  if (!isJsonObject(value))
    invalid(`is ${value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`}, not an object`);
  const { nonce, client } = value;
  if (typeof nonce !== "string")
    invalid(`has ${nonce === undefined ? "no nonce" : `a nonce that is a ${typeof nonce}, not a string`}`);
  if (nonce.length < 16 || nonce.length > 256) invalid(`has a nonce of ${nonce.length} characters`);
  if (!NONCE.test(nonce)) invalid("has a nonce that is not base64url");
  if (client === undefined) return { nonce };
  if (typeof client !== "string")
    invalid(`has a client that is a ${client === null ? "null" : typeof client}, not a string`);
  try {
    SpiffeId.parse(client);
  } catch (e) {
    invalid(`names a client that is not a SPIFFE or AZTP ID (${(e as Error).message})`);
  }
  return { nonce, client };
}
