/**
 * Identities from a SPIFFE Workload API endpoint: `aztp.initialize({ workloadApi })` (and
 * SPIFFE_ENDPOINT_SOCKET) on our endpoint, `aztp workload-api`'s library form. The wrappers run
 * unchanged on it: an MCP server and client, each secured with an SVID the endpoint hands out,
 * sign, verify, receipt and audit a tool call; rotations come from the stream; what the source
 * cannot do is refused with its code.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { forecastOverMcp } from "./helpers/workload-api-mcp.js";
import { EmbeddedAuthority } from "../src/authority/authority.js";
import { Aztp } from "../src/client/aztp.js";
import { WorkloadApiAuthority } from "../src/client/workload-api-authority.js";
import { ErrorCodes } from "../src/errors.js";
import { secureMcpClient } from "../src/mcp/index.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { validateJwtSvid } from "../src/spiffe/jwtsvid.js";
import { WorkloadApiEndpoint } from "../src/workload-api/endpoint.js";
import { FileWorkloadEntryStore, registerWorkloadEntry } from "../src/workload-api/entries.js";
import { ROOT } from "./helpers/authority-util.js";
import { CLI, EVERYTHING } from "./helpers/mcp-util.js";

const uid = process.getuid?.() ?? -1;
const TOOLS = "spiffe://example.org/ns/tools/sa/weather";
const AGENT = "spiffe://example.org/ns/agents/sa/planner";

describe("a client whose identities come from the Workload API (our endpoint)", () => {
  const dir = mkdtempSync(join(tmpdir(), "aztp-wlapi-src-"));
  const socketPath = join(dir, "agent.sock");
  const address = `unix://${socketPath}`;
  let authority: EmbeddedAuthority;
  let entries: FileWorkloadEntryStore;
  let endpoint: WorkloadApiEndpoint;
  const clients: Aztp[] = [];
  const client = (): Aztp => {
    const c = new Aztp({ workloadApi: address, home: join(dir, "client-home") });
    clients.push(c);
    return c;
  };

  before(async () => {
    authority = await EmbeddedAuthority.init(join(dir, "home"), "example.org");
    entries = new FileWorkloadEntryStore(join(dir, "home"));
    await registerWorkloadEntry(authority, entries, {
      spiffeId: TOOLS,
      selectors: [`unix:uid:${uid}`],
      hint: "weather",
    });
    await registerWorkloadEntry(authority, entries, {
      spiffeId: AGENT,
      selectors: [`unix:uid:${uid}`],
      hint: "planner",
    });
    endpoint = await WorkloadApiEndpoint.start({ socketPath, authority, entries, refreshMs: 100, svidTtlSeconds: 6 });
  });
  after(async () => {
    for (const c of clients) await (await c.authority()).close?.();
    await endpoint?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("secureConnect binds the SVID the name selects, by hint or SPIFFE ID; a name that selects none is refused, listing what there is", async () => {
    const c = client();
    const byHint = await c.secureConnect({}, "planner");
    assert.equal(byHint.identity.spiffeId, AGENT);
    assert.equal(byHint.identity.valid, true);
    assert.equal(await byHint.identity.verify(), true);
    const byId = await c.secureConnect({}, TOOLS);
    assert.equal(byId.identity.spiffeId, TOOLS);
    await assert.rejects(c.secureConnect({}, "billing"), (e: Error & { code?: string }) => {
      assert.equal(e.code, ErrorCodes.WORKLOAD_API_SVID_NOT_FOUND);
      assert.match(e.message, /hint weather/);
      return true;
    });
  });

  it("an MCP server and client secured from it sign, verify and receipt a tool call, unchanged", async () => {
    const { serverId, content } = await forecastOverMcp(client(), client(), "Oslo");
    assert.equal(serverId, TOOLS, "the server proved the SVID the endpoint gave it");
    assert.deepEqual(content, [{ type: "text", text: "forecast for Oslo" }]);
  });

  it("aztp mcp proxy --workload-api: a third-party server behind a proxy whose identity is the endpoint's SVID", async () => {
    const home = join(dir, "proxy-home");
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        "--import",
        "tsx",
        CLI,
        "--home",
        home,
        "mcp",
        "proxy",
        "--name",
        "weather",
        "--workload-api",
        address,
        "--upstream-command",
        `"${process.execPath}" "${EVERYTHING}" stdio`,
      ],
      cwd: ROOT,
      stderr: "pipe",
    });
    let stderr = "";
    transport.stderr?.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    const mcpClient = new Client({ name: "planner", version: "1.0.0" });
    const secured = await secureMcpClient(mcpClient, { client: client(), name: "planner" });
    try {
      await mcpClient.connect(transport);
      assert.equal(secured.aztpServer.serverId?.toString(), TOOLS, `the proxy proved the endpoint's SVID (${stderr})`);
      const res = await mcpClient.callTool({ name: "echo", arguments: { message: "through the proxy" } });
      assert.match(JSON.stringify(res.content), /through the proxy/);
    } finally {
      await mcpClient.close();
    }
  });

  it("JWT-SVIDs come from the endpoint and validate against the bundles it streams", async () => {
    const c = client();
    const agent = await c.secureConnect({}, "planner");
    const token = await agent.identity.jwtSvid("spiffe://example.org/ledger");
    const svid = validateJwtSvid(token, (await c.authority()).bundleSet(), { audience: "spiffe://example.org/ledger" });
    assert.equal(svid.id.toString(), AGENT);
  });

  it("follows the stream: a rotation replaces the SVID (a new key) without renewing, and a revoked identity reads as revoked", async () => {
    const c = client();
    const agent = await c.secureConnect({}, "planner");
    const first = agent.identity.serial;
    const rotated = new Promise<string>((resolve) => agent.identity.once("rotated", (e) => resolve(e.serial)));
    assert.notEqual(await rotated, first, "the endpoint's half-life rotation arrived");
    assert.equal(await agent.identity.verify(), true);
    await authority.revoke(AGENT, "test");
    try {
      const deadline = Date.now() + 5000;
      while (agent.identity.status !== "revoked" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(agent.identity.status, "revoked");
      assert.equal(agent.identity.valid, false);
    } finally {
      await authority.reissue(AGENT);
    }
  });

  it("refuses what a Workload API source cannot do, each with ERR_WORKLOAD_API_OPERATION_UNSUPPORTED and the operation", async () => {
    const c = client();
    const agent = await c.secureConnect({}, "planner");
    const cases: Array<[string, () => Promise<unknown>, string]> = [
      ["a child identity", () => c.secureConnect({}, "planner", { parentIdentity: TOOLS }), "issue"],
      ["revocation", async () => (await c.authority()).revoke(TOOLS, "x"), "revoke"],
      ["a policy", async () => (await c.authority()).attachPolicy(TOOLS, {}), "policy"],
      ["a link", async () => (await c.authority()).link(AGENT, TOOLS, "linked"), "link"],
      ["renewal", () => agent.identity.rotate(), "renew"],
      ["an access token", () => agent.identity.accessToken({ resource: "https://api.example" }), "access-token"],
    ];
    for (const [what, run, rule] of cases) {
      await assert.rejects(run(), (e: Error & { code?: string; rule?: string }) => {
        assert.equal(e.code, ErrorCodes.WORKLOAD_API_OPERATION_UNSUPPORTED, what);
        assert.equal(e.rule, rule, what);
        return true;
      });
    }
  });

  it("SPIFFE_ENDPOINT_SOCKET is used when nothing else is configured, and not when a home is given", async () => {
    const saved = { socket: process.env.SPIFFE_ENDPOINT_SOCKET, home: process.env.AZTP_HOME };
    process.env.SPIFFE_ENDPOINT_SOCKET = address;
    delete process.env.AZTP_HOME;
    try {
      const fromEnv = new Aztp({});
      clients.push(fromEnv);
      assert.equal((await fromEnv.secureConnect({}, "weather")).identity.spiffeId, TOOLS);
      const withHome = new Aztp({ home: join(dir, "own-home"), trustDomain: "own.example" });
      assert.equal((await withHome.secureConnect({}, "weather")).identity.trustDomain, "own.example");
    } finally {
      if (saved.socket === undefined) delete process.env.SPIFFE_ENDPOINT_SOCKET;
      else process.env.SPIFFE_ENDPOINT_SOCKET = saved.socket;
      if (saved.home !== undefined) process.env.AZTP_HOME = saved.home;
    }
  });

  it("no endpoint there is waited for, then said; an endpoint with no identity for the workload is said at once", async () => {
    // No endpoint there (yet): waited for, as an agent may be starting, then said with the reason.
    await assert.rejects(
      WorkloadApiAuthority.connect(`unix://${join(dir, "nothing.sock")}`, dir, { timeoutMs: 500 }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, ErrorCodes.WORKLOAD_API_ENDPOINT_UNAVAILABLE);
        assert.match(e.message, /ENOENT/);
        return true;
      },
    );
    // An endpoint with no entry for this workload: PERMISSION_DENIED at once, not a timeout.
    const empty = mkdtempSync(join(dir, "empty-"));
    const bare = await EmbeddedAuthority.init(join(empty, "home"), "example.org");
    const lonely = await WorkloadApiEndpoint.start({
      socketPath: join(empty, "agent.sock"),
      authority: bare,
      entries: new FileWorkloadEntryStore(join(empty, "home")),
    });
    try {
      const t0 = Date.now();
      const denied = new Aztp({ workloadApi: `unix://${join(empty, "agent.sock")}`, home: join(dir, "h3") });
      await assert.rejects(denied.secureConnect({}, "x"), { code: ErrorCodes.WORKLOAD_API_PERMISSION_DENIED });
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      await lonely.close();
    }
    await assert.rejects(new Aztp({ workloadApi: "http://example.org/x" }).authority(), {
      code: ErrorCodes.ARGUMENT_INVALID,
    });
  });
});
