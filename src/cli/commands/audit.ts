/**
 * `aztp audit verify | query | tail | stats | export`: reading audit logs, checking their chain,
 * checkpoint signatures and witness, and exporting a shared (PostgreSQL) log to JSON Lines.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Option, type Command } from "commander";
import type { AuditEntry, AuditOutcome } from "../../audit/entry.js";
import { auditStats, queryAuditLog } from "../../audit/query.js";
import { verifyAuditLog } from "../../audit/verify.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { SpiffeId } from "../../spiffe/spiffeid.js";
import type { CliContext } from "../context.js";
import { usage, Verdict } from "../exit.js";
import { parseTime } from "../options.js";
import { registerProofs } from "./audit-proof.js";
import { registerWitness } from "./audit-witness.js";
import { registerAuditView } from "./audit-view.js";
import { checkCosignatures } from "../../audit/cosigner.js";
import { parseCosignerVkey } from "../../audit/cosignature.js";
import { auditTrustSource } from "../audit-trust.js";

export function register(program: Command, ctx: CliContext): void {
  const audit = program.command("audit").description("read and verify audit logs (JSON Lines)");
  audit
    .command("verify <file>")
    .description("check the hash chain, checkpoint signatures and the witness; exit 1 naming the first bad entry")
    .option(
      "--bundle <file>",
      "check checkpoint signatures against this trust bundle (SPIFFE bundle JSON or PEM roots, as `aztp verify` takes them)",
    )
    .option(
      "--no-signatures",
      "do not check who signed the checkpoints (the chain and the witness are still checked); the verdict says so",
    )
    .option("--witness <file>", "the witness file (default: <file>.witness)")
    .option("--no-witness", "verify the log alone")
    .option(
      "--cosigner <vkey...>",
      "a witness whose cosignatures (in <file>.cosignatures) must be there and verify (its C2SP vkey, from `aztp audit witness-key`)",
    )
    .action(
      async (
        file: string,
        o: { bundle?: string; signatures: boolean; witness?: string | false; cosigner?: string[] },
      ) => {
        if (o.bundle !== undefined && !o.signatures) throw usage("give --bundle or --no-signatures, not both");
        const cosigners = (o.cosigner ?? []).map((vkey) => {
          try {
            return parseCosignerVkey(vkey);
          } catch (e) {
            throw usage(`--cosigner: ${(e as Error).message}`);
          }
        });
        const path = resolve(file);
        const witnessPath = o.witness === false ? false : o.witness ? resolve(o.witness) : undefined;
        // No verdict without a key: signatures are checked against a bundle or an authority,
        // or the user says explicitly that they are not to be.
        const trust = o.signatures ? await auditTrustSource(path, witnessPath, o.bundle, ctx) : null;
        if (!existsSync(path)) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `no audit log at ${path}`);
        const result = await verifyAuditLog(path, {
          ...(trust ? { verifier: trust.verifier, verifierSource: trust.source } : {}),
          ...(witnessPath !== undefined ? { witnessPath } : {}),
        });
        const signatures = trust ? "checked" : "NOT checked (--no-signatures)";
        const cosigned = cosigners.length > 0 ? await checkCosignatures(path, cosigners) : null;
        const ok = result.ok && (cosigned === null || cosigned.ok);
        const witnessText =
          cosigned === null
            ? ""
            : cosigned.ok
              ? `; cosigned by ${cosigned.witnesses.map((w) => `${w.name} (up to ${w.size} entries)`).join(", ")}`
              : `\nBAD cosignatures: ${cosigned.problem}`;
        ctx.out(
          {
            ...result,
            ok,
            signatures: trust ? "checked" : "skipped",
            trustSource: trust?.source ?? null,
            ...(cosigned === null ? {} : { cosignatures: cosigned }),
          },
          () => {
            const tree =
              result.tree.state === "proven"
                ? `Merkle tree of ${result.tree.size} entries signed (origin ${result.tree.origin}${result.tree.predatingCheckpoints > 0 ? `; ${result.tree.predatingCheckpoints} older checkpoint(s) predate proofs` : ""})`
                : result.tree.state === "predates-proofs"
                  ? "no Merkle tree: the log predates proofs"
                  : "no checkpoint yet";
            const head = `${result.entries} entries, ${result.checkpoints} checkpoints, signatures ${signatures}, witness ${result.witness}, ${tree}${trust ? `; keys from ${trust.source}` : ""}`;
            if (result.ok && ok)
              return `ok: ${head}${result.uncovered > 0 ? `; ${result.uncovered} entries after the last checkpoint` : ""}${witnessText}`;
            if (result.ok) return `BAD: ${head}${witnessText}`;
            const bad = result.firstBad;
            return `BAD: line ${bad?.line}${bad?.seq !== null && bad?.seq !== undefined ? ` (${bad.kind} seq ${bad.seq})` : ""}: ${bad?.reason}: ${bad?.message}\n${head}`;
          },
        );
        if (!ok) throw new Verdict("audit log does not verify");
      },
    );
  audit
    .command("export")
    .description(
      "write the audit log of a PostgreSQL store as JSON Lines (the file log's format, with its checkpoints and <out>.witness), for `aztp audit verify`",
    )
    .requiredOption(
      "--store <url>",
      "the store: postgres://user@host:port/db (default: AZTP_STORE)",
      process.env.AZTP_STORE,
    )
    .requiredOption("--out <file>", "where to write it (replaced)")
    .action(async (o: { store: string; out: string }) => {
      // Loaded here: every other command starts without pg.
      const { PgAuditLog } = await import("../../store/postgres/audit-log.js");
      const { createPool, isPostgresUrl } = await import("../../store/postgres/pool.js");
      if (!isPostgresUrl(o.store))
        throw usage("--store must be a postgres:// URL (a home's audit log is JSON Lines already: verify it as it is)");
      const out = resolve(o.out);
      const conn = createPool(o.store, { max: 1 });
      try {
        // A consistent snapshot of the chain, read as writers go on appending.
        const result = await new PgAuditLog(conn).exportJsonl(out);
        ctx.out(
          { ...result, out, store: conn.location },
          () =>
            `exported ${result.entries} entries and ${result.checkpoints} checkpoints from ${conn.location} to ${out} (up to seq ${result.lastSeq})`,
        );
      } finally {
        await conn.pool.end();
      }
    });
  registerProofs(audit, ctx);
  registerWitness(audit, ctx);
  const auditFilters = (c: Command): Command =>
    c
      .option("--caller <id>", "calls this ID made or claimed to make")
      .option("--verified-only", "only calls whose caller was verified")
      .option("--callee <id>")
      .option("--tool <name>")
      .addOption(new Option("--decision <decision>").choices(["allow", "deny", "audit-only"]))
      .addOption(
        new Option(
          "--outcome <outcome>",
          "interrupted: paused by the framework (a LangGraph interrupt), no result",
        ).choices(["ok", "error", "denied", "interrupted"]),
      )
      .option("--since <time>", "ISO 8601")
      .option("--until <time>", "ISO 8601");
  const normaliseId = (id: string | undefined, option: string): string | undefined => {
    if (id === undefined) return undefined;
    try {
      return SpiffeId.parse(id).toString();
    } catch (e) {
      throw usage(`${option} must be a SPIFFE or AZTP ID: ${(e as Error).message}`);
    }
  };
  // A claimed caller is whatever a refused token said ("unknown", a malformed ID): it is
  // matched as written when it is not a valid ID.
  const callerFilter = (id: string): string => {
    try {
      return SpiffeId.parse(id).toString();
    } catch {
      return id;
    }
  };
  auditFilters(
    audit
      .command("query <files...>")
      .description(
        "entries matching every filter, oldest first; with several logs, each entry says which file it is from",
      ),
  )
    .option("--person <person>", "calls made for this person: ISSUER#SUBJECT, or a subject alone (at any provider)")
    .option(
      "--tool-call-id <id>",
      "one tool call, by its framework id (a LangChain tool-call id), in the caller's log and the callee's",
    )
    .option(
      "--trace-id <id>",
      "one call, or one agent run, by its W3C trace ID (32 hex digits): its entries in every log given",
    )
    .option("--limit <n>", "at most this many per log")
    .action(
      async (
        files: string[],
        o: {
          caller?: string;
          verifiedOnly?: boolean;
          callee?: string;
          tool?: string;
          toolCallId?: string;
          traceId?: string;
          person?: string;
          decision?: "allow" | "deny" | "audit-only";
          outcome?: AuditOutcome;
          since?: string;
          until?: string;
          limit?: string;
        },
      ) => {
        const limit = o.limit === undefined ? undefined : Number(o.limit);
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 0))
          throw usage("--limit must be a whole number");
        const query = {
          ...(o.caller ? { caller: callerFilter(o.caller) } : {}),
          ...(o.verifiedOnly ? { callerVerified: true } : {}),
          ...(o.callee ? { callee: normaliseId(o.callee, "--callee") as string } : {}),
          ...(o.tool ? { tool: o.tool } : {}),
          ...(o.toolCallId ? { toolCallId: o.toolCallId } : {}),
          ...(o.traceId ? { traceId: traceIdOption(o.traceId) } : {}),
          ...(o.person ? { person: o.person } : {}),
          ...(o.decision ? { decision: o.decision } : {}),
          ...(o.outcome ? { outcome: o.outcome } : {}),
          ...(o.since ? { since: parseTime(o.since, "--since") as Date } : {}),
          ...(o.until ? { until: parseTime(o.until, "--until") as Date } : {}),
          ...(limit !== undefined ? { limit } : {}),
        };
        if (files.length === 1) {
          const entries = await queryAuditLog(resolve(files[0] as string), query);
          ctx.out(entries, () => entries.map(describeEntry).join("\n") || "(no entries)");
          return;
        }
        // Several logs (a caller's and a callee's): each entry names its file.
        const found: Array<AuditEntry & { file: string }> = [];
        for (const file of files)
          for (const entry of await queryAuditLog(resolve(file), query)) found.push({ ...entry, file });
        ctx.out(found, () => found.map((e) => `${e.file}: ${describeEntry(e)}`).join("\n") || "(no entries)");
      },
    );
  audit
    .command("tail <file>")
    .description("the last entries")
    .option("-n, --lines <n>", "how many", "10")
    .action(async (file: string, o: { lines: string }) => {
      const n = Number(o.lines);
      if (!Number.isInteger(n) || n < 0) throw usage("--lines must be a whole number");
      const all = await queryAuditLog(resolve(file));
      const entries = n === 0 ? [] : all.slice(-n);
      ctx.out(entries, () => entries.map(describeEntry).join("\n") || "(no entries)");
    });
  audit
    .command("stats <file>")
    .description("who called what: counts by caller, callee, tool and decision")
    .action(async (file: string) => {
      const stats = await auditStats(resolve(file));
      ctx.out(stats, () =>
        [
          `${stats.entries} entries, ${stats.checkpoints} checkpoints, ${stats.firstTime ?? "-"} .. ${stats.lastTime ?? "-"}`,
          `decisions: allow ${stats.decisions.allow}, deny ${stats.decisions.deny}, audit-only ${stats.decisions["audit-only"]}`,
          `outcomes: ok ${stats.outcomes.ok}, error ${stats.outcomes.error}, denied ${stats.outcomes.denied}, interrupted ${stats.outcomes.interrupted}, none ${stats.outcomes.none}`,
          `callers: ${stats.callers.verified} verified, ${stats.callers.claimed} claimed only (not verified)`,
          ...stats.calls.map(
            (c) =>
              `${String(c.total).padStart(6)}  ${callerText(c)} -> ${c.callee} ${c.tool}  (allow ${c.decisions.allow}, deny ${c.decisions.deny}, audit-only ${c.decisions["audit-only"]})`,
          ),
        ].join("\n"),
      );
    });
  registerAuditView(audit, ctx, auditTrustSource);
}

/** A trace ID as entries record it: W3C's 32 lower-case hex digits (given in either case). */
function traceIdOption(id: string): string {
  const lower = id.toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(lower)) throw usage("--trace-id must be a W3C trace ID: 32 hex digits");
  return lower;
}

function describeEntry(e: AuditEntry): string {
  const onBehalf =
    e.delegation && e.delegation.length > 0
      ? ` on behalf of ${[...e.delegation].reverse().join(" on behalf of ")}`
      : "";
  const call = e.toolCallId ? ` [call ${e.toolCallId}]` : "";
  const span = e.traceId !== undefined && e.spanId !== undefined ? ` [trace ${e.traceId} span ${e.spanId}]` : "";
  const person = e.person !== undefined ? ` for ${e.person}` : "";
  const approved = e.approvedBy !== undefined ? ` approved by ${e.approvedBy} at ${e.approvedAt ?? "?"}` : "";
  return `${e.seq} ${e.time} ${e.side} ${e.decision}${e.reason ? `(${e.reason})` : ""} ${callerText(e)}${onBehalf}${person} -> ${e.callee} ${e.tool} ${e.outcome ?? ""}${call}${span}${approved}`.trimEnd();
}

/** A caller for people: a claimed one is never shown as if it had been verified. */
function callerText(e: { caller: string; callerVerified: boolean }): string {
  return e.callerVerified ? e.caller : `${e.caller} (claimed, not verified)`;
}
