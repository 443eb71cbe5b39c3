#!/usr/bin/env node
// Builds the peer-credentials addon (native/peer_credentials.c -> build/Release/peer_credentials.node),
// run by npm as this package's "install" script (and by `npm run build:native`).
//
// Node has no API for a Unix socket peer's credentials (SO_PEERCRED), and the Workload API's
// attestation needs them; everything else in the package works without the addon. So a build
// that cannot happen (no compiler, no Node headers, not Linux) never fails the install: it
// prints one warning line and exits 0, and the endpoint refuses to start, saying why.
//
// Nothing is downloaded: node-gyp is npm's own, and it is pointed at the headers of the Node
// that runs this script (npm's `nodedir` when set, else `<node prefix>/include/node`), never at
// nodejs.org.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const addon = join(root, "build", "Release", "peer_credentials.node");
const log = join(root, "build", "peer-credentials-build.log");
const prefix = "aztp-client: the peer-credentials addon (Workload API attestation)";

function skip(why) {
  console.warn(`${prefix} was not built: ${why}. Everything else works; \`aztp workload-api\` will refuse to start.`);
  process.exit(0);
}

if (process.env.AZTP_SKIP_NATIVE_BUILD === "1") skip("AZTP_SKIP_NATIVE_BUILD=1");
if (process.platform !== "linux") skip(`SO_PEERCRED is Linux's, and this is ${process.platform}`);

/** npm's own node-gyp: the one npm passes to its scripts, else the one beside the npm that runs. */
function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath)
    candidates.push(join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  const npm = spawnSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).stdout?.trim();
  if (npm) {
    try {
      candidates.push(join(dirname(realpathSync(npm)), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
    } catch {
      // an npm on PATH that cannot be resolved: the other candidates remain
    }
  }
  return candidates.find((c) => c !== undefined && c !== "" && existsSync(c));
}

/** The folder holding include/node for the running Node, or undefined (then node-gyp would download). */
function findNodeDir() {
  const configured = process.env.npm_config_nodedir;
  const candidates = configured ? [configured] : [];
  candidates.push(resolve(dirname(process.execPath), ".."));
  return candidates.find((dir) => existsSync(join(dir, "include", "node", "node_api.h")));
}

const nodeGyp = findNodeGyp();
if (nodeGyp === undefined) skip("npm's node-gyp was not found (run this from npm, e.g. `npm rebuild aztp-client`)");
const nodeDir = findNodeDir();
if (nodeDir === undefined)
  skip(
    `Node's headers were not found (no ${join(resolve(dirname(process.execPath), ".."), "include", "node", "node_api.h")}; set npm's nodedir to a folder holding include/node)`,
  );

const build = spawnSync(process.execPath, [nodeGyp, "rebuild", "--release", `--nodedir=${nodeDir}`], {
  cwd: root,
  encoding: "utf8",
  env: { ...process.env, npm_config_nodedir: nodeDir },
  maxBuffer: 64 * 1024 * 1024,
});
const output = `${build.stdout ?? ""}${build.stderr ?? ""}${build.error ? String(build.error) : ""}`;
if (build.status !== 0 || !existsSync(addon)) {
  try {
    mkdirSync(dirname(log), { recursive: true });
    writeFileSync(log, output);
  } catch {
    // the warning below still says what failed
  }
  skip(`node-gyp failed (a C compiler, make and python3 are needed; its output is in ${log})`);
}

// A build that does not load is no build: try it here rather than at the endpoint's start.
try {
  const loaded = createRequire(import.meta.url)(addon);
  if (typeof loaded.peerCredentials !== "function") throw new Error("it exports no peerCredentials function");
} catch (error) {
  skip(`the built addon does not load (${error instanceof Error ? error.message : String(error)})`);
}
console.log(`${prefix}: built ${addon}`);
