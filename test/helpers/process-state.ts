/**
 * What a child process is doing, read from Linux's /proc: lets a test act at the moment a
 * child waits for its stdin instead of after a fixed sleep.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { until } from "./mcp-util.js";

/** The read(2) system call's number, by architecture. */
const READ: Record<string, string> = { x64: "0", arm64: "63" };

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** True when process `pid` is blocked in read(2) on fd 0, or its event loop watches fd 0. */
function waitsForStdin(pid: number, readNr: string): boolean {
  if (read(`/proc/${pid}/syscall`).startsWith(`${readNr} 0x0 `)) return true;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return (
        readlinkSync(`/proc/${pid}/fd/${fd}`) === "anon_inode:[eventpoll]" &&
        /^tfd:\s+0\s/m.test(read(`/proc/${pid}/fdinfo/${fd}`))
      );
    } catch {
      return false;
    }
  });
}

/**
 * Resolves once process `pid` waits for its stdin: blocked reading fd 0, or with fd 0 in its
 * epoll set (a stream reading it). Resolves too if the process has ended (the caller's checks
 * then say why), and at once where /proc cannot tell: the caller's check still holds, only its
 * timing is less exact.
 */
export async function waitingForInput(pid: number | undefined, what: string, ms = 30_000): Promise<void> {
  const readNr = process.platform === "linux" ? READ[process.arch] : undefined;
  if (pid === undefined || readNr === undefined || !existsSync(`/proc/${pid}`)) return;
  await until(() => !existsSync(`/proc/${pid}`) || waitsForStdin(pid, readNr), `${what}: waiting for stdin`, ms);
}
