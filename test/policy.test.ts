import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import { ErrorCodes, isAztpError } from "../src/errors.js";
import {
  buildPolicyContext,
  type ConditionBlock,
  compilePolicies,
  evaluatePolicies,
  findStatements,
  getPolicyValue,
  isActionAllowed,
  type PolicyDecision,
  type PolicyDocument,
  type PolicyRequest,
  parsePolicy,
  policyCode,
  type Statement,
} from "../src/policy/index.js";

const TD = "example.org";
const AGENT = `spiffe://${TD}/workload/production/node/my-agent`;
const AGENT_AZTP = `aztp://${TD}/workload/production/node/my-agent`;
const SERVER = `aztp://${TD}/workload/production/node/my-server`;

function doc(...statements: Statement[]): PolicyDocument {
  return { Version: "2012-10-17", Statement: statements };
}

function request(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return { principal: AGENT, action: "tool:call", resource: "search", context: {}, ...overrides };
}

const allowAll: Statement = { Sid: "AllowAll", Effect: "Allow", Action: "*" };

describe("policy: Deny wins, then Allow, else deny", () => {
  const cases: Array<{ name: string; policies: PolicyDocument[]; req?: Partial<PolicyRequest>; want: PolicyDecision }> =
    [
      {
        name: "allow alone allows",
        policies: [doc(allowAll)],
        want: { decision: "allow", reason: "allow", statement: "AllowAll", policy: 0 },
      },
      {
        name: "deny listed before allow",
        policies: [doc({ Sid: "No", Effect: "Deny", Action: "tool:call" }, allowAll)],
        want: { decision: "deny", reason: "explicit_deny", statement: "No", policy: 0 },
      },
      {
        name: "deny listed after allow",
        policies: [doc(allowAll, { Sid: "No", Effect: "Deny", Action: "tool:call" })],
        want: { decision: "deny", reason: "explicit_deny", statement: "No", policy: 0 },
      },
      {
        name: "deny in a later document beats allow in an earlier one",
        policies: [doc(allowAll), doc({ Effect: "Deny", Action: "*", Resource: "search" })],
        want: { decision: "deny", reason: "explicit_deny", statement: 0, policy: 1 },
      },
      {
        name: "deny that does not match leaves the allow",
        policies: [doc({ Effect: "Deny", Action: "tool:call", Resource: "delete" }, allowAll)],
        want: { decision: "allow", reason: "allow", statement: "AllowAll", policy: 0 },
      },
      {
        name: "deny whose condition fails leaves the allow",
        policies: [doc({ Effect: "Deny", Action: "*", Condition: { Bool: { "aztp:delegated": true } } }, allowAll)],
        req: { context: { "aztp:delegated": false } },
        want: { decision: "allow", reason: "allow", statement: "AllowAll", policy: 0 },
      },
      {
        name: "only non-matching denies: implicit deny",
        policies: [doc({ Effect: "Deny", Action: "admin:*" })],
        want: { decision: "deny", reason: "implicit_deny" },
      },
      {
        name: "allow for another action: implicit deny",
        policies: [doc({ Effect: "Allow", Action: "tool:list" })],
        want: { decision: "deny", reason: "implicit_deny" },
      },
      { name: "no statements: implicit deny", policies: [doc()], want: { decision: "deny", reason: "implicit_deny" } },
      { name: "no policies: implicit deny", policies: [], want: { decision: "deny", reason: "implicit_deny" } },
      {
        name: "statement without Sid is named by its index",
        policies: [doc({ Effect: "Allow", Action: "x" }, { Effect: "Allow", Action: "tool:call" })],
        want: { decision: "allow", reason: "allow", statement: 1, policy: 0 },
      },
      {
        name: "single-statement form",
        policies: [{ Version: "2012-10-17", Statement: { Sid: "One", Effect: "Allow", Action: "tool:call" } }],
        want: { decision: "allow", reason: "allow", statement: "One", policy: 0 },
      },
      {
        name: "first matching allow is reported",
        policies: [doc({ Sid: "A", Effect: "Allow", Action: "tool:*" }, { Sid: "B", Effect: "Allow", Action: "*" })],
        want: { decision: "allow", reason: "allow", statement: "A", policy: 0 },
      },
    ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual({ ...evaluatePolicies(c.policies, request(c.req)) }, c.want);
    });
  }

  it("the outcome does not depend on statement order", () => {
    const statements: Statement[] = [
      { Sid: "A", Effect: "Allow", Action: "tool:*" },
      { Sid: "D", Effect: "Deny", Action: "tool:call", Resource: "search" },
      { Sid: "B", Effect: "Allow", Action: "*" },
    ];
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    for (const order of orders) {
      const d = evaluatePolicies([doc(...order.map((i) => statements[i]!))], request());
      assert.equal(d.reason, "explicit_deny", `order ${order.join("")}`);
      assert.equal(d.statement, "D");
    }
  });
});

type PatternCase = [pattern: string | string[], value: string, want: boolean];

/** One test per case: does an Allow whose `field` is the pattern decide a request for the value? */
function patternCases(field: "Resource" | "Action", cases: PatternCase[]): void {
  for (const [pattern, value, want] of cases) {
    it(`${field} ${JSON.stringify(pattern)} ${want ? "matches" : "does not match"} ${JSON.stringify(value)}`, () => {
      const statement: Statement =
        field === "Resource"
          ? { Effect: "Allow", Action: "*", Resource: pattern }
          : { Effect: "Allow", Action: pattern };
      const d = evaluatePolicies(
        [doc(statement)],
        request(field === "Resource" ? { resource: value } : { action: value }),
      );
      assert.equal(d.decision, want ? "allow" : "deny");
    });
  }
}

describe("policy: wildcards in Resource (case-sensitive) and Action (case-insensitive)", () => {
  patternCases("Resource", [
    ["search", "search", true],
    ["search", "search2", false],
    ["search", "Search", false],
    ["*", "anything/at/all", true],
    ["sea*", "sea", true],
    ["sea*", "seafood/with/slashes", true],
    ["sea*", "se", false],
    ["*arch", "search", true],
    ["s?arch", "search", true],
    ["s?arch", "sarch", false],
    ["s?arch", "seearch", false],
    ["?", "é", true],
    ["?", "😀", true],
    ["??", "😀", false],
    ["a*b", "a\nb", true],
    ["a.c", "a.c", true],
    ["a.c", "abc", false],
    ["*.txt", "notes.txt", true],
    ["*.txt", "notesXtxt", false],
    ["a+", "a+", true],
    ["a+", "aa", false],
    ["(x)", "(x)", true],
    ["(x)", "x", false],
    ["[ab]", "[ab]", true],
    ["[ab]", "a", false],
    ["^x$", "^x$", true],
    ["^x$", "x", false],
    ["a|b", "a", false],
    ["a|b", "a|b", true],
    ["a\\d", "a1", false],
    ["a\\d", "a\\d", true],
    ["x{2}", "xx", false],
    ["$*", "$100", true],
    // The same metacharacters next to a wildcard, where the pattern goes through a RegExp.
    ["a.c*", "abcd", false],
    ["a.c*", "a.cd", true],
    ["a+*", "aa", false],
    ["a+*", "a+b", true],
    ["(x)*", "x", false],
    ["[ab]*", "a", false],
    ["[ab]*", "[ab]", true],
    ["^x$*", "x", false],
    ["a|b*", "a", false],
    ["a\\d*", "a1", false],
    ["a\\d*", "a\\d", true],
    ["x{2}?", "xx", false],
    ["x{2}?", "x{2}!", true],
    ["*/", "a/", true],
    [["a*", "b?"], "bc", true],
    [["a*", "b?"], "cb", false],
    [[`${SERVER}/tool/*`], `spiffe://${TD}/workload/production/node/my-server/tool/search`, true],
    [[`spiffe://EXAMPLE.org/workload/*/tool/search`], `${SERVER}/tool/search`, true],
  ]);

  patternCases("Action", [
    ["tool:call", "tool:call", true],
    ["tool:call", "Tool:CALL", true],
    ["TOOL:*", "tool:call", true],
    ["tool:?all", "tool:call", true],
    ["tool:?all", "tool:list", false],
    ["tools/call", "tools/call", true],
    ["tools/call", "tool:call", false],
    ["tool.call", "toolxcall", false],
    [["tool:list", "tools/*"], "tools/call", true],
  ]);
});

describe("policy: principals, IDs in both schemes, and the Not* fields", () => {
  const cases: Array<{ name: string; statement: Statement; req: Partial<PolicyRequest>; want: boolean }> = [
    {
      name: "aztp:// principal, spiffe:// caller",
      statement: { Effect: "Allow", Action: "*", Principal: AGENT_AZTP },
      req: {},
      want: true,
    },
    {
      name: "spiffe:// principal, aztp:// caller",
      statement: { Effect: "Allow", Action: "*", Principal: AGENT },
      req: { principal: AGENT_AZTP },
      want: true,
    },
    {
      name: "scheme and trust domain are case-insensitive",
      statement: { Effect: "Allow", Action: "*", Principal: `AZTP://EXAMPLE.ORG/workload/production/node/my-agent` },
      req: { principal: `Spiffe://Example.Org/workload/production/node/my-agent` },
      want: true,
    },
    {
      name: "path is case-sensitive",
      statement: { Effect: "Allow", Action: "*", Principal: `aztp://${TD}/workload/production/node/My-Agent` },
      req: {},
      want: false,
    },
    { name: "another caller", statement: { Effect: "Allow", Action: "*", Principal: SERVER }, req: {}, want: false },
    { name: "Principal *", statement: { Effect: "Allow", Action: "*", Principal: "*" }, req: {}, want: true },
    {
      name: "AZTP object form with a list",
      statement: { Effect: "Allow", Action: "*", Principal: { AZTP: [SERVER, AGENT_AZTP] } },
      req: {},
      want: true,
    },
    {
      name: "AZTP pattern over a trust domain",
      statement: { Effect: "Allow", Action: "*", Principal: { AZTP: `aztp://${TD}/*` } },
      req: {},
      want: true,
    },
    {
      name: "AZTP pattern over another trust domain",
      statement: { Effect: "Allow", Action: "*", Principal: { AZTP: "aztp://other.org/*" } },
      req: {},
      want: false,
    },
    {
      name: "NotPrincipal excludes the caller",
      statement: { Effect: "Allow", Action: "*", NotPrincipal: AGENT_AZTP },
      req: {},
      want: false,
    },
    {
      name: "NotPrincipal admits others",
      statement: { Effect: "Allow", Action: "*", NotPrincipal: SERVER },
      req: {},
      want: true,
    },
    {
      name: "NotAction excludes the action",
      statement: { Effect: "Allow", NotAction: "tool:*" },
      req: {},
      want: false,
    },
    {
      name: "NotAction admits other actions",
      statement: { Effect: "Allow", NotAction: "admin:*" },
      req: {},
      want: true,
    },
    {
      name: "NotResource excludes the resource",
      statement: { Effect: "Allow", Action: "*", NotResource: ["delete", "sea*"] },
      req: {},
      want: false,
    },
    {
      name: "NotResource admits other resources",
      statement: { Effect: "Allow", Action: "*", NotResource: "delete" },
      req: {},
      want: true,
    },
    {
      name: "resource IDs compare across schemes",
      statement: { Effect: "Allow", Action: "*", Resource: `${SERVER}/tool/search` },
      req: { resource: `spiffe://${TD}/workload/production/node/my-server/tool/search` },
      want: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.equal(evaluatePolicies([doc(c.statement)], request(c.req)).decision, c.want ? "allow" : "deny");
    });
  }

  it("a Deny with NotPrincipal denies everyone but the named principal", () => {
    const policies = [doc({ Effect: "Deny", NotPrincipal: { AZTP: AGENT_AZTP }, Action: "*" }, allowAll)];
    assert.equal(evaluatePolicies(policies, request()).reason, "allow");
    assert.equal(evaluatePolicies(policies, request({ principal: SERVER })).reason, "explicit_deny");
  });
});

/** Does the condition hold? (an Allow on any action, guarded by it, decides the request) */
function holds(condition: ConditionBlock, context: Record<string, unknown>): boolean {
  const policies = [doc({ Effect: "Allow", Action: "*", Condition: condition })];
  return evaluatePolicies(policies, request({ context })).decision === "allow";
}

const T2026 = "2026-06-01T12:00:00Z";
type ConditionCase = [name: string, condition: ConditionBlock, context: Record<string, unknown>, want: boolean];

const conditionCases: ConditionCase[] = [
  // StringEquals, and the AND/OR rules
  ["StringEquals match", { StringEquals: { "aztp:tool": "search" } }, { "aztp:tool": "search" }, true],
  ["StringEquals mismatch", { StringEquals: { "aztp:tool": "search" } }, { "aztp:tool": "delete" }, false],
  ["StringEquals is case-sensitive", { StringEquals: { "aztp:tool": "search" } }, { "aztp:tool": "Search" }, false],
  ["StringEquals missing key", { StringEquals: { "aztp:tool": "search" } }, {}, false],
  ["StringEquals null value is missing", { StringEquals: { "aztp:tool": "search" } }, { "aztp:tool": null }, false],
  ["values are ORed", { StringEquals: { "aztp:tool": ["delete", "search"] } }, { "aztp:tool": "search" }, true],
  [
    "keys are ANDed (both hold)",
    { StringEquals: { "aztp:tool": "search", "aztp:callerTrustDomain": TD } },
    { "aztp:tool": "search", "aztp:callerTrustDomain": TD },
    true,
  ],
  [
    "keys are ANDed (one fails)",
    { StringEquals: { "aztp:tool": "search", "aztp:callerTrustDomain": TD } },
    { "aztp:tool": "search", "aztp:callerTrustDomain": "other.org" },
    false,
  ],
  [
    "operators are ANDed (one fails)",
    { StringEquals: { "aztp:tool": "search" }, Bool: { "aztp:delegated": false } },
    { "aztp:tool": "search", "aztp:delegated": true },
    false,
  ],
  [
    "operators are ANDed (both hold)",
    { StringEquals: { "aztp:tool": "search" }, Bool: { "aztp:delegated": false } },
    { "aztp:tool": "search", "aztp:delegated": false },
    true,
  ],
  [
    "StringEquals reads a number as its text",
    { StringEquals: { "aztp:args.n": "5" } },
    { "aztp:args": { n: 5 } },
    true,
  ],
  [
    "StringEquals never matches an object",
    { StringEquals: { "aztp:args.n": "[object Object]" } },
    { "aztp:args": { n: {} } },
    false,
  ],
  [
    "StringEquals on a list: any element",
    { StringEquals: { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": [SERVER, AGENT] },
    true,
  ],
  ["StringEquals IDs across schemes", { StringEquals: { "aztp:caller": AGENT_AZTP } }, { "aztp:caller": AGENT }, true],
  [
    "StringEquals IDs, trust domain case",
    { StringEquals: { "aztp:caller": `aztp://EXAMPLE.org/workload/production/node/my-agent` } },
    { "aztp:caller": AGENT },
    true,
  ],
  // StringNotEquals
  [
    "StringNotEquals differs",
    { StringNotEquals: { "aztp:callerTrustDomain": TD } },
    { "aztp:callerTrustDomain": "evil.org" },
    true,
  ],
  [
    "StringNotEquals equal",
    { StringNotEquals: { "aztp:callerTrustDomain": TD } },
    { "aztp:callerTrustDomain": TD },
    false,
  ],
  [
    "StringNotEquals equal to one of the values",
    { StringNotEquals: { "aztp:tool": ["a", "b"] } },
    { "aztp:tool": "b" },
    false,
  ],
  ["StringNotEquals missing key holds (IAM)", { StringNotEquals: { "aztp:callerTrustDomain": TD } }, {}, true],
  [
    "StringNotEquals unreadable value",
    { StringNotEquals: { "aztp:args.x": "a" } },
    { "aztp:args": { x: { y: 1 } } },
    false,
  ],
  [
    "StringNotEquals on a list: no element",
    { StringNotEquals: { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": [SERVER] },
    true,
  ],
  [
    "StringNotEquals on a list: an element equals",
    { StringNotEquals: { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": [SERVER, AGENT] },
    false,
  ],
  // IgnoreCase
  ["StringEqualsIgnoreCase", { StringEqualsIgnoreCase: { "aztp:tool": "SEARCH" } }, { "aztp:tool": "Search" }, true],
  [
    "StringEqualsIgnoreCase mismatch",
    { StringEqualsIgnoreCase: { "aztp:tool": "SEARCH" } },
    { "aztp:tool": "find" },
    false,
  ],
  ["StringEqualsIgnoreCase missing", { StringEqualsIgnoreCase: { "aztp:tool": "SEARCH" } }, {}, false],
  [
    "StringNotEqualsIgnoreCase equal",
    { StringNotEqualsIgnoreCase: { "aztp:tool": "SEARCH" } },
    { "aztp:tool": "search" },
    false,
  ],
  [
    "StringNotEqualsIgnoreCase differs",
    { StringNotEqualsIgnoreCase: { "aztp:tool": "SEARCH" } },
    { "aztp:tool": "find" },
    true,
  ],
  // StringLike / StringNotLike
  ["StringLike *", { StringLike: { "aztp:tool": "sea*" } }, { "aztp:tool": "search" }, true],
  ["StringLike ?", { StringLike: { "aztp:tool": "s?arch" } }, { "aztp:tool": "search" }, true],
  ["StringLike mismatch", { StringLike: { "aztp:tool": "s?rch" } }, { "aztp:tool": "search" }, false],
  [
    "StringLike dot is literal",
    { StringLike: { "aztp:args.file": "*.txt" } },
    { "aztp:args": { file: "a_txt" } },
    false,
  ],
  ["StringLike missing", { StringLike: { "aztp:tool": "*" } }, {}, false],
  [
    "StringLike IDs across schemes",
    { StringLike: { "aztp:caller": `aztp://${TD}/workload/*` } },
    { "aztp:caller": AGENT },
    true,
  ],
  ["StringNotLike match", { StringNotLike: { "aztp:tool": "sea*" } }, { "aztp:tool": "search" }, false],
  ["StringNotLike mismatch", { StringNotLike: { "aztp:tool": "sea*" } }, { "aztp:tool": "find" }, true],
  ["StringNotLike missing holds (IAM)", { StringNotLike: { "aztp:tool": "sea*" } }, {}, true],
  // Numeric
  ["NumericEquals", { NumericEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: 5 } }, true],
  [
    "NumericEquals numeric-string policy value",
    { NumericEquals: { "aztp:args.n": "5.0" } },
    { "aztp:args": { n: 5 } },
    true,
  ],
  ["NumericEquals mismatch", { NumericEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: 6 } }, false],
  ["NumericEquals numeric-string context", { NumericEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: "5" } }, true],
  ["NumericEquals non-numeric context", { NumericEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: "five" } }, false],
  ["NumericEquals missing", { NumericEquals: { "aztp:args.n": 5 } }, {}, false],
  ["NumericNotEquals differs", { NumericNotEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: 6 } }, true],
  ["NumericNotEquals equal", { NumericNotEquals: { "aztp:args.n": 5 } }, { "aztp:args": { n: 5 } }, false],
  [
    "NumericNotEquals non-numeric context",
    { NumericNotEquals: { "aztp:args.n": 5 } },
    { "aztp:args": { n: "x" } },
    false,
  ],
  ["NumericLessThan", { NumericLessThan: { "aztp:args.n": 10 } }, { "aztp:args": { n: 9.5 } }, true],
  ["NumericLessThan at bound", { NumericLessThan: { "aztp:args.n": 10 } }, { "aztp:args": { n: 10 } }, false],
  ["NumericLessThan missing", { NumericLessThan: { "aztp:args.n": 10 } }, {}, false],
  [
    "NumericLessThanEquals at bound",
    { NumericLessThanEquals: { "aztp:args.n": 10 } },
    { "aztp:args": { n: 10 } },
    true,
  ],
  ["NumericLessThanEquals above", { NumericLessThanEquals: { "aztp:args.n": 10 } }, { "aztp:args": { n: 11 } }, false],
  ["NumericGreaterThan", { NumericGreaterThan: { "aztp:args.n": 10 } }, { "aztp:args": { n: 11 } }, true],
  ["NumericGreaterThan at bound", { NumericGreaterThan: { "aztp:args.n": 10 } }, { "aztp:args": { n: 10 } }, false],
  [
    "NumericGreaterThanEquals at bound",
    { NumericGreaterThanEquals: { "aztp:args.n": 10 } },
    { "aztp:args": { n: 10 } },
    true,
  ],
  [
    "NumericGreaterThanEquals below",
    { NumericGreaterThanEquals: { "aztp:args.n": 10 } },
    { "aztp:args": { n: -1 } },
    false,
  ],
  [
    "Numeric on epoch time",
    { NumericLessThan: { "aztp:epochTime": 2000000000 } },
    { "aztp:epochTime": 1790000000 },
    true,
  ],
  // Date
  [
    "DateLessThan",
    { DateLessThan: { "aztp:currentTime": "2030-01-01T00:00:00Z" } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  ["DateLessThan after", { DateLessThan: { "aztp:currentTime": "2026-01-01" } }, { "aztp:currentTime": T2026 }, false],
  ["DateLessThan missing", { DateLessThan: { "aztp:currentTime": "2030-01-01" } }, {}, false],
  [
    "DateLessThan garbage context",
    { DateLessThan: { "aztp:currentTime": "2030-01-01" } },
    { "aztp:currentTime": "soon" },
    false,
  ],
  [
    "DateLessThanEquals at bound",
    { DateLessThanEquals: { "aztp:currentTime": T2026 } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  [
    "DateGreaterThan",
    { DateGreaterThan: { "aztp:currentTime": "2026-01-01T00:00:00+02:00" } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  [
    "DateGreaterThan before",
    { DateGreaterThan: { "aztp:currentTime": "2027-01-01" } },
    { "aztp:currentTime": T2026 },
    false,
  ],
  [
    "DateGreaterThanEquals at bound",
    { DateGreaterThanEquals: { "aztp:currentTime": T2026 } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  [
    "DateEquals across zones",
    { DateEquals: { "aztp:currentTime": "2026-06-01T14:00:00+02:00" } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  ["DateEquals mismatch", { DateEquals: { "aztp:currentTime": "2026-06-01" } }, { "aztp:currentTime": T2026 }, false],
  [
    "DateNotEquals differs",
    { DateNotEquals: { "aztp:currentTime": "2026-06-01" } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  ["DateNotEquals equal", { DateNotEquals: { "aztp:currentTime": T2026 } }, { "aztp:currentTime": T2026 }, false],
  [
    "Date epoch seconds in the policy",
    { DateLessThan: { "aztp:currentTime": 1893456000 } },
    { "aztp:currentTime": T2026 },
    true,
  ],
  [
    "Date context as a Date object",
    { DateLessThan: { "aztp:currentTime": "2030-01-01" } },
    { "aztp:currentTime": new Date(T2026) },
    true,
  ],
  // Bool
  ["Bool true", { Bool: { "aztp:delegated": true } }, { "aztp:delegated": true }, true],
  ['Bool "false" string', { Bool: { "aztp:delegated": "false" } }, { "aztp:delegated": false }, true],
  ["Bool mismatch", { Bool: { "aztp:delegated": true } }, { "aztp:delegated": false }, false],
  ["Bool string context", { Bool: { "aztp:delegated": true } }, { "aztp:delegated": "TRUE" }, true],
  ["Bool non-boolean context", { Bool: { "aztp:delegated": true } }, { "aztp:delegated": 1 }, false],
  ["Bool missing", { Bool: { "aztp:delegated": false } }, {}, false],
  // Null
  ["Null true, key absent", { Null: { "aztp:callerParent": true } }, {}, true],
  ["Null true, key present", { Null: { "aztp:callerParent": "true" } }, { "aztp:callerParent": AGENT }, false],
  ["Null false, key present", { Null: { "aztp:callerParent": false } }, { "aztp:callerParent": AGENT }, true],
  ["Null false, key absent", { Null: { "aztp:callerParent": false } }, {}, false],
  ["Null true, value null", { Null: { "aztp:callerParent": true } }, { "aztp:callerParent": null }, true],
  // IfExists
  ["StringEqualsIfExists absent", { StringEqualsIfExists: { "aztp:callerParent": AGENT } }, {}, true],
  [
    "StringEqualsIfExists present, equal",
    { StringEqualsIfExists: { "aztp:callerParent": AGENT } },
    { "aztp:callerParent": AGENT },
    true,
  ],
  [
    "StringEqualsIfExists present, differs",
    { StringEqualsIfExists: { "aztp:callerParent": AGENT } },
    { "aztp:callerParent": SERVER },
    false,
  ],
  ["NumericLessThanIfExists absent", { NumericLessThanIfExists: { "aztp:args.limit": 10 } }, { "aztp:args": {} }, true],
  [
    "NumericLessThanIfExists present, too big",
    { NumericLessThanIfExists: { "aztp:args.limit": 10 } },
    { "aztp:args": { limit: 50 } },
    false,
  ],
  ["BoolIfExists absent", { BoolIfExists: { "aztp:delegated": false } }, {}, true],
  // ForAnyValue / ForAllValues on links
  [
    "ForAnyValue: one link matches",
    { "ForAnyValue:StringLike": { "aztp:callerLinks": "aztp://partner.net/*" } },
    { "aztp:callerLinks": [AGENT, "spiffe://partner.net/bot"] },
    true,
  ],
  [
    "ForAnyValue: no link matches",
    { "ForAnyValue:StringLike": { "aztp:callerLinks": "aztp://partner.net/*" } },
    { "aztp:callerLinks": [AGENT] },
    false,
  ],
  [
    "ForAnyValue: empty list",
    { "ForAnyValue:StringEquals": { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": [] },
    false,
  ],
  ["ForAnyValue: missing", { "ForAnyValue:StringEquals": { "aztp:callerLinks": AGENT } }, {}, false],
  ["ForAnyValue:...IfExists: missing", { "ForAnyValue:StringEqualsIfExists": { "aztp:callerLinks": AGENT } }, {}, true],
  [
    "ForAnyValue: scalar is a one-element set",
    { "ForAnyValue:StringEquals": { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": AGENT },
    true,
  ],
  [
    "ForAnyValue:StringNotEquals: one link differs",
    { "ForAnyValue:StringNotEquals": { "aztp:callerLinks": AGENT } },
    { "aztp:callerLinks": [AGENT, SERVER] },
    true,
  ],
  [
    "ForAllValues: every link in the trust domain",
    { "ForAllValues:StringLike": { "aztp:callerLinks": `aztp://${TD}/*` } },
    { "aztp:callerLinks": [AGENT, SERVER] },
    true,
  ],
  [
    "ForAllValues: one link outside",
    { "ForAllValues:StringLike": { "aztp:callerLinks": `aztp://${TD}/*` } },
    { "aztp:callerLinks": [AGENT, "spiffe://evil.org/x"] },
    false,
  ],
  [
    "ForAllValues: empty list holds (IAM)",
    { "ForAllValues:StringLike": { "aztp:callerLinks": `aztp://${TD}/*` } },
    { "aztp:callerLinks": [] },
    true,
  ],
  [
    "ForAllValues: missing holds (IAM)",
    { "ForAllValues:StringLike": { "aztp:callerLinks": `aztp://${TD}/*` } },
    {},
    true,
  ],
  [
    "ForAllValues with Null false requires the key",
    { "ForAllValues:StringLike": { "aztp:callerLinks": `aztp://${TD}/*` }, Null: { "aztp:callerLinks": false } },
    {},
    false,
  ],
  [
    "ForAllValues:StringNotLike: no link to evil.org",
    { "ForAllValues:StringNotLike": { "aztp:callerLinks": "aztp://evil.org/*" } },
    { "aztp:callerLinks": [AGENT, "spiffe://evil.org/x"] },
    false,
  ],
  // IpAddress
  ["IpAddress in range", { IpAddress: { "aztp:sourceIp": "10.0.0.0/8" } }, { "aztp:sourceIp": "10.1.2.3" }, true],
  [
    "IpAddress out of range",
    { IpAddress: { "aztp:sourceIp": "10.0.0.0/8" } },
    { "aztp:sourceIp": "192.168.1.1" },
    false,
  ],
  ["IpAddress single address", { IpAddress: { "aztp:sourceIp": "127.0.0.1" } }, { "aztp:sourceIp": "127.0.0.1" }, true],
  ["IpAddress IPv6", { IpAddress: { "aztp:sourceIp": "2001:db8::/32" } }, { "aztp:sourceIp": "2001:db8::1" }, true],
  ["IpAddress not an address", { IpAddress: { "aztp:sourceIp": "10.0.0.0/8" } }, { "aztp:sourceIp": "ten" }, false],
  ["IpAddress missing", { IpAddress: { "aztp:sourceIp": "10.0.0.0/8" } }, {}, false],
  [
    "NotIpAddress outside",
    { NotIpAddress: { "aztp:sourceIp": "10.0.0.0/8" } },
    { "aztp:sourceIp": "192.168.1.1" },
    true,
  ],
  ["NotIpAddress inside", { NotIpAddress: { "aztp:sourceIp": "10.0.0.0/8" } }, { "aztp:sourceIp": "10.9.9.9" }, false],
  // Argument fields
  [
    "args nested path",
    { NumericLessThanEquals: { "aztp:args.filter.limit": 100 } },
    { "aztp:args": { filter: { limit: 100 } } },
    true,
  ],
  [
    "args nested path, too big",
    { NumericLessThanEquals: { "aztp:args.filter.limit": 100 } },
    { "aztp:args": { filter: { limit: 101 } } },
    false,
  ],
  ["args array index", { StringEquals: { "aztp:args.items.1": "b" } }, { "aztp:args": { items: ["a", "b"] } }, true],
  ["args path through a scalar", { StringEquals: { "aztp:args.q.x": "a" } }, { "aztp:args": { q: "a" } }, false],
  ["args field flattened into the context", { StringEquals: { "aztp:args.q": "a" } }, { "aztp:args.q": "a" }, true],
  ["args never reads the prototype", { Null: { "aztp:args.constructor": true } }, { "aztp:args": {} }, true],
  [
    "args array field with StringLike",
    { StringLike: { "aztp:args.tags": "prod-*" } },
    { "aztp:args": { tags: ["dev", "prod-eu"] } },
    true,
  ],
  ["custom context keys pass through", { StringEquals: { "app:tenant": "acme" } }, { "app:tenant": "acme" }, true],
];

describe("policy: condition operators", () => {
  for (const [name, condition, context, want] of conditionCases) {
    it(`${name} -> ${want}`, () => {
      assert.equal(holds(condition, context), want);
    });
  }
});

describe("policy: parsePolicy rejects invalid documents, naming the field", () => {
  const st = (extra: Record<string, unknown>) => ({
    Version: "2012-10-17",
    Statement: [{ Effect: "Allow", Action: "x", ...extra }],
  });
  const cases: Array<[input: unknown, path: string]> = [
    [42, "(document)"],
    [[], "(document)"],
    ["{not json", "not valid JSON"],
    [{ Statement: [] }, "Version"],
    [{ Version: 1, Statement: [] }, "Version"],
    [{ Version: "1", Statement: [], Extra: true }, "Extra"],
    [{ Version: "1", Id: 3, Statement: [] }, "Id"],
    [{ Version: "1" }, "Statement"],
    [{ Version: "1", Statement: "Allow" }, "Statement"],
    [{ Version: "1", Statement: [{ Effect: "Allow", Action: "x" }, "nope"] }, "Statement[1]"],
    [
      { Version: "1", Statement: [{ Effect: "Allow", Action: "x" }, {}, { Effect: "allow", Action: "x" }] },
      "Statement[1].Effect",
    ],
    [
      {
        Version: "1",
        Statement: [
          { Effect: "Allow", Action: "x" },
          { Effect: "Allow", Action: "x" },
          { Effect: "allow", Action: "x" },
        ],
      },
      "Statement[2].Effect",
    ],
    [{ Version: "1", Statement: { Effect: "Permit", Action: "x" } }, "Statement.Effect"],
    [st({ Actions: "x" }), "Statement[0].Actions"],
    [st({ Sid: 1 }), "Statement[0].Sid"],
    [
      {
        Version: "1",
        Statement: [
          { Sid: "a", Effect: "Allow", Action: "x" },
          { Sid: "a", Effect: "Deny", Action: "x" },
        ],
      },
      "Statement[1].Sid",
    ],
    [{ Version: "1", Statement: [{ Effect: "Allow" }] }, "Statement[0].Action"],
    [st({ Action: [] }), "Statement[0].Action"],
    [st({ Action: ["x", 1] }), "Statement[0].Action[1]"],
    [st({ Action: "" }), "Statement[0].Action"],
    [st({ NotAction: "y" }), "Statement[0].NotAction"],
    [st({ Resource: 5 }), "Statement[0].Resource"],
    [st({ Resource: "a", NotResource: "b" }), "Statement[0].NotResource"],
    [st({ Principal: "*", NotPrincipal: "*" }), "Statement[0].NotPrincipal"],
    [st({ Principal: "example.org/agent" }), "Statement[0].Principal"],
    [st({ Principal: "spiffe://example.org/a//b" }), "Statement[0].Principal"],
    [st({ Principal: { AWS: "*" } }), "Statement[0].Principal.AWS"],
    [st({ Principal: {} }), "Statement[0].Principal"],
    [st({ Principal: { AZTP: [AGENT_AZTP, 3] } }), "Statement[0].Principal.AZTP[1]"],
    [st({ Condition: "x" }), "Statement[0].Condition"],
    [st({ Condition: { StringEqualz: { "aztp:tool": "a" } } }), "Statement[0].Condition.StringEqualz"],
    [
      st({ Condition: { "ForSomeValues:StringEquals": { "aztp:tool": "a" } } }),
      'Statement[0].Condition["ForSomeValues:StringEquals"]',
    ],
    [st({ Condition: { NullIfExists: { "aztp:tool": true } } }), "Statement[0].Condition.NullIfExists"],
    [st({ Condition: { "ForAnyValue:Null": { "aztp:tool": true } } }), 'Statement[0].Condition["ForAnyValue:Null"]'],
    [st({ Condition: { StringEquals: "x" } }), "Statement[0].Condition.StringEquals"],
    [st({ Condition: { StringEquals: {} } }), "Statement[0].Condition.StringEquals"],
    [
      st({ Condition: { StringEquals: { "aztp:calller": "a" } } }),
      'Statement[0].Condition.StringEquals["aztp:calller"]',
    ],
    [
      st({ Condition: { StringEquals: { "aztp:args.a..b": "a" } } }),
      'Statement[0].Condition.StringEquals["aztp:args.a..b"]',
    ],
    [st({ Condition: { StringEquals: { "aztp:tool": [] } } }), 'Statement[0].Condition.StringEquals["aztp:tool"]'],
    [
      st({ Condition: { StringEquals: { "aztp:tool": ["a", { b: 1 }] } } }),
      'Statement[0].Condition.StringEquals["aztp:tool"][1]',
    ],
    [st({ Condition: { StringEquals: { "aztp:tool": 5 } } }), 'Statement[0].Condition.StringEquals["aztp:tool"]'],
    [
      st({ Condition: { NumericLessThan: { "aztp:args.n": "ten" } } }),
      'Statement[0].Condition.NumericLessThan["aztp:args.n"]',
    ],
    [
      st({ Condition: { DateLessThan: { "aztp:currentTime": "tomorrow" } } }),
      'Statement[0].Condition.DateLessThan["aztp:currentTime"]',
    ],
    [
      st({ Condition: { DateLessThan: { "aztp:currentTime": "2030-01-01T00:00:00" } } }),
      'Statement[0].Condition.DateLessThan["aztp:currentTime"]',
    ],
    [st({ Condition: { Bool: { "aztp:delegated": "yes" } } }), 'Statement[0].Condition.Bool["aztp:delegated"]'],
    [
      st({ Condition: { IpAddress: { "aztp:sourceIp": "10.0.0.0/33" } } }),
      'Statement[0].Condition.IpAddress["aztp:sourceIp"]',
    ],
  ];
  for (const [input, path] of cases) {
    it(`rejects at ${path}`, () => {
      assert.throws(
        () => parsePolicy(input),
        (err: unknown) => {
          assert.ok(isAztpError(err, ErrorCodes.POLICY_INVALID), `wrong error: ${String(err)}`);
          assert.ok(
            err.message.includes(`${path} `) || err.message.endsWith(path),
            `message "${err.message}" should name ${path}`,
          );
          return true;
        },
      );
    });
  }

  it("evaluatePolicies and compilePolicies reject an invalid document too", () => {
    const bad = { Version: "1", Statement: [{ Effect: "Maybe", Action: "x" }] } as unknown as PolicyDocument;
    assert.throws(
      () => evaluatePolicies([bad], request()),
      (e: unknown) => isAztpError(e, ErrorCodes.POLICY_INVALID),
    );
    assert.throws(
      () => compilePolicies([bad]),
      (e: unknown) => isAztpError(e, ErrorCodes.POLICY_INVALID),
    );
  });

  it("accepts valid documents, JSON text included, and returns a frozen copy of the same shape", () => {
    const input = {
      Version: "2012-10-17",
      Id: "tools",
      Statement: {
        Sid: "S",
        Effect: "Allow",
        Principal: { AZTP: [AGENT_AZTP, `aztp://${TD}/workload/*`] },
        Action: ["tool:call"],
        Resource: "search",
        Condition: {
          "ForAllValues:StringLikeIfExists": { "aztp:callerLinks": ["aztp://*"] },
          Null: { "app:x": "false" },
        },
      },
    };
    const parsed = parsePolicy(JSON.stringify(input));
    assert.deepEqual(parsed, input);
    assert.ok(Object.isFrozen(parsed));
    assert.ok(Object.isFrozen(parsed.Statement));
    assert.throws(() => {
      (parsed as { Version: string }).Version = "x";
    }, TypeError);
    // Keys whose value is undefined are absent, as they would be in JSON.
    assert.deepEqual(parsePolicy({ Version: "1", Statement: [{ Sid: undefined, Effect: "Deny", Action: "x" }] }), {
      Version: "1",
      Statement: [{ Effect: "Deny", Action: "x" }],
    });
  });
});

describe("policy: policyCode", () => {
  const a: PolicyDocument = {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "S",
        Effect: "Allow",
        Action: ["tool:call"],
        Condition: { StringEquals: { "aztp:tool": "search", "aztp:callee": SERVER } },
      },
    ],
  };
  const reordered = JSON.parse(
    `{"Statement":[{"Condition":{"StringEquals":{"aztp:callee":"${SERVER}","aztp:tool":"search"}},"Action":["tool:call"],"Effect":"Allow","Sid":"S"}],"Version":"2012-10-17"}`,
  ) as PolicyDocument;

  it("is policy: and 12 hex digits, stable under key reordering", () => {
    assert.match(policyCode(a), /^policy:[0-9a-f]{12}$/);
    assert.equal(policyCode(reordered), policyCode(a));
  });

  it("is the SHA-256 of the RFC 8785 canonical JSON", () => {
    const d: PolicyDocument = { Version: "2012-10-17", Statement: { Effect: "Allow", Action: "x" } };
    const canonical = '{"Statement":{"Action":"x","Effect":"Allow"},"Version":"2012-10-17"}';
    const want = `policy:${createHash("sha256").update(canonical).digest("hex").slice(0, 12)}`;
    assert.equal(policyCode(d), want);
  });

  it("changes when the meaning changes", () => {
    const b = structuredClone(a) as { Statement: Array<{ Effect: string }> };
    b.Statement[0]!.Effect = "Deny";
    assert.notEqual(policyCode(b as unknown as PolicyDocument), policyCode(a));
  });

  it("rejects an invalid document", () => {
    assert.throws(
      () => policyCode({ Version: "1" } as unknown as PolicyDocument),
      (e: unknown) => isAztpError(e, ErrorCodes.POLICY_INVALID),
    );
  });
});

describe("policy: buildPolicyContext feeds the documented keys", () => {
  const ctx = buildPolicyContext({
    caller: AGENT_AZTP,
    callerParent: `aztp://${TD}/workload/production/node/parent`,
    callerLinks: [SERVER],
    callee: SERVER,
    tool: "search",
    args: { query: "q", filter: { limit: 5 } },
    time: Date.UTC(2026, 5, 1, 12, 0, 0),
    delegationDepth: 2,
  });

  it("sets each key in its documented form", () => {
    assert.deepEqual(ctx, {
      "aztp:caller": AGENT,
      "aztp:callerTrustDomain": TD,
      "aztp:callerPath": "/workload/production/node/my-agent",
      "aztp:callerParent": `spiffe://${TD}/workload/production/node/parent`,
      "aztp:callerLinks": [`spiffe://${TD}/workload/production/node/my-server`],
      "aztp:callee": `spiffe://${TD}/workload/production/node/my-server`,
      "aztp:calleeTrustDomain": TD,
      "aztp:tool": "search",
      "aztp:args": { query: "q", filter: { limit: 5 } },
      "aztp:currentTime": T2026.replace("Z", ".000Z"),
      "aztp:epochTime": Date.UTC(2026, 5, 1, 12, 0, 0) / 1000,
      "aztp:delegated": true,
      "aztp:delegationDepth": 2,
    });
  });

  it("drives a realistic policy", () => {
    const policy = doc(
      {
        Sid: "TeamTools",
        Effect: "Allow",
        Principal: { AZTP: `aztp://${TD}/workload/*` },
        Action: "tool:call",
        Resource: "search",
        Condition: {
          StringEquals: { "aztp:callerTrustDomain": TD, "aztp:callee": SERVER },
          NumericLessThanEquals: { "aztp:args.filter.limit": 10 },
          DateLessThan: { "aztp:currentTime": "2027-01-01T00:00:00Z" },
        },
      },
      {
        Sid: "NoDeepDelegation",
        Effect: "Deny",
        Action: "*",
        Condition: { NumericGreaterThan: { "aztp:delegationDepth": 2 } },
      },
    );
    assert.equal(evaluatePolicies([policy], request({ principal: AGENT_AZTP, context: ctx })).statement, "TeamTools");
    const deeper = { ...ctx, "aztp:delegationDepth": 3 };
    assert.equal(evaluatePolicies([policy], request({ context: deeper })).reason, "explicit_deny");
  });

  it("leaves out what was not given and defaults the time to now", () => {
    const before = Date.now();
    const minimal = buildPolicyContext({ caller: AGENT });
    assert.equal(minimal["aztp:callerParent"], undefined);
    assert.equal(minimal["aztp:callee"], undefined);
    assert.equal(minimal["aztp:args"], undefined);
    assert.deepEqual(minimal["aztp:callerLinks"], []);
    assert.equal(minimal["aztp:delegated"], false);
    const t = Date.parse(minimal["aztp:currentTime"] as string);
    assert.ok(t >= before - 1 && t <= Date.now() + 1);
  });

  it("rejects an invalid caller, time or depth", () => {
    assert.throws(
      () => buildPolicyContext({ caller: "not-an-id" }),
      (e: unknown) => isAztpError(e, ErrorCodes.SPIFFEID_SCHEME_INVALID),
    );
    assert.throws(
      () => buildPolicyContext({ caller: AGENT, time: Number.NaN }),
      (e: unknown) => isAztpError(e, ErrorCodes.ARGUMENT_INVALID),
    );
    assert.throws(
      () => buildPolicyContext({ caller: AGENT, delegationDepth: -1 }),
      (e: unknown) => isAztpError(e, ErrorCodes.ARGUMENT_INVALID),
    );
  });
});

describe("policy: compiled forms and caching", () => {
  it("compilePolicies decides as evaluatePolicies does", () => {
    const policies = [doc({ Sid: "D", Effect: "Deny", Action: "*", Resource: "rm" }, allowAll)];
    const compiled = compilePolicies(policies);
    assert.equal(compiled.statementCount, 2);
    for (const resource of ["rm", "search"]) {
      assert.deepEqual(compiled.evaluate(request({ resource })), evaluatePolicies(policies, request({ resource })));
    }
  });

  it("a list changed in place is recompiled", () => {
    const policies = [doc(allowAll)];
    assert.equal(evaluatePolicies(policies, request()).decision, "allow");
    policies.push(doc({ Effect: "Deny", Action: "*" }));
    assert.equal(evaluatePolicies(policies, request()).reason, "explicit_deny");
    policies[1] = doc();
    assert.equal(evaluatePolicies(policies, request()).reason, "allow");
  });

  it("rejects a request without string fields", () => {
    const bad = { principal: AGENT, action: 5, resource: "x" } as unknown as PolicyRequest;
    assert.throws(
      () => evaluatePolicies([doc(allowAll)], bad),
      (e: unknown) => isAztpError(e, ErrorCodes.ARGUMENT_INVALID),
    );
  });

  it("works without a context", () => {
    assert.equal(evaluatePolicies([doc(allowAll)], { principal: AGENT, action: "a", resource: "b" }).decision, "allow");
  });
});

describe("policy: astha.ai-compatible helpers", () => {
  const records = [
    { policyStatement: doc({ Sid: "Read", Effect: "Allow", Action: ["tool:list", "tool:call"] }) },
    {
      policyStatement: {
        Version: "2012-10-17",
        Statement: { Sid: "NoAdmin", Effect: "Deny", Action: "admin:*" },
      } as PolicyDocument,
    },
    { policyStatement: doc({ Sid: "Other", Effect: "Allow", NotAction: "admin:*" }) },
  ];

  it("getPolicyValue returns the first statement whose field equals the value", () => {
    assert.equal(getPolicyValue(records, "Sid", "NoAdmin")?.Effect, "Deny");
    assert.equal(getPolicyValue(records, "Effect", "Allow")?.Sid, "Read");
    assert.equal(getPolicyValue(records, "Action", "tool:call")?.Sid, "Read");
    assert.equal(getPolicyValue(records, "Sid", "Missing"), null);
    assert.equal(getPolicyValue([], "Sid", "Read"), null);
  });

  it("findStatements returns them all", () => {
    assert.deepEqual(
      findStatements(records, "Effect", "Allow").map((s) => s.Sid),
      ["Read", "Other"],
    );
  });

  const cases: Array<[statement: Statement, action: string, want: boolean]> = [
    [{ Effect: "Allow", Action: "tool:call" }, "tool:call", true],
    [{ Effect: "Allow", Action: "tool:call" }, "TOOL:CALL", true],
    [{ Effect: "Allow", Action: "tool:call" }, "tool:list", false],
    [{ Effect: "Allow", Action: ["tool:list", "tool:*"] }, "tool:call", true],
    [{ Effect: "Allow", Action: "tool:?all" }, "tool:call", true],
    [{ Effect: "Allow", Action: "tool.call" }, "toolxcall", false],
    [{ Effect: "Deny", Action: "tool:call" }, "tool:call", false],
    [{ Effect: "Deny", Action: "*" }, "anything", false],
    [{ Effect: "Allow", NotAction: "admin:*" }, "tool:call", true],
    [{ Effect: "Allow", NotAction: "admin:*" }, "admin:delete", false],
    [{ Effect: "Allow", Action: [1] } as unknown as Statement, "1", false],
  ];
  for (const [statement, action, want] of cases) {
    it(`isActionAllowed(${JSON.stringify(statement)}, ${action}) is ${want}`, () => {
      assert.equal(isActionAllowed(statement, action), want);
    });
  }
});
