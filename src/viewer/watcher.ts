/**
 * The live side of the viewer: the logs it was given, read and verified at start, then watched
 * as they grow, with the call index kept up to date and every change announced.
 *
 * Each log is polled (a `stat` and, when it grew, a read of what was appended) on a short
 * interval, and sooner when `fs.watch` reports a change; folders are listed again for logs that
 * appear in them. Appended lines are checked as they are read (verified-log.ts) before the
 * index sees them; a log that no longer holds what was read (cut, replaced) is read and verified
 * again in full, and the index rebuilt. One cycle runs at a time.
 */
import { watch, type FSWatcher } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { CheckpointVerifier } from "../audit/checkpoint.js";
import type { Trust } from "../invocation/trust.js";
import { CallIndex } from "./call-index.js";
import { isFile } from "./log-tail.js";
import { VerifiedLog, type IndexedEntry } from "./verified-log.js";

/** How a log's signatures are checked: the trust source `aztp audit verify` would use for it. */
export interface LogTrust {
  readonly verifier?: CheckpointVerifier;
  /** For people: "bundle /etc/aztp/bundle.json", "the authority in /srv/aztp". */
  readonly source?: string;
  /** For the tokens and receipts of its entries. */
  readonly trust?: Trust;
}

export interface LogWatcherOptions {
  /** Log files, each verified and watched. */
  readonly files: readonly string[];
  /** Folders whose `*.jsonl` logs are verified and watched, those that appear later too. */
  readonly folders?: readonly string[];
  /** The trust source for a log (null: signatures are not checked, `--no-signatures`). */
  readonly trustFor: (path: string) => Promise<LogTrust | null>;
  /** Compare each log with its witness (`<log>.witness`); default true. */
  readonly witness?: boolean;
  /** How a log is named on the page, when not by its file name (a store's snapshot). */
  readonly nameOf?: (path: string) => string | undefined;
  /** Milliseconds between polls (default 500). */
  readonly intervalMs?: number;
  /** Called before each poll: a store's snapshot is exported again here when the store moved on. */
  readonly refresh?: () => Promise<void>;
}

/** How soon a log whose verdict stopped at a torn last line is verified again once it grew. */
const TORN_RETRY_MS = 2_000;

export type WatchChange = { readonly kind: "loaded" | "appended" | "reverified" | "error"; readonly log?: number };

export class LogWatcher {
  readonly index = new CallIndex();
  readonly #options: LogWatcherOptions;
  readonly #logs: VerifiedLog[] = [];
  readonly #trust = new Map<number, LogTrust | null>();
  readonly #readErrors = new Map<number, string>();
  readonly #interned = new Map<string, string>();
  readonly #listeners = new Set<(change: WatchChange) => void>();
  readonly #watchers: FSWatcher[] = [];
  #ready = false;
  #version = 0;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  #reverify = false;
  #reverified: Array<() => void> = [];
  #closed = false;

  constructor(options: LogWatcherOptions) {
    this.#options = options;
  }

  get logs(): readonly VerifiedLog[] {
    return this.#logs;
  }

  /** True once every log given at start was read and verified. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Bumped on every change the page should fetch again for. */
  get version(): number {
    return this.#version;
  }

  trustOf(log: VerifiedLog): LogTrust | null {
    return this.#trust.get(log.id) ?? null;
  }

  readErrorOf(log: VerifiedLog): string | undefined {
    return this.#readErrors.get(log.id);
  }

  onChange(listener: (change: WatchChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Reads and verifies every log, then watches them. Throws when a log given cannot be read. */
  async start(): Promise<void> {
    const paths = [...this.#options.files];
    for (const folder of this.#options.folders ?? []) paths.push(...(await logsIn(folder)));
    // A file given both alone and in its folder is one log (joined twice, it would pair with itself).
    for (const path of new Set(paths)) await this.#add(path, true);
    this.index.rebuild(this.#allEntries());
    this.#ready = true;
    this.#changed({ kind: "loaded" });
    for (const target of [...this.#options.files, ...(this.#options.folders ?? [])]) {
      try {
        const w = watch(target, { persistent: false }, () => this.poke());
        w.on("error", () => undefined); // polling goes on
        this.#watchers.push(w);
      } catch {
        // polling alone
      }
    }
    this.#schedule();
  }

  /** Asks for a poll now (a file changed). */
  poke(): void {
    if (this.#closed) return;
    if (this.#running !== null) {
      this.#again = true;
      return;
    }
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#cycle(), 20);
  }

  /** Verifies every log again in full (chain, checkpoints, witness), then rebuilds the index. */
  reverify(): Promise<void> {
    this.#reverify = true;
    const done = new Promise<void>((resolve) => this.#reverified.push(resolve));
    this.poke();
    return done;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    for (const w of this.#watchers) w.close();
    this.#listeners.clear();
    await this.#running;
    for (const resolve of this.#reverified.splice(0)) resolve();
  }

  async #add(path: string, atStart: boolean): Promise<VerifiedLog> {
    const trust = await this.#options.trustFor(path);
    const id = this.#logs.length + 1;
    const name = this.#options.nameOf?.(path);
    const log = new VerifiedLog({
      id,
      path,
      ...(name !== undefined ? { name } : {}),
      ...(this.#options.witness === false ? { witnessPath: false } : {}),
      ...(trust?.verifier !== undefined ? { verifier: trust.verifier } : {}),
      ...(trust?.source !== undefined ? { verifierSource: trust.source } : {}),
      intern: (text) => {
        const known = this.#interned.get(text);
        if (known !== undefined) return known;
        if (this.#interned.size < 100_000) this.#interned.set(text, text);
        return text;
      },
    });
    this.#trust.set(id, trust);
    this.#logs.push(log);
    if (atStart) await log.load();
    else
      await log.load().catch((e: unknown) => {
        this.#readErrors.set(id, (e as Error).message);
      });
    return log;
  }

  #allEntries(): Iterable<IndexedEntry> {
    const logs = this.#logs;
    return (function* () {
      for (const log of logs) yield* log.entries;
    })();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => this.#cycle(), this.#options.intervalMs ?? 500);
    this.#timer.unref();
  }

  #cycle(): void {
    if (this.#closed || this.#running !== null) return;
    this.#timer = null;
    this.#running = this.#poll()
      .catch(() => undefined)
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          this.poke();
        } else this.#schedule();
      });
  }

  async #poll(): Promise<void> {
    await this.#options.refresh?.().catch(() => undefined);
    if (this.#reverify) {
      for (const log of this.#logs) {
        await log.load().then(
          () => this.#readErrors.delete(log.id),
          (e: unknown) => this.#readErrors.set(log.id, (e as Error).message),
        );
      }
      this.#reverify = false;
      this.index.rebuild(this.#allEntries());
      this.#changed({ kind: "reverified" });
      for (const resolve of this.#reverified.splice(0)) resolve();
      return;
    }
    for (const folder of this.#options.folders ?? []) {
      const known = new Set(this.#logs.map((l) => l.path));
      for (const path of await logsIn(folder).catch(() => [])) {
        if (known.has(path)) continue;
        const log = await this.#add(path, false);
        this.index.add(log.entries);
        this.#changed({ kind: "loaded", log: log.id });
      }
    }
    for (const log of this.#logs) {
      if (this.#closed) return;
      const before = log.entries.length;
      const live = log.live;
      try {
        const read = await log.poll();
        this.#readErrors.delete(log.id);
        // A verdict that stopped at a last line still being written (a writer in the middle of it
        // as the verifier read) left the rest unchecked, the witness too: once the log has moved
        // on, it is verified again in full (at most every TORN_RETRY_MS, for a log that never rests).
        const torn = log.verdict?.result.firstBad?.reason === "torn-line";
        if (read === "appended" && torn && Date.now() - Date.parse(log.verdict?.at ?? "") > TORN_RETRY_MS) {
          await log.load();
          this.index.rebuild(this.#allEntries());
          this.#changed({ kind: "reverified", log: log.id });
        } else if (read === "rewritten") {
          await log.load();
          this.index.rebuild(this.#allEntries());
          this.#changed({ kind: "reverified", log: log.id });
        } else if (read === "appended") {
          if (log.entries.length > before) this.index.add(log.entries.slice(before));
          this.#changed({ kind: "appended", log: log.id });
        } else if (log.live !== live) this.#changed({ kind: "appended", log: log.id });
      } catch (e) {
        if (this.#readErrors.get(log.id) !== (e as Error).message) {
          this.#readErrors.set(log.id, (e as Error).message);
          this.#changed({ kind: "error", log: log.id });
        }
      }
    }
  }

  #changed(change: WatchChange): void {
    this.#version++;
    for (const listener of this.#listeners) listener(change);
  }
}

/** The `*.jsonl` logs in a folder, by name. */
export async function logsIn(folder: string): Promise<string[]> {
  const names = (await readdir(folder)).filter((n) => n.endsWith(".jsonl")).sort();
  const out: string[] = [];
  for (const name of names) if (await isFile(join(folder, name))) out.push(join(folder, name));
  return out;
}
