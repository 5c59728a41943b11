// Gas per paid request, amortized by batch settlement. Two measurements on Hardhat's in-process chain:
// 1. claimBatch's gas for batches of 1, 10, 50 and 100 ETH channels (a first claim, and a later one
//    on the same channels), and a single claim() for comparison;
// 2. a realistic run through the real settlement worker under the default policy (claim hourly, gas
//    break-even ×10, batches of 100): CHANNELS channels × REQUESTS paid requests each, accepted into
//    the ledger, one interval passes, the worker settles, the watcher mirrors, reconciliation checks.
// Run: npm run bench:settlement   (env: CHANNELS=1000 REQUESTS=100, DATABASE_URL else a fresh Postgres)
import { randomBytes } from "node:crypto";
import { network } from "hardhat";
import { createWalletClient, custom, encodeFunctionData, formatGwei, parseEther, toHex, zeroAddress, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { escrowAbi } from "../../src/contracts/escrowAbi.js";
import { batchClaimOf } from "../../src/chain/SettlementWorker.js";
import { loadConfig } from "../../src/config.js";
import { acceptVouchers, type VoucherCharge } from "../../src/ledger/acceptVouchers.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import { channelId, type ChannelConfig } from "../../src/protocol/Channel.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import { createSettlement, reconcilePaychan, startPaychan } from "../../src/server.js";
import { freshPostgres } from "./freshPostgres.js";

const CHANNELS = Number(process.env.CHANNELS ?? 1000);
const REQUESTS = Number(process.env.REQUESTS ?? 100);
const PRICE = 1_000_000_000_000n; // 10^12 wei ($0.003 at $3000/ETH) a request

const connection = await network.create();
const { viem, networkHelpers } = connection;
const publicClient = (await viem.getPublicClient()) as unknown as PublicClient;
const [deployer, payer] = await viem.getWalletClients();
const chainId = await publicClient.getChainId();


/** A funded local account (the payee, which also sends its own claims). */
async function fundedAccount() {
  const account = privateKeyToAccount(generatePrivateKey());
  await deployer!.sendTransaction({ to: account.address, value: parseEther("100") });
  return account;
}

/** Opens `count` channels to `payee`, quickly: the payer's transactions are mined 200 to a block. */
async function openChannels(escrow: Hex, payee: Hex, count: number, deposit: bigint) {
  const location = { chainId, escrow };
  const channels: { cfg: ChannelConfig; id: Hex; key: ReturnType<typeof privateKeyToAccount> }[] = [];
  await connection.provider.request({ method: "evm_setAutomine", params: [false] });
  try {
    for (let i = 0; i < count; i++) {
      const key = privateKeyToAccount(generatePrivateKey());
      const cfg: ChannelConfig = { payer: payer!.account.address, payee, token: zeroAddress, signer: key.address, withdrawDelay: 86_400, salt: toHex(randomBytes(32)) };
      await payer!.sendTransaction({ to: escrow, data: encodeFunctionData({ abi: escrowAbi, functionName: "open", args: [cfg, deposit] }), value: deposit, gas: 150_000n });
      channels.push({ cfg, id: channelId(cfg, location), key });
      if (i % 200 === 199) await networkHelpers.mine(1);
    }
    await networkHelpers.mine(1);
  } finally {
    await connection.provider.request({ method: "evm_setAutomine", params: [true] });
  }
  return channels;
}

async function claimGas(escrow: Hex, payee: ReturnType<typeof privateKeyToAccount>, channels: Awaited<ReturnType<typeof openChannels>>, cumulative: bigint) {
  const entries = await Promise.all(
    channels.map(async (c) => batchClaimOf(c.cfg, await signVoucher(c.key, { channelId: c.id, cumulativeAmount: cumulative }, { chainId, escrow }))),
  );
  const payeeWallet = createWalletClient({ account: payee, transport: custom(connection.provider) });
  const hash = await payeeWallet.writeContract({ address: escrow, abi: escrowAbi, functionName: "claimBatch", args: [payee.address, zeroAddress, entries], chain: null });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error("claimBatch reverted");
  return receipt.gasUsed;
}

console.log(`paychan settlement gas on Hardhat EDR (chain ${chainId}), price ${PRICE} wei a request\n`);

// 1. claimBatch gas by batch size.
const escrow = (await viem.deployContract("PaychanEscrow")).address;
const payee = await fundedAccount();
const sizes = [1, 10, 50, 100];
const measured = new Map<number, { first: bigint; later: bigint }>();
for (const size of sizes) {
  const channels = await openChannels(escrow, payee.address, size, 1000n * PRICE);
  const first = await claimGas(escrow, payee, channels, 100n * PRICE);
  const later = await claimGas(escrow, payee, channels, 200n * PRICE);
  measured.set(size, { first, later });
}
const [single] = await openChannels(escrow, payee.address, 1, 1000n * PRICE);
const payeeWallet = createWalletClient({ account: payee, transport: custom(connection.provider) });
const singleSig = (await signVoucher(single!.key, { channelId: single!.id, cumulativeAmount: 100n * PRICE }, { chainId, escrow })).signature;
const singleHash = await payeeWallet.writeContract({ address: escrow, abi: escrowAbi, functionName: "claim", args: [single!.cfg, 100n * PRICE, singleSig], chain: null });
const singleGas = (await publicClient.waitForTransactionReceipt({ hash: singleHash })).gasUsed;

console.log("claimBatch, ETH channels          gas    gas per channel");
for (const size of sizes) {
  const m = measured.get(size)!;
  console.log(`  ${String(size).padStart(3)} channels, first claim  ${String(m.first).padStart(9)}  ${String(m.first / BigInt(size)).padStart(8)}`);
  console.log(`  ${String(size).padStart(3)} channels, later claim  ${String(m.later).padStart(9)}  ${String(m.later / BigInt(size)).padStart(8)}`);
}
const hundred = measured.get(100)!.later;
const marginal = (measured.get(100)!.later - measured.get(1)!.later) / 99n;
console.log(`  one claim() on its own              ${String(singleGas).padStart(9)}`);
console.log(`  each channel added to a batch: ${marginal} gas; a batch of 100 costs ${hundred / 100n} per channel\n`);

// 2. A realistic run through the settlement worker.
const database = await freshPostgres();
const seller = await fundedAccount();
const run = await viem.deployContract("PaychanEscrow");
const head = await publicClient.getBlockNumber({ cacheTime: 0 });
const config = loadConfig({
  DATABASE_URL: database.url,
  ESCROW_ADDRESS: run.address,
  PAYEE_ADDRESS: seller.address,
  CONFIRMATIONS: "0",
  WATCH_FROM_BLOCK: head.toString(),
});
const paychan = await startPaychan(config, { publicClient });
try {
  const settlement = createSettlement(paychan, { account: seller });
  let started = performance.now();
  const channels = await openChannels(run.address, seller.address, CHANNELS, BigInt(REQUESTS) * PRICE);
  const opened = performance.now();
  await settlement.watcher.syncOnce();
  const seconds = (from: number, to = performance.now()) => ((to - from) / 1000).toFixed(1);
  console.log(`realistic run: ${CHANNELS} channels opened in ${seconds(started, opened)} s, their events mirrored into the ledger in ${seconds(opened)} s`);

  // Every request's voucher is accepted through the store's hot path; only the last voucher of each
  // channel, the one the worker claims with, needs a real signature.
  started = performance.now();
  const filler = toHex(randomBytes(65));
  for (let from = 0; from < CHANNELS; from += 10) {
    const batch: VoucherCharge[] = [];
    for (const c of channels.slice(from, from + 10)) {
      for (let r = 1; r <= REQUESTS; r++) {
        const cumulativeAmount = BigInt(r) * PRICE;
        const signature = r === REQUESTS ? (await signVoucher(c.key, { channelId: c.id, cumulativeAmount }, { chainId, escrow: run.address })).signature : filler;
        batch.push({ channelId: c.id, requestKey: `GET /item ${r}`, cumulativeAmount, price: PRICE, signature });
      }
    }
    const results = await acceptVouchers(paychan.db.sql, batch, { chainId, closingMarginSeconds: 0 });
    if (!results.every((r) => r.ok)) throw new Error(`refused: ${JSON.stringify(results.find((r) => !r.ok))}`);
  }
  await bookAccepted(paychan.db.sql);
  console.log(`  ${CHANNELS * REQUESTS} paid requests accepted into the ledger in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  // The policy's clock starts; an hour later the interval is due.
  const early = await settlement.worker.decide();
  await networkHelpers.time.increase(config.SETTLE_INTERVAL_SECONDS);
  started = performance.now();
  const decided = [...early];
  for (let pass = 0; pass < 50; pass++) {
    const { round } = await settlement.runOnce();
    decided.push(...round.decided);
    if (decided.length > 0 && (await settlement.txManager.inFlight()) === 0) break;
  }
  await settlement.watcher.syncOnce();
  const txs = await paychan.db.prisma.chainTx.findMany({ where: { status: "CONFIRMED" } });
  const gas = txs.reduce((sum, t) => sum + (t.gasUsed ?? 0n), 0n);
  const triggers = [...new Set(decided.map((b) => b.trigger))].join(", ");
  const requests = BigInt(CHANNELS * REQUESTS);
  const gasPrice = await publicClient.getGasPrice();
  console.log(`  settled in ${((performance.now() - started) / 1000).toFixed(1)} s: ${txs.length} claimBatch transactions (${triggers}), ${gas} gas`);
  console.log(`  gas per channel ${gas / BigInt(CHANNELS)}, gas per paid request ${(Number(gas) / Number(requests)).toFixed(1)}`);
  console.log(`  at 1 gwei: ${formatGwei((gas * 10n ** 9n) / requests)} gwei of fee per paid request, against a price of ${formatGwei(PRICE)} gwei (${(Number(gas * 10n ** 9n) / Number(requests * PRICE) * 100).toFixed(3)}%)`);
  console.log(`  (chain's gas price now ${formatGwei(gasPrice)} gwei)`);
  const report = await reconcilePaychan(paychan);
  console.log(`  reconciliation: ${report.ok ? "clean" : "MONEY MISSING"} (${report.differences.length} differences)`);

  console.log(`\nIf a channel's ${REQUESTS} requests spread over several hours, the hourly schedule claims it once per active hour:`);
  for (const hours of [1, 4, 24]) {
    console.log(`  over ${String(hours).padStart(2)} h: ${((Number(gas) / CHANNELS) * hours / REQUESTS).toFixed(1)} gas per paid request`);
  }
} finally {
  await paychan.close();
  await database.drop();
}
