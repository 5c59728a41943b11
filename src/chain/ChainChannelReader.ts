// The gateway's read access to the escrow: channel state on first sight (and on a suspected top-up),
// and the escrow's own verdict on vouchers signed by ERC-1271 contract wallets.
import type { Address, Hex, PublicClient } from "viem";
import type { ChannelConfig } from "../protocol/Channel.js";
import type { ChainChannelState, ChannelReader } from "../gateway/PaymentStore.js";
import { escrowAbi } from "../contracts/escrowAbi.js";

export const CLOSED = 2n ** 64n - 1n;

/** Decodes getChannel's slot: withdrawReadyAt is 0 while open, CLOSED once settled for good. */
function chainStateOf(raw: { deposit: bigint; claimed: bigint; withdrawReadyAt: bigint }): ChainChannelState {
  return {
    deposit: raw.deposit,
    claimedOnChain: raw.claimed,
    withdrawReadyAt: raw.withdrawReadyAt === 0n || raw.withdrawReadyAt === CLOSED ? undefined : raw.withdrawReadyAt,
    closed: raw.withdrawReadyAt === CLOSED,
  };
}

export class ChainChannelReader implements ChannelReader {
  constructor(
    private readonly client: PublicClient,
    private readonly escrow: Address,
  ) {}

  /** A channel's state, at the latest block or as of `blockNumber`. */
  async readChannel(id: Hex, blockNumber?: bigint): Promise<ChainChannelState> {
    const raw = await this.client.readContract({ address: this.escrow, abi: escrowAbi, functionName: "getChannel", args: [id], blockNumber });
    return chainStateOf(raw);
  }

  async isValidVoucher(config: ChannelConfig, cumulativeAmount: bigint, signature: Hex): Promise<boolean> {
    return this.client.readContract({
      address: this.escrow,
      abi: escrowAbi,
      functionName: "isValidVoucher",
      args: [config, cumulativeAmount, signature],
    });
  }

  async hasCode(address: Hex): Promise<boolean> {
    const code = await this.client.getCode({ address });
    return code !== undefined && code !== "0x";
  }
}
