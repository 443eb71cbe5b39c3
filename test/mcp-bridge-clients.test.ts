/**
 * `aztp mcp bridge` driven by unmodified clients other than the 1.x SDK's: the MCP SDK 2.x
 * Client (`@modelcontextprotocol/client`, its own stdio transport and version negotiation) and
 * the MCP Inspector's CLI (as a person runs it), each spawning the bridge over stdio in front of
 * a secured Streamable HTTP server in enforce mode.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Client as ClientV2 } from "@modelcontextprotocol/client";
import { StdioClientTransport as StdioClientTransportV2 } from "@modelcontextprotocol/client/stdio";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ErrorCodes } from "../src/errors.js";
import { ROOT } from "./helpers/authority-util.js";
import { bridgeArgs, bridgeAudit, securedHttpServer } from "./helpers/mcp-bridge-util.js";
import { fixture, idOf, runCommand, withTimeout } from "./helpers/mcp-util.js";

const INSPECTOR = join(ROOT, "node_modules", "@modelcontextprotocol", "inspector", "cli", "build", "cli.js");
const inspectorMissing = existsSync(INSPECTOR)
  ? false
  : "@modelcontextprotocol/inspector is not installed (npm ci installs it as a devDependency)";

interface TextResult {
  content: Array<{ type: string; text?: string }>;
  isError?: boolean;
}
const textOf = (r: unknown): string => (r as TextResult).content[0]?.text ?? "";

describe("aztp mcp bridge with the MCP SDK 2.x Client over stdio", () => {
  it("lists tools and calls through it, signed as the bridge; a refused call is an isError result naming the code", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const transport = new StdioClientTransportV2({
      command: process.execPath,
      args: bridgeArgs(home, "desk", ["--url", server.url]),
      cwd: ROOT,
      env: getDefaultEnvironment(),
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const client = new ClientV2({ name: "v2-host", version: "1.0.0" });
    t.after(() => client.close().catch(() => undefined));
    try {
      await withTimeout(client.connect(transport), 30_000, "2.x connect through the bridge");
    } catch (e) {
      (e as Error).message += `\nbridge stderr: ${stderr}`;
      throw e;
    }
    const tools = (await client.listTools()).tools.map((x) => x.name);
    assert.ok(tools.includes("echo") && tools.includes("secret"), tools.join(", "));
    const r = await client.callTool({ name: "echo", arguments: { text: "from 2.x" } });
    assert.equal(textOf(r), "from 2.x");
    const refused = await client.callTool({ name: "secret", arguments: {} });
    assert.equal((refused as TextResult).isError, true);
    assert.match(textOf(refused), new RegExp(`^${ErrorCodes.POLICY_DENIED}: `));
    const served = await server.audit(2);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.decision]),
      [
        ["echo", idOf("desk"), "allow"],
        ["secret", idOf("desk"), "deny"],
      ],
    );
    const own = await bridgeAudit(home, "desk", 2);
    assert.deepEqual(
      own.map((e) => [e.tool, e.decision]),
      [
        ["echo", "allow"],
        ["secret", "deny"],
      ],
    );
  });
});

describe("aztp mcp bridge with the MCP Inspector CLI", { skip: inspectorMissing }, () => {
  it("tools/list and tools/call through the bridge: the call signed, answered and audited as the bridge", async (t) => {
    const { home, aztp: c } = fixture(t);
    const server = await securedHttpServer(t, c, home);
    const target = [process.execPath, ...bridgeArgs(home, "inspected-bridge", ["--url", server.url])];
    const inspector = (method: string[]) =>
      runCommand(process.execPath, [INSPECTOR, "--cli", ...target, ...method], {
        env: getDefaultEnvironment(),
        timeoutMs: 60_000,
      });
    const list = await inspector(["--method", "tools/list"]);
    assert.equal(list.code, 0, list.stderr);
    const names = (JSON.parse(list.stdout) as { tools: Array<{ name: string }> }).tools.map((x) => x.name);
    assert.ok(names.includes("echo"), names.join(", "));
    const call = await inspector([
      "--method",
      "tools/call",
      "--tool-name",
      "echo",
      "--tool-arg",
      "text=hello inspector",
    ]);
    assert.equal(call.code, 0, call.stderr);
    assert.equal(textOf(JSON.parse(call.stdout)), "hello inspector");
    const served = await server.audit(1);
    assert.deepEqual(
      served.map((e) => [e.tool, e.caller, e.decision, e.outcome]),
      [["echo", idOf("inspected-bridge"), "allow", "ok"]],
    );
  });
});
