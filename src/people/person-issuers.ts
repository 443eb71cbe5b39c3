/**
 * The OpenID Providers a trust domain trusts to say who a person is (DESIGN §13), and the one
 * verifier of a person's token: an OpenID Connect ID token, or a JWT access token (RFC 9068)
 * that such a provider issued for this trust domain's audience.
 *
 * A provider is found the standard way (RFC 8414 / OpenID Connect Discovery, then its
 * `jwks_uri`: oauth/issuer-keys.ts), its keys cached and refreshed on an unknown `kid`. A
 * token is checked in jose's order, strictly: decode with an algorithm allow-list (no `none`,
 * no HMAC) → `typ` is an ID token's (none, `JWT`) or an access token's (`at+jwt`), never another
 * kind's → `iss` is a trusted provider → `kid` → signature → the time window (`exp` and `iat`
 * required, `nbf` honoured) → `aud` names an audience configured for it → `azp`, when present
 * or when `aud` has several values, is that audience (OpenID Connect Core §3.1.3.7) → `nonce`
 * equals the one the flow sent, when it sent one → `sub` present. A person is (iss, sub), never
 * an e-mail alone; the claims a policy may read come through the provider's `claimsMap`.
 */
import type { KeyObject } from "node:crypto";
import { AztpError, ErrorCodes } from "../errors.js";
import { isJsonObject } from "../json/value.js";
import { IssuerKeys, type IssuerKeysOptions } from "../oauth/issuer-keys.js";
import { personClaimsOf, personId, type Person, type PersonClaims } from "../invocation/on-behalf-of.js";
import { decodeCompact, verifyDecoded, type DecodedJws } from "../spiffe/jws.js";
import { DEFAULT_ALGORITHMS } from "../spiffe/keys.js";
import { checkTimeWindow, type TimeWindow } from "../spiffe/time-window.js";

/** The claims a provider's names may be mapped onto (`aztp:person.<claim>`). */
export const MAPPABLE_CLAIMS = ["email", "email_verified", "groups", "acr", "amr"] as const;
export type MappableClaim = (typeof MAPPABLE_CLAIMS)[number];

/** A trusted OpenID Provider, as a trust domain's configuration holds it. */
export interface PersonIssuerConfig {
  /** The provider's issuer identifier, exactly as its tokens' `iss` write it. */
  issuer: string;
  /** The audiences (client IDs, or resource identifiers) its tokens must be for: `aud` names one. */
  audiences: string[];
  /** Our claim ← the provider's claim name, where they differ (e.g. groups ← "roles"). */
  claimsMap?: Partial<Record<MappableClaim, string>>;
  /** Whether audit entries may keep the person's e-mail (default: no, only iss and sub). */
  recordEmail?: boolean;
  /** Skip discovery: the provider's key set URL. */
  jwksUri?: string;
}

/** A configuration record is checked before it is stored; what is wrong is named. */
export function checkPersonIssuerConfig(value: unknown): PersonIssuerConfig {
  const bad = (m: string): never => {
    throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `person issuer: ${m}`);
  };
  if (!isJsonObject(value)) bad("must be an object");
  const v = value as Record<string, unknown>;
  const known = new Set(["issuer", "audiences", "claimsMap", "recordEmail", "jwksUri"]);
  for (const k of Object.keys(v)) if (!known.has(k)) bad(`unknown member ${JSON.stringify(k)}`);
  if (typeof v.issuer !== "string") bad("issuer must be a URL");
  let url: URL;
  try {
    url = new URL(v.issuer as string);
  } catch {
    return bad(`issuer ${JSON.stringify(v.issuer)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") bad("issuer must be an https URL");
  if (url.search !== "" || url.hash !== "") bad("an issuer identifier has no query or fragment");
  if (
    !Array.isArray(v.audiences) ||
    v.audiences.length === 0 ||
    !v.audiences.every((a) => typeof a === "string" && a.length > 0 && a.length <= 512)
  )
    bad("audiences must be a non-empty list of strings (the client IDs its tokens are for)");
  const out: PersonIssuerConfig = { issuer: v.issuer as string, audiences: [...new Set(v.audiences as string[])] };
  if (v.claimsMap !== undefined) {
    if (!isJsonObject(v.claimsMap)) bad("claimsMap must be an object");
    const map: Partial<Record<MappableClaim, string>> = {};
    for (const [ours, theirs] of Object.entries(v.claimsMap as Record<string, unknown>)) {
      if (!(MAPPABLE_CLAIMS as readonly string[]).includes(ours))
        bad(`claimsMap: ${JSON.stringify(ours)} is not one of ${MAPPABLE_CLAIMS.join(", ")}`);
      if (typeof theirs !== "string" || theirs.length === 0 || theirs.length > 256)
        bad(`claimsMap.${ours} must name the provider's claim`);
      map[ours as MappableClaim] = theirs as string;
    }
    out.claimsMap = map;
  }
  if (v.recordEmail !== undefined) {
    if (typeof v.recordEmail !== "boolean") bad("recordEmail must be true or false");
    out.recordEmail = v.recordEmail as boolean;
  }
  if (v.jwksUri !== undefined) {
    if (typeof v.jwksUri !== "string") bad("jwksUri must be a URL");
    try {
      new URL(v.jwksUri as string);
    } catch {
      bad("jwksUri must be a URL");
    }
    out.jwksUri = v.jwksUri as string;
  }
  return out;
}

/** What a verified person's token says. */
export interface VerifiedPersonToken {
  person: Person;
  /** Whether audit entries may keep the e-mail (the provider's configuration). */
  recordEmail: boolean;
  kind: "id_token" | "access_token";
  expiresAt: Date;
  issuedAt: Date;
  /** The token's `jti`, when it has one (single-use checks key on it). */
  jti?: string;
  nonce?: string;
  claims: Record<string, unknown>;
}

export interface VerifyPersonTokenOptions {
  /** The `nonce` the flow sent: the token must carry exactly it. */
  nonce?: string;
  /** The person must have authenticated at most this long ago (`auth_time`, else `iat`). */
  maxAuthAgeSeconds?: number;
  now?: Date;
}

const WINDOW: TimeWindow = { leewaySeconds: 60, expRequired: true, iatRequired: true, integerDates: false };

function invalid(rule: string, message: string): never {
  throw new AztpError(ErrorCodes.PERSON_TOKEN_INVALID, `person token: ${message}`, { rule });
}

function quoted(v: unknown): string {
  return JSON.stringify(v)?.slice(0, 80) ?? String(v);
}

/** Where a provider's keys come from; an `IssuerKeys` by default. */
export interface PersonKeySource {
  keyFor(
    kid: string | undefined,
    alg: DecodedJws["header"]["alg"],
  ): Promise<KeyObject | undefined> | KeyObject | undefined;
}

/**
 * The trusted providers of one configuration, with their keys. `keys` builds a provider's key
 * source (default: an `IssuerKeys` with discovery, loopback http allowed as it always is).
 */
export class PersonIssuers {
  readonly #configs: ReadonlyMap<string, PersonIssuerConfig>;
  readonly #keys = new Map<string, PersonKeySource>();
  readonly #makeKeys: (config: PersonIssuerConfig) => PersonKeySource;

  constructor(
    configs: readonly PersonIssuerConfig[],
    options: { keys?: (config: PersonIssuerConfig) => PersonKeySource; issuerKeys?: Partial<IssuerKeysOptions> } = {},
  ) {
    this.#configs = new Map(configs.map((c) => [c.issuer, checkPersonIssuerConfig(c)]));
    this.#makeKeys =
      options.keys ??
      ((c) =>
        new IssuerKeys({
          ...options.issuerKeys,
          issuer: c.issuer,
          ...(c.jwksUri !== undefined ? { jwksUri: c.jwksUri } : {}),
        }));
  }

  get configs(): PersonIssuerConfig[] {
    return [...this.#configs.values()];
  }

  config(issuer: string): PersonIssuerConfig | undefined {
    return this.#configs.get(issuer);
  }

  #keysOf(config: PersonIssuerConfig): PersonKeySource {
    let k = this.#keys.get(config.issuer);
    if (k === undefined) {
      k = this.#makeKeys(config);
      this.#keys.set(config.issuer, k);
    }
    return k;
  }

  /** Verifies a person's token (see the file comment for the order). Throws ERR_PERSON_*. */
  async verify(token: unknown, options: VerifyPersonTokenOptions = {}): Promise<VerifiedPersonToken> {
    let decoded: DecodedJws;
    try {
      if (typeof token !== "string") throw new Error("not a string");
      decoded = decodeCompact(token, DEFAULT_ALGORITHMS);
    } catch (e) {
      if (e instanceof AztpError && e.code === ErrorCodes.JWT_ALG_NOT_ALLOWED) invalid("alg", e.message);
      invalid("malformed", e instanceof Error ? e.message : "not a compact JWS");
    }
    const { header, payload: c } = decoded;
    const typ = typeof header.typ === "string" ? header.typ.toLowerCase() : header.typ;
    let kind: VerifiedPersonToken["kind"];
    if (typ === undefined || typ === "jwt") kind = "id_token";
    else if (typ === "at+jwt" || typ === "application/at+jwt") kind = "access_token";
    else invalid("typ", `typ ${quoted(header.typ)} is neither an ID token's nor an access token's`);

    const iss = c.iss;
    if (typeof iss !== "string" || iss.length === 0) invalid("claims", "no iss");
    const config = this.#configs.get(iss);
    if (config === undefined)
      throw new AztpError(ErrorCodes.PERSON_ISSUER_UNTRUSTED, `person token: issuer ${quoted(iss)} is not trusted`);
    const key = await this.#keysOf(config).keyFor(typeof header.kid === "string" ? header.kid : undefined, header.alg);
    if (key === undefined) invalid("kid", `issuer ${quoted(iss)} has no key ${quoted(header.kid)}`);
    if (!verifyDecoded(decoded, key)) invalid("signature", "signature does not verify with the provider's key");

    const nowDate = options.now ?? new Date();
    const now = nowDate.getTime() / 1000;
    const late = checkTimeWindow(c, now, WINDOW);
    if (late !== undefined) invalid(late.rule, `token ${late.message}`);

    const aud = typeof c.aud === "string" ? [c.aud] : c.aud;
    if (!Array.isArray(aud) || aud.length === 0 || !aud.every((a) => typeof a === "string")) invalid("aud", "no aud");
    const mine = config.audiences.find((a) => (aud as string[]).includes(a));
    if (mine === undefined) invalid("aud", `aud ${quoted(c.aud)} names none of the audiences configured for ${iss}`);
    if (c.azp !== undefined || aud.length > 1) {
      if (typeof c.azp !== "string" || !config.audiences.includes(c.azp))
        invalid("azp", `azp ${quoted(c.azp)} is not an audience configured for ${iss}`);
    }
    if (options.nonce !== undefined && c.nonce !== options.nonce)
      invalid("nonce", "the token's nonce is not the one this flow sent");
    const sub = c.sub;
    if (typeof sub !== "string" || sub.length === 0 || sub.length > 255) invalid("claims", "no sub");
    if (options.maxAuthAgeSeconds !== undefined) {
      const at = typeof c.auth_time === "number" ? c.auth_time : (c.iat as number);
      if (now - at > options.maxAuthAgeSeconds + WINDOW.leewaySeconds)
        invalid(
          "auth_time",
          `the person authenticated ${Math.round(now - at)} s ago; at most ${options.maxAuthAgeSeconds} s`,
        );
    }

    const mapped: Record<string, unknown> = { ...c };
    for (const [ours, theirs] of Object.entries(config.claimsMap ?? {})) mapped[ours] = c[theirs as string];
    const claims: PersonClaims = personClaimsOf(mapped);
    return {
      person: { issuer: iss, subject: sub, id: personId(iss, sub), claims },
      recordEmail: config.recordEmail === true,
      kind,
      expiresAt: new Date((c.exp as number) * 1000),
      issuedAt: new Date((c.iat as number) * 1000),
      ...(typeof c.jti === "string" ? { jti: c.jti } : {}),
      ...(typeof c.nonce === "string" ? { nonce: c.nonce } : {}),
      claims: c,
    };
  }
}

/**
 * One verifier per trusted-provider configuration per process, so a provider's keys are fetched
 * once and kept while its configuration holds (a changed configuration gets a new one). Shared by
 * the embedded authority's exchange and every serving guard's approvals.
 */
const verifiers = new Map<string, PersonIssuers>();
export function personIssuersFor(configs: readonly PersonIssuerConfig[]): PersonIssuers {
  const key = JSON.stringify(configs);
  let held = verifiers.get(key);
  if (held === undefined) {
    if (verifiers.size >= 64) verifiers.clear();
    verifiers.set(key, (held = new PersonIssuers(configs)));
  }
  return held;
}
