/**
 * `aztp workload-api --socket PATH`: the SPIFFE Workload API on a Unix socket (docs/workload-api.md),
 * serving the SVIDs and bundles of the authority on `--store` (a home folder, default --home, or
 * PostgreSQL) to the workloads its registration entries (`aztp workload register`) name.
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
import { AztpError, ErrorCodes } from "../../errors.js";
import { openStores } from "../../store/open-stores.js";
import { WorkloadApiEndpoint } from "../../workload-api/endpoint.js";
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
}

/** A socket from `--socket` or SPIFFE_ENDPOINT_SOCKET: a path, or `unix:///abs/path`; TCP is refused. */
export function socketPathOf(text: string, from: string): string {
  if (text.startsWith("unix:")) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw usage(`${from} is no URL: ${JSON.stringify(text)}`);
    }
    if (url.host !== "" || url.search !== "" || url.hash !== "" || url.pathname === "" || url.pathname === "/")
      throw usage(`${from} must be unix:///absolute/path (no host, query or fragment), got ${JSON.stringify(text)}`);
    return decodeURIComponent(url.pathname);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    throw usage(
      `${from}: only a Unix socket can be served (${JSON.stringify(text)}): callers are told apart by the kernel's word on a Unix socket's peer, which TCP has no equivalent of`,
    );
  return isAbsolute(text) ? text : resolve(text);
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("workload-api")
    .description(
      "serve the SPIFFE Workload API on a Unix socket: X.509-SVIDs, JWT-SVIDs and bundles for the workloads `aztp workload register` names, attested by the kernel",
    )
    .option("--socket <path>", "the socket: a path or unix:///path (default: SPIFFE_ENDPOINT_SOCKET)")
    .option("--store <location>", "a home folder or postgres:// URL (default: --home)")
    .option("--kek-file <file>", "key-encryption key of the CA keys in a PostgreSQL store")
    .option(
      "--svid-ttl <duration>",
      "lifetime of the X.509-SVIDs handed out (default: the authority's); renewed at half-life",
    )
    .option("--socket-mode <octal>", "the socket file's permissions (who may connect at all)", "0666")
    .action(async (o: WorkloadApiOptions) => {
      if (ctx.server() !== undefined)
        throw usage(
          "aztp workload-api runs on the authority's store (--home or --store), not on a remote authority (--server): run it where the store is reachable",
        );
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

      const stores = await openStores(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
      let endpoint: WorkloadApiEndpoint | undefined;
      try {
        const authority = await EmbeddedAuthority.fromStores(stores, { home: ctx.home() });
        const entries = await stores.workloadEntries.list();
        endpoint = await WorkloadApiEndpoint.start({
          socketPath,
          authority,
          entries: stores.workloadEntries,
          socketMode,
          svidTtlSeconds,
          onWarning: (message) => process.stderr.write(`aztp workload-api: ${message}\n`),
        });
        process.stdout.write(
          `serving the SPIFFE Workload API on unix://${socketPath} (mode ${o.socketMode}, ${entries.length} registration entr${entries.length === 1 ? "y" : "ies"}, authority ${stores.location})\n`,
        );
        await waitForSignal();
      } finally {
        await endpoint?.close();
        await stores.close();
      }
    });
}
