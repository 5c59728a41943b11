// Keeping buyers on prepaid credit (dunning), run by `paychan work`: it delivers the notices the
// ledger's outbox holds to the seller's system by webhook, and recharges saved cards off-session when
// a balance runs low, on a retry schedule, suspending the account with a final notice when the card
// keeps failing. Each policy is off unless the seller configured it (README "Keeping buyers").
//
// Money moves only through the existing top-up path: a recharge is a top-up whose payment the
// processor confirms by webhook (payment_intent.succeeded), booked like any other. A declined or
// retried recharge charges the card, never the balance, so it cannot take the account below zero.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { Database } from "../ledger/db.js";
import {
  claimDueNotices,
  claimDueRecharges,
  noticeDelivered,
  noticeFailed,
  openDueRecharges,
  rechargeCharged,
  rechargeDeclined,
  rechargeUncertain,
} from "../ledger/dunning.js";
import { RailError, type Rail } from "./Rail.js";

export type NoticeWebhookOptions = {
  /** Where notices are POSTed (the seller's system). */
  url: string;
  /** Signs each body (HMAC-SHA256); the receiver verifies with verifyNoticeSignature. */
  secret: string;
  timeoutMs?: number;
};

export type RechargeOptions = {
  /** Recharge an account whose balance is below this (base units). */
  threshold: bigint;
  /** What each recharge charges the saved card, in minor units (cents). */
  amountMinor: bigint;
  /** Seconds to wait after each declined attempt before the next; after the last, the account is
   * suspended and a final notice sent (e.g. [3600, 21600, 86400]: four attempts in all). */
  retrySchedule: number[];
};

export type DunningOptions = {
  db: Pick<Database, "prisma">;
  rail: Rail;
  /** The credit currency (ISO 4217) and its asset (`fiat:<currency>`). */
  currency: string;
  asset: string;
  notices?: NoticeWebhookOptions;
  recharge?: RechargeOptions;
  /** The clock; for tests. */
  now?: () => Date;
  fetch?: typeof globalThis.fetch;
  /** Each decision, as a line for the operator. */
  log?: (line: string, level?: "info" | "warn") => void;
};

export type DunningRound = { opened: number; charged: number; declined: number; failed: number; uncertain: number; delivered: number; undelivered: number };

/** How long a claimed notice or recharge is left to one worker before another may take it (after a
 * crash): longer than a round's calls can take, Stripe's retries included. */
const LEASE_MS = 600_000;
/** Retry an attempt whose outcome was unknown (a 5xx, a timeout) after this long, with the same key. */
const UNCERTAIN_RETRY_MS = 60_000;

export class Dunning {
  private readonly now: () => Date;
  private readonly fetch: typeof globalThis.fetch;
  private readonly log: NonNullable<DunningOptions["log"]>;

  constructor(private readonly options: DunningOptions) {
    this.now = options.now ?? (() => new Date());
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.log = options.log ?? (() => {});
  }

  /** Whether the seller turned any of it on. */
  get enabled(): boolean {
    return this.options.notices !== undefined || this.options.recharge !== undefined;
  }

  /** One round: open due recharges, attempt the due ones, deliver the due notices. */
  async runOnce(): Promise<DunningRound> {
    const round: DunningRound = { opened: 0, charged: 0, declined: 0, failed: 0, uncertain: 0, delivered: 0, undelivered: 0 };
    if (this.options.recharge) await this.recharge(this.options.recharge, round);
    if (this.options.notices) await this.deliver(this.options.notices, round);
    return round;
  }

  private async recharge(options: RechargeOptions, round: DunningRound): Promise<void> {
    const db = this.options.db.prisma;
    const now = this.now();
    const opened = await openDueRecharges(db, {
      asset: this.options.asset,
      processor: this.options.rail.name,
      currency: this.options.currency,
      threshold: options.threshold,
      amountMinor: options.amountMinor,
      now,
    });
    round.opened += opened.length;
    for (const r of opened) this.log(`recharge ${r.id} opened for credit account ${r.accountId}: its balance is below ${options.threshold} and a card is saved`);

    for (const due of await claimDueRecharges(db, now, LEASE_MS, 5)) {
      const attempt = due.attempts + 1;
      const of = `attempt ${attempt} of ${options.retrySchedule.length + 1}`;
      try {
        const { paymentRef } = await this.options.rail.chargeSavedCard({
          topUpId: due.topUpId,
          rechargeId: due.id,
          creditAccountId: due.accountId,
          customerRef: due.customerRef,
          currency: due.currency,
          amountMinor: due.amountMinor,
        });
        await rechargeCharged(db, due, now);
        round.charged++;
        this.log(`recharge ${due.id} of credit account ${due.accountId}: charged ${due.amountMinor} minor units of ${due.currency} (${of}, payment ${paymentRef}); credited when the processor's webhook confirms it`);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        if (!(error instanceof RailError) || !error.definitive) {
          await rechargeUncertain(db, due, new Date(now.getTime() + UNCERTAIN_RETRY_MS), reason);
          round.uncertain++;
          this.log(`recharge ${due.id} of credit account ${due.accountId}: the processor did not answer for sure (${reason}); the same ${of} again in ${UNCERTAIN_RETRY_MS / 1000} s`, "warn");
          continue;
        }
        const wait = options.retrySchedule[due.attempts];
        const retryAt = wait === undefined ? undefined : new Date(now.getTime() + wait * 1000);
        await rechargeDeclined(db, due, { retryAt, error: reason, now });
        if (retryAt) {
          round.declined++;
          this.log(`recharge ${due.id} of credit account ${due.accountId}: declined (${of}: ${reason}); next attempt at ${retryAt.toISOString()}`, "warn");
        } else {
          round.failed++;
          this.log(`recharge ${due.id} of credit account ${due.accountId}: declined on every attempt (${reason}); the account is suspended from spending until a top-up is paid, and the seller is notified`, "warn");
        }
      }
    }
  }

  private async deliver(options: NoticeWebhookOptions, round: DunningRound): Promise<void> {
    const db = this.options.db.prisma;
    const now = this.now();
    // Few enough per round that each is answered (or timed out) well within its lease.
    for (const notice of await claimDueNotices(db, now, LEASE_MS, 10)) {
      const body = JSON.stringify({ id: notice.id, type: notice.type, created: Math.floor(notice.createdAt.getTime() / 1000), data: notice.data });
      let failure: string | undefined;
      try {
        const response = await this.fetch(options.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "idempotency-key": notice.id,
            [SIGNATURE_HEADER]: signNotice(body, options.secret, Math.floor(now.getTime() / 1000)),
          },
          body,
          signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
          redirect: "error",
        });
        await response.body?.cancel();
        if (!response.ok) failure = `the receiver answered ${response.status}`;
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      if (failure === undefined) {
        await noticeDelivered(db, notice.id, now);
        round.delivered++;
        this.log(`notice ${notice.id} (${notice.type}, credit account ${notice.accountId}) delivered`);
        continue;
      }
      const retryAt = new Date(now.getTime() + noticeBackoffMs(notice.attempts));
      await noticeFailed(db, notice.id, retryAt, failure);
      round.undelivered++;
      this.log(`notice ${notice.id} (${notice.type}, credit account ${notice.accountId}) not delivered (attempt ${notice.attempts + 1}: ${failure}); next at ${retryAt.toISOString()}`, "warn");
    }
  }
}

/** 30 s after the first failed delivery, four times longer after each, at most 6 h apart. */
export function noticeBackoffMs(failedBefore: number): number {
  return Math.min(30_000 * 4 ** failedBefore, 6 * 3600_000);
}

/** The header carrying a notice's signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export const SIGNATURE_HEADER = "paychan-signature";

export function signNotice(body: string, secret: string, timestamp: number): string {
  return `t=${timestamp},v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;
}

/** For the seller's receiver: whether `header` signs `body` with `secret`, no older than `toleranceSeconds`. */
export function verifyNoticeSignature(body: string, header: string | undefined, secret: string, options: { toleranceSeconds?: number; now?: number } = {}): boolean {
  const match = /^t=(\d{1,12}),v1=([0-9a-f]{64})$/.exec(header ?? "");
  if (!match) return false;
  const timestamp = Number(match[1]);
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signNotice(body, secret, timestamp).slice(`t=${timestamp},v1=`.length), "hex");
  return timingSafeEqual(expected, Buffer.from(match[2]!, "hex"));
}
