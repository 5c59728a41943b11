// Property: whatever sequence of opens, top-ups, payments, claims and withdrawals happens, interleaved
// with reorgs of any depth from 0 to CONFIRMATIONS + 2, once the chain settles and the watcher catches
// up, every confirmed fact in the ledger matches the chain, the watcher is at the head, the ledger
// balances, and reconciliation finds nothing missing — naming exactly the realised losses (what
// channels had spent of deposits the chain no longer holds).
//
// CI runs a few sequences; a larger run: REORG_RUNS=100 npm run test:reorgs
import { expect } from "chai";
import fc from "fast-check";
import type { Hex } from "viem";
import { acceptVouchers } from "../../src/ledger/acceptVouchers.js";
import { accountId } from "../../src/ledger/accounts.js";
import { bookAccepted } from "../../src/ledger/booking.js";
import { saveChannel } from "../../src/ledger/channels.js";
import { balanceOf } from "../../src/ledger/postings.js";
import { signVoucher } from "../../src/protocol/Voucher.js";
import { reconcilePaychan } from "../../src/server.js";
import { createPostgresDatabase, unique } from "../ledger/helpers.js";
import { PRICE, deployEscrow, expectBalancedLedger, openChannels, startTestPaychan, type EscrowFixture, type TestChannel, type TestPaychan } from "./helpers.js";

const RUNS = Number(process.env.REORG_RUNS ?? 4);

type Op =
  | { kind: "open" }
  | { kind: "topUp"; channel: number }
  | { kind: "pay"; channel: number; requests: number }
  | { kind: "claim" }
  | { kind: "withdraw"; channel: number }
  | { kind: "mine"; blocks: number }
  | { kind: "sync" }
  /** Drops the blocks above an earlier point (the `back`-th newest at least `depth` deep). */
  | { kind: "reorg"; depth: number; back: number };

const op = (confirmations: number): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constant({ kind: "open" as const }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("topUp" as const), channel: fc.nat(4) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("pay" as const), channel: fc.nat(4), requests: fc.integer({ min: 1, max: 4 }) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "claim" as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("withdraw" as const), channel: fc.nat(4) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("mine" as const), blocks: fc.integer({ min: 1, max: confirmations + 1 }) }) },
    { weight: 3, arbitrary: fc.constant({ kind: "sync" as const }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("reorg" as const), depth: fc.integer({ min: 0, max: confirmations + 2 }), back: fc.nat(12) }) },
  );

describe("reorgs at random against the books [postgres]", function () {
  let chain: EscrowFixture;
  let database: { url: string; drop(): Promise<void> };

  before(async () => {
    chain = await deployEscrow();
    database = await createPostgresDatabase();
  });
  after(async () => database.drop());

  const rpc = (method: string, params: unknown[] = []) => chain.connection.provider.request({ method, params }) as Promise<string>;
  const head = () => chain.publicClient.getBlockNumber({ cacheTime: 0 });

  async function run(confirmations: number, ops: Op[]): Promise<void> {
    const test: TestPaychan = await startTestPaychan(chain, database.url, { env: { CONFIRMATIONS: String(confirmations) } });
    const { paychan, settlement, payee } = test;
    const channels: TestChannel[] = [];
    const snapshots: { id: string; block: bigint }[] = [];
    const attempt = async (action: () => Promise<unknown>) => action().catch(() => undefined);
    try {
      for (const step of ops) {
        snapshots.push({ id: await rpc("evm_snapshot"), block: await head() });
        const channel = "channel" in step && channels.length > 0 ? channels[step.channel % channels.length]! : undefined;
        switch (step.kind) {
          case "open":
            channels.push(...(await openChannels(chain, payee, 1)));
            break;
          case "topUp":
            if (channel) await attempt(() => chain.escrow.write.topUp([channel.cfg, 2n * PRICE], { account: chain.payer.account, value: 2n * PRICE }));
            break;
          case "pay":
            if (channel) await pay(test, channel, step.requests);
            break;
          case "claim":
            await attempt(() => settlement.worker.decide({ manual: true }));
            await settlement.txManager.process();
            break;
          case "withdraw":
            if (channel) await attempt(() => chain.escrow.write.requestWithdrawal([channel.cfg], { account: chain.payer.account }));
            break;
          case "mine":
            await chain.networkHelpers.mine(step.blocks);
            break;
          case "sync":
            await settlement.watcher.syncOnce();
            await settlement.txManager.process();
            break;
          case "reorg": {
            // Drop the blocks above some earlier point at least `depth` deep, onto a longer branch.
            const tip = await head();
            const candidates = snapshots.flatMap((s, i) => (s.block + BigInt(step.depth) <= tip ? [i] : []));
            if (candidates.length === 0) break;
            const index = candidates[candidates.length - 1 - (step.back % candidates.length)]!;
            const point = snapshots[index]!;
            await rpc("evm_revert", [point.id]);
            snapshots.length = index;
            await chain.networkHelpers.mine(Number(tip - point.block) + 1);
            break;
          }
        }
      }
      // The chain settles: enough blocks on top of everything, the watcher and the claims catch up.
      for (let pass = 0; pass < 6; pass++) {
        await chain.networkHelpers.mine(confirmations + 1);
        await settlement.watcher.syncOnce();
        await settlement.txManager.process();
      }
      await chain.networkHelpers.mine(confirmations + 1);
      await settlement.watcher.syncOnce();
      await bookAccepted(paychan.db.sql);

      expect((await settlement.watcher.cursor()).blockNumber, "the watcher is at the head").to.equal((await head()) - BigInt(confirmations));
      expect(await settlement.txManager.inFlight(), "no claim left in flight").to.equal(0);
      await expectBalancedLedger(paychan);
      const report = await reconcilePaychan(paychan);
      expect(report.differences.filter((d) => d.severity === "missing"), JSON.stringify(ops)).to.deep.equal([]);
      // Exactly the channels that spent more than the chain now holds for them show a loss, of that much.
      const losses = new Map(report.differences.filter((d) => d.code === "REORG_SHORTFALL").map((d) => [d.channelId!, BigInt(d.actual!)]));
      for (const c of channels) {
        const row = await paychan.db.prisma.channel.findUnique({ where: { id: c.id } });
        if (!row) continue;
        const onChain = await chain.escrow.read.getChannel([c.id]);
        const accepted = BigInt(row.acceptedCumulative.toFixed());
        const expected = onChain.deposit >= accepted ? 0n : accepted - onChain.deposit;
        expect(await balanceOf(paychan.db.prisma, accountId.channelShortfall(c.id)), `shortfall of ${c.id}: ${JSON.stringify(ops)}`).to.equal(expected);
        expect(losses.get(c.id) ?? 0n).to.equal(expected);
        expect(BigInt(row.deposit.toFixed()), "confirmed deposit").to.equal(onChain.deposit);
        expect(BigInt(row.claimedOnChain.toFixed()), "claimed").to.equal(onChain.claimed);
      }
    } finally {
      await paychan.close();
    }
  }

  /** Charges as the gateway would: first sight registers the channel's head state, then one statement per voucher. */
  async function pay(test: TestPaychan, channel: TestChannel, requests: number): Promise<void> {
    const { paychan } = test;
    const known = await paychan.db.prisma.channel.findUnique({ where: { id: channel.id } });
    const onChain = await chain.escrow.read.getChannel([channel.id]);
    if (!known && onChain.deposit > 0n) {
      await saveChannel(paychan.db.prisma, {
        ...channel.cfg,
        ...chain.location,
        head: { deposit: onChain.deposit, claimedOnChain: onChain.claimed, withdrawReadyAt: onChain.withdrawReadyAt === 0n ? null : onChain.withdrawReadyAt, closed: false },
      });
    }
    for (let i = 0; i < requests; i++) {
      const row = await paychan.db.prisma.channel.findUnique({ where: { id: channel.id } });
      if (!row) return;
      const cumulativeAmount = BigInt(row.acceptedCumulative.toFixed()) + PRICE;
      const voucher = await signVoucher(channel.key, { channelId: channel.id as Hex, cumulativeAmount }, chain.location);
      await acceptVouchers(
        paychan.db.sql,
        [{ channelId: channel.id, cumulativeAmount, price: PRICE, signature: voucher.signature, requestKey: unique("GET /quote") }],
        { chainId: chain.location.chainId, closingMarginSeconds: 0 },
      );
    }
    await bookAccepted(paychan.db.sql, [channel.id]);
  }

  for (const confirmations of [0, 2]) {
    it(`keeps the books true to the chain through random activity and reorgs (CONFIRMATIONS=${confirmations}, ${RUNS} sequences)`, async function () {
      this.timeout(0);
      await fc.assert(
        fc.asyncProperty(fc.array(op(confirmations), { minLength: 4, maxLength: 14 }), (ops) =>
          // Every sequence starts with a channel that is open, confirmed, mirrored and paid on.
          run(confirmations, [{ kind: "open" }, { kind: "mine", blocks: confirmations }, { kind: "sync" }, { kind: "pay", channel: 0, requests: 2 }, ...ops]),
        ),
        { numRuns: RUNS, endOnFailure: true },
      );
    });
  }
});
