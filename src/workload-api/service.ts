/**
 * The SPIFFE Workload API as a gRPC service (`SpiffeWorkloadAPI`, no protobuf package, as the
 * standard names it): each method's path, whether it streams, and its messages' codecs
 * (messages.ts), in the shape `@grpc/grpc-js` serves and calls. Described here, from the
 * standard; the tests hold it to go-spiffe's `workload.proto`.
 */
import type { Metadata, MethodDefinition } from "@grpc/grpc-js";
import {
  JwtBundlesRequestCodec,
  JwtBundlesResponseCodec,
  JwtSvidRequestCodec,
  JwtSvidResponseCodec,
  ValidateJwtSvidRequestCodec,
  ValidateJwtSvidResponseCodec,
  X509BundlesRequestCodec,
  X509BundlesResponseCodec,
  X509SvidRequestCodec,
  X509SvidResponseCodec,
  type MessageCodec,
} from "./messages.js";

export const WORKLOAD_API_SERVICE = "SpiffeWorkloadAPI";

/**
 * The metadata every Workload API request carries. It tells the endpoint the request comes from
 * a workload's client library, not from a browser or a proxy that was tricked into it: a request
 * without it is refused with INVALID_ARGUMENT, and clients do not retry that.
 */
export const WORKLOAD_API_HEADER = "workload.spiffe.io";

/** Whether a request carries `workload.spiffe.io: true`. */
export function hasWorkloadApiHeader(metadata: Metadata): boolean {
  return metadata.get(WORKLOAD_API_HEADER).some((v) => v === "true");
}

function method<Req, Res>(
  name: string,
  request: MessageCodec<Req>,
  response: MessageCodec<Res>,
  responseStream: boolean,
): MethodDefinition<Req, Res> {
  return {
    path: `/${WORKLOAD_API_SERVICE}/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (m) => request.encode(m),
    requestDeserialize: (b) => request.decode(b),
    responseSerialize: (m) => response.encode(m),
    responseDeserialize: (b) => response.decode(b),
  };
}

/** The service definition: `server.addService(workloadApiService, handlers)`, `makeGenericClientConstructor(workloadApiService, ...)`. */
export const workloadApiService = {
  FetchX509SVID: method("FetchX509SVID", X509SvidRequestCodec, X509SvidResponseCodec, true),
  FetchX509Bundles: method("FetchX509Bundles", X509BundlesRequestCodec, X509BundlesResponseCodec, true),
  FetchJWTSVID: method("FetchJWTSVID", JwtSvidRequestCodec, JwtSvidResponseCodec, false),
  FetchJWTBundles: method("FetchJWTBundles", JwtBundlesRequestCodec, JwtBundlesResponseCodec, true),
  ValidateJWTSVID: method("ValidateJWTSVID", ValidateJwtSvidRequestCodec, ValidateJwtSvidResponseCodec, false),
} as const;
