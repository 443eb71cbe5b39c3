/**
 * The SPIFFE Workload API's messages, described here from the SPIFFE Workload API and Workload
 * Endpoint standards (the names and field numbers they fix; go-spiffe's `workload.proto` is the
 * reference the tests read, never a file of this package) and encoded with protobufjs.
 *
 * What the standard fixes about the values, which `svids.ts` keeps to:
 * `x509Svid` is the DER chain, leaf first, concatenated; `x509SvidKey` an unencrypted PKCS#8 DER
 * key; `bundle` and the bundle maps' values the trust domain's CA certificates, DER,
 * concatenated; the JWT bundle maps' values a JWK set as JSON bytes; every map is keyed by trust
 * domain name (SPIFFE ID form: `spiffe://example.org`).
 *
 * The WIT-SVID calls (Workload Identity Tokens, a draft) are not described: a client that asks
 * for them gets UNIMPLEMENTED, as from a SPIRE agent that predates them.
 */
import protobuf from "protobufjs";
import { AztpError, ErrorCodes } from "../errors.js";
import type { JsonValue } from "../json/value.js";

/** A JSON object whose members are JSON data: a token's claims. */
export type Claims = { [key: string]: JsonValue };

export interface X509SvidRequest {}

export interface X509Svid {
  spiffeId: string;
  x509Svid: Uint8Array;
  x509SvidKey: Uint8Array;
  bundle: Uint8Array;
  hint: string;
}

export interface X509SvidResponse {
  svids: X509Svid[];
  crl: Uint8Array[];
  federatedBundles: Record<string, Uint8Array>;
}

export interface X509BundlesRequest {}

export interface X509BundlesResponse {
  crl: Uint8Array[];
  bundles: Record<string, Uint8Array>;
}

export interface JwtSvidRequest {
  audience: string[];
  /** Empty: every identity the caller is entitled to. */
  spiffeId: string;
}

export interface JwtSvid {
  spiffeId: string;
  svid: string;
  hint: string;
}

export interface JwtSvidResponse {
  svids: JwtSvid[];
}

export interface JwtBundlesRequest {}

export interface JwtBundlesResponse {
  bundles: Record<string, Uint8Array>;
}

export interface ValidateJwtSvidRequest {
  audience: string;
  svid: string;
}

export interface ValidateJwtSvidResponse {
  spiffeId: string;
  /** The token's claims (a google.protobuf.Struct on the wire). */
  claims: Claims;
}

const repeated = (type: string, id: number) => ({ rule: "repeated", type, id });
const map = (type: string, id: number) => ({ keyType: "string", type, id });
const one = (type: string, id: number) => ({ type, id });

// protobufjs's own description of google.protobuf.Struct, which ValidateJWTSVIDResponse.claims is.
const STRUCT = protobuf.common.get("google/protobuf/struct.proto") as protobuf.INamespace;

const ROOT = protobuf.Root.fromJSON({
  nested: {
    ...(STRUCT.nested as Record<string, protobuf.AnyNestedObject>),
    X509SVIDRequest: { fields: {} },
    X509SVIDResponse: {
      fields: { svids: repeated("X509SVID", 1), crl: repeated("bytes", 2), federatedBundles: map("bytes", 3) },
    },
    X509SVID: {
      fields: {
        spiffeId: one("string", 1),
        x509Svid: one("bytes", 2),
        x509SvidKey: one("bytes", 3),
        bundle: one("bytes", 4),
        hint: one("string", 5),
      },
    },
    X509BundlesRequest: { fields: {} },
    X509BundlesResponse: { fields: { crl: repeated("bytes", 1), bundles: map("bytes", 2) } },
    JWTSVIDRequest: { fields: { audience: repeated("string", 1), spiffeId: one("string", 2) } },
    JWTSVIDResponse: { fields: { svids: repeated("JWTSVID", 1) } },
    JWTSVID: { fields: { spiffeId: one("string", 1), svid: one("string", 2), hint: one("string", 3) } },
    JWTBundlesRequest: { fields: {} },
    JWTBundlesResponse: { fields: { bundles: map("bytes", 1) } },
    ValidateJWTSVIDRequest: { fields: { audience: one("string", 1), svid: one("string", 2) } },
    ValidateJWTSVIDResponse: { fields: { spiffeId: one("string", 1), claims: one("google.protobuf.Struct", 2) } },
  },
});

/** A message type: its protobuf name, and how it is encoded and decoded. */
export interface MessageCodec<T> {
  readonly name: string;
  encode(message: T): Buffer;
  /** Throws ERR_ARGUMENT_INVALID for bytes that are not such a message. */
  decode(bytes: Uint8Array): T;
}

function codec<T>(
  name: string,
  fromWire: (plain: Record<string, unknown>) => T,
  toWire = (m: T): object => m as object,
): MessageCodec<T> {
  const type = ROOT.lookupType(name);
  return {
    name,
    encode: (message) => Buffer.from(type.encode(type.fromObject(toWire(message))).finish()),
    decode(bytes) {
      let decoded: protobuf.Message;
      try {
        decoded = type.decode(bytes);
      } catch (cause) {
        throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `not a ${name} message: ${(cause as Error).message}`, {
          cause,
        });
      }
      // Defaults for absent fields (proto3: absent is empty), bytes as Uint8Array.
      // oneofs: a Struct value names the member it holds (`kind`).
      return fromWire(type.toObject(decoded, { defaults: true, arrays: true, objects: true, oneofs: true }));
    },
  };
}

const asIs = <T>(plain: Record<string, unknown>): T => plain as T;

export const X509SvidRequestCodec = codec<X509SvidRequest>("X509SVIDRequest", () => ({}));
export const X509SvidResponseCodec = codec<X509SvidResponse>("X509SVIDResponse", asIs);
export const X509BundlesRequestCodec = codec<X509BundlesRequest>("X509BundlesRequest", () => ({}));
export const X509BundlesResponseCodec = codec<X509BundlesResponse>("X509BundlesResponse", asIs);
export const JwtSvidRequestCodec = codec<JwtSvidRequest>("JWTSVIDRequest", asIs);
export const JwtSvidResponseCodec = codec<JwtSvidResponse>("JWTSVIDResponse", asIs);
export const JwtBundlesRequestCodec = codec<JwtBundlesRequest>("JWTBundlesRequest", () => ({}));
export const JwtBundlesResponseCodec = codec<JwtBundlesResponse>("JWTBundlesResponse", asIs);
export const ValidateJwtSvidRequestCodec = codec<ValidateJwtSvidRequest>("ValidateJWTSVIDRequest", asIs);
export const ValidateJwtSvidResponseCodec = codec<ValidateJwtSvidResponse>(
  "ValidateJWTSVIDResponse",
  (plain) => ({ spiffeId: plain["spiffeId"] as string, claims: structToJson(plain["claims"]) }),
  (m) => ({ spiffeId: m.spiffeId, claims: jsonToStruct(m.claims) }),
);

// google.protobuf.Struct <-> JSON, as the protobuf JSON mapping defines it.

interface StructValue {
  kind?: "nullValue" | "numberValue" | "stringValue" | "boolValue" | "structValue" | "listValue";
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: { fields?: Record<string, StructValue> };
  listValue?: { values?: StructValue[] };
}

function jsonToStruct(object: Claims): { fields: Record<string, StructValue> } {
  const fields: Record<string, StructValue> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = jsonToValue(value);
  return { fields };
}

function jsonToValue(value: JsonValue): StructValue {
  if (value === null) return { nullValue: 0 };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
  return { structValue: jsonToStruct(value) };
}

function structToJson(struct: unknown): Claims {
  const out: Claims = {};
  const fields = (struct as { fields?: Record<string, StructValue> } | null)?.fields ?? {};
  for (const [key, value] of Object.entries(fields)) out[key] = valueToJson(value);
  return out;
}

function valueToJson(value: StructValue): JsonValue {
  switch (value.kind) {
    case "structValue":
      return structToJson(value.structValue);
    case "listValue":
      return (value.listValue?.values ?? []).map(valueToJson);
    case "stringValue":
      return value.stringValue ?? "";
    case "numberValue":
      return value.numberValue ?? 0;
    case "boolValue":
      return value.boolValue ?? false;
    default:
      return null; // nullValue, or a value with no member set
  }
}
