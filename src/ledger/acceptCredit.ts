// Spending prepaid credit: the credit rail's hot path, shaped like acceptVouchers.ts. One SQL
// statement per group commit decides every charge against its credit account's row and records the
// accepted ones:
//
//   - the key exists, belongs to the account and is not revoked (read in the statement, so a key
//     revoked before it is refused by every process);
//   - compare-and-set: the account's balance (granted − spent) must cover the price, and spent grows
//     by it — a charge never takes credit below zero, and an account that refunds or disputes took
//     below zero is refused until a top-up settles it;
//   - no standing payment already holds this request's key (a byte-identical retry is not charged
//     twice; a unique index backs this up across processes);
//   - the account is not suspended (auto-recharge kept failing: src/rails/Dunning.ts);
//   - then a payment row per accepted charge, and, when the seller set a low-balance threshold and
//     this charge took the balance from at or above it to below it, a notice in the outbox
//     (credit_notice) — in the same statement, so exactly one per crossing, and none for a charge
//     that rolled back.
//
// Postgres's row lock on the account and the re-checked WHERE are the serialization: a second
// process charging the same account waits for the first and re-checks the balance against the
// committed row, so two replicas cannot spend the same credit. The journal is not written here:
// creditBooking.ts books spent credit per account in aggregate, off the hot path.
import { randomUUID } from "node:crypto";
import { runWithRetry } from "./acceptVouchers.js";
import { postgresError } from "./errors.js";
import { acceptInRounds } from "./rounds.js";
import type { Sql } from "./sql.js";

export type CreditCharge = {
  keyId: string;
  accountId: string;
  /** Whose revenue the charge is (SELLER_PAYABLE). */
  seller: string;
  price: bigint;
  /** What identifies the paid request: an identical retry finds this payment by it. */
  requestKey: string;
  /** Why the price is what it is, when the route has a pricing policy: stored with the payment. */
  pricing?: string;
};

export type CreditRefusal =
  | "KEY_NOT_FOUND"
  | "KEY_REVOKED"
  | "INVALID_PRICE"
  /** A standing payment already paid for this request (an identical retry). */
  | "DUPLICATE_REQUEST"
  /** The balance is below zero (a refund or dispute after spending): no spending until settled. */
  | "SUSPENDED"
  /** Auto-recharge of the saved card kept failing: no spending until a top-up is paid. */
  | "RECHARGE_FAILED"
  | "INSUFFICIENT_CREDIT"
  /** The row changed while the statement waited for it: decide again. */
  | "CONFLICT";

export type CreditOutcome =
  | { ok: true; paymentId: string; remaining: bigint }
  | { ok: false; refusal: CreditRefusal; balance?: bigint };

const SPEND = `
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::uuid[], $6::text[], $7::text[])
    WITH ORDINALITY AS i(key_id, account_id, seller, price, payment_id, request_key, pricing, ord)
), accepted AS (
  UPDATE credit_account a SET spent = a.spent + i.price
  FROM i JOIN credit_key k ON k.id = i.key_id AND k.account_id = i.account_id AND k.revoked_at IS NULL
  WHERE a.id = i.account_id
    AND a.granted - a.spent >= i.price
    AND a.suspended_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM credit_payment p WHERE p.account_id = i.account_id AND p.request_key = i.request_key AND p.status = 'ACCEPTED')
  RETURNING a.id, a.asset, a.granted - a.spent AS remaining, i.price
), paid AS (
  INSERT INTO credit_payment (id, account_id, key_id, seller, request_key, price, pricing)
  SELECT i.payment_id, i.account_id, i.key_id, i.seller, i.request_key, i.price, i.pricing
  FROM i JOIN accepted a ON a.id = i.account_id
), noticed AS (
  -- The balance before this charge is remaining + price: a crossing is at or above, then below.
  INSERT INTO credit_notice (id, account_id, type, data)
  SELECT gen_random_uuid(), a.id, 'credit.low_balance',
         jsonb_build_object('accountId', a.id, 'asset', a.asset, 'balance', a.remaining::text, 'threshold', $8::numeric::text)
  FROM accepted a
  WHERE $8::numeric IS NOT NULL AND a.remaining < $8::numeric AND a.remaining + a.price >= $8::numeric
)
SELECT i.ord::int AS ord, a.id IS NOT NULL AS ok, a.remaining::text AS remaining,
       k.id IS NOT NULL AS key_found, k.revoked_at IS NOT NULL AS revoked, (c.granted - c.spent)::text AS balance,
       c.suspended_at IS NOT NULL AS recharge_failed,
       CASE WHEN a.id IS NULL THEN EXISTS (SELECT 1 FROM credit_payment p WHERE p.account_id = i.account_id
         AND p.request_key = i.request_key AND p.status = 'ACCEPTED') END AS duplicate
FROM i
LEFT JOIN accepted a ON a.id = i.account_id
LEFT JOIN credit_key k ON k.id = i.key_id AND k.account_id = i.account_id
LEFT JOIN credit_account c ON c.id = i.account_id
ORDER BY i.ord`;

type Row = {
  ord: number;
  ok: boolean;
  remaining: string | null;
  key_found: boolean;
  revoked: boolean | null;
  balance: string | null;
  recharge_failed: boolean | null;
  duplicate: boolean | null;
};

export type SpendOptions = {
  /** Write a `credit.low_balance` notice when a charge takes the balance below this (base units). */
  lowBalance?: bigint;
};

/**
 * Accepts each charge its account's balance covers. Results are in input order; a refused charge does
 * not affect the others. Charges on one account apply in input order, one statement per position
 * (the gateway's group commit sends one per account).
 */
export function acceptCredit(sql: Sql, charges: CreditCharge[], options: SpendOptions = {}): Promise<CreditOutcome[]> {
  return acceptInRounds(
    charges,
    (charge) => charge.accountId,
    (charge): CreditOutcome | undefined => (charge.price <= 0n ? { ok: false, refusal: "INVALID_PRICE" } : undefined),
    (distinct) => acceptDistinct(sql, distinct, options),
  );
}

async function acceptDistinct(sql: Sql, charges: CreditCharge[], options: SpendOptions): Promise<CreditOutcome[]> {
  // Rows are locked in account-id order, so two statements over overlapping accounts cannot deadlock.
  const order = charges.map((_, i) => i).sort((a, b) => (charges[a]!.accountId < charges[b]!.accountId ? -1 : 1));
  const sorted = order.map((i) => charges[i]!);
  const paymentIds = sorted.map(() => randomUUID());
  let rows: Row[];
  try {
    rows = await runWithRetry(() => sql.query<Row>(
      SPEND,
      [
        sorted.map((c) => c.keyId),
        sorted.map((c) => c.accountId),
        sorted.map((c) => c.seller),
        sorted.map((c) => c.price.toString()),
        paymentIds,
        sorted.map((c) => c.requestKey),
        sorted.map((c) => c.pricing ?? null),
        options.lowBalance?.toString() ?? null,
      ],
      "paychan_spend_credit",
    ));
  } catch (error) {
    // An identical request that another process committed after this statement's snapshot trips the
    // unique index and fails the whole statement: decide each alone, so only that one is refused.
    if (postgresError(error)?.code === "23505" && charges.length > 1) {
      const alone = await Promise.all(sorted.map((c) => acceptDistinct(sql, [c], options)));
      return unsort(order, alone.map((r) => r[0]!));
    }
    if (postgresError(error)?.code === "23505") return [{ ok: false, refusal: "DUPLICATE_REQUEST" }];
    throw error;
  }
  const results = rows.map((row, k): CreditOutcome => {
    if (row.ok) return { ok: true, paymentId: paymentIds[k]!, remaining: BigInt(row.remaining!) };
    if (!row.key_found || row.balance === null) return { ok: false, refusal: "KEY_NOT_FOUND" };
    const balance = BigInt(row.balance);
    if (row.revoked) return { ok: false, refusal: "KEY_REVOKED", balance };
    if (row.duplicate) return { ok: false, refusal: "DUPLICATE_REQUEST", balance };
    if (row.recharge_failed) return { ok: false, refusal: "RECHARGE_FAILED", balance };
    if (balance < 0n) return { ok: false, refusal: "SUSPENDED", balance };
    if (balance < sorted[k]!.price) return { ok: false, refusal: "INSUFFICIENT_CREDIT", balance };
    return { ok: false, refusal: "CONFLICT", balance };
  });
  return unsort(order, results);
}

export type RetriedCredit = { paymentId: string; price: bigint; remaining: bigint };

/**
 * The standing payment made for exactly this request within the last `withinSeconds`, if it was
 * served again fewer than `maxRetries` times (counted here, in the same statement).
 */
export async function claimCreditRetry(sql: Sql, accountId: string, requestKey: string, withinSeconds: number, maxRetries: number): Promise<RetriedCredit | undefined> {
  const [row] = await sql.query<{ id: string; price: string; remaining: string }>(
    `WITH p AS (
       SELECT p.id, p.price, c.granted - c.spent AS remaining
       FROM credit_payment p JOIN credit_account c ON c.id = p.account_id
       WHERE p.account_id = $1 AND p.request_key = $2 AND p.status = 'ACCEPTED'
         AND p.created_at > statement_timestamp() - make_interval(secs => $3)
     ), counted AS (
       INSERT INTO credit_payment_retry (payment_id, retries) SELECT id, 1 FROM p
       ON CONFLICT (payment_id) DO UPDATE SET retries = credit_payment_retry.retries + 1 WHERE credit_payment_retry.retries < $4
       RETURNING payment_id
     )
     SELECT p.id, p.price::text, p.remaining::text FROM p JOIN counted ON counted.payment_id = p.id`,
    [accountId, requestKey, withinSeconds, maxRetries],
    "paychan_claim_credit_retry",
  );
  return row && { paymentId: row.id, price: BigInt(row.price), remaining: BigInt(row.remaining) };
}

function unsort<T>(order: number[], sorted: T[]): T[] {
  const out: T[] = new Array(sorted.length);
  order.forEach((original, k) => (out[original] = sorted[k]!));
  return out;
}
