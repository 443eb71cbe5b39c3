/**
 * A Workload API client: the calls a workload makes on an endpoint (SPIRE's agent or ours), at
 * the address SPIFFE_ENDPOINT_SOCKET's syntax gives (`unix:///abs/path`, or `tcp://ip:port`),
 * every request with the `workload.spiffe.io` header. Streams are watched with retries as
 * go-spiffe's client does them: an UNAVAILABLE or ended stream is opened again after a backoff
 * (an agent restarting), INVALID_ARGUMENT is never retried (the standard says so), and every
 * failure is reported to the watcher.
 */
import { isIPv6 } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { AztpError, ErrorCodes } from "../errors.js";
import type {
  JwtBundlesResponse,
  JwtSvid,
  ValidateJwtSvidResponse,
  X509BundlesResponse,
  X509SvidResponse,
} from "./messages.js";
import { parseWorkloadApiAddress } from "./address.js";
import { WORKLOAD_API_HEADER, WORKLOAD_API_SERVICE, workloadApiService } from "./service.js";

const Client = grpc.makeGenericClientConstructor(workloadApiService, WORKLOAD_API_SERVICE);

type StreamMethod = "FetchX509SVID" | "FetchX509Bundles" | "FetchJWTBundles";
type StreamResponse = {
  FetchX509SVID: X509SvidResponse;
  FetchX509Bundles: X509BundlesResponse;
  FetchJWTBundles: JwtBundlesResponse;
};

export interface WatchHandlers<T> {
  update(message: T): void;
  /** A failure of the stream; `final` when it will not be opened again. */
  error(error: AztpError, final: boolean): void;
}

/** Backoff between attempts to open a stream again: doubling from 100 ms, at most 5 s. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 5_000;

/** The gRPC target for an endpoint address (address.ts reads it). */
export function workloadApiTarget(address: string): string {
  const a = parseWorkloadApiAddress(address);
  return a.transport === "unix" ? `unix://${a.path}` : isIPv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export class WorkloadApiClient {
  readonly address: string;
  readonly #client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  #closed = false;
  readonly #cancels = new Set<() => void>();

  constructor(address: string) {
    this.address = address;
    this.#client = new Client(workloadApiTarget(address), grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, (...args: unknown[]) => unknown>;
  }

  /** FetchJWTSVID: JWT-SVIDs for `audience`, for `spiffeId` alone when given. */
  fetchJwtSvids(audience: readonly string[], spiffeId = ""): Promise<JwtSvid[]> {
    return this.#unary<{ svids: JwtSvid[] }>("FetchJWTSVID", { audience: [...audience], spiffeId }).then(
      (r) => r.svids,
    );
  }

  /** ValidateJWTSVID: the endpoint's verdict on `token` for `audience`. */
  validateJwtSvid(token: string, audience: string): Promise<ValidateJwtSvidResponse> {
    return this.#unary<ValidateJwtSvidResponse>("ValidateJWTSVID", { audience, svid: token });
  }

  /**
   * Watches a stream: `handlers.update` for each message, opened again after failures (not after
   * INVALID_ARGUMENT) until the returned function or close() stops it.
   */
  watch<M extends StreamMethod>(method: M, handlers: WatchHandlers<StreamResponse[M]>): () => void {
    let call: grpc.ClientReadableStream<StreamResponse[M]> | undefined;
    let stopped = false;
    let delay = RETRY_FIRST_MS;
    let timer: NodeJS.Timeout | undefined;
    const open = (): void => {
      if (stopped || this.#closed) return;
      const c = (
        this.#client[method] as (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<StreamResponse[M]>
      )({}, header());
      call = c;
      c.on("data", (message: StreamResponse[M]) => {
        delay = RETRY_FIRST_MS;
        handlers.update(message);
      });
      const again = (error: AztpError, final: boolean): void => {
        if (call !== c || stopped) return;
        call = undefined;
        handlers.error(error, final);
        if (final) return;
        timer = setTimeout(open, delay);
        timer.unref();
        delay = Math.min(delay * 2, RETRY_MAX_MS);
      };
      c.on("error", (e: grpc.ServiceError) => {
        if (e.code === grpc.status.CANCELLED && stopped) return;
        again(fromStatus(method, e), e.code === grpc.status.INVALID_ARGUMENT);
      });
      c.on("end", () => again(unavailable(`${method}: the endpoint ended the stream`), false));
    };
    const stop = (): void => {
      stopped = true;
      clearTimeout(timer);
      call?.cancel();
      this.#cancels.delete(stop);
    };
    this.#cancels.add(stop);
    open();
    return stop;
  }

  close(): void {
    this.#closed = true;
    for (const stop of [...this.#cancels]) stop();
    this.#client.close();
  }

  #unary<T>(method: "FetchJWTSVID" | "ValidateJWTSVID", request: object): Promise<T> {
    return new Promise((resolve, reject) => {
      (
        this.#client[method] as (
          req: object,
          md: grpc.Metadata,
          opts: grpc.CallOptions,
          cb: (e: grpc.ServiceError | null, r: T) => void,
        ) => void
      )(request, header(), { deadline: Date.now() + 30_000 }, (e, r) =>
        e ? reject(fromStatus(method, e)) : resolve(r),
      );
    });
  }
}

function header(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, "true");
  return md;
}

/** What an endpoint's status means to this library: its own code, the endpoint's words kept. */
function fromStatus(method: string, e: grpc.ServiceError): AztpError {
  const said = `${method}: ${grpc.status[e.code] ?? e.code}: ${e.details}`;
  switch (e.code) {
    case grpc.status.PERMISSION_DENIED:
      return new AztpError(ErrorCodes.WORKLOAD_API_PERMISSION_DENIED, said);
    case grpc.status.INVALID_ARGUMENT:
      return new AztpError(ErrorCodes.WORKLOAD_API_REQUEST_INVALID, said);
    default:
      return unavailable(said);
  }
}

function unavailable(message: string): AztpError {
  return new AztpError(ErrorCodes.WORKLOAD_API_ENDPOINT_UNAVAILABLE, message);
}
