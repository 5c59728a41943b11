// The credit scheme's CreditStore on paychan's database: keys through credit.ts, spending through
// the single spend statement (acceptCredit.ts), voids and booking through creditBooking.ts. The
// accounts it charged are booked into the journal every `bookingIntervalMs` and on close.
import type { CreditStore } from "../gateway/CreditStore.js";
import { acceptCredit, claimCreditRetry, type CreditCharge, type CreditOutcome, type SpendOptions } from "./acceptCredit.js";
import { bookCredit, voidCreditPayment } from "./creditBooking.js";
import { findCreditKey } from "./credit.js";
import type { Database } from "./db.js";

export class LedgerCreditStore implements CreditStore {
  private dirty = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private booking: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Pick<Database, "prisma" | "sql">,
    private readonly options: { bookingIntervalMs?: number; onBookingError?: (error: unknown) => void } & SpendOptions = {},
  ) {
    this.timer = setInterval(() => void this.book(), options.bookingIntervalMs ?? 1_000);
    this.timer.unref();
  }

  findKey(secret: string) {
    return findCreditKey(this.db.sql, secret);
  }

  async spend(charges: CreditCharge[]): Promise<CreditOutcome[]> {
    const outcomes = await acceptCredit(this.db.sql, charges, { lowBalance: this.options.lowBalance });
    outcomes.forEach((outcome, i) => outcome.ok && this.dirty.add(charges[i]!.accountId));
    return outcomes;
  }

  claimRetry(accountId: string, requestKey: string, withinSeconds: number, maxRetries: number) {
    return claimCreditRetry(this.db.sql, accountId, requestKey, withinSeconds, maxRetries);
  }

  voidPayment(paymentId: string, reason: string): Promise<void> {
    return voidCreditPayment(this.db.prisma, paymentId, reason);
  }

  /** Books the accounts charged since the last booking. */
  book(): Promise<void> {
    this.booking = this.booking.then(async () => {
      if (this.dirty.size === 0) return;
      const ids = [...this.dirty];
      this.dirty = new Set();
      try {
        await bookCredit(this.db.sql, ids);
      } catch (error) {
        for (const id of ids) this.dirty.add(id);
        this.options.onBookingError?.(error);
      }
    });
    return this.booking;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.book();
  }
}
