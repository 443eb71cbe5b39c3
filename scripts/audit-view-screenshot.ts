/**
 * docs/audit-view.png, the README's picture of `aztp audit view`: the demo (examples/demo.ts) run
 * into a fresh home, `aztp audit view` started on that home's logs as a user starts it, and the
 * page photographed in headless Chromium (Debian's `chromium`, or AZTP_CHROMIUM) once its rows
 * are in.
 *
 *   npm run docs:screenshot            writes docs/audit-view.png
 *   npm run docs:screenshot -- OUT.png writes OUT.png
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "../test/helpers/chromium.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = resolve(process.argv[2] ?? join(root, "docs", "audit-view.png"));
const home = join(mkdtempSync(join(tmpdir(), "aztp-screenshot-")), "home");

function run(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: root, env, stdio: "inherit" });
    child.on("exit", (code) => (code === 0 ? done() : fail(new Error(`${args.join(" ")} exited ${code}`))));
  });
}

try {
  await run([join(root, "examples", "demo.ts")], { ...process.env, AZTP_HOME: home });
  const viewer = spawn(
    process.execPath,
    ["--import", "tsx", join(root, "src", "cli", "main.ts"), "--home", home, "audit", "view"],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const url = await new Promise<string>((done, fail) => {
      let text = "";
      viewer.stdout.setEncoding("utf8").on("data", (d: string) => {
        text += d;
        const line = text.split("\n")[0];
        if (text.includes("\n") && line !== undefined) done(line);
      });
      viewer.on("exit", (code) => fail(new Error(`aztp audit view exited ${code}`)));
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1360, height: 1240 }, deviceScaleFactor: 1 });
      await page.goto(url);
      await page.waitForSelector("tbody tr[data-call]");
      await page.waitForSelector("#chart-time svg");
      await page.screenshot({ path: out });
      process.stdout.write(`wrote ${out}\n`);
    } finally {
      await browser.close();
    }
  } finally {
    viewer.kill("SIGTERM");
  }
} finally {
  rmSync(dirname(home), { recursive: true, force: true });
}
