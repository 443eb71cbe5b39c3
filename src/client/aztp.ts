/**
 * The client API of the seed documents: `aztp.initialize({ apiKey })`, `secureConnect`,
 * verify / get / discover / revoke / reissue / link. Objects come back, never JSON strings;
 * failures throw AztpError.
 *
 * With no `baseUrl` the client runs on the embedded authority in `home` (option, else
 * AZTP_HOME, else ./.aztp), creating it on first use: no account, no server, no network.
 * With a `baseUrl` it runs on a remote `aztp serve` (client/remote-authority.ts), over HTTPS
 * checked against the trust bundle, and verifies locally from the service's signed feeds.
 * An `apiKey` only authenticates to a remote authority, so a program written for the
 * astha.ai client runs unchanged here with or without one.
 */
import { resolve } from "node:path";
import { EmbeddedAuthority, DEFAULT_ENVIRONMENT, DEFAULT_METHOD } from "../authority/authority.js";
import type { AccessTokenRequest, AccessTokenResult, Authority } from "../authority/authority-api.js";
import {
  recordInvalidity,
  type IdentityLink,
  type IdentityRecord,
  type LinkType,
  type PolicyEntry,
} from "../authority/registry.js";
import type { PolicyDecision } from "../policy/evaluate.js";
import { CONNECT_ACTION, decidePolicy } from "../policy/request.js";
import { getPolicyValue, isActionAllowed, type PolicyRecord } from "../policy/helpers.js";
import type { PolicyDocument, Statement } from "../policy/policy.js";
import { AztpError, ErrorCodes } from "../errors.js";
import { generateWorkloadKey } from "../spiffe/csr.js";
import { SpiffeId, TrustDomain } from "../spiffe/spiffeid.js";
import { AgentIdentity } from "./identity.js";
import { closeHomeAudits } from "./home-audit.js";
import { Trust } from "../invocation/trust.js";
import { RemoteAuthority } from "./remote-authority.js";
import { WorkloadApiAuthority } from "./workload-api-authority.js";
import type { AuditWriter } from "../audit/writer.js";
import type { TrustBundle } from "../spiffe/bundle.js";

export interface AztpConfig {
  /** Authenticates to a remote authority (`baseUrl`); unused by the embedded one. */
  apiKey?: string | undefined;
  /** A remote `aztp serve` authority, e.g. https://aztp.internal:8443. Absent: the embedded authority. */
  baseUrl?: string | undefined;
  /**
   * With `baseUrl`: what the service's certificate is checked against, a bundle file (PEM or
   * SPIFFE bundle JSON), its text, or a TrustBundle; else AZTP_TRUST_BUNDLE. Required over
   * https; over plain http to loopback the service's bundle endpoint is read instead.
   */
  trustBundle?: string | TrustBundle | undefined;
  /**
   * With `baseUrl`: allow plain http to a host that is not loopback (only behind a TLS-terminating
   * proxy you trust).
   */
  allowInsecureHttp?: boolean | undefined;
  /** With `baseUrl`: the URI SAN the service's certificate must carry (default spiffe://TD/aztp/serve). */
  serverId?: string | undefined;
  /** With `baseUrl`: how often the bundle and revocation feeds are refreshed (default: the service's hint). */
  refreshHintSeconds?: number | undefined;
  /** Default trust domain (else AZTP_TRUST_DOMAIN, else the home's, else aztp.local). */
  trustDomain?: string | undefined;
  /** Path segment after `workload/` (default "production"). */
  environment?: string | undefined;
  /** Path segment after the environment (default "node"). */
  method?: string | undefined;
  /** The embedded authority's folder (else AZTP_HOME, else ./.aztp). */
  home?: string | undefined;
  /** X.509-SVID lifetime in seconds (default 3600); rotation happens at half of it. */
  svidTtlSeconds?: number | undefined;
  /**
   * A SPIFFE Workload API endpoint (`unix:///run/spire/agent.sock`: SPIRE's agent, or
   * `aztp workload-api`): identities then come from it, not from an authority of this client.
   * Else SPIFFE_ENDPOINT_SOCKET, when neither `baseUrl` nor a home (`home`, AZTP_HOME) is given.
   */
  workloadApi?: string | undefined;
}

export interface SecureConnectOptions {
  isGlobalIdentity?: boolean | undefined;
  trustDomain?: string | undefined;
  parentIdentity?: string | null | undefined;
  linkTo?: string[] | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export type SecuredAgent<T extends object> = T & { readonly identity: AgentIdentity };

/** astha.ai's whitelist, each name mapped to itself; the embedded authority accepts any valid trust domain. */
export const whiteListTrustDomains: Readonly<Record<string, string>> = Object.freeze({
  "aztp.network": "aztp.network",
  "gptarticles.xyz": "gptarticles.xyz",
  "gptapps.ai": "gptapps.ai",
  "vcagents.ai": "vcagents.ai",
});

const IDENTITY = Symbol("aztp.identity");
/** The policy action verifyIdentityConnection evaluates (defined with the one policy-request builder). */
export { CONNECT_ACTION };

/**
 * A LangChain v1 agent (createAgent's ReactAgent) or a compiled LangGraph graph: anything whose
 * tools run inside it, out of reach of a proxy around the object.
 */
function isLangChainAgent(value: object): boolean {
  const v = value as {
    constructor?: { name?: unknown };
    options?: unknown;
    graph?: unknown;
    invoke?: unknown;
    lc_namespace?: unknown;
    nodes?: unknown;
  };
  if (typeof v.invoke !== "function") return false;
  const ctor = typeof v.constructor?.name === "string" ? v.constructor.name : "";
  return (
    ctor === "ReactAgent" ||
    ctor === "CompiledStateGraph" ||
    (typeof v.options === "object" && v.options !== null && "graph" in value && "middleware" in (v.options as object))
  );
}

function isSecured(value: unknown): value is SecuredAgent<object> {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [IDENTITY]?: unknown })[IDENTITY] instanceof AgentIdentity
  );
}

/** Wraps `agent` so everything passes through to it, plus a read-only `identity`. */
export function attachIdentity<T extends object>(agent: T, identity: AgentIdentity): SecuredAgent<T> {
  const bound = new WeakMap<object, unknown>();
  return new Proxy(agent, {
    get(target, prop) {
      if (prop === "identity" || prop === IDENTITY) return identity;
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      // Bind methods to the real agent (private fields need it), once, so identity holds.
      let fn = bound.get(value);
      if (fn === undefined) {
        fn = (value as (...a: unknown[]) => unknown).bind(target);
        bound.set(value, fn);
      }
      return fn;
    },
    has(target, prop) {
      return prop === "identity" || Reflect.has(target, prop);
    },
    set(target, prop, value) {
      if (prop === "identity") return false;
      return Reflect.set(target, prop, value, target);
    },
  }) as SecuredAgent<T>;
}

export class Aztp {
  readonly config: Readonly<AztpConfig>;
  #authority: Promise<Authority> | undefined;
  #trust: Promise<Trust> | undefined;
  readonly #live = new Map<string, AgentIdentity>();

  constructor(config: AztpConfig = {}) {
    if (config === null || typeof config !== "object")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "initialize() takes an options object");
    // Normalised once ("Example.ORG" -> "example.org"): name lookups and discovery compare it
    // with the registry's (normalised) trust domains as a plain string.
    this.config = Object.freeze({
      ...config,
      ...(config.trustDomain !== undefined ? { trustDomain: TrustDomain.parse(config.trustDomain).name } : {}),
    });
  }

  /** The seed's entry point; synchronous, the authority opens on first use. */
  static initialize(config: AztpConfig = {}): Aztp {
    return new Aztp(config);
  }

  /**
   * The authority this client issues from: the embedded one (opened, and created if need be, once),
   * or the remote one at `baseUrl`.
   */
  authority(): Promise<Authority> {
    const home = resolve(this.config.home ?? process.env.AZTP_HOME ?? ".aztp");
    let workloadApi: string | undefined;
    try {
      workloadApi = this.#workloadApiAddress();
    } catch (e) {
      return Promise.reject(e);
    }
    if (workloadApi !== undefined)
      return this.#connecting(() =>
        WorkloadApiAuthority.connect(workloadApi, home).then((a) => {
          announceWorkloadApi(a.address);
          return a;
        }),
      );
    if (this.config.baseUrl !== undefined) {
      const c = this.config;
      return this.#connecting(() =>
        RemoteAuthority.connect({
          baseUrl: c.baseUrl as string,
          home,
          apiKey: c.apiKey,
          trustBundle: c.trustBundle,
          allowInsecureHttp: c.allowInsecureHttp,
          serverId: c.serverId,
          refreshHintSeconds: c.refreshHintSeconds,
        }),
      );
    }
    this.#authority ??= EmbeddedAuthority.open(home, {
      create: true,
      ...((this.config.trustDomain ?? process.env.AZTP_TRUST_DOMAIN)
        ? { trustDomain: this.config.trustDomain ?? process.env.AZTP_TRUST_DOMAIN }
        : {}),
    });
    return this.#authority;
  }

  /**
   * An authority reached over a connection (a remote one, a Workload API endpoint), connected
   * once. A failed connect is not kept (nor the trust built on it): the next call tries again,
   * the service may be back.
   */
  #connecting(connect: () => Promise<Authority>): Promise<Authority> {
    if (this.#authority !== undefined) return this.#authority;
    const connecting = connect();
    connecting.catch(() => {
      if (this.#authority === connecting) {
        this.#authority = undefined;
        this.#trust = undefined;
      }
    });
    this.#authority = connecting;
    return connecting;
  }

  /**
   * The Workload API endpoint identities come from: `workloadApi`, else SPIFFE_ENDPOINT_SOCKET
   * when nothing else says where they come from (no `baseUrl`, no home).
   */
  #workloadApiAddress(): string | undefined {
    const c = this.config;
    if (c.workloadApi !== undefined) {
      if (c.baseUrl !== undefined)
        throw new AztpError(
          ErrorCodes.ARGUMENT_INVALID,
          "give workloadApi or baseUrl, not both: identities come from one place",
        );
      return c.workloadApi;
    }
    const env = process.env.SPIFFE_ENDPOINT_SOCKET;
    if (env === undefined || env === "" || c.baseUrl !== undefined || c.home !== undefined) return undefined;
    const home = process.env.AZTP_HOME;
    return home === undefined || home === "" ? env : undefined;
  }

  /**
   * Gives `agent` an identity named `name` and returns it secured. Calling again with the same
   * name returns the same AZTP ID (links and metadata updated, a fresh SVID issued).
   */
  async secureConnect<T extends object>(
    agent: T,
    name: string,
    options: SecureConnectOptions = {},
  ): Promise<SecuredAgent<T>> {
    if (agent === null || (typeof agent !== "object" && typeof agent !== "function")) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "secureConnect needs an agent object (use {} for none)");
    }
    if (options === null || typeof options !== "object") {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "secureConnect's options must be an object");
    }
    if (isLangChainAgent(agent)) {
      // An identity attached to an agent whose tool calls go out unsigned would be a lie.
      throw new AztpError(
        ErrorCodes.AGENT_UNSECURED,
        `secureConnect cannot secure a LangChain agent made by createAgent after the fact: its tool calls would go unsigned. Create it with createSecureAgent({ client, name: ${JSON.stringify(name)}, model, tools }) from "aztp-client/langchain"`,
      );
    }
    const authority = await this.authority();
    if (authority instanceof WorkloadApiAuthority) return this.#bindWorkloadSvid(authority, agent, name, options);
    const linkTo = options.linkTo ?? [];
    if (!Array.isArray(linkTo)) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "linkTo must be an array of AZTP IDs");
    const key = await generateWorkloadKey();
    const { record, svid } = await authority.issueIdentity(
      {
        name,
        trustDomain: options.trustDomain ?? this.config.trustDomain ?? authority.defaultTrustDomain,
        environment: this.config.environment ?? DEFAULT_ENVIRONMENT,
        method: this.config.method ?? DEFAULT_METHOD,
        parentIdentity: options.parentIdentity ?? null,
        linkTo: linkTo.map((l) => SpiffeId.parse(l).aztpId),
        ...(options.metadata !== undefined ? { metadata: options.metadata } : {}),
        ...(options.isGlobalIdentity !== undefined ? { isGlobalIdentity: options.isGlobalIdentity } : {}),
      },
      key.csr,
      this.config.svidTtlSeconds !== undefined ? { ttlSeconds: this.config.svidTtlSeconds } : {},
    );
    // Securing a name again keeps one identity object per AZTP ID: earlier secured agents
    // see the fresh SVID too, instead of being left holding a stale one.
    let identity = this.#live.get(record.aztpId);
    if (identity) identity.installSvid(key.privateKey, svid.chainPem);
    else {
      identity = new AgentIdentity(authority, record, key.privateKey, svid.chainPem, this.config.svidTtlSeconds);
      this.#live.set(record.aztpId, identity);
    }
    return attachIdentity(agent, identity);
  }

  /**
   * secureConnect on a Workload API source: binds the SVID the endpoint hands out that `name`
   * selects (by SPIFFE ID or hint, or the only one), and follows it as the endpoint rotates it.
   * Nothing is issued, so what an issuance would set (a parent, links, metadata) is refused.
   */
  #bindWorkloadSvid<T extends object>(
    authority: WorkloadApiAuthority,
    agent: T,
    name: string,
    options: SecureConnectOptions,
  ): SecuredAgent<T> {
    const asked = (["parentIdentity", "linkTo", "metadata", "isGlobalIdentity"] as const).filter(
      (k) => options[k] !== undefined && options[k] !== null,
    );
    if (asked.length > 0)
      throw new AztpError(
        ErrorCodes.WORKLOAD_API_OPERATION_UNSUPPORTED,
        `secureConnect on a Workload API source binds an SVID the endpoint already issued: ${asked.join(", ")} cannot be set here (register them at the issuing authority)`,
        { rule: "issue" },
      );
    const svid = authority.select(name);
    if (options.trustDomain !== undefined && TrustDomain.parse(options.trustDomain).name !== svid.record.trustDomain)
      throw new AztpError(
        ErrorCodes.WORKLOAD_API_SVID_NOT_FOUND,
        `the SVID ${JSON.stringify(name)} selects is of ${svid.record.trustDomain}, not ${options.trustDomain}`,
      );
    let identity = this.#live.get(svid.record.aztpId);
    if (identity) identity.installSvid(svid.key, svid.chainPem);
    else {
      const held = new AgentIdentity(authority, svid.record, svid.key, svid.chainPem, undefined, "pushed");
      authority.follow(
        svid.record.spiffeId,
        (next) => held.installSvid(next.key, next.chainPem),
        // Lost: the identity reads as revoked (isRevoked) until the endpoint hands it out again.
        () => undefined,
      );
      this.#live.set(svid.record.aztpId, held);
      identity = held;
    }
    return attachIdentity(agent, identity);
  }

  /**
   * What this client's verifiers trust: every trust domain of the authority, with its
   * revocations applied at once. One instance per client, so its caches are shared.
   */
  trust(): Promise<Trust> {
    this.#trust ??= this.authority().then((a) => new Trust(a, { revocation: a }));
    return this.#trust;
  }

  /**
   * The remote authority's shared audit log (`aztp serve`; on PostgreSQL, one chain that every
   * replica and machine writes to), as an AuditWriter for a wrapper's `audit` option. The
   * embedded authority has none: its wrappers keep one log per identity in the home.
   */
  async sharedAuditLog(): Promise<AuditWriter> {
    const authority = await this.authority();
    if (!(authority instanceof RemoteAuthority)) {
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "sharedAuditLog() needs a remote authority (baseUrl): the embedded authority keeps one audit log per identity in its home",
      );
    }
    return authority.auditLog();
  }

  /**
   * An OAuth access token (RFC 9068) for `resource`, as one of this client's identities: with
   * the scopes its policies allow (action `oauth:token`), signed with its trust domain's JWT key,
   * verifiable offline from the bundle. On the embedded authority it is minted in this process;
   * on a remote one (`baseUrl`) it comes from `aztp serve`'s token endpoint, the request signed
   * with the identity's SVID key (private_key_jwt). `identity`: a secured agent, an identity, or
   * the AZTP ID or name of one this client holds; it may be left out when the client holds
   * exactly one.
   */
  async accessToken(
    options: AccessTokenRequest & { identity?: SecuredAgent<object> | AgentIdentity | string | undefined },
  ): Promise<AccessTokenResult> {
    if (options === null || typeof options !== "object" || typeof options.resource !== "string")
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "accessToken needs { resource, scopes?, identity? }");
    const { identity: subject, ...request } = options;
    return this.#heldIdentity(subject).accessToken(request);
  }

  /** The identity of `subject` this client holds (it signs with its key), or the only one it holds. */
  #heldIdentity(subject: SecuredAgent<object> | AgentIdentity | string | undefined): AgentIdentity {
    if (subject instanceof AgentIdentity) return subject;
    if (isSecured(subject)) return subject.identity;
    if (subject === undefined) {
      const held = [...this.#live.values()];
      if (held.length === 1) return held[0] as AgentIdentity;
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `this client holds ${held.length} identities: name the one the token is for ({ identity })`,
      );
    }
    if (typeof subject !== "string")
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        "identity must be a secured agent, an identity, an AZTP ID or a name",
      );
    const found = subject.includes("://")
      ? this.#live.get(SpiffeId.parse(subject).aztpId)
      : [...this.#live.values()].find(
          (i) =>
            i.name === subject && (this.config.trustDomain === undefined || i.trustDomain === this.config.trustDomain),
        );
    if (found === undefined)
      throw new AztpError(
        ErrorCodes.ARGUMENT_INVALID,
        `this client holds no identity ${JSON.stringify(subject)}: secureConnect it first (the token request is signed with its key)`,
      );
    return found;
  }

  /** The identity this client holds for `aztpId`, if any. */
  identityOf(aztpId: string): AgentIdentity | undefined {
    return this.#live.get(SpiffeId.parse(aztpId).aztpId);
  }

  private idOf(subject: SecuredAgent<object> | AgentIdentity | string, what: string): string {
    if (typeof subject === "string") return SpiffeId.parse(subject).aztpId;
    if (subject instanceof AgentIdentity) return subject.aztpId;
    if (isSecured(subject)) return subject.identity.aztpId;
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} must be a secured agent, an identity or an AZTP ID`);
  }

  /**
   * True if the identity is valid now: for a secured agent, its SVID chain verifies against the
   * bundle and nothing is revoked; for an ID, the registry says active and unexpired.
   */
  async verifyIdentity(subject: SecuredAgent<object> | AgentIdentity | string): Promise<boolean> {
    const authority = await this.authority();
    if (isSecured(subject)) return subject.identity.verify();
    if (subject instanceof AgentIdentity) return subject.verify();
    const id = this.idOf(subject, "verifyIdentity's argument");
    const live = this.#live.get(id);
    if (live) return live.verify();
    const rec = await authority.find(id);
    return rec !== undefined && recordInvalidity(rec, (sid) => authority.isRevoked(sid)) === undefined;
  }

  /**
   * True when both are valid, linked (either direction) or parent and child, and policy does
   * not forbid it: `to`'s attached policies (only `policyCode`'s, if given) are evaluated for
   * principal `from`, action "identity:connect", resource `to`. With no policy attached to
   * `to` (and no policyCode) links alone decide; with a policyCode that names no policy of
   * `to`, the answer is false.
   */
  async verifyIdentityConnection(
    from: SecuredAgent<object> | string,
    to: SecuredAgent<object> | string,
    policyCode?: string,
  ): Promise<boolean> {
    const authority = await this.authority();
    const a = this.idOf(from, "from");
    const b = this.idOf(to, "to");
    if (!(await this.verifyIdentity(a)) || !(await this.verifyIdentity(b))) return false;
    if (!(await authority.connected(a, b))) return false;
    const policies = await authority.policiesOf(b, policyCode);
    if (policies.length === 0) return policyCode === undefined;
    const decision = decidePolicy(policies, {
      principal: a,
      action: CONNECT_ACTION,
      resource: SpiffeId.parse(b).toString(),
      callee: b,
      relations: await authority.relations(a),
    });
    return decision.decision === "allow";
  }

  /** The registry's record for a secured agent, an AZTP ID, or a name. */
  async getIdentity(subject: SecuredAgent<object> | string): Promise<IdentityRecord> {
    const authority = await this.authority();
    if (typeof subject === "string" && !subject.includes("://")) {
      const rec = await authority.findByName(subject, this.config.trustDomain);
      if (!rec) throw new AztpError(ErrorCodes.IDENTITY_NOT_FOUND, `no identity named ${JSON.stringify(subject)}`);
      return rec;
    }
    return authority.get(this.idOf(subject, "getIdentity's argument"));
  }

  /**
   * Active identities others may discover: those of `trustDomain` if given, else global ones
   * and those of the client's trust domain. A `requestorIdentity` must itself be valid.
   */
  async discoverIdentity(
    options: { trustDomain?: string; requestorIdentity?: string } = {},
  ): Promise<IdentityRecord[]> {
    const authority = await this.authority();
    if (options.requestorIdentity !== undefined && !(await this.verifyIdentity(options.requestorIdentity))) {
      throw new AztpError(
        ErrorCodes.IDENTITY_REVOKED,
        `requestor ${options.requestorIdentity} is not a valid identity`,
      );
    }
    const active = await authority.list({ status: "active" });
    if (options.trustDomain !== undefined) {
      const td = TrustDomain.parse(options.trustDomain).name;
      return active.filter((r) => r.trustDomain === td);
    }
    const home = this.config.trustDomain ?? authority.defaultTrustDomain;
    return active.filter((r) => r.isGlobalIdentity || r.trustDomain === home);
  }

  /** Revokes the identity and every descendant. Returns the AZTP IDs revoked. */
  async revokeIdentity(aztpId: string, reason = "unspecified"): Promise<{ revoked: string[] }> {
    const authority = await this.authority();
    return { revoked: await authority.revoke(this.idOf(aztpId, "aztpId"), reason) };
  }

  /** Restores a revoked identity; a live holder in this process gets a fresh key and SVID. */
  async reissueIdentity(aztpId: string): Promise<IdentityRecord> {
    const authority = await this.authority();
    const id = this.idOf(aztpId, "aztpId");
    await authority.reissue(id);
    await this.#live.get(id)?.rotate();
    return authority.get(id);
  }

  async linkIdentities(
    source: string,
    target: string,
    relation: LinkType = "linked",
    metadata: Record<string, unknown> = {},
  ): Promise<IdentityLink> {
    const authority = await this.authority();
    return authority.link(this.idOf(source, "source"), this.idOf(target, "target"), relation, metadata);
  }

  /** Attaches an AZTP policy document to an identity; returns its `{ code, policyName, policyStatement }`. */
  async attachPolicy(aztpId: string, policy: unknown, policyName?: string): Promise<PolicyEntry> {
    const authority = await this.authority();
    return authority.attachPolicy(this.idOf(aztpId, "aztpId"), policy, policyName);
  }

  /** The identity's policies, in the astha.ai client's shape: `{ data: [{ code, policyName, policyStatement }] }`. */
  async getPolicy(
    aztpId: string,
  ): Promise<{ data: Array<{ code: string; policyName: string; policyStatement: PolicyDocument }> }> {
    const authority = await this.authority();
    const rec = await authority.get(this.idOf(aztpId, "aztpId"));
    return {
      data: rec.policies.map((p) => ({
        code: p.code,
        policyName: p.policyName,
        policyStatement: p.policyStatement as PolicyDocument,
      })),
    };
  }

  /** The first statement whose field `key` (e.g. "Sid") equals `value`, across `getPolicy()`'s result or its `data`. */
  getPolicyValue(
    policies: { data: PolicyRecord[] } | readonly PolicyRecord[],
    key: string,
    value: string,
  ): Statement | null {
    return getPolicyValue(
      Array.isArray(policies) ? policies : ((policies as { data: PolicyRecord[] }).data ?? []),
      key,
      value,
    );
  }

  /** Whether one statement allows `action` (honours Deny, wildcards and NotAction, unlike astha.ai's). */
  isActionAllowed(statement: Statement, action: string): boolean {
    return isActionAllowed(statement, action);
  }

  /**
   * Evaluates each action against the identity's policies (only `policyCode`'s, if given), as
   * a request by the identity itself on `resource` (default "*": only statements covering
   * every resource grant). Explicit Deny wins, default deny.
   */
  async checkIdentityPolicyPermissions(
    aztpId: string,
    options: { actions: string[]; policyCode?: string; resource?: string },
  ): Promise<{ allowed: boolean; actions: Record<string, PolicyDecision> }> {
    const authority = await this.authority();
    const id = this.idOf(aztpId, "aztpId");
    if (
      !Array.isArray(options?.actions) ||
      options.actions.length === 0 ||
      !options.actions.every((a) => typeof a === "string")
    ) {
      throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "checkIdentityPolicyPermissions needs { actions: string[] }");
    }
    const policies = await authority.policiesOf(id, options.policyCode);
    const relations = await authority.relations(id);
    const now = new Date(); // one instant for every action asked about
    const actions: Record<string, PolicyDecision> = {};
    for (const action of options.actions) {
      actions[action] = decidePolicy(policies, {
        principal: id,
        action,
        resource: options.resource ?? "*",
        relations,
        now,
      });
    }
    return { allowed: Object.values(actions).every((d) => d.decision === "allow"), actions };
  }

  /**
   * Stops every identity's rotation timer (they never keep the process alive anyway) and closes
   * the default audit logs of this client's home, each with a last signed checkpoint; resolves
   * once they are closed.
   */
  close(): Promise<void> {
    for (const identity of this.#live.values()) identity.close();
    this.#live.clear();
    // A remote authority also stops its feeds' timers and its connections.
    return this.#authority === undefined
      ? Promise.resolve()
      : this.#authority.then(
          async (a) => {
            await closeHomeAudits(a.home);
            await a.close?.();
          },
          () => undefined,
        );
  }
}

let announced = false;

/**
 * Said once per process, when identities first come from a Workload API: what differs from an
 * authority of this client's (a guarantee turned off is said at start).
 */
function announceWorkloadApi(address: string): void {
  if (announced) return;
  announced = true;
  process.emitWarning(
    `identities come from the Workload API at ${address}: SVIDs rotate as it pushes them; it carries no revocation list (an identity is good until its SVID expires, unless the endpoint stops handing it out); issuing, revoking, links, attached policies and tokens belong to the issuing authority`,
    { type: "AztpNotice", code: "AZTP_WORKLOAD_API_SOURCE" },
  );
}
