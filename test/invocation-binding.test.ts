// The access-token binding (WIMSE `ath`): a token bound to one OAuth access token is refused
// with any other, or with none.
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { MemoryReplayCache, signInvocation, tokenHash, Trust, verifyInvocation } from "../src/invocation/index.js";
import { newDomain } from "./helpers/invocation-fixtures.js";

test("ath binds an invocation to the access token it travels with", async (t) => {
  const d = await newDomain();
  t.after(() => {
    d.client.close();
    rmSync(d.home, { recursive: true, force: true });
  });
  const caller = await d.identity("ath-caller");
  const server = await d.identity("ath-server");
  const trust = new Trust(d.authority, { revocation: d.authority });
  const args = { q: 1 };
  const sign = (accessToken?: string) =>
    signInvocation(caller, {
      audience: server.spiffeId,
      tool: "t",
      args,
      ...(accessToken ? { accessTokenHash: tokenHash(accessToken) } : {}),
    });
  const verify = (token: string, accessToken?: string) =>
    verifyInvocation(token, {
      audience: server.spiffeId,
      tool: "t",
      args,
      trust,
      replay: new MemoryReplayCache(),
      ...(accessToken ? { accessToken } : {}),
    });

  const cases: Array<[string, string | undefined, string | undefined, string | null]> = [
    ["bound, same access token", "at-1", "at-1", null],
    ["bound, another access token", "at-1", "at-2", "ERR_INVOCATION_ACCESS_TOKEN_MISMATCH"],
    ["bound, no access token on the call", "at-1", undefined, "ERR_INVOCATION_ACCESS_TOKEN_MISMATCH"],
    ["unbound, call with an access token", undefined, "at-1", null],
    ["unbound, no access token", undefined, undefined, null],
  ];
  for (const [name, boundTo, presented, code] of cases) {
    const attempt = verify(sign(boundTo), presented);
    if (code === null) await assert.doesNotReject(attempt, name);
    else await assert.rejects(attempt, (e: { code?: string }) => e.code === code, name);
  }
});
