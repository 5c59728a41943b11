// The whole loop on embedded defaults: Hardhat's in-process chain and PGlite. A seller puts one route
// behind the paywall; a buyer opens a channel with one wallet transaction and pays 120 requests with
// session-key vouchers over real HTTP; the seller's books and the chain are printed at the end.
// Run: npm run demo
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import { formatEther, parseEther, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, type Wallet } from "../src/client/channel.js";
import { createPaidFetch } from "../src/client/paidFetch.js";
import { loadConfig } from "../src/config.js";
import { balances, trialBalance } from "../src/ledger/postings.js";
import { HEADERS, decodeReceipt } from "../src/protocol/wire.js";
import { createApp, startPaychan } from "../src/server.js";

const REQUESTS = 120;
const PRICE = parseEther("0.00001"); // per request, in wei
const started = performance.now();
const step = (text: string) => console.log(`\n▸ ${text}`);
const eth = (wei: bigint) => `${formatEther(wei)} ETH`;

step("Starting an in-process chain and deploying PaychanEscrow");
const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [, buyerWallet, sellerWallet] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
console.log(`  escrow ${escrow.address} on chain ${await publicClient.getChainId()}`);

step("Starting the seller: embedded Postgres (PGlite), the gateway, one paywalled route");
const config = loadConfig({
  DATABASE_URL: "pglite:memory",
  ESCROW_ADDRESS: escrow.address,
  PAYEE_ADDRESS: sellerWallet!.account.address,
  MIN_WITHDRAW_DELAY: "3600",
});
const paychan = await startPaychan(config, { publicClient });
const app = createApp(
  paychan,
  { "GET /api/quote": { price: PRICE, description: "A quote, priced per request" } },
  { "GET /api/quote": (_req, res) => res.json({ quote: "Simplicity is prerequisite for reliability." }) },
);
const server = app.listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/quote`;
console.log(`  seller ${sellerWallet!.account.address} serving ${url} at ${eth(PRICE)} a request`);

step("Buyer: a session key, and one wallet transaction to open a channel");
const session = privateKeyToAccount(generatePrivateKey());
const channel = await openChannel({
  wallet: buyerWallet as unknown as Wallet,
  publicClient,
  escrow: escrow.address,
  payee: sellerWallet!.account.address,
  signer: session.address,
  amount: parseEther("0.01"),
  withdrawDelay: 86_400,
});
console.log(`  channel ${channel.id}\n  deposit ${eth(parseEther("0.01"))}, vouchers signed by session key ${session.address}`);

step(`Buyer pays ${REQUESTS} requests, each with a voucher (no wallet prompt)`);
const unpaid = await fetch(url);
console.log(`  without payment: HTTP ${unpaid.status} with a ${HEADERS.required} header`);
const paidFetch = createPaidFetch({ channel, signer: session, maxPrice: PRICE });
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
for (const b of (await balances(paychan.db.prisma)).values()) {
  console.log(`  ${b.account.padEnd(96)} ${b.kind.padEnd(17)} ${eth(b.balance)}`);
}
for (const [asset, t] of await trialBalance(paychan.db.prisma)) {
  console.log(`  trial balance ${asset}: debits ${eth(t.debits)} = credits ${eth(t.credits)} ${t.debits === t.credits ? "✔" : "✘"}`);
}

step("Settlement: the seller claims the latest voucher and closes the channel cooperatively");
const stored = (await paychan.db.prisma.channel.findUnique({ where: { id: channel.id } }))!;
const buyerBefore = await publicClient.getBalance({ address: buyerWallet!.account.address });
const hash = await escrow.write.close([channel.config, BigInt(stored.latestVoucherAmount.toFixed()), stored.latestVoucherSignature as `0x${string}`], {
  account: sellerWallet!.account,
});
const receipt = await publicClient.waitForTransactionReceipt({ hash });
const state = await escrow.read.getChannel([channel.id]);
const refunded = (await publicClient.getBalance({ address: buyerWallet!.account.address })) - buyerBefore;
console.log(`  claimed ${eth(state.claimed)} for ${REQUESTS} requests in one transaction (${receipt.gasUsed} gas)`);
console.log(`  refunded ${eth(refunded)} to the buyer; channel closed`);

server.close();
await paychan.close();
console.log(`\nDone in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
