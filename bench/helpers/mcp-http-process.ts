/** What the MCP benchmarks share: an MCP HTTP server in its own process, the raw pair, medians, warm-up. */
import { spawn } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { medianMicros } from "../harness.js";

export const BENCH_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The arguments every MCP benchmark calls `search` with. */
export const SEARCH_ARGS = { query: "quarterly revenue by region", limit: 10 };

/** A timer of one raw P-256 sign+verify pair over `bytes` bytes (keys imported once): its median in µs. */
export function rawPairTimer(bytes: number): () => Promise<number> {
  const data = Buffer.alloc(bytes, 0x61);
  const pair = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const privateKey = createPrivateKey(pair.privateKey.export({ format: "pem", type: "pkcs8" }));
  const publicKey = createPublicKey(pair.publicKey.export({ format: "pem", type: "spki" }));
  return () =>
    medianMicros(
      () => {
        const sig = sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
        verify("sha256", data, { key: publicKey, dsaEncoding: "ieee-p1363" }, sig);
      },
      300,
      30,
    );
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

export async function warm(fn: () => Promise<unknown>, calls: number): Promise<void> {
  for (let i = 0; i < calls; i++) await fn();
}

/**
 * Starts bench/helpers/mcp-http-server.ts (`kind`: plain, padded, secured or bearer) in a child
 * process, with `preload` modules imported first, and waits for its URL.
 */
export async function startHttpServer(
  kind: "plain" | "padded" | "secured" | "bearer",
  home: string,
  preload: string[] = [],
): Promise<{ url: URL; close: () => Promise<void> }> {
  const imports = ["tsx", ...preload].flatMap((m) => ["--import", m]);
  const child = spawn(
    process.execPath,
    [...imports, join(BENCH_ROOT, "bench/helpers/mcp-http-server.ts"), kind, home],
    { cwd: BENCH_ROOT, stdio: ["pipe", "pipe", "inherit"] },
  );
  const url = await new Promise<URL>((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.includes("\n")) resolve(new URL(text.trim()));
    });
    child.once("exit", (code) => reject(new Error(`${kind} HTTP server exited with ${code}`)));
  });
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin.end();
      }),
  };
}
