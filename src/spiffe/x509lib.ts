/**
 * The one place that loads @peculiar/x509. It needs `reflect-metadata` imported first (or it
 * throws at import) and a WebCrypto provider; both are set up here once.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

// Its typings name the DOM `Crypto`; Node's webcrypto is that object.
x509.cryptoProvider.set(webcrypto as never);

export { x509 };
export const subtle = webcrypto.subtle;
export const EC_P256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
