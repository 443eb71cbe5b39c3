/**
 * The authority's signed revocation list, checked by someone who holds only the trust bundle:
 * how it is signed (signRevocationList, which EmbeddedAuthority.signedRevocationList() calls)
 * and how its consumer verifies it (verifyRevocationList), in one place.
 *
 * It is a compact JWS, typ
 * `aztp-revocations+jwt`, signed with the trust domain's JWT key (its kid is in the bundle),
 * whose payload holds the issuer `spiffe://TD`, a `sequence` that grows with every revocation
 * or reissue, `iat`, and the revoked SPIFFE IDs (a revoked parent's descendants are listed
 * too) and SVID serials. `aztp revocations export` writes it; `aztp verify x509 --revocations
 * FILE` applies it. The list is as fresh as its `iat`: a verifier that needs to know about a
 * revocation made a minute ago needs a list exported since, or the authority itself (--home).
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import type { BundleSource } from "../spiffe/bundle.js";
import { decodeHeader, decodeRest, signCompact, verifyDecoded } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import { SpiffeId } from "../spiffe/spiffeid.js";

export const REVOCATION_LIST_TYP = "aztp-revocations+jwt";

/** A list is read whole from a file: 16 MiB holds some 400,000 serials. */
const MAX_LIST_LENGTH = 16 * 1024 * 1024;

export interface RevocationList {
  trustDomain: string;
  /** Grows with every revocation or reissue: of two lists, the higher sequence is the newer. */
  sequence: number;
  issuedAt: Date;
  identities: ReadonlySet<string>;
  serials: ReadonlySet<string>;
  /** Why `id` (a SPIFFE or AZTP ID) or its SVID `serial` is revoked, or undefined when it is not on the list. */
  revoked(id: string, serial?: string): "identity" | "serial" | undefined;
}

/** What the registry holds about revocations (RegistryState["revocations"]): identities and serials by key. */
export interface RevocationRecords {
  readonly sequence: number;
  readonly identities: Readonly<Record<string, unknown>>;
  readonly serials: Readonly<Record<string, { readonly spiffeId: string }>>;
}

/**
 * Signs the list of `trustDomain` from the registry's `revocations` (only the entries of that
 * trust domain) with the trust domain's JWT key `key`, whose `kid` the bundle holds.
 * Revocation already records a revoked parent's descendants, so they are listed too.
 */
export function signRevocationList(
  revocations: RevocationRecords,
  signing: { trustDomain: string; kid: string; key: KeyObject; now?: Date },
): string {
  const { trustDomain } = signing;
  const inTd = (spiffeId: string): boolean => SpiffeId.parse(spiffeId).trustDomain === trustDomain;
  return signCompact(
    { typ: REVOCATION_LIST_TYP, kid: signing.kid },
    {
      iss: `spiffe://${trustDomain}`,
      iat: Math.floor((signing.now ?? new Date()).getTime() / 1000),
      sequence: revocations.sequence,
      identities: Object.keys(revocations.identities).filter(inTd),
      serials: Object.entries(revocations.serials)
        .filter(([, e]) => inTd(e.spiffeId))
        .map(([s]) => s),
    },
    signing.key,
  );
}

function invalid(rule: string): never {
  throw new AztpError(ErrorCodes.REVOCATION_LIST_INVALID, `revocation list: ${rule}`);
}

function stringList(value: unknown, name: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) invalid(`${name} is not a list of strings`);
  return value as string[];
}

/**
 * Verifies a revocation list against the bundles of `source` and returns it. With
 * `trustDomain`, the list must be that trust domain's. Any defect (shape, typ, issuer, a kid
 * the bundle does not hold, the signature) is ERR_REVOCATION_LIST_INVALID.
 */
export function verifyRevocationList(
  token: string,
  source: BundleSource,
  options: { trustDomain?: string } = {},
): RevocationList {
  const text = token.trim();
  if (text.length === 0 || text.length > MAX_LIST_LENGTH)
    invalid(`expected a compact JWS of 1 to ${MAX_LIST_LENGTH} characters`);
  const parts = text.split(".");
  if (parts.length !== 3)
    invalid("expected three dot-separated parts (a compact JWS, as `aztp revocations export` prints it)");
  const [h, p, s] = parts as [string, string, string];
  let decoded;
  try {
    decoded = decodeRest<Record<string, unknown>>(decodeHeader(h, DEFAULT_ALGORITHMS), h, p, s);
  } catch (e) {
    invalid((e as Error).message);
  }
  const { header, payload } = decoded;
  if (header.typ !== REVOCATION_LIST_TYP)
    invalid(`typ must be ${REVOCATION_LIST_TYP}, got ${JSON.stringify(header.typ ?? null).slice(0, 60)}`);
  if (typeof header.kid !== "string" || header.kid.length === 0) invalid("the header has no kid");
  let issuer: SpiffeId;
  try {
    issuer = SpiffeId.parse(String(payload.iss));
  } catch {
    invalid(`iss must be the trust domain's ID (spiffe://TD), got ${JSON.stringify(payload.iss ?? null).slice(0, 80)}`);
  }
  if (!issuer.isTrustDomainId) invalid(`iss must be a trust domain ID, got ${issuer.toString()}`);
  const trustDomain = issuer.trustDomain;
  if (options.trustDomain !== undefined && options.trustDomain !== trustDomain)
    invalid(`it is the list of ${trustDomain}, not of ${options.trustDomain}`);
  const bundle = source.getBundleForTrustDomain(trustDomain);
  if (bundle === undefined) invalid(`no bundle for trust domain ${trustDomain} to check it against`);
  const key = bundle.jwtAuthorities.get(header.kid);
  if (key === undefined)
    invalid(`the bundle of ${trustDomain} holds no JWT key with kid ${JSON.stringify(header.kid).slice(0, 80)}`);
  if (!verifyDecoded(decoded, key)) invalid(`its signature does not verify with ${trustDomain}'s key`);
  const { sequence, iat } = payload;
  if (typeof sequence !== "number" || !Number.isSafeInteger(sequence) || sequence < 0)
    invalid("sequence is not a whole number");
  if (typeof iat !== "number" || !Number.isFinite(iat)) invalid("iat is not a number");
  const identities = new Set(stringList(payload.identities, "identities"));
  const serials = new Set(stringList(payload.serials, "serials"));
  return {
    trustDomain,
    sequence,
    issuedAt: new Date(iat * 1000),
    identities,
    serials,
    revoked(id, serial) {
      if (serial !== undefined && serials.has(serial)) return "serial";
      let spiffeId: string;
      try {
        spiffeId = SpiffeId.parse(id).toString();
      } catch {
        return "identity"; // not an ID at all: never "not revoked"
      }
      return identities.has(spiffeId) ? "identity" : undefined;
    },
  };
}
