/**
 * `aztp verify x509 | jwt` and `aztp id`: offline checks that need no authority: an SVID
 * against a bundle (and, for X.509, revocations when told where to find them), an ID's forms.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { EmbeddedAuthority } from "../../authority/authority.js";
import { verifyRevocationList, type RevocationList } from "../../authority/revocation-list.js";
import { AztpError, ErrorCodes } from "../../errors.js";
import { BundleSet, loadBundleFile } from "../../spiffe/bundle.js";
import { Certificate } from "../../spiffe/certificate.js";
import { validateJwtSvid } from "../../spiffe/jwtsvid.js";
import { SpiffeId } from "../../spiffe/spiffeid.js";
import { verifyX509Svid } from "../../spiffe/x509svid.js";
import type { CliContext } from "../context.js";
import { readInput } from "../files.js";
import { parseTime } from "../options.js";

export function register(program: Command, ctx: CliContext): void {
  const verify = program.command("verify").description("verify an SVID offline against a bundle");
  verify
    .command("x509 <cert>")
    .description(
      "verify an X.509-SVID chain (PEM, leaf first). Offline, against a bundle alone, it cannot see revocations (and says so): " +
        "--home DIR checks them against that authority, --revocations FILE against its signed list (aztp revocations export)",
    )
    .requiredOption("--bundle <file>", "SPIFFE bundle JSON or PEM roots")
    .option(
      "--revocations <file>",
      "the authority's signed revocation list (aztp revocations export), checked against --bundle and refused past its signed window",
    )
    .option("--time <iso8601>", "validate as of this time (the SVID, and the revocation list's window)")
    .action(async (cert: string, o: { bundle: string; revocations?: string; time?: string }) => {
      const time = parseTime(o.time);
      const chain = Certificate.parsePem(await readInput(cert));
      const leafTd = leafTrustDomain(chain);
      const source = new BundleSet([loadBundleFile(await readInput(o.bundle), leafTd)]);
      const result = verifyX509Svid(chain, source, time ? { time } : {});
      const serial = (chain[0] as Certificate).serialNumber;
      // --home given on the command line (not AZTP_HOME or ./.aztp): verifying needs no home,
      // so one found by default would be a guess at which authority's revocations apply.
      const revocation = await checkRevocation(
        {
          ...(ctx.options().home !== undefined ? { home: ctx.home() } : {}),
          ...(o.revocations ? { list: o.revocations } : {}),
        },
        source,
        result.id,
        serial,
        time,
      );
      const value = {
        valid: true,
        spiffeId: result.id.toString(),
        aztpId: result.id.aztpId,
        serial,
        expiresAt: result.notAfter.toISOString(),
        revocation,
      };
      ctx.out(value, () => `valid: ${value.spiffeId} (until ${value.expiresAt}); ${describeRevocation(revocation)}`);
    });
  verify
    .command("jwt <token>")
    .description("verify a JWT-SVID (pass - to read it from stdin)")
    .requiredOption("--bundle <file>", "SPIFFE bundle JSON")
    .requiredOption("--audience <aud...>", "expected audience(s): any one must match")
    .option("--time <iso8601>", "validate as of this time")
    .action(async (token: string, o: { bundle: string; audience: string[]; time?: string }) => {
      const time = parseTime(o.time);
      const text = (token === "-" ? await readInput("-") : token).trim();
      const source = new BundleSet([loadBundleFile(await readInput(o.bundle))]);
      const svid = validateJwtSvid(text, source, { audience: o.audience, ...(time ? { time } : {}) });
      const value = {
        valid: true,
        spiffeId: svid.id.toString(),
        aztpId: svid.id.aztpId,
        audience: svid.audience,
        expiresAt: svid.expiry.toISOString(),
      };
      ctx.out(value, () => `valid: ${value.spiffeId} for ${value.audience.join(", ")} (until ${value.expiresAt})`);
    });

  program
    .command("id <string>")
    .description("parse a SPIFFE or AZTP ID and print its normalised forms")
    .action((s: string) => {
      const id = SpiffeId.parse(s);
      ctx.out(
        { spiffeId: id.toString(), aztpId: id.aztpId, trustDomain: id.trustDomain, path: id.path },
        () => `${id.toString()}\n${id.aztpId}`,
      );
    });
}

type RevocationCheck =
  | { checked: false; why: string }
  | { checked: true; against: string; sequence: number; listIssuedAt?: string; listValidUntil?: string };

/**
 * Whether `id` (SVID serial `serial`) is revoked, per the authority in `home` and/or the
 * signed list in file `list` (verified against `bundles`, its window at `time`, else now).
 * Revoked is ERR_X509SVID_REVOKED; a list past its window is ERR_REVOCATION_LIST_EXPIRED.
 * With neither, nothing is checked and the result says so: an offline verifier holding only
 * the bundle cannot know about revocations, and must not let "valid" suggest it does.
 */
async function checkRevocation(
  from: { home?: string; list?: string },
  bundles: BundleSet,
  id: SpiffeId,
  serial: string,
  time: Date | undefined,
): Promise<RevocationCheck> {
  if (from.home === undefined && from.list === undefined)
    return { checked: false, why: "offline: pass --home DIR or --revocations FILE" };
  const revoked = (why: string, against: string): never => {
    throw new AztpError(ErrorCodes.X509SVID_REVOKED, `${id.toString()} is revoked (${why}) according to ${against}`);
  };
  let result: RevocationCheck | undefined;
  if (from.home !== undefined) {
    const a = await EmbeddedAuthority.open(from.home);
    if (!a.trustDomains.includes(id.trustDomain)) {
      throw new AztpError(
        ErrorCodes.TRUST_DOMAIN_NOT_ALLOWED,
        `cannot check revocations in ${from.home}: its authority has no trust domain ${id.trustDomain}`,
      );
    }
    const against = `the authority in ${from.home}`;
    if (a.isRevoked(id.toString(), serial))
      revoked(a.isRevoked(id.toString()) ? "its identity, or an ancestor's" : `its serial ${serial}`, against);
    result = { checked: true, against, sequence: a.revocationSequence() };
  }
  if (from.list !== undefined) {
    let list: RevocationList;
    try {
      list = verifyRevocationList(await readInput(from.list), bundles, { trustDomain: id.trustDomain, now: time });
    } catch (e) {
      // An old list checked on purpose: the SVID and the list as of a time within its window.
      if (e instanceof AztpError && e.code === ErrorCodes.REVOCATION_LIST_EXPIRED)
        throw new AztpError(
          e.code,
          `${from.list}: ${e.message}. Export a current one (aztp revocations export), or pass --time within its window to check as of then`,
          { cause: e, rule: e.rule ?? "expired" },
        );
      throw e;
    }
    const against = `the revocation list of ${list.trustDomain} in ${resolve(from.list)} (sequence ${list.sequence}, signed ${list.thisUpdate.toISOString()}, valid until ${list.nextUpdate.toISOString()})`;
    const why = list.revoked(id.toString(), serial);
    if (why !== undefined)
      revoked(why === "serial" ? `its serial ${serial}` : "its identity, or an ancestor's", against);
    result = {
      checked: true,
      against: result?.checked ? `${result.against} and ${against}` : against,
      sequence: list.sequence,
      listIssuedAt: list.thisUpdate.toISOString(),
      listValidUntil: list.nextUpdate.toISOString(),
    };
  }
  return result as RevocationCheck;
}

function describeRevocation(r: RevocationCheck): string {
  return r.checked ? `not revoked according to ${r.against}` : `revocation NOT checked (${r.why})`;
}

function leafTrustDomain(chain: Certificate[]): string | undefined {
  const uri = chain[0]?.uriSans[0];
  if (uri === undefined) return undefined;
  try {
    return SpiffeId.parse(uri).trustDomain;
  } catch {
    return undefined;
  }
}
