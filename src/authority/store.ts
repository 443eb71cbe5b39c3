/**
 * The embedded authority's home folder: atomic JSON files, 0600 secrets, and a cross-process
 * lock so two processes sharing one home never interleave writes.
 *
 * Writes go to a temporary file that is fsync'ed and renamed over the target, then the folder
 * is fsync'ed: a crash leaves either the old or the new file, never a torn one.
 */
import {
  closeSync,
  fsyncSync,
  fstatSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
  existsSync,
  chmodSync,
} from "node:fs";
import { LRUCache } from "lru-cache";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import lockfile from "proper-lockfile";
import { AztpError, ErrorCodes } from "../errors.js";
import { makeDirs } from "../make-dirs.js";

/**
 * proper-lockfile's exit hook, held only while a lock is.
 *
 * proper-lockfile calls signal-exit when it loads, for the whole life of the process, so that
 * a lock is removed when the process ends. signal-exit does that by listening for SIGTERM,
 * SIGINT, SIGHUP and a dozen more signals. A signal that has a JavaScript listener no longer
 * kills the process: Node runs the listener when the event loop next turns, which it never
 * does while the main thread is stuck in a synchronous call. So any process that had merely
 * imported the authority ignored SIGTERM and SIGINT whenever it hung: `aztp issue --out
 * /proc/nope` spun inside Node's recursive mkdir (see make-dirs.ts) and `timeout` could not
 * stop it, only SIGKILL.
 *
 * The hook is therefore unloaded as soon as proper-lockfile has loaded, and loaded again only
 * while this process holds (or is acquiring) a home lock: the signals have their default,
 * immediate effect the rest of the time, and a process signalled while it holds a lock still
 * removes it (else the next process would wait out the 10 s stale time). The module is the
 * very instance proper-lockfile loaded (resolved from proper-lockfile's own folder); if a later
 * proper-lockfile uses a signal-exit without load/unload, this does nothing and the test of a
 * busy process ending on SIGTERM fails.
 */
const lockExitHook = ((): { load(): void; unload(): void } | undefined => {
  try {
    const fromLockfile = createRequire(createRequire(import.meta.url).resolve("proper-lockfile"));
    const hook = fromLockfile("signal-exit") as { load?: unknown; unload?: unknown };
    return typeof hook.load === "function" && typeof hook.unload === "function"
      ? (hook as { load(): void; unload(): void })
      : undefined;
  } catch {
    return undefined;
  }
})();
lockExitHook?.unload();
/** Locks this process holds or is acquiring (over every home): the hook is loaded while > 0. */
let locksInPlay = 0;

export class HomeStore {
  readonly home: string;

  constructor(home: string) {
    this.home = home;
  }

  path(...parts: string[]): string {
    return join(this.home, ...parts);
  }

  exists(...parts: string[]): boolean {
    return existsSync(this.path(...parts));
  }

  /** Creates a folder of the home (0700), or fails with ERR_AUTHORITY_STORE_FAILED naming it and why. */
  ensureDir(...parts: string[]): void {
    const dir = this.path(...parts);
    try {
      makeDirs(dir, 0o700);
    } catch (e) {
      throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `cannot create the folder ${dir}: ${describeFsError(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * Runs `fn` holding the home's lock. proper-lockfile uses an atomic mkdir and refreshes the
   * lock's mtime while held, so a crashed holder's lock goes stale (10 s) and is taken over.
   */
  async withLock<T>(fn: () => Promise<T> | T): Promise<T> {
    this.ensureDir();
    if (locksInPlay++ === 0) lockExitHook?.load();
    try {
      return await this.locked(fn);
    } finally {
      if (--locksInPlay === 0) lockExitHook?.unload();
    }
  }

  private async locked<T>(fn: () => Promise<T> | T): Promise<T> {
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.home, {
        lockfilePath: this.path(".lock"),
        realpath: false,
        stale: 10_000,
        retries: { retries: 400, factor: 1.2, minTimeout: 5, maxTimeout: 100, randomize: true },
      });
    } catch (e) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_STORE_FAILED,
        `cannot lock the authority home ${this.home}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    try {
      return await fn();
    } finally {
      await release().catch(() => undefined);
    }
  }

  readText(...parts: string[]): string {
    try {
      return readFileSync(this.path(...parts), "utf8");
    } catch (e) {
      throw new AztpError(
        ErrorCodes.AUTHORITY_STORE_FAILED,
        `cannot read ${this.path(...parts)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        { cause: e },
      );
    }
  }

  readJson<T>(...parts: string[]): T {
    const text = this.readText(...parts);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `${this.path(...parts)} is not valid JSON (corrupted?)`, {
        cause: e,
      });
    }
  }

  /** Identity of the file's current version: changes whenever another process replaces it. */
  version(...parts: string[]): string | undefined {
    return fileVersion(this.path(...parts));
  }

  writeText(parts: string[], text: string, mode = 0o644): void {
    const target = this.path(...parts);
    this.ensureDir(...parts.slice(0, -1));
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    try {
      const fd = openSync(tmp, "wx", mode);
      try {
        writeSync(fd, text);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      chmodSync(tmp, mode); // the umask may have narrowed or widened nothing we rely on
      renameSync(tmp, target);
    } catch (e) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // nothing was left, or it cannot be removed either; the error below says why
      }
      throw new AztpError(ErrorCodes.AUTHORITY_STORE_FAILED, `cannot write ${target}: ${describeFsError(e)}`, {
        cause: e,
      });
    }
    try {
      const dfd = openSync(dirname(target), "r");
      try {
        fsyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      // Some filesystems refuse fsync on a directory; the rename is still atomic.
    }
  }

  writeJson(parts: string[], value: unknown, mode = 0o644): void {
    this.writeText(parts, `${JSON.stringify(value, null, 2)}\n`, mode);
  }

  /** Private keys: mode 0600 from the moment the file exists. */
  writeSecret(parts: string[], text: string): void {
    this.writeText(parts, text, 0o600);
  }
}

/**
 * An OS error as Node words it ("ENOENT: no such file or directory, mkdir '/proc/nope'"), always
 * starting with its code.
 */
function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const message = (e as Error)?.message ?? String(e);
  return code && !message.startsWith(code) ? `${code}: ${message}` : message;
}

/**
 * Open descriptors of the files whose version is asked for, one per path per process. An
 * fstat of a held descriptor costs about half a stat of the path here (no path walk), and the
 * registry's version is read on every revocation check. Writers replace a file by rename, so
 * the held inode's link count drops to 0 the moment another version takes its place: then
 * the path is opened afresh. A change made in place (an editor) moves mtime or size. Bounded,
 * so a process that opens many homes holds at most this many descriptors.
 */
const held = new LRUCache<string, number>({ max: 64, dispose: (fd) => closeQuietly(fd) });

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing held
  }
}

function fileVersion(path: string): string | undefined {
  const fd = held.get(path);
  if (fd !== undefined) {
    try {
      const st = fstatSync(fd);
      if (st.nlink > 0) return `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      // fall through to a fresh open
    }
    held.delete(path);
  }
  let opened: number;
  try {
    opened = openSync(path, "r");
  } catch {
    return undefined; // no such file (yet): no version
  }
  try {
    const st = fstatSync(opened);
    held.set(path, opened);
    return `${st.ino}:${st.mtimeMs}:${st.size}`;
  } catch {
    closeQuietly(opened);
    return undefined;
  }
}
