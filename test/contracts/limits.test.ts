// Amounts at the edges of their types: zero, the uint96 storage maximum, values that would truncate
// if downcast unchecked, and vouchers at uint256 max. Each must revert with a custom error or be capped.
import { expect } from "chai";
import { maxUint256, zeroAddress } from "viem";
import { channelConfig, deployEscrow, openChannel } from "../helpers/escrow.js";
import { channelId } from "../../src/protocol/Channel.js";

const MAX_UINT96 = 2n ** 96n - 1n;

describe("PaychanEscrow amount limits", () => {
  it("rejects zero deposits and zero top-ups with ZeroAmount", async () => {
    const f = await deployEscrow();
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address);
    await f.viem.assertions.revertWithCustomError(f.escrow.write.open([cfg, 0n], { account: f.payer.account }), f.escrow, "ZeroAmount");
    const erc20 = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    await f.viem.assertions.revertWithCustomError(f.escrow.write.open([erc20, 0n], { account: f.payer.account }), f.escrow, "ZeroAmount");
    const ch = await openChannel(f, 1n);
    await f.viem.assertions.revertWithCustomError(f.escrow.write.topUp([ch.cfg, 0n], { account: f.payer.account }), f.escrow, "ZeroAmount");
  });

  it("rejects a deposit of 2^96, which an unchecked downcast would store as zero, with AmountOverflow", async () => {
    const f = await deployEscrow();
    await f.token.write.mint([f.payer.account.address, 2n ** 96n]);
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.open([cfg, 2n ** 96n], { account: f.payer.account }),
      f.escrow,
      "AmountOverflow",
      [MAX_UINT96],
    );
    await f.networkHelpers.setBalance(f.payer.account.address, 2n ** 100n);
    const eth = channelConfig(f.payer.account.address, f.payee.account.address);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.open([eth, 2n ** 96n], { account: f.payer.account, value: 2n ** 96n }),
      f.escrow,
      "AmountOverflow",
      [MAX_UINT96],
    );
  });

  it("accepts a deposit of exactly uint96 max, rejects a top-up past it with AmountOverflow, and pays it all out", async () => {
    const f = await deployEscrow();
    await f.token.write.mint([f.payer.account.address, MAX_UINT96]);
    const ch = await openChannel(f, MAX_UINT96, { token: f.token.address });
    expect((await f.escrow.read.getChannel([ch.id])).deposit).to.equal(MAX_UINT96);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.topUp([ch.cfg, 1n], { account: f.payer.account }),
      f.escrow,
      "AmountOverflow",
      [MAX_UINT96],
    );
    await f.viem.assertions.emitWithArgs(
      f.escrow.write.claim([ch.cfg, maxUint256, await ch.sign(maxUint256)], { account: f.payee.account }),
      f.escrow,
      "Claimed",
      [ch.id, f.payee.account.address, MAX_UINT96, MAX_UINT96],
    );
    expect(await f.token.read.balanceOf([f.payee.account.address])).to.equal(MAX_UINT96);
  });

  it("caps vouchers at uint256 max or above 2^96 to the deposit instead of overflowing or truncating", async () => {
    const f = await deployEscrow();
    const ch = await openChannel(f, 1000n);
    // uint96(2^96 + 5) would be 5: a truncating downcast would pay 5 here, and more later.
    await f.viem.assertions.emitWithArgs(
      f.escrow.write.claim([ch.cfg, 2n ** 96n + 5n, await ch.sign(2n ** 96n + 5n)], { account: f.payee.account }),
      f.escrow,
      "Claimed",
      [ch.id, f.payee.account.address, 1000n, 1000n],
    );
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.claim([ch.cfg, maxUint256, await ch.sign(maxUint256)], { account: f.payee.account }),
      f.escrow,
      "NothingToClaim",
      [ch.id],
    );
    await f.viem.assertions.balancesHaveChanged(
      f.escrow.write.close([ch.cfg, maxUint256, await ch.sign(maxUint256)], { account: f.payee.account }),
      [{ address: f.escrow.address, amount: 0n }],
    );
  });

  it("rejects an ETH value that differs from the amount, and ETH sent along an ERC-20 deposit, with WrongValue", async () => {
    const f = await deployEscrow();
    const eth = channelConfig(f.payer.account.address, f.payee.account.address);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.open([eth, 100n], { account: f.payer.account, value: 99n }),
      f.escrow,
      "WrongValue",
      [100n, 99n],
    );
    const erc20 = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.open([erc20, 100n], { account: f.payer.account, value: 1n }),
      f.escrow,
      "WrongValue",
      [0n, 1n],
    );
    const ch = await openChannel(f, 100n);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.topUp([ch.cfg, 100n], { account: f.payer.account, value: 101n }),
      f.escrow,
      "WrongValue",
      [100n, 101n],
    );
  });

  it("rejects a channel without a payee, and a permit open for native ETH, with ZeroAddress", async () => {
    const f = await deployEscrow();
    const noPayee = channelConfig(f.payer.account.address, zeroAddress);
    await f.viem.assertions.revertWithCustomError(
      f.escrow.write.open([noPayee, 1n], { account: f.payer.account, value: 1n }),
      f.escrow,
      "ZeroAddress",
    );
    const eth = channelConfig(f.payer.account.address, f.payee.account.address);
    await f.viem.assertions.revertWithCustomError(
      f.escrow.write.openWithPermit([eth, 1n, 0n, 27, `0x${"11".repeat(32)}`, `0x${"22".repeat(32)}`], { account: f.payer.account }),
      f.escrow,
      "ZeroAddress",
    );
    expect((await f.escrow.read.getChannel([channelId(noPayee, f.location)])).deposit).to.equal(0n);
  });

  it("handles the longest withdrawal delay (uint32 max) without overflowing the deadline", async () => {
    const f = await deployEscrow();
    const ch = await openChannel(f, 1000n, { withdrawDelay: 2 ** 32 - 1 });
    await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
    const { timestamp } = await f.publicClient.getBlock();
    expect((await f.escrow.read.getChannel([ch.id])).withdrawReadyAt).to.equal(timestamp + 2n ** 32n - 1n);
    await f.escrow.write.claim([ch.cfg, 10n, await ch.sign(10n)], { account: f.payee.account });
  });
});
