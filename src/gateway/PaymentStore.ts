// What the gateway needs from durable storage. The Prisma implementation lives in src/ledger; the
// contract here is what makes acceptance safe across several gateway processes on one database:
// `acceptBatch` advances each channel's accepted total only from the value the caller saw
// (compare-and-set), in one transaction with the payment row and its journal entry.
import type { Hex } from "viem";
import type { ChannelConfig } from "../protocol/Channel.js";
import type { SignedVoucher } from "../protocol/Voucher.js";

/** What the chain says about a channel (see PaychanEscrow.getChannel). */
export type ChainChannelState = {
  deposit: bigint;
  claimedOnChain: bigint;
  /** Seconds since epoch; undefined while no withdrawal was requested. */
  withdrawReadyAt: bigint | undefined;
  closed: boolean;
};

export type ChannelRecord = ChainChannelState & {
  id: Hex;
  chainId: number;
  escrow: Hex;
  config: ChannelConfig;
  /** Sum of the charges accepted and not voided: the cumulative amount the next voucher builds on. */
  acceptedCumulative: bigint;
};

export type AcceptRequest = {
  channel: ChannelRecord;
  /** The accepted total the decision was made against; the store refuses if it has moved. */
  expectedCumulative: bigint;
  price: bigint;
  voucher: SignedVoucher;
  resource: string;
};

export type AcceptResult = { ok: true; paymentId: string } | { ok: false; current: ChannelRecord };

export interface PaymentStore {
  loadChannel(id: Hex): Promise<ChannelRecord | undefined>;
  /** Inserts a channel first seen on chain, or refreshes its chain state; returns the stored record. */
  upsertChannel(channel: ChannelRecord): Promise<ChannelRecord>;
  /** Accepts each request whose channel still stands at `expectedCumulative`, atomically. */
  acceptBatch(requests: AcceptRequest[]): Promise<AcceptResult[]>;
  /** Voids an accepted payment (the handler failed): reverses its journal entry and rolls the
   * channel's accepted total back if it is still the latest payment. Idempotent. */
  voidPayment(paymentId: string, reason: string): Promise<void>;
}

/** Reads a channel's state from the chain, and validates vouchers of contract-wallet signers. */
export interface ChannelReader {
  readChannel(id: Hex): Promise<ChainChannelState>;
  isValidVoucher(config: ChannelConfig, cumulativeAmount: bigint, signature: Hex): Promise<boolean>;
  /** Whether an address has code (an ERC-1271 wallet rather than an EOA). */
  hasCode(address: Hex): Promise<boolean>;
}
