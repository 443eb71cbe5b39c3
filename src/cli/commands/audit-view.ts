/**
 * `aztp audit view [LOG...]`: a local page that verifies as it shows (docs/audit.md, "Looking at
 * the audit"). LOG is a file, a folder (its `*.jsonl` logs, and those that appear later) or a
 * glob in its last part; the default is `<home>/audit/`. `--store URL` views a PostgreSQL
 * store's shared log instead, through the snapshot `aztp audit export` writes, taken again as
 * the store moves on.
 *
 * The trust source is `aztp audit verify`'s, by the same rules: `--bundle FILE`, else the
 * authority in `--home`, else a usage error saying what to pass; `--no-signatures` only when
 * asked, and the page says so on every log. Everything that can be wrong with the command line
 * or the logs is found before the URL is printed; the URL (with its one-time token) is then the
 * first line on stdout, and the command runs until SIGTERM or SIGINT (exit 0).
 */
import { existsSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import type { CheckpointVerifier } from "../../audit/checkpoint.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import type { Trust } from "../../invocation/trust.js";
import { isLoopbackHost } from "../../net/loopback.js";
import { startAuditViewer } from "../../viewer/server.js";
import { logsIn, type LogTrust } from "../../viewer/watcher.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { waitForSignal } from "../signals.js";

/** How `aztp audit verify` finds the trust source for a log (audit.ts), passed in to keep one copy of the rule. */
export type AuditTrustSource = (
  path: string,
  witnessPath: string | false | undefined,
  bundleFile: string | undefined,
  ctx: CliContext,
) => Promise<{ verifier: CheckpointVerifier; source: string; trust: Trust }>;

interface ViewOptions {
  store?: string;
  bundle?: string;
  signatures: boolean;
  witness: boolean;
  host: string;
  port: string;
}

export function registerAuditView(audit: Command, ctx: CliContext, trustSource: AuditTrustSource): void {
  audit
    .command("view [logs...]")
    .description(
      "a local page that verifies as it shows: each log's verdict first, one row per call joined across logs, filters, charts, each entry's token and receipt checked, live as the logs grow",
    )
    .option("--store <url>", "view the shared audit log of a PostgreSQL store (postgres://...) instead of files")
    .option(
      "--bundle <file>",
      "check signatures against this trust bundle (SPIFFE bundle JSON or PEM roots), as `aztp audit verify` does",
    )
    .option("--no-signatures", "do not check who signed the checkpoints and tokens; the page says so on every log")
    .option("--no-witness", "verify each log alone, without its <log>.witness")
    .option("--host <host>", "the loopback address to listen on", "127.0.0.1")
    .option("--port <port>", "the port (0: a free one)", "0")
    .addHelpText(
      "after",
      "\nLOG: a log file, a folder of *.jsonl logs, or a glob in the last part of a path (default: <home>/audit/).\n" +
        "The first line on stdout is the URL to open; it carries a one-time token that opens one browser session.",
    )
    .action(async (logs: string[], o: ViewOptions) => {
      if (o.bundle !== undefined && !o.signatures) throw usage("give --bundle or --no-signatures, not both");
      if (o.store !== undefined && logs.length > 0) throw usage("give LOG... or --store, not both");
      if (!isLoopbackHost(o.host))
        throw usage(
          `--host must be a loopback address (127.0.0.1, ::1, localhost): the page is for this machine only, not ${JSON.stringify(o.host)}`,
        );
      if (!/^\d{1,5}$/.test(o.port) || Number(o.port) > 65535)
        throw usage(`--port must be a port number, got ${JSON.stringify(o.port)}`);

      const cleanup: Array<() => Promise<void> | void> = [];
      try {
        const sources =
          o.store !== undefined
            ? await storeSnapshot(o.store, cleanup)
            : { ...resolveLogs(logs, ctx), nameOf: undefined, refresh: undefined, title: undefined };
        // Trust sources first: a missing one is a usage error before anything is served.
        const trusts = new Map<string, LogTrust | null>();
        const trustFor = async (path: string): Promise<LogTrust | null> => {
          const known = trusts.get(path);
          if (known !== undefined) return known;
          const witnessPath = o.witness ? undefined : false;
          const found = o.signatures ? await trustSource(path, witnessPath, o.bundle, ctx) : null;
          trusts.set(path, found);
          return found;
        };
        const initial = [...sources.files];
        for (const folder of sources.folders) initial.push(...(await logsIn(folder)));
        if (o.signatures && initial.length === 0) await trustFor(join(sources.folders[0] ?? ".", "none.jsonl"));
        for (const path of initial) await trustFor(path);

        const viewer = await startAuditViewer({
          files: sources.files,
          folders: sources.folders,
          trustFor,
          witness: o.witness,
          host: o.host,
          port: Number(o.port),
          title: sources.title ?? [...sources.files, ...sources.folders].join(", "),
          ...(sources.nameOf !== undefined ? { nameOf: sources.nameOf } : {}),
          ...(sources.refresh !== undefined ? { refresh: sources.refresh } : {}),
        });
        cleanup.unshift(() => viewer.close());
        process.stdout.write(`${viewer.url}\n`);
        process.stderr.write(`aztp audit view: verifying ${initial.length} log${initial.length === 1 ? "" : "s"}...\n`);
        const started = performance.now();
        const stopped = waitForSignal();
        await Promise.race([viewer.ready, stopped]);
        if (viewer.watcher.ready) {
          for (const log of viewer.watcher.logs) {
            const v = log.verdict?.result;
            const verdict = log.ok ? "ok" : `FAILS: ${v?.firstBad?.message ?? log.error ?? "see the page"}`;
            process.stderr.write(`  ${log.name}: ${verdict} (${v?.entries ?? 0} entries)\n`);
          }
          process.stderr.write(
            `aztp audit view: ready, ${viewer.watcher.index.size} calls, verified in ${Math.round(performance.now() - started)} ms${o.signatures ? "" : "; signatures NOT checked (--no-signatures)"}\n`,
          );
        }
        await stopped;
      } finally {
        for (const step of cleanup) await step();
      }
    });
}

/** LOG arguments as files and folders (the default `<home>/audit/`); a missing one fails here. */
function resolveLogs(logs: readonly string[], ctx: CliContext): { files: string[]; folders: string[] } {
  const files: string[] = [];
  const folders: string[] = [];
  const given = logs.length > 0 ? logs : [join(ctx.home(), "audit")];
  for (const arg of given) {
    const path = resolve(arg);
    if (/[*?[]/.test(basename(path))) {
      if (/[*?[]/.test(dirname(path))) throw usage(`${arg}: a glob may only be in the last part of the path`);
      const matched = globInFolder(dirname(path), basename(path));
      if (matched.length === 0) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `no audit log matches ${arg}`);
      files.push(...matched);
      continue;
    }
    let isDir: boolean;
    try {
      isDir = statSync(path).isDirectory();
    } catch {
      throw new AztpError(
        ErrorCodes.AUDIT_IO_FAILED,
        logs.length > 0
          ? `no audit log at ${path}`
          : `no audit folder at ${path}: give LOG... (files, folders or globs), --home DIR, or --store URL`,
      );
    }
    (isDir ? folders : files).push(path);
  }
  return { files: [...new Set(files)], folders: [...new Set(folders)] };
}

/** The files of `folder` whose names match `pattern` (`*` any run of characters, `?` one, `[...]` a set). */
function globInFolder(folder: string, pattern: string): string[] {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "[") {
      const end = pattern.indexOf("]", i + 1);
      if (end < 0) throw usage(`${pattern}: unclosed [ in the glob`);
      const set = pattern
        .slice(i + 1, end)
        .replace(/^!/, "^")
        .replace(/[\\\]]/g, "\\$&");
      source += `[${set}]`;
      i = end;
    } else source += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  const re = new RegExp(`^${source}$`);
  let names: string[];
  try {
    names = statSync(folder).isDirectory() ? readdirSync(folder) : [];
  } catch {
    return [];
  }
  return names
    .filter((n) => re.test(n) && !n.endsWith(".witness"))
    .sort()
    .map((n) => join(folder, n))
    .filter((p) => {
      try {
        return statSync(p).isFile();
      } catch {
        return false;
      }
    });
}

/**
 * A PostgreSQL store's shared log, as `aztp audit export` writes it (one consistent snapshot,
 * its checkpoints and witness), into a private folder; exported again (and swapped in whole)
 * when the store's head moves, which the viewer reads as a rewritten file and verifies again.
 */
async function storeSnapshot(
  url: string,
  cleanup: Array<() => Promise<void> | void>,
): Promise<{
  files: string[];
  folders: string[];
  nameOf: (path: string) => string | undefined;
  refresh: () => Promise<void>;
  title: string;
}> {
  // Loaded here: every other command starts without pg.
  const { PgAuditLog } = await import("../../store/postgres/audit-log.js");
  const { createPool, isPostgresUrl } = await import("../../store/postgres/pool.js");
  if (!isPostgresUrl(url)) throw usage("--store must be a postgres:// URL (a home's logs are files: give them as LOG)");
  const conn = createPool(url, { max: 1 });
  cleanup.push(() => conn.pool.end());
  const dir = mkdtempSync(join(tmpdir(), "aztp-view-"));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "store.jsonl");
  const log = new PgAuditLog(conn);
  let exported = await log.exportJsonl(path);
  let next = 0;
  let lastCheck = 0;
  const refresh = async (): Promise<void> => {
    if (performance.now() - lastCheck < 2_000) return;
    lastCheck = performance.now();
    const head = await log.head();
    if (head.seq === exported.lastSeq && head.hash === exported.head) return;
    // Exported beside it, then renamed over it: the viewer never reads a half-written snapshot.
    const fresh = join(dir, `store.${++next}.jsonl`);
    const result = await log.exportJsonl(fresh);
    // The log first: an older witness names a checkpoint the newer log still holds.
    renameSync(fresh, path);
    if (existsSync(`${fresh}.witness`)) renameSync(`${fresh}.witness`, `${path}.witness`);
    exported = result;
  };
  return {
    files: [path],
    folders: [],
    nameOf: () => `${conn.location} (audit)`,
    refresh,
    title: `${conn.location} (audit)`,
  };
}
