/**
 * Verification of an audit log, in one streaming pass, naming the first bad record.
 *
 * Per entry: well-formed, its hash matches its content (an edit of any field), its seq is the
 * next one (a deletion, insertion or reordering) and its prev is the previous entry's hash
 * (a splice). Per checkpoint: numbered in order (a removed checkpoint), naming the entry just
 * before it by seq and hash, counting the entries since the previous one, and, with a
 * verifier, signed by the signer it names. Against the witness: the checkpoint it holds, and
 * the entry that checkpoint names, must be in the log unchanged (a cut tail). At the end: a
 * last line without its newline is a torn write. See checkpoint.ts for what cannot be detected.
 */
import { stat } from "node:fs/promises";
import { AztpError } from "../errors.js";
import { GENESIS, namesHead, nextCheckpoint, stepFault, type ChainFault, type ChainHead } from "./chain.js";
import { entryProblem, type AuditEntry } from "./entry.js";
import {
  checkCheckpointSignature,
  checkpointBody,
  checkpointNoteProblem,
  checkpointProblem,
  checkpointRootProblem,
  checkpointSignatureProblem,
  checkpointTreeProblem,
  isCheckpointRecord,
  sameCheckpoint,
  type Checkpoint,
  type CheckpointVerifier,
} from "./checkpoint.js";
import { scanLines } from "./lines.js";
import { leafHashesOf, LEAF_WORKER_MIN_BYTES } from "./leaf-hasher.js";
import { leafHashOfText, MERKLE_HASH_SIZE, MerkleFrontier } from "./merkle.js";
import { ecdsaVkey } from "./signed-note.js";
import { defaultWitnessPath, readWitness } from "./witness.js";

export type AuditFault =
  /** Not JSON, or not a well-formed entry or checkpoint. */
  | "malformed"
  /** An entry's content does not match its hash: it was edited. */
  | "hash-mismatch"
  /** An entry's seq is not the next one: entries were deleted, inserted or reordered. */
  | "sequence"
  /** An entry's prev is not the previous entry's hash: the chain was spliced. */
  | "chain"
  /** A checkpoint's seq is not the next one: a checkpoint was removed or reordered. */
  | "checkpoint-sequence"
  /** A checkpoint does not name the entry just before it (seq and hash). */
  | "checkpoint-head"
  /** A checkpoint's count is not the number of entries since the previous checkpoint. */
  | "checkpoint-count"
  /** A checkpoint's signature does not verify, or is by another signer than it names. */
  | "checkpoint-signature"
  /**
   * A checkpoint's Merkle tree (its C2SP note) is not the tree of the entries it covers, names
   * another origin than the log's, is not signed by its signer, or is missing after checkpoints
   * that had one.
   */
  | "checkpoint-tree"
  /** The log holds a different checkpoint, or entry, than the witness says it held. */
  | "witness-mismatch"
  /** The log ends before the checkpoint the witness holds: its tail was cut. */
  | "truncated"
  /** The log has checkpoints but its witness is missing. */
  | "witness-missing"
  /** The witness is not a well-formed checkpoint. */
  | "witness-malformed"
  /** The witness's signature does not verify. */
  | "witness-signature"
  /** The last line has no newline: a write was interrupted (opening the log repairs it). */
  | "torn-line";

export interface AuditFinding {
  /** 1-based line of the bad record; for a cut tail the first missing line; 0 for the witness itself. */
  readonly line: number;
  /** The entry's seq (kind "entry") or the checkpoint's seq (kind "checkpoint"); null if unknown. */
  readonly seq: number | null;
  readonly kind: "entry" | "checkpoint" | "witness";
  readonly reason: AuditFault;
  readonly message: string;
}

export interface AuditVerifyOptions {
  /** Checks checkpoint (and witness) signatures; without it only their structure is checked. */
  readonly verifier?: CheckpointVerifier;
  /**
   * What the verifier trusts, for people ("bundle /etc/aztp/bundle.json", "the authority in
   * /srv/aztp"): a signature that does not verify is reported as checked against it.
   */
  readonly verifierSource?: string;
  /** The witness to check against. Default `<path>.witness`; false to verify the log alone. */
  readonly witnessPath?: string | false;
  /**
   * Hash the entries' Merkle leaves on a worker thread while this one checks the chain: "auto"
   * (default) for logs of LEAF_WORKER_MIN_BYTES and more, "always", or "never". The verdict is
   * the same either way.
   */
  readonly leafWorker?: "auto" | "always" | "never";
}

export interface AuditVerifyResult {
  readonly ok: boolean;
  /** Entries read and found good (up to the first bad record). */
  readonly entries: number;
  readonly checkpoints: number;
  readonly lastSeq: number;
  readonly head: string;
  /** Entries after the newest checkpoint: a clean cut of these is not detectable. */
  readonly uncovered: number;
  readonly signaturesChecked: boolean;
  /** "checked": compared with a witness; "none": no witness and none needed; "skipped": witnessPath false. */
  readonly witness: "checked" | "none" | "skipped";
  /** The log's Merkle tree, as its checkpoints sign it (up to the first bad record). */
  readonly tree: AuditTreeVerdict;
  readonly firstBad?: AuditFinding;
}

/**
 * - "proven": the newest checkpoint signs the Merkle root of the entries it covers (a C2SP note):
 *   inclusion and consistency proofs can be made against it;
 * - "predates-proofs": the log has checkpoints, none with a tree: written before logs kept one
 *   (or by a key that cannot sign notes); its chain and checkpoints still verify as before;
 * - "none": no checkpoint yet.
 */
export interface AuditTreeVerdict {
  readonly state: "proven" | "predates-proofs" | "none";
  /** The origin of the log's checkpoints (their note's first line). */
  readonly origin?: string;
  /** The newest signed tree: its size and root (base64). */
  readonly size?: number;
  readonly root?: string;
  /** Checkpoints with a tree, and those before them without one. */
  readonly provenCheckpoints: number;
  readonly predatingCheckpoints: number;
  /** Whether each note's signature was checked against its checkpoint's verified signer. */
  readonly notesChecked: boolean;
  /**
   * The newest checkpoint's note key as a C2SP verifier key (`<origin>+<key ID>+base64(0x02 ||
   * SPKI)`), for transparency-log tools that take vkeys; only when its signature was checked.
   */
  readonly vkey?: string;
}

/**
 * The verification rules for one log, a record at a time, front to back: what `verifyAuditLog`
 * applies to a file, and what a reader that keeps following a log (the viewer) applies to the
 * lines appended after it (`verifyAuditLogFrom` hands it over where the full pass ended). One
 * copy of the rules, so that what is shown live is checked exactly as a verification checks it.
 */
export class AuditLogVerifier {
  readonly #verifier: CheckpointVerifier | undefined;
  readonly #against: string;
  /** The witness's checkpoint, when one was read and its signature held. */
  readonly #witness: Checkpoint | null;
  #entries = 0;
  #checkpoints = 0;
  #chain: ChainHead = GENESIS;
  #lastCheckpoint: Checkpoint | null = null;
  #witnessSeen = false;
  #tree = MerkleFrontier.empty();
  /**
   * Leaf hashes computed elsewhere (leaf-hasher.ts) while this pass checks the rest: each line's
   * kind is kept (1 an entry, 0 a checkpoint) so the two readings can be matched, and the trees of
   * the checkpoints met are checked once the hashes are in (`completeTree`).
   */
  #deferred: { kinds: number[]; checks: DeferredCheck[] } | null = null;
  #origin: string | undefined;
  #proven: Checkpoint | null = null;
  #provenCheckpoints = 0;
  #provenKey: Buffer | undefined;
  #predatingCheckpoints = 0;

  constructor(
    options: {
      verifier?: CheckpointVerifier;
      verifierSource?: string;
      witness?: Checkpoint | null;
      /** Leave the leaf hashes to `completeTree` (verifyAuditLogFrom's worker). */
      deferTree?: boolean;
    } = {},
  ) {
    this.#verifier = options.verifier;
    this.#against = options.verifierSource === undefined ? "" : ` (checked against ${options.verifierSource})`;
    this.#witness = options.witness ?? null;
    if (options.deferTree === true) this.#deferred = { kinds: [], checks: [] };
  }

  /** Entries and checkpoints found good so far. */
  get entries(): number {
    return this.#entries;
  }

  get checkpoints(): number {
    return this.#checkpoints;
  }

  /** The newest good entry (the genesis value before any). */
  get head(): ChainHead {
    return this.#chain;
  }

  get lastCheckpoint(): Checkpoint | null {
    return this.#lastCheckpoint;
  }

  /** Whether the witness's checkpoint was met in the log. */
  get witnessSeen(): boolean {
    return this.#witnessSeen;
  }

  get signaturesChecked(): boolean {
    return this.#verifier !== undefined;
  }

  /**
   * Checks the next line of the log (`lineNo`, 1-based): undefined when it holds, else the
   * finding. After a finding the verifier's state is that of the line before it.
   */
  check(line: string, lineNo: number): AuditFinding | undefined {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return finding(lineNo, null, "entry", "malformed", `line ${lineNo} is not JSON`);
    }
    if (isCheckpointRecord(value)) {
      const bad = this.#checkCheckpoint(value, lineNo);
      if (bad === undefined) {
        this.#checkpoints++;
        this.#deferred?.kinds.push(0);
      }
      return bad;
    }
    const bad = this.#checkEntry(value, lineNo);
    if (bad !== undefined) return bad;
    if (this.#deferred === null) this.#tree.push(leafHashOfText(line));
    else this.#deferred.kinds.push(1);
    this.#entries++;
    return undefined;
  }

  /**
   * Checks the trees of the checkpoints met while the leaf hashes were left to another thread:
   * `leaves` are the hashes of the file's entry lines in order, `kinds` how that reading told
   * entries (1) from checkpoints (0) line by line. When the two readings do not agree line for
   * line (a file changed between them, a line only one reader took for a checkpoint), the hashes
   * are not used and `rehash` hashes this pass's entry lines again, here. Returns the first
   * checkpoint whose tree fails, with this verifier put back to the line before it; afterwards it
   * goes on as one that never deferred.
   */
  async completeTree(
    read: { leaves: Buffer; kinds: Uint8Array } | null,
    rehash: (kinds: readonly number[]) => Promise<Buffer>,
  ): Promise<AuditFinding | undefined> {
    const deferred = this.#deferred;
    if (deferred === null) return undefined;
    this.#deferred = null;
    let leaves = read?.leaves ?? null;
    const kinds = deferred.kinds;
    const agree =
      read !== null &&
      read.kinds.length >= kinds.length &&
      kinds.every((k, i) => read.kinds[i] === k) &&
      leaves !== null &&
      leaves.length >= this.#entries * MERKLE_HASH_SIZE;
    if (!agree) leaves = await rehash(kinds);
    const leafAt = (i: number): Buffer => (leaves as Buffer).subarray(i * MERKLE_HASH_SIZE, (i + 1) * MERKLE_HASH_SIZE);
    const tree = MerkleFrontier.empty();
    for (const check of deferred.checks) {
      while (tree.size < check.cp.upTo) tree.push(leafAt(tree.size));
      const problem = checkpointRootProblem(check.cp, tree);
      if (problem !== null) {
        this.#restore(check.before);
        this.#tree = tree;
        return finding(
          check.line,
          check.cp.seq,
          "checkpoint",
          "checkpoint-tree",
          `line ${check.line}: checkpoint #${check.cp.seq}: ${problem}`,
        );
      }
    }
    while (tree.size < this.#entries) tree.push(leafAt(tree.size));
    this.#tree = tree;
    return undefined;
  }

  #snapshot(): Snapshot {
    return {
      entries: this.#entries,
      checkpoints: this.#checkpoints,
      chain: this.#chain,
      lastCheckpoint: this.#lastCheckpoint,
      witnessSeen: this.#witnessSeen,
      origin: this.#origin,
      proven: this.#proven,
      provenCheckpoints: this.#provenCheckpoints,
      provenKey: this.#provenKey,
      predatingCheckpoints: this.#predatingCheckpoints,
    };
  }

  #restore(s: Snapshot): void {
    this.#entries = s.entries;
    this.#checkpoints = s.checkpoints;
    this.#chain = s.chain;
    this.#lastCheckpoint = s.lastCheckpoint;
    this.#witnessSeen = s.witnessSeen;
    this.#origin = s.origin;
    this.#proven = s.proven;
    this.#provenCheckpoints = s.provenCheckpoints;
    this.#provenKey = s.provenKey;
    this.#predatingCheckpoints = s.predatingCheckpoints;
  }

  /** The log's Merkle tree as its checkpoints so far sign it. */
  tree(): AuditTreeVerdict {
    const counts = {
      provenCheckpoints: this.#provenCheckpoints,
      predatingCheckpoints: this.#predatingCheckpoints,
      notesChecked: this.#verifier !== undefined && this.#provenCheckpoints > 0,
    };
    const p = this.#proven;
    if (p === null) return { state: this.#checkpoints > 0 ? "predates-proofs" : "none", ...counts };
    const body = checkpointBody(p);
    const origin = this.#origin;
    return {
      state: "proven",
      ...(origin === undefined ? {} : { origin }),
      size: p.upTo,
      root: body?.root.toString("base64") ?? "",
      ...counts,
      ...(this.#provenKey !== undefined && origin !== undefined ? { vkey: ecdsaVkey(origin, this.#provenKey) } : {}),
    };
  }

  #checkEntry(value: unknown, lineNo: number): AuditFinding | undefined {
    const problem = entryProblem(value);
    const seqOf = (value as { seq?: unknown }).seq;
    if (problem !== null) {
      const seq = typeof seqOf === "number" ? seqOf : null;
      return finding(lineNo, seq, "entry", "malformed", `line ${lineNo}: malformed entry: ${problem}`);
    }
    const entry = value as AuditEntry;
    let fault: ChainFault | null;
    try {
      fault = stepFault(this.#chain, entry);
    } catch (cause) {
      // A string with a lone surrogate (a \ud800 escape) has no canonical form.
      return finding(
        lineNo,
        entry.seq,
        "entry",
        "malformed",
        `line ${lineNo}: entry ${entry.seq}: ${(cause as Error).message}`,
      );
    }
    if (fault === "hash-mismatch") {
      return finding(
        lineNo,
        entry.seq,
        "entry",
        "hash-mismatch",
        `line ${lineNo}: entry ${entry.seq} does not match its hash (edited)`,
      );
    }
    if (fault === "sequence") {
      const expected = this.#chain.seq + 1;
      const how = entry.seq > expected ? "entries are missing or out of order" : "an entry is repeated or out of order";
      return finding(
        lineNo,
        entry.seq,
        "entry",
        "sequence",
        `line ${lineNo}: expected entry ${expected}, found ${entry.seq} (${how})`,
      );
    }
    if (fault === "chain") {
      return finding(
        lineNo,
        entry.seq,
        "entry",
        "chain",
        `line ${lineNo}: entry ${entry.seq} does not chain to the entry before it`,
      );
    }
    if (this.#witness !== null && entry.seq === this.#witness.upTo && entry.hash !== this.#witness.head) {
      return finding(
        lineNo,
        entry.seq,
        "entry",
        "witness-mismatch",
        `line ${lineNo}: entry ${entry.seq} is not the one the witness checkpoint #${this.#witness.seq} covers (the log was rewritten)`,
      );
    }
    this.#chain = { seq: entry.seq, hash: entry.hash };
    return undefined;
  }

  #checkCheckpoint(value: unknown, lineNo: number): AuditFinding | undefined {
    const problem = checkpointProblem(value);
    if (problem !== null)
      return finding(lineNo, null, "checkpoint", "malformed", `line ${lineNo}: malformed checkpoint: ${problem}`);
    const cp = value as Checkpoint;
    const expected = nextCheckpoint(this.#lastCheckpoint, this.#chain);
    const bad = (reason: AuditFault, message: string) =>
      finding(lineNo, cp.seq, "checkpoint", reason, `line ${lineNo}: ${message}`);
    if (cp.seq !== expected.seq) {
      return bad(
        "checkpoint-sequence",
        `expected checkpoint #${expected.seq}, found #${cp.seq} (a checkpoint is missing or out of order)`,
      );
    }
    if (!namesHead(cp, this.#chain)) {
      return bad(
        "checkpoint-head",
        `checkpoint #${cp.seq} covers entry ${cp.upTo}, but the entry before it is ${this.#chain.seq} or differs`,
      );
    }
    if (cp.count !== expected.count)
      return bad("checkpoint-count", `checkpoint #${cp.seq} counts ${cp.count} entries, the log has ${expected.count}`);
    let publicKey: Buffer | undefined;
    if (this.#verifier !== undefined) {
      const checked = checkCheckpointSignature(cp, this.#verifier);
      if (checked.problem !== null)
        return bad("checkpoint-signature", `checkpoint #${cp.seq}: ${checked.problem}${this.#against}`);
      publicKey = checked.publicKey;
    }
    if (cp.note === undefined) {
      if (this.#proven !== null)
        return bad(
          "checkpoint-tree",
          `checkpoint #${cp.seq} has no Merkle tree, but checkpoint #${this.#proven.seq} before it had one`,
        );
      this.#predatingCheckpoints++;
    } else {
      const treeProblem =
        this.#deferred === null
          ? checkpointTreeProblem(cp, this.#tree, { origin: this.#origin, publicKey })
          : checkpointNoteProblem(cp, { origin: this.#origin, publicKey });
      if (treeProblem !== null) return bad("checkpoint-tree", `checkpoint #${cp.seq}: ${treeProblem}`);
      // The root is checked once the leaf hashes are in, from the state before this line.
      this.#deferred?.checks.push({ line: lineNo, cp, before: this.#snapshot() });
      this.#origin ??= checkpointBody(cp)?.origin;
      this.#proven = cp;
      this.#provenKey = publicKey;
      this.#provenCheckpoints++;
    }
    if (this.#witness !== null && cp.seq === this.#witness.seq) {
      if (!sameCheckpoint(cp, this.#witness))
        return bad("witness-mismatch", `checkpoint #${cp.seq} differs from the witness's`);
      this.#witnessSeen = true;
    }
    this.#lastCheckpoint = cp;
    return undefined;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0; // scanLines says why it cannot be read
  }
}

/** The leaf hashes of the entry lines among the first `kinds.length` lines (kind 1), hashed here. */
async function rehashEntries(path: string, kinds: readonly number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await scanLines(path, (line, lineNo) => {
    if (lineNo > kinds.length) return false;
    if (kinds[lineNo - 1] === 1) out.push(leafHashOfText(line));
    return true;
  });
  return Buffer.concat(out);
}

interface Snapshot {
  entries: number;
  checkpoints: number;
  chain: ChainHead;
  lastCheckpoint: Checkpoint | null;
  witnessSeen: boolean;
  origin: string | undefined;
  proven: Checkpoint | null;
  provenCheckpoints: number;
  provenKey: Buffer | undefined;
  predatingCheckpoints: number;
}

interface DeferredCheck {
  line: number;
  cp: Checkpoint;
  /** The verifier's state before this checkpoint's line: where a failing tree puts it back. */
  before: Snapshot;
}

/** Verifies the log at `path`; resolves with the verdict (it throws only when the file cannot be read). */
export async function verifyAuditLog(path: string, options: AuditVerifyOptions = {}): Promise<AuditVerifyResult> {
  return (await verifyAuditLogFrom(path, options)).result;
}

/**
 * As verifyAuditLog, and also the verifier as the pass left it (after `lines` complete lines, or
 * before the first bad one), to check the lines appended after them.
 */
export async function verifyAuditLogFrom(
  path: string,
  options: AuditVerifyOptions = {},
): Promise<{ result: AuditVerifyResult; verifier: AuditLogVerifier; lines: number }> {
  const verifier = options.verifier;
  const against = options.verifierSource === undefined ? "" : ` (checked against ${options.verifierSource})`;
  const explicitWitness = typeof options.witnessPath === "string";
  const witnessPath = options.witnessPath === false ? null : (options.witnessPath ?? defaultWitnessPath(path));

  // Read the witness before the log: it is only ever written after the log holding its
  // checkpoint is durable, so a log read afterwards holds it too, even while a writer appends.
  let witness: Checkpoint | null = null;
  let witnessFault: AuditFinding | undefined;
  if (witnessPath !== null) {
    try {
      witness = await readWitness(witnessPath);
    } catch (cause) {
      if (!(cause instanceof AztpError) || cause.code !== "ERR_AUDIT_CORRUPT") throw cause;
      witnessFault = finding(0, null, "witness", "witness-malformed", cause.message);
    }
    if (witness !== null && verifier !== undefined) {
      const problem = checkpointSignatureProblem(witness, verifier);
      if (problem !== null) {
        witnessFault = finding(
          0,
          witness.seq,
          "witness",
          "witness-signature",
          `witness ${witnessPath}: ${problem}${against}`,
        );
        witness = null;
      }
    }
  }

  const mode = options.leafWorker ?? "auto";
  const useWorker = mode === "always" || (mode === "auto" && (await fileSize(path)) >= LEAF_WORKER_MIN_BYTES);
  const lines = new AuditLogVerifier({
    ...(verifier !== undefined ? { verifier } : {}),
    ...(options.verifierSource !== undefined ? { verifierSource: options.verifierSource } : {}),
    witness,
    deferTree: useWorker,
  });
  // The other thread reads the file itself; a failure there only means hashing here instead.
  const hashed = useWorker ? leafHashesOf(path).catch(() => null) : null;
  let firstBad: AuditFinding | undefined;
  const scan = await scanLines(path, (line, lineNo) => {
    firstBad = lines.check(line, lineNo);
    return firstBad === undefined;
  });
  if (hashed !== null) {
    const treeFault = await lines.completeTree(await hashed, (kinds) => rehashEntries(path, kinds));
    // A checkpoint whose tree fails comes before whatever stopped the scan: it is the first bad record.
    if (treeFault !== undefined) firstBad = treeFault;
  }
  const entries = lines.entries;
  const checkpoints = lines.checkpoints;
  const chain = lines.head;
  const lastCheckpoint = lines.lastCheckpoint;
  const witnessSeen = lines.witnessSeen;

  if (firstBad === undefined && scan.torn !== null) {
    firstBad = finding(
      scan.lines + 1,
      null,
      "entry",
      "torn-line",
      `line ${scan.lines + 1} is unfinished (${Buffer.byteLength(scan.torn)} bytes without a newline): an interrupted write; opening the log repairs it`,
    );
  }
  if (firstBad === undefined) firstBad = witnessFault;
  if (firstBad === undefined && witness !== null && !witnessSeen) {
    const lastSeq = chain.seq;
    const missingEntry = lastSeq < witness.upTo;
    firstBad = finding(
      scan.lines + 1,
      missingEntry ? lastSeq + 1 : witness.seq,
      missingEntry ? "entry" : "checkpoint",
      "truncated",
      `the log ends at line ${scan.lines} (entry ${lastSeq}), but the witness holds checkpoint #${witness.seq} up to entry ${witness.upTo}: its tail was cut`,
    );
  }
  if (firstBad === undefined && witnessPath !== null && witness === null && witnessFault === undefined) {
    if (checkpoints > 0 || explicitWitness) {
      firstBad = finding(
        0,
        null,
        "witness",
        "witness-missing",
        `the witness ${witnessPath} is missing, so a cut tail cannot be ruled out`,
      );
    }
  }

  const witnessState = witnessPath === null ? "skipped" : witness !== null ? "checked" : "none";
  const result: AuditVerifyResult = {
    ok: firstBad === undefined,
    entries,
    checkpoints,
    lastSeq: chain.seq,
    head: chain.hash,
    uncovered: chain.seq - ((lastCheckpoint as Checkpoint | null)?.upTo ?? 0),
    signaturesChecked: verifier !== undefined,
    witness: witnessState,
    tree: lines.tree(),
  };
  return { result: firstBad === undefined ? result : { ...result, firstBad }, verifier: lines, lines: scan.lines };
}

function finding(
  line: number,
  seq: number | null,
  kind: AuditFinding["kind"],
  reason: AuditFault,
  message: string,
): AuditFinding {
  return { line, seq, kind, reason, message };
}
