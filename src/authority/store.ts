/**
 * The embedded authority's home folder: atomic JSON files, 0600 secrets, and a cross-process
 * lock so two processes sharing one home never interleave writes.
 *
 * Writes go to a temporary file that is fsync'ed and renamed over the target, then the folder
 * is fsync'ed: a crash leaves either the old or the new file, never a torn one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeSync, existsSync, chmodSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import lockfile from "proper-lockfile";
import { AztpError, ErrorCodes } from "../errors.js";

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

  ensureDir(...parts: string[]): void {
    mkdirSync(this.path(...parts), { recursive: true, mode: 0o700 });
  }

  /**
   * Runs `fn` holding the home's lock. proper-lockfile uses an atomic mkdir and refreshes the
   * lock's mtime while held, so a crashed holder's lock goes stale (10 s) and is taken over.
   */
  async withLock<T>(fn: () => Promise<T> | T): Promise<T> {
    this.ensureDir();
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.home, {
        lockfilePath: this.path(".lock"),
        realpath: false,
        stale: 10_000,
        retries: { retries: 400, factor: 1.2, minTimeout: 5, maxTimeout: 100, randomize: true },
      });
    } catch (e) {
      throw new AztpError(ErrorCodes.AUTHORITY_STORE, `cannot lock the authority home ${this.home}: ${(e as Error).message}`, { cause: e });
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
      throw new AztpError(ErrorCodes.AUTHORITY_STORE, `cannot read ${this.path(...parts)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
    }
  }

  readJson<T>(...parts: string[]): T {
    const text = this.readText(...parts);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new AztpError(ErrorCodes.AUTHORITY_STORE, `${this.path(...parts)} is not valid JSON (corrupted?)`, { cause: e });
    }
  }

  /** Identity of the file's current version: changes whenever another process replaces it. */
  version(...parts: string[]): string | undefined {
    try {
      const st = statSync(this.path(...parts));
      return `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      return undefined;
    }
  }

  writeText(parts: string[], text: string, mode = 0o644): void {
    const target = this.path(...parts);
    mkdirSync(dirname(target), { recursive: true, mode: 0o700 });
    const tmp = `${target}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const fd = openSync(tmp, "wx", mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode); // the umask may have narrowed or widened nothing we rely on
    renameSync(tmp, target);
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
