// Reads of many channels' on-chain state (getChannel), optionally as of a past block, a few requests
// at a time: what reorg handling and reconciliation compare the books with.
import type { Address, Hex, PublicClient } from "viem";
import type { ChannelChainState } from "../ledger/voucherStore.js";
import type { ChainView } from "../ledger/reconcile.js";
import type { ChannelConfig } from "../protocol/Channel.js";
import { CLOSED } from "./ChainChannelReader.js";
import { escrowAbi } from "./escrowAbi.js";

export async function readChannelStates(
  client: PublicClient,
  escrow: Address,
  channelIds: Hex[],
  blockNumber?: bigint,
  concurrency = 16,
): Promise<Map<Hex, ChannelChainState>> {
  const states = new Map<Hex, ChannelChainState>();
  let next = 0;
  const worker = async () => {
    while (next < channelIds.length) {
      const id = channelIds[next++]!;
      const raw = await client.readContract({ address: escrow, abi: escrowAbi, functionName: "getChannel", args: [id], blockNumber });
      states.set(id, {
        deposit: raw.deposit,
        claimedOnChain: raw.claimed,
        withdrawReadyAt: raw.withdrawReadyAt === 0n || raw.withdrawReadyAt === CLOSED ? null : raw.withdrawReadyAt,
        closed: raw.withdrawReadyAt === CLOSED,
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, channelIds.length) }, worker));
  return states;
}

/** The chain as reconciliation sees it (src/ledger/reconcile.ts). */
export function escrowChainView(client: PublicClient, escrow: Address): ChainView {
  return {
    async head() {
      const block = await client.getBlock({ blockTag: "latest" });
      return { number: block.number, timestamp: block.timestamp };
    },
    channels: (ids, blockNumber) => readChannelStates(client, escrow, ids, blockNumber),
    async isValidVoucher(config: ChannelConfig, cumulativeAmount: bigint, signature: Hex) {
      return client.readContract({ address: escrow, abi: escrowAbi, functionName: "isValidVoucher", args: [config, cumulativeAmount, signature] });
    },
    async hasCode(address: Address) {
      const code = await client.getCode({ address });
      return code !== undefined && code !== "0x";
    },
  };
}
