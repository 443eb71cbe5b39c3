/**
 * A call that needs a person's approval pauses the agent's run, the way LangChain's
 * `humanInTheLoopMiddleware` pauses it (and beside it): when the callee refuses a call with
 * ERR_APPROVAL_REQUIRED, the secure middleware raises a LangGraph `interrupt()` whose value is
 * an `ApprovalInterrupt` carrying the approval request. The application shows it, a person
 * approves it at their OpenID Provider (signing in with the request's `nonce`), and the run
 * resumes with
 *
 *   new Command({ resume: { approval: { request: interrupt.value.request, idToken } } })
 *
 * (or `{ request, statement }`: an approval service the callee's policy names in
 * `ApproverIdentities` authenticated the person and signed `signApprovalStatement` for them)
 * and the call is signed again, this time carrying the approval (`apr`); or with
 * `{ resume: { rejected: "why" } }`, and the model gets an error ToolMessage saying so.
 *
 * LangGraph runs the paused node again on resume. The middleware remembers the calls it paused
 * (`PendingApprovals`, per middleware, bounded): a call it paused is not attempted again before
 * `interrupt()` gives the resume value, so the callee sees one refusal and then the approved call.
 * A pause this process does not remember (the run resumed in another process, from a persistent
 * checkpointer) attempts the call once more first, refused and audited like the first: an
 * approval names its own request (`req` in `apr`), so the approval of the request the person
 * saw is still what the callee checks. A refused attempt never runs the tool.
 */
import type { ToolMessage } from "@langchain/core/messages";
import type { ToolCall } from "@langchain/core/messages/tool";
import { interrupt } from "@langchain/langgraph";
import { LRUCache } from "lru-cache";
import { canonicalDigest } from "../invocation/canonical.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { Approval, ApprovalRequestDetail } from "../people/approval.js";
import type { Command } from "./command.js";

/** The `type` of the interrupt value this middleware raises. */
export const APPROVAL_INTERRUPT = "aztp/approval";

/** What the run pauses with: the call, and what a person must approve. */
export interface ApprovalInterrupt {
  type: typeof APPROVAL_INTERRUPT;
  toolCallId: string;
  tool: string;
  request: ApprovalRequestDetail;
}

/** What the run resumes with: the approval (the interrupt's request, and the approver's ID token), or why not. */
export type ApprovalResume = { approval: Approval } | { rejected: string };

/** One attempt's view of the approval: what it carries, and what a refusal asked for. */
export interface ApprovalAsk {
  readonly approval?: Approval;
  /** Set when the attempt was refused with ERR_APPROVAL_REQUIRED: the request to ask a person. */
  request?: Readonly<Record<string, unknown>> | undefined;
}

function resumeOf(value: unknown): ApprovalResume {
  const v = value as Record<string, unknown> | null;
  if (typeof v === "object" && v !== null) {
    if (typeof v.rejected === "string") return { rejected: v.rejected };
    const a = v.approval as Record<string, unknown> | undefined;
    if (
      typeof a === "object" &&
      a !== null &&
      typeof a.request === "object" &&
      (typeof a.idToken === "string") !== (typeof a.statement === "string")
    )
      return { approval: a as unknown as Approval };
  }
  throw new AztpError(
    ErrorCodes.ARGUMENT_INVALID,
    "resume an approval interrupt with { approval: { request, idToken } }, { approval: { request, statement } } or { rejected: reason }",
  );
}

/**
 * The calls a middleware paused for an approval, by tool-call id, tool and argument digest (a
 * reused id with other arguments is another call): on resume, the paused call is not attempted
 * again before the interrupt answers. Bounded: a run never resumed is forgotten in time.
 */
export class PendingApprovals {
  readonly #paused = new LRUCache<string, ApprovalInterrupt>({ max: 1000 });

  static keyOf(call: ToolCall): string | undefined {
    if (call.id === undefined || call.id === "") return undefined;
    try {
      return `${call.id}\n${call.name}\n${canonicalDigest(call.args, "args")}`;
    } catch {
      return undefined; // arguments no token can carry: the attempt refuses them anyway
    }
  }

  get(call: ToolCall): ApprovalInterrupt | undefined {
    const key = PendingApprovals.keyOf(call);
    return key === undefined ? undefined : this.#paused.get(key);
  }

  set(call: ToolCall, value: ApprovalInterrupt): void {
    const key = PendingApprovals.keyOf(call);
    if (key !== undefined) this.#paused.set(key, value);
  }

  delete(call: ToolCall): void {
    const key = PendingApprovals.keyOf(call);
    if (key !== undefined) this.#paused.delete(key);
  }
}

/**
 * Runs `attempt`; when the callee asked for an approval, pauses the run for a person, then
 * either runs the call again with the approval or answers with `rejected(reason)`.
 */
export async function withApprovalInterrupt(
  call: ToolCall,
  attempt: (ask: ApprovalAsk) => Promise<ToolMessage | Command>,
  rejected: (error: AztpError) => Promise<ToolMessage>,
  pending?: PendingApprovals,
): Promise<ToolMessage | Command> {
  // A call this middleware paused: the interrupt answers first (with the resume value when the
  // run is resuming, or by pausing again with the same request when it is not).
  let value = pending?.get(call);
  if (value === undefined) {
    const first: ApprovalAsk = {};
    const answer = await attempt(first);
    if (first.request === undefined) return answer;
    value = {
      type: APPROVAL_INTERRUPT,
      toolCallId: call.id ?? "",
      tool: call.name,
      request: first.request as unknown as ApprovalRequestDetail,
    };
    pending?.set(call, value);
  }
  let resume: ApprovalResume;
  try {
    resume = resumeOf(interrupt(value));
  } catch (e) {
    if (e instanceof AztpError) {
      pending?.delete(call);
      return rejected(e);
    }
    throw e; // the pause itself (GraphInterrupt), or no checkpointer to pause with
  }
  pending?.delete(call);
  if ("rejected" in resume)
    return rejected(
      new AztpError(ErrorCodes.APPROVAL_REQUIRED, `the approval of ${call.name} was refused: ${resume.rejected}`),
    );
  return attempt({ approval: resume.approval });
}
