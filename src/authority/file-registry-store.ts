/**
 * The registry in a home folder: registry.json, replaced atomically on every change, under the
 * home's cross-process lock (authority/store.ts). What the embedded authority has always done;
 * PostgreSQL's store (store/postgres/registry.ts) keeps the same promises for many replicas.
 */
import * as registry from "./registry.js";
import type { RegistryState } from "./registry.js";
import type { RegistryStore } from "./registry-store.js";
import { RegistrySnapshot } from "./snapshot.js";
import { HomeStore } from "./store.js";

export class FileRegistryStore implements RegistryStore {
  readonly #store: HomeStore;
  /** The registry as last read (or written) by this process; null until the first read. */
  #snapshot: RegistrySnapshot | null = null;
  #statedThisRun = false;
  readonly #endRun = (): void => {
    this.#statedThisRun = false;
  };

  constructor(home: string | HomeStore) {
    this.#store = typeof home === "string" ? new HomeStore(home) : home;
  }

  get location(): string {
    return this.#store.home;
  }

  /** The registry as on disk now: the current snapshot, replaced only when the file changed (cheap fstat otherwise). */
  current(): RegistrySnapshot {
    // One fstat per synchronous run (~2 µs in a tight loop, ~8 to 17 µs on an MCP call's path
    // here): a revocation committed by another process is seen by every check that starts in a
    // later turn of the event loop, so by every call that arrives after it, with no window
    // beyond the run in progress. Checks made back to back in one run (a caller checking
    // itself and its callee, a token's signer and its delegation links) share it: they are
    // microseconds apart, and a revocation landing between them is concurrent with the call
    // either way. Every write replaces the file (new inode), so the version changes reliably.
    // A folder watch would save the fstat but could lag behind the event loop.
    const snapshot = this.#snapshot;
    if (this.#statedThisRun && snapshot !== null) return snapshot;
    const v = this.#store.version("registry.json");
    this.#statedThisRun = true;
    // Cleared by a microtask, so the check never outlives the microtasks queued so far: a write
    // by this process acknowledged after it is seen (its continuation queues behind the clear),
    // and news from another process comes as I/O, which the event loop takes only once every
    // microtask has run.
    queueMicrotask(this.#endRun);
    if (snapshot !== null && snapshot.version === v) return snapshot;
    return (this.#snapshot = new RegistrySnapshot(this.#readState(), v));
  }

  /** The file is the committed state: current() already reads it. */
  fresh(): Promise<RegistrySnapshot> {
    return Promise.resolve(this.current());
  }

  /**
   * Read-modify-write of the registry under the home lock, on a fresh read of the file (never
   * the current snapshot, which stays frozen). Once written, the new state becomes the
   * snapshot; if `fn` fails, nothing was written and the snapshot stands.
   */
  mutate<T>(fn: (state: RegistryState) => Promise<T> | T): Promise<T> {
    return this.#store.withLock(async () => {
      const state = this.#readState();
      const result = await fn(state);
      this.#store.writeJson(["registry.json"], state);
      this.#snapshot = new RegistrySnapshot(state, this.#store.version("registry.json"));
      return result;
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** A fresh, mutable copy of registry.json (the empty registry when there is none). */
  #readState(): RegistryState {
    return this.#store.exists("registry.json")
      ? this.#store.readJson<RegistryState>("registry.json")
      : registry.emptyRegistry();
  }
}
