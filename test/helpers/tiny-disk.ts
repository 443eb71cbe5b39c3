/**
 * A real full disk for the fail-closed tests: a tiny tmpfs, filled until write() fails with
 * ENOSPC. Mounting needs root (CAP_SYS_ADMIN); without it the tests that need a full disk are
 * skipped and say why.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TinyDisk {
  readonly dir: string;
  /** Why the tests must be skipped, or false when the disk is mounted. */
  readonly skip: string | false;
  unmount(): void;
}

export function tinyDisk(size = "256k"): TinyDisk {
  const dir = mkdtempSync(join(tmpdir(), "aztp-tmpfs-"));
  const unmount = (): void => {
    spawnSync("umount", [dir]);
    rmSync(dir, { recursive: true, force: true });
  };
  if (process.getuid?.() !== 0)
    return { dir, skip: "needs root to mount a tmpfs (a real full disk); run as root to include it", unmount };
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0)
    return { dir, skip: `mount -t tmpfs was refused: ${(r.stderr || r.error?.message || "").trim()}`, unmount };
  return { dir, skip: false, unmount };
}

/** Fills the file system holding `dir` until write() fails with ENOSPC; returns the filler to remove. */
export function fillDisk(dir: string): string {
  const filler = join(dir, "filler");
  for (let i = 0; ; i++) {
    try {
      appendFileSync(filler, Buffer.alloc(16 * 1024, 1));
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, "ENOSPC");
      return filler;
    }
    assert.ok(i < 10_000, "the disk never filled");
  }
}
