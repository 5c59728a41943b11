// The payer's escape hatch: request a withdrawal, wait the channel's delay (during which the payee can
// still claim), then take back everything unclaimed, whatever the payee does or fails to do.
import { expect } from "chai";
import fc from "fast-check";
import { toHex, type Hex } from "viem";
import { channelConfig, deployEscrow, openChannel, type EscrowFixture } from "../helpers/escrow.js";
import { channelId } from "../../src/protocol/Channel.js";

const DEPOSIT = 1_000_000n;
const DELAY = 3600;
const CLOSED = 2n ** 64n - 1n;

async function requestWithdrawal(f: EscrowFixture, ch: Awaited<ReturnType<typeof openChannel>>) {
  await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
  return (await f.escrow.read.getChannel([ch.id])).withdrawReadyAt;
}

describe("PaychanEscrow withdrawal", () => {
  describe("the payer always gets deposit minus claimed back after the delay", () => {
    it("refunds the unclaimed rest of an ETH channel although the payee never acts again", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: DELAY });
      await f.escrow.write.topUp([ch.cfg, 500n], { account: f.payer.account, value: 500n });
      await f.escrow.write.claim([ch.cfg, 300n, await ch.sign(300n)], { account: f.payee.account });

      const request = await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
      const { timestamp } = await f.publicClient.getBlock();
      await f.viem.assertions.emitWithArgs(request, f.escrow, "WithdrawalRequested", [ch.id, timestamp + BigInt(DELAY)]);
      await f.networkHelpers.time.increase(DELAY);

      const refund = DEPOSIT + 500n - 300n;
      const hash = await f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account });
      await f.viem.assertions.balancesHaveChanged(hash, [
        { address: f.payer.account.address, amount: refund },
        { address: f.escrow.address, amount: -refund },
      ]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ChannelClosed", [ch.id, 300n, refund]);
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.equal({ deposit: 300n, claimed: 300n, withdrawReadyAt: CLOSED });
    });

    it("refunds exactly deposit minus claimed for any deposit, claim and delay (ERC-20)", async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.bigInt({ min: 1n, max: 10n ** 18n }),
          fc.bigInt({ min: 0n, max: 2n * 10n ** 18n }),
          fc.integer({ min: 0, max: 30 * 86_400 }),
          async (deposit, voucher, delay) => {
            const f = await deployEscrow();
            await f.token.write.mint([f.payer.account.address, deposit]);
            const ch = await openChannel(f, deposit, { token: f.token.address, withdrawDelay: delay });
            const claimed = voucher < deposit ? voucher : deposit;
            if (claimed > 0n) {
              await f.escrow.write.claim([ch.cfg, voucher, await ch.sign(voucher)], { account: f.payee.account });
            }
            const before = await f.token.read.balanceOf([f.payer.account.address]);
            await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
            if (delay > 0) await f.networkHelpers.time.increase(delay);
            await f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account });
            expect((await f.token.read.balanceOf([f.payer.account.address])) - before).to.equal(deposit - claimed);
            expect(await f.token.read.balanceOf([f.escrow.address])).to.equal(0n);
          },
        ),
        { numRuns: 20 },
      );
    });
  });

  describe("the payee can claim anywhere inside the withdrawal window", () => {
    it("pays a claim one second before readyAt, after which the payer finalizes at readyAt", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: DELAY });
      const readyAt = await requestWithdrawal(f, ch);

      await f.networkHelpers.time.setNextBlockTimestamp(readyAt - 1n);
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.claim([ch.cfg, 400n, await ch.sign(400n)], { account: f.payee.account }),
        f.escrow,
        "Claimed",
        [ch.id, f.payee.account.address, 400n, 400n],
      );
      await f.networkHelpers.time.setNextBlockTimestamp(readyAt);
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        [{ address: f.payer.account.address, amount: DEPOSIT - 400n }],
      );
    });

    it("rejects a finalize one second before readyAt with WithdrawalNotReady, and the payee still claims then", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: DELAY });
      const readyAt = await requestWithdrawal(f, ch);

      await f.networkHelpers.time.setNextBlockTimestamp(readyAt - 1n);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        f.escrow,
        "WithdrawalNotReady",
        [ch.id, readyAt],
      );
      await f.escrow.write.claim([ch.cfg, 400n, await ch.sign(400n)], { account: f.payee.account });
      expect((await f.publicClient.getBlock()).timestamp).to.equal(readyAt - 1n);
      await f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account });
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.equal({ deposit: 400n, claimed: 400n, withdrawReadyAt: CLOSED });
    });

    it("rejects claims and closes exactly at readyAt and after it with ClaimWindowClosed", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: DELAY });
      const readyAt = await requestWithdrawal(f, ch);
      const voucher = await ch.sign(400n);

      for (const at of [readyAt, readyAt + 1000n]) {
        await f.networkHelpers.time.setNextBlockTimestamp(at);
        for (const attempt of [
          () => f.escrow.write.claim([ch.cfg, 400n, voucher], { account: f.payee.account }),
          () => f.escrow.write.close([ch.cfg, 400n, voucher], { account: f.payee.account }),
        ]) {
          await f.viem.assertions.revertWithCustomErrorWithArgs(attempt(), f.escrow, "ClaimWindowClosed", [ch.id, readyAt]);
        }
      }
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        [{ address: f.payer.account.address, amount: DEPOSIT }],
      );
    });
  });

  describe("the delay is the channel's own term, not bounded by the contract", () => {
    // By design (docs/PROTOCOL.md, "Withdrawal delay"): the window a payee needs depends on how often it
    // settles, so the payee refuses channels below its own minimum before accepting any voucher.
    it("accepts withdrawDelay 0, whose claim window closes in the very block the payer asks to withdraw", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: 0 });
      const voucher = await ch.sign(400n);
      const readyAt = await requestWithdrawal(f, ch);
      expect(readyAt).to.equal((await f.publicClient.getBlock()).timestamp);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 400n, voucher], { account: f.payee.account }),
        f.escrow,
        "ClaimWindowClosed",
        [ch.id, readyAt],
      );
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        [{ address: f.payer.account.address, amount: DEPOSIT }],
      );
    });
  });

  describe("a withdrawal's delay cannot be reset, and nobody else can touch the channel", () => {
    it("rejects a repeated withdrawal request with WithdrawalPending and keeps the original deadline", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { withdrawDelay: DELAY });
      const readyAt = await requestWithdrawal(f, ch);
      await f.networkHelpers.time.increase(DELAY / 2);
      for (const attempt of [
        () => f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account }),
        () => f.escrow.write.topUp([ch.cfg, 1n], { account: f.payer.account, value: 1n }),
      ]) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(attempt(), f.escrow, "WithdrawalPending", [ch.id, readyAt]);
      }
      expect((await f.escrow.read.getChannel([ch.id])).withdrawReadyAt).to.equal(readyAt);
      await f.networkHelpers.time.setNextBlockTimestamp(readyAt);
      await f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account });
    });

    it("lets no third party open in the payer's name, top up, request or finalize the payer's channel", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT, { token: f.token.address });
      const other = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
      for (const caller of [f.stranger.account, f.payee.account]) {
        const notPayer = async (attempt: Promise<Hex>) =>
          f.viem.assertions.revertWithCustomErrorWithArgs(attempt, f.escrow, "NotPayer", [caller.address]);
        // The payer approved the escrow; nobody else may spend that allowance into a channel.
        await notPayer(f.escrow.write.open([other, DEPOSIT], { account: caller }));
        await notPayer(f.escrow.write.topUp([ch.cfg, 1n], { account: caller }));
        await notPayer(f.escrow.write.requestWithdrawal([ch.cfg], { account: caller }));
      }
      await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
      await f.networkHelpers.time.increase(DELAY);
      for (const caller of [f.stranger.account, f.payee.account]) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(
          f.escrow.write.finalizeWithdrawal([ch.cfg], { account: caller }),
          f.escrow,
          "NotPayer",
          [caller.address],
        );
      }
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.include({ deposit: DEPOSIT, claimed: 0n });
    });

    it("rejects a finalize without a request, and requests or top-ups on a channel never opened", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        f.escrow,
        "WithdrawalNotRequested",
        [ch.id],
      );
      const neverOpened = channelConfig(f.payer.account.address, f.payee.account.address, { salt: toHex("nope", { size: 32 }) });
      const id = channelId(neverOpened, f.location);
      for (const attempt of [
        () => f.escrow.write.requestWithdrawal([neverOpened], { account: f.payer.account }),
        () => f.escrow.write.topUp([neverOpened, 1n], { account: f.payer.account, value: 1n }),
        () => f.escrow.write.claim([neverOpened, 1n, "0x"], { account: f.payee.account }),
      ]) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(attempt(), f.escrow, "UnknownChannel", [id]);
      }
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.finalizeWithdrawal([neverOpened], { account: f.payer.account }),
        f.escrow,
        "WithdrawalNotRequested",
        [id],
      );
    });
  });
});
