#!/usr/bin/env node
/**
 * `aztp`: the command line for the embedded authority and for verifying SVIDs offline.
 * Every command takes --json and --home. Exit codes: 0 success (or valid), 1 a negative
 * verdict or a failed operation, 2 a usage error.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { Command, CommanderError, Option } from "commander";
import { EmbeddedAuthority, DEFAULT_ENVIRONMENT, DEFAULT_METHOD, MAX_JWT_SVID_TTL_SECONDS } from "../authority/authority.js";
import { verifyRevocationList } from "../authority/revocation-list.js";
import type { IdentityRecord } from "../authority/registry.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { BundleSet, loadBundleFile } from "../spiffe/bundle.js";
import { Certificate } from "../spiffe/certificate.js";
import { generateWorkloadKey } from "../spiffe/csr.js";
import { validateJwtSvid } from "../spiffe/jwtsvid.js";
import { exportPrivateKeyPem } from "../spiffe/keys.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { verifyX509Svid } from "../spiffe/x509svid.js";
import { parseDuration } from "./duration.js";
import { outputDir, readInput, refuseOverwrite, writeNewFiles } from "./files.js";
import { parseArgsStringToArgv } from "string-argv";
import { AuditLog } from "../audit/log.js";
import type { AuditEntry } from "../audit/entry.js";
import { auditStats, queryAuditLog } from "../audit/query.js";
import { verifyAuditLog } from "../audit/verify.js";
import type { CheckpointVerifier } from "../audit/checkpoint.js";
import { scanLines } from "../audit/lines.js";
import { defaultWitnessPath, readWitness } from "../audit/witness.js";
import { Trust } from "../invocation/trust.js";
import { Aztp } from "../client/aztp.js";
import { svidCheckpointSigner, svidCheckpointVerifier } from "../invocation/checkpoint.js";
import { defaultAllowedHosts } from "../mcp/http.js";
import { startMcpProxy, type Upstream } from "../mcp/proxy.js";
import { parsePolicy } from "../policy/policy.js";
import { policyRequest } from "../policy/request.js";
import { evaluatePolicies } from "../policy/evaluate.js";

interface GlobalOptions {
  home?: string;
  json?: boolean;
}

/** Thrown for a negative verdict (exit 1) as opposed to a usage error (exit 2). */
class Verdict extends Error {}

function homeOf(opts: GlobalOptions): string {
  return resolve(opts.home ?? process.env.AZTP_HOME ?? ".aztp");
}

function out(opts: GlobalOptions, value: unknown, human: () => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

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

/** An identity given by AZTP/SPIFFE ID or by name. */
function resolveIdentity(authority: EmbeddedAuthority, ref: string): IdentityRecord {
  if (ref.includes("://")) return authority.get(ref);
  const rec = authority.findByName(ref);
  if (!rec) throw new AztpError(ErrorCodes.IDENTITY_NOT_FOUND, `no identity named ${JSON.stringify(ref)}`);
  return rec;
}

/** An option that must hold a JSON object; anything else is a usage error (exit 2). */
function jsonObjectOption(name: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw usage(`${name} must be a JSON object`);
  return value as Record<string, unknown>;
}

/** A usage error: exit 2, the message on stderr (and in --json). Everything else that fails exits 1. */
function usage(message: string): CommanderError {
  return new CommanderError(2, "aztp.usage", message);
}

function parseTime(text: string | undefined, option = "--time"): Date | undefined {
  if (text === undefined) return undefined;
  const t = new Date(text);
  if (Number.isNaN(t.getTime())) throw usage(`${option} must be an ISO 8601 date, got ${JSON.stringify(text)}`);
  return t;
}

/** A duration option (90s, 15m, 1h, 7d) in seconds; a malformed one is a usage error. */
function durationOption(option: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw usage(`${option}: ${(e as Error).message}`);
  }
}

/** This package's version: package.json sits two folders up from both src/cli and dist/cli. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

export function buildProgram(): Command {
  const program = new Command("aztp")
    .description("AZTP: SPIFFE identities for AI agents and tools, signed tool calls, audit")
    .version(packageVersion(), "-V, --version", "print the version")
    .option("--home <dir>", "the authority's folder (else AZTP_HOME, else ./.aztp)")
    .option("--json", "print JSON")
    .showHelpAfterError()
    .exitOverride();
  const g = (): GlobalOptions => program.opts<GlobalOptions>();

  program
    .command("init")
    .description("create a trust domain: root CA, intermediate, JWT key, empty registry")
    .requiredOption("--trust-domain <td>", "the trust domain, e.g. example.org")
    .action(async (o: { trustDomain: string }) => {
      const a = await EmbeddedAuthority.init(homeOf(g()), o.trustDomain);
      out(g(), { home: a.home, trustDomain: a.defaultTrustDomain }, () => `initialised trust domain ${a.defaultTrustDomain} in ${a.home}`);
    });

  program
    .command("issue <name>")
    .description("issue an X.509-SVID for NAME; writes svid.pem, key.pem, bundle.pem, bundle.json (never over existing ones without --force)")
    .option("--parent <id>", "parent identity (AZTP or SPIFFE ID)")
    .option("--ttl <duration>", "SVID lifetime, e.g. 1h", "1h")
    .option("--out <dir>", "where to write the files", ".")
    .option("--force", "overwrite svid.pem, key.pem, bundle.pem and bundle.json if they exist")
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .option("--environment <env>", "path segment after workload/", DEFAULT_ENVIRONMENT)
    .option("--method <method>", "path segment after the environment", DEFAULT_METHOD)
    .action(async (name: string, o: { parent?: string; ttl: string; out: string; force?: boolean; trustDomain?: string; environment: string; method: string }) => {
      const ttlSeconds = durationOption("--ttl", o.ttl);
      // The folder and the files are checked before anything is issued: a refusal leaves the
      // registry as it was. writeNewFiles checks again, atomically, as it creates each file.
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const dir = outputDir(o.out);
      refuseOverwrite(dir, ["key.pem", "svid.pem", "bundle.pem", "bundle.json"], o.force === true);
      const key = await generateWorkloadKey();
      const { record, svid } = await a.issueIdentity(
        { name, environment: o.environment, method: o.method, ...(o.trustDomain ? { trustDomain: o.trustDomain } : {}), ...(o.parent ? { parentIdentity: o.parent } : {}) },
        key.csr,
        { ttlSeconds },
      );
      const bundle = a.bundle(record.trustDomain);
      writeNewFiles(
        dir,
        [
          // The key first: if it cannot be created (it appeared meanwhile), nothing else is written.
          { name: "key.pem", text: exportPrivateKeyPem(key.privateKey), mode: 0o600 },
          { name: "svid.pem", text: svid.chainPem },
          { name: "bundle.pem", text: bundle.toPem() },
          { name: "bundle.json", text: `${JSON.stringify(bundle.toSpiffe(), null, 2)}\n` },
        ],
        o.force === true,
      );
      out(
        g(),
        { aztpId: record.aztpId, spiffeId: record.spiffeId, serial: svid.serial, expiresAt: svid.notAfter.toISOString(), dir },
        () => `${record.aztpId}\n${record.spiffeId}\nserial ${svid.serial}, expires ${svid.notAfter.toISOString()}\nwrote svid.pem key.pem bundle.pem bundle.json to ${dir}`,
      );
    });

  program
    .command("jwt <name>")
    .description("print a JWT-SVID for NAME (a name or an ID)")
    .requiredOption("--audience <aud...>", "audience(s)")
    .option("--ttl <duration>", "lifetime", "5m")
    .action(async (name: string, o: { audience: string[]; ttl: string }) => {
      const ttl = durationOption("--ttl", o.ttl);
      // The option's range, checked as one: a usage error like any malformed --ttl.
      if (ttl > MAX_JWT_SVID_TTL_SECONDS) throw usage(`--ttl: a JWT-SVID lives at most ${MAX_JWT_SVID_TTL_SECONDS} s (24 h), got ${ttl} s`);
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const rec = resolveIdentity(a, name);
      const token = a.mintJwtSvid(rec.spiffeId, o.audience, ttl);
      out(g(), { token, spiffeId: rec.spiffeId }, () => token);
    });

  program
    .command("bundle")
    .description("print the trust bundle")
    .addOption(new Option("--format <format>", "output format").choices(["spiffe", "pem"]).default("spiffe"))
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .action(async (o: { format: "spiffe" | "pem"; trustDomain?: string }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const b = a.bundle(o.trustDomain ?? a.defaultTrustDomain);
      if (o.format === "pem") process.stdout.write(b.toPem());
      else process.stdout.write(`${JSON.stringify(b.toSpiffe(), null, 2)}\n`);
    });

  const revocations = program.command("revocations").description("the authority's signed revocation list, for verifiers that hold only the bundle");
  revocations
    .command("export")
    .description("print the signed revocation list (a compact JWS, signed with the trust domain's JWT key); aztp verify x509 --revocations FILE applies it")
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .action(async (o: { trustDomain?: string }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const td = o.trustDomain === undefined ? a.defaultTrustDomain : TrustDomain.parse(o.trustDomain).name;
      a.bundle(td); // ERR_TRUST_DOMAIN_NOT_ALLOWED for a trust domain this authority does not have
      const list = a.signedRevocationList(td);
      out(g(), { trustDomain: td, sequence: a.revocationSequence(), revocations: list }, () => list);
    });

  const verify = program.command("verify").description("verify an SVID offline against a bundle");
  verify
    .command("x509 <cert>")
    .description(
      "verify an X.509-SVID chain (PEM, leaf first). Offline, against a bundle alone, it cannot see revocations (and says so): " +
        "--home DIR checks them against that authority, --revocations FILE against its signed list (aztp revocations export)",
    )
    .requiredOption("--bundle <file>", "SPIFFE bundle JSON or PEM roots")
    .option("--revocations <file>", "the authority's signed revocation list (aztp revocations export), checked against --bundle")
    .option("--time <iso8601>", "validate as of this time")
    .action(async (cert: string, o: { bundle: string; revocations?: string; time?: string }) => {
      const time = parseTime(o.time);
      const chain = Certificate.parsePem(await readInput(cert));
      const leafTd = leafTrustDomain(chain);
      const source = new BundleSet([loadBundleFile(await readInput(o.bundle), leafTd)]);
      const result = verifyX509Svid(chain, source, time ? { time } : {});
      const serial = (chain[0] as Certificate).serialNumber;
      // --home given on the command line (not AZTP_HOME or ./.aztp): verifying needs no home,
      // so one found by default would be a guess at which authority's revocations apply.
      const revocation = await checkRevocation({ ...(g().home !== undefined ? { home: homeOf(g()) } : {}), ...(o.revocations ? { list: o.revocations } : {}) }, source, result.id, serial);
      const value = { valid: true, spiffeId: result.id.toString(), aztpId: result.id.aztpId, serial, expiresAt: result.notAfter.toISOString(), revocation };
      out(g(), value, () => `valid: ${value.spiffeId} (until ${value.expiresAt}); ${describeRevocation(revocation)}`);
    });
  verify
    .command("jwt <token>")
    .description("verify a JWT-SVID (pass - to read it from stdin)")
    .requiredOption("--bundle <file>", "SPIFFE bundle JSON")
    .requiredOption("--audience <aud...>", "expected audience(s): any one must match")
    .option("--time <iso8601>", "validate as of this time")
    .action(async (token: string, o: { bundle: string; audience: string[]; time?: string }) => {
      const time = parseTime(o.time);
      const text = (token === "-" ? await readInput("-") : token).trim();
      const source = new BundleSet([loadBundleFile(await readInput(o.bundle))]);
      const svid = validateJwtSvid(text, source, { audience: o.audience, ...(time ? { time } : {}) });
      const value = { valid: true, spiffeId: svid.id.toString(), aztpId: svid.id.aztpId, audience: svid.audience, expiresAt: svid.expiry.toISOString() };
      out(g(), value, () => `valid: ${value.spiffeId} for ${value.audience.join(", ")} (until ${value.expiresAt})`);
    });

  program
    .command("id <string>")
    .description("parse a SPIFFE or AZTP ID and print its normalised forms")
    .action((s: string) => {
      const id = SpiffeId.parse(s);
      out(g(), { spiffeId: id.toString(), aztpId: id.aztpId, trustDomain: id.trustDomain, path: id.path }, () => `${id.toString()}\n${id.aztpId}`);
    });

  program
    .command("list")
    .description("list identities")
    .option("--trust-domain <td>")
    .addOption(new Option("--status <status>").choices(["active", "revoked"]))
    .action(async (o: { trustDomain?: string; status?: "active" | "revoked" }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const recs = a.list({ ...o, ...(o.trustDomain !== undefined ? { trustDomain: TrustDomain.parse(o.trustDomain).name } : {}) }).map(summary);
      out(g(), recs, () => recs.map((r) => `${String(r.status).padEnd(8)} ${String(r.aztpId)}`).join("\n") || "(no identities)");
    });

  program
    .command("revoke <id>")
    .description("revoke an identity and every descendant")
    .option("--reason <text>", "why", "unspecified")
    .action(async (id: string, o: { reason: string }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const revoked = await a.revoke(resolveIdentity(a, id).spiffeId, o.reason);
      out(g(), { revoked, sequence: a.revocationSequence() }, () => revoked.map((r) => `revoked ${r}`).join("\n") || "already revoked");
    });

  program
    .command("reissue <id>")
    .description("restore a revoked identity (its holder then renews its SVID)")
    .action(async (id: string) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const rec = await a.reissue(resolveIdentity(a, id).spiffeId);
      out(g(), summary(rec), () => `restored ${rec.aztpId}`);
    });

  program
    .command("link <source> <target>")
    .description("link SOURCE to TARGET (type parent: TARGET becomes SOURCE's parent)")
    .addOption(new Option("--type <type>").choices(["linked", "parent"]).default("linked"))
    .option("--metadata <json>", "JSON object stored on the link", "{}")
    .action(async (source: string, target: string, o: { type: "linked" | "parent"; metadata: string }) => {
      const metadata = jsonObjectOption("--metadata", o.metadata);
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const l = await a.link(resolveIdentity(a, source).spiffeId, resolveIdentity(a, target).spiffeId, o.type, metadata);
      out(g(), l, () => `${source} -[${l.type}]-> ${l.target}`);
    });

  program
    .command("discover")
    .description("list active, discoverable identities")
    .option("--trust-domain <td>")
    .action(async (o: { trustDomain?: string }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const td = o.trustDomain === undefined ? undefined : TrustDomain.parse(o.trustDomain).name;
      const recs = a.list({ status: "active" }).filter((r) => (td ? r.trustDomain === td : r.isGlobalIdentity || r.trustDomain === a.defaultTrustDomain)).map(summary);
      out(g(), recs, () => recs.map((r) => String(r.aztpId)).join("\n") || "(none)");
    });

  const policy = program.command("policy").description("attach, show and check AZTP policies");
  policy
    .command("attach <id> <file>")
    .description("attach the policy document in FILE (JSON) to identity ID")
    .option("--name <name>", "a name for the policy")
    .action(async (id: string, file: string, o: { name?: string }) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const entry = await a.attachPolicy(resolveIdentity(a, id).spiffeId, await readInput(file), o.name);
      out(g(), { code: entry.code, policyName: entry.policyName }, () => `attached ${entry.code} (${entry.policyName})`);
    });
  policy
    .command("get <id>")
    .description("show the policies attached to ID")
    .action(async (id: string) => {
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const rec = resolveIdentity(a, id);
      const data = rec.policies.map((p) => ({ code: p.code, policyName: p.policyName, policyStatement: p.policyStatement }));
      out(g(), { data }, () => data.map((p) => `${p.code} ${p.policyName}\n${JSON.stringify(p.policyStatement, null, 2)}`).join("\n") || "(no policies)");
    });
  policy
    .command("check <id>")
    .description("decide a request against ID's policies; exit 1 when denied")
    .requiredOption("--action <action>", 'e.g. "tool:call"')
    .option("--resource <resource>", "e.g. a tool name", "*")
    .option("--principal <id>", "the caller (default: ID itself)")
    .option("--code <code>", "only the policy with this code")
    .option("--context <json>", 'more condition keys, as a JSON object: the application\'s own, or one to simulate, e.g. {"aztp:sourceIp":"10.1.2.3"}', "{}")
    .option("--time <iso8601>", "decide as of this time (aztp:currentTime, aztp:epochTime)")
    .action(async (id: string, o: { action: string; resource: string; principal?: string; code?: string; context: string; time?: string }) => {
      const extra = jsonObjectOption("--context", o.context);
      const now = parseTime(o.time);
      const a = await EmbeddedAuthority.open(homeOf(g()));
      const rec = resolveIdentity(a, id);
      const principal = o.principal ? SpiffeId.parse(o.principal).toString() : rec.spiffeId;
      // The request as the verifier builds it for a direct call of tool RESOURCE on ID.
      const request = policyRequest({ principal, action: o.action, resource: o.resource, callee: rec.spiffeId, tool: o.resource, relations: (p) => a.relations(p), now, extra });
      // A key the request builds is never replaced by --context (the builder's rule): said, not
      // silently ignored, so nobody reads a decision as one about a context they did not get.
      for (const [k, v] of Object.entries(extra)) {
        if (request.context?.[k] !== v) throw usage(`--context cannot set ${k}: the request builds it (from ID, --principal, --resource, --time and the registry)`);
      }
      const decision = evaluatePolicies(a.policiesOf(rec.spiffeId, o.code), request);
      out(g(), decision, () => `${decision.decision} (${decision.reason}${decision.statement !== undefined ? `, statement ${decision.statement}` : ""})`);
      if (decision.decision !== "allow") throw new Verdict("denied");
    });

  const audit = program.command("audit").description("read and verify audit logs (JSON Lines)");
  audit
    .command("verify <file>")
    .description("check the hash chain, checkpoint signatures and the witness; exit 1 naming the first bad entry")
    .option("--bundle <file>", "check checkpoint signatures against this trust bundle (SPIFFE bundle JSON or PEM roots, as `aztp verify` takes them)")
    .option("--no-signatures", "do not check who signed the checkpoints (the chain and the witness are still checked); the verdict says so")
    .option("--witness <file>", "the witness file (default: <file>.witness)")
    .option("--no-witness", "verify the log alone")
    .action(async (file: string, o: { bundle?: string; signatures: boolean; witness?: string | false }) => {
      if (o.bundle !== undefined && !o.signatures) throw new CommanderError(2, "aztp.usage", "give --bundle or --no-signatures, not both");
      const path = resolve(file);
      const witnessPath = o.witness === false ? false : o.witness ? resolve(o.witness) : undefined;
      // No verdict without a key: signatures are checked against a bundle or an authority,
      // or the user says explicitly that they are not to be.
      const trust = o.signatures ? await auditTrustSource(path, witnessPath, o.bundle, g()) : null;
      if (!existsSync(path)) throw new AztpError(ErrorCodes.AUDIT_IO, `no audit log at ${path}`);
      const result = await verifyAuditLog(path, {
        ...(trust ? { verifier: trust.verifier, verifierSource: trust.source } : {}),
        ...(witnessPath !== undefined ? { witnessPath } : {}),
      });
      const signatures = trust ? "checked" : "NOT checked (--no-signatures)";
      out(g(), { ...result, signatures: trust ? "checked" : "skipped", trustSource: trust?.source ?? null }, () => {
        const head = `${result.entries} entries, ${result.checkpoints} checkpoints, signatures ${signatures}, witness ${result.witness}${trust ? `; keys from ${trust.source}` : ""}`;
        if (result.ok) return `ok: ${head}${result.uncovered > 0 ? `; ${result.uncovered} entries after the last checkpoint` : ""}`;
        const bad = result.firstBad;
        return `BAD: line ${bad?.line}${bad?.seq !== null && bad?.seq !== undefined ? ` (${bad.kind} seq ${bad.seq})` : ""}: ${bad?.reason}: ${bad?.message}\n${head}`;
      });
      if (!result.ok) throw new Verdict("audit log does not verify");
    });
  const auditFilters = (c: Command): Command =>
    c
      .option("--caller <id>", "calls this ID made or claimed to make")
      .option("--verified-only", "only calls whose caller was verified")
      .option("--callee <id>")
      .option("--tool <name>")
      .addOption(new Option("--decision <decision>").choices(["allow", "deny", "audit-only"]))
      .option("--since <time>", "ISO 8601")
      .option("--until <time>", "ISO 8601");
  const normaliseId = (id: string | undefined, option: string): string | undefined => {
    if (id === undefined) return undefined;
    try {
      return SpiffeId.parse(id).toString();
    } catch (e) {
      throw new CommanderError(2, "aztp.usage", `${option} must be a SPIFFE or AZTP ID: ${(e as Error).message}`);
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
  auditFilters(audit.command("query <files...>").description("entries matching every filter, oldest first; with several logs, each entry says which file it is from"))
    .option("--tool-call-id <id>", "one tool call, by its framework id (a LangChain tool-call id), in the caller's log and the callee's")
    .option("--limit <n>", "at most this many per log")
    .action(async (files: string[], o: { caller?: string; verifiedOnly?: boolean; callee?: string; tool?: string; toolCallId?: string; decision?: "allow" | "deny" | "audit-only"; since?: string; until?: string; limit?: string }) => {
      const limit = o.limit === undefined ? undefined : Number(o.limit);
      if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new CommanderError(2, "aztp.usage", "--limit must be a whole number");
      const query = {
        ...(o.caller ? { caller: callerFilter(o.caller) } : {}),
        ...(o.verifiedOnly ? { callerVerified: true } : {}),
        ...(o.callee ? { callee: normaliseId(o.callee, "--callee") as string } : {}),
        ...(o.tool ? { tool: o.tool } : {}),
        ...(o.toolCallId ? { toolCallId: o.toolCallId } : {}),
        ...(o.decision ? { decision: o.decision } : {}),
        ...(o.since ? { since: parseTime(o.since, "--since") as Date } : {}),
        ...(o.until ? { until: parseTime(o.until, "--until") as Date } : {}),
        ...(limit !== undefined ? { limit } : {}),
      };
      if (files.length === 1) {
        const entries = await queryAuditLog(resolve(files[0] as string), query);
        out(g(), entries, () => entries.map(describeEntry).join("\n") || "(no entries)");
        return;
      }
      // Several logs (a caller's and a callee's): each entry names its file.
      const found: Array<AuditEntry & { file: string }> = [];
      for (const file of files) for (const entry of await queryAuditLog(resolve(file), query)) found.push({ ...entry, file });
      out(g(), found, () => found.map((e) => `${e.file}: ${describeEntry(e)}`).join("\n") || "(no entries)");
    });
  audit
    .command("tail <file>")
    .description("the last entries")
    .option("-n, --lines <n>", "how many", "10")
    .action(async (file: string, o: { lines: string }) => {
      const n = Number(o.lines);
      if (!Number.isInteger(n) || n < 0) throw new CommanderError(2, "aztp.usage", "--lines must be a whole number");
      const all = await queryAuditLog(resolve(file));
      const entries = n === 0 ? [] : all.slice(-n);
      out(g(), entries, () => entries.map(describeEntry).join("\n") || "(no entries)");
    });
  audit
    .command("stats <file>")
    .description("who called what: counts by caller, callee, tool and decision")
    .action(async (file: string) => {
      const stats = await auditStats(resolve(file));
      out(g(), stats, () =>
        [
          `${stats.entries} entries, ${stats.checkpoints} checkpoints, ${stats.firstTime ?? "-"} .. ${stats.lastTime ?? "-"}`,
          `decisions: allow ${stats.decisions.allow}, deny ${stats.decisions.deny}, audit-only ${stats.decisions["audit-only"]}`,
          `callers: ${stats.callers.verified} verified, ${stats.callers.claimed} claimed only (not verified)`,
          ...stats.calls.map(
            (c) =>
              `${String(c.total).padStart(6)}  ${callerText(c)} -> ${c.callee} ${c.tool}  (allow ${c.decisions.allow}, deny ${c.decisions.deny}, audit-only ${c.decisions["audit-only"]})`,
          ),
        ].join("\n"),
      );
    });

  const mcp = program.command("mcp").description("secure MCP servers");
  mcp
    .command("proxy")
    .description("a secured MCP server in front of an unmodified upstream MCP server")
    .requiredOption("--name <name>", "the proxy's identity name")
    .option("--upstream-command <cmd>", 'spawn the upstream over stdio, e.g. "npx -y @modelcontextprotocol/server-filesystem /data"')
    .option("--upstream-url <url>", "reach the upstream over Streamable HTTP")
    .option("--upstream-env <KEY=VALUE...>", "environment for a spawned upstream (it gets nothing else of ours)")
    .option("--listen <where>", "stdio, or http://127.0.0.1:PORT", "stdio")
    .option("--policy <file>", "AZTP policy document (JSON) deciding who may call which tool")
    .addOption(new Option("--mode <mode>").choices(["enforce", "audit"]).default("enforce"))
    .option("--audit-log <file>", "append-only audit log (JSON Lines); default <home>/audit/<name>.jsonl")
    .option("--no-audit", "keep no audit log (said at start; calls are then not recorded)")
    .addOption(new Option("--audit-durability <mode>", "write: answer once the entry is written to the file (survives a killed process); fsync: once it is on disk (survives a power loss)").choices(["write", "fsync"]).default("write"))
    .option("--filter-tools", "show each authenticated caller only the tools its policy allows")
    .option("--allowed-host <name...>", "with --listen http: also accept these host names in Host and Origin (default: loopback names and the --listen host)")
    .action(async (o: { name: string; upstreamCommand?: string; upstreamUrl?: string; upstreamEnv?: string[]; listen: string; policy?: string; mode: "enforce" | "audit"; auditLog?: string; audit: boolean; auditDurability: "write" | "fsync"; filterTools?: boolean; allowedHost?: string[] }) => {
      if (o.auditLog !== undefined && !o.audit) throw new CommanderError(2, "aztp.usage", "--audit-log and --no-audit exclude each other");
      if (!o.upstreamCommand === !o.upstreamUrl) throw new CommanderError(2, "aztp.usage", "give exactly one of --upstream-command and --upstream-url");
      if (o.listen !== "stdio" && !/^http:\/\/[^/]+(?::\d+)?(?:\/.*)?$/.test(o.listen)) throw new CommanderError(2, "aztp.usage", "--listen must be stdio or http://HOST:PORT");
      if (o.allowedHost && o.listen === "stdio") throw new CommanderError(2, "aztp.usage", "--allowed-host applies to --listen http://HOST:PORT only");
      for (const name of o.allowedHost ?? []) {
        // A bare host name as it appears in Host (IPv6 in brackets), without scheme, port or path.
        let parsed: string | undefined;
        try {
          parsed = new URL(`http://${name}`).hostname;
        } catch {
          parsed = undefined;
        }
        if (parsed !== name.toLowerCase()) throw new CommanderError(2, "aztp.usage", `--allowed-host takes a host name such as tools.example.com or [::1], got ${JSON.stringify(name)}`);
      }
      const env: Record<string, string> = {};
      for (const kv of o.upstreamEnv ?? []) {
        const eq = kv.indexOf("=");
        if (eq < 1) throw new CommanderError(2, "aztp.usage", `--upstream-env takes KEY=VALUE, got ${JSON.stringify(kv)}`);
        env[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      let upstream: Upstream;
      if (o.upstreamCommand) {
        const [command, ...args] = parseArgsStringToArgv(o.upstreamCommand);
        if (!command) throw new CommanderError(2, "aztp.usage", "--upstream-command is empty");
        upstream = { command, args, env };
      } else upstream = { url: o.upstreamUrl as string };
      const policies = o.policy ? [parsePolicy(await readInput(o.policy))] : undefined;
      const client = new Aztp({ home: homeOf(g()) });
      // The log's folder is made here, with a mkdir that cannot spin (make-dirs.ts), so that an
      // unusable --audit-log fails at once naming it: the log's own recursive mkdir never
      // settles on a path under /proc.
      if (o.auditLog) outputDir(dirname(resolve(o.auditLog)));
      const durability = { durability: o.auditDurability } as const;
      const audit = !o.audit
        ? false
        : o.auditLog
          ? await AuditLog.open(resolve(o.auditLog), { ...durability, signer: svidCheckpointSigner(await proxyIdentity(client, o.name)) })
          : durability;
      const proxy = await startMcpProxy({
        client,
        name: o.name,
        upstream,
        listen: o.listen,
        mode: o.mode,
        ...(policies ? { policy: policies } : {}),
        audit,
        ...(o.filterTools ? { filterToolsByPolicy: true } : {}),
        ...(o.allowedHost ? { allowedHosts: [...defaultAllowedHosts(o.listen), ...o.allowedHost.map((h) => h.toLowerCase())] } : {}),
      });
      // SIGINT and SIGTERM stop the proxy and its upstream; a stop asked for exits 0. Nothing
      // may keep the process once told to stop: a second signal has its default effect (the
      // listener is gone), and a stop still running after 10 s (an upstream that ignores both
      // its closed stdin and SIGTERM is SIGKILLed after 4 s) ends the process anyway.
      const onSignal = (signal: NodeJS.Signals): void => {
        process.stderr.write(`aztp mcp proxy: ${signal}, stopping\n`);
        setTimeout(() => {
          process.stderr.write("aztp mcp proxy: not stopped within 10 s of the signal; exiting\n");
          process.exit(1);
        }, 10_000).unref();
        void proxy.close();
      };
      // Listening before the start is announced: whoever waits for the announcement to stop us
      // must find the stop handled, not the default of a signal that kills.
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      // stdout belongs to MCP in stdio mode: everything for people goes to stderr.
      process.stderr.write(`aztp mcp proxy ${proxy.identity.aztpId} (${o.mode}) ${proxy.url ? `listening on ${proxy.url.href}` : "on stdio"}\n`);
      // Said at start, so nobody runs a proxy believing its calls are on record when they are not.
      process.stderr.write(
        proxy.audit
          ? `aztp mcp proxy: audit log ${proxy.audit.path}\naztp mcp proxy: each answer waits for its audit entry (--audit-durability ${o.auditDurability})\n`
          : "aztp mcp proxy: no audit log (--no-audit): calls are not recorded\n",
      );
      // An upstream that exits while the client is still there (at start: a missing folder, a
      // bad command) ends the proxy with its failure: said, with what it printed, and exit 1.
      const failure = await proxy.closed;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await proxy.audit?.close?.().catch(() => undefined);
      await client.close();
      if (failure) throw failure;
    });

  return program;
}

function describeEntry(e: AuditEntry): string {
  const onBehalf = e.delegation && e.delegation.length > 0 ? ` on behalf of ${[...e.delegation].reverse().join(" on behalf of ")}` : "";
  const call = e.toolCallId ? ` [call ${e.toolCallId}]` : "";
  return `${e.seq} ${e.time} ${e.side} ${e.decision}${e.reason ? `(${e.reason})` : ""} ${callerText(e)}${onBehalf} -> ${e.callee} ${e.tool} ${e.outcome ?? ""}${call}`.trimEnd();
}

/** A caller for people: a claimed one is never shown as if it had been verified. */
function callerText(e: { caller: string; callerVerified: boolean }): string {
  return e.callerVerified ? e.caller : `${e.caller} (claimed, not verified)`;
}

/** The proxy's identity, issued before the audit log opens so checkpoints can be signed by it. */
async function proxyIdentity(client: Aztp, name: string) {
  return (await client.secureConnect({}, name)).identity;
}

/**
 * What `aztp audit verify` checks checkpoint signatures against: the bundle in `bundleFile`
 * (parsed as `aztp verify` parses it; its trust domain is the one the log's checkpoints are
 * signed in, when the log names one), else the authority in the home. With neither it is a
 * usage error that says what to pass: a verdict of "ok" must never rest on unchecked signatures.
 */
async function auditTrustSource(
  path: string,
  witnessPath: string | false | undefined,
  bundleFile: string | undefined,
  opts: GlobalOptions,
): Promise<{ verifier: CheckpointVerifier; source: string }> {
  const revocation = { isRevoked: () => false }; // a checkpoint stays valid after its signer is revoked
  if (bundleFile !== undefined) {
    const file = resolve(bundleFile);
    const td = existsSync(path) ? await checkpointTrustDomain(path, witnessPath) : undefined;
    const bundle = loadBundleFile(await readInput(bundleFile), td);
    return { verifier: svidCheckpointVerifier(new Trust(new BundleSet([bundle]), { revocation })), source: `bundle ${file}` };
  }
  const home = homeOf(opts);
  if (existsSync(join(home, "authority.json"))) {
    const authority = await EmbeddedAuthority.open(home);
    return { verifier: svidCheckpointVerifier(new Trust(authority, { revocation })), source: `the authority in ${home}` };
  }
  throw new CommanderError(
    2,
    "aztp.usage",
    `no trust source to check checkpoint signatures against (no authority in ${home}): pass --bundle FILE (a SPIFFE bundle JSON or PEM roots), ` +
      "or --home DIR of the authority that issued the writer's SVID, or --no-signatures to check the chain without them",
  );
}

/** The trust domain the log's checkpoints are signed in: from its witness, else its first checkpoint. */
async function checkpointTrustDomain(path: string, witnessPath: string | false | undefined): Promise<string | undefined> {
  let signer: string | undefined;
  if (witnessPath !== false) signer = (await readWitness(witnessPath ?? defaultWitnessPath(path)).catch(() => null))?.signer;
  if (signer === undefined) {
    await scanLines(path, (line) => {
      if (!line.includes('"checkpoint"')) return true;
      try {
        const value = JSON.parse(line) as { type?: unknown; signer?: unknown };
        if (value.type === "checkpoint" && typeof value.signer === "string") signer = value.signer;
      } catch {
        // verification reports it
      }
      return signer === undefined;
    }).catch(() => undefined);
  }
  try {
    return signer === undefined ? undefined : SpiffeId.parse(signer).trustDomain;
  } catch {
    return undefined;
  }
}

type RevocationCheck = { checked: false; why: string } | { checked: true; against: string; sequence: number; listIssuedAt?: string };

/**
 * Whether `id` (SVID serial `serial`) is revoked, per the authority in `home` and/or the
 * signed list in file `list` (verified against `bundles`). Revoked is ERR_X509SVID_REVOKED.
 * With neither, nothing is checked and the result says so: an offline verifier holding only
 * the bundle cannot know about revocations, and must not let "valid" suggest it does.
 */
async function checkRevocation(from: { home?: string; list?: string }, bundles: BundleSet, id: SpiffeId, serial: string): Promise<RevocationCheck> {
  if (from.home === undefined && from.list === undefined) return { checked: false, why: "offline: pass --home DIR or --revocations FILE" };
  const revoked = (why: string, against: string): never => {
    throw new AztpError(ErrorCodes.X509SVID_REVOKED, `${id.toString()} is revoked (${why}) according to ${against}`);
  };
  let result: RevocationCheck | undefined;
  if (from.home !== undefined) {
    const a = await EmbeddedAuthority.open(from.home);
    if (!a.trustDomains.includes(id.trustDomain)) {
      throw new AztpError(ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED, `cannot check revocations in ${from.home}: its authority has no trust domain ${id.trustDomain}`);
    }
    const against = `the authority in ${from.home}`;
    if (a.isRevoked(id.toString(), serial)) revoked(a.isRevoked(id.toString()) ? "its identity, or an ancestor's" : `its serial ${serial}`, against);
    result = { checked: true, against, sequence: a.revocationSequence() };
  }
  if (from.list !== undefined) {
    const list = verifyRevocationList(await readInput(from.list), bundles, { trustDomain: id.trustDomain });
    const against = `the revocation list of ${list.trustDomain} in ${resolve(from.list)} (sequence ${list.sequence}, signed ${list.issuedAt.toISOString()})`;
    const why = list.revoked(id.toString(), serial);
    if (why !== undefined) revoked(why === "serial" ? `its serial ${serial}` : "its identity, or an ancestor's", against);
    result = { checked: true, against: result?.checked ? `${result.against} and ${against}` : against, sequence: list.sequence, listIssuedAt: list.issuedAt.toISOString() };
  }
  return result as RevocationCheck;
}

function describeRevocation(r: RevocationCheck): string {
  return r.checked ? `not revoked according to ${r.against}` : `revocation NOT checked (${r.why})`;
}

function leafTrustDomain(chain: Certificate[]): string | undefined {
  const uri = chain[0]?.uriSans[0];
  if (uri === undefined) return undefined;
  try {
    return SpiffeId.parse(uri).trustDomain;
  } catch {
    return undefined;
  }
}

/** Runs the CLI and returns the exit code (never throws). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes("--json");
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
      // Help the user asked for exits 0; help shown because a (sub)command is missing went to
      // stderr with exit code 1 from commander, and is a usage error here like any other.
      if (e.code === "commander.help" && e.exitCode === 0) return 0;
      const message = e.code === "commander.help" ? "a command is missing (see the usage above)" : e.message.replace(/^error: /, "");
      if (e.code === "aztp.usage") process.stderr.write(`error: ${e.message}\n`);
      // Scripts reading --json get the usage error on stdout too, in the same shape as others.
      if (json) process.stdout.write(`${JSON.stringify({ error: { code: ErrorCodes.INVALID_ARGUMENT, message } }, null, 2)}\n`);
      return 2;
    }
    if (e instanceof Verdict) return 1; // the verdict was already printed
    // Usage errors were raised above, as CommanderErrors, by the argument checks themselves.
    // Whatever fails past them is the command failing (exit 1), with its code, whatever that
    // code is: an ERR_INVALID_ARGUMENT from the library (a file, an upstream) is not a usage
    // error of the command line, and used to exit 2 as if it were.
    const err = e instanceof AztpError ? e : new AztpError(ErrorCodes.UNEXPECTED, (e as Error)?.message ?? String(e));
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } }, null, 2)}\n`);
    else process.stderr.write(`error [${err.code}]: ${err.message}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && /(?:^|[\\/])(main\.[jt]s|aztp)$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
