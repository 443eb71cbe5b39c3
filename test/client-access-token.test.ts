/**
 * `client.accessToken({ resource, scopes })`: on the embedded authority, minted in this process by
 * the token endpoint's one scope rule; on a remote one (`baseUrl`), from `aztp serve`'s token
 * endpoint with a private_key_jwt signed by the identity's SVID key. Both verify offline from
 * the bundle with the one access-token verifier, as a resource server does.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Aztp } from "../src/client/aztp.js";
import { verifyAccessToken } from "../src/oauth/access-token.js";
import { signClientAssertion } from "../src/oauth/client-assertion.js";
import { generateWorkloadKey } from "../src/spiffe/csr.js";
import { rejectsWithCode, tempDir } from "./helpers/authority-util.js";
import { startServe } from "./helpers/serve-util.js";

const RESOURCE = "https://tools.example.test/mcp";

describe("client.accessToken", () => {
  it("embedded: the identity the client holds, scopes its policy allows, verified offline from the bundle", async (t) => {
    const client = new Aztp({ home: tempDir(t, "at-embedded"), trustDomain: "tokens.test" });
    t.after(() => client.close());
    const agent = await client.secureConnect({}, "agent");
    const authority = await client.authority();
    const issuers = [{ issuer: authority.oauthIssuer, bundles: authority.bundleSet(), trustDomains: ["tokens.test"] }];
    assert.equal(authority.oauthIssuer, "spiffe://tokens.test");

    const token = await client.accessToken({ resource: RESOURCE, scopes: ["tools:read", "tools:call"] });
    assert.equal(token.tokenType, "Bearer");
    assert.deepEqual(token.scopes, ["tools:read", "tools:call"], "no policy: as asked");
    assert.ok(token.expiresIn > 290 && token.expiresIn <= 300);
    const at = await verifyAccessToken(token.accessToken, { resource: RESOURCE, issuers });
    assert.equal(at.subject, agent.identity.spiffeId);
    assert.equal(at.expiry.getTime(), token.expiresAt.getTime());

    await client.attachPolicy(agent.identity.aztpId, {
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Action: "oauth:token",
          Resource: RESOURCE,
          Condition: { StringEquals: { "aztp:scope": "tools:read" } },
        },
      ],
    });
    const narrowed = await agent.identity.accessToken({ resource: RESOURCE, scopes: ["tools:read", "tools:call"] });
    assert.deepEqual(narrowed.scopes, ["tools:read"]);
    assert.deepEqual((await verifyAccessToken(narrowed.accessToken, { resource: RESOURCE, issuers })).scopes, [
      "tools:read",
    ]);
    await rejectsWithCode(
      () => client.accessToken({ resource: RESOURCE, scopes: ["tools:call"] }),
      "ERR_OAUTH_SCOPE_DENIED",
    );
    await rejectsWithCode(() => client.accessToken({ resource: "not a uri" }), "ERR_OAUTH_RESOURCE_INVALID");

    // Which identity: left out only while the client holds one.
    const other = await client.secureConnect({}, "other");
    await rejectsWithCode(() => client.accessToken({ resource: RESOURCE }), "ERR_ARGUMENT_INVALID", "two held");
    for (const identity of [other, other.identity, other.identity.aztpId, "other"]) {
      const named = await client.accessToken({ resource: RESOURCE, identity });
      assert.equal(
        (await verifyAccessToken(named.accessToken, { resource: RESOURCE, issuers })).subject,
        other.identity.spiffeId,
      );
    }
    await rejectsWithCode(() => client.accessToken({ resource: RESOURCE, identity: "nobody" }), "ERR_ARGUMENT_INVALID");

    await client.revokeIdentity(other.identity.aztpId, "test");
    await rejectsWithCode(
      () => client.accessToken({ resource: RESOURCE, identity: other }),
      "ERR_OAUTH_CLIENT_REVOKED",
      "a revoked identity gets no token",
    );
  });

  it("remote: from aztp serve's token endpoint, the request signed with the SVID key; its issuer as the metadata names it", async (t) => {
    const s = await startServe(t, { publicUrl: "https://aztp.example.test" });
    const client = new Aztp({
      baseUrl: s.url,
      apiKey: s.apiKey,
      trustBundle: s.bundlePem,
      home: tempDir(t, "at-remote"),
    });
    t.after(() => client.close());
    const agent = await client.secureConnect({}, "remote-agent");
    const authority = await client.authority();
    assert.equal(authority.oauthIssuer, "https://aztp.example.test", "the issuer of the metadata, not the base URL");

    const token = await client.accessToken({ resource: RESOURCE, scopes: ["tools:read"] });
    assert.deepEqual(token.scopes, ["tools:read"]);
    const at = await verifyAccessToken(token.accessToken, {
      resource: RESOURCE,
      issuers: [{ issuer: authority.oauthIssuer, bundles: authority.bundleSet(), trustDomains: [s.trustDomain] }],
      isRevoked: (id) => authority.isRevoked(id),
    });
    assert.equal(at.subject, agent.identity.spiffeId);
    assert.equal(at.clientId, agent.identity.spiffeId);

    // The service's refusals keep their codes; its API key scope holds for tokens too.
    await rejectsWithCode(() => client.accessToken({ resource: `${RESOURCE}#x` }), "ERR_OAUTH_RESOURCE_INVALID");
    const { key: narrow } = await s.newKey({ idPrefix: `spiffe://${s.trustDomain}/workload/production/node/else` });
    const scoped = new Aztp({
      baseUrl: s.url,
      apiKey: narrow,
      trustBundle: s.bundlePem,
      home: tempDir(t, "at-scoped"),
    });
    t.after(() => scoped.close());
    const authorityOfScoped = await scoped.authority();
    const wk = await generateWorkloadKey();
    const { record } = await authority.issueIdentity({ name: "keyed" }, wk.csr);
    const sign = (audience: string): string =>
      signClientAssertion({ clientId: record.spiffeId, audience, key: wk.privateKey });
    await rejectsWithCode(
      () => authorityOfScoped.accessToken(record.spiffeId, { resource: RESOURCE }, sign),
      "ERR_SERVE_API_KEY_SCOPE_DENIED",
      "an API key out of scope",
    );
    await rejectsWithCode(
      () => authorityOfScoped.accessToken(record.spiffeId, { resource: RESOURCE }, () => "x.y.z"),
      "ERR_OAUTH_ASSERTION_MALFORMED",
    );
    assert.ok((await authority.accessToken(record.spiffeId, { resource: RESOURCE }, sign)).accessToken.length > 0);
    await rejectsWithCode(
      () => agent.identity.accessToken({ resource: RESOURCE, scopes: ['a"b'] }),
      "ERR_OAUTH_SCOPE_INVALID",
    );
  });
});
