// What the gateway needs from durable storage (src/ledger implements it: LedgerPaymentStore). The
// contract that makes acceptance safe across processes: `accept` decides each charge in the database,
// against the channel's row as the watcher last wrote it, in one statement — the gateway's own memory
// can only ever make a refusal faster.
import type { Hex } from "viem";
import type { AcceptContext, AcceptOutcome, RetriedPayment, VoucherCharge } from "../ledger/acceptVouchers.js";
import type { ChannelChainState, StoredChannel } from "../ledger/channels.js";
import type { RecordedUsage } from "../ledger/meteredUsage.js";

export type { AcceptContext, AcceptOutcome, AcceptRefusal, ChannelSnapshot, RetriedPayment, VoucherCharge } from "../ledger/acceptVouchers.js";
export type { ChannelChainState, StoredChannel as ChannelRecord } from "../ledger/channels.js";
export type { RecordedUsage } from "../ledger/meteredUsage.js";

export interface PaymentStore {
  loadChannel(id: Hex): Promise<StoredChannel | undefined>;
  /** Records a channel first seen on chain, or what the chain's head says about it now (a deposit seen
   * there is pending until the watcher confirms it); safe when several processes see it at once.
   * Returns the stored record. */
  saveChannel(channel: Pick<StoredChannel, "id" | "chainId" | "escrow" | "config"> & { head: ChannelChainState }): Promise<StoredChannel>;
  /** Decides each charge (on distinct channels) in one statement; see src/ledger/acceptVouchers.ts. */
  accept(charges: VoucherCharge[], context: AcceptContext): Promise<AcceptOutcome[]>;
  /** The standing payment an identical retry of a paid request refers to, within `withinSeconds`,
   * counting the retry; undefined once it was served again `maxRetries` times. */
  claimRetry(charge: Omit<VoucherCharge, "price">, withinSeconds: number, maxRetries: number): Promise<RetriedPayment | undefined>;
  /** Records what a metered payment's request used (clamped to its price and maximum) as its charge,
   * and the rest beyond its price as its channel's debt, durably — or what was recorded for it before
   * (an identical retry); undefined when it has no charge (voided, or its lease is over). */
  recordUsage(paymentId: string, amount: bigint): Promise<RecordedUsage | undefined>;
  /** Voids an accepted payment (the handler failed) and reverses exactly its charge. Idempotent. */
  voidPayment(paymentId: string, reason: string): Promise<void>;
}

/** Reads a channel's state from the chain, and whether an address has code. */
export interface ChannelReader {
  readChannel(id: Hex): Promise<ChannelChainState>;
  /** Whether an address has code (a contract wallet rather than an EOA). */
  hasCode(address: Hex): Promise<boolean>;
}
