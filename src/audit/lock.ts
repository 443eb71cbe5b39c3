/**
 * One writer per log file, across processes.
 *
 * Two writers appending to one file would interleave lines and fork the hash chain, so the
 * writer holds `<log>.lock` for as long as the log is open. The lock file is created complete
 * (written to a temporary name, then hard-linked into place, which fails if the lock exists):
 * a reader never sees a half-written lock. It names the holder's pid and host; a lock whose
 * process is gone (a crash, a SIGKILL) is stale and is broken on the next open.
 *
 * Limits: a lock from another host cannot be judged and is always treated as held; a pid reused
 * by an unrelated process keeps a stale lock held (remove the file by hand); two processes
 * breaking the same stale lock in the same instant could both proceed (the window is one
 * read-then-unlink).
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { link, readFile, unlink, writeFile } from "node:fs/promises";
import { AztpError, ErrorCodes } from "../errors.js";

export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

interface LockOwner {
  pid: number;
  host: string;
  nonce: string;
}

const heldErrors = new WeakSet<object>();

/**
 * Whether `error` is the refusal of a lock another writer holds (and not some other I/O
 * failure): a caller may then pick another file, as the default logs of client/ do.
 */
export function isLockHeld(error: unknown): boolean {
  return typeof error === "object" && error !== null && heldErrors.has(error);
}

export async function acquireLock(path: string): Promise<FileLock> {
  const me: LockOwner = { pid: process.pid, host: hostname(), nonce: randomBytes(12).toString("hex") };
  const tmp = `${path}.${me.pid}.${me.nonce}.tmp`;
  await writeFile(tmp, `${JSON.stringify(me)}\n`, { mode: 0o600, flag: "wx" }).catch((cause: unknown) => {
    throw ioError(`cannot create lock ${path}`, cause);
  });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, path);
        return { path, release: () => releaseLock(path, me.nonce) };
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(`cannot create lock ${path}`, cause);
      }
      const holderText = await readFile(path, "utf8").catch(() => null);
      if (holderText === null) continue; // released between our link and our read: try again
      const holder = parseOwner(holderText);
      if (attempt === 0 && holder !== null && isStale(holder)) {
        // Break it only if it is still the same stale lock we judged.
        const again = await readFile(path, "utf8").catch(() => null);
        if (again === holderText) await unlink(path).catch(() => undefined);
        continue;
      }
      const who = holder === null ? "an unreadable lock" : `pid ${holder.pid} on ${holder.host}`;
      const held = new AztpError(
        ErrorCodes.AUDIT_IO_FAILED,
        `audit log is already open for writing (${who} holds ${path}); one writer per log file` +
          (holder !== null && holder.pid === process.pid ? " (this process: close the other AuditLog first)" : ""),
      );
      heldErrors.add(held);
      throw held;
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function releaseLock(path: string, nonce: string): Promise<void> {
  const text = await readFile(path, "utf8").catch(() => null);
  // Never remove a lock someone else holds (ours was broken as stale, say).
  if (text !== null && parseOwner(text)?.nonce === nonce) await unlink(path).catch(() => undefined);
}

function parseOwner(text: string): LockOwner | null {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid === "number" && typeof v.host === "string" && typeof v.nonce === "string") {
      return { pid: v.pid, host: v.host, nonce: v.nonce };
    }
  } catch {
    // fall through
  }
  return null;
}

function isStale(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (cause) {
    // EPERM: the process exists but belongs to someone else.
    return (cause as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function ioError(message: string, cause: unknown): AztpError {
  return new AztpError(ErrorCodes.AUDIT_IO_FAILED, `${message}: ${(cause as Error).message}`, { cause });
}
