/**
 * Workload selectors in SPIRE's syntax, `<type>:<key>:<value>`, and how an attested caller
 * matches them. Only what the kernel says about the socket's peer is a fact here: its uid and
 * gid, and the executable its pid runs (`/proc/<pid>/exe`); never anything the request claims.
 *
 * Supported, as SPIRE's unix workload attestor spells them: `unix:uid:<n>`, `unix:gid:<n>`,
 * `unix:path:<absolute path>`. A registration entry matches a caller when every one of its
 * selectors does (SPIRE's rule): an entry with no selector matches nobody.
 */
import { isAbsolute, normalize } from "node:path";
import { AztpError, ErrorCodes } from "../errors.js";

export type Selector =
  | { readonly type: "unix"; readonly key: "uid" | "gid"; readonly value: number }
  | { readonly type: "unix"; readonly key: "path"; readonly value: string };

/** What the kernel says about a caller. `path` is absent when its executable could not be read. */
export interface PeerFacts {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  readonly path?: string | undefined;
}

const ID = /^(0|[1-9][0-9]{0,9})$/;
const MAX_ID = 2 ** 32 - 2; // (uid_t)-1 means "no change" to the kernel, never a caller

/** Parses `unix:uid:1000` and its kind; throws ERR_ARGUMENT_INVALID naming what is wrong. */
export function parseSelector(text: string): Selector {
  if (typeof text !== "string") throw invalid("a selector must be a string");
  const first = text.indexOf(":");
  const second = first < 0 ? -1 : text.indexOf(":", first + 1);
  if (second < 0) throw invalid(`selector "${text}" is not <type>:<key>:<value>`);
  const type = text.slice(0, first);
  const key = text.slice(first + 1, second);
  const value = text.slice(second + 1); // a path may hold colons
  if (type !== "unix") throw invalid(`selector "${text}": type "${type}" is not supported (unix only)`);
  if (key === "uid" || key === "gid") {
    if (!ID.test(value) || Number(value) > MAX_ID)
      throw invalid(`selector "${text}": ${key} must be a decimal number from 0 to ${MAX_ID}`);
    return { type, key, value: Number(value) };
  }
  if (key === "path") {
    if (!isAbsolute(value) || normalize(value) !== value || value.endsWith("/") || value.includes("\0"))
      throw invalid(`selector "${text}": path must be an absolute, normalised path to a file`);
    return { type, key, value };
  }
  throw invalid(`selector "${text}": key "${key}" is not supported (uid, gid, path)`);
}

/** The selector in SPIRE's syntax. */
export function formatSelector(selector: Selector): string {
  return `${selector.type}:${selector.key}:${selector.value}`;
}

/** Whether a caller with `facts` matches every selector of an entry (none: no match). */
export function matchesAll(selectors: readonly Selector[], facts: PeerFacts): boolean {
  return selectors.length > 0 && selectors.every((s) => matches(s, facts));
}

function matches(selector: Selector, facts: PeerFacts): boolean {
  switch (selector.key) {
    case "uid":
      return facts.uid === selector.value;
    case "gid":
      return facts.gid === selector.value;
    case "path":
      return facts.path !== undefined && facts.path === selector.value;
  }
}

function invalid(message: string): AztpError {
  return new AztpError(ErrorCodes.ARGUMENT_INVALID, message);
}
