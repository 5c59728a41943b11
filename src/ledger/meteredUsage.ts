// The post-paid part of a metered request: once its handler has finished, what it used (capped at its
// maximum, at least the price its voucher prepaid) becomes the request's charge, and the difference a
// debt on its channel that the channel's next voucher must include (acceptVouchers.ts checks it).
// One statement, durable when it returns, so the payer is only ever told about a debt the database
// holds. The debt is not booked in the journal: it becomes money when a voucher pays it.
import type { Sql } from "./sql.js";
import { runWithRetry } from "./acceptVouchers.js";

export type RecordedUsage = {
  /** The request's whole charge: its prepaid price plus the usage it owes. */
  charged: bigint;
  /** What the channel owes now, to be included in its next voucher. */
  owed: bigint;
};

// Only a standing metered payment whose usage is not recorded yet, within its lease: a second report
// (an identical retry served again) charges nothing more and a voided payment or a lapsed lease nothing.
const RECORD = `
WITH p AS (
  UPDATE payment SET charged = GREATEST(LEAST($2::numeric, metered_max), price - owed_paid)
  WHERE id = $1::uuid AND status = 'ACCEPTED' AND metered_max IS NOT NULL AND charged IS NULL
    AND metered_until > statement_timestamp()
  RETURNING channel_id, charged, charged - (price - owed_paid) AS owed
), c AS (
  UPDATE channel c SET usage_owed = c.usage_owed + p.owed, updated_at = now() FROM p WHERE c.id = p.channel_id
  RETURNING c.usage_owed
)
SELECT p.charged::text, c.usage_owed::text AS owed FROM p CROSS JOIN c
UNION ALL
-- Recorded before (the request is an identical retry): its charge as recorded, and what is owed now.
SELECT q.charged::text, ch.usage_owed::text FROM payment q JOIN channel ch ON ch.id = q.channel_id
WHERE q.id = $1::uuid AND q.status = 'ACCEPTED' AND q.charged IS NOT NULL AND NOT EXISTS (SELECT 1 FROM p)`;

/** Records a metered payment's usage `amount` (clamped to its price and maximum), or returns what was
 * recorded for it before; undefined when it has no charge (voided, or its lease is over). */
export async function recordUsage(sql: Sql, paymentId: string, amount: bigint): Promise<RecordedUsage | undefined> {
  const [row] = await runWithRetry(() =>
    sql.query<{ charged: string; owed: string }>(RECORD, [paymentId, (amount < 0n ? 0n : amount).toString()], "paychan_record_usage"),
  );
  return row && { charged: BigInt(row.charged), owed: BigInt(row.owed) };
}
