/**
 * The socket peer's credentials by the kernel's word (src/workload-api/peer-credentials.ts and
 * its addon, native/peer_credentials.c): over a real Unix socket, a connection from this process
 * and one from a child running as another uid (nobody, 65534) are each told apart by what the
 * kernel recorded at connect(), whatever the peer writes; a socket that is not a connected Unix
 * socket is refused with a stable code, never answered with made-up credentials.
 *
 * The addon must be built (`npm ci` builds it; `npm run build:native` in a checkout whose
 * node_modules is shared): here a missing addon fails the suite rather than skipping it, so a
 * broken build cannot pass CI. The other-uid cases need root (CI runs as root).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  accessSync,
  chmodSync,
  constants,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { createConnection, createServer, Socket, type Server, type ServerOpts } from "node:net";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, it } from "node:test";
import { isAztpError, ErrorCodes, type ErrorCode } from "../src/errors.js";
import {
  executablePath,
  peerCredentials,
  peerCredentialsSupport,
  peerFacts,
} from "../src/workload-api/peer-credentials.js";
import { matchesAll, parseSelector, type PeerFacts } from "../src/workload-api/selectors.js";
import { ROOT } from "./helpers/authority-util.js";

const NOBODY = 65534;
const NODE = realpathSync(process.execPath);
const isRoot = process.getuid?.() === 0;
/** tsx's loader by path: the copied module below sits outside this checkout's node_modules. */
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const NOT_ROOT = isRoot ? false : "needs root to run a child as uid 65534 (CI runs as root)";

/** A server on `path` whose next accepted connection each call of `next()` resolves. */
class Acceptor {
  readonly server: Server;
  private readonly waiting: Array<(socket: Socket) => void> = [];
  private readonly ready: Socket[] = [];
  readonly accepted: Socket[] = [];

  constructor(options: ServerOpts = {}) {
    this.server = createServer(options, (socket) => {
      this.accepted.push(socket);
      socket.on("error", () => {}); // a peer that goes away is not the test's failure
      const waiter = this.waiting.shift();
      if (waiter) waiter(socket);
      else this.ready.push(socket);
    });
  }

  next(): Promise<Socket> {
    const socket = this.ready.shift();
    return socket ? Promise.resolve(socket) : new Promise((resolve) => this.waiting.push(resolve));
  }

  /** The next connection, which `child` makes; fails at once if the child exits first. */
  from(child: ReturnType<typeof runNode>): Promise<Socket> {
    return Promise.race([
      this.next(),
      child.done.then(({ code, stderr }) => {
        throw new Error(`the child exited (${code}) before it connected: ${stderr}`);
      }),
    ]);
  }

  close(): void {
    for (const socket of this.accepted) socket.destroy();
    this.server.close();
  }
}

/** Runs `node -e program args...` as `uid`/`gid` (undefined: as this process) and collects its output. */
function runNode(
  program: string,
  args: string[],
  cwd: string,
  ids?: { uid: number; gid: number },
): { done: Promise<{ code: number | null; stdout: string; stderr: string }>; pid: number } {
  const child = spawn(process.execPath, ["-e", program, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stdio: ["ignore", "pipe", "pipe"],
    ...(ids ?? {}),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const done = once(child, "exit").then(([code]) => ({ code: code as number | null, stdout, stderr }));
  assert.ok(child.pid !== undefined, "the child did not start");
  return { done, pid: child.pid };
}

/**
 * A peer that lies: it connects, writes credentials it would like to have (root's, pid 1, a
 * trusted path), prints its real pid, and stays connected until the server closes.
 */
const LIAR = `
const net = require("node:net");
const socket = net.createConnection(process.argv[1], () => {
  socket.write(JSON.stringify({ pid: 1, uid: 0, gid: 0, path: "/usr/sbin/trusted" }) + "\\n");
  process.stdout.write(JSON.stringify({ pid: process.pid, uid: process.getuid(), gid: process.getgid() }));
});
socket.on("data", () => {});
socket.on("close", () => process.exit(0));
socket.on("error", (e) => { console.error(e.message); process.exit(2); });
`;

function assertCode(code: ErrorCode, rule?: string): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(isAztpError(error, code), `expected ${code}, got ${String((error as Error)?.stack ?? error)}`);
    if (rule !== undefined) assert.equal(error.rule, rule);
    return true;
  };
}

describe("the peer-credentials addon", () => {
  it("is built and loads here (npm ci builds it; in a shared-node_modules checkout, npm run build:native)", () => {
    assert.deepEqual(peerCredentialsSupport(), { available: true });
  });

  it("where it was not built: support says why and what to run, and a read is refused with a code", async () => {
    // The module in a package root of its own with no build/: what an install without a compiler has.
    const root = mkdtempSync(join(tmpdir(), "aztp-peercred-unbuilt-"));
    try {
      mkdirSync(join(root, "src", "workload-api"), { recursive: true });
      writeFileSync(join(root, "package.json"), JSON.stringify({ name: "unbuilt", type: "module" }));
      for (const file of ["errors.ts", "workload-api/peer-credentials.ts", "workload-api/selectors.ts"])
        copyFileSync(join(ROOT, "src", file), join(root, "src", file));
      const program = `
        import { Socket } from "node:net";
        import { peerCredentials, peerCredentialsSupport } from "./src/workload-api/peer-credentials.ts";
        let code;
        try { peerCredentials(new Socket()); } catch (e) { code = e.code; }
        console.log(JSON.stringify({ support: peerCredentialsSupport(), code }));`;
      const child = spawn(process.execPath, ["--import", TSX, "--input-type=module", "-e", program], {
        cwd: root,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
      const [exit] = (await once(child, "exit")) as [number | null];
      assert.equal(exit, 0, stderr);
      const seen = JSON.parse(stdout) as { support: { available: boolean; reason?: string }; code?: string };
      assert.equal(seen.support.available, false);
      assert.match(seen.support.reason ?? "", /the peer-credentials addon was not built .*npm rebuild aztp-client/);
      assert.equal(seen.code, ErrorCodes.WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("peer credentials over a real Unix socket", () => {
  let dir: string;
  let socketPath: string;
  let acceptor: Acceptor;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "aztp-peercred-"));
    // Another uid must reach the socket: the folder and the socket open to all (the test's only).
    chmodSync(dir, 0o777);
    socketPath = join(dir, "workload.sock");
    acceptor = new Acceptor();
    acceptor.server.listen(socketPath);
    await once(acceptor.server, "listening");
    chmodSync(socketPath, 0o777);
  });

  after(() => {
    acceptor?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a connection from this process: its pid, uid and gid, and the node executable it runs", async () => {
    const client = createConnection(socketPath);
    await once(client, "connect");
    const server = await acceptor.next();
    try {
      const expected = { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() };
      assert.deepEqual(peerCredentials(server), expected);
      assert.deepEqual(peerFacts(server), { ...expected, path: NODE });
      // The client's side of the same connection: its peer is the listener, this process too.
      assert.deepEqual(peerCredentials(client), expected);
    } finally {
      client.destroy();
    }
  });

  it(
    "a child running as nobody (65534): the kernel's uid, gid and pid, whatever it writes",
    { skip: NOT_ROOT },
    async () => {
      const child = runNode(LIAR, [socketPath], dir, { uid: NOBODY, gid: NOBODY });
      const server = await acceptor.from(child);
      // The peer's claim arrives before the credentials are read: it must change nothing.
      const claim = (await once(server, "data")) as [Buffer];
      assert.match(claim[0].toString(), /"uid":0/);
      const facts = peerFacts(server);
      server.end();
      const { code, stdout, stderr } = await child.done;
      assert.equal(code, 0, stderr);
      const real = JSON.parse(stdout) as { pid: number; uid: number; gid: number };
      assert.deepEqual(real, { pid: child.pid, uid: NOBODY, gid: NOBODY });
      assert.deepEqual(facts, { pid: child.pid, uid: NOBODY, gid: NOBODY, path: NODE });
    },
  );

  it("two connections, two processes: each gets its own pid, not the other's", { skip: NOT_ROOT }, async () => {
    const first = runNode(LIAR, [socketPath], dir, { uid: NOBODY, gid: NOBODY });
    const firstSocket = await acceptor.from(first);
    const second = runNode(LIAR, [socketPath], dir);
    const secondSocket = await acceptor.from(second);
    await Promise.all([once(firstSocket, "data"), once(secondSocket, "data")]);
    const a = peerCredentials(firstSocket);
    const b = peerCredentials(secondSocket);
    firstSocket.end();
    secondSocket.end();
    await Promise.all([first.done, second.done]);
    assert.deepEqual(a, { pid: first.pid, uid: NOBODY, gid: NOBODY });
    assert.deepEqual(b, { pid: second.pid, uid: 0, gid: 0 });
  });

  it(
    "selectors match what the kernel says: nobody's entry takes the child, root's entry this process",
    { skip: NOT_ROOT },
    async () => {
      const child = runNode(LIAR, [socketPath], dir, { uid: NOBODY, gid: NOBODY });
      const childSocket = await acceptor.from(child);
      await once(childSocket, "data");
      const childFacts = peerFacts(childSocket);
      childSocket.end();
      await child.done;
      const client = createConnection(socketPath);
      await once(client, "connect");
      const ownFacts = peerFacts(await acceptor.next());
      client.destroy();

      const entry = (...selectors: string[]) => selectors.map(parseSelector);
      const cases: Array<[string, ReturnType<typeof entry>, PeerFacts, boolean]> = [
        ["nobody + node, the child", entry("unix:uid:65534", `unix:path:${NODE}`), childFacts, true],
        ["nobody + node, this process", entry("unix:uid:65534", `unix:path:${NODE}`), ownFacts, false],
        ["root, this process", entry("unix:uid:0"), ownFacts, true],
        ["root, the child (it wrote uid 0)", entry("unix:uid:0"), childFacts, false],
        ["the path it wrote, the child", entry("unix:path:/usr/sbin/trusted"), childFacts, false],
      ];
      for (const [name, selectors, facts, expected] of cases)
        assert.equal(matchesAll(selectors, facts), expected, name);
    },
  );
});

/** Whether this kernel holds a socket's peer by a pidfd (SO_PEERPIDFD, Linux 6.5). */
function kernelHasPeerPidfd(): boolean {
  const [major = 0, minor = 0] = (/^(\d+)\.(\d+)/.exec(release()) ?? []).slice(1).map(Number);
  return major > 6 || (major === 6 && minor >= 5);
}

/** Whether this process may choose the next pid (root, and ns_last_pid writable). */
function canChoosePids(): boolean {
  try {
    accessSync(NS_LAST_PID, constants.W_OK);
    return isRoot;
  } catch {
    return false;
  }
}
const NS_LAST_PID = "/proc/sys/kernel/ns_last_pid";

describe("pid reuse: a peer's pid given to another program never names the peer's executable", () => {
  // A peer connects and exits; the kernel gives its pid to another program (chosen here through
  // ns_last_pid, as an attacker waits for it). /proc/<pid>/exe now names that program: peerFacts
  // must not. Against a program of another uid the owner check suffices; against one of the
  // peer's own uid only the pidfd does.
  const cases: Array<[string, { uid: number; gid: number }, string | false]> = [
    ["to a program of another uid (root)", { uid: 0, gid: 0 }, false],
    [
      "to a program of the peer's own uid (nobody)",
      { uid: NOBODY, gid: NOBODY },
      kernelHasPeerPidfd() ? false : "needs SO_PEERPIDFD (Linux 6.5) to tell the peer from its pid's next owner",
    ],
  ];
  for (const [name, owner, skip] of cases) {
    const why = !canChoosePids() ? "needs root and a writable ns_last_pid to hand a pid on" : skip;
    it(name, { skip: why }, async (t) => {
      const dir = mkdtempSync(join(tmpdir(), "aztp-peercred-reuse-"));
      chmodSync(dir, 0o777);
      const program = join(dir, "other-program");
      copyFileSync("/bin/sleep", program);
      chmodSync(program, 0o755);
      // Paused, half-open: the connection keeps its descriptor after the peer has gone.
      const acceptor = new Acceptor({ pauseOnConnect: true, allowHalfOpen: true });
      const socketPath = join(dir, "s.sock");
      acceptor.server.listen(socketPath);
      await once(acceptor.server, "listening");
      chmodSync(socketPath, 0o777);
      const exitOnConnect = `require("node:net").createConnection(process.argv[1], () => process.exit(0));`;
      try {
        for (let attempt = 0; attempt < 10; attempt++) {
          const peer = runNode(exitOnConnect, [socketPath], dir, { uid: NOBODY, gid: NOBODY });
          const server = await acceptor.from(peer);
          assert.equal((await peer.done).code, 0);
          writeFileSync(NS_LAST_PID, String(peer.pid - 1));
          const next = spawn(program, ["30"], { stdio: "ignore", ...owner });
          await once(next, "spawn");
          try {
            if (next.pid !== peer.pid) continue; // another process took the pid first: again
            assert.equal(executablePath(peer.pid), realpathSync(program), "the pid now names the other program");
            assert.deepEqual(peerFacts(server), { pid: peer.pid, uid: NOBODY, gid: NOBODY, path: undefined });
            return;
          } finally {
            next.kill();
            server.destroy();
          }
        }
        t.skip("another process took the pid each time");
      } finally {
        acceptor.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("sockets that have no Unix peer are refused with a stable code", () => {
  let tcp: Server;
  let client: Socket;
  let accepted: Socket;

  before(async () => {
    tcp = createServer();
    const connection = once(tcp, "connection");
    tcp.listen(0, "127.0.0.1");
    await once(tcp, "listening");
    const address = tcp.address();
    assert.ok(address !== null && typeof address === "object");
    client = createConnection(address.port, "127.0.0.1");
    await once(client, "connect");
    [accepted] = (await connection) as [Socket];
  });

  after(() => {
    client?.destroy();
    accepted?.destroy();
    tcp?.close();
  });

  const cases: Array<[string, () => Socket, string]> = [
    // The kernel answers SO_PEERCRED on TCP too, with pid 0 and uid/gid -1: never a caller.
    ["a TCP loopback connection (accepted side)", () => accepted, "unix"],
    ["a TCP loopback connection (connecting side)", () => client, "unix"],
    ["a socket never connected", () => new Socket(), "fd"],
    [
      "a destroyed socket",
      () => {
        const s = new Socket();
        s.destroy();
        return s;
      },
      "fd",
    ],
  ];
  for (const [name, make, rule] of cases) {
    it(`${name}: ERR_WORKLOAD_API_PEER_SOCKET_INVALID (rule ${rule})`, () => {
      const socket = make();
      assert.throws(() => peerCredentials(socket), assertCode(ErrorCodes.WORKLOAD_API_PEER_SOCKET_INVALID, rule));
      assert.throws(() => peerFacts(socket), assertCode(ErrorCodes.WORKLOAD_API_PEER_SOCKET_INVALID, rule));
    });
  }

  it("a Unix connection destroyed after it was read: refused, not the old answer", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-peercred-"));
    const acceptor = new Acceptor();
    try {
      acceptor.server.listen(join(dir, "s.sock"));
      await once(acceptor.server, "listening");
      const unixClient = createConnection(join(dir, "s.sock"));
      await once(unixClient, "connect");
      const server = await acceptor.next();
      assert.equal(peerCredentials(server).pid, process.pid); // the passing twin
      server.destroy();
      unixClient.destroy();
      assert.throws(() => peerCredentials(server), assertCode(ErrorCodes.WORKLOAD_API_PEER_SOCKET_INVALID, "fd"));
    } finally {
      acceptor.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("executablePath", () => {
  it("names this process's executable", () => {
    assert.equal(executablePath(process.pid), NODE);
  });

  const none: Array<[string, number]> = [
    ["pid 0", 0],
    ["a negative pid", -1],
    ["a fractional pid", 1.5],
    ["NaN", Number.NaN],
    ["a pid above the kernel's maximum", 2 ** 22 + 1],
  ];
  for (const [name, pid] of none) it(`${name}: undefined`, () => assert.equal(executablePath(pid), undefined));

  it("a process that has exited: undefined", async () => {
    const child = runNode("", [], tmpdir());
    await child.done;
    assert.equal(executablePath(child.pid), undefined);
  });

  it("a process whose executable was deleted since it started: undefined (the path names nothing it runs)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "aztp-peercred-exe-"));
    const copy = join(dir, "sleep-copy");
    copyFileSync("/bin/sleep", copy);
    chmodSync(copy, 0o755);
    const child = spawn(copy, ["30"], { stdio: "ignore" });
    try {
      await once(child, "spawn");
      assert.ok(child.pid !== undefined);
      assert.equal(executablePath(child.pid), realpathSync(copy)); // the passing twin
      rmSync(copy);
      assert.equal(executablePath(child.pid), undefined);
    } finally {
      child.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
