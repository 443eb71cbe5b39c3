/**
 * `aztp serve`: the HTTP(S) service over one authority (routes.ts), stateless but for the
 * issuance buckets and the TLS credential, so any number of replicas can run on one store.
 *
 * Every request ends in a JSON answer and one log line; nothing a client sends can crash the
 * process or leave a request hanging: bodies are bounded, headers and requests time out, a
 * malformed request line gets a 400, and an unexpected failure a 500 without detail.
 *
 * stop(): stops accepting, answers requests in flight (with `Connection: close`), waits for them
 * up to `shutdownTimeoutMs`, then cuts what is left and closes the stores.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { MAX_REVOCATION_LIST_VALIDITY_SECONDS } from "../authority/revocation-list.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { isLoopbackHost } from "../net/loopback.js";
import { DEFAULT_ACCESS_TOKEN_TTL_SECONDS, isScopeToken, MAX_ACCESS_TOKEN_TTL_SECONDS } from "../oauth/access-token.js";
import { invalidApiKey, type ApiKeyRecord } from "../store/api-keys.js";
import { errorBody, statusOf, toServeError } from "./errors.js";
import { readForm, readJsonObject, sendBytes, sendJson, type FormParams, type JsonObject } from "./http-io.js";
import { jsonLogger, type Logger, type LogLevel } from "./log.js";
import { buildWorkloadEntryRoutes } from "./workload-entry-routes.js";
import { buildPersonIssuerRoutes } from "./person-issuer-routes.js";
import { buildOAuthRoutes } from "./oauth-routes.js";
import { AuthorizationCodeFlow } from "./authorization-code.js";
import { clientRegistry } from "./client-registration.js";
import { PersonLogin, type PersonLoginOptions } from "./person-login.js";
import { ClientMetadataDocuments, type ClientMetadataDocumentsOptions } from "../oauth/client-metadata-document.js";
import { openServeBackend, type ServeBackend } from "./open.js";
import { TokenBuckets } from "./rate-limit.js";
import { REVOCATION_WINDOW_HINTS } from "./revocation-list-cache.js";
import { buildRoutes, retryAfterOf, takeOrRefuse, type Route } from "./routes.js";
import { buildTlogRoutes } from "./tlog-tiles.js";
import {
  checkHostName,
  defaultHostNames,
  issueServiceCredential,
  rotateAtHalfLife,
  SERVE_SVID_TTL_SECONDS,
  type ServiceCredential,
} from "./tls.js";

export interface ServeOptions {
  /** A home folder or a postgres:// URL (ignored when `backend` is given). */
  store?: string;
  /** An already opened backend (tests, embedding); closed by stop() all the same. */
  backend?: ServeBackend;
  kek?: Buffer | undefined;
  /** Create the authority with this trust domain when the store holds none (`--trust-domain`). */
  createTrustDomain?: string | undefined;
  host?: string;
  /** 0: any free port. */
  port?: number;
  /** Serve plain HTTP instead of HTTPS. */
  insecureHttp?: boolean;
  /** Allow insecureHttp on an address that is not loopback (behind a TLS-terminating proxy). */
  allowInsecureNonLoopback?: boolean;
  refreshHintSeconds?: number;
  /**
   * How long a signed revocation list is valid (nextUpdate - thisUpdate): how long verifiers go
   * on through an outage, and the most a list replayed to them can delay a revocation. At least
   * two refresh hints; default REVOCATION_WINDOW_HINTS hints.
   */
  revocationWindowSeconds?: number;
  issueRate?: number;
  issueBurst?: number;
  maxBodyBytes?: number;
  shutdownTimeoutMs?: number;
  svidTtlSeconds?: number;
  logLevel?: LogLevel;
  logger?: Logger;
  /**
   * The URL clients reach the service at, when it is not the listen address (behind a proxy that
   * terminates TLS, or a load balancer): the OAuth issuer identifier and the base of every
   * endpoint the metadata names. Default: the listen URL.
   */
  publicUrl?: string | undefined;
  /**
   * The OAuth metadata's scopes_supported: when given, no token carries another scope, and a
   * token request naming no scope gets those the client's policies allow.
   */
  scopesSupported?: readonly string[] | undefined;
  /** Access tokens per client (SPIFFE ID) per second, per replica. */
  tokenRate?: number;
  /** Token bucket size per client. */
  tokenBurst?: number;
  /** Lifetime of the access tokens the token endpoint mints (default 300 s, at most 3600). */
  accessTokenTtlSeconds?: number;
  /**
   * DNS names and IP addresses the service is reached under, named in its SVID (`--tls-name`) for
   * HTTPS clients that check host names. Default: the listen host, when it is one.
   */
  tlsNames?: readonly string[] | undefined;
  /**
   * A certificate (PEM chain) and its key from the organisation's own PKI (`--tls-cert`,
   * `--tls-key`), served instead of the SVID: aztp serve does not rotate it.
   */
  tlsCertificate?: { certPem: string; keyPem: string } | undefined;
  /**
   * People at hosts (Claude Desktop, VS Code, ... through OAuth): the authorization code flow,
   * the login delegated to this OpenID Provider (`--login-issuer`, a trusted person issuer of the
   * trust domain, with this server's client ID and its secret or key there). Without it the
   * authorization endpoint runs no flow (workloads only).
   */
  login?: PersonLoginOptions | undefined;
  /** How Client ID Metadata Documents are fetched (a fetch of your own; loopback http in tests). */
  clientMetadataDocuments?: ClientMetadataDocumentsOptions | undefined;
  /**
   * The audit log's signed checkpoints (with `store`; a `backend` was opened with its own): one
   * once this many entries were added since the newest, by any replica. Default 1000.
   */
  auditCheckpointEvery?: number | undefined;
  /** ... or once the newest is this old (seconds) and entries were added. Default 60; 0: no time trigger. */
  auditCheckpointIntervalSeconds?: number | undefined;
}

export interface RunningServe {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  readonly backend: ServeBackend;
  /** The SPIFFE ID of the service's TLS SVID (HTTPS only). */
  readonly serverId: string | undefined;
  /** The current TLS credential (HTTPS only). */
  credential(): ServiceCredential | undefined;
  /** PEM roots of the default trust domain: what an HTTPS client trusts. */
  bundlePem(): string;
  /** Graceful stop (idempotent). */
  stop(): Promise<void>;
  /** Requests being answered now. */
  readonly inFlight: number;
}

/** A token request is a few parameters and an assertion (an x5c chain of three P-256 certificates is ~3 KB). */
const MAX_FORM_BYTES = 64 * 1024;

export const DEFAULTS = {
  host: "127.0.0.1",
  port: 8443,
  refreshHintSeconds: 30,
  issueRate: 50,
  issueBurst: 100,
  tokenRate: 50,
  tokenBurst: 100,
  maxBodyBytes: 1024 * 1024,
  shutdownTimeoutMs: 10_000,
} as const;

/** "HOST:PORT", "[::1]:PORT" or ":PORT"/"PORT" (loopback). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (m === null || !Number.isInteger(port) || port > 65535) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `--listen must be HOST:PORT (such as 127.0.0.1:8443 or [::1]:8443), got ${JSON.stringify(text)}`,
    );
  }
  const host = m[1] ?? m[2] ?? "";
  return { host: host === "" ? DEFAULTS.host : host, port };
}

/**
 * `--public-url`: an http(s) URL with no query, fragment or credentials (RFC 8414 §2's issuer),
 * written without a trailing slash so the endpoints the metadata names are `<issuer>/oauth/...`.
 */
export function parsePublicUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `--public-url ${JSON.stringify(text)} is not a URL`);
  }
  if (
    (u.protocol !== "https:" && u.protocol !== "http:") ||
    u.search !== "" ||
    u.hash !== "" ||
    u.username !== "" ||
    u.password !== ""
  )
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `--public-url must be an https:// URL without query, fragment or credentials, got ${JSON.stringify(text)}`,
    );
  return u.href.replace(/\/+$/, "");
}

function scopeList(scopes: readonly string[]): string[] {
  const bad = scopes.find((sc) => !isScopeToken(sc));
  if (bad !== undefined)
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `--scope ${JSON.stringify(bad)} is not an OAuth scope token`);
  return [...new Set(scopes)];
}

/**
 * A certificate from the organisation's PKI must come with its own key, and be valid now: a
 * mismatch or an expired certificate would otherwise surface only as every client's handshake
 * failing.
 */
function checkOrganisationCertificate(certPem: string, keyPem: string): X509Certificate {
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `--tls-cert / --tls-key: ${(e as Error).message}`, { cause: e });
  }
  if (!cert.checkPrivateKey(key))
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "--tls-key is not the key of the certificate in --tls-cert");
  if (Date.parse(cert.validTo) <= Date.now())
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `the certificate in --tls-cert expired on ${cert.validTo}`);
  return cert;
}

function positive(name: string, v: number | undefined, fallback: number, integer = false): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `${name} must be a positive ${integer ? "integer" : "number"}, got ${String(v)}`,
    );
  }
  return v;
}

export async function startServe(options: ServeOptions): Promise<RunningServe> {
  const logger = options.logger ?? jsonLogger(options.logLevel ?? "info");
  const host = options.host ?? DEFAULTS.host;
  const port = options.port ?? DEFAULTS.port;
  const tls = options.insecureHttp !== true;
  if (!tls && !isLoopbackHost(host) && options.allowInsecureNonLoopback !== true) {
    throw new AztpError(
      ErrorCodes.SERVE_INSECURE_HTTP_NOT_ALLOWED,
      `refusing plain HTTP on ${host}, which is not a loopback address: API keys and SVIDs would cross the network in clear. ` +
        "Serve HTTPS (drop --insecure-http), listen on 127.0.0.1, or pass --allow-insecure-non-loopback behind a TLS-terminating proxy",
    );
  }
  const refreshHintSeconds = positive(
    "refreshHintSeconds",
    options.refreshHintSeconds,
    DEFAULTS.refreshHintSeconds,
    true,
  );
  const revocationWindowSeconds = positive(
    "revocationWindowSeconds",
    options.revocationWindowSeconds,
    Math.min(REVOCATION_WINDOW_HINTS * refreshHintSeconds, MAX_REVOCATION_LIST_VALIDITY_SECONDS),
    true,
  );
  if (
    revocationWindowSeconds < 2 * refreshHintSeconds ||
    revocationWindowSeconds > MAX_REVOCATION_LIST_VALIDITY_SECONDS
  ) {
    // The service renews a list every hint and clients fetch every hint: a window shorter than
    // two would expire lists between a renewal and the next fetch.
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `revocationWindowSeconds (--revocation-window) must be at least two refresh hints (2 × ${refreshHintSeconds} s) and at most ${MAX_REVOCATION_LIST_VALIDITY_SECONDS} s, got ${revocationWindowSeconds}`,
    );
  }
  const issueBuckets = new TokenBuckets({
    rate: positive("issueRate", options.issueRate, DEFAULTS.issueRate),
    burst: positive("issueBurst", options.issueBurst, DEFAULTS.issueBurst, true),
  });
  const maxBodyBytes = positive("maxBodyBytes", options.maxBodyBytes, DEFAULTS.maxBodyBytes, true);
  const publicUrl = options.publicUrl === undefined ? undefined : parsePublicUrl(options.publicUrl);
  const hostNames = [...new Set((options.tlsNames ?? defaultHostNames(host)).map(checkHostName))];
  if (!tls && (options.tlsNames !== undefined || options.tlsCertificate !== undefined))
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "--tls-name, --tls-cert and --tls-key are for HTTPS, not --insecure-http",
    );
  if (options.tlsCertificate !== undefined && options.tlsNames !== undefined)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      "--tls-name names hosts in the service's own SVID; a certificate given with --tls-cert names its own",
    );
  const organisationCert =
    tls && options.tlsCertificate !== undefined
      ? checkOrganisationCertificate(options.tlsCertificate.certPem, options.tlsCertificate.keyPem)
      : undefined;
  const scopesSupported = options.scopesSupported === undefined ? undefined : scopeList(options.scopesSupported);
  const shutdownTimeoutMs = positive("shutdownTimeoutMs", options.shutdownTimeoutMs, DEFAULTS.shutdownTimeoutMs, true);
  const svidTtlSeconds = positive("svidTtlSeconds", options.svidTtlSeconds, SERVE_SVID_TTL_SECONDS, true);

  let backend: ServeBackend;
  if (options.backend !== undefined) backend = options.backend;
  else {
    if (options.store === undefined)
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "--store is required: a home folder or a postgres:// URL");
    backend = await openServeBackend(options.store, {
      kek: options.kek,
      createTrustDomain: options.createTrustDomain,
      audit: {
        checkpointEvery: options.auditCheckpointEvery,
        checkpointIntervalSeconds: options.auditCheckpointIntervalSeconds,
        svidTtlSeconds,
        onWarning: (message) => logger.log("warn", "audit", { message }),
      },
    });
  }

  let stopping: Promise<void> | undefined;
  let inFlight = 0;
  const idle: Array<() => void> = [];

  const readiness = async (): Promise<{ ready: true } | { ready: false; why: string }> => {
    if (stopping !== undefined) return { ready: false, why: "shutting down" };
    try {
      await withTimeout(backend.ready(), 2000, "the store did not answer within 2 s");
      return { ready: true };
    } catch (e) {
      return { ready: false, why: `${(e as AztpError).code ?? "error"}: ${(e as Error).message}` };
    }
  };

  const routeSettings = {
    backend,
    refreshHintSeconds,
    revocationWindowSeconds,
    issueBuckets,
    maxBodyBytes,
    readiness,
  };
  const tokenBuckets = new TokenBuckets({
    rate: positive("tokenRate", options.tokenRate, DEFAULTS.tokenRate),
    burst: positive("tokenBurst", options.tokenBurst, DEFAULTS.tokenBurst, true),
  });
  const accessTokenTtlSeconds = positive(
    "accessTokenTtlSeconds",
    options.accessTokenTtlSeconds,
    DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
    true,
  );
  if (accessTokenTtlSeconds > MAX_ACCESS_TOKEN_TTL_SECONDS)
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `accessTokenTtlSeconds (--token-ttl) is at most ${MAX_ACCESS_TOKEN_TTL_SECONDS}, got ${accessTokenTtlSeconds}`,
    );
  const people =
    options.login === undefined
      ? undefined
      : peopleFlow(backend, options, {
          scopesSupported,
          accessTokenTtlSeconds,
          take: (clientId) => takeOrRefuse(tokenBuckets, clientId, `client ${clientId.slice(0, 100)} redeems codes`),
        });
  const routes = [
    ...buildRoutes(routeSettings),
    ...buildPersonIssuerRoutes(routeSettings),
    ...buildWorkloadEntryRoutes(routeSettings),
    ...buildTlogRoutes(backend.audit.published),
    ...buildOAuthRoutes(routeSettings, { scopesSupported, tokenBuckets, accessTokenTtlSeconds, people }),
  ];

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    inFlight++;
    const started = performance.now();
    const fields: { method: string; path: string; keyId?: string; clientId?: string; code?: string } = {
      method: String(req.method),
      path: "",
    };
    res.on("close", () => {
      const ms = Math.round((performance.now() - started) * 100) / 100;
      logger.log(res.statusCode >= 500 ? "error" : "info", "request", { ...fields, status: res.statusCode, ms });
      if (--inFlight === 0) for (const f of idle.splice(0)) f();
    });
    if (stopping !== undefined) res.setHeader("connection", "close");
    handle(req, res, fields).catch((e: unknown) => {
      // handle() answers its own errors; this is the last line, for a failure while answering.
      logger.log("error", "request handler failed", { error: (e as Error)?.stack ?? String(e) });
      if (!res.headersSent) sendJson(res, 500, errorBody(toServeError(e)));
      else res.destroy();
    });
  };

  const handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    fields: { path: string; keyId?: string; clientId?: string; code?: string },
  ): Promise<void> => {
    let route: Route | undefined;
    try {
      let url: URL;
      try {
        url = new URL(req.url ?? "/", "http://serve.invalid");
      } catch {
        throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "the request target is not a valid path");
      }
      fields.path = url.pathname.slice(0, 512);
      const matched = match(routes, String(req.method), url.pathname);
      const { params, allowed } = matched;
      route = matched.route;
      if (route === undefined) {
        if (allowed.length > 0) {
          const e = new AztpError(
            ErrorCodes.SERVE_METHOD_NOT_ALLOWED,
            `${String(req.method).slice(0, 16)} is not allowed on ${fields.path}: use ${allowed.join(", ")}`,
          );
          fields.code = e.code;
          sendJson(res, 405, errorBody(e), { allow: allowed.join(", ") });
          return;
        }
        throw new AztpError(ErrorCodes.SERVE_ROUTE_NOT_FOUND, `no route ${fields.path}`);
      }
      let refreshed: Promise<void> | undefined;
      const fresh = (): Promise<void> => (refreshed ??= Promise.resolve(backend.authority.refresh?.()));
      let key: ApiKeyRecord = { keyId: "", name: "", scope: {}, createdAt: "" };
      if (route.auth === true || (route.auth === "optional" && req.headers.authorization !== undefined)) {
        key = await authenticate(backend, req);
        fields.keyId = key.keyId;
      }
      let body: Promise<JsonObject> | undefined;
      let form: Promise<FormParams> | undefined;
      const answer = await route.handle({
        req,
        res,
        url,
        params,
        key,
        body: () => (body ??= readJsonObject(req, maxBodyBytes)),
        form: () => (form ??= readForm(req, Math.min(maxBodyBytes, MAX_FORM_BYTES))),
        fresh,
        authenticatedClient: (id) => (fields.clientId = id),
      });
      if (answer.raw !== undefined) sendBytes(res, answer.status, answer.raw, answer.headers ?? {});
      else sendJson(res, answer.status, answer.body, answer.headers);
    } catch (e) {
      const err = toServeError(e);
      fields.code = err.code;
      const status = statusOf(err.code);
      if (status >= 500 && err.code === ErrorCodes.SERVE_INTERNAL_FAILED) {
        logger.log("error", "internal failure", {
          path: fields.path,
          error: (err.cause as Error)?.stack ?? String(err.cause),
        });
      }
      const own = route?.errorAnswer?.(err);
      const headers: Record<string, string> = { ...own?.headers };
      const retry = retryAfterOf(err);
      if (retry !== undefined) headers["retry-after"] = String(retry);
      if (status === 413) headers.connection = "close";
      if (status === 503) headers["retry-after"] = "1";
      if (own !== undefined) sendJson(res, own.status, own.body, headers);
      else sendJson(res, status, errorBody(err), headers);
    }
  };

  let credential: ServiceCredential | undefined;
  let rotation: { stop(): void } | undefined;
  let server: Server | HttpsServer;
  try {
    if (tls && options.tlsCertificate !== undefined) {
      const { certPem, keyPem } = options.tlsCertificate;
      server = createHttpsServer({ key: keyPem, cert: certPem, minVersion: "TLSv1.2" }, handler);
    } else if (tls) {
      credential = await issueServiceCredential(backend, svidTtlSeconds, hostNames);
      const https = createHttpsServer(
        { key: credential.keyPem, cert: credential.chainPem, minVersion: "TLSv1.2" },
        handler,
      );
      rotation = rotateAtHalfLife(
        https,
        backend,
        credential,
        svidTtlSeconds,
        logger,
        (c) => (credential = c),
        hostNames,
      );
      server = https;
    } else {
      server = createHttpServer(handler);
    }
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      // A malformed request (or a TLS handshake that failed): a 400 if the socket still takes one.
      if (socket.writable && err.code !== "ECONNRESET") {
        const text = JSON.stringify(errorBody(new AztpError(ErrorCodes.ARGUMENT_INVALID, "malformed HTTP request")));
        socket.end(
          `HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
        );
      } else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e) => logger.log("error", "server error", { error: e.message }));
  } catch (e) {
    rotation?.stop();
    await backend.close().catch(() => undefined);
    throw e instanceof AztpError
      ? e
      : new AztpError(ErrorCodes.ARGUMENT_INVALID, `cannot listen on ${host}:${port}: ${(e as Error).message}`, {
          cause: e,
        });
  }

  const address = server.address();
  const boundPort = typeof address === "object" && address !== null ? address.port : port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  const url = `${tls ? "https" : "http"}://${urlHost}:${boundPort}`;
  // Standard clients check the host name: an explicit --tls-name is the name they reach it under.
  const named = options.tlsNames?.[0];
  const issuer =
    publicUrl ??
    (tls && named !== undefined ? `https://${named.includes(":") ? `[${named}]` : named}:${boundPort}` : url);
  backend.authority.setOAuthIssuer(issuer);
  logger.log(tls ? "info" : "warn", "started", {
    url,
    ...(publicUrl !== undefined ? { publicUrl } : {}),
    store: backend.location,
    tls,
    ...(tls
      ? organisationCert !== undefined
        ? {
            certificate: "given (--tls-cert): not rotated by aztp serve",
            subject: organisationCert.subject,
            certNotAfter: new Date(organisationCert.validTo).toISOString(),
          }
        : { serverId: credential?.id, svidNotAfter: credential?.notAfter.toISOString(), tlsNames: hostNames }
      : { warning: "PLAIN HTTP: no TLS; API keys and SVIDs travel in clear" }),
    defaultTrustDomain: backend.authority.defaultTrustDomain,
    issueRate: issueBuckets.rate,
    issueBurst: issueBuckets.burst,
    pid: process.pid,
  });
  const signing = backend.auditSigning;
  if (signing !== null)
    logger.log("info", "audit log signed", {
      signer: signing.signer,
      origin: signing.origin,
      checkpointEvery: signing.checkpointEvery,
      checkpointIntervalSeconds: signing.checkpointIntervalSeconds,
    });
  else
    logger.log("warn", "audit log NOT signed", {
      warning: "the audit store was given without a signer: a cut of its newest entries cannot be detected",
    });

  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      logger.log("info", "stopping", { inFlight });
      rotation?.stop();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) {
        const drained = new Promise<void>((resolve) => idle.push(resolve));
        const timedOut = await Promise.race([drained.then(() => false), sleep(shutdownTimeoutMs).then(() => true)]);
        if (timedOut) logger.log("warn", "shutdown timeout: cutting requests still in flight", { inFlight });
      }
      server.closeAllConnections();
      await closed;
      await backend
        .close()
        .catch((e: unknown) => logger.log("error", "closing the stores failed", { error: (e as Error)?.message }));
      await backend.authority.close?.().catch(() => undefined);
      logger.log("info", "stopped", {});
    })());

  return {
    url,
    host,
    port: boundPort,
    tls,
    backend,
    serverId: credential?.id,
    credential: () => credential,
    bundlePem: () => backend.authority.bundle().toPem(),
    stop,
    get inFlight() {
      return inFlight;
    },
  };
}

/** The authorization code flow for people, on this backend's authority (see authorization-code.ts). */
function peopleFlow(
  backend: ServeBackend,
  options: ServeOptions,
  o: { scopesSupported: readonly string[] | undefined; accessTokenTtlSeconds: number; take(clientId: string): void },
): { flow: AuthorizationCodeFlow; clients: ReturnType<typeof clientRegistry> } {
  const a = backend.authority;
  const login = new PersonLogin(options.login as PersonLoginOptions, () => a.oauthIssuer);
  const trustDomain = (): string => options.login?.trustDomain ?? a.defaultTrustDomain;
  const signingKey = (td: string): { key: KeyObject; kid: string } => a.exchangeDeps().signingKey(td);
  const clients = clientRegistry({
    issuer: () => a.oauthIssuer,
    trustDomain,
    bundles: a,
    signingKey,
    documents: new ClientMetadataDocuments(options.clientMetadataDocuments ?? {}),
  });
  const flow = new AuthorizationCodeFlow({
    login,
    clients,
    issuer: () => a.oauthIssuer,
    trustDomain,
    personIssuers: (td) => a.exchangeDeps().issuers(td),
    signingKey,
    scopesSupported: o.scopesSupported,
    accessTokenTtlSeconds: o.accessTokenTtlSeconds,
    take: o.take,
  });
  return { flow, clients };
}

async function authenticate(backend: ServeBackend, req: IncomingMessage): Promise<ApiKeyRecord> {
  const header = req.headers.authorization;
  const m = typeof header === "string" ? /^Bearer +(\S+) *$/i.exec(header) : null;
  if (m === null) throw invalidApiKey();
  return backend.apiKeys.authenticate(m[1] as string);
}

function match(
  routes: readonly Route[],
  method: string,
  path: string,
): { route?: Route; params: string[]; allowed: string[] } {
  const allowed: string[] = [];
  for (const r of routes) {
    const m = r.path.exec(path);
    if (m === null) continue;
    if (r.method === method) return { route: r, params: m.slice(1).map((p) => p ?? ""), allowed };
    allowed.push(r.method);
  }
  return { params: [], allowed };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new AztpError(ErrorCodes.SERVE_UNAVAILABLE, message)), ms);
      timer.unref();
    }),
  ]);
}
