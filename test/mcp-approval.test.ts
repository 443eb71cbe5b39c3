/**
 * An approval over MCP: the secured server refuses a call its policy gates with a JSON-RPC
 * error whose data carries the approval request (`detail`), a person approves it at the REAL
 * OpenID Provider, and the application calls again with the approval in the call's `_meta`
 * (`io.aztp/approval`): the secured client signs it into the invocation, the tool runs once,
 * and both sides' audit entries name the approver.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AuditLog, queryAuditLog } from "../src/audit/index.js";
import { ErrorCodes } from "../src/errors.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UrlElicitationRequiredError } from "@modelcontextprotocol/sdk/types.js";
import {
  APPROVAL_META_KEY,
  AZTP_REFUSED,
  secureMcpClient,
  secureMcpServer,
  signApprovalStatement,
  URL_ELICITATION_REQUIRED,
} from "../src/mcp/index.js";
import type { ApprovalRequestDetail } from "../src/people/approval.js";
import { parsePolicy } from "../src/policy/index.js";
import { startLocalOpenIdProvider, type LocalOpenIdProvider } from "../examples/local-openid-provider.js";
import { fixture, linkInMemory, rejectsWithData, securedClient } from "./helpers/mcp-util.js";

let op: LocalOpenIdProvider;
before(async () => {
  op = await startLocalOpenIdProvider();
});
after(() => op.close());

describe("approvals over MCP", () => {
  it("carries the request in the refusal, and runs the call once it is approved", async (t) => {
    const { home, aztp: c } = fixture(t);
    await (await c.authority()).addPersonIssuer({ issuer: op.issuer, audiences: [op.defaultClientId] });
    let runs = 0;
    const server = new McpServer({ name: "bank", version: "1.0.0" });
    server.registerTool(
      "transfer",
      { description: "moves money", inputSchema: { to: z.string(), amount: z.number() } },
      async ({ to, amount }): Promise<CallToolResult> => {
        runs += 1;
        return { content: [{ type: "text", text: `sent ${amount} to ${to}` }] };
      },
    );
    const serverAuditPath = join(home, "bank-audit.jsonl");
    const serverAudit = await AuditLog.open(serverAuditPath, { batchWindowMs: 0 });
    t.after(() => serverAudit.close());
    const secured = await secureMcpServer(server, {
      client: c,
      name: "bank",
      audit: serverAudit,
      policy: [
        parsePolicy({
          Version: "2012-10-17",
          Statement: [
            {
              Sid: "large-transfers",
              Effect: "Allow",
              Action: "tool:call",
              Resource: "transfer",
              Condition: { NumericGreaterThan: { "aztp:args.amount": 1000 } },
              Approval: { Approvers: [`${op.issuer}#alice`], MaxAgeSeconds: 300, Reason: "transfers above 1000" },
            },
            {
              Effect: "Allow",
              Action: "tool:call",
              Resource: "transfer",
              Condition: { NumericLessThanEquals: { "aztp:args.amount": 1000 } },
            },
          ],
        }),
      ],
    });
    const { client, audit } = await securedClient(t, c, home, "agent");
    await linkInMemory(t, secured, client);
    const args = { to: "acct-9", amount: 2500 };

    const refused = await rejectsWithData(
      client.callTool({ name: "transfer", arguments: args }),
      ErrorCodes.APPROVAL_REQUIRED,
    );
    const detail = (refused.data as { detail?: ApprovalRequestDetail }).detail as ApprovalRequestDetail;
    assert.equal(detail.tool, "transfer");
    assert.equal(detail.callee, secured.identity.spiffeId);
    assert.equal(detail.caller, client.identity.spiffeId);
    assert.equal(detail.reason, "transfers above 1000");
    assert.equal(runs, 0);

    // An approval by a person the policy does not name is refused, and the tool does not run.
    const bob = await op.login({ account: "bob", nonce: detail.nonce });
    const wrong = await rejectsWithData(
      client.callTool({
        name: "transfer",
        arguments: args,
        _meta: { [APPROVAL_META_KEY]: { request: detail, idToken: bob.idToken } },
      }),
      ErrorCodes.APPROVAL_INVALID,
    );
    assert.match(wrong.message, /may not approve/);
    assert.equal(runs, 0);

    const alice = await op.login({ account: "alice", nonce: detail.nonce });
    const approval = { request: detail, idToken: alice.idToken };
    const result = (await client.callTool({
      name: "transfer",
      arguments: args,
      _meta: { [APPROVAL_META_KEY]: approval },
    })) as CallToolResult;
    assert.equal(result.isError, undefined);
    assert.deepEqual(result.content, [{ type: "text", text: "sent 2500 to acct-9" }]);
    assert.equal(runs, 1);
    // Single use: the same approval again is refused, and the tool does not run again.
    await rejectsWithData(
      client.callTool({ name: "transfer", arguments: args, _meta: { [APPROVAL_META_KEY]: approval } }),
      ErrorCodes.APPROVAL_INVALID,
    );
    assert.equal(runs, 1);

    await serverAudit.flush();
    const approvedBy = `${op.issuer}#alice`;
    const onServer = (await queryAuditLog(serverAuditPath)).filter((e) => e.approvedBy !== undefined);
    const onClient = (await audit()).filter((e) => e.approvedBy !== undefined);
    for (const entries of [onServer, onClient]) {
      assert.equal(entries.length, 1, "one approved call on each side");
      assert.equal(entries[0]?.approvedBy, approvedBy);
      assert.equal(entries[0]?.outcome, "ok");
      assert.ok(entries[0]?.approvedAt !== undefined);
    }
    assert.equal(onServer[0]?.jti, onClient[0]?.jti);
    assert.equal(onServer[0]?.approvedAt, onClient[0]?.approvedAt);
  });

  it("runs the call approved by an approval service's statement, naming the person on both sides", async (t) => {
    const { home, aztp: c } = fixture(t);
    // The approval service: a workload with its own SVID that authenticated alice itself.
    const approvals = (await c.secureConnect({}, "approvals")).identity;
    let runs = 0;
    const server = new McpServer({ name: "bank", version: "1.0.0" });
    server.registerTool(
      "transfer",
      { description: "moves money", inputSchema: { to: z.string(), amount: z.number() } },
      async ({ to, amount }): Promise<CallToolResult> => {
        runs += 1;
        return { content: [{ type: "text", text: `sent ${amount} to ${to}` }] };
      },
    );
    const serverAuditPath = join(home, "bank-audit.jsonl");
    const serverAudit = await AuditLog.open(serverAuditPath, { batchWindowMs: 0 });
    t.after(() => serverAudit.close());
    const secured = await secureMcpServer(server, {
      client: c,
      name: "bank",
      audit: serverAudit,
      policy: [
        parsePolicy({
          Version: "2012-10-17",
          Statement: [
            {
              Effect: "Allow",
              Action: "tool:call",
              Resource: "transfer",
              Approval: {
                Approvers: ["https://login.example.com#alice"],
                ApproverIdentities: [approvals.spiffeId],
                Reason: "every transfer",
              },
            },
          ],
        }),
      ],
    });
    const { client, audit } = await securedClient(t, c, home, "agent");
    await linkInMemory(t, secured, client);
    const args = { to: "acct-9", amount: 2500 };
    const refused = await rejectsWithData(
      client.callTool({ name: "transfer", arguments: args }),
      ErrorCodes.APPROVAL_REQUIRED,
    );
    const detail = (refused.data as { detail?: ApprovalRequestDetail }).detail as ApprovalRequestDetail;
    assert.deepEqual(detail.approverIdentities, [approvals.spiffeId]);

    const statement = signApprovalStatement(approvals, {
      request: detail,
      person: { issuer: "https://login.example.com", subject: "alice" },
      authTime: new Date(),
    });
    const result = (await client.callTool({
      name: "transfer",
      arguments: args,
      _meta: { [APPROVAL_META_KEY]: { request: detail, statement } },
    })) as CallToolResult;
    assert.equal(result.isError, undefined);
    assert.equal(runs, 1);

    await serverAudit.flush();
    const onServer = (await queryAuditLog(serverAuditPath)).filter((e) => e.approvedBy !== undefined);
    const onClient = (await audit()).filter((e) => e.approvedBy !== undefined);
    for (const entries of [onServer, onClient]) {
      assert.equal(entries.length, 1, "one approved call on each side");
      assert.equal(entries[0]?.approvedBy, "https://login.example.com#alice");
    }
    assert.equal(onServer[0]?.approvedAt, onClient[0]?.approvedAt);
  });

  it("asks a client that can show a URL to send its user to the approval page (URL mode elicitation, -32042); others get the refusal as before", async (t) => {
    const { home, aztp: c } = fixture(t);
    let runs = 0;
    const pages: Array<Readonly<Record<string, unknown>>> = [];
    // One secured server per connection (an McpServer serves one transport).
    const bank = async () => {
      const server = new McpServer({ name: "bank", version: "1.0.0" });
      server.registerTool(
        "transfer",
        { description: "moves money", inputSchema: { to: z.string(), amount: z.number() } },
        async ({ to, amount }): Promise<CallToolResult> => {
          runs += 1;
          return { content: [{ type: "text", text: `sent ${amount} to ${to}` }] };
        },
      );
      return secureMcpServer(server, {
        client: c,
        name: "bank",
        audit: false,
        approvalUrl: (request) => {
          pages.push(request);
          return `https://approvals.example.com/approve/${String(request.requestId)}`;
        },
        policy: [
          parsePolicy({
            Version: "2012-10-17",
            Statement: [
              {
                Effect: "Allow",
                Action: "tool:call",
                Resource: "transfer",
                Approval: { Approvers: ["$person"], Reason: "every transfer" },
              },
            ],
          }),
        ],
      });
    };
    const connect = async (name: string, capabilities: Record<string, unknown>) => {
      const client = await secureMcpClient(new Client({ name, version: "1.0.0" }, { capabilities }), {
        client: c,
        name,
        audit: await AuditLog.open(join(home, `${name}.jsonl`), { batchWindowMs: 0 }),
      });
      await linkInMemory(t, await bank(), client);
      return client;
    };
    const args = { to: "acct-9", amount: 10 };
    const able = await connect("url-able", { elicitation: { form: {}, url: {} } });
    // The SDK hands a -32042 to the application as a UrlElicitationRequiredError, with the
    // elicitations alone: the page the user is sent to is where the request is shown and approved
    // (approvalUrl was given all of it, its nonce included).
    const asked = await able.callTool({ name: "transfer", arguments: args }).then(
      () => assert.fail("the call ran without an approval"),
      (e: unknown) => e,
    );
    assert.ok(asked instanceof UrlElicitationRequiredError, String(asked));
    assert.equal(asked.code, URL_ELICITATION_REQUIRED, "MCP's URL elicitation required");
    assert.match(asked.message, /ERR_APPROVAL_REQUIRED/);
    const request = pages.at(-1) as unknown as ApprovalRequestDetail;
    assert.equal(request.tool, "transfer");
    assert.equal(request.caller, able.identity.spiffeId);
    assert.equal(typeof request.nonce, "string");
    assert.deepEqual(asked.elicitations, [
      {
        mode: "url",
        elicitationId: request.requestId,
        url: `https://approvals.example.com/approve/${request.requestId}`,
        message: `Approve transfer for ${able.identity.spiffeId}: every transfer`,
      },
    ]);
    // A client that declared no URL mode gets the refusal with the request, as before.
    const plain = await connect("form-only", { elicitation: { form: {} } });
    const refused = await rejectsWithData(
      plain.callTool({ name: "transfer", arguments: args }),
      ErrorCodes.APPROVAL_REQUIRED,
    );
    assert.equal(refused.code, AZTP_REFUSED);
    assert.equal((refused.data as { elicitations?: unknown }).elicitations, undefined);
    assert.equal((refused.data as { detail: ApprovalRequestDetail }).detail.tool, "transfer");
    assert.equal(runs, 0);
  });
});
