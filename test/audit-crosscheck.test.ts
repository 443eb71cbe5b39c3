/**
 * Our transparency-log formats checked by an implementation we did not write: Go's
 * golang.org/x/mod/sumdb/tlog (the RFC 6962 tree of Go's checksum database) and sumdb/note
 * (signed notes), from Debian's golang-golang-x-mod-dev (test/go/crosscheck). Go recomputes the
 * root of every prefix of a real log from its entry lines, checks every inclusion and
 * consistency proof we make and makes its own (which must be ours, hash for hash), and opens
 * the log's checkpoints as signed notes: the writer's ECDSA signature (type 0x02) and a
 * witness's cosignature (type 0x04). Under CI a missing Go fails the test; elsewhere it skips.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { describe, it } from "node:test";
import { AuditLog } from "../src/audit/index.js";
import type { Checkpoint } from "../src/audit/checkpoint.js";
import { cosign } from "../src/audit/cosignature.js";
import { leafHashOfText, MerkleTree } from "../src/audit/merkle.js";
import { formatSignedNote, parseSignedNote } from "../src/audit/signed-note.js";
import { newTestKeys, testSigner } from "./helpers/audit-signer.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";

const GOPATH = "/usr/share/gocode";
const haveGo =
  spawnSync("go", ["version"], { stdio: "ignore" }).status === 0 &&
  existsSync(join(GOPATH, "src/golang.org/x/mod/sumdb/tlog"));
const skip = haveGo
  ? false
  : process.env.CI === "true"
    ? false // under CI a missing Go is a failure (the test then says so), not a skip
    : "Go and golang.org/x/mod are not installed (apt-get install golang-go golang-golang-x-mod-dev; .ci/run does)";

interface GoResponse {
  roots: string[];
  rootsAgree: boolean[];
  inclusionOk: string[];
  consistencyOk: string[];
  goInclusion: { index: number; size: number; proof: string[] | null }[];
  goConsistency: { from: number; to: number; proof: string[] | null }[];
  notes: { ok: boolean; text: string; error?: string }[];
}

function runGo(request: unknown): Promise<GoResponse> {
  return new Promise((resolve, reject) => {
    const child = spawn("go", ["run", "./test/go/crosscheck"], {
      cwd: ROOT,
      env: { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(tmpdir(), "aztp-go-cache"), GOFLAGS: "" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`go run exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as GoResponse);
    });
    child.stdin.end(JSON.stringify(request));
  });
}

const b64 = (b: Buffer): string => b.toString("base64");

describe("Go's sumdb/tlog and sumdb/note read our logs", { skip }, () => {
  it("agrees on every root, checks every proof we make and makes the same ones, and opens our signed checkpoints", async (t) => {
    assert.ok(haveGo, "Go and golang.org/x/mod must be installed under CI (.ci/run installs them)");
    const keys = newTestKeys("spiffe://example.org/audit-writer");
    const path = join(tempDir(t, "audit"), "log.jsonl");
    const log = await AuditLog.open(path, { signer: testSigner(keys), checkpointEvery: 5, onWarning: () => undefined });
    for (let i = 1; i <= 37; i++)
      await log.append({
        side: "callee",
        caller: "spiffe://example.org/agent",
        callerVerified: true,
        callee: "spiffe://example.org/tools",
        tool: `tool_${i} \u00e9\u4e2d`, // UTF-8 beyond ASCII: the leaf is the line's bytes
        argsDigest: `d${i}`,
        decision: "allow",
      });
    await log.close();
    const records = readFileSync(path, "utf8").split("\n").filter(Boolean);
    const lines = records.filter((l) => !l.includes('"type":"checkpoint"'));
    const checkpoints = records
      .filter((l) => l.includes('"type":"checkpoint"'))
      .map((l) => JSON.parse(l) as Checkpoint);
    assert.equal(lines.length, 37);

    const tree = new MerkleTree();
    for (const line of lines) tree.push(leafHashOfText(line));
    const n = tree.size;
    const inclusion: { index: number; size: number; proof: string[] }[] = [];
    const consistency: { from: number; to: number; proof: string[] }[] = [];
    for (let size = 1; size <= n; size++) {
      for (let i = 0; i < size; i++) inclusion.push({ index: i, size, proof: tree.inclusionProof(i, size).map(b64) });
      for (let from = 1; from < size; from++)
        consistency.push({ from, to: size, proof: tree.consistencyProof(from, size).map(b64) });
    }
    // Controls that must fail: a flipped hash in each kind of proof.
    const flipped = (p: string[]): string[] =>
      p.map((h, i) => {
        if (i !== 0) return h;
        const b = Buffer.from(h, "base64");
        b[5] = (b[5] as number) ^ 0x40;
        return b64(b);
      });
    inclusion.push({ index: 3, size: 20, proof: flipped(tree.inclusionProof(3, 20).map(b64)) });
    consistency.push({ from: 7, to: 30, proof: flipped(tree.consistencyProof(7, 30).map(b64)) });

    const witness = generateKeyPairSync("ed25519");
    const newest = checkpoints[checkpoints.length - 1] as Checkpoint;
    const newestNote = parseSignedNote(newest.note as string);
    const cosigned = formatSignedNote({
      text: newestNote.text,
      signatures: [
        ...newestNote.signatures,
        cosign("witness.example/w1", newestNote.text, witness.privateKey, 1_765_000_000),
      ],
    });
    const spki = keys.publicKey.export({ type: "spki", format: "der" });
    const rawWitness = witness.publicKey.export({ type: "spki", format: "der" }).subarray(-32);
    const origin = newestNote.text.split("\n")[0] as string;
    const notes = [
      ...checkpoints.map((c) => ({ note: c.note, name: origin, key: b64(spki), kind: "ecdsa" })),
      { note: cosigned, name: "witness.example/w1", key: b64(rawWitness), kind: "cosignature" },
      { note: (newest.note as string).replace("\n37\n", "\n36\n"), name: origin, key: b64(spki), kind: "ecdsa" },
    ];
    const roots = Array.from({ length: n + 1 }, (_, size) => b64(tree.root(size)));
    const res = await runGo({
      leaves: lines.map((l) => b64(Buffer.from(l, "utf8"))),
      roots,
      inclusion,
      consistency,
      notes,
    });

    assert.deepEqual(
      res.rootsAgree.slice(1),
      Array(n).fill(true),
      "every prefix's root (Go's empty tree is all zeros, RFC 6962's SHA-256 of nothing)",
    );
    assert.equal(res.roots[n], b64(tree.root()));
    const incl = res.inclusionOk;
    assert.deepEqual(incl.slice(0, -1), Array(incl.length - 1).fill("ok"), "Go checks every inclusion proof of ours");
    assert.notEqual(incl[incl.length - 1], "ok", "and refuses the altered one");
    const cons = res.consistencyOk;
    assert.deepEqual(cons.slice(0, -1), Array(cons.length - 1).fill("ok"), "Go checks every consistency proof of ours");
    assert.notEqual(cons[cons.length - 1], "ok", "and refuses the altered one");
    res.goInclusion
      .slice(0, -1)
      .forEach((g, i) =>
        assert.deepEqual(g.proof ?? [], inclusion[i]?.proof, `Go's inclusion proof ${g.index}/${g.size} is ours`),
      );
    res.goConsistency
      .slice(0, -1)
      .forEach((g, i) =>
        assert.deepEqual(g.proof ?? [], consistency[i]?.proof, `Go's consistency proof ${g.from}->${g.to} is ours`),
      );

    assert.equal(res.notes.length, checkpoints.length + 2);
    res.notes.slice(0, checkpoints.length).forEach((v, i) => {
      assert.equal(v.ok, true, `checkpoint ${i + 1}'s note: ${v.error}`);
      assert.equal(v.text, parseSignedNote(checkpoints[i]?.note as string).text);
      const [o, size, root] = v.text.split("\n");
      assert.equal(o, origin);
      assert.equal(root, b64(tree.root(Number(size))), "the note signs the root of the entries it covers");
    });
    assert.equal(
      res.notes[checkpoints.length]?.ok,
      true,
      `the witness's cosignature: ${res.notes[checkpoints.length]?.error}`,
    );
    assert.equal(res.notes[checkpoints.length + 1]?.ok, false, "an altered note is refused");
  });
});
