/**
 * The store suite (helpers/store-suite.ts) against every store: PostgreSQL (skipped, saying
 * so, without AZTP_TEST_PG_URL) and the home folder.
 */
import { randomBytes } from "node:crypto";
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
