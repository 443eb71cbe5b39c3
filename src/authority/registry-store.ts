/**
 * Where the registry lives: identities with their links and policies, and the revocations.
 * One interface, two stores: a home folder (registry.json, for the embedded authority) and
 * PostgreSQL (store/postgres/registry.ts, shared by `aztp serve` replicas).
 *
 * The registry's rules stay in registry.ts (pure functions over RegistryState); a store only
 * keeps the state, serialises writers across processes and tells readers when it changed.
 */
import type { RegistryState } from "./registry.js";
import type { RegistrySnapshot } from "./snapshot.js";

export interface RegistryStore {
  /** Where it is, for messages: a folder, or a PostgreSQL URL without its password. */
  readonly location: string;
  /**
   * The registry as this process knows it now: synchronous and cheap, it is asked on every
   * revocation check. The file store checks the file's version (one fstat per synchronous run);
   * PostgreSQL answers from the state as of its last notification or refresh, so a replica
   * that must be exact calls `fresh()` first.
   */
  current(): RegistrySnapshot;
  /** The registry as committed now (one round trip on PostgreSQL). */
  fresh(): Promise<RegistrySnapshot>;
  /**
   * Read-modify-write of the newest committed state, serialised across processes and replicas:
   * `fn` changes `state` in place. If `fn` throws, nothing is written. Once this resolves the
   * change is durable and `current()` shows it.
   */
  mutate<T>(fn: (state: RegistryState) => T | Promise<T>): Promise<T>;
  close(): Promise<void>;
}
