// The credit scheme's CreditStore on paychan's database: keys through credit.ts, spending through
// the single spend statement (acceptCredit.ts), voids and booking through creditBooking.ts. The
// accounts it charged are booked into the journal every `bookingIntervalMs` and on close.
import type { CreditStore } from "../gateway/CreditStore.js";
import { acceptCredit, claimCreditRetry, type CreditCharge, type CreditOutcome, type SpendOptions } from "./acceptCredit.js";
import { bookCredit, voidCreditPayment } from "./creditBooking.js";
import { findCreditKey } from "./credit.js";
import { BackgroundBooking } from "./backgroundBooking.js";
import type { Database } from "./db.js";

export class LedgerCreditStore implements CreditStore {
  private readonly booking: BackgroundBooking;

  constructor(
    private readonly db: Pick<Database, "prisma" | "sql">,
    private readonly options: { bookingIntervalMs?: number; onBookingError?: (error: unknown) => void } & SpendOptions = {},
  ) {
    this.booking = new BackgroundBooking(
      async (ids) => {
        await bookCredit(db.sql, ids);
        return [];
      },
      options.onBookingError,
      options.bookingIntervalMs,
    );
  }

  findKey(secret: string) {
    return findCreditKey(this.db.sql, secret);
  }

  async spend(charges: CreditCharge[]): Promise<CreditOutcome[]> {
    const outcomes = await acceptCredit(this.db.sql, charges, { lowBalance: this.options.lowBalance });
    outcomes.forEach((outcome, i) => outcome.ok && this.booking.add(charges[i]!.accountId));
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
    return this.booking.book();
  }

  close(): Promise<void> {
    return this.booking.close();
  }
}
