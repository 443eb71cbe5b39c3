/**
 * Plumbing for the MCP tests: a secured tool server reachable over in-memory, stdio or
 * Streamable HTTP behind one interface (so each behaviour is checked on every transport),
 * wire taps that read or edit JSON-RPC messages between a client and its transport, child
 * processes that are always reaped, and bounded waits.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { Client as ClientClass, type Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { McpError, type JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import aztp, { type Aztp } from "aztp-client";
import { AuditLog, queryAuditLog } from "../../src/audit/index.js";
import type { AuditEntry } from "../../src/audit/entry.js";
import type { AgentIdentity } from "../../src/client/identity.js";
import type { GuardMode } from "../../src/guard/callee.js";
import {
  InterceptingTransport,
  secureMcpClient,
  serveMcpHttp,
  type McpHttpServer,
  type SecureMcpClientOptions,
} from "../../src/mcp/index.js";
import { SpiffeId } from "../../src/spiffe/spiffeid.js";
import { IDENTITY_META_KEY } from "../../src/mcp/meta.js";
import type { PolicyDocument } from "../../src/policy/policy.js";
import { ROOT, tempDir } from "./authority-util.js";
import { securedToolServer, type RunCounter } from "./mcp-tool-server.js";

export const STDIO_SERVER = join(ROOT, "test", "helpers", "mcp-stdio-server.ts");
export const CLI = join(ROOT, "src", "cli", "main.ts");
export const EVERYTHING = join(ROOT, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js");
export const FILESYSTEM = join(ROOT, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js");

/** A throw-away AZTP home and a client on it, closed when the test ends. */
export function fixture(t: TestContext): { home: string; aztp: Aztp } {
  const home = tempDir(t, "mcp");
  const c = aztp.initialize({ home });
  t.after(() => c.close());
  return { home, aztp: c };
}

/** `p`, or a rejection naming `what` after `ms`: a hang fails the test instead of stalling it. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Rejects with an MCP error whose data.code is `code`; returns the error. `errorClass` is the
 * SDK's error class (1.x McpError by default; the 2.x SDK's ProtocolError for its clients).
 */
export async function rejectsWithData<E extends Error & { data?: unknown } = McpError>(
  p: Promise<unknown>,
  code: string,
  what = "call",
  errorClass: abstract new (...args: never[]) => E = McpError as unknown as abstract new (...args: never[]) => E,
): Promise<E> {
  let caught: unknown;
  try {
    await withTimeout(p, 10_000, what);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `${what}: expected ${code}, but it succeeded`);
  assert.ok(
    caught instanceof errorClass,
    `${what}: expected an ${errorClass.name} carrying ${code}, got ${String(caught)}`,
  );
  assert.equal((caught.data as { code?: unknown } | undefined)?.code, code, `${what}: ${caught.message}`);
  return caught;
}

/** Edits of the messages a client sends and receives, below its AZTP layer (on the wire). */
export interface WireEdits {
  /** Return undefined to drop the message. */
  incoming?: (m: JSONRPCMessage) => JSONRPCMessage | undefined;
  outgoing?: (m: JSONRPCMessage) => JSONRPCMessage;
}

export type Wrap = (inner: Transport) => Transport;

/** A plain InterceptingTransport that applies `edits`: the man in the middle of these tests. */
export function onWire(edits: WireEdits): Wrap {
  return (inner) =>
    new InterceptingTransport(inner, {
      incoming(message, _extra, deliver) {
        const out = edits.incoming ? edits.incoming(message) : message;
        if (out !== undefined) deliver(out);
      },
      outgoing(message) {
        return edits.outgoing ? edits.outgoing(message) : message;
      },
    });
}

/** Records every message seen on the wire (after the client's AZTP layer signs them). */
export function tap(): { wrap: Wrap; sent: JSONRPCMessage[]; received: JSONRPCMessage[] } {
  const sent: JSONRPCMessage[] = [];
  const received: JSONRPCMessage[] = [];
  const wrap = onWire({
    outgoing: (m) => (sent.push(structuredClone(m)), m),
    incoming: (m) => (received.push(structuredClone(m)), m),
  });
  return { wrap, sent, received };
}

export type TransportKind = "memory" | "stdio" | "http";
export const TRANSPORTS: readonly TransportKind[] = ["memory", "stdio", "http"];

export interface HarnessOptions {
  name: string;
  mode?: GuardMode;
  /** Server-side audit log (stdio: one file per server process, `<path>.<n>`). */
  audit?: string;
  policy?: PolicyDocument[];
  filter?: boolean;
  /** The same tool server without AZTP. */
  unsecured?: boolean;
}

/** A secured tool server behind one transport kind; every connect opens a new connection. */
export interface Harness {
  readonly kind: TransportKind;
  /** Connects `client` over a new transport, optionally wrapped (a tap, a tampering wire). */
  connect(client: Client, wrap?: Wrap): Promise<void>;
  /** Stops the server under its clients (memory: closes it; stdio: SIGKILL; http: closes the listener and starts a new one on the same port). */
  restart(): Promise<void>;
  /** The server side's audit entries, waiting (bounded) until there are at least `atLeast`. */
  serverAudit(atLeast?: number): Promise<AuditEntry[]>;
  close(): Promise<void>;
}

/** Resolves once `done()` holds (polled every 10 ms), or fails naming `what` after `ms`. */
export async function until(done: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads one or more audit logs until they hold `atLeast` entries in all, or 5 s pass. */
export async function readAudits(paths: string[], atLeast: number): Promise<AuditEntry[]> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const all: AuditEntry[] = [];
    for (const p of paths) all.push(...(await queryAuditLog(p).catch(() => [] as AuditEntry[])));
    if (all.length >= atLeast || Date.now() > deadline) return all;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** In-process server side shared by memory and http: one identity, a new McpServer per connection. */
async function inProcessServers(
  c: Aztp,
  options: HarnessOptions,
): Promise<{
  make: () => Promise<McpServer>;
  live: Set<McpServer>;
  flush: () => Promise<void>;
  audit: AuditLog | undefined;
}> {
  const audit = options.audit ? await AuditLog.open(options.audit, { batchWindowMs: 0 }) : undefined;
  const counter: RunCounter = { runs: 0 };
  const live = new Set<McpServer>();
  const all: McpServer[] = [];
  let identity: AgentIdentity | undefined;
  const trust = await c.trust();
  const common = {
    mode: options.mode ?? "enforce",
    ...(audit ? { audit } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
    ...(options.filter ? { filterToolsByPolicy: true } : {}),
    ...(options.unsecured ? { unsecured: true } : {}),
  } as const;
  const make = async (): Promise<McpServer> => {
    // The first server is issued its identity by the client; the others reuse it with { identity, trust }.
    const server = identity
      ? await securedToolServer(counter, { identity, trust, ...common })
      : await securedToolServer(counter, { client: c, name: options.name, ...common });
    if (!options.unsecured) identity ??= (server as McpServer & { identity: AgentIdentity }).identity;
    live.add(server);
    all.push(server);
    server.server.onclose = () => live.delete(server);
    return server;
  };
  const flush = async (): Promise<void> => {
    for (const s of all) await (s as { aztpGuard?: { flush(): Promise<void> } }).aztpGuard?.flush();
  };
  return { make, live, flush, audit };
}

/** Connects `client` to `server` over a linked in-memory pair; both are closed when the test ends. */
export async function linkInMemory(
  t: TestContext,
  server: { connect(transport: Transport): Promise<void>; close(): Promise<void> },
  client: { connect(transport: Transport): Promise<void>; close(): Promise<void> },
): Promise<void> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  t.after(async () => {
    await client.close().catch(() => undefined);
    await server.close().catch(() => undefined);
  });
}

export async function startHarness(
  t: TestContext,
  kind: TransportKind,
  c: Aztp,
  home: string,
  options: HarnessOptions,
): Promise<Harness> {
  const h =
    kind === "stdio"
      ? stdioHarness(home, options)
      : kind === "memory"
        ? await memoryHarness(c, options)
        : await httpHarness(c, options);
  t.after(() => h.close());
  return h;
}

async function memoryHarness(c: Aztp, options: HarnessOptions): Promise<Harness> {
  const servers = await inProcessServers(c, options);
  return {
    kind: "memory",
    async connect(client, wrap) {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await (await servers.make()).connect(serverSide);
      await client.connect(wrap ? wrap(clientSide) : clientSide);
    },
    async restart() {
      for (const s of [...servers.live]) await s.close();
    },
    async serverAudit(atLeast = 0) {
      await servers.flush();
      return options.audit ? readAudits([options.audit], atLeast) : [];
    },
    async close() {
      for (const s of [...servers.live]) await s.close().catch(() => undefined);
      await servers.flush();
      await servers.audit?.close();
    },
  };
}

async function httpHarness(c: Aztp, options: HarnessOptions): Promise<Harness> {
  const servers = await inProcessServers(c, options);
  const onSession = async (transport: Transport): Promise<void> => {
    await (await servers.make()).connect(transport);
  };
  let http: McpHttpServer = await serveMcpHttp("http://127.0.0.1:0", onSession);
  const url = http.url;
  return {
    kind: "http",
    get http() {
      return http;
    },
    async connect(client, wrap) {
      const transport = new StreamableHTTPClientTransport(url, {
        reconnectionOptions: {
          maxReconnectionDelay: 200,
          initialReconnectionDelay: 50,
          reconnectionDelayGrowFactor: 1,
          maxRetries: 1,
        },
      });
      await client.connect(wrap ? wrap(transport) : transport);
    },
    async restart() {
      await http.close();
      http = await serveMcpHttp(`http://127.0.0.1:${url.port}`, onSession);
    },
    async serverAudit(atLeast = 0) {
      await servers.flush();
      return options.audit ? readAudits([options.audit], atLeast) : [];
    },
    async close() {
      await http.close();
      await servers.flush();
      await servers.audit?.close();
    },
  } as Harness;
}

/** The McpHttpServer behind an http harness (for its session count). */
export function httpServerOf(h: Harness): McpHttpServer {
  return (h as Harness & { http: McpHttpServer }).http;
}

function stdioHarness(home: string, options: HarnessOptions): Harness {
  const transports: StdioClientTransport[] = [];
  const audits: string[] = [];
  const args = (): string[] => {
    const a = [
      "--import",
      "tsx",
      STDIO_SERVER,
      "--home",
      home,
      "--name",
      options.name,
      "--mode",
      options.mode ?? "enforce",
    ];
    if (options.audit) {
      const path = `${options.audit}.${audits.length}`;
      audits.push(path);
      a.push("--audit", path);
    }
    if (options.policy) a.push("--policy", JSON.stringify(options.policy[0]));
    if (options.filter) a.push("--filter");
    if (options.unsecured) a.push("--unsecured");
    return a;
  };
  return {
    kind: "stdio",
    async connect(client, wrap) {
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: args(),
        cwd: ROOT,
        env: getDefaultEnvironment(),
        stderr: "pipe",
      });
      let stderr = "";
      transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
      transports.push(transport);
      try {
        await withTimeout(client.connect(wrap ? wrap(transport) : transport), 20_000, "stdio connect");
      } catch (e) {
        if (stderr.includes("Error")) (e as Error).message += `\nserver stderr: ${stderr}`;
        throw e;
      }
    },
    async restart() {
      const killed = transports.filter((tr) => tr.pid !== null);
      for (const tr of killed) process.kill(tr.pid as number, "SIGKILL");
      // Wait until each client transport has seen its child go (the SDK clears pid when it
      // reports the close): a fixed sleep raced the exit on a loaded machine, and a call sent in
      // that gap is in flight when the close lands (audited connection-closed, not refused).
      await until(() => killed.every((tr) => tr.pid === null), "stdio restart: the killed server seen to exit", 10_000);
    },
    async serverAudit(atLeast = 0) {
      return readAudits(audits, atLeast);
    },
    async close() {
      await Promise.all(transports.map((tr) => tr.close().catch(() => undefined)));
    },
  };
}

/** The server's SPIFFE ID from an initialize answer (the `{ id }` an unchallenged client gets). */
export function servedIdentity(received: JSONRPCMessage[]): string | undefined {
  for (const m of received) {
    const meta = (m as { result?: { _meta?: Record<string, unknown> } }).result?._meta;
    const v = meta?.[IDENTITY_META_KEY];
    if (v && typeof v === "object" && typeof (v as { id?: unknown }).id === "string") return (v as { id: string }).id;
  }
  return undefined;
}

/** A long-running child (`node ...args`), SIGKILLed when the test ends if still alive. */
export interface Child {
  readonly process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `re` in stderr (or stdout), bounded by `ms`. */
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after 3 s; resolves when the child has exited. */
  stop(): Promise<void>;
  /** Resolves when the child exits by itself or otherwise. */
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnNode(
  t: TestContext,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, args, { cwd: options.cwd ?? ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  const waiters = new Set<() => void>();
  const poke = (): void => waiters.forEach((w) => w());
  child.stdout.setEncoding("utf8").on("data", (d: string) => ((out += d), poke()));
  child.stderr.setEncoding("utf8").on("data", (d: string) => ((err += d), poke()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => (poke(), resolve({ code, signal }))),
  );
  const exited = exit.then(() => undefined);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await exited;
      clearTimeout(timer);
    }
  };
  t.after(stop);
  return {
    process: child,
    stdout: () => out,
    stderr: () => err,
    waitFor(re, ms = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = err.match(re) ?? out.match(re);
          if (m) {
            cleanup();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`child exited (${child.exitCode ?? child.signalCode}) before ${re}: stderr ${err}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no ${re} within ${ms} ms: stderr ${err}`));
        }, ms);
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    stop,
    exit,
  };
}

/**
 * `node --import` code that makes a third-party server listening on a bare port (as
 * server-everything's `app.listen(PORT)` does) bind the loopback address only, and print the
 * port it got (PORT=0 picks a free one): `LISTENING <port>` on stderr.
 */
export const LOOPBACK_LISTEN = `data:text/javascript,${encodeURIComponent(`
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" || (typeof args[0] === "string" && /^\\d+$/.test(args[0]))) {
    if (typeof args[1] !== "string") args.splice(1, 0, "127.0.0.1");
  }
  this.once("listening", () => { const a = this.address(); if (a && typeof a === "object") process.stderr.write("LISTENING " + a.port + "\\n"); });
  return listen.apply(this, args);
};`)}`;

/** server-everything over Streamable HTTP on a free loopback port; resolves with its /mcp URL. */
export async function startEverythingHttp(t: TestContext): Promise<{ url: string; child: Child }> {
  const child = spawnNode(t, ["--import", LOOPBACK_LISTEN, EVERYTHING, "streamableHttp"], {
    env: { ...getDefaultEnvironment(), PORT: "0" },
  });
  const m = await child.waitFor(/LISTENING (\d+)/);
  return { url: `http://127.0.0.1:${m[1]}/mcp`, child };
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * Runs a command to completion, never rejecting on a non-zero exit. It runs in its own process
 * group, which is SIGKILLed after `timeoutMs` and once the command has exited (so nothing it
 * started, such as a server it spawned, outlives it).
 */
export function runCommand(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  delete env.NODE_TEST_CONTEXT;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // the group is already gone
      }
    };
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(killGroup, options.timeoutMs ?? 60_000);
    child.on("error", (e) => (clearTimeout(timer), reject(e)));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      killGroup();
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** The SPIFFE ID the tests' client gives `name` (default trust domain, environment and method). */
export const idOf = (name: string): string =>
  SpiffeId.parse(`aztp://aztp.local/workload/production/node/${name}`).toString();

export type Secured = Awaited<ReturnType<typeof secureMcpClient<Client>>>;

/** A secured SDK Client named `name`, closed when the test ends, with its own audit log. */
export async function securedClient(
  t: TestContext,
  c: Aztp,
  home: string,
  name: string,
  options: Partial<SecureMcpClientOptions> = {},
): Promise<{ client: Secured; audit: () => Promise<AuditEntry[]> }> {
  const path = join(home, `${name}-audit.jsonl`);
  const log = await AuditLog.open(path, { batchWindowMs: 0 });
  const client = await secureMcpClient(new ClientClass({ name, version: "1.0.0" }), {
    client: c,
    name,
    audit: log,
    ...options,
  });
  t.after(async () => {
    await client.close().catch(() => undefined);
    await client.aztpGuard.flush();
    await log.close();
  });
  return {
    client,
    audit: async () => {
      await client.aztpGuard.flush();
      return queryAuditLog(path);
    },
  };
}
