// Reads of the escrow: a channel's state (the gateway on first sight and on a suspected top-up; the
// watcher and reconciliation as of a block), and whether an address has code (a contract signer).
import type { Address, Hex, PublicClient } from "viem";
import type { ChannelReader } from "../gateway/PaymentStore.js";
import type { ChannelChainState as ChainChannelState } from "../ledger/channels.js";
import { escrowAbi } from "../contracts/escrowAbi.js";

export const CLOSED = 2n ** 64n - 1n;

/** Decodes getChannel's slot: withdrawReadyAt is 0 while open, CLOSED once settled for good. */
function chainStateOf(raw: { deposit: bigint; claimed: bigint; withdrawReadyAt: bigint }): ChainChannelState {
  return {
    deposit: raw.deposit,
    claimedOnChain: raw.claimed,
    withdrawReadyAt: raw.withdrawReadyAt === 0n || raw.withdrawReadyAt === CLOSED ? null : raw.withdrawReadyAt,
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

  async hasCode(address: Hex): Promise<boolean> {
    const code = await this.client.getCode({ address });
    return code !== undefined && code !== "0x";
  }
}
