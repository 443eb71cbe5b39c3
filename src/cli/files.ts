/**
 * The files the `aztp` command reads and writes. Every failure names the path and the OS's
 * reason (ERR_FILE_UNUSABLE, exit 1), and nothing that exists is overwritten unless the user
 * said --force (ERR_FILE_EXISTS, exit 1): `aztp issue` run twice in one folder used to replace
 * the key.pem of the first identity without a word.
 */
import { closeSync, fchmodSync, fstatSync, lstatSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { AztpError, ErrorCodes } from "../errors.js";
import { makeDirs } from "../make-dirs.js";

/**
 * Inputs are certificates, bundles, tokens and policy documents: 16 MiB is far above any of
 * them, and keeps `--bundle /dev/zero` (or a huge file given by mistake) from eating memory.
 */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/**
 * An OS error as Node words it ("ENOENT: no such file or directory, mkdir '/proc/nope'"), always
 * starting with its code.
 */
export function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const message = (e as Error)?.message ?? String(e);
  return code && !message.startsWith(code) ? `${code}: ${message}` : message;
}

function unusable(what: string, path: string, e: unknown): AztpError {
  return new AztpError(ErrorCodes.FILE_UNUSABLE, `cannot ${what} ${path}: ${describeFsError(e)}`, { cause: e });
}

/**
 * Reads a text input: a file (regular, or a pipe such as `<(cat svid.pem)`), or `-` for
 * stdin. A folder, an unreadable file or one over MAX_INPUT_BYTES is ERR_FILE_UNUSABLE.
 *
 * Stdin is read as a stream, not with readFileSync(0): once anything has touched
 * process.stdin (the MCP SDK imports node:process, whose ESM namespace reads every getter),
 * a pipe on fd 0 is non-blocking, and a synchronous read of a pipe with nothing in it yet
 * fails with EAGAIN (`slow | aztp verify jwt -` did).
 */
export async function readInput(pathOrDash: string): Promise<string> {
  if (pathOrDash === "-") return readStdin();
  const label = resolve(pathOrDash);
  let fd: number;
  try {
    fd = openSync(pathOrDash, "r");
  } catch (e) {
    throw unusable("read", label, e);
  }
  try {
    if (fstatSync(fd).isDirectory())
      throw Object.assign(new Error("it is a folder, a file was expected"), { code: "EISDIR" });
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_INPUT_BYTES) throw tooLarge();
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks).toString("utf8");
  } catch (e) {
    throw unusable("read", label, e);
  } finally {
    closeSync(fd);
  }
}

function tooLarge(): Error {
  return new Error(
    `larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB, which no certificate, bundle, token or policy is`,
  );
}

function readStdin(): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stdin = process.stdin;
    const fail = (e: unknown): void => {
      stdin.off("data", onData).off("end", onEnd).off("error", fail);
      stdin.pause();
      reject(unusable("read", "stdin", e));
    };
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > MAX_INPUT_BYTES) fail(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = (): void => resolvePromise(Buffer.concat(chunks).toString("utf8"));
    stdin.on("data", onData).once("end", onEnd).once("error", fail);
  });
}

/** Creates the output folder `dir` (and its parents) or fails naming it; returns its absolute path. */
export function outputDir(dir: string): string {
  const abs = resolve(dir);
  try {
    makeDirs(abs);
  } catch (e) {
    throw unusable("create the folder", abs, e);
  }
  return abs;
}

/** Fails with ERR_FILE_EXISTS naming the first of `names` that exists in `dir`, unless `force`. */
export function refuseOverwrite(dir: string, names: readonly string[], force: boolean): void {
  if (force) return;
  for (const name of names) {
    const path = join(dir, name);
    let exists = true;
    try {
      lstatSync(path); // a symlink counts, dangling or not: O_EXCL below would refuse it too
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw unusable("check", path, e);
      exists = false;
    }
    if (exists) throw new AztpError(ErrorCodes.FILE_EXISTS, `${path} already exists: pass --force to overwrite it`);
  }
}

/**
 * Writes a set of new files into `dir`, each created with O_CREAT|O_EXCL (`wx`) so that no
 * existing file, and no symlink planted there, is ever written through; with `force` an
 * existing one is removed first (a fresh inode, so an old world-readable key.pem never holds
 * the new key, even for a moment). If any write fails, the files this call created are removed
 * again, so a failed `issue` leaves nothing half-written behind.
 */
export function writeNewFiles(
  dir: string,
  files: ReadonlyArray<{ name: string; text: string; mode?: number }>,
  force: boolean,
): void {
  const created: string[] = [];
  try {
    for (const f of files) {
      const path = join(dir, f.name);
      const mode = f.mode ?? 0o644;
      if (force) {
        try {
          rmSync(path, { force: true });
        } catch (e) {
          throw unusable("replace", path, e);
        }
      }
      let fd: number;
      try {
        fd = openSync(path, "wx", mode);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST")
          throw new AztpError(ErrorCodes.FILE_EXISTS, `${path} already exists: pass --force to overwrite it`, {
            cause: e,
          });
        throw unusable("create", path, e);
      }
      created.push(path);
      try {
        fchmodSync(fd, mode); // the umask narrowed it, or (0600 keys) must not have widened it
        writeSync(fd, f.text);
      } catch (e) {
        throw unusable("write", path, e);
      } finally {
        closeSync(fd);
      }
    }
  } catch (e) {
    for (const path of created) rmSync(path, { force: true });
    throw e;
  }
}
