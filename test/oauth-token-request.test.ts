/**
 * What a token request may obtain (oauth/token-request.ts): the resource indicator's form
 * (RFC 8707) and the one scope rule, the client's own policies asked per scope through the one
 * policy request (action `oauth:token`).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ErrorCodes } from "../src/errors.js";
import { grantScopes, parseResource, parseScopeParam } from "../src/oauth/token-request.js";
import { parsePolicy, type PolicyDocument } from "../src/policy/policy.js";

const CLIENT = "spiffe://example.org/workload/production/node/agent";
const R = "https://tools.example.org/mcp";

describe("the token request", () => {
  it("resource: an absolute URI without a fragment, required", () => {
    for (const ok of [
      R,
      "https://tools.example.org",
      "spiffe://example.org/workload/production/node/tools",
      "urn:example:tools",
    ])
      assert.equal(parseResource(ok), ok);
    const bad: Array<[string | undefined, string]> = [
      [undefined, "missing"],
      ["", "missing"],
      ["/mcp", "malformed"],
      ["tools.example.org/mcp", "malformed"],
      [`${R}#frag`, "malformed"],
      ["https://tools.example.org/a b", "malformed"],
      [`https://x.org/${"a".repeat(2100)}`, "malformed"],
    ];
    for (const [value, rule] of bad)
      assert.throws(() => parseResource(value), { code: ErrorCodes.OAUTH_RESOURCE_INVALID, rule }, String(value));
  });

  it("scope: scope tokens separated by single spaces", () => {
    assert.deepEqual(parseScopeParam(undefined), []);
    assert.deepEqual(parseScopeParam("a b:c a"), ["a", "b:c"]);
    for (const bad of ["a  b", " a", 'a"b', "a\\b", "é"])
      assert.throws(() => parseScopeParam(bad), { code: ErrorCodes.OAUTH_SCOPE_INVALID }, bad);
  });

  it("scopes: as asked without a policy, bounded by scopes_supported; none asked, what scopes_supported offers; narrowed per scope and resource by the client's oauth:token policy", () => {
    const none: PolicyDocument[] = [];
    assert.deepEqual(grantScopes({ clientId: CLIENT, resource: R, scopes: ["a", "b"], policies: none }), ["a", "b"]);
    assert.deepEqual(grantScopes({ clientId: CLIENT, resource: R, scopes: [], policies: none }), []);
    assert.deepEqual(
      grantScopes({ clientId: CLIENT, resource: R, scopes: [], policies: none, scopesSupported: ["a", "b"] }),
      ["a", "b"],
      "none asked: the default is what the server offers (the MCP SDK 1.x's client_credentials providers send no scope)",
    );
    assert.deepEqual(
      grantScopes({ clientId: CLIENT, resource: R, scopes: ["a", "b"], policies: none, scopesSupported: ["b"] }),
      ["b"],
    );
    assert.throws(
      () => grantScopes({ clientId: CLIENT, resource: R, scopes: ["a"], policies: none, scopesSupported: ["b"] }),
      { code: ErrorCodes.OAUTH_SCOPE_DENIED },
    );

    const policy = [
      parsePolicy({
        Version: "2012-10-17",
        Statement: [
          { Effect: "Allow", Action: "oauth:token", Resource: "https://tools.example.org/*" },
          {
            Effect: "Deny",
            Action: "oauth:token",
            Resource: "*",
            Condition: { StringLike: { "aztp:scope": "admin*" } },
          },
        ],
      }),
    ];
    const ask = (scopes: string[], resource = R) =>
      grantScopes({ clientId: CLIENT, resource, scopes, policies: policy });
    assert.deepEqual(ask(["read", "admin:all", "write"]), ["read", "write"]);
    assert.deepEqual(ask([]), [], "an unscoped token: the Allow holds without aztp:scope");
    assert.throws(() => ask(["admin"]), { code: ErrorCodes.OAUTH_SCOPE_DENIED });
    assert.throws(() => ask(["read"], "https://billing.example.org/mcp"), { code: ErrorCodes.OAUTH_SCOPE_DENIED });
    assert.throws(() => ask([], "https://billing.example.org/mcp"), { code: ErrorCodes.OAUTH_RESOURCE_DENIED });
    // A request naming no scope gets the default (RFC 6749 §3.3): the offered scopes the policy
    // allows; none of them allowed, an unscoped token if the resource is, else invalid_target.
    const offered = (resource = R) =>
      grantScopes({ clientId: CLIENT, resource, scopes: [], policies: policy, scopesSupported: ["read", "admin:all"] });
    assert.deepEqual(offered(), ["read"]);
    assert.throws(() => offered("https://billing.example.org/mcp"), { code: ErrorCodes.OAUTH_RESOURCE_DENIED });
    const adminOnly = (resource = R) =>
      grantScopes({ clientId: CLIENT, resource, scopes: [], policies: policy, scopesSupported: ["admin:all"] });
    assert.deepEqual(adminOnly(), [], "no offered scope allowed, the resource is: an unscoped token");
    // A policy about something else (who may call this identity) grants it no token.
    const callee = [
      parsePolicy({ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "tool:call", Resource: "*" }] }),
    ];
    assert.throws(() => grantScopes({ clientId: CLIENT, resource: R, scopes: ["read"], policies: callee }), {
      code: ErrorCodes.OAUTH_SCOPE_DENIED,
    });
  });
});
