/**
 * Wildcard patterns against caller-chosen values built to make a backtracking matcher explode,
 * through every path that matches them: policy Resource, a StringLike condition on an argument,
 * a delegation's tool scope (a signed chain checked by verifyInvocation), and a delegation that
 * must be checked for widening. Run as a child process by policy-glob.test.ts, so that a
 * regression hangs this process (killed at the test's deadline) rather than the test runner.
 * Prints one JSON line: each case's outcome.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Aztp } from "../../src/client/aztp.js";
import { delegate, MemoryReplayCache, signInvocation, verifyInvocation } from "../../src/invocation/index.js";
import { evaluatePolicies } from "../../src/policy/evaluate.js";
import type { PolicyDocument } from "../../src/policy/policy.js";

const COLONS = ":".repeat(50_000);
const PATTERN = "*:*:*:*.txt";
const out: Record<string, string> = {};

const policy = (statement: Record<string, unknown>): PolicyDocument[] => [
  { Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "tool:call", ...statement }] } as PolicyDocument,
];
const request = { principal: "spiffe://example.org/agent", action: "tool:call" };
out.resource = evaluatePolicies(policy({ Resource: PATTERN }), { ...request, resource: `${COLONS}x` }).decision;
out.resourceMatch = evaluatePolicies(policy({ Resource: PATTERN }), {
  ...request,
  resource: `${COLONS}a.txt`,
}).decision;
out.condition = evaluatePolicies(policy({ Resource: "*", Condition: { StringLike: { "aztp:args.file": PATTERN } } }), {
  ...request,
  resource: "read",
  context: { "aztp:args": { file: `${COLONS}x` } },
}).decision;

const home = mkdtempSync(join(tmpdir(), "aztp-glob-"));
const client = new Aztp({ home });
try {
  const [root, leaf, server] = [
    (await client.secureConnect({}, "root")).identity,
    (await client.secureConnect({}, "leaf")).identity,
    (await client.secureConnect({}, "server")).identity,
  ];
  const trust = await client.trust();
  const verify = (tool: string, chain: string[]): Promise<string> => {
    const token = signInvocation(leaf, { audience: server.spiffeId, tool, args: {}, delegation: chain });
    return verifyInvocation(token, {
      audience: server.spiffeId,
      tool,
      args: {},
      trust,
      replay: new MemoryReplayCache(),
    }).then(
      () => "accepted",
      (e: { code?: string }) => e.code ?? "error",
    );
  };
  out.delegatedTool = await verify(`${":".repeat(5_000)}x`, delegate(root, leaf.spiffeId, { tools: [PATTERN] }));
  out.delegatedToolMatch = await verify(
    `${":".repeat(5_000)}a.txt`,
    delegate(root, leaf.spiffeId, { tools: [PATTERN] }),
  );
  // Widening check: the second link's pattern (512 characters, the most a scope allows) must be
  // covered by the first's, which has as many stars as fit.
  const mid = (await client.secureConnect({}, "mid")).identity;
  const wide = delegate(root, mid.spiffeId, { tools: [`${"*a".repeat(255)}b`], depth: 1 });
  const narrow = delegate(mid, leaf.spiffeId, { tools: ["a".repeat(512)] }, wide);
  out.widening = await verify("a".repeat(512), narrow);
  const wideOk = delegate(root, mid.spiffeId, { tools: [`${"*a".repeat(255)}*`], depth: 1 });
  out.narrowing = await verify("a".repeat(512), delegate(mid, leaf.spiffeId, { tools: ["a".repeat(512)] }, wideOk));
} finally {
  client.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
