/**
 * Where a secured call's receipt travels in LangChain: an entry of the ToolMessage's `artifact`,
 * which the model is not shown, beside whatever artifact the tool itself returned. A local
 * tool, an MCP tool and a sub-agent answer with the same entry, so `receiptOf(message)` reads
 * any of them alike.
 */
import type { ReceiptStatus } from "../invocation/receipt.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

/** The artifact entry that carries a call's receipt, beside whatever artifact the tool itself returned. */
export const RECEIPT_ARTIFACT = "aztp_receipt";

export interface ReceiptArtifact {
  readonly type: typeof RECEIPT_ARTIFACT;
  /**
   * The callee's ID (the tool's, an MCP server's, a sub-agent's) in the form the rest of the
   * API gives identities (`identity.aztpId`, `SecuredTool.aztpId`): `aztp://<td>/<path>`.
   * "unknown" when the call had no callee (a tool the agent does not have).
   */
  readonly callee: string;
  /** The same ID as `spiffe://<td>/<path>`, the form audit entries and receipts name it in; absent for "unknown". */
  readonly calleeSpiffeId?: string;
  /** The compact receipt the callee signed; absent when none could be made. */
  readonly receipt?: string;
  readonly status: ReceiptStatus;
  /** The stable code of a refusal or failure. */
  readonly code?: string;
}

/** The receipt entry for a call to `callee` (given in either form, or "unknown"). */
export function receiptEntry(
  callee: string,
  fields: { receipt?: string | undefined; status: ReceiptStatus; code?: string | undefined },
): ReceiptArtifact {
  let ids: { callee: string; calleeSpiffeId?: string } = { callee };
  try {
    const id = SpiffeId.parse(callee);
    ids = { callee: id.aztpId, calleeSpiffeId: id.toString() };
  } catch {
    // not an ID ("unknown"): named as it was given
  }
  return {
    type: RECEIPT_ARTIFACT,
    ...ids,
    ...(fields.receipt !== undefined ? { receipt: fields.receipt } : {}),
    status: fields.status,
    ...(fields.code !== undefined ? { code: fields.code } : {}),
  };
}

/**
 * The artifact of a secured tool call is a list of typed entries, as @langchain/mcp-adapters
 * makes them: the tool's own artifact (spread when it is a list, else one `{ type: "artifact",
 * data }` entry), then the receipt entry.
 */
export function withReceipt(artifact: unknown, entry: ReceiptArtifact): unknown[] {
  const own = artifact === undefined ? [] : Array.isArray(artifact) ? artifact : [{ type: "artifact", data: artifact }];
  return [...own.filter((a) => !isReceiptArtifact(a)), entry];
}

function isReceiptArtifact(value: unknown): value is ReceiptArtifact {
  return typeof value === "object" && value !== null && (value as { type?: unknown }).type === RECEIPT_ARTIFACT;
}

/** The receipt entry of a ToolMessage from a secured call, if it has one. */
export function receiptOf(message: { artifact?: unknown }): ReceiptArtifact | undefined {
  const a = message.artifact;
  return Array.isArray(a) ? a.find(isReceiptArtifact) : isReceiptArtifact(a) ? a : undefined;
}
