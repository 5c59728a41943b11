import { expect } from "chai";
import { accountId } from "../../src/ledger/accounts.js";
import { nativeAsset } from "../../src/ledger/asset.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { createPostgresDatabase } from "../ledger/helpers.js";
import {
  DEPOSIT,
  PRICE,
  claimedOnChain,
  deployEscrow,
  entriesOfKind,
  expectBalancedLedger,
  openChannels,
  owedOf,
  pay,
  finish,
  startTestPaychan,
  type EscrowFixture,
  type TestPaychan,
} from "./helpers.js";

describe("chain watcher and watchtower [postgres]", function () {
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

  const rpc = (method: string, params: unknown[] = []) => chain.connection.provider.request({ method, params });

  it("mirrors an event only once CONFIRMATIONS blocks are on top of it, and finalizes a claim only then", async () => {
    const { paychan, settlement, payee } = await start({ env: { CONFIRMATIONS: "2" } });
    const [channel] = await openChannels(chain, payee, 1);
    expect((await settlement.watcher.syncOnce()).mirrored, "0 confirmations").to.equal(0);
    await chain.networkHelpers.mine(1);
    expect((await settlement.watcher.syncOnce()).mirrored, "1 confirmation").to.equal(0);
    await chain.networkHelpers.mine(1);
    expect((await settlement.watcher.syncOnce()).mirrored, "2 confirmations").to.equal(1);

    await pay(paychan, chain, [channel!], 1);
    await settlement.worker.decide({ manual: true });
    expect((await settlement.txManager.process()).map((t) => t.action)).to.deep.equal(["sent"]);
    expect((await settlement.txManager.process()).map((t) => t.action)).to.deep.equal(["mined"]);
    await chain.networkHelpers.mine(2);
    expect((await settlement.txManager.process()).map((t) => t.action)).to.deep.equal(["confirmed"]);
    expect(await entriesOfKind(paychan, "CLAIM", [channel!.id]), "the claim's block has just 2 confirmations").to.have.length(0);
    await settlement.watcher.syncOnce();
    expect(await entriesOfKind(paychan, "CLAIM", [channel!.id])).to.have.length(1);
  });

  it("undoes a reorg that dropped a mirrored claim and top-up with reversing entries, rewinds the cursor, and claims again", async () => {
    const { paychan, settlement, payee } = await start();
    const channels = await openChannels(chain, payee, 4);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 2);
    const forkPoint = await settlement.watcher.cursor();
    const snapshot = await rpc("evm_snapshot");

    // On the branch that will be dropped: a top-up and the claims, both mirrored.
    await chain.escrow.write.topUp([channels[0]!.cfg, PRICE], { account: chain.payer.account, value: PRICE });
    await settlement.settleNow();
    await chain.networkHelpers.mine(3);
    await settlement.watcher.syncOnce();
    const dropped = await settlement.watcher.cursor();
    const ids = channels.map((c) => c.id);
    const claims = await entriesOfKind(paychan, "CLAIM", ids);
    const [topUp] = (await entriesOfKind(paychan, "DEPOSIT", [channels[0]!.id])).filter((e) => (e.metadata as { event?: string }).event === "Deposited");
    expect(claims).to.have.length(4);
    expect(topUp).to.not.equal(undefined);

    // The chain reorganizes onto a longer branch without them.
    await rpc("evm_revert", [snapshot]);
    await chain.networkHelpers.mine(Number(dropped.blockNumber - forkPoint.blockNumber) + 2);

    const sync = await settlement.watcher.syncOnce();

    expect(sync.reorg, "the reorg is detected").to.not.equal(undefined);
    expect(sync.reorg!.from).to.equal(dropped.blockNumber);
    expect(sync.reorg!.to <= forkPoint.blockNumber, "the cursor rewinds to a block both branches share").to.equal(true);
    expect(sync.reorg!.reversedEntries).to.equal(5);
    const reversals = await entriesOfKind(paychan, "REVERSAL", ids);
    expect(reversals.map((r) => r.reversesEntryId).sort()).to.deep.equal([...claims.map((c) => c.id), topUp!.id].sort());
    const asset = nativeAsset(chain.location.chainId);
    expect(await balanceOf(paychan.db.prisma, accountId.revenue(payee.address, asset))).to.equal(0n);
    for (const c of channels) expect(await owedOf(paychan, c.id)).to.equal(2n * PRICE);
    expect(await balanceOf(paychan.db.prisma, accountId.channelAvailable(channels[0]!.id))).to.equal(DEPOSIT - 2n * PRICE);
    const views = await paychan.db.prisma.channel.findMany({ where: { id: { in: ids } } });
    expect(views.map((v) => v.claimedOnChain.toFixed())).to.deep.equal(["0", "0", "0", "0"]);
    expect(await paychan.db.prisma.chainEvent.count({ where: { channelId: { in: ids }, revertedAt: { not: null } } })).to.equal(5);
    await expectBalancedLedger(paychan);

    // The claims are gone from the chain, so the next round claims them again, on the new branch.
    await settlement.settleNow();
    for (const c of channels) expect(await claimedOnChain(chain, c.id)).to.equal(2n * PRICE);
    expect(await balanceOf(paychan.db.prisma, accountId.revenue(payee.address, asset))).to.equal(8n * PRICE);
    expect(await entriesOfKind(paychan, "CLAIM", ids)).to.have.length(8);
    await expectBalancedLedger(paychan);
  });

  it("claims a channel as soon as its payer starts a withdrawal, and again before the deadline, whatever the schedule", async () => {
    const log: string[] = [];
    const { paychan, settlement, payee } = await start({ env: { WATCHTOWER_MARGIN_SECONDS: "600" }, log: (line) => log.push(line) });
    const channels = await openChannels(chain, payee, 3, 3600);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 2);

    const quiet = await settlement.runOnce();
    expect(quiet.round.decided, "the schedule claims nothing").to.have.length(0);

    await chain.escrow.write.requestWithdrawal([channels[0]!.cfg], { account: chain.payer.account });
    const readyAt = (await chain.escrow.read.getChannel([channels[0]!.id])).withdrawReadyAt;
    const round = await settlement.runOnce();

    expect(log, "the watcher wakes the settlement loop").to.include("withdrawal started on 1 channel(s): claiming them now");
    expect(round.sync.mirrored).to.equal(1);
    expect(round.round.decided.map((b) => b.items.map((i) => [i.candidate.channelId, i.reason]))).to.deep.equal([[[channels[0]!.id, "WATCHTOWER"]]]);
    await finish(settlement);
    expect(await claimedOnChain(chain, channels[0]!.id)).to.equal(2n * PRICE);
    expect(await claimedOnChain(chain, channels[1]!.id), "other channels wait for the schedule").to.equal(0n);
    const claimBlock = await chain.publicClient.getBlock();
    expect(claimBlock.timestamp < readyAt).to.equal(true);

    // More vouchers arrive while the payer withdraws; once the deadline is within the margin they are claimed too.
    await pay(paychan, chain, [channels[0]!], 1);
    expect((await settlement.runOnce()).round.decided, "answered already, deadline still far").to.have.length(0);
    await chain.networkHelpers.time.increaseTo(Number(readyAt) - 600);
    const deadline = await settlement.runOnce();
    expect(deadline.round.decided.flatMap((b) => b.items.map((i) => i.reason))).to.deep.equal(["DEADLINE"]);
    await finish(settlement);
    expect(await claimedOnChain(chain, channels[1]!.id), "still only the withdrawing channel").to.equal(0n);
    expect(await claimedOnChain(chain, channels[0]!.id)).to.equal(3n * PRICE);
    expect((await chain.publicClient.getBlock()).timestamp < readyAt).to.equal(true);
    expect(await owedOf(paychan, channels[0]!.id)).to.equal(0n);
  });

  it("re-signs a claim that a fee spike left behind at the same nonce with fees 12.5% higher, and books the one that lands", async () => {
    const { paychan, settlement, payee, settler } = await start({ env: { FEE_BUMP_AFTER_SECONDS: "0" } });
    const channels = await openChannels(chain, payee, 2);
    await settlement.watcher.syncOnce();
    await pay(paychan, chain, channels, 1);
    await rpc("evm_setAutomine", [false]);
    try {
      await settlement.worker.decide({ manual: true });
      const [sent] = await settlement.txManager.process();
      expect(sent!.action).to.equal("sent");
      const [patient] = await settlement.txManager.process();
      expect(patient!.action, "no bump while the bid still matches the market").to.equal("waiting");
      // The base fee jumps past the claim's maxFeePerGas: the next block leaves it out.
      await rpc("hardhat_setNextBlockBaseFeePerGas", [`0x${(200n * 10n ** 9n).toString(16)}`]);
      await chain.networkHelpers.mine(1);
      const [bumped] = await settlement.txManager.process();
      expect(bumped!.action).to.equal("bumped");
      expect(bumped!.nonce).to.equal(sent!.nonce);
      await chain.networkHelpers.mine(1);
    } finally {
      await rpc("evm_setAutomine", [true]);
    }
    await settlement.settleNow();

    const tx = await paychan.db.prisma.chainTx.findFirstOrThrow({
      where: { sender: settler.address.toLowerCase() },
      include: { attempts: { orderBy: { createdAt: "asc" } } },
    });
    const [first, second] = tx.attempts;
    expect(tx.attempts).to.have.length(2);
    expect(first!.nonce).to.equal(second!.nonce);
    const fee = (d: { toFixed(): string }) => BigInt(d.toFixed());
    expect(fee(second!.maxFeePerGas) * 8n >= fee(first!.maxFeePerGas) * 9n).to.equal(true);
    expect(fee(second!.maxPriorityFeePerGas) * 8n >= fee(first!.maxPriorityFeePerGas) * 9n).to.equal(true);
    expect(tx.status).to.equal("CONFIRMED");
    expect(tx.txHash).to.equal(second!.txHash);
    for (const c of channels) expect(await claimedOnChain(chain, c.id)).to.equal(PRICE);
    expect(await entriesOfKind(paychan, "CLAIM", channels.map((c) => c.id))).to.have.length(2);
    expect((await entriesOfKind(paychan, "GAS_FEE")).filter((e) => e.idempotencyKey === `gas:${second!.txHash}:${tx.blockHash}`)).to.have.length(1);
  });
});
