/**
 * `aztp issuer add | list | remove`: the OpenID Providers a trust domain trusts to say who a
 * person is (people/person-issuers.ts, DESIGN §13), on the home's authority or a remote `aztp
 * serve`'s with --server. `add` checks the provider before trusting it (discovery, its
 * metadata's `issuer` exactly the URL given, a key set that loads) from the machine the command
 * runs on, unless --no-check.
 */
import type { Command } from "commander";
import { AztpError, ErrorCodes } from "../../errors.js";
import { IssuerKeys } from "../../oauth/issuer-keys.js";
import { MAPPABLE_CLAIMS, type MappableClaim, type PersonIssuerConfig } from "../../people/person-issuers.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--claims-map groups=roles`: our claim ← the provider's claim name. */
function claimsMapOf(pairs: readonly string[]): Partial<Record<MappableClaim, string>> | undefined {
  if (pairs.length === 0) return undefined;
  const map: Partial<Record<MappableClaim, string>> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const ours = eq < 0 ? "" : pair.slice(0, eq);
    const theirs = eq < 0 ? "" : pair.slice(eq + 1);
    if (!(MAPPABLE_CLAIMS as readonly string[]).includes(ours) || theirs === "")
      throw usage(
        `--claims-map ${JSON.stringify(pair)}: write OURS=THEIRS, OURS one of ${MAPPABLE_CLAIMS.join(", ")} (e.g. groups=roles)`,
      );
    map[ours as MappableClaim] = theirs;
  }
  return map;
}

/**
 * The provider answers as the configuration says: its metadata found by discovery names exactly
 * this issuer, and its key set loads. A provider that cannot be reached, or names another issuer,
 * is refused now rather than at a person's first exchange.
 */
async function checkProvider(config: PersonIssuerConfig): Promise<void> {
  const keys = new IssuerKeys({
    issuer: config.issuer,
    ...(config.jwksUri !== undefined ? { jwksUri: config.jwksUri } : {}),
  });
  try {
    if (config.jwksUri === undefined) await keys.metadata();
    // Loads the key set (the answer, a key or none for this made-up kid, does not matter).
    await keys.keyFor("aztp-issuer-check", "ES256");
  } catch (e) {
    if (!(e instanceof AztpError)) throw e;
    throw new AztpError(
      e.code,
      `${config.issuer} cannot be trusted as it is: ${e.message} (check the URL; --no-check adds it unchecked)`,
      { cause: e },
    );
  }
}

function describe(c: PersonIssuerConfig): string {
  const map = Object.entries(c.claimsMap ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return [
    c.issuer,
    `audiences=${c.audiences.join(",")}`,
    ...(map !== "" ? [`claims-map=${map}`] : []),
    ...(c.recordEmail === true ? ["record-email"] : []),
    ...(c.jwksUri !== undefined ? [`jwks-uri=${c.jwksUri}`] : []),
  ].join(" ");
}

export function register(program: Command, ctx: CliContext): void {
  const issuer = program
    .command("issuer")
    .description("the OpenID Providers trusted to say who a person is (for agents acting on their behalf)");
  issuer
    .command("add <url>")
    .description("trust the OpenID Provider whose issuer identifier is URL (replaces its earlier configuration)")
    .requiredOption(
      "--audience <aud>",
      "an audience its tokens must name (the client ID of your app at the provider); repeat for more",
      collect,
    )
    .option(
      "--claims-map <ours=theirs>",
      `read one of ${MAPPABLE_CLAIMS.join(", ")} from another claim; repeatable`,
      collect,
    )
    .option("--record-email", "let audit entries keep the person's e-mail (default: only issuer and subject)")
    .option("--jwks-uri <url>", "skip discovery: the provider's key set URL")
    .option("--trust-domain <td>", "the trust domain that trusts it (default: the authority's default)")
    .option("--no-check", "do not check the provider's discovery and keys before trusting it")
    .action(
      async (
        url: string,
        o: {
          audience: string[];
          claimsMap?: string[];
          recordEmail?: boolean;
          jwksUri?: string;
          trustDomain?: string;
          check: boolean;
        },
      ) => {
        const claimsMap = claimsMapOf(o.claimsMap ?? []);
        const config: PersonIssuerConfig = {
          issuer: url,
          audiences: o.audience,
          ...(claimsMap !== undefined ? { claimsMap } : {}),
          ...(o.recordEmail === true ? { recordEmail: true } : {}),
          ...(o.jwksUri !== undefined ? { jwksUri: o.jwksUri } : {}),
        };
        if (o.check) await checkProvider(config);
        const added = await ctx.withAuthority((a) => a.addPersonIssuer(config, o.trustDomain));
        ctx.out(
          { issuer: added, checked: o.check },
          () => `trusted ${describe(added)}${o.check ? "" : " (unchecked)"}`,
        );
      },
    );
  issuer
    .command("list")
    .description("the OpenID Providers a trust domain trusts")
    .option("--trust-domain <td>", "the trust domain (default: the authority's default)")
    .action(async (o: { trustDomain?: string }) => {
      const issuers = await ctx.withAuthority(async (a) => a.personIssuers(o.trustDomain));
      ctx.out({ issuers }, () => issuers.map(describe).join("\n") || "(no trusted OpenID Providers)");
    });
  issuer
    .command("remove <url>")
    .description("stop trusting the OpenID Provider URL; exit 1 when it was not trusted")
    .option("--trust-domain <td>", "the trust domain (default: the authority's default)")
    .action(async (url: string, o: { trustDomain?: string }) => {
      const removed = await ctx.withAuthority((a) => a.removePersonIssuer(url, o.trustDomain));
      if (!removed)
        throw new AztpError(ErrorCodes.PERSON_ISSUER_UNTRUSTED, `${url} is not a trusted OpenID Provider here`);
      ctx.out({ removed }, () => `no longer trusted: ${url}`);
    });
}
