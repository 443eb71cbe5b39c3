/**
 * A Workload API client we did not describe: built by @grpc/proto-loader from the official
 * workload.proto in ../shared/conformance (go-spiffe's), with the `workload.spiffe.io` header,
 * its unary calls as promises and its streams as message lists one can wait on.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Certificate } from "../../src/spiffe/certificate.js";
import { splitDerCertificates } from "../../src/workload-api/svids.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REFERENCE_PROTO = join(ROOT, "..", "shared", "conformance", "spiffe-workload-api", "workload.proto");

const definition = protoLoader.loadSync(REFERENCE_PROTO, {
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
});
const Client = grpc.makeGenericClientConstructor(
  definition["SpiffeWorkloadAPI"] as protoLoader.ServiceDefinition,
  "SpiffeWorkloadAPI",
);

export type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
export type WorkloadClient = grpc.Client & Record<string, (...args: unknown[]) => Any>;

export function workloadHeader(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("workload.spiffe.io", "true");
  return md;
}

export function connectWorkloadApi(socketPath: string): WorkloadClient {
  return new Client(`unix://${socketPath}`, grpc.credentials.createInsecure()) as unknown as WorkloadClient;
}

/** A unary call's answer, or `{ error: <status name>, details }`. */
export function unary(client: WorkloadClient, method: string, req: Any, md = workloadHeader()): Promise<Any> {
  return new Promise((resolve) => {
    client[method]!(req, md, (err: grpc.ServiceError | null, res: Any) =>
      resolve(err ? { error: grpc.status[err.code], details: err.details } : res),
    );
  });
}

/** A server stream's messages as they come (with when each came), and its end. */
export class WorkloadStream {
  readonly messages: Any[] = [];
  /** performance.now() when each message came. */
  readonly times: number[] = [];
  error: { code: string; details: string } | undefined;
  readonly #call: grpc.ClientReadableStream<Any>;
  #waiters: Array<() => void> = [];

  constructor(client: WorkloadClient, method: string, md = workloadHeader()) {
    this.#call = client[method]!({}, md) as unknown as grpc.ClientReadableStream<Any>;
    this.#call.on("data", (m: Any) => {
      this.messages.push(m);
      this.times.push(performance.now());
      this.#wake();
    });
    this.#call.on("error", (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) this.error = { code: grpc.status[e.code], details: e.details };
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Waits until `n` messages have come (or an error), at most `ms`. */
  async next(n: number, ms = 5000): Promise<Any> {
    const deadline = Date.now() + ms;
    while (this.messages.length < n && this.error === undefined) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`message ${n} did not come within ${ms} ms (have ${this.messages.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    if (this.messages.length < n) throw new Error(`stream ended: ${JSON.stringify(this.error)}`);
    return this.messages[n - 1]!;
  }

  cancel(): void {
    this.#call.cancel();
  }
}

/** Concatenated DER certificates (an SVID chain, a bundle) split into certificates (svids.ts's reader). */
export function splitDer(data: Uint8Array): Certificate[] {
  return splitDerCertificates(data, "a message");
}
