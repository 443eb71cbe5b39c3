/**
 * What both guard sides share: the mode check, and writing audit entries without holding up
 * the call (an append resolves when the entry is durable; the call does not wait for it, but
 * `flush()` does, and a failed append is reported, never thrown into the call).
 */
import type { AuditEntryInput } from "../audit/entry.js";
import type { AuditLog } from "../audit/log.js";
import { AztpError, ErrorCodes } from "../errors.js";

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

export function checkMode(mode: unknown): GuardMode {
  if (mode === undefined) return "enforce";
  if (mode !== "enforce" && mode !== "audit") {
    throw new AztpError(ErrorCodes.INVALID_ARGUMENT, `mode must be "enforce" or "audit", got ${JSON.stringify(mode)}`);
  }
  return mode;
}

export function defaultAuditError(error: unknown): void {
  process.emitWarning(`aztp: audit append failed: ${(error as Error)?.message ?? String(error)}`, { code: "AZTP_AUDIT" });
}

export class AuditRecorder {
  readonly #log: AuditLog | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #pending = new Set<Promise<unknown>>();

  constructor(log: AuditLog | undefined, onError: ((error: unknown) => void) | undefined) {
    this.#log = log;
    this.#onError = onError ?? defaultAuditError;
  }

  get enabled(): boolean {
    return this.#log !== undefined;
  }

  record(entry: AuditEntryInput): void {
    if (!this.#log) return;
    const p = this.#log.append(entry).catch((e: unknown) => this.#onError(e));
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  /** Waits until every entry recorded so far is durable (or has failed). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
