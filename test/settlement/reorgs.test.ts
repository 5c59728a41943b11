// Reorgs against the books, on the EDR chain (evm_snapshot / evm_revert / mining a longer branch):
// a deposit that vouchers were spent against, a deposit the gateway saw before it was confirmed, a
// claim and its gas, and a channel the mirror cannot book. None of them may stop the watcher, leave
// the books claiming money the chain does not show, or unbalance the ledger.
import { expect } from "chai";
import { keccak256, type Hex } from "viem";
import { acceptVouchers } from "../../src/ledger/acceptVouchers.js";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import { saveChannel } from "../../src/ledger/channels.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import { reconcilePaychan } from "../../src/server.js";
import { createPostgresDatabase, unique } from "../ledger/helpers.js";
import {
  PRICE,
  claimedOnChain,
  deployEscrow,
  entriesOfKind,
  expectBalancedLedger,
  finish,
  openChannels,
  owedOf,
  pay,
  startTestPaychan,
  type EscrowFixture,
  type TestChannel,
  type TestPaychan,
} from "./helpers.js";

describe("reorgs against the books [postgres]", function () {
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };
  let running: TestPaychan[] = [];

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
  });
  afterEach(async () => {
    await Promise.all(running.map((t) => t.paychan.close()));
    running = [];
  });
  after(async () => database.drop());

  async function start(env: Record<string, string> = {}) {
    const test = await startTestPaychan(chain, database.url, { env });
    running.push(test);
    return test;
  }

  const rpc = (method: string, params: unknown[] = []) => chain.connection.provider.request({ method, params }) as Promise<string>;
  const shortfallOf = (test: TestPaychan, id: Hex) => balanceOf(test.paychan.db.prisma, accountId.channelShortfall(id));
  const rowOf = (test: TestPaychan, id: Hex) => test.paychan.db.prisma.channel.findUniqueOrThrow({ where: { id } });

  /** One more charge on a channel, decided by the accept statement as the gateway would. */
  async function charge(test: TestPaychan, channel: TestChannel) {
    const cumulativeAmount = channel.cumulative + PRICE;
    const voucher = await signVoucher(channel.key, { channelId: channel.id, cumulativeAmount }, chain.location);
    const [outcome] = await acceptVouchers(
      test.paychan.db.sql,
      [{ channelId: channel.id, cumulativeAmount, price: PRICE, signature: voucher.signature, requestKey: unique("GET /quote") }],
      { chainId: chain.location.chainId, closingMarginSeconds: 0 },
    );
    if (outcome!.ok) channel.cumulative = cumulativeAmount;
    return outcome!;
  }

  for (const { confirmations, depth } of [
    { confirmations: 0, depth: 1 },
    { confirmations: 2, depth: 3 },
  ]) {
    it(`books a shortfall, blocks the channel and keeps the watcher going when a confirmed deposit vouchers spent is reorged out (CONFIRMATIONS=${confirmations}, depth ${depth})`, async () => {
      const test = await start({ CONFIRMATIONS: String(confirmations) });
      const { paychan, settlement, payee } = test;
      const snapshot = await rpc("evm_snapshot");
      const [dropped] = await openChannels(chain, payee, 1);
      await chain.networkHelpers.mine(depth - 1 + confirmations);
      await settlement.watcher.syncOnce();
      expect((await rowOf(test, dropped!.id)).deposit.toFixed(), "the deposit is confirmed").to.not.equal("0");
      await pay(paychan, chain, [dropped!], 3);

      // The open is reorged out; the new branch is longer and carries another buyer's channel.
      await rpc("evm_revert", [snapshot]);
      const [survivor] = await openChannels(chain, payee, 1);
      await chain.networkHelpers.mine(depth + confirmations + 1);
      const sync = await settlement.watcher.syncOnce();

      expect(sync.reorg, "the reorg is undone").to.not.equal(undefined);
      expect(sync.reorg!.shortfalls).to.deep.equal([{ channelId: dropped!.id, amount: 3n * PRICE }]);
      expect(await shortfallOf(test, dropped!.id)).to.equal(3n * PRICE);
      expect((await rowOf(test, dropped!.id)).blockedReason).to.equal("reorg_shortfall");
      expect(await charge(test, dropped!)).to.include({ ok: false, refusal: "CHANNEL_BLOCKED" });
      // The watcher is not jammed: it reached the head and mirrored the other channel's deposit.
      expect((await settlement.watcher.cursor()).blockNumber).to.equal((await chain.publicClient.getBlockNumber({ cacheTime: 0 })) - BigInt(confirmations));
      expect((await rowOf(test, survivor!.id)).deposit.toFixed()).to.not.equal("0");
      await pay(paychan, chain, [survivor!], 1);
      await expectBalancedLedger(paychan);

      const report = await reconcilePaychan(paychan);
      expect(report.ok).to.equal(false);
      expect(report.differences.filter((d) => d.severity === "missing")).to.deep.equal([]);
      expect(report.differences.filter((d) => d.severity === "loss").map((d) => [d.code, d.channelId, d.actual])).to.deep.equal([
        ["REORG_SHORTFALL", dropped!.id, (3n * PRICE).toString()],
      ]);
    });
  }

  it("voids a deposit the gateway saw before it was confirmed when a reorg drops it, with what was spent from it as a shortfall", async () => {
    const test = await start({ CONFIRMATIONS: "2" });
    const { paychan, settlement, payee } = test;
    const snapshot = await rpc("evm_snapshot");
    const [channel] = await openChannels(chain, payee, 1);
    // The gateway's first sight: the head's deposit, pending (nothing is 2 blocks deep yet).
    const head = await chain.escrow.read.getChannel([channel!.id]);
    await saveChannel(paychan.db.prisma, {
      ...channel!.cfg,
      ...chain.location,
      head: { deposit: head.deposit, claimedOnChain: 0n, withdrawReadyAt: null, closed: false },
    });
    expect((await rowOf(test, channel!.id)).pendingBooked.toFixed()).to.equal(head.deposit.toString());
    expect(await charge(test, channel!)).to.include({ ok: true });
    expect(await charge(test, channel!)).to.include({ ok: true });
    await bookAccepted(paychan.db.sql, [channel!.id]);

    await rpc("evm_revert", [snapshot]);
    await chain.networkHelpers.mine(4);
    await settlement.watcher.syncOnce();

    const row = await rowOf(test, channel!.id);
    expect([row.depositSeen.toFixed(), row.pendingBooked.toFixed(), row.blockedReason]).to.deep.equal(["0", "0", "reorg_shortfall"]);
    expect(await shortfallOf(test, channel!.id)).to.equal(2n * PRICE);
    const voided = await entriesOfKind(paychan, "DEPOSIT_VOIDED", [channel!.id]);
    expect(voided).to.have.length(1);
    expect(await balanceOf(paychan.db.prisma, accountId.escrowPending(chain.escrow.address, nativeAsset(chain.location.chainId)))).to.equal(0n);
    await expectBalancedLedger(paychan);
    const report = await reconcilePaychan(paychan);
    expect(report.differences.filter((d) => d.channelId === channel!.id && d.severity !== "lag").map((d) => d.code)).to.deep.equal(["REORG_SHORTFALL"]);
  });

  it("serves on a deposit not yet confirmed only up to the pending cap, then all of it once confirmed", async () => {
    const test = await start({ CONFIRMATIONS: "2", PENDING_DEPOSIT_CAP: (2n * PRICE).toString() });
    const { paychan, settlement, payee } = test;
    const [channel] = await openChannels(chain, payee, 1);
    const head = await chain.escrow.read.getChannel([channel!.id]);
    await saveChannel(paychan.db.prisma, {
      ...channel!.cfg,
      ...chain.location,
      head: { deposit: head.deposit, claimedOnChain: 0n, withdrawReadyAt: null, closed: false },
    });
    const context = { chainId: chain.location.chainId, closingMarginSeconds: 0, pendingDepositCap: 2n * PRICE };
    const next = async () => {
      const cumulativeAmount = channel!.cumulative + PRICE;
      const voucher = await signVoucher(channel!.key, { channelId: channel!.id, cumulativeAmount }, chain.location);
      const [outcome] = await acceptVouchers(paychan.db.sql, [{ channelId: channel!.id, cumulativeAmount, price: PRICE, signature: voucher.signature, requestKey: unique("r") }], context);
      if (outcome!.ok) channel!.cumulative = cumulativeAmount;
      return outcome!;
    };
    expect((await next()).ok).to.equal(true);
    expect((await next()).ok).to.equal(true);
    expect(await next()).to.include({ ok: false, refusal: "EXCEEDS_DEPOSIT" });
    await chain.networkHelpers.mine(2);
    await settlement.watcher.syncOnce();
    expect((await next()).ok, "confirmed: the whole deposit is spendable").to.equal(true);
    await bookAccepted(paychan.db.sql, [channel!.id]);
    await expectBalancedLedger(paychan);
    const report = await reconcilePaychan(paychan);
    expect(report.differences.filter((d) => d.severity === "missing")).to.deep.equal([]);
  });

  it("reverses the gas of a claim a reorg took out of its block, sends the claim again at once and books the gas of the block it lands in", async () => {
    const test = await start({ CONFIRMATIONS: "0" });
    const { paychan, settlement, payee } = test;
    const channels = await openChannels(chain, payee, 2);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 2);
    const snapshot = await rpc("evm_snapshot");
    await settlement.settleNow();
    const [first] = await paychan.db.prisma.chainTx.findMany({ where: { sender: payee.address.toLowerCase() } });
    expect(first!.status).to.equal("CONFIRMED");
    const raw = (await paychan.db.prisma.chainTxAttempt.findFirstOrThrow({ where: { chainTxId: first!.id } })).raw as Hex;

    // The claim's block is dropped; the new branch is longer and does not hold it.
    await rpc("evm_revert", [snapshot]);
    await chain.networkHelpers.mine(3);
    const sync = await settlement.watcher.syncOnce();

    expect(sync.droppedTransactions).to.equal(1);
    expect(await owedOf(paychan, channels[0]!.id), "the claim entry is reversed").to.equal(2n * PRICE);
    const gas = await entriesOfKind(paychan, "GAS_FEE");
    const reversals = await paychan.db.prisma.journalEntry.findMany({ where: { reversesEntryId: { in: gas.map((g) => g.id) } } });
    expect(reversals, "the dropped block's gas is reversed").to.have.length(1);
    const pending = await paychan.db.prisma.chainTx.findUniqueOrThrow({ where: { id: first!.id } });
    expect([pending.status, pending.blockHash, pending.feeEntryId]).to.deep.equal(["PENDING", null, null]);

    // The transaction manager's next pass sends the very same bytes again: no new decision, no new batch.
    const events = await settlement.txManager.process();
    expect(events.map((e) => e.action)).to.deep.equal(["rebroadcast"]);
    await finish(settlement);
    expect(await paychan.db.prisma.settlementBatch.count({ where: { payee: payee.address.toLowerCase() } })).to.equal(1);
    for (const c of channels) expect(await claimedOnChain(chain, c.id)).to.equal(2n * PRICE);
    const landed = await paychan.db.prisma.chainTx.findUniqueOrThrow({ where: { id: first!.id } });
    expect(landed.status).to.equal("CONFIRMED");
    const receipt = await chain.publicClient.getTransactionReceipt({ hash: landed.txHash as Hex });
    expect([landed.blockHash, landed.blockNumber]).to.deep.equal([receipt.blockHash.toLowerCase(), receipt.blockNumber]);
    expect(landed.fee!.toFixed()).to.equal((receipt.gasUsed * receipt.effectiveGasPrice).toString());
    expect(landed.txHash, "the same signed bytes landed").to.equal(keccak256(raw));
    const standing = await balanceOf(paychan.db.prisma, accountId.gas(test.settler.address, nativeAsset(chain.location.chainId)));
    expect(standing, "one transaction's gas, from the receipt that stands").to.equal(receipt.gasUsed * receipt.effectiveGasPrice);
    await expectBalancedLedger(paychan);
    const report = await reconcilePaychan(paychan);
    expect(report.differences.filter((d) => d.severity !== "lag")).to.deep.equal([]);
  });

  it("keeps mirroring every other channel while one channel's events cannot be booked, and books them once it can", async () => {
    const test = await start({ CONFIRMATIONS: "0" });
    const { paychan, settlement, payee } = test;
    const [poisoned, healthy] = await openChannels(chain, payee, 2);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, [poisoned!, healthy!], 2);
    // Edited behind the store's back: the accepted total drops below what is booked and claimed, so
    // booking the channel (which every event of it needs first) fails.
    await settlement.settleNow();
    await paychan.db.prisma.$executeRaw`UPDATE channel SET accepted_cumulative = 0 WHERE id = ${poisoned!.id}`;

    await chain.escrow.write.topUp([poisoned!.cfg, PRICE], { account: chain.payer.account, value: PRICE });
    await chain.escrow.write.topUp([healthy!.cfg, PRICE], { account: chain.payer.account, value: PRICE });
    await pay(paychan, chain, [healthy!], 1);
    const decided = await settlement.worker.decide({ manual: true });
    expect(decided.flatMap((b) => b.items.map((i) => i.candidate.channelId))).to.deep.equal([healthy!.id]);
    await finish(settlement);

    const cursor = await settlement.watcher.cursor();
    expect(cursor.blockNumber, "the cursor reached the head").to.equal(await chain.publicClient.getBlockNumber({ cacheTime: 0 }));
    expect(await claimedOnChain(chain, healthy!.id)).to.equal(3n * PRICE);
    expect(await owedOf(paychan, healthy!.id), "the healthy channel's top-up and claim are booked").to.equal(0n);
    expect((await rowOf(test, healthy!.id)).deposit.toFixed()).to.equal((await chain.escrow.read.getChannel([healthy!.id])).deposit.toString());
    expect((await rowOf(test, poisoned!.id)).blockedReason).to.equal("mirror_failed");
    const kept = await paychan.db.prisma.chainEventFailure.findMany({ where: { channelId: poisoned!.id, resolvedAt: null } });
    expect(kept.map((k) => k.name)).to.deep.equal(["Deposited"]);
    const report = await reconcilePaychan(paychan);
    expect(report.differences.filter((d) => d.code === "MIRROR_FAILED").map((d) => d.channelId)).to.deep.equal([poisoned!.id]);

    // Repaired: the next poll books the kept event, in order, and unblocks the channel.
    await paychan.db.prisma.$executeRaw`UPDATE channel SET accepted_cumulative = ${(2n * PRICE).toString()}::numeric WHERE id = ${poisoned!.id}`;
    const sync = await settlement.watcher.syncOnce();
    expect(sync.recovered).to.deep.equal([poisoned!.id]);
    const row = await rowOf(test, poisoned!.id);
    expect([row.blockedReason, row.deposit.toFixed()]).to.deep.equal([null, (await chain.escrow.read.getChannel([poisoned!.id])).deposit.toString()]);
    await expectBalancedLedger(paychan);
  });
});
