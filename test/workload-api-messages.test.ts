/**
 * The Workload API's service description (src/workload-api/) against the reference:
 * go-spiffe's workload.proto, read from ../shared/conformance/spiffe-workload-api/ by
 * @grpc/proto-loader (an implementation we did not write). Same method paths and streaming;
 * messages we encode decode there to the same values, and theirs decode here; over a real Unix
 * socket, a client built from the reference calls a server built from our description.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  JwtSvidRequestCodec,
  JwtSvidResponseCodec,
  ValidateJwtSvidResponseCodec,
  X509BundlesResponseCodec,
  X509SvidResponseCodec,
  type MessageCodec,
  type ValidateJwtSvidResponse,
  type X509SvidResponse,
} from "../src/workload-api/messages.js";
import { hasWorkloadApiHeader, WORKLOAD_API_HEADER, workloadApiService } from "../src/workload-api/service.js";
import { isAztpError } from "../src/errors.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REFERENCE = join(ROOT, "..", "shared", "conformance", "spiffe-workload-api", "workload.proto");

// The reference as any Node workload would load it: field names as written in the proto.
const definition = protoLoader.loadSync(REFERENCE, { keepCase: true, longs: String, defaults: true, oneofs: true });
const reference = definition["SpiffeWorkloadAPI"] as protoLoader.ServiceDefinition;

const dir = mkdtempSync(join(tmpdir(), "aztp-workload-api-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const der = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 256));

const x509Response: X509SvidResponse = {
  svids: [
    {
      spiffeId: "spiffe://example.org/workload/production/node/api",
      x509Svid: der(700, 1),
      x509SvidKey: der(138, 2),
      bundle: der(500, 3),
      hint: "internal",
    },
    {
      spiffeId: "spiffe://example.org/other",
      x509Svid: der(10, 4),
      x509SvidKey: der(5, 5),
      bundle: der(3, 6),
      hint: "",
    },
  ],
  crl: [der(40, 7)],
  federatedBundles: { "spiffe://partner.example": der(321, 8) },
};

const validateResponse: ValidateJwtSvidResponse = {
  spiffeId: "spiffe://example.org/api",
  claims: {
    sub: "spiffe://example.org/api",
    aud: ["spiffe://example.org/tools", "x"],
    exp: 1_900_000_000,
    nested: { ok: true, none: null, list: [1.5, "two", { three: 3 }] },
  },
};

describe("the Workload API service, against go-spiffe's workload.proto", () => {
  test("the same methods: paths, and which stream", () => {
    for (const [name, ours] of Object.entries(workloadApiService)) {
      const theirs = reference[name];
      assert.ok(theirs, `the reference has ${name}`);
      assert.equal(ours.path, theirs.path);
      assert.equal(ours.requestStream, theirs.requestStream, name);
      assert.equal(ours.responseStream, theirs.responseStream, name);
    }
    // What we do not serve is the draft WIT-SVID pair, nothing else.
    assert.deepEqual(
      Object.keys(reference).filter((m) => !(m in workloadApiService)),
      ["FetchWITSVID", "FetchWITBundles"],
    );
  });

  const cases: Array<{
    method: keyof typeof workloadApiService;
    codec: MessageCodec<never>;
    value: object;
    side: "request" | "response";
  }> = [
    {
      method: "FetchX509SVID",
      codec: X509SvidResponseCodec as MessageCodec<never>,
      value: x509Response,
      side: "response",
    },
    {
      method: "FetchX509Bundles",
      codec: X509BundlesResponseCodec as MessageCodec<never>,
      value: { crl: [], bundles: { "spiffe://example.org": der(99, 9), "spiffe://b.example": der(1, 10) } },
      side: "response",
    },
    {
      method: "FetchJWTSVID",
      codec: JwtSvidRequestCodec as MessageCodec<never>,
      value: { audience: ["spiffe://example.org/tools", "https://api.example"], spiffeId: "" },
      side: "request",
    },
    {
      method: "FetchJWTSVID",
      codec: JwtSvidResponseCodec as MessageCodec<never>,
      value: { svids: [{ spiffeId: "spiffe://example.org/api", svid: "eyJ.a.b", hint: "h" }] },
      side: "response",
    },
  ];
  for (const { method, codec, value, side } of cases) {
    test(`${codec.name}: ours decodes there, theirs decodes here, to the same values`, () => {
      const theirs = reference[method] as protoLoader.MethodDefinition<object, object>;
      const decode = side === "request" ? theirs.requestDeserialize : theirs.responseDeserialize;
      const encode = side === "request" ? theirs.requestSerialize : theirs.responseSerialize;
      const there = decode(codec.encode(value as never)) as Record<string, unknown>;
      assert.deepEqual(normalise(there), normalise(snake(value)));
      assert.deepEqual(normalise(codec.decode(encode(snake(value) as object))), normalise(value));
    });
  }

  test("ValidateJWTSVIDResponse: the claims, a google.protobuf.Struct, both ways", () => {
    const theirs = reference["ValidateJWTSVID"] as protoLoader.MethodDefinition<object, object>;
    const there = theirs.responseDeserialize(ValidateJwtSvidResponseCodec.encode(validateResponse)) as {
      spiffe_id: string;
      claims: { fields: Record<string, unknown> };
    };
    assert.equal(there.spiffe_id, validateResponse.spiffeId);
    assert.deepEqual(Object.keys(there.claims.fields).sort(), ["aud", "exp", "nested", "sub"]);
    // And back through their encoder: the same JSON.
    assert.deepEqual(ValidateJwtSvidResponseCodec.decode(theirs.responseSerialize(there)), validateResponse);
  });

  test("bytes that are no message are refused with ERR_ARGUMENT_INVALID", () => {
    assert.throws(
      () => X509SvidResponseCodec.decode(Buffer.from([0x0a, 0xff, 0xff, 0xff])),
      (e) => isAztpError(e, "ERR_ARGUMENT_INVALID") && /X509SVIDResponse/.test((e as Error).message),
    );
  });

  test("over a Unix socket, a client built from the reference calls a server built from ours", async () => {
    const socket = join(dir, "workload.sock");
    const server = new grpc.Server();
    server.addService(workloadApiService, {
      FetchX509SVID(call: grpc.ServerWritableStream<object, X509SvidResponse>) {
        if (!hasWorkloadApiHeader(call.metadata)) {
          call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: "missing the workload.spiffe.io header" });
          return;
        }
        call.write(x509Response);
        call.end();
      },
      ValidateJWTSVID(
        call: grpc.ServerUnaryCall<{ audience: string; svid: string }, ValidateJwtSvidResponse>,
        done: grpc.sendUnaryData<ValidateJwtSvidResponse>,
      ) {
        assert.deepEqual(call.request, { audience: "spiffe://example.org/tools", svid: "a.b.c" });
        done(null, validateResponse);
      },
    });
    await new Promise<void>((res, rej) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())),
    );
    const Client = grpc.makeGenericClientConstructor(reference, "SpiffeWorkloadAPI");
    const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, Function>;
    try {
      const header = new grpc.Metadata();
      header.set(WORKLOAD_API_HEADER, "true");
      const received: unknown[] = [];
      await new Promise<void>((res, rej) => {
        const stream = client["FetchX509SVID"]!({}, header) as grpc.ClientReadableStream<unknown>;
        stream.on("data", (m) => received.push(m));
        stream.on("error", rej);
        stream.on("end", res);
      });
      assert.deepEqual(normalise(received), normalise([snake(x509Response)]));

      const refused = await new Promise<grpc.ServiceError>((res) => {
        const stream = client["FetchX509SVID"]!({}, new grpc.Metadata()) as grpc.ClientReadableStream<unknown>;
        stream.on("data", () => assert.fail("no message without the header"));
        stream.on("error", res);
      });
      assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);

      const validated = await new Promise<{ spiffe_id: string; claims: unknown }>((res, rej) =>
        client["ValidateJWTSVID"]!(
          { audience: "spiffe://example.org/tools", svid: "a.b.c" },
          header,
          (e: Error | null, r: never) => (e ? rej(e) : res(r)),
        ),
      );
      assert.equal(validated.spiffe_id, validateResponse.spiffeId);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});

/** Our camelCase names as the reference spells them (snake_case); map keys untouched. */
function snake(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snake);
  if (value instanceof Uint8Array || value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const name = k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/x509_svid/, "x509_svid");
    out[name] = k === "bundles" || k === "federatedBundles" ? v : snake(v);
  }
  return out;
}

/** Bytes as hex, so that Buffer and Uint8Array compare equal. */
function normalise(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString("hex");
  if (Array.isArray(value)) return value.map(normalise);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalise(v)]));
}
