/**
 * A third-party MCP deployment on loopback that speaks OAuth and not AZTP, for the bridge's
 * OAuth client tests: an authorization server (RFC 8414 metadata, a client_credentials token
 * endpoint) that checks client assertions independently of this library (jose, and
 * node:crypto's X509Certificate for the x5c chain against the trust domain's X.509 bundle), and
 * a resource server: an unmodified SDK `McpServer` behind the SDK's own `requireBearerAuth`
 * middleware, with RFC 9728 metadata. Both record what they saw and can be told to misbehave.
 */
import { randomUUID, X509Certificate, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { TestContext } from "node:test";
import {
  decodeProtectedHeader,
  exportSPKI,
  generateKeyPair,
  importX509,
  jwtVerify,
  SignJWT,
  type JWTPayload,
} from "jose";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { AuthInfo } from "@modelcontextprotocol/sdk/server/auth/types.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

export const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
export const JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function listen(t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>) {
  const server = createServer((req, res) => {
    handler(req, res).catch((e: unknown) => {
      if (!res.headersSent) json(res, 500, { error: "server_error", error_description: String(e) });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A token request as the authorization server saw it, after it authenticated the client. */
export interface TokenRequest {
  clientId: string;
  /** How the client authenticated: an x5c-signed private_key_jwt, a JWT-SVID, a key registered, a secret. */
  method: "x5c" | "jwt-svid" | "registered-key" | "client_secret_basic";
  scope: string | undefined;
  resource: string | undefined;
  /** The assertion's claims (assertion methods). */
  claims?: JWTPayload;
  /** The raw request body and Authorization header, to check no secret went where it should not. */
  body: string;
}

export interface TestAuthorizationServerOptions {
  /** The X.509 authorities of the bridge's trust domain: an x5c chain must end at one. */
  x509Roots?: readonly Buffer[];
  /** The JWT authorities of the bridge's trust domain (kid to key): a JWT-SVID must verify with one. */
  jwtKeys?: ReadonlyMap<string, KeyObject>;
  /** A client registered otherwise: its ID and its public key (private_key_jwt) or secret. */
  registered?: { clientId: string; publicKey?: KeyObject; secret?: string };
  /** How long its tokens live (`expires_in`), in seconds. Default 300. */
  expiresIn?: number;
  /** The scopes it grants (default: whatever is asked); a token gets those asked for of these. */
  grantable?: readonly string[];
  /** The access token to issue (default: a JWT signed by this server's own key). */
  mint?: (request: TokenRequest) => string | Promise<string>;
}

export interface TestAuthorizationServer {
  readonly url: string;
  readonly tokenEndpoint: string;
  /** The key its own tokens are signed with (the resource server verifies with it). */
  readonly publicKey: KeyObject;
  /** Token requests it answered with a token. */
  readonly issued: TokenRequest[];
  /** Token requests it refused, with why. */
  readonly refused: Array<{ error: string; description: string; body: string; authorization: string | undefined }>;
  /** Every request it received (method and path). */
  readonly requests: string[];
  /** What its metadata says its issuer is (default: its URL): set to attack. */
  metadataIssuer: string | undefined;
  expiresIn: number;
}

/** The leaf's SPIFFE ID from its URI SAN. */
function uriSan(cert: X509Certificate): string | undefined {
  return /URI:(spiffe:\/\/[^,\s]+)/.exec(cert.subjectAltName ?? "")?.[1];
}

export async function startTestAuthorizationServer(
  t: TestContext,
  options: TestAuthorizationServerOptions = {},
): Promise<TestAuthorizationServer> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const spent = new Set<string>();
  const roots = (options.x509Roots ?? []).map((der) => new X509Certificate(der));
  const as: TestAuthorizationServer = {
    url: "",
    tokenEndpoint: "",
    publicKey: publicKey as unknown as KeyObject,
    issued: [],
    refused: [],
    requests: [],
    metadataIssuer: undefined,
    expiresIn: options.expiresIn ?? 300,
  };
  let url = "";
  const refuse = (
    res: ServerResponse,
    error: string,
    description: string,
    body: string,
    authorization: string | undefined,
  ): void => {
    as.refused.push({ error, description, body, authorization });
    json(res, error === "invalid_client" ? 401 : 400, { error, error_description: description });
  };

  /** Authenticates the client of a token request (RFC 7523 assertions, or HTTP Basic), or says why not. */
  const authenticate = async (
    form: URLSearchParams,
    authorization: string | undefined,
  ): Promise<Pick<TokenRequest, "clientId" | "method" | "claims"> | string> => {
    const type = form.get("client_assertion_type");
    const assertion = form.get("client_assertion");
    if (authorization?.startsWith("Basic ")) {
      const [id, secret] = Buffer.from(authorization.slice(6), "base64").toString("utf8").split(":");
      const r = options.registered;
      if (r?.secret === undefined || id !== r.clientId || secret !== r.secret) return "wrong client credentials";
      return { clientId: r.clientId, method: "client_secret_basic" };
    }
    if (assertion === null) return "no client authentication";
    const header = decodeProtectedHeader(assertion);
    let key: Parameters<typeof jwtVerify>[1];
    let method: TokenRequest["method"];
    if (type === JWT_SPIFFE) {
      const k = typeof header.kid === "string" ? options.jwtKeys?.get(header.kid) : undefined;
      if (k === undefined) return `no JWT authority ${String(header.kid)}`;
      key = k;
      method = "jwt-svid";
    } else if (type !== JWT_BEARER) {
      return `client_assertion_type ${String(type)}`;
    } else if (Array.isArray(header.x5c)) {
      // The chain, leaf first, must end at a root of the bundle; the leaf's key signed.
      const chain = header.x5c.map((b64) => new X509Certificate(Buffer.from(b64, "base64")));
      for (let i = 0; i + 1 < chain.length; i++)
        if (!(chain[i] as X509Certificate).verify((chain[i + 1] as X509Certificate).publicKey)) return "x5c broken";
      const top = chain[chain.length - 1] as X509Certificate;
      if (!roots.some((r) => top.verify(r.publicKey))) return "x5c does not reach the bundle";
      key = await importX509((chain[0] as X509Certificate).toString(), header.alg as string);
      method = "x5c";
    } else if (options.registered?.publicKey !== undefined) {
      key = options.registered.publicKey;
      method = "registered-key";
    } else return "no key for this assertion";
    let claims: JWTPayload;
    try {
      claims = (await jwtVerify(assertion, key, { audience: url, clockTolerance: 30 })).payload;
    } catch (e) {
      return `assertion: ${(e as Error).message}`;
    }
    if (typeof claims.sub !== "string") return "no sub";
    if (method === "x5c") {
      const leaf = new X509Certificate(Buffer.from((header.x5c as string[])[0] as string, "base64"));
      if (uriSan(leaf) !== claims.sub) return "the x5c leaf is not the subject";
    }
    if (method !== "jwt-svid" && claims.iss !== claims.sub) return "iss is not the client";
    if (method === "registered-key" && claims.sub !== options.registered?.clientId) return "unknown client";
    // Single use. A JWT-SVID need not carry a jti (the SPIFFE standard does not ask for one): it is
    // then as replayable as its lifetime allows, which the bridge keeps to one minute.
    if (claims.jti === undefined && method === "jwt-svid") return { clientId: claims.sub, method, claims };
    if (typeof claims.jti !== "string" || spent.has(claims.jti)) return "jti missing or replayed";
    spent.add(claims.jti);
    return { clientId: claims.sub, method, claims };
  };

  url = await listen(t, async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    as.requests.push(`${req.method} ${path}`);
    if (req.method === "GET" && path === "/.well-known/oauth-authorization-server") {
      json(res, 200, {
        issuer: as.metadataIssuer ?? url,
        // Required by the MCP SDK's metadata schema even where only client_credentials is served.
        authorization_endpoint: `${url}/authorize`,
        token_endpoint: `${url}/token`,
        grant_types_supported: ["client_credentials"],
        token_endpoint_auth_methods_supported: ["private_key_jwt", "client_secret_basic"],
        token_endpoint_auth_signing_alg_values_supported: ["ES256"],
        response_types_supported: ["token"],
      });
      return;
    }
    if (req.method !== "POST" || path !== "/token") {
      json(res, 404, { error: "not_found" });
      return;
    }
    const body = await readBody(req);
    const form = new URLSearchParams(body);
    const authorization = req.headers.authorization;
    if (form.get("grant_type") !== "client_credentials")
      return refuse(res, "unsupported_grant_type", "client_credentials only", body, authorization);
    const client = await authenticate(form, authorization);
    if (typeof client === "string") return refuse(res, "invalid_client", client, body, authorization);
    const asked = form.get("scope") ?? undefined;
    const granted =
      asked === undefined || options.grantable === undefined
        ? asked
        : asked
            .split(" ")
            .filter((sc) => options.grantable?.includes(sc))
            .join(" ");
    const request: TokenRequest = {
      ...client,
      scope: asked,
      resource: form.get("resource") ?? undefined,
      body,
    };
    const token =
      options.mint !== undefined
        ? await options.mint(request)
        : await new SignJWT({ client_id: client.clientId, ...(granted ? { scope: granted } : {}) })
            .setProtectedHeader({ alg: "ES256", typ: "at+jwt" })
            .setIssuer(url)
            .setSubject(client.clientId)
            .setAudience(request.resource ?? url)
            .setIssuedAt()
            .setExpirationTime(Math.floor(Date.now() / 1000) + as.expiresIn)
            .setJti(randomUUID())
            .sign(privateKey);
    as.issued.push(request);
    json(res, 200, {
      access_token: token,
      token_type: "Bearer",
      expires_in: as.expiresIn,
      ...(granted ? { scope: granted } : {}),
    });
  });
  return Object.assign(as, { url, tokenEndpoint: `${url}/token` });
}

export interface TestResourceServerOptions {
  /** The authorization server its metadata names (default: the one whose tokens it verifies). */
  authorizationServers?: string[];
  /** `scopes_supported` of its metadata, and what every request needs. */
  scopes?: string[];
  /** What a tools/call needs on top (a 403 insufficient_scope names them all). */
  callScopes?: string[];
  /** The `resource` its metadata names (default: its own URL): set to attack. */
  resource?: string;
}

export interface TestResourceServer {
  /** Its MCP endpoint: `<origin>/mcp`. */
  readonly url: string;
  /** Requests answered 401 / 403, and with what WWW-Authenticate. */
  readonly challenges: Array<{ status: number; header: string | null }>;
  /** The jti of the token each admitted request carried, in order. */
  readonly tokensSeen: string[];
  /** Tokens (by jti) it no longer accepts, as a server that revoked them or lost its state. */
  readonly revoked: Set<string>;
  /** Refuse every token, valid or not (a server that never accepts the bridge). */
  rejectAll: boolean;
  /** Tool calls that ran, with the caller the token named. */
  readonly calls: Array<{ tool: string; clientId: string | undefined }>;
}

/**
 * An unmodified SDK McpServer (stateless, a new one per request, as the conformance suite's) behind
 * the SDK's own requireBearerAuth, on node:http, verifying the tokens of `as` with jose.
 */
export async function startTestResourceServer(
  t: TestContext,
  as: TestAuthorizationServer,
  options: TestResourceServerOptions = {},
): Promise<TestResourceServer> {
  let origin = "";
  const rs: TestResourceServer = {
    url: "",
    challenges: [],
    tokensSeen: [],
    revoked: new Set(),
    rejectAll: false,
    calls: [],
  };
  const verifier = {
    async verifyAccessToken(token: string): Promise<AuthInfo> {
      if (rs.rejectAll) throw new InvalidTokenError("this server accepts no token");
      let payload: JWTPayload;
      try {
        payload = (await jwtVerify(token, as.publicKey, { issuer: as.url, audience: `${origin}/mcp` })).payload;
      } catch (e) {
        throw new InvalidTokenError(`token: ${(e as Error).message}`);
      }
      if (typeof payload.jti === "string" && rs.revoked.has(payload.jti)) throw new InvalidTokenError("token revoked");
      rs.tokensSeen.push(String(payload.jti));
      return {
        token,
        clientId: String(payload.client_id ?? payload.sub),
        scopes: typeof payload.scope === "string" ? payload.scope.split(" ") : [],
        expiresAt: payload.exp as number,
        resource: new URL(`${origin}/mcp`),
      };
    },
  };
  const prmPath = "/.well-known/oauth-protected-resource/mcp";
  const gate = (scopes: string[]) =>
    requireBearerAuth({ verifier, requiredScopes: scopes, resourceMetadataUrl: `${origin}${prmPath}` });
  const server = (): McpServer => {
    const s = new McpServer({ name: "third-party", version: "1.0.0" });
    const text = (t: string): CallToolResult => ({ content: [{ type: "text", text: t }] });
    s.registerTool("whoami", { inputSchema: {} }, async (_args, extra) => {
      rs.calls.push({ tool: "whoami", clientId: extra.authInfo?.clientId });
      return text(extra.authInfo?.clientId ?? "nobody");
    });
    s.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text: said }, extra) => {
      rs.calls.push({ tool: "echo", clientId: extra.authInfo?.clientId });
      return text(said);
    });
    return s;
  };
  origin = await listen(t, async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "GET" && path === prmPath) {
      json(res, 200, {
        resource: options.resource ?? `${origin}/mcp`,
        authorization_servers: options.authorizationServers ?? [as.url],
        ...(options.scopes !== undefined ? { scopes_supported: options.scopes } : {}),
        bearer_methods_supported: ["header"],
      });
      return;
    }
    if (path !== "/mcp") {
      json(res, 404, { error: "not_found" });
      return;
    }
    if (req.method !== "POST") {
      // Stateless: no standalone stream to open, no session to end (as the conformance suite's servers).
      res.writeHead(405, { allow: "POST" }).end();
      return;
    }
    const raw = await readBody(req);
    const body = raw === "" ? undefined : (JSON.parse(raw) as unknown);
    const isCall = (Array.isArray(body) ? body : [body]).some(
      (m) => (m as { method?: unknown } | undefined)?.method === "tools/call",
    );
    const scopes = [...(options.scopes ?? []), ...(isCall ? (options.callScopes ?? []) : [])];
    // The SDK's express middleware on node:http: the three response methods it uses.
    const r = Object.assign(res, {
      set: (k: string, v: string) => (res.setHeader(k, v), r),
      status: (code: number) => ((res.statusCode = code), r),
      json: (o: unknown) => {
        if (res.statusCode === 401 || res.statusCode === 403)
          rs.challenges.push({ status: res.statusCode, header: String(res.getHeader("www-authenticate") ?? "") });
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify(o));
      },
    });
    let passed = false;
    await gate(scopes)(req, r, () => (passed = true));
    if (!passed) return;
    // Stateless (no session ID), as the conformance suite's servers: every request stands alone.
    const transport = new StreamableHTTPServerTransport(
      {} as ConstructorParameters<typeof StreamableHTTPServerTransport>[0],
    );
    const s = server();
    res.on("close", () => {
      void transport.close();
      void s.close();
    });
    await s.connect(transport);
    await transport.handleRequest(req as IncomingMessage & { auth?: AuthInfo }, res, body);
  });
  return Object.assign(rs, { url: `${origin}/mcp` });
}

/** The PEM of a public key, for a registered client's key. */
export const spkiOf = (key: KeyObject): Promise<string> => exportSPKI(key);
