/**
 * The guard a callee serves under, the same for every binding (an MCP server, the MCP proxy, a
 * LangChain tool): the identity's policy, audit log and replay cache as one `CalleeGuard`.
 */
import type { Authority } from "../authority/authority-api.js";
import { auditFor, type AuditOption } from "../client/home-audit.js";
import type { AgentIdentity } from "../client/identity.js";
import { MemoryReplayCache, type ReplayCache } from "../invocation/replay.js";
import type { Trust } from "../invocation/trust.js";
import type { CompiledPolicies } from "../policy/evaluate.js";
import type { PolicyDocument } from "../policy/policy.js";
import { personIssuersFor, type PersonIssuerConfig, type PersonIssuers } from "../people/person-issuers.js";
import { CalleeGuard } from "./callee.js";
import type { GuardMode } from "./recorder.js";

/**
 * Who may call which tool: compiled, documents, or a function asked per call. Default: the policies
 * attached to the identity.
 */
export type ServedPolicy =
  CompiledPolicies | readonly PolicyDocument[] | (() => CompiledPolicies | readonly PolicyDocument[] | undefined);

/**
 * One replay cache per SPIFFE ID per process, shared by every server and tool secured with it
 * (a Streamable HTTP server builds one McpServer per session; two `Aztp` clients of one process
 * may each hold the identity): a token is addressed to the ID, so a token used on one must be
 * refused on every other. Keyed by the ID, not by the AgentIdentity object, which each client
 * makes its own. The caches live as long as the process: each is bounded and holds only tokens
 * not yet expired, so an ID no longer served costs an empty map.
 */
const replayCaches = new Map<string, ReplayCache>();
function replayCacheOf(identity: AgentIdentity): ReplayCache {
  let cache = replayCaches.get(identity.spiffeId);
  if (cache === undefined) replayCaches.set(identity.spiffeId, (cache = new MemoryReplayCache()));
  return cache;
}

/** The providers a trust domain trusts, as one shared verifier; none when it trusts none. */
function personIssuersOf(configs: readonly PersonIssuerConfig[]): PersonIssuers | undefined {
  return configs.length === 0 ? undefined : personIssuersFor(configs);
}

const saidOpen = new WeakSet<AgentIdentity>();
/**
 * Said once per identity: with no policy, the guard admits any caller whose token verifies, from
 * any trusted domain, to every tool. Nobody should run that believing a policy is in force.
 */
export function sayIfOpen(identity: AgentIdentity, open: boolean): void {
  if (!open || saidOpen.has(identity)) return;
  saidOpen.add(identity);
  process.emitWarning(
    `aztp: ${identity.aztpId} has no policy: any verified caller from a trusted domain may call every tool (attach one with client.attachPolicy, or pass policy)`,
    { code: "AZTP_NO_POLICY" },
  );
}

/**
 * The guard a callee serves under: the given policy, else the policies attached to its identity
 * (read per call; with none, any verified caller, said once), its default audit log, and one
 * replay cache per identity, shared by everything served under it (an MCP server and a LangChain
 * tool of one identity must not each accept the same token once).
 */
export async function servingGuard(
  identity: AgentIdentity,
  options: {
    trust: Trust;
    authority: Authority | undefined;
    policy?: ServedPolicy | undefined;
    mode?: GuardMode | undefined;
    audit?: AuditOption | undefined;
    side?: "callee" | "proxy";
    what: string;
  },
): Promise<CalleeGuard> {
  const { authority } = options;
  const some = (docs: readonly PolicyDocument[]): readonly PolicyDocument[] | undefined =>
    docs.length > 0 ? docs : undefined;
  // Synchronous from the embedded authority; a remote one answers from the records it holds,
  // and with a promise only for an identity it has never seen.
  const attached = (): readonly PolicyDocument[] | undefined | Promise<readonly PolicyDocument[] | undefined> => {
    const docs = authority?.policiesOf(identity.spiffeId) ?? [];
    return docs instanceof Promise ? docs.then(some) : some(docs);
  };
  const audit = await auditFor(identity, options.audit, options.what);
  if (options.policy === undefined) sayIfOpen(identity, (await attached()) === undefined);
  return new CalleeGuard({
    identity,
    trust: options.trust,
    replay: replayCacheOf(identity),
    mode: options.mode ?? "enforce",
    ...(options.side ? { side: options.side } : {}),
    ...(audit ? { audit } : {}),
    policy: options.policy ?? attached,
    ...(authority
      ? {
          relations: (id: string) => authority.relations(id),
          // The providers the callee's own trust domain trusts say who may approve its calls.
          personIssuers: async () => personIssuersOf(await authority.personIssuers(identity.trustDomain)),
        }
      : {}),
  });
}
