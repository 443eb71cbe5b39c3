/**
 * An MCP host that knows nothing of AZTP: the MCP SDK's own `Client` and
 * `StreamableHTTPClientTransport`, given only the server's URL and an OAuth auth provider from
 * `@modelcontextprotocol/sdk/client/auth-extensions.js`, unmodified. Run it in a process whose
 * global fetch trusts the authorization server's certificate (NODE_EXTRA_CA_CERTS), as a host
 * does:
 *
 *   NODE_EXTRA_CA_CERTS=root.pem node --import tsx test/helpers/oauth-sdk-client.ts '<json>'
 *
 * `<json>`: { url, issuer, clientId, provider: "private-key-jwt", keyFile } or
 * { ..., provider: "static", assertion } (a JWT-SVID addressed to the issuer).
 *
 * It connects, lists the tools and calls `echo`, then reads commands on stdin: `call <text>`
 * calls `echo` again on the same session, `trace` prints the HTTP requests so far, `close`
 * ends. Each outcome is one JSON line on stdout: `{"event":"connected"}`, `{"event":"tools"}`,
 * `{"event":"called", text, receipt, token}` (the access token the provider holds, for the test
 * to decode), `{"event":"error", name, message, code}`, `{"event":"trace", requests}`.
 *
 * The trace is a spy on global fetch (what the SDK calls by default): it records each request's
 * method, URL path, JSON-RPC method and answer status, and changes nothing of what is sent.
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  PrivateKeyJwtProvider,
  StaticPrivateKeyJwtProvider,
} from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";

interface Config {
  url: string;
  issuer: string;
  clientId: string;
  provider: "private-key-jwt" | "static";
  keyFile?: string;
  assertion?: string;
}

interface Traced {
  method: string;
  origin: string;
  path: string;
  rpc?: string;
  status: number;
  /** The client authentication a token request carried (its assertion type), never the assertion. */
  assertionType?: string;
  bearer: boolean;
}

const config = JSON.parse(process.argv[2] ?? "{}") as Config;
const out = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`);

const trace: Traced[] = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  const body = typeof init?.body === "string" ? init.body : init?.body instanceof URLSearchParams ? init.body : "";
  const entry: Omit<Traced, "status"> = {
    method,
    origin: url.origin,
    path: url.pathname,
    bearer: /^bearer /i.test(headers.get("authorization") ?? ""),
  };
  if (typeof body === "string" && body.startsWith("{")) {
    const rpc = (JSON.parse(body) as { method?: unknown }).method;
    if (typeof rpc === "string") entry.rpc = rpc;
  } else if (body !== "") {
    const form = new URLSearchParams(body);
    const type = form.get("client_assertion_type");
    if (type !== null) entry.assertionType = type;
  }
  const response = await realFetch(input, init);
  trace.push({ ...entry, status: response.status });
  return response;
};

const provider =
  config.provider === "static"
    ? new StaticPrivateKeyJwtProvider({
        clientId: config.clientId,
        jwtBearerAssertion: config.assertion as string,
        expectedIssuer: config.issuer,
      })
    : new PrivateKeyJwtProvider({
        clientId: config.clientId,
        privateKey: readFileSync(config.keyFile as string, "utf8"),
        algorithm: "ES256",
        expectedIssuer: config.issuer,
      });

function failed(e: unknown): void {
  const err = e as Error & { code?: unknown };
  out({ event: "error", name: err?.constructor?.name, message: String(err?.message ?? e), code: err?.code });
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === "text" ? c.text : "")).join("");

async function call(what: string): Promise<void> {
  try {
    const result = (await client.callTool({ name: "echo", arguments: { text: what } })) as CallToolResult;
    out({
      event: "called",
      text: text(result),
      isError: result.isError === true,
      receipt: typeof result._meta?.["io.aztp/receipt"] === "string",
      token: (await provider.tokens())?.access_token,
    });
  } catch (e) {
    failed(e);
  }
}

const client = new Client({ name: "oauth-host", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(config.url), { authProvider: provider });
try {
  await client.connect(transport);
  out({ event: "connected" });
  out({ event: "tools", names: (await client.listTools()).tools.map((t) => t.name).sort() });
} catch (e) {
  failed(e);
  out({ event: "trace", requests: trace });
  process.exit(2);
}
await call("hello");

for await (const line of createInterface({ input: process.stdin })) {
  const [command, ...rest] = line.split(" ");
  if (command === "call") await call(rest.join(" "));
  else if (command === "trace") out({ event: "trace", requests: trace });
  else if (command === "close") break;
}
await client.close().catch(() => undefined);
process.exit(0);
