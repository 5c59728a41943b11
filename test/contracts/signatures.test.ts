// A voucher signature authorizes exactly one thing: this cumulative amount, on this channel, on this
// escrow deployment, on this chain. These tests try to make one signature count anywhere else.
import { expect } from "chai";
import { secp256k1 } from "@noble/curves/secp256k1";
import {
  concat,
  encodeFunctionData,
  getAddress,
  encodeAbiParameters,
  parseAbiParameters,
  parseEventLogs,
  hashTypedData,
  keccak256,
  maxUint256,
  numberToHex,
  parseSignature,
  serializeCompactSignature,
  serializeSignature,
  signatureToCompactSignature,
  toHex,
  zeroAddress,
  type Hex,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { batchClaimOf } from "../../src/chain/SettlementWorker.js";
import { channelConfig, deployEscrow, openChannel, sessionKey, type EscrowFixture } from "../helpers/escrow.js";
import { channelId, channelTypes, escrowDomain } from "../../src/protocol/Channel.js";
import { signVoucher, voucherDigest, voucherTypes } from "../../src/protocol/Voucher.js";

const DEPOSIT = 1_000_000n;

async function expectInvalidSignature(f: EscrowFixture, claim: Promise<Hex>, id: Hex) {
  await f.viem.assertions.revertWithCustomErrorWithArgs(claim, f.escrow, "InvalidSignature", [id]);
}

function typeString(types: Record<string, readonly { name: string; type: string }[]>, primaryType: string) {
  return `${primaryType}(${types[primaryType]!.map((field) => `${field.type} ${field.name}`).join(",")})`;
}

describe("PaychanEscrow signatures", () => {
  describe("a voucher is bound to one chain and one deployment", () => {
    it("rejects a voucher signed for another chain id", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const otherChain = { ...f.location, chainId: f.location.chainId + 1 };
      const foreign = await signVoucher(ch.key, { channelId: ch.id, cumulativeAmount: 500n }, otherChain);

      await expectInvalidSignature(
        f,
        f.escrow.write.claim([ch.cfg, 500n, foreign.signature], { account: f.payee.account }),
        ch.id,
      );
      await f.escrow.write.claim([ch.cfg, 500n, await ch.sign(500n)], { account: f.payee.account });
      expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(500n);
    });

    it("rejects a voucher signed for another deployment of the escrow", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const twin = await f.viem.deployContract("PaychanEscrow");
      await twin.write.open([ch.cfg, DEPOSIT], { account: f.payer.account, value: DEPOSIT });
      const twinId = await twin.read.channelIdOf([ch.cfg]);
      expect(twinId).to.not.equal(ch.id);
      const twinLocation = { ...f.location, escrow: twin.address };

      // Signed for the first escrow, replayed on the twin holding the very same channel terms.
      const original = await ch.sign(DEPOSIT);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        twin.write.claim([ch.cfg, DEPOSIT, original], { account: f.payee.account }),
        twin,
        "InvalidSignature",
        [twinId],
      );
      // Signed under the twin's domain but naming the first escrow's channel id.
      const crossed = await signVoucher(ch.key, { channelId: ch.id, cumulativeAmount: DEPOSIT }, twinLocation);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        twin.write.claim([ch.cfg, DEPOSIT, crossed.signature], { account: f.payee.account }),
        twin,
        "InvalidSignature",
        [twinId],
      );
      const proper = await signVoucher(ch.key, { channelId: twinId, cumulativeAmount: DEPOSIT }, twinLocation);
      await twin.write.claim([ch.cfg, DEPOSIT, proper.signature], { account: f.payee.account });
      expect((await twin.read.getChannel([twinId])).claimed).to.equal(DEPOSIT);
      expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(0n);
    });
  });

  describe("a voucher is bound to one channel", () => {
    it("rejects a voucher for another channel between the same parties and signer", async () => {
      const f = await deployEscrow();
      const a = await openChannel(f, DEPOSIT);
      const b = await openChannel(f, DEPOSIT, {}, a.key);

      await expectInvalidSignature(
        f,
        f.escrow.write.claim([b.cfg, 100n, await a.sign(100n)], { account: f.payee.account }),
        b.id,
      );
      await f.escrow.write.claim([a.cfg, 100n, await a.sign(100n)], { account: f.payee.account });
      expect((await f.escrow.read.getChannel([a.id])).claimed).to.equal(100n);
    });

    it("rejects a voucher on the channel with payer and payee swapped", async () => {
      const f = await deployEscrow();
      const key = sessionKey();
      const forward = channelConfig(f.payer.account.address, f.payee.account.address, { signer: key.address });
      const backward = { ...forward, payer: forward.payee, payee: forward.payer };
      await f.escrow.write.open([forward, DEPOSIT], { account: f.payer.account, value: DEPOSIT });
      await f.escrow.write.open([backward, DEPOSIT], { account: f.payee.account, value: DEPOSIT });
      const forwardId = channelId(forward, f.location);
      const backwardId = channelId(backward, f.location);
      const voucher = await signVoucher(key, { channelId: forwardId, cumulativeAmount: 100n }, f.location);

      // The former payer is the payee of the swapped channel and tries the forward voucher there.
      await expectInvalidSignature(
        f,
        f.escrow.write.claim([backward, 100n, voucher.signature], { account: f.payer.account }),
        backwardId,
      );
    });

    it("rejects a voucher across two channels opened in the same block", async () => {
      const f = await deployEscrow();
      const key = sessionKey();
      await f.testClient.setAutomine(false);
      try {
        const a = await openChannel(f, DEPOSIT, {}, key);
        const b = await openChannel(f, DEPOSIT, {}, key);
        await f.networkHelpers.mine();
        const [ra, rb] = await Promise.all([a.hash, b.hash].map((hash) => f.publicClient.getTransactionReceipt({ hash })));
        expect(ra!.status).to.equal("success");
        expect(rb!.status).to.equal("success");
        expect(ra!.blockNumber).to.equal(rb!.blockNumber);
        await f.testClient.setAutomine(true);

        await expectInvalidSignature(
          f,
          f.escrow.write.claim([b.cfg, 100n, await a.sign(100n)], { account: f.payee.account }),
          b.id,
        );
        await f.escrow.write.claim([a.cfg, 100n, await a.sign(100n)], { account: f.payee.account });
      } finally {
        await f.testClient.setAutomine(true);
      }
    });

    it("accepts only the first of two identical opens in the same block", async () => {
      const f = await deployEscrow();
      const cfg = channelConfig(f.payer.account.address, f.payee.account.address);
      await f.testClient.setAutomine(false);
      try {
        // Explicit gas, so the second transaction is mined rather than rejected by estimation.
        const first = await f.escrow.write.open([cfg, 1n], { account: f.payer.account, value: 1n, gas: 300_000n });
        const second = await f.escrow.write.open([cfg, 2n], { account: f.payer.account, value: 2n, gas: 300_000n });
        await f.networkHelpers.mine();
        const r1 = await f.publicClient.getTransactionReceipt({ hash: first });
        const r2 = await f.publicClient.getTransactionReceipt({ hash: second });
        expect(r1.blockNumber).to.equal(r2.blockNumber);
        expect([r1.status, r2.status]).to.deep.equal(["success", "reverted"]);
      } finally {
        await f.testClient.setAutomine(true);
      }
      expect((await f.escrow.read.getChannel([channelId(cfg, f.location)])).deposit).to.equal(1n);
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.open([cfg, 2n], { account: f.payer.account, value: 2n }),
        f.escrow,
        "ChannelExists",
        [channelId(cfg, f.location)],
      );
    });
  });

  describe("each signed action has its own EIP-712 type", () => {
    it("uses Voucher and Channel type strings in TypeScript equal to the contract's type hashes", async () => {
      const f = await deployEscrow();
      expect(typeString(voucherTypes, "Voucher")).to.equal("Voucher(bytes32 channelId,uint256 cumulativeAmount)");
      expect(keccak256(toHex(typeString(voucherTypes, "Voucher")))).to.equal(await f.escrow.read.VOUCHER_TYPEHASH());
      expect(keccak256(toHex(typeString(channelTypes, "Channel")))).to.equal(await f.escrow.read.CHANNEL_TYPEHASH());
    });

    it("rejects an EIP-2612 permit signature submitted as a voucher", async () => {
      const f = await deployEscrow();
      // The payer signs for itself (signer = 0), as it also signs permits with the same key.
      const ch = await openChannel(f, DEPOSIT, { signer: zeroAddress });
      const permitTypes = {
        Permit: [
          { name: "owner", type: "address" },
          { name: "spender", type: "address" },
          { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" },
          { name: "deadline", type: "uint256" },
        ],
      } as const;
      const permit = { owner: f.payer.account.address, spender: f.escrow.address, value: DEPOSIT, nonce: 0n, deadline: maxUint256 };
      const tokenDomain = { name: "Test USD", version: "1", chainId: f.location.chainId, verifyingContract: f.token.address };
      for (const domain of [tokenDomain, escrowDomain(f.location)]) {
        const signature = await f.payer.signTypedData({ domain, types: permitTypes, primaryType: "Permit", message: permit });
        await expectInvalidSignature(
          f,
          f.escrow.write.claim([ch.cfg, DEPOSIT, signature], { account: f.payee.account }),
          ch.id,
        );
      }
      await f.escrow.write.claim([ch.cfg, DEPOSIT, await ch.sign(DEPOSIT)], { account: f.payee.account });
      expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(DEPOSIT);
    });

    it("rejects a signature over the channel's own EIP-712 digest submitted as a voucher", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      // The channel id is the EIP-712 digest of the Channel struct under the escrow's domain.
      expect(ch.id).to.equal(
        hashTypedData({ domain: escrowDomain(f.location), types: channelTypes, primaryType: "Channel", message: ch.cfg }),
      );
      const overChannel = await ch.key.sign({ hash: ch.id });
      await expectInvalidSignature(
        f,
        f.escrow.write.claim([ch.cfg, DEPOSIT, overChannel], { account: f.payee.account }),
        ch.id,
      );
    });

    it("rejects an eth_sign personal message over the voucher digest, while the raw digest signature is accepted", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const digest = voucherDigest({ channelId: ch.id, cumulativeAmount: 100n }, f.location);
      const personal = await ch.key.signMessage({ message: { raw: digest } });
      await expectInvalidSignature(
        f,
        f.escrow.write.claim([ch.cfg, 100n, personal], { account: f.payee.account }),
        ch.id,
      );
      await f.escrow.write.claim([ch.cfg, 100n, await ch.key.sign({ hash: digest })], { account: f.payee.account });
      expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(100n);
    });
  });

  describe("signatures are not malleable and nothing is keyed on their bytes", () => {
    const n = secp256k1.CURVE.n;

    it("rejects the high-s twin of a valid voucher signature, which ecrecover alone would accept", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const signature = parseSignature(await ch.sign(100n));
      const twin = serializeSignature({
        r: signature.r,
        s: numberToHex(n - BigInt(signature.s), { size: 32 }),
        yParity: 1 - signature.yParity!,
      });
      const digest = voucherDigest({ channelId: ch.id, cumulativeAmount: 100n }, f.location);
      const { r, s, v } = parseSignature(twin);
      const precompile = await f.publicClient.call({
        to: "0x0000000000000000000000000000000000000001",
        data: concat([digest, numberToHex(v!, { size: 32 }), r, s]),
      });
      expect(precompile.data).to.equal(numberToHex(BigInt(ch.key.address), { size: 32 }));

      await expectInvalidSignature(f, f.escrow.write.claim([ch.cfg, 100n, twin], { account: f.payee.account }), ch.id);
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 100n, twin])).to.equal(false);
    });

    it("rejects the 64-byte EIP-2098 compact form of a valid voucher signature in a single claim", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const compact = serializeCompactSignature(signatureToCompactSignature(parseSignature(await ch.sign(100n))));
      expect((compact.length - 2) / 2).to.equal(64);
      await expectInvalidSignature(f, f.escrow.write.claim([ch.cfg, 100n, compact], { account: f.payee.account }), ch.id);
    });

    it("rejects a valid signature with trailing bytes appended", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const padded = concat([await ch.sign(100n), "0x00"]);
      await expectInvalidSignature(f, f.escrow.write.claim([ch.cfg, 100n, padded], { account: f.payee.account }), ch.id);
    });

    it("pays once when two different valid signatures exist for the same voucher", async () => {
      const f = await deployEscrow();
      const privateKey = keccak256(toHex("two-signatures"));
      const ch = await openChannel(f, DEPOSIT, { signer: privateKeyToAccount(privateKey).address });
      const digest = voucherDigest({ channelId: ch.id, cumulativeAmount: 700n }, f.location);
      const [first, second] = [1, 2].map((seed) => {
        const sig = secp256k1.sign(digest.slice(2), privateKey.slice(2), { lowS: true, extraEntropy: toHex(seed, { size: 32 }).slice(2) });
        return serializeSignature({ r: numberToHex(sig.r, { size: 32 }), s: numberToHex(sig.s, { size: 32 }), yParity: sig.recovery });
      }) as [Hex, Hex];
      expect(first).to.not.equal(second);
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 700n, first])).to.equal(true);
      expect(await f.escrow.read.isValidVoucher([ch.cfg, 700n, second])).to.equal(true);

      await f.viem.assertions.balancesHaveChanged(
        f.escrow.write.claim([ch.cfg, 700n, first], { account: f.payee.account }),
        [{ address: f.escrow.address, amount: -700n }],
      );
      await f.viem.assertions.revertWithCustomErrorWithArgs(
        f.escrow.write.claim([ch.cfg, 700n, second], { account: f.payee.account }),
        f.escrow,
        "NothingToClaim",
        [ch.id],
      );
      expect((await f.escrow.read.getChannel([ch.id])).claimed).to.equal(700n);
    });

    // A batch entry carries its signature in EIP-2098 compact form (r, vs): vs is the y-parity bit above
    // a low s. The high-s twin's s is above 2^255, so its top bit is lost to the parity bit whichever
    // parity is set; a decoder that kept vs's top bit in s could recover the signer from the twin.
    it("skips a batch entry carrying the high-s twin of a valid voucher, with either parity, and pays the genuine one", async () => {
      const f = await deployEscrow();
      const ch = await openChannel(f, DEPOSIT);
      const signature = await ch.sign(100n);
      const { r, s } = parseSignature(signature);
      const twinS = n - BigInt(s);
      expect(twinS >= 2n ** 255n).to.equal(true);
      const genuine = batchClaimOf(ch.cfg, { cumulativeAmount: 100n, signature });
      const twins = [0n, 1n].map((parity) => ({
        ...genuine,
        r,
        vs: numberToHex((twinS & (2n ** 255n - 1n)) | (parity << 255n), { size: 32 }),
      }));
      const flippedParity = { ...genuine, vs: numberToHex(BigInt(genuine.vs) ^ (1n << 255n), { size: 32 }) };
      const batch = (entries: (typeof genuine)[]) =>
        f.escrow.write.claimBatch([f.payee.account.address, zeroAddress, entries], { account: f.payee.account });

      const hash = await batch([...twins, flippedParity]);
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.escrow.address, amount: 0n }]);
      const receipt = await f.publicClient.waitForTransactionReceipt({ hash });
      const skipped = parseEventLogs({ abi: f.escrow.abi, logs: receipt.logs, eventName: "ClaimSkipped" });
      expect(skipped.map((log) => log.args.reason)).to.deep.equal([4, 4, 4]);
      await f.viem.assertions.emitWithArgs(batch([genuine]), f.escrow, "Claimed", [ch.id, f.payee.account.address, 100n, 100n]);
    });
  });

  describe("a channel has exactly one encoding", () => {
    const dirty = (data: Hex, address: Hex) => {
      const word = `000000000000000000000000${address.slice(2).toLowerCase()}`;
      expect(data.includes(word)).to.equal(true);
      return data.replace(word, `ff${word.slice(2)}`) as Hex;
    };

    it("refuses a channel config whose address word has dirty high bits", async () => {
      const f = await deployEscrow();
      const cfg = channelConfig(f.payer.account.address, f.payee.account.address);
      const idOf = encodeFunctionData({ abi: f.escrow.abi, functionName: "channelIdOf", args: [cfg] });
      await f.publicClient.call({ to: f.escrow.address, data: idOf });
      let rejected = false;
      try {
        await f.publicClient.call({ to: f.escrow.address, data: dirty(idOf, cfg.payee) });
      } catch {
        rejected = true;
      }
      expect(rejected).to.equal(true);
      const open = encodeFunctionData({ abi: f.escrow.abi, functionName: "open", args: [cfg, 1n] });
      await f.viem.assertions.revert(f.payer.sendTransaction({ to: f.escrow.address, data: dirty(open, cfg.payee), value: 1n }));
    });

    it("skips a batch entry whose payer word has dirty high bits as an unknown channel, and pays the clean entries", async () => {
      const f = await deployEscrow();
      const clean = await openChannel(f, DEPOSIT);
      const target = await openChannel(f, DEPOSIT, { payer: f.stranger.account.address });
      const entry = async (ch: typeof clean) => batchClaimOf(ch.cfg, { cumulativeAmount: 100n, signature: await ch.sign(100n) });
      const data = encodeFunctionData({
        abi: f.escrow.abi,
        functionName: "claimBatch",
        args: [f.payee.account.address, zeroAddress, [await entry(target), await entry(clean)]],
      });
      const hash = await f.payee.sendTransaction({ to: f.escrow.address, data: dirty(data, f.stranger.account.address) });
      await f.viem.assertions.balancesHaveChanged(hash, [{ address: f.escrow.address, amount: -100n }]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "ClaimSkipped", [(id: Hex) => id !== target.id, 1]);
      await f.viem.assertions.emitWithArgs(hash, f.escrow, "Claimed", [clean.id, f.payee.account.address, 100n, 100n]);
      expect((await f.escrow.read.getChannel([target.id])).claimed).to.equal(0n);
    });
  });

  describe("views", () => {
    it("computes channel ids, voucher digests and the domain exactly as the TypeScript protocol does", async () => {
      const f = await deployEscrow();
      const cfg = channelConfig(f.payer.account.address, f.payee.account.address, { signer: sessionKey().address });
      const id = channelId(cfg, f.location);
      expect(await f.escrow.read.channelIdOf([cfg])).to.equal(id);
      expect(await f.escrow.read.voucherDigest([id, 123n])).to.equal(voucherDigest({ channelId: id, cumulativeAmount: 123n }, f.location));
      const domainTypeHash = keccak256(toHex("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"));
      expect(await f.escrow.read.domainSeparator()).to.equal(
        keccak256(
          encodeAbiParameters(parseAbiParameters("bytes32, bytes32, bytes32, uint256, address"), [
            domainTypeHash,
            keccak256(toHex("paychan")),
            keccak256(toHex("1")),
            BigInt(f.location.chainId),
            f.escrow.address,
          ]),
        ),
      );
      const [, name, version, chainId, verifyingContract] = await f.escrow.read.eip712Domain();
      expect({ name, version, chainId, verifyingContract }).to.deep.equal({
        name: "paychan",
        version: "1",
        chainId: BigInt(f.location.chainId),
        verifyingContract: getAddress(f.escrow.address),
      });
    });

    it("reports whether a voucher is valid for the channel's signer, or for the payer when no signer is set", async () => {
      const f = await deployEscrow();
      const delegated = await openChannel(f, DEPOSIT);
      const selfSigned = await openChannel(f, DEPOSIT, { signer: zeroAddress });
      expect(await f.escrow.read.isValidVoucher([delegated.cfg, 5n, await delegated.sign(5n)])).to.equal(true);
      expect(await f.escrow.read.isValidVoucher([delegated.cfg, 6n, await delegated.sign(5n)])).to.equal(false);
      expect(await f.escrow.read.isValidVoucher([selfSigned.cfg, 5n, await selfSigned.sign(5n)])).to.equal(true);
      // Once a session key is named, the payer's own key no longer signs for the channel.
      const byPayer = await f.payer.signTypedData({
        domain: escrowDomain(f.location),
        types: voucherTypes,
        primaryType: "Voucher",
        message: { channelId: delegated.id, cumulativeAmount: 5n },
      });
      expect(await f.escrow.read.isValidVoucher([delegated.cfg, 5n, byPayer])).to.equal(false);
    });
  });
});
