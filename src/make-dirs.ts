/**
 * `mkdir -p` that cannot spin: creates a folder and its missing parents, one level at a time.
 *
 * Why not `mkdirSync(dir, { recursive: true })`: Node's recursive mkdir (MKDirpSync in
 * node_file.cc, the same in Node 20 and 22) reads ENOENT as "the parent is missing", makes the
 * parent (EEXIST there counts as done) and retries the child, for ever, when the filesystem
 * answers ENOENT for a child of a folder that exists. /proc does exactly that, so
 * `aztp issue NAME --out /proc/nope` spun at 100% CPU inside one synchronous call (and the
 * promise form spins the same in the thread pool, never settling). Here the walk up stops at
 * the first folder that exists, each missing level is made once, and any refusal comes back
 * with the OS's code: the cost is one stat per path level, on paths made once.
 */
import { mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * Creates `dir` (and missing parents) with `mode`; throws the OS error (ENOENT, EACCES, ENOTDIR,
 * ...) naming the level that failed.
 */
export function makeDirs(dir: string, mode = 0o777): void {
  const missing: string[] = [];
  let level = resolve(dir);
  for (;;) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(level).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const parent = dirname(level);
      // dirname shortens the path each turn, so this ends at the root at the latest.
      if (code !== "ENOENT" || parent === level) throw e;
      missing.push(level);
      level = parent;
      continue;
    }
    if (!isDirectory)
      throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${level}'`), {
        code: "ENOTDIR",
        path: level,
        syscall: "mkdir",
      });
    break;
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (e) {
      // Made meanwhile by someone else: fine if it is a folder (a dangling symlink is not).
      if ((e as NodeJS.ErrnoException).code === "EEXIST" && isFolder(d)) continue;
      throw e;
    }
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
