/**
 * How a command ends the CLI: exit 0 on success (or a positive verdict), 1 for a negative
 * verdict (the verdict was printed) or a failed operation, 2 for a usage error.
 */
import { CommanderError } from "commander";
import { AztpError, ErrorCodes } from "../errors.js";

/** Thrown for a negative verdict (exit 1) as opposed to a usage error (exit 2). */
export class Verdict extends Error {}

/** A usage error: exit 2, the message on stderr (and in --json). Everything else that fails exits 1. */
export function usage(message: string): CommanderError {
  return new CommanderError(2, "aztp.usage", message);
}

/** The exit code for what a command threw, with the error printed (on stdout as JSON too, with `json`). */
export function exitCodeOf(e: unknown, json: boolean): number {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return 0;
    // Help the user asked for exits 0; help shown because a (sub)command is missing went to
    // stderr with exit code 1 from commander, and is a usage error here like any other.
    if (e.code === "commander.help" && e.exitCode === 0) return 0;
    const message =
      e.code === "commander.help" ? "a command is missing (see the usage above)" : e.message.replace(/^error: /, "");
    if (e.code === "aztp.usage") process.stderr.write(`error: ${e.message}\n`);
    // Scripts reading --json get the usage error on stdout too, in the same shape as others.
    if (json)
      process.stdout.write(`${JSON.stringify({ error: { code: ErrorCodes.ARGUMENT_INVALID, message } }, null, 2)}\n`);
    return 2;
  }
  if (e instanceof Verdict) return 1; // the verdict was already printed
  // Usage errors were raised above, as CommanderErrors, by the argument checks themselves.
  // Whatever fails past them is the command failing (exit 1), with its code, whatever that
  // code is: an ERR_ARGUMENT_INVALID from the library (a file, an upstream) is not a usage
  // error of the command line, and used to exit 2 as if it were.
  const err = e instanceof AztpError ? e : new AztpError(ErrorCodes.UNEXPECTED, (e as Error)?.message ?? String(e));
  if (json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } }, null, 2)}\n`);
  else process.stderr.write(`error [${err.code}]: ${err.message}\n`);
  return 1;
}
