/**
 * `aztp list | revoke | reissue | link | discover`: the authority's registry of identities,
 * their status and their relations; the home's, or a remote `aztp serve`'s with --server.
 */
import { Option, type Command } from "commander";
import type { IdentityRecord } from "../../authority/registry.js";
import { TrustDomain } from "../../spiffe/spiffeid.js";
import { resolveRecord, type CliContext } from "../context.js";
import { jsonObjectOption } from "../options.js";

function summary(r: IdentityRecord): Record<string, unknown> {
  return {
    name: r.name,
    aztpId: r.aztpId,
    spiffeId: r.spiffeId,
    workloadId: r.workloadId,
    status: r.status,
    parentIdentity: r.parentIdentity,
    links: r.links,
    metadata: r.metadata,
    notAfter: r.notAfter ?? null,
    ...(r.revokeReason ? { revokeReason: r.revokeReason } : {}),
  };
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("list")
    .description("list identities")
    .option("--trust-domain <td>")
    .addOption(new Option("--status <status>").choices(["active", "revoked"]))
    .action(async (o: { trustDomain?: string; status?: "active" | "revoked" }) => {
      const recs = await ctx.withAuthority(async (a) =>
        (
          await a.list({
            ...o,
            ...(o.trustDomain !== undefined ? { trustDomain: TrustDomain.parse(o.trustDomain).name } : {}),
          })
        ).map(summary),
      );
      ctx.out(
        recs,
        () => recs.map((r) => `${String(r.status).padEnd(8)} ${String(r.aztpId)}`).join("\n") || "(no identities)",
      );
    });

  program
    .command("revoke <id>")
    .description("revoke an identity and every descendant")
    .option("--reason <text>", "why", "unspecified")
    .action(async (id: string, o: { reason: string }) => {
      const { revoked, sequence } = await ctx.withAuthority(async (a) => {
        const rec = await resolveRecord(a, id);
        const revoked = await a.revoke(rec.spiffeId, o.reason);
        return { revoked, sequence: a.revocationSequence(rec.trustDomain) ?? null };
      });
      ctx.out({ revoked, sequence }, () => revoked.map((r) => `revoked ${r}`).join("\n") || "already revoked");
    });

  program
    .command("reissue <id>")
    .description("restore a revoked identity (its holder then renews its SVID)")
    .action(async (id: string) => {
      const rec = await ctx.withAuthority(async (a) => a.reissue((await resolveRecord(a, id)).spiffeId));
      ctx.out(summary(rec), () => `restored ${rec.aztpId}`);
    });

  program
    .command("link <source> <target>")
    .description("link SOURCE to TARGET (type parent: TARGET becomes SOURCE's parent)")
    .addOption(new Option("--type <type>").choices(["linked", "parent"]).default("linked"))
    .option("--metadata <json>", "JSON object stored on the link", "{}")
    .action(async (source: string, target: string, o: { type: "linked" | "parent"; metadata: string }) => {
      const metadata = jsonObjectOption("--metadata", o.metadata);
      const l = await ctx.withAuthority(async (a) =>
        a.link((await resolveRecord(a, source)).spiffeId, (await resolveRecord(a, target)).spiffeId, o.type, metadata),
      );
      ctx.out(l, () => `${source} -[${l.type}]-> ${l.target}`);
    });

  program
    .command("discover")
    .description("list active, discoverable identities")
    .option("--trust-domain <td>")
    .action(async (o: { trustDomain?: string }) => {
      const td = o.trustDomain === undefined ? undefined : TrustDomain.parse(o.trustDomain).name;
      const recs = await ctx.withAuthority(async (a) =>
        (await a.list({ status: "active" }))
          .filter((r) => (td ? r.trustDomain === td : r.isGlobalIdentity || r.trustDomain === a.defaultTrustDomain))
          .map(summary),
      );
      ctx.out(recs, () => recs.map((r) => String(r.aztpId)).join("\n") || "(none)");
    });
}
