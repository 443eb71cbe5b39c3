// `aztp mcp proxy` in front of the unmodified @modelcontextprotocol/server-filesystem, in one
// command:
//   npx tsx examples/mcp/proxy-filesystem.ts
// The proxy gets an identity, the upstream runs with only the environment it needs, and only
// signed, verified calls (and, with --policy, allowed ones) reach it.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import aztp from "aztp-client";
import { secureMcpClient } from "aztp-client/mcp";

const root = fileURLToPath(new URL("../..", import.meta.url));
const home = process.env.AZTP_HOME ?? join(root, ".aztp");
const data = mkdtempSync(join(tmpdir(), "aztp-fs-"));
writeFileSync(join(data, "notes.txt"), "hello from behind the proxy\n");
const policy = join(mkdtempSync(join(tmpdir(), "aztp-policy-")), "policy.json");
writeFileSync(
  policy,
  JSON.stringify({
    Version: "2025-01-01",
    Statement: [
      {
        Sid: "ReadOnly",
        Effect: "Allow",
        Principal: "*",
        Action: "tool:call",
        Resource: ["read_*", "list_*", "get_*", "search_files", "directory_tree"],
      },
      {
        Sid: "NoWrites",
        Effect: "Deny",
        Principal: "*",
        Action: "tool:call",
        Resource: ["write_file", "edit_file", "create_directory", "move_file"],
      },
    ],
  }),
);

const client = aztp.initialize({ apiKey: process.env.AZTP_API_KEY, home });
const mcp = await secureMcpClient(new Client({ name: "file-agent", version: "1.0.0" }), { client, name: "file-agent" });
const filesystem = join(root, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
await mcp.connect(
  new StdioClientTransport({
    command: process.execPath,
    args: [
      "--import",
      "tsx",
      join(root, "src/cli/main.ts"),
      "--home",
      home,
      "mcp",
      "proxy",
      "--name",
      "files-proxy",
      "--upstream-command",
      `${process.execPath} ${filesystem} ${data}`,
      "--policy",
      policy,
    ],
    cwd: root,
    stderr: "inherit",
  }),
);
console.log("proxy proved:", mcp.aztpServer.serverId?.toString());
const read = await mcp.callTool({ name: "read_text_file", arguments: { path: join(data, "notes.txt") } });
console.log("read_text_file:", JSON.stringify(read.content));
try {
  await mcp.callTool({ name: "write_file", arguments: { path: join(data, "x.txt"), content: "no" } });
} catch (e) {
  console.log("write_file:", (e as { data?: { code?: string } }).data?.code);
}
await mcp.close();
await client.close();
