#!/usr/bin/env node
/**
 * `aztp`: the command line for the embedded authority and for verifying SVIDs offline.
 * Every command takes --json and --home. Exit codes: 0 success (or valid), 1 a negative
 * verdict or a failed operation, 2 a usage error (exit.ts).
 *
 * One module per command group (commands/), registered in the order `aztp --help` lists them.
 */
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { register as authority } from "./commands/authority.js";
import { register as audit } from "./commands/audit.js";
import { register as issuer } from "./commands/issuer.js";
import { register as mcp } from "./commands/mcp.js";
import { register as policy } from "./commands/policy.js";
import { register as registry } from "./commands/registry.js";
import { register as serve } from "./commands/serve.js";
import { register as apikey } from "./commands/apikey.js";
import { register as verify } from "./commands/verify.js";
import { register as workload } from "./commands/workload.js";
import { register as workloadApi } from "./commands/workload-api.js";
import { cliContext } from "./context.js";
import { exitCodeOf } from "./exit.js";

/** This package's version: package.json sits two folders up from both src/cli and dist/cli. */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: unknown;
    };
    return typeof pkg.version === "string" ? pkg.version : "unknown";
  } catch {
    return "unknown";
  }
}

export function buildProgram(): Command {
  const program = new Command("aztp")
    .description("AZTP: SPIFFE identities for AI agents and tools, signed tool calls, audit")
    .version(packageVersion(), "-V, --version", "print the version")
    .option("--home <dir>", "the authority's folder (else AZTP_HOME, else ./.aztp)")
    .option("--json", "print JSON")
    .showHelpAfterError()
    .exitOverride();
  const ctx = cliContext(program);
  for (const group of [authority, verify, registry, policy, issuer, audit, mcp, serve, apikey, workload, workloadApi])
    group(program, ctx);
  return program;
}

/** Runs the CLI and returns the exit code (never throws). */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    return exitCodeOf(e, argv.includes("--json"));
  }
}

const invokedDirectly = process.argv[1] !== undefined && /(?:^|[\\/])(main\.[jt]s|aztp)$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
