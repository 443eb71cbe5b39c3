/**
 * The store suite (helpers/store-suite.ts) against every store: PostgreSQL (skipped, saying
 * so, without AZTP_TEST_PG_URL) and the home folder.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileCaStore } from "../src/authority/file-ca-store.js";
import { FileRegistryStore } from "../src/authority/file-registry-store.js";
import { MemoryReplayCache } from "../src/invocation/replay.js";
import { FileApiKeyStore } from "../src/store/api-keys.js";
import { openPostgresStores } from "../src/store/postgres/index.js";
import { pgDatabase, skipWithoutPg } from "./helpers/pg.js";
import { storeSuite, type StoreInstance } from "./helpers/store-suite.js";

/** One KEK for every replica of a test, as an operator gives each replica the same one. */
const kekBytes = randomBytes(32);

storeSuite({
  name: "PostgreSQL",
  propagationMs: 1000,
  location: async (t) => (skipWithoutPg(t) ? undefined : pgDatabase(t)),
  open: async (url): Promise<StoreInstance> => {
    const s = await openPostgresStores(url, { kek: kekBytes });
    return { registry: s.registry, ca: s.ca, replay: s.replay, apiKeys: s.apiKeys, close: () => s.close() };
  },
});

/**
 * The home folder: each instance its own store objects on one folder, as two processes have.
 * The replay cache of the embedded authority lives in its process: one per location here.
 */
const replayOf = new Map<string, MemoryReplayCache>();
storeSuite({
  name: "home folder",
  propagationMs: 1000,
  location: async (t) => {
    const home = mkdtempSync(join(tmpdir(), "aztp-stores-"));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    return home;
  },
  open: async (home): Promise<StoreInstance> => {
    let replay = replayOf.get(home);
    if (replay === undefined) replayOf.set(home, (replay = new MemoryReplayCache()));
    const registry = new FileRegistryStore(home);
    const ca = new FileCaStore(home);
    const apiKeys = new FileApiKeyStore(home);
    return {
      registry,
      ca,
      replay,
      apiKeys,
      close: async () => {
        await registry.close();
        await ca.close();
        await apiKeys.close();
      },
    };
  },
});
