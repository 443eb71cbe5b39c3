/**
 * `aztp audit witness-key | cosign`: a witness for audit logs (C2SP tlog-cosignature). It keeps
 * an Ed25519 key and, for each log it watches, the newest tree it cosigned; it cosigns a log's
 * newest checkpoint only when the log extends that tree (src/audit/cosigner.ts).
 */
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { cosignerVerifierKey, readCosignerKey } from "../../audit/cosignature.js";
import { cosignaturesPath, cosignLog } from "../../audit/cosigner.js";
import { isKeyName } from "../../audit/signed-note.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { auditTrustSource } from "../audit-trust.js";
import type { CliContext } from "../context.js";
import { usage, Verdict } from "../exit.js";
import { readInput } from "../files.js";

function keyName(name: string): string {
  if (!isKeyName(name))
    throw usage(`--name must be a key name without spaces or "+" (e.g. witness.example/w1), got "${name}"`);
  return name;
}

export function registerWitness(audit: Command, ctx: CliContext): void {
  audit
    .command("witness-key")
    .description("make a witness's Ed25519 key (PKCS#8 PEM, mode 0600) and print its C2SP verifier key (vkey)")
    .requiredOption("--name <name>", "the witness's key name, a schema-less URL (e.g. witness.example/w1)")
    .requiredOption("--out <file>", "where to write the private key (not replaced)")
    .action(async (o: { name: string; out: string }) => {
      const name = keyName(o.name);
      const out = resolve(o.out);
      if (existsSync(out)) throw usage(`${out} exists: a witness key is never replaced`);
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      await writeFile(out, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600, flag: "wx" });
      const vkey = cosignerVerifierKey(name, publicKey).vkey;
      ctx.out({ name, key: out, vkey }, () => vkey);
    });
  audit
    .command("cosign <log>")
    .description(
      "as a witness: verify the log, check that it extends the tree this witness cosigned last, and cosign its newest checkpoint (into <log>.cosignatures)",
    )
    .requiredOption("--key <file>", "the witness's Ed25519 private key (from `aztp audit witness-key`)")
    .requiredOption("--name <name>", "the witness's key name")
    .option("--state <file>", "what this witness cosigned, per log (default: <key>.state.json)")
    .option("--bundle <file>", "verify the log against this trust bundle (else the authority in --home)")
    .action(async (log: string, o: { key: string; name: string; state?: string; bundle?: string }) => {
      const name = keyName(o.name);
      const path = resolve(log);
      if (!existsSync(path)) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `no audit log at ${path}`);
      const key = readCosignerKey(await readInput(o.key));
      const trust = await auditTrustSource(path, undefined, o.bundle, ctx);
      try {
        const done = await cosignLog(path, {
          name,
          key,
          statePath: resolve(o.state ?? `${o.key}.state.json`),
          verifier: trust.verifier,
          verifierSource: trust.source,
        });
        ctx.out(
          {
            ok: true,
            checkpoint: done.checkpoint.seq,
            size: done.checkpoint.upTo,
            previousSize: done.previousSize,
            note: done.note,
            file: cosignaturesPath(path),
          },
          () => done.note,
        );
      } catch (cause) {
        if (cause instanceof AztpError && cause.code === ErrorCodes.AUDIT_PROOF_INVALID) {
          ctx.out(
            { ok: false, code: cause.code, rule: cause.rule, message: cause.message },
            () => `REFUSED: ${cause.message}`,
          );
          throw new Verdict(cause.message);
        }
        throw cause;
      }
    });
}
