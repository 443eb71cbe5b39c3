/**
 * `aztp workload register | list | delete`: the Workload API's registration entries, as
 * `spire-server entry create | show | delete` manages SPIRE's, in the authority's store (a home
 * folder or a `postgres://` URL, as `aztp apikey` takes it), or, without `--store`, on the remote
 * `aztp serve` that --server names (its `/v1/workload-entries` routes, within the API key's
 * scope). An entry's SPIFFE ID becomes an identity of the registry, so `aztp revoke` ends it;
 * deleting an entry does not.
 */
import type { Command } from "commander";
import { EmbeddedAuthority } from "../../authority/authority.js";
import type { RemoteAuthority } from "../../client/remote-authority.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { openStores } from "../../store/open-stores.js";
import {
  registerWorkloadEntry,
  type WorkloadEntry,
  type WorkloadEntryStore,
  type WorkloadIdentityRegistrar,
} from "../../workload-api/entries.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { readKekFile, storeOf } from "./serve.js";

interface StoreOptions {
  store?: string;
  kekFile?: string;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function describe(e: WorkloadEntry): string {
  return [
    `entry ${e.entryId}`,
    `  SPIFFE ID  ${e.spiffeId}`,
    `  selectors  ${e.selectors.join(", ")}`,
    ...(e.hint !== undefined ? [`  hint       ${e.hint}`] : []),
    `  created    ${e.createdAt}`,
  ].join("\n");
}

/** Entries as a table people read: one row each, columns padded to the widest cell. */
function table(entries: readonly WorkloadEntry[]): string {
  const rows = [
    ["ENTRY ID", "SPIFFE ID", "SELECTORS", "HINT"],
    ...entries.map((e) => [e.entryId, e.spiffeId, e.selectors.join(","), e.hint ?? ""]),
  ];
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i < 3 ? c.padEnd(widths[i] ?? 0) : c))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function register(program: Command, ctx: CliContext): void {
  const workload = program
    .command("workload")
    .description("registration entries of the SPIFFE Workload API: which SPIFFE ID a caller matching selectors gets");
  const withStore = (c: Command): Command =>
    c
      .option("--store <location>", "a home folder or postgres:// URL (default: --server if given, else --home)")
      .option("--kek-file <file>", "key-encryption key of a PostgreSQL store");

  /**
   * Runs `fn` on the entries and the authority of the store --store names (the authority must
   * exist there); without --store, on the remote authority --server (or AZTP_SERVER) names;
   * else on --home.
   */
  async function onStore<T>(
    o: StoreOptions,
    fn: (entries: WorkloadEntryStore, authority: WorkloadIdentityRegistrar) => Promise<T>,
  ): Promise<T> {
    if (o.store === undefined && ctx.server() !== undefined) {
      if (o.kekFile !== undefined)
        throw usage("--kek-file is for a PostgreSQL --store: with --server, the service holds its keys");
      const remote = (await ctx.remote()) as RemoteAuthority;
      try {
        return await fn(remote.workloadEntries(), remote);
      } finally {
        await remote.close();
      }
    }
    const s = await openStores(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
    try {
      const authority = await EmbeddedAuthority.fromStores(
        { registry: s.registry, ca: s.ca },
        { home: s.kind === "file" ? s.location : ctx.home() },
      );
      return await fn(s.workloadEntries, authority);
    } finally {
      await s.close();
    }
  }

  withStore(
    workload
      .command("register")
      .description(
        "register a workload: callers matching every --selector get --spiffe-id (made an identity of the authority)",
      ),
  )
    .requiredOption(
      "--spiffe-id <id>",
      "the SPIFFE ID the workload gets: any path of a trust domain the authority holds",
    )
    .requiredOption(
      "--selector <selector>",
      "unix:uid:<n>, unix:gid:<n> or unix:path:<absolute path>; repeat it: all must match",
      collect,
    )
    .option("--hint <hint>", "a label the workload may choose its SVID by (e.g. internal, external)")
    .action(async (o: StoreOptions & { spiffeId: string; selector: string[]; hint?: string }) => {
      const entry = await onStore(o, (entries, authority) =>
        registerWorkloadEntry(authority, entries, {
          spiffeId: o.spiffeId,
          selectors: o.selector,
          ...(o.hint !== undefined ? { hint: o.hint } : {}),
        }),
      );
      ctx.out({ entry }, () => `registered ${describe(entry)}`);
    });

  withStore(workload.command("list").description("every registration entry, oldest first")).action(
    async (o: StoreOptions) => {
      const entries = await onStore(o, (store) => store.list());
      ctx.out({ entries }, () => (entries.length === 0 ? "no registration entries" : table(entries)));
    },
  );

  withStore(
    workload
      .command("delete <entryId>")
      .description("delete a registration entry (its SPIFFE ID stays an identity: `aztp revoke` ends that)"),
  ).action(async (entryId: string, o: StoreOptions) => {
    const location = await onStore(o, async (store) => {
      if (!(await store.delete(entryId)))
        throw new AztpError(
          ErrorCodes.WORKLOAD_ENTRY_NOT_FOUND,
          `no registration entry ${JSON.stringify(entryId).slice(0, 60)} in ${store.location}`,
        );
      return store.location;
    });
    ctx.out({ entryId, deleted: true }, () => `deleted entry ${entryId} from ${location}`);
  });
}
