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
import {
  GENESIS,
  linkFault,
  nextLink,
  sealFault,
  stepFault,
  type ChainFault,
  type ChainHead,
} from "../src/audit/chain.js";
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
    await log.append({
      side: "callee",
      caller: `spiffe://example.org/c${i}`,
      callerVerified: true,
      callee: "spiffe://example.org/s",
      tool: "t",
      argsDigest: `d${i}`,
      decision: "allow",
    });
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

/** A log of `entries` entries, then `change` done to its lines. */
function damaged(
  entries: number,
  change: (ls: string[]) => string[] | void,
  options: AuditLogOptions = {},
): () => Promise<string> {
  return async () => {
    const path = await writeLog(entries, options);
    const ls = lines(path);
    write(path, change(ls) ?? ls);
    return path;
  };
}

interface Case {
  name: string;
  /** Builds the damaged log; returns its path. */
  build(): Promise<string>;
  rule: ChainFault | null;
  verify: AuditFault | null;
}

const signed: AuditLogOptions = { signer: testSigner(keys), checkpointEvery: 2, checkpointIntervalMs: 0 };
// name, the damage, what the rule says of the entries left, what verify reports.
const cases: Case[] = [
  { name: "an intact log", build: () => writeLog(4), rule: null, verify: null },
  {
    name: "an edited entry (its hash kept)",
    build: damaged(4, (ls) => void (ls[2] = JSON.stringify({ ...entryAt(ls, 2), tool: "edited" }))),
    rule: "hash-mismatch",
    verify: "hash-mismatch",
  },
  {
    name: "a broken link (prev of another entry, re-hashed)",
    build: damaged(4, (ls) => void (ls[3] = reseal(entryAt(ls, 3), { prev: entryAt(ls, 1).hash }))),
    rule: "chain",
    verify: "chain",
  },
  {
    name: "a wrong sequence (an entry deleted)",
    build: damaged(4, (ls) => void ls.splice(1, 1)),
    rule: "sequence",
    verify: "sequence",
  },
  {
    name: "a wrong sequence (renumbered, re-hashed, still chained)",
    build: damaged(4, (ls) => void (ls[3] = reseal(entryAt(ls, 3), { seq: 7 }))),
    rule: "sequence",
    verify: "sequence",
  },
  {
    name: "a first entry not after the genesis value",
    build: damaged(1, (ls) => void (ls[0] = reseal(entryAt(ls, 0), { prev: "f".repeat(64) }))),
    rule: "chain",
    verify: "chain",
  },
  // Entries 1, 2 and checkpoint #1 left; the witness holds #2. What is left is a well-formed
  // chain: only the witness shows the cut, to both.
  { name: "a cut tail", build: damaged(4, (ls) => ls.slice(0, 3), signed), rule: null, verify: "truncated" },
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
      const reopened = AuditLog.open(path, {
        signer: testSigner(keys),
        checkpointEvery: 0,
        checkpointIntervalMs: 0,
        ...quiet,
      });
      if (c.verify === null) {
        await (await reopened).close();
      } else {
        await assert.rejects(
          reopened,
          { code: ErrorCodes.AUDIT_CORRUPT },
          "recovery refuses to continue what verify refuses",
        );
      }
    });
  }
});
