/**
 * The audit promises of docs/audit.md, each kept by a test here (issue 8): on by default,
 * written before the answer (SIGKILL the moment an answer arrives, in both durability modes),
 * fail closed, and honest outcomes.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it, type TestContext } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { queryAuditLog, verifyAuditLog } from "../src/audit/index.js";
import { isAztpError } from "../src/errors.js";
import { CalleeGuard } from "../src/guard/callee.js";
import { CallerGuard } from "../src/guard/caller.js";
import { AuditLog } from "../src/audit/log.js";
import { secureMcpClient, secureMcpServer } from "../src/mcp/index.js";
import { INVOCATION_META_KEY, RECEIPT_META_KEY } from "../src/mcp/meta.js";
import { ROOT } from "./helpers/authority-util.js";
import { newToolServer, type RunCounter } from "./helpers/mcp-tool-server.js";
import { CLI, fixture, onWire, spawnNode, STDIO_SERVER, withTimeout } from "./helpers/mcp-util.js";
import { fillDisk, tinyDisk } from "./helpers/tiny-disk.js";

function jtiOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split(".")[1] as string, "base64url").toString("utf8")) as { jti: string }).jti;
}

/** Collects the process warnings with `code` while `fn` runs. */
async function warningsDuring(code: string, fn: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (w: Error & { code?: string }): void => {
    if (w.code === code) seen.push(w.message);
  };
  process.on("warning", listener);
  try {
    await fn();
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off("warning", listener);
  }
  return seen;
}

describe("audit is on by default", () => {
  it("a secured server and client with no audit option each record every call in <home>/audit/<name>.jsonl", async (t) => {
    const { home, aztp } = fixture(t);
    const counter: RunCounter = { runs: 0 };
    const server = await secureMcpServer(newToolServer(counter), { client: aztp, name: "default-server" });
    const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
      client: aztp,
      name: "default-client",
    });
    const [c, s] = InMemoryTransport.createLinkedPair();
    await server.connect(s);
    await client.connect(c);
    t.after(() => client.close());
    await client.callTool({ name: "echo", arguments: { text: "hi" } });
    // No flush: the answer left only once both entries were written.
    const callee = await queryAuditLog(join(home, "audit", "default-server.jsonl"));
    const caller = await queryAuditLog(join(home, "audit", "default-client.jsonl"));
    assert.deepEqual(
      callee.map((e) => [e.side, e.tool, e.decision, e.outcome]),
      [["callee", "echo", "allow", "ok"]],
    );
    assert.deepEqual(
      caller.map((e) => [e.side, e.tool, e.decision, e.outcome]),
      [["caller", "echo", "allow", "ok"]],
    );
    assert.equal(callee[0]?.jti, caller[0]?.jti, "both sides recorded the same call");
  });

  it("audit: false keeps none, and says so once at start", async (t) => {
    const { home, aztp } = fixture(t);
    const counter: RunCounter = { runs: 0 };
    const said = await warningsDuring("AZTP_AUDIT_OFF", async () => {
      const server = await secureMcpServer(newToolServer(counter), {
        client: aztp,
        name: "quiet-server",
        audit: false,
      });
      const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
        client: aztp,
        name: "quiet-client",
        audit: false,
      });
      const [c, s] = InMemoryTransport.createLinkedPair();
      await server.connect(s);
      await client.connect(c);
      t.after(() => client.close());
      await client.callTool({ name: "echo", arguments: { text: "hi" } });
      await client.callTool({ name: "echo", arguments: { text: "again" } });
    });
    assert.equal(said.length, 2, `one warning per wrapper, not per call: ${JSON.stringify(said)}`);
    assert.ok(said.some((m) => m.includes("quiet-server") && m.includes("keeps no audit log")));
    assert.equal(existsSync(join(home, "audit", "quiet-server.jsonl")), false);
    assert.equal(existsSync(join(home, "audit", "quiet-client.jsonl")), false);
  });

  it("aztp mcp proxy --no-audit says at start that it keeps none", async (t) => {
    const { home } = fixture(t);
    const upstream = `${process.execPath} --import tsx ${STDIO_SERVER} --home ${home} --name upstream --unsecured`;
    const child = spawnNode(
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
        "silent-proxy",
        "--no-audit",
        "--upstream-command",
        upstream,
      ],
      { env: getDefaultEnvironment() },
    );
    await child.waitFor(/no audit log \(--no-audit\): calls are not recorded/);
    assert.equal(existsSync(join(home, "audit", "silent-proxy.jsonl")), false);
  });
});

/** Reads a log until it has an entry with `jti` (the writer is dead, so the file is final). */
async function entryFor(path: string, jti: string): Promise<unknown> {
  const entries = await queryAuditLog(path);
  return entries.find((e) => e.jti === jti);
}

describe("the audit entry is written before the answer", () => {
  for (const durability of ["write", "fsync"] as const) {
    it(`callee (${durability}): a server SIGKILLed the moment its answer arrives has its entry`, async (t) => {
      const { home, aztp } = fixture(t);
      const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
        client: aztp,
        name: "killer",
        audit: false,
      });
      for (let round = 0; round < 3; round++) {
        const transport = new StdioClientTransport({
          command: process.execPath,
          args: ["--import", "tsx", STDIO_SERVER, "--home", home, "--name", "victim", "--durability", durability],
          cwd: ROOT,
          env: getDefaultEnvironment(),
          stderr: "pipe",
        });
        let jti: string | undefined;
        let killed = false;
        // Kill it from the wire, before the client has even parsed the answer: nothing the
        // server did after sending it can have run.
        const wired = onWire({
          outgoing: (m: JSONRPCMessage) => {
            const meta = (m as { params?: { _meta?: Record<string, unknown> } }).params?._meta;
            if (typeof meta?.[INVOCATION_META_KEY] === "string") jti = jtiOf(meta[INVOCATION_META_KEY] as string);
            return m;
          },
          incoming: (m: JSONRPCMessage) => {
            if (
              "result" in m &&
              (m.result as { _meta?: Record<string, unknown> })._meta?.[RECEIPT_META_KEY] !== undefined &&
              !killed
            ) {
              killed = true;
              process.kill(transport.pid as number, "SIGKILL");
            }
            return m;
          },
        })(transport);
        await withTimeout(client.connect(wired), 20_000, "connect");
        await client.callTool({ name: "echo", arguments: { text: `round ${round}` } });
        assert.ok(killed && jti !== undefined);
        await client.close();
        const entry = await entryFor(join(home, "audit", "victim.jsonl"), jti as string);
        assert.ok(entry, `round ${round}: the answered call's entry survived the SIGKILL`);
      }
    });

    it(`caller (${durability}): a client SIGKILLed the moment the application has the result has its entry`, async (t) => {
      const { home } = fixture(t);
      for (let round = 0; round < 3; round++) {
        const child = spawnNode(t, [
          "--import",
          "tsx",
          join(ROOT, "test", "helpers", "audit-kill-caller.ts"),
          "--home",
          home,
          "--durability",
          durability,
        ]);
        const m = await child.waitFor(/RESULT (\S+)\n/);
        child.process.kill("SIGKILL");
        await child.exit;
        const entry = await entryFor(join(home, "audit", "kill-caller.jsonl"), m[1] as string);
        assert.ok(entry, `round ${round}: the caller's entry survived the SIGKILL`);
      }
    });
  }
});

/** A secured pair in memory whose server (or client) logs to `path`, the other side keeping none. */
async function pairLoggingTo(t: TestContext, side: "server" | "client", path: string, mode: "enforce" | "audit") {
  const { aztp } = fixture(t);
  const log = await AuditLog.open(path, { onWarning: () => undefined });
  t.after(() => log.close().catch(() => undefined));
  const counter: RunCounter = { runs: 0 };
  const server = await secureMcpServer(newToolServer(counter), {
    client: aztp,
    name: `full-${side}-server`,
    mode,
    audit: side === "server" ? log : false,
  });
  const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
    client: aztp,
    name: `full-${side}-client`,
    mode,
    audit: side === "client" ? log : false,
  });
  const [c, s] = InMemoryTransport.createLinkedPair();
  await server.connect(s);
  await client.connect(c);
  t.after(() => client.close());
  // A big argument, so each entry takes the disk's last pages quickly (arguments are kept).
  const call = (i: number) => client.callTool({ name: "echo", arguments: { text: `call ${i} `.padEnd(4000, "x") } });
  return { log, counter, call };
}

/** The error code an MCP call failed with (from error.data.code, or the AztpError's own). */
function codeOf(e: unknown): string | undefined {
  return ((e as { data?: { code?: string } }).data?.code ?? (e as { code?: string }).code) as string | undefined;
}

describe("fail closed: a log that cannot be written stops the calls, and they resume once it can", () => {
  const disk = tinyDisk();
  after(disk.unmount);
  for (const side of ["server", "client"] as const) {
    it(
      `enforce, ${side} log on a disk that fills mid-run: ERR_AUDIT_UNAVAILABLE, no tool runs unaudited; recovers when space is freed`,
      { skip: disk.skip, timeout: 60_000 },
      async (t) => {
        const { log, counter, call } = await pairLoggingTo(t, side, join(disk.dir, `${side}-enforce.jsonl`), "enforce");
        await call(0);
        const filler = fillDisk(disk.dir);
        let failed: unknown;
        for (let i = 1; i < 200 && failed === undefined; i++) await call(i).catch((e: unknown) => (failed = e));
        assert.equal(codeOf(failed), "ERR_AUDIT_UNAVAILABLE", `the answer was withheld: ${String(failed)}`);
        assert.equal(log.writable, false);
        const runs = counter.runs;
        const entries = (await queryAuditLog(log.path)).length;
        // The calls that follow are refused before the tool runs (server) or before they are sent (client).
        for (let i = 0; i < 3; i++) await assert.rejects(call(1000 + i), (e) => codeOf(e) === "ERR_AUDIT_UNAVAILABLE");
        assert.equal(counter.runs, runs, "no tool ran while the log could not be written");
        rmSync(filler);
        const deadline = Date.now() + 15_000;
        for (;;) {
          const ok = await call(2000).then(
            () => true,
            () => false,
          );
          if (ok) break;
          assert.ok(Date.now() < deadline, "calls resume within 15 s of freeing the disk");
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(counter.runs, runs + 1);
        const after = await queryAuditLog(log.path);
        assert.equal(after.length, entries + 1, "the resumed call is on record, and nothing in between claims to be");
        assert.equal((await verifyAuditLog(log.path)).ok, true, "the chain verifies across the outage");
      },
    );
  }

  it(
    "audit mode: calls go on through a full disk, and it is said once",
    { skip: disk.skip, timeout: 60_000 },
    async (t) => {
      const { log, counter, call } = await pairLoggingTo(t, "server", join(disk.dir, "server-audit.jsonl"), "audit");
      await call(0);
      const filler = fillDisk(disk.dir);
      t.after(() => rmSync(filler, { force: true }));
      const said = await warningsDuring("AZTP_AUDIT_UNAVAILABLE", async () => {
        for (let i = 1; i <= 30; i++) await call(i);
      });
      assert.equal(log.writable, false, "the disk did fill");
      assert.equal(counter.runs, 31, "every call ran");
      assert.equal(said.length, 1, `said once, not per call: ${JSON.stringify(said)}`);
    },
  );
});

describe("no input leaves a call unaudited", () => {
  it("a call whose arguments cannot be signed (a lone surrogate) is refused before it leaves, and the caller records it", async (t) => {
    const { home, aztp } = fixture(t);
    const counter: RunCounter = { runs: 0 };
    const server = await secureMcpServer(newToolServer(counter), { client: aztp, name: "clean-server" });
    const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
      client: aztp,
      name: "hostile-client",
    });
    const [c, s] = InMemoryTransport.createLinkedPair();
    await server.connect(s);
    await client.connect(c);
    t.after(() => client.close());
    await assert.rejects(client.callTool({ name: "echo", arguments: { text: "\udc00 alone" } }), (e) => isAztpError(e));
    assert.equal(counter.runs, 0);
    const [entry] = await queryAuditLog(join(home, "audit", "hostile-client.jsonl"));
    assert.deepEqual(
      [entry?.side, entry?.tool, entry?.decision, entry?.argsDigest],
      ["caller", "echo", "deny", "unencodable"],
    );
    assert.ok(typeof entry?.reason === "string" && entry.reason.startsWith("ERR_"));
  });
});

describe("honest outcomes", () => {
  it("a tool that throws is recorded as the tool's failure (ERR_TOOL_FAILED), with an error receipt the client verifies", async (t) => {
    const { home, aztp } = fixture(t);
    const server = new McpServer({ name: "failing", version: "1" });
    server.registerTool("boom", { inputSchema: { n: z.number() } }, async () => {
      throw new Error("disk on fire");
    });
    const secured = await secureMcpServer(server, { client: aztp, name: "failing-server" });
    const client = await secureMcpClient(new Client({ name: "c", version: "1" }), {
      client: aztp,
      name: "failing-client",
    });
    const [c, s] = InMemoryTransport.createLinkedPair();
    await secured.connect(s);
    await client.connect(c);
    t.after(() => client.close());
    const result = await client.callTool({ name: "boom", arguments: { n: 1 } });
    assert.equal(result.isError, true);
    const [callee] = await queryAuditLog(join(home, "audit", "failing-server.jsonl"));
    const [caller] = await queryAuditLog(join(home, "audit", "failing-client.jsonl"));
    assert.deepEqual([callee?.decision, callee?.outcome, callee?.reason], ["allow", "error", "ERR_TOOL_FAILED"]);
    assert.deepEqual(
      [caller?.decision, caller?.outcome, caller?.reason],
      ["allow", "error", "ERR_TOOL_FAILED"],
      "the verified receipt says why",
    );
  });

  it("a result RFC 8785 cannot represent (a lone surrogate) comes back as an error with a receipt that says why, not as a missing receipt", async (t) => {
    const { home, aztp } = fixture(t);
    const server = new McpServer({ name: "odd", version: "1" });
    let runs = 0;
    server.registerTool("odd", { inputSchema: { n: z.number() } }, async () => {
      runs += 1;
      return { content: [{ type: "text", text: "half a pair: \ud800" }] };
    });
    const secured = await secureMcpServer(server, { client: aztp, name: "odd-server" });
    const client = await secureMcpClient(new Client({ name: "c", version: "1" }), { client: aztp, name: "odd-client" });
    const [c, s] = InMemoryTransport.createLinkedPair();
    await secured.connect(s);
    const received: JSONRPCMessage[] = [];
    await client.connect(onWire({ incoming: (m: JSONRPCMessage) => (received.push(m), m) })(c));
    t.after(() => client.close());
    const error = (await client.callTool({ name: "odd", arguments: { n: 1 } }).then(
      () => assert.fail("the unreceipted result reached the application"),
      (e: unknown) => e,
    )) as { data?: { code?: string; [RECEIPT_META_KEY]?: unknown } };
    assert.equal(runs, 1);
    const code = error.data?.code;
    assert.ok(code !== undefined && code !== "ERR_RECEIPT_MISSING", `a code of its own, got ${code}`);
    assert.equal(typeof error.data?.[RECEIPT_META_KEY], "string", "the error carries the receipt that says why");
    assert.equal(
      received.some((m) => JSON.stringify(m).includes("half a pair")),
      false,
      "the result never left the server",
    );
    const [callee] = await queryAuditLog(join(home, "audit", "odd-server.jsonl"));
    const [caller] = await queryAuditLog(join(home, "audit", "odd-client.jsonl"));
    assert.deepEqual([callee?.decision, callee?.outcome, callee?.reason], ["allow", "error", code]);
    assert.deepEqual([caller?.outcome, caller?.reason], ["error", code]);
  });

  it("CalleeGuard.run: a throwing tool is ERR_TOOL_FAILED, not a malformed invocation", async (t) => {
    const { home, aztp } = fixture(t);
    const callee = (await aztp.secureConnect({}, "run-callee")).identity;
    const caller = (await aztp.secureConnect({}, "run-caller")).identity;
    const trust = await aztp.trust();
    const log = await AuditLog.open(join(home, "run.jsonl"));
    t.after(() => log.close());
    const guard = new CalleeGuard({ identity: callee, trust, audit: log });
    const { token } = await new CallerGuard({ identity: caller, trust }).prepare({
      audience: callee.spiffeId,
      tool: "t",
      args: {},
    });
    await assert.rejects(
      guard.run({ tool: "t", args: {}, token }, () => {
        throw new Error("nope");
      }),
      /nope/,
    );
    const [entry] = await queryAuditLog(log.path);
    assert.deepEqual([entry?.decision, entry?.outcome, entry?.reason], ["allow", "error", "ERR_TOOL_FAILED"]);
  });
});
