// Runs the metered streaming example end to end on Hardhat's in-process chain and PGlite: the seller
// (server.ts) on a real port, a buyer opening a channel and streaming twice (once up to the maximum),
// then settlement claiming on chain exactly what the streams were charged.
// Run: npx hardhat run examples/metered-sse/run.ts
import type { AddressInfo } from "node:net";
import { network } from "hardhat";
import { formatEther, parseEther, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createPaidFetch, openChannel, type Wallet } from "../../src/client/index.js";
import { createSettlement, reconcilePaychan, startPaychan } from "../../src/server.js";
import { loadConfig } from "../../src/config.js";
import { escrowAbi } from "../../src/contracts/escrowAbi.js";
import { generate } from "./buyer.js";
import { MAX_PRICE, generationApp } from "./server.js";

const { viem } = await network.create();
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [deployer, buyerWallet, sellerWallet] = await viem.getWalletClients();
const escrow = await viem.deployContract("PaychanEscrow");
const paychan = await startPaychan(
  loadConfig({
    DATABASE_URL: "pglite:memory",
    ESCROW_ADDRESS: escrow.address,
    PAYEE_ADDRESS: sellerWallet!.account.address,
    MIN_WITHDRAW_DELAY: "3600",
    CONFIRMATIONS: "0",
    LOG_LEVEL: "warn",
  }),
  { publicClient },
);
const server = generationApp(paychan).listen(0, "127.0.0.1");
await new Promise((resolve) => server.once("listening", resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/generate`;

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
const paidFetch = createPaidFetch({ channel, signer: session, maxPrice: MAX_PRICE });

let total = 0n;
for (const tokens of [12, 1000, 0]) {
  const words: string[] = [];
  const receipt = await generate(paidFetch, `${url}?tokens=${tokens}`, (token) => words.push(token));
  total += receipt.charged;
  console.log(`asked for ${tokens} tokens, got ${words.length}: charged ${formatEther(receipt.charged)} ETH, owed until the next voucher ${formatEther(receipt.owed ?? 0n)} ETH`);
}
server.close();

// The seller authorizes a settlement key of its own (an operator) to claim for it.
const settler = privateKeyToAccount(generatePrivateKey());
await deployer!.sendTransaction({ to: settler.address, value: parseEther("1") });
await sellerWallet!.writeContract({ address: escrow.address, abi: escrowAbi, functionName: "setOperator", args: [settler.address, true] });
const settlement = createSettlement(paychan, { account: settler });
await settlement.settleNow();
const claimed = (await publicClient.readContract({ address: escrow.address, abi: escrowAbi, functionName: "getChannel", args: [channel.id] })).claimed;
console.log(`charged in all ${formatEther(total)} ETH; the payer signed ${formatEther((await paidFetch.state()).signedMax)} ETH; claimed on chain ${formatEther(claimed)} ETH`);
const report = await reconcilePaychan(paychan);
console.log(`reconciliation: ${report.ok ? "clean" : JSON.stringify(report.differences)}`);
await paychan.close();
if (claimed !== total || !report.ok) process.exitCode = 1;
