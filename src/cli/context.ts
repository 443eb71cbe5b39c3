/**
 * What every command group shares: the global options (--home, --json), the home they name,
 * and printing a result (JSON with --json, else for people).
 */
import { resolve } from "node:path";
import type { Command } from "commander";

export interface GlobalOptions {
  home?: string;
  json?: boolean;
}

export interface CliContext {
  /** The global options, as parsed: read them in an action, once the command line is. */
  options(): GlobalOptions;
  /** The authority's folder: --home, else AZTP_HOME, else ./.aztp. */
  home(): string;
  /** Prints `value` as JSON with --json, else `human()`, on stdout. */
  out(value: unknown, human: () => string): void;
}

export function homeOf(opts: GlobalOptions): string {
  return resolve(opts.home ?? process.env.AZTP_HOME ?? ".aztp");
}

/** The context of `program`'s commands (its global options are read when asked for). */
export function cliContext(program: Command): CliContext {
  const options = (): GlobalOptions => program.opts<GlobalOptions>();
  return {
    options,
    home: () => homeOf(options()),
    out(value, human) {
      process.stdout.write(options().json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
  };
}
