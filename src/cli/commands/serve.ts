/**
 * `aztp serve --store S --listen HOST:PORT`: the authority as an HTTPS service (docs/serve.md).
 * Runs until SIGTERM or SIGINT: the first stops accepting and lets requests in flight finish
 * (exit 0), a second exits at once (exit 1).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Option, type Command } from "commander";
import { AztpError, ErrorCodes } from "../../errors.js";
import { isLogLevel, jsonLogger, LOG_LEVELS } from "../../serve/log.js";
import { isScopeToken } from "../../oauth/access-token.js";
import { AUDIT_DEFAULTS } from "../../serve/open.js";
import { DEFAULTS, parseListen, parsePublicUrl, startServe } from "../../serve/server.js";
import { checkHostName } from "../../serve/tls.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";

/** --store, else the global --home / AZTP_HOME / ./.aztp. */
export function storeOf(store: string | undefined, ctx: CliContext): string {
  return store ?? ctx.home();
}

/** The key-encryption key: the file's bytes (a 32-byte key, raw or as 64 hex / base64 characters). */
export function readKekFile(path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  let raw: Buffer;
  try {
    raw = readFileSync(resolve(path));
  } catch (e) {
    throw new AztpError(
      ErrorCodes.FILE_UNUSABLE,
      `cannot read --kek-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const text = raw.toString("utf8").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) return Buffer.from(text, "base64");
  return raw;
}

function readText(option: string, path: string): string {
  try {
    return readFileSync(resolve(path), "utf8");
  } catch (e) {
    throw new AztpError(
      ErrorCodes.FILE_UNUSABLE,
      `cannot read ${option} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

function number(option: string, text: string, integer: boolean): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n)))
    throw usage(`${option} must be a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(text)}`);
  return n;
}

interface ServeCliOptions {
  store?: string;
  listen: string;
  kekFile?: string;
  trustDomain?: string;
  insecureHttp?: boolean;
  tls?: boolean;
  allowInsecureNonLoopback?: boolean;
  refreshHint: string;
  revocationWindow?: string;
  issueRate: string;
  issueBurst: string;
  maxBody: string;
  shutdownTimeout: string;
  svidTtl?: string;
  logLevel: string;
  publicUrl?: string;
  scope: string[];
  tokenRate: string;
  tokenBurst: string;
  tokenTtl?: string;
  tlsName: string[];
  tlsCert?: string;
  tlsKey?: string;
  loginIssuer?: string;
  loginClientId?: string;
  loginClientSecretFile?: string;
  loginPrivateKey?: string;
  loginRedirectUri?: string;
  loginScope?: string;
  auditCheckpointEvery: string;
  auditCheckpointInterval: string;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("serve")
    .description("serve the authority over HTTPS (API keys, feeds, audit); see docs/serve.md")
    .option("--store <location>", "a home folder or postgres:// URL (default: --home)")
    .option("--listen <host:port>", "address to listen on", `${DEFAULTS.host}:${DEFAULTS.port}`)
    .option("--kek-file <file>", "key-encryption key of the CA keys in a PostgreSQL store")
    .option(
      "--trust-domain <td>",
      "create the authority with this trust domain when the store holds none (replicas starting together agree on one)",
    )
    .option("--tls", "serve HTTPS with the service's own SVID (the default)")
    .option(
      "--tls-name <host>",
      "a DNS name or IP address the service is reached under, named in its SVID for clients that check host names (repeatable; default: the listen host)",
      collect,
      [],
    )
    .option(
      "--tls-cert <file>",
      "serve this certificate chain (PEM) from your own PKI instead of the SVID (not rotated)",
    )
    .option("--tls-key <file>", "the private key (PEM) of --tls-cert")
    .option("--insecure-http", "serve plain HTTP (loopback only, unless --allow-insecure-non-loopback)")
    .option(
      "--allow-insecure-non-loopback",
      "allow --insecure-http on a non-loopback address (behind a TLS-terminating proxy)",
    )
    .option(
      "--refresh-hint <seconds>",
      "spiffe_refresh_hint of the bundle, and the feeds' refresh interval",
      String(DEFAULTS.refreshHintSeconds),
    )
    .option(
      "--revocation-window <seconds>",
      "how long a signed revocation list is valid (renewed every hint): how long verifiers go on through an outage, and the most a replayed list can delay a revocation (default: 5 refresh hints)",
    )
    .option(
      "--issue-rate <per-second>",
      "issuance (and renewal) rate per API key, per replica",
      String(DEFAULTS.issueRate),
    )
    .option("--issue-burst <n>", "issuance burst per API key", String(DEFAULTS.issueBurst))
    .option("--max-body <bytes>", "largest request body", String(DEFAULTS.maxBodyBytes))
    .option(
      "--shutdown-timeout <ms>",
      "how long requests in flight may take after SIGTERM",
      String(DEFAULTS.shutdownTimeoutMs),
    )
    .addOption(
      new Option("--svid-ttl <seconds>", "lifetime of the service's TLS SVID (rotated at half-life)").hideHelp(),
    )
    .addOption(new Option("--log-level <level>", "lowest level logged").choices([...LOG_LEVELS]).default("info"))
    .option(
      "--public-url <url>",
      "the URL clients reach the service at (behind a TLS-terminating proxy): the OAuth issuer and the base of the endpoints its metadata names",
    )
    .option(
      "--scope <scope>",
      "an OAuth scope the authorization server offers (scopes_supported; repeatable): no token carries another, and a token request naming none gets those the client's policies allow",
      collect,
      [],
    )
    .option(
      "--token-rate <per-second>",
      "access tokens per client (SPIFFE ID) per second, per replica",
      String(DEFAULTS.tokenRate),
    )
    .option("--token-burst <n>", "access token burst per client", String(DEFAULTS.tokenBurst))
    .option("--token-ttl <seconds>", "lifetime of the access tokens minted (default 300, at most 3600)")
    .option(
      "--login-issuer <url>",
      "people at hosts (authorization code flow): the OpenID Provider they sign in at, a trusted person issuer of the trust domain (aztp issuer add)",
    )
    .option("--login-client-id <id>", "this server's client ID at the --login-issuer provider")
    .option("--login-client-secret-file <file>", "a file holding its client secret there (client_secret_basic)")
    .option("--login-private-key <file>", "or its private key (PEM) registered there (private_key_jwt)")
    .option(
      "--login-redirect-uri <url>",
      "the redirect URI registered at the provider (default <public URL>/oauth/callback)",
    )
    .option("--login-scope <scope>", 'the scope asked of the provider (default "openid email profile")')
    .option(
      "--audit-checkpoint-every <n>",
      "sign a checkpoint of the audit log once this many entries were added since the newest (by any replica)",
      String(AUDIT_DEFAULTS.checkpointEvery),
    )
    .option(
      "--audit-checkpoint-interval <seconds>",
      "... or once the newest checkpoint is this old and entries were added since (0: no time trigger)",
      String(AUDIT_DEFAULTS.checkpointIntervalSeconds),
    )
    .action(async (o: ServeCliOptions) => {
      if (o.tls && o.insecureHttp) throw usage("give --tls or --insecure-http, not both");
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw usage("give --tls-cert and --tls-key together");
      if (o.insecureHttp && (o.tlsCert !== undefined || o.tlsName.length > 0))
        throw usage("--tls-name, --tls-cert and --tls-key are for HTTPS, not --insecure-http");
      if (o.tlsCert !== undefined && o.tlsName.length > 0)
        throw usage("--tls-name names hosts in the service's own SVID; the certificate of --tls-cert names its own");
      const listen = (() => {
        try {
          return parseListen(o.listen);
        } catch (e) {
          throw usage((e as Error).message);
        }
      })();
      if (!isLogLevel(o.logLevel)) throw usage(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
      if (o.publicUrl !== undefined) {
        try {
          parsePublicUrl(o.publicUrl);
        } catch (e) {
          throw usage((e as Error).message);
        }
      }
      for (const n of o.tlsName) {
        try {
          checkHostName(n);
        } catch (e) {
          throw usage((e as Error).message);
        }
      }
      const badScope = o.scope.find((sc) => !isScopeToken(sc));
      if (badScope !== undefined) throw usage(`--scope ${JSON.stringify(badScope)} is not an OAuth scope token`);
      const loginGiven = [
        o.loginClientId,
        o.loginClientSecretFile,
        o.loginPrivateKey,
        o.loginRedirectUri,
        o.loginScope,
      ];
      if (o.loginIssuer === undefined && loginGiven.some((v) => v !== undefined))
        throw usage("the --login-* options need --login-issuer");
      if (o.loginIssuer !== undefined) {
        if (o.loginClientId === undefined) throw usage("--login-issuer needs --login-client-id");
        if ((o.loginClientSecretFile === undefined) === (o.loginPrivateKey === undefined))
          throw usage("--login-issuer needs one of --login-client-secret-file and --login-private-key");
      }
      const login =
        o.loginIssuer === undefined
          ? undefined
          : {
              issuer: o.loginIssuer,
              clientId: o.loginClientId as string,
              ...(o.loginClientSecretFile !== undefined
                ? { clientSecret: readText("--login-client-secret-file", o.loginClientSecretFile).trim() }
                : {}),
              ...(o.loginPrivateKey !== undefined
                ? { privateKey: readText("--login-private-key", o.loginPrivateKey) }
                : {}),
              ...(o.loginRedirectUri !== undefined ? { redirectUri: o.loginRedirectUri } : {}),
              ...(o.loginScope !== undefined ? { scope: o.loginScope } : {}),
            };
      const logger = jsonLogger(o.logLevel);
      const running = await startServe({
        ...(login !== undefined ? { login } : {}),
        store: storeOf(o.store, ctx),
        kek: readKekFile(o.kekFile),
        createTrustDomain: o.trustDomain,
        host: listen.host,
        port: listen.port,
        insecureHttp: o.insecureHttp === true,
        allowInsecureNonLoopback: o.allowInsecureNonLoopback === true,
        refreshHintSeconds: number("--refresh-hint", o.refreshHint, true),
        ...(o.revocationWindow !== undefined
          ? { revocationWindowSeconds: number("--revocation-window", o.revocationWindow, true) }
          : {}),
        issueRate: number("--issue-rate", o.issueRate, false),
        issueBurst: number("--issue-burst", o.issueBurst, true),
        maxBodyBytes: number("--max-body", o.maxBody, true),
        shutdownTimeoutMs: number("--shutdown-timeout", o.shutdownTimeout, true),
        ...(o.svidTtl !== undefined ? { svidTtlSeconds: number("--svid-ttl", o.svidTtl, true) } : {}),
        ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}),
        ...(o.tlsName.length > 0 ? { tlsNames: o.tlsName } : {}),
        ...(o.tlsCert !== undefined && o.tlsKey !== undefined
          ? { tlsCertificate: { certPem: readText("--tls-cert", o.tlsCert), keyPem: readText("--tls-key", o.tlsKey) } }
          : {}),
        ...(o.scope.length > 0 ? { scopesSupported: o.scope } : {}),
        tokenRate: number("--token-rate", o.tokenRate, false),
        tokenBurst: number("--token-burst", o.tokenBurst, true),
        ...(o.tokenTtl !== undefined ? { accessTokenTtlSeconds: number("--token-ttl", o.tokenTtl, true) } : {}),
        auditCheckpointEvery: number("--audit-checkpoint-every", o.auditCheckpointEvery, true),
        auditCheckpointIntervalSeconds:
          o.auditCheckpointInterval.trim() === "0"
            ? 0
            : number("--audit-checkpoint-interval", o.auditCheckpointInterval, false),
        logger,
      });
      if (!running.tls) process.stderr.write(`aztp serve: WARNING: serving PLAIN HTTP on ${running.url}: no TLS\n`);
      await new Promise<void>((done) => {
        let signalled = false;
        const onSignal = (signal: NodeJS.Signals): void => {
          if (signalled) {
            logger.log("warn", "second signal: exiting now", { signal });
            process.exit(1);
          }
          signalled = true;
          logger.log("info", "signal", { signal });
          running.stop().then(done, (e: unknown) => {
            logger.log("error", "stop failed", { error: (e as Error)?.message });
            done();
          });
        };
        process.on("SIGTERM", onSignal);
        process.on("SIGINT", onSignal);
      });
    });
}
