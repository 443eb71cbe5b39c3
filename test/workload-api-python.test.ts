/**
 * `aztp workload-api`, the real command, called by workloads we did not write: Python's grpcio
 * with stubs generated from go-spiffe's workload.proto (test/python/workload_api_client.py), and
 * checked by openssl and PyJWT. The Python packages are Debian's (python3-grpcio,
 * python3-grpc-tools, python3-jwt), installed by .ci/run, and run with Debian's interpreter.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { aztpCli, assertExit, CLI, openssl, ROOT } from "./helpers/authority-util.js";

const PYTHON = "/usr/bin/python3";
const CLIENT = join(ROOT, "test", "python", "workload_api_client.py");
const PROTO = join(ROOT, "..", "shared", "conformance", "spiffe-workload-api", "workload.proto");
const uid = process.getuid?.() ?? -1;
const OTHER = 65534;

type Answer = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function python(socketPath: string, args: string[], runAs?: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [CLIENT, PROTO, socketPath, ...args],
      { timeout: 60_000, ...(runAs !== undefined ? { uid: runAs, gid: runAs } : {}) },
      (error, stdout, stderr) => {
        try {
          resolve(JSON.parse(stdout) as Answer);
        } catch {
          reject(new Error(`the Python client printed ${JSON.stringify(stdout)} (${error?.message ?? ""}): ${stderr}`));
        }
      },
    );
  });
}

describe("aztp workload-api, to a Python workload built from the official workload.proto", () => {
  const dir = mkdtempSync(join(tmpdir(), "aztp-wlapi-py-"));
  chmodSync(dir, 0o755); // reached by a process of another uid
  const home = join(dir, "home");
  const socketPath = join(dir, "workload.sock");
  const WEB = "spiffe://example.org/ns/billing/sa/reporter";
  let server: ChildProcess | undefined;
  let exited: Promise<number | null>;

  before(async () => {
    assertExit(await aztpCli(home, ["init", "--trust-domain", "example.org"]), 0, "aztp init");
    // The path selector names Debian's interpreter as the kernel reports it: /usr/bin/python3 is a symlink.
    const register = await aztpCli(home, [
      "workload",
      "register",
      "--spiffe-id",
      WEB,
      "--selector",
      `unix:uid:${uid}`,
      "--selector",
      `unix:path:${realpathSync(PYTHON)}`,
      "--hint",
      "internal",
    ]);
    assertExit(register, 0, "aztp workload register");
    server = spawn(
      process.execPath,
      ["--import", "tsx", CLI, "--home", home, "workload-api", "--socket", `unix://${socketPath}`],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    exited = new Promise((resolve) => server!.once("exit", (code) => resolve(code)));
    let stderr = "";
    server.stderr!.on("data", (d: Buffer) => (stderr += d));
    const line = await new Promise<string>((resolve, reject) => {
      let out = "";
      server!.stdout!.on("data", (d: Buffer) => {
        out += d;
        if (out.includes("\n")) resolve(out.split("\n")[0]!);
      });
      server!.once("exit", (code) => reject(new Error(`aztp workload-api exited ${code}: ${stderr}`)));
    });
    assert.match(line, new RegExp(`^serving the SPIFFE Workload API on unix://${socketPath} `));
  });

  after(async () => {
    if (server?.exitCode === null) server.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("FetchX509SVID: the SVID verifies under `openssl verify` against the bundle it came with; its PKCS#8 key is the leaf's", async () => {
    const out = join(dir, "x509");
    mkdirSync(out);
    const res = await python(socketPath, ["x509", out]);
    assert.equal(res.svids.length, 1);
    const svid = res.svids[0];
    assert.equal(svid.spiffe_id, WEB);
    assert.equal(svid.hint, "internal");
    assert.deepEqual(svid.uri_sans, [WEB]);
    assert.equal(svid.key_matches_leaf, true);
    const verify = await openssl([
      "verify",
      "-x509_strict",
      "-CAfile",
      join(out, "0-bundle.pem"),
      "-untrusted",
      join(out, "0-intermediates.pem"),
      join(out, "0-leaf.pem"),
    ]);
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stdout, /0-leaf\.pem: OK/);
    // The twin: the same leaf against no intermediate does not verify (openssl is really checking).
    const alone = await openssl(["verify", "-CAfile", join(out, "0-bundle.pem"), join(out, "0-leaf.pem")]);
    assert.notEqual(alone.code, 0);
  });

  it("FetchJWTSVID: the JWT-SVID validates with PyJWT against the JWT bundle from FetchJWTBundles; ValidateJWTSVID agrees", async () => {
    const res = await python(socketPath, ["jwt", "spiffe://example.org/ledger"]);
    assert.equal(res.svids.length, 1);
    const { spiffe_id, claims, token } = res.svids[0];
    assert.equal(spiffe_id, WEB);
    assert.equal(claims.sub, WEB);
    assert.equal(claims.aud, "spiffe://example.org/ledger");
    const validated = await python(socketPath, ["validate", "spiffe://example.org/ledger", token]);
    assert.equal(validated.spiffe_id, WEB);
    assert.equal(validated.claims.sub, WEB);
    const wrongAudience = await python(socketPath, ["validate", "spiffe://example.org/other", token]);
    assert.equal(wrongAudience.error, "INVALID_ARGUMENT");
  });

  it("a call without the workload.spiffe.io header is refused with INVALID_ARGUMENT", async () => {
    const res = await python(socketPath, ["bare"]);
    assert.equal(res.error, "INVALID_ARGUMENT");
  });

  it(
    "a Python process of another uid gets PERMISSION_DENIED",
    { skip: uid === 0 ? false : "needs root to run as another uid" },
    async () => {
      const res = await python(socketPath, ["jwt", "spiffe://example.org/ledger"], OTHER);
      assert.deepEqual(res, { error: "PERMISSION_DENIED", details: "no identity issued" });
    },
  );

  it("stops on SIGTERM with exit 0 and removes its socket", async () => {
    assert.ok(existsSync(socketPath));
    server!.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.ok(!existsSync(socketPath));
  });
});
