/**
 * Who is calling, for the length of one framework-level tool call. A LangChain agent's tool
 * call runs through code the agent does not own (a tool, the MCP adapters, a shared MCP
 * client) before anything is sent; the agent's identity must sign what leaves, not the
 * identity of whichever client happens to carry it. The agent's middleware runs the call in
 * an `ActingCaller` context; a secured MCP client signs with the acting caller's guard when
 * there is one, and with its own otherwise.
 *
 * AsyncLocalStorage follows the call through every await and into whatever the tool calls, and
 * no further: two agents sharing one MCP client, or 32 calls of one step running at once, each
 * see their own context. Nothing here is trusted: the context only chooses who signs and what
 * rides along; every token is still verified by its callee.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { ReceiptStatus } from "../invocation/receipt.js";
import type { Approval } from "../people/approval.js";
import type { CallerGuard } from "./caller.js";

/** What became of a call signed in a context, for the framework to tell its model. */
export interface ActingOutcome {
  readonly audience: string;
  readonly tool: string;
  /** ok or error: the callee answered (the receipt says which); denied: refused, by either side. */
  readonly status: ReceiptStatus;
  /** The receipt that came back (verified in enforce mode), if any. */
  readonly receipt?: string;
  /** The error code, when the call was refused or failed. */
  readonly code?: string;
  readonly message?: string;
}

export interface ActingCaller {
  /** Signs, checks receipts and records the calls made in this context. */
  readonly guard: CallerGuard;
  /** The delegation chain the caller acts under, root first. */
  readonly delegation?: readonly string[];
  /**
   * The person the call is made for: an on-behalf-of token bound to this caller's key, with the
   * act chain of the agents it came through (invocation/on-behalf-of.ts).
   */
  readonly onBehalfOf?: string;
  /**
   * A person's approval of this call (people/approval.ts), for the call it fits alone (same
   * tool and arguments): a secured MCP client signs it in as `apr`.
   */
  readonly approval?: Approval;
  /** The framework's id for the call (LangChain's tool-call id), signed into every token. */
  readonly toolCallId?: string;
  /**
   * For an MCP tool: the digest of the arguments the model asked for. The secured MCP client
   * signs only a request with these arguments, so a middleware inside the agent's that changes
   * them is refused (ERR_INVOCATION_ARGS_MISMATCH), as a local tool's callee refuses it.
   */
  readonly argsDigest?: string;
  /** A token already signed for a local callee (a secured LangChain tool), with its audience. */
  readonly local?: { readonly audience: string; readonly token: string };
  /**
   * Set by a secured MCP client for each call it signs (or refuses) here: at once when it is sent
   * (status error, no code: nothing came back yet), then what came of it. Set means that client has
   * recorded (or will record) the call.
   */
  outcome?: ActingOutcome;
  /**
   * Set by whoever was refused with ERR_APPROVAL_REQUIRED in this context (a secured MCP client,
   * a secured tool): the approval request the refusal carried, for the agent to ask a person.
   */
  approvalRequest?: Readonly<Record<string, unknown>> | undefined;
  /**
   * Set by a tool loaded from a secured MCP client: the answer it gave, before any middleware
   * inside the agent's saw it.
   */
  answered?: unknown;
}

const storage = new AsyncLocalStorage<ActingCaller>();

/** Runs `fn` with `caller` as the acting caller of everything it calls. */
export function actAs<T>(caller: ActingCaller, fn: () => T): T {
  return storage.run(caller, fn);
}

/** The acting caller of the current call, if any. */
export function actingCaller(): ActingCaller | undefined {
  return storage.getStore();
}

/**
 * Runs `fn` with no acting caller: a callee (an MCP server) serving a call in this process must
 * not sign its own calls as the agent whose call reached it over an in-memory transport, which
 * carries the agent's context along with the message.
 */
export function outsideActing<T>(fn: () => T): T {
  return storage.exit(fn);
}
