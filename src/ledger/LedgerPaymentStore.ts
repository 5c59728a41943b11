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
import { BackgroundBooking } from "./backgroundBooking.js";
import type { Database } from "./db.js";
import { recordUsage, type RecordedUsage } from "./meteredUsage.js";

export type LedgerPaymentStoreOptions = {
  /** How often the channels accepted on are booked into the journal (default 1 s). */
  bookingIntervalMs?: number;
  /** Called when booking fails; it is retried at the next interval. */
  onBookingError?: (error: unknown) => void;
};

export class LedgerPaymentStore implements PaymentStore {
  private readonly booking: BackgroundBooking;

  constructor(
    private readonly db: Pick<Database, "prisma" | "sql">,
    private readonly options: LedgerPaymentStoreOptions = {},
  ) {
    this.booking = new BackgroundBooking(
      async (ids) => (await bookAccepted(db.sql, ids)).failed.map(({ channelId, reason }) => ({ key: channelId, error: new Error(`channel ${channelId}: ${reason}`) })),
      options.onBookingError,
      options.bookingIntervalMs,
    );
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
    outcomes.forEach((outcome, i) => outcome.ok && this.booking.add(charges[i]!.channelId.toLowerCase()));
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
    return this.booking.book();
  }

  /** Stops the booking timer after booking what is left. */
  close(): Promise<void> {
    return this.booking.close();
  }
}
