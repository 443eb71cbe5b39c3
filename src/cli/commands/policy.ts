/**
 * `aztp policy attach | get | check`: the policies attached to an identity, and a decision
 * against them, its request built as the verifier builds one (policy/request.ts); on the
 * home's authority, or a remote `aztp serve`'s with --server.
 */
import type { Command } from "commander";
import { PERSON_POLICY_CLAIMS, type PersonContext } from "../../policy/context.js";
import { evaluatePolicies } from "../../policy/evaluate.js";
import { policyRequest } from "../../policy/request.js";
import { SpiffeId } from "../../spiffe/spiffeid.js";
import { resolveRecord, type CliContext } from "../context.js";
import { usage, Verdict } from "../exit.js";
import { readInput } from "../files.js";
import { jsonObjectOption, parseTime } from "../options.js";

export function register(program: Command, ctx: CliContext): void {
  const policy = program.command("policy").description("attach, show and check AZTP policies");
  policy
    .command("attach <id> <file>")
    .description("attach the policy document in FILE (JSON) to identity ID")
    .option("--name <name>", "a name for the policy")
    .action(async (id: string, file: string, o: { name?: string }) => {
      const document = await readInput(file);
      const entry = await ctx.withAuthority(async (a) =>
        a.attachPolicy((await resolveRecord(a, id)).spiffeId, document, o.name),
      );
      ctx.out({ code: entry.code, policyName: entry.policyName }, () => `attached ${entry.code} (${entry.policyName})`);
    });
  policy
    .command("get <id>")
    .description("show the policies attached to ID")
    .action(async (id: string) => {
      const rec = await ctx.withAuthority(async (a) => resolveRecord(a, id));
      const data = rec.policies.map((p) => ({
        code: p.code,
        policyName: p.policyName,
        policyStatement: p.policyStatement,
      }));
      ctx.out(
        { data },
        () =>
          data.map((p) => `${p.code} ${p.policyName}\n${JSON.stringify(p.policyStatement, null, 2)}`).join("\n") ||
          "(no policies)",
      );
    });
  policy
    .command("check <id>")
    .description("decide a request against ID's policies; exit 1 when denied")
    .requiredOption("--action <action>", 'e.g. "tool:call"')
    .option("--resource <resource>", "e.g. a tool name", "*")
    .option("--principal <id>", "the caller (default: ID itself)")
    .option("--code <code>", "only the policy with this code")
    .option(
      "--context <json>",
      'more condition keys, as a JSON object: the application\'s own, or one to simulate, e.g. {"aztp:sourceIp":"10.1.2.3"}',
      "{}",
    )
    .option("--time <iso8601>", "decide as of this time (aztp:currentTime, aztp:epochTime)")
    .option("--person <issuer#subject>", "decide as a call made for this person (aztp:person, aztp:personIssuer)")
    .option(
      "--person-claims <json>",
      'the person\'s claims, as their provider would assert them, e.g. {"groups":["finance"],"amr":["pwd","mfa"]}',
    )
    .option(
      "--actor <id...>",
      "the agents acting for the person, the first one first (aztp:actors; default: the principal)",
    )
    .action(
      async (
        id: string,
        o: {
          action: string;
          resource: string;
          principal?: string;
          code?: string;
          context: string;
          time?: string;
          person?: string;
          personClaims?: string;
          actor?: string[];
        },
      ) => {
        const extra = jsonObjectOption("--context", o.context);
        if (o.person === undefined && (o.personClaims !== undefined || o.actor !== undefined))
          throw usage("--person-claims and --actor describe a person: give --person too");
        const person = o.person === undefined ? undefined : personOption(o.person, o.personClaims);
        const now = parseTime(o.time);
        const decision = await ctx.withAuthority(async (a) => {
          const rec = await resolveRecord(a, id);
          const principal = o.principal ? principalOption(o.principal) : rec.spiffeId;
          // The principal's relations as held (a remote authority fetches them once first).
          const relations = principal.startsWith("spiffe://") ? await a.relations(principal) : undefined;
          // The request as the verifier builds it for a direct call of tool RESOURCE on ID.
          const request = policyRequest({
            principal,
            action: o.action,
            resource: o.resource,
            callee: rec.spiffeId,
            tool: o.resource,
            relations,
            now,
            extra,
            ...(person !== undefined
              ? {
                  person,
                  actors: (o.actor ?? [principal]).map((a) => {
                    try {
                      return SpiffeId.parse(a).toString();
                    } catch (e) {
                      throw usage(`--actor ${a}: ${(e as Error).message}`);
                    }
                  }),
                }
              : {}),
          });
          // A key the request builds is never replaced by --context (the builder's rule): said, not
          // silently ignored, so nobody reads a decision as one about a context they did not get.
          for (const [k, v] of Object.entries(extra)) {
            if (request.context?.[k] !== v)
              throw usage(
                `--context cannot set ${k}: the request builds it (from ID, --principal, --resource, --time and the registry)`,
              );
          }
          return evaluatePolicies(await a.policiesOf(rec.spiffeId, o.code), request);
        });
        ctx.out(
          decision,
          () =>
            `${decision.decision} (${decision.reason}${decision.statement !== undefined ? `, statement ${decision.statement}` : ""})${
              decision.approval !== undefined && decision.approval.length > 0
                ? `, only with a person's approval: ${decision.approval.map((a) => a.reason).join("; ")}`
                : ""
            }`,
        );
        if (decision.decision !== "allow") throw new Verdict("denied");
      },
    );
}

/** A principal: a SPIFFE or AZTP ID, or a bearer caller of another issuer, `<issuer>#<subject>`. */
function principalOption(value: string): string {
  if (/^https?:\/\/[^#]+#./i.test(value)) return value;
  try {
    return SpiffeId.parse(value).toString();
  } catch (e) {
    throw usage(`--principal must be a SPIFFE or AZTP ID, or ISSUER#SUBJECT: ${(e as Error).message}`);
  }
}

/** `--person ISSUER#SUBJECT` and its claims, as a verified on-behalf-of token would give them. */
function personOption(value: string, claimsJson: string | undefined): PersonContext {
  const hash = value.indexOf("#");
  const issuer = hash > 0 ? value.slice(0, hash) : "";
  if (!/^https?:\/\/[^#]+$/i.test(issuer) || hash === value.length - 1)
    throw usage(`--person must be ISSUER#SUBJECT (the provider's issuer URL, then the person's sub), not ${value}`);
  const claims = claimsJson === undefined ? {} : jsonObjectOption("--person-claims", claimsJson);
  const known = new Set<string>(PERSON_POLICY_CLAIMS);
  for (const k of Object.keys(claims))
    if (!known.has(k)) throw usage(`--person-claims: ${k} is not one of ${PERSON_POLICY_CLAIMS.join(", ")}`);
  return { id: value, issuer, claims };
}
