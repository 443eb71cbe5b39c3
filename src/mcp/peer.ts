/**
 * The peer of the HTTP request being served, for the policy key `aztp:sourceIp`.
 *
 * The SDK's Streamable HTTP transport hands each message of a POST to `onmessage` from inside
 * its `handleRequest`, but without the socket: its `requestInfo` carries the headers and the
 * URL only. So the server that calls handleRequest (http.ts) runs it in a scope that names
 * the transport and the peer's address, and the hooks of that transport read it when a message
 * arrives (AsyncLocalStorage follows the SDK's awaits between the two).
 *
 * The scope names its transport because it also follows everything the request leads to: a
 * tool handler that calls another server in the same process (in-memory) runs inside it, and
 * that server's caller is the handler's process, not this request's peer. A transport no scope
 * names (stdio, in-memory) has no address: the key stays absent, and a policy that conditions
 * on it does not allow.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { normalizeSourceIp } from "../policy/request.js";

interface RequestScope {
  readonly transport: object;
  readonly sourceIp: string | undefined;
}

const scope = new AsyncLocalStorage<RequestScope>();

/** Runs `fn` (the transport's handling of one HTTP request) with the peer's address `remoteAddress`. */
export function servingRequest<T>(transport: object, remoteAddress: string | undefined, fn: () => T): T {
  return scope.run({ transport, sourceIp: normalizeSourceIp(remoteAddress) }, fn);
}

/** The address of the peer whose request `transport` is handling now; undefined when it is none's. */
export function requestSourceIp(transport: object | undefined): string | undefined {
  const s = scope.getStore();
  return s !== undefined && transport !== undefined && s.transport === transport ? s.sourceIp : undefined;
}
