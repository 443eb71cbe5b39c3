/** SPIFFE_ENDPOINT_SOCKET's syntax (src/workload-api/address.ts), table-driven: what it names, and each rule it refuses by. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseWorkloadApiAddress } from "../src/workload-api/address.js";

describe("Workload API addresses", () => {
  const good: Array<[string, unknown]> = [
    ["unix:///run/spire/agent.sock", { transport: "unix", path: "/run/spire/agent.sock" }],
    ["unix:///tmp/a%20b.sock", { transport: "unix", path: "/tmp/a b.sock" }],
    ["tcp://127.0.0.1:8081", { transport: "tcp", host: "127.0.0.1", port: 8081 }],
    ["tcp://[::1]:8081", { transport: "tcp", host: "::1", port: 8081 }],
  ];
  for (const [text, expected] of good)
    it(`reads ${text}`, () => assert.deepEqual(parseWorkloadApiAddress(text), expected));

  const bad: Array<[string, RegExp]> = [
    ["", /give unix:\/\/\/path or tcp:\/\/ip:port/],
    ["/run/agent.sock", /no URL/],
    ["unix://host/run/agent.sock", /unix:\/\/\/absolute\/path/],
    ["unix:///", /unix:\/\/\/absolute\/path/],
    ["unix:///run/agent.sock?x=1", /no query/],
    ["tcp://localhost:8081", /IP address, not a host name/],
    ["tcp://127.0.0.1", /tcp:\/\/ip:port/],
    ["tcp://127.0.0.1:8081/path", /no path/],
    ["http://127.0.0.1:8081", /scheme must be unix or tcp/],
  ];
  for (const [text, why] of bad)
    it(`refuses ${JSON.stringify(text)} with ERR_ARGUMENT_INVALID, saying why`, () =>
      assert.throws(
        () => parseWorkloadApiAddress(text),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "ERR_ARGUMENT_INVALID");
          assert.match(e.message, why);
          return true;
        },
      ));
});
