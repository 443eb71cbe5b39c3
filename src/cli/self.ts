/**
 * How to start this very CLI again from anywhere: what a host's configuration file needs to
 * spawn `aztp mcp bridge` (hosts start servers with a PATH of their own, from a folder of their
 * own, so neither `aztp` nor `npx` on the PATH, nor a relative path, can be relied on).
 */
import { realpathSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";

/** A module given to `--import` as Node would find it from anywhere: absolute. */
function absoluteModule(specifier: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return specifier; // file:, data:, node: URLs stand alone
  if (specifier.startsWith(".") || isAbsolute(specifier)) return pathToFileURL(resolve(specifier)).href;
  // A bare name (tsx, when run from a clone): found beside this package, as it was at this start.
  return import.meta.resolve(specifier);
}

/**
 * `node` (this process's own binary), the flags this process was started with (a module given
 * to `--import` made absolute), and the real path of the script it runs: from an installed
 * package, `dist/cli/main.js` (the `aztp` bin's target, symlinks resolved); from a clone,
 * `src/cli/main.ts` with tsx's loader.
 */
export function selfCommand(): { command: string; args: string[] } {
  const script = process.argv[1];
  if (script === undefined) throw new Error("cannot tell which script this process runs");
  const flags: string[] = [];
  const exec = process.execArgv;
  for (let i = 0; i < exec.length; i++) {
    const flag = exec[i] as string;
    const inline = /^--import=(.*)$/.exec(flag);
    if (inline) flags.push(`--import=${absoluteModule(inline[1] as string)}`);
    else if (flag === "--import" && i + 1 < exec.length) flags.push(flag, absoluteModule(exec[++i] as string));
    else flags.push(flag);
  }
  return { command: process.execPath, args: [...flags, realpathSync(script)] };
}
