// `npm run dev` as a newcomer uses it: one command, then two URLs in a browser. The script runs in its
// own process (free ports); Chromium, with no wallet extension, pays with the dev chain's unlocked
// account that the wallet page offers, reads an article, and the console shows it behind the token
// the script printed. Ctrl-C (SIGINT) stops everything cleanly.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { expect } from "chai";
import { chromium, type Browser, type Page } from "playwright-core";

const CHROMIUM = process.env.PAYCHAN_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const ROOT = new URL("../..", import.meta.url).pathname;
const SHOTS = new URL("../../test-output/browser/", import.meta.url).pathname;

describe("npm run dev", function () {
  let dev: ChildProcess | undefined;
  let output = "";
  let browser: Browser | undefined;

  after(async () => {
    await browser?.close();
    if (dev && dev.exitCode === null) dev.kill("SIGKILL");
  });

  it("prints the wallet and console URLs, and a browser without a wallet extension pays and sees it on the console", async function () {
    if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or point PAYCHAN_CHROMIUM at one.`);
    await mkdir(SHOTS, { recursive: true });
    const launched = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    dev = spawn(new URL("../../node_modules/.bin/hardhat", import.meta.url).pathname, ["run", "scripts/dev.ts"], {
      cwd: ROOT,
      env: { ...process.env, PORT: "0", OPERATOR_PORT: "0", DEV_RPC_PORT: "0", DATABASE_URL: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    dev.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    dev.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await new Promise<void>((resolve, reject) => {
      dev!.stdout!.on("data", () => output.includes("Ctrl-C stops everything.") && resolve());
      dev!.once("exit", (code) => reject(new Error(`npm run dev exited with ${code}:\n${output}`)));
    });
    const walletUrl = /wallet +(http:\/\/127\.0\.0\.1:\d+\/wallet)/.exec(output)?.[1];
    const consoleUrl = /console +(http:\/\/127\.0\.0\.1:\d+\/admin\/)/.exec(output)?.[1];
    const token = /operator token: (\S+)/.exec(output)?.[1];
    expect([walletUrl, consoleUrl, token].every(Boolean), output).to.equal(true);

    browser = await launched;
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    const errors: string[] = [];
    const watch = (page: Page) => {
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => m.type() === "error" && !/status of 402 \(Payment Required\)/.test(m.text()) && errors.push(m.text()));
      return page;
    };

    const wallet = watch(await context.newPage());
    await wallet.goto(walletUrl!);
    await settled(wallet);
    expect(await wallet.locator("#wallets label").allTextContents()).to.deep.equal(["Dev chain account (unlocked, test only)"]);
    await wallet.click("#connect");
    await settled(wallet);
    await wallet.click("#open");
    await settled(wallet);
    const channelId = await wallet.textContent("#channel-id");

    const articles = watch(await context.newPage());
    await articles.goto(walletUrl!.replace(/\/wallet$/, "/articles"));
    await settled(articles);
    await articles.locator("article.item button").first().click();
    await settled(articles);
    expect(await articles.textContent("#requests")).to.equal("1");

    const operator = watch(await context.newPage());
    await operator.goto(consoleUrl!);
    await operator.fill("#token", token!);
    await operator.click("#login button[type=submit]");
    await settled(operator);
    const row = operator.locator(`#exposure tr[data-channel-id="${channelId}"]`);
    expect(await row.getAttribute("data-unclaimed")).to.equal("10000000000000");
    expect(await operator.getAttribute("#reconciliation", "data-ok")).to.equal("true");
    expect(errors).to.deep.equal([]);

    dev.kill("SIGINT");
    const code = await new Promise((resolve) => dev!.once("exit", resolve));
    expect(code, output).to.equal(0);
  });
});

async function settled(page: Page) {
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status")?.dataset.state ?? ""));
  expect(await page.getAttribute("#status", "data-state"), `the page says: ${await page.textContent("#status")}`).to.equal("ready");
}
