/**
 * The demo (`npm start`) and the MCP examples, run as a user runs them: real processes on a
 * fresh AZTP_HOME, offline. What they print is what the README promises.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ROOT, runTs, tempDir } from "./helpers/authority-util.js";

const run = (t: Parameters<typeof tempDir>[0], script: string) =>
  runTs(join(ROOT, script), [], { env: { AZTP_HOME: tempDir(t), AZTP_API_KEY: undefined, AZTP_TRUST_DOMAIN: undefined }, timeoutMs: 90_000 });

describe("examples", () => {
  it("npm start's demo: one call allowed, one denied by policy, one tampered, one replayed; the tool ran once; both audit logs verify", async (t) => {
    const r = await run(t, "examples/demo.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = r.stdout;
    assert.match(out, /identity issued: aztp:\/\/aztp\.local\/workload\/production\/node\/my-agent/);
    assert.match(out, /web_search \(allowed by policy\)\s+ALLOWED .*signed receipt verified/);
    assert.match(out, /delete_index \(denied by policy\)\s+REFUSED\s+ERR_POLICY_DENIED/);
    assert.match(out, /arguments changed\s+REFUSED\s+ERR_INVOCATION_ARGS_MISMATCH/);
    assert.match(out, /replayed\s+REFUSED\s+ERR_INVOCATION_REPLAYED/);
    assert.match(out, /tool runs in total: 1 /);
    assert.equal((out.match(/ok: \d+ entries, \d+ checkpoints, signatures checked, witness checked/g) ?? []).length, 2, out);
  });

  it("MCP over stdio: the client proves the server, calls, verifies the receipt", async (t) => {
    const r = await run(t, "examples/mcp/stdio-client.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /server proved: spiffe:\/\/aztp\.local\/workload\/production\/node\/weather-server/);
    assert.match(r.stdout, /Lisbon: sunny for 3 day/);
    assert.match(r.stdout, /receipt verified: true/);
  });

  it("MCP over Streamable HTTP: a signed call works, an unmodified client's call is refused with how to sign", async (t) => {
    const r = await run(t, "examples/mcp/http.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /Porto: sunny for 2 day.*receipt verified/);
    assert.match(r.stdout, /plain client sees tools: forecast/);
    assert.match(r.stdout, /plain client's call: .*ERR_INVOCATION_MISSING/);
  });

  it("the proxy in front of server-filesystem: reads pass, writes are denied by its policy", async (t) => {
    const r = await run(t, "examples/mcp/proxy-filesystem.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /proxy proved: spiffe:\/\/aztp\.local\/workload\/production\/node\/files-proxy/);
    assert.match(r.stdout, /hello from behind the proxy/);
    assert.match(r.stdout, /write_file: ERR_POLICY_DENIED/);
  });
});
