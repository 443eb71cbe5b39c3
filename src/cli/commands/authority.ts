/**
 * `aztp init | issue | jwt | bundle | revocations export | ca rotate`: the authority's own
 * operations: its trust domain, the SVIDs and JWT-SVIDs it issues, its bundle, its signed
 * revocation list, and CA rotation
 * (which `aztp verify x509 --revocations` consumes: the list is made here, by the authority
 * that signs it; it is checked by verification).
 */
import { Option, type Command } from "commander";
import {
  EmbeddedAuthority,
  DEFAULT_ENVIRONMENT,
  DEFAULT_METHOD,
  MAX_JWT_SVID_TTL_SECONDS,
} from "../../authority/authority.js";
import { MAX_REVOCATION_LIST_VALIDITY_SECONDS } from "../../authority/revocation-list.js";
import { generateWorkloadKey } from "../../spiffe/csr.js";
import { exportPrivateKeyPem } from "../../spiffe/keys.js";
import { TrustDomain } from "../../spiffe/spiffeid.js";
import type { CliContext } from "../context.js";
import { usage } from "../exit.js";
import { outputDir, refuseOverwrite, writeNewFiles } from "../files.js";
import { durationOption, resolveIdentity } from "../options.js";
import { openStores } from "../../store/open-stores.js";
import { readKekFile, storeOf } from "./serve.js";

export function register(program: Command, ctx: CliContext): void {
  program
    .command("init")
    .description("create a trust domain: root CA, intermediate, JWT key, empty registry")
    .requiredOption("--trust-domain <td>", "the trust domain, e.g. example.org")
    .action(async (o: { trustDomain: string }) => {
      const a = await EmbeddedAuthority.init(ctx.home(), o.trustDomain);
      ctx.out(
        { home: a.home, trustDomain: a.defaultTrustDomain },
        () => `initialised trust domain ${a.defaultTrustDomain} in ${a.home}`,
      );
    });

  program
    .command("issue <name>")
    .description(
      "issue an X.509-SVID for NAME; writes svid.pem, key.pem, bundle.pem, bundle.json (never over existing ones without --force)",
    )
    .option("--parent <id>", "parent identity (AZTP or SPIFFE ID)")
    .option("--ttl <duration>", "SVID lifetime, e.g. 1h", "1h")
    .option("--out <dir>", "where to write the files", ".")
    .option("--force", "overwrite svid.pem, key.pem, bundle.pem and bundle.json if they exist")
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .option("--environment <env>", "path segment after workload/", DEFAULT_ENVIRONMENT)
    .option("--method <method>", "path segment after the environment", DEFAULT_METHOD)
    .action(
      async (
        name: string,
        o: {
          parent?: string;
          ttl: string;
          out: string;
          force?: boolean;
          trustDomain?: string;
          environment: string;
          method: string;
        },
      ) => {
        const ttlSeconds = durationOption("--ttl", o.ttl);
        // The folder and the files are checked before anything is issued: a refusal leaves the
        // registry as it was. writeNewFiles checks again, atomically, as it creates each file.
        const a = await EmbeddedAuthority.open(ctx.home());
        const dir = outputDir(o.out);
        refuseOverwrite(dir, ["key.pem", "svid.pem", "bundle.pem", "bundle.json"], o.force === true);
        const key = await generateWorkloadKey();
        const { record, svid } = await a.issueIdentity(
          {
            name,
            environment: o.environment,
            method: o.method,
            ...(o.trustDomain ? { trustDomain: o.trustDomain } : {}),
            ...(o.parent ? { parentIdentity: o.parent } : {}),
          },
          key.csr,
          { ttlSeconds },
        );
        const bundle = a.bundle(record.trustDomain);
        writeNewFiles(
          dir,
          [
            // The key first: if it cannot be created (it appeared meanwhile), nothing else is written.
            { name: "key.pem", text: exportPrivateKeyPem(key.privateKey), mode: 0o600 },
            { name: "svid.pem", text: svid.chainPem },
            { name: "bundle.pem", text: bundle.toPem() },
            { name: "bundle.json", text: `${JSON.stringify(bundle.toSpiffe(), null, 2)}\n` },
          ],
          o.force === true,
        );
        ctx.out(
          {
            aztpId: record.aztpId,
            spiffeId: record.spiffeId,
            serial: svid.serial,
            expiresAt: svid.notAfter.toISOString(),
            dir,
          },
          () =>
            `${record.aztpId}\n${record.spiffeId}\nserial ${svid.serial}, expires ${svid.notAfter.toISOString()}\nwrote svid.pem key.pem bundle.pem bundle.json to ${dir}`,
        );
      },
    );

  program
    .command("jwt <name>")
    .description("print a JWT-SVID for NAME (a name or an ID)")
    .requiredOption("--audience <aud...>", "audience(s)")
    .option("--ttl <duration>", "lifetime", "5m")
    .action(async (name: string, o: { audience: string[]; ttl: string }) => {
      const ttl = durationOption("--ttl", o.ttl);
      // The option's range, checked as one: a usage error like any malformed --ttl.
      if (ttl > MAX_JWT_SVID_TTL_SECONDS)
        throw usage(`--ttl: a JWT-SVID lives at most ${MAX_JWT_SVID_TTL_SECONDS} s (24 h), got ${ttl} s`);
      const a = await EmbeddedAuthority.open(ctx.home());
      const rec = resolveIdentity(a, name);
      const token = a.mintJwtSvid(rec.spiffeId, o.audience, ttl);
      ctx.out({ token, spiffeId: rec.spiffeId }, () => token);
    });

  program
    .command("bundle")
    .description("print the trust bundle")
    .addOption(new Option("--format <format>", "output format").choices(["spiffe", "pem"]).default("spiffe"))
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .action(async (o: { format: "spiffe" | "pem"; trustDomain?: string }) => {
      const a = await EmbeddedAuthority.open(ctx.home());
      const b = a.bundle(o.trustDomain ?? a.defaultTrustDomain);
      if (o.format === "pem") process.stdout.write(b.toPem());
      else process.stdout.write(`${JSON.stringify(b.toSpiffe(), null, 2)}\n`);
    });

  program
    .command("ca")
    .description("the authority's CAs")
    .command("rotate")
    .description(
      "rotate a trust domain's CA: a new intermediate and JWT key under the same root; the old JWT key stays in the bundle until everything it signed has expired",
    )
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .option("--store <location>", "a home folder or postgres:// URL (default: --home)")
    .option("--kek-file <file>", "key-encryption key of the CA keys in a PostgreSQL store")
    .action(async (o: { trustDomain?: string; store?: string; kekFile?: string }) => {
      const stores = await openStores(storeOf(o.store, ctx), { kek: readKekFile(o.kekFile) });
      try {
        const a = await EmbeddedAuthority.fromStores(stores, { home: ctx.home() });
        const td = o.trustDomain === undefined ? a.defaultTrustDomain : TrustDomain.parse(o.trustDomain).name;
        const generations = await a.rotateCa(td);
        const [now, previous] = generations;
        const sequence = a.bundle(td).sequence;
        ctx.out(
          {
            trustDomain: td,
            generation: now?.generation,
            previousRetiresAfter: previous?.retireAfter,
            bundleSequence: sequence,
          },
          () =>
            `rotated the CA of ${td} to generation ${now?.generation}; generation ${previous?.generation} stays in the bundle until ${previous?.retireAfter} (bundle sequence ${sequence})`,
        );
      } finally {
        await stores.close();
      }
    });

  const revocations = program
    .command("revocations")
    .description("the authority's signed revocation list, for verifiers that hold only the bundle");
  revocations
    .command("export")
    .description(
      "print the signed revocation list (a compact JWS, signed with the trust domain's JWT key); aztp verify x509 --revocations FILE applies it",
    )
    .option("--trust-domain <td>", "trust domain (default: the authority's)")
    .option(
      "--valid-for <duration>",
      "its signed validity window (90s, 15m, 1h, 7d; at most 31d): verifiers refuse it after that, so export again before",
      "1d",
    )
    .action(async (o: { trustDomain?: string; validFor: string }) => {
      const validitySeconds = durationOption("--valid-for", o.validFor);
      if (validitySeconds < 1 || validitySeconds > MAX_REVOCATION_LIST_VALIDITY_SECONDS)
        throw usage(`--valid-for is 1s to ${MAX_REVOCATION_LIST_VALIDITY_SECONDS / 86400}d, got ${o.validFor}`);
      const a = await EmbeddedAuthority.open(ctx.home());
      const td = o.trustDomain === undefined ? a.defaultTrustDomain : TrustDomain.parse(o.trustDomain).name;
      a.bundle(td); // ERR_TRUST_DOMAIN_NOT_ALLOWED for a trust domain this authority does not have
      const now = new Date();
      const list = a.signedRevocationList(td, { validitySeconds, now });
      const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
      ctx.out(
        {
          trustDomain: td,
          sequence: a.revocationSequence(),
          thisUpdate: thisUpdate.toISOString(),
          nextUpdate: new Date(thisUpdate.getTime() + validitySeconds * 1000).toISOString(),
          revocations: list,
        },
        () => list,
      );
    });
}
