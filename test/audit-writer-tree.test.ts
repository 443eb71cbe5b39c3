/**
 * The writer's Merkle tree (src/audit/writer-tree.ts) and what the sink does for it
 * (src/audit/jsonl-sink.ts): the leaf worker's frontier is merkle.ts's for any batches, a log
 * under load cuts its checkpoints at written batches and still verifies, a dead worker costs a
 * warning and nothing else, and the worker never keeps a process alive. The sink's side: a
 * checkpoint's fdatasync in "write" mode does not hold up the lines after it, a line can go
 * ahead of the batch being filled, and the buffers it hands out come back without corrupting
 * later batches.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { AuditLog, verifyAuditLog, type AuditEntryInput, type AuditWarning } from "../src/audit/index.js";
import { JsonlSink, type WrittenBatch } from "../src/audit/jsonl-sink.js";
import { leafHashOfText, MerkleFrontier, MerkleTree } from "../src/audit/merkle.js";
import { killLeafWorkerForTests, LEAF_TAG, startWriterTree, type WriterTree } from "../src/audit/writer-tree.js";
import { isAztpError } from "../src/errors.js";
import { newTestKeys, testSigner, testVerifier } from "./helpers/audit-signer.js";

const dir = mkdtempSync(join(tmpdir(), "aztp-writer-tree-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const newPath = (): string => join(dir, `audit-${++fileNo}.jsonl`);
const keys = newTestKeys("spiffe://example.org/audit-writer");
const verifier = testVerifier(keys);

/** The batch the sink would hand over for `lines` (tag LEAF_TAG or 0 each), in an ArrayBuffer of its own. */
function batchOf(lines: readonly { text: string; leaf: boolean }[]): WrittenBatch {
  const ends = new Uint32Array(lines.length);
  const parts: Buffer[] = [];
  let off = 0;
  lines.forEach((l, i) => {
    const bytes = Buffer.from(l.text, "utf8");
    parts.push(bytes, Buffer.from("\n"));
    off += bytes.length;
    ends[i] = off;
    off += 1;
  });
  const joined = Buffer.concat(parts);
  const data = Buffer.from(new Uint8Array(joined).buffer);
  return { data, ends, tags: Uint8Array.from(lines.map((l) => (l.leaf ? LEAF_TAG : 0))) };
}

async function until(what: string, ready: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function sample(i: number): AuditEntryInput {
  return {
    side: "callee",
    caller: `spiffe://example.org/agent-${i % 3}`,
    callerVerified: true,
    callee: "spiffe://example.org/tools",
    tool: i % 2 === 0 ? "search" : "fetch",
    argsDigest: `digest-${i}`,
    decision: "allow",
    outcome: "ok",
    // Long, and not all ASCII: the worker hashes the UTF-8 the sink wrote, this thread the text.
    token: `${i}.é😀.`.padEnd(1500, "t"),
  };
}

describe("the leaf worker's tree", () => {
  test("is merkle.ts's tree, for any batches of leaves and other lines, before and after its answers", async () => {
    const line = fc.record({
      text: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: "grapheme", maxLength: 20 })),
      leaf: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(line, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 6 }),
        fc.nat({ max: 40 }),
        async (batches, start) => {
          // A tree that starts at a frontier of `start` leaves, as a reopened log's does.
          const reference = new MerkleTree();
          for (let i = 0; i < start; i++) reference.push(leafHashOfText(`old ${i}`));
          const frontier = reference.frontier(start);
          const tree = startWriterTree(frontier, "always");
          try {
            assert.equal(tree.mode, "worker");
            for (const batch of batches) {
              for (const l of batch) {
                if (!l.leaf) continue;
                tree.add(l.text);
                reference.push(leafHashOfText(l.text));
              }
              tree.written(batchOf(batch));
            }
            const size = reference.size;
            // Once the worker has answered, without hashing anything here.
            await until("the worker's answer", () => tree.knownFrontier(size) !== null);
            assert.deepEqual(tree.knownFrontier(size)?.root(), reference.root());
            assert.equal(tree.unhashed(), 0);
            assert.deepEqual(tree.frontier().root(), reference.root());
          } finally {
            tree.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  test("hashes here what the worker has not answered for, and ignores answers from before a reset", async () => {
    const tree: WriterTree = startWriterTree(MerkleFrontier.empty(), "always");
    try {
      const lines = Array.from({ length: 40 }, (_, i) => `{"seq":${i + 1},"x":"é${i}"}`);
      const reference = new MerkleTree();
      for (const l of lines) {
        tree.add(l);
        reference.push(leafHashOfText(l));
      }
      tree.written(batchOf(lines.slice(0, 20).map((text) => ({ text, leaf: true }))));
      // Asked at once: the worker has answered for none or some; the rest is hashed here.
      assert.deepEqual(tree.frontier().root(), reference.root());
      assert.equal(tree.unhashed(), 0);

      // After a reset (a recovered write failure), the worker's answers for the old lines do not count.
      const restart = new MerkleTree();
      restart.push(leafHashOfText("kept"));
      tree.reset(restart.frontier(1));
      tree.add("after");
      restart.push(leafHashOfText("after"));
      tree.written(batchOf([{ text: "after", leaf: true }]));
      await until("the answer after the reset", () => tree.knownFrontier(2) !== null);
      assert.deepEqual(tree.frontier().root(), restart.root());
    } finally {
      tree.close();
    }
  });

  test('"never" hashes on this thread; an unknown leafWorker is refused', async () => {
    const tree = startWriterTree(MerkleFrontier.empty(), "never");
    assert.equal(tree.mode, "inline");
    tree.add("a");
    assert.deepEqual(tree.frontier().root(), leafHashOfText("a"));
    await assert.rejects(
      AuditLog.open(newPath(), { signer: testSigner(keys), leafWorker: "sometimes" as "auto" }),
      (e) => isAztpError(e, "ERR_ARGUMENT_INVALID") && /leafWorker/.test((e as Error).message),
    );
  });
});

describe("a log with the leaf worker", () => {
  for (const durability of ["write", "fsync"] as const) {
    test(`under load (durability "${durability}"): every checkpoint signs the tree of the entries before it, and the log verifies`, async () => {
      const path = newPath();
      const every = 150;
      const log = await AuditLog.open(path, {
        signer: testSigner(keys),
        checkpointEvery: every,
        durability,
        leafWorker: "always",
        onWarning: (w) => assert.fail(`unexpected warning: ${w.message}`),
      });
      let next = 0;
      const total = durability === "write" ? 4000 : 1500;
      await Promise.all(
        Array.from({ length: 128 }, async () => {
          while (next < total) await log.append(sample(next++));
        }),
      );
      await log.close();
      const result = await verifyAuditLog(path, { verifier });
      assert.equal(result.ok, true, result.firstBad?.message);
      assert.equal(result.entries, total);
      assert.equal(result.tree.state, "proven");
      assert.equal(result.uncovered, 0);
      // Cut at most a little after they were due: a written batch once the worker caught up.
      const upTos = readFileSync(path, "utf8")
        .split("\n")
        .filter((l) => l.includes('"type":"checkpoint"'))
        .map((l) => (JSON.parse(l) as { upTo: number }).upTo);
      assert.ok(upTos.length >= total / (every + 700), `${upTos.length} checkpoints for ${total} entries`);
      upTos.forEach((upTo, i) => {
        const gap = upTo - (upTos[i - 1] ?? 0);
        if (i < upTos.length - 1) assert.ok(gap <= every + 700, `checkpoint ${i + 1} covers ${gap} entries`);
      });
    });
  }

  test("when the worker dies: a warning, and the log goes on hashing here; a log opened later has a new worker", async () => {
    const path = newPath();
    const warnings: AuditWarning[] = [];
    const options = {
      signer: testSigner(keys),
      checkpointEvery: 100,
      leafWorker: "always" as const,
      onWarning: (w: AuditWarning) => warnings.push(w),
    };
    const log = await AuditLog.open(path, options);
    await Promise.all(Array.from({ length: 250 }, (_, i) => log.append(sample(i))));
    await killLeafWorkerForTests();
    await until("the warning", () => warnings.some((w) => w.code === "leaf-worker-failed"));
    let next = 250;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < 6000) await log.append(sample(next++));
      }),
    );
    await log.checkpoint();
    await log.close();
    assert.deepEqual(
      warnings.map((w) => w.code),
      ["leaf-worker-failed"],
    );
    const result = await verifyAuditLog(path, { verifier });
    assert.equal(result.ok, true, result.firstBad?.message);
    assert.equal(result.entries, 6000);
    assert.equal(result.tree.state, "proven");

    const later = newPath();
    const again = await AuditLog.open(later, { ...options, onWarning: (w) => assert.fail(w.message) });
    await Promise.all(Array.from({ length: 300 }, (_, i) => again.append(sample(i))));
    await again.close();
    assert.equal((await verifyAuditLog(later, { verifier })).tree.state, "proven");
  });

  test("the worker never keeps a process alive, and close() still writes the last checkpoint", () => {
    const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));
    for (const close of [true, false]) {
      const path = newPath();
      const script = `
        import { AuditLog } from ${JSON.stringify(src("../src/audit/index.ts"))};
        import { newTestKeys, testSigner } from ${JSON.stringify(src("./helpers/audit-signer.ts"))};
        const log = await AuditLog.open(${JSON.stringify(path)}, { signer: testSigner(newTestKeys()), checkpointEvery: 7, leafWorker: "always" });
        await Promise.all(Array.from({ length: 50 }, (_, i) => log.append({ side: "callee", caller: "spiffe://example.org/a", callerVerified: true, callee: "spiffe://example.org/b", tool: "t", argsDigest: "d" + i, decision: "allow" })));
        ${close ? "await log.close();" : ""}
        console.log("done");`;
      const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        encoding: "utf8",
        timeout: 30_000,
      });
      assert.equal(child.status, 0, `exit ${child.status} ${child.signal ?? ""}: ${child.stderr}`);
      assert.equal(child.stdout.trim(), "done");
      const lines = readFileSync(path, "utf8").split("\n").slice(0, -1);
      assert.equal(lines.filter((l) => !l.includes('"type":"checkpoint"')).length, 50);
      if (close) assert.match(lines.at(-1) as string, /"type":"checkpoint".*"upTo":50/);
    }
  });
});

describe("the sink, for the tree", () => {
  const options = { batchWindowMs: 0, maxBatchEntries: 1024, maxBatchBytes: 1 << 20 };

  test('"write": a checkpoint line is acknowledged after its fdatasync; the lines after it do not wait for it, and flush() does', async () => {
    const sink = await JsonlSink.open(newPath(), { durability: "write", ...options });
    try {
      let synced = false;
      const checkpoint = sink.append('{"type":"checkpoint"}', { sync: true }).then(() => (synced = true));
      const entry = sink.append('{"n":1}');
      await entry;
      // The fdatasync completes on the thread pool, after a turn of the event loop at least.
      assert.equal(synced, false, "the entry was acknowledged once written, before the checkpoint's fdatasync");
      const later = sink.append('{"n":2}');
      await later;
      await sink.flush();
      assert.equal(synced, true, "flush() waits for the fdatasync under way");
      await checkpoint;
      assert.deepEqual(sink.stats, { writes: 2, syncs: 1 });
    } finally {
      await sink.close();
    }
  });

  test("appendFirst puts a line ahead of the batch being filled, and is refused while a batch is written", async () => {
    const path = newPath();
    const sink = await JsonlSink.open(path, { durability: "fsync", ...options });
    try {
      const first = sink.append('{"n":1}');
      await Promise.resolve(); // the writer took it: its write is in flight
      assert.equal(sink.busy, true);
      assert.throws(
        () => sink.appendFirst('{"n":"x"}'),
        (e) => isAztpError(e, "ERR_ARGUMENT_INVALID"),
      );
      await first;
      assert.equal(sink.busy, false);
      const a = sink.append('{"n":3}');
      const b = sink.appendFirst('{"n":2}');
      await Promise.all([a, b]);
      assert.deepEqual(readFileSync(path, "utf8").split("\n").slice(0, -1), ['{"n":1}', '{"n":2}', '{"n":3}']);
    } finally {
      await sink.close();
    }
  });

  test("buffers given back are reused for later batches of any size, and nothing stale reaches the file", async () => {
    const path = newPath();
    const sink = await JsonlSink.open(path, { durability: "write", ...options });
    const seen: string[] = [];
    sink.observe((batch) => {
      seen.push(batch.data.toString("utf8"));
      sink.recycle(batch.data.buffer as ArrayBuffer); // as the worker does, once it hashed them
    });
    const expected: string[] = [];
    try {
      for (const [count, width] of [
        [200, 3000],
        [1, 10],
        [50, 70_000],
        [3, 5],
        [400, 900],
      ] as const) {
        const batch = Array.from(
          { length: count },
          (_, i) => `{"w":"${"é".repeat(width % 7)}${String(i).padEnd(width, "x")}"}`,
        );
        expected.push(...batch);
        await Promise.all(batch.map((l) => sink.append(l)));
      }
    } finally {
      await sink.close();
    }
    assert.equal(readFileSync(path, "utf8"), expected.map((l) => `${l}\n`).join(""));
    assert.equal(seen.join(""), expected.map((l) => `${l}\n`).join(""), "the observer saw exactly the bytes written");
  });
});
