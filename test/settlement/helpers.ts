// Fixtures for the settlement tests: the escrow on the shared EDR chain, a fresh payee (and settlement
// key) per test so that tests sharing a database or a chain never share books, channels opened by the
// fixture's payer, and paychan assembled through the composition root exactly as the CLI does it.
import { expect } from "chai";
import { parseEther, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { loadConfig } from "../../src/config.js";
import { accountId } from "../../src/ledger/accounts.js";
import { balanceOf, trialBalance } from "../../src/ledger/postings.js";
import { acceptVouchers } from "../../src/ledger/acceptVouchers.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import type { ChannelConfig } from "../../src/protocol/Channel.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import { createSettlement, loggerFor, startPaychan, type Paychan, type Settlement, type SettlementOptions } from "../../src/server.js";
import { channelConfig, deployEscrow, idOf, sessionKey, type EscrowFixture } from "../helpers/escrow.js";
import { unique } from "../ledger/helpers.js";

export const PRICE = 1_000_000_000_000n; // 10^12 wei a request
export const DEPOSIT = parseEther("0.01");

export type TestChannel = { cfg: ChannelConfig; id: Hex; key: PrivateKeyAccount; cumulative: bigint };

export { deployEscrow, type EscrowFixture };

/** A new funded account (10 ETH from the fixture's deployer). */
export async function fundedAccount(chain: EscrowFixture): Promise<PrivateKeyAccount> {
  const account = privateKeyToAccount(generatePrivateKey());
  await chain.deployer.sendTransaction({ to: account.address, value: parseEther("10") });
  return account;
}

/** Opens `count` ETH channels from the fixture's payer to `payee`, each with its own session key. */
export async function openChannels(chain: EscrowFixture, payee: PrivateKeyAccount, count: number, withdrawDelay = 7200): Promise<TestChannel[]> {
  const channels: TestChannel[] = [];
  for (let i = 0; i < count; i++) {
    const key = sessionKey();
    const cfg = channelConfig(chain.payer.account.address, payee.address, { signer: key.address, withdrawDelay });
    await chain.escrow.write.open([cfg, DEPOSIT], { account: chain.payer.account, value: DEPOSIT });
    channels.push({ cfg, id: idOf(cfg, chain.location), key, cumulative: 0n });
  }
  return channels;
}

/** Accepts `requests` more charges of PRICE on each channel, with real vouchers, as the gateway would. */
export async function pay(paychan: Paychan, chain: EscrowFixture, channels: TestChannel[], requests: number): Promise<{ paymentIds: string[] }> {
  const items = [];
  for (const channel of channels) {
    for (let i = 0; i < requests; i++) {
      channel.cumulative += PRICE;
      const voucher = await signVoucher(channel.key, { channelId: channel.id, cumulativeAmount: channel.cumulative }, chain.location);
      items.push({ channelId: channel.id, requestKey: unique("GET /quote"), cumulativeAmount: channel.cumulative, price: PRICE, signature: voucher.signature });
    }
  }
  const results = await acceptVouchers(paychan.db.sql, items, { chainId: chain.location.chainId, closingMarginSeconds: 0 });
  // The gateway books what it accepted within a second; tests book at once.
  await bookAccepted(paychan.db.sql, channels.map((c) => c.id));
  const refused = results.find((r) => !r.ok);
  if (refused) throw new Error(`a payment was refused: ${JSON.stringify(refused)}`);
  return { paymentIds: results.map((r) => (r.ok ? r.paymentId : "")) };
}

export type TestPaychan = { paychan: Paychan; settlement: Settlement; payee: PrivateKeyAccount; settler: PrivateKeyAccount };

/**
 * paychan for a fresh payee on the test chain and the given database, built by startPaychan from the
 * same zod configuration the CLI reads. The schedule is off by default (interval 0, gas multiplier
 * huge) so that only what a test asks for is claimed.
 */
export async function startTestPaychan(
  chain: EscrowFixture,
  databaseUrl: string,
  options: {
    env?: Record<string, string>;
    payee?: PrivateKeyAccount;
    settler?: PrivateKeyAccount;
    publicClient?: PublicClient;
    /** Where paychan's log lines go (default stdout), through the logger the configuration sets up. */
    logTo?: { write(line: string): unknown };
  } & SettlementOptions = {},
): Promise<TestPaychan> {
  const payee = options.payee ?? (await fundedAccount(chain));
  const settler = options.settler ?? payee;
  const head = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    ESCROW_ADDRESS: chain.escrow.address,
    PAYEE_ADDRESS: payee.address,
    CONFIRMATIONS: "0",
    POLL_INTERVAL_MS: "50",
    SETTLE_INTERVAL_SECONDS: "0",
    SETTLE_GAS_MULTIPLIER: "1000000000",
    FEE_BUMP_AFTER_SECONDS: "3600",
    WATCH_FROM_BLOCK: (head + 1n).toString(),
    LOG_LEVEL: "warn",
    ...options.env,
  });
  const paychan = await startPaychan(config, {
    publicClient: options.publicClient ?? (chain.publicClient as PublicClient),
    logger: options.logTo && loggerFor(config, options.logTo),
  });
  const settlement = createSettlement(paychan, { account: settler, log: options.log, faults: options.faults });
  return { paychan, settlement, payee, settler };
}

/** Carries the transactions in flight to their end and mirrors them, deciding nothing new. */
export async function finish(settlement: Settlement): Promise<void> {
  for (let pass = 0; pass < 20; pass++) {
    await settlement.txManager.process();
    await settlement.watcher.syncOnce();
    if ((await settlement.txManager.inFlight()) === 0) return;
  }
  throw new Error("transactions still in flight after 20 passes");
}

/** The same books and chain, as a process started after a crash would see them. */
export function restart(test: TestPaychan, options: SettlementOptions = {}): Settlement {
  return createSettlement(test.paychan, { account: test.settler, ...options });
}

export async function entriesOfKind(
  paychan: Paychan,
  kind: "CLAIM" | "DEPOSIT" | "DEPOSIT_PENDING" | "DEPOSIT_VOIDED" | "GAS_FEE" | "REFUND" | "REVERSAL",
  channelIds?: Hex[],
) {
  const entries = await paychan.db.prisma.journalEntry.findMany({ where: { kind }, include: { postings: true } });
  if (!channelIds) return entries;
  const accounts = new Set(channelIds.flatMap((id) => [accountId.channelAvailable(id), accountId.channelOwed(id), accountId.channelShortfall(id)]));
  return entries.filter((e) => e.postings.some((p) => accounts.has(p.accountId)));
}

export async function expectBalancedLedger(paychan: Paychan): Promise<void> {
  for (const [asset, t] of await trialBalance(paychan.db.prisma)) expect(t.debits, `trial balance of ${asset}`).to.equal(t.credits);
}

export async function owedOf(paychan: Paychan, id: Hex): Promise<bigint> {
  return balanceOf(paychan.db.prisma, accountId.channelOwed(id));
}

export async function claimedOnChain(chain: EscrowFixture, id: Hex): Promise<bigint> {
  return (await chain.escrow.read.getChannel([id])).claimed;
}

export async function nonceOf(chain: EscrowFixture, account: PrivateKeyAccount): Promise<number> {
  return chain.publicClient.getTransactionCount({ address: account.address, blockTag: "latest" });
}
