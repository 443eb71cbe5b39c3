/**
 * `aztp mcp proxy`: a secured MCP server in front of an unmodified upstream, run until told to
 * stop or until its upstream fails.
 */
import { dirname, resolve } from "node:path";
import { Option, type Command } from "commander";
import { parseArgsStringToArgv } from "string-argv";
import { AuditLog } from "../../audit/log.js";
import { Aztp } from "../../client/aztp.js";
import { svidCheckpointSigner } from "../../invocation/checkpoint.js";
import { defaultAllowedHosts } from "../../mcp/http.js";
import { startMcpProxy, type Upstream } from "../../mcp/proxy.js";
import { parsePolicy } from "../../policy/policy.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { outputDir, readInput } from "../files.js";

export function register(program: Command, ctx: CliContext): void {
  const mcp = program.command("mcp").description("secure MCP servers");
  mcp
    .command("proxy")
    .description("a secured MCP server in front of an unmodified upstream MCP server")
    .requiredOption("--name <name>", "the proxy's identity name")
    .option(
      "--upstream-command <cmd>",
      'spawn the upstream over stdio, e.g. "npx -y @modelcontextprotocol/server-filesystem /data"',
    )
    .option("--upstream-url <url>", "reach the upstream over Streamable HTTP")
    .option("--upstream-env <KEY=VALUE...>", "environment for a spawned upstream (it gets nothing else of ours)")
    .option("--listen <where>", "stdio, or http://127.0.0.1:PORT", "stdio")
    .option("--policy <file>", "AZTP policy document (JSON) deciding who may call which tool")
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
    )
    .option("--filter-tools", "show each authenticated caller only the tools its policy allows")
    .option(
      "--allowed-host <name...>",
      "with --listen http: also accept these host names in Host and Origin (default: loopback names and the --listen host)",
    )
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
    )
    .action(
      async (o: {
        name: string;
        upstreamCommand?: string;
        upstreamUrl?: string;
        upstreamEnv?: string[];
        listen: string;
        policy?: string;
        mode: "enforce" | "audit";
        auditLog?: string;
        audit: boolean;
        auditDurability: "write" | "fsync";
        filterTools?: boolean;
        allowedHost?: string[];
        authorizationServer?: string[] | true;
        resource?: string;
        scope?: string[];
        openMethods?: string;
      }) => {
        if (o.auditLog !== undefined && !o.audit) throw usage("--audit-log and --no-audit exclude each other");
        if (!o.upstreamCommand === !o.upstreamUrl)
          throw usage("give exactly one of --upstream-command and --upstream-url");
        if (o.listen !== "stdio" && !/^http:\/\/[^/]+(?::\d+)?(?:\/.*)?$/.test(o.listen))
          throw usage("--listen must be stdio or http://HOST:PORT");
        if (o.allowedHost && o.listen === "stdio")
          throw usage("--allowed-host applies to --listen http://HOST:PORT only");
        for (const name of o.allowedHost ?? []) {
          // A bare host name as it appears in Host (IPv6 in brackets), without scheme, port or path.
          let parsed: string | undefined;
          try {
            parsed = new URL(`http://${name}`).hostname;
          } catch {
            parsed = undefined;
          }
          if (parsed !== name.toLowerCase())
            throw usage(
              `--allowed-host takes a host name such as tools.example.com or [::1], got ${JSON.stringify(name)}`,
            );
        }
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
        const env: Record<string, string> = {};
        for (const kv of o.upstreamEnv ?? []) {
          const eq = kv.indexOf("=");
          if (eq < 1) throw usage(`--upstream-env takes KEY=VALUE, got ${JSON.stringify(kv)}`);
          env[kv.slice(0, eq)] = kv.slice(eq + 1);
        }
        let upstream: Upstream;
        if (o.upstreamCommand) {
          const [command, ...args] = parseArgsStringToArgv(o.upstreamCommand);
          if (!command) throw usage("--upstream-command is empty");
          upstream = { command, args, env };
        } else upstream = { url: o.upstreamUrl as string };
        const policies = o.policy ? [parsePolicy(await readInput(o.policy))] : undefined;
        const client = new Aztp({ home: ctx.home() });
        // The log's folder is made here, with a mkdir that cannot spin (make-dirs.ts), so that an
        // unusable --audit-log fails at once naming it: the log's own recursive mkdir never
        // settles on a path under /proc.
        if (o.auditLog) outputDir(dirname(resolve(o.auditLog)));
        const durability = { durability: o.auditDurability } as const;
        const audit = !o.audit
          ? false
          : o.auditLog
            ? await AuditLog.open(resolve(o.auditLog), {
                ...durability,
                signer: svidCheckpointSigner(await proxyIdentity(client, o.name)),
              })
            : durability;
        const proxy = await startMcpProxy({
          client,
          name: o.name,
          upstream,
          listen: o.listen,
          mode: o.mode,
          ...(policies ? { policy: policies } : {}),
          audit,
          ...(o.filterTools ? { filterToolsByPolicy: true } : {}),
          ...(o.allowedHost
            ? { allowedHosts: [...defaultAllowedHosts(o.listen), ...o.allowedHost.map((h) => h.toLowerCase())] }
            : {}),
          ...(o.authorizationServer !== undefined ? { authorizationServers: o.authorizationServer } : {}),
          ...(o.resource !== undefined ? { resource: o.resource } : {}),
          ...(o.scope !== undefined ? { scopes: o.scope } : {}),
          ...(openMethods !== undefined ? { openMethods } : {}),
        });
        // SIGINT and SIGTERM stop the proxy and its upstream; a stop asked for exits 0. Nothing
        // may keep the process once told to stop: a second signal has its default effect (the
        // listener is gone), and a stop still running after 10 s (an upstream that ignores both
        // its closed stdin and SIGTERM is SIGKILLed after 4 s) ends the process anyway.
        const onSignal = (signal: NodeJS.Signals): void => {
          process.stderr.write(`aztp mcp proxy: ${signal}, stopping\n`);
          setTimeout(() => {
            process.stderr.write("aztp mcp proxy: not stopped within 10 s of the signal; exiting\n");
            process.exit(1);
          }, 10_000).unref();
          void proxy.close();
        };
        // Listening before the start is announced: whoever waits for the announcement to stop us
        // must find the stop handled, not the default of a signal that kills.
        process.once("SIGINT", onSignal);
        process.once("SIGTERM", onSignal);
        // stdout belongs to MCP in stdio mode: everything for people goes to stderr.
        process.stderr.write(
          `aztp mcp proxy ${proxy.identity.aztpId} (${o.mode}) ${proxy.url ? `listening on ${proxy.url.href}` : "on stdio"}\n`,
        );
        if (proxy.protectedResource !== undefined)
          process.stderr.write(
            `aztp mcp proxy: OAuth resource ${proxy.protectedResource.resource}, bearer tokens from ${proxy.protectedResource.authorizationServers.join(", ")} (metadata ${proxy.protectedResource.metadataUrl})\n`,
          );
        // Said at start, so nobody runs a proxy believing its calls are on record when they are not.
        process.stderr.write(
          proxy.audit
            ? `aztp mcp proxy: audit log ${proxy.audit.path}\naztp mcp proxy: each answer waits for its audit entry (--audit-durability ${o.auditDurability})\n`
            : "aztp mcp proxy: no audit log (--no-audit): calls are not recorded\n",
        );
        // An upstream that exits while the client is still there (at start: a missing folder, a
        // bad command) ends the proxy with its failure: said, with what it printed, and exit 1.
        const failure = await proxy.closed;
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
        await proxy.audit?.close?.().catch(() => undefined);
        await client.close();
        if (failure) throw failure;
      },
    );
}

/** The proxy's identity, issued before the audit log opens so checkpoints can be signed by it. */
async function proxyIdentity(client: Aztp, name: string) {
  return (await client.secureConnect({}, name)).identity;
}
