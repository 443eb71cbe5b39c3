/**
 * The Workload API endpoint: gRPC over a Unix domain socket (DESIGN §15), serving the SVIDs and
 * bundles of an authority to any SPIFFE workload (go-spiffe, py-spiffe, Envoy, spiffe-helper).
 *
 * Who calls is the kernel's word, never the request's: the endpoint accepts each connection
 * itself, reads the peer's credentials from the socket (`attest`, peer-credentials.ts by
 * default) before a byte of it is read, and only then hands the connection to gRPC
 * (`createConnectionInjector`). Each call finds its connection's facts through a token put in
 * place of the socket's remote address, which for a Unix socket is empty and which the peer
 * cannot set. A caller is the identities of the registration entries whose selectors all match
 * it (selectors.ts); none is PERMISSION_DENIED.
 *
 * Streams are pushed to, not polled by clients: a loop looks every `refreshMs` at the entries,
 * the revocations and the bundles, renews SVIDs at half-life (entry-svids.ts), and sends each
 * stream a new message when what it would say has changed. A stream whose caller has lost every
 * identity (its entry deleted, its identity revoked) gets an empty update, as SPIRE's agent
 * sends, and stays open: a new entry or a reissued identity comes on it.
 */
import { createHash } from "node:crypto";
import { chmod, lstat, unlink } from "node:fs/promises";
import * as net from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Authority } from "../authority/authority-api.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { BundleSet, TrustBundle } from "../spiffe/bundle.js";
import { validateJwtSvid } from "../spiffe/jwtsvid.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { JsonValue } from "../json/value.js";
import { EntrySvids, type EntryLike, type EntrySvid } from "./entry-svids.js";
import type {
  JwtBundlesRequest,
  JwtBundlesResponse,
  JwtSvidRequest,
  JwtSvidResponse,
  ValidateJwtSvidRequest,
  ValidateJwtSvidResponse,
  X509BundlesRequest,
  X509BundlesResponse,
  X509SvidRequest,
  X509SvidResponse,
} from "./messages.js";
import { peerFacts } from "./peer-credentials.js";
import { matchesAll, parseSelector, type PeerFacts, type Selector } from "./selectors.js";
import { hasWorkloadApiHeader, workloadApiService } from "./service.js";
import { bundleMap, x509SvidMessage } from "./svids.js";

/** Where the endpoint reads registration entries from (the entry stores have this). */
export interface EntrySource {
  list(): Promise<readonly EntryLike[]>;
}

export interface WorkloadApiEndpointOptions {
  /** The socket's path (absolute); a stale socket left there is replaced, anything else refused. */
  socketPath: string;
  authority: Authority;
  entries: EntrySource;
  /**
   * What the kernel says of a connection's peer (default: peer-credentials.ts, SO_PEERCRED and
   * the executable). Another attestor is for another kind of socket, never to take a caller's word.
   */
  attest?: ((socket: net.Socket) => PeerFacts) | undefined;
  /**
   * The socket file's mode. Default 0o666: any local user may connect, and attestation decides
   * what each gets (SPIRE's agent socket is as open). Narrow it to keep users out altogether.
   */
  socketMode?: number | undefined;
  /** How often entries, revocations, bundles and renewals are looked at (default 250 ms). */
  refreshMs?: number | undefined;
  /** Lifetime of the X.509-SVIDs asked of the authority (default: the authority's). */
  svidTtlSeconds?: number | undefined;
  /** Told of trouble the endpoint survives (an entry store that cannot be read, an issuance that failed). */
  onWarning?: ((message: string) => void) | undefined;
}

const NO_IDENTITY = "no identity issued";
const PEER_PREFIX = "aztp-workload-peer:";

type Stream = {
  readonly facts: PeerFacts;
  /** What was last sent, to send only changes. */
  last: string | undefined;
  /** What it depended on (#x509State, #bundlesState) when it was sent. */
  state: string | undefined;
  readonly send: () => Promise<void>;
};

export class WorkloadApiEndpoint {
  readonly socketPath: string;
  readonly #authority: Authority;
  readonly #source: EntrySource;
  readonly #attest: (socket: net.Socket) => PeerFacts;
  readonly #warn: (message: string) => void;
  readonly #svids: EntrySvids;
  readonly #grpc = new grpc.Server();
  readonly #listener: net.Server;
  readonly #injector: ReturnType<grpc.Server["createConnectionInjector"]>;
  readonly #peers = new Map<string, PeerFacts>();
  readonly #sockets = new Set<net.Socket>();
  readonly #streams = new Set<Stream>();
  #entries = new Map<string, EntryLike & { readonly parsed: readonly Selector[] }>();
  #nextPeer = 0;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<void> | undefined;
  #closed = false;
  #storeFailing = false;
  /** What each entry's SVID last failed with, said once (#warnOnce). */
  readonly #failing = new Map<string, string>();

  private constructor(options: WorkloadApiEndpointOptions, listener: net.Server) {
    this.socketPath = options.socketPath;
    this.#authority = options.authority;
    this.#source = options.entries;
    this.#attest = options.attest ?? peerFacts;
    this.#warn = options.onWarning ?? (() => undefined);
    this.#svids = new EntrySvids(options.authority, { ttlSeconds: options.svidTtlSeconds });
    this.#listener = listener;
    this.#grpc.addService(workloadApiService, {
      FetchX509SVID: (call: grpc.ServerWritableStream<X509SvidRequest, X509SvidResponse>) =>
        this.#stream(
          call,
          (facts) => this.#x509State(facts),
          (facts, first) => this.#x509SvidResponse(facts, first),
        ),
      FetchX509Bundles: (call: grpc.ServerWritableStream<X509BundlesRequest, X509BundlesResponse>) =>
        this.#stream(
          call,
          (facts) => this.#bundlesState(facts),
          (facts, first) => this.#bundlesResponse(facts, first, "x509"),
        ),
      FetchJWTBundles: (call: grpc.ServerWritableStream<JwtBundlesRequest, JwtBundlesResponse>) =>
        this.#stream(
          call,
          (facts) => this.#bundlesState(facts),
          (facts, first) => this.#bundlesResponse(facts, first, "jwt"),
        ),
      FetchJWTSVID: (
        call: grpc.ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>,
        done: grpc.sendUnaryData<JwtSvidResponse>,
      ) => this.#unary(call, done, (facts) => this.#fetchJwtSvid(facts, call.request)),
      ValidateJWTSVID: (
        call: grpc.ServerUnaryCall<ValidateJwtSvidRequest, ValidateJwtSvidResponse>,
        done: grpc.sendUnaryData<ValidateJwtSvidResponse>,
      ) => this.#unary(call, done, async () => this.#validateJwtSvid(call.request)),
    });
    this.#injector = this.#grpc.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  }

  /** Listens on `options.socketPath` once the entries have been read. */
  static async start(options: WorkloadApiEndpointOptions): Promise<WorkloadApiEndpoint> {
    const refreshMs = options.refreshMs ?? 250;
    if (!(Number.isInteger(refreshMs) && refreshMs >= 10 && refreshMs <= 60_000))
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `refreshMs must be an integer from 10 to 60000, got ${refreshMs}`,
      );
    await removeStaleSocket(options.socketPath);
    const listener = net.createServer({ pauseOnConnect: true });
    const endpoint = new WorkloadApiEndpoint(options, listener);
    await endpoint.#refresh();
    listener.on("connection", (socket) => endpoint.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(options.socketPath, () => {
        listener.off("error", reject);
        resolve();
      });
    });
    await chmod(options.socketPath, options.socketMode ?? 0o666);
    endpoint.#timer = setInterval(() => void endpoint.#tick(), refreshMs);
    endpoint.#timer.unref();
    return endpoint;
  }

  /** Stops listening, ends every stream and connection, and removes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#refreshing;
    this.#streams.clear();
    const listening = new Promise<void>((resolve) => this.#listener.close(() => resolve()));
    this.#injector.destroy();
    for (const socket of this.#sockets) socket.destroy();
    this.#grpc.forceShutdown();
    await listening;
    await unlink(this.socketPath).catch(() => undefined);
  }

  /** The kernel's facts first, then gRPC: a connection whose peer cannot be told is closed unread. */
  #accept(socket: net.Socket): void {
    let facts: PeerFacts;
    try {
      facts = this.#attest(socket);
    } catch (e) {
      this.#warn(`a connection whose peer could not be attested was closed: ${(e as Error).message}`);
      socket.destroy();
      return;
    }
    const token = `${PEER_PREFIX}${++this.#nextPeer}`;
    this.#peers.set(token, facts);
    this.#sockets.add(socket);
    // gRPC reports a call's peer as its socket's remoteAddress: empty for a Unix socket, so it
    // carries the token that names this connection's facts.
    Object.defineProperty(socket, "remoteAddress", { value: token });
    socket.once("close", () => {
      this.#peers.delete(token);
      this.#sockets.delete(socket);
    });
    this.#injector.injectConnection(socket);
    socket.resume();
  }

  /** The caller's facts, or a gRPC error: the header missing, the connection unknown. */
  #caller(call: { readonly metadata: grpc.Metadata; getPeer(): string }): PeerFacts | grpc.StatusObject {
    if (!hasWorkloadApiHeader(call.metadata))
      return status(grpc.status.INVALID_ARGUMENT, "security header missing from request");
    const facts = this.#peers.get(call.getPeer());
    return facts ?? status(grpc.status.PERMISSION_DENIED, "the caller's connection was not attested");
  }

  #unary<Req, Res>(
    call: grpc.ServerUnaryCall<Req, Res>,
    done: grpc.sendUnaryData<Res>,
    answer: (facts: PeerFacts) => Promise<Res>,
  ): void {
    const caller = this.#caller(call);
    if (!isFacts(caller)) {
      done(caller);
      return;
    }
    answer(caller).then(
      (res) => done(null, res),
      (e: unknown) => done(toStatus(e)),
    );
  }

  /**
   * A server stream: its first message now, then one whenever what it would say changes.
   * `stateOf` says cheaply what the message depends on (undefined: it cannot tell), so a tick
   * composes, encodes and compares a message only when that changed; `compose` refuses a caller
   * with no identity on the first message (PERMISSION_DENIED), and answers undefined when there
   * is nothing to say.
   */
  #stream<Req, Res>(
    call: grpc.ServerWritableStream<Req, Res>,
    stateOf: (facts: PeerFacts) => string | undefined,
    compose: (facts: PeerFacts, first: boolean) => Promise<Res | undefined>,
  ): void {
    const caller = this.#caller(call);
    if (!isFacts(caller)) {
      call.emit("error", caller);
      return;
    }
    let first = true;
    const stream: Stream = {
      facts: caller,
      last: undefined,
      state: undefined,
      send: async () => {
        const state = stateOf(caller);
        if (!first && state !== undefined && state === stream.state) return;
        let res: Res | undefined;
        try {
          res = await compose(caller, first);
        } catch (e) {
          this.#streams.delete(stream);
          call.emit("error", toStatus(e));
          return;
        }
        if (res === undefined || this.#closed || call.cancelled || !this.#streams.has(stream)) return;
        const fingerprint = fingerprintOf(res);
        if (!first && fingerprint === stream.last) return;
        first = false;
        stream.last = fingerprint;
        // What it depends on once composed: an SVID issued while composing is part of it.
        stream.state = stateOf(caller);
        call.write(res);
      },
    };
    this.#streams.add(stream);
    call.on("cancelled", () => this.#streams.delete(stream));
    call.on("close", () => this.#streams.delete(stream));
    call.on("error", () => this.#streams.delete(stream));
    void stream.send();
  }

  /** Entries whose selectors all match the caller, oldest first. */
  #matching(facts: PeerFacts): EntryLike[] {
    return [...this.#entries.values()].filter((e) => matchesAll(e.parsed, facts));
  }

  /**
   * What the caller's X509SVID message depends on: its entries, each one's SVID (by serial) or
   * revocation, and the bundles' version. Undefined while an SVID is still to be issued or
   * failing, or when the authority has no bundle version: then the message is composed anyway.
   */
  #x509State(facts: PeerFacts): string | undefined {
    const bundles = this.#bundlesVersion();
    if (bundles === undefined) return undefined;
    const parts = [bundles];
    for (const entry of this.#matching(facts)) {
      if (this.#svids.revoked(entry.spiffeId)) {
        parts.push(`${entry.entryId}:revoked`);
        continue;
      }
      const held = this.#svids.held(entry.entryId);
      if (held === undefined || this.#failing.has(entry.entryId) || Date.now() >= held.renewAt) return undefined;
      parts.push(`${entry.entryId}:${held.serial}`);
    }
    return parts.join(" ");
  }

  /** What a bundles message depends on: whether the caller holds an identity, and the bundles' version. */
  #bundlesState(facts: PeerFacts): string | undefined {
    const bundles = this.#bundlesVersion();
    if (bundles === undefined) return undefined;
    const identity = this.#matching(facts).some((e) => !this.#svids.revoked(e.spiffeId));
    return `${bundles} ${identity}`;
  }

  /** The authority's bundle version, after asking for its bundles (which brings it up to date). */
  #bundlesVersion(): string | undefined {
    this.#authority.bundleSet();
    const v = this.#authority.version;
    return v === undefined ? undefined : String(v);
  }

  /** The caller's SVIDs; issuance failures of one entry are warned of and skip it. */
  async #svidsOf(facts: PeerFacts): Promise<EntrySvid[]> {
    const out: EntrySvid[] = [];
    for (const entry of this.#matching(facts)) {
      try {
        const svid = await this.#svids.get(entry);
        if (svid !== undefined) out.push(svid);
        this.#failing.delete(entry.entryId);
      } catch (e) {
        this.#warnOnce(
          entry.entryId,
          `no SVID for entry ${entry.entryId} (${entry.spiffeId}): ${(e as Error).message}`,
        );
      }
    }
    return out;
  }

  /**
   * The caller's X.509-SVIDs. With none: PERMISSION_DENIED at first, an empty update later (the
   * entry deleted or the identity revoked), as SPIRE's agent sends.
   */
  async #x509SvidResponse(facts: PeerFacts, first: boolean): Promise<X509SvidResponse> {
    const svids = await this.#svidsOf(facts);
    const bundles = this.#authority.bundleSet();
    const own = new Set<string>();
    const messages = [];
    for (const svid of svids) {
      const td = SpiffeId.parse(svid.spiffeId).trustDomain;
      own.add(td);
      messages.push(x509SvidMessage(svid.chain, svid.key, bundleOf(bundles, td), svid.hint));
    }
    if (messages.length === 0) {
      if (first) throw noIdentity();
      return { svids: [], crl: [], federatedBundles: {} };
    }
    return {
      svids: messages,
      crl: [],
      federatedBundles: bundleMap(
        [...bundles].filter((b) => !own.has(b.trustDomain)),
        "x509",
      ),
    };
  }

  /**
   * Every bundle the authority holds (its own trust domains and the others it trusts), for a
   * caller that holds an identity (SPIRE's rule: bundles are for workloads, not for anyone on the
   * machine). One that loses its identity is sent nothing more.
   */
  async #bundlesResponse<K extends "x509" | "jwt">(
    facts: PeerFacts,
    first: boolean,
    kind: K,
  ): Promise<(K extends "x509" ? X509BundlesResponse : JwtBundlesResponse) | undefined> {
    const identities = this.#matching(facts).filter((e) => !this.#svids.revoked(e.spiffeId));
    if (identities.length === 0) {
      if (first) throw noIdentity();
      return undefined;
    }
    const bundles = bundleMap(this.#authority.bundleSet(), kind);
    return (kind === "x509" ? { crl: [], bundles } : { bundles }) as K extends "x509"
      ? X509BundlesResponse
      : JwtBundlesResponse;
  }

  async #fetchJwtSvid(facts: PeerFacts, req: JwtSvidRequest): Promise<JwtSvidResponse> {
    const audience = req.audience.filter((a) => a.length > 0);
    if (audience.length === 0) throw grpcError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    let wanted: string | undefined;
    if (req.spiffeId !== "") {
      try {
        wanted = SpiffeId.parse(req.spiffeId).toString();
      } catch {
        throw grpcError(grpc.status.INVALID_ARGUMENT, `invalid requested SPIFFE ID: ${req.spiffeId.slice(0, 200)}`);
      }
    }
    const seen = new Set<string>();
    const svids = [];
    for (const entry of this.#matching(facts)) {
      if (seen.has(entry.spiffeId) || (wanted !== undefined && entry.spiffeId !== wanted)) continue;
      if (this.#svids.revoked(entry.spiffeId)) continue;
      seen.add(entry.spiffeId);
      const svid = await this.#authority.mintJwtSvid(entry.spiffeId, audience);
      svids.push({ spiffeId: entry.spiffeId, svid, hint: entry.hint ?? "" });
    }
    if (svids.length === 0) throw noIdentity();
    return { svids };
  }

  #validateJwtSvid(req: ValidateJwtSvidRequest): ValidateJwtSvidResponse {
    if (req.audience === "") throw grpcError(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    if (req.svid === "") throw grpcError(grpc.status.INVALID_ARGUMENT, "svid must be specified");
    try {
      const svid = validateJwtSvid(req.svid, this.#authority.bundleSet(), { audience: req.audience });
      return { spiffeId: svid.id.toString(), claims: svid.claims as { [key: string]: JsonValue } };
    } catch (e) {
      throw grpcError(grpc.status.INVALID_ARGUMENT, (e as Error).message);
    }
  }

  /** Says a failure of an entry once, not on every stream and tick, until it changes or clears. */
  #warnOnce(entryId: string, message: string): void {
    if (this.#failing.get(entryId) === message) return;
    this.#failing.set(entryId, message);
    this.#warn(message);
  }

  /** One refresh at a time; a tick that finds one running skips. */
  async #tick(): Promise<void> {
    if (this.#refreshing !== undefined || this.#closed) return;
    await this.#refresh();
    for (const stream of this.#streams) await stream.send();
  }

  async #refresh(): Promise<void> {
    const run = (async () => {
      try {
        const list = await this.#source.list();
        const next = new Map<string, EntryLike & { readonly parsed: readonly Selector[] }>();
        for (const e of list) next.set(e.entryId, { ...e, parsed: e.selectors.map(parseSelector) });
        this.#entries = next;
        if (this.#storeFailing) this.#warn("the registration entries can be read again");
        this.#storeFailing = false;
      } catch (e) {
        if (!this.#storeFailing) this.#warn(`the registration entries could not be read: ${(e as Error).message}`);
        this.#storeFailing = true;
      }
      this.#svids.prune(this.#entries);
      for (const entryId of this.#svids.due()) {
        const entry = this.#entries.get(entryId);
        if (entry === undefined) continue;
        await this.#svids.get(entry).then(
          () => this.#failing.delete(entryId),
          (e: unknown) =>
            this.#warnOnce(
              entryId,
              `the SVID of entry ${entryId} (${entry.spiffeId}) could not be renewed: ${(e as Error).message}`,
            ),
        );
      }
    })();
    this.#refreshing = run;
    try {
      await run;
    } finally {
      this.#refreshing = undefined;
    }
  }
}

/** A socket file left by an endpoint that died is replaced; any other file is not ours to remove. */
async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (st === undefined) return;
  if (!st.isSocket())
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${path} exists and is not a socket: not replacing it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${path} is in use by a running endpoint`);
  await unlink(path);
}

function bundleOf(bundles: BundleSet, trustDomain: string): TrustBundle {
  const bundle = bundles.getBundleForTrustDomain(trustDomain);
  if (bundle === undefined) throw grpcError(grpc.status.UNAVAILABLE, `no bundle for trust domain ${trustDomain}`);
  return bundle;
}

/** A digest of a response's encoded form: what a stream last said. */
function fingerprintOf(res: unknown): string {
  const hash = createHash("sha256");
  hash.update(
    JSON.stringify(res, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v)),
  );
  return hash.digest("base64");
}

function status(code: grpc.status, details: string): grpc.StatusObject {
  return { code, details, metadata: new grpc.Metadata() };
}

class GrpcStatusError extends Error {
  constructor(readonly status: grpc.StatusObject) {
    super(status.details);
  }
}

function grpcError(code: grpc.status, details: string): GrpcStatusError {
  return new GrpcStatusError(status(code, details));
}

function noIdentity(): GrpcStatusError {
  return grpcError(grpc.status.PERMISSION_DENIED, NO_IDENTITY);
}

function isFacts(v: PeerFacts | grpc.StatusObject): v is PeerFacts {
  return !("code" in v);
}

/** What a failure says to the workload: its own status, or UNAVAILABLE with the reason. */
function toStatus(e: unknown): grpc.StatusObject {
  if (e instanceof GrpcStatusError) return e.status;
  return status(grpc.status.UNAVAILABLE, e instanceof Error ? e.message : String(e));
}
