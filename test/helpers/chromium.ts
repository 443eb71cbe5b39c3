/**
 * The real browser the viewer's page is tested in: Debian's `chromium`, driven by playwright-core
 * (which downloads no browser of its own). `AZTP_CHROMIUM` names it, else `chromium` (or
 * `chromium-browser`) on PATH. Under `CI=true` a missing browser fails the tests that need it
 * (`.ci/run` installs it, so a skip there would hide a regression); elsewhere they skip, saying why.
 */
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { chromium, type Browser } from "playwright-core";

export type FoundBrowser = { readonly path: string } | { readonly missing: string };

export function findChromium(): FoundBrowser {
  const given = process.env.AZTP_CHROMIUM;
  if (given !== undefined && given !== "")
    return existsSync(given) ? { path: given } : { missing: `AZTP_CHROMIUM=${given} does not exist` };
  for (const dir of (process.env.PATH ?? "").split(delimiter))
    for (const name of ["chromium", "chromium-browser"]) {
      const path = join(dir, name);
      if (dir !== "" && existsSync(path)) return { path };
    }
  return { missing: "no chromium on PATH (apt-get install chromium, or set AZTP_CHROMIUM)" };
}

/** The `skip` option of a suite that needs the browser: false under CI (where a missing one must fail). */
export function skipWithoutChromium(): string | false {
  const found = findChromium();
  if (!("missing" in found)) return false;
  return process.env.CI === "true" ? false : found.missing;
}

/** Launches it headless (`--no-sandbox`: the tests run as root); throws, naming what is missing, when there is none. */
export async function launchChromium(): Promise<Browser> {
  const found = findChromium();
  if ("missing" in found) throw new Error(`the browser tests need Chromium: ${found.missing}`);
  return chromium.launch({ executablePath: found.path, args: ["--no-sandbox"], headless: true });
}
