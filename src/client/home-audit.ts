/**
 * The audit log a secured wrapper keeps when it is not told otherwise: `<home>/audit/<name>.jsonl`
 * in its identity's home, checkpoints signed by that identity. Secure by default (DESIGN §11):
 * a wrapper someone forgot to configure still records every call; keeping none is asked for
 * with `audit: false`, and said once at start.
 *
 * One writer per file: every wrapper of this process under one name (a Streamable HTTP server
 * builds a server per session) shares one open log. Another process under the same name in the
 * same home (two MCP clients each spawning the same stdio server, say) finds that log locked
 * and takes the first free of `<name>.2.jsonl`, `<name>.3.jsonl`, ... instead, saying so: a
 * fixed, small set of files, each one chain with one writer at a time.
 */
import { join, sep } from "node:path";
import { isLockHeld } from "../audit/lock.js";
import { AuditLog, type AuditLogOptions } from "../audit/log.js";
import { svidCheckpointSigner } from "../invocation/checkpoint.js";
import type { AuditWriter } from "../audit/writer.js";
import type { AgentIdentity } from "./identity.js";

/**
 * How the default log is opened (the file log's own options, as `AuditLog` documents them);
 * the first wrapper to open a name decides for that process.
 */
export type HomeAuditOptions = Pick<AuditLogOptions, "durability" | "includeArgs" | "redactFields">;

/** A wrapper's `audit` option: a log of your own, `false` for none, or how to open the default one. */
export type AuditOption = AuditWriter | false | HomeAuditOptions;

const open = new Map<string, Promise<AuditLog>>();
const saidOff = new Set<string>();

/** Processes that may share one name in one home before opening fails. */
const MAX_SIBLINGS = 16;

/** Where the default log of `identity` lives (`sibling` > 1: the one another process took first). */
function homeAuditPath(identity: AgentIdentity, sibling = 1): string {
  return join(identity.home, "audit", sibling === 1 ? `${identity.name}.jsonl` : `${identity.name}.${sibling}.jsonl`);
}

async function openFirstFree(identity: AgentIdentity, options: AuditLogOptions): Promise<AuditLog> {
  for (let sibling = 1; ; sibling++) {
    try {
      const log = await AuditLog.open(homeAuditPath(identity, sibling), options);
      if (sibling > 1)
        process.emitWarning(
          `aztp: ${homeAuditPath(identity)} is open in another process; ${identity.aztpId} records into ${log.path}`,
          { code: "AZTP_AUDIT_SIBLING" },
        );
      return log;
    } catch (e) {
      if (!isLockHeld(e) || sibling === MAX_SIBLINGS) throw e;
    }
  }
}

function isWriter(option: AuditOption): option is AuditWriter {
  return typeof (option as AuditWriter).append === "function";
}

/**
 * The log a wrapper named `what` (e.g. "secureMcpServer") records into: the one given, none
 * (`false`, said once per identity and wrapper), or the identity's default log, opened once.
 */
export async function auditFor(
  identity: AgentIdentity,
  option: AuditOption | undefined,
  what: string,
): Promise<AuditWriter | undefined> {
  if (option === false) {
    const key = `${what} ${identity.aztpId}`;
    if (!saidOff.has(key)) {
      saidOff.add(key);
      process.emitWarning(
        `aztp: ${what} ${identity.aztpId} keeps no audit log (audit: false): its calls are not recorded`,
        { code: "AZTP_AUDIT_OFF" },
      );
    }
    return undefined;
  }
  if (option !== undefined && isWriter(option)) return option;
  const path = homeAuditPath(identity);
  let log = open.get(path);
  if (log === undefined) {
    log = openFirstFree(identity, { ...(option ?? {}), signer: svidCheckpointSigner(identity) });
    open.set(path, log);
    // A failed open is not remembered: the next wrapper tries again.
    log.catch(() => open.delete(path));
  }
  return log;
}

/**
 * Closes every default log opened under `home` by this process, each with a last signed
 * checkpoint, so a short-lived process leaves its tail covered (a log checkpoints every 1000
 * entries or 60 s otherwise). A wrapper that records after this gets ERR_AUDIT_CLOSED, and in
 * enforce mode refuses its calls.
 */
export async function closeHomeAudits(home: string): Promise<void> {
  const prefix = join(home, "audit") + sep;
  const closing: Promise<void>[] = [];
  for (const [path, log] of open) {
    if (!path.startsWith(prefix)) continue;
    open.delete(path);
    closing.push(
      log.then(
        (l) => l.close(),
        () => undefined,
      ),
    );
  }
  await Promise.all(closing);
}
