/**
 * What every command group shares: the global options (--home, --json, and the remote
 * authority's --server, --api-key, --trust-bundle), the home they name, the authority the
 * registry and policy commands act on, and printing a result (JSON with --json, else for
 * people).
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { EmbeddedAuthority } from "../authority/authority.js";
import type { IdentityRecord } from "../authority/registry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { RemoteAuthority, type RemoteAuthorityOptions } from "../client/remote-authority.js";

export interface GlobalOptions {
  home?: string;
  json?: boolean;
  server?: string;
  apiKey?: string;
  trustBundle?: string;
}

/** The authority a command acts on: the home's, or the remote one given by --server. */
export type CliAuthority = EmbeddedAuthority | RemoteAuthority;

export interface CliContext {
  /** The global options, as parsed: read them in an action, once the command line is. */
  options(): GlobalOptions;
  /** The authority's folder: --home, else AZTP_HOME, else ./.aztp. */
  home(): string;
  /** The remote authority's URL (--server, else AZTP_SERVER), if one is given. */
  server(): string | undefined;
  /**
   * Runs `fn` on the authority the command acts on: the remote one with --server (closed
   * when `fn` ends), else the home's.
   */
  withAuthority<T>(fn: (authority: CliAuthority) => Promise<T>): Promise<T>;
  /**
   * The remote authority --server names, connected with --api-key and --trust-bundle (or their
   * variables) and `extra`; undefined without --server. The caller closes it.
   */
  remote(extra?: RemoteConnectExtra): Promise<RemoteAuthority | undefined>;
  /** Prints `value` as JSON with --json, else `human()`, on stdout. */
  out(value: unknown, human: () => string): void;
}

/** What a command may set of the remote authority's options beyond the global ones. */
export type RemoteConnectExtra = Pick<RemoteAuthorityOptions, "refreshHintSeconds">;

export function homeOf(opts: GlobalOptions): string {
  return resolve(opts.home ?? process.env.AZTP_HOME ?? ".aztp");
}

/** An identity given by AZTP/SPIFFE ID or by name, on either kind of authority. */
export async function resolveRecord(authority: CliAuthority, ref: string): Promise<IdentityRecord> {
  if (ref.includes("://")) return authority.get(ref);
  const rec = await authority.findByName(ref);
  if (!rec) throw new AztpError(ErrorCodes.IDENTITY_NOT_FOUND, `no identity named ${JSON.stringify(ref)}`);
  return rec;
}

/**
 * The context of `program`'s commands (its global options are read when asked for). Adds the
 * remote authority's global options to `program`: they belong with the context that reads them.
 */
export function cliContext(program: Command): CliContext {
  program
    .option(
      "--server <url>",
      "a remote `aztp serve` (else AZTP_SERVER): list, revoke, reissue, link, discover, policy, issuer, workload and workload-api go to it",
    )
    .option(
      "--api-key <key>",
      "the API key for --server (else AZTP_API_KEY; prefer the variable: options show in process lists)",
    )
    .option(
      "--trust-bundle <file>",
      "the bundle (PEM or SPIFFE JSON) --server's certificate is checked against (else AZTP_TRUST_BUNDLE)",
    );
  const options = (): GlobalOptions => program.opts<GlobalOptions>();
  const server = (): string | undefined => {
    const s = options().server ?? process.env.AZTP_SERVER;
    return s === undefined || s === "" ? undefined : s;
  };
  const remote = async (extra: RemoteConnectExtra = {}): Promise<RemoteAuthority | undefined> => {
    const url = server();
    if (url === undefined) return undefined;
    const o = options();
    const apiKey = o.apiKey ?? process.env.AZTP_API_KEY;
    const trustBundle = o.trustBundle ?? process.env.AZTP_TRUST_BUNDLE;
    return RemoteAuthority.connect({
      baseUrl: url,
      home: homeOf(o),
      ...(apiKey !== undefined && apiKey !== "" ? { apiKey } : {}),
      ...(trustBundle !== undefined && trustBundle !== "" ? { trustBundle } : {}),
      ...(extra.refreshHintSeconds !== undefined ? { refreshHintSeconds: extra.refreshHintSeconds } : {}),
    });
  };
  return {
    options,
    home: () => homeOf(options()),
    server,
    remote,
    async withAuthority(fn) {
      const connected = await remote();
      if (connected === undefined) return fn(await EmbeddedAuthority.open(homeOf(options())));
      try {
        return await fn(connected);
      } finally {
        await connected.close();
      }
    },
    out(value, human) {
      process.stdout.write(options().json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
  };
}
