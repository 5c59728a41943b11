import { expect } from "chai";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { voidPayment } from "../../src/ledger/booking.js";
import { saveChannel } from "../../src/ledger/channels.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import {
  PRICE,
  claimedOnChain,
  deployEscrow,
  entriesOfKind,
  expectBalancedLedger,
  finish,
  fundedAccount,
  nonceOf,
  openChannels,
  owedOf,
  pay,
  restart,
  startTestPaychan,
  type EscrowFixture,
  type TestPaychan,
} from "./helpers.js";

describe("settlement in batches [postgres]", function () {
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

  async function start(options: Parameters<typeof startTestPaychan>[2] = {}) {
    const test = await startTestPaychan(chain, database.url, options);
    running.push(test);
    return test;
  }

  it("claims 30 channels in claimBatch transactions of at most 20, books each claim once, and a re-read of the blocks books nothing", async () => {
    const payee = await fundedAccount(chain);
    const settler = await fundedAccount(chain);
    await chain.escrow.write.setOperator([settler.address, true], { account: payee });
    const test = await start({ payee, settler, env: { SETTLE_BATCH_SIZE: "20" } });
    const { paychan, settlement } = test;
    const channels = await openChannels(chain, payee, 30);
    const strangers = await openChannels(chain, await fundedAccount(chain), 2);
    const first = await settlement.watcher.syncOnce();
    expect(first.ignored, "channels paying someone else are not ours to mirror").to.equal(2);
    expect(await paychan.db.prisma.channel.count({ where: { id: { in: strangers.map((c) => c.id) } } })).to.equal(0);
    await pay(paychan, chain, channels, 3);
    const nonceBefore = await nonceOf(chain, settler);

    const report = await settlement.settleNow();

    expect(report.decided.map((b) => b.items.length)).to.deep.equal([20, 10]);
    expect(report.transactions.filter((t) => t.action === "confirmed")).to.have.length(2);
    expect(await nonceOf(chain, settler)).to.equal(nonceBefore + 2);
    for (const c of channels) {
      expect(await claimedOnChain(chain, c.id)).to.equal(3n * PRICE);
      expect(await owedOf(paychan, c.id)).to.equal(0n);
    }
    const ids = channels.map((c) => c.id);
    expect(await entriesOfKind(paychan, "CLAIM", ids)).to.have.length(30);
    const asset = nativeAsset(chain.location.chainId);
    expect(await balanceOf(paychan.db.prisma, accountId.revenue(payee.address, asset))).to.equal(90n * PRICE);
    const gas = await paychan.db.prisma.chainTx.findMany({ where: { sender: settler.address.toLowerCase() } });
    expect(await balanceOf(paychan.db.prisma, accountId.gas(settler.address, asset))).to.equal(gas.reduce((sum, t) => sum + BigInt(t.fee!.toFixed()), 0n));

    // Read every block again from before the channels were opened: the mirror recognizes each log.
    const entriesBefore = await paychan.db.prisma.journalEntry.count();
    await paychan.db.prisma.chainCursor.updateMany({ data: { blockNumber: paychan.config.WATCH_FROM_BLOCK - 1n, blockHash: null } });
    const again = await settlement.watcher.syncOnce();
    expect(again.mirrored).to.equal(0);
    expect(again.replayed).to.equal(30 + 30);
    expect(await paychan.db.prisma.journalEntry.count()).to.equal(entriesBefore);
    await expectBalancedLedger(paychan);
  });

  it("claims with the highest accepted voucher, never with a voided charge's", async () => {
    const { paychan, settlement, payee } = await start();
    const [channel] = await openChannels(chain, payee, 1);
    await settlement.watcher.syncOnce();
    const { paymentIds } = await pay(paychan, chain, [channel!], 3);
    await voidPayment(paychan.db.prisma, paymentIds[2]!);

    await settlement.settleNow();

    expect(await claimedOnChain(chain, channel!.id)).to.equal(2n * PRICE);
    expect(await owedOf(paychan, channel!.id)).to.equal(0n);
    const [item] = await paychan.db.prisma.settlementItem.findMany({ where: { channelId: channel!.id } });
    expect(BigInt(item!.cumulativeAmount.toFixed())).to.equal(2n * PRICE);
  });

  it("books a deposit the gateway saw first as pending, and the watcher's confirmation posts it once", async () => {
    const { paychan, settlement, payee } = await start();
    const [channel] = await openChannels(chain, payee, 1);
    // The gateway sees the channel before the watcher does, and books its deposit as pending (saveChannel).
    const seen = await (async () => {
      const state = await chain.escrow.read.getChannel([channel!.id]);
      await saveChannel(paychan.db.prisma, {
        ...channel!.cfg,
        ...chain.location,
        head: { deposit: state.deposit, claimedOnChain: state.claimed, withdrawReadyAt: null, closed: false },
      });
      return state;
    })();
    expect(seen.deposit).to.equal(await chain.escrow.read.getChannel([channel!.id]).then((s) => s.deposit));
    await chain.escrow.write.topUp([channel!.cfg, PRICE], { account: chain.payer.account, value: PRICE });

    const sync = await settlement.watcher.syncOnce();

    expect(sync.mirrored).to.equal(2);
    const pending = await entriesOfKind(paychan, "DEPOSIT_PENDING", [channel!.id]);
    expect(pending.map((e) => e.postings.find((p) => p.accountId === accountId.channelAvailable(channel!.id))!.amount.toFixed())).to.deep.equal([seen.deposit.toString()]);
    // Confirming the open moves the pending deposit into the escrow's holdings; the top-up, never
    // seen pending, is credited to the channel directly.
    const confirmed = await entriesOfKind(paychan, "DEPOSIT", [channel!.id]);
    expect(confirmed.map((e) => e.idempotencyKey.split(":")[0])).to.deep.equal(["chain"]);
    expect(await balanceOf(paychan.db.prisma, accountId.channelAvailable(channel!.id))).to.equal(seen.deposit + PRICE);
    const row = await paychan.db.prisma.channel.findUniqueOrThrow({ where: { id: channel!.id } });
    expect([row.deposit.toFixed(), row.pendingBooked.toFixed()]).to.deep.equal([(seen.deposit + PRICE).toString(), "0"]);
    expect(await balanceOf(paychan.db.prisma, accountId.escrowPending(chain.escrow.address, nativeAsset(chain.location.chainId)))).to.equal(0n);
  });

  it("claims everything unclaimed once per interval, and a restarted worker keeps the schedule", async () => {
    const test = await start({ env: { SETTLE_INTERVAL_SECONDS: "3600" } });
    const { paychan, settlement, payee } = test;
    const channels = await openChannels(chain, payee, 2);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 1);

    expect((await settlement.runOnce()).round.decided, "the interval starts counting").to.have.length(0);
    await chain.networkHelpers.time.increase(3600);
    const due = await settlement.runOnce();
    expect(due.round.decided.map((b) => [b.trigger, b.items.length])).to.deep.equal([["INTERVAL", 2]]);
    await finish(settlement);

    await pay(paychan, chain, channels, 1);
    const restarted = restart(test);
    expect((await restarted.runOnce()).round.decided, "the last interval run is in the outbox, not in memory").to.have.length(0);
    await chain.networkHelpers.time.increase(3600);
    expect((await restarted.runOnce()).round.decided.map((b) => [b.trigger, b.items.length])).to.deep.equal([["INTERVAL", 2]]);
    await finish(restarted);
    for (const c of channels) expect(await claimedOnChain(chain, c.id)).to.equal(2n * PRICE);
  });

  describe("crashes", () => {
    it("a crash after the outbox write loses nothing: a new worker sends the decided claim, once", async () => {
      const test = await start();
      const { paychan, settlement, payee, settler } = test;
      const channels = await openChannels(chain, payee, 3);
      await settlement.watcher.syncOnce();
      await pay(paychan, chain, channels, 2);
      const nonceBefore = await nonceOf(chain, settler);

      const decided = await settlement.worker.decide({ manual: true });
      expect(decided).to.have.length(1);
      // The process dies here: the batch is in the outbox, nothing was signed or sent.

      const after = restart(test);
      const report = await after.settleNow();

      expect(report.decided, "the restarted worker decides nothing new: the claims are in flight").to.have.length(0);
      expect(await nonceOf(chain, settler)).to.equal(nonceBefore + 1);
      for (const c of channels) expect(await claimedOnChain(chain, c.id)).to.equal(2n * PRICE);
      expect(await entriesOfKind(paychan, "CLAIM", channels.map((c) => c.id))).to.have.length(3);
      expect(await paychan.db.prisma.chainTx.count({ where: { sender: settler.address.toLowerCase() } })).to.equal(1);
    });

    it("a crash between signing and broadcasting rebroadcasts the recorded transaction, never a second one", async () => {
      const crash = new Error("crash before broadcast");
      const test = await start({ faults: { beforeBroadcast: () => Promise.reject(crash) } });
      const { paychan, settlement, payee, settler } = test;
      const channels = await openChannels(chain, payee, 2);
      await settlement.watcher.syncOnce();
      await pay(paychan, chain, channels, 1);
      const nonceBefore = await nonceOf(chain, settler);

      await settlement.worker.decide({ manual: true });
      const [event] = await settlement.txManager.process();
      expect(event!.action).to.equal("error");
      const [recorded] = await paychan.db.prisma.chainTxAttempt.findMany({ where: { chainTx: { sender: settler.address.toLowerCase() } } });
      expect(await nonceOf(chain, settler), "nothing reached the chain").to.equal(nonceBefore);

      await restart(test).settleNow();

      const tx = await paychan.db.prisma.chainTx.findFirstOrThrow({ where: { sender: settler.address.toLowerCase() }, include: { attempts: true } });
      expect(tx.status).to.equal("CONFIRMED");
      expect(tx.attempts.map((a) => a.txHash)).to.deep.equal([recorded!.txHash]);
      expect(tx.txHash).to.equal(recorded!.txHash);
      expect(await nonceOf(chain, settler)).to.equal(nonceBefore + 1);
      expect(await entriesOfKind(paychan, "CLAIM", channels.map((c) => c.id))).to.have.length(2);
    });

    it("a crash after broadcasting finds the transaction by its hash and confirms it without sending again", async () => {
      const crash = new Error("crash after broadcast");
      const test = await start({ faults: { afterBroadcast: () => Promise.reject(crash) } });
      const { paychan, settlement, payee, settler } = test;
      const channels = await openChannels(chain, payee, 2);
      await settlement.watcher.syncOnce();
      await pay(paychan, chain, channels, 1);
      const nonceBefore = await nonceOf(chain, settler);

      await settlement.worker.decide({ manual: true });
      await settlement.txManager.process();
      expect(await nonceOf(chain, settler), "the claim was mined").to.equal(nonceBefore + 1);

      const report = await restart(test).settleNow();

      expect(report.transactions.map((t) => t.action)).to.deep.equal(["confirmed"]);
      expect(await nonceOf(chain, settler)).to.equal(nonceBefore + 1);
      expect(await paychan.db.prisma.chainTxAttempt.count({ where: { chainTx: { sender: settler.address.toLowerCase() } } })).to.equal(1);
      expect(await entriesOfKind(paychan, "CLAIM", channels.map((c) => c.id))).to.have.length(2);
      expect(await entriesOfKind(paychan, "GAS_FEE")).to.satisfy((entries: { metadata: unknown }[]) =>
        entries.filter((e) => JSON.stringify(e.metadata).includes(report.transactions[0]!.chainTxId)).length === 1,
      );
    });
  });
});
