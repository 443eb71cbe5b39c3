/**
 * The package as users get it. This checkout is packed with `npm pack` (which builds it through
 * `prepare`) in a copy of the checkout, so the checkout's own dist/ is never rebuilt under the
 * other tests' feet; the tarball is installed into an empty project beside the MCP SDK and zod,
 * as the README's Install section says (the tarball stands in for the registry's aztp-client).
 * There the README's programs and commands run as printed, each in a folder of its own, with a
 * clean environment: no AZTP_* variable, and none of the npm_* variables `npm test` sets (they
 * could point npx at this checkout instead of the installed package).
 *
 * Also here: the lockfile agrees with package.json and no locked package refuses this Node (npm
 * reports both in a second, offline, from a copy of the two files), and the README's policy
 * document decides as the README says, with the real evaluator.
 *
 * Cost: one build and one install from npm's cache (about a minute on 2 cores), once per run.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { pathToFileURL } from "node:url";
import { dirname, join, relative, resolve, sep } from "node:path";
import { after, before, describe, it } from "node:test";
import { buildPolicyContext, evaluatePolicies, parsePolicy, POLICY_CONTEXT_KEYS } from "../src/policy/index.js";
import { unknownContextKeyReason } from "../src/policy/context.js";
import { CLI, ROOT } from "./helpers/authority-util.js";
import { runCommand, type CommandResult } from "./helpers/mcp-util.js";

// ---- the README, read as a user reads it ----------------------------------------------------

const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The text of the README section headed `## <title>`, up to the next `## ` heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `the README has a section "## ${title}"`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The fenced code blocks of `text` in `lang` (```lang ... ```), in order. */
function fences(text: string, lang: string): string[] {
  return [...text.matchAll(/^```([\w-]*)\n([\s\S]*?)^```$/gm)].filter((m) => m[1] === lang).map((m) => m[2] as string);
}

function onlyFence(title: string, lang: string): string {
  const blocks = fences(section(title), lang);
  assert.equal(blocks.length, 1, `the README's "${title}" section has one \`\`\`${lang} block`);
  return blocks[0] as string;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

// ---- packing and installing, once -----------------------------------------------------------

/** A clean environment for what a user runs: no AZTP_* (the README programs use the defaults), no npm_*. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|aztp_)/i.test(k) || k === "INIT_CWD" || k === "NODE_OPTIONS" || k === "NODE_TEST_CONTEXT") continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function assertRan(r: CommandResult, what: string): void {
  assert.equal(
    r.code,
    0,
    `${what} exited ${r.code ?? r.signal}\nstdout: ${r.stdout.slice(-3000)}\nstderr: ${r.stderr.slice(-3000)}`,
  );
}

/** Checkout entries that are not source: build output, installs, local state. */
const NOT_SOURCE = new Set(["node_modules", "dist", ".git", ".aztp"]);

let work: string;
/** The unpacked tarball: exactly the files a user gets. */
let pkg: string;
/** An empty project with the tarball, the MCP SDK and zod installed. */
let project: string;
let installOutput: string;

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => relative(dir, join(d.parentPath, d.name)));
}

/** A fresh folder in the installed project (node and npx find its node_modules from there). */
function folderInProject(name: string): string {
  const dir = join(project, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "policy.json"), onlyFence("Policies", "json"));
  return dir;
}

/**
 * Runs a README ```sh block in `cwd` as one bash session, line by line (a line ending in `\`
 * continues on the next). Each command must exit 0, or N when its comment says `exit N`.
 */
async function runSession(block: string, cwd: string): Promise<CommandResult> {
  const lines = block
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = [
    "set -u",
    'check() { if [ "$1" != "$2" ]; then echo "README command exited $1, expected $2: $3" >&2; exit 99; fi; }',
  ];
  for (const line of lines) {
    const expected = /#.*\bexit (\d+)\b/.exec(line)?.[1] ?? "0";
    script.push(line, `check $? ${expected} ${quote(line)}`);
  }
  return runCommand("bash", ["-c", script.join("\n")], { cwd, env: userEnv(), timeoutMs: 240_000 });
}

// ---- the tests -------------------------------------------------------------------------------

describe("the package as users get it (npm pack, installed into an empty project)", { timeout: 900_000 }, () => {
  before(
    async () => {
      work = mkdtempSync(join(tmpdir(), "aztp-package-"));
      const checkout = join(work, "checkout");
      cpSync(ROOT, checkout, {
        recursive: true,
        filter: (src) => {
          const top = relative(ROOT, src).split(sep)[0] ?? "";
          return !NOT_SOURCE.has(top) && !top.startsWith(".scratch") && top !== "scratch" && !top.endsWith(".tgz");
        },
      });
      symlinkSync(join(ROOT, "node_modules"), join(checkout, "node_modules"), "dir");
      const packed = await runCommand("npm", ["pack", "--pack-destination", work], {
        cwd: checkout,
        env: userEnv(),
        timeoutMs: 300_000,
      });
      assertRan(packed, "npm pack");
      const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
      assert.ok(tarball, `npm pack wrote no tarball: ${packed.stdout}`);

      const unpacked = join(work, "unpacked");
      mkdirSync(unpacked);
      assertRan(await runCommand("tar", ["-xzf", join(work, tarball), "-C", unpacked]), "tar");
      pkg = join(unpacked, "package");

      project = join(work, "project");
      mkdirSync(project);
      writeFileSync(
        join(project, "package.json"),
        JSON.stringify({ name: "readme-user", version: "1.0.0", private: true }, null, 2),
      );
      // The README's `npm install aztp-client` and `npm install @modelcontextprotocol/sdk zod`, in one go.
      const installed = await runCommand(
        "npm",
        [
          "install",
          "--prefer-offline",
          "--no-audit",
          "--no-fund",
          join(work, tarball),
          "@modelcontextprotocol/sdk",
          "zod",
        ],
        {
          cwd: project,
          env: userEnv(),
          timeoutMs: 300_000,
        },
      );
      assertRan(installed, "npm install of the packed tarball");
      installOutput = installed.stdout + installed.stderr;
    },
    { timeout: 600_000 },
  );

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("ships the Apache-2.0 LICENSE verbatim, with our copyright line in its appendix", () => {
    const license = readFileSync(join(pkg, "LICENSE"), "utf8");
    assert.equal(license, readFileSync(join(ROOT, "LICENSE"), "utf8"));
    assert.equal(
      (JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as { license?: string }).license,
      "Apache-2.0",
    );
    const copyright = /^ {3}Copyright (\d{4}) (.+)$/m.exec(license);
    assert.ok(copyright && copyright[2] !== "[name of copyright owner]", "the appendix names the copyright holder");
    // With the appendix's placeholder put back, the text is apache.org's LICENSE-2.0.txt byte for
    // byte (which starts with a blank line); this is that file's well-known SHA-256.
    const canonical = "\n" + license.replace(copyright[0], "   Copyright [yyyy] [name of copyright owner]");
    assert.equal(
      createHash("sha256").update(canonical).digest("hex"),
      "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
    );
  });

  it("holds every file its manifest names: main, types, each export, and the bin (executable)", () => {
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as {
      main: string;
      types: string;
      bin: Record<string, string>;
      exports: Record<string, string | Record<string, string>>;
    };
    const named = [manifest.main, manifest.types, ...Object.values(manifest.bin)];
    for (const target of Object.values(manifest.exports))
      named.push(...(typeof target === "string" ? [target] : Object.values(target)));
    for (const file of named) assert.ok(existsSync(join(pkg, file)), `${file} is not in the package`);
    for (const bin of Object.values(manifest.bin))
      assert.ok((statSync(join(pkg, bin)).mode & 0o111) !== 0, `${bin} is not executable`);
  });

  it("every source map carries its sources (inlined), and they are this checkout's src/", () => {
    const files = filesUnder(pkg);
    const scripts = files.filter((f) => f.endsWith(".js"));
    assert.ok(scripts.length > 20, `the package holds only ${scripts.length} .js files`);
    for (const js of scripts) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(pkg, js), "utf8"))?.[1];
      assert.ok(url !== undefined, `${js} names no source map`);
      assert.ok(existsSync(join(pkg, dirname(js), url)), `${js} names ${url}, which is not in the package`);
    }
    const maps = files.filter((f) => f.endsWith(".map"));
    assert.ok(maps.length >= scripts.length);
    for (const mapFile of maps) {
      const map = JSON.parse(readFileSync(join(pkg, mapFile), "utf8")) as {
        sources: string[];
        sourceRoot?: string;
        sourcesContent?: Array<string | null>;
      };
      assert.ok(map.sources.length > 0, `${mapFile} names no sources`);
      map.sources.forEach((source, i) => {
        const at = resolve(join(pkg, dirname(mapFile)), map.sourceRoot ?? "", source);
        if (at.startsWith(pkg + sep) && existsSync(at)) return; // shipped beside it
        const content = map.sourcesContent?.[i];
        assert.equal(typeof content, "string", `${mapFile}: source ${source} is neither in the package nor inlined`);
        // The same relative place in the checkout is the file it was built from.
        assert.equal(
          content,
          readFileSync(join(ROOT, relative(pkg, at)), "utf8"),
          `${mapFile}: the inlined ${source} is not the checkout's`,
        );
      });
    }
  });

  it("a stack trace through the installed package points at the TypeScript line that threw", async () => {
    const program =
      "import { SpiffeId } from 'aztp-client/spiffe'; try { SpiffeId.parse('not an id'); } catch (e) { console.log(e.stack); }";
    const r = await runCommand(process.execPath, ["--enable-source-maps", "--input-type=module", "-e", program], {
      cwd: project,
      env: userEnv(),
    });
    assertRan(r, "node --enable-source-maps");
    const frame = /\((\S+\/node_modules\/aztp-client\/(src\/spiffe\/spiffeid\.ts)):(\d+):(\d+)\)/.exec(r.stdout);
    assert.ok(frame, `the first frame is not in src/spiffe/spiffeid.ts: ${r.stdout}`);
    const map = JSON.parse(readFileSync(join(pkg, "dist", "spiffe", "spiffeid.js.map"), "utf8")) as {
      sourcesContent: string[];
    };
    const line = map.sourcesContent[0]?.split("\n")[Number(frame[3]) - 1] ?? "";
    assert.ok(
      line.slice(Number(frame[4]) - 1).startsWith("new AztpError("),
      `the mapped position is not the throw: ${JSON.stringify(line)}`,
    );
  });

  it("every relative link in its Markdown resolves to a file in the package (and each #anchor to a heading)", () => {
    const docs = filesUnder(pkg).filter((f) => f.endsWith(".md"));
    assert.ok(docs.includes("README.md"));
    assert.equal(readFileSync(join(pkg, "README.md"), "utf8"), README);
    let checked = 0;
    for (const doc of docs) {
      const text = readFileSync(join(pkg, doc), "utf8").replace(/^```[\s\S]*?^```$/gm, "");
      const targets = [
        ...text.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g),
        ...text.matchAll(/^\[[^\]]+\]:\s*(\S+)/gm),
      ].map((m) => m[1] as string);
      for (const target of targets) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: ...
        const [path = "", anchor] = target.split("#");
        const file = path === "" ? join(pkg, doc) : resolve(join(pkg, dirname(doc)), decodeURIComponent(path));
        assert.ok(
          file.startsWith(pkg + sep) && existsSync(file) && statSync(file).isFile(),
          `${doc}: ${target} is not a file in the package`,
        );
        if (anchor !== undefined) {
          const headings = [...readFileSync(file, "utf8").matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1] as string));
          assert.ok(headings.includes(anchor), `${doc}: ${target}: no heading has the anchor #${anchor}`);
        }
        checked++;
      }
    }
    assert.ok(checked >= 5, `only ${checked} links checked`);
  });

  it("installs into a project on this Node without an EBADENGINE warning", () => {
    assert.doesNotMatch(installOutput, /EBADENGINE/);
  });

  it("its install built the peer-credentials addon (the Workload API's attestation), and the installed module loads it", async () => {
    const installed = join(project, "node_modules", "aztp-client");
    assert.ok(
      existsSync(join(installed, "build", "Release", "peer_credentials.node")),
      `the install did not build the addon:\n${installOutput.slice(-3000)}`,
    );
    const module = pathToFileURL(join(installed, "dist", "workload-api", "peer-credentials.js")).href;
    const program = `import { peerCredentialsSupport } from ${JSON.stringify(module)}; console.log(JSON.stringify(peerCredentialsSupport()));`;
    const r = await runCommand(process.execPath, ["--input-type=module", "-e", program], {
      cwd: project,
      env: userEnv(),
    });
    assertRan(r, "node (peerCredentialsSupport)");
    assert.deepEqual(JSON.parse(r.stdout), { available: true });
  });

  it("a user of MCP alone gets no LangChain: the optional peers are neither installed nor warned about", async () => {
    for (const peer of [
      "langchain",
      "@langchain/core",
      "@langchain/langgraph",
      "@langchain/mcp-adapters",
      "@langchain/openai",
    ]) {
      assert.ok(!existsSync(join(project, "node_modules", peer)), `${peer} was installed`);
    }
    assert.doesNotMatch(installOutput, /peer|ERESOLVE/i);
    // The MCP entry points load without it; only aztp-client/langchain needs it, and says so.
    const r = await runCommand(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        "await import('aztp-client'); await import('aztp-client/mcp'); try { await import('aztp-client/langchain'); } catch (e) { console.log(e.code, e.message); }",
      ],
      { cwd: folderInProject("no-langchain"), env: userEnv() },
    );
    assertRan(r, "importing without LangChain");
    assert.match(r.stdout, /ERR_MODULE_NOT_FOUND .*'@langchain\/core|ERR_MODULE_NOT_FOUND .*'langchain/);
  });

  it("the README's MCP program runs as printed and prints what the README says", async () => {
    const dir = folderInProject("mcp");
    writeFileSync(join(dir, "weather.mjs"), onlyFence("MCP: secured servers, clients and a proxy", "js"));
    const r = await runCommand(process.execPath, ["weather.mjs"], { cwd: dir, env: userEnv(), timeoutMs: 60_000 });
    assertRan(r, "node weather.mjs");
    assert.equal(r.stdout.trim(), onlyFence("MCP: secured servers, clients and a proxy", "text").trim());
  });

  it("the README's OAuth resource-server program runs as printed: an unmodified client's bearer call, receipted", async () => {
    const dir = folderInProject("oauth");
    writeFileSync(join(dir, "oauth-server.mjs"), onlyFence("MCP authorization (OAuth 2.1)", "js"));
    const r = await runCommand(process.execPath, ["oauth-server.mjs"], {
      cwd: dir,
      env: userEnv(),
      timeoutMs: 60_000,
    });
    assertRan(r, "node oauth-server.mjs");
    assert.match(
      r.stdout,
      /^resource http:\/\/127\.0\.0\.1:\d+\/mcp metadata http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp$/m,
    );
    assert.match(r.stdout, /^Porto: sunny receipt: string$/m);
  });

  it("the README's MCP program type-checks, strict, against the installed package's declarations", async () => {
    const dir = folderInProject("mcp-types");
    writeFileSync(join(dir, "weather.mjs"), onlyFence("MCP: secured servers, clients and a proxy", "js"));
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    const options = [
      "--noEmit",
      "--allowJs",
      "--checkJs",
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "--skipLibCheck",
    ];
    const r = await runCommand(
      process.execPath,
      [tsc, ...options, "--typeRoots", join(ROOT, "node_modules", "@types"), "--types", "node", "weather.mjs"],
      { cwd: dir, env: userEnv(), timeoutMs: 120_000 },
    );
    assertRan(r, "tsc --checkJs weather.mjs");
  });

  it("the README's audit commands run as printed after its MCP program", async () => {
    const dir = folderInProject("audit");
    writeFileSync(join(dir, "weather.mjs"), onlyFence("MCP: secured servers, clients and a proxy", "js"));
    assertRan(
      await runCommand(process.execPath, ["weather.mjs"], { cwd: dir, env: userEnv(), timeoutMs: 60_000 }),
      "node weather.mjs",
    );
    const r = await runSession(onlyFence("The audit log", "sh"), dir);
    assertRan(r, "the audit section's commands");
    assert.match(r.stdout, /ERR_POLICY_DENIED/, "query --decision deny finds the refused 30-day call");
  });

  it("the README's CLI session runs as printed (npx aztp in the installed project), each command with the exit it states", async () => {
    assert.ok(existsSync(join(project, "node_modules", ".bin", "aztp")), "npm linked the aztp command");
    const r = await runSession(onlyFence("The `aztp` CLI", "sh"), folderInProject("cli"));
    assertRan(r, "the CLI section's session");
    assert.match(r.stdout, /svid\/svid\.pem: OK/, "openssl verifies the issued SVID");
    assert.match(r.stdout, /^allow \(allow, statement AgentsMayForecastAWeekAhead\)$/m);
    assert.match(r.stdout, /^deny \(implicit_deny\)$/m);
  });

  it("aztp audit view, as installed, serves its page, script and style from the package (dist/viewer/page), with its CSP", async () => {
    const dir = folderInProject("view");
    writeFileSync(
      join(dir, "write-log.mjs"),
      `import { AuditLog } from "aztp-client/audit";
const log = await AuditLog.open("audit.jsonl");
await log.append({ side: "callee", caller: "spiffe://example.org/a", callerVerified: true, callee: "spiffe://example.org/b", tool: "forecast", argsDigest: "d", decision: "allow", outcome: "ok" });
await log.close();
`,
    );
    assertRan(await runCommand(process.execPath, ["write-log.mjs"], { cwd: dir, env: userEnv() }), "write-log.mjs");
    const main = join(project, "node_modules", "aztp-client", "dist", "cli", "main.js");
    const child = spawn(process.execPath, [main, "audit", "view", "audit.jsonl", "--no-signatures"], {
      cwd: dir,
      env: userEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    try {
      let out = "";
      const url = await new Promise<string>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`no URL from aztp audit view: ${out}`)), 60_000);
        child.stdout.setEncoding("utf8").on("data", (d: string) => {
          out += d;
          if (out.includes("\n")) {
            clearTimeout(timer);
            done(out.split("\n")[0] as string);
          }
        });
      });
      const origin = new URL(url).origin;
      const opened = await fetch(url, { redirect: "manual" });
      assert.equal(opened.status, 303);
      const cookie = (opened.headers.get("set-cookie") ?? "").split(";")[0] as string;
      for (const [path, type, text] of [
        ["/", "text/html", "aztp audit view"],
        ["/app.js", "text/javascript", "createElementNS"],
        ["/app.css", "text/css", ".verdict"],
      ] as const) {
        const r = await fetch(origin + path, { headers: { cookie } });
        assert.equal(r.status, 200, path);
        assert.match(r.headers.get("content-type") ?? "", new RegExp(`^${type}`), path);
        assert.match(r.headers.get("content-security-policy") ?? "", /^default-src 'none'; script-src 'self';/, path);
        assert.ok((await r.text()).includes(text), path);
      }
      let state: { ready: boolean; logs: Array<{ ok: boolean }> } = { ready: false, logs: [] };
      for (let i = 0; i < 200 && !state.ready; i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        state = (await (await fetch(`${origin}/api/state`, { headers: { cookie } })).json()) as typeof state;
      }
      assert.deepEqual(
        state.logs.map((l) => l.ok),
        [true],
      );
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0, "SIGTERM ends it with exit 0");
  });
});

describe("the README's people policy, as printed", () => {
  it("decides as the README says: finance may transfer, deletes need mfa, for nobody only reads (aztp policy check --person)", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-people-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "people-policy.json"), onlyFence("People in the chain", "json"));
    // The session as printed, with `npx aztp` the CLI of this checkout (the installed one is the
    // package test's; this one needs no install).
    const tsx = pathToFileURL(join(ROOT, "node_modules", "tsx", "dist", "loader.mjs")).href;
    const block = onlyFence("People in the chain", "sh").replace(/^npx aztp /gm, `node --import ${tsx} ${CLI} `);
    const r = await runSession(block, dir);
    assertRan(r, "the people section's session");
    assert.match(r.stdout, /^allow \(allow, statement FinanceMayTransfer\)$/m);
    assert.match(r.stdout, /^deny \(explicit_deny, statement DeletesNeedMfa\)$/m);
    assert.match(r.stdout, /^deny \(explicit_deny, statement ForNobodyOnlyRead\)$/m);
    assert.match(r.stdout, /^allow \(allow, statement ReadAndDelete\)$/m);
    assert.match(r.stdout, /^deny \(implicit_deny\)$/m, "bob of support may not transfer");
  });
});

describe("the lockfile", () => {
  it("matches package.json, and no locked package refuses this Node (npm install prints no EBADENGINE)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-lockfile-"));
    try {
      for (const f of ["package.json", "package-lock.json"]) cpSync(join(ROOT, f), join(dir, f));
      // What `npm install` on a fresh clone does to the lockfile, without installing anything.
      const r = await runCommand(
        "npm",
        ["install", "--package-lock-only", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund"],
        { cwd: dir, env: userEnv(), timeoutMs: 120_000 },
      );
      assertRan(r, "npm install --package-lock-only");
      assert.doesNotMatch(r.stdout + r.stderr, /EBADENGINE/);
      assert.equal(
        readFileSync(join(dir, "package-lock.json"), "utf8"),
        readFileSync(join(ROOT, "package-lock.json"), "utf8"),
        "npm install would rewrite package-lock.json: run npm install and commit it",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the README's policy document", () => {
  const policy = parsePolicy(JSON.parse(onlyFence("Policies", "json")));
  const agent = "aztp://example.org/workload/production/node/my-agent";
  const decide = (caller: string, tool: string, args: unknown) =>
    evaluatePolicies([policy], {
      principal: caller,
      action: "tool:call",
      resource: tool,
      context: buildPolicyContext({
        caller,
        tool,
        args,
        callee: "aztp://example.org/workload/production/node/weather-tool",
      }),
    });

  it("is valid, and decides as the README says: production agents of any domain may forecast up to 7 days; nobody may delete_*; nothing else", () => {
    assert.deepEqual(decide(agent, "forecast", { city: "Lisbon", days: 3 }), {
      decision: "allow",
      reason: "allow",
      statement: "AgentsMayForecastAWeekAhead",
      policy: 0,
    });
    assert.equal(decide("aztp://aztp.local/workload/production/node/agent", "forecast", { days: 7 }).decision, "allow");
    assert.deepEqual(decide(agent, "forecast", { days: 8 }), { decision: "deny", reason: "implicit_deny" });
    assert.deepEqual(decide(agent, "forecast", {}), { decision: "deny", reason: "implicit_deny" });
    assert.deepEqual(decide("aztp://example.org/workload/staging/node/my-agent", "forecast", { days: 1 }), {
      decision: "deny",
      reason: "implicit_deny",
    });
    assert.deepEqual(decide(agent, "delete_index", {}), {
      decision: "deny",
      reason: "explicit_deny",
      statement: "NobodyDeletes",
      policy: 0,
    });
    assert.deepEqual(decide(agent, "search", {}), { decision: "deny", reason: "implicit_deny" });
  });

  it("the README's table names every aztp: context key, and only real ones", () => {
    const table = section("Policies");
    const named = new Set(
      [...table.matchAll(/`(aztp:[\w.<>]+)`/g)].map((m) => (m[1] as string).replace("<path>", "field")),
    );
    for (const key of named) assert.equal(unknownContextKeyReason(key), undefined, `the README names ${key}`);
    for (const key of POLICY_CONTEXT_KEYS) assert.ok(named.has(key), `the README's table leaves out ${key}`);
  });
});

describe("the README's client API", () => {
  it("names every option of aztp.initialize (AztpConfig), and only those", () => {
    const src = readFileSync(join(ROOT, "src", "client", "aztp.ts"), "utf8");
    const body = /export interface AztpConfig \{([\s\S]*?)\n\}/.exec(src)?.[1] ?? "";
    const fields = [...body.matchAll(/^ {2}(\w+)\?:/gm)].map((m) => m[1]).sort();
    assert.ok(fields.length > 5, "AztpConfig's fields were read from src/client/aztp.ts");
    const listed = /`aztp\.initialize\(\{ ([^}]*) \}\)`/.exec(section("The client API"))?.[1] ?? "";
    assert.deepEqual(
      listed
        .split(",")
        .map((f) => f.trim().replace(/\?$/, ""))
        .sort(),
      fields,
    );
  });

  it("says a baseUrl works (a shared authority), never that it fails", () => {
    const text = section("The client API");
    assert.doesNotMatch(text, /not part of this version|fails with `ERR_AUTHORITY_REMOTE_UNAVAILABLE`/);
    assert.match(text, /With `baseUrl`/);
  });
});
