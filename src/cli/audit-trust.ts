/**
 * What audit commands check checkpoint signatures against: a trust bundle (`--bundle`) or the
 * authority in the home, never nothing (a verdict without a key says "ok" having checked less).
 * Shared by `aztp audit verify`, the proof commands and the viewer.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { CheckpointVerifier } from "../audit/checkpoint.js";
import { scanLines } from "../audit/lines.js";
import { defaultWitnessPath, readWitness } from "../audit/witness.js";
import { EmbeddedAuthority } from "../authority/authority.js";
import { svidCheckpointVerifier } from "../invocation/checkpoint.js";
import { Trust } from "../invocation/trust.js";
import { BundleSet, loadBundleFile } from "../spiffe/bundle.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { CliContext } from "./context.js";
import { usage } from "./exit.js";
import { readInput } from "./files.js";

/**
 * What `aztp audit verify` checks checkpoint signatures against: the bundle in `bundleFile`
 * (parsed as `aztp verify` parses it; its trust domain is the one the log's checkpoints are
 * signed in, when the log names one), else the authority in the home. With neither it is a
 * usage error that says what to pass: a verdict of "ok" must never rest on unchecked signatures.
 */
export async function auditTrustSource(
  path: string,
  witnessPath: string | false | undefined,
  bundleFile: string | undefined,
  ctx: CliContext,
): Promise<TrustSource> {
  const td = bundleFile !== undefined && existsSync(path) ? await checkpointTrustDomain(path, witnessPath) : undefined;
  return trustSource(
    bundleFile,
    td,
    ctx,
    "or --home DIR of the authority that issued the writer's SVID, or --no-signatures to check the chain without them",
  );
}

/**
 * The trust source a proof's checkpoints are checked against, as for a log (the bundle's trust
 * domain from the proof's signer); never none: a proof checked without a key proves nothing.
 */
export async function proofTrustSource(
  proof: unknown,
  bundleFile: string | undefined,
  ctx: CliContext,
): Promise<TrustSource> {
  const p = proof as { checkpoint?: { signer?: unknown }; to?: { signer?: unknown } } | null;
  return trustSource(bundleFile, trustDomainOf(p?.checkpoint?.signer ?? p?.to?.signer), ctx, "or --home DIR");
}

export interface TrustSource {
  readonly verifier: CheckpointVerifier;
  /** For people: "bundle FILE" or "the authority in HOME". */
  readonly source: string;
  readonly trust: Trust;
}

/** `--bundle` (read for trust domain `td`), else the home's authority, else a usage error naming `otherwise`. */
async function trustSource(
  bundleFile: string | undefined,
  td: string | undefined,
  ctx: CliContext,
  otherwise: string,
): Promise<TrustSource> {
  const revocation = { isRevoked: () => false }; // a checkpoint stays valid after its signer is revoked
  if (bundleFile !== undefined) {
    const bundle = loadBundleFile(await readInput(bundleFile), td);
    const trust = new Trust(new BundleSet([bundle]), { revocation });
    return { verifier: svidCheckpointVerifier(trust), source: `bundle ${resolve(bundleFile)}`, trust };
  }
  const home = ctx.home();
  if (existsSync(join(home, "authority.json"))) {
    const trust = new Trust(await EmbeddedAuthority.open(home), { revocation });
    return { verifier: svidCheckpointVerifier(trust), source: `the authority in ${home}`, trust };
  }
  throw usage(
    `no trust source to check checkpoint signatures against (no authority in ${home}): pass --bundle FILE (a SPIFFE bundle JSON or PEM roots), ${otherwise}`,
  );
}

function trustDomainOf(signer: unknown): string | undefined {
  try {
    return typeof signer === "string" ? SpiffeId.parse(signer).trustDomain.toString() : undefined;
  } catch {
    return undefined;
  }
}

/** The trust domain the log's checkpoints are signed in: from its witness, else its first checkpoint. */
export async function checkpointTrustDomain(
  path: string,
  witnessPath: string | false | undefined,
): Promise<string | undefined> {
  let signer: string | undefined;
  if (witnessPath !== false)
    signer = (await readWitness(witnessPath ?? defaultWitnessPath(path)).catch(() => null))?.signer;
  if (signer === undefined) {
    await scanLines(path, (line) => {
      if (!line.includes('"checkpoint"')) return true;
      try {
        const value = JSON.parse(line) as { type?: unknown; signer?: unknown };
        if (value.type === "checkpoint" && typeof value.signer === "string") signer = value.signer;
      } catch {
        // verification reports it
      }
      return signer === undefined;
    }).catch(() => undefined);
  }
  return trustDomainOf(signer);
}
