/**
 * The body of a C2SP checkpoint (c2sp.org/tlog-checkpoint): the origin (the log's unique name),
 * the tree size in decimal, the root hash in base64, each on a line of its own, then optional
 * extension lines. Signed as a signed note (signed-note.ts), it is what a transparency-log
 * client, a witness or an auditor holds of the log: a size and a root that later proofs are
 * checked against.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { MERKLE_HASH_SIZE } from "./merkle.js";

export interface CheckpointBody {
  readonly origin: string;
  readonly size: number;
  readonly root: Buffer;
  /** Extension lines (opaque, non-empty; the specification does not recommend them). */
  readonly extensions?: readonly string[];
}

function malformed(message: string): never {
  throw new AztpError(ErrorCodes.AUDIT_NOTE_INVALID, `checkpoint: ${message}`, { rule: "checkpoint" });
}

/** Whether `origin` may be a checkpoint's first line: non-empty, no spaces or "+" (so it can be the key name too). */
export function isOrigin(origin: string): boolean {
  return origin.length > 0 && !/[\s+]/u.test(origin);
}

/** The note text of a checkpoint, with its final newline. */
export function formatCheckpointBody(body: CheckpointBody): string {
  if (!isOrigin(body.origin)) malformed(`origin "${body.origin}" must be non-empty without spaces or "+"`);
  if (!Number.isSafeInteger(body.size) || body.size < 0) malformed(`size ${body.size} is not a whole number`);
  if (body.root.length !== MERKLE_HASH_SIZE) malformed("the root hash must be 32 bytes");
  const ext = body.extensions ?? [];
  for (const line of ext)
    if (line.length === 0 || line.includes("\n")) malformed("an extension line must be one non-empty line");
  return [body.origin, String(body.size), body.root.toString("base64"), ...ext].join("\n") + "\n";
}

/** Reads a checkpoint's note text; throws ERR_AUDIT_NOTE_INVALID (rule "checkpoint"). */
export function parseCheckpointBody(text: string): CheckpointBody {
  if (!text.endsWith("\n")) malformed("the text must end in a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) malformed(`needs an origin, a size and a root hash: ${lines.length} line(s)`);
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) malformed("the origin line is empty");
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) malformed(`the size "${sizeText}" is not a decimal without leading zeroes`);
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) malformed(`the size ${sizeText} is too large`);
  const root = Buffer.from(rootText, "base64");
  if (root.length !== MERKLE_HASH_SIZE || root.toString("base64") !== rootText)
    malformed("the root hash is not the base64 of 32 bytes");
  for (const line of extensions) if (line.length === 0) malformed("an extension line is empty");
  return extensions.length > 0 ? { origin, size, root, extensions } : { origin, size, root };
}
