/**
 * `aztp audit view`'s HTTP server: the page, its script and style (all shipped in the package,
 * nothing fetched from elsewhere), and the JSON the page reads, on loopback only.
 *
 * Every request is checked before anything else: addressed to this server (Host, Origin), then
 * the one-time token exchanged for the session cookie, or the cookie (session.ts). Every answer,
 * refusals included, carries a strict Content-Security-Policy (scripts, styles and connections
 * to this origin only, nothing inline, no frames, no forms, no base URL), `nosniff`,
 * `no-referrer` and `no-store`: the entries hold attacker-chosen strings, and the page renders
 * them as text (page/script.ts), so even a bug there has no inline script to run and nowhere to
 * send what it read.
 *
 * The JSON: `/api/state` (each log's verdict, the filters' values), `/api/calls` (one page of
 * rows, filtered), `/api/charts` (the same filter, counted), `/api/call?id=` (a call's entries in
 * full, tokens and receipts checked), `/api/events` (Server-Sent Events: "change" when the logs
 * moved on), and `POST /api/reverify` (verify every log again in full).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { AztpError, ErrorCodes } from "../errors.js";
import { isLoopbackHost } from "../net/loopback.js";
import { intParam, parseFilter } from "./call-index.js";
import { entryDetail } from "./entry-detail.js";
import { PAGE_HTML } from "./page/html.js";
import { PAGE_SCRIPT } from "./page/script.js";
import { PAGE_STYLE } from "./page/style.js";
import { ViewerSession } from "./session.js";
import { LogWatcher, type LogWatcherOptions } from "./watcher.js";

export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
  "X-Frame-Options": "DENY",
};

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  "/app.js": { type: "text/javascript; charset=utf-8", body: PAGE_SCRIPT },
  "/app.css": { type: "text/css; charset=utf-8", body: PAGE_STYLE },
};

export interface AuditViewerOptions extends LogWatcherOptions {
  /** A loopback address (default 127.0.0.1); anything else is refused. */
  readonly host?: string;
  /** Default 0: a free port. */
  readonly port?: number;
  /** Where the logs come from, for the page's title ("/srv/aztp/audit", "postgres://db (audit)"). */
  readonly title?: string;
}

export interface RunningViewer {
  /** The URL to open, carrying the one-time token. */
  readonly url: string;
  readonly port: number;
  readonly watcher: LogWatcher;
  /** Resolves once every log was read and verified; rejects when one could not be read. */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

/** Starts the server, then reads and verifies the logs (`ready`); the page waits for them. */
export async function startAuditViewer(options: AuditViewerOptions): Promise<RunningViewer> {
  const host = options.host ?? "127.0.0.1";
  if (!isLoopbackHost(host))
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `the viewer listens on loopback only, not on ${JSON.stringify(host)}`,
    );
  const watcher = new LogWatcher(options);
  const streams = new Set<ServerResponse>();
  let session: ViewerSession | null = null;
  let failure: string | null = null;

  const server: Server = createServer((req, res) => {
    if (session === null) return void send(res, 503, "text/plain; charset=utf-8", "starting");
    handle(req, res, session).catch((e: unknown) => {
      if (res.headersSent) return void res.destroy();
      if (e instanceof AztpError && e.code === ErrorCodes.ARGUMENT_INVALID)
        return void json(res, 400, { error: { code: e.code, message: e.message } });
      json(res, 500, {
        error: {
          code: e instanceof AztpError ? e.code : ErrorCodes.UNEXPECTED,
          message: String((e as Error)?.message ?? e),
        },
      });
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const port = address.port;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const hosts = new Set([`${urlHost}:${port}`, `localhost:${port}`]);
  if (!host.includes(":")) hosts.add(`${host}:${port}`);
  session = new ViewerSession([...hosts], port);
  const url = `http://${urlHost}:${port}/?token=${session.token}`;

  // Several changes close together are one "change" to the page.
  let pending: NodeJS.Timeout | null = null;
  const announce = (): void => {
    if (pending !== null) return;
    pending = setTimeout(() => {
      pending = null;
      const data = `event: change\ndata: ${JSON.stringify({ version: watcher.version, ready: watcher.ready })}\n\n`;
      for (const s of streams) s.write(data);
    }, 100);
  };
  watcher.onChange(announce);
  const keepAlive = setInterval(() => {
    for (const s of streams) s.write(": keep-alive\n\n");
  }, 15_000);
  keepAlive.unref();

  const ready = watcher.start().catch((e: unknown) => {
    failure = (e as Error).message;
    announce();
    throw e;
  });
  ready.catch(() => undefined); // the caller decides what a failure means

  async function handle(req: IncomingMessage, res: ServerResponse, s: ViewerSession): Promise<void> {
    const target = s.checkTarget(req);
    if (!target.ok) return refuse(res, target.status, target.message);
    const u = new URL(req.url ?? "/", "http://viewer.invalid");
    const token = u.searchParams.get("token");
    if (u.pathname === "/" && token !== null) {
      const exchanged = s.exchange(token);
      if (!exchanged.ok) return refuse(res, exchanged.status, exchanged.message);
      res.writeHead(303, { ...SECURITY_HEADERS, Location: "/", "Set-Cookie": exchanged.cookie });
      res.end();
      return;
    }
    const admitted = s.admit(req);
    if (!admitted.ok) return refuse(res, admitted.status, admitted.message);
    const method = req.method ?? "GET";
    if (u.pathname === "/api/reverify") {
      if (method !== "POST") return refuse(res, 405, "POST only");
      await watcher.reverify();
      return json(res, 200, { version: watcher.version });
    }
    if (method !== "GET" && method !== "HEAD") return refuse(res, 405, "GET only");
    if (u.pathname === "/") return send(res, 200, "text/html; charset=utf-8", PAGE_HTML);
    const asset = ASSETS[u.pathname];
    if (asset !== undefined) return send(res, 200, asset.type, asset.body);
    if (u.pathname === "/favicon.ico") return send(res, 204, "text/plain; charset=utf-8", "");
    if (u.pathname === "/api/events") return events(req, res);
    if (u.pathname === "/api/state") return json(res, 200, state());
    if (!u.pathname.startsWith("/api/")) return refuse(res, 404, "not found");
    if (failure !== null) return json(res, 500, { error: { code: ErrorCodes.AUDIT_IO_FAILED, message: failure } });
    // Nothing is shown before it was verified.
    if (!watcher.ready) return json(res, 503, { error: { code: "verifying", message: "the logs are being verified" } });
    const p = u.searchParams;
    if (u.pathname === "/api/calls")
      return json(res, 200, watcher.index.query(parseFilter(p), intParam(p, "offset", 0), intParam(p, "limit", 100)));
    if (u.pathname === "/api/charts") return json(res, 200, watcher.index.charts(parseFilter(p)));
    if (u.pathname === "/api/call") {
      const call = watcher.index.get(intParam(p, "id", 0));
      if (call === undefined) return json(res, 404, { error: { code: "not-found", message: "no such call" } });
      const entries = await Promise.all(
        call.entries.map((e) => {
          const trust = watcher.trustOf(e.log);
          return entryDetail(e, trust?.trust, trust?.source);
        }),
      );
      return json(res, 200, { id: call.id, entries });
    }
    return refuse(res, 404, "not found");
  }

  // The filters' values, counted once per change of the logs (every call is read).
  let facetsOf: { version: number; facets: ReturnType<LogWatcher["index"]["facets"]> } | null = null;
  function facets(): ReturnType<LogWatcher["index"]["facets"]> {
    if (facetsOf === null || facetsOf.version !== watcher.version)
      facetsOf = { version: watcher.version, facets: watcher.index.facets() };
    return facetsOf.facets;
  }

  function state(): unknown {
    return {
      ready: watcher.ready,
      version: watcher.version,
      title: options.title ?? null,
      ...(failure !== null ? { failure } : {}),
      calls: watcher.ready ? watcher.index.size : 0,
      logs: watcher.logs.map((log) => {
        const trust = watcher.trustOf(log);
        const readError = watcher.readErrorOf(log);
        return {
          id: log.id,
          name: log.name,
          path: log.path,
          ok: log.ok && readError === undefined,
          signatures: trust?.verifier !== undefined ? "checked" : "not checked (--no-signatures)",
          trustSource: trust?.source ?? null,
          lines: log.entries.length,
          verdict:
            log.verdict === null ? null : { ...log.verdict.result, at: log.verdict.at, ms: Math.round(log.verdict.ms) },
          live: log.live,
          badLine: Number.isFinite(log.badLine) ? log.badLine : null,
          ...(log.error !== null ? { error: log.error } : {}),
          ...(readError !== undefined ? { readError } : {}),
        };
      }),
      facets: watcher.ready ? facets() : null,
    };
  }

  function events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      "Content-Type": "text/event-stream; charset=utf-8",
      Connection: "keep-alive",
    });
    res.write(
      `retry: 2000\nevent: change\ndata: ${JSON.stringify({ version: watcher.version, ready: watcher.ready })}\n\n`,
    );
    streams.add(res);
    req.on("close", () => streams.delete(res));
  }

  return {
    url,
    port,
    watcher,
    ready,
    async close() {
      clearInterval(keepAlive);
      if (pending !== null) clearTimeout(pending);
      for (const s of streams) s.end();
      streams.clear();
      await watcher.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { ...SECURITY_HEADERS, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, "application/json; charset=utf-8", JSON.stringify(value));
}

function refuse(res: ServerResponse, status: number, message: string): void {
  send(res, status, "text/plain; charset=utf-8", `${message}\n`);
}
