/**
 * Workload selectors (src/workload-api/selectors.ts): SPIRE's syntax parsed strictly, and an
 * entry matching a caller only when all of its selectors do.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { formatSelector, matchesAll, parseSelector, type PeerFacts } from "../src/workload-api/selectors.js";
import { isAztpError } from "../src/errors.js";

describe("selectors", () => {
  const good: Array<[string, unknown]> = [
    ["unix:uid:1000", { type: "unix", key: "uid", value: 1000 }],
    ["unix:uid:0", { type: "unix", key: "uid", value: 0 }],
    ["unix:gid:4294967294", { type: "unix", key: "gid", value: 4294967294 }],
    ["unix:path:/usr/bin/python3", { type: "unix", key: "path", value: "/usr/bin/python3" }],
    ["unix:path:/opt/a:b/tool", { type: "unix", key: "path", value: "/opt/a:b/tool" }],
  ];
  for (const [text, parsed] of good) {
    it(`parses ${text}, and writes it back the same`, () => {
      assert.deepEqual(parseSelector(text), parsed);
      assert.equal(formatSelector(parseSelector(text)), text);
    });
  }

  const bad: Array<[string, RegExp]> = [
    ["unix:uid", /<type>:<key>:<value>/],
    ["uid:1000", /<type>:<key>:<value>/],
    ["k8s:ns:default", /type "k8s" is not supported/],
    ["unix:user:alice", /key "user" is not supported/],
    ["unix:uid:-1", /decimal number/],
    ["unix:uid:01000", /decimal number/],
    ["unix:uid:1e3", /decimal number/],
    ["unix:uid:4294967295", /decimal number/],
    ["unix:uid: 1000", /decimal number/],
    ["unix:gid:", /decimal number/],
    ["unix:path:usr/bin/python3", /absolute/],
    ["unix:path:/usr/bin/../bin/python3", /normalised/],
    ["unix:path:/usr/bin/", /normalised/],
    ["unix:path:/usr/bin/py\0thon", /absolute, normalised/],
  ];
  for (const [text, why] of bad) {
    it(`refuses ${JSON.stringify(text)} with ERR_ARGUMENT_INVALID`, () => {
      assert.throws(
        () => parseSelector(text),
        (e) => isAztpError(e, "ERR_ARGUMENT_INVALID") && why.test((e as Error).message),
      );
    });
  }

  it("an entry matches a caller when every selector does, and an entry without selectors matches nobody", () => {
    const caller: PeerFacts = { uid: 1000, gid: 100, pid: 4242, path: "/usr/bin/python3" };
    const unreadable: PeerFacts = { uid: 1000, gid: 100, pid: 4243 };
    const cases: Array<[string[], PeerFacts, boolean]> = [
      [["unix:uid:1000"], caller, true],
      [["unix:uid:1000", "unix:gid:100"], caller, true],
      [["unix:uid:1000", "unix:path:/usr/bin/python3"], caller, true],
      [["unix:uid:1000", "unix:gid:101"], caller, false],
      [["unix:uid:1001"], caller, false],
      [["unix:path:/usr/bin/python3.11"], caller, false],
      [["unix:uid:1000", "unix:path:/usr/bin/python3"], unreadable, false],
      [["unix:uid:1000"], unreadable, true],
      [[], caller, false],
    ];
    for (const [selectors, facts, expected] of cases)
      assert.equal(
        matchesAll(selectors.map(parseSelector), facts),
        expected,
        `${selectors.join(" ")} for pid ${facts.pid}`,
      );
  });
});
