/**
 * The log's Merkle tree (src/audit/merkle.ts, RFC 6962 / RFC 9162): its roots are Certificate
 * Transparency's reference roots, every inclusion and consistency proof of every small tree
 * verifies, and every change to a proof, a leaf, a size or a root is caught, as is a rewritten
 * prefix: what an auditor holding an older root relies on.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import {
  consistencyProof,
  EMPTY_TREE_HASH,
  inclusionProof,
  leafHash,
  leafHashOfText,
  MerkleFrontier,
  MerkleTree,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
} from "../src/audit/merkle.js";

/** RFC 6962's reference inputs (Certificate Transparency's tests) and the root of each prefix. */
const CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const CT_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

const MAX = 33;
const leaves = Array.from({ length: MAX }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
const roots = Array.from({ length: MAX + 1 }, (_, n) => treeRoot(leaves.slice(0, n)));

function flipped(b: Uint8Array, at = 0): Buffer {
  const c = Buffer.from(b);
  c[at] = (c[at] as number) ^ 0x01;
  return c;
}

describe("the log's Merkle tree (RFC 6962)", () => {
  it("has Certificate Transparency's reference roots, and the empty tree the hash of nothing", () => {
    const ct = CT_LEAVES.map((h) => leafHash(Buffer.from(h, "hex")));
    for (let n = 1; n <= ct.length; n++)
      assert.equal(treeRoot(ct.slice(0, n)).toString("hex"), CT_ROOTS[n - 1], `size ${n}`);
    assert.equal(treeRoot([]).toString("hex"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert.ok(treeRoot([]).equals(EMPTY_TREE_HASH));
  });

  it("proves every leaf of every tree up to 33 in at most ceil(log2 n) hashes, and catches every change", () => {
    for (let n = 1; n <= MAX; n++) {
      const root = roots[n] as Buffer;
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(leaves, i, n);
        const leaf = leaves[i] as Buffer;
        assert.ok(proof.length <= Math.ceil(Math.log2(n)), `size ${n}, leaf ${i}: ${proof.length} hashes`);
        assert.equal(verifyInclusion(leaf, i, n, proof, root), true, `size ${n}, leaf ${i}`);
        // Each refusal has the honest proof above as its twin.
        assert.equal(verifyInclusion(flipped(leaf), i, n, proof, root), false, "another leaf");
        assert.equal(verifyInclusion(leaf, i, n, proof, flipped(root, 31)), false, "another root");
        if (n > 1) {
          assert.equal(verifyInclusion(leaf, (i + 1) % n, n, proof, root), false, "another index");
          assert.equal(verifyInclusion(leaf, i, n, proof.slice(1), root), false, "a hash dropped");
          for (let p = 0; p < proof.length; p++) {
            const bad = proof.map((h, j) => (j === p ? flipped(h) : h));
            assert.equal(verifyInclusion(leaf, i, n, bad, root), false, `hash ${p} changed`);
          }
        }
        assert.equal(verifyInclusion(leaf, i, n, [...proof, leaf], root), false, "a hash added");
        if (n < MAX)
          assert.equal(verifyInclusion(leaf, i, n + 1, proof, roots[n + 1] as Buffer), false, "another size");
      }
    }
  });

  it("proves every tree up to 33 a prefix of every larger one, and catches a rewritten or truncated log", () => {
    for (let to = 0; to <= MAX; to++) {
      for (let from = 0; from <= to; from++) {
        const proof = consistencyProof(leaves, from, to);
        const a = roots[from] as Buffer;
        const b = roots[to] as Buffer;
        assert.equal(verifyConsistency(from, to, proof, a, b), true, `${from} -> ${to}`);
        if (from === 0 || from === to) continue;
        assert.equal(verifyConsistency(from, to, proof, flipped(a), b), false, `${from} -> ${to}: another old root`);
        assert.equal(verifyConsistency(from, to, proof, a, flipped(b)), false, `${from} -> ${to}: another new root`);
        assert.equal(verifyConsistency(from, to, proof.slice(0, -1), a, b), false, `${from} -> ${to}: a hash dropped`);
        for (let p = 0; p < proof.length; p++) {
          const bad = proof.map((h, j) => (j === p ? flipped(h) : h));
          assert.equal(verifyConsistency(from, to, bad, a, b), false, `${from} -> ${to}: hash ${p} changed`);
        }
        assert.equal(verifyConsistency(to, from, proof, b, a), false, "sizes swapped");
      }
    }
    // A log whose entry 3 was rewritten after a checkpoint at 8: no proof from the old root holds.
    const rewritten = leaves.map((l, i) => (i === 3 ? leafHash(Buffer.from("entry 3, edited")) : l));
    const oldRoot = roots[8] as Buffer;
    for (let to = 8; to <= MAX; to++) {
      const newRoot = treeRoot(rewritten.slice(0, to));
      assert.equal(verifyConsistency(8, to, consistencyProof(rewritten, 8, to), oldRoot, newRoot), false, `to ${to}`);
    }
    // Truncated: a tree of 20 is no extension of the 24 an auditor saw.
    assert.equal(
      verifyConsistency(24, 20, consistencyProof(leaves, 20, 24), roots[24] as Buffer, roots[20] as Buffer),
      false,
    );
  });

  it("refuses to make a proof for what is not in the tree (ERR_ARGUMENT_INVALID), and reads malformed input as not proven", () => {
    for (const make of [
      () => inclusionProof(leaves, 5, 5),
      () => inclusionProof(leaves, -1, 5),
      () => inclusionProof(leaves, 0, MAX + 1),
      () => consistencyProof(leaves, 6, 5),
      () => consistencyProof(leaves, 1.5, 5),
    ])
      assert.throws(make, { code: ErrorCodes.ARGUMENT_INVALID });
    const leaf = leaves[0] as Buffer;
    const root = roots[1] as Buffer;
    assert.equal(verifyInclusion(leaf, 0, 1, [], root), true, "the honest twin");
    assert.equal(verifyInclusion(leaf, 0, 0, [], root), false);
    assert.equal(verifyInclusion(leaf.subarray(1), 0, 1, [], root), false, "a short leaf hash");
    assert.equal(verifyInclusion(leaf, 0, 2, [Buffer.alloc(31)], roots[2] as Buffer), false, "a short proof hash");
    assert.equal(verifyInclusion(leaf, Number.NaN, 1, [], root), false);
    assert.equal(
      verifyConsistency(0, 5, [leaf], EMPTY_TREE_HASH, roots[5] as Buffer),
      false,
      "nothing to prove from nothing",
    );
    assert.equal(verifyConsistency(5, 5, [], roots[5] as Buffer, roots[4] as Buffer), false, "same size, other roots");
  });

  it("a tree kept in memory and a writer's frontier give the same roots and proofs as the tree rebuilt from its leaves", () => {
    const tree = new MerkleTree();
    const frontier = MerkleFrontier.empty();
    assert.deepEqual(tree.root(), EMPTY_TREE_HASH);
    assert.deepEqual(frontier.root(), EMPTY_TREE_HASH);
    for (let n = 1; n <= MAX; n++) {
      tree.push(leaves[n - 1] as Buffer);
      frontier.push(leaves[n - 1] as Buffer);
      assert.deepEqual(frontier.root(), roots[n], `frontier root of ${n}`);
      const again = MerkleFrontier.of(n, frontier.roots);
      assert.deepEqual(again.root(), roots[n], "a frontier read back from a checkpoint");
      assert.deepEqual(tree.frontier(n).roots, frontier.roots, `the tree's frontier of ${n}`);
    }
    for (let size = 0; size <= MAX; size++) {
      assert.deepEqual(tree.root(size), roots[size], `root of ${size}`);
      for (let i = 0; i < size; i++) assert.deepEqual(tree.inclusionProof(i, size), inclusionProof(leaves, i, size));
      for (let from = 0; from <= size; from++)
        assert.deepEqual(tree.consistencyProof(from, size), consistencyProof(leaves, from, size));
    }
    assert.throws(() => tree.root(MAX + 1), { code: ErrorCodes.ARGUMENT_INVALID });
    assert.throws(() => MerkleFrontier.of(3, [leaves[0] as Buffer]), { code: ErrorCodes.ARGUMENT_INVALID });
    assert.deepEqual(leafHashOfText("entry é"), leafHash(Buffer.from("entry é", "utf8")), "a line hashes as its UTF-8");
  });
});
