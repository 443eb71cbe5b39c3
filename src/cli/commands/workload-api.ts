/**
 * `aztp workload-api --socket PATH`: the SPIFFE Workload API on a Unix socket (docs/workload-api.md),
 * serving the SVIDs and bundles of the authority on `--store` (a home folder, default --home, or
 * PostgreSQL), or of the remote `aztp serve` --server names, to the workloads its registration
 * entries (`aztp workload register`) name.
 *
 * With --server, the entries, the revocation lists and the bundles are fetched every
 * `--sync-interval` (default 5 s, SPIRE's agent's sync interval): the endpoint's 250 ms loop reads
 * what was fetched last, so a revocation or a new entry reaches its streams within about one
 * interval, and a node asks the service a few requests per interval, not four a second.
 *
 * `--socket` takes a path or SPIFFE_ENDPOINT_SOCKET's `unix:///abs/path` form, else that variable
 * itself. Everything that can be wrong is found before the socket is made: the store, the
 * authority, the entries, and whether the kernel's peer credentials can be read here (the
 * addon: peer-credentials.ts). Then one line on stdout says where it serves, and the command runs
 * until SIGTERM or SIGINT (exit 0), removing its socket.
 */
import { isAbsolute, resolve } from "node:path";
import type { Command } from "commander";
import { EmbeddedAuthority } from "../../authority/authority.js";
import type { Authority } from "../../authority/authority-api.js";
import type { RemoteAuthority } from "../../client/remote-authority.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { openStores } from "../../store/open-stores.js";
import { parseWorkloadApiAddress, type WorkloadApiAddress } from "../../workload-api/address.js";
import { WorkloadApiEndpoint } from "../../workload-api/endpoint.js";
import type { WorkloadEntryStore } from "../../workload-api/entries.js";
import { peerCredentialsSupport } from "../../workload-api/peer-credentials.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { waitForSignal } from "../signals.js";
import { durationOption } from "../options.js";
import { readKekFile, storeOf } from "./serve.js";

interface WorkloadApiOptions {
  socket?: string;
  store?: string;
  kekFile?: string;
  svidTtl?: string;
  socketMode: string;
  syncInterval?: string;
}

/** SPIRE's agent syncs with its server every 5 s by default. */
const DEFAULT_SYNC_SECONDS = 5;

/**
 * The socket from `--socket` or SPIFFE_ENDPOINT_SOCKET: a path, or a Workload API address
 * (address.ts) that names a Unix socket; TCP is refused.
 */
export function socketPathOf(text: string, from: string): string {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(text)) return isAbsolute(text) ? text : resolve(text);
  let address: WorkloadApiAddress;
  try {
    address = parseWorkloadApiAddress(text);
  } catch (e) {
    throw usage(`${from}: ${(e as Error).message}`);
  }
  if (address.transport !== "unix")
    throw usage(
      `${from}: only a Unix socket can be served (${JSON.stringify(text)}): callers are told apart by the kernel's word on a Unix socket's peer, which TCP has no equivalent of`,
    );
  return address.path;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("workload-api")
    .description(
      "serve the SPIFFE Workload API on a Unix socket: X.509-SVIDs, JWT-SVIDs and bundles for the workloads `aztp workload register` names, attested by the kernel",
    )
    .option("--socket <path>", "the socket: a path or unix:///path (default: SPIFFE_ENDPOINT_SOCKET)")
    .option("--store <location>", "a home folder or postgres:// URL (default: --server if given, else --home)")
    .option("--kek-file <file>", "key-encryption key of the CA keys in a PostgreSQL store")
    .option(
      "--svid-ttl <duration>",
      "lifetime of the X.509-SVIDs handed out (default: the authority's); renewed at half-life",
    )
    .option("--socket-mode <octal>", "the socket file's permissions (who may connect at all)", "0666")
    .option(
      "--sync-interval <duration>",
      `with --server: how often the entries, revocations and bundles are fetched from the service (default ${DEFAULT_SYNC_SECONDS}s)`,
    )
    .action(async (o: WorkloadApiOptions) => {
      const remote = o.store === undefined && ctx.server() !== undefined;
      if (remote && o.kekFile !== undefined)
        throw usage("--kek-file is for a PostgreSQL --store: with --server, the service holds its keys");
      if (!remote && o.syncInterval !== undefined)
        throw usage("--sync-interval is for --server: on a store, the endpoint reads the store itself every 250 ms");
      const syncSeconds =
        o.syncInterval === undefined ? DEFAULT_SYNC_SECONDS : durationOption("--sync-interval", o.syncInterval);
      if (syncSeconds < 1) throw usage(`--sync-interval is at least 1s, got ${o.syncInterval}`);
      const env = process.env.SPIFFE_ENDPOINT_SOCKET;
      const socketText = o.socket ?? (env !== undefined && env !== "" ? env : undefined);
      if (socketText === undefined) throw usage("give --socket PATH (or set SPIFFE_ENDPOINT_SOCKET)");
      const socketPath = socketPathOf(socketText, o.socket !== undefined ? "--socket" : "SPIFFE_ENDPOINT_SOCKET");
      if (!/^0?[0-7]{3}$/.test(o.socketMode))
        throw usage(`--socket-mode is octal permissions such as 0666, got ${o.socketMode}`);
      const socketMode = Number.parseInt(o.socketMode, 8);
      const svidTtlSeconds = o.svidTtl === undefined ? undefined : durationOption("--svid-ttl", o.svidTtl);
      const support = peerCredentialsSupport();
      if (!support.available)
        throw new AztpError(
          ErrorCodes.WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE,
          `cannot tell callers apart here: ${support.reason}`,
        );

      const source = remote ? await remoteSource(ctx, syncSeconds) : await storeSource(ctx, o);
      let endpoint: WorkloadApiEndpoint | undefined;
      try {
        const entries = await source.entries.list();
        endpoint = await WorkloadApiEndpoint.start({
          socketPath,
          authority: source.authority,
          entries: source.entries,
          socketMode,
          svidTtlSeconds,
          onWarning: (message) => process.stderr.write(`aztp workload-api: ${message}\n`),
        });
        process.stdout.write(
          `serving the SPIFFE Workload API on unix://${socketPath} (mode ${o.socketMode}, ${entries.length} registration entr${entries.length === 1 ? "y" : "ies"}, authority ${source.location})\n`,
        );
        await waitForSignal();
      } finally {
        await endpoint?.close();
        await source.close();
      }
    });
}

/** What the endpoint serves from: an authority, its entries, and how to close both. */
interface EndpointSource {
  authority: Authority;
  entries: WorkloadEntryStore;
  /** For the start line: the store's location or the service's URL. */
  location: string;
  close(): Promise<void>;
}

async function storeSource(ctx: CliContext, o: WorkloadApiOptions): Promise<EndpointSource> {
  const stores = await openStores(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
  try {
    const authority = await EmbeddedAuthority.fromStores(stores, { home: ctx.home() });
    return { authority, entries: stores.workloadEntries, location: stores.location, close: () => stores.close() };
  } catch (e) {
    await stores.close();
    throw e;
  }
}

/**
 * The remote authority, its feeds refreshed every `syncSeconds` (bundles, revocation lists, the
 * records of the entries' identities), and its entries held as fetched for as long.
 */
async function remoteSource(ctx: CliContext, syncSeconds: number): Promise<EndpointSource> {
  const authority = (await ctx.remote({ refreshHintSeconds: syncSeconds })) as RemoteAuthority;
  const entries = authority.workloadEntries({ listMaxAgeMs: syncSeconds * 1000 });
  return {
    authority,
    entries,
    location: entries.location,
    close: async () => {
      await entries.close();
      await authority.close();
    },
  };
}
