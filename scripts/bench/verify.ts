// Voucher verifications per second: native secp256k1 vs the noble JS fallback vs viem's
// recoverAddress (the reference). Digest computation is included, as on the gateway's hot path.
import { hexToBytes, keccak256, recoverAddress, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { recoverSigner, voucherDigester } from "../../src/gateway/signatures.js";
import { signVoucher, voucherDigest } from "../../src/protocol/Voucher.js";

const location = { chainId: 31337, escrow: "0x5FbDB2315678afecb367f032d93F642f64180aa3" as const };
const key = privateKeyToAccount(keccak256(toHex("bench")));
const channelId = keccak256(toHex("bench-channel"));
const vouchers = await Promise.all(
  Array.from({ length: 500 }, (_, i) => signVoucher(key, { channelId, cumulativeAmount: BigInt(i + 1) }, location)),
);
const sigs = vouchers.map((v) => hexToBytes(v.signature));
const digest = voucherDigester(location);

async function rate(label: string, seconds: number, once: (i: number) => unknown) {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < end) await once(n++ % vouchers.length);
  const perSecond = Math.round(n / seconds);
  console.log(`${label.padEnd(34)} ${perSecond.toLocaleString("en-US").padStart(8)} verifications/s`);
  return perSecond;
}

const ok = (address: string | undefined) => {
  if (address !== key.address.toLowerCase()) throw new Error("wrong signer recovered");
};
const native = await rate("native secp256k1 (hot path)", 2, (i) => ok(recoverSigner(digest(channelId, vouchers[i]!.cumulativeAmount), sigs[i]!, "native")));
const js = await rate("noble JS fallback", 2, (i) => ok(recoverSigner(digest(channelId, vouchers[i]!.cumulativeAmount), sigs[i]!, "js")));
const viem = await rate("viem recoverAddress (reference)", 2, async (i) =>
  ok((await recoverAddress({ hash: voucherDigest(vouchers[i]!, location), signature: vouchers[i]!.signature })).toLowerCase()),
);
console.log(`native is ${(native / js).toFixed(1)}x the JS fallback and ${(native / viem).toFixed(1)}x viem`);
