/**
 * One audit log as the viewer holds it: every line indexed (what the page lists, and where to
 * read each entry back), the verdict of `verifyAuditLog` over exactly those bytes, and the lines
 * appended since, each checked as it arrives, continuing the chain from the verified head.
 *
 * Verify before you show (DESIGN §14): no entry reaches the page before the verdict that covers
 * it. The first pass indexes the file and digests the bytes it read; `verifyAuditLog` then
 * checks the file (chain, checkpoints and their signatures against the trust source, witness,
 * and whatever else the verifier learns to check); a second digest of the same bytes must match
 * the first, or the file changed between the two reads and both are done again. So what is
 * listed is what was verified, byte for byte.
 *
 * Each entry's state follows from its line: before the first bad line, "signed" when a checkpoint
 * whose signature was checked covers it ("checkpointed" when signatures were not checked,
 * `--no-signatures`), else "uncovered" (it chains, but nothing signed refers to it yet: a line
 * anyone able to write the file could have appended); the first bad line is "bad"; every line
 * after it "unverified".
 *
 * Appended lines are checked by the very verifier the full pass used (`AuditLogVerifier`,
 * audit/verify.ts), continuing where that pass stopped: the chain, the checkpoints, their
 * signatures, Merkle trees and notes; the witness, which a writer replaces as it checkpoints, is
 * compared again when the log is verified again in full (`load`).
 */
import { createHash } from "node:crypto";
import { basename } from "node:path";
import {
  checkpointProblem,
  isCheckpointRecord,
  type Checkpoint,
  type CheckpointVerifier,
} from "../audit/checkpoint.js";
import {
  entryProblem,
  readableEntry,
  type AuditAuthMethod,
  type AuditDecision,
  type AuditOutcome,
  type AuditSide,
  type StoredAuditEntry,
} from "../audit/entry.js";
import {
  verifyAuditLogFrom,
  type AuditFault,
  type AuditFinding,
  type AuditLogVerifier,
  type AuditVerifyResult,
} from "../audit/verify.js";
import { LogTail, prefixDigest, type TailLine, type TailRead } from "./log-tail.js";

/** What the viewer may say of one entry, from the strongest to none. */
export type EntryState = "signed" | "checkpointed" | "uncovered" | "bad" | "unverified";

/** States from the strongest claim to the weakest: a call shows its weakest side's. */
export const ENTRY_STATES: readonly EntryState[] = ["signed", "checkpointed", "uncovered", "bad", "unverified"];

/** One line of a log as the page lists it; the whole record is read back from `offset` for its detail. */
export interface IndexedEntry {
  readonly log: VerifiedLog;
  readonly line: number;
  readonly offset: number;
  readonly length: number;
  /** Why the line is not a well-formed entry (it cannot be before the first bad line), or null. */
  readonly malformed: string | null;
  /** 0 when unknown (a malformed line). */
  readonly seq: number;
  readonly hash: string;
  readonly time: string;
  /** `time` in epoch milliseconds (NaN when unknown). */
  readonly timeMs: number;
  readonly side: AuditSide | "";
  readonly caller: string;
  readonly callerVerified: boolean;
  readonly callee: string;
  readonly tool: string;
  readonly argsDigest: string;
  /** Whether the (redacted) arguments themselves were kept. */
  readonly hasArgs: boolean;
  readonly decision: AuditDecision | "";
  readonly reason: string | undefined;
  readonly outcome: AuditOutcome | undefined;
  readonly durationMs: number | undefined;
  readonly jti: string | undefined;
  readonly toolCallId: string | undefined;
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly person: string | undefined;
  readonly delegation: readonly string[] | undefined;
  readonly actors: readonly string[] | undefined;
  readonly approvedBy: string | undefined;
  readonly authMethod: AuditAuthMethod | undefined;
}

export interface VerifiedLogOptions {
  readonly id: number;
  readonly path: string;
  /** How the page names it (default: the file's name without `.jsonl`). */
  readonly name?: string;
  /** The witness: default `<path>.witness`; false to verify the log alone. */
  readonly witnessPath?: string | false;
  /** Checks checkpoint signatures; without it the verdict says they were not checked. */
  readonly verifier?: CheckpointVerifier;
  /** What the verifier trusts, for people. */
  readonly verifierSource?: string;
  /** One copy of each repeated string (IDs, tools, codes) across every log. */
  readonly intern?: (text: string) => string;
}

/** What was checked of the lines appended since the last full verification. */
export interface LiveChecks {
  readonly entries: number;
  readonly checkpoints: number;
  readonly fault?: AuditFinding;
}

/** A full verification's result, as `verifyAuditLog` returned it, and when it ran. */
export interface LogVerdict {
  readonly result: AuditVerifyResult;
  readonly at: string;
  readonly ms: number;
  /** Lines the viewer indexed when it ran (the verdict covers at least these). */
  readonly lines: number;
}

/** Faults that name no line of the file: the lines present are what they were. */
const NOT_A_LINE: ReadonlySet<AuditFault> = new Set<AuditFault>(["truncated", "torn-line"]);
/** How often the index and the verification may disagree (the file changing between them) before giving up. */
const ATTEMPTS = 3;

export class VerifiedLog {
  readonly id: number;
  readonly path: string;
  readonly name: string;
  readonly witnessPath: string | false | undefined;
  readonly verifier: CheckpointVerifier | undefined;
  readonly verifierSource: string | undefined;
  readonly #intern: (text: string) => string;
  #tail: LogTail;
  #entries: IndexedEntry[] = [];
  #verdict: LogVerdict | null = null;
  #error: string | null = null;
  #badLine = Infinity;
  #coveredSeq = 0;
  /** The verifier as the full pass left it: appended lines continue from it. */
  #continuation: AuditLogVerifier | null = null;
  /** Lines the full pass read (it may have read past the index, as the log grew): checked already. */
  #verifiedLines = 0;
  #live: { entries: number; checkpoints: number; fault?: AuditFinding } = { entries: 0, checkpoints: 0 };

  constructor(options: VerifiedLogOptions) {
    this.id = options.id;
    this.path = options.path;
    this.name = options.name ?? basename(options.path).replace(/\.jsonl$/, "");
    this.witnessPath = options.witnessPath;
    this.verifier = options.verifier;
    this.verifierSource = options.verifierSource;
    this.#intern = options.intern ?? ((text) => text);
    this.#tail = new LogTail(options.path);
  }

  /** The log's entries (and malformed lines), in file order. */
  get entries(): readonly IndexedEntry[] {
    return this.#entries;
  }

  get verdict(): LogVerdict | null {
    return this.#verdict;
  }

  /** Why the log could not be verified at all (it kept changing, or could not be read), if so. */
  get error(): string | null {
    return this.#error;
  }

  get live(): LiveChecks {
    return this.#live;
  }

  /** The first line that failed (the verdict's, or an appended one's); Infinity when none did. */
  get badLine(): number {
    return this.#badLine;
  }

  get signaturesChecked(): boolean {
    return this.verifier !== undefined;
  }

  /** Whether everything known of the log holds: its verdict, and every line appended since. */
  get ok(): boolean {
    return this.#error === null && this.#verdict?.result.ok === true && this.#live.fault === undefined;
  }

  stateOf(entry: IndexedEntry): EntryState {
    if (entry.line === this.#badLine) return "bad";
    if (entry.line > this.#badLine || entry.malformed !== null) return "unverified";
    if (entry.seq <= this.#coveredSeq) return this.verifier !== undefined ? "signed" : "checkpointed";
    return "uncovered";
  }

  /**
   * Reads and verifies the whole log, from the start: the index pass, `verifyAuditLog`, and the
   * check that both saw the same bytes. Throws only when the file cannot be read.
   */
  async load(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.#reset();
      const digest = createHash("sha256");
      await this.#tail.read((line) => this.#index(line), digest);
      const indexed = digest.digest("hex");
      const started = performance.now();
      const { result, verifier, lines } = await verifyAuditLogFrom(this.path, {
        ...(this.verifier !== undefined ? { verifier: this.verifier } : {}),
        ...(this.verifierSource !== undefined ? { verifierSource: this.verifierSource } : {}),
        ...(this.witnessPath !== undefined ? { witnessPath: this.witnessPath } : {}),
      });
      const ms = performance.now() - started;
      if ((await prefixDigest(this.path, this.#tail.offset)) === indexed) {
        this.#verdict = { result, at: new Date().toISOString(), ms, lines: this.#tail.lines };
        this.#applyVerdict(result);
        this.#continuation = verifier;
        this.#verifiedLines = lines;
        return;
      }
      if (attempt >= ATTEMPTS) {
        // Nothing read can be shown as verified: the bytes changed under every attempt.
        this.#verdict = { result, at: new Date().toISOString(), ms, lines: this.#tail.lines };
        this.#error = `the log changed while it was being verified (${ATTEMPTS} attempts): its lines are shown as unverified`;
        this.#badLine = 0;
        this.#checkpoints = [];
        return;
      }
    }
  }

  /**
   * Reads what was appended since the last read, checking each line from the verified head.
   * "rewritten": the file no longer holds what was read (cut, replaced); `load()` it again.
   */
  async poll(): Promise<TailRead> {
    const result = await this.#tail.read((line) => {
      this.#index(line);
      if (line.line < this.#badLine && this.#error === null) this.#check(line);
    });
    return result;
  }

  #reset(): void {
    this.#tail.reset();
    this.#entries = [];
    this.#verdict = null;
    this.#error = null;
    this.#badLine = Infinity;
    this.#coveredSeq = 0;
    this.#continuation = null;
    this.#verifiedLines = 0;
    this.#checkpoints = [];
    this.#live = { entries: 0, checkpoints: 0 };
  }

  #applyVerdict(result: AuditVerifyResult): void {
    const bad = result.firstBad;
    this.#badLine = bad !== undefined && bad.line >= 1 && !NOT_A_LINE.has(bad.reason) ? bad.line : Infinity;
    // What the checkpoints verified cover: those indexed before the first bad line.
    this.#coveredSeq = 0;
    for (const cp of this.#checkpoints) {
      if (cp.line >= this.#badLine) break;
      this.#coveredSeq = cp.upTo;
    }
    this.#checkpoints = [];
  }

  /** Checkpoints of the index pass (line, seq, upTo), until the verdict is applied. */
  #checkpoints: Array<{ line: number; seq: number; upTo: number }> = [];

  /** Indexes one line; returns its parsed value (undefined when it is not JSON). */
  #index(line: TailLine): unknown {
    let value: unknown;
    try {
      value = JSON.parse(line.text);
    } catch {
      this.#entries.push(this.#record(line, "not JSON"));
      return undefined;
    }
    if (isCheckpointRecord(value)) {
      const problem = checkpointProblem(value);
      if (problem !== null) this.#entries.push(this.#record(line, `malformed checkpoint: ${problem}`));
      else if (this.#verdict === null) {
        const cp = value as Checkpoint;
        this.#checkpoints.push({ line: line.line, seq: cp.seq, upTo: cp.upTo });
      }
      return value;
    }
    const problem = entryProblem(value);
    if (problem !== null) {
      this.#entries.push(this.#record(line, `malformed entry: ${problem}`));
      return value;
    }
    this.#entries.push(this.#entry(line, value as StoredAuditEntry));
    return value;
  }

  /**
   * One appended line, checked by the verifier the full pass left after the last line it read
   * (the same rules, tree and notes included), so a line shown live is checked as verification
   * checks it.
   */
  #check(line: TailLine): void {
    const verifier = this.#continuation;
    if (verifier === null) return;
    if (line.line <= this.#verifiedLines) {
      // Appended after the index pass but read (and found good) by the full pass already.
      const cp = this.#checkpointOf(line.text);
      if (cp !== null) this.#coveredSeq = cp.upTo;
      this.#live =
        cp === null
          ? { ...this.#live, entries: this.#live.entries + 1 }
          : { ...this.#live, checkpoints: this.#live.checkpoints + 1 };
      return;
    }
    const before = verifier.checkpoints;
    const fault = verifier.check(line.text, line.line);
    if (fault !== undefined) {
      this.#badLine = line.line;
      this.#live = { ...this.#live, fault };
      return;
    }
    if (verifier.checkpoints > before) {
      this.#coveredSeq = verifier.lastCheckpoint?.upTo ?? this.#coveredSeq;
      this.#live = { ...this.#live, checkpoints: this.#live.checkpoints + 1 };
    } else {
      this.#live = { ...this.#live, entries: this.#live.entries + 1 };
    }
  }

  #checkpointOf(text: string): Checkpoint | null {
    try {
      const value: unknown = JSON.parse(text);
      return isCheckpointRecord(value) ? (value as Checkpoint) : null;
    } catch {
      return null;
    }
  }

  #entry(line: TailLine, stored: StoredAuditEntry): IndexedEntry {
    const e = readableEntry(stored);
    const i = this.#intern;
    const opt = (s: string | undefined): string | undefined => (s === undefined ? undefined : i(s));
    const extra = stored as unknown as Record<string, unknown>;
    return {
      log: this,
      line: line.line,
      offset: line.offset,
      length: line.length,
      malformed: null,
      seq: e.seq,
      hash: e.hash,
      time: e.time,
      timeMs: Date.parse(e.time),
      side: e.side,
      caller: i(e.caller),
      callerVerified: e.callerVerified,
      callee: i(e.callee),
      tool: i(e.tool),
      argsDigest: e.argsDigest,
      hasArgs: e.args !== undefined,
      decision: e.decision,
      reason: opt(e.reason),
      outcome: e.outcome,
      durationMs: e.durationMs,
      jti: e.jti,
      toolCallId: e.toolCallId,
      traceId: e.traceId,
      // Written by newer writers (W3C trace context); read when present.
      spanId: typeof extra.spanId === "string" ? extra.spanId : undefined,
      person: opt(e.person),
      delegation: e.delegation?.map(i),
      actors: e.actors?.map(i),
      approvedBy: opt(e.approvedBy),
      authMethod: e.authMethod,
    };
  }

  /** A line that is not a well-formed entry: listed so the page can point at it, never as a call. */
  #record(line: TailLine, why: string): IndexedEntry {
    return {
      log: this,
      line: line.line,
      offset: line.offset,
      length: line.length,
      malformed: why,
      seq: 0,
      hash: "",
      time: "",
      timeMs: NaN,
      side: "",
      caller: "",
      callerVerified: false,
      callee: "",
      tool: "",
      argsDigest: "",
      hasArgs: false,
      decision: "",
      reason: undefined,
      outcome: undefined,
      durationMs: undefined,
      jti: undefined,
      toolCallId: undefined,
      traceId: undefined,
      spanId: undefined,
      person: undefined,
      delegation: undefined,
      actors: undefined,
      approvedBy: undefined,
      authMethod: undefined,
    };
  }
}
