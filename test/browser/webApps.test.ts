// The buyer's wallet app, the sample paid page and the operator console, driven in Chromium as people
// would use them, on the real composition (startPaychan, createApp, createSettlement, createConsole)
// over the escrow on the EDR chain and PGlite. The browser's wallet is an EIP-6963 provider injected
// into every page, backed by the chain's unlocked payer account; it starts on another chain (1) so
// the page has to ask it to switch. Screenshots of each page's main states go to test-output/browser/.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import express from "express";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { getAddress, numberToHex, parseEther, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { loadConfig } from "../../src/config.js";
import { toBigInt } from "../../src/ledger/amount.js";
import { requireToken } from "../../src/ops/operatorApp.js";
import { createApp, createConsole, createSettlement, startPaychan, type Paychan, type Settlement } from "../../src/server.js";
import { sampleArticles } from "../../src/web/sampleArticles.js";
import { walletApp } from "../../src/web/walletApp.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { serveProvider, type RpcServer } from "../helpers/rpcServer.js";
import { createPostgresDatabase } from "../ledger/helpers.js";

const CHROMIUM = process.env.PAYCHAN_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const SHOTS = new URL("../../test-output/browser/", import.meta.url).pathname;
const PRICE = 1_000_000_000_000n; // per article, in wei
const WITHDRAW_DELAY = 3_600;
const TOKEN = "console-token-for-tests-0123456789";
/** JSON-RPC methods that make a real wallet ask its user. */
const PROMPTS = /^(eth_requestAccounts|eth_sendTransaction|eth_sign.*|personal_sign|wallet_.*)$/;
/** The network log lines Chromium prints for answers the apps expect: a 402 is how a paid route states its terms. */
const EXPECTED_NETWORK_ERRORS = /^Failed to load resource: the server responded with a status of 402 \(Payment Required\)$/;

describe("the wallet app and the operator console in Chromium", function () {
  let chain: EscrowFixture;
  let paychan: Paychan;
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined;
  let rpc: RpcServer | undefined;
  let settlement: Settlement;
  let servers: Server[] = [];
  let browser: Promise<Browser> | undefined;
  let context: BrowserContext;
  let wallet: Page;
  let gateway: string;
  let operator: string;
  let channelId: Hex;
  const walletState = { chainId: 1, allowSwitch: false, prompts: [] as string[] };
  const errors: string[] = [];
  /** Console errors a step expects (a refused sign-in answers 401), cleared after it. */
  let expectedErrors: RegExp | undefined;

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or point PAYCHAN_CHROMIUM at one.`);
    browser = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    await mkdir(SHOTS, { recursive: true });
    chain = await deployEscrow();
    const publicClient = chain.publicClient as unknown as PublicClient;
    // Postgres, so that the CLI (another process) can read the same books at the end.
    database = await createPostgresDatabase();
    paychan = await startPaychan(loadConfig(environment()), { publicClient });
    // The settlement key: an operator the payee approves, as `npm run dev` does.
    const settler = privateKeyToAccount(generatePrivateKey());
    await chain.deployer.sendTransaction({ to: settler.address, value: parseEther("1") });
    await chain.escrow.write.setOperator([settler.address, true], { account: chain.payee.account });
    settlement = createSettlement(paychan, { account: settler });

    const articles = sampleArticles(PRICE);
    const app = createApp(paychan, { "GET /api/quote": 2n * PRICE, ...articles.routes }, { "GET /api/quote": (_req, res) => void res.json({ quote: "…" }), ...articles.handlers });
    app.use(
      walletApp({
        routes: [
          { label: "An article", url: "/api/articles/vouchers" },
          { label: "A quote", url: "/api/quote" },
        ],
        articlesUrl: "/articles",
        chain: { name: "test chain" },
      }),
    );
    gateway = await listen(app);
    // The operator listener's stand-in: its own port, the console behind the token.
    const operatorApp = express();
    operatorApp.use("/admin", createConsole(paychan, { authenticate: requireToken(TOKEN), settlement }));
    operator = await listen(operatorApp);

    context = await (await browser).newContext({ viewport: { width: 1100, height: 900 } });
    await injectWallet(context, chain, walletState);
    wallet = await newPage();
  });

  after(async () => {
    await browser?.then((b) => b.close(), () => undefined);
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    await paychan?.close();
    await database?.drop();
    await rpc?.close();
  });

  afterEach(() => {
    expect(errors, "errors in the pages' consoles").to.deep.equal([]);
    expectedErrors = undefined;
  });

  it("tells the buyer plainly when the wallet stays on another chain, and connects once it switches", async () => {
    await wallet.goto(`${gateway}/wallet`);
    await settled(wallet);
    expect(await wallet.textContent("#t-network")).to.contain(`eip155:${chain.location.chainId}`);
    expect(await wallet.textContent("#t-escrow")).to.equal(getAddress(chain.escrow.address));
    expect(await wallet.textContent("#t-delay")).to.equal("1 h 00 min");
    expect(await wallet.textContent("#t-margin")).to.contain("10 min");
    expect(await wallet.locator("#terms-routes td.num").allTextContents()).to.deep.equal(["0.000001 ETH", "0.000002 ETH"]);
    // Discovered through EIP-6963, under the name the wallet announced.
    expect(await wallet.locator("#wallets label").allTextContents()).to.deep.equal(["Test Wallet"]);

    await wallet.click("#connect");
    await settled(wallet, "error");
    const message = await wallet.textContent("#wrong-chain");
    expect(message).to.contain(`Your wallet is on chain 1, but this seller is paid on chain ${chain.location.chainId}`);
    expect(await wallet.isVisible("#wrong-chain")).to.equal(true);
    expect(await wallet.isDisabled("#open")).to.equal(true);
    await wallet.screenshot({ path: `${SHOTS}wallet-wrong-chain.png`, fullPage: true });

    walletState.allowSwitch = true;
    await wallet.click("#connect");
    await settled(wallet);
    expect(walletState.chainId).to.equal(chain.location.chainId);
    expect(await wallet.isVisible("#wrong-chain")).to.equal(false);
    expect(await wallet.textContent("#account")).to.equal(getAddress(chain.payer.account.address));
  });

  it("opens a channel with one wallet transaction, signed for a session key kept in IndexedDB", async () => {
    walletState.prompts.length = 0;
    // 25 articles' worth: enough to see the low-balance warning after ten.
    await wallet.fill("#deposit-amount", "0.000025");
    await wallet.click("#open");
    await settled(wallet);
    channelId = (await wallet.textContent("#channel-id")) as Hex;
    expect(channelId).to.match(/^0x[0-9a-f]{64}$/);
    expect(walletState.prompts).to.deep.equal(["eth_sendTransaction"]);

    const onChain = await chain.escrow.read.getChannel([channelId]);
    expect(onChain.deposit).to.equal(25n * PRICE);
    const stored = await wallet.evaluate(() => readSession());
    expect(stored.channel.id).to.equal(channelId);
    expect(privateKeyToAccount(stored.key).address).to.equal(await wallet.textContent("#session-key"));
    expect(stored.channel.config.withdrawDelay).to.equal(WITHDRAW_DELAY);
    expect(await wallet.textContent("#channel-state")).to.equal("open");
    await wallet.screenshot({ path: `${SHOTS}wallet-open.png`, fullPage: true });
  });

  it("pays ten articles on the sample page while the wallet tab shows the spending as it happens", async () => {
    walletState.prompts.length = 0;
    const articles = await newPage();
    await articles.goto(`${gateway}/articles`);
    await settled(articles);
    expect(await articles.textContent("#price")).to.equal("0.000001 ETH");
    const buttons = articles.locator("article.item button");
    for (let i = 0; i < 10; i++) {
      await buttons.nth(i).click();
      await settled(articles);
    }
    expect(await articles.textContent("#requests")).to.equal("10");
    expect(await articles.getAttribute("#accepted", "data-base-units")).to.equal((10n * PRICE).toString());
    expect(await articles.locator("article.item .body").count()).to.equal(10);
    await articles.screenshot({ path: `${SHOTS}articles-paid.png`, fullPage: true });

    // The wallet tab was not reloaded: it heard of each payment through the BroadcastChannel.
    await wallet.waitForFunction(() => document.getElementById("requests")?.textContent === "10");
    expect(await wallet.getAttribute("#accepted", "data-base-units")).to.equal((10n * PRICE).toString());
    expect(await wallet.locator("#receipts tr").count()).to.equal(10);
    expect(walletState.prompts, "no wallet prompt for paid requests").to.deep.equal([]);
    const payments = await paychan.db.prisma.payment.findMany({ where: { channelId, status: "ACCEPTED" }, orderBy: { cumulativeAmount: "asc" } });
    expect(payments.map((p) => toBigInt(p.cumulativeAmount))).to.deep.equal([...Array(10).keys()].map((i) => BigInt(i + 1) * PRICE));
    await articles.close();
  });

  it("warns when the deposit runs low and tops it up from the wallet", async () => {
    await wallet.waitForFunction(() => !document.getElementById("low-balance")!.hidden);
    expect(await wallet.textContent("#low-balance")).to.contain("about 7 more request(s)");
    await wallet.screenshot({ path: `${SHOTS}wallet-spending.png`, fullPage: true });
    walletState.prompts.length = 0;
    await wallet.fill("#topup-amount", "0.00005");
    await wallet.click("#topup");
    await settled(wallet);
    expect(walletState.prompts).to.deep.equal(["eth_sendTransaction"]);
    expect((await chain.escrow.read.getChannel([channelId])).deposit).to.equal(75n * PRICE);
    expect(await wallet.getAttribute("#remaining", "data-base-units")).to.equal((65n * PRICE).toString());
    expect(await wallet.isHidden("#low-balance")).to.equal(true);
  });

  it("exports the session for another device and refuses an export that was altered", async () => {
    await wallet.click("#export");
    await settled(wallet);
    const exported = JSON.parse(await wallet.inputValue("#export-text"));
    expect(exported.format).to.equal("paychan-session");
    expect(exported.session.channel.id).to.equal(channelId);
    expect(exported.state).to.deep.equal({ accepted: (10n * PRICE).toString(), signedMax: (10n * PRICE).toString() });

    exported.session.channel.config.withdrawDelay = 60; // a channel the key never signed for
    await wallet.fill("#import-text", JSON.stringify(exported));
    await wallet.click("#import");
    await settled(wallet, "error");
    expect(await wallet.textContent("#status")).to.equal("The export's channel id does not match its terms: it was altered.");
    expect(await wallet.textContent("#channel-id"), "the session in use is unchanged").to.equal(channelId);
  });

  it("requests a withdrawal and counts down to its deadline", async () => {
    await wallet.click("#request-withdrawal");
    await settled(wallet);
    const { withdrawReadyAt } = await chain.escrow.read.getChannel([channelId]);
    expect(withdrawReadyAt > 0n).to.equal(true);
    expect(await wallet.isVisible("#countdown")).to.equal(true);
    const first = Number(await wallet.getAttribute("#countdown", "data-seconds"));
    expect(first).to.be.within(WITHDRAW_DELAY - 60, WITHDRAW_DELAY);
    await wallet.waitForFunction((before) => Number(document.getElementById("countdown")!.dataset.seconds) < before, first);
    expect(await wallet.textContent("#countdown")).to.match(/^59 min \d\d s$/);
    expect(await wallet.isDisabled("#finalize")).to.equal(true);
    expect(await wallet.textContent("#channel-state")).to.equal("withdrawing");
    await wallet.screenshot({ path: `${SHOTS}wallet-withdrawing.png`, fullPage: true });
  });

  it("shows the operator the channel's exposure and revenue behind a token, settles it and sees it claimed", async () => {
    // What the watcher's loop does every poll: mirror the withdrawal request into the channel row.
    await settlement.watcher.syncOnce();
    const page = await newPage();
    await page.goto(`${operator}/admin`);
    expect(page.url()).to.equal(`${operator}/admin/`);
    await page.waitForSelector("#login:not([hidden])");
    expectedErrors = /status of 401 \(Unauthorized\)/;
    await page.fill("#token", "not-the-token-at-all");
    await page.click("#login button[type=submit]");
    await settled(page, "error");
    expect(await page.textContent("#status")).to.equal("The operator token was refused.");
    expect(await page.isHidden("#dashboard")).to.equal(true);

    await page.fill("#token", TOKEN);
    await page.click("#login button[type=submit]");
    await settled(page);
    expect(await page.getAttribute("#reconciliation", "data-ok")).to.equal("true");
    const row = page.locator(`#exposure tr[data-channel-id="${channelId}"]`);
    expect(await row.getAttribute("data-unclaimed")).to.equal((10n * PRICE).toString());
    expect(await row.getAttribute("data-risk")).to.equal("withdrawing");
    expect(await row.locator("td").nth(5).textContent()).to.match(/\(in (1 h 00 min|5\d min \d\d s)\)$/);
    expect(await page.getAttribute("#at-risk", "data-base-units")).to.equal((10n * PRICE).toString());
    expect(await page.getAttribute("#revenue", "data-base-units")).to.equal((10n * PRICE).toString());
    expect(await page.getAttribute("#revenue-chart", "data-accepted")).to.equal((10n * PRICE).toString());
    expect(await page.getAttribute("#requests-chart", "data-total")).to.equal("10");
    expect(await page.textContent("#rpm")).to.equal("10");
    expect(await page.locator("#revenue-chart canvas").count()).to.equal(1);
    await page.screenshot({ path: `${SHOTS}console-before-settlement.png`, fullPage: true });

    await page.click("#settle");
    await settled(page);
    expect(await page.textContent("#status")).to.equal("Settled: 1 channel(s) in 1 batch(es), 1 transaction(s) confirmed.");
    const batch = page.locator("#settlements tr").first();
    expect(await batch.getAttribute("data-status")).to.equal("CONFIRMED");
    expect(await batch.getAttribute("data-claimed")).to.equal((10n * PRICE).toString());
    const txHash = await batch.getAttribute("data-tx-hash");
    const receipt = await chain.publicClient.getTransactionReceipt({ hash: txHash as Hex });
    expect(receipt.status).to.equal("success");
    expect(await batch.locator("td").nth(5).textContent()).to.equal(receipt.gasUsed.toString());
    expect(await row.getAttribute("data-unclaimed")).to.equal("0");
    expect(await row.getAttribute("data-risk")).to.equal("none");
    expect(await page.getAttribute("#claimed", "data-base-units")).to.equal((10n * PRICE).toString());
    expect((await chain.escrow.read.getChannel([channelId])).claimed).to.equal(10n * PRICE);
    await page.screenshot({ path: `${SHOTS}console-settled.png`, fullPage: true });
    await page.close();
  });

  it("lets the payer finalize once the deadline has passed and get the rest back", async () => {
    await chain.networkHelpers.time.increase(WITHDRAW_DELAY + 1);
    // The page re-reads the chain every few seconds while a withdrawal runs.
    await wallet.waitForFunction(() => !(document.getElementById("finalize") as HTMLButtonElement).disabled, undefined, { timeout: 10_000 });
    walletState.prompts.length = 0;
    await wallet.click("#finalize");
    await settled(wallet);
    expect(walletState.prompts).to.deep.equal(["eth_sendTransaction"]);
    expect(await wallet.textContent("#channel-state")).to.equal("closed");
    expect(await wallet.textContent("#closed-note")).to.contain("The seller claimed 0.00001 ETH");
    const [closed] = await chain.publicClient.getContractEvents({ address: chain.escrow.address, abi: chain.escrow.abi, eventName: "ChannelClosed", args: { channelId }, fromBlock: 0n });
    // 75 deposited, 10 claimed: 65 articles' worth comes back.
    expect(closed?.args.refunded).to.equal(65n * PRICE);
    await wallet.screenshot({ path: `${SHOTS}wallet-closed.png`, fullPage: true });
  });

  it("prints the same books from the CLI (paychan dashboard --json) as the console shows", async () => {
    await settlement.watcher.syncOnce(); // mirrors the close
    rpc = await serveProvider(chain.connection.provider);
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        new URL("../../node_modules/.bin/tsx", import.meta.url).pathname,
        ["src/cli.ts", "dashboard", "--json"],
        { cwd: new URL("../..", import.meta.url).pathname, env: { ...process.env, ...environment(), RPC_URL: rpc!.url } },
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)),
      ),
    );
    const report = JSON.parse(output);
    expect(report.gasVsRevenue.revenue).to.deep.equal([{ asset: `eip155:${chain.location.chainId}/native`, accepted: (10n * PRICE).toString(), claimed: (10n * PRICE).toString() }]);
    expect(report.settlements.map((s: { status: string; claimed: string }) => [s.status, s.claimed])).to.deep.equal([["CONFIRMED", (10n * PRICE).toString()]]);
    expect(report.exposure.channels, "a closed channel is no exposure").to.deep.equal([]);
  });

  function environment(): Record<string, string> {
    return {
      DATABASE_URL: database!.url,
      ESCROW_ADDRESS: chain.escrow.address,
      PAYEE_ADDRESS: chain.payee.account.address,
      MIN_WITHDRAW_DELAY: String(WITHDRAW_DELAY),
      CLOSING_MARGIN_SECONDS: "600",
      CONFIRMATIONS: "0",
    };
  }

  async function newPage(): Promise<Page> {
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`${page.url()}: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() !== "error") return;
      const text = message.text();
      if (EXPECTED_NETWORK_ERRORS.test(text) || expectedErrors?.test(text)) return;
      errors.push(`${page.url()}: ${text}`);
    });
    return page;
  }

  async function listen(app: express.Express): Promise<string> {
    const server = app.listen(0, "127.0.0.1");
    servers.push(server);
    await new Promise<void>((resolve) => server.once("listening", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
});

describe("the wallet app with an ERC-20 seller in Chromium", function () {
  const TOKEN_PRICE = 1_000n; // 0.001 tUSD (6 decimals) per article
  let chain: EscrowFixture;
  let paychan: Paychan | undefined;
  let server: Server | undefined;
  let browser: Promise<Browser> | undefined;

  after(async () => {
    await browser?.then((b) => b.close(), () => undefined);
    server?.closeAllConnections();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await paychan?.close();
  });

  it("finds a wallet that only sets window.ethereum, opens a token channel with a permit and one transaction, and pays in tokens", async () => {
    browser = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    chain = await deployEscrow();
    paychan = await startPaychan(
      loadConfig({
        DATABASE_URL: "pglite:memory",
        ESCROW_ADDRESS: chain.escrow.address,
        PAYEE_ADDRESS: chain.payee.account.address,
        ASSET: chain.token.address,
        MIN_WITHDRAW_DELAY: String(WITHDRAW_DELAY),
        CONFIRMATIONS: "0",
      }),
      { publicClient: chain.publicClient as unknown as PublicClient },
    );
    const articles = sampleArticles(TOKEN_PRICE);
    const app = createApp(paychan, articles.routes, articles.handlers);
    app.use(walletApp({ routes: [{ label: "An article", url: "/api/articles/permit" }], articlesUrl: "/articles", chain: { name: "test chain" } }));
    server = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => server!.once("listening", resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const context = await (await browser).newContext({ viewport: { width: 1100, height: 900 } });
    const state = { chainId: chain.location.chainId, allowSwitch: false, prompts: [] as string[] };
    await injectWallet(context, chain, state, { eip6963: false });
    const errors: string[] = [];
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => m.type() === "error" && !EXPECTED_NETWORK_ERRORS.test(m.text()) && errors.push(m.text()));

    await page.goto(`${origin}/wallet`);
    await settled(page);
    expect(await page.locator("#wallets label").allTextContents()).to.deep.equal(["Browser wallet (window.ethereum)"]);
    await page.click("#connect");
    await settled(page);
    // The token's own symbol and decimals, read through the wallet once connected.
    expect(await page.textContent("#t-asset")).to.equal(`tUSD (${getAddress(chain.token.address)})`);
    expect(await page.locator("#terms-routes td.num").allTextContents()).to.deep.equal(["0.001 tUSD"]);
    expect(await page.isChecked('input[name="funding"][value="permit"]')).to.equal(true);
    const balanceBefore = await chain.token.read.balanceOf([chain.payer.account.address]);
    state.prompts.length = 0;
    await page.fill("#deposit-amount", "0.05");
    await page.click("#open");
    await settled(page);
    expect(state.prompts).to.deep.equal(["eth_signTypedData_v4", "eth_sendTransaction"]);
    const channelId = (await page.textContent("#channel-id")) as Hex;
    const deposited = await chain.token.read.balanceOf([chain.payer.account.address]);
    expect(balanceBefore - deposited).to.equal(50_000n);
    expect((await chain.escrow.read.getChannel([channelId])).deposit).to.equal(50_000n);

    await page.goto(`${origin}/articles`);
    await settled(page);
    await page.locator("article.item button").first().click();
    await settled(page);
    expect(await page.textContent("#accepted")).to.equal("0.001 tUSD");
    const payment = await paychan.db.prisma.payment.findFirstOrThrow({ where: { channelId } });
    expect(toBigInt(payment.price)).to.equal(TOKEN_PRICE);
    await page.screenshot({ path: `${SHOTS}articles-erc20.png`, fullPage: true });
    expect(errors).to.deep.equal([]);
  });
});

/** The session the wallet page keeps, read from IndexedDB in the page (serialized for the test). */
declare function readSession(): Promise<{ key: Hex; channel: { id: Hex; config: { withdrawDelay: number } } }>;

/**
 * A wallet in every page of `context`, announced with EIP-6963 as "Test Wallet" (or only set as
 * window.ethereum, as older wallets do): it answers for
 * the chain's payer account, is on `state.chainId` and switches only when `state.allowSwitch`; every
 * other request goes to the EDR node, whose accounts are unlocked. Requests that would prompt a real
 * wallet's user are recorded in `state.prompts`.
 */
async function injectWallet(
  context: BrowserContext,
  chain: EscrowFixture,
  state: { chainId: number; allowSwitch: boolean; prompts: string[] },
  { eip6963 = true } = {},
) {
  const payer = getAddress(chain.payer.account.address);
  await context.exposeFunction("paychanTestWallet", async (json: string) => {
    const { method, params } = JSON.parse(json) as { method: string; params?: unknown[] };
    if (PROMPTS.test(method)) state.prompts.push(method);
    try {
      if (method === "eth_accounts" || method === "eth_requestAccounts") return JSON.stringify({ result: [payer] });
      if (method === "eth_chainId") return JSON.stringify({ result: numberToHex(state.chainId) });
      if (method === "wallet_switchEthereumChain") {
        if (!state.allowSwitch) return JSON.stringify({ error: { code: 4001, message: "User rejected the request." } });
        state.chainId = Number((params?.[0] as { chainId: string }).chainId);
        return JSON.stringify({ result: null });
      }
      if (state.chainId !== chain.location.chainId) return JSON.stringify({ error: { code: 4901, message: "The wallet is not connected to this chain." } });
      const result = await chain.connection.provider.request({ method, params });
      return JSON.stringify({ result: result ?? null }, (_k, v) => (typeof v === "bigint" ? numberToHex(v) : v));
    } catch (error) {
      const e = error as { code?: number; message?: string };
      return JSON.stringify({ error: { code: typeof e.code === "number" ? e.code : -32603, message: e.message ?? String(error) } });
    }
  });
  // A string, not a function: tsx compiles functions with helpers (__name) that the page does not have.
  await context.addInitScript({ content: `window.paychanTestWalletMode = ${JSON.stringify(eip6963 ? "eip6963" : "window.ethereum")};\n${INJECTED_WALLET}` });
}

const INJECTED_WALLET = `
(() => {
  const provider = {
    async request({ method, params }) {
      const answer = JSON.parse(await window.paychanTestWallet(JSON.stringify({ method, params })));
      if (answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
      return answer.result;
    },
    on() {},
  };
  const info = {
    uuid: "6b7f1a52-3f7e-4d8e-9d0c-2a8c2f1e9b11",
    name: "Test Wallet",
    icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 20 20'%3E%3Crect width='20' height='20' rx='4' fill='%230b57d0'/%3E%3C/svg%3E",
    rdns: "local.paychan.test-wallet",
  };
  if (window.paychanTestWalletMode === "eip6963") {
    const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
    window.addEventListener("eip6963:requestProvider", announce);
    announce();
  } else {
    window.ethereum = provider; // an older wallet that only injects itself
  }
  // For the test: the session as the wallet page stored it.
  window.readSession = () => new Promise((resolve, reject) => {
    const open = indexedDB.open("paychan-wallet");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const get = open.result.transaction("session").objectStore("session").get("current");
      get.onsuccess = () => resolve(get.result);
      get.onerror = () => reject(get.error);
    };
  });
})();
`;

/** Waits for the page to finish what it is doing; fails with its message unless it ended as `expected`. */
async function settled(page: Page, expected: "ready" | "error" = "ready") {
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status")?.dataset.state ?? ""));
  const text = await page.textContent("#status");
  expect(await page.getAttribute("#status", "data-state"), `the page says: ${text}`).to.equal(expected);
}
