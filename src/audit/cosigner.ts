/**
 * A witness for audit logs (C2SP tlog-cosignature): it cosigns a log's newest checkpoint only
 * after checking that the log extends every tree of that log it cosigned before, and remembers
 * the newest tree it cosigned per origin. A log whose writer rewrites or cuts it can then no
 * longer show a fresh cosignature over the rewritten history: the witness refuses, and an
 * auditor who trusts the witness's key checks the cosignatures (`checkCosignatures`).
 *
 * Cosigned checkpoints are kept beside the log, in `<log>.cosignatures` (JSON Lines,
 * `{"checkpoint": seq, "note": "<the note with the log's and the witness's signatures>"}`): the
 * checkpoint record's own JWS covers its note, so the witness's line is not added to it.
 */
import { randomBytes, type KeyObject } from "node:crypto";
import { appendFile, open, readFile, rename, writeFile } from "node:fs/promises";
import { AztpError, ErrorCodes } from "../errors.js";
import { checkpointBody, type Checkpoint } from "./checkpoint.js";
import { cosign, cosignatureTime } from "./cosignature.js";
import { scanLines } from "./lines.js";
import { readProvableLog } from "./proof.js";
import { formatSignedNote, parseSignedNote, verifyNote, type NoteVerifierKey } from "./signed-note.js";
import type { CheckpointBody } from "./tlog-checkpoint.js";
import type { AuditVerifyOptions } from "./verify.js";

export function cosignaturesPath(logPath: string): string {
  return `${logPath}.cosignatures`;
}

interface WitnessState {
  readonly v: 1;
  /** The newest tree cosigned, per origin. */
  readonly logs: Record<string, { size: number; root: string; time: number }>;
}

async function readState(path: string): Promise<WitnessState> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return { v: 1, logs: {} };
    throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot read witness state ${path}: ${(cause as Error).message}`);
  }
  try {
    const state = JSON.parse(text) as WitnessState;
    if (state.v !== 1 || typeof state.logs !== "object" || state.logs === null) throw new Error("not a witness state");
    return state;
  } catch (cause) {
    throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `witness state ${path} is damaged: ${(cause as Error).message}`);
  }
}

/** Replaces the state atomically: a crash leaves the old state or the new one, never half of one. */
async function writeState(path: string, state: WitnessState): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  const fh = await open(tmp, "r+");
  try {
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

export interface CosignOptions extends AuditVerifyOptions {
  /** The witness's key name (a schema-less URL: `witness.example/w1`). */
  readonly name: string;
  /** The witness's Ed25519 private key. */
  readonly key: KeyObject;
  /** Where the witness remembers what it cosigned. */
  readonly statePath: string;
  /** POSIX seconds; default now. */
  readonly now?: () => number;
}

export interface Cosigned {
  readonly checkpoint: Checkpoint;
  /** The checkpoint's note with the witness's cosignature added. */
  readonly note: string;
  /** The size of the tree this witness cosigned before for this log (null: none). */
  readonly previousSize: number | null;
}

/**
 * Verifies the log, checks that its newest signed tree extends the one this witness cosigned
 * last for its origin (else ERR_AUDIT_PROOF_INVALID, rule `consistency` or `truncated`), cosigns
 * it, appends the cosigned note to `<log>.cosignatures`, and only then remembers it.
 */
export async function cosignLog(path: string, options: CosignOptions): Promise<Cosigned> {
  const log = await readProvableLog(path, options);
  const checkpoint = log.checkpoints[log.checkpoints.length - 1];
  if (checkpoint === undefined)
    throw new AztpError(
      ErrorCodes.AUDIT_PROOF_INVALID,
      `audit log ${path} has no checkpoint with a Merkle tree to cosign`,
      {
        rule: "no-tree",
      },
    );
  const body = checkpointBody(checkpoint) as CheckpointBody;
  const state = await readState(options.statePath);
  const seen = state.logs[body.origin];
  if (seen !== undefined) {
    if (seen.size > body.size)
      throw new AztpError(
        ErrorCodes.AUDIT_PROOF_INVALID,
        `${body.origin}: this witness cosigned a tree of ${seen.size} entries, the log now signs only ${body.size}: it was cut`,
        { rule: "truncated" },
      );
    if (!log.tree.root(seen.size).equals(Buffer.from(seen.root, "base64")))
      throw new AztpError(
        ErrorCodes.AUDIT_PROOF_INVALID,
        `${body.origin}: the log's first ${seen.size} entries are not the tree this witness cosigned: it was rewritten`,
        { rule: "consistency" },
      );
  }
  const now = options.now?.() ?? Math.floor(Date.now() / 1000);
  const signed = parseSignedNote(checkpoint.note as string);
  const note = formatSignedNote({
    text: signed.text,
    signatures: [...signed.signatures, cosign(options.name, signed.text, options.key, now)],
  });
  // Kept before it is remembered: a witness that crashed between the two cosigns again.
  await appendFile(cosignaturesPath(path), `${JSON.stringify({ checkpoint: checkpoint.seq, note })}\n`, {
    mode: 0o644,
  });
  await writeState(options.statePath, {
    v: 1,
    logs: { ...state.logs, [body.origin]: { size: body.size, root: body.root.toString("base64"), time: now } },
  });
  return { checkpoint, note, previousSize: seen?.size ?? null };
}

export interface CosignatureVerdict {
  readonly ok: boolean;
  /** Per trusted witness: the largest tree it cosigned, and when; null when it cosigned none. */
  readonly witnesses: readonly { name: string; size: number | null; time: number | null }[];
  readonly problem?: string;
}

/**
 * Checks the cosignatures kept beside a log against the witnesses' keys: each cosigned note must
 * be the note of the log's checkpoint it names, and every trusted witness must have cosigned at
 * least one checkpoint, each signature verifying. The log itself is verified by verifyAuditLog.
 */
export async function checkCosignatures(
  path: string,
  witnesses: readonly NoteVerifierKey[],
): Promise<CosignatureVerdict> {
  const notes = new Map<number, string>();
  await scanLines(path, (line) => {
    if (!line.includes('"type":"checkpoint"')) return true;
    try {
      const cp = JSON.parse(line) as Checkpoint;
      if (cp.type === "checkpoint" && typeof cp.note === "string") notes.set(cp.seq, cp.note);
    } catch {
      // a damaged line: verifyAuditLog names it
    }
    return true;
  });
  const best = new Map<string, { size: number; time: number }>();
  const fail = (problem: string): CosignatureVerdict => ({
    ok: false,
    witnesses: witnesses.map((w) => ({ name: w.name, size: null, time: null })),
    problem,
  });
  let text: string;
  try {
    text = await readFile(cosignaturesPath(path), "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== "ENOENT") throw cause;
    text = "";
  }
  const lines = text.split("\n").filter((l) => l.length > 0);
  for (const [i, line] of lines.entries()) {
    const where = `${cosignaturesPath(path)} line ${i + 1}`;
    let record: { checkpoint?: unknown; note?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      return fail(`${where} is not JSON`);
    }
    const own = typeof record.checkpoint === "number" ? notes.get(record.checkpoint) : undefined;
    if (own === undefined || typeof record.note !== "string")
      return fail(`${where} names no checkpoint of the log that has a tree`);
    let cosigned;
    try {
      cosigned = parseSignedNote(record.note);
    } catch (cause) {
      return fail(`${where}: ${(cause as Error).message}`);
    }
    if (cosigned.text !== parseSignedNote(own).text)
      return fail(`${where}: cosigns another tree than checkpoint #${String(record.checkpoint)} of the log`);
    for (const w of witnesses) {
      const sig = cosigned.signatures.find((s) => s.name === w.name && s.keyId === w.keyId);
      if (sig === undefined) continue;
      try {
        verifyNote({ text: cosigned.text, signatures: [sig] }, [w]);
      } catch (cause) {
        return fail(`${where}: ${(cause as Error).message}`);
      }
      const size = Number(cosigned.text.split("\n")[1]);
      const prev = best.get(w.name);
      if (prev === undefined || size > prev.size) best.set(w.name, { size, time: cosignatureTime(sig) });
    }
  }
  const verdicts = witnesses.map((w) => ({
    name: w.name,
    size: best.get(w.name)?.size ?? null,
    time: best.get(w.name)?.time ?? null,
  }));
  const missing = verdicts.find((v) => v.size === null);
  return missing === undefined
    ? { ok: true, witnesses: verdicts }
    : { ok: false, witnesses: verdicts, problem: `witness ${missing.name} cosigned no checkpoint of this log` };
}
