/**
 * What both guard sides share: the mode check, and the audit promise the guards keep (Vault's,
 * for its audit devices): an answer leaves only once its entry has been written, and when the
 * log cannot be written, enforce mode answers no call rather than run one unaudited.
 *
 * `record` resolves once the entry is in the log (as durable as the log's `durability` makes
 * it). It never rejects: a failed write comes back as the error the binding must answer with
 * instead of the result (enforce mode), or is warned about once and let through (audit mode).
 */
import type { AuditEntryInput } from "../audit/entry.js";
import type { AuditWriter } from "../audit/writer.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { CallSpan } from "../invocation/trace-context.js";

export type GuardMode = "enforce" | "audit";

/**
 * Audit reasons of a call that was never answered, so no answer will ever settle it: its
 * caller cancelled it, its connection closed first, or the transport failed to send it
 * (which over HTTP does not prove the server never got it).
 */
export const Unanswered = {
  CANCELLED: "cancelled",
  CONNECTION_CLOSED: "connection-closed",
  SEND_FAILED: "send-failed",
} as const;
export type UnansweredReason = (typeof Unanswered)[keyof typeof Unanswered];

/** What an entry records of a call's span (the caller's and the callee's entries alike). */
export function traceFields(span: CallSpan): {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceNote?: string;
} {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    ...(span.parentSpanId !== undefined ? { parentSpanId: span.parentSpanId } : {}),
    ...(span.note !== undefined ? { traceNote: span.note } : {}),
  };
}

export function checkMode(mode: unknown): GuardMode {
  if (mode === undefined) return "enforce";
  if (mode !== "enforce" && mode !== "audit") {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `mode must be "enforce" or "audit", got ${JSON.stringify(mode)}`);
  }
  return mode;
}

const saidAuditMode = new Set<string>();
/**
 * Audit mode lets refused calls through: secure by default means that is never silent. Said
 * once per identity and side, when its first guard is made.
 */
export function sayIfAuditMode(mode: GuardMode, id: string, side: string): void {
  if (mode !== "audit" || saidAuditMode.has(`${side} ${id}`)) return;
  saidAuditMode.add(`${side} ${id}`);
  process.emitWarning(
    `aztp: ${id} runs in audit mode (${side}): calls that fail verification, policy or receipt checks are recorded and let through, not refused`,
    { code: "AZTP_AUDIT_MODE" },
  );
}

export function defaultAuditError(error: unknown): void {
  process.emitWarning(`aztp: audit append failed: ${(error as Error)?.message ?? String(error)}`, {
    code: "AZTP_AUDIT",
  });
}

export class AuditRecorder {
  readonly #log: AuditWriter | undefined;
  readonly #mode: GuardMode;
  readonly #onError: (error: unknown) => void;
  readonly #pending = new Set<Promise<unknown>>();
  /** Audit mode lets calls through an unwritable log and says so once per outage, not per call. */
  #warned = false;

  constructor(log: AuditWriter | undefined, mode: GuardMode, onError: ((error: unknown) => void) | undefined) {
    this.#log = log;
    this.#mode = mode;
    this.#onError = onError ?? defaultAuditError;
  }

  get enabled(): boolean {
    return this.#log !== undefined;
  }

  /** The log entries go to (undefined: none). */
  get log(): AuditWriter | undefined {
    return this.#log;
  }

  /**
   * Whether a call may start: undefined when it may, else the ERR_AUDIT_UNAVAILABLE to refuse
   * it with. A log that failed is asked to recover first, so calls resume by themselves once
   * it can be written again. One property read while the log is healthy, and then no promise
   * either (undefined at once): a call's path awaits nothing it does not have to.
   */
  unavailable(): Promise<AztpError | undefined> | undefined {
    const log = this.#log;
    if (log === undefined || log.writable !== false) return undefined;
    return this.#recover(log);
  }

  async #recover(log: AuditWriter): Promise<AztpError | undefined> {
    if ((await log.recover?.()) === true) {
      this.#warned = false;
      return undefined;
    }
    return this.#failed(
      new AztpError(
        ErrorCodes.AUDIT_UNAVAILABLE,
        `the audit log ${log.path} cannot be written, so no call is run unaudited; calls resume once it can be written again`,
      ),
    );
  }

  /**
   * Writes the entry; resolves once it is written, with the error to answer with if it could not be
   * (see the file comment).
   */
  record(entry: AuditEntryInput): Promise<AztpError | undefined> {
    const log = this.#log;
    if (log === undefined) return Promise.resolve(undefined);
    const p = log.append(entry).then(
      () => undefined,
      (cause: unknown) => {
        this.#onError(cause);
        return this.#failed(
          new AztpError(
            ErrorCodes.AUDIT_UNAVAILABLE,
            `the call's audit entry could not be written to ${log.path}, so its answer is withheld: ${(cause as Error)?.message ?? String(cause)}`,
            { cause },
          ),
        );
      },
    );
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
    return p;
  }

  #failed(error: AztpError): AztpError | undefined {
    if (this.#mode === "enforce") return error;
    if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(`aztp: ${error.message} (audit mode: calls go on unaudited)`, {
        code: "AZTP_AUDIT_UNAVAILABLE",
      });
    }
    return undefined;
  }

  /** Waits until every entry recorded so far is written (or has failed). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
