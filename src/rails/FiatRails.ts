// The fiat rails, assembled: a card processor (a Rail) and paychan's books. It starts card top-ups,
// applies the processor's webhooks to the ledger, pays sellers out once their earnings pass a
// threshold, and reconciles the processor's balance with the ledger. Express adapters are in http.ts.
import { randomBytes } from "node:crypto";
import { applyFiatEvent, creditBalance, noteTopUpSession, recordTopUp, type EventOutcome } from "../ledger/credit.js";
import type { Asset } from "../ledger/asset.js";
import { creditAsset, minorToBase } from "../ledger/currency.js";
import { bookCredit } from "../ledger/creditBooking.js";
import { firstFiatActivity, reconcileFiat, type FiatReport } from "../ledger/fiatReconcile.js";
import { notePayoutProgress, postPayout, sellersWithDestination, startPayout, voidPayout, type PayoutRecord } from "../ledger/payouts.js";
import type { Database } from "../ledger/db.js";
import { RailError, type Rail } from "./Rail.js";

export type FiatRailsOptions = {
  db: Pick<Database, "prisma" | "sql">;
  rail: Rail;
  /** The credit currency (ISO 4217). */
  currency: string;
  /** A seller is paid out once its earnings reach this many base units (millionths). */
  payoutThreshold: bigint;
  /** Where the processor's checkout sends the buyer back to. */
  successUrl: string;
  cancelUrl: string;
  /** The smallest and largest top-up, in minor units. */
  minTopUpMinor?: bigint;
  maxTopUpMinor?: bigint;
  /** Save the card of each checkout top-up for off-session auto-recharge (src/rails/Dunning.ts). */
  saveCards?: boolean;
};

export type PayoutOutcome =
  | { seller: string; outcome: "posted"; payout: PayoutRecord }
  | { seller: string; outcome: "voided"; payout: PayoutRecord; reason: string }
  /** The processor did not answer for sure (5xx, timeout): the payout stays pending and resumes. */
  | { seller: string; outcome: "pending"; payout: PayoutRecord; reason: string }
  | { seller: string; outcome: "below-threshold" };

export class TopUpError extends Error {
  override readonly name = "TopUpError";
}

export class FiatRails {
  readonly rail: Rail;
  readonly currency: string;
  readonly asset: Asset;
  readonly db: FiatRailsOptions["db"];
  private readonly options: FiatRailsOptions;

  constructor(options: FiatRailsOptions) {
    this.db = options.db;
    this.rail = options.rail;
    this.currency = options.currency.toUpperCase();
    this.asset = creditAsset(this.currency);
    this.options = options;
  }

  /** Starts a card top-up of `amountMinor` for a credit account: the URL its owner pays at. */
  async startTopUp(creditAccountId: string, amountMinor: bigint): Promise<{ topUpId: string; url: string; amount: bigint }> {
    const min = this.options.minTopUpMinor ?? 100n;
    const max = this.options.maxTopUpMinor ?? 1_000_000n;
    if (amountMinor < min || amountMinor > max) throw new TopUpError(`A top-up is between ${min} and ${max} minor units of ${this.currency}, not ${amountMinor}.`);
    const account = await creditBalance(this.db.prisma, creditAccountId);
    if (!account) throw new TopUpError(`There is no credit account ${creditAccountId}.`);
    if (account.asset !== this.asset) throw new TopUpError(`Credit account ${creditAccountId} holds ${account.asset}, not ${this.asset}.`);
    const topUpId = `tu_${randomBytes(8).toString("hex")}`;
    // Recorded before the processor is asked, so its webhook always finds the top-up.
    await recordTopUp(this.db.prisma, { id: topUpId, accountId: creditAccountId, processor: this.rail.name, currency: this.currency, amountMinor });
    const session = await this.rail.createTopUp({
      topUpId,
      creditAccountId,
      currency: this.currency,
      amountMinor,
      successUrl: this.options.successUrl,
      cancelUrl: this.options.cancelUrl,
      ...(this.options.saveCards && { saveCard: true }),
    });
    await noteTopUpSession(this.db.prisma, topUpId, session.sessionRef);
    return { topUpId, url: session.url, amount: minorToBase(this.currency, amountMinor) };
  }

  /** A webhook's raw body and headers: verified by the rail, then applied to the books once. */
  async receiveWebhook(rawBody: Buffer, headers: Record<string, string | string[] | undefined>): Promise<{ eventId: string; outcome: EventOutcome }> {
    const event = this.rail.parseWebhook(rawBody, headers);
    return { eventId: event.id, outcome: await applyFiatEvent(this.db.prisma, event) };
  }

  /**
   * Pays out every seller whose earnings reached the threshold: transfer to its processor account,
   * then a payout to its bank, booked two-phase. A pending payout is resumed first, with the same
   * idempotency keys, so a run after a timeout never pays twice.
   */
  async runPayouts(): Promise<PayoutOutcome[]> {
    // Earnings a gateway has not booked yet count too.
    await bookCredit(this.db.sql);
    const outcomes: PayoutOutcome[] = [];
    for (const { seller, destination } of await sellersWithDestination(this.db.prisma)) {
      const payout = await startPayout(this.db.prisma, {
        processor: this.rail.name,
        seller,
        destination,
        asset: this.asset,
        currency: this.currency,
        threshold: this.options.payoutThreshold,
      });
      outcomes.push(payout ? await this.complete(payout) : { seller, outcome: "below-threshold" });
    }
    return outcomes;
  }

  private async complete(payout: PayoutRecord): Promise<PayoutOutcome> {
    const request = { payoutId: payout.id, destination: payout.destination, currency: payout.currency, amountMinor: payout.amountMinor };
    let transferRef = payout.transferRef;
    try {
      if (!transferRef) {
        ({ transferRef } = await this.rail.transfer(request));
        await notePayoutProgress(this.db.prisma, payout.id, { transferRef });
      }
      if (!payout.payoutRef) {
        const { payoutRef } = await this.rail.payout(request);
        await notePayoutProgress(this.db.prisma, payout.id, { payoutRef });
      }
      return { seller: payout.seller, outcome: "posted", payout: await postPayout(this.db.prisma, payout.id) };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (!(error instanceof RailError) || !error.definitive) {
        await notePayoutProgress(this.db.prisma, payout.id, { error: reason });
        return { seller: payout.seller, outcome: "pending", payout: { ...payout, transferRef, error: reason }, reason };
      }
      // Refused for good. Money already transferred goes back to the platform before the books say so.
      let reversalRef: string | undefined;
      if (transferRef) {
        try {
          ({ reversalRef } = await this.rail.reverseTransfer({ ...request, transferRef }));
        } catch (reversal) {
          const why = `${reason}; reversing transfer ${transferRef} failed: ${reversal instanceof Error ? reversal.message : String(reversal)}`;
          await notePayoutProgress(this.db.prisma, payout.id, { error: why });
          return { seller: payout.seller, outcome: "pending", payout: { ...payout, transferRef, error: why }, reason: why };
        }
      }
      return { seller: payout.seller, outcome: "voided", payout: await voidPayout(this.db.prisma, payout.id, reason, reversalRef), reason };
    }
  }

  /** The processor's balance movements in the period (default: since the first top-up) against the ledger. */
  async reconcile(period?: { from?: Date; to?: Date }): Promise<FiatReport> {
    const to = period?.to ?? new Date(Date.now() + 60_000);
    const from = period?.from ?? (await firstFiatActivity(this.db.prisma, this.rail.name)) ?? to;
    const movements = await this.rail.balanceMovements({ from: new Date(from.getTime() - 1_000), to });
    return reconcileFiat(this.db.prisma, { processor: this.rail.name, currency: this.currency, asset: this.asset, movements, period: { from: new Date(from.getTime() - 1_000), to } });
  }
}
