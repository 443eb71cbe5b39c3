/**
 * An upstream MCP server spawned over stdio, as the proxy's client transport.
 *
 * Why not the SDK's StdioClientTransport: it drops the child's exit status and gives its
 * stderr only as a live stream, so a proxy whose upstream died at start could say neither how
 * it ended nor what it printed (`aztp mcp proxy` exited 0 without a word). This one keeps both:
 * `ended` resolves with the exit code or signal, and the last few KiB of stderr are kept (and,
 * when asked, passed on to our own stderr as they arrive). The framing (ReadBuffer,
 * serializeMessage) and the closing sequence (end stdin, then SIGTERM, then SIGKILL, 2 s
 * apart) are the SDK's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { AztpError, ErrorCodes } from "../errors.js";

export interface UpstreamProcessOptions {
  command: string;
  args?: string[];
  /** Added to the SDK's safe default environment; the child gets nothing else of ours. */
  env?: Record<string, string>;
  cwd?: string;
  /** Pass the child's stderr on to this process's stderr as it arrives (default true). */
  forwardStderr?: boolean;
}

export interface UpstreamEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How much of the child's stderr is kept for error messages: its last lines are what explain a failure. */
const STDERR_TAIL_BYTES = 4096;

/** A command line as people read it: each word that is not plain, quoted. */
export function commandLine(command: string, args: readonly string[] = []): string {
  return [command, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

export class UpstreamProcessTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  readonly #options: UpstreamProcessOptions;
  readonly #readBuffer = new ReadBuffer();
  #child: ChildProcess | undefined;
  #stderr = Buffer.alloc(0);
  #end: UpstreamEnd | undefined;
  #closing = false;
  #exitedOnItsOwn = false;
  readonly #ended: Promise<UpstreamEnd>;
  #resolveEnded!: (end: UpstreamEnd) => void;

  constructor(options: UpstreamProcessOptions) {
    this.#options = options;
    this.#ended = new Promise((resolve) => (this.#resolveEnded = resolve));
  }

  /** The command line, for messages. */
  get commandLine(): string {
    return commandLine(this.#options.command, this.#options.args);
  }

  /** Resolves when the child has exited (with its code or signal). */
  get ended(): Promise<UpstreamEnd> {
    return this.#ended;
  }

  /** The child's exit, once it has exited. */
  get end(): UpstreamEnd | undefined {
    return this.#end;
  }

  /** True when the child exited before close() was called: it ended, nobody ended it. */
  get exitedOnItsOwn(): boolean {
    return this.#exitedOnItsOwn;
  }

  /** The last few KiB the child wrote to stderr (lossy UTF-8 at the cut). */
  stderrTail(): string {
    return this.#stderr.toString("utf8");
  }

  start(): Promise<void> {
    if (this.#child) throw new Error("UpstreamProcessTransport already started");
    return new Promise((resolve, reject) => {
      const child = spawn(this.#options.command, this.#options.args ?? [], {
        env: { ...getDefaultEnvironment(), ...this.#options.env },
        stdio: ["pipe", "pipe", "pipe"],
        shell: false,
        windowsHide: true,
        ...(this.#options.cwd ? { cwd: this.#options.cwd } : {}),
      });
      this.#child = child;
      let spawned = false;
      child.once("spawn", () => {
        spawned = true;
        resolve();
      });
      child.on("error", (e: NodeJS.ErrnoException) => {
        if (!spawned) {
          reject(
            new AztpError(
              ErrorCodes.MCP_UPSTREAM_FAILED,
              `cannot start the upstream ${this.commandLine}: ${e.code ?? e.message}`,
              { cause: e },
            ),
          );
        } else this.onerror?.(e);
      });
      child.once("exit", (code, signal) => {
        this.#end = { code, signal };
        this.#exitedOnItsOwn = !this.#closing;
      });
      child.once("close", (code, signal) => {
        if (this.#end === undefined) {
          this.#end = { code, signal };
          this.#exitedOnItsOwn = !this.#closing;
        }
        this.#resolveEnded(this.#end);
        this.#child = undefined;
        this.onclose?.();
      });
      child.stdin?.on("error", (e) => this.onerror?.(e));
      child.stdout?.on("error", (e) => this.onerror?.(e));
      child.stdout?.on("data", (chunk: Buffer) => {
        try {
          this.#readBuffer.append(chunk);
          for (let m = this.#readBuffer.readMessage(); m !== null; m = this.#readBuffer.readMessage())
            this.onmessage?.(m);
        } catch (e) {
          this.onerror?.(e as Error);
        }
      });
      child.stderr?.on("data", (chunk: Buffer) => {
        if (this.#options.forwardStderr !== false) process.stderr.write(chunk);
        const all = Buffer.concat([this.#stderr, chunk]);
        this.#stderr = all.length > STDERR_TAIL_BYTES ? all.subarray(all.length - STDERR_TAIL_BYTES) : all;
      });
    });
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.#child?.stdin;
      if (!stdin || !stdin.writable) {
        reject(new Error("Not connected"));
        return;
      }
      if (stdin.write(serializeMessage(message))) resolve();
      else stdin.once("drain", resolve);
    });
  }

  async close(): Promise<void> {
    this.#closing = true;
    const child = this.#child;
    this.#readBuffer.clear();
    if (!child || this.#end) return;
    const gone = (ms: number): Promise<unknown> =>
      Promise.race([this.#ended, new Promise((r) => setTimeout(r, ms).unref())]);
    try {
      child.stdin?.end();
    } catch {
      // already closed
    }
    await gone(2_000);
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      if (this.#end) return;
      child.kill(signal);
      await gone(2_000);
    }
  }
}
