/**
 * The service's own X.509-SVID, spiffe://<default trust domain>/aztp/serve: what HTTPS clients
 * verify against the trust bundle (chain to a root, URI SAN). This library's clients check the
 * SPIFFE ID; standard HTTPS clients (OAuth libraries, MCP hosts, curl) check a host name, so the
 * SVID also names the hosts the service is reached under (`--tls-name`: DNS and IP SANs).
 *
 * Issued at start by the CA itself (ServeBackend.issueServiceSvid), over a key made here and
 * never written anywhere, and replaced at half its lifetime through setSecureContext: new
 * connections get the new SVID, open ones keep theirs. A failed rotation is logged and retried
 * every 30 s while the current SVID is still valid.
 */
import type { Server as HttpsServer } from "node:https";
import { isIP } from "node:net";
import { AztpError, ErrorCodes } from "../errors.js";
import { generateWorkloadKey } from "../spiffe/csr.js";
import { SpiffeId } from "../spiffe/spiffeid.js";
import type { Logger } from "./log.js";
import type { ServeBackend } from "./open.js";

export const SERVE_SVID_TTL_SECONDS = 3600;
const RETRY_MS = 30_000;

export interface ServiceCredential {
  id: string;
  keyPem: string;
  chainPem: string;
  serial: string;
  notAfter: Date;
  notBefore: Date;
  /** When it was issued (notBefore is back-dated for clock skew; half-life counts from here). */
  issuedAt: Date;
}

export function serviceId(trustDomain: string): string {
  return SpiffeId.fromSegments(trustDomain, "aztp", "serve").toString();
}

/**
 * The host names a certificate names by default: the listen host, when it is a name or an address
 * a client can connect to (never the unspecified 0.0.0.0 or ::).
 */
export function defaultHostNames(listenHost: string): string[] {
  const host = listenHost.replace(/^\[|\]$/g, "");
  if (host === "" || host === "0.0.0.0" || host === "::" || /^0*:(0*:)*0*$/.test(host)) return [];
  return [host];
}

/** A --tls-name: a DNS name (no wildcard: each name is given) or an IPv4/IPv6 address. */
export function checkHostName(name: string): string {
  const host = name.replace(/^\[|\]$/g, "");
  if (isIP(host) !== 0) return host;
  const lower = host.toLowerCase().replace(/\.$/, "");
  const label = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
  if (lower.length > 253 || lower === "" || !lower.split(".").every((l) => label.test(l)))
    throw new AztpError(
      ErrorCodes.ARGUMENT_INVALID,
      `--tls-name ${JSON.stringify(name)} is neither a DNS name nor an IP address`,
    );
  return lower;
}

export async function issueServiceCredential(
  backend: ServeBackend,
  ttlSeconds: number,
  hostNames: readonly string[] = [],
): Promise<ServiceCredential> {
  const issuedAt = new Date();
  const key = await generateWorkloadKey();
  const svid = await backend.issueServiceSvid(key.csr, ttlSeconds, hostNames);
  return {
    id: serviceId(backend.authority.defaultTrustDomain),
    keyPem: key.privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    chainPem: svid.chainPem,
    serial: svid.serial,
    notAfter: svid.notAfter,
    notBefore: svid.notBefore,
    issuedAt,
  };
}

/** Rotates `server`'s credential at half-life until `stop()`. */
export function rotateAtHalfLife(
  server: HttpsServer,
  backend: ServeBackend,
  first: ServiceCredential,
  ttlSeconds: number,
  logger: Logger,
  onRotate: (c: ServiceCredential) => void,
  hostNames: readonly string[] = [],
): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let current = first;
  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(run, Math.max(1000, ms));
    timer.unref();
  };
  const halfLife = (c: ServiceCredential): number =>
    (c.notAfter.getTime() - c.issuedAt.getTime()) / 2 - (Date.now() - c.issuedAt.getTime());
  const run = (): void => {
    issueServiceCredential(backend, ttlSeconds, hostNames).then(
      (next) => {
        if (stopped) return;
        server.setSecureContext({ key: next.keyPem, cert: next.chainPem });
        current = next;
        onRotate(next);
        logger.log("info", "tls svid rotated", {
          id: next.id,
          serial: next.serial,
          notAfter: next.notAfter.toISOString(),
        });
        schedule(halfLife(next));
      },
      (e: unknown) => {
        logger.log("error", "tls svid rotation failed", {
          error: (e as Error)?.message ?? String(e),
          code: (e as { code?: string })?.code,
          currentNotAfter: current.notAfter.toISOString(),
        });
        schedule(RETRY_MS);
      },
    );
  };
  schedule(halfLife(first));
  return {
    stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    },
  };
}
