/**
 * A Workload API endpoint's address, in the syntax of SPIFFE_ENDPOINT_SOCKET (the SPIFFE Workload
 * Endpoint standard): `unix:///absolute/path`, or `tcp://ip:port` (an IP address, no host name,
 * no path). The one reading of it: the client connects to what it names, and `aztp workload-api`
 * serves on a Unix one.
 */
import { isIP } from "node:net";
import { AztpError, ErrorCodes } from "../errors.js";

export type WorkloadApiAddress =
  | { readonly transport: "unix"; readonly path: string }
  | { readonly transport: "tcp"; readonly host: string; readonly port: number };

/** Reads `address`; ERR_ARGUMENT_INVALID says which rule it breaks. */
export function parseWorkloadApiAddress(address: string): WorkloadApiAddress {
  if (typeof address !== "string" || address === "")
    throw invalid(String(address), "give unix:///path or tcp://ip:port (or set SPIFFE_ENDPOINT_SOCKET)");
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw invalid(address, "it is no URL");
  }
  if (url.search !== "" || url.hash !== "" || url.username !== "" || url.password !== "")
    throw invalid(address, "it may have no query, fragment or user");
  if (url.protocol === "unix:") {
    if (url.host !== "" || url.pathname === "" || url.pathname === "/")
      throw invalid(address, "a unix address is unix:///absolute/path");
    return { transport: "unix", path: decodeURIComponent(url.pathname) };
  }
  if (url.protocol === "tcp:") {
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) === 0) throw invalid(address, "a tcp address names an IP address, not a host name");
    if (url.port === "" || (url.pathname !== "" && url.pathname !== "/"))
      throw invalid(address, "a tcp address is tcp://ip:port, with no path");
    return { transport: "tcp", host, port: Number(url.port) };
  }
  throw invalid(address, "the scheme must be unix or tcp");
}

function invalid(address: string, why: string): AztpError {
  return new AztpError(
    ErrorCodes.ARGUMENT_INVALID,
    `the Workload API address ${JSON.stringify(address.slice(0, 200))} is not usable: ${why}`,
  );
}
