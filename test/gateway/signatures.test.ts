import { expect } from "chai";
import { hexToBytes, keccak256, recoverAddress, toHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { secp256k1 } from "@noble/curves/secp256k1";
import { defaultBackend, recoverSigner, voucherDigester } from "../../src/gateway/signatures.js";
import { signVoucher, voucherDigest } from "../../src/protocol/Voucher.js";

const location = { chainId: 31337, escrow: "0x5FbDB2315678afecb367f032d93F642f64180aa3" as const };
const key = privateKeyToAccount(keccak256(toHex("signatures-test")));
const channelId = keccak256(toHex("channel"));

/** The high-s twin of a valid signature: same signer under ecrecover, refused by the escrow. */
function highSTwin(signature: Hex): Hex {
  const bytes = hexToBytes(signature);
  const s = BigInt(toHex(bytes.subarray(32, 64)));
  const twin = new Uint8Array(bytes);
  twin.set(hexToBytes(toHex(secp256k1.CURVE.n - s, { size: 32 })), 32);
  twin[64] = bytes[64] === 27 ? 28 : 27;
  return toHex(twin);
}

async function viemRecovers(digest: Hex, signature: Hex) {
  try {
    return (await recoverAddress({ hash: digest, signature })).toLowerCase();
  } catch {
    return undefined;
  }
}

describe("voucher signature recovery (native and JS against viem)", () => {
  it("loads the native secp256k1 binding on this machine", () => {
    expect(defaultBackend).to.equal("native");
  });

  it("computes the same digest as viem's hashTypedData for many amounts", () => {
    const digest = voucherDigester(location);
    for (const amount of [0n, 1n, 10n ** 18n, 2n ** 96n - 1n, 2n ** 256n - 1n]) {
      expect(toHex(digest(channelId, amount))).to.equal(voucherDigest({ channelId, cumulativeAmount: amount }, location));
    }
  });

  for (const backend of ["native", "js"] as const) {
    it(`${backend}: recovers the signer of valid vouchers exactly as viem does`, async () => {
      for (let amount = 1n; amount <= 50n; amount++) {
        const v = await signVoucher(key, { channelId, cumulativeAmount: amount * 1000n }, location);
        const digest = voucherDigest(v, location);
        const ours = recoverSigner(hexToBytes(digest), hexToBytes(v.signature), backend);
        expect(ours).to.equal(await viemRecovers(digest, v.signature));
        expect(ours).to.equal(key.address.toLowerCase());
      }
    });

    it(`${backend}: a signature over another amount recovers someone else, as in viem`, async () => {
      const v = await signVoucher(key, { channelId, cumulativeAmount: 5n }, location);
      const other = voucherDigest({ channelId, cumulativeAmount: 6n }, location);
      const ours = recoverSigner(hexToBytes(other), hexToBytes(v.signature), backend);
      expect(ours).to.equal(await viemRecovers(other, v.signature));
      expect(ours).to.not.equal(key.address.toLowerCase());
    });

    it(`${backend}: refuses the high-s twin that viem would still recover`, async () => {
      const v = await signVoucher(key, { channelId, cumulativeAmount: 7n }, location);
      const digest = voucherDigest(v, location);
      const twin = highSTwin(v.signature);
      expect(await viemRecovers(digest, twin)).to.equal(key.address.toLowerCase());
      expect(recoverSigner(hexToBytes(digest), hexToBytes(twin), backend)).to.equal(undefined);
    });

    it(`${backend}: refuses 64-byte compact signatures, bad v, zero r/s and garbage`, async () => {
      const v = await signVoucher(key, { channelId, cumulativeAmount: 8n }, location);
      const digest = hexToBytes(voucherDigest(v, location));
      const sig = hexToBytes(v.signature);
      const badV = new Uint8Array(sig);
      badV[64] = 1;
      const zeroR = new Uint8Array(sig);
      zeroR.fill(0, 0, 32);
      const zeroS = new Uint8Array(sig);
      zeroS.fill(0, 32, 64);
      for (const bad of [sig.subarray(0, 64), badV, zeroR, zeroS, new Uint8Array(65), new Uint8Array(65).fill(0xff), new Uint8Array(0)]) {
        expect(recoverSigner(digest, bad, backend)).to.equal(undefined);
      }
    });
  }
});
