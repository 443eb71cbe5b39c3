/**
 * `aztp mcp proxy`: a secured MCP server in front of an unmodified upstream, and `aztp mcp
 * bridge`: an unmodified host's signing stand-in in front of a secured server. Each runs until
 * told to stop or until its upstream fails. They share their options (the upstream command,
 * the listener, the mode and the audit log) and how they run: the helpers below.
 */
import { dirname, resolve } from "node:path";
import { Option, type Command } from "commander";
import { parseArgsStringToArgv } from "string-argv";
import { AuditLog } from "../../audit/log.js";
import { Aztp } from "../../client/aztp.js";
import type { AuditOption } from "../../client/home-audit.js";
import type { AztpError } from "../../errors.js";
import { svidCheckpointSigner } from "../../invocation/checkpoint.js";
import { startMcpBridge } from "../../mcp/bridge.js";
import { defaultAllowedHosts } from "../../mcp/http.js";
import { startMcpProxy } from "../../mcp/proxy.js";
import type { UpstreamOAuthOptions } from "../../mcp/oauth-client.js";
import type { Upstream } from "../../mcp/upstream.js";
import { parsePolicy } from "../../policy/policy.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { outputDir, readInput } from "../files.js";
import { selfCommand } from "../self.js";

/** The options of the mode and the audit log, as both commands take them. */
interface AuditFlags {
  mode: "enforce" | "audit";
  auditLog?: string;
  audit: boolean;
  auditDurability: "write" | "fsync";
}

/** The listener's options, as both commands take them. */
interface ListenFlags {
  listen: string;
  allowedHost?: string[];
}

function addListenOptions(command: Command, who: string): Command {
  return command
    .option("--listen <where>", "stdio, or http://127.0.0.1:PORT", "stdio")
    .option(
      "--allowed-host <name...>",
      `with --listen http: also accept these host names in Host and Origin (default: loopback names and the --listen host)${who}`,
    );
}

/** Where the wrapper's identity comes from, as both commands take it. */
interface IdentityFlags {
  workloadApi?: string;
}

function addIdentityOption(command: Command): Command {
  return command.option(
    "--workload-api <address>",
    "take the identity from a SPIFFE Workload API endpoint (unix:///path: SPIRE's agent, or aztp workload-api) instead of the home's authority; --name selects the SVID by hint or SPIFFE ID",
  );
}

/** The client the wrapper's identity comes from: the home's authority, or a Workload API. */
function clientOf(o: IdentityFlags, ctx: CliContext): Aztp {
  return new Aztp({ home: ctx.home(), ...(o.workloadApi !== undefined ? { workloadApi: o.workloadApi } : {}) });
}

function addAuditOptions(command: Command): Command {
  return command
    .addOption(new Option("--mode <mode>").choices(["enforce", "audit"]).default("enforce"))
    .option("--audit-log <file>", "append-only audit log (JSON Lines); default <home>/audit/<name>.jsonl")
    .option("--no-audit", "keep no audit log (said at start; calls are then not recorded)")
    .addOption(
      new Option(
        "--audit-durability <mode>",
        "write: answer once the entry is written to the file (survives a killed process); fsync: once it is on disk (survives a power loss)",
      )
        .choices(["write", "fsync"])
        .default("write"),
    );
}

/** The host names accepted in Host and Origin, or undefined for the default; usage errors for bad values. */
function allowedHosts(o: ListenFlags): string[] | undefined {
  if (o.listen !== "stdio" && !/^http:\/\/[^/]+(?::\d+)?(?:\/.*)?$/.test(o.listen))
    throw usage("--listen must be stdio or http://HOST:PORT");
  if (o.allowedHost && o.listen === "stdio") throw usage("--allowed-host applies to --listen http://HOST:PORT only");
  for (const name of o.allowedHost ?? []) {
    // A bare host name as it appears in Host (IPv6 in brackets), without scheme, port or path.
    let parsed: string | undefined;
    try {
      parsed = new URL(`http://${name}`).hostname;
    } catch {
      parsed = undefined;
    }
    if (parsed !== name.toLowerCase())
      throw usage(`--allowed-host takes a host name such as tools.example.com or [::1], got ${JSON.stringify(name)}`);
  }
  return o.allowedHost ? [...defaultAllowedHosts(o.listen), ...o.allowedHost.map((h) => h.toLowerCase())] : undefined;
}

/** A spawned upstream from its command line and `KEY=VALUE` environment, or a URL one. */
function upstreamOf(
  flags: { command: string; url: string; env: string },
  command: string | undefined,
  url: string | undefined,
  envList: string[] | undefined,
): Upstream {
  if (!command === !url) throw usage(`give exactly one of ${flags.command} and ${flags.url}`);
  const env: Record<string, string> = {};
  for (const kv of envList ?? []) {
    const eq = kv.indexOf("=");
    if (eq < 1) throw usage(`${flags.env} takes KEY=VALUE, got ${JSON.stringify(kv)}`);
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (url !== undefined) {
    if (envList !== undefined) throw usage(`${flags.env} applies to ${flags.command} only`);
    return { url };
  }
  const [program, ...args] = parseArgsStringToArgv(command as string);
  if (!program) throw usage(`${flags.command} is empty`);
  return { command: program, args, env };
}

/** The `audit` option the library takes: none, a log of its own (checkpoints signed by `name`), or how to open the default one. */
async function auditOption(o: AuditFlags, client: Aztp, name: string): Promise<AuditOption> {
  const durability = { durability: o.auditDurability } as const;
  if (!o.audit) return false;
  if (!o.auditLog) return durability;
  // The log's folder is made here, with a mkdir that cannot spin (make-dirs.ts), so that an
  // unusable --audit-log fails at once naming it: the log's own recursive mkdir never settles
  // on a path under /proc. The identity is issued first so checkpoints can be signed by it.
  outputDir(dirname(resolve(o.auditLog)));
  const identity = (await client.secureConnect({}, name)).identity;
  return AuditLog.open(resolve(o.auditLog), { ...durability, signer: svidCheckpointSigner(identity) });
}

/** What `run` needs of a started proxy or bridge. */
interface Running {
  readonly identity: { aztpId: string };
  readonly url: URL | undefined;
  readonly audit: { path: string; close?: () => Promise<void> } | undefined;
  readonly closed: Promise<AztpError | undefined>;
  close(): Promise<void>;
}

/**
 * Runs a started proxy or bridge until it stops: says what it is on stderr (stdout belongs to
 * MCP in stdio mode), stops on SIGINT and SIGTERM (a stop asked for exits 0), and throws the
 * failure that ended it (exit 1).
 */
async function run(what: string, o: AuditFlags, client: Aztp, started: Running, detail: string): Promise<void> {
  // Nothing may keep the process once told to stop: a second signal has its default effect (the
  // listener is gone), and a stop still running after 10 s (an upstream that ignores both its
  // closed stdin and SIGTERM is SIGKILLed after 4 s) ends the process anyway.
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`${what}: ${signal}, stopping\n`);
    setTimeout(() => {
      process.stderr.write(`${what}: not stopped within 10 s of the signal; exiting\n`);
      process.exit(1);
    }, 10_000).unref();
    void started.close();
  };
  // Listening before the start is announced: whoever waits for the announcement to stop us must
  // find the stop handled, not the default of a signal that kills.
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.stderr.write(
    `${what} ${started.identity.aztpId} (${o.mode}) ${started.url ? `listening on ${started.url.href}` : "on stdio"}\n`,
  );
  if (detail) process.stderr.write(`${what}: ${detail}\n`);
  // Said at start, so nobody runs it believing its calls are on record when they are not.
  process.stderr.write(
    started.audit
      ? `${what}: audit log ${started.audit.path}\n${what}: each answer waits for its audit entry (--audit-durability ${o.auditDurability})\n`
      : `${what}: no audit log (--no-audit): calls are not recorded\n`,
  );
  const failure = await started.closed;
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  await started.audit?.close?.().catch(() => undefined);
  await client.close();
  if (failure) throw failure;
}

/** The bridge's flags about the server it forwards to: what it proves, and how to authorize with it. */
interface BridgeServerFlags {
  serverUnsecured?: boolean;
  oauth: boolean;
  oauthAssertion?: "private-key-jwt" | "jwt-svid";
  oauthClientId?: string;
  oauthPrivateKey?: string;
  oauthClientSecretFile?: string;
  oauthIssuer?: string;
  oauthScope?: string;
  oauthFlow?: "client-credentials" | "authorization-code";
  oauthClientMetadataUrl?: string;
  oauthRedirectPort?: string;
  oauthOpenBrowser?: boolean;
  oauthAuthorizeHeadless?: boolean;
}

/** The bridge's OAuth flags as they are given, checked as usage errors (nothing read yet). */
function checkOAuthFlags(o: BridgeServerFlags & { url?: string; expectedServer?: string }): void {
  if (o.serverUnsecured && o.expectedServer !== undefined)
    throw usage("--server-unsecured and --expected-server exclude each other: an unsecured server proves no identity");
  const given = [
    o.oauthAssertion !== undefined && "--oauth-assertion",
    o.oauthClientId !== undefined && "--oauth-client-id",
    o.oauthPrivateKey !== undefined && "--oauth-private-key",
    o.oauthClientSecretFile !== undefined && "--oauth-client-secret-file",
    o.oauthIssuer !== undefined && "--oauth-issuer",
    o.oauthScope !== undefined && "--oauth-scope",
    o.oauthFlow !== undefined && "--oauth-flow",
    o.oauthClientMetadataUrl !== undefined && "--oauth-client-metadata-url",
    o.oauthRedirectPort !== undefined && "--oauth-redirect-port",
    o.oauthOpenBrowser === true && "--oauth-open-browser",
    o.oauthAuthorizeHeadless === true && "--oauth-authorize-headless",
  ].filter((f): f is string => f !== false);
  if (given.length === 0) return;
  const person = o.oauthFlow === "authorization-code";
  const personal = [
    o.oauthClientMetadataUrl !== undefined && "--oauth-client-metadata-url",
    o.oauthRedirectPort !== undefined && "--oauth-redirect-port",
    o.oauthOpenBrowser === true && "--oauth-open-browser",
    o.oauthAuthorizeHeadless === true && "--oauth-authorize-headless",
  ].filter((f): f is string => f !== false);
  if (!person && personal.length > 0)
    throw usage(`${personal.join(", ")}: for a person's sign-in, with --oauth-flow authorization-code`);
  if (person && o.expectedServer !== undefined)
    throw usage(
      "--expected-server does not apply with --oauth-flow authorization-code: a person's calls go unsigned, by their access token, and the bridge checks no identity of the server",
    );
  if (o.oauthOpenBrowser === true && o.oauthAuthorizeHeadless === true)
    throw usage("--oauth-open-browser and --oauth-authorize-headless exclude each other");
  if (o.oauthRedirectPort !== undefined && !/^\d{1,5}$/.test(o.oauthRedirectPort))
    throw usage("--oauth-redirect-port takes a port number (0: any)");
  if (o.url === undefined) throw usage(`${given.join(", ")}: OAuth applies to a server reached with --url`);
  if (!o.oauth) throw usage(`--no-oauth excludes ${given.join(", ")}`);
  for (const [flag, file] of [
    ["--oauth-private-key", o.oauthPrivateKey],
    ["--oauth-client-secret-file", o.oauthClientSecretFile],
  ] as const)
    if (file === "-") throw usage(`${flag} takes a file: the bridge's stdin is the host's MCP connection`);
  if (o.oauthClientId === undefined) {
    if (o.oauthPrivateKey !== undefined || o.oauthClientSecretFile !== undefined)
      throw usage("--oauth-private-key and --oauth-client-secret-file are credentials of an --oauth-client-id");
    if (person && o.oauthAssertion !== undefined)
      throw usage(
        "--oauth-assertion is how the bridge authenticates as itself; with --oauth-flow authorization-code it is not used",
      );
    return;
  }
  if (o.oauthAssertion !== undefined)
    throw usage("--oauth-assertion chooses how the bridge's SVID authenticates; with --oauth-client-id it is not used");
  if (o.oauthPrivateKey !== undefined && o.oauthClientSecretFile !== undefined)
    throw usage("--oauth-client-id takes one of --oauth-private-key FILE and --oauth-client-secret-file FILE");
  // A person's client may be public (no credential); the bridge as itself needs one.
  if (!person && o.oauthPrivateKey === undefined && o.oauthClientSecretFile === undefined)
    throw usage("--oauth-client-id takes exactly one of --oauth-private-key FILE and --oauth-client-secret-file FILE");
  if (o.oauthClientSecretFile !== undefined && o.oauthIssuer === undefined)
    throw usage(
      "--oauth-client-secret-file needs --oauth-issuer URL: a secret is sent only to the authorization server it belongs to",
    );
}

/** The library's `oauth` option from the flags: the files read now (their contents are never printed). */
async function oauthOption(o: BridgeServerFlags): Promise<UpstreamOAuthOptions | false | undefined> {
  if (!o.oauth) return false;
  if (
    o.oauthAssertion === undefined &&
    o.oauthClientId === undefined &&
    o.oauthIssuer === undefined &&
    o.oauthScope === undefined &&
    o.oauthFlow === undefined
  )
    return undefined;
  return {
    ...(o.oauthAssertion !== undefined ? { assertion: o.oauthAssertion } : {}),
    ...(o.oauthClientId !== undefined ? { clientId: o.oauthClientId } : {}),
    ...(o.oauthPrivateKey !== undefined ? { privateKey: await readInput(o.oauthPrivateKey) } : {}),
    // A secret file ends with a newline more often than not; the secret itself has none.
    ...(o.oauthClientSecretFile !== undefined
      ? { clientSecret: (await readInput(o.oauthClientSecretFile)).replace(/\r?\n$/, "") }
      : {}),
    ...(o.oauthIssuer !== undefined ? { issuer: o.oauthIssuer } : {}),
    ...(o.oauthScope !== undefined ? { scope: o.oauthScope } : {}),
    ...(o.oauthFlow !== undefined ? { flow: o.oauthFlow } : {}),
    ...(o.oauthClientMetadataUrl !== undefined ? { clientMetadataUrl: o.oauthClientMetadataUrl } : {}),
    ...(o.oauthRedirectPort !== undefined ? { redirectPort: Number(o.oauthRedirectPort) } : {}),
    ...(o.oauthOpenBrowser === true ? { authorizeVia: "open" as const } : {}),
    ...(o.oauthAuthorizeHeadless === true ? { authorizeVia: "headless" as const } : {}),
  };
}

/** The hosts `--print-config` writes for, and the shape of their configuration files. */
const HOSTS = ["claude", "vscode", "cursor"] as const;
type Host = (typeof HOSTS)[number];

/**
 * The snippet for `host`'s configuration file that starts this bridge: Claude Desktop's
 * `claude_desktop_config.json` and Cursor's `~/.cursor/mcp.json` under `mcpServers`, VS Code's
 * `.vscode/mcp.json` under `servers` with `type: "stdio"`.
 */
function hostConfig(host: Host, name: string, args: string[]): unknown {
  const self = selfCommand();
  const server = { command: self.command, args: [...self.args, ...args] };
  if (host === "vscode") return { servers: { [name]: { type: "stdio", ...server } } };
  return { mcpServers: { [name]: server } };
}

export function register(program: Command, ctx: CliContext): void {
  const mcp = program.command("mcp").description("secure MCP servers, and let unmodified hosts call them");
  const proxy = mcp
    .command("proxy")
    .description("a secured MCP server in front of an unmodified upstream MCP server")
    .requiredOption("--name <name>", "the proxy's identity name")
    .option(
      "--upstream-command <cmd>",
      'spawn the upstream over stdio, e.g. "npx -y @modelcontextprotocol/server-filesystem /data"',
    )
    .option("--upstream-url <url>", "reach the upstream over Streamable HTTP")
    .option("--upstream-env <KEY=VALUE...>", "environment for a spawned upstream (it gets nothing else of ours)");
  addListenOptions(proxy, "");
  proxy.option("--policy <file>", "AZTP policy document (JSON) deciding who may call which tool");
  addAuditOptions(proxy);
  addIdentityOption(proxy);
  proxy
    .option("--filter-tools", "show each authenticated caller only the tools its policy allows")
    .option(
      "--authorization-server [url...]",
      "with --listen http: accept OAuth bearer access tokens from this authorization server (issuer URL; repeatable); alone, this home's authority's own issuer",
    )
    .option(
      "--resource <url>",
      "the resource identifier tokens must name as aud (RFC 8707); default the --listen endpoint URL",
    )
    .option("--scope <scope...>", "a scope every bearer token must carry (repeatable)")
    .option(
      "--open-methods <list>",
      'comma-separated JSON-RPC methods a client with no credential may call (default "initialize,server/discover,tools/list"; "" for none)',
    );
  proxy.action(
    async (
      o: AuditFlags &
        ListenFlags &
        IdentityFlags & {
          name: string;
          upstreamCommand?: string;
          upstreamUrl?: string;
          upstreamEnv?: string[];
          policy?: string;
          filterTools?: boolean;
          authorizationServer?: string[] | true;
          resource?: string;
          scope?: string[];
          openMethods?: string;
        },
    ) => {
      const upstream = upstreamOf(
        { command: "--upstream-command", url: "--upstream-url", env: "--upstream-env" },
        o.upstreamCommand,
        o.upstreamUrl,
        o.upstreamEnv,
      );
      // Checked here, before anything starts, as usage errors.
      const hosts = allowedHosts(o);
      if (o.auditLog !== undefined && !o.audit) throw usage("--audit-log and --no-audit exclude each other");
      const bearer = o.authorizationServer !== undefined;
      if (!bearer && (o.resource !== undefined || o.scope !== undefined || o.openMethods !== undefined))
        throw usage("--resource, --scope and --open-methods go with --authorization-server");
      if (bearer && o.listen === "stdio")
        throw usage("--authorization-server applies to --listen http://HOST:PORT only (over stdio, sign the calls)");
      const openMethods =
        o.openMethods === undefined
          ? undefined
          : o.openMethods
              .split(",")
              .map((m) => m.trim())
              .filter((m) => m.length > 0);
      const policies = o.policy ? [parsePolicy(await readInput(o.policy))] : undefined;
      const client = clientOf(o, ctx);
      const started = await startMcpProxy({
        client,
        name: o.name,
        upstream,
        listen: o.listen,
        mode: o.mode,
        ...(policies ? { policy: policies } : {}),
        audit: await auditOption(o, client, o.name),
        ...(o.filterTools ? { filterToolsByPolicy: true } : {}),
        ...(hosts ? { allowedHosts: hosts } : {}),
        ...(o.authorizationServer !== undefined ? { authorizationServers: o.authorizationServer } : {}),
        ...(o.resource !== undefined ? { resource: o.resource } : {}),
        ...(o.scope !== undefined ? { scopes: o.scope } : {}),
        ...(openMethods !== undefined ? { openMethods } : {}),
      });
      // An upstream that exits while the client is still there (at start: a missing folder, a
      // bad command) ends the proxy with its failure: said, with what it printed, and exit 1.
      const oauth = started.protectedResource;
      await run(
        "aztp mcp proxy",
        o,
        client,
        started,
        oauth === undefined
          ? ""
          : `OAuth resource ${oauth.resource}, bearer tokens from ${oauth.authorizationServers.join(", ")} (metadata ${oauth.metadataUrl})`,
      );
    },
  );

  const bridge = mcp
    .command("bridge")
    .description(
      "an unmodified MCP host's signing stand-in: a stdio MCP server that forwards to a secured MCP server, signing each call as NAME",
    )
    .requiredOption("--name <name>", "the bridge's identity name: the caller the server sees")
    .option("--url <url>", "the secured MCP server, over Streamable HTTP")
    .option("--command <cmd>", 'spawn the secured MCP server over stdio, e.g. "node /srv/tools/server.js"')
    .option("--env <KEY=VALUE...>", "environment for --command (it gets nothing else of ours)")
    .option(
      "--expected-server <id>",
      "the server's ID; default: the first server proven, pinned in <home>/bridge/<name>.json",
    );
  addListenOptions(bridge, "; --listen must be a loopback address");
  addAuditOptions(bridge);
  addIdentityOption(bridge);
  bridge
    .option(
      "--server-unsecured",
      "the server is a third-party MCP server that proves no identity and signs no receipts: send its calls unsigned and record them with the receipt absent (said at start)",
    )
    .option("--no-oauth", "never authorize with OAuth, even when the --url server asks for it")
    .addOption(
      new Option(
        "--oauth-assertion <kind>",
        "when the server asks for OAuth, authenticate to its authorization server with a private_key_jwt signed by the SVID key (default) or the JWT-SVID",
      ).choices(["private-key-jwt", "jwt-svid"]),
    )
    .option(
      "--oauth-client-id <id>",
      "a client ID the authorization server registered for the bridge, instead of its SPIFFE ID (with --oauth-private-key or --oauth-client-secret-file)",
    )
    .option(
      "--oauth-private-key <file>",
      "with --oauth-client-id: the private key registered for it (PEM), for private_key_jwt",
    )
    .option(
      "--oauth-client-secret-file <file>",
      "with --oauth-client-id: a file holding its client secret (never give a secret on the command line)",
    )
    .option(
      "--oauth-issuer <url>",
      "the authorization server the credentials are for: no other is sent them (required with --oauth-client-secret-file)",
    )
    .option(
      "--oauth-scope <scope>",
      "the scope to ask for when neither the server's challenge nor its metadata names one",
    )
    .addOption(
      new Option(
        "--oauth-flow <flow>",
        "client-credentials (default): the bridge as itself; authorization-code: for the person who signs in (PKCE; the authorization URL is printed on stderr, the redirect comes back to http://127.0.0.1:<port>/callback)",
      ).choices(["client-credentials", "authorization-code"]),
    )
    .option(
      "--oauth-client-metadata-url <url>",
      "authorization code: the https URL of the bridge's Client ID Metadata Document, used as its client_id where the authorization server takes them (else it registers dynamically)",
    )
    .option(
      "--oauth-redirect-port <port>",
      "authorization code: the loopback port of the redirect URI (default: any free one)",
    )
    .option("--oauth-open-browser", "authorization code: also open the authorization URL with the platform's opener")
    .option(
      "--oauth-authorize-headless",
      "tests and CI only: the bridge follows the authorization URL itself (no browser); works only with an authorization server that asks nothing of a person",
    )
    .addOption(
      new Option(
        "--print-config <host>",
        "print the snippet for that host's configuration file that starts this bridge with these options, and exit",
      ).choices([...HOSTS]),
    )
    .action(
      async (
        o: AuditFlags &
          ListenFlags &
          IdentityFlags &
          BridgeServerFlags & {
            name: string;
            url?: string;
            command?: string;
            env?: string[];
            expectedServer?: string;
            printConfig?: Host;
          },
      ) => {
        const upstream = upstreamOf({ command: "--command", url: "--url", env: "--env" }, o.command, o.url, o.env);
        const hosts = allowedHosts(o);
        if (o.auditLog !== undefined && !o.audit) throw usage("--audit-log and --no-audit exclude each other");
        checkOAuthFlags(o);
        if (o.printConfig !== undefined) {
          if (o.listen !== "stdio")
            throw usage("--print-config writes a stdio host's configuration; with --listen, give the host the URL");
          // The same options, spelled out whole: a host starts it from a folder of its own.
          const args = [
            "--home",
            ctx.home(),
            "mcp",
            "bridge",
            "--name",
            o.name,
            ...(o.url !== undefined ? ["--url", o.url] : ["--command", o.command as string]),
            ...(o.env ?? []).flatMap((kv) => ["--env", kv]),
            ...(o.expectedServer !== undefined ? ["--expected-server", o.expectedServer] : []),
            ...(o.workloadApi !== undefined ? ["--workload-api", o.workloadApi] : []),
            ...(o.mode !== "enforce" ? ["--mode", o.mode] : []),
            ...(o.auditLog !== undefined ? ["--audit-log", resolve(o.auditLog)] : []),
            ...(!o.audit ? ["--no-audit"] : []),
            ...(o.auditDurability !== "write" ? ["--audit-durability", o.auditDurability] : []),
            ...(o.serverUnsecured ? ["--server-unsecured"] : []),
            ...(!o.oauth ? ["--no-oauth"] : []),
            ...(o.oauthAssertion !== undefined ? ["--oauth-assertion", o.oauthAssertion] : []),
            ...(o.oauthClientId !== undefined ? ["--oauth-client-id", o.oauthClientId] : []),
            // Files by absolute path, never their contents: the host's configuration holds no secret.
            ...(o.oauthPrivateKey !== undefined ? ["--oauth-private-key", resolve(o.oauthPrivateKey)] : []),
            ...(o.oauthClientSecretFile !== undefined
              ? ["--oauth-client-secret-file", resolve(o.oauthClientSecretFile)]
              : []),
            ...(o.oauthIssuer !== undefined ? ["--oauth-issuer", o.oauthIssuer] : []),
            ...(o.oauthScope !== undefined ? ["--oauth-scope", o.oauthScope] : []),
            ...(o.oauthFlow !== undefined ? ["--oauth-flow", o.oauthFlow] : []),
            ...(o.oauthClientMetadataUrl !== undefined
              ? ["--oauth-client-metadata-url", o.oauthClientMetadataUrl]
              : []),
            ...(o.oauthRedirectPort !== undefined ? ["--oauth-redirect-port", o.oauthRedirectPort] : []),
            ...(o.oauthOpenBrowser === true ? ["--oauth-open-browser"] : []),
            ...(o.oauthAuthorizeHeadless === true ? ["--oauth-authorize-headless"] : []),
          ];
          process.stdout.write(`${JSON.stringify(hostConfig(o.printConfig, o.name, args), null, 2)}\n`);
          return;
        }
        const oauth = await oauthOption(o);
        const client = clientOf(o, ctx);
        const started = await startMcpBridge({
          client,
          name: o.name,
          upstream,
          listen: o.listen,
          mode: o.mode,
          ...(o.serverUnsecured ? { unsecuredServer: true } : {}),
          ...(oauth !== undefined ? { oauth } : {}),
          ...(o.expectedServer !== undefined ? { expectedServer: o.expectedServer } : {}),
          audit: await auditOption(o, client, o.name),
          ...(hosts ? { allowedHosts: hosts } : {}),
          log: (line) => process.stderr.write(`aztp mcp bridge: ${line}\n`),
        });
        await run(
          "aztp mcp bridge",
          o,
          client,
          started,
          `forwarding to ${"url" in upstream ? upstream.url : o.command}`,
        );
      },
    );
}
