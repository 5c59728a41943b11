// The voucher: an EIP-712 `Voucher(bytes32 channelId, uint256 cumulativeAmount)` signed by the
// channel's signer. Amounts are cumulative per channel, so a newer voucher supersedes every older one.
import { hashTypedData, type Hex, type LocalAccount } from "viem";
import { escrowDomain, type EscrowLocation } from "./Channel.js";

export type Voucher = { channelId: Hex; cumulativeAmount: bigint };
export type SignedVoucher = Voucher & { signature: Hex };

export const voucherTypes = {
  Voucher: [
    { name: "channelId", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
  ],
} as const;

export function voucherDigest(voucher: Voucher, location: EscrowLocation): Hex {
  return hashTypedData({
    domain: escrowDomain(location),
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
  });
}

/** Signs with any local viem account (a session key, or a private-key account in tests). */
export async function signVoucher(
  account: Pick<LocalAccount, "signTypedData">,
  voucher: Voucher,
  location: EscrowLocation,
): Promise<SignedVoucher> {
  const signature = await account.signTypedData({
    domain: escrowDomain(location),
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
  });
  return { ...voucher, signature };
}
