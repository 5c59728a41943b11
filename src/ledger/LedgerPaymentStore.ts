// The gateway's PaymentStore on paychan's database: channel rows through channels.ts, acceptance
// through the single accept statement (acceptVouchers.ts), metered usage through meteredUsage.ts,
// voids through booking.ts. It also books
// what it accepted: the channels it touched are booked into the journal every `bookingIntervalMs` and
// on close, so the journal trails the voucher store by about a second.
import type { Hex } from "viem";
import type { PaymentStore } from "../gateway/PaymentStore.js";
import { acceptVouchers, claimRetry, type AcceptContext, type AcceptOutcome, type VoucherCharge } from "./acceptVouchers.js";
import { bookAccepted, voidPayment } from "./booking.js";
import { loadChannel, saveChannel, type ChannelChainState, type StoredChannel } from "./channels.js";
import type { Database } from "./db.js";
import { recordUsage, type RecordedUsage } from "./meteredUsage.js";

export type LedgerPaymentStoreOptions = {
  /** How often the channels accepted on are booked into the journal (default 1 s). */
  bookingIntervalMs?: number;
  /** Called when booking fails; it is retried at the next interval. */
  onBookingError?: (error: unknown) => void;
};

export class LedgerPaymentStore implements PaymentStore {
  private dirty = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private booking: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Pick<Database, "prisma" | "sql">,
    private readonly options: LedgerPaymentStoreOptions = {},
  ) {
    this.timer = setInterval(() => void this.book(), options.bookingIntervalMs ?? 1_000);
    this.timer.unref();
  }

  loadChannel(id: Hex): Promise<StoredChannel | undefined> {
    return loadChannel(this.db.sql, id);
  }

  async saveChannel(channel: Pick<StoredChannel, "id" | "chainId" | "escrow" | "config"> & { head: ChannelChainState }): Promise<StoredChannel> {
    await saveChannel(this.db.prisma, { ...channel.config, chainId: channel.chainId, escrow: channel.escrow, head: channel.head });
    return (await this.loadChannel(channel.id))!;
  }

  async accept(charges: VoucherCharge[], context: AcceptContext): Promise<AcceptOutcome[]> {
    const outcomes = await acceptVouchers(this.db.sql, charges, context);
    outcomes.forEach((outcome, i) => outcome.ok && this.dirty.add(charges[i]!.channelId.toLowerCase()));
    return outcomes;
  }

  claimRetry(charge: Omit<VoucherCharge, "price">, withinSeconds: number, maxRetries: number) {
    return claimRetry(this.db.sql, charge, withinSeconds, maxRetries);
  }

  recordUsage(paymentId: string, amount: bigint): Promise<RecordedUsage | undefined> {
    return recordUsage(this.db.sql, paymentId, amount);
  }

  async voidPayment(paymentId: string, reason: string): Promise<void> {
    await voidPayment(this.db.prisma, paymentId, { metadata: { reason } });
  }

  /** Books the channels accepted on since the last booking (one statement, one at a time). */
  book(): Promise<void> {
    this.booking = this.booking.then(async () => {
      if (this.dirty.size === 0) return;
      const ids = [...this.dirty];
      this.dirty = new Set();
      try {
        const { failed } = await bookAccepted(this.db.sql, ids);
        for (const { channelId, reason } of failed) {
          this.dirty.add(channelId);
          this.options.onBookingError?.(new Error(`channel ${channelId}: ${reason}`));
        }
      } catch (error) {
        for (const id of ids) this.dirty.add(id);
        this.options.onBookingError?.(error);
      }
    });
    return this.booking;
  }

  /** Stops the booking timer after booking what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.book();
  }
}
