/**
 * The demo (`npm start`) and the MCP examples, run as a user runs them: real processes on a
 * fresh AZTP_HOME, offline. What they print is what the README promises.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ROOT, runTs, tempDir } from "./helpers/authority-util.js";

const run = (t: Parameters<typeof tempDir>[0], script: string) =>
  runTs(join(ROOT, script), [], {
    env: { AZTP_HOME: tempDir(t), AZTP_API_KEY: undefined, AZTP_TRUST_DOMAIN: undefined, OPENAI_API_KEY: undefined },
    timeoutMs: 90_000,
  });

describe("examples", () => {
  it("npm start's demo: identities, allowed calls to a local tool and MCP tools, policy and delegation denials, tampered and replayed calls, a person in the chain (alice: her group decides, a large transfer waits for her approval), the revoked orchestrator's child refused, the audit trail naming alice on every row of her run, every log verified", async (t) => {
    const r = await run(t, "examples/demo.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = r.stdout;
    const id = (name: string) =>
      new RegExp(`aztp://aztp\\.local/workload/production/node/${name.replace(/\./g, "\\.")}\\b`);
    for (const name of ["docs-server", "mcp-client", "orchestrator", "researcher", "orchestrator.tools.take_note"])
      assert.match(out, id(name), name);
    assert.match(out, /sub-agent\s+aztp:\S+\/researcher\s+\(parent: orchestrator\)/);
    // Allowed: the local tool and an MCP tool, each with its callee's receipt, and the tools ran.
    assert.match(
      out,
      /orchestrator → take_note\(.*ALLOWED\s+"noted: demo started"\s+\(receipt from orchestrator\.tools\.take_note verified\)/,
    );
    assert.match(
      out,
      /orchestrator → search_docs\(\{"query":"SPIFFE"\}\).*ALLOWED\s+"3 pages about SPIFFE"\s+\(receipt from docs-server verified\)/,
    );
    assert.match(out, /tools that ran: take_note, search_docs\n/);
    assert.match(out, /researcher → search_docs\(\{"query":"delegation"\}\).*ALLOWED/);
    // Refused, with the code the model is told; the refused tool never ran.
    assert.match(
      out,
      /orchestrator → delete_doc\(\{"id":"7"\}\)\s+REFUSED\s+ERR_POLICY_DENIED\n\s+the model is told: Error \[ERR_POLICY_DENIED\]/,
    );
    assert.match(
      out,
      /researcher → delete_doc\(\{"id":"3"\}\)\s+REFUSED\s+ERR_DELEGATION_INVALID\n\s+the model is told: Error \[ERR_DELEGATION_INVALID\]/,
    );
    assert.match(out, /orchestrator → search_docs\(\{"query":"receipts"\}\)\s+REFUSED\s+ERR_INVOCATION_ARGS_MISMATCH/);
    assert.match(out, /sent again\s+REFUSED\s+ERR_INVOCATION_REPLAYED/);
    // A person in the chain: alice, signed in at the local OpenID Provider, for whom the
    // orchestrator and its sub-agent act; her group decides, and a large transfer waits for her.
    assert.match(
      out,
      /alice signed in at http:\/\/127\.0\.0\.1:\d+ \(the trust domain trusts it\): sub alice, groups \["finance"\]/,
    );
    assert.match(out, /researcher → search_docs\(\{"query":"refunds"\}\).*ALLOWED/);
    assert.match(out, /orchestrator → export_ledger\(\{"month":"2026-11"\}\)\s+REFUSED\s+ERR_POLICY_DENIED/);
    assert.match(out, /orchestrator → transfer\(\{"to":"acme","amount":250\}\)\s+ALLOWED\s+"paid 250 to acme"/);
    assert.match(
      out,
      /orchestrator → transfer\(\{"to":"acme","amount":5000\}\)\s+WAITS\s+ERR_APPROVAL_REQUIRED: transfers above 1000\n.*approves it\n\s+orchestrator → transfer\(\{"to":"acme","amount":5000\}\)\s+ALLOWED\s+"paid 5000 to acme"/,
    );
    assert.match(out, /tools that ran: search_docs, transfer\n/);
    assert.match(out, /tools that ran: transfer\n/);
    assert.doesNotMatch(out, /tools that ran: .*export_ledger/);
    assert.match(out, /revoked: orchestrator, orchestrator\.tools\.take_note, researcher/);
    assert.match(out, /researcher → search_docs\(\{"query":"revocation"\}\)\s+REFUSED\s+ERR_INVOCATION_REVOKED/);
    assert.doesNotMatch(out, /tools that ran: .*delete_doc/);
    assert.equal((out.match(/tools that ran: none/g) ?? []).length, 4, out);
    // The audit trail: both sides of the delegated call, on behalf of the orchestrator.
    assert.match(out, /researcher\s+caller\s+researcher\s+orchestrator\s+search_docs\s+docs-server\s+ok/);
    assert.match(out, /docs-server\s+callee\s+researcher\s+orchestrator\s+search_docs\s+docs-server\s+ok/);
    assert.match(
      out,
      /docs-server\s+callee\s+orchestrator \(claimed\)\s+-\s+search_docs\s+docs-server\s+denied ERR_INVOCATION_REPLAYED/,
    );
    assert.match(
      out,
      /researcher\s+caller\s+researcher\s+orchestrator\s+search_docs\s+docs-server\s+denied ERR_INVOCATION_REVOKED/,
    );
    assert.match(out, /--tool-call-id call_r_search_1_[0-9a-f]{6}/);
    // Every row of alice's run names her, on every side: the researcher's search for her through
    // the orchestrator, the sub-agent call, the refused export, both transfers, the approval.
    const table = out.slice(out.indexOf("7. the audit trail"), out.indexOf("one call in every log"));
    const lines = table.split("\n");
    assert.equal(lines.filter((l) => l.includes("alice (person)")).length, 12, table);
    for (const row of lines.filter((l) => /\b(export_ledger|transfer)\b/.test(l)))
      assert.match(row, /alice \(person\)/, row);
    assert.match(
      table,
      /researcher\s+caller\s+researcher\s+orchestrator → alice \(person\)\s+search_docs\s+docs-server\s+ok/,
    );
    assert.match(
      table,
      /docs-server\s+callee\s+researcher\s+orchestrator → alice \(person\)\s+search_docs\s+docs-server\s+ok/,
    );
    assert.match(
      table,
      /payments-server\s+callee\s+orchestrator\s+alice \(person\)\s+export_ledger\s+payments-server\s+denied ERR_POLICY_DENIED/,
    );
    assert.equal(
      (table.match(/denied ERR_APPROVAL_REQUIRED/g) ?? []).length,
      2,
      "one refusal on each side before the approval",
    );
    assert.match(
      table,
      /payments-server\s+callee\s+orchestrator\s+alice \(person\)\s+transfer\s+payments-server\s+ok \(approved by alice\)/,
    );
    assert.match(
      table,
      /orchestrator\s+caller\s+orchestrator\s+alice \(person\)\s+transfer\s+payments-server\s+ok \(approved by alice\)/,
    );
    // Every log verifies, with signed checkpoints.
    for (const log of ["orchestrator", "researcher", "docs-server", "payments-server"]) {
      assert.match(
        out,
        new RegExp(`${log}\\s+ok: \\d+ entries, \\d+ checkpoints?, signatures checked, witness checked`),
        log,
      );
    }
    assert.match(out, /mcp-client\s+ok: empty/);
    assert.doesNotMatch(out, /FAILED|did NOT verify/);
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
  it("the bridge: an unmodified SDK Client over stdio through aztp mcp bridge to a secured HTTP server; the server's audit names the bridge as the caller", async (t) => {
    const r = await run(t, "examples/mcp/bridge.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const bridge = "spiffe://aztp\\.local/workload/production/node/desktop-bridge";
    assert.match(r.stdout, /host sees tools: forecast, reset\n/);
    assert.match(r.stdout, /host calls forecast: Lisbon: sunny\n/);
    assert.match(
      r.stdout,
      new RegExp(
        `host calls reset: isError true, the model reads "ERR_POLICY_DENIED: policy denies ${bridge} calling reset`,
      ),
    );
    assert.match(r.stdout, new RegExp(`server's audit: caller ${bridge} \\(verified, signed\\) → forecast allow\n`));
    assert.match(
      r.stdout,
      new RegExp(`server's audit: caller ${bridge} \\(verified, signed\\) → reset deny ERR_POLICY_DENIED\n`),
    );
    assert.match(
      r.stdout,
      /the bridge pinned the server it proved: spiffe:\/\/aztp\.local\/workload\/production\/node\/weather-server\n/,
    );
    assert.ok(r.ms < 30_000, `the example took ${r.ms} ms`);
  });
  it("LangChain createSecureAgent: local tools served as <agent>.tools.<tool>, receipts, an unknown tool refused and recorded, createAgent refused by secureConnect", async (t) => {
    const r = await run(t, "examples/langchain/agent.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /agent identity: aztp:\/\/aztp\.local\/workload\/production\/node\/assistant\n/);
    assert.match(
      r.stdout,
      /add\s+ALLOWED\s+"5"\s+receipt from aztp:\/\/aztp\.local\/workload\/production\/node\/assistant\.tools\.add \(signed\)/,
    );
    assert.match(
      r.stdout,
      /weather\s+ALLOWED\s+"Lisbon: sunny, 24 °C"\s+receipt from \S+\/assistant\.tools\.weather \(signed\)/,
    );
    assert.match(r.stdout, /send_email REFUSED\s+ERR_TOOL_UNKNOWN/);
    assert.match(r.stdout, /audit assistant\.jsonl: caller add ok \(tool-call id call_add\)/);
    assert.match(r.stdout, /audit assistant\.tools\.add\.jsonl: callee add ok \(tool-call id call_add\)/);
    assert.match(r.stdout, /audit assistant\.jsonl: caller send_email denied ERR_TOOL_UNKNOWN/);
    assert.match(r.stdout, /secureConnect\(createAgent\(\.\.\.\)\): ERR_AGENT_UNSECURED/);
  });

  it("LangChain secureTool shared by two agents (createSecureAgent, and the middleware on createAgent): each verified by the tool; an agent outside its policy and an unsigned call refused", async (t) => {
    const r = await run(t, "examples/langchain/secure-tool.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(
      r.stdout,
      /support-agent\s+→ lookup_customer: ALLOWED "ACME: premium plan, 2 open tickets" \(receipt signed by \S+\/crm-tool\)/,
    );
    assert.match(r.stdout, /billing-agent\s+→ lookup_customer: ALLOWED .*\/crm-tool\)/);
    assert.match(r.stdout, /intern-agent\s+→ lookup_customer: REFUSED ERR_POLICY_DENIED/);
    assert.match(r.stdout, /\(no agent\)\s+→ lookup_customer: REFUSED ERR_INVOCATION_MISSING/);
    assert.match(r.stdout, /the tool ran 2 times/);
    assert.match(r.stdout, /crm-tool\.jsonl: support-agent\s+verified\s+ok\n/);
    assert.match(r.stdout, /crm-tool\.jsonl: billing-agent\s+verified\s+ok\n/);
    assert.match(r.stdout, /crm-tool\.jsonl: intern-agent\s+verified\s+denied ERR_POLICY_DENIED/);
    assert.match(r.stdout, /crm-tool\.jsonl: unknown\s+unverified\s+denied ERR_INVOCATION_MISSING/);
  });

  it("LangChain MCP tools: two agents sharing one secured client each sign as themselves; SecureMultiServerMCPClient over stdio, one call found in both logs by its tool-call id", async (t) => {
    const r = await run(t, "examples/langchain/mcp-tools.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /planner → lookup: "SVID: see chapter 3" \(receipt from kb-server verified\)/);
    assert.match(r.stdout, /writer\s+→ lookup: "receipt: see chapter 3" \(receipt from kb-server verified\)/);
    assert.match(r.stdout, /kb-server's log: planner called lookup \(verified\), allow/);
    assert.match(r.stdout, /kb-server's log: writer called lookup \(verified\), allow/);
    assert.doesNotMatch(r.stdout, /kb-server's log: shared-mcp-client/);
    assert.match(
      r.stdout,
      /traveller → forecast: "Lisbon: sunny for 3 day\(s\)" \(receipt from weather-server verified\)/,
    );
    assert.match(
      r.stdout,
      /traveller\.jsonl\s+caller traveller → weather-server forecast allow ok \[call call_forecast_1\]/,
    );
    assert.match(
      r.stdout,
      /weather-server\.jsonl\s+callee traveller → weather-server forecast allow ok \[call call_forecast_1\]/,
    );
  });

  it("LangChain sub-agents two levels deep: child identities, the delegation chain in every log, a call outside the grandchild's scope denied", async (t) => {
    const r = await run(t, "examples/langchain/sub-agents.ts");
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /analyst\s+aztp:\S+\/analyst\s+\(parent: lead-agent\)/);
    assert.match(r.stdout, /fetcher\s+aztp:\S+\/fetcher\s+\(parent: analyst\)/);
    assert.match(
      r.stdout,
      /fetcher\.tools\.fetch_page\.jsonl\s+callee fetcher, on behalf of lead-agent → analyst: fetch_page → ok/,
    );
    assert.match(
      r.stdout,
      /fetcher\.jsonl\s+caller fetcher, on behalf of lead-agent → analyst: summarise → denied ERR_DELEGATION_INVALID/,
    );
    assert.match(
      r.stdout,
      /fetcher\.tools\.summarise\.jsonl\s+callee fetcher: summarise → denied ERR_DELEGATION_INVALID/,
    );
    assert.match(
      r.stdout,
      /analyst\.tools\.summarise\.jsonl\s+callee analyst, on behalf of lead-agent: summarise → ok/,
    );
    assert.match(r.stdout, /orchestrator's answer: The analyst summarised example\.org\./);
  });
});
