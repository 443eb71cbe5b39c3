/**
 * One policy decision on a realistic 50-statement document: allows and denies, wildcards in
 * principals, actions and resources, and conditions on trust domain, links, arguments and time.
 * Decisions rotate over requests that end in an allow, an explicit deny and an implicit deny,
 * so the figure is not one lucky early match. Target: p50 <= 20 µs.
 */
import { buildPolicyContext, evaluatePolicies, type PolicyDocument, type Statement } from "../src/policy/index.js";
import { medianMicros, round } from "./harness.js";

const TD = "example.org";
const SERVER = `aztp://${TD}/workload/production/node/tools-server`;

function realisticPolicy(): PolicyDocument {
  const statements: Statement[] = [];
  for (let i = 0; i < 20; i++) {
    statements.push({
      Sid: `AllowTeam${i}`,
      Effect: "Allow",
      Principal: {
        AZTP: [`aztp://${TD}/workload/production/node/team${i}-*`, `spiffe://${TD}/workload/staging/node/team${i}-?`],
      },
      Action: ["tool:call", "tools/call"],
      Resource: [`${SERVER}/tool/team${i}_*`, `read_${i}`],
      Condition: {
        StringEquals: { "aztp:callerTrustDomain": TD },
        NumericLessThanEquals: { "aztp:args.limit": 100 + i },
      },
    });
  }
  for (let i = 0; i < 10; i++) {
    statements.push({
      Sid: `DenyDanger${i}`,
      Effect: "Deny",
      Principal: "*",
      Action: "tool:*",
      Resource: [`${SERVER}/tool/danger_${i}*`, `drop_table_${i}`],
      Condition: { "ForAnyValue:StringLike": { "aztp:callerLinks": [`aztp://partner${i}.net/*`] } },
    });
  }
  for (let i = 0; i < 10; i++) {
    statements.push({
      Sid: `AllowLinked${i}`,
      Effect: "Allow",
      Principal: `aztp://${TD}/workload/*/node/*`,
      Action: "tool:call",
      Resource: `search_${i}`,
      Condition: {
        "ForAllValues:StringLike": { "aztp:callerLinks": [`aztp://${TD}/*`] },
        DateLessThan: { "aztp:currentTime": "2099-01-01T00:00:00Z" },
        BoolIfExists: { "aztp:delegated": false },
      },
    });
  }
  for (let i = 0; i < 10; i++) {
    statements.push({
      Sid: `DenyGuard${i}`,
      Effect: "Deny",
      NotPrincipal: { AZTP: `aztp://${TD}/workload/production/node/admin-${i}` },
      Action: "admin:*",
      NotResource: `${SERVER}/tool/status_${i}`,
      Condition: { StringNotEquals: { "aztp:args.mode": "read" }, StringLike: { "aztp:args.path": "/etc/*" } },
    });
  }
  return { Version: "2012-10-17", Statement: statements };
}

export default async () => {
  const policies = [realisticPolicy()];
  const caller = `aztp://${TD}/workload/production/node/team17-agent`;
  const context = buildPolicyContext({
    caller,
    callerLinks: [`aztp://${TD}/workload/production/node/helper`],
    callee: SERVER,
    tool: "team17_lookup",
    args: { limit: 50, query: "weather in Paris", mode: "read" },
  });
  const requests = [
    // Allowed by AllowTeam17, after every Deny and 17 other Allows have been tried.
    { principal: caller, action: "tool:call", resource: `${SERVER}/tool/team17_lookup`, context },
    // Explicitly denied (the caller is linked to partner3.net).
    {
      principal: caller,
      action: "tool:call",
      resource: "drop_table_3",
      context: { ...context, "aztp:callerLinks": ["spiffe://partner3.net/agent"] },
    },
    // Implicitly denied: every statement is tried.
    { principal: caller, action: "tool:call", resource: `${SERVER}/tool/unknown`, context },
  ];
  let i = 0;
  const decide = () => evaluatePolicies(policies, requests[i++ % requests.length]!);
  const check = requests.map(() => decide().reason).join(",");
  if (check !== "allow,explicit_deny,implicit_deny") throw new Error(`policy bench: unexpected decisions ${check}`);
  return { policy_decision_p50_us: round(await medianMicros(decide, 20_000, 2_000), 2) };
};
