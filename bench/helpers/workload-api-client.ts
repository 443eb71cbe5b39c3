/**
 * The workload of bench/workload-api.bench.ts, in its own process as a real workload is: a gRPC
 * client built by @grpc/proto-loader from the official workload.proto (nothing of src/), one
 * channel per socket.
 *
 *   fetch <endpoint socket> <plain socket> <rounds> <samples> <audience>
 *     FetchJWTSVID on the endpoint and the same call on the plain server, call for call in
 *     alternation (pairedMedianMicros), then the raw pair, per round; prints one JSON line:
 *     { endpoint: µs[], plain: µs[], rawPair: µs[] }, one median per round.
 *   watch <endpoint socket>
 *     Holds a FetchX509SVID stream and prints a JSON line per message as it arrives:
 *     { at: Date.now(), serials: [leaf serial, lower-case hex, per SVID] }. Ends when stdin does.
 */
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pairedMedianMicros } from "../harness.js";
import { BENCH_ROOT, rawPairTimer, warm } from "./mcp-http-process.js";

export const WORKLOAD_PROTO = join(BENCH_ROOT, "..", "shared", "conformance", "spiffe-workload-api", "workload.proto");

/** The official proto's service, as proto-loader describes it (field names as in the proto). */
export function workloadApiDefinition(): protoLoader.ServiceDefinition {
  const pkg = protoLoader.loadSync(WORKLOAD_PROTO, { keepCase: true, longs: String, defaults: true, oneofs: true });
  return pkg["SpiffeWorkloadAPI"] as protoLoader.ServiceDefinition;
}

type JwtSvidResponse = { svids: Array<{ spiffe_id: string; svid: string }> };
type X509SvidResponse = { svids: Array<{ spiffe_id: string; x509_svid: Buffer }> };
type WorkloadClient = grpc.Client & {
  FetchJWTSVID(
    req: { audience: string[] },
    md: grpc.Metadata,
    cb: (err: grpc.ServiceError | null, res: JwtSvidResponse) => void,
  ): void;
  FetchX509SVID(req: object, md: grpc.Metadata): grpc.ClientReadableStream<X509SvidResponse>;
};

function connect(socketPath: string): WorkloadClient {
  const Client = grpc.makeGenericClientConstructor(workloadApiDefinition(), "SpiffeWorkloadAPI");
  return new Client(`unix://${socketPath}`, grpc.credentials.createInsecure()) as unknown as WorkloadClient;
}

function header(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set("workload.spiffe.io", "true");
  return md;
}

/** One FetchJWTSVID, failing on an error or an answer without an SVID (a refusal is not a call to time). */
function fetchJwtSvid(client: WorkloadClient, audience: string): () => Promise<string> {
  return () =>
    new Promise((resolve, reject) => {
      client.FetchJWTSVID({ audience: [audience] }, header(), (err, res) => {
        if (err !== null) reject(err);
        else if (res.svids[0] === undefined) reject(new Error("FetchJWTSVID answered no SVID"));
        else resolve(res.svids[0].svid);
      });
    });
}

/** The first certificate of a DER chain (certificates concatenated, as the Workload API sends them). */
function leafOf(chain: Buffer): X509Certificate {
  if (chain[0] !== 0x30) throw new Error("not a DER certificate chain");
  const first = chain[1]!;
  let length = first;
  let head = 2;
  if (first >= 0x80) {
    length = 0;
    for (let i = 0; i < (first & 0x7f); i++) length = length * 256 + chain[2 + i]!;
    head = 2 + (first & 0x7f);
  }
  return new X509Certificate(chain.subarray(0, head + length));
}

async function fetchMode(
  endpointSocket: string,
  plainSocket: string,
  rounds: number,
  samples: number,
  audience: string,
) {
  const endpoint = connect(endpointSocket);
  const plain = connect(plainSocket);
  const callEndpoint = fetchJwtSvid(endpoint, audience);
  const callPlain = fetchJwtSvid(plain, audience);
  // gRPC's channel and the JIT take a few thousand calls to settle (as the HTTP stacks do).
  await warm(callEndpoint, 2000);
  await warm(callPlain, 2000);
  const jwt = await callEndpoint();
  const rawPairRound = rawPairTimer(jwt.lastIndexOf("."));
  const out = { endpoint: [] as number[], plain: [] as number[], rawPair: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const [p, e] = await pairedMedianMicros(callPlain, callEndpoint, samples, 20);
    out.plain.push(p);
    out.endpoint.push(e);
    out.rawPair.push(await rawPairRound());
  }
  endpoint.close();
  plain.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function watchMode(endpointSocket: string): void {
  const client = connect(endpointSocket);
  const stream = client.FetchX509SVID({}, header());
  stream.on("data", (res: X509SvidResponse) => {
    const at = Date.now();
    const serials = res.svids.map((s) => leafOf(s.x509_svid).serialNumber.toLowerCase());
    process.stdout.write(`${JSON.stringify({ at, serials })}\n`);
  });
  stream.on("error", (e: grpc.ServiceError) => {
    if (e.code === grpc.status.CANCELLED) return;
    process.stderr.write(`FetchX509SVID ended: ${grpc.status[e.code]} ${e.details}\n`);
    process.exit(1);
  });
  process.stdin.resume();
  process.stdin.on("end", () => {
    stream.cancel();
    client.close();
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === "fetch") {
    const [endpointSocket, plainSocket, rounds, samples, audience] = args;
    await fetchMode(endpointSocket!, plainSocket!, Number(rounds), Number(samples), audience!);
  } else if (mode === "watch") watchMode(args[0]!);
  else throw new Error(`unknown mode ${mode}`);
}
