/**
 * Concurrency helper for test/authority.test.ts, run as its own process:
 *
 *   node --import tsx test/helpers/authority-issue-many.ts HOME PREFIX COUNT GO_FILE [TRUST_DOMAIN]
 *
 * Loads everything, prints "ready", waits until GO_FILE exists (so that every process starts
 * issuing at the same moment), then opens HOME (creating the authority if there is none yet)
 * and issues COUNT identities named PREFIX-0 .. PREFIX-(COUNT-1), each over its own CSR.
 * The last stdout line is JSON: [{ name, aztpId, serial, chainPem }].
 *
 * With PREFIX "@init" it instead runs `EmbeddedAuthority.init(HOME, TRUST_DOMAIN)` (what
 * `aztp init` does) after the barrier and prints {"trustDomain"} or {"error": code}.
 */
import { existsSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { EmbeddedAuthority } from "../../src/authority/authority.js";
import { generateWorkloadKey } from "../../src/spiffe/csr.js";

const [home, prefix, countText, goFile, trustDomain] = process.argv.slice(2);
if (!home || !prefix || !countText || !goFile) {
  process.stderr.write("usage: authority-issue-many.ts HOME PREFIX COUNT GO_FILE [TRUST_DOMAIN]\n");
  process.exit(2);
}
const count = Number(countText);

// Key generation is the workload's job and not what is being raced: do it before the barrier.
const keys = await Promise.all(Array.from({ length: count }, () => generateWorkloadKey()));
process.stdout.write("ready\n");
const deadline = Date.now() + 20_000;
while (!existsSync(goFile)) {
  if (Date.now() > deadline) throw new Error("the go file never appeared");
  await sleep(2);
}

if (prefix === "@init") {
  try {
    const a = await EmbeddedAuthority.init(home, trustDomain ?? "example.org");
    process.stdout.write(`${JSON.stringify({ trustDomain: a.defaultTrustDomain })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ error: (e as { code?: string }).code ?? String(e) })}\n`);
  }
} else {
  const authority = await EmbeddedAuthority.open(home, { create: true, ...(trustDomain ? { trustDomain } : {}) });
  const issued: Array<{ name: string; aztpId: string; serial: string; chainPem: string }> = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const { record, svid } = await authority.issueIdentity({ name }, (keys[i] as { csr: Buffer }).csr);
    issued.push({ name, aztpId: record.aztpId, serial: svid.serial, chainPem: svid.chainPem });
  }
  process.stdout.write(`${JSON.stringify(issued)}\n`);
}
