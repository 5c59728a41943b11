// Counterparties the escrow does not control: smart-contract wallets (honest or hostile), tokens
// that charge fees, return nothing, return false, or call back into the escrow.
import { expect } from "chai";
import {
  createWalletClient,
  custom,
  encodeErrorResult,
  encodeFunctionData,
  keccak256,
  maxUint256,
  numberToHex,
  parseEventLogs,
  toHex,
  zeroAddress,
  type Address,
  type Hex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { batchClaimOf } from "../../src/chain/SettlementWorker.js";
import { channelConfig, deployEscrow, openChannel, sessionKey, type EscrowFixture } from "../helpers/escrow.js";
import { channelId, escrowDomain, type ChannelConfig } from "../../src/protocol/Channel.js";
import { signVoucher, voucherTypes } from "../../src/protocol/Voucher.js";

const DEPOSIT = 1_000_000n;
const Mode = { Honest: 0, Revert: 1, BurnGas: 2, ReturnBomb: 3, ValidOnlyInCalls: 4 } as const;
const Skip = { InvalidSignature: 4 } as const;

/** A ContractWallet owned by a funded account, holding ETH, with a helper to act through it. */
async function contractWallet(f: EscrowFixture, mode: number = Mode.Honest) {
  const owner = (await f.viem.getWalletClients())[5]!;
  const wallet = await f.viem.deployContract("ContractWallet", [owner.account.address]);
  await owner.sendTransaction({ to: wallet.address, value: 10n * DEPOSIT });
  const execute = (data: Hex, value = 0n) =>
    wallet.write.execute([f.escrow.address, value, data], { account: owner.account });
  const setMode = (m: number) => wallet.write.setMode([m], { account: owner.account });
  if (mode !== Mode.Honest) await setMode(mode);
  return { wallet, owner, execute, setMode };
}

/** Opens an ETH channel paid by `wallet`, and signs vouchers as its owner (valid only through ERC-1271). */
async function openFromWallet(f: EscrowFixture, w: Awaited<ReturnType<typeof contractWallet>>, overrides: Partial<ChannelConfig> = {}) {
  const cfg = channelConfig(w.wallet.address, f.payee.account.address, overrides);
  await w.execute(encodeFunctionData({ abi: f.escrow.abi, functionName: "open", args: [cfg, DEPOSIT] }), DEPOSIT);
  const id = channelId(cfg, f.location);
  const sign = (cumulativeAmount: bigint) =>
    w.owner.signTypedData({
      domain: escrowDomain(f.location),
      types: voucherTypes,
      primaryType: "Voucher",
      message: { channelId: id, cumulativeAmount },
    });
  return { cfg, id, sign };
}

function guardError(f: EscrowFixture) {
  return encodeErrorResult({ abi: f.escrow.abi, errorName: "ReentrancyGuardReentrantCall" });
}

/** What every channel still owes, as the contract itself reports it; the escrow must hold at least this. */
async function owed(f: EscrowFixture, ids: Hex[]) {
  let total = 0n;
  for (const id of ids) {
    const { deposit, claimed } = await f.escrow.read.getChannel([id]);
    total += deposit - claimed;
  }
  return total;
}

describe("PaychanEscrow against hostile counterparties", () => {
  describe("ERC-1271 payer wallets", () => {
    it("accepts a voucher an ERC-1271 payer wallet validates when the channel names no signer", async () => {
      const f = await deployEscrow();
      const w = await contractWallet(f);
      const ch = await openFromWallet(f, w);
      const voucher = await ch.sign(300n);
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 300n, voucher])).to.equal(true);
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.claim([ch.cfg, 300n, voucher], { account: f.payee.account }),
        [{ address: f.payee.account.address, amount: 300n }],
      );
    });

    it("rejects a single claim cleanly with InvalidSignature when the payer wallet reverts or burns gas", async () => {
      const f = await deployEscrow();
      for (const mode of [Mode.Revert, Mode.BurnGas]) {
        const w = await contractWallet(f);
        const ch = await openFromWallet(f, w);
        const voucher = await ch.sign(300n);
        await w.setMode(mode);
        await f.viem.assertions.revertWithCustomErrorWithArgs(
          f.escrow.write.claim([ch.cfg, 300n, voucher], { account: f.payee.account }),
          f.escrow,
          "InvalidSignature",
          [ch.id],
        );
      }
    });

    it("skips a reverting or gas-burning wallet's entry in a batch and pays the other channels", async () => {
      const f = await deployEscrow();
      const reverting = await contractWallet(f);
      const burning = await contractWallet(f);
      const honestWallet = await contractWallet(f);
      const key = sessionKey();
      const first = await openChannel(f, DEPOSIT, {}, key);
      const viaReverting = await openFromWallet(f, reverting);
      const viaBurning = await openFromWallet(f, burning);
      const viaHonest = await openFromWallet(f, honestWallet);
      const last = await openChannel(f, DEPOSIT, {}, key);
      const claims = [
        batchClaimOf(first.cfg, { cumulativeAmount: 100n, signature: await first.sign(100n) }),
        batchClaimOf(viaReverting.cfg, { cumulativeAmount: 200n, signature: await viaReverting.sign(200n) }),
        batchClaimOf(viaBurning.cfg, { cumulativeAmount: 300n, signature: await viaBurning.sign(300n) }),
        batchClaimOf(viaHonest.cfg, { cumulativeAmount: 400n, signature: await viaHonest.sign(400n) }),
        batchClaimOf(last.cfg, { cumulativeAmount: 500n, signature: await last.sign(500n) }),
      ];
      await reverting.setMode(Mode.Revert);
      await burning.setMode(Mode.BurnGas);

      const hash = await f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, claims], { account: f.payee.account });
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.payee.account.address, amount: 1000n }]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [viaReverting.id, Skip.InvalidSignature]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [viaBurning.id, Skip.InvalidSignature]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "Claimed", [viaHonest.id, f.payee.account.address, 400n, 400n]);
      // The burner costs the batch its capped ERC-1271 allowance, not the whole block.
      const { gasUsed } = await f.publicClient.waitForTransactionReceipt({ hash });
      expect(gasUsed < 400_000n).to.equal(true);
    });

    it("credits a close's refund when the payer wallet rejects ETH or burns gas, and withdrawCredit pays it out later", async () => {
      const f = await deployEscrow();
      for (const mode of [Mode.Revert, Mode.BurnGas]) {
        const w = await contractWallet(f);
        const key = sessionKey();
        const ch = await openFromWallet(f, w, { signer: key.address });
        // A session key signs, so the close's voucher does not depend on the hostile wallet.
        const { signature: voucher } = await signVoucher(key, { channelId: ch.id, cumulativeAmount: 100n }, f.location);
        await w.setMode(mode);

        const close = await f.escrow.write.close([ch.cfg, 100n, voucher], { account: f.payee.account });
        await f.viem.assertions.balancesHaveChanged(close, [
          { address: f.payee.account.address, amount: 100n },
          { address: w.wallet.address, amount: 0n },
          { address: f.escrow.address, amount: -100n },
        ]);
        await f.viem.assertions.emitWithArgs(close, f.escrow, "RefundCredited", [w.wallet.address, zeroAddress, DEPOSIT - 100n]);
        await f.viem.assertions.emitWithArgs(close, f.escrow, "ChannelClosed", [ch.id, 100n, DEPOSIT - 100n]);
        expect(await f.escrow.read.credits([w.wallet.address, zeroAddress])).to.equal(DEPOSIT - 100n);

        await w.setMode(Mode.Honest);
        const withdraw = await w.execute(encodeFunctionData({ abi: f.escrow.abi, functionName: "withdrawCredit", args: [zeroAddress] }));
        await f.viem.assertions.balancesHaveChanged(withdraw, [{ address: w.wallet.address, amount: DEPOSIT - 100n }]);
        await f.viem.assertions.emitWithArgs(withdraw, f.escrow, "CreditWithdrawn", [w.wallet.address, zeroAddress, DEPOSIT - 100n]);
        expect(await f.escrow.read.credits([w.wallet.address, zeroAddress])).to.equal(0n);
        await f.viem.assertions.revertWithCustomError(
          w.execute(encodeFunctionData({ abi: f.escrow.abi, functionName: "withdrawCredit", args: [zeroAddress] })),
          f.escrow,
          "NoCredit",
        );
      }
    });

    it("lets the payer withdraw although the payee is a wallet that reverts on everything", async () => {
      const f = await deployEscrow();
      const w = await contractWallet(f, Mode.Revert);
      const ch = await openChannel(f, DEPOSIT, { payee: w.wallet.address });
      await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
      await f.networkHelpers.time.increase(ch.cfg.withdrawDelay);
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }),
        [{ address: f.payer.account.address, amount: DEPOSIT }],
      );
    });
  });

  // The escrow decides an ERC-1271 voucher's validity when it is claimed, not when it was served. These
  // tests pin down how a payer revokes vouchers it was served for, and that an ECDSA voucher cannot be
  // revoked: the rule a gateway must follow (docs/PROTOCOL.md, "Who signs vouchers").
  describe("ERC-1271 validity is decided at claim time, so a wallet can revoke its vouchers", () => {
    async function withdrawAll(f: EscrowFixture, cfg: ChannelConfig, act: (data: Hex) => Promise<Hex>) {
      await act(encodeFunctionData({ abi: f.escrow.abi, functionName: "requestWithdrawal", args: [cfg] }));
      await f.networkHelpers.time.increase(cfg.withdrawDelay);
      return act(encodeFunctionData({ abi: f.escrow.abi, functionName: "finalizeWithdrawal", args: [cfg] }));
    }

    it("lets a signer = 0 wallet payer void a served voucher by replacing its owner, then take the whole deposit back", async () => {
      const f = await deployEscrow();
      const w = await contractWallet(f);
      const ch = await openFromWallet(f, w);
      const voucher = await ch.sign(300n);
      // What a gateway sees when it serves the request: the escrow calls the voucher valid.
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 300n, voucher])).to.equal(true);

      const newOwner = (await f.viem.getWalletClients())[6]!;
      await w.wallet.write.setOwner([newOwner.account.address], { account: w.owner.account });
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 300n, voucher])).to.equal(false);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 300n, voucher], { account: f.payee.account }),
        f.escrow,
        "InvalidSignature",
        [ch.id],
      );
      const asNewOwner = (data: Hex) => w.wallet.write.execute([f.escrow.address, 0n, data], { account: newOwner.account });
      await f.viem.assertions.balancesHaveChanged(withdrawAll(f, ch.cfg, asNewOwner), [{ address: w.wallet.address, amount: DEPOSIT }]);
    });

    it("lets a wallet that calls vouchers valid only under eth_call pass every check a gateway can make, yet fail every mined claim", async () => {
      const f = await deployEscrow();
      const w = await contractWallet(f, Mode.ValidOnlyInCalls);
      const ch = await openFromWallet(f, w);
      const voucher = await ch.sign(300n);
      const entry = batchClaimOf(ch.cfg, { cumulativeAmount: 300n, signature: voucher });
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 300n, voucher])).to.equal(true);
      const { result } = await f.escrow.simulate.claimBatch([f.payee.account.address, zeroAddress, [entry]], {
        account: f.payee.account.address,
      });
      expect(result).to.equal(300n);

      const hash = await f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, [entry]], { account: f.payee.account });
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [ch.id, Skip.InvalidSignature]);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 300n, voucher], { account: f.payee.account, gas: 500_000n }),
        f.escrow,
        "InvalidSignature",
        [ch.id],
      );
      await f.viem.assertions.balancesHaveChanged(withdrawAll(f, ch.cfg, w.execute), [{ address: w.wallet.address, amount: DEPOSIT }]);
    });

    it("applies ERC-1271 to a contract named as the channel's signer too, which can revoke the same way", async () => {
      const f = await deployEscrow();
      const signerWallet = await contractWallet(f);
      const ch = await openChannel(f, DEPOSIT, { signer: signerWallet.wallet.address });
      const voucher = await signerWallet.owner.signTypedData({
        domain: escrowDomain(f.location),
        types: voucherTypes,
        primaryType: "Voucher",
        message: { channelId: ch.id, cumulativeAmount: 300n },
      });
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 300n, voucher])).to.equal(true);
      await signerWallet.wallet.write.setOwner([f.stranger.account.address], { account: signerWallet.owner.account });
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 300n, voucher], { account: f.payee.account }),
        f.escrow,
        "InvalidSignature",
        [ch.id],
      );
    });

    it("keeps a session-key (ECDSA) voucher claimable whatever the wallet payer does after it was served", async () => {
      const f = await deployEscrow();
      const w = await contractWallet(f);
      const key = sessionKey();
      const ch = await openFromWallet(f, w, { signer: key.address });
      const { signature } = await signVoucher(key, { channelId: ch.id, cumulativeAmount: 300n }, f.location);
      await w.wallet.write.setOwner([f.stranger.account.address], { account: w.owner.account });
      await w.wallet.write.setMode([Mode.ValidOnlyInCalls], { account: f.stranger.account });
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.claim([ch.cfg, 300n, signature], { account: f.payee.account }),
        [{ address: f.payee.account.address, amount: 300n }],
      );
    });

    it("keeps a voucher the payer's own key signed valid when the payer is an EIP-7702 account whose code calls it invalid", async () => {
      const f = await deployEscrow();
      const eoa = privateKeyToAccount(keccak256(toHex("eip-7702 payer")));
      await f.networkHelpers.setBalance(eoa.address, 10n ** 18n);
      const client = createWalletClient({ account: eoa, transport: custom(f.connection.provider) });
      const implementation = await f.viem.deployContract("ContractWallet", [zeroAddress]);
      const authorization = await client.signAuthorization({
        contractAddress: implementation.address,
        executor: "self",
        chainId: f.location.chainId,
        nonce: (await f.publicClient.getTransactionCount({ address: eoa.address })) + 1,
      });
      await client.sendTransaction({ to: eoa.address, authorizationList: [authorization], chain: null });
      // The delegated code answers ERC-1271 with "invalid" in every mined transaction (mode, packed after owner).
      await f.networkHelpers.setStorageAt(eoa.address, 0n, numberToHex(BigInt(Mode.ValidOnlyInCalls) << 160n, { size: 32 }));
      expect((await f.publicClient.getCode({ address: eoa.address }))?.startsWith("0xef0100")).to.equal(true);

      const cfg = channelConfig(eoa.address, f.payee.account.address);
      await client.writeContract({ address: f.escrow.address, abi: f.escrow.abi, functionName: "open", args: [cfg, DEPOSIT], value: DEPOSIT, chain: null });
      const voucher = await eoa.signTypedData({
        domain: escrowDomain(f.location),
        types: voucherTypes,
        primaryType: "Voucher",
        message: { channelId: channelId(cfg, f.location), cumulativeAmount: 300n },
      });
      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.claim([cfg, 300n, voucher], { account: f.payee.account }),
        [{ address: f.payee.account.address, amount: 300n }],
      );
    });
  });

  describe("refunds to a hostile payer", () => {
    it("charges a close no more than the refund's gas cap when the payer answers the refund with ~180 KB of return data", async () => {
      const f = await deployEscrow();
      const closeGas = async (mode: number) => {
        const w = await contractWallet(f);
        const ch = await openFromWallet(f, w, { signer: sessionKey().address });
        await w.setMode(mode);
        const hash = await f.escrow.write.close([ch.cfg, 0n, "0x"], { account: f.payee.account });
        await f.viem.assertions.balancesHaveChanged(hash, [{ address: w.wallet.address, amount: DEPOSIT }]);
        return (await f.publicClient.waitForTransactionReceipt({ hash })).gasUsed;
      };
      const honest = await closeGas(Mode.Honest);
      const bomb = await closeGas(Mode.ReturnBomb);
      // The payer may spend its whole capped allowance (here on memory for its answer); the escrow must
      // not add the cost of copying that answer into its own memory on top.
      const cap = await f.escrow.read.REFUND_GAS_LIMIT();
      expect(bomb - honest <= cap, `close cost ${honest} gas, ${bomb} against a return bomb; the cap is ${cap}`).to.equal(true);
    });
  });

  describe("non-standard tokens", () => {
    it("credits a fee-on-transfer deposit with what arrived, so the escrow never owes more than it holds", async () => {
      const f = await deployEscrow();
      const fee = await f.viem.deployContract("FeeOnTransferToken");
      await fee.write.mint([f.payer.account.address, 10n * DEPOSIT]);
      await fee.write.approve([f.escrow.address, maxUint256], { account: f.payer.account });
      const held = () => fee.read.balanceOf([f.escrow.address]);

      const a = await openChannel(f, DEPOSIT, { token: fee.address });
      await f.viem.assertions.emitWithArgs(a.hash, f.escrow, "ChannelOpened", [
        a.id, f.payer.account.address, f.payee.account.address, fee.address, a.cfg.signer, a.cfg.withdrawDelay, a.cfg.salt, DEPOSIT - DEPOSIT / 100n,
      ]);
      const b = await openChannel(f, DEPOSIT, { token: fee.address });
      await f.viem.assertions.emitWithArgs(
        f.escrow.write.topUp([a.cfg, 10_000n], { account: f.payer.account }),
        f.escrow,
        "Deposited",
        [a.id, 9_900n, DEPOSIT - DEPOSIT / 100n + 9_900n],
      );
      expect(await held()).to.equal(await owed(f, [a.id, b.id]));

      await f.escrow.write.claim([a.cfg, maxUint256, await a.sign(maxUint256)], { account: f.payee.account });
      expect(await held()).to.equal(await owed(f, [a.id, b.id]));
      await f.escrow.write.close([b.cfg, 5_000n, await b.sign(5_000n)], { account: f.payee.account });
      expect(await held()).to.equal(0n);
      expect(await owed(f, [a.id, b.id])).to.equal(0n);
    });

    it("works end to end with a token whose transfer functions return nothing", async () => {
      const f = await deployEscrow();
      const usdt = await f.viem.deployContract("NoReturnToken");
      await usdt.write.mint([f.payer.account.address, 10n * DEPOSIT]);
      await usdt.write.approve([f.escrow.address, maxUint256], { account: f.payer.account });
      const balance = (who: Address) => usdt.read.balanceOf([who]);

      const a = await openChannel(f, DEPOSIT, { token: usdt.address });
      const b = await openChannel(f, DEPOSIT, { token: usdt.address }, a.key);
      const c = await openChannel(f, DEPOSIT, { token: usdt.address });
      await f.escrow.write.topUp([a.cfg, 500n], { account: f.payer.account });
      await f.escrow.write.claim([a.cfg, 100n, await a.sign(100n)], { account: f.payee.account });
      await f.escrow.write.claimBatch(
        [f.payee.account.address, usdt.address, [
          batchClaimOf(a.cfg, { cumulativeAmount: 300n, signature: await a.sign(300n) }),
          batchClaimOf(b.cfg, { cumulativeAmount: 50n, signature: await b.sign(50n) }),
        ]],
        { account: f.payee.account },
      );
      await f.escrow.write.close([b.cfg, 80n, await b.sign(80n)], { account: f.payee.account });
      await f.escrow.write.requestWithdrawal([c.cfg], { account: f.payer.account });
      await f.networkHelpers.time.increase(c.cfg.withdrawDelay);
      await f.escrow.write.finalizeWithdrawal([c.cfg], { account: f.payer.account });

      expect(await balance(f.payee.account.address)).to.equal(380n);
      expect(await balance(f.escrow.address)).to.equal(DEPOSIT + 500n - 300n);
      expect(await balance(f.payer.account.address)).to.equal(10n * DEPOSIT - (DEPOSIT + 500n) - 80n);
    });

    it("reverts cleanly with SafeERC20FailedOperation when a token returns false, and credits a close's refund instead", async () => {
      const f = await deployEscrow();
      const liar = await f.viem.deployContract("FalseReturnToken");
      await liar.write.mint([f.payer.account.address, 10n * DEPOSIT]);
      await liar.write.approve([f.escrow.address, maxUint256], { account: f.payer.account });
      const failed = (attempt: Promise<Hex>) =>
        f.viem.assertions.revertWithCustomErrorWithArgs(attempt, f.escrow, "SafeERC20FailedOperation", [liar.address]);

      await liar.write.setFailing([true]);
      const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { token: liar.address });
      await failed(f.escrow.write.open([cfg, DEPOSIT], { account: f.payer.account }));
      await liar.write.setFailing([false]);
      const ch = await openChannel(f, DEPOSIT, { token: liar.address, withdrawDelay: 0 });
      await liar.write.setFailing([true]);

      await failed(f.escrow.write.claim([ch.cfg, 100n, await ch.sign(100n)], { account: f.payee.account }));
      await failed(f.escrow.write.close([ch.cfg, 100n, await ch.sign(100n)], { account: f.payee.account }));
      await f.escrow.write.requestWithdrawal([ch.cfg], { account: f.payer.account });
      await failed(f.escrow.write.finalizeWithdrawal([ch.cfg], { account: f.payer.account }));
      expect(await f.escrow.read.getChannel([ch.id])).to.deep.include({ deposit: DEPOSIT, claimed: 0n });

      // A payee-initiated close cannot be blocked by the refund leg: it is credited.
      const close = await f.escrow.write.close([ch.cfg, 0n, "0x"], { account: f.payee.account });
      await f.viem.assertions.emitWithArgs(close, f.escrow, "RefundCredited", [f.payer.account.address, liar.address, DEPOSIT]);
      await liar.write.setFailing([false]);
      await f.escrow.write.withdrawCredit([liar.address], { account: f.payer.account });
      expect(await liar.read.balanceOf([f.payer.account.address])).to.equal(10n * DEPOSIT);
    });
  });

  describe("reentrancy", () => {
    it("stops a token that re-enters during a deposit from double-crediting it (nested deposit hits the guard)", async () => {
      const f = await deployEscrow();
      const token = await f.viem.deployContract("ReentrantToken");
      await token.write.mint([f.payer.account.address, DEPOSIT]);
      await token.write.mint([token.address, DEPOSIT]);
      await token.write.approve([f.escrow.address, maxUint256], { account: f.payer.account });
      // While the payer's deposit is in flight, the token opens a channel of its own and pays into it:
      // unguarded, the outer deposit would also count the nested one's tokens as its own.
      const nested = channelConfig(token.address, f.payee.account.address, { token: token.address });
      await token.write.arm([f.escrow.address, encodeFunctionData({ abi: f.escrow.abi, functionName: "open", args: [nested, DEPOSIT] })]);

      const ch = await openChannel(f, DEPOSIT, { token: token.address });
      expect(await token.read.attempted()).to.equal(true);
      expect(await token.read.reentered()).to.equal(false);
      expect(await token.read.reentryError()).to.equal(guardError(f));
      expect((await f.escrow.read.getChannel([ch.id])).deposit).to.equal(DEPOSIT);
      expect(await token.read.balanceOf([f.escrow.address])).to.equal(DEPOSIT);
    });

    it("stops a token that re-enters during a claim from getting the claim paid twice (nested claim hits the guard)", async () => {
      const f = await deployEscrow();
      const token = await f.viem.deployContract("ReentrantToken");
      await token.write.mint([f.payer.account.address, DEPOSIT]);
      await token.write.approve([f.escrow.address, maxUint256], { account: f.payer.account });
      const ch = await openChannel(f, DEPOSIT, { token: token.address });
      const voucher = await ch.sign(400n);
      // The token is the payee's operator, so nothing but the guard stands in the nested call's way.
      await f.escrow.write.setOperator([token.address, true], { account: f.payee.account });
      await token.write.arm([f.escrow.address, encodeFunctionData({ abi: f.escrow.abi, functionName: "claim", args: [ch.cfg, 400n, voucher] })]);

      await f.escrow.write.claim([ch.cfg, 400n, voucher], { account: f.payee.account });
      expect(await token.read.reentered()).to.equal(false);
      expect(await token.read.reentryError()).to.equal(guardError(f));
      expect(await token.read.balanceOf([f.payee.account.address])).to.equal(400n);
      expect(await token.read.balanceOf([f.escrow.address])).to.equal(DEPOSIT - 400n);
    });

    it("stops an ETH payee that re-enters on receipt from getting paid twice (nested claim and close hit the guard)", async () => {
      const f = await deployEscrow();
      for (const nestedCall of ["claim", "close"] as const) {
        const payee = await f.viem.deployContract("ReentrantPayee");
        const ch = await openChannel(f, DEPOSIT, { payee: payee.address });
        const voucher = await ch.sign(400n);
        const claim = encodeFunctionData({ abi: f.escrow.abi, functionName: "claim", args: [ch.cfg, 400n, voucher] });
        await payee.write.arm([f.escrow.address, encodeFunctionData({ abi: f.escrow.abi, functionName: nestedCall, args: [ch.cfg, 400n, voucher] })]);

        const hash = await payee.write.execute([claim]);
        await f.viem.assertions.balancesHaveChanged(hash, [
          { address: payee.address, amount: 400n },
          { address: f.escrow.address, amount: -400n },
        ]);
        expect(await payee.read.reentered()).to.equal(false);
        expect(await payee.read.reentryError()).to.equal(guardError(f));
        const logs = parseEventLogs({ abi: f.escrow.abi, logs: (await f.publicClient.waitForTransactionReceipt({ hash })).logs });
        expect(logs.map((log) => log.eventName)).to.deep.equal(["Claimed"]);
      }
    });
  });
});
