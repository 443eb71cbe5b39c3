/**
 * How a wrapper gets its identity: issued now from `{ client, name }`, or given as
 * `{ identity, trust }` (a server that serves many sessions under one identity).
 */
import type { Authority } from "../authority/authority-api.js";
import { attachIdentity, type Aztp, type SecuredAgent } from "../client/aztp.js";
import type { AgentIdentity } from "../client/identity.js";
import { AztpError, ErrorCodes } from "../errors.js";
import type { Trust } from "../invocation/trust.js";

/**
 * The identity, trust and authority a wrapper works with: from `{ client, name }` (issued
 * now) or from `{ identity, trust }`.
 */
export async function identify<T extends object>(
  target: T,
  options: { client?: Aztp; name?: string; identity?: AgentIdentity; trust?: Trust },
  what: string,
): Promise<{ secured: SecuredAgent<T>; trust: Trust; authority: Authority | undefined }> {
  let secured: SecuredAgent<T>;
  if (options.identity) secured = attachIdentity(target, options.identity);
  else if (options.client && options.name) secured = await options.client.secureConnect(target, options.name);
  else throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} needs { client, name } or { identity, trust }`);
  const trust = options.trust ?? (options.client ? await options.client.trust() : undefined);
  if (!trust) throw new AztpError(ErrorCodes.ARGUMENT_INVALID, `${what} needs a trust (or a client to take it from)`);
  const authority = options.client ? await options.client.authority() : undefined;
  return { secured, trust, authority };
}
