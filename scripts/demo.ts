// The whole loop on embedded defaults: Hardhat's in-process chain and PGlite. A seller puts one route
// behind the paywall; three buyers each open a channel with one wallet transaction and pay requests
// with session-key vouchers over real HTTP; the settlement worker claims all channels in one batch,
// the chain watcher mirrors the claim into the ledger, a payer's withdrawal is caught by the
// watchtower, and reconciliation prints a clean report. Beside them a card buyer without a wallet
// tops up prepaid credit through Stripe (the real SDK against a local fake of Stripe's API, the
// webhook signed with the test secret and delivered over HTTP), pays the same route with an API key,
// and the seller is paid out through Stripe Connect. Run: npm run demo
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import { formatEther, parseEther, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { escrowAbi } from "../src/contracts/escrowAbi.js";
import { openChannel, type Wallet } from "../src/client/channel.js";
import { createPaidFetch } from "../src/client/paidFetch.js";
import { loadConfig } from "../src/config.js";
import { balances, trialBalance } from "../src/ledger/postings.js";
import { HEADERS, decodeReceipt } from "../src/protocol/wire.js";
import { formatReport } from "../src/ledger/reconcile.js";
import { createApp, createOperatorEndpoints, createSettlement, reconcilePaychan, startPaychan } from "../src/server.js";
import { formatBase } from "../src/ledger/currency.js";
import { signWebhook, startFakeStripe } from "../test/helpers/fakeStripe.js";

const REQUESTS = 120; // by the first buyer; the two others pay 20 each
const PRICE = parseEther("0.00001"); // per request, in wei
const PRICE_USD = "0.01"; // the same request paid from card-funded credit
const started = performance.now();
const step = (text: string) => console.log(`\n▸ ${text}`);
const eth = (wei: bigint) => `${formatEther(wei)} ETH`;

step("Starting an in-process chain and deploying PaychanEscrow");
const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [deployer, buyerWallet, sellerWallet, secondBuyer, thirdBuyer] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
console.log(`  escrow ${escrow.address} on chain ${await publicClient.getChainId()}`);

step("Starting the seller: embedded Postgres (PGlite), the gateway, one paywalled route, Stripe for card buyers");
const stripe = await startFakeStripe();
const WEBHOOK_SECRET = "whsec_demo_only";
const config = loadConfig({
  DATABASE_URL: "pglite:memory",
  ESCROW_ADDRESS: escrow.address,
  PAYEE_ADDRESS: sellerWallet!.account.address,
  MIN_WITHDRAW_DELAY: "3600",
  CONFIRMATIONS: "0", // the in-process chain mines each transaction at once and never reorgs
  STRIPE_SECRET_KEY: "sk_test_demo_only",
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_BASE: stripe.url, // a local fake of Stripe's API: the demo stays offline
  STRIPE_SELLER_ACCOUNT: "acct_1DemoSeller",
  PAYOUT_THRESHOLD: "0.25",
  LOG_LEVEL: "warn", // the narration below says what each payment did; `paychan serve` logs a line per decision
});
const paychan = await startPaychan(config, { publicClient });
const app = createApp(
  paychan,
  { "GET /api/quote": { price: { usd: PRICE_USD, amounts: { [paychan.gateway.defaultAsset]: PRICE } }, description: "A quote, priced per request" } },
  { "GET /api/quote": (_req, res) => res.json({ quote: "Simplicity is prerequisite for reliability." }) },
);
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const url = `${base}/api/quote`;
const operatorServer = createOperatorEndpoints(paychan).listen(0, "127.0.0.1");
await new Promise((resolve) => operatorServer.once("listening", resolve));
const operator = `http://127.0.0.1:${(operatorServer.address() as AddressInfo).port}`;
console.log(`  seller ${sellerWallet!.account.address} serving ${url} at ${eth(PRICE)} a request`);

/** A buyer: a fresh session key, one wallet transaction to open a channel, and a fetch that pays. */
async function openBuyer(wallet: typeof buyerWallet, deposit: bigint) {
  const session = privateKeyToAccount(generatePrivateKey());
  const channel = await openChannel({
    wallet: wallet as unknown as Wallet,
    publicClient,
    escrow: escrow.address,
    payee: sellerWallet!.account.address,
    signer: session.address,
    amount: deposit,
    withdrawDelay: 86_400,
  });
  return { wallet: wallet!, session, channel, pay: createPaidFetch({ channel, signer: session, maxPrice: PRICE }) };
}

const money = (asset: string, amount: bigint) => (asset.startsWith("fiat:") ? `${formatBase(amount)} ${asset.slice(5)}` : eth(amount));

async function printLedger(skipZero: boolean) {
  for (const b of (await balances(paychan.db.prisma)).values()) {
    if (!skipZero || b.balance !== 0n) console.log(`  ${b.account.padEnd(96)} ${b.kind.padEnd(18)} ${money(b.asset, b.balance)}`);
  }
  for (const [asset, t] of await trialBalance(paychan.db.prisma)) {
    console.log(`  trial balance ${asset}: debits ${money(asset, t.debits)} = credits ${money(asset, t.credits)} ${t.debits === t.credits ? "✔" : "✘"}`);
  }
}

step("Buyer: a session key, and one wallet transaction to open a channel");
const { session, channel, pay: paidFetch } = await openBuyer(buyerWallet, parseEther("0.01"));
console.log(`  channel ${channel.id}\n  deposit ${eth(parseEther("0.01"))}, vouchers signed by session key ${session.address}`);

step(`Buyer pays ${REQUESTS} requests, each with a voucher (no wallet prompt)`);
const unpaid = await fetch(url);
console.log(`  without payment: HTTP ${unpaid.status} with a ${HEADERS.required} header`);
const payStart = performance.now();
let lastReceipt;
for (let i = 1; i <= REQUESTS; i++) {
  const response = await paidFetch(url);
  if (response.status !== 200) throw new Error(`request ${i}: HTTP ${response.status} ${await response.text()}`);
  lastReceipt = decodeReceipt(response.headers.get(HEADERS.response)!);
  if (i === 1 || i % 40 === 0) console.log(`  request ${String(i).padStart(3)}: HTTP 200, paid in total ${eth(lastReceipt.cumulativeAmount)}, ${eth(lastReceipt.remaining)} left`);
}
const paySeconds = (performance.now() - payStart) / 1000;
console.log(`  ${REQUESTS} paid requests in ${paySeconds.toFixed(2)} s (${Math.round(REQUESTS / paySeconds)}/s, one HTTP round trip each after the first)`);

step("The seller's ledger (double entry, every voucher a journal entry)");
await printLedger(false);

step("Two more buyers open channels and pay 20 requests each");
const others = [];
for (const wallet of [secondBuyer, thirdBuyer]) {
  const buyer = await openBuyer(wallet, parseEther("0.001"));
  for (let i = 0; i < 20; i++) if ((await buyer.pay(url)).status !== 200) throw new Error("payment refused");
  others.push(buyer);
  console.log(`  ${buyer.wallet.account.address}: channel ${buyer.channel.id.slice(0, 18)}…, paid ${eth(20n * PRICE)}`);
}

step("A card buyer, no wallet: the operator opens a credit account; the buyer tops up $2.00 by card");
const opened = (await (await fetch(`${operator}/credit/accounts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ label: "card buyer" }) })).json()) as { accountId: string; key: string };
console.log(`  credit account ${opened.accountId}, API key ${opened.key.slice(0, 16)}… (shown once, stored hashed)`);
const topUp = (await (await fetch(`${base}/credit/topups`, { method: "POST", headers: { authorization: `Bearer ${opened.key}`, "content-type": "application/json" }, body: JSON.stringify({ amount: "2.00" }) })).json()) as { url: string };
console.log(`  Stripe Checkout session: ${topUp.url}`);
const paidEvent = JSON.stringify(stripe.payCheckout(topUp.url.split("/").pop()!)); // the buyer pays on Stripe's page
const webhook = await fetch(`${base}/webhooks/stripe`, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signWebhook(paidEvent, WEBHOOK_SECRET) }, body: paidEvent });
console.log(`  Stripe's signed webhook checkout.session.completed → ${webhook.status} ${JSON.stringify(await webhook.json())}`);

step(`The card buyer pays 50 requests on the same route, $${PRICE_USD} each from credit (Authorization: Bearer)`);
const offer = JSON.parse(atob((await fetch(url)).headers.get(HEADERS.required)!)) as { accepts: { scheme: string; amount: string; asset: string }[] };
console.log(`  the 402 offers: ${offer.accepts.map((a) => `${a.scheme} ${a.amount} ${a.asset}`).join(" | ")}`);
let creditReceipt: { remaining: string } | undefined;
for (let i = 1; i <= 50; i++) {
  const response = await fetch(url, { headers: { authorization: `Bearer ${opened.key}`, "idempotency-key": `demo-${i}` } });
  if (response.status !== 200) throw new Error(`credit request ${i}: HTTP ${response.status} ${await response.text()}`);
  creditReceipt = JSON.parse(atob(response.headers.get(HEADERS.response)!));
}
console.log(`  50 requests paid, $${formatBase(BigInt(creditReceipt!.remaining))} of credit left`);

step("Seller payout: earnings on credit passed $0.25, so a Stripe Connect transfer and payout run, booked two-phase");
for (const outcome of (await (await fetch(`${operator}/payouts/run`, { method: "POST" })).json()) as { seller: string; outcome: string; payout?: { id: string; amount: string; transferRef: string; payoutRef: string } }[]) {
  console.log(`  ${outcome.seller}: ${outcome.outcome}${outcome.payout ? ` ${outcome.payout.id}, $${formatBase(BigInt(outcome.payout.amount))} (transfer ${outcome.payout.transferRef}, payout ${outcome.payout.payoutRef})` : ""}`);
}

step("Settlement: the seller authorizes an operator key, which claims every channel in one batch");
const settler = privateKeyToAccount(generatePrivateKey());
await deployer!.sendTransaction({ to: settler.address, value: parseEther("1") });
await sellerWallet!.writeContract({ address: escrow.address, abi: escrowAbi, functionName: "setOperator", args: [settler.address, true] });
const settlement = createSettlement(paychan, { account: settler, log: (line) => console.log(`  · ${line}`) });
const sellerBefore = await publicClient.getBalance({ address: sellerWallet!.account.address });
const settled = await settlement.settleNow();
const claimedTotal = (await publicClient.getBalance({ address: sellerWallet!.account.address })) - sellerBefore;
const claimTx = settled.transactions.find((t) => t.action === "confirmed" && t.hash);
const gasUsed = claimTx?.hash && (await publicClient.getTransactionReceipt({ hash: claimTx.hash })).gasUsed;
console.log(`  seller received ${eth(claimedTotal)} for ${REQUESTS + 40} requests in one claimBatch transaction (${gasUsed} gas)`);

step("Watchtower: a payer starts withdrawing; its latest vouchers are claimed at once");
const last = others[1]!;
for (let i = 0; i < 5; i++) await last.pay(url);
await last.wallet.writeContract({ address: escrow.address, abi: escrowAbi, functionName: "requestWithdrawal", args: [last.channel.config] });
const watchtower = await settlement.runOnce();
for (const batch of watchtower.round.decided) console.log(`  claimed ${eth(batch.total)} on ${batch.items.length} channel (${batch.trigger})`);
await settlement.settleNow();
const after = await escrow.read.getChannel([last.channel.id]);
console.log(`  on chain: claimed ${eth(after.claimed)} of the ${eth(25n * PRICE)} paid; the payer gets the rest back after the delay`);

step("The seller's ledger after settlement");
await printLedger(true);

step("Reconciliation: chain, ledger and voucher store compared, and Stripe's balance transactions against the fiat books");
const report = await reconcilePaychan(paychan);
console.log(formatReport(report).replace(/^/gm, "  "));
if (!report.ok) process.exitCode = 1;

server.close();
operatorServer.close();
await paychan.close();
await stripe.close();
console.log(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
