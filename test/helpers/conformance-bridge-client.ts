/**
 * The client command the MCP conformance suite runs for its client auth scenarios
 * (`conformance client --command "<this> " --scenario auth/client-credentials-...`): it gets the
 * scenario's server URL as its last argument and the credentials in `MCP_CONFORMANCE_CONTEXT`
 * (`client_id`, and `private_key_pem` or `client_secret`).
 *
 * It does what a person configuring a host would: writes the credentials to files only its user
 * can read, starts `aztp mcp bridge` (stdio, in a throw-away home) in front of the URL with
 * `--server-unsecured` (the suite's server is a third-party one) and the `--oauth-*` flags, and
 * drives it with an unmodified SDK `Client`: initialize, tools/list, a call of the scenario's
 * tool. The bridge does all the OAuth; this script never talks to the authorization server.
 * A client secret needs `--oauth-issuer`: the authorization server it belongs to, which an
 * operator knows and this script reads from the server's RFC 9728 metadata, as written.
 *
 * With `--authorization-code` before the URL (the scenarios of a person's authorization): the
 * bridge runs `--oauth-flow authorization-code --oauth-authorize-headless` (the suite's
 * authorization server redirects at once, asking nothing of a person), with the Client ID
 * Metadata Document URL the suite expects (`https://conformance-test.local/client-metadata.json`,
 * used where the server takes CIMD, else the bridge registers dynamically), and the
 * pre-registered client when the context gives one.
 *
 * It prints one JSON line on stdout (what it saw, and whether a credential reached the bridge's
 * stderr or audit log) and exits 0 only when everything went through.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { discoverOAuthProtectedResourceMetadata } from "@modelcontextprotocol/sdk/client/auth.js";
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CLI = join(ROOT, "src", "cli", "main.ts");

interface Context {
  client_id?: string;
  private_key_pem?: string;
  client_secret?: string;
}

async function main(): Promise<number> {
  const url = process.argv.at(-1);
  if (url === undefined || !/^https?:\/\//.test(url)) throw new Error(`no server URL in ${process.argv.join(" ")}`);
  const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? "{}") as Context;
  const person = process.argv.includes("--authorization-code");
  if (context.client_id === undefined && !person) throw new Error("MCP_CONFORMANCE_CONTEXT names no client_id");
  const home = mkdtempSync(join(tmpdir(), "aztp-conformance-bridge-"));
  const credential = context.private_key_pem ?? context.client_secret;
  const report: Record<string, unknown> = { scenario: process.env.MCP_CONFORMANCE_SCENARIO, url };
  try {
    const flags = ["--url", url, "--server-unsecured"];
    if (person)
      flags.push(
        "--oauth-flow",
        "authorization-code",
        "--oauth-authorize-headless",
        "--oauth-client-metadata-url",
        "https://conformance-test.local/client-metadata.json",
      );
    if (context.client_id !== undefined) flags.push("--oauth-client-id", context.client_id);
    if (context.client_id === undefined) {
      // a person's authorization with a client registered on the way (CIMD or dynamic registration)
    } else if (context.private_key_pem !== undefined) {
      const file = join(home, "client-key.pem");
      writeFileSync(file, context.private_key_pem, { mode: 0o600 });
      flags.push("--oauth-private-key", file);
    } else if (context.client_secret !== undefined) {
      const file = join(home, "client-secret");
      writeFileSync(file, context.client_secret, { mode: 0o600 });
      const metadata = await discoverOAuthProtectedResourceMetadata(url);
      const issuer = metadata.authorization_servers?.[0];
      if (issuer === undefined) throw new Error("the server's metadata names no authorization server");
      flags.push("--oauth-client-secret-file", file, "--oauth-issuer", issuer);
    } else if (!person) throw new Error("MCP_CONFORMANCE_CONTEXT has neither private_key_pem nor client_secret");

    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ["--import", "tsx", CLI, "--home", home, "mcp", "bridge", "--name", "conformance", ...flags],
      cwd: ROOT,
      env: getDefaultEnvironment(),
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const client = new Client({ name: "conformance-host", version: "1.0.0" });
    try {
      await client.connect(transport);
      const tools = (await client.listTools()).tools.map((tool) => tool.name);
      report.tools = tools;
      const name = tools[0];
      if (name === undefined) throw new Error("the server lists no tool");
      const result = (await client.callTool({ name, arguments: {} })) as CallToolResult;
      report.called = name;
      report.isError = result.isError === true;
      report.text = (result.content[0] as { text?: string } | undefined)?.text;
    } catch (e) {
      // The bridge's own account of the failure, for whoever reads the suite's saved stderr.
      process.stderr.write(`the bridge's stderr:\n${stderr}\n`);
      throw e;
    } finally {
      await client.close().catch(() => undefined);
    }
    const auditPath = join(home, "audit", "conformance.jsonl");
    const audit = existsSync(auditPath) ? readFileSync(auditPath, "utf8") : "";
    report.audited = audit
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => typeof e.tool === "string") // entries, not checkpoints
      .map((e) => ({ tool: e.tool, decision: e.decision, reason: e.reason, outcome: e.outcome, callee: e.callee }));
    // Any line of the credential (a PEM's body lines, or the secret) would be a leak.
    const pieces = (credential ?? "").split("\n").filter((line) => line.length >= 16 && !line.startsWith("-----"));
    report.credentialLeaked = pieces.some((p) => stderr.includes(p) || audit.includes(p));
    report.bridgeStderr = stderr;
    const ok = report.isError === false && report.credentialLeaked === false;
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return ok ? 0 : 1;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`conformance-bridge-client: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
