/**
 * `aztp audit prove | consistency | verify-proof`: transparency-log proofs about a log, made from
 * a log that verifies and checked with the trust bundle alone (src/audit/proof.ts).
 */
import { writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import {
  parseKeptCheckpoint,
  proveConsistency,
  proveInclusion,
  verifyProof,
  type AuditProof,
} from "../../audit/proof.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import type { CliContext } from "../context.js";
import { usage, Verdict } from "../exit.js";
import { readInput } from "../files.js";
import { auditTrustSource, proofTrustSource } from "../audit-trust.js";

function wholeNumber(text: string, option: string): number {
  if (!/^[1-9][0-9]*$/.test(text)) throw usage(`${option} must be a whole number >= 1, got "${text}"`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw usage(`${option} is too large`);
  return n;
}

async function emit(proof: AuditProof, out: string | undefined, ctx: CliContext, summary: string): Promise<void> {
  const text = `${JSON.stringify(proof, null, 2)}\n`;
  if (out === undefined) {
    process.stdout.write(text);
    return;
  }
  const file = resolve(out);
  await writeFile(file, text, { mode: 0o644 });
  ctx.out({ out: file, summary }, () => `${summary}; written to ${file}`);
}

export function registerProofs(audit: Command, ctx: CliContext): void {
  audit
    .command("prove <log>")
    .description(
      "print an inclusion proof of one entry against a signed checkpoint (C2SP: RFC 6962 audit path), checkable with the bundle alone (`aztp audit verify-proof`)",
    )
    .requiredOption("--entry <seq>", "the entry to prove (its seq)")
    .option("--checkpoint <seq>", "the checkpoint to prove it against (default: the newest with a Merkle tree)")
    .option("--bundle <file>", "verify the log against this trust bundle first (else the authority in --home)")
    .option("--out <file>", "write the proof here instead of stdout")
    .action(async (log: string, o: { entry: string; checkpoint?: string; bundle?: string; out?: string }) => {
      const seq = wholeNumber(o.entry, "--entry");
      const checkpointSeq = o.checkpoint === undefined ? undefined : wholeNumber(o.checkpoint, "--checkpoint");
      const path = resolve(log);
      if (!existsSync(path)) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `no audit log at ${path}`);
      const trust = await auditTrustSource(path, undefined, o.bundle, ctx);
      const proof = await proveInclusion(path, seq, {
        verifier: trust.verifier,
        verifierSource: trust.source,
        ...(checkpointSeq === undefined ? {} : { checkpointSeq }),
      });
      await emit(
        proof,
        o.out,
        ctx,
        `entry ${seq} in the tree of ${proof.treeSize} entries (checkpoint #${proof.checkpoint.seq})`,
      );
    });
  audit
    .command("consistency <log>")
    .description(
      "print a consistency proof that an older checkpoint's tree is a prefix of this log's newest: exit 1 when the log was rewritten or cut since",
    )
    .requiredOption(
      "--from <checkpoint-file>",
      "the older checkpoint, as kept (a checkpoint line of the log, or a witness file)",
    )
    .option("--bundle <file>", "verify the log against this trust bundle first (else the authority in --home)")
    .option("--out <file>", "write the proof here instead of stdout")
    .action(async (log: string, o: { from: string; bundle?: string; out?: string }) => {
      const path = resolve(log);
      if (!existsSync(path)) throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `no audit log at ${path}`);
      const from = parseKeptCheckpoint(await readInput(o.from));
      const trust = await auditTrustSource(path, undefined, o.bundle, ctx);
      let proof;
      try {
        proof = await proveConsistency(path, from, { verifier: trust.verifier, verifierSource: trust.source });
      } catch (cause) {
        if (cause instanceof AztpError && cause.code === ErrorCodes.AUDIT_PROOF_INVALID) {
          ctx.out(
            { ok: false, code: cause.code, rule: cause.rule, message: cause.message },
            () => `BAD: ${cause.message}`,
          );
          throw new Verdict(cause.message);
        }
        throw cause;
      }
      await emit(
        proof,
        o.out,
        ctx,
        `checkpoint #${proof.from.seq} (${proof.from.upTo} entries) is a prefix of checkpoint #${proof.to.seq} (${proof.to.upTo})`,
      );
    });
  audit
    .command("verify-proof <proof-file>")
    .description("check an inclusion or consistency proof with the trust bundle alone (no log needed)")
    .option("--bundle <file>", "the trust bundle the checkpoints' signers chain to (SPIFFE bundle JSON or PEM roots)")
    .action(async (file: string, o: { bundle?: string }) => {
      let proof: unknown;
      try {
        proof = JSON.parse(await readInput(file));
      } catch (cause) {
        if (cause instanceof AztpError) throw cause;
        throw new AztpError(ErrorCodes.AUDIT_PROOF_INVALID, `${file} is not JSON`, { rule: "malformed" });
      }
      const trust = await proofTrustSource(proof, o.bundle, ctx);
      try {
        const v = verifyProof(proof, trust.verifier);
        ctx.out({ ok: true, ...v, trustSource: trust.source }, () =>
          v.type === "inclusion"
            ? `ok: entry ${v.seq} is in the ${v.treeSize}-entry tree of ${v.origin}, signed by ${v.signer}; keys from ${trust.source}`
            : `ok: the ${v.fromSize}-entry tree of ${v.origin} is a prefix of its ${v.toSize}-entry tree, signed by ${v.signer}; keys from ${trust.source}`,
        );
      } catch (cause) {
        if (cause instanceof AztpError && cause.code === ErrorCodes.AUDIT_PROOF_INVALID) {
          ctx.out(
            { ok: false, code: cause.code, rule: cause.rule, message: cause.message, trustSource: trust.source },
            () => `BAD: ${cause.rule}: ${cause.message} (checked against ${trust.source})`,
          );
          throw new Verdict(cause.message);
        }
        throw cause;
      }
    });
}
