/**
 * Plays well with the ecosystem: the MCP Inspector CLI (an unmodified client we did not write)
 * against the proxy and against a secured server, and the MCP conformance suite's server
 * scenarios against server-everything directly, behind the proxy in audit mode, and through the
 * bridge (listening on HTTP) in front of the proxy in enforce mode, which must come out the same
 * (both are transparent; the enforcing chain signs and verifies every call on the way).
 *
 * The Inspector is a devDependency: `@modelcontextprotocol/inspector` 0.15.0, the newest whose
 * engines allow Node 20 (later ones need Node 22); npm picks it on Node 20. The conformance
 * suite (`@modelcontextprotocol/conformance`) needs Node 22 (it imports fs.globSync, and a
 * dependency of it declares engines >=22), so it is not a devDependency: as a devDependency it
 * made every `npm install` on Node 20 print EBADENGINE. The test fetches the pinned version
 * together with the registry's `node@22` package through one npx call (cached after the first
 * run; its engine warning goes to this test's output, not to the user's install) and runs the
 * suite on that Node. A `node` devDependency would instead put Node 22 first on the PATH of
 * every npm script, and run the whole suite on it.
 *
 * Without the registry the conformance test is skipped, except under CI (`CI` set, as `.ci/run`
 * does), where it fails: there the registry is reachable and a skip would hide a regression.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ROOT, tempDir } from "./helpers/authority-util.js";
import { CONFORMANCE_VERSION, conformanceRuntime, type Check, type ConformanceRuntime } from "./helpers/conformance.js";
import {
  CLI,
  EVERYTHING,
  fixture,
  idOf,
  readAudits,
  runCommand,
  spawnNode,
  startEverythingHttp,
  STDIO_SERVER,
  type CommandResult,
} from "./helpers/mcp-util.js";

const INSPECTOR = join(ROOT, "node_modules", "@modelcontextprotocol", "inspector", "cli", "build", "cli.js");
const everythingCommand = `"${process.execPath}" "${EVERYTHING}" stdio`;

/** `mcp-inspector --cli <target...> <method args...>`, as a person would run it. */
function inspector(target: string[], method: string[]): Promise<CommandResult> {
  return runCommand(process.execPath, [INSPECTOR, "--cli", ...target, ...method], {
    env: { ...getDefaultEnvironment() },
    timeoutMs: 60_000,
  });
}

const LIST = ["--method", "tools/list"];
const callEcho = (key: string): string[] => [
  "--method",
  "tools/call",
  "--tool-name",
  "echo",
  "--tool-arg",
  `${key}=hello inspector`,
];

/** The proxy command line, for the Inspector to spawn over stdio. */
const proxyTarget = (home: string, mode: "enforce" | "audit"): string[] => [
  process.execPath,
  "--import",
  "tsx",
  CLI,
  "--home",
  home,
  "mcp",
  "proxy",
  "--name",
  "inspected-proxy",
  "--mode",
  mode,
  "--upstream-command",
  everythingCommand,
];
/** The secured test server's command line (test/helpers/mcp-stdio-server.ts). */
const serverTarget = (home: string, mode: "enforce" | "audit"): string[] => [
  process.execPath,
  "--import",
  "tsx",
  STDIO_SERVER,
  "--home",
  home,
  "--name",
  "inspected-server",
  "--mode",
  mode,
];

function toolNames(r: CommandResult): string[] {
  assert.equal(r.code, 0, `inspector tools/list failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { tools: Array<{ name: string }> }).tools.map((x) => x.name);
}

function assertRefusedUnsigned(r: CommandResult): void {
  const out = r.stdout + r.stderr;
  assert.equal(r.code, 1, `an unsigned call through the Inspector must fail: ${out}`);
  assert.match(out, /ERR_INVOCATION_MISSING/);
  assert.match(out, /sign each tools\/call with an AZTP invocation token in params\._meta\["io\.aztp\/invocation"\]/);
}

const inspectorMissing = existsSync(INSPECTOR)
  ? false
  : "@modelcontextprotocol/inspector is not installed (npm ci installs it as a devDependency)";

describe("the MCP Inspector CLI", { skip: inspectorMissing }, () => {
  it("against the proxy (stdio, in front of server-everything): initialises and lists tools; enforce refuses tools/call saying how to sign; audit lets it through", async (t) => {
    const { home } = fixture(t);
    const [list, refused, audited] = await Promise.all([
      inspector(proxyTarget(home, "enforce"), LIST),
      inspector(proxyTarget(home, "enforce"), callEcho("message")),
      inspector(proxyTarget(home, "audit"), callEcho("message")),
    ]);
    assert.ok(toolNames(list).includes("echo"));
    assertRefusedUnsigned(refused);
    assert.equal(audited.code, 0, audited.stderr);
    assert.match(
      (JSON.parse(audited.stdout) as { content: Array<{ text: string }> }).content[0]?.text ?? "",
      /hello inspector/,
    );
  });

  it("against a secured server over stdio and the proxy over HTTP: the same", async (t) => {
    const { home } = fixture(t);
    const http = spawnNode(
      t,
      [
        "--import",
        "tsx",
        CLI,
        "--home",
        home,
        "mcp",
        "proxy",
        "--name",
        "inspected-http-proxy",
        "--listen",
        "http://127.0.0.1:0",
        "--upstream-command",
        everythingCommand,
      ],
      { env: getDefaultEnvironment() },
    );
    const url = (await http.waitFor(/listening on (http:\/\/\S+)/))[1] as string;
    const [list, refused, audited, httpList, httpRefused] = await Promise.all([
      inspector(serverTarget(home, "enforce"), LIST),
      inspector(serverTarget(home, "enforce"), callEcho("text")),
      inspector(serverTarget(home, "audit"), callEcho("text")),
      inspector([url], LIST),
      inspector([url], callEcho("message")),
    ]);
    assert.deepEqual(toolNames(list).sort(), ["echo", "late"]);
    assertRefusedUnsigned(refused);
    assert.equal(audited.code, 0, audited.stderr);
    const answer = JSON.parse(
      (JSON.parse(audited.stdout) as { content: Array<{ text: string }> }).content[0]?.text ?? "{}",
    ) as Record<string, unknown>;
    assert.deepEqual(answer, { tool: "echo", value: "hello inspector", runs: 1 });
    assert.ok(toolNames(httpList).includes("echo"));
    assertRefusedUnsigned(httpRefused);
  });
});

/** Runs the suite's server scenarios against `url`; returns each scenario's checks by ID. */
async function conformance(t: TestContext, runtime: ConformanceRuntime, url: string): Promise<Map<string, Check[]>> {
  const out = tempDir(t, "conformance");
  const r = await runCommand(runtime.node, [runtime.cli, "server", "--url", url, "-o", out], {
    env: getDefaultEnvironment(),
    timeoutMs: 90_000,
  });
  assert.notEqual(r.signal, "SIGKILL", `the conformance suite did not finish in 90 s: ${r.stdout.slice(-2000)}`);
  const results = new Map<string, Check[]>();
  for (const dir of readdirSync(out)) {
    const scenario = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(dir)?.[1];
    if (!scenario || !existsSync(join(out, dir, "checks.json"))) continue;
    const checks = (JSON.parse(readFileSync(join(out, dir, "checks.json"), "utf8")) as Check[]).map(
      ({ id, status }) => ({ id, status }),
    );
    results.set(
      scenario,
      checks.sort((a, b) => a.id.localeCompare(b.id)),
    );
  }
  assert.ok(results.size > 0, `no scenario results: ${r.stdout.slice(-2000)} ${r.stderr.slice(-2000)}`);
  return results;
}

const tally = (checks: Check[] = []): string =>
  `${checks.filter((c) => c.status === "SUCCESS").length}/${checks.length}`;

/** The scenarios server-everything passes, run directly and through each intermediary: proof it really talked MCP. */
const BASIC_SCENARIOS = [
  "server-initialize",
  "ping",
  "tools-list",
  "tools-call-simple-text",
  "tools-call-error",
  "resources-list",
  "prompts-list",
];

/**
 * Asserts that `through` (the suite run against an intermediary) lost nothing against `direct`:
 * the same scenarios, and per scenario the same checks with the same outcomes. The one intended
 * difference is dns-rebinding-protection: server-everything accepts a foreign Host / Origin,
 * the proxy's and the bridge's listeners refuse them, so they must pass every check of it.
 */
function assertNothingLost(
  t: TestContext,
  what: string,
  direct: Map<string, Check[]>,
  through: Map<string, Check[]>,
): void {
  t.diagnostic(`conformance checks passed per scenario (direct vs ${what}):`);
  for (const s of [...direct.keys()].sort())
    t.diagnostic(`${s}: direct ${tally(direct.get(s))}, ${what} ${tally(through.get(s))}`);
  assert.deepEqual([...through.keys()].sort(), [...direct.keys()].sort(), "the same scenarios ran");
  for (const [scenario, checks] of direct) {
    if (scenario === "dns-rebinding-protection") {
      assert.ok(
        through.get(scenario)?.every((c) => c.status === "SUCCESS"),
        `${what}: ${JSON.stringify(through.get(scenario))}`,
      );
      continue;
    }
    assert.deepEqual(through.get(scenario), checks, `${scenario}: the ${what} changed the outcome`);
  }
  for (const scenario of BASIC_SCENARIOS) {
    assert.equal(tally(direct.get(scenario)), tally(through.get(scenario)));
    assert.ok(
      direct.get(scenario)?.every((c) => c.status === "SUCCESS"),
      `${scenario} directly: ${JSON.stringify(direct.get(scenario))}`,
    );
  }
}

describe("the MCP conformance suite", () => {
  // Fetched once, and server-everything's own results computed once, for both tests (whichever
  // runs first): the direct run is the baseline each intermediary is held to.
  let runtimeOnce: Promise<ConformanceRuntime | { missing: string }> | undefined;
  let directOnce: Promise<Map<string, Check[]>> | undefined;
  /** The runtime, or undefined after skipping `t` (a failure under CI: see the file comment). */
  const runtimeOr = async (t: TestContext): Promise<ConformanceRuntime | undefined> => {
    const runtime = await (runtimeOnce ??= conformanceRuntime());
    if (!("missing" in runtime)) return runtime;
    assert.ok(
      !process.env.CI,
      `under CI the registry is reachable and the conformance suite must run: ${runtime.missing}`,
    );
    t.skip(runtime.missing);
    return undefined;
  };
  /** server-everything's own results (against `url` the first time: any instance answers the same). */
  const direct = (t: TestContext, runtime: ConformanceRuntime, url: string): Promise<Map<string, Check[]>> =>
    (directOnce ??= conformance(t, runtime, url));

  it(
    `(${CONFORMANCE_VERSION}, on Node 22) gives the same results per scenario against server-everything directly and behind the proxy in audit mode`,
    { timeout: 360_000 },
    async (t) => {
      const runtime = await runtimeOr(t);
      if (runtime === undefined) return;
      const { home } = fixture(t);
      const upstream = await startEverythingHttp(t);
      const proxy = spawnNode(
        t,
        [
          "--import",
          "tsx",
          CLI,
          "--home",
          home,
          "mcp",
          "proxy",
          "--name",
          "conformance-proxy",
          "--mode",
          "audit",
          "--listen",
          "http://127.0.0.1:0",
          "--upstream-url",
          upstream.url,
        ],
        {
          env: getDefaultEnvironment(),
        },
      );
      const proxyUrl = (await proxy.waitFor(/listening on (http:\/\/\S+)/))[1] as string;

      const directly = await direct(t, runtime, upstream.url);
      const proxied = await conformance(t, runtime, proxyUrl);
      assertNothingLost(t, "proxy", directly, proxied);
    },
  );

  it(
    `(${CONFORMANCE_VERSION}) loses nothing through the bridge listening on HTTP in front of the proxy in enforce mode in front of server-everything: every call signed by the bridge`,
    { timeout: 360_000 },
    async (t) => {
      const runtime = await runtimeOr(t);
      if (runtime === undefined) return;
      const { home } = fixture(t);
      const upstream = await startEverythingHttp(t);
      // Enforce mode: only the bridge may call, so a call that reached server-everything was
      // signed by the bridge and verified by the proxy.
      const policy = join(home, "bridge-only.json");
      writeFileSync(
        policy,
        JSON.stringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Principal: idOf("conformance-bridge"), Action: "tool:call", Resource: "*" }],
        }),
      );
      const proxy = spawnNode(
        t,
        [
          "--import",
          "tsx",
          CLI,
          "--home",
          home,
          "mcp",
          "proxy",
          "--name",
          "conformance-enforcing-proxy",
          "--mode",
          "enforce",
          "--policy",
          policy,
          "--listen",
          "http://127.0.0.1:0",
          "--upstream-url",
          upstream.url,
        ],
        { env: getDefaultEnvironment() },
      );
      const proxyUrl = (await proxy.waitFor(/listening on (http:\/\/\S+)/))[1] as string;
      const bridge = spawnNode(
        t,
        [
          "--import",
          "tsx",
          CLI,
          "--home",
          home,
          "mcp",
          "bridge",
          "--name",
          "conformance-bridge",
          "--url",
          proxyUrl,
          "--expected-server",
          idOf("conformance-enforcing-proxy"),
          "--listen",
          "http://127.0.0.1:0",
        ],
        { env: getDefaultEnvironment() },
      );
      const bridgeUrl = (await bridge.waitFor(/listening on (http:\/\/\S+)/))[1] as string;

      // server-everything's own run first (unless the proxy's test made it), not side by side
      // with the bridged one: on two cores, timing-sensitive scenarios must not race each other.
      const directly = await direct(t, runtime, upstream.url);
      const bridged = await conformance(t, runtime, bridgeUrl);
      assertNothingLost(t, "bridge", directly, bridged);

      // The chain really signed: the proxy recorded the suite's calls as the bridge's, verified
      // signatures, admitted, and the bridge recorded the same calls with their receipts.
      const calls = (await readAudits([join(home, "audit", "conformance-enforcing-proxy.jsonl")], 1)).filter(
        (e) => e.decision === "allow",
      );
      assert.ok(calls.length > 0, "the proxy admitted calls");
      t.diagnostic(`proxy admitted: ${calls.map((e) => `${e.tool} ${e.outcome}`).join(", ")}`);
      for (const e of calls) {
        assert.equal(e.caller, idOf("conformance-bridge"), JSON.stringify(e));
        assert.equal(e.callerVerified, true);
        assert.equal(e.authMethod, "signed");
        assert.ok(e.token, "the invocation token is kept");
      }
      assert.ok(
        calls.some((e) => e.tool === "echo" || e.tool.startsWith("test_")),
        `the suite's tools/call scenarios went through: ${calls.map((e) => e.tool).join(", ")}`,
      );
      const own = await readAudits([join(home, "audit", "conformance-bridge.jsonl")], calls.length);
      assert.ok(
        own.filter((e) => e.decision === "allow").length >= calls.length,
        "the bridge audited each call it signed",
      );
    },
  );
});
