/**
 * The audit chain rule (src/audit/chain.ts), table-driven: for each damage done to a log, what
 * the rule says of its entries, what `aztp audit verify` (verifyAuditLog) reports, and whether
 * the writer's crash recovery (AuditLog.open) refuses to continue it. Recovery and verify must
 * agree, since both apply the one rule.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { GENESIS, linkFault, nextLink, sealFault, stepFault, type ChainFault, type ChainHead } from "../src/audit/chain.js";
import { sealEntry, type AuditEntry, type UnsealedEntry } from "../src/audit/entry.js";
import { AuditLog, GENESIS_HASH, verifyAuditLog, type AuditFault, type AuditLogOptions } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { newTestKeys, testSigner, testVerifier } from "./helpers/audit-signer.js";

const dir = mkdtempSync(join(tmpdir(), "aztp-audit-chain-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const keys = newTestKeys();
let n = 0;
const quiet: Pick<AuditLogOptions, "onWarning"> = { onWarning: () => undefined };

async function writeLog(entries: number, options: AuditLogOptions = {}): Promise<string> {
  const path = join(dir, `log-${++n}.jsonl`);
  const log = await AuditLog.open(path, { ...quiet, ...options });
  for (let i = 1; i <= entries; i++) {
    await log.append({ side: "callee", caller: `spiffe://example.org/c${i}`, callerVerified: true, callee: "spiffe://example.org/s", tool: "t", argsDigest: `d${i}`, decision: "allow" });
  }
  await log.close();
  return path;
}

const lines = (path: string): string[] => readFileSync(path, "utf8").split("\n").slice(0, -1);
const write = (path: string, ls: string[]): void => writeFileSync(path, ls.map((l) => `${l}\n`).join(""));
const entryAt = (ls: string[], i: number): AuditEntry => JSON.parse(ls[i] as string) as AuditEntry;
const reseal = (e: AuditEntry, change: Partial<UnsealedEntry>): string => {
  const { hash: _hash, ...rest } = e;
  return sealEntry({ ...rest, ...change } as UnsealedEntry).line;
};

/** The rule applied from the genesis head over the entries of `path`: the first fault, if any. */
function ruleVerdict(path: string): ChainFault | null {
  let head: ChainHead = GENESIS;
  for (const line of lines(path)) {
    const value = JSON.parse(line) as AuditEntry & { type?: string };
    if (value.type === "checkpoint") continue;
    const fault = stepFault(head, value);
    if (fault !== null) return fault;
    head = { seq: value.seq, hash: value.hash };
  }
  return null;
}

interface Case {
  name: string;
  /** Builds the damaged log; returns its path. */
  build(): Promise<string>;
  rule: ChainFault | null;
  verify: AuditFault | null;
}

const cases: Case[] = [
  { name: "an intact log", build: () => writeLog(4), rule: null, verify: null },
  {
    name: "an edited entry (its hash kept)",
    async build() {
      const path = await writeLog(4);
      const ls = lines(path);
      ls[2] = JSON.stringify({ ...entryAt(ls, 2), tool: "edited" });
      write(path, ls);
      return path;
    },
    rule: "hash-mismatch",
    verify: "hash-mismatch",
  },
  {
    name: "a broken link (prev of another entry, re-hashed)",
    async build() {
      const path = await writeLog(4);
      const ls = lines(path);
      ls[3] = reseal(entryAt(ls, 3), { prev: entryAt(ls, 1).hash });
      write(path, ls);
      return path;
    },
    rule: "chain",
    verify: "chain",
  },
  {
    name: "a wrong sequence (an entry deleted)",
    async build() {
      const path = await writeLog(4);
      const ls = lines(path);
      ls.splice(1, 1);
      write(path, ls);
      return path;
    },
    rule: "sequence",
    verify: "sequence",
  },
  {
    name: "a wrong sequence (renumbered and re-hashed, still chained)",
    async build() {
      const path = await writeLog(4);
      const ls = lines(path);
      ls[3] = reseal(entryAt(ls, 3), { seq: 7 });
      write(path, ls);
      return path;
    },
    rule: "sequence",
    verify: "sequence",
  },
  {
    name: "a first entry that does not start from the genesis value",
    async build() {
      const path = await writeLog(1);
      const ls = lines(path);
      ls[0] = reseal(entryAt(ls, 0), { prev: "f".repeat(64) });
      write(path, ls);
      return path;
    },
    rule: "chain",
    verify: "chain",
  },
  {
    name: "a cut tail (entries and checkpoint the witness holds removed)",
    async build() {
      const path = await writeLog(4, { signer: testSigner(keys), checkpointEvery: 2, checkpointIntervalMs: 0 });
      const ls = lines(path);
      write(path, ls.slice(0, 3)); // entries 1, 2 and checkpoint #1; the witness holds #2
      return path;
    },
    // What is left is a well-formed chain: only the witness shows the cut, to both.
    rule: null,
    verify: "truncated",
  },
];

describe("the audit chain rule", () => {
  test("steps: genesis, next link, seal", () => {
    assert.deepEqual(GENESIS, { seq: 0, hash: GENESIS_HASH });
    assert.deepEqual(nextLink(GENESIS), { seq: 1, prev: GENESIS_HASH });
    assert.equal(linkFault(GENESIS, { seq: 1, prev: GENESIS_HASH }), null);
    assert.equal(linkFault(GENESIS, { seq: 2, prev: GENESIS_HASH }), "sequence");
    assert.equal(linkFault({ seq: 1, hash: "a".repeat(64) }, { seq: 2, prev: GENESIS_HASH }), "chain");
    assert.throws(() => sealFault({ ...({} as AuditEntry), tool: "\ud800", hash: "0" }));
  });

  for (const c of cases) {
    test(`${c.name}: recovery and verify agree with the rule`, async () => {
      const path = await c.build();
      assert.equal(ruleVerdict(path), c.rule, "the rule over the entries");
      const verified = await verifyAuditLog(path, { verifier: testVerifier(keys) });
      assert.equal(verified.firstBad?.reason ?? null, c.verify, verified.firstBad?.message);
      // Recovery with a signer reads the tail back to the newest checkpoint (here: to the start).
      const reopened = AuditLog.open(path, { signer: testSigner(keys), checkpointEvery: 0, checkpointIntervalMs: 0, ...quiet });
      if (c.verify === null) {
        await (await reopened).close();
      } else {
        await assert.rejects(reopened, { code: ErrorCodes.AUDIT_CORRUPT }, "recovery refuses to continue what verify refuses");
      }
    });
  }
});
