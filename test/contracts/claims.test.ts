// What the payee can take, and who may take it: cumulative claims, batch claims, cooperative close.
import { expect } from "chai";
import fc from "fast-check";
import {
  encodeFunctionData,
  getAddress,
  maxUint256,
  parseEventLogs,
  parseSignature,
  serializeCompactSignature,
  signatureToCompactSignature,
  toHex,
  zeroAddress,
  zeroHash,
  type Hex,
} from "viem";
import { batchClaimOf } from "../../src/chain/SettlementWorker.js";
import { channelConfig, deployEscrow, openChannel, sessionKey, type EscrowFixture } from "../helpers/escrow.js";
import { channelId } from "../../src/protocol/Channel.js";

const DEPOSIT = 1_000_000n;
const CLOSED = 2n ** 64n - 1n;
const Skip = { UnknownChannel: 1, ClaimWindowClosed: 2, NothingNew: 3, InvalidSignature: 4 } as const;

async function logsOf(f: EscrowFixture, hash: Hex) {
  const receipt = await f.publicClient.waitForTransactionReceipt({ hash });
  return parseEventLogs({ abi: f.escrow.abi, logs: receipt.logs });
}

describe("PaychanEscrow claims", () => {
  describe("claims are cumulative", () => {
    it("pays only the increase over what was claimed, and nothing for an older or equal voucher", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const claim = async (amount: bigint) =>
        f.escrow.write.claim([ch.cfg, amount, await ch.sign(amount)], { account: f.payee.account });

      await f.viem.assertions.balancesHaveChanged(claim(300n), [{ address: f.payee.account.address, amount: 300n }]);
      for (const stale of [200n, 300n, 0n]) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(claim(stale), f.escrow, "NothingToClaim", [ch.id]);
      }
      const hash = await claim(700n);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "Claimed", [ch.id, f.payee.account.address, 400n, 700n]);
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.escrow.address, amount: -400n }]);
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.equal({ deposit: DEPOSIT, claimed: 700n, withdrawReadyAt: 0n });
    });

    it("pays a voucher above the deposit up to the deposit, and the rest of it after a top-up", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const voucher = await ch.sign(DEPOSIT + 500n);
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.claim([ch.cfg, DEPOSIT + 500n, voucher], { account: f.payee.account }),
        f.escrow,
        "Claimed",
        [ch.id, f.payee.account.address, DEPOSIT, DEPOSIT],
      );
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, DEPOSIT + 500n, voucher], { account: f.payee.account }),
        f.escrow,
        "NothingToClaim",
        [ch.id],
      );
      await f.escrow.write.topUp([ch.cfg, 1000n], { account: f.payer.account, value: 1000n });
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.claim([ch.cfg, DEPOSIT + 500n, voucher], { account: f.payee.account }),
        f.escrow,
        "Claimed",
        [ch.id, f.payee.account.address, 500n, DEPOSIT + 500n],
      );
    });

    it("never pays in total more than the largest signed cumulative amount nor the deposit (random claim orders)", async () => {
      const f0 = await deployEscrow();
      const payee = f0.payee.account.address;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.bigInt({ min: 0n, max: 2n * DEPOSIT }), { minLength: 1, maxLength: 6 }), async (amounts) => {
          const f = await deployEscrow();
          const ch = await openChannel(f, DEPOSIT, { token: f.token.address });
          let largest = 0n;
          for (const amount of amounts) {
            const { claimed } = await f.escrow.read.getChannel([ch.id]);
            const claim = f.escrow.write.claim([ch.cfg, amount, await ch.sign(amount)], { account: payee });
            if ((amount < DEPOSIT ? amount : DEPOSIT) <= claimed) {
              await f.viem.assertions.revertWithCustomError(claim, f.escrow, "NothingToClaim");
            } else {
              await claim;
            }
            largest = amount > largest ? amount : largest;
            const expected = largest < DEPOSIT ? largest : DEPOSIT;
            expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(expected);
            expect(await f.token.read.balanceOf([payee])).to.equal(expected);
          }
        }),
        { numRuns: 40 },
      );
    });
  });

  describe("only the payee or its operator can claim, and only the payee can close", () => {
    it("rejects claim, claimBatch and close from the payer or a stranger", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const voucher = await ch.sign(100n);
      const entry = batchClaimOf(ch.cfg, { cumulativeAmount: 100n, signature: voucher });
      for (const caller of [f.payer.account, f.stranger.account]) {
        const attempts = [
          () => f.escrow.write.claim([ch.cfg, 100n, voucher], { account: caller }),
          () => f.escrow.write.claimBatch([ch.cfg.payee, zeroAddress, [entry]], { account: caller }),
        ];
        for (const attempt of attempts) {
          await f.viem.assertions.revertWithCustomErrorWithArgs(attempt(), f.escrow, "NotPayeeOrOperator", [caller.address]);
        }
        await f.viem.assertions.revertWithCustomErrorWithArgs(
          f.escrow.write.close([ch.cfg, 100n, voucher], { account: caller }),
          f.escrow,
          "NotPayee",
          [caller.address],
        );
      }
    });

    it("gives a front-runner copying the payee's calldata nothing", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const data = encodeFunctionData({ abi: f.escrow.abi, functionName: "claim", args: [ch.cfg, 100n, await ch.sign(100n)] });
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.stranger.sendTransaction({ to: f.escrow.address, data }),
        f.escrow,
        "NotPayeeOrOperator",
        [f.stranger.account.address],
      );
      await f.viem.assertions.balancesHaveChanged(f.payee.sendTransaction({ to: f.escrow.address, data }), [
        { address: f.payee.account.address, amount: 100n },
      ]);
    });

    it("pays the payee, never the operator, when an authorized operator claims", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.setOperator([f.operator.account.address, true], { account: f.payee.account }),
        f.escrow,
        "OperatorSet",
        [f.payee.account.address, f.operator.account.address, true],
      );
      expect(await f.escrow.read.isOperator([f.payee.account.address, f.operator.account.address])).to.equal(true);

      const claim = await f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.operator.account });
      await f.viem.assertions.balancesHaveChanged(claim, [
        { address: f.payee.account.address, amount: 100n },
        { address: f.operator.account.address, amount: 0n },
      ]);
      await f.viem.assertions.emitWithArgs(claim, f.escrow, "Claimed", [ch.id, f.payee.account.address, 100n, 100n]);

      const batch = await f.escrow.write.claimBatch(
        [ch.cfg.payee, zeroAddress, [batchClaimOf(ch.cfg, { cumulativeAmount: 250n, signature: await ch.sign(250n) })]],
        { account: f.operator.account },
      );
      await f.viem.assertions.balancesHaveChanged(batch, [
        { address: f.payee.account.address, amount: 150n },
        { address: f.operator.account.address, amount: 0n },
      ]);
    });

    it("refuses a close by an authorized operator, so a settlement key cannot end a channel without the payee's latest voucher", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.escrow.write.setOperator([f.operator.account.address, true], { account: f.payee.account });
      await f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.operator.account });
      // The payee holds a newer voucher the operator does not; a close now would refund it to the payer.
      const latest = await ch.sign(700n);
      for (const [amount, signature] of [[100n, "0x"], [400n, await ch.sign(400n)]] as const) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(
          f.escrow.write.close([ch.cfg, amount, signature], { account: f.operator.account }),
          f.escrow,
          "NotPayee",
          [f.operator.account.address],
        );
      }
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.equal({ deposit: DEPOSIT, claimed: 100n, withdrawReadyAt: 0n });
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.close([ch.cfg, 700n, latest], { account: f.payee.account }),
        [
          { address: f.payee.account.address, amount: 600n },
          { address: f.payer.account.address, amount: DEPOSIT - 700n },
        ],
      );
    });

    it("stops an operator once revoked, and an operator of one payee cannot claim for another", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.escrow.write.setOperator([f.operator.account.address, true], { account: f.payee.account });
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.setOperator([f.operator.account.address, false], { account: f.payee.account }),
        f.escrow,
        "OperatorSet",
        [f.payee.account.address, f.operator.account.address, false],
      );
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.operator.account }),
        f.escrow,
        "NotPayeeOrOperator",
        [f.operator.account.address],
      );

      await f.escrow.write.setOperator([f.operator.account.address, true], { account: f.stranger.account });
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.operator.account }),
        f.escrow,
        "NotPayeeOrOperator",
        [f.operator.account.address],
      );
    });
  });

  describe("batch claims", () => {
    it("pays every valid entry of a mixed batch in one transfer and skips each invalid one with its reason", async () => {
      const f = await deployEscrow();
      const open = () => openChannel(f, DEPOSIT, { withdrawDelay: 600 });
      const fresh = await open();
      const second = await open();
      const stale = await open();
      const forged = await open();
      const closed = await open();
      const expired = await open();
      const tokenChannel = await openChannel(f, DEPOSIT, { token: f.token.address });
      await f.escrow.write.claim([stale.cfg, 500n, await stale.sign(500n)], { account: f.payee.account });
      await f.escrow.write.close([closed.cfg, 0n, "0x"], { account: f.payee.account });
      await f.escrow.write.requestWithdrawal([expired.cfg], { account: f.payer.account });
      await f.networkHelpers.time.increase(600);
      const neverOpened = channelConfig(f.payer.account.address, f.payee.account.address, { signer: fresh.key.address });

      const entry = async (ch: { cfg: typeof fresh.cfg; sign: (a: bigint) => Promise<Hex> }, amount: bigint) =>
        batchClaimOf(ch.cfg, { cumulativeAmount: amount, signature: await ch.sign(amount) });
      const claims = [
        await entry(fresh, 100n),
        await entry({ cfg: neverOpened, sign: fresh.sign }, 100n),
        await entry(second, 200n),
        await entry(stale, 400n),
        batchClaimOf(forged.cfg, { cumulativeAmount: 100n, signature: await fresh.sign(100n) }),
        await entry(closed, 100n),
        await entry(expired, 100n),
        await entry(fresh, 100n),
        await entry(tokenChannel, 100n),
      ];
      const { result } = await f.escrow.simulate.claimBatch([f.payee.account.address, zeroAddress, claims], {
        account: f.payee.account.address,
      });
      expect(result).to.equal(300n);

      const hash = await f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, claims], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [
        { address: f.payee.account.address, amount: 300n },
        { address: f.escrow.address, amount: -300n },
      ]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "Claimed", [fresh.id, f.payee.account.address, 100n, 100n]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [forged.id, Skip.InvalidSignature]);
      const events = (await logsOf(f, hash)).map((log) => [log.eventName, log.args]);
      expect(events).to.deep.equal([
        ["Claimed", { channelId: fresh.id, payee: getAddress(f.payee.account.address), amount: 100n, totalClaimed: 100n }],
        ["ClaimSkipped", { channelId: channelId(neverOpened, f.location), reason: Skip.UnknownChannel }],
        ["Claimed", { channelId: second.id, payee: getAddress(f.payee.account.address), amount: 200n, totalClaimed: 200n }],
        ["ClaimSkipped", { channelId: stale.id, reason: Skip.NothingNew }],
        ["ClaimSkipped", { channelId: forged.id, reason: Skip.InvalidSignature }],
        ["ClaimSkipped", { channelId: closed.id, reason: Skip.ClaimWindowClosed }],
        ["ClaimSkipped", { channelId: expired.id, reason: Skip.ClaimWindowClosed }],
        ["ClaimSkipped", { channelId: fresh.id, reason: Skip.NothingNew }],
        // The batch's asset is ETH; the same terms with another token are another channel.
        ["ClaimSkipped", { channelId: channelId({ ...tokenChannel.cfg, token: zeroAddress }, f.location), reason: Skip.UnknownChannel }],
      ]);
    });

    it("skips an entry whose signature is not 65 bytes, which cannot be put in a batch's compact form, and pays the rest", async () => {
      const f = await deployEscrow();
      const odd = await openChannel(f, DEPOSIT);
      const fine = await openChannel(f, DEPOSIT);
      const sixtyFourBytes = serializeCompactSignature(signatureToCompactSignature(parseSignature(await odd.sign(100n))));
      const claims = [
        batchClaimOf(odd.cfg, { cumulativeAmount: 100n, signature: sixtyFourBytes }),
        batchClaimOf(fine.cfg, { cumulativeAmount: 100n, signature: await fine.sign(100n) }),
      ];
      expect([claims[0]!.r, claims[0]!.vs]).to.deep.equal([zeroHash, zeroHash]);
      const hash = await f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, claims], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.payee.account.address, amount: 100n }]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [odd.id, Skip.InvalidSignature]);
    });

    it("neither reverts nor transfers when no entry of a batch can pay", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const claims = [batchClaimOf(ch.cfg, { cumulativeAmount: 0n, signature: await ch.sign(0n) })];
      const hash = await f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, claims], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.escrow.address, amount: 0n }]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [ch.id, Skip.NothingNew]);
      expect((await logsOf(f, hash)).map((log) => log.eventName)).to.deep.equal(["ClaimSkipped"]);
    });

    it("claims a batch of ERC-20 channels with a single token transfer, each capped at its deposit", async () => {
      const f = await deployEscrow();
      const key = sessionKey();
      const channels = [];
      for (const amount of [DEPOSIT, 2n * DEPOSIT, 3n * DEPOSIT]) {
        channels.push(await openChannel(f, amount, { token: f.token.address }, key));
      }
      const claims = await Promise.all(
        channels.map(async (ch) => batchClaimOf(ch.cfg, { cumulativeAmount: maxUint256, signature: await ch.sign(maxUint256) })),
      );
      const hash = await f.escrow.write.claimBatch([f.payee.account.address, f.token.address, claims], {
        account: f.payee.account,
      });
      const receipt = await f.publicClient.waitForTransactionReceipt({ hash });
      const transfers = parseEventLogs({ abi: f.token.abi, logs: receipt.logs, eventName: "Transfer" });
      expect(transfers).to.have.length(1);
      expect(transfers[0]!.args.value).to.equal(6n * DEPOSIT);
      expect(getAddress(transfers[0]!.args.to)).to.equal(getAddress(f.payee.account.address));
      expect(await f.token.read.balanceOf([f.payee.account.address])).to.equal(6n * DEPOSIT);
      for (const ch of channels) {
        const state = await f.escrow.read.getChannel([ch.id]);
        expect(state.claimed).to.equal(state.deposit);
      }
    });
  });

  describe("cooperative close", () => {
    it("pays the final voucher to the payee and refunds the rest to the payer at once", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.payee.account });
      const hash = await f.escrow.write.close([ch.cfg, 400n, await ch.sign(400n)], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [
        { address: f.payee.account.address, amount: 300n },
        { address: f.payer.account.address, amount: DEPOSIT - 400n },
        { address: f.escrow.address, amount: -(DEPOSIT - 100n) },
      ]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "Claimed", [ch.id, f.payee.account.address, 300n, 400n]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ChannelClosed", [ch.id, 400n, DEPOSIT - 400n]);
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.equal({ deposit: 400n, claimed: 400n, withdrawReadyAt: CLOSED });
    });

    it("just refunds the unspent rest when closed without a newer voucher", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.payee.account });
      const hash = await f.escrow.write.close([ch.cfg, 100n, "0x"], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.payer.account.address, amount: DEPOSIT - 100n }]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ChannelClosed", [ch.id, 100n, DEPOSIT - 100n]);
      expect((await logsOf(f, hash)).map((log) => log.eventName)).to.deep.equal(["ChannelClosed"]);
    });

    it("rejects a close with a forged newer voucher, and a close of a channel never opened", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.close([ch.cfg, 400n, await ch.sign(300n)], { account: f.payee.account }),
        f.escrow,
        "InvalidSignature",
        [ch.id],
      );
      const neverOpened = channelConfig(f.payer.account.address, f.payee.account.address, { salt: toHex("nope", { size: 32 }) });
      for (const amount of [0n, 1n]) {
        await f.viem.assertions.revertWithCustomErrorWithArgs(
          f.escrow.write.close([neverOpened, amount, "0x"], { account: f.payee.account }),
          f.escrow,
          "UnknownChannel",
          [channelId(neverOpened, f.location)],
        );
      }
    });

    it("leaves a closed channel inert: every later action reverts and it cannot be reopened", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      await f.escrow.write.close([ch.cfg, 400n, await ch.sign(400n)], { account: f.payee.account });
      const voucher = await ch.sign(DEPOSIT);
      const isClosed = async (attempt: Promise<Hex>) =>
        f.viem.assertions.revertWithCustomErrorWithArgs(attempt, f.escrow, "ChannelIsClosed", [ch.id]);
      await isClosed(f.escrow.write.claim([ch.cfg, DEPOSIT, voucher], { account: f.payee.account }));
      await isClosed(f.escrow.write.close([ch.cfg, DEPOSIT, voucher], { account: f.payee.account }));
      await isClosed(f.escrow.write.topUp([ch.cfg, 1n], { account: f.payer.account, value: 1n }));
      await isClosed(f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account }));
      await isClosed(f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }));
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.open([ch.cfg, 1n], { account: f.payer.account, value: 1n }),
        f.escrow,
        "ChannelExists",
        [ch.id],
      );
      const hash = await f.escrow.write.claimBatch(
        [f.payee.account.address, zeroAddress, [batchClaimOf(ch.cfg, { cumulativeAmount: DEPOSIT, signature: voucher })]],
        { account: f.payee.account },
      );
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [ch.id, Skip.ClaimWindowClosed]);
    });
  });
});
