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
 * and the call is signed again, this time carrying the approval (`apr`); or with
 * `{ resume: { rejected: "why" } }`, and the model gets an error ToolMessage saying so.
 *
 * LangGraph runs the paused node again on resume, so the first attempt runs again too and is
 * refused again (audited like the first): only then does `interrupt()` return the resume value.
 * That second refusal carries a new request, but an approval names its own (`req` in `apr`), so
 * the approval of the request the person saw is what the callee checks. A refused attempt never
 * runs the tool.
 */
import type { ToolMessage } from "@langchain/core/messages";
import type { ToolCall } from "@langchain/core/messages/tool";
import { interrupt } from "@langchain/langgraph";
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
    if (typeof a === "object" && a !== null && typeof a.idToken === "string" && typeof a.request === "object")
      return { approval: a as unknown as Approval };
  }
  throw new AztpError(
    ErrorCodes.ARGUMENT_INVALID,
    "resume an approval interrupt with { approval: { request, idToken } } or { rejected: reason }",
  );
}

/**
 * Runs `attempt`; when the callee asked for an approval, pauses the run for a person, then
 * either runs the call again with the approval or answers with `rejected(reason)`.
 */
export async function withApprovalInterrupt(
  call: ToolCall,
  attempt: (ask: ApprovalAsk) => Promise<ToolMessage | Command>,
  rejected: (error: AztpError) => Promise<ToolMessage>,
): Promise<ToolMessage | Command> {
  const first: ApprovalAsk = {};
  const answer = await attempt(first);
  if (first.request === undefined) return answer;
  const value: ApprovalInterrupt = {
    type: APPROVAL_INTERRUPT,
    toolCallId: call.id ?? "",
    tool: call.name,
    request: first.request as unknown as ApprovalRequestDetail,
  };
  let resume: ApprovalResume;
  try {
    resume = resumeOf(interrupt(value));
  } catch (e) {
    if (e instanceof AztpError) return rejected(e);
    throw e; // the pause itself (GraphInterrupt), or no checkpointer to pause with
  }
  if ("rejected" in resume)
    return rejected(
      new AztpError(ErrorCodes.APPROVAL_REQUIRED, `the approval of ${call.name} was refused: ${resume.rejected}`),
    );
  return attempt({ approval: resume.approval });
}
