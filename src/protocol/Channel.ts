// What a channel is, as both the payer and the payee must compute it: its immutable terms and its id.
// The id is the EIP-712 hash of the `Channel` struct under the escrow's domain, exactly as
// PaychanEscrow.channelIdOf computes it, so it is bound to one chain and one deployment.
import { getAddress, hashTypedData, zeroAddress, type Address, type Hex, type TypedDataDomain } from "viem";

export type ChannelConfig = {
  payer: Address;
  payee: Address;
  /** `zeroAddress` for native ETH. */
  token: Address;
  /** The voucher signer (a session key), or `zeroAddress` when the payer signs itself. */
  signer: Address;
  withdrawDelay: number;
  salt: Hex;
};

/** Where a channel lives: one chain, one escrow deployment. */
export type EscrowLocation = { chainId: number; escrow: Address };

export function escrowDomain({ chainId, escrow }: EscrowLocation): TypedDataDomain {
  return { name: "paychan", version: "1", chainId, verifyingContract: escrow };
}

export const channelTypes = {
  Channel: [
    { name: "payer", type: "address" },
    { name: "payee", type: "address" },
    { name: "token", type: "address" },
    { name: "signer", type: "address" },
    { name: "withdrawDelay", type: "uint32" },
    { name: "salt", type: "bytes32" },
  ],
} as const;

export function channelId(config: ChannelConfig, location: EscrowLocation): Hex {
  return hashTypedData({
    domain: escrowDomain(location),
    types: channelTypes,
    primaryType: "Channel",
    message: config,
  });
}

/** The address whose signature the escrow accepts on this channel's vouchers. */
export function voucherSigner(config: ChannelConfig): Address {
  return getAddress(config.signer === zeroAddress ? config.payer : config.signer);
}
