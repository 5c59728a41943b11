// Funding a channel: open with ETH or an ERC-20 allowance, open with an EIP-2612 permit, top up.
import { expect } from "chai";
import { getAddress, maxUint256, parseSignature, type Hex } from "viem";
import { channelConfig, deployEscrow, openChannel, sessionKey, type EscrowFixture } from "../helpers/escrow.js";
import { channelId, type ChannelConfig } from "../../src/protocol/Channel.js";
import { signVoucher } from "../../src/protocol/Voucher.js";

const DEPOSIT = 1_000_000n;

async function signPermit(f: EscrowFixture, value: bigint, deadline = maxUint256) {
  const nonce = await f.token.read.nonces([f.payer.account.address]);
  const signature = await f.payer.signTypedData({
    domain: { name: "Test USD", version: "1", chainId: f.location.chainId, verifyingContract: f.token.address },
    types: {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    primaryType: "Permit",
    message: { owner: f.payer.account.address, spender: f.escrow.address, value, nonce, deadline },
  });
  const { v, r, s } = parseSignature(signature);
  return { deadline, v: Number(v), r, s };
}

function openedArgs(id: Hex, cfg: ChannelConfig, deposit: bigint) {
  return [id, cfg.payer, cfg.payee, cfg.token, cfg.signer, cfg.withdrawDelay, cfg.salt, deposit] as const;
}

describe("PaychanEscrow opening and funding", () => {
  it("opens an ETH channel, emits ChannelOpened with its terms, and a TypeScript-signed voucher claims on it", async () => {
    const f = await deployEscrow();
    const key = sessionKey();
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { signer: key.address });
    const id = channelId(cfg, f.location);
    expect(await f.escrow.read.getChannel([id])).to.deep.equal({ deposit: 0n, claimed: 0n, withdrawReadyAt: 0n });
    const { result } = await f.escrow.simulate.open([cfg, DEPOSIT], { account: f.payer.account.address, value: DEPOSIT });
    expect(result).to.equal(id);

    const hash = await f.escrow.write.open([cfg, DEPOSIT], { account: f.payer.account, value: DEPOSIT });
    await f.viem.assertions.emitWithArgs(hash, f.escrow, "ChannelOpened", [...openedArgs(id, cfg, DEPOSIT)]);
    await f.viem.assertions.balancesHaveChanged(hash, [
      { address: f.payer.account.address, amount: -DEPOSIT },
      { address: f.escrow.address, amount: DEPOSIT },
    ]);
    expect(await f.escrow.read.getChannel([id])).to.deep.equal({ deposit: DEPOSIT, claimed: 0n, withdrawReadyAt: 0n });

    const voucher = await signVoucher(key, { channelId: id, cumulativeAmount: 1000n }, f.location);
    await f.viem.assertions.balancesHaveChanged(
      f.escrow.write.claim([cfg, voucher.cumulativeAmount, voucher.signature], { account: f.payee.account }),
      [{ address: f.escrow.address, amount: -1000n }],
    );
  });

  it("opens an ERC-20 channel by pulling the payer's allowance", async () => {
    const f = await deployEscrow();
    const ch = await openChannel(f, DEPOSIT, { token: f.token.address });
    await f.viem.assertions.emitWithArgs(ch.hash, f.escrow, "ChannelOpened", [...openedArgs(ch.id, ch.cfg, DEPOSIT)]);
    expect(await f.token.read.balanceOf([f.escrow.address])).to.equal(DEPOSIT);
  });

  it("tops up an open channel and emits Deposited with the new total", async () => {
    const f = await deployEscrow();
    const eth = await openChannel(f, DEPOSIT);
    await f.viem.assertions.emitWithArgs(
      f.escrow.write.topUp([eth.cfg, 500n], { account: f.payer.account, value: 500n }),
      f.escrow,
      "Deposited",
      [eth.id, 500n, DEPOSIT + 500n],
    );
    const erc20 = await openChannel(f, DEPOSIT, { token: f.token.address });
    await f.viem.assertions.emitWithArgs(
      f.escrow.write.topUp([erc20.cfg, 700n], { account: f.payer.account }),
      f.escrow,
      "Deposited",
      [erc20.id, 700n, DEPOSIT + 700n],
    );
    expect((await f.escrow.read.getChannel([erc20.id])).deposit).to.equal(DEPOSIT + 700n);
  });

  it("opens an ERC-20 channel in one transaction with an EIP-2612 permit", async () => {
    const f = await deployEscrow();
    await f.token.write.approve([f.escrow.address, 0n], { account: f.payer.account });
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    const id = channelId(cfg, f.location);
    const { deadline, v, r, s } = await signPermit(f, DEPOSIT);

    const hash = await f.escrow.write.openWithPermit([cfg, DEPOSIT, deadline, v, r, s], { account: f.payer.account });
    await f.viem.assertions.emitWithArgs(hash, f.escrow, "ChannelOpened", [...openedArgs(id, cfg, DEPOSIT)]);
    expect(await f.token.read.balanceOf([f.escrow.address])).to.equal(DEPOSIT);
    expect(await f.token.read.allowance([f.payer.account.address, f.escrow.address])).to.equal(0n);
    expect(await f.token.read.nonces([f.payer.account.address])).to.equal(1n);
  });

  it("still opens with a permit that a front-runner already submitted to the token", async () => {
    const f = await deployEscrow();
    await f.token.write.approve([f.escrow.address, 0n], { account: f.payer.account });
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    const { deadline, v, r, s } = await signPermit(f, DEPOSIT);
    await f.token.write.permit([f.payer.account.address, f.escrow.address, DEPOSIT, deadline, v, r, s], {
      account: f.stranger.account,
    });

    await f.escrow.write.openWithPermit([cfg, DEPOSIT, deadline, v, r, s], { account: f.payer.account });
    expect((await f.escrow.read.getChannel([channelId(cfg, f.location)])).deposit).to.equal(DEPOSIT);
  });

  it("reverts with the token's allowance error when the permit is invalid and no allowance exists", async () => {
    const f = await deployEscrow();
    await f.token.write.approve([f.escrow.address, 0n], { account: f.payer.account });
    const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { token: f.token.address });
    const { deadline, v, r, s } = await signPermit(f, DEPOSIT - 1n);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.openWithPermit([cfg, DEPOSIT, deadline, v, r, s], { account: f.payer.account }),
      f.token,
      "ERC20InsufficientAllowance",
      [getAddress(f.escrow.address), 0n, DEPOSIT],
    );
    // A stranger cannot use the payer's permit to open a channel in the payer's name either.
    const valid = await signPermit(f, DEPOSIT);
    await f.viem.assertions.revertWithCustomErrorWithArgs(
      f.escrow.write.openWithPermit([cfg, DEPOSIT, valid.deadline, valid.v, valid.r, valid.s], { account: f.stranger.account }),
      f.escrow,
      "NotPayer",
      [f.stranger.account.address],
    );
  });
});
