/**
 * Transparency-log proofs about an audit log (src/audit/proof.ts, `aztp audit prove |
 * consistency | verify-proof`): every entry's inclusion proof and every older checkpoint's
 * consistency proof verify with the signer's key alone; an auditor holding an older checkpoint
 * detects a rewritten or a cut log even when the writer re-signs it with its own key; every
 * change to a proof is refused with the rule it breaks; a log written before trees predates
 * proofs, says so, and is proven from its next checkpoint on.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import aztp from "aztp-client";
import { AuditLog, verifyAuditLog, type AuditEntryInput, type AuditLogOptions } from "../src/audit/index.js";
import { makeCheckpoint, type Checkpoint, type CheckpointSigner } from "../src/audit/checkpoint.js";
import { leafHashOfText, MerkleFrontier } from "../src/audit/merkle.js";
import {
  CONSISTENCY_PROOF_TYPE,
  parseKeptCheckpoint,
  proveConsistency,
  proveInclusion,
  verifyProof,
  type ConsistencyProof,
  type InclusionProof,
} from "../src/audit/proof.js";
import { ErrorCodes } from "../src/errors.js";
import { svidCheckpointSigner } from "../src/invocation/index.js";
import { newTestKeys, testSigner, testVerifier } from "./helpers/audit-signer.js";
import { checkCosignatures, cosignaturesPath, cosignLog } from "../src/audit/cosigner.js";
import { cosignerVerifierKey } from "../src/audit/cosignature.js";
import { generateKeyPairSync } from "node:crypto";
import { aztpCli as aztpCliAt, assertExit, tempDir } from "./helpers/authority-util.js";

const writer = newTestKeys("spiffe://example.org/audit-writer");
const mallory = newTestKeys("spiffe://example.org/mallory");
const verifier = testVerifier(writer);
const quiet: Pick<AuditLogOptions, "onWarning"> = { onWarning: () => undefined };

function entry(i: number): AuditEntryInput {
  return {
    side: "callee",
    caller: "spiffe://example.org/agent",
    callerVerified: true,
    callee: "spiffe://example.org/tools",
    tool: `tool_${i}`,
    argsDigest: `digest-${i}`,
    decision: i % 4 === 0 ? "deny" : "allow",
  };
}

async function writeLog(path: string, from: number, to: number, options: AuditLogOptions = {}): Promise<void> {
  const log = await AuditLog.open(path, { signer: testSigner(writer), checkpointEvery: 4, ...quiet, ...options });
  for (let i = from; i <= to; i++) await log.append(entry(i));
  await log.close();
}

function lines(path: string): string[] {
  return readFileSync(path, "utf8").split("\n").filter(Boolean);
}

function checkpoints(path: string): Checkpoint[] {
  return lines(path)
    .map((l) => JSON.parse(l) as Checkpoint)
    .filter((v) => v.type === "checkpoint");
}

/** `cp` signed anew by its writer over a tree of other entries (a frontier of zeros). */
function lyingTree(cp: Checkpoint, origin: string): Checkpoint {
  return makeCheckpoint(
    { ...cp, note: undefined, frontier: undefined } as unknown as Checkpoint,
    MerkleFrontier.of(4, [Buffer.alloc(32)]),
    origin,
    testSigner(writer),
  );
}

describe("inclusion and consistency proofs", () => {
  it("proves every entry in the newest checkpoint's tree, and every older checkpoint a prefix of it", async (t) => {
    const path = join(tempDir(t, "audit"), "a.jsonl");
    await writeLog(path, 1, 10);
    await writeLog(path, 11, 17); // reopened: the tree continues from the newest checkpoint's frontier
    const verdict = await verifyAuditLog(path, { verifier });
    assert.equal(verdict.ok, true, verdict.firstBad?.message);
    assert.equal(verdict.tree.state, "proven");
    assert.equal(verdict.tree.size, 17);
    for (let seq = 1; seq <= 17; seq++) {
      const proof = await proveInclusion(path, seq, { verifier });
      assert.equal(proof.treeSize, 17);
      assert.ok(proof.proof.length <= 5, "O(log n) hashes");
      assert.deepEqual(verifyProof(JSON.parse(JSON.stringify(proof)), verifier), {
        type: "inclusion",
        origin: verdict.tree.origin,
        signer: writer.id,
        seq,
        treeSize: 17,
      });
    }
    for (const older of checkpoints(path).slice(0, -1)) {
      const proof = await proveConsistency(path, older, { verifier });
      assert.equal(verifyProof(proof, verifier).type, "consistency");
    }
  });

  it("an auditor's older checkpoint catches a log rewritten or cut and re-signed by its own writer", async (t) => {
    const dir = tempDir(t, "audit");
    const path = join(dir, "a.jsonl");
    await writeLog(path, 1, 8);
    const kept = checkpoints(path)[1] as Checkpoint; // the auditor kept the checkpoint of 8 entries
    assert.equal(kept.upTo, 8);

    // The writer rewrites entry 3 and re-signs everything with its own key: the chain and every
    // checkpoint verify, since the key is the writer's; only the older checkpoint knows.
    const rewritten = join(dir, "rewritten.jsonl");
    const honest = lines(path).filter((l) => !l.includes('"type":"checkpoint"'));
    const origin = (await verifyAuditLog(path)).tree.origin;
    await writeLog(rewritten, 1, 2, { witnessPath: `${rewritten}.w`, origin });
    const log = await AuditLog.open(rewritten, {
      signer: testSigner(writer),
      checkpointEvery: 4,
      witnessPath: `${rewritten}.w`,
      ...quiet,
    });
    await log.append({ ...entry(3), tool: "tool_3_rewritten" });
    for (let i = 4; i <= 12; i++) await log.append(entry(i));
    await log.close();
    assert.equal(
      (await verifyAuditLog(rewritten, { verifier, witnessPath: `${rewritten}.w` })).ok,
      true,
      "it verifies alone",
    );
    await assert.rejects(proveConsistency(rewritten, kept, { verifier, witnessPath: `${rewritten}.w` }), {
      code: ErrorCodes.AUDIT_PROOF_INVALID,
      rule: "consistency",
    });

    // Cut to 5 entries and re-signed: shorter than what the auditor saw.
    const cut = join(dir, "cut.jsonl");
    await writeLog(cut, 1, 5, { witnessPath: `${cut}.w`, origin });
    assert.equal(honest.length, 8);
    await assert.rejects(proveConsistency(cut, kept, { verifier, witnessPath: `${cut}.w` }), {
      code: ErrorCodes.AUDIT_PROOF_INVALID,
      rule: "truncated",
    });

    // The honest log, grown since, is an extension of what the auditor kept.
    await writeLog(path, 9, 13);
    const proof = await proveConsistency(path, kept, { verifier });
    assert.deepEqual(verifyProof(proof, verifier), {
      type: "consistency",
      origin: (await verifyAuditLog(path, { verifier })).tree.origin,
      signer: writer.id,
      fromSize: 8,
      toSize: 13,
    });
  });

  it("refuses every altered proof with the rule it breaks, and keeps an honest twin passing", async (t) => {
    const path = join(tempDir(t, "audit"), "a.jsonl");
    await writeLog(path, 1, 9);
    const inclusion = await proveInclusion(path, 6, { verifier });
    const consistency = await proveConsistency(path, checkpoints(path)[0] as Checkpoint, { verifier });
    const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
    const flip = (h: string): string => {
      const b = Buffer.from(h, "base64");
      b[0] = (b[0] as number) ^ 1;
      return b.toString("base64");
    };
    const otherNote = (cp: Checkpoint): Checkpoint => {
      // The same body signed by another key: the record's JWS no longer covers it.
      const forged = makeCheckpoint(
        { ...cp, note: undefined, frontier: undefined } as unknown as Checkpoint,
        MerkleFrontier.of(
          cp.upTo,
          (cp.frontier ?? []).map((h) => Buffer.from(h, "base64")),
        ),
        "example.org/audit-writer/audit/a",
        testSigner(mallory),
      );
      return { ...cp, note: forged.note as string };
    };
    const cases: [string, () => unknown, string][] = [
      ["the entry edited", () => ({ ...clone(inclusion), entry: inclusion.entry.replace("tool_6", "tool_X") }), "leaf"],
      [
        "another entry, honest in itself",
        () => ({ ...clone(inclusion), entry: lines(path).find((l) => l.includes('"seq":5,')) }),
        "leaf",
      ],
      ["the seq moved", () => ({ ...clone(inclusion), seq: 5 }), "leaf"],
      [
        "a path hash flipped",
        () => ({ ...clone(inclusion), proof: inclusion.proof.map((h, i) => (i === 0 ? flip(h) : h)) }),
        "inclusion",
      ],
      ["a path hash dropped", () => ({ ...clone(inclusion), proof: inclusion.proof.slice(1) }), "inclusion"],
      ["treeSize changed", () => ({ ...clone(inclusion), treeSize: 8 }), "malformed"],
      [
        "the note signed by another key",
        () => ({ ...clone(inclusion), checkpoint: otherNote(inclusion.checkpoint) }),
        "checkpoint",
      ],
      [
        "the checkpoint's JWS by another key",
        () => ({
          ...clone(inclusion),
          checkpoint: {
            ...inclusion.checkpoint,
            sig: testSigner({ ...mallory, id: writer.id }).sign(Buffer.from("x")),
          },
        }),
        "checkpoint",
      ],
      ["not a proof", () => ({ type: "something-else" }), "malformed"],
      [
        "a consistency hash flipped",
        () => ({ ...clone(consistency), proof: consistency.proof.map((h, i) => (i === 0 ? flip(h) : h)) }),
        "consistency",
      ],
      [
        "the two checkpoints swapped",
        () => ({ ...clone(consistency), from: consistency.to, to: consistency.from }),
        "consistency",
      ],
      ["a proof hash that is not one", () => ({ ...clone(consistency), proof: ["AAAA"] }), "malformed"],
    ];
    for (const [name, make, rule] of cases) {
      assert.throws(() => verifyProof(make(), verifier), { code: ErrorCodes.AUDIT_PROOF_INVALID, rule }, name);
    }
    assert.equal(verifyProof(clone(inclusion), verifier).type, "inclusion", "the honest twin");
    assert.equal(verifyProof(clone(consistency), verifier).type, "consistency", "the honest twin");
    // Signed by a key the verifier does not trust: nothing is proven.
    assert.throws(() => verifyProof(clone(inclusion), testVerifier(mallory)), { rule: "checkpoint" });
    const typed: ConsistencyProof = consistency;
    assert.equal(typed.type, CONSISTENCY_PROOF_TYPE);
  });

  it("verification catches a checkpoint whose tree is not its entries', even without a key", async (t) => {
    const dir = tempDir(t, "audit");
    const path = join(dir, "a.jsonl");
    await writeLog(path, 1, 6);
    const original = lines(path);
    const cpLine = original.findIndex((l) => l.includes('"type":"checkpoint"'));
    const cp = JSON.parse(original[cpLine] as string) as Checkpoint;
    // A note for a tree of other entries (a frontier of zeros), written into the record.
    const lying = lyingTree(cp, "example.org/audit-writer/audit/a");
    const edited = [...original];
    edited[cpLine] = JSON.stringify({ ...cp, note: lying.note, frontier: lying.frontier });
    writeFileSync(path, `${edited.join("\n")}\n`);
    const structural = await verifyAuditLog(path, { witnessPath: false });
    assert.equal(structural.firstBad?.reason, "checkpoint-tree", structural.firstBad?.message);
    const signed = await verifyAuditLog(path, { verifier, witnessPath: false });
    assert.equal(signed.firstBad?.reason, "checkpoint-signature", "the JWS covers the note");

    // A signer whose note key is not its JWS key: the note is not the checkpoint's signer's.
    const split: CheckpointSigner = { ...testSigner(writer), signNote: testSigner(mallory).signNote! };
    const other = join(dir, "split.jsonl");
    await writeLog(other, 1, 5, { signer: split });
    const v = await verifyAuditLog(other, { verifier });
    assert.equal(v.firstBad?.reason, "checkpoint-tree");
    assert.match(v.firstBad?.message ?? "", /not signed by the checkpoint's signer/);

    // Checkpoints stop carrying trees after one did: a downgrade, refused.
    const downgrade = join(dir, "downgrade.jsonl");
    await writeLog(downgrade, 1, 5);
    await writeLog(downgrade, 6, 9, { signer: testSigner(writer, { legacy: true }) });
    assert.equal((await verifyAuditLog(downgrade, { verifier })).firstBad?.reason, "checkpoint-tree");
    assert.equal((await verifyAuditLog(path.replace("a.jsonl", "split.jsonl"), { verifier })).ok, false);
    assert.equal(leafHashOfText("x").length, 32);
  });

  it("a log written before trees still verifies and says it predates proofs; its next checkpoint proves every entry", async (t) => {
    const path = join(tempDir(t, "audit"), "old.jsonl");
    await writeLog(path, 1, 6, { signer: testSigner(writer, { legacy: true }) });
    const old = await verifyAuditLog(path, { verifier });
    assert.equal(old.ok, true);
    assert.deepEqual(old.tree, {
      state: "predates-proofs",
      provenCheckpoints: 0,
      predatingCheckpoints: 2,
      notesChecked: false,
    });
    await assert.rejects(proveInclusion(path, 1, { verifier }), {
      code: ErrorCodes.AUDIT_PROOF_INVALID,
      rule: "no-tree",
    });
    await writeLog(path, 7, 9); // a writer of today continues it
    const now = await verifyAuditLog(path, { verifier });
    assert.equal(now.ok, true, now.firstBad?.message);
    assert.equal(now.tree.state, "proven");
    assert.equal(now.tree.predatingCheckpoints, 2);
    assert.equal(verifyProof(await proveInclusion(path, 1, { verifier }), verifier).seq, 1, "an old entry, proven now");
  });
});

describe("verification with the leaf hashes on another thread", () => {
  it("gives the very verdict of hashing on this thread, for an honest log and for every kind of damage", async (t) => {
    const dir = tempDir(t, "audit");
    const honest = join(dir, "honest.jsonl");
    await writeLog(honest, 1, 30);
    const original = lines(honest);
    const firstCp = original.findIndex((l) => l.includes('"type":"checkpoint"'));
    const cp = JSON.parse(original[firstCp] as string) as Checkpoint;
    const lying = lyingTree(cp, "example.org/audit-writer/audit/honest");
    const variants: [string, (l: string[]) => string[]][] = [
      ["honest", (l) => l],
      ["an entry edited", (l) => l.map((x) => x.replace('"tool":"tool_9"', '"tool":"tool_X"'))],
      [
        "a checkpoint's tree replaced",
        (l) =>
          l.map((x, i) => (i === firstCp ? JSON.stringify({ ...cp, note: lying.note, frontier: lying.frontier }) : x)),
      ],
      [
        "a checkpoint line respaced (read as an entry by the other thread)",
        (l) => l.map((x, i) => (i === firstCp ? x.replace('"type":"checkpoint"', '"type": "checkpoint"') : x)),
      ],
      ["the tail cut", (l) => l.slice(0, 20)],
      ["an entry dropped", (l) => l.filter((_, i) => i !== 12)],
    ];
    for (const [name, damage] of variants) {
      const path = join(dir, `${name.replace(/\W+/g, "-")}.jsonl`);
      writeFileSync(path, `${damage(original).join("\n")}\n`);
      for (const options of [{ verifier }, {}]) {
        const here = await verifyAuditLog(path, { ...options, witnessPath: false, leafWorker: "never" });
        const there = await verifyAuditLog(path, { ...options, witnessPath: false, leafWorker: "always" });
        assert.deepEqual(there, here, name);
        // Not caught, rightly: a checkpoint line's spacing (its JWS covers the canonical record), and a
        // clean cut of the tail without a witness. The rest are.
        const undetectable = name === "honest" || name.includes("respaced") || name.includes("tail cut");
        assert.equal(here.ok, undetectable, `${name}: ${here.firstBad?.reason}`);
      }
    }
    // And what the viewer continues from is the same tree: a proof made after a worker pass verifies.
    assert.equal((await verifyAuditLog(honest, { verifier, leafWorker: "always" })).tree.size, 30);
  });
});

describe("a witness (C2SP tlog-cosignature)", () => {
  it("cosigns a log only while it extends what the witness cosigned before, and an auditor checks the cosignatures", async (t) => {
    const dir = tempDir(t, "audit");
    const path = join(dir, "a.jsonl");
    const w = generateKeyPairSync("ed25519");
    const other = generateKeyPairSync("ed25519");
    const statePath = join(dir, "witness.state.json");
    const witness = { name: "witness.example/w1", key: w.privateKey, statePath, verifier };
    const wkey = cosignerVerifierKey("witness.example/w1", w.publicKey);
    await writeLog(path, 1, 6);
    const first = await cosignLog(path, { ...witness, now: () => 1_765_000_000 });
    assert.equal(first.previousSize, null);
    await writeLog(path, 7, 11);
    const second = await cosignLog(path, witness);
    assert.deepEqual([second.previousSize, second.checkpoint.upTo], [6, 11]);
    const good = await checkCosignatures(path, [wkey]);
    assert.deepEqual(good, {
      ok: true,
      witnesses: [{ name: "witness.example/w1", size: 11, time: good.witnesses[0]?.time }],
    });
    // A witness the auditor trusts that never cosigned: not ok.
    const absent = await checkCosignatures(path, [wkey, cosignerVerifierKey("witness.example/w2", other.publicKey)]);
    assert.equal(absent.ok, false);
    assert.match(absent.problem ?? "", /witness\.example\/w2 cosigned no checkpoint/);
    // A cosignature line edited to cosign another tree: refused.
    const saved = readFileSync(cosignaturesPath(path), "utf8");
    writeFileSync(cosignaturesPath(path), saved.replace("\\n11\\n", "\\n12\\n"));
    assert.equal((await checkCosignatures(path, [wkey])).ok, false);
    writeFileSync(cosignaturesPath(path), saved);

    // The writer rewrites entry 2 and re-signs: the witness refuses to cosign the new history.
    const rewritten = join(dir, "rewritten.jsonl");
    const origin = (await verifyAuditLog(path)).tree.origin;
    const log = await AuditLog.open(rewritten, { signer: testSigner(writer), checkpointEvery: 4, origin, ...quiet });
    for (let i = 1; i <= 12; i++) await log.append(i === 2 ? { ...entry(2), tool: "other" } : entry(i));
    await log.close();
    await assert.rejects(cosignLog(rewritten, witness), { code: ErrorCodes.AUDIT_PROOF_INVALID, rule: "consistency" });
    const cut = join(dir, "cut.jsonl");
    await writeLog(cut, 1, 8, { origin });
    await assert.rejects(cosignLog(cut, witness), { code: ErrorCodes.AUDIT_PROOF_INVALID, rule: "truncated" });
  });
});

describe("aztp audit prove | consistency | verify-proof", () => {
  const SLOW = { timeoutMs: 180_000 };
  const cli = (home: string | undefined, args: string[]) => aztpCliAt(home, args, SLOW);

  async function svidLog(
    t: TestContext,
  ): Promise<{ home: string; dir: string; log: string; bundle: string; append: (n: number) => Promise<void> }> {
    const home = tempDir(t);
    const dir = tempDir(t, "audit");
    const client = aztp.initialize({ home });
    t.after(() => client.close());
    const agent = await client.secureConnect({}, "writer");
    const log = join(dir, "audit.jsonl");
    let next = 1;
    const append = async (n: number): Promise<void> => {
      const audit = await AuditLog.open(log, {
        signer: svidCheckpointSigner(agent.identity),
        checkpointEvery: 3,
        ...quiet,
      });
      for (let i = 0; i < n; i++) await audit.append(entry(next++));
      await audit.close();
    };
    await append(7);
    const b = await cli(home, ["bundle"]);
    assertExit(b, 0, "bundle");
    const bundle = join(dir, "bundle.json");
    writeFileSync(bundle, b.stdout);
    return { home, dir, log, bundle, append };
  }

  it("proves an entry and an older checkpoint with the SVID's key, checked with the bundle alone", async (t) => {
    const { home, dir, log, bundle, append } = await svidLog(t);
    const kept = join(dir, "kept.checkpoint");
    copyFileSync(`${log}.witness`, kept); // the auditor keeps today's checkpoint
    await append(5);
    const empty = tempDir(t, "empty");
    const incl = join(dir, "incl.json");
    const cons = join(dir, "cons.json");
    const [prove, consistency] = await Promise.all([
      cli(home, ["audit", "prove", log, "--entry", "4", "--out", incl]),
      cli(home, ["audit", "consistency", log, "--from", kept, "--out", cons]),
    ]);
    assertExit(prove, 0, "prove");
    assertExit(consistency, 0, "consistency");
    const proof = JSON.parse(readFileSync(incl, "utf8")) as InclusionProof;
    assert.equal(proof.treeSize, 12);
    assert.match(proof.checkpoint.note ?? "", /^aztp\.local\/workload\/production\/node\/writer\/audit\/audit\n12\n/);
    const tampered = join(dir, "tampered.json");
    writeFileSync(tampered, JSON.stringify({ ...proof, entry: proof.entry.replace("tool_4", "tool_5") }));
    const [ok, okCons, bad, noKey] = await Promise.all([
      cli(empty, ["audit", "verify-proof", incl, "--bundle", bundle]),
      cli(empty, ["audit", "verify-proof", cons, "--bundle", bundle]),
      cli(empty, ["audit", "verify-proof", tampered, "--bundle", bundle]),
      cli(empty, ["audit", "verify-proof", incl]),
    ]);
    assertExit(ok, 0, "verify-proof inclusion");
    assert.deepEqual([ok.json.ok, ok.json.type, ok.json.seq, ok.json.treeSize], [true, "inclusion", 4, 12]);
    assertExit(okCons, 0, "verify-proof consistency");
    assert.deepEqual(
      [okCons.json.fromSize, okCons.json.toSize],
      [parseKeptCheckpoint(readFileSync(kept, "utf8")).upTo, 12],
    );
    assertExit(bad, 1, "verify-proof of a tampered entry");
    assert.deepEqual([bad.json.ok, bad.json.code, bad.json.rule], [false, ErrorCodes.AUDIT_PROOF_INVALID, "leaf"]);
    assertExit(noKey, 2, "verify-proof without a trust source");

    // The log cut below the kept checkpoint (and its witness with it): the auditor's copy says so.
    const cutLog = join(dir, "cut.jsonl");
    const kept4 = lines(log).slice(0, 4);
    writeFileSync(cutLog, `${kept4.join("\n")}\n`);
    writeFileSync(`${cutLog}.witness`, `${kept4[3]}\n`);
    const cut = await cli(home, ["audit", "consistency", cutLog, "--from", kept]);
    assertExit(cut, 1, "consistency after a cut");
    assert.equal(cut.json.rule, "truncated");

    // A witness: its key, a cosignature, and an auditor's verify --cosigner.
    const wkeyFile = join(dir, "witness.pem");
    const made = await cli(empty, ["audit", "witness-key", "--name", "witness.example/w1", "--out", wkeyFile]);
    assertExit(made, 0, "witness-key");
    const cosigned = await cli(home, ["audit", "cosign", log, "--key", wkeyFile, "--name", "witness.example/w1"]);
    assertExit(cosigned, 0, "cosign");
    assert.equal(cosigned.json.size, 12);
    const [withWitness, wrongWitness] = await Promise.all([
      cli(empty, ["audit", "verify", log, "--bundle", bundle, "--cosigner", made.json.vkey]),
      cli(empty, [
        "audit",
        "verify",
        log,
        "--bundle",
        bundle,
        "--cosigner",
        made.json.vkey.replace("witness.example/w1", "witness.example/w9"),
      ]),
    ]);
    assertExit(withWitness, 0, "verify --cosigner");
    assert.deepEqual(
      withWitness.json.cosignatures.witnesses.map((w: { size: number }) => w.size),
      [12],
    );
    assertExit(wrongWitness, 2, "a vkey whose name does not match its key ID is a usage error");
    const refused = await cli(home, ["audit", "cosign", cutLog, "--key", wkeyFile, "--name", "witness.example/w1"]);
    assertExit(refused, 1, "cosign a cut log");
    assert.equal(refused.json.rule, "truncated");
  });
});
