/**
 * Preloaded (node --import) by bench/http-breakdown.ts into a process that should do all of a
 * secured call's work except the signature operations: node:crypto's one-shot sign returns a
 * fixed 64-byte value and verify says yes. A measuring aid only; never for anything else.
 */
import { syncBuiltinESMExports } from "node:module";
import { createRequire } from "node:module";

const crypto = createRequire(import.meta.url)("node:crypto") as { sign: unknown; verify: unknown };
const signature = Buffer.alloc(64, 1);
crypto.sign = () => signature;
crypto.verify = () => true;
syncBuiltinESMExports();
