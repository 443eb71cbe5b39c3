/**
 * The request context that policy Conditions read, and its key names.
 *
 * | key                        | type             | meaning                                                         |
 * | -------------------------- | ---------------- | --------------------------------------------------------------- |
 * | `aztp:caller`              | string           | the caller's ID, in `spiffe://` form                            |
 * | `aztp:callerTrustDomain`   | string           | the caller's trust domain, lower case, e.g. `example.org`       |
 * | `aztp:callerPath`          | string           | the caller's ID path, e.g. `/workload/production/node/my-agent` |
 * | `aztp:callerParent`        | string           | the caller's parent ID (`spiffe://` form); absent if none       |
 * | `aztp:callerLinks`         | string[]         | IDs the caller is linked to (`spiffe://` form); a set key       |
 * | `aztp:callee`              | string           | the called server's ID (`spiffe://` form)                       |
 * | `aztp:calleeTrustDomain`   | string           | the called server's trust domain                                |
 * | `aztp:tool`                | string           | the tool's name, e.g. `search`                                  |
 * | `aztp:args`                | object           | the tool's arguments, as received                               |
 * | `aztp:args.<path>`         | any              | one argument field: `aztp:args.query`, `aztp:args.filter.limit`,|
 * |                            |                  | `aztp:args.items.0` (dotted path; a number indexes an array)    |
 * | `aztp:currentTime`         | string           | decision time, ISO 8601 UTC (for Date operators)                |
 * | `aztp:epochTime`           | number           | decision time, whole seconds since 1970 (for Numeric operators) |
 * | `aztp:delegated`           | boolean          | true when the call runs on a delegation chain (depth > 0)       |
 * | `aztp:delegationDepth`     | number           | links in the delegation chain; 0 for a direct call              |
 * | `aztp:sourceIp`            | string           | the peer's IP address, when the transport knows it: set over    |
 * |                            |                  | Streamable HTTP (serveMcpHttp, the proxy listening on HTTP),    |
 * |                            |                  | absent over stdio and in-memory; IPv4-mapped IPv6 as IPv4       |
 * | `aztp:authMethod`          | string           | how the caller was authenticated: `signed` (an invocation token |
 * |                            |                  | it signed) or `bearer` (an OAuth access token, weaker: a stolen |
 * |                            |                  | token works until it expires); absent outside a call's decision |
 *
 * `aztp:caller` is a SPIFFE ID, except for a bearer caller whose token an issuer other than
 * this library's authority issued: then it is `<issuer>#<subject>` (oauth/protected-resource.ts),
 * and `aztp:callerTrustDomain` and `aztp:callerPath` are absent.
 * | `aztp:scope`               | string           | the OAuth scope asked about (action `oauth:token`); absent when |
 * |                            |                  | the token request names none                                    |
 * | `aztp:person`              | string           | the person the call is made for, `<issuer>#<subject>` (their    |
 * |                            |                  | OpenID Provider and their `sub` there); absent when the agent   |
 * |                            |                  | acts for nobody (`Null` tells the two apart)                    |
 * | `aztp:personIssuer`        | string           | that person's OpenID Provider (issuer identifier)               |
 * | `aztp:person.<claim>`      | per claim        | a claim of the person, as their provider asserted it: `email`,  |
 * |                            |                  | `email_verified` (boolean), `groups` (set), `acr`, `amr` (set)  |
 * | `aztp:actors`              | string[]         | the agents acting for the person, the first one first (the act  |
 * |                            |                  | chain); absent when the call is made for nobody                 |
 *
 * IDs are stored in `spiffe://` form, but conditions compare IDs in one normal form, so a
 * policy may name them as `aztp://` or `spiffe://` alike. Keys are matched exactly (unlike
 * IAM's case-insensitive keys) because argument field names are case-sensitive; a policy that
 * names an `aztp:` key not in this table is rejected, so a typo cannot silently never match.
 * Keys with any other prefix are the application's own and are passed through.
 */
import { AztpError, ErrorCodes } from "../errors.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export const ARGS_KEY = "aztp:args";
/** Prefix of the per-field argument keys: `aztp:args.<dotted path>`. */
export const ARGS_FIELD_PREFIX = "aztp:args.";

/** Every `aztp:` context key a policy may name (besides `aztp:args.<path>`). */
export const POLICY_CONTEXT_KEYS = Object.freeze([
  "aztp:caller",
  "aztp:callerTrustDomain",
  "aztp:callerPath",
  "aztp:callerParent",
  "aztp:callerLinks",
  "aztp:callee",
  "aztp:calleeTrustDomain",
  "aztp:tool",
  ARGS_KEY,
  "aztp:currentTime",
  "aztp:epochTime",
  "aztp:delegated",
  "aztp:delegationDepth",
  "aztp:sourceIp",
  "aztp:authMethod",
  "aztp:scope",
  "aztp:person",
  "aztp:personIssuer",
  "aztp:person.email",
  "aztp:person.email_verified",
  "aztp:person.groups",
  "aztp:person.acr",
  "aztp:person.amr",
  "aztp:actors",
] as const);

/** The claims of a person a policy may read as `aztp:person.<claim>`. */
export const PERSON_POLICY_CLAIMS = ["email", "email_verified", "groups", "acr", "amr"] as const;

/** The person a call is made for, as the verifier established them (invocation/on-behalf-of.ts). */
export interface PersonContext {
  /** `<issuer>#<subject>`. */
  id: string;
  issuer: string;
  claims: Readonly<Partial<Record<(typeof PERSON_POLICY_CLAIMS)[number], unknown>>>;
}

/** How a caller was authenticated (`aztp:authMethod`). */
export type AuthMethod = "signed" | "bearer";

export type PolicyContextKey = (typeof POLICY_CONTEXT_KEYS)[number];

const KNOWN_KEYS: ReadonlySet<string> = new Set(POLICY_CONTEXT_KEYS);

/** Why an `aztp:` key is not one the evaluator knows, or undefined if it is acceptable. */
export function unknownContextKeyReason(key: string): string | undefined {
  if (!key.toLowerCase().startsWith("aztp:")) return undefined;
  if (KNOWN_KEYS.has(key)) return undefined;
  if (key.startsWith(ARGS_FIELD_PREFIX)) {
    const path = key.slice(ARGS_FIELD_PREFIX.length);
    return path.split(".").every((s) => s.length > 0) ? undefined : "has an empty argument path segment";
  }
  return `is not a known aztp: context key (known: ${POLICY_CONTEXT_KEYS.join(", ")}, aztp:args.<field>)`;
}

export interface PolicyContextInput {
  /** The verified caller, `aztp://` or `spiffe://`, or a bearer's `<issuer>#<subject>`. */
  caller: string | SpiffeId;
  callerParent?: string | SpiffeId | undefined;
  callerLinks?: ReadonlyArray<string | SpiffeId> | undefined;
  callee?: string | SpiffeId | undefined;
  tool?: string | undefined;
  /** The tool's arguments, as received; read in place, not copied. */
  args?: unknown;
  /** Decision time; defaults to now. A number is milliseconds since 1970. */
  time?: Date | number | undefined;
  /** Links in the delegation chain the call carries; 0 or absent for a direct call. */
  delegationDepth?: number | undefined;
  sourceIp?: string | undefined;
  authMethod?: AuthMethod | undefined;
  /** The OAuth scope a token request asks for (`aztp:scope`). */
  scope?: string | undefined;
  /** The person the call is made for (`aztp:person`, `aztp:person.<claim>`), verified. */
  person?: PersonContext | undefined;
  /** The agents acting for the person, the first one first (`aztp:actors`). */
  actors?: readonly string[] | undefined;
}

/** A caller that is no SPIFFE ID: a bearer token's subject qualified by its issuer (an https URL). */
function isIssuerQualified(caller: string | SpiffeId): caller is string {
  return typeof caller === "string" && /^https?:\/\/[^#]+#./i.test(caller);
}

function asId(value: string | SpiffeId): SpiffeId {
  return typeof value === "string" ? SpiffeId.parse(value) : value;
}

/**
 * Builds the context for `evaluatePolicies` from what the verifier established. IDs are parsed
 * strictly (an invalid one throws its ERR_SPIFFEID_* error): a context is built from verified
 * identities, so a malformed one is a bug upstream, not something to evaluate around.
 */
export function buildPolicyContext(input: PolicyContextInput): Record<string, unknown> {
  const caller = isIssuerQualified(input.caller) ? input.caller : asId(input.caller);
  const time = input.time === undefined ? new Date() : new Date(input.time);
  if (Number.isNaN(time.getTime())) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "policy context: time is not a valid date");
  }
  const depth = input.delegationDepth ?? 0;
  if (!Number.isSafeInteger(depth) || depth < 0) {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, "policy context: delegationDepth must be a whole number >= 0");
  }
  const ctx: Record<string, unknown> = {
    "aztp:caller": caller.toString(),
    "aztp:callerLinks": (input.callerLinks ?? []).map((l) => asId(l).toString()),
    "aztp:currentTime": time.toISOString(),
    "aztp:epochTime": Math.floor(time.getTime() / 1000),
    "aztp:delegated": depth > 0,
    "aztp:delegationDepth": depth,
  };
  if (typeof caller !== "string") {
    ctx["aztp:callerTrustDomain"] = caller.trustDomain;
    ctx["aztp:callerPath"] = caller.path;
  }
  if (input.callerParent !== undefined) ctx["aztp:callerParent"] = asId(input.callerParent).toString();
  if (input.callee !== undefined) {
    const callee = asId(input.callee);
    ctx["aztp:callee"] = callee.toString();
    ctx["aztp:calleeTrustDomain"] = callee.trustDomain;
  }
  if (input.tool !== undefined) ctx["aztp:tool"] = input.tool;
  if (input.args !== undefined) ctx[ARGS_KEY] = input.args;
  if (input.sourceIp !== undefined) ctx["aztp:sourceIp"] = input.sourceIp;
  if (input.authMethod !== undefined) ctx["aztp:authMethod"] = input.authMethod;
  if (input.scope !== undefined) ctx["aztp:scope"] = input.scope;
  if (input.person !== undefined) {
    ctx["aztp:person"] = input.person.id;
    ctx["aztp:personIssuer"] = input.person.issuer;
    for (const claim of PERSON_POLICY_CLAIMS) {
      const v = input.person.claims[claim];
      if (v !== undefined) ctx[`aztp:person.${claim}`] = v;
    }
  }
  if (input.actors !== undefined) ctx["aztp:actors"] = [...input.actors];
  return ctx;
}
