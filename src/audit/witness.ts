/**
 * The witness: a copy of the newest checkpoint kept outside the log, so that cutting the log's
 * tail (checkpoints included) leaves a signed record of what the log held. See checkpoint.ts
 * for what it does and does not protect against.
 *
 * It is replaced atomically (temporary file, fsync, rename, fsync of the folder): a crash
 * leaves either the old witness or the new one, never a torn one.
 */
import { open, readFile, rename, unlink } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { checkpointLine, parseCheckpoint, type Checkpoint } from "./checkpoint.js";

export function defaultWitnessPath(logPath: string): string {
  return `${logPath}.witness`;
}

/** Reads the witness; null when there is none. Throws ERR_AUDIT_CORRUPT when it is malformed. */
export async function readWitness(path: string): Promise<Checkpoint | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot read audit witness ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `audit witness ${path} is not JSON`, { cause });
  }
  try {
    return parseCheckpoint(value);
  } catch (cause) {
    throw new AztpError(ErrorCodes.AUDIT_CORRUPT, `audit witness ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Replaces the witness with `checkpoint`, durably and atomically. */
export async function writeWitness(path: string, checkpoint: Checkpoint): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const file = await open(tmp, "wx", 0o600);
    try {
      await file.writeFile(`${checkpointLine(checkpoint)}\n`, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
    await syncDirectory(dir);
  } catch (cause) {
    await unlink(tmp).catch(() => undefined);
    throw new AztpError(ErrorCodes.AUDIT_IO_FAILED, `cannot write audit witness ${path}: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/** Makes a rename or a file creation in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
