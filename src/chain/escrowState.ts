// Reads of many channels' on-chain state (getChannel), optionally as of a past block, a few requests
// at a time: what reorg handling and reconciliation compare the books with.
import { TransactionReceiptNotFoundError, type Address, type Hex, type PublicClient } from "viem";
import type { ChannelChainState } from "../ledger/channels.js";
import type { ChainView } from "../ledger/reconcile.js";
import { ChainChannelReader } from "./ChainChannelReader.js";

export async function readChannelStates(
  client: PublicClient,
  escrow: Address,
  channelIds: Hex[],
  blockNumber?: bigint,
  concurrency = 16,
): Promise<Map<Hex, ChannelChainState>> {
  const reader = new ChainChannelReader(client, escrow);
  const states = new Map<Hex, ChannelChainState>();
  let next = 0;
  const worker = async () => {
    while (next < channelIds.length) {
      const id = channelIds[next++]!;
      const state = await reader.readChannel(id, blockNumber);
      states.set(id, state);
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
    async receipt(hash) {
      try {
        const r = await client.getTransactionReceipt({ hash });
        return { blockHash: r.blockHash, gasUsed: r.gasUsed, effectiveGasPrice: r.effectiveGasPrice };
      } catch (error) {
        if (error instanceof TransactionReceiptNotFoundError) return undefined;
        throw error;
      }
    },
  };
}
