/**
 * Who is on the other end of a Unix socket, by the kernel's word: the uid, gid and pid the
 * kernel recorded when the peer called connect() (SO_PEERCRED), and the executable that pid runs
 * (`/proc/<pid>/exe`). Nothing the peer sends can change them, so they are the only facts
 * workload attestation matches selectors against (selectors.ts).
 *
 * Node has no API for SO_PEERCRED, so a small N-API addon reads it (native/peer_credentials.c,
 * built at install into build/Release/ by scripts/build-native.mjs). Without it (no compiler at
 * install, not Linux) `peerCredentialsSupport()` says why, and an endpoint must refuse to start
 * rather than attest by anything weaker.
 *
 * Limits, as SPIRE's unix attestor has them: a uid is only as strong as the machine's user
 * separation; a peer in a user namespace that does not map its uid shows as the overflow uid
 * (65534); a peer whose pid this process's pid namespace cannot see is refused (no pid, no
 * path).
 */
import { readFileSync, readlinkSync } from "node:fs";
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { AztpError, ErrorCodes } from "../errors.js";
import type { PeerFacts } from "./selectors.js";

/** What the kernel recorded about a Unix socket's peer when it connected. */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export type PeerCredentialsSupport =
  { readonly available: true } | { readonly available: false; readonly reason: string };

interface Addon {
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  /** The peer's executable, held by a pidfd across the read; throws ERR_PEER_PIDFD_UNSUPPORTED before Linux 6.5. */
  peerExecutable?(fd: number): string | null;
}

// The package root is two folders up from both src/workload-api/ (tsx) and dist/workload-api/.
const ADDON_PATH = fileURLToPath(new URL("../../build/Release/peer_credentials.node", import.meta.url));
const REBUILD =
  "run `npm rebuild aztp-client` (in this checkout: `npm run build:native`) with a C compiler, make and python3";

let loaded: { readonly addon: Addon } | { readonly reason: string } | undefined;

function load(): { readonly addon: Addon } | { readonly reason: string } {
  if (loaded !== undefined) return loaded;
  if (process.platform !== "linux") {
    loaded = { reason: `peer credentials are read with SO_PEERCRED, which is Linux's (this is ${process.platform})` };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as Partial<Addon>;
    if (typeof addon.peerCredentials !== "function") throw new Error("it exports no peerCredentials function");
    loaded = { addon: addon as Addon };
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND";
    loaded = {
      reason: missing
        ? `the peer-credentials addon was not built (no ${ADDON_PATH}): ${REBUILD}`
        : `the peer-credentials addon at ${ADDON_PATH} does not load (${(error as Error).message}): ${REBUILD}`,
    };
  }
  return loaded;
}

/** Whether peer credentials can be read here; when not, a sentence saying why and what to do. */
export function peerCredentialsSupport(): PeerCredentialsSupport {
  const state = load();
  return "addon" in state ? { available: true } : { available: false, reason: state.reason };
}

/**
 * The kernel's record of the peer of a connected Unix socket (taken at its connect(), never read
 * from what it sends). Throws ERR_WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE without the addon,
 * ERR_WORKLOAD_API_PEER_SOCKET_INVALID for a socket that is not a connected Unix socket (`rule`:
 * `fd`, `unix`, `peer`), ERR_WORKLOAD_API_PEER_CREDENTIALS_FAILED when the kernel refuses.
 */
export function peerCredentials(socket: Socket): PeerCredentials {
  return read(socket).credentials;
}

function read(socket: Socket): { addon: Addon; fd: number; credentials: PeerCredentials } {
  const state = load();
  if (!("addon" in state)) throw new AztpError(ErrorCodes.WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE, state.reason);
  const fd = socketFd(socket);
  if (fd === undefined)
    throw new AztpError(
      ErrorCodes.WORKLOAD_API_PEER_SOCKET_INVALID,
      "the socket has no file descriptor (destroyed, closed, or not connected yet): its peer cannot be read",
      { rule: "fd" },
    );
  let credentials: { pid: number; uid: number; gid: number };
  try {
    credentials = state.addon.peerCredentials(fd);
  } catch (error) {
    throw fromAddon(error);
  }
  return { addon: state.addon, fd, credentials: { pid: credentials.pid, uid: credentials.uid, gid: credentials.gid } };
}

/**
 * The executable `pid` runs, as `/proc/<pid>/exe` names it; undefined when it cannot be read (the
 * process is gone, or it is another user's and this process may not look), or when the file it
 * runs has been deleted or replaced since it started (the kernel then appends " (deleted)": the
 * path names another file now).
 *
 * The pid-reuse limit: a pid is only a number. If the process that had it has exited by the
 * time this reads /proc, the kernel may have given the pid to another process, and this names
 * that process's executable. `peerFacts` does not use this for a socket's peer where the kernel
 * can hold the peer itself (SO_PEERPIDFD, Linux 6.5): there the peer's executable is read while a
 * pidfd holds it, and not at all once it has exited. What no kernel interface closes: a process
 * that exec()s after connecting is named by its new executable (SPIRE's unix attestor has the
 * same limit), so a `unix:path` selector says what the caller runs now, not what connected.
 */
export function executablePath(pid: number): string | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    return usablePath(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return undefined;
  }
}

/** Everything attestation matches selectors against, all from the kernel. */
export function peerFacts(socket: Socket): PeerFacts {
  const { addon, fd, credentials } = read(socket);
  const { pid, uid, gid } = credentials;
  const pinned = pinnedExecutable(addon, fd);
  if (pinned !== "unsupported") return { pid, uid, gid, path: pinned };
  // Without a pidfd, the pid is checked after the read instead: a process of another uid or gid
  // at that pid now is not the peer, and the path read may be its. (A process of the peer's own
  // uid and gid that took the pid is not told apart: that needs the pidfd.)
  const path = executablePath(pid);
  return { pid, uid, gid, path: path !== undefined && processOwnedBy(pid, uid, gid) ? path : undefined };
}

/** The peer's executable read under a pidfd; "unsupported" where the kernel has no SO_PEERPIDFD. */
function pinnedExecutable(addon: Addon, fd: number): string | undefined | "unsupported" {
  if (typeof addon.peerExecutable !== "function") return "unsupported";
  let path: string | null;
  try {
    path = addon.peerExecutable(fd);
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === "ERR_PEER_PIDFD_UNSUPPORTED") return "unsupported";
    throw fromAddon(error);
  }
  return path === null ? undefined : usablePath(path);
}

/** A path /proc gave, unless its file was deleted or replaced since the process started (the kernel appends " (deleted)"). */
function usablePath(path: string): string | undefined {
  return path.startsWith("/") && !path.endsWith(" (deleted)") ? path : undefined;
}

/** Whether /proc/<pid>/status gives the process `uid` and `gid` as its effective ids (what SO_PEERCRED records). */
function processOwnedBy(pid: number, uid: number, gid: number): boolean {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return false;
  }
  const effective = (name: string): number | undefined => {
    const fields = new RegExp(`^${name}:\\s+(\\d+)\\s+(\\d+)`, "m").exec(status);
    return fields === null ? undefined : Number(fields[2]);
  };
  return effective("Uid") === uid && effective("Gid") === gid;
}

/** The socket's file descriptor, from libuv's handle: Node exposes it nowhere else. */
function socketFd(socket: Socket): number | undefined {
  if (socket.destroyed) return undefined;
  const handle = (socket as unknown as { readonly _handle?: { readonly fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

const SOCKET_RULES: Readonly<Record<string, string>> = {
  ERR_PEER_CREDENTIALS_NOT_SOCKET: "fd",
  ERR_PEER_CREDENTIALS_ARGUMENT: "fd",
  ERR_PEER_CREDENTIALS_NOT_UNIX: "unix",
  ERR_PEER_CREDENTIALS_NONE: "peer",
};

function fromAddon(error: unknown): AztpError {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === "string" && code in SOCKET_RULES)
    return new AztpError(ErrorCodes.WORKLOAD_API_PEER_SOCKET_INVALID, `the peer cannot be read: ${message}`, {
      cause: error,
      rule: SOCKET_RULES[code] as string,
    });
  if (code === "ERR_PEER_CREDENTIALS_UNSUPPORTED")
    return new AztpError(ErrorCodes.WORKLOAD_API_PEER_CREDENTIALS_UNAVAILABLE, message, { cause: error });
  return new AztpError(
    ErrorCodes.WORKLOAD_API_PEER_CREDENTIALS_FAILED,
    `the kernel did not give the peer's credentials: ${message}`,
    { cause: error },
  );
}
