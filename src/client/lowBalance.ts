// Keeping a channel funded from the payer's side: a receipt's `remaining` (the deposit vouchers may
// still spend) is watched, `onLowBalance` is told once each time it falls below a threshold, and,
// when the user allowed it, the channel is topped up on chain through the wallet — never more than
// the cap the user set per period. What was topped up in the current period is kept in the channel's
// state store beside the accepted total, so a reloaded page or restarted process keeps the cap.
//
// Both are off unless given to createPaidFetch.
import type { PublicClient } from "viem";
import { topUp, type OpenedChannel, type Wallet } from "./channel.js";
import type { ChannelState } from "./stateStore.js";

export type LowBalanceOptions = {
  /** `onLowBalance` is called when a receipt's `remaining` falls below this (base units). */
  threshold: bigint;
  onLowBalance?: (event: LowBalanceEvent) => void | Promise<void>;
};

export type AutoTopUpOptions = {
  /** The wallet that funds the channel (its payer), and a client to wait for the transaction with. */
  wallet: Wallet;
  publicClient: PublicClient;
  /** Added to the deposit by each automatic top-up (base units). */
  amount: bigint;
  /** Automatic top-ups add at most this much per period. */
  cap: bigint;
  /** The period's length in seconds (e.g. 86400 for a daily cap); it starts at its first top-up. */
  period: number;
  /** Unix seconds now; for tests. */
  now?: () => number;
};

export type TopUpOutcome =
  | { outcome: "topped_up"; amount: bigint; spentInPeriod: bigint; cap: bigint }
  /** Not attempted: it would take this period's top-ups past the cap. `resetsAt` is unix seconds. */
  | { outcome: "cap_reached"; amount: bigint; spentInPeriod: bigint; cap: bigint; resetsAt: number }
  | { outcome: "failed"; amount: bigint; error: unknown };

export type LowBalanceEvent = {
  channelId: string;
  /** What the channel may still spend, from the receipt; 0 when the deposit ran out. */
  remaining: bigint;
  threshold: bigint;
  /** Why it was called: a receipt below the threshold, or a request refused for the deposit. */
  reason: "below_threshold" | "insufficient_deposit";
  /** What the automatic top-up did, when one is configured. */
  topUp?: TopUpOutcome;
};

/** Where the watch reads and writes the channel's state (the ChannelPayer's store). */
export type StateAccess = { state(): Promise<ChannelState>; save(state: ChannelState): Promise<void> };

export class LowBalanceWatch {
  /** False from a crossing until a receipt is at or above the threshold again: one call per crossing. */
  private armed = true;

  constructor(
    private readonly channel: OpenedChannel,
    private readonly access: StateAccess,
    private readonly lowBalance: LowBalanceOptions | undefined,
    private readonly autoTopUp: AutoTopUpOptions | undefined,
  ) {
    if (autoTopUp) {
      if (autoTopUp.amount <= 0n) throw new RangeError("autoTopUp.amount must be positive.");
      if (autoTopUp.cap < autoTopUp.amount) throw new RangeError("autoTopUp.cap must be at least autoTopUp.amount.");
      if (!(autoTopUp.period > 0)) throw new RangeError("autoTopUp.period must be a positive number of seconds.");
    }
  }

  /** After each receipt: below the threshold for the first time since it was last above, act. */
  async observe(remaining: bigint): Promise<void> {
    if (!this.lowBalance) return;
    if (remaining >= this.lowBalance.threshold) {
      this.armed = true;
      return;
    }
    if (!this.armed) return;
    this.armed = false;
    const topUp = this.autoTopUp ? await this.topUpWithinCap() : undefined;
    await this.lowBalance.onLowBalance?.({ channelId: this.channel.id, remaining, threshold: this.lowBalance.threshold, reason: "below_threshold", ...(topUp && { topUp }) });
  }

  /** For ChannelPayer's onInsufficientDeposit: tops up within the cap; false when it did not. */
  async onInsufficientDeposit(): Promise<boolean> {
    const topUp = await this.topUpWithinCap();
    await this.lowBalance?.onLowBalance?.({ channelId: this.channel.id, remaining: 0n, threshold: this.lowBalance.threshold, reason: "insufficient_deposit", topUp });
    return topUp.outcome === "topped_up";
  }

  /**
   * One top-up of `amount`, if this period's top-ups plus it stay within the cap. The spending is
   * saved before the transaction is sent, and a failed one still counts: a transaction whose receipt
   * was lost (or a crash after sending) may land yet, and the cap must bound what can.
   */
  private async topUpWithinCap(): Promise<TopUpOutcome> {
    const auto = this.autoTopUp!;
    const now = auto.now?.() ?? Math.floor(Date.now() / 1000);
    const current = await this.access.state();
    const period = current.topUps && now < current.topUps.since + auto.period ? current.topUps : { since: now, amount: 0n };
    if (period.amount + auto.amount > auto.cap) {
      return { outcome: "cap_reached", amount: auto.amount, spentInPeriod: period.amount, cap: auto.cap, resetsAt: period.since + auto.period };
    }
    const spent = { since: period.since, amount: period.amount + auto.amount };
    await this.access.save({ ...current, topUps: spent });
    try {
      await topUp(auto.wallet, auto.publicClient, this.channel, auto.amount);
    } catch (error) {
      return { outcome: "failed", amount: auto.amount, error };
    }
    return { outcome: "topped_up", amount: auto.amount, spentInPeriod: spent.amount, cap: auto.cap };
  }
}
