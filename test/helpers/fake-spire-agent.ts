/**
 * A second SPIFFE Workload API server for tests, standing in for SPIRE's agent: built from the
 * OFFICIAL workload.proto (../shared/conformance/spiffe-workload-api/, loaded by
 * @grpc/proto-loader) and nothing of this project's src/ (not its service description, not its
 * authority, not its certificate code), so a client that works against both this and our own
 * endpoint is shown not to depend on our authority.
 *
 * It has its own CA, made here as SPIRE's server makes one by default: a self-signed root
 * (`C=US, O=SPIFFE`, the trust domain's ID as URI SAN) that signs the X.509-SVIDs directly, so a
 * chain is the leaf alone (with `intermediate: true`, a server CA between them, as under an
 * UpstreamAuthority, and the chain is leaf then that CA). Leaves are SPIRE's shape: EC P-256,
 * `C=US, O=SPIRE`, the SPIFFE ID as the only URI SAN, basicConstraints cA=FALSE and keyUsage
 * digitalSignature|keyEncipherment|keyAgreement (both critical), EKU serverAuth and clientAuth,
 * backdated 10 s. JWT-SVIDs are ES256 with a random `kid`, claims sub, aud, exp, iat.
 *
 * What it does as SPIRE's agent does: the `workload.spiffe.io: true` header is required
 * (INVALID_ARGUMENT otherwise); a caller with no identity is refused PERMISSION_DENIED ("no
 * identity issued"); each identity's SVID is over its own key; streams are pushed to when SVIDs
 * rotate (`rotate()`), when the JWT key rotates (`rotateJwtKey()`, the previous key kept in the
 * bundle as SPIRE keeps it until what it signed expires) and when identities change
 * (`setIdentities()`); bundle maps are keyed by trust domain ID (`spiffe://spire.example`), JWT
 * bundles are JWK sets (JSON bytes), X.509 bundles DER certificates concatenated.
 *
 * What it does NOT do: attestation. Every caller, whoever it is, gets every configured identity;
 * there are no registration entries or selectors. Nor does it rotate by itself unless asked
 * (`autoRotate`): tests call rotate() at the moment they choose. When the identities are taken
 * away (`setIdentities([])`), open FetchX509SVID streams get an empty update and stay open (as
 * our endpoint and the issue describe SPIRE after an entry's deletion); with
 * `whenIdentitiesRemoved: "permission-denied"` they end with PERMISSION_DENIED instead, as some
 * SPIRE versions do, so a client can be tested against both.
 */
import "reflect-metadata";
import { createPrivateKey, KeyObject, randomBytes, webcrypto } from "node:crypto";
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as x509 from "@peculiar/x509";
import { exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, decodeProtectedHeader, type JWK } from "jose";

x509.cryptoProvider.set(webcrypto as never);
const subtle = webcrypto.subtle;
const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const OFFICIAL_WORKLOAD_PROTO = join(
  ROOT,
  "..",
  "shared",
  "conformance",
  "spiffe-workload-api",
  "workload.proto",
);

const NO_IDENTITY = "no identity issued";
const BACKDATE_MS = 10_000;

export interface FakeSpireIdentity {
  spiffeId: string;
  hint?: string;
}

export interface FakeFederatedTrustDomain {
  trustDomain: string;
  /** Its X.509 authorities as PEM; default: a root CA made here for it. */
  pem?: string;
  /** Its JWT authorities as a JWK set; default: one ES256 key made here for it. */
  jwks?: { keys: JWK[] };
}

export interface FakeSpireAgentOptions {
  socketPath: string;
  /** Default `spire.example`. */
  trustDomain?: string;
  identities: FakeSpireIdentity[];
  federated?: FakeFederatedTrustDomain[];
  /** X.509-SVID lifetime (default 3600). */
  svidTtlSeconds?: number;
  /** JWT-SVID lifetime (default 300, SPIRE's default). */
  jwtSvidTtlSeconds?: number;
  /** A server CA between the root and the leaves (the chain sent is then leaf, CA). Default false. */
  intermediate?: boolean;
  /** Rotate every SVID at half its lifetime, as SPIRE's agent does. Default false. */
  autoRotate?: boolean;
  /** What open FetchX509SVID streams get when the identities are taken away. Default "empty-update". */
  whenIdentitiesRemoved?: "empty-update" | "permission-denied";
}

export interface FakeSpireAgent {
  readonly socketPath: string;
  readonly trustDomain: string;
  /** New SVIDs over new keys for every identity, pushed on open FetchX509SVID streams. */
  rotate(): Promise<void>;
  /** A new JWT signing key (the old one stays in the JWT bundle), pushed on FetchJWTBundles streams. */
  rotateJwtKey(): Promise<void>;
  /** Replaces the identities (kept ones keep their SVID) and pushes; `[]` takes them all away. */
  setIdentities(identities: FakeSpireIdentity[]): Promise<void>;
  /** The X.509 bundle of `trustDomain` (default: its own) as PEM. */
  bundlePem(trustDomain?: string): string;
  /** The JWT bundle of `trustDomain` (default: its own) as a JWK set. */
  jwks(trustDomain?: string): { keys: JWK[] };
  /** The SVIDs held now (leaf PEM first, then the chain's CA if any; PKCS#8 PEM key). */
  svids(): Array<{ spiffeId: string; hint: string; chainPem: string; keyPem: string }>;
  /** Ends every stream, stops the server and removes the socket. */
  close(): Promise<void>;
}

type Ca = { cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair };
type Svid = { spiffeId: string; hint: string; chain: x509.X509Certificate[]; key: KeyObject; notAfter: Date };
type JwtKey = { kid: string; privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"]; publicJwk: JWK };
type TrustDomainBundle = { x509: x509.X509Certificate[]; jwt: JWK[] };
/**
 * google.protobuf.Struct as protobufjs holds it: its bundled well-known types name their fields
 * in camelCase (stringValue), even under proto-loader's keepCase, and a snake_case field is
 * silently not encoded.
 */
type Struct = { fields: Record<string, StructValue> };
type StructValue =
  | { nullValue: 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: Struct }
  | { listValue: { values: StructValue[] } };

function workloadApiService(): grpc.ServiceDefinition {
  const pkg = protoLoader.loadSync(OFFICIAL_WORKLOAD_PROTO, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return pkg["SpiffeWorkloadAPI"] as grpc.ServiceDefinition;
}

function trustDomainOf(spiffeId: string): string {
  const m = /^spiffe:\/\/([a-z0-9._-]+)(\/[^?#]*)?$/.exec(spiffeId);
  if (m === null || m[2] === undefined || m[2] === "/")
    throw new Error(`not a SPIFFE ID with a path: ${JSON.stringify(spiffeId)}`);
  return m[1]!;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01; // positive
  return b.toString("hex");
}

async function makeRoot(trustDomain: string): Promise<Ca> {
  const keys = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "C=US, O=SPIFFE",
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + 24 * 3600_000),
    signingAlgorithm: EC_P256,
    keys: keys as never,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${trustDomain}` }], false),
    ],
  });
  return { cert, keys };
}

async function makeIntermediate(trustDomain: string, root: Ca): Promise<Ca> {
  const keys = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: "C=US, O=SPIRE, CN=spire-server CA",
    issuer: root.cert.subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + 12 * 3600_000),
    signingAlgorithm: EC_P256,
    publicKey: keys.publicKey as never,
    signingKey: root.keys.privateKey as never,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert),
      new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${trustDomain}` }], false),
    ],
  });
  return { cert, keys };
}

async function makeJwtKey(): Promise<JwtKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const kid = randomBytes(24).toString("base64url");
  const publicJwk = { ...(await exportJWK(publicKey)), kid, use: "jwt-svid" };
  return { kid, privateKey, publicJwk };
}

function toStructValue(v: unknown): StructValue {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toStructValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

function toStruct(o: Record<string, unknown>): Struct {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toStructValue(v)])) };
}

/** The certificates of a DER sequence as the Workload API sends them (concatenated), each its own DER. */
export function splitDerCertificates(bytes: Uint8Array): Buffer[] {
  const data = Buffer.from(bytes);
  const out: Buffer[] = [];
  let i = 0;
  while (i < data.length) {
    if (data[i] !== 0x30) throw new Error(`no DER SEQUENCE at byte ${i}`);
    const first = data[i + 1]!;
    let length = first;
    let head = 2;
    if (first >= 0x80) {
      length = 0;
      for (let j = 0; j < (first & 0x7f); j++) length = length * 256 + data[i + 2 + j]!;
      head = 2 + (first & 0x7f);
    }
    out.push(data.subarray(i, i + head + length));
    i += head + length;
  }
  return out;
}

function derOf(certs: readonly x509.X509Certificate[]): Buffer {
  return Buffer.concat(certs.map((c) => Buffer.from(c.rawData)));
}

function pemOf(certs: readonly x509.X509Certificate[]): string {
  return certs.map((c) => `${c.toString("pem")}\n`).join("");
}

class StatusError extends Error {
  constructor(
    readonly code: grpc.status,
    details: string,
  ) {
    super(details);
  }
}

function statusOf(code: grpc.status, details: string): Partial<grpc.StatusObject> {
  return { code, details, metadata: new grpc.Metadata() };
}

function hasHeader(md: grpc.Metadata): boolean {
  const values = md.get("workload.spiffe.io");
  return values.length === 1 && values[0] === "true";
}

/** Starts the fake agent on `options.socketPath` (which must not exist). */
export async function startFakeSpireAgent(options: FakeSpireAgentOptions): Promise<FakeSpireAgent> {
  const trustDomain = options.trustDomain ?? "spire.example";
  const svidTtlMs = (options.svidTtlSeconds ?? 3600) * 1000;
  const jwtTtlSeconds = options.jwtSvidTtlSeconds ?? 300;
  const removedMode = options.whenIdentitiesRemoved ?? "empty-update";
  const root = await makeRoot(trustDomain);
  const signer = options.intermediate === true ? await makeIntermediate(trustDomain, root) : root;
  const jwtKeys: JwtKey[] = [await makeJwtKey()];

  const federated = new Map<string, TrustDomainBundle>();
  for (const f of options.federated ?? []) {
    if (f.trustDomain === trustDomain) throw new Error(`${f.trustDomain} is the agent's own trust domain`);
    const x509s =
      f.pem !== undefined
        ? f.pem
            .split(/(?=-----BEGIN CERTIFICATE-----)/)
            .filter((b) => b.includes("BEGIN CERTIFICATE"))
            .map((b) => new x509.X509Certificate(b))
        : [(await makeRoot(f.trustDomain)).cert];
    const jwt = f.jwks?.keys ?? [(await makeJwtKey()).publicJwk];
    federated.set(f.trustDomain, { x509: x509s, jwt });
  }

  async function issue(identity: FakeSpireIdentity): Promise<Svid> {
    if (trustDomainOf(identity.spiffeId) !== trustDomain)
      throw new Error(`${identity.spiffeId} is not in the agent's trust domain ${trustDomain}`);
    const keys = (await subtle.generateKey(EC_P256, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    const now = Date.now();
    const notAfter = new Date(Math.min(now + svidTtlMs, signer.cert.notAfter.getTime()));
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: "C=US, O=SPIRE",
      issuer: signer.cert.subject,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter,
      signingAlgorithm: EC_P256,
      publicKey: keys.publicKey as never,
      signingKey: signer.keys.privateKey as never,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: identity.spiffeId }], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
        await x509.AuthorityKeyIdentifierExtension.create(signer.cert),
      ],
    });
    const pkcs8 = Buffer.from(await subtle.exportKey("pkcs8", keys.privateKey));
    return {
      spiffeId: identity.spiffeId,
      hint: identity.hint ?? "",
      chain: signer === root ? [leaf] : [leaf, signer.cert],
      key: createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }),
      notAfter,
    };
  }

  let svids: Svid[] = [];
  for (const identity of options.identities) svids.push(await issue(identity));

  const bundles = (): Map<string, TrustDomainBundle> =>
    new Map([[trustDomain, { x509: [root.cert], jwt: jwtKeys.map((k) => k.publicJwk) }], ...federated]);

  const x509SvidResponse = () => ({
    svids: svids.map((s) => ({
      spiffe_id: s.spiffeId,
      x509_svid: derOf(s.chain),
      x509_svid_key: s.key.export({ type: "pkcs8", format: "der" }),
      bundle: derOf([root.cert]),
      hint: s.hint,
    })),
    crl: [],
    federated_bundles: Object.fromEntries([...federated].map(([td, b]) => [`spiffe://${td}`, derOf(b.x509)])),
  });
  const x509BundlesResponse = () => ({
    crl: [],
    bundles: Object.fromEntries([...bundles()].map(([td, b]) => [`spiffe://${td}`, derOf(b.x509)])),
  });
  const jwtBundlesResponse = () => ({
    bundles: Object.fromEntries(
      [...bundles()].map(([td, b]) => [`spiffe://${td}`, Buffer.from(JSON.stringify({ keys: b.jwt }), "utf8")]),
    ),
  });

  type Kind = "x509svid" | "x509bundles" | "jwtbundles";
  const streams = new Map<Kind, Set<grpc.ServerWritableStream<unknown, unknown>>>([
    ["x509svid", new Set()],
    ["x509bundles", new Set()],
    ["jwtbundles", new Set()],
  ]);
  const compose: Record<Kind, () => object> = {
    x509svid: x509SvidResponse,
    x509bundles: x509BundlesResponse,
    jwtbundles: jwtBundlesResponse,
  };

  function openStream(kind: Kind, call: grpc.ServerWritableStream<unknown, unknown>): void {
    if (!hasHeader(call.metadata)) {
      call.emit("error", statusOf(grpc.status.INVALID_ARGUMENT, "security header missing from request"));
      return;
    }
    if (svids.length === 0) {
      call.emit("error", statusOf(grpc.status.PERMISSION_DENIED, NO_IDENTITY));
      return;
    }
    const set = streams.get(kind)!;
    set.add(call);
    const drop = (): boolean => set.delete(call);
    call.on("cancelled", drop);
    call.on("close", drop);
    call.on("error", drop);
    call.write(compose[kind]());
  }

  function push(kind: Kind): void {
    for (const call of streams.get(kind)!) if (!call.cancelled) call.write(compose[kind]());
  }

  function unary<Req>(
    call: grpc.ServerUnaryCall<Req, unknown>,
    done: grpc.sendUnaryData<unknown>,
    answer: (req: Req) => Promise<object>,
  ): void {
    if (!hasHeader(call.metadata)) {
      done(statusOf(grpc.status.INVALID_ARGUMENT, "security header missing from request"));
      return;
    }
    answer(call.request).then(
      (res) => done(null, res),
      (e: unknown) =>
        done(
          e instanceof StatusError
            ? statusOf(e.code, e.message)
            : statusOf(grpc.status.UNAVAILABLE, e instanceof Error ? e.message : String(e)),
        ),
    );
  }

  async function fetchJwtSvid(req: { audience: string[]; spiffe_id: string }): Promise<object> {
    const audience = req.audience.filter((a) => a !== "");
    if (audience.length === 0) throw new StatusError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    if (req.spiffe_id !== "") {
      try {
        trustDomainOf(req.spiffe_id);
      } catch {
        throw new StatusError(grpc.status.INVALID_ARGUMENT, `invalid requested SPIFFE ID: ${req.spiffe_id}`);
      }
    }
    const chosen = svids.filter((s) => req.spiffe_id === "" || s.spiffeId === req.spiffe_id);
    if (chosen.length === 0) throw new StatusError(grpc.status.PERMISSION_DENIED, NO_IDENTITY);
    const key = jwtKeys[jwtKeys.length - 1]!;
    const out = [];
    for (const s of chosen) {
      const now = Math.floor(Date.now() / 1000);
      const svid = await new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: key.kid, typ: "JWT" })
        .setSubject(s.spiffeId)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + jwtTtlSeconds)
        .sign(key.privateKey);
      out.push({ spiffe_id: s.spiffeId, svid, hint: s.hint });
    }
    return { svids: out };
  }

  async function validateJwtSvid(req: { audience: string; svid: string }): Promise<object> {
    if (req.audience === "") throw new StatusError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    if (req.svid === "") throw new StatusError(grpc.status.INVALID_ARGUMENT, "svid must be specified");
    try {
      const { kid, alg } = decodeProtectedHeader(req.svid);
      const sub = JSON.parse(Buffer.from(req.svid.split(".")[1] ?? "", "base64url").toString("utf8")) as {
        sub?: unknown;
      };
      if (typeof sub.sub !== "string") throw new Error("token has no subject");
      const bundle = bundles().get(trustDomainOf(sub.sub));
      if (bundle === undefined) throw new Error(`no keys found for trust domain ${trustDomainOf(sub.sub)}`);
      const jwk = bundle.jwt.find((k) => k.kid === kid);
      if (jwk === undefined) throw new Error(`no key found with ID ${String(kid)}`);
      const { payload } = await jwtVerify(req.svid, await importJWK(jwk, alg ?? "ES256"), {
        audience: req.audience,
        algorithms: ["ES256", "ES384", "RS256", "PS256"],
        requiredClaims: ["exp", "sub", "aud"],
      });
      return { spiffe_id: payload.sub, claims: toStruct(payload as Record<string, unknown>) };
    } catch (e) {
      throw new StatusError(grpc.status.INVALID_ARGUMENT, e instanceof Error ? e.message : String(e));
    }
  }

  const server = new grpc.Server();
  server.addService(workloadApiService(), {
    FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => openStream("x509svid", call),
    FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => openStream("x509bundles", call),
    FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => openStream("jwtbundles", call),
    FetchJWTSVID: (
      call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>,
      done: grpc.sendUnaryData<unknown>,
    ) => unary(call, done, fetchJwtSvid),
    ValidateJWTSVID: (
      call: grpc.ServerUnaryCall<{ audience: string; svid: string }, unknown>,
      done: grpc.sendUnaryData<unknown>,
    ) => unary(call, done, validateJwtSvid),
  });
  await new Promise<void>((ok, fail) =>
    server.bindAsync(`unix://${options.socketPath}`, grpc.ServerCredentials.createInsecure(), (e) =>
      e ? fail(e) : ok(),
    ),
  );

  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = (): void => {
    if (options.autoRotate !== true || closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void agent.rotate(), svidTtlMs / 2);
    timer.unref();
  };

  const agent: FakeSpireAgent = {
    socketPath: options.socketPath,
    trustDomain,
    async rotate() {
      const next: Svid[] = [];
      for (const s of svids) next.push(await issue({ spiffeId: s.spiffeId, hint: s.hint }));
      svids = next;
      push("x509svid");
      schedule();
    },
    async rotateJwtKey() {
      jwtKeys.push(await makeJwtKey());
      push("jwtbundles");
    },
    async setIdentities(identities) {
      const next: Svid[] = [];
      for (const identity of identities) {
        const kept = svids.find((s) => s.spiffeId === identity.spiffeId);
        next.push(kept !== undefined ? { ...kept, hint: identity.hint ?? "" } : await issue(identity));
      }
      svids = next;
      if (svids.length === 0 && removedMode === "permission-denied") {
        for (const call of streams.get("x509svid")!)
          call.emit("error", statusOf(grpc.status.PERMISSION_DENIED, NO_IDENTITY));
        streams.get("x509svid")!.clear();
        return;
      }
      push("x509svid");
    },
    bundlePem(td = trustDomain) {
      const b = bundles().get(td);
      if (b === undefined) throw new Error(`no bundle for ${td}`);
      return pemOf(b.x509);
    },
    jwks(td = trustDomain) {
      const b = bundles().get(td);
      if (b === undefined) throw new Error(`no bundle for ${td}`);
      return { keys: b.jwt.map((k) => ({ ...k })) };
    },
    svids() {
      return svids.map((s) => ({
        spiffeId: s.spiffeId,
        hint: s.hint,
        chainPem: pemOf(s.chain),
        keyPem: s.key.export({ type: "pkcs8", format: "pem" }) as string,
      }));
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      for (const set of streams.values()) {
        for (const call of set) call.end();
        set.clear();
      }
      server.forceShutdown();
      rmSync(options.socketPath, { force: true });
    },
  };
  schedule();
  return agent;
}
