// The client SDK in a real browser with a wallet: Chromium loads a page (examples/browser) whose
// script, bundled here with esbuild from src/client and src/protocol, connects to an EIP-1193 wallet,
// opens a channel with one wallet transaction and pays the seller's paywall with vouchers signed by a
// session key it keeps in localStorage. The page, the wallet's JSON-RPC endpoint and the paywall share
// one origin, as a seller serving its own web app would, so no CORS is involved.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "chai";
import { build } from "esbuild";
import express, { type Request, type Response } from "express";
import { chromium, type Browser, type Page } from "playwright-core";
import { decodeFunctionData, getAddress, type Hex } from "viem";
import { paywall } from "../../src/gateway/paywall.js";
import { toBigInt } from "../../src/ledger/amount.js";
import type { Database } from "../../src/ledger/db.js";
import { deployEscrow, type EscrowFixture } from "../helpers/escrow.js";
import { openTestDatabase } from "../ledger/helpers.js";
import { PRICE, startSeller, type Seller } from "../helpers/seller.js";

const CHROMIUM = process.env.PAYCHAN_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];
const SCREENSHOTS = { paid: "/tmp/paychan-browser-wallet.png", reloaded: "/tmp/paychan-browser-wallet-reloaded.png" };
/** JSON-RPC methods that make a real wallet ask its user. */
const PROMPTS = /^(eth_requestAccounts|eth_sendTransaction|eth_sign.*|personal_sign|wallet_.*)$/;

type JsonRpcRequest = { jsonrpc: "2.0"; id: number | string | null; method: string; params?: unknown[] };

describe("the client SDK in Chromium with an EIP-1193 wallet", () => {
  let chain: EscrowFixture;
  let db: Database;
  let seller: Seller;
  let server: Server | undefined;
  let browser: Promise<Browser> | undefined;
  let page: Page;
  let origin: string;
  let firstBlock: bigint;
  let channelId: Hex;
  const served = { count: 0 };
  const prompts: string[] = [];
  const pageErrors: string[] = [];

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`No Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or point PAYCHAN_CHROMIUM at one.`);
    }
    // Kept as a promise so that `after` closes the browser even when something else here failed.
    browser = chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    let bundle: string, html: string;
    [bundle, html, db] = await Promise.all([
      bundlePage(),
      readFile(new URL("../../examples/browser/index.html", import.meta.url), "utf8"),
      openTestDatabase("pglite"),
      browser,
    ]);
    chain = await deployEscrow();
    seller = await startSeller(chain, db);

    const app = express();
    app.disable("x-powered-by");
    app.get("/", (_req, res) => res.type("html").send(html));
    app.get("/app.js", (_req, res) => res.type("text/javascript").send(bundle));
    app.post("/rpc", express.json(), walletEndpoint(chain, prompts));
    app.use(paywall(seller.gateway, { "GET /quote": PRICE }));
    app.get("/quote", (_req, res) => {
      served.count++;
      res.json({ quote: "the price of everything and the value of nothing" });
    });
    const listening = app.listen(0, "127.0.0.1");
    server = listening;
    await new Promise<void>((resolve) => listening.once("listening", resolve));
    origin = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;

    page = await (await (await browser).newContext({ viewport: { width: 960, height: 860 } })).newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
    firstBlock = (await chain.publicClient.getBlockNumber()) + 1n;
  });

  after(async () => {
    await browser?.then((b) => b.close(), () => undefined);
    if (server) {
      server.closeAllConnections();
      await new Promise((resolve) => server!.close(resolve));
    }
    await seller?.close();
    await db?.close();
  });

  afterEach(() => expect(pageErrors, "uncaught errors in the page").to.deep.equal([]));

  it("opens a channel with one wallet transaction and pays 5 requests with session-key vouchers", async () => {
    await page.goto(origin);
    await settled(page);
    await page.click("#open");
    await settled(page);
    channelId = (await page.textContent("#channel-id")) as Hex;
    const session = await page.textContent("#session");

    await page.fill("#count", "5");
    await page.click("#pay");
    await settled(page);
    await page.screenshot({ path: SCREENSHOTS.paid, fullPage: true });

    const rows = await paymentRows(page);
    expect(rows.map((r) => r.status)).to.deep.equal(["200", "200", "200", "200", "200"]);
    expect(rows.map((r) => BigInt(r.charged!))).to.deep.equal(Array(5).fill(PRICE));
    expect(rows.map((r) => BigInt(r.cumulative!))).to.deep.equal([1n, 2n, 3n, 4n, 5n].map((n) => n * PRICE));
    expect(served.count).to.equal(5);
    expect(await acceptedPayments(db, channelId)).to.equal(5);
    expect(toBigInt((await db.prisma.channel.findUniqueOrThrow({ where: { id: channelId } })).acceptedCumulative)).to.equal(5n * PRICE);

    // The wallet was asked twice, to connect and to send the open; the vouchers never reached it.
    expect(prompts).to.deep.equal(["eth_requestAccounts", "eth_sendTransaction"]);
    const sent = await payerTransactions(chain, firstBlock);
    expect(sent).to.have.length(1);
    expect(sent[0]!.to).to.equal(getAddress(chain.escrow.address));
    const { functionName, args } = decodeFunctionData({ abi: chain.escrow.abi, data: sent[0]!.input });
    expect(functionName).to.equal("open");
    const [config] = args as readonly [{ signer: string }, bigint];
    expect(config.signer).to.equal(session);
    const onChain = await chain.escrow.read.getChannel([channelId]);
    expect(onChain.deposit.toString()).to.equal(await page.getAttribute("#deposit", "data-wei"));
  });

  it("keeps the accepted total in localStorage across a reload and pays the sixth request on top of it", async () => {
    expect(channelId, "the previous test opened no channel").to.match(/^0x[0-9a-f]{64}$/);
    await page.reload();
    await settled(page);
    expect(await page.textContent("#channel-id")).to.equal(channelId);
    const stored = await page.evaluate((key) => localStorage.getItem(key), `paychan:channel:${channelId}`);
    expect(JSON.parse(stored!)).to.deep.equal({ accepted: (5n * PRICE).toString(), signedMax: (5n * PRICE).toString() });
    expect(await page.getAttribute("#accepted", "data-wei")).to.equal((5n * PRICE).toString());

    await page.fill("#count", "1");
    await page.click("#pay");
    await settled(page);
    await page.screenshot({ path: SCREENSHOTS.reloaded, fullPage: true });

    // A client that had forgotten the total would sign 1×price and be refused: it never follows the
    // server past what it has itself signed.
    const rows = await paymentRows(page);
    expect(rows.map((r) => BigInt(r.cumulative!))).to.deep.equal([6n * PRICE]);
    expect(await acceptedPayments(db, channelId)).to.equal(6);
    expect(served.count).to.equal(6);
    expect(prompts, "no wallet prompt after the open").to.deep.equal(["eth_requestAccounts", "eth_sendTransaction"]);
    expect(await payerTransactions(chain, firstBlock)).to.have.length(1);
  });
});

/** The page's script, bundled for the browser as a seller's build would. */
async function bundlePage(): Promise<string> {
  const result = await build({
    entryPoints: [new URL("../../examples/browser/app.ts", import.meta.url).pathname],
    bundle: true,
    format: "esm",
    platform: "browser",
    // "paychan/client" as the repository's sources, not the package's build (see package.json exports).
    conditions: ["paychan-source"],
    target: "es2022",
    write: false,
    sourcemap: "inline",
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

/**
 * The wallet's side of window.ethereum: it has connected one account, the payer, whose key the EDR
 * node holds (its accounts are unlocked), and forwards everything else to the node. Every method that
 * would prompt a real wallet's user is recorded in `prompts`.
 */
function walletEndpoint(chain: EscrowFixture, prompts: string[]) {
  const payer = getAddress(chain.payer.account.address);
  const answer = async ({ id, method, params }: JsonRpcRequest) => {
    if (PROMPTS.test(method)) prompts.push(method);
    try {
      if (method === "eth_accounts" || method === "eth_requestAccounts") return { jsonrpc: "2.0", id, result: [payer] };
      const from = (params?.[0] as { from?: string } | undefined)?.from;
      if (method === "eth_sendTransaction" && (!from || getAddress(from) !== payer)) {
        return { jsonrpc: "2.0", id, error: { code: 4100, message: `The wallet has not connected ${from}.` } };
      }
      const result = await chain.connection.provider.request({ method, params });
      return { jsonrpc: "2.0", id, result: result ?? null };
    } catch (error) {
      const e = error as { code?: number; message?: string; data?: unknown };
      return { jsonrpc: "2.0", id, error: { code: typeof e.code === "number" ? e.code : -32603, message: e.message ?? String(error), data: e.data } };
    }
  };
  return async (req: Request, res: Response) => {
    const body = req.body as JsonRpcRequest | JsonRpcRequest[];
    const result = Array.isArray(body) ? await Promise.all(body.map(answer)) : await answer(body);
    res.type("json").send(JSON.stringify(result, (_key, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v)));
  };
}

/** Waits for the page to finish what it is doing and fails with its message if that went wrong. */
async function settled(page: Page) {
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status")?.dataset.state ?? ""));
  const text = await page.textContent("#status");
  expect(await page.getAttribute("#status", "data-state"), `the page says: ${text}`).to.equal("ready");
}

function paymentRows(page: Page) {
  return page.locator("#payments li").evaluateAll((rows) => rows.map((row) => ({ ...(row as HTMLElement).dataset })));
}

function acceptedPayments(db: Database, channelId: Hex) {
  return db.prisma.payment.count({ where: { channelId, status: "ACCEPTED" } });
}

/** The payer's transactions in the blocks mined since `from`. */
async function payerTransactions(chain: EscrowFixture, from: bigint) {
  const payer = getAddress(chain.payer.account.address);
  const latest = await chain.publicClient.getBlockNumber();
  const sent = [];
  for (let n = from; n <= latest; n++) {
    const block = await chain.publicClient.getBlock({ blockNumber: n, includeTransactions: true });
    sent.push(...block.transactions.filter((tx) => getAddress(tx.from) === payer));
  }
  return sent.map((tx) => ({ ...tx, to: tx.to && getAddress(tx.to) }));
}
