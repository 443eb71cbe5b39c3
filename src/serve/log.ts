/**
 * Structured logs: one JSON object per line on stdout (or wherever `write` sends it), with
 * `ts`, `level` and `msg` first. A request is one line (`msg: "request"`); start, stop and
 * failures are lines of their own. Lines below the level are dropped.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
}

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === "string" && v in RANK;
}

export function jsonLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => void process.stdout.write(line),
): Logger {
  const min = RANK[level];
  return {
    log(l, msg, fields = {}) {
      if (RANK[l] < min) return;
      let line: string;
      try {
        line = JSON.stringify({ ts: new Date().toISOString(), level: l, msg, ...fields });
      } catch {
        line = JSON.stringify({ ts: new Date().toISOString(), level: l, msg, note: "fields not serialisable" });
      }
      write(`${line}\n`);
    },
  };
}
