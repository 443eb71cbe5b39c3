/**
 * `aztp apikey create | list | revoke --store S`: the API keys `aztp serve` accepts. A key is
 * printed once, by create; the store keeps only a hash of its secret.
 */
import type { Command } from "commander";
import { describeScope } from "../../store/api-key-scope.js";
import type { ApiKeyRecord } from "../../store/api-keys.js";
import { openApiKeyStore } from "../../serve/open.js";
import type { CliContext } from "../context.js";
import { Verdict } from "../exit.js";
import { readKekFile, storeOf } from "./serve.js";

interface StoreOptions {
  store?: string;
  kekFile?: string;
}

function describe(r: ApiKeyRecord): string {
  return `${r.keyId}  ${r.revokedAt ? `REVOKED ${r.revokedAt}` : "active"}  ${describeScope(r.scope)}  ${r.name ? JSON.stringify(r.name) : ""}  created ${r.createdAt}`;
}

export function register(program: Command, ctx: CliContext): void {
  const apikey = program.command("apikey").description("API keys of aztp serve (only a hash of each is stored)");
  const withStore = (c: Command): Command =>
    c
      .option("--store <location>", "a home folder or postgres:// URL (default: --home)")
      .option("--kek-file <file>", "key-encryption key of a PostgreSQL store");

  withStore(apikey.command("create").description("make a key; it is printed once"))
    .option("--name <name>", "a label for people")
    .option("--trust-domain <td>", "limit the key to identities of this trust domain")
    .option(
      "--id-prefix <prefix>",
      "limit the key to this spiffe:// ID and the IDs below it (the trust domain exactly, the path on segment boundaries)",
    )
    .option(
      "--partial-segment",
      "with --id-prefix: its last path segment also matches longer ones (spiffe://td/w/team covers .../team-a)",
    )
    .action(
      async (
        o: StoreOptions & { name?: string; trustDomain?: string; idPrefix?: string; partialSegment?: boolean },
      ) => {
        const store = await openApiKeyStore(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
        try {
          const scope = {
            ...(o.trustDomain !== undefined ? { trustDomain: o.trustDomain } : {}),
            ...(o.idPrefix !== undefined ? { idPrefix: o.idPrefix } : {}),
            ...(o.partialSegment === true ? { partialSegment: true } : {}),
          };
          const { key, record } = await store.create({ ...(o.name !== undefined ? { name: o.name } : {}), scope });
          ctx.out({ key, record }, () => `${key}\n(shown once: store it now) ${describe(record)}`);
        } finally {
          await store.close();
        }
      },
    );

  withStore(apikey.command("list").description("every key, revoked ones included (never their secrets)")).action(
    async (o: StoreOptions) => {
      const store = await openApiKeyStore(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
      try {
        const keys = await store.list();
        ctx.out({ keys }, () => (keys.length === 0 ? "no API keys" : keys.map(describe).join("\n")));
      } finally {
        await store.close();
      }
    },
  );

  withStore(
    apikey.command("revoke <keyId>").description("refuse the key from now on (every replica, on its next request)"),
  ).action(async (keyId: string, o: StoreOptions) => {
    const store = await openApiKeyStore(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
    try {
      const revoked = await store.revoke(keyId);
      ctx.out({ keyId, revoked }, () => (revoked ? `revoked ${keyId}` : `no active key ${keyId}`));
      if (!revoked) throw new Verdict();
    } finally {
      await store.close();
    }
  });
}
