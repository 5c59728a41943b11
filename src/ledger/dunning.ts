// Keeping buyers on prepaid credit, in the books: the outbox of notices to the seller's system and the
// auto-recharges of saved cards with their retry schedule. src/rails/Dunning.ts drives both; what is
// decided here is decided in the database, so two workers cannot send one notice's attempt twice at
// once or open two recharges for one account (a partial unique index), and a recharge's final failure,
// the account's suspension and the notice that says so are one transaction.
//
// Times come from the caller (`now`), not the database's clock, so tests can move through a retry
// schedule of hours in milliseconds.
import { randomBytes, randomUUID } from "node:crypto";
import { inTransaction, type Db, type Json } from "./postings.js";

export type Notice = { id: string; accountId: string; type: string; data: Json; createdAt: Date; attempts: number };

/** Notices due for delivery, each leased for `leaseMs` (another worker skips it meanwhile). */
export async function claimDueNotices(db: Db, now: Date, leaseMs: number, limit = 50): Promise<Notice[]> {
  const rows = await db.$queryRaw<{ id: string; account_id: string; type: string; data: Json; created_at: Date; attempts: number }[]>`
    UPDATE credit_notice n SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}
    WHERE n.id IN (
      SELECT id FROM credit_notice WHERE delivered_at IS NULL AND next_attempt_at <= ${now}
      ORDER BY next_attempt_at, created_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING n.id::text, n.account_id, n.type, n.data, n.created_at, n.attempts`;
  return rows.map((r) => ({ id: r.id, accountId: r.account_id, type: r.type, data: r.data, createdAt: r.created_at, attempts: r.attempts }));
}

export async function noticeDelivered(db: Db, id: string, now: Date): Promise<void> {
  await db.$executeRaw`UPDATE credit_notice SET delivered_at = ${now}, attempts = attempts + 1, last_error = NULL WHERE id = ${id}::uuid`;
}

export async function noticeFailed(db: Db, id: string, retryAt: Date, error: string): Promise<void> {
  await db.$executeRaw`UPDATE credit_notice SET attempts = attempts + 1, next_attempt_at = ${retryAt}, last_error = ${error.slice(0, 500)} WHERE id = ${id}::uuid`;
}

export type NoticeRecord = Notice & { deliveredAt: Date | null; nextAttemptAt: Date; lastError: string | null };

/** An account's notices, oldest first (for the operator, and tests). */
export async function noticesOf(db: Db, accountId: string): Promise<NoticeRecord[]> {
  const rows = await db.creditNotice.findMany({ where: { accountId }, orderBy: [{ createdAt: "asc" }, { id: "asc" }] });
  return rows.map((r) => ({
    id: r.id,
    accountId: r.accountId,
    type: r.type,
    data: r.data as Json,
    createdAt: r.createdAt,
    attempts: r.attempts,
    deliveredAt: r.deliveredAt,
    nextAttemptAt: r.nextAttemptAt,
    lastError: r.lastError,
  }));
}

/**
 * Opens a recharge for every account of `asset` with a saved card, not suspended, whose balance is
 * below `threshold` and that has no recharge open. Returns the ids opened. A balance below zero is a
 * refund or dispute taken back after spending: the card it came from is not charged again unasked.
 */
export async function openDueRecharges(db: Db, options: { asset: string; processor: string; currency: string; threshold: bigint; amountMinor: bigint; now: Date }): Promise<{ id: string; accountId: string }[]> {
  const due = await db.$queryRaw<{ id: string }[]>`
    SELECT a.id FROM credit_account a
    WHERE a.asset = ${options.asset} AND a.card_customer_ref IS NOT NULL AND a.suspended_at IS NULL
      AND a.granted - a.spent < ${options.threshold.toString()}::numeric AND a.granted - a.spent >= 0
      AND NOT EXISTS (SELECT 1 FROM credit_recharge r WHERE r.account_id = a.id AND r.status IN ('PENDING', 'CHARGED'))
    ORDER BY a.id`;
  const opened: { id: string; accountId: string }[] = [];
  for (const { id: accountId } of due) {
    const id = `rc_${randomBytes(8).toString("hex")}`;
    const inserted = await db.$queryRaw<{ id: string }[]>`
      INSERT INTO credit_recharge (id, account_id, processor, currency, amount_minor, next_attempt_at)
      VALUES (${id}, ${accountId}, ${options.processor}, ${options.currency}, ${options.amountMinor.toString()}::numeric, ${options.now})
      ON CONFLICT (account_id) WHERE status IN ('PENDING', 'CHARGED') DO NOTHING RETURNING id`;
    if (inserted.length > 0) opened.push({ id, accountId });
  }
  return opened;
}

export type DueRecharge = { id: string; accountId: string; customerRef: string; currency: string; amountMinor: bigint; attempts: number; topUpId: string };

/**
 * Recharges due for an attempt, leased for `leaseMs`, each with its attempt's top-up recorded (the
 * same one again after an attempt whose outcome was unknown, so its idempotency key is reused).
 */
export async function claimDueRecharges(db: Db, now: Date, leaseMs: number, limit = 20): Promise<DueRecharge[]> {
  const rows = await db.$queryRaw<{ id: string; account_id: string; customer_ref: string; currency: string; amount_minor: string; attempts: number; topup_id: string | null; processor: string }[]>`
    UPDATE credit_recharge r SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}, updated_at = ${now}
    FROM credit_account a
    WHERE a.id = r.account_id AND r.id IN (
      SELECT id FROM credit_recharge WHERE status = 'PENDING' AND next_attempt_at <= ${now}
      ORDER BY next_attempt_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
    RETURNING r.id, r.account_id, a.card_customer_ref AS customer_ref, r.currency, r.amount_minor::text, r.attempts, r.topup_id, r.processor`;
  const due: DueRecharge[] = [];
  for (const r of rows) {
    // One top-up per attempt: `attempts` counts the attempts that ended, so this one is attempts + 1.
    const topUpId = `tu_${r.id.slice(3)}_${r.attempts + 1}`;
    await db.$executeRaw`
      INSERT INTO fiat_topup (id, account_id, processor, currency, amount_minor, recharge_id)
      VALUES (${topUpId}, ${r.account_id}, ${r.processor}, ${r.currency}, ${r.amount_minor}::numeric, ${r.id})
      ON CONFLICT (id) DO NOTHING`;
    await db.$executeRaw`UPDATE credit_recharge SET topup_id = ${topUpId} WHERE id = ${r.id}`;
    due.push({ id: r.id, accountId: r.account_id, customerRef: r.customer_ref, currency: r.currency, amountMinor: BigInt(r.amount_minor), attempts: r.attempts, topUpId });
  }
  return due;
}

// The outcomes below apply only to the attempt they are about (`attempts` unchanged since it was
// claimed): a worker whose lease ran out while it waited for the processor cannot count an attempt
// twice — the other worker made the same call, with the same idempotency key.

/** The processor took the charge: the credit comes with its webhook (which closes the recharge). */
export async function rechargeCharged(db: Db, recharge: { id: string; attempts: number }, now: Date): Promise<void> {
  await db.$executeRaw`
    UPDATE credit_recharge SET status = 'CHARGED', attempts = attempts + 1, next_attempt_at = NULL, last_error = NULL, updated_at = ${now}
    WHERE id = ${recharge.id} AND status = 'PENDING' AND attempts = ${recharge.attempts}`;
}

/** The outcome is unknown (5xx, timeout): the same attempt again at `retryAt`, with the same key. */
export async function rechargeUncertain(db: Db, recharge: { id: string; attempts: number }, retryAt: Date, error: string): Promise<void> {
  await db.$executeRaw`
    UPDATE credit_recharge SET next_attempt_at = ${retryAt}, last_error = ${error.slice(0, 500)}, updated_at = now()
    WHERE id = ${recharge.id} AND status = 'PENDING' AND attempts = ${recharge.attempts}`;
}

/**
 * The card was declined: the next attempt at `retryAt`, or, with none left (`retryAt` undefined),
 * the recharge fails for good, the account is suspended from spending and a `credit.recharge_failed`
 * notice is written — in one transaction.
 */
export async function rechargeDeclined(db: Db, recharge: { id: string; accountId: string; topUpId: string; attempts: number }, options: { retryAt?: Date; error: string; now: Date }): Promise<void> {
  await inTransaction(db, async (tx) => {
    await tx.$executeRaw`UPDATE fiat_topup SET status = 'DECLINED' WHERE id = ${recharge.topUpId} AND status = 'OPEN'`;
    if (options.retryAt) {
      await tx.$executeRaw`
        UPDATE credit_recharge SET attempts = attempts + 1, next_attempt_at = ${options.retryAt}, last_error = ${options.error.slice(0, 500)}, updated_at = ${options.now}
        WHERE id = ${recharge.id} AND status = 'PENDING' AND attempts = ${recharge.attempts}`;
      return;
    }
    const [failed] = await tx.$queryRaw<{ attempts: number; amount_minor: string; currency: string }[]>`
      UPDATE credit_recharge SET status = 'FAILED', attempts = attempts + 1, next_attempt_at = NULL, last_error = ${options.error.slice(0, 500)}, updated_at = ${options.now}
      WHERE id = ${recharge.id} AND status = 'PENDING' AND attempts = ${recharge.attempts} RETURNING attempts, amount_minor::text, currency`;
    if (!failed) return;
    const [account] = await tx.$queryRaw<{ asset: string; balance: string }[]>`
      UPDATE credit_account SET suspended_at = ${options.now}, suspended_reason = 'recharge_failed'
      WHERE id = ${recharge.accountId} RETURNING asset, (granted - spent)::text AS balance`;
    const data = {
      accountId: recharge.accountId,
      asset: account!.asset,
      balance: account!.balance,
      rechargeId: recharge.id,
      attempts: failed.attempts,
      amountMinor: failed.amount_minor,
      currency: failed.currency,
      lastError: options.error.slice(0, 500),
    };
    await tx.$executeRaw`
      INSERT INTO credit_notice (id, account_id, type, data, created_at, next_attempt_at)
      VALUES (${randomUUID()}::uuid, ${recharge.accountId}, 'credit.recharge_failed', ${JSON.stringify(data)}::jsonb, ${options.now}, ${options.now})`;
  });
}

export type RechargeRecord = { id: string; status: string; attempts: number; nextAttemptAt: Date | null; topUpId: string | null; lastError: string | null };

/** An account's recharges, oldest first. */
export async function rechargesOf(db: Db, accountId: string): Promise<RechargeRecord[]> {
  const rows = await db.creditRecharge.findMany({ where: { accountId }, orderBy: { createdAt: "asc" } });
  return rows.map((r) => ({ id: r.id, status: r.status, attempts: r.attempts, nextAttemptAt: r.nextAttemptAt, topUpId: r.topUpId, lastError: r.lastError }));
}
